//! The edge (issue "Safe on a network"): clients without a key, slow or
//! hostile, and what they cost exeio. Each case starts its own exeio;
//! 127.0.0.2 and up stand for other clients (the socket is bound before it
//! connects), while the owner asks `GET /list` from 127.0.0.1 meanwhile.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::exeio::{Exeio, Footprint, KEY, wait_for};
use crate::http::{connect_from, fresh_get_ms, read_status};
use crate::workloads::MIB;
use crate::{Metric, Options, Target, Unit, metric, name, quantile};

/// The most an owner's `GET /list` may take while others misbehave.
const LIST_MS: f64 = 100.0;
/// exeio's default connection cap.
const MAX_CONNECTIONS: u64 = 256;

pub fn edge(bin: &Path, opts: &Options) -> Result<Vec<Metric>, String> {
    raise_fd_limit();
    let mut out = Vec::new();
    out.extend(crate::edge_owner::owner_cases(bin)?);
    out.extend(crate::edge_tls::tls_cases(bin)?);
    out.extend(flood(bin, opts.edge_requests)?);
    out.extend(idle_conns(bin, opts.edge_conns)?);
    out.extend(slowloris(bin)?);
    out.extend(stalled_bodies(bin)?);
    out.extend(long_header(bin)?);
    out.extend(slow_readers(bin)?);
    Ok(out)
}

/// Thousands of sockets at once need more than the usual 1,024 fds.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// `GET /list` on a new connection from 127.0.0.1, `samples` times, one
/// every `every`, on a thread of its own: (ms in all, ms connecting) of
/// each (a failed request is an error).
fn owner(
    addr: SocketAddr,
    samples: usize,
    every: Duration,
) -> JoinHandle<Result<Vec<(f64, f64)>, String>> {
    thread::spawn(move || {
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples {
            if i > 0 {
                thread::sleep(every);
            }
            lat.push(fresh_get_ms(addr, KEY, "/list")?);
        }
        Ok(lat)
    })
}

fn joined<T>(h: JoinHandle<Result<T, String>>) -> Result<T, String> {
    h.join()
        .map_err(|_| "a client thread panicked".to_owned())?
}

/// The owner's worst `GET /list` while `tag` went on, and its connect.
fn list_metrics(tag: &str, lat: &[(f64, f64)]) -> Vec<Metric> {
    let all: Vec<f64> = lat.iter().map(|l| l.0).collect();
    let connecting: Vec<f64> = lat.iter().map(|l| l.1).collect();
    vec![
        metric(
            name(format!(
                "  GET /list meanwhile ({tag}), new conn, max of {}",
                lat.len()
            )),
            quantile(&all, 1.0),
            Unit::Ms,
            Target::AtMost(LIST_MS),
        ),
        metric(
            name(format!("    of which connecting, max ({tag})")),
            quantile(&connecting, 1.0),
            Unit::Ms,
            Target::None,
        ),
    ]
}

/// TcpExt ListenOverflows of the network namespace (every listener of the
/// host, so other programs count too): connections dropped because an
/// accept queue was full; their clients retry the SYN after 1 s, 3 s, ...
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let i = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows");
        return i
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    0
}

fn overflow_metric(tag: &str, since: u64) -> Metric {
    metric(
        name(format!("  accept queue overflows ({tag}, host-wide)")),
        listen_overflows().saturating_sub(since) as f64,
        Unit::Count,
        Target::None,
    )
}

/// One row per status seen; `tag` keeps the rows of the cases apart.
fn statuses(tag: &str, tally: &BTreeMap<Option<u16>, u64>) -> Vec<Metric> {
    tally
        .iter()
        .filter_map(|(s, n)| {
            let s = (*s)?;
            Some(metric(
                name(format!("  {tag}: answered {s}")),
                *n as f64,
                Unit::Count,
                Target::None,
            ))
        })
        .collect()
}

