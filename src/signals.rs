//! Signals are messages: SIGTERM/SIGINT become `Msg::Shutdown` (the path
//! `POST /shutdown` takes), SIGHUP becomes `Msg::ReopenLogs`. Registered
//! before any other thread starts; no logic runs in a handler.

use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::protocol::Msg;

pub struct SignalThread {
    pub handle: Handle,
    pub thread: JoinHandle<()>,
}

pub fn start(tx: Sender<Msg>) -> std::io::Result<SignalThread> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for sig in signals.forever() {
                let msg = if sig == SIGHUP {
                    Msg::ReopenLogs
                } else {
                    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                    crate::diag::say(&format!(
                        "exeio: shutting down: received {name}; stopping every process"
                    ));
                    Msg::Shutdown
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        })?;
    Ok(SignalThread { handle, thread })
}
