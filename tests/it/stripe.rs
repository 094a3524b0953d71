//! The built-in Stripe connector against the Stripe emulation: requests,
//! rows, the change feed over `/v1/events`, and failures.
//!
//! Objects are copies of Stripe's example objects (stripe/openapi
//! `fixtures3.json`, MIT licence), as kept in
//! `src/demo/fixtures/stripe-objects.json`.

use std::sync::Arc;

use chrono::Utc;
use ferry::demo::stripe_api::StripeStore;
use ferry::destination::Destination;
use ferry::sync::{Outcome, RunOptions};
use serde_json::{Map, Value, json};

use crate::emulator::stripe::{API_KEY, Stripe};
use crate::emulator::{Fault, FlowDir, sync, sync_ok};
use crate::support::duck;

const STRIPE_OBJECTS: &str = include_str!("../../src/demo/fixtures/stripe-objects.json");
const FIRST_CREATED: i64 = 1_700_000_000;
const EVENT_TYPES: [&str; 3] = ["customer.created", "customer.updated", "customer.deleted"];

fn example(resource: &str) -> Value {
    let objects: Value = serde_json::from_str(STRIPE_OBJECTS).unwrap();
    objects[resource].clone()
}

/// Stripe's example customer with its own id, email and creation time.
fn customer(number: usize) -> Value {
    let mut customer = example("customer");
    customer["id"] = json!(format!("cus_{number:04}"));
    customer["email"] = json!(format!("customer{number}@example.com"));
    customer["created"] = json!(FIRST_CREATED + number as i64);
    customer
}

fn store_with_customers(count: usize) -> StripeStore {
    let mut store = StripeStore::new();
    store.load("customers", (1..=count).map(customer));
    store
}

fn flow_dir(stripe: &Stripe, entities: &str, extra_config: &[(&str, &str)]) -> FlowDir {
    let mut config = vec![("api_key", API_KEY), ("base_url", stripe.url.as_str())];
    config.extend_from_slice(extra_config);
    FlowDir::new(
        "billing",
        "stripe",
        &config,
        &format!("entities: [{entities}]\n"),
    )
}

fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect()
}

async fn saved_state(db: &std::path::Path, entity: &str) -> Value {
    let mut destination =
        ferry::destination::duckdb::DuckDbDestination::open(&db.to_string_lossy()).unwrap();
    destination
        .read_state("billing", entity)
        .await
        .unwrap()
        .expect("state saved")
}

#[tokio::test]
async fn customers_pages_newest_first() {
    let stripe = Stripe::start(store_with_customers(205)).await;
    let dir = flow_dir(&stripe, "customers", &[]);
    let flow = dir.flow("billing");

    let report = sync_ok(&flow).await;
    assert_eq!(report.runs[0].records, 205);

    let requests = stripe.harness.requests();
    let queries: Vec<Vec<(String, String)>> = requests
        .iter()
        .map(|request| request.query.clone())
        .collect();
    let pair = |key: &str, value: &str| (key.to_string(), value.to_string());
    assert_eq!(
        queries,
        vec![
            vec![pair("limit", "100")],
            vec![pair("limit", "100"), pair("starting_after", "cus_0106")],
            vec![pair("limit", "100"), pair("starting_after", "cus_0006")],
        ]
    );
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/v1/customers");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(request.header("stripe-version"), Some("2026-07-29.dahlia"));
        assert_eq!(request.header("stripe-account"), None);
    }

    let rows = duck::query(
        dir.db(),
        "select id, email, created, address->>'country' is null, balance from stripe.customers order by id limit 2",
    );
    assert_eq!(
        rows,
        vec![
            vec![
                "cus_0001",
                "customer1@example.com",
                "2023-11-14 22:13:21+00",
                "true",
                "0"
            ],
            vec![
                "cus_0002",
                "customer2@example.com",
                "2023-11-14 22:13:22+00",
                "true",
                "0"
            ],
        ]
    );
    let count = duck::query(
        dir.db(),
        "select count(*), count(distinct id) from stripe.customers",
    );
    assert_eq!(count, vec![vec!["205", "205"]]);
}

