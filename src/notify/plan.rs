//! The decisions of notifications, pure (time and randomness are inputs):
//! which targets get an event, when a failed delivery is tried again, what
//! an attempt's outcome means, and when a crash loop is worth one alert.
//!
//! Called by the dispatcher (`dispatch.rs`) and, for restart storms, by the
//! supervisor thread.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::Kind;
use super::targets::Target;
use crate::spec::ProcessId;

/// Delays before attempts 2, 3, ... (the Standard Webhooks schedule,
/// stretched to 10 attempts over about three days).
pub const SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(24 * 3600),
];
/// Every attempt of one notification, the first included.
pub const MAX_ATTEMPTS: u32 = SCHEDULE.len() as u32 + 1;
/// Jitter: a delay is stretched or shrunk by up to this fraction.
const JITTER: f64 = 0.2;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Restart storms: this many restarts of one process within `STORM_WINDOW`
/// are a storm; at most one alert per process per `STORM_QUIET`.
pub const STORM_RESTARTS: usize = 5;
pub const STORM_WINDOW: Duration = Duration::from_secs(60);
pub const STORM_QUIET: Duration = Duration::from_secs(600);

/// Does `target` want an event of `kind` about process `id`?
pub fn wants(target: &Target, kind: Kind, id: Option<&str>) -> bool {
    if target.disabled.is_some() {
        return false;
    }
    let event_ok = match &target.events {
        None => true,
        Some(list) => list.iter().any(|e| e == kind.name()),
    };
    let id_ok = match (&target.ids, id) {
        (None, _) | (_, None) => true,
        (Some(list), Some(id)) => list.iter().any(|p| id_matches(p, id)),
    };
    event_ok && id_ok
}

/// `*` matches every id, `web-*` every id starting with `web-`.
pub fn id_matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

/// What an attempt's outcome means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again on the schedule.
    Retry,
    /// 410 Gone: the receiver asks to be left alone; the target is turned off.
    Disable,
}

/// The verdict of an HTTP status (`None`: no answer at all).
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        Some(410) => Verdict::Disable,
        _ => Verdict::Retry,
    }
}

/// The delay before the next attempt after `made` attempts failed, or
/// `None` when there is none left. `jitter` is uniform in [0, 1);
/// `retry_after` is the receiver's wish, honoured when longer.
pub fn retry_delay(made: u32, jitter: f64, retry_after: Option<Duration>) -> Option<Duration> {
    let base = *SCHEDULE.get(made.checked_sub(1)? as usize)?;
    let factor = 1.0 + JITTER * (2.0 * jitter.clamp(0.0, 1.0) - 1.0);
    let delay = base.mul_f64(factor);
    Some(match retry_after {
        Some(r) => delay.max(r.min(MAX_RETRY_AFTER)),
        None => delay,
    })
}

/// Parse a `Retry-After` value: seconds (the HTTP-date form is taken as
/// absent).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Restarts of each process in the last `STORM_WINDOW`, and when each was
/// last reported as a storm. Owned by the supervisor thread.
#[derive(Default)]
pub struct StormWatch {
    procs: BTreeMap<ProcessId, Window>,
}

#[derive(Default)]
struct Window {
    restarts: VecDeque<Instant>,
    alerted: Option<Instant>,
}

