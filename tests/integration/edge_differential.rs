//! Differential proof that exeio's parsing is strict (issue "The edge,
//! finished"): a corpus of raw requests, valid and invalid (every vector of
//! the review among them), is fed to exeio and to Python's `h11` (a strict,
//! independent HTTP/1.1 implementation; `.ci/run` installs it). Both must
//! give the same verdict, accept or refuse, for every request but the
//! documented exceptions in `EXCEPTIONS`, each with its reason.
//!
//! A verdict: h11 accepts when it reads a whole message (head and body) from
//! the bytes followed by EOF; exeio refuses with a framing 400 ("bad
//! request: ..." or "cannot read the body: ..."), 413, 431 or 505, and
//! accepts otherwise. Requests with a body go to `POST /session` (which reads
//! its body before anything else) so that exeio reads every body.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, Daemon};

/// Requests on which exeio and h11 differ on purpose: a case whose name
/// starts or ends with the pattern, and why. Each must still be needed.
const EXCEPTIONS: &[(&str, &str)] = &[
    ("value byte 0x", CTL),
    ("chunk trailer control", CTL),
    (" ESC", CTL),
    (" DEL", CTL),
    (" SOH", CTL),
    (
        "obs-fold",
        "RFC 9112 5.2 lets a server refuse obsolete line folding with a 400; h11 unfolds it",
    ),
    (
        "two framings",
        "RFC 9112 6.3 lets Transfer-Encoding win over Content-Length (h11); exeio refuses both (SPEC 3: a smuggling ingredient behind a proxy)",
    ),
    (
        "leading CRLF",
        "RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line; h11 refuses it",
    ),
    (
        "CL list 2, 2",
        "RFC 9110 8.6 allows a list of equal lengths (h11); exeio refuses any list: one framing, one value",
    ),
    (
        "line version HTTP/1.2",
        "h11 takes any HTTP/1.x as 1.1; exeio answers 505 to what it does not speak",
    ),
    (
        "line version HTTP/2.0",
        "h11 reads the head of any HTTP/x.y; exeio answers 505",
    ),
];

const CTL: &str = "RFC 9110 5.5: a field value has no control characters; h11 accepts all but NUL and whitespace, exeio (SPEC 3) refuses them";

fn exception(name: &str) -> Option<&'static (&'static str, &'static str)> {
    EXCEPTIONS
        .iter()
        .find(|(p, _)| name.starts_with(p) || name.ends_with(p))
}

/// One corpus entry: a name and the bytes.
type Case = (String, Vec<u8>);

