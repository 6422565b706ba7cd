//! The child between clone and execve: how it is cloned, and the routine
//! it runs. `exec` prepares everything it needs (a `ChildPlan`).
//!
//! The clone is vfork-style (`CLONE_VM | CLONE_VFORK`): the child shares
//! exeio's memory and exeio waits until it has exec'd or failed, so nothing
//! is copied. With clone3 (Linux 5.7) the child starts right in its cgroup
//! and comes with a pidfd.
//!
//! Its fd table: a plain clone copies exeio's whole table (six fds per
//! supervised process), and execve then closes all but stdio, so a spawn
//! cost grew with the number of processes. Instead the child shares the
//! table (`CLONE_FILES`), and its first act is `close_range(K, ~0,
//! CLOSE_RANGE_UNSHARE)` (Linux 5.9), which gives it a private copy of fds
//! below K only. Its pipes are moved to three slots below K beforehand:
//! fds exeio reserves at start and keeps on /dev/null between spawns.
//! Where the kernel cannot, exeio falls back to the plain clone for good.
//!
//! Signals are blocked around the clone with the raw `rt_sigprocmask`
//! (glibc's `pthread_sigmask` will not block the two signals glibc itself
//! uses), the child's stack is aligned by its type, and every return code
//! is checked: a spawn that cannot be done safely is an error, not a risk.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::libc;

/// Stack of the short-lived child routine (it runs until execve).
const CHILD_STACK_SIZE: usize = 64 * 1024;

/// The child routine's stack: aligned by its type, as the ABI wants a
/// stack's top (its size is a multiple of the alignment).
#[repr(C, align(16))]
struct ChildStack([u8; CHILD_STACK_SIZE]);

impl ChildStack {
    /// On the heap, zeroed, without passing through the caller's stack.
    fn new() -> Box<ChildStack> {
        let layout = std::alloc::Layout::new::<ChildStack>();
        // SAFETY: a non-zero-sized layout; all-zero bytes are a valid
        // `ChildStack`, and the allocation is handed to the Box it was
        // made for (same layout).
        unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<ChildStack>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(p)
        }
    }
}

thread_local! {
    /// The child routine's stack, kept: spawns happen on one thread (the
    /// supervisor's), one at a time.
    static CHILD_STACK: std::cell::RefCell<Box<ChildStack>> =
        std::cell::RefCell::new(ChildStack::new());
}

/// Every signal, as the kernel's `rt_sigprocmask` takes them (64 bits on
/// Linux's x86_64 and aarch64). glibc's `sigfillset` leaves out the two
/// it uses itself (SIGCANCEL, SIGSETXID), which must not run in the child
/// either: hence the raw system call.
const ALL_SIGNALS: u64 = !0;
const NO_SIGNALS: u64 = 0;

