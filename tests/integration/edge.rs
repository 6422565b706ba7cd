//! The edge under load from clients without a key (issue "Safe on a network"):
//! every client has a bounded cost, released when it goes, and no stalled
//! client holds what the others need. Other loopback addresses stand for
//! other clients. These tests check behaviour (answered, refused, freed);
//! how fast, and under how much load, is the benchmark's (`--only edge`):
//! times here are only generous deadlines, the loads small.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    self, Daemon, Options, TempDir, Usage, add_ok, connect_from, sh, usage, wait_until,
};

/// How long a GET /list may take here: a server blocked by the stalled
/// clients (still held while it asks) never answers; the bench says how fast.
const SERVED: Duration = Duration::from_secs(10);

/// A GET /list from 127.0.0.1 on a new connection, answered within `bound`
/// (three tries, so a busy machine does not fail it; a blocked server fails all).
fn list_answers(d: &Daemon, bound: Duration) -> Result<Duration, String> {
    let mut seen = Vec::new();
    for _ in 0..3 {
        let began = Instant::now();
        let bytes = util::encode(
            "GET",
            "/list",
            &[("exeio-api-key".into(), d.key.clone())],
            None,
            false,
        );
        match util::exchange(d.addr(), &bytes, bound) {
            Ok(r) if r.status == 200 && began.elapsed() <= bound => return Ok(began.elapsed()),
            Ok(r) => seen.push(format!("{} after {:?}", r.status, began.elapsed())),
            Err(e) => seen.push(e),
        }
    }
    Err(seen.join("; "))
}

