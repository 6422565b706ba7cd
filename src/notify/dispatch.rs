//! The dispatcher thread and its senders. The dispatcher owns the queue:
//! it routes each notice to the targets that want it, writes each to the
//! outbox before its first attempt, keeps every attempt's due time (a
//! deadline it sleeps until in `select!`, never a sleeping thread per
//! notification), hands due attempts to `SENDERS` sender threads over a
//! bounded channel, and acts on their outcomes (`plan::verdict`).

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, at, bounded, never, select};

use super::outbox::{Item, Outbox, from_unix_ms, new_msg_id, unix_ms};
use super::plan::{self, MAX_ATTEMPTS, Verdict};
use super::send::{self, Job, Outcome};
use super::{Hub, Notice};
use crate::logger::Logger;

/// Sender threads: slow receivers wait in parallel, up to this many.
const SENDERS: usize = 2;
/// Attempts handed out and not yet answered.
const IN_FLIGHT: usize = SENDERS * 2;
/// Most notifications queued per target; the oldest go first.
pub const MAX_QUEUED: usize = 1000;
const DISPATCHER_STACK: usize = 256 * 1024;
const SENDER_STACK: usize = 512 * 1024;

struct Slot {
    item: Item,
    due: Instant,
    busy: bool,
}

struct Dispatcher {
    hub: Arc<Hub>,
    outbox: Outbox,
    logger: Logger,
    /// Per target, by webhook id (oldest first).
    queues: BTreeMap<String, BTreeMap<String, Slot>>,
    jobs: Sender<Job>,
    in_flight: usize,
    rng: u64,
}

pub fn start(
    hub: Arc<Hub>,
    dir: PathBuf,
    notices: Receiver<Notice>,
    logger: Logger,
) -> io::Result<()> {
    let (jobs_tx, jobs_rx) = bounded::<Job>(IN_FLIGHT);
    let (done_tx, done_rx) = bounded::<Outcome>(IN_FLIGHT);
    for i in 0..SENDERS {
        let (jobs, done) = (jobs_rx.clone(), done_tx.clone());
        crate::threads::spawn_detached(&format!("notify-send-{i}"), SENDER_STACK, move || {
            for job in jobs.iter() {
                if done.send(send::attempt(&job)).is_err() {
                    return;
                }
            }
        })?;
    }
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let mut d = Dispatcher {
        hub,
        outbox: Outbox::new(dir),
        logger,
        queues: BTreeMap::new(),
        jobs: jobs_tx,
        in_flight: 0,
        rng: u64::from_le_bytes(seed) | 1,
    };
    crate::threads::spawn_detached("notify", DISPATCHER_STACK, move || {
        d.reload();
        d.run(notices, done_rx)
    })
}

impl Dispatcher {
    /// What the outbox held at start: due at their saved times.
    fn reload(&mut self) {
        let (items, bad) = self.outbox.load();
        if bad > 0 {
            self.log(format!(
                "notify: {bad} unreadable queued notification(s) removed"
            ));
        }
        let n = items.len();
        let (now, wall) = (Instant::now(), SystemTime::now());
        for item in items {
            let due = match from_unix_ms(item.next_at_ms).duration_since(wall) {
                Ok(d) => now + d,
                Err(_) => now,
            };
            self.queue(item, due);
        }
        if n > 0 {
            self.log(format!("notify: {n} queued notification(s) to deliver"));
        }
    }

    fn run(mut self, notices: Receiver<Notice>, done: Receiver<Outcome>) {
        loop {
            self.dispatch_due(Instant::now());
            let next = if self.in_flight < IN_FLIGHT {
                self.next_due()
            } else {
                None
            };
            let timer = next.map(at).unwrap_or_else(never);
            select! {
                recv(notices) -> n => match n {
                    Ok(n) => self.accept(n),
                    Err(_) => return,
                },
                recv(done) -> o => match o {
                    Ok(o) => self.finish(o),
                    Err(_) => return,
                },
                recv(timer) -> _ => {}
            }
        }
    }

    fn log(&self, line: String) {
        self.logger.supervisor(line);
    }

