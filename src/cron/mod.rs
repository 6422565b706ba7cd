//! Cron schedules (SPEC 4a): `Schedule::parse` reads a Vixie/cronie
//! expression into one bitset per field, and `next_after` finds the first run
//! strictly after an instant in a time zone, with cronie's daylight-saving
//! rules. Pure: the instant and the zone are inputs and nothing here reads a
//! clock or a file (the zone was loaded by the caller). For spec validation
//! (`parse`) and the supervisor's scheduling code (`next_after` with `now`).
//!
//! The search walks the zone's stretches of constant UTC offset in time order.
//! Inside one stretch civil time and instants map one to one and in order, so
//! the first civil match there is the stretch's first run; at a stretch's
//! start the DST rules add (a gap's fixed-time run) or drop (a fold's repeated
//! fixed-time runs) candidates. The civil search is bounded by the Gregorian
//! calendar's 400-year cycle: what does not match within it never matches.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A parsed cron expression: one bitset per field (bit `v` set = value `v`
/// matches) plus the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    has_seconds: bool,
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Days of the month, bits 1..=31.
    days: u64,
    /// Bits 1..=12.
    months: u64,
    /// Bits 0..=6, Sunday = 0 (a 7 in the text is folded into 0).
    weekdays: u64,
    /// Vixie's rule: both day fields restricted (neither text starts with
    /// `*`), so a day matches when either field matches; otherwise both must.
    day_or: bool,
    /// The hour field has no `*` and no step: DST gaps and folds follow the
    /// fixed-time rules, not the wildcard ones (see `next_after`).
    fixed_time: bool,
    /// For a month whose 1st falls on weekday `w` (Sunday = 0): the days
    /// 1..=31 (as bits) that fall on a weekday of `weekdays`.
    weekday_days: [u32; 7],
}

/// Why an expression does not parse: which field, the 1-based character
/// column (in the trimmed expression) where the bad token starts, and what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    /// "second", "minute", "hour", "day-of-month", "month", "day-of-week";
    /// `None` for errors of the whole expression (field count, nicknames).
    pub field: Option<&'static str>,
    pub position: usize,
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{field} field at position {}: ", self.position)?,
            None => write!(f, "cron expression at position {}: ", self.position)?,
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for CronError {}

impl CronError {
    /// An error of the whole expression rather than of one field.
    fn whole(position: usize, message: String) -> CronError {
        CronError {
            field: None,
            position,
            message,
        }
    }
}

/// What one field accepts.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names of the values `min`, `min + 1`, ... (case-insensitive).
    names: &'static [&'static str],
    /// How an unknown name is explained.
    names_hint: &'static str,
}

const SECOND: Field = Field::numeric("second", 0, 59);
const MINUTE: Field = Field::numeric("minute", 0, 59);
const HOUR: Field = Field::numeric("hour", 0, 23);
const DAY_OF_MONTH: Field = Field::numeric("day-of-month", 1, 31);
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    names_hint: " nor a month name (JAN-DEC)",
};
/// 0-7: both 0 and 7 are Sunday.
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    names_hint: " nor a day name (SUN-SAT)",
};

impl Field {
    const fn numeric(name: &'static str, min: u32, max: u32) -> Field {
        Field {
            name,
            min,
            max,
            names: &[],
            names_hint: "",
        }
    }

    fn error(&self, position: usize, message: String) -> CronError {
        CronError {
            field: Some(self.name),
            position,
            message,
        }
    }
}

