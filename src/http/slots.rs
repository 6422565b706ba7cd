//! Who holds the connection slots, and who gives one up at a cap (SPEC 3a
//! "Capacity").
//!
//! Every admitted connection has an entry: its client's address group, when
//! it came, whether it has made an authenticated request yet, its phase
//! (waiting for a request, receiving a head, being served), and a handle to
//! shut its socket. A new connection over a cap takes the place of the
//! oldest connection that is idle, or still sending the head of a request
//! without having authenticated (its socket is shut, its thread sees the
//! end and leaves). Connections that have not authenticated never hold the
//! last `reserve` slots. So a key holder gets in while any number of
//! keyless clients, from any number of addresses, hold connections. A
//! request being served is never cut: when only those are in the way, the
//! new connection gets the whole 503 (`refuse`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the connection's own thread tells the table about it.
#[derive(Debug, Default)]
pub struct ConnState {
    authenticated: AtomicBool,
    /// A `Phase` as u8.
    phase: AtomicU8,
}

/// Where a connection is in its life (before all of these, 0: accepted and
/// not yet picked up by a thread; never displaced, it is about to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for the first byte of its first request.
    Fresh = 1,
    /// Kept alive, waiting for the first byte of another request.
    Idle = 2,
    /// Receiving a request head.
    Head = 3,
    /// A request is being served.
    Busy = 4,
}

/// A fresh connection is not displaced before this age: its request may
/// already be on its way (a burst of clients must get whole answers or
/// 503s, not connections closed under them).
const GRACE: Duration = Duration::from_millis(100);

impl ConnState {
    /// A request on this connection presented a valid key or session.
    pub fn authenticated(&self) {
        self.authenticated.store(true, Ordering::Relaxed);
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// Idle (fresh ones after `GRACE`), or sending a head without having
    /// authenticated.
    fn displaceable(&self, age: Duration) -> bool {
        match self.phase() {
            p if p == Phase::Fresh as u8 => age >= GRACE,
            p if p == Phase::Idle as u8 => true,
            p if p == Phase::Head as u8 => !self.authenticated.load(Ordering::Relaxed),
            _ => false,
        }
    }
}

/// The address a client is counted under: IPv6 clients by their /64 (one
/// host usually holds a whole /64), IPv4-mapped IPv6 as IPv4.
pub fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

struct Entry {
    group: IpAddr,
    since: Instant,
    state: Arc<ConnState>,
    /// A second handle on the socket, to shut it.
    sock: Option<TcpStream>,
}

#[derive(Default)]
struct Table {
    next: u64,
    conns: HashMap<u64, Entry>,
    per: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per.get_mut(&e.group) {
            *n -= 1;
            if *n == 0 {
                self.per.remove(&e.group);
            }
        }
        Some(e)
    }

    /// The oldest connection that `pick` accepts and that may be displaced.
    fn oldest(&self, pick: impl Fn(&Entry) -> bool) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, e)| pick(e))
            .min_by_key(|(_, e)| e.since)
            .map(|(id, _)| *id)
    }
}

/// Connection slots, global and per address group.
pub struct Slots {
    max: usize,
    per_address: usize,
    /// Slots only a connection that has authenticated may hold.
    reserve: usize,
    table: Mutex<Table>,
    /// Connections displaced so far (counted as refused in `/metrics`).
    pub displaced: AtomicU64,
    /// Set at shutdown: a connection that becomes idle closes.
    stopping: AtomicBool,
}

/// One admitted connection's place; given back on drop.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    pub state: Arc<ConnState>,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    Total,
    Address,
}

impl Slots {
    pub fn new(max: usize, per_address: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            per_address,
            reserve: (max / 8).clamp(1, 32).min(max.saturating_sub(1)),
            table: Mutex::new(Table::default()),
            displaced: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        })
    }

    /// A slot for a connection from `ip` (at `now`), displacing the oldest
    /// idle or unauthenticated connection at a cap; `Err` when every
    /// connection in the way is busy and authenticated.
    pub fn take(
        self: &Arc<Slots>,
        ip: IpAddr,
        sock: Option<TcpStream>,
        now: Instant,
    ) -> Result<Slot, Full> {
        let group = group(ip);
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = t.per.get(&group).copied().unwrap_or(0);
        if mine >= self.per_address {
            let id = t
                .oldest(|e| e.group == group && e.state.displaceable(now - e.since))
                .ok_or(Full::Address)?;
            self.displace(&mut t, id);
        }
        if t.conns.len() >= self.max {
            let id = t
                .oldest(|e| e.state.displaceable(now - e.since))
                .ok_or(Full::Total)?;
            self.displace(&mut t, id);
        }
        let unauthenticated = t
            .conns
            .values()
            .filter(|e| !e.state.authenticated.load(Ordering::Relaxed))
            .count();
        if unauthenticated >= self.max - self.reserve {
            let id = t
                .oldest(|e| {
                    !e.state.authenticated.load(Ordering::Relaxed)
                        && e.state.displaceable(now - e.since)
                })
                .ok_or(Full::Total)?;
            self.displace(&mut t, id);
        }
        t.next += 1;
        let id = t.next;
        let state = Arc::new(ConnState::default());
        t.conns.insert(
            id,
            Entry {
                group,
                since: now,
                state: state.clone(),
                sock,
            },
        );
        *t.per.entry(group).or_insert(0) += 1;
        Ok(Slot {
            slots: self.clone(),
            id,
            state,
        })
    }

    /// At shutdown: shut every idle connection now, and every other one
    /// when it becomes idle (no one waits for a kept-alive client).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let idle: Vec<u64> = t
            .conns
            .iter()
            .filter(|(_, e)| {
                let p = e.state.phase();
                p == Phase::Fresh as u8 || p == Phase::Idle as u8
            })
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            close(&mut t, id);
        }
    }

    /// Close `id` to make room for a new connection.
    fn displace(&self, t: &mut Table, id: u64) {
        close(t, id);
        self.displaced.fetch_add(1, Ordering::Relaxed);
    }

    /// (connections, of them authenticated).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let auth = t
            .conns
            .values()
            .filter(|e| e.state.authenticated.load(Ordering::Relaxed))
            .count();
        (t.conns.len(), auth)
    }
}

