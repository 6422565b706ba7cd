//! A small exeio API client using only the standard library.
//!
//! ```text
//! cargo run --example client -- [--url URL] [--key KEY] COMMAND
//!
//! COMMAND:
//!   info                  GET /info (no key needed)
//!   list                  GET /list
//!   status ID             GET /status/ID
//!   add JSON|@FILE        POST /add (e.g. add @examples/specs/web-server.json)
//!   start ID | stop ID | restart ID | remove ID | clear-log ID
//!   input ID TEXT         POST /input/ID {"input": TEXT}
//!   logs ID [PAGE]        GET /logs/ID?page=PAGE&page_size=50 (page 1 = newest)
//!   follow ID             GET /logs/ID?follow=true (streams until Ctrl-C)
//!   metrics               GET /metrics
//! ```
//!
//! The URL defaults to `$EXEIO_URL` or `http://127.0.0.1:8080`; the key comes
//! from `--key` or `$EXEIO_API_KEY`. Each call is one HTTP/1.1 request on a
//! fresh TCP connection (`Connection: close`). The response body goes to
//! stdout; the exit code is 1 for an HTTP status >= 400 or a connection error
//! and 2 for a usage error. Plain `http://` only: put exeio behind a TLS
//! reverse proxy and use curl for `https://`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: client [--url URL] [--key KEY] \
info|list|status ID|add JSON|@FILE|start ID|stop ID|restart ID|remove ID|\
clear-log ID|input ID TEXT|logs ID [PAGE]|follow ID|metrics";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(status) if status < 400 => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("client: HTTP {status}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("client: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Io(e)) => {
            eprintln!("client: {e}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

struct Call {
    method: &'static str,
    path: String,
    body: Option<String>,
    /// A follow stream: no read timeout.
    stream: bool,
}

fn run(args: Vec<String>) -> Result<u16, Failure> {
    let mut url = std::env::var("EXEIO_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let mut key = std::env::var("EXEIO_API_KEY").ok();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--url" => {
                url = it
                    .next()
                    .ok_or(Failure::Usage("--url needs a value".into()))?
            }
            "--key" => {
                key = Some(
                    it.next()
                        .ok_or(Failure::Usage("--key needs a value".into()))?,
                )
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(0);
            }
            _ => rest.push(a),
        }
    }
    let call = parse_command(&rest)?;
    let (host, port) = parse_url(&url)?;
    request(&host, port, key.as_deref(), &call)
}

fn parse_command(rest: &[String]) -> Result<Call, Failure> {
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    let get = |path: String| Call {
        method: "GET",
        path,
        body: None,
        stream: false,
    };
    let post = |path: String, body: Option<String>| Call {
        method: "POST",
        path,
        body,
        stream: false,
    };
    Ok(match words.as_slice() {
        ["info"] => get("/info".into()),
        ["list"] => get("/list".into()),
        ["metrics"] => get("/metrics".into()),
        ["status", id] => get(format!("/status/{}", encode(id))),
        ["add", json] => post("/add".into(), Some(read_json(json)?)),
        [
            verb @ ("start" | "stop" | "restart" | "remove" | "clear-log"),
            id,
        ] => post(format!("/{verb}/{}", encode(id)), None),
        ["input", id, text] => post(
            format!("/input/{}", encode(id)),
            Some(format!("{{\"input\":{}}}", json_string(text))),
        ),
        ["logs", id] => get(format!("/logs/{}?page=1&page_size=50", encode(id))),
        ["logs", id, page] => {
            let page: u64 = page
                .parse()
                .map_err(|_| Failure::Usage(format!("PAGE must be a number, got {page:?}")))?;
            get(format!("/logs/{}?page={page}&page_size=50", encode(id)))
        }
        ["follow", id] => Call {
            stream: true,
            ..get(format!("/logs/{}?follow=true", encode(id)))
        },
        [] => return Err(Failure::Usage("no command given".into())),
        _ => {
            return Err(Failure::Usage(format!(
                "unknown command: {}",
                rest.join(" ")
            )));
        }
    })
}

/// `add` takes the JSON itself, or `@path` to read it from a file.
fn read_json(arg: &str) -> Result<String, Failure> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read {path}: {e}"))),
        None => Ok(arg.to_owned()),
    }
}

/// `http://HOST[:PORT][/]` → (host, port).
fn parse_url(url: &str) -> Result<(String, u16), Failure> {
    let bad = || Failure::Usage(format!("URL must look like http://HOST:PORT, got {url:?}"));
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad());
    }
    // [::1]:8080, 127.0.0.1:8080, localhost
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().map_err(|_| bad())?),
        _ => (authority, 80),
    };
    Ok((host.to_owned(), port))
}

/// Percent-encode everything but the characters ids are made of.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Send one request, copy the body to stdout, return the status code.
fn request(host: &str, port: u16, key: Option<&str>, call: &Call) -> Result<u16, Failure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut stream = TcpStream::connect((bare, port))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {host}:{port}: {e}")))?;
    if !call.stream {
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    }
    let body = call.body.as_deref().unwrap_or("");
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: exeio-client\r\n",
        call.method, call.path
    );
    if let Some(key) = key {
        head.push_str(&format!("exeio-api-key: {key}\r\n"));
    }
    if call.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;

    let mut reader = BufReader::new(stream);
    let status = read_status(&mut reader)?;
    let (chunked, length) = read_headers(&mut reader)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if chunked {
        copy_chunked(&mut reader, &mut out)?;
    } else if let Some(n) = length {
        io::copy(&mut reader.take(n), &mut out)?;
    } else {
        io::copy(&mut reader, &mut out)?;
    }
    writeln!(out)?;
    if status == 401 && key.is_none() {
        eprintln!("client: no key given: use --key KEY or set EXEIO_API_KEY");
    }
    Ok(status)
}

fn read_status(r: &mut impl BufRead) -> io::Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad_data(format!("bad status line: {line:?}")))
}

/// Returns (Transfer-Encoding: chunked, Content-Length).
fn read_headers(r: &mut impl BufRead) -> io::Result<(bool, Option<u64>)> {
    let (mut chunked, mut length) = (false, None);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(bad_data("connection closed in the headers".into()));
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok((chunked, length));
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            }
        }
    }
}

/// Decode a chunked body, writing (and flushing) each chunk as it arrives.
fn copy_chunked(r: &mut impl BufRead, out: &mut impl Write) -> io::Result<()> {
    loop {
        let mut size_line = String::new();
        if r.read_line(&mut size_line)? == 0 {
            return Ok(()); // server went away mid-stream
        }
        let hex = size_line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(hex, 16)
            .map_err(|_| bad_data(format!("bad chunk size: {size_line:?}")))?;
        if size == 0 {
            return Ok(()); // trailers, if any, are ignored
        }
        io::copy(&mut r.take(size), out)?;
        out.flush()?;
        let mut crlf = String::new();
        r.read_line(&mut crlf)?;
    }
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
