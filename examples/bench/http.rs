//! A minimal keep-alive HTTP/1.1 client for the benchmark: one request at a
//! time on one TCP connection (TCP_NODELAY, the request in one write),
//! bodies by Content-Length or chunked. Reconnects when the server closes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

pub struct Conn {
    addr: SocketAddr,
    key: String,
    stream: Option<BufReader<TcpStream>>,
    request: Vec<u8>,
    line: String,
}

impl Conn {
    pub fn new(addr: SocketAddr, key: &str) -> Conn {
        Conn {
            addr,
            key: key.to_owned(),
            stream: None,
            request: Vec::with_capacity(512),
            line: String::with_capacity(128),
        }
    }

    /// One request; the body goes into `out` (cleared first). Returns the
    /// status. A keep-alive connection the server closed is retried once.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> io::Result<u16> {
        let reused = self.stream.is_some();
        match self.try_send(method, path, body, out) {
            Err(_) if reused => {
                self.stream = None;
                self.try_send(method, path, body, out)
            }
            r => r,
        }
    }

    fn try_send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> io::Result<u16> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            self.stream = Some(BufReader::with_capacity(64 * 1024, s));
        }
        self.request.clear();
        let body = body.unwrap_or(b"");
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nexeio-api-key: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            self.key,
            body.len()
        )?;
        self.request.extend_from_slice(body);
        let reader = self.stream.as_mut().expect("connected above");
        reader.get_mut().write_all(&self.request)?;

        self.line.clear();
        if reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {:?}", self.line)))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            self.line.clear();
            if reader.read_line(&mut self.line)? == 0 {
                return Err(bad("connection closed in the headers".into()));
            }
            let h = self.line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        out.clear();
        if chunked {
            read_chunked(reader, out, &mut self.line)?;
        } else if let Some(n) = length {
            out.resize(n, 0);
            reader.read_exact(out)?;
        } else {
            reader.read_to_end(out)?;
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok(status)
    }

    /// A request whose answer is JSON.
    pub fn json(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let mut out = Vec::new();
        let status = self
            .send(method, path, body.map(str::as_bytes), &mut out)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let value = serde_json::from_slice(&out).map_err(|e| {
            format!(
                "{method} {path}: HTTP {status}, body is not JSON ({e}): {}",
                String::from_utf8_lossy(&out[..out.len().min(200)])
            )
        })?;
        Ok((status, value))
    }

    /// A request that must answer 2xx with JSON.
    pub fn ok(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<Value, String> {
        let (status, value) = self.json(method, path, body)?;
        if !(200..300).contains(&status) {
            return Err(format!("{method} {path}: HTTP {status}: {value}"));
        }
        Ok(value)
    }
}

fn read_chunked(r: &mut impl BufRead, out: &mut Vec<u8>, line: &mut String) -> io::Result<()> {
    loop {
        line.clear();
        r.read_line(line)?;
        let hex = line.trim().split(';').next().unwrap_or("");
        let size =
            usize::from_str_radix(hex, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                line.clear();
                if r.read_line(line)? == 0 || line.trim_end().is_empty() {
                    return Ok(());
                }
            }
        }
        let start = out.len();
        out.resize(start + size, 0);
        r.read_exact(&mut out[start..])?;
        line.clear();
        r.read_line(line)?;
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
