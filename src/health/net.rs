//! `http` and `tcp` probes: a plain, bounded client over `TcpStream`.
//!
//! One deadline covers the whole check (resolve, connect, send, read). The
//! response is read up to `MAX_RESPONSE` bytes only (a flood is cut there),
//! only its status line is looked at, and redirects are not followed (a
//! 3xx is healthy, as in SPEC 4b).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{Outcome, timed_out};
use crate::spec::HttpTarget;

/// The most of a response a check reads.
pub const MAX_RESPONSE: usize = 4096;

/// GET the target; 2xx or 3xx is healthy.
pub fn http(t: &HttpTarget, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut sock = match connect(&t.authority, deadline, timeout) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: exeio-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        t.path, t.host
    );
    if let Err(e) = left(deadline).and_then(|d| {
        sock.set_write_timeout(Some(d))?;
        sock.write_all(request.as_bytes())
    }) {
        return Outcome::failed(io_message(&e, timeout));
    }
    let mut buf = [0u8; MAX_RESPONSE];
    let mut got = 0;
    loop {
        // The status line is all a check needs.
        if buf[..got].contains(&b'\n') || got == buf.len() {
            break;
        }
        let read = left(deadline).and_then(|d| {
            sock.set_read_timeout(Some(d))?;
            sock.read(&mut buf[got..])
        });
        match read {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Outcome::failed(io_message(&e, timeout)),
        }
    }
    drop(sock); // closes: the rest of a long answer is never read
    status(&buf[..got])
}

/// The verdict of a response's first bytes.
fn status(head: &[u8]) -> Outcome {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (version, code) = (parts.next(), parts.next());
    let code = match (version, code) {
        (Some(v), Some(c)) if v.starts_with(b"HTTP/") => std::str::from_utf8(c)
            .ok()
            .and_then(|c| c.trim().parse::<u16>().ok()),
        _ => None,
    };
    match code {
        Some(c @ 200..=399) => Outcome::ok(format!("HTTP {c}")),
        Some(c) => Outcome::failed(format!("HTTP {c}")),
        None if head.is_empty() => Outcome::failed("connection closed without a response"),
        None => Outcome::failed("not an HTTP response"),
    }
}

/// A connection is accepted.
pub fn tcp(addr: &str, timeout: Duration) -> Outcome {
    match connect(addr, Instant::now() + timeout, timeout) {
        Ok(_) => Outcome::ok("connected"),
        Err(o) => o,
    }
}

/// Connect to the first address of `authority` that answers, by the deadline.
fn connect(authority: &str, deadline: Instant, timeout: Duration) -> Result<TcpStream, Outcome> {
    let addrs: Vec<SocketAddr> = match authority.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Err(Outcome::failed(format!("cannot resolve {authority}: {e}"))),
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        let d = match left(deadline) {
            Ok(d) => d,
            Err(e) => return Err(Outcome::failed(io_message(&e, timeout))),
        };
        match TcpStream::connect_timeout(&addr, d) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(Outcome::failed(io_message(&last, timeout)))
}

/// What is left before `deadline` (a timeout error when nothing is).
fn left(deadline: Instant) -> io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(d)
    }
}

fn io_message(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timed_out(timeout),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n"), Outcome::ok("HTTP 200"));
        assert_eq!(status(b"HTTP/1.0 302 Found\r\n"), Outcome::ok("HTTP 302"));
        assert_eq!(
            status(b"HTTP/1.1 503 Busy\r\n"),
            Outcome::failed("HTTP 503")
        );
        assert_eq!(status(b"HTTP/1.1 404"), Outcome::failed("HTTP 404"));
        assert!(!status(b"SSH-2.0-x\r\n").ok);
        assert!(!status(b"").ok);
    }
}
