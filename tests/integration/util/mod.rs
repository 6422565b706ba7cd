//! Shared fixture for the integration tests: `Daemon` runs a private exeio in a unique
//! temp dir, `http` is a tiny raw-socket HTTP/1.1 client (`Connection: close`), and the
//! `/proc` helpers inspect children, process groups and zombies.
//!
//! Only processes started here are ever signalled, always by pid.
#![allow(dead_code)]

mod calls;
mod http;
mod procfs;
mod table;

pub use calls::*;
pub use http::*;
pub use procfs::*;
pub use table::*;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The key every `Daemon::start*` passes with `--api-key` (unless `Options::no_key`).
pub const KEY: &str = "test";
/// Deadline for things that should happen at once (a spawn, a stop, a status change).
pub const SHORT: Duration = Duration::from_secs(10);
/// Deadline for things that involve a real restart delay or several periodic runs.
pub const LONG: Duration = Duration::from_secs(40);
/// For `Options::env`: idle HTTP pool threads end after 0.5 s, not 10 s,
/// so a test that counts exeio's threads need not wait long for a baseline.
pub const QUICK_IDLE_THREADS: (&str, &str) = ("EXEIO_TEST_IDLE_THREAD_MS", "500");
/// How long the fixture waits for the `exeio listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful stop of the daemon may take before the fixture SIGKILLs it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LISTENING: &str = "exeio listening on ";

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A unique directory under `std::env::temp_dir()`, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("exeio-it-{}-{n}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The binary with the environment every test uses: HOME and XDG_* inside `tmp`,
/// no inherited `EXEIO_API_KEY`, stdin closed. No arguments yet.
pub fn exeio_command(tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exeio"));
    cmd.env_remove("EXEIO_API_KEY")
        .env("HOME", tmp.join("home"))
        .env("XDG_CONFIG_HOME", tmp.join("xdg-config"))
        .env("XDG_DATA_HOME", tmp.join("xdg-data"))
        .env("XDG_STATE_HOME", tmp.join("xdg-state"))
        .env("XDG_CACHE_HOME", tmp.join("xdg-cache"))
        .env("XDG_RUNTIME_DIR", tmp.join("xdg-runtime"))
        .stdin(Stdio::null());
    cmd
}

/// `--port 0 --config-dir <tmp>/config --data-dir <tmp>/data`.
pub fn dir_args(tmp: &Path) -> Vec<String> {
    vec![
        "--port".into(),
        "0".into(),
        "--config-dir".into(),
        tmp.join("config").display().to_string(),
        "--data-dir".into(),
        tmp.join("data").display().to_string(),
    ]
}

/// Runs a command that is expected to exit by itself; SIGKILLs it after `timeout`.
pub fn run_to_end(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn exeio");
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let status = match wait_child(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let s = child.wait().expect("wait");
            panic!("command did not exit within {timeout:?}; killed ({s})");
        }
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// How a `Daemon` is started, beyond the fixed `--port 0 --config-dir --data-dir`.
#[derive(Clone, Default)]
pub struct Options {
    /// Extra arguments, after the standard ones.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Environment variables to remove (after the fixture's own settings).
    pub env_remove: Vec<String>,
    /// Do not pass `--api-key test` (the test sets `Daemon::key` itself).
    pub no_key: bool,
    /// Pass only `--port 0`, no `--config-dir`/`--data-dir` (XDG defaults apply).
    pub no_dirs: bool,
    /// (soft, hard) limit on open files for exeio.
    pub nofile: Option<(u64, u64)>,
    /// Run exeio as this uid (the test owns the temp dir over to it), with at
    /// most this many tasks of that user (RLIMIT_NPROC).
    pub run_as: Option<(u32, u64)>,
    /// An fd of the test that exeio inherits as fd 10 (as from `10<file`).
    pub fd10: Option<i32>,
}

/// Apply `Options::nofile` and `Options::run_as` to the command.
fn limit_child(cmd: &mut Command, opts: &Options) {
    use nix::sys::resource::{Resource, setrlimit};
    use std::os::unix::process::CommandExt;
    let nofile = opts.nofile;
    let nproc = opts.run_as.map(|(_, n)| n);
    let fd10 = opts.fd10;
    if let Some((uid, _)) = opts.run_as {
        cmd.uid(uid).gid(uid);
    }
    if nofile.is_none() && nproc.is_none() && fd10.is_none() {
        return;
    }
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((soft, hard)) = nofile {
                setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
            }
            if let Some(n) = nproc {
                setrlimit(Resource::RLIMIT_NPROC, n, n)?;
            }
            if let Some(fd) = fd10
                && nix::libc::dup2(fd, 10) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Why a daemon did not come up: its exit code and stderr; the temp dir is handed back.
pub struct StartError {
    pub tmp: TempDir,
    pub code: Option<i32>,
    pub stderr: String,
}

struct Running {
    child: Child,
    addr: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
    stdout_thread: Option<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Running {
    fn launch(tmp: &Path, opts: &Options) -> Result<Running, (Option<i32>, String)> {
        let mut cmd = exeio_command(tmp);
        if opts.no_dirs {
            cmd.args(["--port", "0"]);
        } else {
            cmd.args(dir_args(tmp));
        }
        if !opts.no_key {
            cmd.args(["--api-key", KEY]);
        }
        // Tests send wrong keys on purpose; only the throttling tests want
        // the lock-out (they pass their own limit).
        if !opts.args.iter().any(|a| a == "--auth-fail-limit") {
            cmd.args(["--auth-fail-limit", "1000000"]);
        }
        cmd.args(&opts.args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        for k in &opts.env_remove {
            cmd.env_remove(k);
        }
        limit_child(&mut cmd, opts);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn exeio");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::clone(&stdout);
        let stdout_thread = thread::spawn(move || {
            let mut first = Some(tx);
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line.clone());
                if let Some(tx) = first.take() {
                    let _ = tx.send(line);
                }
            }
        });
        let err = child.stderr.take().expect("stderr");
        let text = Arc::clone(&stderr);
        let stderr_thread = thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut t = text.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        let mut run = Running {
            child,
            addr: String::new(),
            stdout,
            stderr,
            stderr_thread: Some(stderr_thread),
            stdout_thread: Some(stdout_thread),
            exit: None,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if line.starts_with(LISTENING) => {
                let url = &line[LISTENING.len()..];
                let addr = url.split_once("://").map_or(url, |(_, a)| a);
                run.addr = addr.trim_end_matches('/').to_string();
                Ok(run)
            }
            Ok(line) => {
                let status = run.terminate(Signal::SIGTERM);
                Err((
                    status.code(),
                    format!("first stdout line was {line:?}, not {LISTENING:?}"),
                ))
            }
            Err(_) => {
                let status = run.terminate(Signal::SIGTERM);
                Err((status.code(), run.stderr_text()))
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stderr_text(&mut self) -> String {
        // Once exeio has exited its stderr reaches EOF, unless a leaked child holds the
        // pipe: wait for the reader a little, never forever.
        if self.exit.is_some()
            && let Some(h) = self.stderr_thread.take()
            && wait_until(Duration::from_secs(2), || h.is_finished())
        {
            let _ = h.join();
        }
        self.stderr.lock().unwrap().clone()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = wait_child(&mut self.child, timeout);
        }
        // Its last lines (`shutting down: ...`) may still be in the pipe:
        // let the reader reach EOF (a little while, never forever).
        if self.exit.is_some()
            && let Some(h) = self.stdout_thread.take()
            && wait_until(Duration::from_secs(2), || h.is_finished())
        {
            let _ = h.join();
        }
        self.exit
    }

    /// `sig`, wait up to `STOP_TIMEOUT`, then SIGKILL. Returns the exit status.
    fn terminate(&mut self, sig: Signal) -> ExitStatus {
        if let Some(s) = self.exit {
            return s;
        }
        let _ = kill(Pid::from_raw(self.pid()), sig);
        if let Some(s) = self.wait_exit(STOP_TIMEOUT) {
            return s;
        }
        let _ = self.child.kill();
        let s = self.child.wait().expect("wait exeio");
        self.exit = Some(s);
        s
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.terminate(Signal::SIGTERM);
    }
}

/// A daemon whose key is `key` (passed with `--api-key`).
pub fn daemon_with_key(key: &str) -> Daemon {
    let opts = Options {
        args: vec!["--api-key".into(), key.into()],
        no_key: true,
        ..Options::default()
    };
    let mut d = Daemon::start_opts(TempDir::new(), opts);
    d.key = key.to_string();
    d
}

/// A running exeio on `--port 0` with its dirs in a private temp dir.
pub struct Daemon {
    /// The key sent with every authenticated request (`test` unless a test changes it).
    pub key: String,
    opts: Options,
    run: Option<Running>,
    tmp: TempDir,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[], &[])
    }

    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let opts = Options {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Options::default()
        };
        Daemon::start_opts(TempDir::new(), opts)
    }

    pub fn start_opts(tmp: TempDir, opts: Options) -> Daemon {
        match Daemon::try_start(tmp, opts) {
            Ok(d) => d,
            Err(e) => panic!("exeio did not start (exit {:?}): {}", e.code, e.stderr),
        }
    }

    pub fn try_start(tmp: TempDir, opts: Options) -> Result<Daemon, StartError> {
        match Running::launch(tmp.path(), &opts) {
            Ok(run) => Ok(Daemon {
                key: KEY.to_string(),
                opts,
                run: Some(run),
                tmp,
            }),
            Err((code, stderr)) => Err(StartError { tmp, code, stderr }),
        }
    }

    fn run(&self) -> &Running {
        self.run.as_ref().expect("daemon is not running")
    }

    fn run_mut(&mut self) -> &mut Running {
        self.run.as_mut().expect("daemon is not running")
    }

    pub fn addr(&self) -> &str {
        &self.run().addr
    }

    pub fn pid(&self) -> i32 {
        self.run().pid()
    }

    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    pub fn config_dir(&self) -> PathBuf {
        self.tmp().join("config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp().join("data")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir().join("logs")
    }

    pub fn processes_json(&self) -> PathBuf {
        self.config_dir().join("processes.json")
    }

    /// Every stdout line printed so far by the current run (the first is
    /// `exeio listening on`); all of them once `wait_exit` or `stop` saw it exit.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.run().stdout.lock().unwrap().clone()
    }

    /// Stderr of the current run so far (complete once it has exited).
    pub fn stderr_text(&mut self) -> String {
        self.run_mut().stderr_text()
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal exeio");
    }

    /// Waits for the current run to exit by itself; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.run_mut().wait_exit(timeout)
    }

    /// SIGTERM, wait, SIGKILL as a fallback; returns how the run ended.
    pub fn stop(&mut self) -> ExitStatus {
        self.run_mut().terminate(Signal::SIGTERM)
    }

    /// SIGKILL the daemon (no graceful shutdown) and reap it.
    pub fn kill9(&mut self) -> ExitStatus {
        self.run_mut().terminate(Signal::SIGKILL)
    }

    /// Starts a new run on the same dirs; the previous run must have exited.
    pub fn start_again(&mut self) {
        if let Some(old) = self.run.take() {
            assert!(old.exit.is_some(), "start_again while exeio still runs");
        }
        match Running::launch(self.tmp.path(), &self.opts) {
            Ok(run) => self.run = Some(run),
            Err((code, stderr)) => panic!("exeio did not start again (exit {code:?}): {stderr}"),
        }
    }

    /// Graceful stop (SIGTERM, must exit 0), then a new run on the same dirs.
    pub fn restart(&mut self) {
        let status = self.stop();
        let stderr = self.stderr_text();
        assert!(
            status.success(),
            "exeio did not exit 0 on SIGTERM: {status}; stderr: {stderr}"
        );
        self.start_again();
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        let key = self.key.clone();
        http(self.addr(), method, path, &[("exeio-api-key", &key)], body)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        self.request("POST", path, Some(body.as_bytes()))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.post(path, &body.to_string())
    }
}
