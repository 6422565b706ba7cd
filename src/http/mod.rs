//! exeio's HTTP/1.1 server: a blocking accept loop on one thread, and one
//! pooled thread per admitted connection. No async runtime.
//!
//! ```text
//! accept thread ── over a cap? ──▶ displace the oldest idle/keyless one, or a whole 503 (refuse.rs)
//!       │ admitted (a Slot: global and per-address counts)
//!       ▼
//! idle pool thread, or a new one ──▶ conn::serve: head ▶ Service::serve ▶ reply, keep-alive
//! ```
//!
//! Why not tiny_http: it cannot cap connections before giving each a
//! thread, bound a request head, time out a head or a write, or keep
//! listening after an accept error (its accept thread ends on `EMFILE`).
//! Every one of those is a budget a client without a key could exhaust
//! (STYLE 19), so the edge is ours: about 900 lines with its tests.
//!
//! The service (`api`) sees an `Exchange`: the head, the body on demand, and
//! the ways to answer. It never sees a socket.

mod budget;
mod chunked;
mod conn;
mod exchange;
mod listener;
#[cfg(test)]
mod proptests;
pub mod proxy;
mod refuse;
pub mod request;
mod slots;
pub mod tls;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub use exchange::{
    BodyError, BodyWriter, CopyError, Exchange, MIN_RATE, RATE_GRACE, Response, Stream, reason,
};
pub use listener::{Server, start};
pub use slots::group;

/// Budgets of the edge (SPEC 3a).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_address: usize,
    /// From accept (or a request's first byte) to the end of its head.
    pub head_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A body must arrive within this.
    pub body_timeout: Duration,
    /// Each write to a client that does not read fails after this.
    pub write_timeout: Duration,
    /// Peers whose `X-Forwarded-For` (or PROXY header) names the client.
    pub trusted: Vec<proxy::Cidr>,
    /// Trusted peers start each connection with a PROXY v1/v2 header.
    pub proxy_protocol: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_per_address: 32,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            trusted: Vec::new(),
            proxy_protocol: false,
        }
    }
}

/// Answers requests. Called on connection threads, many at once.
pub trait Service: Send + Sync + 'static {
    fn serve(&self, ex: &mut Exchange<'_>);
}

/// Counters of the edge, for `/metrics`.
#[derive(Default)]
pub struct EdgeStats {
    /// Connections being served now.
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    /// Connections closed because a cap was reached: refused at once, or
    /// displaced (idle or unauthenticated) to admit a newer one.
    pub refused: AtomicU64,
    /// `accept` failures (fds exhausted, ...), each retried after a backoff.
    pub accept_errors: AtomicU64,
    /// Connection threads that could not be started.
    pub thread_errors: AtomicU64,
}
