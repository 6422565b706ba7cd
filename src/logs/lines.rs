//! A `log` health probe's hook (SPEC 4b): the one place output lines are
//! offered to a pattern, as the child's thread writes them (no re-reading
//! of the log file).
//!
//! The supervisor arms it at each spawn (`LogFile::lines.arm`); the pump
//! offers each whole output line while it is armed; the first match is
//! reported once, and disarms it. Unarmed, a line costs one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// What to look for, and whom to tell (the matching line).
pub struct LineWatch {
    pub regex: regex_lite::Regex,
    pub report: Box<dyn FnOnce(String) + Send>,
}

#[derive(Default)]
pub struct LineHook {
    armed: AtomicBool,
    watch: Mutex<Option<LineWatch>>,
}

impl LineHook {
    /// Watch the lines written from now on (replaces an earlier watch).
    pub fn arm(&self, w: LineWatch) {
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) = Some(w);
        self.armed.store(true, Ordering::Release);
    }

    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
        self.watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// An output line was written (without its newline).
    pub fn offer(&self, text: &[u8]) {
        if !self.armed.load(Ordering::Acquire) {
            return;
        }
        let line = String::from_utf8_lossy(text);
        let mut g = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if g.as_ref().is_some_and(|w| w.regex.is_match(&line)) {
            self.armed.store(false, Ordering::Release);
            let w = g.take().expect("checked");
            drop(g);
            (w.report)(line.into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_first_match_is_reported_once() {
        let hook = LineHook::default();
        hook.offer(b"ready");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        hook.arm(LineWatch {
            regex: regex_lite::Regex::new("^ready on \\d+").unwrap(),
            report: Box::new(move |l| s.lock().unwrap().push(l)),
        });
        hook.offer(b"starting");
        hook.offer(b"ready on 80");
        hook.offer(b"ready on 81");
        assert_eq!(*seen.lock().unwrap(), vec!["ready on 80".to_owned()]);
    }
}
