//! The objects a local Stripe-compatible API serves, and Stripe's list rules.
//!
//! Lists are newest first (by `created`, then by insertion), page with
//! `starting_after`/`ending_before` and `limit`, and filter on
//! `created[gt|gte|lt|lte]`. Every change made through [`StripeStore`]
//! records an event in `/v1/events` with the object as it is after the
//! change, as Stripe does, so a change feed can be read from it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::engine::glob_matches;

/// List paths under `/v1` that the store serves, each with the value of
/// its objects' `object` field.
pub const RESOURCES: &[(&str, &str)] = &[
    ("customers", "customer"),
    ("subscriptions", "subscription"),
    ("invoices", "invoice"),
    ("charges", "charge"),
    ("payment_intents", "payment_intent"),
    ("products", "product"),
    ("prices", "price"),
    ("refunds", "refund"),
    ("balance_transactions", "balance_transaction"),
    ("payouts", "payout"),
    ("disputes", "dispute"),
    ("credit_notes", "credit_note"),
    ("invoiceitems", "invoiceitem"),
    ("coupons", "coupon"),
    ("promotion_codes", "promotion_code"),
    ("checkout/sessions", "checkout.session"),
    ("setup_intents", "setup_intent"),
    ("events", "event"),
];

/// Largest `limit` Stripe accepts.
pub const MAX_LIMIT: usize = 100;

/// One stored object with the order it was inserted in, which breaks
/// ties between objects created in the same second.
#[derive(Debug, Clone)]
struct Stored {
    sequence: u64,
    object: Value,
}

impl Stored {
    fn created(&self) -> i64 {
        self.object["created"].as_i64().unwrap_or(0)
    }

    fn id(&self) -> &str {
        self.object["id"].as_str().unwrap_or("")
    }

    /// Sort key: newest first.
    fn key(&self) -> (std::cmp::Reverse<i64>, std::cmp::Reverse<u64>) {
        (
            std::cmp::Reverse(self.created()),
            std::cmp::Reverse(self.sequence),
        )
    }
}

/// The `created` filter of a list request, in unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreatedFilter {
    pub gt: Option<i64>,
    pub gte: Option<i64>,
    pub lt: Option<i64>,
    pub lte: Option<i64>,
}

impl CreatedFilter {
    fn admits(&self, created: i64) -> bool {
        self.gt.is_none_or(|bound| created > bound)
            && self.gte.is_none_or(|bound| created >= bound)
            && self.lt.is_none_or(|bound| created < bound)
            && self.lte.is_none_or(|bound| created <= bound)
    }
}

/// A parsed list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
    pub created: CreatedFilter,
    /// `/v1/events`: exact event types (`types[]`).
    pub types: Vec<String>,
    /// `/v1/events`: one type, `*` matching any run of characters (`type`).
    pub type_pattern: Option<String>,
    /// `/v1/subscriptions`: `all`, one status, or none (every status but
    /// `canceled` and `incomplete_expired`, as Stripe lists by default).
    pub status: Option<String>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            limit: 10,
            starting_after: None,
            ending_before: None,
            created: CreatedFilter::default(),
            types: Vec::new(),
            type_pattern: None,
            status: None,
        }
    }
}

/// Why a list request is rejected, as Stripe words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// `starting_after` or `ending_before` names an object that does not exist.
    NoSuchObject {
        param: &'static str,
        id: String,
    },
    UnknownResource(String),
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub data: Vec<Value>,
    pub has_more: bool,
}

/// Every object the API serves, per list path.
#[derive(Debug, Default)]
pub struct StripeStore {
    lists: BTreeMap<String, Vec<Stored>>,
    next_sequence: u64,
    next_event: u64,
    /// Unix seconds used for events and new objects; `None` reads the system clock.
    clock: Option<i64>,
}

impl StripeStore {
    pub fn new() -> StripeStore {
        StripeStore::default()
    }

    /// Fixes the time that events and changes are stamped with.
    pub fn set_clock(&mut self, unix_seconds: i64) {
        self.clock = Some(unix_seconds);
    }

    pub fn now(&self) -> i64 {
        self.clock.unwrap_or_else(|| chrono::Utc::now().timestamp())
    }

    /// Adds objects without recording events, as a data set that existed
    /// before anyone read the API.
    pub fn load(&mut self, resource: &str, objects: impl IntoIterator<Item = Value>) {
        for object in objects {
            self.put(resource, object);
        }
    }

    /// Adds a new object and records its `<type>.created` event.
    pub fn create(&mut self, resource: &str, object: Value) -> Value {
        self.put(resource, object.clone());
        self.record_event(&format!("{}.created", event_prefix(&object)), &object);
        object
    }

