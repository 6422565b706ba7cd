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

/// Any signal for `POST /signal/{id}`, by name (`HUP`, `SIGHUP`, `hup`) or
/// number (`1`): its number and its name without `SIG`.
pub fn any_signal(s: &str) -> Result<(i32, &'static str), String> {
    use nix::sys::signal::Signal;
    let upper = s.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    Signal::iterator()
        .find(|sig| &sig.as_str()[3..] == bare || (*sig as i32).to_string() == bare)
        .map(|sig| (sig as i32, &sig.as_str()[3..]))
        .ok_or_else(|| {
            format!(
                "{s:?} is not a signal (HUP, INT, QUIT, USR1, USR2, TERM, KILL, ... or a number)"
            )
        })
}

/// Every signal name `any_signal` takes (for the API document).
pub fn signal_names() -> Vec<String> {
    nix::sys::signal::Signal::iterator()
        .map(|s| s.as_str()[3..].to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_signal_by_name_or_number() {
        assert_eq!(any_signal("HUP"), Ok((1, "HUP")));
        assert_eq!(any_signal("sigusr1"), Ok((10, "USR1")));
        assert_eq!(any_signal("15"), Ok((15, "TERM")));
        assert!(any_signal("BOGUS").is_err());
        assert!(any_signal("0").is_err());
        assert!(any_signal("").is_err());
        assert!(signal_names().contains(&"WINCH".to_owned()));
    }
}
