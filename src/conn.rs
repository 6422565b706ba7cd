//! A client's TCP connection, found behind tiny_http's back.
//!
//! tiny_http does not expose a connection's fd, yet three rare cases need
//! it: a follow stream must notice a client that went away without writing
//! to it, a body read needs a timeout, and a request whose declared body no
//! buffer could hold must be answered without tiny_http ever dropping it.
//! The socket is found by scanning `/proc/self/fd` for the client's address
//! and duplicated, so it stays ours however tiny_http closes its own fds.

use std::io::Write;
use std::mem::ManuallyDrop;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::libc;

const TCP_ESTABLISHED: u8 = 1;

pub struct Connection {
    fd: OwnedFd,
}

impl Connection {
    /// The connection from `peer` (peers are unique per connection on a host).
    pub fn find(peer: SocketAddr) -> Option<Connection> {
        Self::scan(|s| s.peer_addr().ok() == Some(peer))
    }

    /// The connection from `peer` to our `port`.
    pub fn find_on_port(peer: SocketAddr, port: u16) -> Option<Connection> {
        Self::scan(|s| {
            s.peer_addr().ok() == Some(peer) && s.local_addr().ok().map(|a| a.port()) == Some(port)
        })
    }

    fn scan(matches: impl Fn(&TcpStream) -> bool) -> Option<Connection> {
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
            // SAFETY: borrowed for getsockname/getpeername only; never closed here.
            let s = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
            if matches(&s) {
                // SAFETY: the fd is open (we just queried it); we take our own dup.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) }
                    .try_clone_to_owned()
                    .ok()?;
                return Some(Connection { fd });
            }
        }
        None
    }

    fn stream(&self) -> ManuallyDrop<TcpStream> {
        // SAFETY: wraps our own fd without taking ownership (ManuallyDrop).
        ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(self.fd.as_raw_fd()) })
    }

    /// SO_RCVTIMEO: a blocked read on the connection fails after `timeout`.
    pub fn set_read_timeout(&self, timeout: Duration) {
        let _ = self.stream().set_read_timeout(Some(timeout));
    }

    /// Has the client gone: has the connection left ESTABLISHED (a FIN or
    /// RST arrived)? tiny_http shuts down its read half of the socket, so
    /// poll's hang-up flags would fire at once; the TCP state does not.
    pub fn client_gone(&self) -> bool {
        // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
        let state = unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let r = libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            );
            (r == 0).then_some(info.tcpi_state)
        };
        state.is_some_and(|s| s != TCP_ESTABLISHED)
    }

    /// Write a whole JSON response and close both directions.
    pub fn answer_and_close(&self, status: u16, json: &str) {
        let mut s = self.stream();
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let head = format!(
            "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            json.len()
        );
        let _ = s
            .write_all(head.as_bytes())
            .and_then(|_| s.write_all(json.as_bytes()));
        let _ = s.shutdown(Shutdown::Both);
    }
}