/// Requests without a key declaring a Content-Length of 10^8 to 10^15,
/// 100 at a time from 5 addresses (20 each, under the per-address cap of
/// 32); each must be answered. Then exeio must give back what they took.
fn flood(bin: &Path, requests: usize) -> Result<Vec<Metric>, String> {
    const CONCURRENT: usize = 100;
    let ex = Exeio::start(bin, None)?;
    thread::sleep(Duration::from_millis(200));
    let base = ex.footprint()?;
    let watch = ex.watch()?;
    let addr = ex.addr;
    let overflows = listen_overflows();
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..CONCURRENT)
        .map(|k| {
            let next = next.clone();
            let from = loopback(10 + (k % 5) as u8);
            thread::spawn(move || {
                let mut tally: BTreeMap<Option<u16>, u64> = BTreeMap::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return tally;
                    }
                    let length = 10u64.pow(8 + (i % 8) as u32) * (1 + (i / 8 % 9) as u64);
                    let status = connect_from(from, addr, None).ok().and_then(|mut s| {
                        let head = format!(
                            "POST /add HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
                             Content-Length: {length}\r\n\r\n"
                        );
                        s.write_all(head.as_bytes()).ok()?;
                        read_status(&mut s, Duration::from_secs(10))
                    });
                    *tally.entry(status).or_default() += 1;
                }
            })
        })
        .collect();
    let mut tally: BTreeMap<Option<u16>, u64> = BTreeMap::new();
    for c in clients {
        for (s, n) in c.join().map_err(|_| "a client thread panicked")? {
            *tally.entry(s).or_default() += n;
        }
    }
    let took = t0.elapsed();
    let (_, peak_threads) = watch.finish();
    let (end, settled) = ex.settle(&base, 8, Duration::from_secs(30))?;
    let unanswered = tally.get(&None).copied().unwrap_or(0);
    let n = requests;
    let mut out = vec![
        metric(
            name(format!(
                "{n} requests, no key, Content-Length 1e8-1e15: unanswered"
            )),
            unanswered as f64,
            Unit::Count,
            Target::AtMost(0.0),
        ),
        metric(
            "  requests/s (100 at a time, 5 addresses)",
            n as f64 / took.as_secs_f64(),
            Unit::PerSec,
            Target::None,
        ),
    ];
    out.extend(statuses("flood", &tally));
    out.push(overflow_metric("flood", overflows));
    out.extend(settled_metrics(&base, &end, settled, peak_threads));
    Ok(out)
}

fn settled_metrics(base: &Footprint, end: &Footprint, after: Duration, peak: u64) -> Vec<Metric> {
    vec![
        metric(
            "  most threads during",
            peak as f64,
            Unit::Count,
            Target::AtMost((base.threads + MAX_CONNECTIONS) as f64),
        ),
        metric(
            "  threads after, over baseline",
            end.threads as f64 - base.threads as f64,
            Unit::Count,
            Target::AtMost(8.0),
        ),
        metric(
            "  fds after, over baseline",
            end.fds as f64 - base.fds as f64,
            Unit::Count,
            Target::AtMost(8.0),
        ),
        metric(
            "  RSS after, over baseline",
            (end.rss_kib as f64 - base.rss_kib as f64) * 1024.0 / MIB,
            Unit::MiB,
            Target::AtMost(4.0),
        ),
        metric(
            "  back within +8 after (or gave up at 30 s)",
            after.as_secs_f64(),
            Unit::Secs,
            Target::AtMost(30.0),
        ),
        metric(
            "  baseline threads",
            base.threads as f64,
            Unit::Count,
            Target::None,
        ),
        metric("  baseline fds", base.fds as f64, Unit::Count, Target::None),
    ]
}

/// Many connections from one address (127.0.0.2), opened by 4 threads and
/// held without a byte sent.
fn idle_conns(bin: &Path, conns: usize) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    thread::sleep(Duration::from_millis(200));
    let base = ex.footprint()?;
    let watch = ex.watch()?;
    let addr = ex.addr;
    let overflows = listen_overflows();
    let openers: Vec<_> = (0..4)
        .map(|k| {
            let n = conns / 4 + usize::from(k < conns % 4);
            thread::spawn(move || {
                let mut held = Vec::with_capacity(n);
                let (mut failed, mut slow) = (0u64, 0u64);
                for _ in 0..n {
                    let t = Instant::now();
                    match connect_from(loopback(2), addr, None) {
                        Ok(s) => held.push(s),
                        Err(_) => failed += 1,
                    }
                    slow += u64::from(t.elapsed() > Duration::from_millis(500));
                }
                (held, failed, slow)
            })
        })
        .collect();
    let t0 = Instant::now();
    let lat = joined(owner(addr, 5, Duration::from_millis(200)))?;
    let mut held = Vec::new();
    let (mut failed, mut slow) = (0, 0);
    for o in openers {
        let (h, f, s) = o.join().map_err(|_| "a client thread panicked")?;
        held.extend(h);
        failed += f;
        slow += s;
    }
    let opened = t0.elapsed();
    thread::sleep(Duration::from_secs(2));
    let (_, peak) = watch.finish();
    let made = held.len();
    drop(held);
    Ok(vec![
        metric(
            name(format!("{conns} idle conns from 127.0.0.2: most threads")),
            peak as f64,
            Unit::Count,
            Target::AtMost((base.threads + MAX_CONNECTIONS) as f64),
        ),
        metric(
            "  exeio's threads before",
            base.threads as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  connections made",
            made as f64,
            Unit::Count,
            Target::AtLeast(conns as f64),
        ),
        metric(
            "  connects failed",
            failed as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  connects that took over 0.5 s (SYN retried)",
            slow as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  time to open them (4 threads)",
            opened.as_secs_f64(),
            Unit::Secs,
            Target::None,
        ),
    ]
    .into_iter()
    .chain(list_metrics("conns held", &lat))
    .chain([overflow_metric("conns held", overflows)])
    .collect())
}

