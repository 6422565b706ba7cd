//! The event stream (`GET /events`): one event per state change, added,
//! removed and updated process, and finished job run.
//!
//! The supervisor publishes; each subscriber (an HTTP thread streaming
//! Server-Sent Events) has a bounded queue. A subscriber that falls behind
//! is dropped (its queue is disconnected), never waited for. The last
//! `RING` events are kept, so a client that reconnects with `Last-Event-ID`
//! gets what it missed, or is told that there is a gap (its id is older
//! than the ring, or from an earlier run of exeio).
//!
//! Ids increase across restarts of exeio without anything saved: the first
//! id of a run follows the wall clock at start, in microseconds since the
//! epoch (`Bus::new`). A run would have to publish over a million events a
//! second to reach the next run's start; a clock set back between runs can
//! make ids repeat. The ids stay below 2^53 (until the year 2255), so
//! JavaScript reads them exactly.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde_json::Value;

/// Events kept for replay.
pub const RING: usize = 1000;
/// Events queued for one subscriber before it is dropped.
const QUEUE: usize = 512;

/// One event, ready for the wire (`id:`, `event:`, `data:` and the blank line).
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    pub frame: String,
}

pub struct Bus {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    last_id: u64,
    ring: Ring,
    subscribers: Vec<Sender<Arc<Event>>>,
}

/// The last `RING` frames, back to back in one buffer: one block of
/// memory (mapped on its own once it is big), not a thousand small ones
/// strewn through the heap, where they would keep the pages of every
/// process that came and went from going back to the system.
#[derive(Default)]
struct Ring {
    text: String,
    /// (id, start in `text`, length) of each kept frame, oldest first.
    frames: VecDeque<(u64, usize, usize)>,
}

impl Ring {
    fn push(&mut self, id: u64, write: impl FnOnce(&mut String)) -> &str {
        if self.frames.len() == RING {
            self.frames.pop_front();
            self.compact();
        }
        let start = self.text.len();
        write(&mut self.text);
        self.frames.push_back((id, start, self.text.len() - start));
        &self.text[start..]
    }

    /// Drop the text of frames no longer kept, once it is most of the buffer.
    fn compact(&mut self) {
        let head = self.frames.front().map_or(self.text.len(), |f| f.1);
        if head >= 64 * 1024 && head * 2 >= self.text.len() {
            self.text.drain(..head);
            for f in &mut self.frames {
                f.1 -= head;
            }
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.frames.front().map(|f| f.0)
    }

    fn after(&self, since: u64) -> Vec<Arc<Event>> {
        self.frames
            .iter()
            .filter(|f| f.0 > since)
            .map(|&(id, start, len)| {
                Arc::new(Event {
                    id,
                    frame: self.text[start..start + len].to_string(),
                })
            })
            .collect()
    }
}

/// What a new subscriber gets: the events it missed, whether some were
/// already gone, and its queue.
pub struct Subscription {
    pub replay: Vec<Arc<Event>>,
    pub gap: bool,
    pub queue: Receiver<Arc<Event>>,
}

impl Bus {
    /// A bus for a run of exeio that started at `started`: its first id is
    /// that time in microseconds since the epoch, plus one.
    pub fn new(started: SystemTime) -> Bus {
        let micros = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        Bus::after(micros)
    }

    /// A bus whose first id is `base + 1`.
    pub fn after(base: u64) -> Bus {
        Bus {
            inner: Mutex::new(Inner {
                last_id: base,
                ..Inner::default()
            }),
        }
    }

    /// Publish an event of `kind` (supervisor thread). Never blocks.
    pub fn publish(&self, kind: &str, data: &Value) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.last_id += 1;
        let id = g.last_id;
        let Inner {
            ring, subscribers, ..
        } = &mut *g;
        let frame = ring.push(id, |text| {
            let _ = write!(text, "id: {id}\nevent: {kind}\ndata: {data}\n\n");
        });
        if subscribers.is_empty() {
            return;
        }
        let event = Arc::new(Event {
            id,
            frame: frame.to_string(),
        });
        subscribers.retain(|s| match s.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
    }

