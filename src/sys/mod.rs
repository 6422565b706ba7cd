//! The one home for raw OS calls (STYLE 18): every `unsafe` block of exeio
//! outside the spawn itself (`child::clone`) is here, each with a SAFETY
//! comment, behind a safe function. Callers: `http` (sockets), `child`
//! (pipes, pidfds), `daemon` (limits, inherited fds, malloc), `supervisor`
//! (heap trim), `procfs`. Threads are `std::thread`, each with an explicit
//! small stack.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Wait until one of `fds` is readable, or `timeout` passes (`None`:
/// forever). Which of them are readable (or hung up).
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let read: Vec<(BorrowedFd<'_>, bool)> = fds.iter().map(|fd| (*fd, false)).collect();
    wait_ready(&read, timeout)
}

/// Wait until one of `fds` is ready, or `timeout` passes (`None`:
/// forever): readable (or hung up), or writable where its flag asks for
/// that instead. Which of them are ready.
pub fn wait_ready(
    fds: &[(BorrowedFd<'_>, bool)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, write)| {
            let flags = if *write {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            PollFd::new(*fd, flags)
        })
        .collect();
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    loop {
        match poll(&mut polled, timeout) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(polled
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

/// Start a TCP connection to `addr` without waiting for it: a non-blocking
/// socket whose connect is under way (it turns writable when done;
/// `TcpStream::take_error` then says how it went). An error at once (a
/// refusal on loopback, no route) is returned as such.
pub fn connect_nonblocking(addr: &std::net::SocketAddr) -> io::Result<TcpStream> {
    use std::net::SocketAddr;
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket() with constant arguments; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let sock = unsafe { TcpStream::from_raw_fd(fd) };
    let ret = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            // SAFETY: `sin` is a valid sockaddr_in of the length given.
            unsafe {
                libc::connect(
                    fd,
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: `sin6` is a valid sockaddr_in6 of the length given.
            unsafe {
                libc::connect(
                    fd,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if ret == 0 {
        return Ok(sock);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(sock)
    } else {
        Err(e)
    }
}

/// Wait up to `wait` for the peer of a streaming reply to hang up. True if
/// it did, or if it sent anything (nothing is expected during a stream).
pub fn peer_closed(sock: &TcpStream, wait: Duration) -> bool {
    let flags = PollFlags::POLLIN | PollFlags::from_bits_retain(libc::POLLRDHUP);
    let mut fds = [PollFd::new(sock_fd(sock), flags)];
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => false,
        Ok(_) => true,
        Err(_) => true,
    }
}

fn sock_fd(sock: &TcpStream) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    sock.as_fd()
}

/// Send `bytes` without waiting (a refusal from the accept thread); what
/// does not fit in the socket buffer is dropped.
pub fn send_nowait(sock: &TcpStream, bytes: &[u8]) {
    // SAFETY: send on a socket we own, from a valid buffer of that length.
    unsafe {
        libc::send(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
    }
}

/// Close a connection after its last reply so that the client reads the
/// reply: shut our write half, then discard what the client still sends for
/// a moment (closing with unread input would reset the connection and
/// could destroy the reply in flight). Bounded: 256 KiB or 1 s.
pub fn close_after_reply(sock: &TcpStream) {
    use std::io::Read;
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let end = Instant::now() + Duration::from_secs(1);
    let mut budget = 256 * 1024;
    let mut buf = [0u8; 8192];
    let mut s = sock;
    while budget > 0 {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => budget -= n.min(budget),
        }
    }
}

/// `accept` errors that concern one connection only (accept(2), NOTES).
/// A longer accept queue than std's 128: a burst of connections must not
/// overflow it (the kernel then drops SYNs, and every client, the owner
/// too, waits a second for the retransmit). The kernel caps it at somaxconn.
pub fn listen_backlog(listener: &TcpListener, backlog: i32) {
    // SAFETY: listen(2) again on a listening socket only changes its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), backlog) };
}

pub fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Raise the soft limit on open files to the hard limit; the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    // SAFETY: getrlimit/setrlimit with a valid, initialized rlimit struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur)
    }
}

/// The soft limit on open files.
pub fn fd_limit() -> Option<u64> {
    // SAFETY: getrlimit with a valid rlimit struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        (libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0).then_some(lim.rlim_cur)
    }
}

/// Mark every fd from 3 up close-on-exec: fds exeio inherited (a shell's fd
/// 10, a socket from a parent) must not reach its children. Called once at
/// start, before any thread or file of exeio's own.
pub fn cloexec_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on an fd number; a closed fd (the dir's own) only fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Tune malloc for many mostly idle threads: one arena for the whole
/// process (glibc would give each busy thread its own, RSS that buys
/// nothing here), and a fixed mmap threshold so big buffers are their own
/// mappings, returned to the kernel when freed.
pub fn lean_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// Give the heap's free pages back to the system. glibc returns only the
/// free space at the top of the heap by itself; what lies between live
/// blocks stays resident until this.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub fn set_nonblocking(fd: &impl AsRawFd) {
    // SAFETY: fcntl on an fd the caller owns.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Grow a pipe's buffer (for floods); failure (limits) is harmless.
pub fn grow_pipe(f: &File, bytes: i32) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, bytes);
    }
}

/// (capacity, bytes queued) of a pipe, when the kernel says.
pub fn pipe_fill(f: &File) -> Option<(usize, usize)> {
    let fd = f.as_raw_fd();
    // SAFETY: plain fcntl/ioctl queries on an fd we own.
    unsafe {
        let cap = libc::fcntl(fd, libc::F_GETPIPE_SZ);
        let mut used: libc::c_int = 0;
        let r = libc::ioctl(fd, libc::FIONREAD, &mut used);
        (cap > 0 && r == 0).then_some((cap as usize, used.max(0) as usize))
    }
}

/// A pidfd for `pid` (Linux 5.3+): readable when the process exits.
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: the kernel just gave us this fd.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as f64 } else { 100.0 }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// An eventfd: a doorbell another thread can ring without ever blocking.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Ring the doorbell (a full counter means it is already ringing).
pub fn eventfd_ring(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: an 8-byte write from a valid u64 to an eventfd we own.
    unsafe {
        libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8);
    }
}

/// Silence the doorbell.
pub fn eventfd_clear(fd: &OwnedFd) {
    let mut n: u64 = 0;
    // SAFETY: an 8-byte read into a valid u64 from a non-blocking eventfd we own.
    unsafe {
        libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8);
    }
}

/// Reap our exited child `pid`; the CPU time it (and the children it
/// waited for) used.
pub fn reap(pid: u32) -> Duration {
    // SAFETY: wait4 on our own child, with valid status and rusage buffers.
    unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        loop {
            let r = libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage);
            if r >= 0 || *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }
}

/// Cap the kernel's send buffer of a socket (long-lived streams: what a
/// client that stopped reading can pin).
pub fn cap_send_buffer(sock: &TcpStream, bytes: usize) {
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt on a socket we own, with a valid int option value.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
