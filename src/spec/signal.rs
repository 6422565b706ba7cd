//! `stop_signal`: the signals a process may be stopped with, by name.

/// A signal a process may be stopped with, by name ("TERM", "SIGINT", "9").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopSignal(i32);

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("TERM", 15),
    ("WINCH", 28),
];

impl StopSignal {
    pub const TERM: StopSignal = StopSignal(15);

    /// Exactly these: `TERM`, `SIGTERM` or `15` (and so on for each).
    pub fn parse(s: &str) -> Result<StopSignal, String> {
        let bare = s.strip_prefix("SIG").unwrap_or(s);
        SIGNALS
            .iter()
            .find(|(name, num)| *name == bare || (bare == s && num.to_string() == s))
            .map(|&(_, num)| StopSignal(num))
            .ok_or_else(|| {
                let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
                format!("stop_signal {s:?} is not one of {}", names.join(", "))
            })
    }

    /// Every accepted spelling (for the API document).
    pub fn accepted() -> Vec<String> {
        SIGNALS
            .iter()
            .flat_map(|(name, num)| [name.to_string(), format!("SIG{name}"), num.to_string()])
            .collect()
    }

    pub fn number(self) -> i32 {
        self.0
    }

    pub fn name(self) -> &'static str {
        SIGNALS
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| *name)
            .unwrap_or("TERM")
    }
}