impl StormWatch {
    /// `id` restarted at `now`: is this the moment to report a storm?
    pub fn restarted(&mut self, id: &ProcessId, now: Instant) -> bool {
        let w = self.procs.entry(id.clone()).or_default();
        while w
            .restarts
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= STORM_WINDOW)
        {
            w.restarts.pop_front();
        }
        w.restarts.push_back(now);
        if w.restarts.len() > STORM_RESTARTS {
            w.restarts.pop_front();
        }
        let quiet = w
            .alerted
            .is_none_or(|t| now.saturating_duration_since(t) >= STORM_QUIET);
        if w.restarts.len() >= STORM_RESTARTS && quiet {
            w.alerted = Some(now);
            return true;
        }
        false
    }

    pub fn forget(&mut self, id: &ProcessId) {
        self.procs.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(events: Option<&[&str]>, ids: Option<&[&str]>) -> Target {
        Target {
            name: "t".into(),
            webhook: Some("http://127.0.0.1:1/x".into()),
            command: None,
            secret: None,
            events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
            ids: ids.map(|e| e.iter().map(|s| s.to_string()).collect()),
            disabled: None,
        }
    }

    #[test]
    fn filters_by_event_and_id() {
        let all = target(None, None);
        assert!(wants(&all, Kind::Failed, Some("web")));
        let some = target(Some(&["job.failed"]), Some(&["web-*", "db"]));
        assert!(wants(&some, Kind::JobFailed, Some("web-1")));
        assert!(wants(&some, Kind::JobFailed, Some("db")));
        assert!(!wants(&some, Kind::JobFailed, Some("dbx")));
        assert!(!wants(&some, Kind::Failed, Some("db")));
        let mut off = target(None, None);
        off.disabled = Some("410".into());
        assert!(!wants(&off, Kind::Failed, Some("web")));
    }

    #[test]
    fn only_2xx_delivers_and_410_disables() {
        assert_eq!(verdict(Some(200)), Verdict::Delivered);
        assert_eq!(verdict(Some(204)), Verdict::Delivered);
        assert_eq!(verdict(Some(301)), Verdict::Retry);
        assert_eq!(verdict(Some(500)), Verdict::Retry);
        assert_eq!(verdict(Some(410)), Verdict::Disable);
        assert_eq!(verdict(None), Verdict::Retry);
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter() {
        assert_eq!(retry_delay(0, 0.5, None), None);
        assert_eq!(retry_delay(1, 0.5, None), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(1, 0.0, None), Some(Duration::from_secs(4)));
        assert_eq!(retry_delay(1, 1.0, None), Some(Duration::from_secs(6)));
        assert_eq!(retry_delay(2, 0.5, None), Some(Duration::from_secs(300)));
        assert!(retry_delay(MAX_ATTEMPTS - 1, 0.5, None).is_some());
        assert_eq!(retry_delay(MAX_ATTEMPTS, 0.5, None), None);
        let total: Duration = SCHEDULE.iter().sum();
        assert!(total > Duration::from_secs(2 * 86400) && total < Duration::from_secs(4 * 86400));
        // Retry-After wins when longer, up to a day
        let ra = Some(Duration::from_secs(60));
        assert_eq!(retry_delay(1, 0.5, ra), Some(Duration::from_secs(60)));
        assert_eq!(
            retry_delay(2, 0.5, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            retry_delay(1, 0.5, Some(Duration::from_secs(10 * 86400))),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn a_storm_is_reported_once_per_quiet_period() {
        let id = ProcessId::parse("web").unwrap();
        let mut w = StormWatch::default();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        // 4 restarts in a minute: no storm
        for i in 0..4 {
            assert!(!w.restarted(&id, s(i * 10)));
        }
        // the 5th within 60 s is one
        assert!(w.restarted(&id, s(45)));
        // an hour of crash loop (a restart every 2 s): one alert per 10 min
        let alerts = (0..1800)
            .filter(|i| w.restarted(&id, s(46 + i * 2)))
            .count();
        assert_eq!(alerts, 5);
        // 5 restarts spread over more than a minute are no storm
        let mut w = StormWatch::default();
        for i in 0..10 {
            assert!(!w.restarted(&id, s(i * 20)));
        }
        // another process has its own window
        let other = ProcessId::parse("db").unwrap();
        for i in 0..4 {
            assert!(!w.restarted(&other, s(1000 + i)));
        }
        w.forget(&other);
        assert!(!w.restarted(&other, s(1005)));
    }
}