    /// Sets top-level fields of an object and records `<type>.updated`.
    /// Returns the object after the change, or `None` when it does not exist.
    pub fn update(
        &mut self,
        resource: &str,
        id: &str,
        fields: Map<String, Value>,
    ) -> Option<Value> {
        let stored = self
            .lists
            .get_mut(resource)?
            .iter_mut()
            .find(|stored| stored.id() == id)?;
        let Value::Object(object) = &mut stored.object else {
            return None;
        };
        object.extend(fields);
        let updated = stored.object.clone();
        self.record_event(&format!("{}.updated", event_prefix(&updated)), &updated);
        Some(updated)
    }

    /// Removes an object and records `<type>.deleted` with its last state.
    pub fn delete(&mut self, resource: &str, id: &str) -> Option<Value> {
        let list = self.lists.get_mut(resource)?;
        let position = list.iter().position(|stored| stored.id() == id)?;
        let mut removed = list.remove(position).object;
        removed["deleted"] = Value::Bool(true);
        self.record_event(&format!("{}.deleted", event_prefix(&removed)), &removed);
        Some(removed)
    }

    /// Records an event of `event_type` carrying `object`, stamped now.
    pub fn record_event(&mut self, event_type: &str, object: &Value) -> Value {
        self.next_event += 1;
        let event = json!({
            "id": format!("evt_{:024}", self.next_event),
            "object": "event",
            "api_version": "2026-07-29.dahlia",
            "created": self.now(),
            "data": {"object": object},
            "livemode": false,
            "pending_webhooks": 0,
            "request": {"id": null, "idempotency_key": null},
            "type": event_type,
        });
        self.put("events", event.clone());
        event
    }

    /// Returns one object by id.
    pub fn get(&self, resource: &str, id: &str) -> Option<&Value> {
        self.lists
            .get(resource)?
            .iter()
            .find(|stored| stored.id() == id)
            .map(|stored| &stored.object)
    }

    /// Objects of a list, newest first.
    pub fn all(&self, resource: &str) -> Vec<Value> {
        self.lists
            .get(resource)
            .map(|list| list.iter().map(|stored| stored.object.clone()).collect())
            .unwrap_or_default()
    }

    /// Answers a list request the way Stripe pages.
    pub fn list(&self, resource: &str, query: &ListQuery) -> Result<ListPage, ListError> {
        if !RESOURCES.iter().any(|(path, _)| *path == resource) {
            return Err(ListError::UnknownResource(resource.to_string()));
        }
        let empty = Vec::new();
        let all = self.lists.get(resource).unwrap_or(&empty);
        let admitted: Vec<&Stored> = all
            .iter()
            .filter(|stored| query.created.admits(stored.created()))
            .filter(|stored| admits_type(query, &stored.object))
            .filter(|stored| admits_status(resource, query, &stored.object))
            .collect();

        if let Some(id) = &query.ending_before {
            // Objects newer than the cursor, nearest first, returned newest first.
            let cursor = find(all, id, "ending_before")?;
            let newer: Vec<&Stored> = admitted
                .iter()
                .copied()
                .filter(|stored| stored.key() < cursor.key())
                .collect();
            let skip = newer.len().saturating_sub(query.limit);
            let data = newer[skip..]
                .iter()
                .map(|stored| stored.object.clone())
                .collect();
            return Ok(ListPage {
                data,
                has_more: skip > 0,
            });
        }

        let start = match &query.starting_after {
            Some(id) => {
                let cursor = find(all, id, "starting_after")?;
                admitted.partition_point(|stored| stored.key() <= cursor.key())
            }
            None => 0,
        };
        let end = (start + query.limit).min(admitted.len());
        Ok(ListPage {
            data: admitted[start..end]
                .iter()
                .map(|stored| stored.object.clone())
                .collect(),
            has_more: end < admitted.len(),
        })
    }

    fn put(&mut self, resource: &str, object: Value) {
        self.next_sequence += 1;
        let stored = Stored {
            sequence: self.next_sequence,
            object,
        };
        let list = self.lists.entry(resource.to_string()).or_default();
        let position = list.partition_point(|other| other.key() < stored.key());
        list.insert(position, stored);
    }
}

fn find<'a>(list: &'a [Stored], id: &str, param: &'static str) -> Result<&'a Stored, ListError> {
    list.iter()
        .find(|stored| stored.id() == id)
        .ok_or_else(|| ListError::NoSuchObject {
            param,
            id: id.to_string(),
        })
}

fn admits_type(query: &ListQuery, object: &Value) -> bool {
    let event_type = object["type"].as_str().unwrap_or("");
    if !query.types.is_empty() && !query.types.iter().any(|wanted| wanted == event_type) {
        return false;
    }
    query
        .type_pattern
        .as_ref()
        .is_none_or(|pattern| glob_matches(pattern, event_type))
}

