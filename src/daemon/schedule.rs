//! When a flow runs next, and whether a run was missed while ferry was down.
//!
//! A run counts as missed when a tick of the flow's trigger fell between
//! the start of its latest recorded run (`_ferry.runs.started_at`, read
//! from the destination) and now. Two more cases count as missed. A flow
//! with no recorded run at all runs, so a new flow fills its tables at
//! once instead of waiting for its first tick. A flow whose latest run of
//! some entity did not succeed (stopped by a shutdown, killed, failed)
//! runs, so it resumes from its last committed chunk at start-up. Either
//! way the flow runs once, not once per missed tick.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::spec::plan::Trigger;

/// The wall clock the scheduler reads. Tests use a clock that follows
/// tokio's paused time, so cron ticks can be checked without waiting.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// `start` plus the tokio time elapsed since `origin`.
    Tokio {
        start: DateTime<Utc>,
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// Creates a clock that reads `start` now and advances with tokio's time.
    pub fn tokio_from(start: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            start,
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { start, origin } => {
                let elapsed =
                    chrono::Duration::from_std(origin.elapsed()).unwrap_or(chrono::Duration::MAX);
                *start + elapsed
            }
        }
    }

    /// Returns the tokio instant at which this clock reads `at`.
    pub fn instant_at(&self, at: DateTime<Utc>) -> tokio::time::Instant {
        let wait = (at - self.now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::Instant::now() + wait
    }
}

/// Returns the first tick strictly after `after`, or `None` when a cron
/// expression has no future time.
pub fn next_tick(
    trigger: &Trigger,
    after: DateTime<Utc>,
    last_started: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match trigger {
        Trigger::Cron {
            schedule, timezone, ..
        } => schedule
            .after(&after.with_timezone(timezone))
            .next()
            .map(|tick| tick.with_timezone(&Utc)),
        Trigger::Every(interval) => {
            let interval = chrono::Duration::from_std(*interval).ok()?;
            // Keep the rhythm of the last run where there is one.
            match last_started {
                Some(last) if last + interval > after => Some(last + interval),
                _ => Some(after + interval),
            }
        }
    }
}

/// The latest recorded run of a flow, from `_ferry.runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRun {
    /// When the newest run of any of the flow's entities started.
    pub started_at: DateTime<Utc>,
    /// Every entity's newest run succeeded.
    pub complete: bool,
}

/// True when a tick fell after the last run's start and no later than
/// `now`, when the flow never ran, or when its last run is incomplete.
pub fn missed(trigger: &Trigger, last_run: Option<LastRun>, now: DateTime<Utc>) -> bool {
    let Some(LastRun {
        started_at: last,
        complete,
    }) = last_run
    else {
        return true;
    };
    if !complete {
        return true;
    }
    match trigger {
        Trigger::Cron { .. } => next_tick(trigger, last, None).is_some_and(|tick| tick <= now),
        Trigger::Every(interval) => chrono::Duration::from_std(*interval)
            .map(|interval| last + interval <= now)
            .unwrap_or(false),
    }
}

/// Describes the trigger as written, for `/flows` and logs.
pub fn describe(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Cron {
            expression,
            timezone,
            ..
        } => format!("cron {expression:?} ({timezone})"),
        Trigger::Every(interval) => format!("every {}", humantime::format_duration(*interval)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn cron(expression: &str, zone: &str) -> Trigger {
        Trigger::Cron {
            expression: expression.to_string(),
            schedule: Box::new(cron::Schedule::from_str(expression).unwrap()),
            timezone: zone.parse().unwrap(),
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn cron_next_tick_honours_timezone() {
        // 09:00 in New York in January is 14:00 UTC.
        let trigger = cron("0 0 9 * * *", "America/New_York");
        let next = next_tick(&trigger, utc("2024-01-10T12:00:00Z"), None);
        assert_eq!(next, Some(utc("2024-01-10T14:00:00Z")));
    }

    #[test]
    fn cron_missed_only_when_tick_passed() {
        let trigger = cron("0 0 * * * *", "UTC");
        let now = utc("2024-01-10T12:30:00Z");
        let run = |at: &str, complete| {
            Some(LastRun {
                started_at: utc(at),
                complete,
            })
        };
        assert!(missed(&trigger, run("2024-01-10T11:59:00Z", true), now));
        assert!(!missed(&trigger, run("2024-01-10T12:00:00Z", true), now));
        assert!(missed(&trigger, run("2024-01-10T12:00:00Z", false), now));
        assert!(missed(&trigger, None, now));
    }

    #[test]
    fn every_keeps_rhythm_of_last_run() {
        let trigger = Trigger::Every(Duration::from_secs(3600));
        let now = utc("2024-01-10T12:30:00Z");
        let last = utc("2024-01-10T12:10:00Z");
        let complete = Some(LastRun {
            started_at: last,
            complete: true,
        });
        assert!(!missed(&trigger, complete, now));
        assert_eq!(
            next_tick(&trigger, now, Some(last)),
            Some(utc("2024-01-10T13:10:00Z"))
        );
        assert_eq!(
            next_tick(&trigger, now, None),
            Some(utc("2024-01-10T13:30:00Z"))
        );
    }
}
