//! Starting a child process, two ways, chosen at run time:
//! - the default, `clone(CLONE_VM | CLONE_VFORK)` and `execve`, as
//!   `posix_spawn` does, plus the one thing `posix_spawn` cannot do: set
//!   `PR_SET_PDEATHSIG` in the child before it execs (in `clone`);
//! - `EXEIO_SPAWN=portable`: std's `Command` with a `pre_exec` step (in
//!   `portable`). The test suite runs on both (`.ci/run`).
//!
//! Why the clone by default: std's `Command` with `pre_exec` forces a real
//! `fork`, which copies every mapping of exeio (a stack and a signal stack
//! per child thread), so each spawn gets slower as children accumulate: on
//! the bench (a busy 2-core machine), adding 1,000 processes one by one
//! took 23 s that way against 3.7 s with the clone. A
//! vfork-style child shares exeio's memory and runs only until `execve`:
//! nothing is copied. A kernel too old for it (before 5.11) gets the
//! portable path by itself.
//!
//! Everything the child needs (paths, argv, envp, fds, ids) is prepared
//! here before the clone; the child routine (in `clone`) only makes
//! async-signal-safe system calls on that prepared data, on a stack of its
//! own, with every signal blocked until just before `execve`. Before it
//! unblocks them it resets every handled signal to its default, as
//! `posix_spawn` does: a signal landing between the unmask and `execve` must
//! not run one of exeio's handlers inside the child, which shares exeio's
//! memory. It starts in its cgroup (if any) and inherits only stdin, stdout
//! and stderr.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::libc;

use super::clone::{self, ChildPlan};
use crate::users::Ids;

/// The pipes of a started child, from exeio's side.
pub struct Started {
    pub pid: u32,
    /// A pidfd of the child, when the kernel made one with it (clone3).
    pub pidfd: Option<OwnedFd>,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What to start.
#[derive(Clone, Copy)]
pub struct Plan<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// Added to exeio's environment.
    pub env: &'a BTreeMap<String, String>,
    /// Left out of exeio's environment.
    pub drop_env: &'a str,
    pub cwd: Option<&'a Path>,
    /// Run as this user (exeio must be root to switch).
    pub ids: Option<&'a Ids>,
    /// The cgroup to start in: its directory, when clone3 may start the
    /// child right in it, and its `cgroup.procs`, which the child writes to
    /// otherwise (and on kernels before 5.7).
    pub cgroup: Option<(Option<RawFd>, RawFd)>,
}

/// How children are started: the vfork-style clone (the default) or std's
/// `Command` (`EXEIO_SPAWN=portable`), read once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Clone,
    Portable,
}

impl Method {
    pub fn current() -> Method {
        static METHOD: std::sync::OnceLock<Method> = std::sync::OnceLock::new();
        *METHOD.get_or_init(|| match std::env::var_os("EXEIO_SPAWN") {
            Some(v) if v == "portable" => Method::Portable,
            _ => Method::Clone,
        })
    }
}

/// Start `plan.program` with its args and exeio's environment (less
/// `drop_env`, plus `env`), in a new process group, stdio piped, SIGKILLed
/// if exeio dies.
pub fn start(plan: Plan<'_>) -> io::Result<Started> {
    if Method::current() == Method::Clone && clone::usable() {
        match start_cloned(plan) {
            Err(_) if !clone::usable() => {} // an old kernel: as below, for good
            started => return started,
        }
    }
    super::portable::start(plan)
}