/// The nicknames and what they stand for.
const NICKNAMES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Schedule {
    /// Parse a 5-field (`min hour dom month dow`) or 6-field (seconds first)
    /// expression, or a nickname such as `@daily`.
    pub fn parse(expr: &str) -> Result<Schedule, CronError> {
        let text = expr.trim();
        if text.is_empty() {
            return Err(CronError::whole(1, "the expression is empty".to_owned()));
        }
        let words = split_words(text);
        let mut schedule = if text.starts_with('@') {
            if let Some(&(position, extra)) = words.get(1) {
                let message = format!("unexpected '{extra}' after a nickname");
                return Err(CronError::whole(position, message));
            }
            let fields = nickname(text).ok_or_else(|| CronError::whole(1, nickname_error(text)))?;
            Schedule::from_fields(&split_words(fields))?
        } else {
            Schedule::from_fields(&words)?
        };
        schedule.text = text.to_owned();
        Ok(schedule)
    }

    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The 6-field form, with a leading seconds field.
    pub fn has_seconds(&self) -> bool {
        self.has_seconds
    }

    /// Build from the whitespace-separated words, each with its column.
    fn from_fields(words: &[(usize, &str)]) -> Result<Schedule, CronError> {
        let (has_seconds, rest) = match words.len() {
            5 => (false, words),
            6 => (true, &words[1..]),
            n => {
                let position = words.get(6).map_or(1, |&(position, _)| position);
                let message = format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) \
                     or 6 (with a leading second), found {n}"
                );
                return Err(CronError::whole(position, message));
            }
        };
        let seconds = if has_seconds {
            parse_field(&SECOND, words[0])?
        } else {
            1
        };
        let [minute, hour, day, month, weekday] = rest else {
            unreachable!("five fields after the optional seconds")
        };
        let weekdays = parse_field(&DAY_OF_WEEK, *weekday)?;
        let weekdays = (weekdays | weekdays >> 7) & 0x7f;
        let mut weekday_days = [0; 7];
        for (first, days) in weekday_days.iter_mut().enumerate() {
            for day in 1..=31 {
                if weekdays & 1 << ((first + day - 1) % 7) != 0 {
                    *days |= 1 << day;
                }
            }
        }
        Ok(Schedule {
            text: String::new(),
            has_seconds,
            seconds,
            minutes: parse_field(&MINUTE, *minute)?,
            hours: parse_field(&HOUR, *hour)?,
            days: parse_field(&DAY_OF_MONTH, *day)?,
            months: parse_field(&MONTH, *month)?,
            weekdays,
            day_or: !day.1.starts_with('*') && !weekday.1.starts_with('*'),
            fixed_time: !hour.1.contains(['*', '/']),
            weekday_days,
        })
    }

    /// The first civil time at or after `from` that matches, no later than
    /// the end of `last` (inclusive); whole seconds.
    fn first_match_from(&self, from: DateTime, last: Date) -> Option<DateTime> {
        let (mut year, mut month) = (from.year(), from.month());
        let mut first_day = from.day();
        while (year, month) <= (last.year(), last.month()) {
            if self.months & 1 << month != 0 {
                let mut days = self.days_of(year, month)? & (u32::MAX << first_day);
                while days != 0 {
                    let day = days.trailing_zeros() as i8;
                    let date = Date::new(year, month, day).ok()?;
                    let time = if date == from.date() {
                        self.first_time_from(from.hour(), from.minute(), from.second())
                    } else {
                        Some(self.first_time())
                    };
                    if let Some((h, m, s)) = time {
                        return Some(date.at(h, m, s, 0));
                    }
                    days &= days - 1;
                }
            }
            first_day = 1;
            (year, month) = if month == 12 {
                (year.checked_add(1)?, 1)
            } else {
                (year, month + 1)
            };
        }
        None
    }

    /// The days (bits 1..=31) of a month that match both day fields.
    fn days_of(&self, year: i16, month: i8) -> Option<u32> {
        let first = Date::new(year, month, 1).ok()?;
        let in_month = ((1u64 << (first.days_in_month() + 1)) - 2) as u32;
        let by_date = self.days as u32 & in_month;
        let by_weekday =
            self.weekday_days[first.weekday().to_sunday_zero_offset() as usize] & in_month;
        Some(if self.day_or {
            by_date | by_weekday
        } else {
            by_date & by_weekday
        })
    }

    fn first_time(&self) -> (i8, i8, i8) {
        let first = |mask: u64| mask.trailing_zeros() as i8;
        (first(self.hours), first(self.minutes), first(self.seconds))
    }

    /// The first matching time of day at or after `h:m:s`, if any.
    fn first_time_from(&self, h: i8, m: i8, s: i8) -> Option<(i8, i8, i8)> {
        let (_, first_minute, first_second) = self.first_time();
        let hour = next_bit(self.hours, h)?;
        if hour > h {
            return Some((hour, first_minute, first_second));
        }
        if let Some(minute) = next_bit(self.minutes, m) {
            if minute > m {
                return Some((h, minute, first_second));
            }
            if let Some(second) = next_bit(self.seconds, s) {
                return Some((h, m, second));
            }
            if let Some(minute) = next_bit(self.minutes, m + 1) {
                return Some((h, minute, first_second));
            }
        }
        Some((next_bit(self.hours, h + 1)?, first_minute, first_second))
    }
}

