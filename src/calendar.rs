//! A calendar schedule (`schedule` + `timezone`, SPEC 4a): a cron
//! expression in an IANA time zone, and the times it gives as `SystemTime`.
//!
//! Pure apart from reading the tz database when a zone is named (jiff).
//! `spec` validates with it; `lifecycle::job` asks it for the next time;
//! `api::render` formats times in its zone.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::cron::{self, Schedule};

#[derive(Clone)]
pub struct Calendar {
    cron: Schedule,
    /// As given; `None`: the system's zone.
    zone_name: Option<String>,
    zone: TimeZone,
}

impl fmt::Debug for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Calendar({:?} in {:?})",
            self.cron.as_str(),
            self.zone_name
        )
    }
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Calendar) -> bool {
        self.cron == other.cron && self.zone_name == other.zone_name
    }
}

/// Which field is wrong, and why.
#[derive(Debug)]
pub enum CalendarError {
    Schedule(String),
    Timezone(String),
}

impl Calendar {
    pub fn parse(expr: &str, zone: Option<&str>) -> Result<Calendar, CalendarError> {
        let cron =
            Schedule::parse(expr).map_err(|e| CalendarError::Schedule(format!("schedule: {e}")))?;
        let (zone_name, zone) = match zone {
            Some(name) => (
                Some(name.to_owned()),
                TimeZone::get(name).map_err(|e| {
                    CalendarError::Timezone(format!(
                        "timezone {name:?} is not a time zone of the tz database: {e}"
                    ))
                })?,
            ),
            None => (None, TimeZone::try_system().unwrap_or(TimeZone::UTC)),
        };
        Ok(Calendar {
            cron,
            zone_name,
            zone,
        })
    }

    pub fn expr(&self) -> &str {
        self.cron.as_str()
    }

    pub fn zone_name(&self) -> Option<&str> {
        self.zone_name.as_deref()
    }

    /// The first time strictly after `after`.
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let ts = cron::next_after(&self.cron, &self.zone, to_ts(after))?;
        Some(from_ts(ts))
    }

    /// The last time in `(since, until]`, and how many there were (counted
    /// up to `limit`).
    pub fn missed(
        &self,
        since: SystemTime,
        until: SystemTime,
        limit: u64,
    ) -> (Option<SystemTime>, u64) {
        let (mut last, mut n, mut at) = (None, 0, since);
        while n < limit {
            match self.next_after(at) {
                Some(t) if t <= until => {
                    (last, n, at) = (Some(t), n + 1, t);
                }
                _ => break,
            }
        }
        (last, n)
    }

    /// `2026-03-29T03:00:00+02:00`: RFC 3339 with the offset of its zone.
    pub fn format(&self, t: SystemTime) -> String {
        let z = to_ts(t).to_zoned(self.zone.clone());
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn to_ts(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp::new(d.as_secs() as i64, d.subsec_nanos() as i32).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn from_ts(ts: Timestamp) -> SystemTime {
    let secs = ts.as_second();
    let nanos = ts.subsec_nanosecond();
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos.max(0) as u32)
    } else {
        UNIX_EPOCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc: &str) -> SystemTime {
        from_ts(rfc.parse().unwrap())
    }

    #[test]
    fn next_missed_and_format_in_the_zone() {
        let c = Calendar::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        // 2026-03-29 02:30 Berlin does not exist: once, right after the gap.
        let next = c.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(c.format(next), "2026-03-29T03:00:00+02:00");
        let (last, n) = c.missed(at("2026-01-01T00:00:00Z"), at("2026-01-04T12:00:00Z"), 100);
        assert_eq!(n, 4);
        assert_eq!(c.format(last.unwrap()), "2026-01-04T02:30:00+01:00");
        let (_, capped) = c.missed(at("2000-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z"), 10);
        assert_eq!(capped, 10);
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(matches!(
            Calendar::parse("61 * * * *", None),
            Err(CalendarError::Schedule(m)) if m.contains("minute") && m.contains("position 1")
        ));
        assert!(matches!(
            Calendar::parse("* * * * *", Some("Mars/Olympus_Mons")),
            Err(CalendarError::Timezone(_))
        ));
        let a = Calendar::parse("0 3 * * *", Some("UTC")).unwrap();
        assert_eq!(a, Calendar::parse("0 3 * * *", Some("UTC")).unwrap());
        assert_ne!(a, Calendar::parse("0 3 * * *", None).unwrap());
    }
}
