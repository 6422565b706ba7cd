//! The event stream (`GET /events`): one event per state change, added,
//! removed and updated process, and finished job run.
//!
//! The supervisor publishes; each subscriber (an HTTP thread streaming
//! Server-Sent Events) has a bounded queue. A subscriber that falls behind
//! is dropped (its queue is disconnected), never waited for. The last
//! `RING` events are kept, so a client that reconnects with `Last-Event-ID`
//! gets what it missed, or is told that the gap is too old.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

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

#[derive(Default)]
pub struct Bus {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    last_id: u64,
    ring: VecDeque<Arc<Event>>,
    subscribers: Vec<Sender<Arc<Event>>>,
}

/// What a new subscriber gets: the events it missed, whether some were
/// already gone, and its queue.
pub struct Subscription {
    pub replay: Vec<Arc<Event>>,
    pub gap: bool,
    pub queue: Receiver<Arc<Event>>,
}

impl Bus {
    /// Publish an event of `kind` (supervisor thread). Never blocks.
    pub fn publish(&self, kind: &str, data: &Value) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.last_id += 1;
        let id = g.last_id;
        let event = Arc::new(Event {
            id,
            frame: format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"),
        });
        if g.ring.len() == RING {
            g.ring.pop_front();
        }
        g.ring.push_back(event.clone());
        g.subscribers.retain(|s| match s.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
    }

    /// Subscribe, replaying the events after `since` (none: only new ones).
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (tx, rx) = bounded(QUEUE);
        let (replay, gap) = match since {
            None => (Vec::new(), false),
            Some(since) => {
                let oldest = g.ring.front().map_or(g.last_id + 1, |e| e.id);
                let gap = since + 1 < oldest && since < g.last_id;
                let replay = g.ring.iter().filter(|e| e.id > since).cloned().collect();
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
    fn replay_gap_and_slow_subscribers() {
        let bus = Bus::default();
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
}