fn corpus() -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>| out.push((name, bytes));
    // Request lines.
    let lines: &[(&str, &str)] = &[
        ("origin form", "GET /info HTTP/1.1"),
        ("HTTP/1.0", "GET /info HTTP/1.0"),
        ("absolute form", "GET http://x/info HTTP/1.1"),
        ("absolute https", "GET https://x:443/info?a=b HTTP/1.1"),
        ("query", "GET /info?x=1&y=%20 HTTP/1.1"),
        ("unknown method", "BREW /info HTTP/1.1"),
        ("lowercase method", "get /info HTTP/1.1"),
        ("two spaces before target", "GET  /info HTTP/1.1"),
        ("two spaces before version", "GET /info  HTTP/1.1"),
        ("trailing space", "GET /info HTTP/1.1 "),
        ("tab separator", "GET\t/info HTTP/1.1"),
        ("no version", "GET /info"),
        ("version http/1.1", "GET /info http/1.1"),
        ("version HTTP/1.2", "GET /info HTTP/1.2"),
        ("version HTTP/2.0", "GET /info HTTP/2.0"),
        ("version HTTP/1", "GET /info HTTP/1"),
        ("version HTTP/1.10", "GET /info HTTP/1.10"),
        ("empty target", "GET  HTTP/1.1"),
        ("method with (", "G(T /info HTTP/1.1"),
        ("NUL in target", "GET /in\0fo HTTP/1.1"),
        ("DEL in target", "GET /in\x7ffo HTTP/1.1"),
        ("space in target", "GET /in fo HTTP/1.1"),
        ("target with #", "GET /info#x HTTP/1.1"),
    ];
    for (name, line) in lines {
        add(
            format!("line {name}"),
            format!("{line}\r\nHost: x\r\n\r\n").into_bytes(),
        );
    }
    add(
        "leading CRLF".into(),
        b"\r\nGET /info HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    );
    // Host.
    add("no Host 1.1".into(), b"GET /info HTTP/1.1\r\n\r\n".to_vec());
    add("no Host 1.0".into(), b"GET /info HTTP/1.0\r\n\r\n".to_vec());
    add(
        "two Hosts".into(),
        b"GET /info HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
    );
    add(
        "two Hosts same".into(),
        b"GET /info HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n".to_vec(),
    );
    add(
        "empty Host".into(),
        b"GET /info HTTP/1.1\r\nHost:\r\n\r\n".to_vec(),
    );
    // Header fields on a GET.
    let get = |field: &[u8]| {
        [
            b"GET /info HTTP/1.1\r\nHost: x\r\n".as_slice(),
            field,
            b"\r\n\r\n",
        ]
        .concat()
    };
    for b in (0u8..0x20).chain([0x7f]) {
        if b == b'\n' || b == b'\r' {
            continue;
        }
        add(
            format!("value byte {b:#04x}"),
            get(&[b"X-A: a", &[b][..], b"b"].concat()),
        );
    }
    add("value CR alone".into(), get(b"X-A: a\rb"));
    for b in b"\"(),/:;<=>?@[\\]{} \t\x01\x7f" {
        add(
            format!("name byte {b:#04x}"),
            get(&[b"X-", &[*b][..], b"A: v"].concat()),
        );
    }
    for (name, field) in [
        ("space before colon", &b"X-A : v"[..]),
        ("tab before colon", b"X-A\t: v"),
        ("no colon", b"X-A v"),
        ("empty name", b": v"),
        ("empty value", b"X-A:"),
        ("value tabs around", b"X-A:\tv\t"),
        ("obs-text value", b"X-A: caf\xc3\xa9 \xff"),
        ("long value", &[b"X-A: ".as_slice(), &[b'v'; 8000]].concat()),
        ("name with digits", b"X-1-2: v"),
        ("name tchars", b"X!#$%&'*+-.^_`|~: v"),
    ] {
        add(format!("field {name}"), get(field));
    }
    add(
        "obs-fold".into(),
        b"GET /info HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
    );
    add(
        "space before first field".into(),
        b"GET /info HTTP/1.1\r\n Host: x\r\n\r\n".to_vec(),
    );
    add(
        "bare LF line ends".into(),
        b"GET /info HTTP/1.1\nHost: x\n\n".to_vec(),
    );
    add(
        "CR CR LF".into(),
        b"GET /info HTTP/1.1\r\r\nHost: x\r\n\r\n".to_vec(),
    );
    // Framing on POST /session.
    let post = |fields: &str, body: &[u8]| {
        [
            format!(
                "POST /session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{fields}\r\n"
            )
            .as_bytes(),
            body,
        ]
        .concat()
    };
    let json = br#"{"key":"k"}"#;
    let cl = |v: &str| format!("Content-Length: {v}\r\n");
    for (name, value, body) in [
        ("CL exact", "11", &json[..]),
        ("CL short body", "20", json),
        ("CL zero", "0", b""),
        ("CL leading zeros", "0011", json),
        ("CL + sign", "+11", json),
        ("CL - sign", "-11", json),
        ("CL hex", "0xb", json),
        ("CL spaces around", " 11 ", json),
        ("CL tab around", "\t11\t", json),
        ("CL VT", "\x0b11", json),
        ("CL FF", "11\x0c", json),
        ("CL inner space", "1 1", json),
        ("CL empty", "", json),
        ("CL list 2, 2", "11, 11", json),
        ("CL huge", "99999999999999999999999", json),
        ("CL U+3000", "11\u{3000}", json),
    ] {
        add(name.into(), post(&cl(value), body));
    }
    add("CL twice same".into(), post(&(cl("11") + &cl("11")), json));
    add(
        "CL twice different".into(),
        post(&(cl("11") + &cl("12")), json),
    );
    let te = |v: &str| format!("Transfer-Encoding: {v}\r\n");
    let chunked: &[u8] = b"b\r\n{\"key\":\"k\"}\r\n0\r\n\r\n";
    for (name, value) in [
        ("TE chunked", "chunked"),
        ("TE Chunked", "Chunked"),
        ("TE spaces", "  chunked  "),
        ("TE U+3000", "chunked\u{3000}"),
        ("TE FF", "chunked\x0c"),
        ("TE VT", "\x0bchunked"),
        ("TE gzip, chunked", "gzip, chunked"),
        ("TE chunked, chunked", "chunked, chunked"),
        ("TE identity", "identity"),
        ("TE chunkedx", "chunkedx"),
        ("TE quoted", "\"chunked\""),
    ] {
        add(name.into(), post(&te(value), chunked));
    }
    add(
        "TE twice".into(),
        post(&(te("chunked") + &te("chunked")), chunked),
    );
    add(
        "two framings".into(),
        post(&(te("chunked") + &cl("11")), chunked),
    );
    add(
        "two framings CL first".into(),
        post(&(cl("11") + &te("chunked")), chunked),
    );
    // Chunked bodies.
    let chunks: &[(&str, &[u8])] = &[
        (
            "chunks valid",
            b"5\r\n{\"key\r\n6\r\n\":\"k\"}\r\n0\r\n\r\n",
        ),
        ("chunk uppercase hex", b"B\r\n{\"key\":\"k\"}\r\n0\r\n\r\n"),
        (
            "chunk leading zeros",
            b"000b\r\n{\"key\":\"k\"}\r\n0000\r\n\r\n",
        ),
        (
            "chunk extension",
            b"b;a=1\r\n{\"key\":\"k\"}\r\n0;b\r\n\r\n",
        ),
        (
            "chunk extension quoted",
            b"b;a=\"x y\"\r\n{\"key\":\"k\"}\r\n0\r\n\r\n",
        ),
        (
            "chunk size trailing space",
            b"b \r\n{\"key\":\"k\"}\r\n0\r\n\r\n",
        ),
        ("chunk size +", b"+b\r\n{\"key\":\"k\"}\r\n0\r\n\r\n"),
        (
            "chunk size leading space",
            b" b\r\n{\"key\":\"k\"}\r\n0\r\n\r\n",
        ),
        ("chunk size 0x", b"0xb\r\n{\"key\":\"k\"}\r\n0\r\n\r\n"),
        ("chunk size empty", b"\r\n{\"key\":\"k\"}\r\n0\r\n\r\n"),
        ("chunk size bare LF", b"b\n{\"key\":\"k\"}\r\n0\r\n\r\n"),
        (
            "chunk size CR CR LF",
            b"b\r\r\n{\"key\":\"k\"}\r\n0\r\n\r\n",
        ),
        ("chunk data long", b"a\r\n{\"key\":\"k\"}\r\n0\r\n\r\n"),
        ("chunk data short", b"c\r\n{\"key\":\"k\"}\r\n0\r\n\r\n"),
        ("chunk data LF end", b"b\r\n{\"key\":\"k\"}\n0\r\n\r\n"),
        ("chunk data no end", b"b\r\n{\"key\":\"k\"}0\r\n\r\n"),
        ("chunk overflow", b"1\r\na\r\nffffffffffffffff\r\n"),
        ("chunk size 17 hex digits", b"10000000000000000\r\n"),
        (
            "chunk trailer",
            b"b\r\n{\"key\":\"k\"}\r\n0\r\nX-T: 1\r\n\r\n",
        ),
        (
            "chunk trailer bad",
            b"b\r\n{\"key\":\"k\"}\r\n0\r\nX T: 1\r\n\r\n",
        ),
        (
            "chunk trailer control",
            b"b\r\n{\"key\":\"k\"}\r\n0\r\nX-T: a\x01\r\n\r\n",
        ),
        ("chunk no last", b"b\r\n{\"key\":\"k\"}\r\n"),
        ("chunk no final CRLF", b"b\r\n{\"key\":\"k\"}\r\n0\r\n"),
        ("chunk negative", b"-1\r\nx\r\n0\r\n\r\n"),
        ("chunk g", b"g\r\nx\r\n0\r\n\r\n"),
    ];
    for (name, body) in chunks {
        add((*name).into(), post(&te("chunked"), body));
    }
    // Every vector again on another route and with keep-alive framing, and
    // each valid header combined with each framing: the corpus grows past
    // 300 with cases that differ only in where they appear.
    let bodies: &[(&str, &str, &[u8])] = &[
        ("CL", "Content-Length: 11\r\n", json),
        ("chunked", "Transfer-Encoding: chunked\r\n", chunked),
        ("none", "", b""),
    ];
    let extras: &[(&str, &str)] = &[
        ("close", "Connection: close\r\n"),
        ("keep-alive", "Connection: keep-alive\r\n"),
        ("expect", "Expect: 100-continue\r\n"),
        ("xff", "X-Forwarded-For: 1.2.3.4\r\n"),
        ("ESC", "X-A: \x1b\r\n"),
        ("DEL", "X-A: \x7f\r\n"),
        ("SOH", "X-A: \x01\r\n"),
        ("tab in value", "X-A: a\tb\r\n"),
        ("CL VT 2", "Content-Length: \x0b2\r\n"),
        ("TE FF", "Transfer-Encoding: chunked\x0c\r\n"),
        ("Host again", "Host: y\r\n"),
        ("Cookie", "Cookie: a=b; c=d\r\n"),
        ("Authorization", "Authorization: Bearer zzz\r\n"),
        (
            "long name",
            "X-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: 1\r\n",
        ),
        ("colon in value", "X-A: a:b:c\r\n"),
    ];
    for (route, version) in [
        ("/session", "1.1"),
        ("/session/logout", "1.1"),
        ("/session", "1.0"),
        ("/session/logout", "1.0"),
    ] {
        for (bname, framing, body) in bodies {
            for (ename, extra) in extras {
                let head = format!(
                    "POST {route} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n{extra}{framing}\r\n"
                );
                add(
                    format!("{route} {version} {bname} {ename}"),
                    [head.as_bytes(), body].concat(),
                );
            }
        }
    }
    out
}

