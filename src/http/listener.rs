//! The accept loop and the connection pool.
//!
//! One thread accepts. Each connection takes a slot (a global count and a
//! count for its address); over either cap it is answered with a canned 503
//! (plain HTTP) or closed (TLS) at once, from the accept thread, without a
//! thread of its own. An admitted connection goes to an idle pool thread, or
//! to a new one; pool threads end after a while without work.
//!
//! The loop survives every error: a failed `accept` (fds exhausted) or a
//! thread that cannot be started is counted, reported (at most every 10 s),
//! and retried after a backoff of at most half a second, so exeio serves
//! again as soon as the resource comes back, with no restart.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use rustls::ServerConfig;

use super::budget::Handshakes;
use super::conn::{Conn, Transport};
use super::slots::{Slot, Slots};
use super::{EdgeStats, Limits, Service, refuse, tls};
use crate::sys;

/// Stack of a connection thread: handlers keep big buffers on the heap.
const CONN_STACK: usize = 256 * 1024;
/// A pool thread with no connection for this long ends.
const IDLE_THREAD: Duration = Duration::from_secs(10);

/// `IDLE_THREAD`, or the milliseconds of `EXEIO_TEST_IDLE_THREAD_MS`: the
/// tests that count threads wait for idle ones to end, and set it short.
fn idle_thread() -> Duration {
    static IDLE: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
        std::env::var("EXEIO_TEST_IDLE_THREAD_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(IDLE_THREAD, Duration::from_millis)
    });
    *IDLE
}
/// At the thread cap, how long a new connection waits for a pool thread.
const POOL_WAIT: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The running server; `stop` ends the accept loop.
pub struct Server {
    wake: io::PipeWriter,
    thread: Option<JoinHandle<()>>,
    slots: Arc<Slots>,
}

impl Server {
    /// Stop accepting, and close every idle connection at once (a kept-alive
    /// dashboard must not hold up the exit); a connection being served closes
    /// after its reply.
    pub fn stop(mut self) {
        let _ = self.wake.write_all(b"x");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.slots.stop();
    }
}

/// What every connection thread shares.
struct Shared {
    service: Arc<dyn Service>,
    tls: Option<Arc<ServerConfig>>,
    limits: Arc<Limits>,
    stats: Arc<EdgeStats>,
    slots: Arc<Slots>,
    /// Pool threads alive: never more than the connection cap.
    threads: AtomicUsize,
    report: Box<dyn Fn(String) + Send + Sync>,
}

/// Start accepting on `listener` (already bound).
pub fn start(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    service: Arc<dyn Service>,
    stats: Arc<EdgeStats>,
    report: Box<dyn Fn(String) + Send + Sync>,
) -> io::Result<Server> {
    listener.set_nonblocking(true)?;
    let (wake_r, wake) = io::pipe()?;
    let slots = Slots::new(limits.max_connections, limits.max_per_address);
    let refuser = refuse::start()?;
    let shared = Arc::new(Shared {
        service,
        tls,
        slots: slots.clone(),
        threads: AtomicUsize::new(0),
        limits: Arc::new(limits),
        stats,
        report,
    });
    let thread = std::thread::Builder::new()
        .name("http-accept".into())
        .stack_size(128 * 1024)
        .spawn(move || Acceptor::new(listener, wake_r, shared, refuser).run())?;
    Ok(Server {
        wake,
        thread: Some(thread),
        slots,
    })
}

struct Job {
    sock: TcpStream,
    peer: SocketAddr,
    slot: Slot,
}

struct Acceptor {
    listener: TcpListener,
    wake: io::PipeReader,
    shared: Arc<Shared>,
    pool: Sender<Job>,
    pool_rx: Receiver<Job>,
    /// Refused connections, to be answered and lingered on (`refuse`).
    refuser: Sender<(TcpStream, bool)>,
    /// Closed to make room for one `accept` when fds run out.
    spare: Option<File>,
    backoff: Duration,
    errors: ErrorReport,
    /// TLS handshakes each address may start (`budget`).
    handshakes: Handshakes,
}