/// The smallest bit at or above `from` in `mask`.
fn next_bit(mask: u64, from: i8) -> Option<i8> {
    let rest = mask.checked_shr(from as u32)?.checked_shl(from as u32)?;
    (rest != 0).then(|| rest.trailing_zeros() as i8)
}

/// The whitespace-separated words of `text`, each with its 1-based column.
fn split_words(text: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    let mut start = None;
    let mut column = 0;
    for (i, c) in text.char_indices() {
        column += 1;
        match (c.is_whitespace(), start) {
            (false, None) => start = Some((column, i)),
            (true, Some((at, from))) => {
                words.push((at, &text[from..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some((at, from)) = start {
        words.push((at, &text[from..]));
    }
    words
}

fn nickname(text: &str) -> Option<&'static str> {
    let found = NICKNAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text));
    found.map(|&(_, fields)| fields)
}

fn nickname_error(text: &str) -> String {
    if text.eq_ignore_ascii_case("@reboot") {
        return "@reboot is not supported: a schedule needs calendar times \
                (to run a process when exeio starts, add it without a schedule)"
            .to_owned();
    }
    format!(
        "unknown nickname '{text}' (known: @yearly @annually @monthly @weekly @daily @midnight @hourly)"
    )
}

/// One field's text (a comma-separated list) to its bitset.
fn parse_field(field: &Field, (position, text): (usize, &str)) -> Result<u64, CronError> {
    let mut mask = 0;
    let mut at = position;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(field.error(at, "empty list item".to_owned()));
        }
        mask |= parse_item(field, item, at)?;
        at += item.chars().count() + 1;
    }
    Ok(mask)
}

/// One list item: `*`, `a`, `a-b`, each optionally `/step` (`a/step` means
/// `a-max/step`).
fn parse_item(field: &Field, item: &str, at: usize) -> Result<u64, CronError> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some((step, at + range.chars().count() + 1))),
        None => (item, None),
    };
    let (low, high) = if range == "*" {
        (field.min, field.max)
    } else if let Some((low, high)) = range.split_once('-') {
        let low_value = parse_value(field, low, at)?;
        let high_value = parse_value(field, high, at + low.chars().count() + 1)?;
        if low_value > high_value {
            let message =
                format!("range {range} runs backwards (its start must not exceed its end)");
            return Err(field.error(at, message));
        }
        (low_value, high_value)
    } else {
        let value = parse_value(field, range, at)?;
        (value, if step.is_some() { field.max } else { value })
    };
    let step = match step {
        None => 1,
        Some((text, at)) => parse_step(field, text, at)?,
    };
    Ok((low..=high)
        .step_by(step as usize)
        .fold(0, |mask, v| mask | 1 << v))
}

/// A number or a name in the field's range.
fn parse_value(field: &Field, text: &str, at: usize) -> Result<u32, CronError> {
    if text.is_empty() {
        return Err(field.error(at, "a number is missing".to_owned()));
    }
    let (min, max) = (field.min, field.max);
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(field.error(at, format!("{text} is out of range {min}-{max}"))),
        };
    }
    match field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        Some(index) => Ok(min + index as u32),
        None => {
            let message = format!("'{text}' is not a number{}", field.names_hint);
            Err(field.error(at, message))
        }
    }
}