#[tokio::test]
async fn change_feed_brings_updates_and_deletions() {
    let stripe = Stripe::start(store_with_customers(3)).await;
    let dir = flow_dir(&stripe, "customers", &[]);
    let flow = dir.flow("billing");
    let first_started = Utc::now().timestamp();
    sync_ok(&flow).await;

    let state = saved_state(dir.db(), "customers").await;
    let feed_cursor = state["changes"]["cursor"]
        .as_i64()
        .expect("feed cursor is unix seconds");
    assert!(
        (first_started - 301..=first_started - 299).contains(&feed_cursor),
        "feed cursor {feed_cursor} is not the first run's start ({first_started}) minus 5 minutes"
    );

    stripe.with(|store| {
        store.update(
            "customers",
            "cus_0001",
            fields(&[("email", json!("new@example.com"))]),
        );
        store.delete("customers", "cus_0002");
        store.create("customers", customer(4));
    });
    stripe.harness.clear();
    let report = sync_ok(&flow).await;
    assert_eq!(report.runs[0].records, 3);

    let requests = stripe.harness.requests();
    assert_eq!(requests.len(), 1, "only the feed is read: {requests:?}");
    let events = &requests[0];
    assert_eq!(events.path, "/v1/events");
    assert_eq!(events.param("limit"), Some("100"));
    assert_eq!(events.params("types[]"), EVENT_TYPES);
    assert_eq!(
        events.param("created[gte]"),
        Some(feed_cursor.to_string().as_str())
    );

    let rows = duck::query(
        dir.db(),
        "select id, email, _ferry_deleted_at is not null from stripe.customers order by id",
    );
    assert_eq!(
        rows,
        vec![
            vec!["cus_0001", "new@example.com", "false"],
            vec!["cus_0002", "customer2@example.com", "true"],
            vec!["cus_0003", "customer3@example.com", "false"],
            vec!["cus_0004", "customer4@example.com", "false"],
        ]
    );

    // The next run starts at the newest event seen. `created[gte]` reads
    // that second again (an event of the same second may have been
    // indexed late), so the three events come back and change nothing.
    let newest_event = stripe.with(|store| store.all("events")[0]["created"].as_i64().unwrap());
    stripe.harness.clear();
    let report = sync_ok(&flow).await;
    assert_eq!(report.runs[0].records, 3);
    let requests = stripe.harness.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].param("created[gte]"),
        Some(newest_event.to_string().as_str())
    );
    let after = duck::query(
        dir.db(),
        "select id, email, _ferry_deleted_at is not null from stripe.customers order by id",
    );
    assert_eq!(after, rows);
}

#[tokio::test]
async fn newest_change_of_a_key_wins() {
    let stripe = Stripe::start(store_with_customers(1)).await;
    let dir = flow_dir(&stripe, "customers", &[]);
    let flow = dir.flow("billing");
    sync_ok(&flow).await;

    // Both events share a second; the feed lists the later one first.
    stripe.with(|store| {
        store.update("customers", "cus_0001", fields(&[("name", json!("first"))]));
        store.update(
            "customers",
            "cus_0001",
            fields(&[("name", json!("second"))]),
        );
    });
    sync_ok(&flow).await;

    let rows = duck::query(dir.db(), "select name from stripe.customers");
    assert_eq!(rows, vec![vec!["second"]]);
}

#[tokio::test]
async fn stale_feed_position_reloads_in_full() {
    let stripe = Stripe::start(store_with_customers(2)).await;
    let dir = flow_dir(&stripe, "customers", &[]);
    let flow = dir.flow("billing");
    sync_ok(&flow).await;

    // The last completed run is older than max_age_seconds (29 days).
    let mut state = saved_state(dir.db(), "customers").await;
    state["changes"]["checked_at"] = json!("2020-01-01T00:00:00Z");
    {
        let mut destination =
            ferry::destination::duckdb::DuckDbDestination::open(&dir.db().to_string_lossy())
                .unwrap();
        destination
            .write_state("billing", "customers", Some(&state))
            .await
            .unwrap();
    }
    stripe.harness.clear();
    let report = sync_ok(&flow).await;
    assert_eq!(report.runs[0].records, 2);

    let paths: Vec<String> = stripe
        .harness
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect();
    assert_eq!(paths, ["/v1/customers"]);
    let state = saved_state(dir.db(), "customers").await;
    assert_ne!(
        state["changes"]["checked_at"],
        json!("2020-01-01T00:00:00Z")
    );
}

#[tokio::test]
async fn connect_account_header_is_sent() {
    let stripe = Stripe::start(store_with_customers(1)).await;
    let dir = flow_dir(&stripe, "customers", &[("account", "acct_1Connect")]);
    sync_ok(&dir.flow("billing")).await;

    let requests = stripe.harness.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("stripe-account"), Some("acct_1Connect"));
}

#[tokio::test]
async fn subscriptions_include_canceled_ones() {
    let mut store = StripeStore::new();
    let mut active = example("subscription");
    active["id"] = json!("sub_active");
    active["status"] = json!("active");
    active["created"] = json!(FIRST_CREATED);
    let mut canceled = active.clone();
    canceled["id"] = json!("sub_canceled");
    canceled["status"] = json!("canceled");
    store.load("subscriptions", [active, canceled]);
    let stripe = Stripe::start(store).await;
    let dir = flow_dir(&stripe, "subscriptions", &[]);
    sync_ok(&dir.flow("billing")).await;

    let requests = stripe.harness.requests();
    assert_eq!(requests[0].param("status"), Some("all"));
    let rows = duck::query(
        dir.db(),
        "select id, status, created from stripe.subscriptions order by id",
    );
    assert_eq!(
        rows,
        vec![
            vec!["sub_active", "active", "2023-11-14 22:13:20+00"],
            vec!["sub_canceled", "canceled", "2023-11-14 22:13:20+00"],
        ]
    );
}

