//! The health gate of a deploy or rollback (SPEC 4c): after the restart,
//! is the release healthy in time? Pure: it judges one `Sample` of the
//! published process at `now`; the flow (`flow.rs`) takes samples as the
//! process's events arrive and waits until the verdict's deadline.
//!
//! - With a `health` probe: healthy (its probe's state) before
//!   `healthy_timeout_seconds` pass; a run that ends for good (stopped,
//!   failed) fails at once, one that is restarting (backoff) may still make it.
//! - Without one: the run started by the restart keeps running
//!   `UNPROBED_UPTIME` (10 s) without an exit. Any exit fails it.

use std::time::{Duration, Instant};

use crate::lifecycle::{Health, Status};

/// How long a process without a probe must run to pass.
pub const UNPROBED_UPTIME: Duration = Duration::from_secs(10);

/// What the gate looks at, from the published view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub status: Status,
    pub pid: Option<u32>,
    pub started: Option<Instant>,
    pub health: Health,
    pub health_message: Option<String>,
    /// Why it is not running (a spawn error, the last exit).
    pub why_down: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Look again at the next event, or at this time at the latest.
    Wait(Instant),
    Healthy,
    /// Not healthy in time, with why (`HTTP 503`, `exited with code 1`).
    Unhealthy(String),
}

/// The gate of one restart.
#[derive(Clone, Debug)]
pub struct Gate {
    /// Does the process have a probe?
    pub probed: bool,
    /// The end of `healthy_timeout_seconds`.
    pub deadline: Instant,
    /// The pid of the run the restart started (no probe: that run must last).
    pub pid: Option<u32>,
}

impl Gate {
    pub fn judge(&self, s: &Sample, now: Instant) -> Verdict {
        let down = matches!(
            s.status,
            Status::Stopped | Status::Failed | Status::ManuallyStopped
        );
        if down {
            return Verdict::Unhealthy(down_reason(s));
        }
        if self.probed {
            if s.health == Health::Healthy && s.status == Status::Running {
                return Verdict::Healthy;
            }
            if now >= self.deadline {
                let why = s
                    .health_message
                    .clone()
                    .unwrap_or_else(|| format!("status {}", s.status.name()));
                return Verdict::Unhealthy(why);
            }
            return Verdict::Wait(self.deadline);
        }
        match (s.status, s.pid, s.started) {
            (Status::Running, Some(pid), Some(started)) if self.pid.is_none_or(|p| p == pid) => {
                let passes = started + UNPROBED_UPTIME;
                if now >= passes {
                    Verdict::Healthy
                } else {
                    Verdict::Wait(passes)
                }
            }
            (Status::Running, Some(_), _) => Verdict::Unhealthy(format!(
                "it exited within {} s and was restarted",
                UNPROBED_UPTIME.as_secs()
            )),
            (Status::Backoff, _, _) => Verdict::Unhealthy(down_reason(s)),
            _ if now >= self.deadline => {
                Verdict::Unhealthy(format!("status {} (not running)", s.status.name()))
            }
            _ => Verdict::Wait(self.deadline),
        }
    }
}

fn down_reason(s: &Sample) -> String {
    match &s.why_down {
        Some(w) => w.clone(),
        None => format!("status {}", s.status.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(status: Status, health: Health) -> Sample {
        Sample {
            status,
            pid: Some(7),
            started: None,
            health,
            health_message: None,
            why_down: None,
        }
    }

    #[test]
    fn a_probe_decides_within_the_timeout() {
        let t0 = Instant::now();
        let g = Gate {
            probed: true,
            deadline: t0 + Duration::from_secs(60),
            pid: Some(7),
        };
        let mut s = sample(Status::Running, Health::Starting);
        s.started = Some(t0);
        assert_eq!(g.judge(&s, t0), Verdict::Wait(g.deadline));
        s.health_message = Some("HTTP 503".into());
        assert_eq!(
            g.judge(&s, t0 + Duration::from_secs(60)),
            Verdict::Unhealthy("HTTP 503".into())
        );
        s.health = Health::Healthy;
        assert_eq!(g.judge(&s, t0 + Duration::from_secs(5)), Verdict::Healthy);
        // restarting after a crash: may still make it
        let b = sample(Status::Backoff, Health::Starting);
        assert_eq!(g.judge(&b, t0), Verdict::Wait(g.deadline));
        // down for good: at once
        let mut f = sample(Status::Failed, Health::Starting);
        f.why_down = Some("exited with code 1".into());
        assert_eq!(
            g.judge(&f, t0),
            Verdict::Unhealthy("exited with code 1".into())
        );
    }

    #[test]
    fn without_a_probe_the_run_must_last_ten_seconds() {
        let t0 = Instant::now();
        let g = Gate {
            probed: false,
            deadline: t0 + Duration::from_secs(60),
            pid: Some(7),
        };
        let mut s = sample(Status::Running, Health::None);
        s.started = Some(t0);
        assert_eq!(g.judge(&s, t0), Verdict::Wait(t0 + UNPROBED_UPTIME));
        assert_eq!(g.judge(&s, t0 + UNPROBED_UPTIME), Verdict::Healthy);
        // another run: the first one exited
        s.pid = Some(8);
        assert!(matches!(g.judge(&s, t0), Verdict::Unhealthy(_)));
        let mut b = sample(Status::Backoff, Health::None);
        b.why_down = Some("exited with code 3".into());
        assert_eq!(
            g.judge(&b, t0),
            Verdict::Unhealthy("exited with code 3".into())
        );
        // held for its dependencies: until the deadline
        let w = sample(Status::Waiting, Health::None);
        assert_eq!(g.judge(&w, t0), Verdict::Wait(g.deadline));
        assert!(matches!(g.judge(&w, g.deadline), Verdict::Unhealthy(_)));
    }
}
