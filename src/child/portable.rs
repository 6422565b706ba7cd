//! The portable spawn: std's `Command` (fork and execvp) with a `pre_exec`
//! step for what std cannot do itself. Chosen with `EXEIO_SPAWN=portable`;
//! the default is the vfork-style clone of `clone` (see `exec`).
//!
//! The child, between fork and exec, in this order: joins its cgroup
//! (writing `cgroup.procs`), asks for SIGKILL when exeio's supervisor
//! thread dies (`PR_SET_PDEATHSIG`, then checks that exeio has not died
//! already), switches user and groups, and changes to its working
//! directory, with every fd but 0-2 marked close-on-exec. std has already
//! put it in its own process group and reset its signal mask and SIGPIPE;
//! exeio's handlers go at exec. Each step's error comes back from `spawn`
//! as the OS error, for a 400.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::libc;

use super::exec::{Plan, Started, inherited};

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
    let vars: BTreeMap<OsString, OsString> = inherited(drop_env)
        .chain(
            env.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .collect();
    let cwd = cwd
        .map(|d| {
            use std::os::unix::ffi::OsStrExt;
            CString::new(d.as_os_str().as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        })
        .transpose()?;
    let step = ChildStep {
        cgroup: cgroup.map_or(-1, |(_, procs)| procs),
        parent: std::process::id() as libc::pid_t,
        ids: ids.map(|i| (i.uid, i.gid)),
        groups: ids.map(|i| i.groups.clone()).unwrap_or_default(),
        cwd,
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(vars)
        .stdin(Stdio::piped())
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

/// What the child does between fork and exec, prepared by the parent.
struct ChildStep {
    /// `cgroup.procs` of the child's cgroup, or -1.
    cgroup: RawFd,
    parent: libc::pid_t,
    ids: Option<(libc::uid_t, libc::gid_t)>,
    groups: Vec<libc::gid_t>,
    cwd: Option<CString>,
}

impl ChildStep {
    /// In the forked child: async-signal-safe calls only.
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
        }
        Ok(())
    }
}
