//! Parsing a request head: `httparse` (the fuzzed parser under hyper) reads
//! the request line and the header fields; this module adds the caps, the
//! checks HTTP/1.1 asks of a server (one `Host`, one framing, exact framing
//! values), and incremental reading.
//!
//! Pure: the connection loop (`conn.rs`) reads into a buffer and asks a
//! `HeadReader` whether a whole head is there yet. The reader remembers how
//! far it has looked, so each read scans only the new bytes; `httparse` runs
//! once, on a complete head. Nothing is buffered past the caps: a head that
//! would exceed them is refused as soon as the cap is crossed.

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
    /// The request target in origin form (`/logs/a?page=2`), not decoded;
    /// an absolute-form target (`http://host/x`) is reduced to its path.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Names as sent; values without surrounding SP/HTAB (obs-text, bytes
    /// 0x80 and up, as U+FFFD).
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
        let has = |t: &str| {
            tokens
                .split(',')
                .any(|x| trim_str(x).eq_ignore_ascii_case(t))
        };
        if self.minor == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    /// The body framing (RFC 9112 6.3). A request with both framings, a
    /// transfer coding other than chunked, or conflicting lengths is refused:
    /// those are how requests get smuggled past proxies. Values are compared
    /// exactly, after trimming only SP and HTAB.
    pub fn framing(&self) -> Result<Framing, HeadError> {
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for (k, v) in &self.headers {
            let v = trim_str(v);
            if k.eq_ignore_ascii_case("transfer-encoding") {
                if !v.eq_ignore_ascii_case("chunked") || chunked {
                    return Err(HeadError::Malformed("unsupported Transfer-Encoding"));
                }
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
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

/// Finds the end of a head as bytes arrive, looking at each byte once.
#[derive(Debug, Default, Clone)]
pub struct HeadReader {
    /// Bytes of the buffer already looked at.
    checked: usize,
    /// Where the current line starts.
    line_start: usize,
    /// A non-empty line has been seen (blank lines before the request
    /// line are skipped, RFC 9112 2.2).
    seen_line: bool,
    lines: usize,
}

impl HeadReader {
    /// Look for a complete head at the start of `buf`, which holds what was
    /// given before plus new bytes. `Ok(None)`: not complete yet, within the
    /// caps so far. `Ok(Some((head, used)))`: the head and how many bytes of
    /// `buf` it took (the rest is body or the next request); the reader is
    /// then ready for the next head, at the start of what is left.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
        let mut at = self.checked.min(buf.len());
        while let Some(nl) = memchr(b'\n', &buf[at..]) {
            let end = at + nl;
            let line = &buf[self.line_start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE {
                return Err(HeadError::TooLarge("a request line or header is too long"));
            }
            at = end + 1;
            self.line_start = at;
            if line.is_empty() {
                if self.seen_line {
                    *self = HeadReader::default();
                    return parse_complete(&buf[..at]).map(|h| Some((h, at)));
                }
                if at > MAX_LINE {
                    return Err(HeadError::TooLarge(
                        "too many blank lines before the request",
                    ));
                }
            } else {
                self.seen_line = true;
                self.lines += 1;
                if self.lines > MAX_HEADERS + 1 {
                    return Err(HeadError::TooLarge("too many header fields"));
                }
            }
            if at > MAX_HEAD {
                return Err(HeadError::TooLarge("the request head is too large"));
            }
        }
        self.checked = buf.len();
        if buf.len() - self.line_start > MAX_LINE {
            return Err(HeadError::TooLarge("a request line or header is too long"));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge("the request head is too large"));
        }
        Ok(None)
    }
}

/// `HeadReader::parse` from scratch (tests, fuzzing).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    HeadReader::default().parse(buf)
}

/// A whole head (through its blank line), through `httparse`.
fn parse_complete(raw: &[u8]) -> Result<Head, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Malformed("an incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooLarge("too many header fields"));
        }
        Err(httparse::Error::Version) => return Err(version_error(raw)),
        Err(e) => return Err(HeadError::Malformed(parse_error(e))),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("an incomplete request line"));
    };
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HeadError::Malformed("an invalid request target"));
    }
    let target = origin_form(target)?;
    let mut headers = Vec::with_capacity(req.headers.len());
    let mut hosts = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
        let value = trim(h.value);
        headers.push((
            h.name.to_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    if minor == 1 && hosts != 1 {
        return Err(HeadError::Malformed(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if hosts > 1 {
        return Err(HeadError::Malformed("more than one Host header"));
    }
    Ok(Head {
        method: method.to_owned(),
        target,
        minor,
        headers,
    })
}

/// 505 for another HTTP version, 400 for something that is not one.
fn version_error(raw: &[u8]) -> HeadError {
    let line = raw
        .split(|&b| b == b'\n')
        .find(|l| !trim(l).is_empty() && *l != b"\r");
    let version = line
        .and_then(|l| l.rsplit(|&b| b == b' ').next())
        .unwrap_or(b"");
    let version = version.strip_suffix(b"\r").unwrap_or(version);
    if version.starts_with(b"HTTP/") {
        HeadError::Version
    } else {
        HeadError::Malformed("an invalid HTTP version")
    }
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "an invalid header name",
        httparse::Error::HeaderValue => "a control character in a header value",
        httparse::Error::NewLine => "a bad line ending",
        httparse::Error::Status | httparse::Error::Version => "an invalid HTTP version",
        httparse::Error::Token => "an invalid method or request target",
        httparse::Error::TooManyHeaders => "too many header fields",
    }
}

/// The path and query of a target: origin form as it is, absolute form
/// (`http://host:port/path?q`, RFC 9112 3.2.2) reduced to its path.
fn origin_form(target: &str) -> Result<String, HeadError> {
    if target.starts_with('/') {
        return Ok(target.to_owned());
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        // authority-form (CONNECT) and asterisk-form (OPTIONS): routed as
        // they are, to a 404.
        return Ok(target.to_owned());
    };
    let path_at = rest.find(['/', '?']).unwrap_or(rest.len());
    if path_at == 0 {
        return Err(HeadError::Malformed("an absolute target without a host"));
    }
    let path = &rest[path_at..];
    Ok(if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    })
}

/// Without surrounding SP and HTAB (and nothing else: not `str::trim`).
fn trim_str(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
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
        let h = head(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
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
        let ok = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(MAX_LINE - 20)
        );
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
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x1bb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \x0b2\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x0c\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
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
        let framing =
            |extra: &str| head(&format!("POST / HTTP/1.1\r\nHost: x\r\n{extra}\r\n")).framing();
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
    fn framing_values_are_exact() {
        let framing =
            |extra: &str| head(&format!("POST / HTTP/1.1\r\nHost: x\r\n{extra}\r\n")).framing();
        assert!(framing("Transfer-Encoding: chunked\u{3000}\r\n").is_err());
        assert!(framing("Transfer-Encoding: chunked, chunked\r\n").is_err());
        assert!(framing("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n").is_err());
        assert!(framing("Content-Length: +2\r\n").is_err());
        assert!(framing("Content-Length: 2 2\r\n").is_err());
        assert_eq!(
            framing("Transfer-Encoding: \tChunked \r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(framing("Content-Length:  2\t\r\n"), Ok(Framing::Length(2)));
    }

    #[test]
    fn heads_are_read_incrementally() {
        let raw = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut r = HeadReader::default();
        let mut found = None;
        for n in 1..=raw.len() {
            if let Some(done) = r.parse(&raw[..n]).unwrap() {
                found = Some((n, done));
                break;
            }
            assert_eq!(r.checked, n, "each byte is looked at once");
        }
        let (n, (h, used)) = found.unwrap();
        assert_eq!((h.path(), used, n), ("/a", 30, 30));
        let (h, used) = r.parse(&raw[used..]).unwrap().unwrap();
        assert_eq!((h.path(), used), ("/b", 28));
    }

    #[test]
    fn absolute_form_targets_are_reduced_to_their_path() {
        let h = head("GET http://example.com:8080/list?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!((h.path(), h.query()), ("/list", "x=1"));
        let h = head("GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.path(), "/");
        assert!(parse_head(b"GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
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
