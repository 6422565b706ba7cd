//! The fields of periodic and scheduled jobs: overlap, timeout, history,
//! schedule and catch-up, and their validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AddRequest, FieldError, MAX_PERIOD_SECONDS};
use crate::calendar::{Calendar, CalendarError};

const DEFAULT_HISTORY: u32 = 50;
const DEFAULT_CATCH_UP_WINDOW: u64 = 86_400;
const MAX_HISTORY: u32 = 10_000;

/// What a job does when its next time comes while a run is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Skip the new run (logged and counted).
    #[default]
    Skip,
    /// Start one run as soon as the current one ends.
    Queue,
    /// Stop the current run (stop signal, then SIGKILL), then start.
    Replace,
}

impl Overlap {
    pub fn name(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Replace => "replace",
        }
    }
}

/// Settings of periodic and scheduled jobs (defaults for other processes).
#[derive(Clone, Debug, PartialEq)]
pub struct JobSettings {
    pub overlap: Overlap,
    pub timeout: Option<Duration>,
    /// Run records kept.
    pub history: u32,
    /// Scheduled jobs: run once at start for a time missed while exeio was
    /// down, if within this window.
    pub catch_up: Option<Duration>,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            overlap: Overlap::Skip,
            timeout: None,
            history: DEFAULT_HISTORY,
            catch_up: None,
        }
    }
}

/// `schedule` and `timezone`: a calendar schedule, or none.
pub(super) fn calendar(req: &AddRequest, periodic: bool) -> Result<Option<Calendar>, FieldError> {
    match (&req.schedule, &req.timezone) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(FieldError::new("timezone", "timezone goes with a schedule")),
        (Some(_), _) if periodic => Err(FieldError::new(
            "schedule",
            "schedule and periodic exclude each other: a job runs on a calendar or every N seconds",
        )),
        (Some(expr), zone) => {
            Calendar::parse(expr, zone.as_deref())
                .map(Some)
                .map_err(|e| match e {
                    CalendarError::Schedule(m) => FieldError::new("schedule", m),
                    CalendarError::Timezone(m) => FieldError::new("timezone", m),
                })
        }
    }
}

/// `catch_up` and its window (scheduled jobs only).
pub(super) fn catch_up(req: &AddRequest, scheduled: bool) -> Result<Option<Duration>, FieldError> {
    if !scheduled {
        for (field, given) in [
            ("catch_up", req.catch_up.is_some()),
            (
                "catch_up_window_seconds",
                req.catch_up_window_seconds.is_some(),
            ),
        ] {
            if given {
                return Err(FieldError::new(
                    field,
                    format!("{field} applies only to jobs with a schedule"),
                ));
            }
        }
        return Ok(None);
    }
    let window = req
        .catch_up_window_seconds
        .unwrap_or(DEFAULT_CATCH_UP_WINDOW);
    if window == 0 || window > MAX_PERIOD_SECONDS {
        return Err(FieldError::new(
            "catch_up_window_seconds",
            format!("catch_up_window_seconds must be between 1 and {MAX_PERIOD_SECONDS}"),
        ));
    }
    Ok(req
        .catch_up
        .unwrap_or(false)
        .then(|| Duration::from_secs(window)))
}

pub(super) fn job_settings(
    job: bool,
    overlap: Option<Overlap>,
    timeout: Option<u64>,
    history: Option<u32>,
) -> Result<JobSettings, FieldError> {
    if !job {
        for (field, given) in [
            ("overlap", overlap.is_some()),
            ("timeout_seconds", timeout.is_some()),
            ("history", history.is_some()),
        ] {
            if given {
                return Err(FieldError::new(
                    field,
                    format!("{field} applies only to periodic or scheduled jobs"),
                ));
            }
        }
    }
    let timeout = match timeout {
        Some(0) => {
            return Err(FieldError::new(
                "timeout_seconds",
                "timeout_seconds must be greater than 0",
            ));
        }
        Some(t) if t > MAX_PERIOD_SECONDS => {
            return Err(FieldError::new(
                "timeout_seconds",
                format!("timeout_seconds must be at most {MAX_PERIOD_SECONDS}"),
            ));
        }
        t => t.map(Duration::from_secs),
    };
    let history = history.unwrap_or(DEFAULT_HISTORY);
    if history > MAX_HISTORY {
        return Err(FieldError::new(
            "history",
            format!("history must be at most {MAX_HISTORY}"),
        ));
    }
    Ok(JobSettings {
        overlap: overlap.unwrap_or_default(),
        timeout,
        history,
        catch_up: None,
    })
}
