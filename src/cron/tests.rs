//! Unit tests of cron parsing and of `next_after`: explicit instants around
//! DST changes and parser errors with their columns (the randomised checks
//! are in `oracle`). Time is an input; nothing sleeps or reads the clock.

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

mod oracle;