fn admits_status(resource: &str, query: &ListQuery, object: &Value) -> bool {
    if resource != "subscriptions" {
        return true;
    }
    let status = object["status"].as_str().unwrap_or("");
    match query.status.as_deref() {
        Some("all") => true,
        Some(wanted) => status == wanted,
        None => !matches!(status, "canceled" | "incomplete_expired"),
    }
}

/// The event type prefix of an object: `customer`, `customer.subscription`, …
fn event_prefix(object: &Value) -> String {
    match object["object"].as_str().unwrap_or("object") {
        "subscription" => "customer.subscription".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: &str, created: i64) -> Value {
        json!({"id": id, "object": "customer", "created": created})
    }

    fn ids(page: &ListPage) -> Vec<&str> {
        page.data
            .iter()
            .map(|object| object["id"].as_str().unwrap())
            .collect()
    }

    fn store_of_five() -> StripeStore {
        let mut store = StripeStore::new();
        store.load(
            "customers",
            (1..=5).map(|n| customer(&format!("cus_{n}"), 100 + n)),
        );
        store
    }

    #[test]
    fn lists_newest_first_with_cursor() {
        let store = store_of_five();
        let query = ListQuery {
            limit: 2,
            ..ListQuery::default()
        };
        let first = store.list("customers", &query).unwrap();
        assert_eq!(ids(&first), ["cus_5", "cus_4"]);
        assert!(first.has_more);

        let next = ListQuery {
            starting_after: Some("cus_4".into()),
            ..query.clone()
        };
        let second = store.list("customers", &next).unwrap();
        assert_eq!(ids(&second), ["cus_3", "cus_2"]);

        let last = ListQuery {
            starting_after: Some("cus_2".into()),
            ..query
        };
        let third = store.list("customers", &last).unwrap();
        assert_eq!(ids(&third), ["cus_1"]);
        assert!(!third.has_more);
    }

    #[test]
    fn created_filter_and_ending_before() {
        let store = store_of_five();
        let query = ListQuery {
            limit: 10,
            created: CreatedFilter {
                gte: Some(103),
                ..CreatedFilter::default()
            },
            ..ListQuery::default()
        };
        assert_eq!(
            ids(&store.list("customers", &query).unwrap()),
            ["cus_5", "cus_4", "cus_3"]
        );

        let before = ListQuery {
            limit: 1,
            ending_before: Some("cus_3".into()),
            ..ListQuery::default()
        };
        let page = store.list("customers", &before).unwrap();
        assert_eq!(ids(&page), ["cus_4"]);
        assert!(page.has_more);
    }

    #[test]
    fn unknown_cursor_is_an_error() {
        let store = store_of_five();
        let query = ListQuery {
            starting_after: Some("cus_404".into()),
            ..ListQuery::default()
        };
        assert_eq!(
            store.list("customers", &query).unwrap_err(),
            ListError::NoSuchObject {
                param: "starting_after",
                id: "cus_404".into()
            }
        );
    }

    #[test]
    fn changes_record_events() {
        let mut store = store_of_five();
        store.set_clock(500);
        let mut fields = Map::new();
        fields.insert("email".into(), json!("a@example.com"));
        store.update("customers", "cus_2", fields).unwrap();
        store.delete("customers", "cus_3").unwrap();

        let query = ListQuery {
            types: vec!["customer.updated".into(), "customer.deleted".into()],
            ..ListQuery::default()
        };
        let events = store.list("events", &query).unwrap();
        let types: Vec<&str> = events
            .data
            .iter()
            .map(|event| event["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["customer.deleted", "customer.updated"]);
        assert_eq!(events.data[1]["data"]["object"]["email"], "a@example.com");
        assert_eq!(events.data[0]["data"]["object"]["deleted"], true);
        assert!(store.get("customers", "cus_3").is_none());
    }

    #[test]
    fn subscriptions_hide_canceled_by_default() {
        let mut store = StripeStore::new();
        store.load(
            "subscriptions",
            [
                json!({"id": "sub_1", "object": "subscription", "created": 1, "status": "active"}),
                json!({"id": "sub_2", "object": "subscription", "created": 2, "status": "canceled"}),
            ],
        );
        let default = store.list("subscriptions", &ListQuery::default()).unwrap();
        assert_eq!(ids(&default), ["sub_1"]);
        let all = ListQuery {
            status: Some("all".into()),
            ..ListQuery::default()
        };
        assert_eq!(
            ids(&store.list("subscriptions", &all).unwrap()),
            ["sub_2", "sub_1"]
        );
    }
}
