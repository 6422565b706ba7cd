//! A budget of TLS handshakes per address group and second (SPEC 3a): a
//! handshake costs the server far more CPU than the client, so one address
//! flooding new TLS connections could slow every other client. Over its
//! budget, an address's new connections are closed before any handshake.
//!
//! A token bucket per address group, refilled at `RATE` per second up to
//! `BURST`. Pure: time is an argument. Used by the accept thread only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Handshakes per second an address may start, sustained.
const RATE: f64 = 20.0;
/// ... and at once, after a quiet while.
const BURST: f64 = 40.0;
/// Addresses remembered; beyond, full buckets are forgotten.
const MAX_TRACKED: usize = 4096;

#[derive(Default)]
pub struct Handshakes {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Handshakes {
    /// May a connection from `group` start a handshake at `now`?
    pub fn allow(&mut self, group: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&group) {
            self.buckets
                .retain(|_, (tokens, at)| *tokens + refill(*at, now) < BURST);
        }
        let (tokens, at) = self.buckets.entry(group).or_insert((BURST, now));
        *tokens = (*tokens + refill(*at, now)).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(at: Instant, now: Instant) -> f64 {
    now.saturating_duration_since(at).as_secs_f64() * RATE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let mut h = Handshakes::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| h.allow(a, t0)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(h.allow(b, t0), "another address has its own budget");
        // one second later: RATE more
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| h.allow(a, t1)).count();
        assert_eq!(allowed, RATE as usize);
        // after a quiet while, the burst again, never more
        let t2 = t1 + Duration::from_secs(60);
        let allowed = (0..100).filter(|_| h.allow(a, t2)).count();
        assert_eq!(allowed, BURST as usize);
    }
}