/// `rt_sigprocmask(SIG_SETMASK, set, old)` for the calling thread.
fn set_mask(set: u64, old: Option<&mut u64>) -> io::Result<()> {
    let old = old.map_or(std::ptr::null_mut(), |o| o as *mut u64);
    // SAFETY: pointers to two 8-byte sets (or null), the kernel's size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &set as *const u64,
            old,
            std::mem::size_of::<u64>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The three low fds a child's stdio passes through, and /dev/null to park
/// them on between spawns.
struct StdioSlots {
    fds: [RawFd; 3],
    null: OwnedFd,
    /// Held from the move into the slots to the clone: spawns come from the
    /// supervisor thread only, but the slots must never be shared.
    busy: Mutex<()>,
}

static SLOTS: OnceLock<StdioSlots> = OnceLock::new();
/// Whether children may share the fd table until they unshare it.
static SHARE_FILES: AtomicBool = AtomicBool::new(true);
/// Whether this path can start children at all (see `ChildPlan::cloexec_failed`).
static USABLE: AtomicBool = AtomicBool::new(true);

/// False once this kernel has shown it cannot run this path: then
/// `exec::start` uses the portable one.
pub(super) fn usable() -> bool {
    USABLE.load(Ordering::Relaxed)
}

/// Reserve the stdio slots (at start, while fd numbers are low). Without
/// them every child copies exeio's whole fd table.
pub fn reserve_slots() {
    let open = || {
        // SAFETY: open(2) of a constant path; the fd is owned at once.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        // SAFETY: a new fd, owned by no one else.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    // Started with stdin, stdout or stderr closed: /dev/null there first,
    // or a slot would take its number (and exeio's prints would go to it).
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether the fd is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0
            && let Some(fd) = open()
        {
            std::mem::forget(fd); // lowest free number: this one
        }
    }
    let (Some(a), Some(b), Some(c), Some(null)) = (open(), open(), open(), open()) else {
        return;
    };
    // Held for good: a slot is always open (on /dev/null or a pipe), so no
    // other open ever takes its number.
    let fds = [a, b, c].map(|fd| {
        let raw = fd.as_raw_fd();
        std::mem::forget(fd);
        raw
    });
    let _ = SLOTS.set(StdioSlots {
        fds,
        null,
        busy: Mutex::new(()),
    });
}

/// What the child routine reads (prepared by the parent) and writes back.
pub(super) struct ChildPlan {
    pub candidates: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    pub cwd: Option<CString>,
    /// stdin, stdout and stderr for the child, as exeio's fds.
    pub fds: [libc::c_int; 3],
    pub parent: libc::pid_t,
    /// `cgroup.procs` of the child's cgroup, or -1.
    pub cgroup: libc::c_int,
    pub ids: Option<(libc::uid_t, libc::gid_t)>,
    pub groups: Vec<libc::gid_t>,
    /// errno of the failure, written by the child before it exits.
    error: libc::c_int,
    /// The signals the child sets back to their default.
    caught: &'static [libc::c_int],
    /// Set by `clone`: the child writes itself into `cgroup`.
    join_cgroup: bool,
    /// Set by `clone`: the child shares the fd table and keeps fds below this.
    keep_below: libc::c_uint,
    /// Written by the child: the unshare failed (an old kernel).
    unshare_failed: bool,
    /// Written by the child: marking fds close-on-exec failed (a kernel
    /// before 5.11): this path cannot keep exeio's fds from the child.
    cloexec_failed: bool,
}

impl ChildPlan {
    /// Why the child could not exec (an errno), or 0: read once `clone`
    /// has returned.
    pub fn error(&self) -> libc::c_int {
        // SAFETY: the child wrote it through the pointer it was given; it
        // has exec'd or exited, so nothing writes it any more.
        unsafe { std::ptr::read_volatile(&self.error) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        candidates: Vec<CString>,
        argv: Vec<*const libc::c_char>,
        envp: Vec<*const libc::c_char>,
        cwd: Option<CString>,
        fds: [libc::c_int; 3],
        cgroup: libc::c_int,
        ids: Option<(libc::uid_t, libc::gid_t)>,
        groups: Vec<libc::gid_t>,
    ) -> ChildPlan {
        ChildPlan {
            candidates,
            argv,
            envp,
            cwd,
            fds,
            parent: std::process::id() as libc::pid_t,
            cgroup,
            ids,
            groups,
            error: 0,
            caught: caught_signals(),
            join_cgroup: true,
            keep_below: 0,
            unshare_failed: false,
            cloexec_failed: false,
        }
    }
}

/// The signals exeio catches (and SIGPIPE, which Rust ignores): what a
/// child must set back to their defaults. Read once, at the first spawn:
/// exeio installs its handlers at start, before any child. One system call
/// per signal in the parent once, instead of 64 in every child while exeio
/// waits for it.
fn caught_signals() -> &'static [libc::c_int] {
    static CAUGHT: OnceLock<Vec<libc::c_int>> = OnceLock::new();
    CAUGHT.get_or_init(|| {
        (1..65)
            .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
            .filter(|&sig| {
                // SAFETY: sigaction with a null new action only reads.
                unsafe {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                        && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                        && old.sa_sigaction != libc::SIG_DFL
                }
            })
            .collect()
    })
}

/// Clone the child routine for `plan`, into the cgroup at `cgroup_dir` when
/// the kernel can. Returns its pid and, with clone3, a pidfd. The child has
/// exec'd or failed (then `plan.error` says why, and it must be reaped).
fn clone_any(
    plan: &mut ChildPlan,
    cgroup_dir: Option<RawFd>,
) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    if SHARE_FILES.load(Ordering::Relaxed)
        && let Some(slots) = SLOTS.get()
    {
        let _busy = slots.busy.lock().unwrap_or_else(|e| e.into_inner());
        let stdio = plan.fds;
        let moved = stdio.iter().zip(slots.fds).all(|(&fd, slot)| {
            // SAFETY: dup3 onto a slot this module owns.
            unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) == slot }
        });
        let started = moved.then(|| {
            plan.fds = slots.fds;
            plan.keep_below = slots.fds.iter().max().map_or(3, |&m| m as libc::c_uint + 1);
            let started = clone_blocked(plan, cgroup_dir, libc::CLONE_FILES as u64);
            plan.fds = stdio;
            plan.keep_below = 0;
            started
        });
        let parked = slots.fds.iter().all(|&slot| {
            // SAFETY: back onto /dev/null (this drops the pipe's extra fd).
            unsafe { libc::dup3(slots.null.as_raw_fd(), slot, libc::O_CLOEXEC) == slot }
        });
        if !parked {
            // A slot may still hold a pipe's end: never use them again.
            SHARE_FILES.store(false, Ordering::Relaxed);
            crate::diag::warn(&format!(
                "cannot park the spawn's stdio slots on /dev/null ({}): every spawn \
                 copies exeio's fd table from now on",
                io::Error::last_os_error()
            ));
        }
        match started {
            Some(Ok((pid, _))) if plan.unshare_failed => {
                reap(pid);
                plan.error = 0;
                plan.unshare_failed = false;
                SHARE_FILES.store(false, Ordering::Relaxed);
                crate::diag::warn(
                    "this kernel cannot unshare an fd table with close_range \
                     (Linux 5.9): every spawn copies exeio's fd table",
                );
            }
            Some(started) => return started,
            None => {}
        }
    }
    clone_blocked(plan, cgroup_dir, 0)
}