fn start_cloned(plan: Plan<'_>) -> io::Result<Started> {
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
    let argv_c: Vec<CString> = std::iter::once(program.as_bytes())
        .chain(args.iter().map(|a| a.as_bytes()))
        .map(cstr)
        .collect::<io::Result<_>>()?;
    let base = base_env(drop_env);
    let merged: Environment;
    let env_used = if env.is_empty() {
        base
    } else {
        let overrides = env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        merged = Environment::build(inherited(drop_env).chain(overrides))?;
        &merged
    };
    let (envp_c, path_var) = (&env_used.vars, env_used.path.clone());
    let candidates = candidates(program, path_var.as_deref())?;
    let cwd = cwd.map(|d| cstr(d.as_os_str().as_bytes())).transpose()?;

    let (in_r, in_w) = std::io::pipe()?;
    let (out_r, out_w) = std::io::pipe()?;
    let (err_r, err_w) = std::io::pipe()?;
    let (in_r, out_w, err_w) = (
        OwnedFd::from(in_r),
        OwnedFd::from(out_w),
        OwnedFd::from(err_w),
    );

    let mut plan = ChildPlan::new(
        candidates,
        argv_c
            .iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect(),
        envp_c
            .iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect(),
        cwd,
        [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        cgroup.map_or(-1, |(_, procs)| procs),
        ids.map(|i| (i.uid, i.gid)),
        ids.map(|i| i.groups.clone()).unwrap_or_default(),
    );
    let (pid, pidfd) = clone::clone(&mut plan, cgroup.and_then(|(dir, _)| dir))?;
    drop((in_r, out_w, err_w)); // the child's ends
    drop(argv_c);
    let error = plan.error();
    if error != 0 {
        // The child never exec'd: reap it and report why.
        clone::reap(pid);
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(Started {
        pid: pid as u32,
        pidfd,
        stdin: OwnedFd::from(in_w),
        stdout: OwnedFd::from(out_r),
        stderr: OwnedFd::from(err_r),
    })
}

/// What `start` would run for `program`, or why it cannot: for a job that
/// does not run when it is added (a calendar job), the add is still a 400
/// when its program is missing or not executable.
pub fn find_program(program: &str, env: &BTreeMap<String, String>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"));
    let mut denied = false;
    for c in candidates(program, path.as_deref())? {
        match std::fs::metadata(OsStr::from_bytes(c.as_bytes())) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(()),
            Ok(_) => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied {
        io::ErrorKind::PermissionDenied.into()
    } else {
        io::Error::from_raw_os_error(libc::ENOENT)
    })
}

/// An environment as `KEY=value` strings, and its PATH.
pub(super) struct Environment {
    pub(super) vars: Vec<CString>,
    pub(super) path: Option<OsString>,
}

impl Environment {
    /// Later pairs override earlier ones with the same name.
    pub(super) fn build(
        pairs: impl Iterator<Item = (OsString, OsString)>,
    ) -> io::Result<Environment> {
        let vars: BTreeMap<OsString, OsString> = pairs.collect();
        let path = vars.get(OsStr::new("PATH")).cloned();
        let vars = vars
            .into_iter()
            .map(|(mut k, v)| {
                k.push("=");
                k.push(v);
                CString::new(k.into_vec()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
            })
            .collect::<io::Result<_>>()?;
        Ok(Environment { vars, path })
    }
}

/// exeio's own environment less `drop_env`.
pub(super) fn inherited(drop_env: &str) -> impl Iterator<Item = (OsString, OsString)> + '_ {
    std::env::vars_os().filter(move |(k, _)| k.as_os_str() != OsStr::new(drop_env))
}

/// The inherited environment, built once: exeio never changes its
/// environment, and rebuilding it for every spawn would only churn the heap.
fn base_env(drop_env: &str) -> &'static Environment {
    static BASE: std::sync::OnceLock<Environment> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        Environment::build(inherited(drop_env)).unwrap_or(Environment {
            vars: Vec::new(),
            path: None,
        })
    })
}

