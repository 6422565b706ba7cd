//! Child processes: spawn, signal, reap, and the one thread each child gets.
//!
//! Called by the supervisor thread only (PR_SET_PDEATHSIG fires when the
//! *spawning thread* exits, and the supervisor thread lives as long as any
//! child). The start itself is in `exec` and `clone`, cgroups in `cgroup`.
//!
//! Each child gets one thread (`watch::Watcher`). It polls the child's stdout and
//! stderr, a pidfd (readable at the exit), a doorbell rung when there is
//! something for it, and the child's stdin while input is queued. It is the
//! only writer of the child's log while the child lives (the rule is in
//! `logs`): output lines, and the SYSTEM lines the supervisor queues, in
//! order. At the exit it drains the pipes (bounded, in case a grandchild
//! holds them), writes the exit line, hands the log back, and only then
//! reports `Event::Exited`.

pub mod cgroup;
mod clone;
mod exec;
mod portable;
mod watch;

pub use clone::reserve_slots;
use watch::{ExitFd, Watcher};

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::Sender;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::logger::Logger;
use crate::logs::LogFile;
use crate::protocol::Msg;
use crate::spec::{ProcessId, ProcessSpec};
use crate::sys;

/// Stack of a child thread: it only moves bytes; buffers live on the heap.
/// Only the pages it touches count (about two); the rest is address space,
/// kept roomy so that a panic's unwinding never reaches the guard page.
const THREAD_STACK: usize = 64 * 1024;
/// Input queued for a child and not yet read by it.
pub const MAX_QUEUED_INPUT: usize = 2 << 20;

/// What the supervisor keeps of a running child.
pub struct Running {
    pub pid: u32,
    pub link: Arc<Link>,
}

/// Shared by the supervisor and a child's thread: queued input and the
/// doorbell that wakes the thread.
pub struct Link {
    stdin: Mutex<Stdin>,
    bell: OwnedFd,
}

#[derive(Default)]
struct Stdin {
    queued: VecDeque<u8>,
    closed: bool,
}

/// Why input was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum InputError {
    /// Not enough room: this many bytes are still queued.
    Full { queued: usize },
    /// The child closed its stdin.
    Closed,
}

impl Link {
    fn new() -> io::Result<Link> {
        Ok(Link {
            stdin: Mutex::new(Stdin::default()),
            bell: sys::eventfd()?,
        })
    }

    pub fn ring(&self) {
        sys::eventfd_ring(&self.bell);
    }

    /// Queue `bytes` for the child's stdin, all or nothing. Never blocks.
    pub fn input(&self, bytes: &[u8]) -> Result<(), InputError> {
        let mut s = self.stdin.lock().unwrap_or_else(PoisonError::into_inner);
        if s.closed {
            return Err(InputError::Closed);
        }
        if s.queued.len() + bytes.len() > MAX_QUEUED_INPUT {
            return Err(InputError::Full {
                queued: s.queued.len(),
            });
        }
        s.queued.extend(bytes);
        drop(s);
        self.ring();
        Ok(())
    }
}

/// Why a run could not be started (the text goes into a 400 and `error`).
#[derive(Debug)]
pub enum SpawnError {
    /// `working_dir` is missing (with the OS error) or not a directory.
    WorkingDir {
        dir: std::path::PathBuf,
        source: Option<io::Error>,
    },
    /// `user`/`group` cannot be used.
    User(String),
    /// The process's cgroup could not be prepared.
    Cgroup { id: ProcessId, source: io::Error },
    /// `execve` (or what precedes it in the child) failed. `searched`: the
    /// PATH looked through, when a bare name was not found in it.
    Exec {
        command: String,
        source: io::Error,
        searched: Option<String>,
    },
    /// No thread (or no doorbell) for the child: a resource limit.
    Watcher(io::Error),
    /// `env_file` cannot be read or is not `KEY=value` lines.
    EnvFile {
        path: std::path::PathBuf,
        why: String,
    },
    /// The config uses `{release}` and no release is deployed (SPEC 4c).
    NoRelease,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::WorkingDir { dir, source: None } => {
                write!(f, "working_dir {}: not a directory", dir.display())
            }
            SpawnError::WorkingDir {
                dir,
                source: Some(e),
            } => write!(f, "working_dir {}: {e}", dir.display()),
            SpawnError::User(m) => f.write_str(m),
            SpawnError::Cgroup { id, source } => {
                write!(f, "cannot prepare the cgroup of '{id}': {source}")
            }
            SpawnError::Exec {
                command,
                searched: Some(path),
                ..
            } => write!(f, "cannot start {command:?}: not found in PATH ({path})"),
            SpawnError::Exec {
                command, source, ..
            } => write!(f, "cannot start {command:?}: {source}"),
            SpawnError::Watcher(e) => write!(f, "cannot start a thread for the child: {e}"),
            SpawnError::EnvFile { path, why } => {
                write!(f, "env_file {}: {why}", path.display())
            }
            SpawnError::NoRelease => f.write_str(crate::deploy::resolve::NO_RELEASE),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::WorkingDir {
                source: Some(e), ..
            }
            | SpawnError::Cgroup { source: e, .. }
            | SpawnError::Exec { source: e, .. }
            | SpawnError::Watcher(e) => Some(e),
            _ => None,
        }
    }
}