impl Acceptor {
    fn new(
        listener: TcpListener,
        wake: io::PipeReader,
        shared: Arc<Shared>,
        refuser: Sender<(TcpStream, bool)>,
    ) -> Acceptor {
        let (pool, pool_rx) = bounded(0);
        Acceptor {
            listener,
            wake,
            shared,
            pool,
            pool_rx,
            refuser,
            spare: File::open("/dev/null").ok(),
            backoff: Duration::ZERO,
            errors: ErrorReport::default(),
            handshakes: Handshakes::default(),
        }
    }

    fn run(mut self) {
        loop {
            // After an error, wait out the backoff without looking at the
            // listener (its backlog would wake us at once).
            let woke = if self.backoff.is_zero() {
                sys::wait_readable(&[self.wake.as_fd(), self.listener.as_fd()], None)
            } else {
                sys::wait_readable(&[self.wake.as_fd()], Some(self.backoff))
            };
            if woke.is_ok_and(|r| r[0]) {
                let _ = self.wake.read(&mut [0u8; 8]);
                return;
            }
            self.accept_all();
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, peer)) => {
                    if self.admit(sock, peer) {
                        self.backoff = Duration::ZERO;
                    } else {
                        self.back_off();
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if sys::is_transient_accept_error(&e) => {}
                Err(e) => {
                    self.shared
                        .stats
                        .accept_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if sys::is_fd_exhaustion(&e) {
                        self.shed_one();
                    }
                    self.errors.note(
                        &*self.shared.report,
                        format!("cannot accept a connection: {e}"),
                    );
                    self.back_off();
                    return;
                }
            }
        }
    }

    /// Out of fds: close the spare, accept and close one waiting
    /// connection (its client learns at once), take the spare back.
    fn shed_one(&mut self) {
        self.spare = None;
        if let Ok((sock, _)) = self.listener.accept() {
            drop(sock);
        }
        self.spare = File::open("/dev/null").ok();
    }

    fn back_off(&mut self) {
        self.backoff = (self.backoff * 2)
            .max(Duration::from_millis(10))
            .min(MAX_BACKOFF);
    }

    /// Give the connection a slot and a thread. False when no thread could
    /// be started (the caller backs off).
    fn admit(&mut self, sock: TcpStream, peer: SocketAddr) -> bool {
        let stats = &self.shared.stats;
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        if self.shared.tls.is_some()
            && !self
                .handshakes
                .allow(super::slots::group(peer.ip()), Instant::now())
        {
            self.refuse(sock);
            return true;
        }
        let handle = sock.try_clone().ok();
        let slots = &self.shared.slots;
        let before = slots.displaced.load(Ordering::Relaxed);
        let taken = slots.take(peer.ip(), handle, Instant::now());
        // A connection closed to make room counts as refused too.
        let displaced = slots.displaced.load(Ordering::Relaxed) - before;
        stats.refused.fetch_add(displaced, Ordering::Relaxed);
        let Ok(slot) = taken else {
            self.refuse(sock);
            return true;
        };
        let job = Job { sock, peer, slot };
        let job = match self.pool.try_send(job) {
            Ok(()) => return true,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
        };
        // A displaced connection's thread is on its way back to the pool:
        // wait for it rather than start another (a flood that churns its
        // own slots must not churn threads).
        let job = if displaced > 0 {
            match self.pool.send_timeout(job, POOL_WAIT) {
                Ok(()) => return true,
                Err(e) => e.into_inner(),
            }
        } else {
            job
        };
        // Every thread busy. At the cap, one of them has just given back
        // its slot (that is how this connection got one) and is on its way
        // back to the pool: wait for it rather than start another.
        let threads = &self.shared.threads;
        if threads.load(Ordering::Relaxed) >= self.shared.limits.max_connections {
            if let Err(e) = self.pool.send_timeout(job, POOL_WAIT) {
                self.refuse(e.into_inner().sock);
            }
            return true;
        }
        threads.fetch_add(1, Ordering::Relaxed);
        let (shared, rx) = (self.shared.clone(), self.pool_rx.clone());
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || pool_thread(job, rx, shared));
        match spawned {
            Ok(_) => true,
            Err(e) => {
                threads.fetch_sub(1, Ordering::Relaxed);
                stats.thread_errors.fetch_add(1, Ordering::Relaxed);
                self.errors.note(
                    &*self.shared.report,
                    format!("cannot start a thread for a connection: {e}"),
                );
                false
            }
        }
    }
}