/// `clone_any`, and the end of this path on a kernel that cannot mark
/// fds close-on-exec (an error; `usable` says so from then on).
pub(super) fn clone(
    plan: &mut ChildPlan,
    cgroup_dir: Option<RawFd>,
) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    match clone_any(plan, cgroup_dir) {
        Ok((pid, _)) if plan.cloexec_failed => {
            reap(pid);
            USABLE.store(false, Ordering::Relaxed);
            crate::diag::warn(
                "this kernel cannot mark fds close-on-exec with close_range \
                 (Linux 5.11): children are started the portable way",
            );
            Err(io::ErrorKind::Unsupported.into())
        }
        started => started,
    }
}

/// Reap a child that failed before it exec'd.
pub(super) fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// `clone_child` with every signal blocked, so no handler runs in the child
/// (the old mask is restored afterwards), on the kept stack.
fn clone_blocked(
    plan: &mut ChildPlan,
    cgroup_dir: Option<RawFd>,
    extra: u64,
) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    CHILD_STACK.with_borrow_mut(|stack| {
        let mut old = NO_SIGNALS;
        set_mask(ALL_SIGNALS, Some(&mut old))?;
        // SAFETY: every signal is blocked; the child runs `child_main` on
        // `stack` with `plan`, both alive until the clone returns
        // (CLONE_VFORK suspends us until the child execs or exits).
        let started = unsafe { clone_child(&mut stack.0, plan, cgroup_dir, extra) };
        if let Err(e) = set_mask(old, None) {
            crate::diag::warn(&format!(
                "cannot restore the signal mask after a spawn: {e}"
            ));
        }
        started
    })
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