/// 500 connections from 127.0.0.3 that send one byte of a head a second
/// (exeio with `--head-timeout 10`): how long exeio let each live.
fn slowloris(bin: &Path) -> Result<Vec<Metric>, String> {
    const CONNS: usize = 500;
    const HEAD_TIMEOUT: u64 = 10;
    let ex = Exeio::start_with(bin, None, &["--head-timeout", &HEAD_TIMEOUT.to_string()])?;
    let addr = ex.addr;
    let overflows = listen_overflows();
    let head = b"GET /list HTTP/1.1\r\nHost: bench\r\nX-Slow: ";
    let mut socks: Vec<(TcpStream, Instant, Option<Duration>)> = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let s = connect_from(loopback(3), addr, None).map_err(|e| format!("connect: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        socks.push((s, Instant::now(), None));
    }
    let opened = socks[0].1.elapsed();
    let sampler = owner(addr, 10, Duration::from_secs(1));
    let t0 = Instant::now();
    let limit = Duration::from_secs(HEAD_TIMEOUT + 10);
    let mut sent = 0usize;
    let mut buf = [0u8; 512];
    while t0.elapsed() < limit && socks.iter().any(|s| s.2.is_none()) {
        let due = t0.elapsed().as_secs() as usize + 1;
        while sent < due {
            let byte = [*head.get(sent).unwrap_or(&b'a')];
            trickle(&mut socks, byte);
            sent += 1;
        }
        note_closed(&mut socks, &mut buf);
        thread::sleep(Duration::from_millis(20));
    }
    let lived = lifetimes(&socks);
    let admitted = lived
        .iter()
        .filter(|&&l| l > HEAD_TIMEOUT as f64 / 2.0)
        .count();
    let lat = joined(sampler)?;
    Ok(vec![
        metric(
            "500 slowloris conns (1 byte/s) from 127.0.0.3: longest lived",
            quantile(&lived, 1.0),
            Unit::Secs,
            Target::AtMost(HEAD_TIMEOUT as f64 + 1.0),
        ),
        metric(
            "  of them kept past half the head timeout",
            admitted as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  time to open the 500, one after another",
            opened.as_secs_f64(),
            Unit::Secs,
            Target::None,
        ),
    ]
    .into_iter()
    .chain(list_metrics("slowloris", &lat))
    .chain([overflow_metric("slowloris", overflows)])
    .collect())
}

/// 600 connections without a key from 20 addresses (30 each), each
/// declaring a 2 MB body and sending none of it, held for 5 s.
fn stalled_bodies(bin: &Path) -> Result<Vec<Metric>, String> {
    const ADDRESSES: usize = 20;
    const EACH: usize = 30;
    let ex = Exeio::start(bin, None)?;
    let addr = ex.addr;
    let overflows = listen_overflows();
    let sampler = owner(addr, 5, Duration::from_secs(1));
    let mut socks = Vec::with_capacity(ADDRESSES * EACH);
    for i in 0..ADDRESSES * EACH {
        let from = loopback(20 + (i % ADDRESSES) as u8);
        let mut s = connect_from(from, addr, None).map_err(|e| format!("connect: {e}"))?;
        s.write_all(
            b"POST /add HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
              Content-Length: 2000000\r\n\r\n",
        )
        .map_err(|e| format!("write: {e}"))?;
        socks.push(s);
    }
    let lat = joined(sampler)?;
    let mut tally: BTreeMap<Option<u16>, u64> = BTreeMap::new();
    for s in &mut socks {
        *tally
            .entry(read_status(s, Duration::from_millis(1)))
            .or_default() += 1;
    }
    let mut out = vec![metric(
        "600 conns, no key, declaring 2 MB, sending nothing: not answered in 5 s",
        tally.get(&None).copied().unwrap_or(0) as f64,
        Unit::Count,
        Target::None,
    )];
    out.extend(statuses("2 MB", &tally));
    out.extend(list_metrics("2 MB", &lat));
    out.push(overflow_metric("2 MB", overflows));
    Ok(out)
}

/// 4 connections each sending a 128 MiB header line with no CRLF.
fn long_header(bin: &Path) -> Result<Vec<Metric>, String> {
    const LINE: usize = 128 << 20;
    let ex = Exeio::start(bin, None)?;
    thread::sleep(Duration::from_millis(200));
    let base = ex.rss_kib()?;
    let watch = ex.watch()?;
    let addr = ex.addr;
    let senders: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || -> Result<(usize, Option<u16>), String> {
                let mut s =
                    connect_from(loopback(4), addr, None).map_err(|e| format!("connect: {e}"))?;
                let chunk = vec![b'a'; 1 << 20];
                let mut sent = 0;
                if s.write_all(b"GET /list HTTP/1.1\r\nHost: bench\r\nX-Long: ")
                    .is_ok()
                {
                    while sent < LINE {
                        match s.write(&chunk) {
                            Ok(n) => sent += n,
                            Err(_) => break,
                        }
                    }
                }
                Ok((sent, read_status(&mut s, Duration::from_secs(2))))
            })
        })
        .collect();
    let mut most = 0;
    let mut tally: BTreeMap<Option<u16>, u64> = BTreeMap::new();
    for h in senders {
        let (sent, status) = joined(h)?;
        most = most.max(sent);
        *tally.entry(status).or_default() += 1;
    }
    let (peak, _) = watch.finish();
    let mut out = vec![
        metric(
            "4 conns sending a 128 MiB header line: RSS growth",
            (peak.saturating_sub(base)) as f64 * 1024.0 / MIB,
            Unit::MiB,
            Target::AtMost(8.0),
        ),
        metric(
            "  most bytes one got off before exeio closed",
            most as f64 / 1024.0,
            Unit::KiB,
            Target::None,
        ),
    ];
    out.extend(statuses("long header", &tally));
    Ok(out)
}