/// A step: at least 1 and no larger than the field's span.
fn parse_step(field: &Field, text: &str, at: usize) -> Result<u32, CronError> {
    let span = field.max - field.min;
    if text.is_empty() {
        return Err(field.error(at, "the step is missing after '/'".to_owned()));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(field.error(at, format!("step '{text}' is not a number")));
    }
    match text.parse::<u32>() {
        Ok(step) if (1..=span).contains(&step) => Ok(step),
        _ => Err(field.error(at, format!("step {text} is out of range 1-{span}"))),
    }
}

/// How many years ahead the civil search looks: the Gregorian calendar
/// repeats every 400 years, so a pattern without a match in 401 has none.
const HORIZON_YEARS: i16 = 401;

/// The first run of `schedule` strictly after `after`, in `zone`; `None` if
/// there is none in the next 400 years (so never, for a pattern that matches
/// no date, like `0 0 30 2 *`) or before the end of year 9999.
///
/// DST follows cronie. A *fixed-time* job (its hour field has no `*` and no
/// step) whose times fall in a spring-forward gap runs once, at the first
/// instant after the gap; in a fall-back fold it runs at the first occurrence
/// only. A *wildcard* job has no runs at nonexistent times and runs at every
/// real occurrence of a repeated time.
pub fn next_after(schedule: &Schedule, zone: &TimeZone, after: Timestamp) -> Option<Timestamp> {
    let mut offset = zone.to_offset(after);
    let now = offset.to_datetime(after);
    let mut from = now.date().at(now.hour(), now.minute(), now.second(), 0);
    from = from.checked_add(SignedDuration::from_secs(1)).ok()?;
    let last = Date::new(from.year().saturating_add(HORIZON_YEARS).min(9999), 12, 31).ok()?;
    let mut search = CivilSearch {
        schedule,
        last,
        memo: None,
    };
    // A fixed-time job in the second pass of a fold: skip what already ran.
    if schedule.fixed_time
        && let Some((start, previous)) = stretch_start(zone, after)
        && previous > offset
    {
        from = from.max(previous.to_datetime(start));
    }
    let mut transitions = zone.following(after);
    loop {
        // `offset` holds from `from` (civil) to the next transition.
        let next = transitions.next();
        let found = search.first_from(from)?;
        let end = next.as_ref().map(|t| offset.to_datetime(t.timestamp()));
        if end.is_none_or(|end| found < end) {
            return offset.to_timestamp(found).ok();
        }
        let (start, previous) = (next?.timestamp(), offset);
        offset = zone.to_offset(start);
        from = offset.to_datetime(start);
        if schedule.fixed_time && previous < offset {
            // A gap: the fixed times it hides run once, at its end.
            if search
                .first_from(previous.to_datetime(start))
                .is_some_and(|c| c < from)
            {
                return Some(start);
            }
        }
        if schedule.fixed_time && previous > offset {
            // A fold: the fixed times it repeats ran at their first occurrence.
            from = previous.to_datetime(start);
        }
    }
}

/// The start of the stretch of constant offset holding `t`, and the offset in
/// force just before it; `None` if no transition precedes `t`.
fn stretch_start(zone: &TimeZone, t: Timestamp) -> Option<(Timestamp, jiff::tz::Offset)> {
    const NANO: SignedDuration = SignedDuration::from_nanos(1);
    let start = zone
        .preceding(t.checked_add(NANO).ok()?)
        .next()?
        .timestamp();
    Some((start, zone.to_offset(start.checked_sub(NANO).ok()?)))
}

/// `Schedule::first_match_from` with its last answer remembered: successive
/// stretches mostly ask again from a point before that answer.
struct CivilSearch<'a> {
    schedule: &'a Schedule,
    last: Date,
    memo: Option<(DateTime, Option<DateTime>)>,
}

impl CivilSearch<'_> {
    fn first_from(&mut self, from: DateTime) -> Option<DateTime> {
        if let Some((asked, answer)) = self.memo
            && asked <= from
            && answer.is_none_or(|found| from <= found)
        {
            return answer;
        }
        let answer = self.schedule.first_match_from(from, self.last);
        self.memo = Some((from, answer));
        answer
    }
}

#[cfg(test)]
mod tests;