/// Clone the child routine, vfork-style, with `extra` flags: into the
/// cgroup at `cgroup_dir` and with a pidfd when the kernel can (clone3,
/// Linux 5.7), else with clone(2) (the child then joins its cgroup itself).
///
/// # Safety
/// All signals must be blocked; `stack` and `plan` must outlive the call.
unsafe fn clone_child(
    stack: &mut [u8],
    plan: &mut ChildPlan,
    cgroup_dir: Option<RawFd>,
    extra: u64,
) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    let arg = (plan as *mut ChildPlan).cast::<libc::c_void>();
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | extra;
    #[cfg(target_arch = "x86_64")]
    {
        let mut pidfd: libc::c_int = -1;
        let mut args = CloneArgs {
            flags: flags | libc::CLONE_PIDFD as u64,
            pidfd: (&mut pidfd as *mut libc::c_int) as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: stack.len() as u64,
            ..CloneArgs::default()
        };
        plan.join_cgroup = cgroup_dir.is_none();
        if let Some(dir) = cgroup_dir {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = dir as u64;
        }
        // SAFETY: the caller keeps the stack and plan alive; child_main
        // never returns on success and exits on failure.
        let r =
            unsafe { clone3_call(&mut args, std::mem::size_of::<CloneArgs>(), child_main, arg) };
        if r > 0 {
            // SAFETY: the kernel wrote a new pidfd for the child.
            let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
            return Ok((r as libc::pid_t, pidfd));
        }
        let errno = -r as i32;
        if !matches!(
            errno,
            libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EPERM
        ) {
            return Err(io::Error::from_raw_os_error(errno));
        }
    }
    plan.join_cgroup = true;
    let _ = cgroup_dir;
    // Aligned: the stack's type is, and its size a multiple of that.
    let top = stack.as_mut_ptr() as usize + stack.len();
    // SAFETY: as above, with glibc's clone(3).
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            flags as libc::c_int | libc::SIGCHLD,
            arg,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((pid, None))
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
        // Into the cgroup first (its fd may lie above `keep_below`; a write
        // leaves the fd table alone).
        if plan.join_cgroup
            && plan.cgroup >= 0
            && libc::write(plan.cgroup, b"0".as_ptr().cast(), 1) != 1
        {
            fail(plan);
        }
        // Then a table of our own (fds below `keep_below` only) if we share
        // exeio's: nothing after this may change exeio's fds.
        if plan.keep_below > 0
            && libc::syscall(
                libc::SYS_close_range,
                plan.keep_below,
                u32::MAX,
                libc::CLOSE_RANGE_UNSHARE,
            ) != 0
        {
            plan.unshare_failed = true;
            fail(plan);
        }
        // Every caught signal back to its default (exeio's handlers must
        // never run here); SIGPIPE too, which Rust ignores.
        for &sig in plan.caught {
            if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                fail(plan);
            }
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
        // here again). Marking, not closing: with a copy of exeio's whole
        // table, closing would hold exeio (suspended by CLONE_VFORK) for all
        // of it, while execve closes them after it has let exeio go.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            plan.cloexec_failed = true;
            fail(plan);
        }
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
        if set_mask(NO_SIGNALS, None).is_err() {
            fail(plan);
        }
        let mut denied = false;
        for path in &plan.candidates {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            match *libc::__errno_location() {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {}
                _ => break,
            }
        }
        // Block signals again: the parent must not see a handler run on our
        // stack. (It cannot fail: the set is valid; nothing to do if it did.)
        let errno = *libc::__errno_location();
        let _ = set_mask(ALL_SIGNALS, None);
        *libc::__errno_location() = if denied && errno == libc::ENOENT {
            libc::EACCES
        } else {
            errno
        };
        fail(plan)
    }
}
