//! Refusing a connection at a cap without resetting it (SPEC 3a): the
//! whole canned `503` is sent, our side is shut for writing, and what the
//! client still sends is read and dropped for up to a second before the
//! socket is closed. Closing with unread input would make the kernel send
//! an RST, which can destroy the 503 before the client reads it.
//!
//! One thread lingers on every refused socket at once (poll), so the accept
//! thread never waits; at most `MAX_LINGERING` sockets linger, the oldest
//! is closed first.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};

use crate::sys;

const BODY: &str = r#"{"success":false,"message":"too many connections; try again shortly"}"#;
const LINGER: Duration = Duration::from_secs(1);
const MAX_LINGERING: usize = 256;
/// Bytes read from one refused client at most.
const BUDGET: usize = 64 * 1024;

/// The canned refusal, whole (its Content-Length is computed, not typed).
pub fn refusal() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         X-Content-Type-Options: nosniff\r\nRetry-After: 1\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// Start the lingering thread; send it refused sockets (plain HTTP: the
/// 503 is written first; `false` for TLS, where only the linger applies).
pub fn start() -> io::Result<Sender<(TcpStream, bool)>> {
    let (tx, rx) = bounded(MAX_LINGERING);
    crate::threads::spawn_detached("http-refuse", 64 * 1024, move || run(rx))?;
    Ok(tx)
}

struct Lingering {
    sock: TcpStream,
    until: Instant,
    budget: usize,
}

fn run(rx: Receiver<(TcpStream, bool)>) {
    let canned = refusal();
    let mut socks: VecDeque<Lingering> = VecDeque::new();
    loop {
        if socks.is_empty() {
            match rx.recv() {
                Ok(next) => add(&mut socks, next, &canned),
                Err(_) => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(next) => add(&mut socks, next, &canned),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if socks.is_empty() => return,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        let ready = {
            let fds: Vec<_> = socks.iter().map(|l| l.sock.as_fd()).collect();
            sys::wait_readable(&fds, Some(Duration::from_millis(50)))
                .unwrap_or_else(|_| vec![false; fds.len()])
        };
        let now = Instant::now();
        let mut buf = [0u8; 4096];
        let mut i = 0;
        socks.retain_mut(|l| {
            let r = ready[i];
            i += 1;
            if r {
                match (&l.sock).read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => l.budget = l.budget.saturating_sub(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
            }
            l.budget > 0 && l.until > now
        });
    }
}

/// Answer at once (plain HTTP), shut our side for writing, and read what
/// has already arrived: a socket closed with nothing unread is not reset.
pub fn answer_and_drain(sock: &TcpStream, plain: bool, canned: &[u8]) {
    let _ = sock.set_nonblocking(true);
    if plain {
        sys::send_nowait(sock, canned);
    }
    let _ = sock.shutdown(Shutdown::Write);
    let mut buf = [0u8; 4096];
    let mut left = BUDGET;
    while left > 0 {
        match (&*sock).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

fn add(socks: &mut VecDeque<Lingering>, (sock, plain): (TcpStream, bool), canned: &[u8]) {
    answer_and_drain(&sock, plain, canned);
    if socks.len() >= MAX_LINGERING
        && let Some(oldest) = socks.pop_front()
    {
        answer_and_drain(&oldest.sock, false, canned);
    }
    socks.push_back(Lingering {
        sock,
        until: Instant::now() + LINGER,
        budget: BUDGET,
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusal_declares_its_length() {
        let r = String::from_utf8(super::refusal()).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("\r\nContent-Length: {}", body.len())));
        assert!(head.contains("Retry-After: 1"));
    }
}
