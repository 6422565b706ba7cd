//! `GET /logs/{id}?follow=true`: a chunked stream of new log lines, on a
//! thread of its own (never a worker, never the supervisor). The thread
//! watches the client's TCP state, so a client that goes away
//! frees its thread and fds within `POLL_EVERY`, even when no line is written.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{PollTimeout, poll};
use tiny_http::Request;

use crate::logs::LogFile;

const POLL_EVERY: Duration = Duration::from_millis(200);
const STACK: usize = 128 * 1024;

pub fn start(req: Request, log: Arc<LogFile>, server_port: u16) {
    let peer = req.remote_addr().copied();
    let spawned = std::thread::Builder::new()
        .name("follow".into())
        .stack_size(STACK)
        .spawn(move || stream(req, &log, peer, server_port));
    if spawned.is_err() {
        crate::diag::warn("cannot start a thread for a log follower");
    }
}

fn stream(req: Request, log: &Arc<LogFile>, peer: Option<SocketAddr>, server_port: u16) {
    let mut follower = log.follow();
    // Our own duplicate of the connection: tiny_http closes its read half
    // when the client hangs up, and a borrowed fd could then be closed (or
    // reused) under us.
    let socket = peer
        .and_then(|p| find_socket(p, server_port))
        .and_then(|fd| {
            // SAFETY: the fd is the live connection of the request this thread owns.
            unsafe { BorrowedFd::borrow_raw(fd) }
                .try_clone_to_owned()
                .ok()
        });
    let mut w = req.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if w.write_all(head.as_bytes())
        .and_then(|_| w.flush())
        .is_err()
    {
        return;
    }
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        buf.clear();
        if follower.read_new(&mut buf).is_err() {
            break;
        }
        if !buf.is_empty() {
            let sent = write!(w, "{:x}\r\n", buf.len())
                .and_then(|_| w.write_all(&buf))
                .and_then(|_| w.write_all(b"\r\n"))
                .and_then(|_| w.flush());
            if sent.is_err() {
                break;
            }
        }
        if client_gone(socket.as_ref(), POLL_EVERY) {
            break;
        }
    }
}

/// Wait up to `wait` for the client to hang up; true if it has.
/// Wait `wait`, then tell whether the client has gone: its TCP connection
/// has left ESTABLISHED (a FIN or RST arrived). tiny_http shuts down its read
/// half of the socket, so poll's hang-up flags would fire at once; the TCP
/// state does not.
fn client_gone(socket: Option<&OwnedFd>, wait: Duration) -> bool {
    let timeout = PollTimeout::try_from(wait.as_millis() as u64).unwrap_or(PollTimeout::MAX);
    let _ = poll(&mut [], timeout);
    socket.is_some_and(|fd| tcp_state(fd).is_some_and(|s| s != TCP_ESTABLISHED))
}

const TCP_ESTABLISHED: u8 = 1;

fn tcp_state(fd: &OwnedFd) -> Option<u8> {
    use nix::libc;
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (r == 0).then_some(info.tcpi_state)
    }
}

/// A socket option set on a client's connection (found by `find_socket`).
pub struct SocketTimeout {
    fd: RawFd,
    timeout: Duration,
}

impl SocketTimeout {
    pub fn find(peer: SocketAddr, timeout: Duration) -> Option<SocketTimeout> {
        // The local port is unknown here; any socket with this peer is ours
        // (peers are unique per connection on one host).
        find_socket_by_peer(peer).map(|fd| SocketTimeout { fd, timeout })
    }

    /// Set SO_RCVTIMEO: a blocked read fails after `timeout`.
    pub fn apply(&self) {
        // SAFETY: the fd is the connection of the request this thread owns.
        let s = std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(self.fd) });
        let _ = s.set_read_timeout(Some(self.timeout));
    }
}

/// A client's connection, found by its peer address; for the rare requests
/// that must be cut short behind tiny_http's back.
pub struct Connection {
    fd: OwnedFd,
}

impl Connection {
    pub fn find(peer: SocketAddr) -> Option<Connection> {
        let fd = find_socket_by_peer(peer)?;
        // SAFETY: the fd is the live connection of the request the caller owns.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .ok()?;
        Some(Connection { fd })
    }

    fn stream(&self) -> std::mem::ManuallyDrop<TcpStream> {
        // SAFETY: wraps our own fd without taking ownership (ManuallyDrop).
        std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(self.fd.as_raw_fd()) })
    }

    /// Write a whole JSON response and close both directions.
    pub fn answer_and_close(&self, status: u16, json: &str) {
        let mut s = self.stream();
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let head = format!(
            "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            json.len()
        );
        let _ = s
            .write_all(head.as_bytes())
            .and_then(|_| s.write_all(json.as_bytes()));
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

fn find_socket_by_peer(peer: SocketAddr) -> Option<RawFd> {
    scan_sockets(|s| s.peer_addr().ok() == Some(peer))
}

/// tiny_http does not expose the connection's fd: find the socket whose
/// peer is this client and whose local port is ours.
fn find_socket(peer: SocketAddr, port: u16) -> Option<RawFd> {
    scan_sockets(|s| {
        s.peer_addr().ok() == Some(peer) && s.local_addr().ok().map(|a| a.port()) == Some(port)
    })
}

fn scan_sockets(matches: impl Fn(&TcpStream) -> bool) -> Option<RawFd> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        // SAFETY: borrowed only for getsockname/getpeername; never closed.
        let s = std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
        if matches(&s) {
            return Some(fd);
        }
    }
    None
}
