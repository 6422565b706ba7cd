//! Audit volume (SPEC 3a): refusals that prove nothing about a caller
//! (keyless 401s, every 429, unknown paths without a key) are summarised per
//! address group: at most one line per address per minute, and that line
//! says how many more there were since the last one. A flood cannot rotate
//! the retained history away; every authenticated state change is still its
//! own line (the caller decides which is which).
//!
//! Pure: time is an argument. Called by HTTP threads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One line per address per this long at most.
pub const EVERY: Duration = Duration::from_secs(60);
/// Addresses remembered; past this, finished windows are forgotten (and
/// when every one is live, an address not seen yet is counted but not
/// written, rather than growing without bound).
const MAX_TRACKED: usize = 65_536;

struct Window {
    since: Instant,
    /// Summarised since the last line written for this address.
    hidden: u64,
}

#[derive(Default)]
pub struct Summary {
    map: Mutex<HashMap<IpAddr, Window>>,
}

impl Summary {
    /// A summarised event from `group` at `now`: `Some(n)` to write its line
    /// now, adding that `n` more were left out before it; `None` to count it.
    pub fn note(&self, group: IpAddr, now: Instant) -> Option<u64> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(&group) {
            map.retain(|_, w| now.duration_since(w.since) < EVERY);
            if map.len() >= MAX_TRACKED {
                return None;
            }
        }
        match map.get_mut(&group) {
            Some(w) if now.duration_since(w.since) < EVERY => {
                w.hidden += 1;
                None
            }
            Some(w) => {
                let hidden = std::mem::take(&mut w.hidden);
                w.since = now;
                Some(hidden)
            }
            None => {
                map.insert(
                    group,
                    Window {
                        since: now,
                        hidden: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_address_per_minute_with_a_count() {
        let s = Summary::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(s.note(a, t0), Some(0), "the first is written");
        for i in 1..3000 {
            assert_eq!(s.note(a, t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(s.note(b, t0), Some(0), "each address on its own");
        assert_eq!(
            s.note(a, t0 + EVERY),
            Some(2999),
            "a minute later: one line, with the count left out"
        );
        assert_eq!(s.note(a, t0 + EVERY + Duration::from_secs(1)), None);
    }
}
