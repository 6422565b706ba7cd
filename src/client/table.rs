//! The client's output: aligned tables, `key: value` blocks, colours for
//! statuses (only on a terminal, never with `NO_COLOR`), and the short forms
//! of durations (`3m12s`), sizes (`12.3MiB`) and times. Pure: every function
//! returns a `String`; `client::main` decides where it goes.

use std::fmt::Write as _;

/// How output is dressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colours only on a terminal, and never when `NO_COLOR` is set (non-empty).
    pub fn detect(is_tty: bool, no_color: Option<&str>) -> Style {
        Style {
            color: is_tty && no_color.is_none_or(str::is_empty),
        }
    }

    /// `text` in the colour of a process status.
    pub fn status(self, status: &str) -> Paint {
        let code = match status {
            "running" => "32",                     // green
            "waiting" => "36",                     // cyan
            "backoff" | "stopping" => "33",        // yellow
            "failed" => "31;1",                    // bold red
            "stopped" | "manually_stopped" => "2", // dim
            _ => "",
        };
        self.paint(code)
    }

    /// The colour of a health (SPEC 4b).
    pub fn health(self, health: &str) -> Paint {
        self.paint(match health {
            "healthy" => "32",
            "starting" => "33",
            "unhealthy" => "31;1",
            _ => "",
        })
    }

    /// The colour of a run's result.
    pub fn result(self, result: &str) -> Paint {
        self.paint(match result {
            "ok" => "32",
            "failed" | "timed_out" | "spawn_error" => "31",
            "replaced" => "33",
            _ => "",
        })
    }

    fn paint(self, code: &'static str) -> Paint {
        Paint(if self.color { code } else { "" })
    }
}

/// An SGR colour code, or none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paint(&'static str);

impl Paint {
    /// `text` with the colour (as is when there is none).
    pub fn apply(self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            format!("\x1b[{}m{text}\x1b[0m", self.0)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table: a header row and rows of cells, each cell with an optional colour.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<(String, Paint)>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<(String, Paint)>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Columns two spaces apart, padded to the widest cell; no trailing
    /// spaces. Colour codes go around the padded text, so they never shift
    /// a column.
    pub fn render(&self) -> String {
        let n = self.columns.len();
        let mut width: Vec<usize> = self
            .columns
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (i, (text, _)) in row.iter().enumerate().take(n) {
                width[i] = width[i].max(text.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<(String, Paint)> = self
            .columns
            .iter()
            .map(|(h, _)| ((*h).to_owned(), Paint::default()))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (text, paint)) in row.iter().enumerate().take(n) {
                let last = i + 1 == n;
                let pad = width[i] - text.chars().count();
                let (left, right) = match self.columns[i].1 {
                    Align::Left if last => (0, 0),
                    Align::Left => (0, pad),
                    Align::Right => (pad, 0),
                };
                if i > 0 {
                    line.push_str("  ");
                }
                line.extend(std::iter::repeat_n(' ', left));
                line.push_str(&paint.apply(text));
                line.extend(std::iter::repeat_n(' ', right));
            }
            out.push_str(line.trim_end_matches(' '));
            out.push('\n');
        }
        out
    }
}

/// A plain cell.
pub fn cell(text: impl Into<String>) -> (String, Paint) {
    (text.into(), Paint::default())
}

/// `key: value` lines with the values aligned.
pub fn pairs(items: &[(&str, String)]) -> String {
    let w = items
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in items {
        let _ = writeln!(out, "{k}:{:pad$} {v}", "", pad = w - k.chars().count());
    }
    out
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`: two units at most, whole seconds.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let s = secs.floor() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A duration that may be under a second (`0.25s`), else as `duration`.
pub fn short_duration(secs: f64) -> String {
    if secs.is_finite() && (0.0..10.0).contains(&secs) {
        let t = format!("{secs:.2}");
        let t = t.trim_end_matches('0').trim_end_matches('.');
        format!("{t}s")
    } else {
        duration(secs)
    }
}

/// `512B`, `1.5KiB`, `12.3MiB`, `1.0GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

/// An RFC 3339 UTC time as `2025-07-15 10:31:02` (anything else as given).
pub fn time(rfc3339: &str) -> String {
    let t = rfc3339.trim_end_matches('Z');
    match t.split_once('T') {
        Some((d, hms)) if rfc3339.ends_with('Z') => {
            let hms = hms.split('.').next().unwrap_or(hms);
            format!("{d} {hms}")
        }
        _ => rfc3339.to_owned(),
    }
}

/// A command line as a shell would read it back: words quoted where needed.
pub fn shell_words<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words
        .into_iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                w.to_owned()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(45.9), "45s");
        assert_eq!(duration(192.0), "3m12s");
        assert_eq!(duration(3600.0), "1h00m");
        assert_eq!(duration(7500.0), "2h05m");
        assert_eq!(duration(3.0 * 86400.0 + 4.0 * 3600.0 + 59.0), "3d04h");
        assert_eq!(duration(-1.0), "-");
        assert_eq!(duration(f64::NAN), "-");
        assert_eq!(short_duration(0.25), "0.25s");
        assert_eq!(short_duration(2.0), "2s");
        assert_eq!(short_duration(61.0), "1m01s");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(1023), "1023B");
        assert_eq!(size(1536), "1.5KiB");
        assert_eq!(size(12_900_000), "12MiB");
        assert_eq!(size(5 << 20), "5.0MiB");
        assert_eq!(size(3 << 30), "3.0GiB");
    }

    #[test]
    fn times_and_words() {
        assert_eq!(time("2025-07-15T10:31:02Z"), "2025-07-15 10:31:02");
        assert_eq!(time("2025-07-15T10:31:02.123Z"), "2025-07-15 10:31:02");
        assert_eq!(
            time("2025-07-15T12:31:02+02:00"),
            "2025-07-15T12:31:02+02:00"
        );
        assert_eq!(
            shell_words(["sh", "-c", "echo 'hi' $X", ""]),
            r#"sh -c 'echo '\''hi'\'' $X' ''"#
        );
    }

    #[test]
    fn tables_align_without_trailing_spaces() {
        let mut t = Table::new(&[
            ("ID", Align::Left),
            ("PID", Align::Right),
            ("STATUS", Align::Left),
        ]);
        t.row(vec![cell("web"), cell("12345"), cell("running")]);
        t.row(vec![cell("a-much-longer-id"), cell("7"), cell("-")]);
        assert_eq!(
            t.render(),
            "ID                  PID  STATUS\n\
             web               12345  running\n\
             a-much-longer-id      7  -\n"
        );
    }

    #[test]
    fn colour_only_when_asked_and_outside_the_padding() {
        assert!(!Style::detect(false, None).color);
        assert!(!Style::detect(true, Some("1")).color);
        assert!(Style::detect(true, Some("")).color);
        assert!(Style::detect(true, None).color);
        let on = Style { color: true };
        let mut t = Table::new(&[("STATUS", Align::Left), ("ID", Align::Left)]);
        t.row(vec![("failed".into(), on.status("failed")), cell("x")]);
        assert_eq!(t.render(), "STATUS  ID\n\x1b[31;1mfailed\x1b[0m  x\n");
        let off = Style::default();
        let mut t = Table::new(&[("STATUS", Align::Left)]);
        t.row(vec![("failed".into(), off.status("failed"))]);
        assert!(!t.render().contains('\x1b'));
    }

    #[test]
    fn pairs_align() {
        assert_eq!(
            pairs(&[("id", "web".into()), ("status", "running".into())]),
            "id:     web\nstatus: running\n"
        );
    }
}
