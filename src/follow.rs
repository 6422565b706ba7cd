//! `GET /logs/{id}?follow=true`: a chunked stream of new log lines, on a
//! thread of its own (never a worker, never the supervisor). The thread
//! watches the client's TCP state, so a client that goes away
//! frees its thread and fds within `POLL_EVERY`, even when no line is written.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{PollTimeout, poll};
use tiny_http::Request;

use crate::conn::Connection;
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
    let conn = peer.and_then(|p| Connection::find_on_port(p, server_port));
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
        let _ = poll(
            &mut [],
            PollTimeout::try_from(POLL_EVERY).unwrap_or(PollTimeout::MAX),
        );
        if conn.as_ref().is_some_and(Connection::client_gone) {
            break;
        }
    }
}
