//! Change feeds: a second request sequence (`changes:`) whose records carry
//! changed objects, read once an entity has been loaded in full.
//!
//! The feed is read with the ordinary page loop, through an entity made
//! from the feed's own request, records path, pagination and cursor. Each
//! page of change records then becomes a page of the entity's records: the
//! object at `changes.object`, shaped by the entity's field rules, goes to
//! `records`, or to `deletions` when the deletion marker matches. The
//! page's `cursor_max` is the feed's cursor (Stripe: the event's `created`).
//!
//! In a feed that lists newest first (`order: descending`), an object's
//! first change carries its latest state, so later (older) changes of the same
//! key are dropped for the rest of the run. A failed feed run therefore
//! starts again from the saved feed cursor rather than resuming mid-way:
//! only a run that saw the newest changes first can tell which are stale.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc::{self, Sender};

use super::extract::Extractor;
use super::fetch::{FetchContext, fetch};
use super::{FetchError, FetchErrorKind, Page, Position, Record};
use crate::jsonpath::JsonPath;
use crate::spec::plan::{
    ChangeFeed, DeletionMarker, Entity, FieldsPlan, Incremental, Order, RecordsPlan,
};
use crate::template::value_to_text;

/// Pages of change records that may wait to be turned into entity records.
const FEED_CHANNEL_PAGES: usize = 2;

/// Reads the change feed of `ctx.entity` from `since` (the saved feed
/// cursor; `None` reads the whole feed), sending pages of the entity's
/// records and deletions. Pages sent before an error stay valid.
pub async fn fetch_changes(
    ctx: FetchContext,
    since: Option<Value>,
    pages: Sender<Page>,
) -> Result<(), FetchError> {
    let entity = ctx.entity.clone();
    let feed = entity.changes.as_ref().ok_or_else(|| {
        FetchError::new(
            FetchErrorKind::Template,
            format!("entity {} has no change feed (changes:)", entity.name),
        )
    })?;

    let mut extractor = Extractor::new(&entity);
    if let Some(names) = &entity.fields.names {
        let renames =
            super::names::lookup(&ctx.flow, &entity.name, names, &ctx.client, ctx.now).await?;
        extractor.add_renames(renames);
    }
    let mapper = ChangeMapper::new(&entity, feed, extractor);

    let feed_ctx = FetchContext {
        entity: Arc::new(feed_entity(&entity, feed)),
        ..ctx.clone()
    };
    let start = Position {
        since,
        ..Position::default()
    };
    tracing::info!(
        flow = %ctx.flow.name,
        entity = %entity.name,
        since = %start.since.as_ref().map_or_else(|| "the start of the feed".to_string(), value_to_text),
        "change feed read started"
    );

    let (sender, receiver) = mpsc::channel::<Page>(FEED_CHANNEL_PAGES);
    let forward = forward_pages(receiver, mapper, pages);
    let (fetched, forwarded) = tokio::join!(fetch(feed_ctx, start, sender), forward);
    // A mapping error stops the forwarder first, which drops the receiver
    // and makes the page loop stop quietly; report the mapping error then.
    forwarded?;
    fetched
}

