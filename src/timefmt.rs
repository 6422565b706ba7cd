//! UTC time formatting without dependencies: RFC 3339 strings for the API
//! (`rfc3339`) and the `[YYYY-MM-DD HH:MM:SS]` prefix of log lines
//! (`log_stamp`, `StampCache`). Pure functions; anyone may call them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (negative before it).
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// `(year, month, day, hour, minute, second)` in UTC, by the days-from-civil
/// algorithm (proleptic Gregorian calendar, eras of 400 years).
pub fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, sod / 3600, sod / 60 % 60, sod % 60)
}

/// `2026-11-26T20:31:02Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix_secs(t));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Seconds since the epoch of a UTC civil time (the inverse of `civil_from_unix`).
pub fn unix_from_civil(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    let y = y - i64::from(mo <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((mo + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)
}

/// Parse what `rfc3339` writes (`2026-11-26T20:31:02Z`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    Some(unix_from_civil(
        i64::from(n(0..4)?),
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    ))
}

/// `[YYYY-MM-DD HH:MM:SS]` (years outside 0..=9999 are clamped).
pub fn log_stamp(secs: i64) -> [u8; 21] {
    fn put(out: &mut [u8], mut v: u32) {
        for b in out.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    let mut out = *b"[0000-00-00 00:00:00]";
    put(&mut out[1..5], y.clamp(0, 9999) as u32);
    put(&mut out[6..8], mo);
    put(&mut out[9..11], d);
    put(&mut out[12..14], h);
    put(&mut out[15..17], mi);
    put(&mut out[18..20], s);
    out
}

/// The log stamp of the current second, reformatted only when the second
/// changes (log writers call it once per batch of lines).
#[derive(Debug, Clone)]
pub struct StampCache {
    secs: i64,
    stamp: [u8; 21],
}

impl Default for StampCache {
    fn default() -> Self {
        StampCache {
            secs: 0,
            stamp: log_stamp(0),
        }
    }
}

impl StampCache {
    pub fn new() -> StampCache {
        StampCache::default()
    }

    pub fn get(&mut self, now: SystemTime) -> &[u8] {
        let secs = unix_secs(now);
        if secs != self.secs {
            self.secs = secs;
            self.stamp = log_stamp(secs);
        }
        &self.stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn epoch() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(&log_stamp(0), b"[1970-01-01 00:00:00]");
        assert_eq!(civil_from_unix(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn leap_day_and_march_first() {
        // 2024-02-29T12:34:56Z
        assert_eq!(civil_from_unix(1_709_210_096), (2024, 2, 29, 12, 34, 56));
        assert_eq!(rfc3339(at(1_709_210_096)), "2024-02-29T12:34:56Z");
        // 2000-02-29 exists (divisible by 400), so 2000-03-01 is day 60.
        assert_eq!(civil_from_unix(951_868_800), (2000, 3, 1, 0, 0, 0));
        assert_eq!(civil_from_unix(951_868_799), (2000, 2, 29, 23, 59, 59));
    }

    #[test]
    fn end_of_year() {
        assert_eq!(&log_stamp(1_767_225_599), b"[2025-12-31 23:59:59]");
        assert_eq!(&log_stamp(1_767_225_600), b"[2026-01-01 00:00:00]");
        assert_eq!(rfc3339(at(1_798_316_262)), "2026-12-26T20:17:42Z");
    }

    #[test]
    fn parses_what_it_writes() {
        for secs in [0, 951_868_799, 1_709_210_096, 1_798_316_262] {
            assert_eq!(parse_rfc3339(&rfc3339(at(secs))), Some(secs as i64));
        }
        assert_eq!(parse_rfc3339("2026-11-26 20:31:02Z"), None);
        assert_eq!(parse_rfc3339("nope"), None);
    }

    #[test]
    fn stamp_cache_follows_the_second() {
        let mut c = StampCache::new();
        assert_eq!(c.get(at(1_767_225_599)), b"[2025-12-31 23:59:59]");
        let half = at(1_767_225_599) + Duration::from_millis(500);
        assert_eq!(c.get(half), b"[2025-12-31 23:59:59]");
        assert_eq!(c.get(at(1_767_225_600)), b"[2026-01-01 00:00:00]");
        assert_eq!(c.get(UNIX_EPOCH), b"[1970-01-01 00:00:00]");
    }
}
