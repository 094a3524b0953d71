//! When an entity with a change feed reads the feed, and what its state
//! keeps about the feed.
//!
//! The feed's position lives in the state document under `changes`:
//!
//! ```json
//! {"changes": {"cursor": 1717430000, "checked_at": "2024-06-03T16:00:00Z"}}
//! ```
//!
//! `cursor` is the maximum of the feed's cursor field seen, which the next
//! feed run sends. After a full load it is the load's start time, written in
//! the form of the entity's own cursor. `checked_at` is when the last
//! completed run started, so every change before it is in the table. When
//! `checked_at` is older than `changes.max_age_seconds`, changes after it may
//! have left the feed, and the entity is loaded in full again.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::EntityState;
use crate::engine;
use crate::spec::plan::Entity;

/// Key of the feed position in the state document.
const STATE_KEY: &str = "changes";

/// Taken off a full load's start time when it becomes the feed cursor, so
/// a clock running ahead of the API's by less than this loses no change.
const CLOCK_MARGIN: TimeDelta = TimeDelta::minutes(5);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedState {
    /// The value the next feed run sends; `None` reads the whole feed.
    #[serde(default)]
    pub cursor: Option<Value>,
    /// Start of the last completed run: the table contains every change before it.
    pub checked_at: DateTime<Utc>,
}

impl FeedState {
    /// Reads the feed position from an entity's state; `None` when the
    /// entity was never loaded in full with its feed, or the value is unreadable.
    pub fn read(state: &EntityState) -> Option<FeedState> {
        let value = state.extra.get(STATE_KEY)?;
        match serde_json::from_value(value.clone()) {
            Ok(feed) => Some(feed),
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    "the saved change feed position is unreadable, so the entity is loaded in full"
                );
                None
            }
        }
    }

    pub fn write(&self, state: &mut EntityState) {
        // A struct of JSON values always serializes.
        if let Ok(value) = serde_json::to_value(self) {
            state.extra.insert(STATE_KEY.to_string(), value);
        }
    }

    /// The position after a completed full load that started at `started_at`.
    /// The start time becomes the cursor in the form of `list_cursor` (the
    /// list's own maximum, such as Stripe's `created`); without a time to
    /// copy the form from, the first feed run reads the whole feed.
    pub fn after_full_load(list_cursor: Option<&Value>, started_at: DateTime<Utc>) -> FeedState {
        let cursor = list_cursor
            .and_then(|sample| engine::time_in_form_of(sample, started_at - CLOCK_MARGIN));
        FeedState {
            cursor,
            checked_at: started_at,
        }
    }

    /// Returns the position after a completed feed run that started at
    /// `started_at` and saw `seen` as the maximum feed cursor.
    pub fn after_feed_run(&self, seen: Option<&Value>, started_at: DateTime<Utc>) -> FeedState {
        let cursor = match (&self.cursor, seen) {
            (Some(saved), Some(seen)) => Some(engine::max_cursor(saved, seen)),
            (None, Some(seen)) => Some(seen.clone()),
            (saved, None) => saved.clone(),
        };
        FeedState {
            cursor,
            checked_at: started_at,
        }
    }
}

/// The source an incremental run of an entity with a change feed reads.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedChoice {
    /// Read the feed from this cursor.
    Feed { since: Option<Value> },
    /// Load the list in full: there is no feed position yet, or it is too old.
    FullLoad,
}

/// Decides between the feed and a full load, for an entity that has a
/// feed, in incremental mode, with no run to resume.
pub fn choose(entity: &Entity, state: &EntityState, now: DateTime<Utc>) -> FeedChoice {
    let Some(feed) = FeedState::read(state) else {
        return FeedChoice::FullLoad;
    };
    let max_age = entity
        .changes
        .as_ref()
        .and_then(|changes| changes.max_age)
        .and_then(|age| TimeDelta::from_std(age).ok());
    if let Some(max_age) = max_age
        && now - feed.checked_at > max_age
    {
        tracing::warn!(
            entity = %entity.name,
            checked_at = %feed.checked_at,
            max_age_seconds = max_age.num_seconds(),
            "the change feed position is older than changes.max_age_seconds, \
             so changes may have left the feed: the entity is loaded in full"
        );
        return FeedChoice::FullLoad;
    }
    FeedChoice::Feed { since: feed.cursor }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn time(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 3, hour, 0, 0).unwrap()
    }

    #[test]
    fn full_load_cursor_copies_list_form() {
        let feed = FeedState::after_full_load(Some(&json!(1_700_000_000)), time(12));
        assert_eq!(feed.cursor, Some(json!(time(12).timestamp() - 300)));
        assert_eq!(feed.checked_at, time(12));
        let without = FeedState::after_full_load(None, time(12));
        assert_eq!(without.cursor, None);
    }

    #[test]
    fn feed_run_keeps_maximum() {
        let saved = FeedState {
            cursor: Some(json!(100)),
            checked_at: time(1),
        };
        assert_eq!(
            saved.after_feed_run(Some(&json!(150)), time(2)).cursor,
            Some(json!(150))
        );
        assert_eq!(saved.after_feed_run(None, time(2)).cursor, Some(json!(100)));
        assert_eq!(saved.after_feed_run(None, time(2)).checked_at, time(2));
    }

    #[test]
    fn state_round_trip() {
        let mut state = EntityState::default();
        let feed = FeedState {
            cursor: Some(json!(5)),
            checked_at: time(3),
        };
        feed.write(&mut state);
        assert_eq!(FeedState::read(&state), Some(feed));
        assert_eq!(
            state.to_value(),
            json!({"changes": {"cursor": 5, "checked_at": "2024-06-03T03:00:00Z"}})
        );
    }
}
