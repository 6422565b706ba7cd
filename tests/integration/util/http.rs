//! A tiny HTTP/1.1 client over a raw `TcpStream`, the only one of the tests:
//! one request per connection (`Connection: close`), any bytes, a deadline,
//! interim 1xx answers skipped, a stream cut after its head, chunked bodies
//! decoded; and connections from other loopback addresses.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

/// An HTTP response; `body` is de-chunked.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {} {:?}",
                self.status, self.body
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `message` of an error body (empty if missing).
    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or("").to_string()
    }
}

/// The bytes of one HTTP/1.1 request with `Connection: close`. `body` goes with a
/// `Content-Length` unless `chunked`, when it is sent as one chunk.
pub fn encode(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    chunked: bool,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut out = Vec::new();
    match (body, chunked) {
        (Some(b), true) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            out.extend_from_slice(head.as_bytes());
            if !b.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        (Some(b), false) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(b);
        }
        (None, _) => {
            head.push_str("\r\n");
            out.extend_from_slice(head.as_bytes());
        }
    }
    out
}

/// Sends `bytes` on a fresh connection and reads one response (see `read_response`).
/// A failed write is not an error by itself: the server may answer before it has
/// read everything (a 401 or 413), so the response is read anyway.
pub fn exchange(addr: &str, bytes: &[u8], timeout: Duration) -> Result<Response, String> {
    exchange_from(None, addr, bytes, timeout)
}

/// `exchange` from the local address `from` (a client from elsewhere).
pub fn exchange_from(
    from: Option<&str>,
    addr: &str,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let connected = match from {
        Some(from) => connect_from(from, addr),
        None => TcpStream::connect(addr),
    };
    let mut s = connected.map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_write_timeout(Some(timeout));
    let wrote = s.write_all(bytes);
    read_response(&mut s, deadline).map_err(|e| format!("{e} (write: {wrote:?})"))
}

/// `exchange` of a request built by `encode` with `&str` headers.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    exchange(addr, &encode(method, path, &headers, body, false), EXCHANGE)
}

/// Deadline of one exchange unless a test says otherwise.
pub const EXCHANGE: Duration = Duration::from_secs(60);

/// Write only the head of a request (its body, if any, comes separately).
pub fn write_head(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_len: Option<usize>,
) {
    let mut bytes = encode(
        method,
        path,
        &headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
        None,
        false,
    );
    if let Some(n) = body_len {
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
    }
    s.write_all(&bytes).expect("write request head");
}

/// Reads one response before `deadline`: interim `1xx` answers are skipped, a body
/// with a `Content-Length` is read to its length, a chunked `text/plain` body (a
/// log follow stream, which never ends) is cut right after the head, anything
/// else is read to EOF.
pub fn read_response(s: &mut TcpStream, deadline: Instant) -> Result<Response, String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let resp = parse_response(&buf);
            if (100..200).contains(&resp.status) {
                buf.drain(..end + 4);
                continue;
            }
            let body_len = buf.len() - end - 4;
            let chunked = resp
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
            let stream = chunked
                && resp.header("content-type").is_some_and(|v| {
                    v.starts_with("text/plain") || v.starts_with("text/event-stream")
                });
            let length: Option<usize> = resp.header("content-length").and_then(|v| v.parse().ok());
            if stream || length.is_some_and(|n| body_len >= n) {
                return Ok(resp);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no complete response in time; got {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "timed out reading the response; got {:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            Err(e) if buf.is_empty() => return Err(format!("read: {e}")),
            Err(_) => break,
        }
    }
    if find(&buf, b"\r\n\r\n").is_none() {
        return Err(format!(
            "connection closed without a response; got {:?}",
            String::from_utf8_lossy(&buf)
        ));
    }
    Ok(parse_response(&buf))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection that must be answered (panics otherwise).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A connection to `addr` from the local address `from` (another loopback
/// address stands for another client).
pub fn connect_from(from: &str, addr: &str) -> std::io::Result<TcpStream> {
    connect_small(from, addr, None)
}

/// `connect_from` with a receive buffer of `rcvbuf` bytes set before the
/// connection is made (a client that reads slowly, from the start).
pub fn connect_small(from: &str, addr: &str, rcvbuf: Option<usize>) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket, sockopt,
    };
    let to: std::net::SocketAddrV4 = addr.parse().map_err(std::io::Error::other)?;
    let from: std::net::Ipv4Addr = from.parse().map_err(std::io::Error::other)?;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if let Some(n) = rcvbuf {
        setsockopt(&fd, sockopt::RcvBuf, &n)?;
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(std::net::SocketAddrV4::new(from, 0)),
    )?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to))?;
    Ok(TcpStream::from(fd))
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: String::new(),
    };
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else if let Some(n) = resp.header("content-length").and_then(|v| v.parse().ok()) {
        rest[..rest.len().min(n)].to_vec()
    } else {
        rest.to_vec()
    };
    resp.body = String::from_utf8_lossy(&body).to_string();
    resp
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            break;
        };
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..data.len().min(size)]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}
