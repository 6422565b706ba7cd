//! Restart and scheduling rules: pure functions of (history, now).
//!
//! No clocks are read here; callers pass `Instant`s and `Duration`s, so every
//! row of the backoff table is unit-tested without sleeping.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A run at least this long resets the consecutive-restart count.
pub const MIN_UPTIME: Duration = Duration::from_secs(300);
/// A run shorter than this adds `RAPID_EXIT_PENALTY` to the delay.
pub const RAPID_EXIT: Duration = Duration::from_secs(10);
pub const RAPID_EXIT_PENALTY: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The reason phrase of a restart SYSTEM line.
    pub fn restart_reason(self) -> String {
        match self {
            ExitStatus::Code(0) => "after normal exit".to_owned(),
            ExitStatus::Code(n) => format!("after crash with exit code {n}"),
            ExitStatus::Signal(n) => format!("after external kill signal {n}"),
        }
    }

    pub fn describe(self) -> String {
        match self {
            ExitStatus::Code(n) => format!("exited with code {n}"),
            ExitStatus::Signal(n) => format!("killed by signal {n}"),
        }
    }
}

/// Restart timing of one process: the seed table unless it says otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    /// Delays before the 1st, 2nd, ... consecutive restart (the last repeats);
    /// `None`: the seed table.
    pub steps: Option<Vec<Duration>>,
    /// A run at least this long resets the consecutive-restart count.
    pub reset: Duration,
    /// Added to the delay after a run shorter than `RAPID_EXIT`.
    pub penalty: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            steps: None,
            reset: MIN_UPTIME,
            penalty: RAPID_EXIT_PENALTY,
        }
    }
}

/// Delay before the `attempt`th consecutive restart (1-based), after a run
/// that lasted `run`.
pub fn restart_delay(backoff: &Backoff, attempt: u32, run: Duration) -> Duration {
    let base = match &backoff.steps {
        Some(steps) => {
            let i = (attempt.max(1) as usize - 1).min(steps.len() - 1);
            steps[i]
        }
        None => Duration::from_secs(match attempt {
            0..=3 => 2,
            4..=6 => 5,
            7..=10 => 15,
            11..=15 => 30,
            _ => 60,
        }),
    };
    if run < RAPID_EXIT {
        base + backoff.penalty
    } else {
        base
    }
}

/// Does `policy` restart after `exit`?
pub fn wants_restart(policy: RestartPolicy, exit: ExitStatus) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !exit.success(),
        RestartPolicy::Never => false,
    }
}

/// What happens after a non-periodic run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterExit {
    /// The policy says done.
    Stay,
    /// Restart after `delay`; this is consecutive restart number `attempt`.
    Restart { attempt: u32, delay: Duration },
    /// `max_restarts` consecutive restarts were already made.
    GiveUp { restarts: u32 },
}

/// Decide what follows an exit. `streak` is the number of consecutive
/// restarts made before this run.
pub fn after_exit(
    policy: RestartPolicy,
    max_restarts: Option<u32>,
    backoff: &Backoff,
    streak: u32,
    exit: ExitStatus,
    run: Duration,
) -> AfterExit {
    if !wants_restart(policy, exit) {
        return AfterExit::Stay;
    }
    let streak = if run >= backoff.reset { 0 } else { streak };
    if let Some(max) = max_restarts
        && streak >= max
    {
        return AfterExit::GiveUp { restarts: streak };
    }
    let attempt = streak + 1;
    AfterExit::Restart {
        attempt,
        delay: restart_delay(backoff, attempt, run),
    }
}

