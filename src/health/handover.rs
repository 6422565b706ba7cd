//! The hand-over to one carrier thread (`exec::Waiter`, `net::Dialer`): a
//! pool worker starts a check and sends it through a bounded channel, then
//! rings an eventfd so the carrier, asleep in its one poll over everything
//! in flight, takes it. Dropping the hand-over closes the channel and rings
//! once more: the carrier sees the end, finishes what it carries and exits.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::sys;

/// Checks waiting to be taken at most; a full queue makes the workers wait.
const QUEUED: usize = 64;
/// The carrier's stack: its loop holds a poll set and one read buffer.
const STACK: usize = 128 * 1024;

pub struct Handover<T> {
    tx: Option<Sender<T>>,
    bell: Arc<OwnedFd>,
}

impl<T: Send + 'static> Handover<T> {
    /// Start the carrier thread `name`, running `carry` until the end.
    pub fn start(name: &str, carry: fn(&Receiver<T>, &OwnedFd)) -> io::Result<Handover<T>> {
        let (tx, rx) = bounded(QUEUED);
        let bell = Arc::new(sys::eventfd()?);
        let b = bell.clone();
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(STACK)
            .spawn(move || carry(&rx, &b))?;
        Ok(Handover { tx: Some(tx), bell })
    }

    /// Hand `item` over (waits while the queue is full); it comes back when
    /// the carrier is gone, for the caller to finish.
    pub fn send(&self, item: T) -> Result<(), T> {
        let Some(tx) = &self.tx else { return Err(item) };
        match tx.send(item) {
            Ok(()) => {
                sys::eventfd_ring(&self.bell);
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }
}

impl<T> Drop for Handover<T> {
    fn drop(&mut self) {
        self.tx = None;
        sys::eventfd_ring(&self.bell); // it sees the hand-over closed
    }
}
