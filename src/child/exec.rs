//! Starting a child process: `clone(CLONE_VM | CLONE_VFORK)` and `execve`,
//! as `posix_spawn` does, plus the one thing `posix_spawn` cannot do: set
//! `PR_SET_PDEATHSIG` in the child before it execs.
//!
//! Why not `std::process::Command` with `pre_exec`: that forces a real
//! `fork`, which copies every mapping of exeio (one stack per child thread),
//! so each spawn got slower as children accumulated. A vfork-style child
//! shares exeio's memory and runs only until `execve`: nothing is copied.
//!
//! Everything the child needs (paths, argv, envp, fds, ids) is prepared
//! here before the clone; the child routine only makes async-signal-safe
//! system calls on that prepared data, on a stack of its own, with every
//! signal blocked until just before `execve`. Before it unblocks them it
//! resets every handled signal to its default, as `posix_spawn` does: a
//! signal landing between the unmask and `execve` must not run one of
//! exeio's handlers inside the child, which shares exeio's memory.
//!
//! The child also joins its cgroup (if any) before anything else, and
//! closes every fd above 2: it inherits only stdin, stdout and stderr.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::libc;

use crate::users::Ids;

/// Stack of the short-lived child routine (it runs until execve).
const CHILD_STACK_SIZE: usize = 64 * 1024;

thread_local! {
    /// The child routine's stack, kept: spawns happen on one thread (the
    /// supervisor's), one at a time.
    static CHILD_STACK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHILD_STACK_SIZE]);
}

/// `struct clone_args` of clone3(2), up to `cgroup`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) that runs `f(arg)` in the child on the stack in `args`, as
/// glibc's clone(3) does for clone(2): the child gets a new stack, so it
/// cannot return into Rust; it calls `f` and exits with its result.
///
/// # Safety
/// `args` must describe a valid stack that stays alive while the child uses
/// it, and `f` must never return into code that expects the parent's stack.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
unsafe extern "C" fn clone3_call(
    args: *mut CloneArgs,
    size: usize,
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> isize {
    core::arch::naked_asm!(
        "push r12",
        "push r13",
        "mov r12, rdx",
        "mov r13, rcx",
        "mov eax, 435", // SYS_clone3: rdi = args, rsi = size
        "syscall",
        "test rax, rax",
        "jnz 2f",
        // The child, on its own stack; r12 and r13 survive the syscall.
        "xor ebp, ebp",
        "mov rdi, r13",
        "call r12",
        "mov edi, eax",
        "mov eax, 60", // SYS_exit
        "syscall",
        "ud2",
        "2:",
        "pop r13",
        "pop r12",
        "ret",
    )
}

/// Clone the child routine, vfork-style: into the cgroup at `cgroup_dir`
/// and with a pidfd when the kernel can (clone3, Linux 5.7), else with
/// clone(2) (the child then joins its cgroup itself).
///
/// # Safety
/// All signals must be blocked; `stack` and `plan` must outlive the call.
unsafe fn clone_child(
    stack: &mut [u8],
    plan: &mut ChildPlan,
    cgroup_dir: Option<RawFd>,
) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    let arg = (plan as *mut ChildPlan).cast::<libc::c_void>();
    #[cfg(target_arch = "x86_64")]
    {
        let mut pidfd: libc::c_int = -1;
        let mut args = CloneArgs {
            flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64,
            pidfd: (&mut pidfd as *mut libc::c_int) as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: stack.len() as u64,
            ..CloneArgs::default()
        };
        let procs = plan.cgroup;
        if let Some(dir) = cgroup_dir {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = dir as u64;
            plan.cgroup = -1; // the child starts in it
        }
        // SAFETY: the caller keeps the stack and plan alive; child_main
        // never returns on success and exits on failure.
        let r =
            unsafe { clone3_call(&mut args, std::mem::size_of::<CloneArgs>(), child_main, arg) };
        if r > 0 {
            // SAFETY: the kernel wrote a new pidfd for the child.
            let pidfd = (pidfd >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(pidfd) });
            return Ok((r as libc::pid_t, pidfd));
        }
        let errno = -r as i32;
        if !matches!(
            errno,
            libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EPERM
        ) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        plan.cgroup = procs; // clone(2): the child joins by itself
    }
    let _ = cgroup_dir;
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: as above, with glibc's clone(3).
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((pid, None))
}

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

/// What the child routine reads (prepared by the parent) and writes back.
struct ChildPlan {
    candidates: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    fds: [libc::c_int; 3],
    parent: libc::pid_t,
    /// `cgroup.procs` to write to; -1 when the child started in its cgroup.
    cgroup: libc::c_int,
    ids: Option<(libc::uid_t, libc::gid_t)>,
    groups: Vec<libc::gid_t>,
    /// errno of the failure, written by the child before it exits.
    error: libc::c_int,
}

