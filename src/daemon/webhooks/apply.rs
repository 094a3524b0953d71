//! Writes a webhook event's object into its entity table, once, and never
//! over a newer version.
//!
//! Each object touched by webhooks has a ledger row in `_ferry.state`,
//! under flow `<flow>#webhooks` and entity `<entity>/<key as JSON>`:
//!
//! ```json
//! {"occurred_at": 1700000000, "event_ids": ["evt_1"]}
//! ```
//!
//! `occurred_at` is the newest source time applied to the object and
//! `event_ids` the events applied at that time. An event whose id is
//! listed is a redelivery; an event older than `occurred_at` is late. Both
//! change nothing. The row and its ledger entry are written by one
//! `write_chunk`, so they commit together.
//!
//! Within one process, events of one flow are applied one at a time. Two
//! replicas receiving events for the same object at the same instant can
//! still race between reading and writing the ledger.
//! NOTE: the ledger orders webhook events among themselves only; a row a
//! scheduled sync wrote is not compared with an event's time.

use serde_json::{Value, json};

use super::event::{Event, compare_times};
use crate::destination::{Chunk, Destination, DestinationError, EntityTarget};
use crate::engine::Record;
use crate::spec::plan::{Entity, FieldsPlan, Flow};
use crate::sync::run::target_for;

/// Event ids kept per object for events that share one source time.
const IDS_PER_OBJECT: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Written,
    Duplicate,
    /// The object's row already reflects a newer event.
    Stale,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event cannot be written, whatever the retries (no key, not an object).
    #[error("{0}")]
    Unusable(String),
    #[error("{0}")]
    Destination(#[from] DestinationError),
}

/// Upserts (or marks deleted) the event's object.
pub async fn apply(
    destination: &mut dyn Destination,
    flow: &Flow,
    entity: &Entity,
    event: &Event,
    delete: bool,
) -> Result<Applied, ApplyError> {
    let Some(Value::Object(object)) = &event.object else {
        return Err(ApplyError::Unusable(format!(
            "event {} ({}) carries no object at {}",
            event.id,
            event.event_type,
            flow.connector
                .webhooks
                .as_ref()
                .map(|plan| plan.object.source().to_string())
                .unwrap_or_default()
        )));
    };
    let record = shape(&entity.fields, object.clone());
    let target = target_for(flow, entity, false);
    let key = object_key(&record, &target.primary_key).ok_or_else(|| {
        ApplyError::Unusable(format!(
            "event {} ({}): the object lacks primary-key field(s) {} of entity {}",
            event.id,
            event.event_type,
            target.primary_key.join(", "),
            entity.name
        ))
    })?;

    let ledger_flow = format!("{}#webhooks", flow.name);
    let ledger_entity = format!("{}/{}", entity.name, key);
    let ledger = destination.read_state(&ledger_flow, &ledger_entity).await?;
    let (decision, next) = decide(ledger.as_ref(), event);
    if decision != Applied::Written {
        return Ok(decision);
    }

    // Events write the live table even for a full-refresh flow, whose
    // runs write a staging table.
    let ledger_target = EntityTarget {
        flow: ledger_flow,
        entity: ledger_entity,
        full_refresh: false,
        resuming: false,
        ..target
    };
    let (records, deletions) = if delete {
        (Vec::new(), vec![record])
    } else {
        (vec![record], Vec::new())
    };
    let chunk = Chunk {
        records,
        deletions,
        state: next,
    };
    destination
        .write_chunk(&ledger_target, &format!("webhook:{}", event.id), chunk)
        .await?;
    Ok(Applied::Written)
}

/// Decides from the ledger whether the event applies, and returns the
/// ledger that follows it.
pub fn decide(ledger: Option<&Value>, event: &Event) -> (Applied, Value) {
    let seen_at = ledger
        .and_then(|ledger| ledger.get("occurred_at"))
        .filter(|value| !value.is_null());
    let mut ids: Vec<String> = ledger
        .and_then(|ledger| ledger.get("event_ids"))
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if ids.contains(&event.id) {
        return (Applied::Duplicate, Value::Null);
    }
    let order = match (&event.occurred_at, seen_at) {
        (Some(new), Some(seen)) => compare_times(new, seen),
        _ => None,
    };
    match order {
        Some(std::cmp::Ordering::Less) => (Applied::Stale, Value::Null),
        Some(std::cmp::Ordering::Greater) => (
            Applied::Written,
            json!({"occurred_at": event.occurred_at, "event_ids": [event.id]}),
        ),
        // Same time, or times that cannot be compared: apply and remember the id too.
        _ => {
            ids.push(event.id.clone());
            if ids.len() > IDS_PER_OBJECT {
                ids.drain(..ids.len() - IDS_PER_OBJECT);
            }
            let occurred_at = event.occurred_at.clone().or_else(|| seen_at.cloned());
            (
                Applied::Written,
                json!({"occurred_at": occurred_at, "event_ids": ids}),
            )
        }
    }
}

/// Applies the entity's `fields` rules that do not need the engine:
/// include, exclude and rename of top-level fields.
fn shape(fields: &FieldsPlan, mut record: Record) -> Record {
    if !fields.include.is_empty() {
        record.retain(|name, _| fields.include.contains(name));
    }
    record.retain(|name, _| !fields.exclude.contains(name));
    if fields.rename.is_empty() {
        return record;
    }
    record
        .into_iter()
        .map(|(name, value)| match fields.rename.get(&name) {
            Some(renamed) => (renamed.clone(), value),
            None => (name, value),
        })
        .collect()
}

/// Returns the primary key as a JSON array, or `None` when a field is missing.
fn object_key(record: &Record, primary_key: &[String]) -> Option<String> {
    if primary_key.is_empty() {
        return None;
    }
    let values: Option<Vec<&Value>> = primary_key
        .iter()
        .map(|field| record.get(field).filter(|value| !value.is_null()))
        .collect();
    serde_json::to_string(&values?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, at: Option<Value>) -> Event {
        Event {
            id: id.to_string(),
            event_type: "customer.updated".to_string(),
            object: None,
            occurred_at: at,
        }
    }

    #[test]
    fn ledger_drops_redelivery_and_late_events() {
        let (first, ledger) = decide(None, &event("evt_1", Some(json!(100))));
        assert_eq!(first, Applied::Written);
        assert_eq!(ledger, json!({"occurred_at": 100, "event_ids": ["evt_1"]}));

        let (again, _) = decide(Some(&ledger), &event("evt_1", Some(json!(100))));
        assert_eq!(again, Applied::Duplicate);

        let (late, _) = decide(Some(&ledger), &event("evt_0", Some(json!(99))));
        assert_eq!(late, Applied::Stale);

        let (same_second, ledger) = decide(Some(&ledger), &event("evt_2", Some(json!(100))));
        assert_eq!(same_second, Applied::Written);
        assert_eq!(
            ledger,
            json!({"occurred_at": 100, "event_ids": ["evt_1", "evt_2"]})
        );

        let (newer, ledger) = decide(Some(&ledger), &event("evt_3", Some(json!(101))));
        assert_eq!(newer, Applied::Written);
        assert_eq!(ledger, json!({"occurred_at": 101, "event_ids": ["evt_3"]}));
    }
}
