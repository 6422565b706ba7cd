//! Threads on stacks exeio maps and unmaps itself: the threads that come
//! and go with the load (one per child, the connection pool).
//!
//! Why not `std::thread`: glibc keeps the stacks of ended threads in a
//! cache of up to 40 MiB for reuse, each with the pages it touched and its
//! TLS block on the heap. After 1,000 processes came and went, exeio kept
//! ~8 MiB of dead stacks, and their TLS blocks, scattered through the heap,
//! kept another ~5 MiB of it from going back to the system. glibc never
//! caches a stack the caller provides.
//!
//! A thread's stack cannot be unmapped by the thread itself, so each
//! ending thread joins the ones that ended before it and unmaps their
//! stacks, then leaves its own for the next: at most one ended thread's
//! stack is ever kept. Joins follow the order of the graveyard's lock, so
//! no two threads ever wait on each other.

use std::ffi::CString;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, PoisonError};

use nix::libc;

/// A stack mapping: a guard page at the bottom, then the stack.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: a mapping's address and length; whoever holds it owns the mapping.
unsafe impl Send for Stack {}

impl Stack {
    fn map(size: usize) -> io::Result<Stack> {
        let page = crate::sys::page_size() as usize;
        let len = size.div_ceil(page) * page + page;
        // SAFETY: a fresh anonymous mapping, owned by the returned Stack.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of the mapping we just made.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error()); // unmapped by drop
        }
        Ok(stack)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our mapping, and no thread runs on it any more.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// An ended thread, and the stack to unmap once it is joined.
struct Grave {
    thread: libc::pthread_t,
    stack: Stack,
}

// SAFETY: a pthread_t may be joined from any thread.
unsafe impl Send for Grave {}

static GRAVES: Mutex<Vec<Grave>> = Mutex::new(Vec::new());

struct Start {
    f: Option<Box<dyn FnOnce() + Send>>,
    name: CString,
    stack: Stack,
}

/// Start `f` on a thread of its own named `name` (at most 15 bytes are
/// kept), with `stack_size` bytes of stack. The thread is never joined by
/// the caller.
pub fn spawn<F>(name: &str, stack_size: usize, f: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let stack = Stack::map(stack_size)?;
    let page = crate::sys::page_size() as usize;
    let name: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    let (top, size) = (
        // SAFETY: within the mapping: above the guard page.
        unsafe { stack.base.cast::<u8>().add(page) }.cast::<libc::c_void>(),
        stack.len - page,
    );
    let start = Box::into_raw(Box::new(Start {
        f: Some(Box::new(f)),
        name: CString::new(name).unwrap_or_default(),
        stack,
    }));
    // SAFETY: attr is initialised before use and destroyed after; the stack
    // stays mapped until the thread has been joined (see `bury`); `start`
    // is handed to the thread, or taken back if it could not be created.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstack(&mut attr, top, size);
        let mut thread: libc::pthread_t = std::mem::zeroed();
        let rc = libc::pthread_create(&mut thread, &attr, run, start.cast());
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(start)); // unmaps the stack
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

extern "C" fn run(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `spawn` passed a Box<Start> and gave up its ownership.
    let mut start = unsafe { Box::from_raw(arg.cast::<Start>()) };
    // SAFETY: naming the calling thread with a NUL-terminated name.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), start.name.as_ptr()) };
    // The boxes are freed when the work is done, not before: a thread's
    // first malloc or free gives it a malloc cache, which an idle child's
    // thread has no use for.
    if let Some(f) = start.f.take() {
        // A panic must not unwind into C; the panic hook has already said why.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(f));
    }
    let Start { stack, .. } = *start;
    bury(stack);
    std::ptr::null_mut()
}

/// Leave this thread's stack for the next ending thread, and unmap the
/// stacks of those that ended before.
fn bury(stack: Stack) {
    // SAFETY: pthread_self of the calling thread.
    let me = Grave {
        thread: unsafe { libc::pthread_self() },
        stack,
    };
    let older = {
        let mut graves = GRAVES.lock().unwrap_or_else(PoisonError::into_inner);
        let older = std::mem::take(&mut *graves);
        graves.push(me);
        older
    };
    for grave in older {
        // SAFETY: a joinable thread that has finished its work (it buried
        // itself); joined once, here. Its stack is unmapped only after.
        unsafe { libc::pthread_join(grave.thread, std::ptr::null_mut()) };
        drop(grave.stack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_on_its_own_named_thread_and_ended_stacks_are_unmapped() {
        let (tx, rx) = mpsc::channel();
        for i in 0..20 {
            let tx = tx.clone();
            spawn(&format!("test-thread-{i}"), 64 * 1024, move || {
                let mut name = [0u8; 16];
                // SAFETY: reading the calling thread's name into a buffer.
                unsafe {
                    libc::pthread_getname_np(
                        libc::pthread_self(),
                        name.as_mut_ptr().cast(),
                        name.len(),
                    )
                };
                tx.send(name).unwrap();
            })
            .unwrap();
        }
        drop(tx);
        let got: Vec<_> = rx.iter().collect();
        assert_eq!(got.len(), 20);
        assert!(got.iter().all(|n| n.starts_with(b"test-thread-")));
        // Every thread has ended: at most one stack is kept, and it is
        // unmapped when the next thread ends.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let kept = GRAVES.lock().unwrap().len();
            if kept <= 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{kept} stacks kept");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_panic_ends_only_its_thread() {
        let (tx, rx) = mpsc::channel::<()>();
        spawn("test-panic", 64 * 1024, move || {
            let _keep = tx;
            panic!("on purpose");
        })
        .unwrap();
        // The sender is dropped when the closure unwinds: the thread ended
        // and the process lives on.
        assert!(rx.recv().is_err());
    }
}
