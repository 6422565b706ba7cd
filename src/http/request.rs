//! Parsing a request head: the request line and the header fields, from
//! bytes already read, with hard caps on line and head length.
//!
//! Pure: the connection loop (`conn.rs`) reads into a buffer and asks
//! `parse_head` whether a whole head is there yet. Nothing is buffered past
//! the caps: a head that would exceed them is refused as soon as the cap is
//! crossed, whether or not its end has arrived.

/// Longest accepted line of a request head (request line or one header).
pub const MAX_LINE: usize = 16 * 1024;
/// Longest accepted request head, all lines together.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 100;

/// A parsed request head. Owned: it outlives the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The raw request target (`/logs/a?page=2`), not decoded.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
}

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Why a head was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Over `MAX_LINE` or `MAX_HEAD` (431).
    TooLarge(&'static str),
    /// Not HTTP (400).
    Malformed(&'static str),
    /// HTTP/2 or later, or HTTP/0.9 (505).
    Version,
}

impl Head {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query part of the target (without `?`), or "".
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// Does the client want the connection kept open after this exchange?
    pub fn keep_alive(&self) -> bool {
        let tokens = self.header("connection").unwrap_or("");
        let has = |t: &str| tokens.split(',').any(|x| x.trim().eq_ignore_ascii_case(t));
        if self.minor == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    /// The body framing (RFC 9112 6.3). A request with both framings, a
    /// transfer coding other than chunked, or conflicting lengths is refused:
    /// those are how requests get smuggled past proxies.
    pub fn framing(&self) -> Result<Framing, HeadError> {
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("transfer-encoding") {
                if !v.trim().eq_ignore_ascii_case("chunked") || chunked {
                    return Err(HeadError::Malformed("unsupported Transfer-Encoding"));
                }
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                let v = v.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HeadError::Malformed("invalid Content-Length"));
                }
                // Larger than any body could be: the handler says 413.
                let n: u64 = v.parse().unwrap_or(u64::MAX);
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Malformed("conflicting Content-Length"));
                }
                length = Some(n);
            }
        }
        match (chunked, length) {
            (true, Some(_)) => Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            )),
            (true, None) => Ok(Framing::Chunked),
            (false, Some(0) | None) => Ok(Framing::None),
            (false, Some(n)) => Ok(Framing::Length(n)),
        }
    }
}

/// Look for a complete head at the start of `buf`. `Ok(None)`: not complete
/// yet, and within the caps so far. `Ok(Some((head, used)))`: the head and
/// how many bytes of `buf` it took (the rest is body or the next request).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    // Blank lines before a request line are allowed (RFC 9112 2.2).
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") || buf[start..].starts_with(b"\n") {
        start += if buf[start] == b'\r' { 2 } else { 1 };
        if start > MAX_LINE {
            return Err(HeadError::TooLarge(
                "too many blank lines before the request",
            ));
        }
    }
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut at = start;
    loop {
        let rest = &buf[at..];
        let Some(nl) = memchr(b'\n', &rest[..rest.len().min(MAX_LINE + 1)]) else {
            if rest.len() > MAX_LINE {
                return Err(HeadError::TooLarge("a request line or header is too long"));
            }
            if buf.len() > MAX_HEAD {
                return Err(HeadError::TooLarge("the request head is too large"));
            }
            return Ok(None);
        };
        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        at += nl + 1;
        if at - start > MAX_HEAD {
            return Err(HeadError::TooLarge("the request head is too large"));
        }
        if line.is_empty() {
            break;
        }
        if lines.len() > MAX_HEADERS {
            return Err(HeadError::TooLarge("too many header fields"));
        }
        lines.push(line);
    }
    let Some((request_line, fields)) = lines.split_first() else {
        return Err(HeadError::Malformed("empty request"));
    };
    let (method, target, minor) = request_line_parts(request_line)?;
    let mut headers = Vec::with_capacity(fields.len());
    for field in fields {
        if field[0] == b' ' || field[0] == b'\t' {
            return Err(HeadError::Malformed("obsolete header line folding"));
        }
        let colon = memchr(b':', field).ok_or(HeadError::Malformed("a header line without ':'"))?;
        let name = &field[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Err(HeadError::Malformed("an invalid header name"));
        }
        let value = trim(&field[colon + 1..]);
        if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return Err(HeadError::Malformed("a control character in a header"));
        }
        headers.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    let head = Head {
        method,
        target,
        minor,
        headers,
    };
    Ok(Some((head, at)))
}