async fn forward_pages(
    mut receiver: mpsc::Receiver<Page>,
    mut mapper: ChangeMapper,
    pages: Sender<Page>,
) -> Result<(), FetchError> {
    while let Some(page) = receiver.recv().await {
        let mapped = mapper.map(page)?;
        if pages.send(mapped).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Builds the entity whose page loop reads a change feed: the feed's
/// request, records, pagination and cursor, with the entity's status rules
/// and limits.
pub fn feed_entity(entity: &Entity, feed: &ChangeFeed) -> Entity {
    Entity {
        name: entity.name.clone(),
        description: None,
        request: feed.request.clone(),
        graphql: None,
        records: RecordsPlan::Path(feed.records.clone()),
        // Change records need no key: loop detection hashes them whole.
        primary_key: Vec::new(),
        pagination: feed.pagination.clone(),
        incremental: Some(Incremental {
            cursor_field: feed.cursor_field.clone(),
            param: feed.param.clone(),
            start: None,
            lookback: Duration::ZERO,
            window: None,
        }),
        order: feed.order,
        fields: FieldsPlan::default(),
        parent: None,
        changes: None,
        on_status: entity.on_status.clone(),
        chunk: entity.chunk,
        max_pages: entity.max_pages,
        partial_ok: false,
        mode: None,
        parameters: entity.parameters.clone(),
        templated_parameters: entity.templated_parameters.clone(),
        // The entity's steps precede its own pages, not the feed's.
        steps: Vec::new(),
        fingerprint: format!("{}/changes", entity.fingerprint),
    }
}

/// Turns change records into the entity's records and deletions.
struct ChangeMapper {
    entity: String,
    object: JsonPath,
    deleted: Option<DeletionMarker>,
    extractor: Extractor,
    primary_key: Vec<String>,
    /// Keys already written in this run, when newest changes come first.
    seen: Option<HashSet<String>>,
    pages: u64,
    skipped: u64,
}

impl ChangeMapper {
    fn new(entity: &Entity, feed: &ChangeFeed, extractor: Extractor) -> ChangeMapper {
        ChangeMapper {
            entity: entity.name.clone(),
            object: feed.object.clone(),
            deleted: feed.deleted.clone(),
            extractor,
            primary_key: entity.primary_key.clone(),
            seen: (feed.order == Order::Descending).then(HashSet::new),
            pages: 0,
            skipped: 0,
        }
    }

    fn map(&mut self, page: Page) -> Result<Page, FetchError> {
        self.pages += 1;
        let mut mapped = Page {
            records: Vec::new(),
            deletions: Vec::new(),
            next: page.next,
            cursor_max: page.cursor_max,
            requests: page.requests,
            bytes: page.bytes,
            graphql_errors: page.graphql_errors,
            field_types: page.field_types,
        };
        for (index, change) in page.records.into_iter().enumerate() {
            let change = Value::Object(change);
            let Some(object) = self.object_of(&change, index) else {
                continue;
            };
            let position = format!("change {index} of feed page {}", self.pages);
            // `primary_key` lists API field names, so the key is read
            // before the field rules rename it.
            let key = self
                .seen
                .is_some()
                .then(|| key_text(&object, &self.primary_key));
            let record = self.extractor.shape(object, &position)?;
            if let (Some(seen), Some(key)) = (&mut self.seen, key)
                && !seen.insert(key)
            {
                continue;
            }
            if is_deleted(self.deleted.as_ref(), &change) {
                mapped.deletions.push(record);
            } else {
                mapped.records.push(record);
            }
        }
        Ok(mapped)
    }

    /// Returns the changed object, or `None` (logged) when the change has none.
    fn object_of(&mut self, change: &Value, index: usize) -> Option<Record> {
        match self.object.find_one(change) {
            Ok(Some(Value::Object(object))) => Some(object.clone()),
            found => {
                self.skipped += 1;
                tracing::warn!(
                    entity = %self.entity,
                    page = self.pages,
                    change = index,
                    path = %self.object.source(),
                    found = %match found {
                        Ok(Some(_)) => "a value that is not an object",
                        Ok(None) => "nothing",
                        Err(_) => "several values",
                    },
                    skipped = self.skipped,
                    "change record has no object at changes.object, so it is skipped"
                );
                None
            }
        }
    }
}

/// Returns the primary key of a changed object as it came from the API
/// (the whole object for an append-only entity) as text, for the set of
/// keys already written.
fn key_text(record: &Record, primary_key: &[String]) -> String {
    let mut key = Map::new();
    for field in primary_key {
        let value = record.get(field).cloned().unwrap_or(Value::Null);
        key.insert(field.clone(), value);
    }
    if primary_key.is_empty() {
        return Value::Object(record.clone()).to_string();
    }
    Value::Object(key).to_string()
}

/// True when the change's marker matches: any of `values` (with `*`
/// globs) against the value's text, or any true value when `values` is empty.
fn is_deleted(marker: Option<&DeletionMarker>, change: &Value) -> bool {
    let Some(marker) = marker else {
        return false;
    };
    let Ok(Some(value)) = marker.path.find_one(change) else {
        return false;
    };
    if marker.values.is_empty() {
        return match value {
            Value::Bool(flag) => *flag,
            Value::Null => false,
            Value::String(text) => !text.is_empty(),
            _ => true,
        };
    }
    let text = value_to_text(value);
    marker
        .values
        .iter()
        .any(|pattern| glob_matches(pattern, &text))
}

/// Matches `*` in `pattern` against any run of characters in `text`.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (index, part) in parts.iter().enumerate() {
        if index + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn marker(path: &str, values: &[&str]) -> DeletionMarker {
        DeletionMarker {
            path: JsonPath::compile(path).unwrap(),
            values: values.iter().map(|value| value.to_string()).collect(),
        }
    }

    #[test]
    fn deletion_marker_globs() {
        let marker = marker("$.type", &["*.deleted"]);
        assert!(is_deleted(
            Some(&marker),
            &json!({"type": "customer.deleted"})
        ));
        assert!(!is_deleted(
            Some(&marker),
            &json!({"type": "customer.updated"})
        ));
        assert!(!is_deleted(None, &json!({"type": "customer.deleted"})));
    }

    #[test]
    fn deletion_marker_without_values() {
        let marker = marker("$.object.deleted", &[]);
        assert!(is_deleted(
            Some(&marker),
            &json!({"object": {"deleted": true}})
        ));
        assert!(!is_deleted(
            Some(&marker),
            &json!({"object": {"deleted": false}})
        ));
        assert!(!is_deleted(Some(&marker), &json!({"object": {}})));
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_matches("customer.*", "customer.subscription.updated"));
        assert!(glob_matches("*.deleted", "invoice.deleted"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(glob_matches("invoice.paid", "invoice.paid"));
        assert!(!glob_matches("invoice", "invoice.paid"));
    }
}