    fn jitter(&mut self) -> f64 {
        // xorshift64: spreading retries needs no more.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Route a notice: one item per target that wants it, on disk first.
    fn accept(&mut self, n: Notice) {
        let msg_id = new_msg_id(n.at);
        let body = n.body(&self.hub.host);
        let now = Instant::now();
        for t in self.hub.targets() {
            let wanted = match &n.only {
                Some(only) => *only == t.name,
                None => plan::wants(&t, n.kind, n.id.as_deref()),
            };
            if !wanted {
                continue;
            }
            let item = Item {
                msg_id: msg_id.clone(),
                target: t.name.clone(),
                kind: n.kind.name().to_owned(),
                process: n.id.clone(),
                body: body.clone(),
                attempts: 0,
                next_at_ms: unix_ms(n.at),
            };
            if let Err(e) = self.outbox.write(&item) {
                self.log(format!(
                    "notify: cannot queue {} for '{}' on disk ({e}); sending it anyway",
                    item.kind, t.name
                ));
            }
            self.queue(item, now);
        }
    }

    /// Add an item, dropping the oldest idle one of its target over the cap.
    fn queue(&mut self, item: Item, due: Instant) {
        let target = item.target.clone();
        let q = self.queues.entry(target.clone()).or_default();
        q.insert(
            item.msg_id.clone(),
            Slot {
                item,
                due,
                busy: false,
            },
        );
        if q.len() > MAX_QUEUED {
            let oldest = q.iter().find(|(_, s)| !s.busy).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                q.remove(&k);
                self.outbox.remove(&target, &k);
                self.hub.count(&target, "dropped", 1);
                self.log(format!(
                    "notify: more than {MAX_QUEUED} notifications queued for '{target}': dropped the oldest ({k})"
                ));
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.queues
            .values()
            .flat_map(|q| q.values())
            .filter(|s| !s.busy)
            .map(|s| s.due)
            .min()
    }

    /// Hand every due attempt to the senders, while there is room.
    fn dispatch_due(&mut self, now: Instant) {
        if self.in_flight >= IN_FLIGHT {
            return;
        }
        let targets = self.hub.targets();
        let mut due: Vec<(Instant, String, String)> = self
            .queues
            .iter()
            .flat_map(|(t, q)| {
                q.iter()
                    .filter(|(_, s)| !s.busy && s.due <= now)
                    .map(move |(k, s)| (s.due, t.clone(), k.clone()))
            })
            .collect();
        due.sort();
        for (_, name, key) in due {
            if self.in_flight >= IN_FLIGHT {
                break;
            }
            let Some(target) = targets.iter().find(|t| t.name == name) else {
                self.drop_item(&name, &key, "its target was removed");
                continue;
            };
            let Some(slot) = self.queues.get_mut(&name).and_then(|q| q.get_mut(&key)) else {
                continue;
            };
            let job = Job {
                target: target.clone(),
                item: slot.item.clone(),
            };
            if self.jobs.try_send(job).is_err() {
                break;
            }
            slot.busy = true;
            self.in_flight += 1;
        }
    }

    fn drop_item(&mut self, target: &str, key: &str, why: &str) {
        if let Some(q) = self.queues.get_mut(target) {
            q.remove(key);
            if q.is_empty() {
                self.queues.remove(target);
            }
        }
        self.outbox.remove(target, key);
        self.hub.count(target, "dropped", 1);
        self.log(format!("notify: dropped {key} for '{target}': {why}"));
    }

    fn finish(&mut self, o: Outcome) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let verdict = plan::verdict(o.status);
        let Some(slot) = self
            .queues
            .get_mut(&o.target)
            .and_then(|q| q.get_mut(&o.msg_id))
        else {
            return;
        };
        slot.busy = false;
        slot.item.attempts += 1;
        let attempts = slot.item.attempts;
        let kind = slot.item.kind.clone();
        let why = o.error.clone().unwrap_or_default();
        match verdict {
            Verdict::Delivered => {
                if let Some(q) = self.queues.get_mut(&o.target) {
                    q.remove(&o.msg_id);
                }
                self.outbox.remove(&o.target, &o.msg_id);
                self.hub.count(&o.target, "delivered", 1);
            }
            Verdict::Disable => {
                self.hub.count(&o.target, "failed", 1);
                let reason = format!("the receiver answered 410 Gone to {kind} ({})", o.msg_id);
                if let Err(e) = self.hub.disable(&o.target, reason.clone()) {
                    self.log(format!("notify: {e}"));
                }
                self.log(format!(
                    "notify: target '{}' turned off: {reason}; PUT /notify turns it on again",
                    o.target
                ));
                let keys: Vec<String> = self
                    .queues
                    .get(&o.target)
                    .map(|q| q.keys().cloned().collect())
                    .unwrap_or_default();
                for k in keys {
                    self.drop_item(&o.target, &k, "the target is turned off (410)");
                }
            }
            Verdict::Retry => {
                self.hub.count(&o.target, "failed", 1);
                let jitter = self.jitter();
                match plan::retry_delay(attempts, jitter, o.retry_after) {
                    None => self.drop_item(
                        &o.target,
                        &o.msg_id,
                        &format!("{MAX_ATTEMPTS} attempts failed, the last: {why}"),
                    ),
                    Some(delay) => {
                        let Some(slot) = self
                            .queues
                            .get_mut(&o.target)
                            .and_then(|q| q.get_mut(&o.msg_id))
                        else {
                            return;
                        };
                        slot.due = Instant::now() + delay;
                        slot.item.next_at_ms = unix_ms(SystemTime::now() + delay);
                        let item = slot.item.clone();
                        if let Err(e) = self.outbox.rewrite(&item) {
                            self.log(format!("notify: cannot update {}: {e}", item.msg_id));
                        }
                        self.log(format!(
                            "notify: {kind} to '{}' failed (attempt {attempts}: {why}); next in {}s",
                            o.target,
                            delay.as_secs().max(1)
                        ));
                    }
                }
            }
        }
    }
}