fn request_line_parts(line: &[u8]) -> Result<(String, String, u8), HeadError> {
    let text =
        std::str::from_utf8(line).map_err(|_| HeadError::Malformed("non-ASCII request line"))?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "a request line is METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(HeadError::Malformed("an invalid method"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HeadError::Malformed("an invalid request target"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => return Err(HeadError::Version),
        _ => return Err(HeadError::Malformed("an invalid HTTP version")),
    };
    Ok((method.to_owned(), target.to_owned(), minor))
}

/// tchar of RFC 9110 5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Decode `%XX` escapes; `None` if malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Query pairs, percent-decoded (`None` values for malformed escapes).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, Option<String>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k, percent_decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        let (h, used) = parse_head(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(used, raw.find("\r\n\r\n").unwrap() + 4);
        h
    }

    #[test]
    fn parses_a_request() {
        let h = head("GET /logs/a?page=2 HTTP/1.1\r\nHost: x\r\nexeio-api-key:  k \r\n\r\nBODY");
        assert_eq!(h.method, "GET");
        assert_eq!((h.path(), h.query()), ("/logs/a", "page=2"));
        assert_eq!(h.header("EXEIO-API-KEY"), Some("k"));
        assert!(h.keep_alive());
        assert_eq!(h.framing(), Ok(Framing::None));
        let h = head("POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\n");
        assert!(!h.keep_alive());
        assert_eq!(h.framing(), Ok(Framing::Length(5)));
        let h = head("POST / HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(!h.keep_alive());
        assert_eq!(h.framing(), Ok(Framing::Chunked));
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        for part in ["", "GET / HT", "GET / HTTP/1.1\r\nHost: x\r\n", "\r\n"] {
            assert_eq!(parse_head(part.as_bytes()), Ok(None), "{part:?}");
        }
    }

    #[test]
    fn caps_hold_before_the_end_arrives() {
        let long = format!("GET /{} HTTP/1.1", "a".repeat(MAX_LINE));
        assert!(matches!(
            parse_head(long.as_bytes()),
            Err(HeadError::TooLarge(_))
        ));
        let mut many = "GET / HTTP/1.1\r\n".to_owned();
        while many.len() <= MAX_HEAD {
            many.push_str(&format!("X-A: {}\r\n", "b".repeat(1000)));
        }
        assert!(matches!(
            parse_head(many.as_bytes()),
            Err(HeadError::TooLarge(_))
        ));
        // just under the line cap is fine
        let ok = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE - 20));
        assert!(parse_head(ok.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn refuses_what_is_not_http() {
        let bad = [
            "GET\r\n\r\n",
            "GET / HTTP/1.1 x\r\n\r\n",
            "GET / FTP/1.0\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ];
        for raw in bad {
            assert!(
                matches!(parse_head(raw.as_bytes()), Err(HeadError::Malformed(_))),
                "{raw:?}"
            );
        }
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Version)
        );
    }

    #[test]
    fn framing_refuses_smuggling() {
        let framing = |extra: &str| head(&format!("POST / HTTP/1.1\r\n{extra}\r\n")).framing();
        assert!(framing("Content-Length: 1\r\nTransfer-Encoding: chunked\r\n").is_err());
        assert!(framing("Content-Length: 1\r\nContent-Length: 2\r\n").is_err());
        assert_eq!(
            framing("Content-Length: 2\r\nContent-Length: 2\r\n"),
            Ok(Framing::Length(2))
        );
        assert!(framing("Content-Length: -1\r\n").is_err());
        assert_eq!(
            framing("Content-Length: 99999999999999999999\r\n"),
            Ok(Framing::Length(u64::MAX))
        );
        assert!(framing("Transfer-Encoding: gzip, chunked\r\n").is_err());
        assert_eq!(
            framing("Content-Length: 1000000000000000\r\n"),
            Ok(Framing::Length(1_000_000_000_000_000))
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb+c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None);
        let q: Vec<_> = query_pairs("a=1&&b&c=%41").collect();
        assert_eq!(
            q,
            [
                ("a", Some("1".into())),
                ("b", Some(String::new())),
                ("c", Some("A".into()))
            ]
        );
    }
}
