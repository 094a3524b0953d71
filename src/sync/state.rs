//! The state document kept per flow and entity in `_ferry.state`.
//!
//! ```json
//! {"cursor": "2024-05-01T00:00:00Z",
//!  "pending_cursor": "2024-05-03T10:00:00Z",
//!  "resume": {"fingerprint": "…", "run_started_at": "…", "position": {…}}}
//! ```
//!
//! `cursor` is the high-water mark the next run filters on. During a run the
//! maximum seen so far is kept as `pending_cursor` and becomes `cursor` only
//! when the run completes. With newest-first APIs the maximum arrives on the
//! first page, so saving it early would make a failed run skip everything
//! older on the next attempt. `resume` is the exact request to send next,
//! written with every chunk, so a crashed or failed run continues where its
//! last chunk ended. Keys ferry does not know (written by change feeds or
//! token rotation) are kept as they are.
//!
//! A child entity also keeps `parents`: the last parent row (by
//! `_ferry_synced_at` and key) that a completed run read. The next run
//! reads only parents written after it, so an incremental parent drives an
//! incremental child.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::{ParentPosition, Position};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_cursor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// For a child entity: the last parent a completed run read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<ParentPosition>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The position of an unfinished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// The entity definition this position belongs to; a changed spec
    /// makes the position meaningless, so it is then discarded.
    pub fingerprint: String,
    /// When the first attempt of this run started: rows synced before it
    /// were not seen by the run (for `deleted_rows: mark`).
    pub run_started_at: DateTime<Utc>,
    /// The next request to send; `None` when every page was fetched and
    /// only the run's completion is left to commit.
    pub position: Option<Position>,
}

impl EntityState {
    /// Parses a stored state document.
    pub fn from_value(value: Value) -> Result<EntityState, serde_json::Error> {
        serde_json::from_value(value)
    }

    pub fn to_value(&self) -> Value {
        // A struct of JSON values always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_keys_survive() {
        let stored = json!({"cursor": 5, "changes": {"cursor": 9}});
        let state = EntityState::from_value(stored.clone()).unwrap();
        assert_eq!(state.cursor, Some(json!(5)));
        assert_eq!(state.to_value(), stored);
    }

    #[test]
    fn empty_state_is_empty_object() {
        assert_eq!(EntityState::default().to_value(), json!({}));
    }
}