/// Where execve is tried, as execvp would: the name itself if it has a
/// `/`, else each directory of PATH.
pub(super) fn candidates(program: &str, path: Option<&OsStr>) -> io::Result<Vec<CString>> {
    let to_c =
        |b: Vec<u8>| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    if program.contains('/') {
        return Ok(vec![to_c(program.as_bytes().to_vec())?]);
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let all: Vec<CString> = path
        .as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(program.as_bytes());
            to_c(full)
        })
        .collect::<io::Result<_>>()?;
    // Only the names that exist (a stat each, cheaper than a failed execve
    // each in the child); all of them if none does, for the right errno.
    let existing: Vec<CString> = all
        .iter()
        .filter(|c| Path::new(OsStr::from_bytes(c.as_bytes())).exists())
        .cloned()
        .collect();
    Ok(if existing.is_empty() { all } else { existing })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn plan<'a>(
        program: &'a str,
        args: &'a [String],
        env: &'a BTreeMap<String, String>,
        cwd: Option<&'a Path>,
    ) -> Plan<'a> {
        Plan {
            program,
            args,
            env,
            drop_env: "EXEIO_NOT_PASSED",
            cwd,
            ids: None,
            cgroup: None,
        }
    }

    /// Both ways of starting a child: every test runs on each.
    type StartFn = fn(Plan<'_>) -> io::Result<Started>;
    const STARTS: [(&str, StartFn); 2] = [
        ("clone", start_cloned),
        ("portable", crate::child::portable::start),
    ];

    fn reap(pid: u32) -> i32 {
        let mut status = 0;
        // SAFETY: waitpid on a child this test started.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        libc::WEXITSTATUS(status)
    }

    #[test]
    fn candidates_follow_path_like_execvp() {
        let c = candidates("x/y", None).unwrap();
        assert_eq!(c, vec![CString::new("x/y").unwrap()]);
        let c = candidates("sh", Some(OsStr::new("/nonexistent:/bin:/usr/bin"))).unwrap();
        assert!(!c.is_empty() && c.iter().all(|p| p.to_bytes().ends_with(b"/sh")));
        assert!(!c.iter().any(|p| p.to_bytes().starts_with(b"/nonexistent")));
        // nothing exists: every candidate is kept, for execve's own errno
        let c = candidates("no-such-program-xyz", Some(OsStr::new("/a:/b"))).unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn starts_a_child_in_its_own_group_with_env_cwd_and_pipes() {
        let env = BTreeMap::from([("EXEIO_TEST_VAR".to_owned(), "v1".to_owned())]);
        let args = [
            "-c".into(),
            "echo $EXEIO_TEST_VAR; pwd; echo oops >&2; cut -d' ' -f5 /proc/$$/stat; \
             ls /proc/self/fd | wc -l; exit 3"
                .into(),
        ];
        for (name, start) in STARTS {
            let s = start(plan("sh", &args, &env, Some(Path::new("/")))).unwrap();
            let mut out = String::new();
            std::fs::File::from(s.stdout)
                .read_to_string(&mut out)
                .unwrap();
            let mut err = String::new();
            std::fs::File::from(s.stderr)
                .read_to_string(&mut err)
                .unwrap();
            assert_eq!(reap(s.pid), 3);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(&lines[..2], ["v1", "/"]);
            assert_eq!(lines[2], s.pid.to_string(), "own process group");
            // 0, 1, 2, and the fd `ls` opens to read the directory
            assert_eq!(lines[3], "4", "{name}: only stdio is inherited");
            assert_eq!(err, "oops\n");
        }
    }

    #[test]
    fn children_share_no_fd_beyond_stdio_through_the_slots() {
        clone::reserve_slots();
        let many: Vec<std::fs::File> = (0..200)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let none = BTreeMap::new();
        let args = [
            "-c".into(),
            "read x; echo got $x; ls /proc/self/fd | wc -l".into(),
        ];
        for (_, start) in STARTS.iter().chain(&STARTS).chain(&STARTS) {
            let s = start(plan("sh", &args, &none, None)).unwrap();
            std::fs::File::from(s.stdin).write_all(b"in\n").unwrap();
            let mut out = String::new();
            std::fs::File::from(s.stdout)
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(reap(s.pid), 0);
            assert_eq!(out, "got in\n4\n", "stdin reached it, and only stdio");
        }
        drop(many);
    }

    #[test]
    fn reports_why_a_program_cannot_start() {
        for (_, start) in STARTS {
            why_a_program_cannot_start(start);
        }
    }

    fn why_a_program_cannot_start(start: StartFn) {
        let none = BTreeMap::new();
        let e = start(plan("no-such-program-xyz", &[], &none, None))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let plain = std::env::temp_dir().join(format!("exeio-not-exec-{}", std::process::id()));
        std::fs::write(&plain, b"not a program").unwrap();
        let e = start(plan(plain.to_str().unwrap(), &[], &none, None))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        // Executable but not a program: an error, not a /bin/sh script.
        std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let e = start(plan(plain.to_str().unwrap(), &[], &none, None))
            .err()
            .unwrap();
        std::fs::remove_file(&plain).unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOEXEC), "{e}");
        let e = start(plan("sh", &[], &none, Some(Path::new("/no/such/dir"))))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