const H11: &str = r#"
import sys, json, h11
def verdict(raw):
    c = h11.Connection(h11.SERVER)
    try:
        c.receive_data(raw)
        c.receive_data(b"")
        while True:
            e = c.next_event()
            if isinstance(e, h11.EndOfMessage):
                return "accept"
            if e is h11.NEED_DATA or isinstance(e, h11.ConnectionClosed):
                return "refuse"
    except h11.RemoteProtocolError:
        return "refuse"
cases = json.load(sys.stdin)
print(json.dumps([verdict(bytes.fromhex(c)) for c in cases]))
"#;

fn h11_verdicts(cases: &[Case]) -> Option<Vec<String>> {
    let hex: Vec<String> = cases
        .iter()
        .map(|(_, b)| b.iter().map(|x| format!("{x:02x}")).collect())
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", H11])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()?
        .write_all(serde_json::to_string(&hex).unwrap().as_bytes())
        .ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No module named 'h11'"), "h11 failed: {err}");
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn exeio_verdict(d: &Daemon, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let r = util::read_response(&mut s, Instant::now() + Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(bytes)));
    let framing_400 = r.status == 400 && {
        let m = r.json()["message"].as_str().unwrap_or("").to_string();
        m.starts_with("bad request:") || m.starts_with("cannot read the body:")
    };
    if framing_400 || matches!(r.status, 413 | 431 | 505) {
        "refuse".into()
    } else {
        "accept".into()
    }
}

#[test]
fn exeio_and_h11_agree_on_every_request_but_the_documented_exceptions() {
    let cases = corpus();
    assert!(cases.len() >= 300, "corpus of {}", cases.len());
    let Some(theirs) = h11_verdicts(&cases) else {
        panic!("python3 with h11 is needed (pip install h11; .ci/run installs it)");
    };
    let d = Daemon::start();
    let mut differ = Vec::new();
    let mut excepted = Vec::new();
    for ((name, bytes), their) in cases.iter().zip(&theirs) {
        let ours = exeio_verdict(&d, bytes);
        if &ours == their {
            continue;
        }
        match exception(name) {
            Some((pattern, _)) => excepted.push(*pattern),
            None => differ.push(format!("{name}: exeio {ours}, h11 {their}")),
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} differ:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
    // Every exception is still needed (else it hides nothing and goes).
    for (name, why) in EXCEPTIONS {
        assert!(
            excepted.contains(name),
            "exception {name:?} ({why}) no longer differs: remove it"
        );
    }
    println!(
        "{} requests, {} differ as documented",
        cases.len(),
        excepted.len()
    );
}