#[tokio::test]
async fn rejected_key_fails_with_stripe_message() {
    let stripe = Stripe::start(store_with_customers(1)).await;
    let wrong_key = "sk_test_wrong_key_987654321";
    let config = [("api_key", wrong_key), ("base_url", stripe.url.as_str())];
    let dir = FlowDir::new("billing", "stripe", &config, "entities: [customers]\n");
    let report = sync(&dir.flow("billing"), &RunOptions::default()).await;

    let run = &report.runs[0];
    assert_eq!(run.outcome, Outcome::Failed);
    let error = run.error.as_ref().expect("the run failed");
    assert_eq!(error.kind, "auth");
    assert!(error.message.contains("HTTP 401"), "{}", error.message);
    assert!(
        error
            .message
            .contains("Invalid API Key provided: sk_test_********4321"),
        "{}",
        error.message
    );
    assert!(!error.message.contains(wrong_key), "{}", error.message);
    assert_eq!(stripe.harness.requests().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn rate_limited_page_is_retried() {
    let stripe = Stripe::start(store_with_customers(2)).await;
    stripe.harness.fail_next(Fault {
        path_prefix: "/v1/customers".into(),
        status: axum::http::StatusCode::TOO_MANY_REQUESTS,
        headers: vec![("retry-after", "0".into())],
        body: json!({"error": {"message": "Too many requests", "type": "invalid_request_error"}}),
    });
    let dir = flow_dir(&stripe, "customers", &[]);
    let report = sync_ok(&dir.flow("billing")).await;
    assert_eq!(report.runs[0].records, 2);

    let requests = stripe.harness.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].query, requests[1].query);
    let rows = duck::query(dir.db(), "select count(*) from stripe.customers");
    assert_eq!(rows, vec![vec!["2"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connection_uses_customers_list() {
    let stripe = Stripe::start(store_with_customers(1)).await;
    let dir = flow_dir(&stripe, "customers", &[]);
    let flow: Arc<_> = dir.flow("billing");
    ferry::engine::check_connection(&flow)
        .await
        .expect("the check succeeds");
    let requests = stripe.harness.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/customers");
    assert_eq!(requests[0].param("limit"), Some("1"));

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check-connection", "billing", "--config"])
        .arg(&dir.config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("billing: connection to stripe works"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connection_reports_rejected_key() {
    let stripe = Stripe::start(store_with_customers(1)).await;
    let config = [
        ("api_key", "sk_test_not_the_key"),
        ("base_url", stripe.url.as_str()),
    ];
    let dir = FlowDir::new("billing", "stripe", &config, "entities: [customers]\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check-connection", "billing", "--config"])
        .arg(&dir.config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(!stderr.contains("sk_test_not_the_key"), "{stderr}");
}

#[test]
fn list_shows_entities_and_templates() {
    let dir = tempfile::tempdir().unwrap();
    let list = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .arg("--config")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };

    let connectors = list(&["list", "connectors"]);
    for name in ["stripe", "close", "posthog"] {
        assert!(
            connectors
                .lines()
                .any(|line| line.starts_with(name) && line.contains("built-in")),
            "{connectors}"
        );
    }

    let stripe = list(&["list", "entities", "stripe"]);
    let line = |text: &str, entity: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(entity))
            .unwrap_or_else(|| panic!("no line for {entity}:\n{text}"))
            .to_string()
    };
    assert!(line(&stripe, "customers").contains("incremental (change feed)"));
    assert!(line(&stripe, "balance_transactions").contains("incremental "));
    assert!(!line(&stripe, "balance_transactions").contains("change feed"));
    assert_eq!(stripe.lines().count(), 18, "{stripe}");

    let posthog = list(&["list", "entities", "posthog"]);
    assert!(line(&posthog, "persons").contains("full"));
    assert!(line(&posthog, "hogql").contains("template (query)"));
}

#[test]
fn webhook_events_route_to_entities() {
    let loaded = ferry::spec::load_builtin().unwrap();
    let plan = loaded.catalog.connectors["stripe"]
        .webhooks
        .clone()
        .unwrap();
    let routed = |event_type: &str| {
        let body = json!({"id": "evt_1", "type": event_type, "created": 1_700_000_000,
            "data": {"object": {"id": "obj_1"}}});
        let event = ferry::daemon::webhooks::event::read(&plan, &body).unwrap();
        ferry::daemon::webhooks::event::route(&plan, &event.event_type)
            .map(|route| (route.entity.clone(), route.delete))
    };
    let to = |entity: &str, delete: bool| Some((Some(entity.to_string()), delete));
    assert_eq!(routed("customer.updated"), to("customers", false));
    assert_eq!(routed("customer.deleted"), to("customers", true));
    // An ended subscription still exists, with status "canceled".
    assert_eq!(
        routed("customer.subscription.deleted"),
        to("subscriptions", false)
    );
    assert_eq!(routed("charge.dispute.created"), to("disputes", false));
    assert_eq!(routed("charge.refund.updated"), to("refunds", false));
    assert_eq!(routed("charge.succeeded"), to("charges", false));
    assert_eq!(routed("invoice.deleted"), to("invoices", true));
    assert_eq!(routed("invoice.upcoming"), Some((None, false)));
    assert_eq!(routed("customer.source.created"), None);
}