/// The next periodic start after `scheduled` (the start that was due), at a
/// fixed rate, that is still in the future at `now`; and how many slots were
/// missed on the way.
pub fn next_periodic_run(scheduled: Instant, period: Duration, now: Instant) -> (Instant, u64) {
    let next = scheduled + period;
    if next > now {
        return (next, 0);
    }
    let period_ns = period.as_nanos().max(1);
    let missed = (now.duration_since(next).as_nanos() / period_ns + 1) as u64;
    let skip = Duration::from_nanos((period_ns * u128::from(missed)) as u64);
    (next + skip, missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const SEED: Backoff = Backoff {
        steps: None,
        reset: MIN_UPTIME,
        penalty: RAPID_EXIT_PENALTY,
    };

    #[test]
    fn every_row_of_the_backoff_table() {
        let long = S(60);
        let rows: &[(u32, u64)] = &[
            (1, 2),
            (2, 2),
            (3, 2),
            (4, 5),
            (5, 5),
            (6, 5),
            (7, 15),
            (8, 15),
            (9, 15),
            (10, 15),
            (11, 30),
            (15, 30),
            (16, 60),
            (17, 60),
            (1000, 60),
        ];
        for &(attempt, secs) in rows {
            assert_eq!(
                restart_delay(&SEED, attempt, long),
                S(secs),
                "attempt {attempt}"
            );
            assert_eq!(
                restart_delay(&SEED, attempt, S(9)),
                S(secs + 20),
                "rapid attempt {attempt}"
            );
        }
        assert_eq!(restart_delay(&SEED, 1, S(10)), S(2), "10 s is not rapid");
        assert_eq!(restart_delay(&SEED, 3, Duration::ZERO), S(22));
    }

    #[test]
    fn a_custom_schedule_repeats_its_last_step() {
        let b = Backoff {
            steps: Some(vec![Duration::ZERO, Duration::from_millis(500), S(5)]),
            reset: S(60),
            penalty: Duration::ZERO,
        };
        let got: Vec<Duration> = (1..=5).map(|n| restart_delay(&b, n, S(1))).collect();
        assert_eq!(
            got,
            [Duration::ZERO, Duration::from_millis(500), S(5), S(5), S(5)]
        );
        let p = RestartPolicy::Always;
        // the custom reset window: 60 s of uptime resets the streak
        assert_eq!(
            after_exit(p, None, &b, 7, ExitStatus::Code(1), S(60)),
            AfterExit::Restart {
                attempt: 1,
                delay: Duration::ZERO
            }
        );
        let penalised = Backoff { penalty: S(3), ..b };
        assert_eq!(restart_delay(&penalised, 1, S(1)), S(3));
        assert_eq!(restart_delay(&penalised, 1, S(10)), Duration::ZERO);
    }

    #[test]
    fn policies() {
        use ExitStatus::*;
        assert!(wants_restart(RestartPolicy::Always, Code(0)));
        assert!(!wants_restart(RestartPolicy::OnFailure, Code(0)));
        assert!(wants_restart(RestartPolicy::OnFailure, Code(1)));
        assert!(wants_restart(RestartPolicy::OnFailure, Signal(9)));
        assert!(!wants_restart(RestartPolicy::Never, Signal(9)));
    }

    #[test]
    fn streak_and_give_up() {
        use ExitStatus::*;
        let p = RestartPolicy::Always;
        assert_eq!(
            after_exit(p, None, &SEED, 0, Code(1), S(1)),
            AfterExit::Restart {
                attempt: 1,
                delay: S(22)
            }
        );
        assert_eq!(
            after_exit(p, None, &SEED, 3, Code(1), S(30)),
            AfterExit::Restart {
                attempt: 4,
                delay: S(5)
            }
        );
        // a run of 5 minutes or more resets the streak
        assert_eq!(
            after_exit(p, None, &SEED, 20, Code(1), S(300)),
            AfterExit::Restart {
                attempt: 1,
                delay: S(2)
            }
        );
        assert_eq!(
            after_exit(p, None, &SEED, 20, Code(1), S(299)),
            AfterExit::Restart {
                attempt: 21,
                delay: S(60)
            }
        );
        assert_eq!(
            after_exit(p, Some(2), &SEED, 2, Code(1), S(1)),
            AfterExit::GiveUp { restarts: 2 }
        );
        assert_eq!(
            after_exit(p, Some(0), &SEED, 0, Code(1), S(1)),
            AfterExit::GiveUp { restarts: 0 }
        );
        assert_eq!(
            after_exit(RestartPolicy::OnFailure, Some(0), &SEED, 0, Code(0), S(1)),
            AfterExit::Stay
        );
    }

    #[test]
    fn fixed_rate_schedule() {
        let t0 = Instant::now();
        let p = S(10);
        assert_eq!(next_periodic_run(t0, p, t0 + S(3)), (t0 + S(10), 0));
        // a run that overran two slots skips them, staying on the grid
        assert_eq!(next_periodic_run(t0, p, t0 + S(25)), (t0 + S(30), 2));
        assert_eq!(next_periodic_run(t0, p, t0 + S(10)), (t0 + S(20), 1));
    }

    #[test]
    fn reasons() {
        assert_eq!(
            ExitStatus::Code(3).restart_reason(),
            "after crash with exit code 3"
        );
        assert_eq!(ExitStatus::Code(0).restart_reason(), "after normal exit");
        assert_eq!(
            ExitStatus::Signal(9).restart_reason(),
            "after external kill signal 9"
        );
    }
}
