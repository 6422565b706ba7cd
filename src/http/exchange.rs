//! One request and its reply, as a service sees it: the head, the body read
//! on demand within its cap and deadline, and three ways to answer (a whole
//! response, a body written as it is produced, or a stream of chunks).
//!
//! Created by the connection loop (`conn.rs`) for each request; a service
//! (`api`) answers through it. Answering twice is a bug the exchange ignores;
//! not answering at all gets a 500.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::chunked::chunk_size;
use super::conn::{Conn, Transport};
use super::request::{Framing, Head, HeadError};
use crate::sys;

mod copy;
pub use copy::{CopyError, MIN_RATE, RATE_GRACE};

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Declared or sent larger than the cap (413).
    TooLarge,
    /// Not all of it arrived within the body timeout (408).
    Timeout,
    /// Bad chunked framing, or the client went away (400).
    Malformed(&'static str),
}

/// A whole response.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

pub struct Exchange<'c> {
    conn: &'c mut Conn,
    pub head: Head,
    framing: Framing,
    /// The body has been read to its end (or there was none).
    body_read: bool,
    responded: bool,
    /// Close the connection after this exchange.
    close: bool,
    /// The status sent, for the caller's records.
    status: u16,
    /// A `HEAD` request: every reply is its head only (RFC 9110 9.3.2).
    head_only: bool,
    /// The client: the peer, or whom a trusted proxy names (`proxy`).
    client: SocketAddr,
}