    /// Subscribe, replaying the events after `since` (none: only new ones).
    /// A gap unless `since` is the last id or its successor is in the ring:
    /// an id older than that lost events, and one newer than the last id
    /// is not of this run (exeio restarted) or not an id at all.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (tx, rx) = bounded(QUEUE);
        let (replay, gap) = match since {
            None => (Vec::new(), false),
            Some(since) => {
                let oldest = g.ring.oldest().unwrap_or(g.last_id + 1);
                let gap = since != g.last_id && (since < oldest - 1 || since > g.last_id);
                let replay = g.ring.after(since);
                (replay, gap)
            }
        };
        g.subscribers.push(tx);
        Subscription {
            replay,
            gap,
            queue: rx,
        }
    }

    pub fn last_id(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_id
    }

    pub fn subscribers(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .subscribers
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_follow_the_clock_at_start() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_000_123);
        let bus = Bus::new(t);
        bus.publish("state", &json!({}));
        assert_eq!(bus.last_id(), 1_700_000_000_000_124);
        // a later start begins above every id of this one
        let later = Bus::new(t + std::time::Duration::from_secs(1));
        assert!(later.last_id() > bus.last_id());
    }

    #[test]
    fn an_id_outside_the_ring_is_a_gap() {
        let bus = Bus::after(1000);
        for _ in 0..3 {
            bus.publish("state", &json!({}));
        }
        // 1001..=1003 kept: 1000 to 1003 lose nothing
        for since in [1000, 1001, 1003] {
            assert!(!bus.subscribe(Some(since)).gap, "{since}");
        }
        assert_eq!(bus.subscribe(Some(1000)).replay.len(), 3);
        // older than the ring (lost, or of an earlier run), or newer than the
        // last id (not of this run)
        for since in [0, 5, 999, 1004, u64::MAX] {
            let s = bus.subscribe(Some(since));
            assert!(s.gap, "{since}");
        }
        // nothing published yet: only the base itself is up to date
        let fresh = Bus::after(50);
        assert!(!fresh.subscribe(Some(50)).gap);
        assert!(fresh.subscribe(Some(49)).gap);
        assert!(fresh.subscribe(Some(51)).gap);
    }

    #[test]
    fn replay_gap_and_slow_subscribers() {
        let bus = Bus::after(0);
        for i in 0..5 {
            bus.publish("state", &json!({ "n": i }));
        }
        let s = bus.subscribe(Some(2));
        assert_eq!(s.replay.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(!s.gap);
        assert!(
            s.replay[0]
                .frame
                .starts_with("id: 3\nevent: state\ndata: {\"n\":2}\n\n")
        );
        bus.publish("added", &json!({}));
        assert_eq!(s.queue.try_recv().unwrap().id, 6);
        // an old id whose successors are gone is a gap
        for _ in 0..RING {
            bus.publish("state", &json!({}));
        }
        assert!(bus.subscribe(Some(1)).gap);
        assert!(!bus.subscribe(Some(bus.last_id())).gap);
        // `s` never read: it fell behind and was dropped, queue disconnected
        assert!(bus.subscribers() < 3 + 1);
        let drained = s.queue.try_iter().count();
        assert_eq!(drained, QUEUE);
        assert!(s.queue.recv().is_err(), "disconnected once drained");
    }

    #[test]
    fn the_ring_keeps_the_last_frames_whole_across_compactions() {
        let bus = Bus::after(0);
        let pad = "x".repeat(200);
        for i in 0..5 * RING {
            bus.publish("state", &json!({ "n": i, "pad": pad }));
        }
        let s = bus.subscribe(Some(0));
        assert!(s.gap);
        assert_eq!(s.replay.len(), RING);
        for (k, e) in s.replay.iter().enumerate() {
            let n = 4 * RING + k;
            assert_eq!(e.id, n as u64 + 1);
            let want = format!(
                "id: {}\nevent: state\ndata: {{\"n\":{n},\"pad\":\"{pad}\"}}\n\n",
                e.id
            );
            assert_eq!(e.frame, want);
        }
        let g = bus.inner.lock().unwrap();
        assert!(g.ring.text.len() < 2 * RING * 260, "old text is dropped");
    }
}
