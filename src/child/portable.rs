//! The portable spawn: std's `Command` (fork and execvp) with a `pre_exec`
//! step for what std cannot do itself. Chosen with `EXEIO_SPAWN=portable`;
//! the default is the vfork-style clone of `clone` (see `exec`).
//!
//! The child, between fork and exec, in this order: joins its cgroup
//! (writing `cgroup.procs`), asks for SIGKILL when exeio's supervisor
//! thread dies (`PR_SET_PDEATHSIG`, then checks that exeio has not died
//! already), switches user and groups, and changes to its working
//! directory, with every fd but 0-2 marked close-on-exec, and execs the
//! program itself (as the clone path does: a file that is not a program is
//! an error, never a script for /bin/sh as execvp would have it). std has already
//! put it in its own process group and reset its signal mask and SIGPIPE;
//! exeio's handlers go at exec. Each step's error comes back from `spawn`
//! as the OS error, for a 400.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::libc;

use super::exec::{Environment, Plan, Started, candidates, inherited};

/// Start `plan` with std's `Command`.
pub(super) fn start(plan: Plan<'_>) -> io::Result<Started> {
    let Plan {
        program,
        args,
        env,
        drop_env,
        cwd,
        ids,
        cgroup,
    } = plan;
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let env = Environment::build(
        inherited(drop_env).chain(
            env.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        ),
    )?;
    let argv: Vec<CString> = std::iter::once(program.as_bytes())
        .chain(args.iter().map(|a| a.as_bytes()))
        .map(cstr)
        .collect::<io::Result<_>>()?;
    let step = ChildStep {
        cgroup: cgroup.map_or(-1, |(_, procs)| procs),
        parent: std::process::id() as libc::pid_t,
        ids: ids.map(|i| (i.uid, i.gid)),
        groups: ids.map(|i| i.groups.clone()).unwrap_or_default(),
        cwd: cwd.map(|d| cstr(d.as_os_str().as_bytes())).transpose()?,
        candidates: candidates(program, env.path.as_deref())?,
        argv_ptrs: pointers(&argv),
        envp_ptrs: pointers(&env.vars),
        _argv: argv,
        _envp: env.vars,
    };
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: `ChildStep::run` makes only async-signal-safe system calls on
    // data prepared here: no allocation, no lock.
    unsafe { cmd.pre_exec(move || step.run()) };
    let mut child = cmd.spawn()?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        unreachable!("all three are piped");
    };
    // Dropping `child` neither waits nor kills: the child's thread and the
    // supervisor reap it by pid.
    Ok(Started {
        pid: child.id(),
        pidfd: None,
        stdin: OwnedFd::from(stdin),
        stdout: OwnedFd::from(stdout),
        stderr: OwnedFd::from(stderr),
    })
}

/// A NULL-terminated array of pointers into `strings`.
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|c| c.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

/// What the child does between fork and exec, prepared by the parent.
struct ChildStep {
    /// `cgroup.procs` of the child's cgroup, or -1.
    cgroup: RawFd,
    parent: libc::pid_t,
    ids: Option<(libc::uid_t, libc::gid_t)>,
    groups: Vec<libc::gid_t>,
    cwd: Option<CString>,
    /// Where `execve` is tried, in order (as execvp would, without its
    /// fallback of running a file it cannot exec with /bin/sh).
    candidates: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// What the pointers point into.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
}

// SAFETY: the pointers point into the CStrings the step owns (on the heap,
// so moving the step keeps them valid); nothing writes through them.
unsafe impl Send for ChildStep {}
// SAFETY: as above: read-only.
unsafe impl Sync for ChildStep {}

impl ChildStep {
    /// In the forked child: async-signal-safe calls only. Returns only on
    /// failure: it execs the program itself, so that std's execvp never
    /// runs a file that is not a program with /bin/sh.
    fn run(&self) -> io::Result<()> {
        let check = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: plain system calls on fds and data this step owns; the
        // forked child is single-threaded, so the libc wrappers that change
        // ids act on it alone.
        unsafe {
            if self.cgroup >= 0 {
                check(libc::write(self.cgroup, b"0".as_ptr().cast(), 1) == 1)?;
            }
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0)?;
            if libc::getppid() != self.parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Every fd above 2 close-on-exec: exeio opens its own so and
            // marks inherited ones at start; this covers any other. Kernels
            // before 5.11 cannot: then those marks are all there is.
            if libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) != 0
                && !matches!(*libc::__errno_location(), libc::ENOSYS | libc::EINVAL)
            {
                return Err(io::Error::last_os_error());
            }
            if let Some((uid, gid)) = self.ids {
                check(libc::setgroups(self.groups.len(), self.groups.as_ptr()) == 0)?;
                check(libc::setgid(gid) == 0)?;
                check(libc::setuid(uid) == 0)?;
            }
            if let Some(dir) = &self.cwd {
                check(libc::chdir(dir.as_ptr()) == 0)?;
            }
            let mut denied = false;
            for path in &self.candidates {
                libc::execve(
                    path.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                );
                match *libc::__errno_location() {
                    libc::EACCES => denied = true,
                    libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {}
                    _ => break,
                }
            }
            let errno = *libc::__errno_location();
            Err(io::Error::from_raw_os_error(
                if denied && errno == libc::ENOENT {
                    libc::EACCES
                } else {
                    errno
                },
            ))
        }
    }
}
