//! `http` and `tcp` probes: a plain, bounded client over non-blocking
//! sockets.
//!
//! A pool worker only resolves the target and starts the connect
//! (`start`), then hands the check to the one `Dialer` thread, which
//! carries every check in flight at once (connect, send, read: one poll)
//! until each answers or its deadline passes. So a target that accepts and
//! never answers (or never accepts) holds no worker: a thousand of them
//! cost one thread and a socket each, and the other probes keep their
//! times. One deadline covers the whole check (connect, send, read; name
//! resolution, done by the worker, is the one step it does not bound). The
//! response is read up to `MAX_RESPONSE` bytes only (a flood is cut
//! there), only its status line is looked at, and redirects are not
//! followed (a 3xx is healthy, as in SPEC 4b).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use super::handover::Handover;
use super::{Outcome, timed_out};
use crate::spec::HttpTarget;
use crate::sys;

/// The most of a response a check reads.
pub const MAX_RESPONSE: usize = 4096;
/// Checks in flight at most (a socket each); more wait in the hand-over
/// queue, and a full queue makes the workers wait.
const MAX_IN_FLIGHT: usize = 1024;

/// Where a check is.
enum Phase {
    Connecting,
    Sending,
    Reading,
}

/// A check under way.
pub struct Dial {
    sock: TcpStream,
    /// Addresses to try next if this connect fails.
    others: Vec<SocketAddr>,
    phase: Phase,
    /// The request (`http`); none for `tcp`, done once connected.
    request: Option<Vec<u8>>,
    sent: usize,
    head: Vec<u8>,
    deadline: Instant,
    timeout: Duration,
    /// Told the outcome, once.
    pub report: Option<Box<dyn FnOnce(Outcome) + Send>>,
}

/// Start a GET of the target; the outcome at once if it cannot start.
pub fn start_http(t: &HttpTarget, timeout: Duration) -> Result<Dial, Outcome> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: exeio-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        t.path, t.host
    );
    dial(&t.authority, Some(request.into_bytes()), timeout)
}

/// Start a connect to `addr` (healthy once accepted).
pub fn start_tcp(addr: &str, timeout: Duration) -> Result<Dial, Outcome> {
    dial(addr, None, timeout)
}

fn dial(authority: &str, request: Option<Vec<u8>>, timeout: Duration) -> Result<Dial, Outcome> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = match authority.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Err(Outcome::failed(format!("cannot resolve {authority}: {e}"))),
    };
    let mut others = addrs.into_iter().rev().collect();
    let sock = connect_next(&mut others, timeout)?;
    Ok(Dial {
        sock,
        others,
        phase: Phase::Connecting,
        request,
        sent: 0,
        head: Vec::new(),
        deadline,
        timeout,
        report: None,
    })
}

/// Start a connect to the next address (popped from the end) that does
/// not fail at once.
fn connect_next(others: &mut Vec<SocketAddr>, timeout: Duration) -> Result<TcpStream, Outcome> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    while let Some(addr) = others.pop() {
        match sys::connect_nonblocking(&addr) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(Outcome::failed(io_message(&last, timeout)))
}

impl Dial {
    /// Tell the outcome, once.
    fn finish(mut self, outcome: Outcome) {
        if let Some(report) = self.report.take() {
            report(outcome);
        }
    }

    /// Does the next step wait for the socket to be writable?
    fn wants_write(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Sending)
    }

    /// Go as far as the socket allows; the outcome once there is one.
    fn advance(&mut self) -> Option<Outcome> {
        loop {
            match self.phase {
                Phase::Connecting => match self.sock.take_error() {
                    Ok(None) => match self.request {
                        None => return Some(Outcome::ok("connected")),
                        Some(_) => self.phase = Phase::Sending,
                    },
                    Ok(Some(e)) | Err(e) => {
                        if self.others.is_empty() {
                            return Some(Outcome::failed(io_message(&e, self.timeout)));
                        }
                        match connect_next(&mut self.others, self.timeout) {
                            Ok(s) => self.sock = s,
                            Err(o) => return Some(o),
                        }
                        return None;
                    }
                },
                Phase::Sending => {
                    let request = self.request.as_deref().unwrap_or_default();
                    match self.sock.write(&request[self.sent..]) {
                        Ok(n) => {
                            self.sent += n;
                            if self.sent >= request.len() {
                                self.phase = Phase::Reading;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) => return Some(Outcome::failed(io_message(&e, self.timeout))),
                    }
                }
                Phase::Reading => {
                    // The status line is all a check needs.
                    if self.head.contains(&b'\n') || self.head.len() >= MAX_RESPONSE {
                        return Some(status(&self.head));
                    }
                    let mut buf = [0u8; 1024];
                    let room = (MAX_RESPONSE - self.head.len()).min(buf.len());
                    match self.sock.read(&mut buf[..room]) {
                        Ok(0) => return Some(status(&self.head)),
                        Ok(n) => self.head.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) => return Some(Outcome::failed(io_message(&e, self.timeout))),
                    }
                }
            }
        }
    }
}

/// The thread that carries every `http` and `tcp` check in flight.
pub struct Dialer(Handover<Dial>);

impl Dialer {
    pub fn start() -> io::Result<Dialer> {
        Handover::start("probe-net", dial_all).map(Dialer)
    }

    /// Hand a started check over (waits while the dialer is full).
    pub fn watch(&self, d: Dial) {
        if let Err(e) = self.0.send(d) {
            e.finish(Outcome::failed("exeio is stopping"));
        }
    }
}

fn dial_all(rx: &Receiver<Dial>, bell: &OwnedFd) {
    let mut live: Vec<Dial> = Vec::new();
    let mut open = true;
    loop {
        while open && live.len() < MAX_IN_FLIGHT {
            match rx.try_recv() {
                Ok(d) => live.push(d),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if !open && live.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut i = 0;
        while i < live.len() {
            if live[i].deadline <= now {
                let d = live.swap_remove(i);
                let message = timed_out(d.timeout);
                d.finish(Outcome::failed(message));
            } else {
                i += 1;
            }
        }
        let mut fds = vec![(bell.as_fd(), false)];
        fds.extend(live.iter().map(|d| (d.sock.as_fd(), d.wants_write())));
        let nearest = live.iter().map(|d| d.deadline).min();
        let wait = nearest.map(|d| d.saturating_duration_since(Instant::now()));
        let ready = sys::wait_ready(&fds, wait).unwrap_or_default();
        drop(fds);
        if ready.first() == Some(&true) {
            sys::eventfd_clear(bell);
        }
        // From the end, so that removing one leaves the others' places.
        for i in (0..live.len()).rev() {
            if ready.get(i + 1) != Some(&true) {
                continue;
            }
            if let Some(outcome) = live[i].advance() {
                live.swap_remove(i).finish(outcome);
            }
        }
    }
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
