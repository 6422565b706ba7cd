//! One client connection, on one thread of the pool: read a head within its
//! deadline, hand the exchange to the service, write the reply, and go round
//! again while the connection is kept alive.
//!
//! Budgets (STYLE 19): a head must arrive within `head_timeout` (counted from
//! the first byte of a request, or from accept for the first one), an idle
//! kept-alive connection is closed after `idle_timeout`, a body must arrive
//! within `body_timeout`, and every write times out after `write_timeout`
//! (SO_SNDTIMEO). A body the service did not read is never drained: the
//! connection is closed after the reply instead.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Limits;
use super::exchange::Exchange;
use super::request::{HeadError, HeadReader};
use super::slots::{Phase, Slot};
use super::tls::TlsStream;
use crate::sys;

/// What a connection's bytes travel over.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Transport {
    pub fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => &s.sock.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_all(buf),
            Transport::Tls(s) => s.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// Bytes read from the client and not yet used, plus the transport.
pub struct Conn {
    pub io: Transport,
    pub peer: SocketAddr,
    pub limits: Arc<Limits>,
    /// Zeroed once; `filled` bytes of it are data. Grows only for a long
    /// head (up to the head cap) and shrinks back after it.
    buf: Vec<u8>,
    filled: usize,
    read_timeout: Option<Duration>,
    /// Its place in the connection table (none in tests).
    pub slot: Option<Slot>,
}

/// Size of a connection's read buffer.
const BUF: usize = 8 * 1024;

impl Conn {
    pub fn new(io: Transport, peer: SocketAddr, limits: Arc<Limits>, slot: Option<Slot>) -> Conn {
        Conn {
            io,
            peer,
            limits,
            buf: vec![0; BUF],
            filled: 0,
            read_timeout: None,
            slot,
        }
    }

    /// The bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Read more bytes, waiting at most until `deadline`. `Ok(0)`: the
    /// client closed. A timeout is `ErrorKind::TimedOut`.
    pub fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // Whole 100 ms steps, so a keep-alive loop does not set the socket
        // option again on every request.
        let want = Duration::from_millis(left.as_millis().div_ceil(100).max(1) as u64 * 100);
        match &mut self.io {
            // Each of rustls' reads of the socket ends at the deadline.
            Transport::Tls(s) => s.sock.deadline = Some(deadline),
            Transport::Plain(s) if self.read_timeout != Some(want) => {
                s.set_read_timeout(Some(want))?;
                self.read_timeout = Some(want);
            }
            Transport::Plain(_) => {}
        }
        if self.buf.len() - self.filled < 1024 {
            let grown = (self.buf.len() * 2).min(super::request::MAX_HEAD + 2 * BUF);
            self.buf.resize(grown.max(self.filled + 1024), 0);
        }
        loop {
            // A signal (SIGHUP) interrupts a read with a timeout even under
            // SA_RESTART: read again.
            match self.io.read(&mut self.buf[self.filled..]) {
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Tell the connection table where this connection is; false when it
    /// should close instead of waiting (exeio is stopping).
    fn set_phase(&self, phase: Phase) -> bool {
        self.slot.as_ref().is_none_or(|s| s.set_phase(phase))
    }

    /// A request on this connection authenticated: it keeps its slot.
    pub fn authenticated(&self) {
        if let Some(s) = &self.slot {
            s.state.authenticated();
        }
    }

    /// Drop the first `n` bytes of the data.
    pub fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
        if self.filled < BUF && self.buf.len() > BUF {
            self.buf.truncate(BUF);
            self.buf.shrink_to_fit();
        }
    }
}

/// Serve requests on `conn` until it closes, fails or times out.
pub fn serve(mut conn: Conn, service: &dyn super::Service) {
    let limits = conn.limits.clone();
    let mut first = true;
    let mut reader = HeadReader::default();
    loop {
        // Wait for the first byte: the head timeout on a new connection, the
        // idle timeout between requests.
        let idle = if first {
            limits.head_timeout
        } else {
            limits.idle_timeout
        };
        let mut head_deadline = Instant::now() + idle;
        let mut started = !conn.data().is_empty();
        if started && !first {
            head_deadline = Instant::now() + limits.head_timeout;
        }
        let phase = match (started, first) {
            (true, _) => Phase::Head,
            (false, true) => Phase::Fresh,
            (false, false) => Phase::Idle,
        };
        if !conn.set_phase(phase) {
            return;
        }
        let head = loop {
            match reader.parse(conn.data()) {
                Ok(Some((head, used))) => {
                    conn.consume(used);
                    conn.set_phase(Phase::Busy);
                    break head;
                }
                Ok(None) => {}
                Err(e) => return refuse_head(&mut conn, e),
            }
            match conn.fill(head_deadline) {
                Ok(0) => return,
                Ok(_) if !started => {
                    started = true;
                    conn.set_phase(Phase::Head);
                    if !first {
                        head_deadline = Instant::now() + limits.head_timeout;
                    }
                }
                Ok(_) => {}
                Err(_) => return, // timed out, reset, or a TLS failure: close
            }
        };
        first = false;
        let mut ex = match Exchange::new(&mut conn, head) {
            Ok(ex) => ex,
            Err(e) => return refuse_head(&mut conn, e),
        };
        service.serve(&mut ex);
        if !ex.finish() {
            return;
        }
    }
}

/// Answer a head that cannot be served, then close.
fn refuse_head(conn: &mut Conn, e: HeadError) {
    let (status, msg) = match e {
        HeadError::TooLarge(m) => (431, m),
        HeadError::Malformed(m) => (400, m),
        HeadError::Version => (505, "only HTTP/1.0 and HTTP/1.1 are spoken here"),
    };
    let body = format!(r#"{{"success":false,"message":"bad request: {msg}"}}"#);
    let _ = super::exchange::write_simple(&mut conn.io, status, &body, true);
    let _ = conn.io.flush();
    sys::close_after_reply(conn.io.socket());
}