/// How a child is started, beyond its spec.
pub struct Start<'a> {
    pub spec: &'a ProcessSpec,
    pub log: Arc<LogFile>,
    /// `RUN#n` label of output lines (jobs).
    pub label: Option<u64>,
    pub run_number: u64,
    /// The child's cgroup, to join before exec.
    pub cgroup: Option<cgroup::Target>,
    pub generation: u64,
    pub tx: Sender<Msg>,
    pub logger: Logger,
}

/// Could `spec` be started now? (Its working dir, user and program, as a
/// spawn would find them; for a job that does not run when it is added.)
pub fn check(spec: &ProcessSpec) -> Result<(), SpawnError> {
    check_dir(spec)?;
    if let Some(user) = &spec.user {
        crate::users::resolve(user, spec.group.as_deref()).map_err(SpawnError::User)?;
    }
    let env = with_env_file(spec)?;
    exec::find_program(&spec.command, &env).map_err(|e| exec_error(spec, &env, e))
}

/// `env` with the values of `env_file` (read now) over it.
fn with_env_file(
    spec: &ProcessSpec,
) -> Result<std::collections::BTreeMap<String, String>, SpawnError> {
    let mut env = spec.env.clone();
    if let Some(path) = &spec.env_file {
        let more = crate::envfile::read(path).map_err(|why| SpawnError::EnvFile {
            path: path.clone(),
            why,
        })?;
        env.extend(more);
    }
    Ok(env)
}

/// An exec failure; a bare name that is not found names the PATH searched.
fn exec_error(
    spec: &ProcessSpec,
    env: &std::collections::BTreeMap<String, String>,
    source: io::Error,
) -> SpawnError {
    let searched =
        (source.kind() == io::ErrorKind::NotFound && !spec.command.contains('/')).then(|| {
            env.get("PATH")
                .cloned()
                .or_else(|| std::env::var("PATH").ok())
                .unwrap_or_default()
        });
    SpawnError::Exec {
        command: spec.command.clone(),
        source,
        searched,
    }
}

fn check_dir(spec: &ProcessSpec) -> Result<(), SpawnError> {
    if let Some(dir) = &spec.working_dir {
        let bad = |source| SpawnError::WorkingDir {
            dir: dir.clone(),
            source,
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(bad(None)),
            Err(e) => return Err(bad(Some(e))),
        }
    }
    Ok(())
}

