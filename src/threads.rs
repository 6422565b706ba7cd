//! Detached helper threads (the refusal linger, the notification senders):
//! `std::thread` with a name and an explicit small stack (SPEC 1). Called by
//! the modules that own such a thread; `daemon` starts the long-lived ones.

/// Start `f` on a detached thread called `name` with a `stack`-byte stack.
pub fn spawn_detached<F>(name: &str, stack: usize, f: F) -> std::io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(stack)
        .spawn(f)
        .map(drop)
}