impl<'c> Exchange<'c> {
    pub(super) fn new(conn: &'c mut Conn, head: Head) -> Result<Exchange<'c>, HeadError> {
        let framing = head.framing()?;
        let close = !head.keep_alive();
        let head_only = head.method == "HEAD";
        let client = if conn.limits.trusted.is_empty() {
            conn.peer
        } else {
            let xff = head
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
                .map(|(_, v)| v.as_str());
            super::proxy::forwarded_for(&conn.limits.trusted, conn.peer, xff)
        };
        Ok(Exchange {
            conn,
            head,
            framing,
            body_read: framing == Framing::None,
            responded: false,
            close,
            status: 0,
            head_only,
            client,
        })
    }

    pub fn method(&self) -> &str {
        &self.head.method
    }

    pub fn path(&self) -> &str {
        self.head.path()
    }

    pub fn query(&self) -> &str {
        self.head.query()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The client's address (behind a trusted proxy: the one it names).
    pub fn peer(&self) -> SocketAddr {
        self.client
    }

    /// The request presented a valid key or session: the connection is no
    /// longer one that a new one may displace while it is busy (SPEC 3a).
    pub fn authenticated(&self) {
        self.conn.authenticated();
    }

    pub fn is_tls(&self) -> bool {
        self.conn.io.is_tls()
    }

    /// The status of the reply, once answered (0 before).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Does the request declare a body longer than `limit`? (Answerable
    /// without reading a byte of it.)
    pub fn declares_more_than(&self, limit: usize) -> bool {
        matches!(self.framing, Framing::Length(n) if n > limit as u64)
    }

    /// Read the whole body, at most `limit` bytes, within the body timeout.
    /// A body over the limit is not read (the connection closes after the
    /// reply). A second call returns an empty body.
    pub fn read_body(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        if self.body_read {
            return Ok(Vec::new());
        }
        if self.declares_more_than(limit) {
            self.close = true;
            return Err(BodyError::TooLarge);
        }
        let deadline = Instant::now() + self.conn.limits.body_timeout;
        if self
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && self.head.minor == 1
            && !self.responded
        {
            let _ = self.conn.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let result = match self.framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(n) => self.read_exact(n as usize, deadline),
            Framing::Chunked => self.read_chunked(limit, deadline),
        };
        match &result {
            Ok(_) => self.body_read = true,
            Err(_) => self.close = true,
        }
        result
    }

    fn read_exact(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, BodyError> {
        let mut body = Vec::with_capacity(n);
        while body.len() < n {
            if self.conn.data().is_empty() {
                self.more(deadline)?;
            }
            let take = (n - body.len()).min(self.conn.data().len());
            body.extend_from_slice(&self.conn.data()[..take]);
            self.conn.consume(take);
        }
        Ok(body)
    }

    /// A chunked body (RFC 9112 7.1). Sizes go through
    /// `httparse::parse_chunk_size` (plus `chunk_size`'s stricter rules) and
    /// checked arithmetic; chunk extensions and trailer fields count toward
    /// `limit` like the data, so none of it can grow without bound.
    fn read_chunked(&mut self, limit: usize, deadline: Instant) -> Result<Vec<u8>, BodyError> {
        let mut body = Vec::new();
        // Bytes of extensions so far.
        let mut extra = 0usize;
        loop {
            let (used, size, ext) = loop {
                match chunk_size(self.conn.data()) {
                    Ok(Some(found)) => break found,
                    Ok(None) if self.conn.data().len() > limit - body.len() - extra + 32 => {
                        return Err(BodyError::TooLarge);
                    }
                    Ok(None) => self.more(deadline)?,
                    Err(m) => return Err(BodyError::Malformed(m)),
                }
            };
            self.conn.consume(used);
            extra += ext;
            let total = usize::try_from(size)
                .ok()
                .and_then(|n| n.checked_add(body.len()))
                .and_then(|n| n.checked_add(extra))
                .ok_or(BodyError::Malformed("chunk size out of range"))?;
            if total > limit {
                return Err(BodyError::TooLarge);
            }
            if size == 0 {
                return self.trailers(limit - total, deadline).map(|()| body);
            }
            let mut left = total - body.len() - extra;
            while left > 0 {
                if self.conn.data().is_empty() {
                    self.more(deadline)?;
                }
                let take = left.min(self.conn.data().len());
                body.extend_from_slice(&self.conn.data()[..take]);
                self.conn.consume(take);
                left -= take;
            }
            while self.conn.data().len() < 2 {
                self.more(deadline)?;
            }
            if &self.conn.data()[..2] != b"\r\n" {
                return Err(BodyError::Malformed("chunk longer than its size"));
            }
            self.conn.consume(2);
        }
    }

    /// The trailer section after the last chunk: header fields, then an
    /// empty line, in at most `room` bytes (what the body cap leaves).
    fn trailers(&mut self, room: usize, deadline: Instant) -> Result<(), BodyError> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            match httparse::parse_headers(self.conn.data(), &mut fields) {
                Ok(httparse::Status::Complete((used, _))) if used > room + 2 => {
                    return Err(BodyError::TooLarge);
                }
                Ok(httparse::Status::Complete((used, _))) => {
                    self.conn.consume(used);
                    return Ok(());
                }
                Ok(httparse::Status::Partial) if self.conn.data().len() > room + 2 => {
                    return Err(BodyError::TooLarge);
                }
                Ok(httparse::Status::Partial) => self.more(deadline)?,
                Err(_) => return Err(BodyError::Malformed("bad trailer fields")),
            }
        }
    }

    fn more(&mut self, deadline: Instant) -> Result<(), BodyError> {
        match self.conn.fill(deadline) {
            Ok(0) => Err(BodyError::Malformed(
                "the client closed before sending its body",
            )),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(BodyError::Timeout),
            Err(_) => Err(BodyError::Malformed(
                "the connection failed while reading the body",
            )),
        }
    }

    /// Send a whole response.
    pub fn respond(&mut self, r: Response) {
        if self.responded {
            return;
        }
        self.responded = true;
        self.status = r.status;
        self.close |= !self.body_read;
        let mut out = head(
            r.status,
            r.content_type,
            &r.headers,
            Some(r.body.len()),
            self.close,
            self.head.minor,
        );
        let sent = if self.head_only {
            self.conn.io.write_all(&out)
        } else if r.body.len() <= 64 * 1024 {
            out.extend_from_slice(&r.body);
            self.conn.io.write_all(&out)
        } else {
            self.conn
                .io
                .write_all(&out)
                .and_then(|_| self.conn.io.write_all(&r.body))
        };
        if sent.and_then(|_| self.conn.io.flush()).is_err() {
            self.close = true;
        }
    }

    /// Start a streamed reply: chunked on HTTP/1.1, raw until close on 1.0.
    /// The connection closes when the stream ends.
    pub fn stream(
        &mut self,
        status: u16,
        content_type: &'static str,
        headers: &[(&'static str, String)],
    ) -> io::Result<Stream<'_>> {
        self.responded = true;
        self.status = status;
        self.close = true;
        // A stream lives long: what its client can leave unread is bounded.
        sys::cap_send_buffer(self.conn.io.socket(), STREAM_SEND_BUFFER);
        let chunked = self.head.minor == 1;
        let mut out = head(status, content_type, headers, None, true, self.head.minor);
        if chunked {
            let at = out.len() - 2;
            out.splice(at..at, *b"Transfer-Encoding: chunked\r\n");
        }
        self.conn.io.write_all(&out)?;
        self.conn.io.flush()?;
        if self.head_only {
            // The head is the whole answer: the handler's stream ends here.
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(Stream {
            io: &mut self.conn.io,
            chunked,
        })
    }

    /// A body written piece by piece: sent with a Content-Length if it stays
    /// under 256 KiB, else streamed in chunks of that size, so a big reply
    /// never sits whole in memory.
    pub fn writer(&mut self, status: u16, content_type: &'static str) -> BodyWriter<'_, 'c> {
        BodyWriter {
            ex: self,
            status,
            content_type,
            buf: Vec::new(),
            stream: None,
            failed: false,
        }
    }

    /// End the exchange; may the connection serve another request?
    pub(super) fn finish(mut self) -> bool {
        if !self.responded {
            self.respond(Response::json(
                500,
                br#"{"success":false,"message":"the request was not answered (internal fault)"}"#
                    .to_vec(),
            ));
        }
        !self.close && self.body_read
    }
}

const BIG_BODY: usize = 256 * 1024;
/// Kernel send buffer of a streamed reply (follow, events).
const STREAM_SEND_BUFFER: usize = 64 * 1024;

/// See `Exchange::writer`.
pub struct BodyWriter<'e, 'c> {
    ex: &'e mut Exchange<'c>,
    status: u16,
    content_type: &'static str,
    buf: Vec<u8>,
    /// Started once the body outgrew `BIG_BODY`: is it chunked?
    stream: Option<bool>,
    failed: bool,
}

impl Write for BodyWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BIG_BODY {
            self.send_buffered()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BodyWriter<'_, '_> {
    /// Has any of the reply gone out yet?
    pub fn started(&self) -> bool {
        self.stream.is_some()
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        let ex = &mut *self.ex;
        let chunked = match self.stream {
            Some(c) => c,
            None => {
                ex.responded = true;
                ex.status = self.status;
                ex.close |= ex.head.minor == 0 || !ex.body_read;
                let chunked = ex.head.minor == 1;
                let mut out = head(
                    self.status,
                    self.content_type,
                    &[],
                    None,
                    ex.close,
                    ex.head.minor,
                );
                if chunked {
                    let at = out.len() - 2;
                    out.splice(at..at, *b"Transfer-Encoding: chunked\r\n");
                }
                self.stream = Some(chunked);
                if let Err(e) = ex.conn.io.write_all(&out) {
                    return self.fail(e);
                }
                chunked
            }
        };
        let r = if ex.head_only {
            Ok(())
        } else if chunked {
            write_chunk(&mut ex.conn.io, &self.buf)
        } else {
            ex.conn.io.write_all(&self.buf)
        };
        self.buf.clear();
        match r {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: io::Error) -> io::Result<()> {
        self.failed = true;
        self.ex.close = true;
        Err(e)
    }

    /// Send what is left.
    pub fn finish(mut self) {
        if self.failed {
            return;
        }
        match self.stream {
            None => {
                let body = std::mem::take(&mut self.buf);
                self.ex.respond(Response {
                    status: self.status,
                    content_type: self.content_type,
                    headers: Vec::new(),
                    body,
                });
            }
            Some(chunked) => {
                if !self.buf.is_empty() && self.send_buffered().is_err() {
                    return;
                }
                let io = &mut self.ex.conn.io;
                let end = if chunked && !self.ex.head_only {
                    io.write_all(b"0\r\n\r\n")
                } else {
                    Ok(())
                };
                if end.and_then(|_| io.flush()).is_err() {
                    self.ex.close = true;
                }
            }
        }
    }
}

/// A streamed reply (see `Exchange::stream`).
pub struct Stream<'e> {
    io: &'e mut Transport,
    chunked: bool,
}

impl Stream<'_> {
    /// Send `data` now, as one chunk.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            write_chunk(self.io, data)?;
        } else {
            self.io.write_all(data)?;
        }
        self.io.flush()
    }

    /// Wait up to `wait` for the client to hang up; true if it has (or if
    /// it sent anything: nothing is expected from it during a stream).
    pub fn client_gone(&self, wait: Duration) -> bool {
        sys::peer_closed(self.io.socket(), wait)
    }

    /// End the stream cleanly.
    pub fn finish(self) {
        if self.chunked {
            let _ = self.io.write_all(b"0\r\n\r\n");
        }
        let _ = self.io.flush();
    }
}

fn write_chunk(io: &mut Transport, data: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    io.write_all(&out)
}

/// A status line and headers, ending with the blank line.
fn head(
    status: u16,
    content_type: &str,
    headers: &[(&'static str, String)],
    length: Option<usize>,
    close: bool,
    minor: u8,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n",
        reason(status)
    );
    if let Some(n) = length {
        let _ = write!(out, "Content-Length: {n}\r\n");
    }
    for (k, v) in headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    // Every reply: no browser guesses a type from a body (SPEC 3a).
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("x-content-type-options"))
    {
        out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A complete JSON reply on a raw transport (refusals before any exchange).
pub(super) fn write_simple(
    io: &mut Transport,
    status: u16,
    json: &str,
    close: bool,
) -> io::Result<()> {
    let mut out = head(status, "application/json", &[], Some(json.len()), close, 1);
    out.extend_from_slice(json.as_bytes());
    io.write_all(&out)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}
