//! Bytes on the wire (issue "The edge, finished", SPEC 3): heads and chunk
//! sizes go through `httparse` with exact framing rules; every smuggling
//! vector of the review is refused with a 400 (never a panic); HEAD is
//! answered for GET routes without a body; trailers and chunk extensions
//! count toward the body cap; every reply says `nosniff`; `POST /session`
//! takes JSON only and a key holds at most 32 sessions.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{self, Daemon, Response};

const JSON: &str = "Content-Type: application/json\r\n";

/// Send `bytes` on a new connection, close our write half, read the reply.
fn raw(d: &Daemon, bytes: &[u8]) -> Response {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    util::read_response(&mut s, Instant::now() + Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(bytes)))
}

/// The review's vectors: each must be a 400 (the framing or head is wrong).
fn vectors() -> Vec<(&'static str, Vec<u8>)> {
    let post = |head: &str, body: &str| {
        format!("POST /session HTTP/1.1\r\nHost: x\r\n{JSON}{head}\r\n{body}").into_bytes()
    };
    let chunked = "Transfer-Encoding: chunked\r\n";
    vec![
        (
            "chunk size overflow",
            post(chunked, "1\r\na\r\nffffffffffffffff\r\n"),
        ),
        (
            "17-digit chunk size",
            post(chunked, "1\r\na\r\n10000000000000000\r\n"),
        ),
        (
            "TE chunked + U+3000",
            post("Transfer-Encoding: chunked\u{3000}\r\n", "0\r\n\r\n"),
        ),
        (
            "TE chunked + FF",
            post("Transfer-Encoding: chunked\x0c\r\n", "0\r\n\r\n"),
        ),
        (
            "TE VT + chunked",
            post("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"),
        ),
        ("CL VT + 2", post("Content-Length: \x0b2\r\n", "{}")),
        ("chunk size +2", post(chunked, "+2\r\n{}\r\n0\r\n\r\n")),
        ("chunk size ' 2 '", post(chunked, " 2 \r\n{}\r\n0\r\n\r\n")),
        ("bare LF chunk line", post(chunked, "2\n{}\r\n0\r\n\r\n")),
        (
            "chunk line 2 CR CR LF",
            post(chunked, "2\r\r\n{}\r\n0\r\n\r\n"),
        ),
        ("ESC in a value", post("X-A: a\x1bb\r\n", "")),
        ("DEL in a value", post("X-A: a\x7fb\r\n", "")),
        ("0x01 in a value", post("X-A: a\x01b\r\n", "")),
        (
            "two framings",
            post(&format!("Content-Length: 2\r\n{chunked}"), "0\r\n\r\n"),
        ),
        (
            "no Host",
            b"GET /info HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "two Hosts",
            b"GET /info HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        ),
        (
            "chunk data longer than its size",
            post(chunked, "1\r\n{}\r\n0\r\n\r\n"),
        ),
    ]
}

#[test]
fn smuggling_vectors_are_refused_and_nothing_panics() {
    let mut d = Daemon::start();
    for (what, bytes) in vectors() {
        let r = raw(&d, &bytes);
        assert_eq!(r.status, 400, "{what}: {} {}", r.status, r.body);
        assert_eq!(r.header("connection"), Some("close"), "{what}");
    }
    assert_eq!(d.get("/list").status, 200, "still serving");
    let stderr = d.stderr_text();
    assert!(!stderr.contains("panicked"), "{stderr}");
    d.stop();
    let stderr = d.stderr_text();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_valid_chunked_login_with_extensions_and_trailers_is_read() {
    let d = Daemon::start();
    let body = json!({"key": d.key}).to_string();
    let (a, b) = body.split_at(5);
    let bytes = format!(
        "POST /session HTTP/1.1\r\nHost: x\r\n{JSON}Transfer-Encoding: Chunked \r\n\r\n\
         {:x};ext=1\r\n{a}\r\n{:X}  \r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        b.len()
    );
    let r = raw(&d, bytes.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn trailers_and_chunk_extensions_count_toward_the_body_cap() {
    // 60 s for the body, not 10: on a busy machine the 2 MiB sent here may
    // reach the cap after the default time is up (a 408, not the 413).
    let d = Daemon::start_with(&["--head-timeout", "60"], &[]);
    let big = "a".repeat(2 * 1024 * 1024);
    let cases = [
        ("extension", format!("2;x={big}\r\n{{}}\r\n0\r\n\r\n")),
        ("trailers", format!("2\r\n{{}}\r\n0\r\nX-T: {big}\r\n\r\n")),
    ];
    for (what, body) in cases {
        let bytes = format!(
            "POST /session HTTP/1.1\r\nHost: x\r\n{JSON}Transfer-Encoding: chunked\r\n\r\n{body}"
        );
        let mut s = TcpStream::connect(d.addr()).unwrap();
        let mut reader = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = s.write_all(bytes.as_bytes());
        });
        let r = util::read_response(&mut reader, Instant::now() + Duration::from_secs(90))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status, 413, "{what}: {}", r.body);
        drop(reader);
        writer.join().unwrap();
    }
}

/// The head of a reply and whatever follows it on the connection within a
/// moment (a HEAD reply must have nothing after its head).
fn exchange_keepalive(s: &mut TcpStream, request: &str) -> Response {
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = util::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(end, buf.len(), "nothing after a HEAD reply's head");
    util::parse_response(&buf)
}

#[test]
fn head_is_answered_for_every_get_route_without_a_body() {
    let d = Daemon::start();
    util::add_ok(&d, util::sh("p", "exec sleep 1000"));
    let get = d.get("/info");
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let key = format!("exeio-api-key: {}\r\n", d.key);
    for (path, auth) in [
        ("/info", ""),
        ("/list", key.as_str()),
        ("/status/p", key.as_str()),
        ("/metrics", key.as_str()),
    ] {
        let r = exchange_keepalive(
            &mut s,
            &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
        );
        assert_eq!(r.status, 200, "HEAD {path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "HEAD {path}"
        );
        assert_ne!(r.header("connection"), Some("close"), "kept alive");
    }
    let r = exchange_keepalive(&mut s, "HEAD /info HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        r.header("content-length").unwrap(),
        get.header("content-length")
            .unwrap_or(&get.body.len().to_string()),
        "the GET's length"
    );
    // A HEAD to a route that has no GET: a 405 without a body.
    let r = exchange_keepalive(&mut s, "HEAD /add HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 405);
    // A follow stream: its head only, then the stream is over.
    let r = exchange_keepalive(
        &mut s,
        &format!("HEAD /logs/p?follow=true HTTP/1.1\r\nHost: x\r\n{key}\r\n"),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn absolute_form_targets_are_served() {
    let d = Daemon::start();
    let r = raw(
        &d,
        b"GET http://localhost:8080/info HTTP/1.1\r\nHost: localhost:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["success"], true);
}

#[test]
fn every_reply_says_nosniff() {
    let d = Daemon::start();
    let replies = [
        util::http(d.addr(), "GET", "/info", &[], None),
        util::http(d.addr(), "GET", "/list", &[], None),
        util::http(d.addr(), "GET", "/nowhere", &[], None),
        d.get("/list"),
        raw(&d, b"GET / HTTP/1.1\r\n\r\n"),
    ];
    for r in replies {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{} {}",
            r.status,
            r.body
        );
    }
}

fn login(d: &Daemon, content_type: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = content_type
        .map(|t| ("Content-Type", t))
        .into_iter()
        .collect();
    let body = json!({"key": d.key}).to_string();
    util::http(
        d.addr(),
        "POST",
        "/session",
        &headers,
        Some(body.as_bytes()),
    )
}

#[test]
fn login_takes_json_only() {
    let d = Daemon::start();
    for t in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        let r = login(&d, t);
        assert_eq!(r.status, 415, "{t:?}: {}", r.body);
        assert!(r.header("set-cookie").is_none(), "{t:?}");
        assert!(r.message().contains("application/json"), "{}", r.body);
    }
    for t in ["application/json", "Application/JSON; charset=utf-8"] {
        let r = login(&d, Some(t));
        assert_eq!(r.status, 200, "{t}: {}", r.body);
    }
}

#[test]
fn a_key_holds_at_most_32_sessions_the_oldest_ends_first() {
    let d = Daemon::start();
    let cookies: Vec<String> = (0..33)
        .map(|_| {
            let r = login(&d, Some("application/json"));
            assert_eq!(r.status, 200, "{}", r.body);
            r.header("set-cookie")
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let who = |c: &str| util::http(d.addr(), "GET", "/session", &[("Cookie", c)], None).status;
    assert_eq!(who(&cookies[0]), 401, "the oldest session ended");
    assert_eq!(who(&cookies[1]), 200);
    assert_eq!(who(&cookies[32]), 200);
}