impl Acceptor {
    /// Over a cap: a whole 503 (plain HTTP), then a linger, never a reset.
    fn refuse(&self, sock: TcpStream) {
        self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        let plain = self.shared.tls.is_none();
        if let Err(e) = self.refuser.try_send((sock, plain)) {
            // The lingering thread is behind: answer, take in what has
            // arrived, and close at once.
            let (sock, plain) = e.into_inner();
            refuse::answer_and_drain(&sock, plain, &refuse::refusal());
        }
    }
}

fn pool_thread(mut job: Job, rx: Receiver<Job>, shared: Arc<Shared>) {
    loop {
        serve(job, &shared);
        match rx.recv_timeout(idle_thread()) {
            Ok(next) => job = next,
            Err(_) => break,
        }
    }
    shared.threads.fetch_sub(1, Ordering::Relaxed);
}

fn serve(job: Job, shared: &Shared) {
    shared.stats.open.fetch_add(1, Ordering::Relaxed);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let Job {
            mut sock,
            mut peer,
            slot,
        } = job;
        let limits = &shared.limits;
        if limits.proxy_protocol && super::proxy::trusted(&limits.trusted, peer.ip()) {
            let _ = sock.set_read_timeout(Some(limits.head_timeout));
            match super::proxy::read_header(&mut sock) {
                Ok(Some(client)) => peer = client,
                Ok(None) => {}
                Err(_) => return,
            }
        }
        let _ = sock.set_nodelay(true);
        let _ = sock.set_write_timeout(Some(shared.limits.write_timeout));
        let io = match &shared.tls {
            None => Transport::Plain(sock),
            Some(config) => match tls_transport(config, sock, &shared.limits) {
                Some(io) => io,
                None => return,
            },
        };
        let conn = Conn::new(io, peer, shared.limits.clone(), Some(slot));
        super::conn::serve(conn, &*shared.service);
    }));
    shared.stats.open.fetch_sub(1, Ordering::Relaxed);
    if outcome.is_err() {
        (shared.report)("a request handler panicked; its connection was closed".into());
    }
}

/// A TLS session on `sock`. A client speaking plain HTTP to the TLS port is
/// told so in plain HTTP, then closed.
fn tls_transport(
    config: &Arc<ServerConfig>,
    sock: TcpStream,
    limits: &Limits,
) -> Option<Transport> {
    let _ = sock.set_read_timeout(Some(limits.head_timeout));
    let mut first = [0u8; 1];
    let peeked = loop {
        match sock.peek(&mut first) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    match peeked {
        Ok(1) if first[0] == 0x16 => {} // a TLS handshake record
        Ok(1) => {
            let mut plain = Transport::Plain(sock);
            let _ = super::exchange::write_simple(
                &mut plain,
                400,
                r#"{"success":false,"message":"this port speaks HTTPS: use https://"}"#,
                true,
            );
            sys::close_after_reply(plain.socket());
            return None;
        }
        _ => return None,
    }
    tls::wrap(config, sock)
        .ok()
        .map(|s| Transport::Tls(Box::new(s)))
}

/// Reports the first error at once, then at most one summary per 10 s.
#[derive(Default)]
struct ErrorReport {
    last: Option<Instant>,
    since: u64,
}

impl ErrorReport {
    fn note(&mut self, report: &(dyn Fn(String) + Send + Sync), msg: String) {
        self.since += 1;
        let due = self.last.is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        if due {
            let n = std::mem::take(&mut self.since);
            report(if n > 1 {
                format!("{msg} ({n} such errors since the last report); retrying")
            } else {
                format!("{msg}; retrying")
            });
            self.last = Some(Instant::now());
        }
    }
}