/// One figure of `GET /metrics` (the first sample of `name`).
fn metric(d: &Daemon, name: &str) -> f64 {
    let text = d.get("/metrics").body;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn start(args: &[&str]) -> Daemon {
    Daemon::start_with(args, &[util::QUICK_IDLE_THREADS])
}

/// Usage once exeio has settled (idle connection threads end after 0.5 s here).
fn baseline(d: &Daemon) -> Usage {
    util::quiet_usage(d.pid(), Duration::from_secs(2))
}

#[test]
fn huge_declared_bodies_get_their_401_and_leave_nothing_behind() {
    let d = start(&[]);
    let _ = list_answers(&d, SERVED);
    let base = baseline(&d);
    let addr = d.addr().to_string();
    // 20 at a time, two clients on each of ten addresses (the bench sends
    // 10,000, 100 at a time).
    let clients: Vec<_> = (0..20)
        .map(|c| {
            let addr = addr.clone();
            thread::spawn(move || {
                let from = format!("127.0.0.{}", 20 + c % 10);
                let mut answered = 0;
                for i in 0..25u64 {
                    let len = 10u64.pow(8 + ((c as u64 + i) % 8) as u32);
                    let head =
                        format!("POST /add HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
                    let r = util::exchange_from(
                        Some(&from),
                        &addr,
                        head.as_bytes(),
                        Duration::from_secs(30),
                    );
                    if r.is_ok_and(|r| r.status == 401) {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(answered, 500, "every request got its 401 at once");
    assert!(util::pid_alive(d.pid()));
    // RSS: +4 MiB in a release build (the benchmark); a debug build's
    // frames are larger, and glibc keeps the stacks of ended threads.
    let (ok, now) = util::settle(d.pid(), base, (8, 8, 8 * 1024), Duration::from_secs(30));
    assert!(
        ok,
        "within 30 s: threads {} -> {}, fds {} -> {}, RSS {} -> {} KiB",
        base.threads, now.threads, base.fds, now.fds, base.rss_kib, now.rss_kib
    );
}

#[test]
fn five_thousand_idle_connections_get_one_address_its_cap_and_no_more() {
    let d = start(&["--head-timeout", "120"]);
    let _ = list_answers(&d, SERVED);
    let base = baseline(&d);
    let mut held = Vec::new();
    let mut most_threads = 0;
    for i in 0..5000 {
        if let Ok(s) = connect_from("127.0.0.2", d.addr()) {
            held.push(s);
        }
        if i % 250 == 0 {
            most_threads = most_threads.max(usage(d.pid()).threads);
        }
    }
    let cap = 32;
    // Let the last refusals land, then look again.
    wait_until(Duration::from_secs(10), || {
        metric(&d, "exeio_http_connections_refused_total") >= (5000 - cap) as f64
    });
    most_threads = most_threads.max(usage(d.pid()).threads);
    assert!(
        most_threads <= base.threads + cap + 2,
        "threads went from {} to {most_threads}: more than the cap of {cap}",
        base.threads
    );
    let refused = metric(&d, "exeio_http_connections_refused_total");
    assert!(refused >= (5000 - cap) as f64, "refused {refused}");
    let took = list_answers(&d, SERVED)
        .unwrap_or_else(|e| panic!("GET /list from 127.0.0.1 during the flood: {e}"));
    println!("GET /list during 5,000 idle connections from 127.0.0.2: {took:?}");
    drop(held);
}

#[test]
fn slowloris_heads_are_closed_within_the_head_timeout() {
    let d = start(&["--head-timeout", "2"]);
    let mut conns: Vec<(TcpStream, Option<Instant>)> = (0..500)
        .filter_map(|_| connect_from("127.0.0.3", d.addr()).ok())
        .map(|s| {
            let _ = s.set_nonblocking(true);
            (s, None)
        })
        .collect();
    let began = Instant::now();
    let request = b"GET /list HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0;
    // One header byte every 250 ms to each; note when each connection closes.
    while began.elapsed() < Duration::from_secs(20) && conns.iter().any(|c| c.1.is_none()) {
        for (s, closed) in conns.iter_mut().filter(|c| c.1.is_none()) {
            let mut buf = [0u8; 512];
            let gone = match s.read(&mut buf) {
                Ok(_) => true, // a 503 refusal, an error answer, or EOF
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    s.write_all(&request[sent % request.len()..][..1]).is_err()
                }
                Err(_) => true,
            };
            if gone {
                *closed = Some(Instant::now());
            }
        }
        sent += 1;
        if sent == 4 {
            let took = list_answers(&d, SERVED)
                .unwrap_or_else(|e| panic!("GET /list during the slowloris: {e}"));
            println!("GET /list during 500 slowloris connections: {took:?}");
        }
        thread::sleep(Duration::from_millis(250));
    }
    // Bytes kept coming: only the head timeout (a deadline for the whole
    // head) closes them. How soon after 2 s is the bench's.
    let open = conns.iter().filter(|c| c.1.is_none()).count();
    assert_eq!(
        open,
        0,
        "{open} of {} slow connections were still open after 20 s (head timeout 2 s)",
        conns.len()
    );
}

#[test]
fn clients_that_declare_a_body_and_send_nothing_hold_no_worker() {
    let d = start(&[]);
    let mut held = Vec::new();
    for i in 0..600 {
        let from = format!("127.0.0.{}", 40 + i % 20);
        let Ok(mut s) = connect_from(&from, d.addr()) else {
            continue;
        };
        let _ = s.write_all(b"POST /add HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n");
        held.push(s);
    }
    let took = list_answers(&d, SERVED)
        .unwrap_or_else(|e| panic!("GET /list with 600 silent bodies pending: {e}"));
    println!("GET /list with 600 silent declared bodies: {took:?}");
    // Each of them got its answer at once.
    let mut answered = 0;
    for s in &mut held {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 64];
        if s.read(&mut buf)
            .is_ok_and(|n| n > 0 && buf.starts_with(b"HTTP/1.1 4"))
        {
            answered += 1;
        }
    }
    assert_eq!(
        answered,
        held.len(),
        "every silent client got its answer at once"
    );
}

#[test]
fn a_huge_header_line_is_refused_at_the_cap_without_buffering_it() {
    let d = start(&[]);
    let base = baseline(&d);
    let addr = d.addr().to_string();
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let addr = addr.clone();
            thread::spawn(move || {
                let from = format!("127.0.0.{}", 70 + i);
                let mut s = connect_from(&from, &addr).expect("connect");
                let _ = s.write_all(b"GET /list HTTP/1.1\r\nX-Huge: ");
                let piece = vec![b'a'; 1 << 20];
                let mut sent = 0usize;
                while sent < 128 << 20 {
                    if s.write_all(&piece).is_err() {
                        break;
                    }
                    sent += piece.len();
                }
                let mut answer = Vec::new();
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.read_to_end(&mut answer);
                (sent, String::from_utf8_lossy(&answer).into_owned())
            })
        })
        .collect();
    let mut peak = base.rss_kib;
    while senders.iter().any(|h| !h.is_finished()) {
        peak = peak.max(usage(d.pid()).rss_kib);
        thread::sleep(Duration::from_millis(20));
    }
    for h in senders {
        let (sent, answer) = h.join().unwrap();
        assert!(
            sent < 128 << 20,
            "exeio read all 128 MiB of one header line"
        );
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
    }
    assert!(
        peak <= base.rss_kib + 8 * 1024,
        "RSS grew from {} to {peak} KiB",
        base.rss_kib
    );
    let r = util::request(
        d.addr(),
        "GET",
        "/list",
        &[("exeio-api-key", "test"), ("X-Big", &"b".repeat(20 * 1024))],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 431, "a 20 KiB header line");
    let many: Vec<(String, String)> = (0..80)
        .map(|i| (format!("X-H{i}"), "c".repeat(1000)))
        .collect();
    let r = util::exchange(
        d.addr(),
        &util::encode("GET", "/list", &many, None, false),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 431, "80 KiB of headers");
}

#[test]
fn readers_that_stop_reading_a_big_page_cost_little_and_time_out() {
    let d = start(&["--write-timeout", "3"]);
    // 1,000 lines of 60 KiB: a page of them is about 60 MiB of JSON.
    add_ok(
        &d,
        sh(
            "big",
            "yes \"$(head -c 61440 /dev/zero | tr '\\0' a)\" | head -n 1000; exec sleep 1000",
        ),
    );
    assert!(
        wait_until(util::LONG, || {
            util::log_page(&d, "big", 1, 1)["total_lines"].as_u64() >= Some(1001)
        }),
        "the big log was not written"
    );
    let base = baseline(&d);
    let mut readers = Vec::new();
    for i in 0..4 {
        let mut s = connect_from(&format!("127.0.0.{}", 80 + i), d.addr()).unwrap();
        util::write_head(
            &mut s,
            "GET",
            "/logs/big?page=1&page_size=1000",
            &[("exeio-api-key", "test")],
            None,
        );
        readers.push(s); // never read
    }
    let began = Instant::now();
    let mut peak = base.rss_kib;
    while began.elapsed() < Duration::from_secs(2) {
        peak = peak.max(usage(d.pid()).rss_kib);
        thread::sleep(Duration::from_millis(50));
    }
    let took =
        list_answers(&d, SERVED).unwrap_or_else(|e| panic!("GET /list while 4 readers stall: {e}"));
    println!(
        "GET /list while 4 readers stall on 60 MiB pages: {took:?}; peak RSS +{} KiB",
        peak - base.rss_kib
    );
    assert!(
        peak <= base.rss_kib + 32 * 1024,
        "RSS grew from {} to {peak} KiB",
        base.rss_kib
    );
    // The write timeout frees their threads.
    let (ok, now) = util::settle(d.pid(), base, (4, 2, u64::MAX), Duration::from_secs(30));
    assert!(
        ok,
        "threads {} -> {} after the write timeout",
        base.threads, now.threads
    );
    drop(readers);
}

#[test]
fn an_idle_kept_alive_connection_is_closed() {
    let d = start(&["--idle-timeout", "1"]);
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    // The answer, then EOF when exeio closes (10 s without: an error).
    let closed = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        closed.is_ok(),
        "the idle connection stayed open: {closed:?}"
    );
}

/// Run exeio under a limit; drive it there with idle connections from
/// several addresses (`reached` says when); release them; it must serve new
/// connections again (how soon is the bench's), and have counted the failures.
fn recovers_after(d: &Daemon, conns: usize, reached: impl Fn(Usage) -> bool, counter: &str) {
    let mut held = Vec::new();
    for i in 0..conns {
        if let Ok(mut s) = connect_from(&format!("127.0.0.{}", 100 + i / 30), d.addr()) {
            let _ = s.write_all(b"GET /list HTTP/1.1\r\n");
            held.push(s);
        }
    }
    let mut last = usage(d.pid());
    assert!(
        wait_until(Duration::from_secs(15), || {
            last = usage(d.pid());
            reached(last)
        }),
        "the load never reached the limit: {last:?}"
    );
    drop(held);
    let began = Instant::now();
    assert!(
        wait_until(SERVED, || {
            util::request(d.addr(), "GET", "/list", &[("exeio-api-key", "test")], None)
                .is_ok_and(|r| r.status == 200)
        }),
        "exeio did not serve again after the load went"
    );
    println!("served again {:?} after the load went", began.elapsed());
    assert!(metric(d, counter) > 0.0, "{counter} was not counted");
    // What could not be logged while fds were out is logged once they are back.
    let log = || std::fs::read_to_string(d.logs_dir().join("exeio.log")).unwrap_or_default();
    assert!(
        wait_until(util::SHORT, || log().contains("retrying")),
        "exeio.log says nothing: {}",
        log()
    );
}

const UNDER_LOAD: [&str; 4] = ["--head-timeout", "60", "--max-connections", "1000"];

#[test]
fn out_of_fds_it_backs_off_and_serves_again() {
    let opts = Options {
        nofile: Some((64, 64)),
        args: UNDER_LOAD.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    recovers_after(&d, 120, |u| u.fds >= 62, "exeio_http_accept_errors_total");
}

#[test]
fn out_of_threads_it_backs_off_and_serves_again() {
    // As an unprivileged user with a small task budget (root ignores RLIMIT_NPROC).
    let nobody = 65534;
    let tmp = TempDir::new();
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{nobody}:{nobody}")])
        .arg(tmp.path())
        .status()
        .expect("chown");
    assert!(chown.success());
    let others: u64 = util::all_procs()
        .iter()
        .filter(|p| util::uid_of(p.pid) == Some(nobody))
        .map(|p| usage(p.pid).threads as u64)
        .sum();
    let budget = others + 24;
    let opts = Options {
        run_as: Some((nobody, budget)),
        args: UNDER_LOAD.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    };
    let d = Daemon::start_opts(tmp, opts);
    recovers_after(
        &d,
        90,
        |u| u.threads as u64 + others >= budget - 1,
        "exeio_http_thread_errors_total",
    );
}

#[test]
fn the_soft_fd_limit_is_raised_to_the_hard_one() {
    let opts = Options {
        nofile: Some((256, 4096)),
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    assert_eq!(metric(&d, "process_max_fds"), 4096.0);
}
