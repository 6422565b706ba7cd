//! Replies held back until what they promise is true: a stop replies once
//! the process has exited, a restart once the new run has started (or
//! failed to: then it is a 400), and a change to a saved process once the
//! saved configuration is on disk (or the save failed: then the reply says
//! so). A request overridden by a later one is told so (409).

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::Value;

use super::Supervisor;
use crate::error::ApiError;
use crate::protocol::{Done, Outcome};
use crate::spec::ProcessId;

/// How long a reply waits for its save before it goes out saying so.
const SAVE_WAIT: Duration = Duration::from_secs(5);

/// What a held reply waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Stop,
    Start,
    Restart,
    Remove,
}

/// A process a reply waits for, with what the request saw of it.
pub(super) struct Watched {
    pub id: ProcessId,
    pub intent: u64,
    pub attempts: u64,
}

pub(super) struct Waiter {
    pub watched: Vec<Watched>,
    pub kind: Kind,
    pub many: bool,
    pub message: String,
    pub extra: Vec<(&'static str, Value)>,
    /// See `Done::refused`.
    pub refused: Option<String>,
}

enum Wait {
    Ready(Outcome),
    Procs(Waiter),
}

pub(super) struct Pending {
    reply: Sender<Outcome>,
    wait: Wait,
    /// The request concerns a saved process: its reply waits for the save.
    saves: bool,
    /// The version of the saved configuration the reply waits for.
    need: Option<u64>,
    save_deadline: Option<Instant>,
}

impl Pending {
    pub(super) fn ready(reply: Sender<Outcome>, answer: Outcome, saves: bool) -> Pending {
        Pending {
            reply,
            wait: Wait::Ready(answer),
            saves,
            need: None,
            save_deadline: None,
        }
    }

    pub(super) fn wait(reply: Sender<Outcome>, waiter: Waiter, saves: bool) -> Pending {
        Pending {
            reply,
            wait: Wait::Procs(waiter),
            saves,
            need: None,
            save_deadline: None,
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.save_deadline
    }
}

impl Supervisor {
    /// Send every reply whose wait is over (called after each publish).
    pub(super) fn answer_pending(&mut self, now: Instant) {
        let pending = std::mem::take(&mut self.pending);
        for mut p in pending {
            if let Wait::Procs(w) = &p.wait {
                let busy = w.watched.iter().any(|x| {
                    self.stop_queue.contains_key(&x.id)
                        || self.procs.get(&x.id).is_some_and(|e| e.proc.is_stopping())
                });
                if busy {
                    self.pending.push(p);
                    continue;
                }
                p.wait = Wait::Ready(self.resolve(w));
            }
            let Wait::Ready(answer) = p.wait else {
                unreachable!("resolved above")
            };
            if !p.saves || answer.is_err() {
                let _ = p.reply.send(answer);
                continue;
            }
            let need = *p.need.get_or_insert(self.store.wanted);
            let deadline = *p.save_deadline.get_or_insert(now + SAVE_WAIT);
            let answer = if self.store.acked >= need {
                answer
            } else if let Some((v, err)) = self.store.failed.as_ref().filter(|(v, _)| *v >= need) {
                let _ = v;
                not_saved(answer, err)
            } else if now >= deadline {
                not_saved(answer, "the disk has not confirmed the save yet")
            } else {
                p.wait = Wait::Ready(answer);
                self.pending.push(p);
                continue;
            };
            let _ = p.reply.send(answer);
        }
    }

    fn resolve(&self, w: &Waiter) -> Outcome {
        if w.many {
            return Ok(Done {
                message: w.message.clone(),
                ids: w
                    .watched
                    .iter()
                    .filter(|x| self.procs.contains_key(&x.id))
                    .map(|x| x.id.clone())
                    .collect(),
                many: true,
                extra: w.extra.clone(),
                refused: w.refused.clone(),
            });
        }
        let x = &w.watched[0];
        let Some(e) = self.procs.get(&x.id) else {
            return match w.kind {
                Kind::Remove => Ok(Done {
                    message: w.message.clone(),
                    extra: w.extra.clone(),
                    refused: w.refused.clone(),
                    ..Done::default()
                }),
                _ => Err(ApiError::Conflict(format!(
                    "process '{}' was removed by a later request",
                    x.id
                ))),
            };
        };
        if e.proc.intent != x.intent {
            return Err(ApiError::Conflict(format!(
                "a later request changed what '{}' should do: it is now {}",
                x.id,
                e.proc.status().name()
            )));
        }
        if matches!(w.kind, Kind::Start | Kind::Restart) {
            if e.proc.halted() {
                return Err(ApiError::Unavailable("exeio is shutting down".into()));
            }
            if e.proc.attempts > x.attempts
                && let Some(err) = &e.proc.attempt_error
            {
                return Err(ApiError::BadRequest(err.clone()));
            }
        }
        Ok(Done {
            message: w.message.clone(),
            ids: vec![x.id.clone()],
            many: false,
            extra: w.extra.clone(),
            refused: w.refused.clone(),
        })
    }
}

/// A reply whose effect happened but is not (yet) saved for the next run.
fn not_saved(answer: Outcome, why: &str) -> Outcome {
    answer.map(|mut done| {
        done.message = format!(
            "{}, but it is not saved for the next run yet ({why}); exeio retries the save",
            done.message
        );
        done.extra.push(("saved", Value::Bool(false)));
        done
    })
}
