//! The upload progress bar of `exeio deploy` on a terminal (stderr): bytes
//! sent of the total and the rate, redrawn in place at most ten times a
//! second. `line` is pure (time is an input); `Progress` draws it.

use std::io::Write;
use std::time::{Duration, Instant};

const WIDTH: usize = 24;
const EVERY: Duration = Duration::from_millis(100);

/// One progress line: `web  [#####-----]  12.3/100.0 MB  12%  45.6 MB/s`.
pub fn line(label: &str, sent: u64, total: u64, elapsed: Duration) -> String {
    let frac = if total == 0 {
        1.0
    } else {
        (sent as f64 / total as f64).min(1.0)
    };
    let full = (frac * WIDTH as f64).round() as usize;
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        format!("{:.1} MB/s", sent as f64 / 1e6 / secs)
    } else {
        "- MB/s".to_owned()
    };
    format!(
        "{label}  [{}{}]  {:.1}/{:.1} MB  {:>3.0}%  {rate}",
        "#".repeat(full),
        "-".repeat(WIDTH - full),
        sent as f64 / 1e6,
        total as f64 / 1e6,
        frac * 100.0
    )
}

/// A bar on stderr.
pub struct Progress {
    label: String,
    total: u64,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Progress {
        Progress {
            label: label.to_owned(),
            total,
            start: Instant::now(),
            last: None,
        }
    }

    /// `sent` bytes so far: redraw if it is time (always at the end).
    pub fn update(&mut self, sent: u64) {
        let now = Instant::now();
        if sent < self.total && self.last.is_some_and(|t| now - t < EVERY) {
            return;
        }
        self.last = Some(now);
        let text = line(&self.label, sent, self.total, now - self.start);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{text}\x1b[K");
        let _ = err.flush();
    }

    /// End the bar's line (once something was drawn).
    pub fn done(&mut self) {
        if self.last.take().is_some() {
            let _ = writeln!(std::io::stderr().lock());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_how_far_and_how_fast() {
        let l = line("web", 25_000_000, 100_000_000, Duration::from_secs(2));
        assert_eq!(
            l,
            "web  [######------------------]  25.0/100.0 MB   25%  12.5 MB/s"
        );
        let l = line("web", 0, 0, Duration::ZERO);
        assert!(
            l.contains("[########################]") && l.contains("100%"),
            "{l}"
        );
        assert!(l.ends_with("- MB/s"), "{l}");
        let over = line("w", 150, 100, Duration::from_secs(1));
        assert!(over.contains("100%"), "{over}");
    }
}
