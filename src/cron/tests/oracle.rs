//! The randomised checks of `next_after`: a cross-check against the
//! `croner` crate in UTC, and a per-instant oracle of the DST rules in zones
//! with odd shifts. Seeded, so a failure reproduces.

use super::*;

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