/// 4 clients (small receive buffers) ask for a 1,000-line page of 60 KiB
/// lines and read none of it, for 10 s.
fn slow_readers(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let child = r#"yes "$(head -c 61440 /dev/zero | tr '\0' a)" | head -n 1000"#;
    let spec = json!({"id": "wide", "command": "sh", "args": ["-c", child],
                      "log_max_bytes": 1u64 << 30});
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    wait_for(
        "the 60 MB log",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let v = conn.ok("GET", "/logs/wide?page=1&page_size=1", None)?;
            let lines = v["total_lines"].as_u64().unwrap_or(0);
            let st = conn.ok("GET", "/status/wide", None)?;
            Ok((lines >= 1000 && st["process"]["is_running"] == false).then_some(()))
        },
    )?;
    drop(conn);
    thread::sleep(Duration::from_millis(200));
    let base = ex.rss_kib()?;
    let watch = ex.watch()?;
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut s =
            connect_from(loopback(5), ex.addr, Some(4096)).map_err(|e| format!("connect: {e}"))?;
        write!(
            s,
            "GET /logs/wide?page=1&page_size=1000 HTTP/1.1\r\nHost: bench\r\nexeio-api-key: {KEY}\r\n\r\n"
        )
        .map_err(|e| format!("write: {e}"))?;
        readers.push(s);
    }
    let lat = joined(owner(ex.addr, 5, Duration::from_secs(2)))?;
    thread::sleep(Duration::from_secs(1));
    let (peak, _) = watch.finish();
    let after = ex.rss_kib()?;
    drop(readers);
    Ok(vec![
        metric(
            "4 clients not reading a 60 MB page: RSS growth",
            (peak.saturating_sub(base)) as f64 * 1024.0 / MIB,
            Unit::MiB,
            Target::AtMost(32.0),
        ),
        metric(
            "  RSS at the end, over before",
            (after as f64 - base as f64) * 1024.0 / MIB,
            Unit::MiB,
            Target::None,
        ),
    ]
    .into_iter()
    .chain(list_metrics("pages unread", &lat))
    .collect())
}

/// A trickling client: its socket, when it connected, and how long it
/// lived once exeio closed it.
pub type Trickler = (TcpStream, Instant, Option<Duration>);

/// Send `byte` on every trickler still open; a failed write means closed.
pub fn trickle(socks: &mut [Trickler], byte: [u8; 1]) {
    for (s, at, gone) in socks.iter_mut().filter(|s| s.2.is_none()) {
        if s.write(&byte).is_err() {
            *gone = Some(at.elapsed());
        }
    }
}

/// Read what exeio sent (non-blocking sockets) and note those it closed.
pub fn note_closed(socks: &mut [Trickler], buf: &mut [u8]) {
    for (s, at, gone) in socks.iter_mut().filter(|s| s.2.is_none()) {
        loop {
            match s.read(buf) {
                Ok(0) => *gone = Some(at.elapsed()),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *gone = Some(at.elapsed()),
            }
            break;
        }
    }
}

/// How long each trickler lived (so far, for those still open), seconds.
pub fn lifetimes(socks: &[Trickler]) -> Vec<f64> {
    socks
        .iter()
        .map(|s| s.2.unwrap_or_else(|| s.1.elapsed()).as_secs_f64())
        .collect()
}