/// Start `plan.program` with its args and exeio's environment (less
/// `drop_env`, plus `env`), in a new process group, stdio piped, SIGKILLed
/// if exeio dies.
pub fn start(plan: Plan<'_>) -> io::Result<Started> {
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

    let mut plan = ChildPlan {
        candidates,
        argv: argv_c
            .iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect(),
        envp: envp_c
            .iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect(),
        cwd,
        fds: [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        parent: std::process::id() as libc::pid_t,
        cgroup: cgroup.map_or(-1, |(_, procs)| procs),
        ids: ids.map(|i| (i.uid, i.gid)),
        groups: ids.map(|i| i.groups.clone()).unwrap_or_default(),
        error: 0,
    };
    let (pid, pidfd) = CHILD_STACK.with_borrow_mut(|stack| {
        // SAFETY: the child runs `child_main` on `stack` with `plan`, both
        // alive until the clone returns (CLONE_VFORK suspends us until the
        // child execs or exits). All signals are blocked around the clone so
        // no handler runs in the child; the old mask is restored afterwards.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let started = clone_child(stack, &mut plan, cgroup.and_then(|(dir, _)| dir));
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            started
        }
    })?;
    drop((in_r, out_w, err_w)); // the child's ends
    drop(argv_c);
    // SAFETY: the child wrote it through the pointer we passed; it has exec'd or exited.
    let error = unsafe { std::ptr::read_volatile(&plan.error) };
    if error != 0 {
        // The child never exec'd: reap it and report why.
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
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
struct Environment {
    vars: Vec<CString>,
    path: Option<OsString>,
}

impl Environment {
    /// Later pairs override earlier ones with the same name.
    fn build(pairs: impl Iterator<Item = (OsString, OsString)>) -> io::Result<Environment> {
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
fn inherited(drop_env: &str) -> impl Iterator<Item = (OsString, OsString)> + '_ {
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
fn candidates(program: &str, path: Option<&OsStr>) -> io::Result<Vec<CString>> {
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

/// The child, between clone and execve. Async-signal-safe calls only, on
/// data the parent prepared; never returns on success.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildPlan`, alive while the parent is suspended.
    unsafe {
        let plan = &mut *(arg as *mut ChildPlan);
        let fail = |plan: &mut ChildPlan| -> ! {
            plan.error = *libc::__errno_location();
            if plan.error == 0 {
                plan.error = libc::EINVAL;
            }
            libc::_exit(127)
        };
        // Every caught signal back to its default (exeio's handlers must
        // never run here); SIGPIPE too, which Rust ignores.
        for sig in 1..65 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && old.sa_sigaction != libc::SIG_DFL
            {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if plan.cgroup >= 0 && libc::write(plan.cgroup, b"0".as_ptr().cast(), 1) != 1 {
            fail(plan);
        }
        if libc::setpgid(0, 0) != 0 {
            fail(plan);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            fail(plan);
        }
        if libc::getppid() != plan.parent {
            *libc::__errno_location() = libc::ESRCH;
            fail(plan);
        }
        for (target, &fd) in plan.fds.iter().enumerate() {
            let target = target as libc::c_int;
            if fd == target {
                // dup2 onto itself keeps CLOEXEC: clear it instead.
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) != 0 {
                    fail(plan);
                }
            } else if libc::dup2(fd, target) < 0 {
                fail(plan);
            }
        }
        // Only 0, 1 and 2 go on: every other fd is marked close-on-exec
        // (exeio's own are opened so; inherited ones are marked at start, and
        // here again). Marking, not closing: closing hundreds of fds here
        // would hold exeio (suspended by CLONE_VFORK) for all of it, while
        // execve closes them after it has let exeio go.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        // Raw system calls: glibc's wrappers would try to change the ids of
        // every thread of exeio (its setxid broadcast), and this child is
        // not those threads.
        if let Some((uid, gid)) = plan.ids
            && (libc::syscall(libc::SYS_setgroups, plan.groups.len(), plan.groups.as_ptr()) != 0
                || libc::syscall(libc::SYS_setgid, gid) != 0
                || libc::syscall(libc::SYS_setuid, uid) != 0)
        {
            fail(plan);
        }
        if let Some(dir) = &plan.cwd
            && libc::chdir(dir.as_ptr()) != 0
        {
            fail(plan);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        let mut denied = false;
        for path in &plan.candidates {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            match *libc::__errno_location() {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {}
                _ => break,
            }
        }
        // Block signals again: the parent must not see a handler run on our stack.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let errno = *libc::__errno_location();
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        *libc::__errno_location() = if denied && errno == libc::ENOENT {
            libc::EACCES
        } else {
            errno
        };
        fail(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

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
        assert_eq!(lines[3], "4", "only stdio is inherited");
        assert_eq!(err, "oops\n");
    }

    #[test]
    fn reports_why_a_program_cannot_start() {
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
        std::fs::remove_file(&plain).unwrap();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let e = start(plan("sh", &[], &none, Some(Path::new("/no/such/dir"))))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