/// Forget `id` and shut its socket: its thread sees the end at once.
fn close(t: &mut Table, id: u64) {
    if let Some(Entry { sock: Some(s), .. }) = t.remove(id) {
        let _ = s.shutdown(Shutdown::Both);
    }
}

impl Slot {
    /// Record the connection's phase. False when it should close instead
    /// of waiting for a request: exeio is stopping.
    pub fn set_phase(&self, phase: Phase) -> bool {
        self.state.set_phase(phase);
        let waiting = matches!(phase, Phase::Fresh | Phase::Idle);
        !(waiting && self.slots.stopping.load(Ordering::SeqCst))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self
            .slots
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        t.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_is_grouped_by_its_64() {
        assert_eq!(group(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(group(ip("2001:db8:1:2::ffff")), ip("2001:db8:1:2::"));
        assert_ne!(group(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(group(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(group(ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn keyless_connections_give_way_to_a_key_holder() {
        let slots = Slots::new(8, 4);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut held = Vec::new();
        for i in 0..20u64 {
            // keyless clients from many addresses, each taking a slot
            let s = slots.take(ip(&format!("10.0.0.{i}")), None, at(i)).unwrap();
            s.state.set_phase(Phase::Head);
            held.push(s);
        }
        // never more than the cap less the reserve unauthenticated
        assert_eq!(slots.counts(), (7, 0));
        // an owner's connection gets in and authenticates, busy
        let owner = slots.take(ip("10.1.1.1"), None, at(30)).unwrap();
        owner.state.authenticated();
        owner.state.set_phase(Phase::Busy);
        assert_eq!(slots.counts(), (7, 1));
        // a flood never displaces the busy authenticated connection
        for i in 0..50u64 {
            let s = slots.take(ip("10.0.0.99"), None, at(40 + i)).unwrap();
            s.state.set_phase(Phase::Idle);
            held.push(s);
        }
        assert_eq!(slots.counts(), (8, 1), "the owner keeps its slot");
        // the flood's address holds at most its cap
        let t = slots.table.lock().unwrap();
        assert_eq!(t.per.get(&ip("10.0.0.99")), Some(&4));
        drop(t);
        // once idle it may be displaced (the oldest idle goes first)
        owner.state.set_phase(Phase::Idle);
        let others: Vec<_> = (0..8u64)
            .map(|i| {
                let s = slots
                    .take(ip(&format!("10.2.0.{i}")), None, at(100 + i))
                    .unwrap();
                s.state.set_phase(Phase::Idle);
                s
            })
            .collect();
        assert_eq!(slots.counts(), (7, 0));
        drop(others);
        drop(held);
        assert_eq!(slots.counts(), (0, 0), "every slot given back");
    }

    #[test]
    fn busy_authenticated_connections_are_never_displaced() {
        let slots = Slots::new(4, 2);
        let now = Instant::now();
        let a = slots.take(ip("10.0.0.1"), None, now).unwrap();
        let b = slots.take(ip("10.0.0.1"), None, now).unwrap();
        a.state.authenticated();
        b.state.authenticated();
        a.state.set_phase(Phase::Busy);
        b.state.set_phase(Phase::Busy);
        assert_eq!(
            slots.take(ip("10.0.0.1"), None, now).err(),
            Some(Full::Address)
        );
        let c = slots.take(ip("10.0.0.2"), None, now).unwrap();
        assert_eq!(slots.counts(), (3, 2));
        // nor is a keyless request being served: the newcomer is refused
        let d = slots.take(ip("10.0.0.3"), None, now).unwrap();
        d.state.set_phase(Phase::Busy);
        c.state.set_phase(Phase::Busy);
        assert_eq!(
            slots.take(ip("10.0.0.4"), None, now).err(),
            Some(Full::Total)
        );
        // a fresh connection may have its request on the way: not at once
        d.state.set_phase(Phase::Fresh);
        assert_eq!(
            slots.take(ip("10.0.0.4"), None, now).err(),
            Some(Full::Total)
        );
        assert!(slots.take(ip("10.0.0.4"), None, now + GRACE).is_ok());
    }
}
