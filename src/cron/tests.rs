//! Unit tests of cron parsing and of `next_after`: explicit instants around
//! DST changes, parser errors with their columns, a cross-check against the
//! `croner` crate in UTC, and a per-instant oracle in zones with odd shifts.
//! Time is an input; nothing sleeps or reads the clock.

use super::*;
use jiff::tz::AmbiguousOffset;

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or_else(|e| panic!("zone {name}: {e}"))
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
}

/// The next run as RFC 3339 with the zone's offset, so rows read as civil
/// time; "never" for `None`.
fn next(expr: &str, zone: &TimeZone, after: &str) -> String {
    let schedule = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    match next_after(&schedule, zone, at(after)) {
        Some(found) => found
            .to_zoned(zone.clone())
            .strftime("%FT%T%:z")
            .to_string(),
        None => "never".to_owned(),
    }
}

/// Rows of "expression | after | expected next run" in one zone.
fn check(name: &str, rows: &[&str]) {
    let zone = zone(name);
    let mut failures = Vec::new();
    for row in rows {
        let [expr, after, expected] = row.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad row {row:?}");
        };
        let got = next(expr, &zone, after);
        if got != expected {
            failures.push(format!(
                "{expr:?} in {name} after {after}: got {got}, want {expected}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn new_york_spring_forward() {
    // 2026-03-08 02:00 EST -> 03:00 EDT
    check(
        "America/New_York",
        &[
            // Fixed time in the gap: once, at the first instant after it.
            "30 2 * * * | 2026-03-07T12:00:00-05:00 | 2026-03-08T03:00:00-04:00",
            "30 2 * * * | 2026-03-08T03:00:00-04:00 | 2026-03-09T02:30:00-04:00",
            "0,30 2 * * * | 2026-03-08T01:59:00-05:00 | 2026-03-08T03:00:00-04:00",
            "0,30 2 * * * | 2026-03-08T03:00:00-04:00 | 2026-03-09T02:00:00-04:00",
            "* 2 * * * | 2026-03-08T01:59:30-05:00 | 2026-03-08T03:00:00-04:00",
            "* 2 * * * | 2026-03-08T03:00:00-04:00 | 2026-03-09T02:00:00-04:00",
            "30 1 * * * | 2026-03-08T00:00:00-05:00 | 2026-03-08T01:30:00-05:00",
            "0 3 * * * | 2026-03-08T01:00:00-05:00 | 2026-03-08T03:00:00-04:00",
            // Wildcard hours: the nonexistent hour simply has no runs.
            "0 * * * * | 2026-03-08T01:00:00-05:00 | 2026-03-08T03:00:00-04:00",
            "0 * * * * | 2026-03-08T01:30:00-05:00 | 2026-03-08T03:00:00-04:00",
            "*/30 * * * * | 2026-03-08T01:30:00-05:00 | 2026-03-08T03:00:00-04:00",
            "*/30 * * * * | 2026-03-08T03:00:00-04:00 | 2026-03-08T03:30:00-04:00",
            "30 */2 * * * | 2026-03-08T01:00:00-05:00 | 2026-03-08T04:30:00-04:00",
            "30 2/23 * * * | 2026-03-08T00:00:00-05:00 | 2026-03-09T02:30:00-04:00",
        ],
    );
}

#[test]
fn new_york_fall_back() {
    // 2026-11-01 02:00 EDT -> 01:00 EST
    check(
        "America/New_York",
        &[
            // Fixed time in the repeated hour: the first occurrence only.
            "30 1 * * * | 2026-10-31T12:00:00-04:00 | 2026-11-01T01:30:00-04:00",
            "30 1 * * * | 2026-11-01T01:15:00-04:00 | 2026-11-01T01:30:00-04:00",
            "30 1 * * * | 2026-11-01T01:30:00-04:00 | 2026-11-02T01:30:00-05:00",
            "30 1 * * * | 2026-11-01T01:45:00-04:00 | 2026-11-02T01:30:00-05:00",
            "30 1 * * * | 2026-11-01T01:00:00-05:00 | 2026-11-02T01:30:00-05:00",
            "* 1 * * * | 2026-11-01T01:59:00-04:00 | 2026-11-02T01:00:00-05:00",
            "0,30 2 * * * | 2026-11-01T01:59:00-04:00 | 2026-11-01T02:00:00-05:00",
            "0,30 2 * * * | 2026-11-01T02:00:00-05:00 | 2026-11-01T02:30:00-05:00",
            "30 2 * * * | 2026-10-31T12:00:00-04:00 | 2026-11-01T02:30:00-05:00",
            // Wildcard hours: each real occurrence.
            "0 * * * * | 2026-11-01T00:30:00-04:00 | 2026-11-01T01:00:00-04:00",
            "0 * * * * | 2026-11-01T01:00:00-04:00 | 2026-11-01T01:00:00-05:00",
            "0 * * * * | 2026-11-01T01:45:00-04:00 | 2026-11-01T01:00:00-05:00",
            "0 * * * * | 2026-11-01T01:00:00-05:00 | 2026-11-01T02:00:00-05:00",
            "*/30 * * * * | 2026-11-01T01:30:00-04:00 | 2026-11-01T01:00:00-05:00",
            "*/30 * * * * | 2026-11-01T01:00:00-05:00 | 2026-11-01T01:30:00-05:00",
            "*/30 * * * * | 2026-11-01T01:30:00-05:00 | 2026-11-01T02:00:00-05:00",
            "30 1/2 * * * | 2026-11-01T01:30:00-04:00 | 2026-11-01T01:30:00-05:00",
            "30 */2 * * * | 2026-11-01T00:30:00-04:00 | 2026-11-01T02:30:00-05:00",
        ],
    );
}

#[test]
fn berlin_both_directions() {
    // 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00
    check(
        "Europe/Berlin",
        &[
            "30 2 * * * | 2026-03-28T12:00:00+01:00 | 2026-03-29T03:00:00+02:00",
            "30 2 * * * | 2026-03-29T03:00:00+02:00 | 2026-03-30T02:30:00+02:00",
            "15 3 * * * | 2026-03-29T01:00:00+01:00 | 2026-03-29T03:15:00+02:00",
            "0 * * * * | 2026-03-29T01:30:00+01:00 | 2026-03-29T03:00:00+02:00",
            "30 2 * * * | 2026-10-24T12:00:00+02:00 | 2026-10-25T02:30:00+02:00",
            "30 2 * * * | 2026-10-25T02:30:00+02:00 | 2026-10-26T02:30:00+01:00",
            "30 */2 * * * | 2026-10-25T02:00:00+02:00 | 2026-10-25T02:30:00+02:00",
            "30 */2 * * * | 2026-10-25T02:30:00+02:00 | 2026-10-25T02:30:00+01:00",
            "30 */2 * * * | 2026-10-25T02:30:00+01:00 | 2026-10-25T04:30:00+01:00",
            "*/30 * * * * | 2026-10-25T02:30:00+02:00 | 2026-10-25T02:00:00+01:00",
        ],
    );
}

#[test]
fn lord_howe_half_hour_shift() {
    // Check the hard-coded 2026 dates against the zone database first.
    let lh = zone("Australia/Lord_Howe");
    let changes: Vec<String> = lh
        .following(at("2026-01-01T00:00:00Z"))
        .take(2)
        .map(|t| {
            t.timestamp()
                .to_zoned(lh.clone())
                .strftime("%FT%T%:z")
                .to_string()
        })
        .collect();
    // 02:00 +11:00 -> 01:30 +10:30 (April); 02:00 +10:30 -> 02:30 +11:00 (October).
    assert_eq!(
        changes,
        ["2026-04-05T01:30:00+10:30", "2026-10-04T02:30:00+11:00"]
    );
    check(
        "Australia/Lord_Howe",
        &[
            "45 1 * * * | 2026-04-04T12:00:00+11:00 | 2026-04-05T01:45:00+11:00",
            "45 1 * * * | 2026-04-05T01:45:00+11:00 | 2026-04-06T01:45:00+10:30",
            "*/15 * * * * | 2026-04-05T01:45:00+11:00 | 2026-04-05T01:30:00+10:30",
            "*/15 * * * * | 2026-04-05T01:30:00+10:30 | 2026-04-05T01:45:00+10:30",
            "*/15 * * * * | 2026-04-05T01:45:00+10:30 | 2026-04-05T02:00:00+10:30",
            "15 2 * * * | 2026-10-03T12:00:00+10:30 | 2026-10-04T02:30:00+11:00",
            "15 2 * * * | 2026-10-04T02:30:00+11:00 | 2026-10-05T02:15:00+11:00",
            "0,30 2 * * * | 2026-10-04T01:59:00+10:30 | 2026-10-04T02:30:00+11:00",
            "0,30 2 * * * | 2026-10-04T02:30:00+11:00 | 2026-10-05T02:00:00+11:00",
            "*/15 * * * * | 2026-10-04T01:45:00+10:30 | 2026-10-04T02:30:00+11:00",
        ],
    );
}

#[test]
fn calendar_edges() {
    check(
        "UTC",
        &[
            "0 0 29 2 * | 2026-01-01T00:00:00Z | 2028-02-29T00:00:00+00:00",
            "0 0 29 2 * | 2096-03-01T00:00:00Z | 2104-02-29T00:00:00+00:00",
            "0 0 31 * * | 2026-03-31T00:00:00Z | 2026-05-31T00:00:00+00:00",
            "0 0 31 * * | 2026-05-31T00:00:00Z | 2026-07-31T00:00:00+00:00",
            "0 0 31 * * | 2026-07-31T00:00:00Z | 2026-08-31T00:00:00+00:00",
            "0 0 30 2 * | 2026-01-01T00:00:00Z | never",
            "0 0 31 4,6,9,11 * | 2026-01-01T00:00:00Z | never",
            "0 0 30 2 */2 | 2026-01-01T00:00:00Z | never",
            // Rare but possible: Feb 29 on a Sunday (AND, since `*/7` starts with `*`).
            "0 0 29 2 */7 | 2026-01-01T00:00:00Z | 2032-02-29T00:00:00+00:00",
            "59 23 31 12 * | 2026-12-31T23:59:00Z | 2027-12-31T23:59:00+00:00",
            "0 0 1 1 * | 2026-12-31T23:59:59.999999999Z | 2027-01-01T00:00:00+00:00",
            "0 0 1 1 * | 9999-06-01T00:00:00Z | never",
        ],
    );
}

#[test]
fn day_of_month_or_day_of_week() {
    // April 2026: the 1st is a Wednesday, Fridays are 3, 10, 17, 24; the 13th a Monday.
    check(
        "UTC",
        &[
            // Both restricted: either matches.
            "0 0 13 * 5 | 2026-04-01T00:00:00Z | 2026-04-03T00:00:00+00:00",
            "0 0 13 * 5 | 2026-04-10T00:00:00Z | 2026-04-13T00:00:00+00:00",
            "0 0 13 * 5 | 2026-04-13T00:00:00Z | 2026-04-17T00:00:00+00:00",
            "0 0 13 * FRI | 2026-04-13T00:00:00Z | 2026-04-17T00:00:00+00:00",
            // One starts with `*`: both must match.
            "0 0 * * 5 | 2026-04-10T00:00:00Z | 2026-04-17T00:00:00+00:00",
            "0 0 13 * * | 2026-04-01T00:00:00Z | 2026-04-13T00:00:00+00:00",
            "0 0 */2 * 5 | 2026-04-03T00:00:00Z | 2026-04-17T00:00:00+00:00",
            // 13th on Sun/Tue/Thu/Sat: 2026-01-13 is a Tuesday, then 2026-06-13 a Saturday.
            "0 0 13 * */2 | 2026-01-01T00:00:00Z | 2026-01-13T00:00:00+00:00",
            "0 0 13 * */2 | 2026-01-13T00:00:00Z | 2026-06-13T00:00:00+00:00",
        ],
    );
}

#[test]
fn names_sunday_and_nicknames() {
    // 2026-04-03 is a Friday.
    check(
        "UTC",
        &[
            "0 9 * * mon-fri | 2026-04-03T10:00:00Z | 2026-04-06T09:00:00+00:00",
            "0 9 * * Mon-Fri | 2026-04-06T08:00:00Z | 2026-04-06T09:00:00+00:00",
            "0 0 1 jun * | 2026-04-03T00:00:00Z | 2026-06-01T00:00:00+00:00",
            "0 0 1 JAN-MAR * | 2026-04-03T00:00:00Z | 2027-01-01T00:00:00+00:00",
            "0 0 * * 7 | 2026-04-01T00:00:00Z | 2026-04-05T00:00:00+00:00",
            "0 0 * * 0 | 2026-04-01T00:00:00Z | 2026-04-05T00:00:00+00:00",
            "0 0 * * SUN | 2026-04-01T00:00:00Z | 2026-04-05T00:00:00+00:00",
            "0 0 * * 5-7 | 2026-04-02T00:00:00Z | 2026-04-03T00:00:00+00:00",
            "0 0 * * 5-7 | 2026-04-03T00:00:00Z | 2026-04-04T00:00:00+00:00",
            "0 0 * * 5-7 | 2026-04-04T00:00:00Z | 2026-04-05T00:00:00+00:00",
            "0 0 * * 5-7 | 2026-04-05T00:00:00Z | 2026-04-10T00:00:00+00:00",
            "@yearly | 2026-04-03T00:00:00Z | 2027-01-01T00:00:00+00:00",
            "@annually | 2026-04-03T00:00:00Z | 2027-01-01T00:00:00+00:00",
            "@monthly | 2026-04-03T00:00:00Z | 2026-05-01T00:00:00+00:00",
            "@weekly | 2026-04-03T00:00:00Z | 2026-04-05T00:00:00+00:00",
            "@daily | 2026-04-03T10:00:00Z | 2026-04-04T00:00:00+00:00",
            "@midnight | 2026-04-03T10:00:00Z | 2026-04-04T00:00:00+00:00",
            "@HOURLY | 2026-04-03T10:15:00Z | 2026-04-03T11:00:00+00:00",
        ],
    );
}

#[test]
fn seconds_and_strictly_after() {
    check(
        "UTC",
        &[
            "*/2 * * * * * | 2026-04-01T00:00:00Z | 2026-04-01T00:00:02+00:00",
            "*/2 * * * * * | 2026-04-01T00:00:01.5Z | 2026-04-01T00:00:02+00:00",
            "*/2 * * * * * | 2026-04-01T00:00:58Z | 2026-04-01T00:01:00+00:00",
            "* * * * * * | 2026-04-01T23:59:59Z | 2026-04-02T00:00:00+00:00",
            "30 0 12 * * * | 2026-04-01T12:00:30Z | 2026-04-02T12:00:30+00:00",
            "30 0 12 * * * | 2026-04-01T12:00:29.999Z | 2026-04-01T12:00:30+00:00",
            "* * * * * | 2026-04-01T12:00:00Z | 2026-04-01T12:01:00+00:00",
            "* * * * * | 2026-04-01T12:00:00.5Z | 2026-04-01T12:01:00+00:00",
            "0 12 * * * | 2026-04-01T12:00:00Z | 2026-04-02T12:00:00+00:00",
            "0 12 * * * | 2026-04-01T11:59:59Z | 2026-04-01T12:00:00+00:00",
            "5,10 */6 1-3 * * | 2026-04-03T18:10:00Z | 2026-05-01T00:05:00+00:00",
            "0 0 1 */3 * | 2026-04-01T00:00:00Z | 2026-07-01T00:00:00+00:00",
            "20/15 * * * * | 2026-04-01T00:50:00Z | 2026-04-01T01:20:00+00:00",
        ],
    );
}

#[test]
fn accessors() {
    let s = Schedule::parse("  */2 * * * * *\t").unwrap();
    assert_eq!(s.as_str(), "*/2 * * * * *");
    assert!(s.has_seconds());
    let s = Schedule::parse("@daily").unwrap();
    assert_eq!(s.as_str(), "@daily");
    assert!(!s.has_seconds());
    assert_eq!(
        s,
        Schedule {
            text: "@daily".into(),
            ..Schedule::parse("0 0 * * *").unwrap()
        }
    );
    assert!(Schedule::parse("30 2 * * *").unwrap().fixed_time);
    assert!(Schedule::parse("30 1-3,5 * * *").unwrap().fixed_time);
    assert!(!Schedule::parse("30 * * * *").unwrap().fixed_time);
    assert!(!Schedule::parse("30 1-5/2 * * *").unwrap().fixed_time);
}

#[test]
fn parse_errors() {
    let rows: &[(&str, Option<&str>, usize)] = &[
        ("61 * * * *", Some("minute"), 1),
        ("* 24 * * *", Some("hour"), 3),
        ("* * 0 * *", Some("day-of-month"), 5),
        ("* * 32 * *", Some("day-of-month"), 5),
        ("* * * 13 *", Some("month"), 7),
        ("* * * JANX *", Some("month"), 7),
        ("* * * 1-FOO *", Some("month"), 9),
        ("* * * * 8", Some("day-of-week"), 9),
        ("* * * * FUNDAY", Some("day-of-week"), 9),
        ("* * * * FRI-MON", Some("day-of-week"), 9),
        ("* * * * 1-", Some("day-of-week"), 11),
        ("*/0 * * * *", Some("minute"), 3),
        ("*/60 * * * *", Some("minute"), 3),
        ("*/ * * * *", Some("minute"), 3),
        ("*/x * * * *", Some("minute"), 3),
        ("1/2/3 * * * *", Some("minute"), 3),
        ("5-1 * * * *", Some("minute"), 1),
        ("1,,2 * * * *", Some("minute"), 3),
        ("1, * * * *", Some("minute"), 3),
        (",1 * * * *", Some("minute"), 1),
        ("1-2-3 * * * *", Some("minute"), 3),
        ("*-5 * * * *", Some("minute"), 1),
        ("-5 * * * *", Some("minute"), 1),
        ("a * * * *", Some("minute"), 1),
        ("0 99999999999 * * *", Some("hour"), 3),
        ("0  0 * *\t99", Some("day-of-week"), 10),
        ("* * * * ü", Some("day-of-week"), 9),
        ("0\u{3000}0 * * 99", Some("day-of-week"), 9),
        ("ü * * * * 99", Some("second"), 1),
        ("60 * * * * *", Some("second"), 1),
        ("0 60 * * * *", Some("minute"), 3),
        ("* * ? * *", Some("day-of-month"), 5),
        ("* * L * *", Some("day-of-month"), 5),
        ("* * * *", None, 1),
        ("* * * * * * *", None, 13),
        ("", None, 1),
        ("   ", None, 1),
        ("@reboot", None, 1),
        ("@bogus", None, 1),
        ("@daily 5", None, 8),
        ("@", None, 1),
    ];
    let mut failures = Vec::new();
    for &(expr, field, position) in rows {
        match Schedule::parse(expr) {
            Ok(_) => failures.push(format!("{expr:?} parsed")),
            Err(e) if (e.field, e.position) != (field, position) => {
                failures.push(format!("{expr:?}: got {e:?}, want {field:?} at {position}"));
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn error_messages() {
    let message = |expr| Schedule::parse(expr).unwrap_err().to_string();
    assert_eq!(
        message("0 61 * * *"),
        "hour field at position 3: 61 is out of range 0-23"
    );
    assert_eq!(
        message("61 * * * *"),
        "minute field at position 1: 61 is out of range 0-59"
    );
    assert_eq!(
        message("* * * JANX *"),
        "month field at position 7: 'JANX' is not a number nor a month name (JAN-DEC)"
    );
    assert_eq!(
        message("*/0 * * * *"),
        "minute field at position 3: step 0 is out of range 1-59"
    );
    assert_eq!(
        message("5-1 * * * *"),
        "minute field at position 1: range 5-1 runs backwards (its start must not exceed its end)"
    );
    assert_eq!(
        message("1,,2 * * * *"),
        "minute field at position 3: empty list item"
    );
    assert!(
        message("* * * *").contains("expected 5 fields"),
        "{}",
        message("* * * *")
    );
    assert!(message("* * * *").ends_with("found 4"));
    assert!(message("* * * * * * *").ends_with("found 7"));
    assert!(message("@reboot").contains("@reboot is not supported"));
    assert!(message("@bogus").contains("unknown nickname '@bogus'"));
    let error: Box<dyn std::error::Error> = Box::new(Schedule::parse("x").unwrap_err());
    assert!(
        error
            .to_string()
            .starts_with("cron expression at position 1: ")
    );
}

/// splitmix64: a small seeded generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u32, high: u32) -> u32 {
        low + (self.next() % u64::from(high - low + 1)) as u32
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.range(1, 100) <= percent
    }
}

/// A value of the field, sometimes as a name in random case.
fn random_value(rng: &mut Rng, field: &Field, low: u32, high: u32) -> String {
    let value = rng.range(low, high);
    let index = (value - field.min) as usize;
    match field.names.get(index) {
        Some(name) if rng.chance(30) => match rng.range(0, 2) {
            0 => name.to_string(),
            1 => name.to_lowercase(),
            _ => name[..1].to_string() + &name[1..].to_lowercase(),
        },
        _ => value.to_string(),
    }
}

/// A random valid field: `*` alone, or a list of values, ranges and steps.
/// `sparse` keeps it to one or two small items (for fields like hours, so the
/// oracle test finds runs close by).
fn random_field(rng: &mut Rng, field: &Field, star_percent: u32) -> String {
    if rng.chance(star_percent) {
        return "*".to_owned();
    }
    let (min, max) = (field.min, field.max);
    let span = max - min;
    let items = if rng.chance(60) { 1 } else { rng.range(2, 4) };
    let mut list = Vec::new();
    for _ in 0..items {
        let item = match rng.range(0, 4) {
            0 | 1 => random_value(rng, field, min, max),
            2 => {
                let low = rng.range(min, max);
                let high = rng.range(low, max);
                // croner reads a range ending in the name SUN as ending in 7
                // (`0-SUN` is every day there, Sunday alone in cronie): numbers only.
                let end = match high {
                    0 => high.to_string(),
                    _ => random_value(rng, field, high, high),
                };
                format!("{}-{end}", random_value(rng, field, low, low))
            }
            3 => format!("*/{}", rng.range(1, span.min(20))),
            4 => {
                let low = rng.range(min, max);
                let step = rng.range(1, span);
                match rng.chance(50) {
                    true => format!("{low}/{step}"),
                    false => format!("{low}-{}/{step}", rng.range(low, max)),
                }
            }
            _ => unreachable!(),
        };
        list.push(item);
    }
    list.join(",")
}

/// A random valid expression; 6 fields a quarter of the time.
fn random_expression(rng: &mut Rng) -> String {
    let mut fields = Vec::new();
    if rng.chance(25) {
        fields.push(random_field(rng, &SECOND, 30));
    }
    fields.push(random_field(rng, &MINUTE, 20));
    fields.push(random_field(rng, &HOUR, 40));
    fields.push(random_field(rng, &DAY_OF_MONTH, 50));
    fields.push(random_field(rng, &MONTH, 60));
    fields.push(random_field(rng, &DAY_OF_WEEK, 50));
    fields.join(" ")
}

/// The same expression in croner's dialect. croner ORs the day fields
/// unless one is exactly `*`, where Vixie ANDs them when either *starts*
/// with `*` (`*/2`); croner's `+` prefix on the weekday field forces AND.
fn croner_dialect(expr: &str) -> String {
    let mut fields: Vec<String> = expr.split(' ').map(str::to_owned).collect();
    let n = fields.len();
    let (dom, dow) = (&fields[n - 3], &fields[n - 1]);
    let vixie_and = dom.starts_with('*') || dow.starts_with('*');
    if vixie_and && dom != "*" && dow != "*" {
        fields[n - 1] = format!("+{dow}");
    }
    fields.join(" ")
}

fn croner_next(expr: &str, after: Timestamp) -> Option<Timestamp> {
    use chrono::{DateTime, Utc};
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build();
    let cron = parser
        .parse(&croner_dialect(expr))
        .unwrap_or_else(|e| panic!("croner {expr}: {e}"));
    let start =
        DateTime::<Utc>::from_timestamp(after.as_second(), after.subsec_nanosecond() as u32)?;
    let found = cron.find_next_occurrence(&start, false).ok()?;
    Timestamp::new(found.timestamp(), found.timestamp_subsec_nanos() as i32).ok()
}

/// Every feature of our syntax is generated (names, 0-7, lists, ranges, `*/n`,
/// `a-b/n`, `a/n`, seconds) except one spelling: a range ending in the name
/// SUN (see `random_field`). Vixie's `*`-prefix AND rule is translated above.
#[test]
fn cross_check_with_croner_in_utc() {
    let mut rng = Rng(0x5eed_c0de);
    let (start, end) = (at("2000-01-01T00:00:00Z"), at("2060-01-01T00:00:00Z"));
    let utc = TimeZone::UTC;
    let mut failures = Vec::new();
    for _ in 0..2000 {
        let expr = random_expression(&mut rng);
        let schedule = Schedule::parse(&expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let span = (end.as_second() - start.as_second()) as u64;
        let mut after =
            Timestamp::from_second(start.as_second() + (rng.next() % span) as i64).unwrap();
        // Three runs in a row: later `after`s sit exactly on a match.
        for _ in 0..3 {
            let ours = next_after(&schedule, &utc, after);
            let theirs = croner_next(&expr, after);
            if ours != theirs {
                failures.push(format!(
                    "{expr:?} after {after}: ours {ours:?}, croner {theirs:?}"
                ));
                break;
            }
            match ours {
                Some(t) => after = t,
                None => break,
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Does the civil time match the expression (Vixie's day rule, written out
/// again here rather than through `days_of`)?
fn matches(s: &Schedule, t: DateTime) -> bool {
    let bit = |mask: u64, v: i8| mask & 1 << v != 0;
    let by_date = bit(s.days, t.day());
    let by_weekday = bit(s.weekdays, t.weekday().to_sunday_zero_offset());
    let day = if s.day_or {
        by_date || by_weekday
    } else {
        by_date && by_weekday
    };
    bit(s.seconds, t.second())
        && bit(s.minutes, t.minute())
        && bit(s.hours, t.hour())
        && bit(s.months, t.month())
        && day
}

/// The DST rules stated per instant, independently of the stretch walk:
/// does the job run at `t` (whole seconds)?
fn runs_at(s: &Schedule, zone: &TimeZone, t: Timestamp) -> bool {
    let civil = zone.to_datetime(t);
    let offset = zone.to_offset(t);
    let first_occurrence = match zone.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Fold { before, .. } => offset == before,
        _ => true,
    };
    if matches(s, civil) && (first_occurrence || !s.fixed_time) {
        return true;
    }
    // A fixed-time job also runs at the end of a gap that hid one of its times.
    let before = zone.to_offset(t - SignedDuration::from_secs(1));
    if !s.fixed_time || before >= offset {
        return false;
    }
    let (mut hidden, gap_end) = (before.to_datetime(t), offset.to_datetime(t));
    while hidden < gap_end {
        if matches(s, hidden) {
            return true;
        }
        hidden = hidden.checked_add(SignedDuration::from_secs(1)).unwrap();
    }
    false
}

const ZONES: [&str; 12] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
    "America/Santiago",
    "America/Havana",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Pacific/Apia",
];

/// In real zones, near their transitions: the run is after `after`, runs by
/// the per-instant rules, and (when it is near) no instant in between does.
#[test]
fn next_run_obeys_the_per_instant_rules_in_many_zones() {
    let mut rng = Rng(0xd57_2026);
    let mut checked_between = 0;
    for case in 0..1000 {
        let name = ZONES[case % ZONES.len()];
        let zone = zone(name);
        let base = Timestamp::from_second(rng.range(946_684_800, 2_840_140_800) as i64).unwrap();
        // Mostly from 6 hours before to 2 hours after a transition, so gaps
        // and folds are crossed (or started inside), with fixed hours around
        // the civil hour of the change.
        let (after, hour) = match zone.following(base).next() {
            Some(t) if rng.chance(80) => {
                let t = t.timestamp();
                let hour = zone.to_datetime(t - SignedDuration::from_secs(1)).hour();
                let shift = rng.range(0, 8 * 3600) as i64 - 2 * 3600;
                (t - SignedDuration::from_secs(shift), hour as u32)
            }
            _ => (base, rng.range(0, 23)),
        };
        let mut fields = Vec::new();
        let seconds = rng.chance(15);
        if seconds {
            fields.push(random_field(&mut rng, &SECOND, 40));
        }
        fields.push(random_field(&mut rng, &MINUTE, 30));
        fields.push(match rng.range(0, 2) {
            0 => "*".to_owned(),
            1 => format!("{}/{}", rng.range(0, 3), rng.range(1, 3)),
            _ => {
                let near = |rng: &mut Rng| (hour + rng.range(23, 25)) % 24;
                match rng.chance(50) {
                    true => near(&mut rng).to_string(),
                    false => format!("{},{}", near(&mut rng), near(&mut rng)),
                }
            }
        });
        fields.push(random_field(&mut rng, &DAY_OF_MONTH, 85));
        fields.push(random_field(&mut rng, &MONTH, 85));
        fields.push(random_field(&mut rng, &DAY_OF_WEEK, 85));
        let expr = fields.join(" ");
        let s = Schedule::parse(&expr).unwrap();
        // Several runs in a row, so the walk goes through a gap or a fold.
        let mut after = after;
        for _ in 0..4 {
            // Random day fields can rule out every date (`31 2`); the table covers None.
            let Some(found) = next_after(&s, &zone, after) else {
                break;
            };
            let context = format!("{expr:?} in {name} after {after}: {found}");
            assert!(found > after, "{context}: not after");
            assert!(runs_at(&s, &zone, found), "{context}: not a run");
            // Brute force over whole minutes (whole seconds for 6 fields), if near.
            let step = if seconds { 1 } else { 60 };
            let first = after.as_second().div_euclid(step) * step + step;
            if (found.as_second() - first) / step <= 1560 {
                checked_between += 1;
                for second in (first..found.as_second()).step_by(step as usize) {
                    let t = Timestamp::from_second(second).unwrap();
                    assert!(!runs_at(&s, &zone, t), "{context}: missed {t}");
                }
            }
            after = found;
        }
    }
    assert!(
        checked_between > 2000,
        "too few near runs: {checked_between}"
    );
}