/// Spawn a run in its own process group (and cgroup) with piped stdio, and
/// start its thread. The error says why, for a 400.
pub fn spawn(s: Start<'_>) -> Result<Running, SpawnError> {
    let spec = s.spec;
    check_dir(spec)?;
    let (ids, env) = identity(spec)?;
    let link = Arc::new(Link::new().map_err(SpawnError::Watcher)?);
    let started = exec::start(exec::Plan {
        program: &spec.command,
        args: &spec.args,
        env: &env,
        drop_env: crate::keys::KEY_ENV,
        cwd: spec.working_dir.as_deref(),
        ids: ids.as_ref(),
        cgroup: s
            .cgroup
            .as_ref()
            .map(|t| (t.dir.as_ref().map(AsRawFd::as_raw_fd), t.procs.as_raw_fd())),
    })
    .map_err(|e| exec_error(spec, &env, e))?;
    let pid = started.pid;
    let exit_fd = match started.pidfd {
        Some(fd) => ExitFd::PidFd(fd),
        None => ExitFd::open(pid),
    };
    // The log is the child's thread's from here to the exit (see `logs`):
    // the run's first line is queued for that thread, which writes it (and
    // what was queued before it) as soon as it starts, before any output.
    let waker_link = link.clone();
    s.log.attach(Arc::new(move || waker_link.ring()));
    let started_line = format!(
        "started run {} (pid {pid}): {}",
        s.run_number,
        command_line(spec)
    );
    s.logger.started(&s.log, started_line);
    let (log, logger) = (s.log.clone(), s.logger.clone());
    let watcher = Watcher {
        pid,
        log: s.log.clone(),
        link: link.clone(),
        label: s.label,
        id: spec.id.clone(),
        generation: s.generation,
        tx: s.tx,
        logger: s.logger,
    };
    let (out, err, inp) = (started.stdout, started.stderr, started.stdin);
    // Detached: the thread ends after it has reported the exit.
    let thread = std::thread::Builder::new()
        .name(format!("child-{}", spec.id))
        .stack_size(THREAD_STACK)
        .spawn(move || watcher.run(out, err, inp, exit_fd));
    if let Err(e) = thread {
        // No thread, no watcher: kill and reap here rather than leak a child.
        logger.release(&log);
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = reap(pid);
        return Err(SpawnError::Watcher(e));
    }
    Ok(Running { pid, link })
}

/// A started health-check command (`exec` probe): its pid (and process
/// group), a pidfd if the kernel made one, and its stdout and stderr.
pub struct ProbeChild {
    pub pid: u32,
    pub pidfd: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Start `argv` as `spec`'s process would run (its user, working dir and
/// environment), in a process group of its own, stdin closed. Called from a
/// probe worker (a thread that lives as long as exeio, so PDEATHSIG holds);
/// the caller kills the group and reaps the pid.
pub fn spawn_probe(spec: &ProcessSpec, argv: &[String]) -> Result<ProbeChild, SpawnError> {
    check_dir(spec)?;
    let (ids, env) = identity(spec)?;
    let started = exec::start(exec::Plan {
        program: &argv[0],
        args: &argv[1..],
        env: &env,
        drop_env: crate::keys::KEY_ENV,
        cwd: spec.working_dir.as_deref(),
        ids: ids.as_ref(),
        cgroup: None,
    })
    .map_err(|source| SpawnError::Exec {
        command: argv[0].clone(),
        source,
        searched: None,
    })?;
    drop(started.stdin);
    Ok(ProbeChild {
        pid: started.pid,
        pidfd: started.pidfd,
        stdout: started.stdout,
        stderr: started.stderr,
    })
}

/// Who `spec` runs as, and its environment (with USER, LOGNAME and HOME
/// of that user unless set).
fn identity(
    spec: &ProcessSpec,
) -> Result<
    (
        Option<crate::users::Ids>,
        std::collections::BTreeMap<String, String>,
    ),
    SpawnError,
> {
    let ids = match &spec.user {
        Some(user) => {
            Some(crate::users::resolve(user, spec.group.as_deref()).map_err(SpawnError::User)?)
        }
        None => None,
    };
    let mut env = with_env_file(spec)?;
    if let Some(ids) = &ids {
        for k in ["USER", "LOGNAME"] {
            env.entry(k.into()).or_insert_with(|| ids.name.clone());
        }
        env.entry("HOME".into())
            .or_insert_with(|| ids.home.to_string_lossy().into_owned());
    }
    Ok((ids, env))
}

fn command_line(spec: &ProcessSpec) -> String {
    let mut s = spec.command.clone();
    for a in &spec.args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Send `signal` to the process group `pgid`. A group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let sig = Signal::try_from(signal).map_err(io::Error::from)?;
    match killpg(Pid::from_raw(pgid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reap an exited child (its thread has seen the exit); the CPU time it
/// and the children it waited for used. Kill what is left of its process
/// group first (the unreaped zombie still holds the pid and the group id,
/// so no recycled pid is hit); its cgroup, if any, is the caller's.
pub fn reap(pid: u32) -> Duration {
    let _ = signal_group(pid, nix::libc::SIGKILL);
    sys::reap(pid)
}
