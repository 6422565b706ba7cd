//! A minimal keep-alive HTTP/1.1 client for the benchmark: one request at a
//! time on one TCP connection (TCP_NODELAY, the request in one write),
//! bodies by Content-Length or chunked. Reconnects when the server closes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

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
        self.connect()?;
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

        let (status, close) = read_response(reader, &mut self.line, out)?;
        if close {
            self.stream = None;
        }
        Ok(status)
    }

    /// Connect now, unless connected; the next request goes on it.
    pub fn connect(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            self.stream = Some(BufReader::with_capacity(64 * 1024, s));
        }
        Ok(())
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

/// A TCP connection from the loopback address `from` (another client):
/// the socket is bound before it connects. `rcvbuf` sets a small receive
/// buffer first (a client that reads slowly). Connecting gives up after
/// 10 s (SO_SNDTIMEO, which also bounds each later write).
pub fn connect_from(
    from: Ipv4Addr,
    to: SocketAddr,
    rcvbuf: Option<usize>,
) -> io::Result<TcpStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket, sockopt,
    };
    let SocketAddr::V4(to) = to else {
        return Err(io::Error::other("IPv4 only"));
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if let Some(n) = rcvbuf {
        setsockopt(&fd, sockopt::RcvBuf, &n)?;
    }
    let timeout = nix::sys::time::TimeVal::new(10, 0);
    setsockopt(&fd, sockopt::SendTimeout, &timeout)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
    Ok(TcpStream::from(fd))
}

/// One authenticated GET on a new connection from 127.0.0.1, timed from
/// connect to the whole answer: (ms in all, ms of them connecting). An
/// answer other than 200 is an error.
pub fn fresh_get_ms(addr: SocketAddr, key: &str, path: &str) -> Result<(f64, f64), String> {
    let mut c = Conn::new(addr, key);
    let mut body = Vec::new();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    c.connect().map_err(|e| format!("connect {addr}: {e}"))?;
    let connecting = ms(t);
    match c.send("GET", path, None, &mut body) {
        Ok(200) => Ok((ms(t), connecting)),
        Ok(s) => Err(format!(
            "GET {path}: HTTP {s}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
        Err(e) => Err(format!("GET {path}: {e}")),
    }
}

/// The status of the first response line on `s`, read within `timeout`;
/// None when the connection closed (or timed out) before one came.
pub fn read_status(s: &mut TcpStream, timeout: Duration) -> Option<u16> {
    s.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = [0u8; 64];
    let mut have = 0;
    while have < 12 {
        match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
    }
    let line = std::str::from_utf8(&buf[..have]).ok()?;
    line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// One response off `r`, its body into `out` (cleared first): (status,
/// whether the server closes the connection after it).
pub fn read_response(
    r: &mut impl BufRead,
    line: &mut String,
    out: &mut Vec<u8>,
) -> io::Result<(u16, bool)> {
    line.clear();
    if r.read_line(line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        if r.read_line(line)? == 0 {
            return Err(bad("connection closed in the headers".into()));
        }
        let h = line.trim_end();
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
        read_chunked(r, out, line)?;
    } else if let Some(n) = length {
        out.resize(n, 0);
        r.read_exact(out)?;
    } else {
        r.read_to_end(out)?;
        close = true;
    }
    Ok((status, close))
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
