//! Webhooks against a real `ferry run` process: Stripe and Close
//! signatures (valid, forged, replayed, oversized), redeliveries,
//! out-of-order events, deletions, unknown types and trigger flows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry::daemon::webhooks::verify::{close_signature, stripe_signature};
use serde_json::json;

use crate::daemon_support::{
    Daemon, ShopApi, customers, get, post, query, shop_connector, shop_flow, write,
};

const STRIPE_SECRET: &str = "whsec_test_secret";
const STRIPE_NEW_SECRET: &str = "whsec_rotated_secret";
// The example key from Close's webhook documentation.
const CLOSE_KEY: &str = "058bfb6a3d8cfdc4da7c3be5901b16ae11da982b46a25fb2cd7016e97a140a1c";

const CRM_CONNECTOR: &str = r#"kind: Connector
name: crm
config:
  base_url: { type: string }
http:
  base_url: "{{config.base_url}}"
entities:
  leads:
    path: /lead/
    records: "$.data[*]"
    primary_key: [id]
webhooks:
  signature: { type: close }
  id: "$.event.id"
  type: "$.event['object_type','action']"
  object: "$.event.data"
  occurred_at: "$.event.date_updated"
  routes:
    - { events: ["lead.deleted"], entity: leads, delete: true }
    - { events: ["lead.*"], entity: leads }
"#;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn stripe_event(id: &str, kind: &str, created: i64, object: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": object},
    }))
    .unwrap()
}

fn send_stripe(
    daemon: &Daemon,
    flow: &str,
    secret: &str,
    timestamp: i64,
    body: Vec<u8>,
) -> (u16, String) {
    let header = stripe_signature(secret, timestamp, &body);
    post(
        &format!("{}/webhooks/{flow}", daemon.base),
        &[
            ("stripe-signature", header),
            ("content-type", "application/json".to_string()),
        ],
        body,
    )
}

fn outcome(response: &(u16, String)) -> String {
    serde_json::from_str::<serde_json::Value>(&response.1).unwrap()["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn webhook_count(daemon: &Daemon, flow: &str, outcome: &str) -> f64 {
    let (_, text) = get(&format!("{}/metrics", daemon.base)).unwrap();
    let lines = text.lines().map(|line| Ok(line.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == "ferry_webhook_events_total")
        .filter(|sample| sample.labels.get("flow") == Some(flow))
        .filter(|sample| sample.labels.get("outcome") == Some(outcome))
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Untyped(value) => {
                value
            }
            _ => 0.0,
        })
        .sum()
}

#[test]
fn stripe_webhooks_upsert_once_and_in_order() {
    let folder = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("warehouse.duckdb");
    write(folder.path(), "shop.yaml", &shop_connector("stripe"));
    let webhook = format!("webhook:\n  secret: [{STRIPE_NEW_SECRET}, {STRIPE_SECRET}]\n");
    write(
        folder.path(),
        "billing.yaml",
        &shop_flow("billing", "http://127.0.0.1:9", &db, &webhook),
    );
    let daemon = Daemon::start(folder.path(), &[]);

    let created = stripe_event(
        "evt_1",
        "customer.created",
        1000,
        json!({"id": "cus_1", "name": "Ada"}),
    );
    let valid = send_stripe(&daemon, "billing", STRIPE_SECRET, now(), created.clone());
    assert_eq!(valid.0, 200, "{}", valid.1);
    assert_eq!(outcome(&valid), "applied");

    let forged = send_stripe(&daemon, "billing", "whsec_wrong", now(), created.clone());
    assert_eq!(forged.0, 401, "{}", forged.1);
    let replayed = send_stripe(
        &daemon,
        "billing",
        STRIPE_SECRET,
        now() - 600,
        created.clone(),
    );
    assert_eq!(replayed.0, 401, "{}", replayed.1);
    let unsigned = post(
        &format!("{}/webhooks/billing", daemon.base),
        &[],
        created.clone(),
    );
    assert_eq!(unsigned.0, 401);
    let huge = stripe_event(
        "evt_big",
        "customer.updated",
        1000,
        json!({"id": "cus_1", "blob": "x".repeat(1_100_000)}),
    );
    let oversized = send_stripe(&daemon, "billing", STRIPE_SECRET, now(), huge);
    assert_eq!(oversized.0, 413, "{}", oversized.1);

    let redelivered = send_stripe(&daemon, "billing", STRIPE_SECRET, now(), created);
    assert_eq!(redelivered.0, 200);
    assert_eq!(outcome(&redelivered), "duplicate");

    // evt_3 happened after evt_2 but arrives first.
    let newer = stripe_event(
        "evt_3",
        "customer.updated",
        1002,
        json!({"id": "cus_1", "name": "Ada v3"}),
    );
    let older = stripe_event(
        "evt_2",
        "customer.updated",
        1001,
        json!({"id": "cus_1", "name": "Ada v2"}),
    );
    assert_eq!(
        outcome(&send_stripe(
            &daemon,
            "billing",
            STRIPE_SECRET,
            now(),
            newer
        )),
        "applied"
    );
    assert_eq!(
        outcome(&send_stripe(
            &daemon,
            "billing",
            STRIPE_SECRET,
            now(),
            older
        )),
        "stale"
    );

    let unknown = stripe_event("evt_9", "invoice.paid", 1003, json!({"id": "in_1"}));
    let ignored = send_stripe(&daemon, "billing", STRIPE_SECRET, now(), unknown);
    assert_eq!(ignored.0, 200);
    assert_eq!(outcome(&ignored), "ignored");

    let other = stripe_event(
        "evt_5",
        "customer.created",
        1004,
        json!({"id": "cus_2", "name": "Grace"}),
    );
    let rotated = send_stripe(&daemon, "billing", STRIPE_NEW_SECRET, now(), other);
    assert_eq!(outcome(&rotated), "applied", "{}", rotated.1);

    let deleted = stripe_event(
        "evt_4",
        "customer.deleted",
        1005,
        json!({"id": "cus_1", "name": "Ada v3", "deleted": true}),
    );
    assert_eq!(
        outcome(&send_stripe(
            &daemon,
            "billing",
            STRIPE_SECRET,
            now(),
            deleted
        )),
        "applied"
    );

    assert_eq!(webhook_count(&daemon, "billing", "applied"), 4.0);
    assert_eq!(webhook_count(&daemon, "billing", "duplicate"), 1.0);
    assert_eq!(webhook_count(&daemon, "billing", "stale"), 1.0);
    assert_eq!(webhook_count(&daemon, "billing", "ignored"), 1.0);
    assert_eq!(webhook_count(&daemon, "billing", "rejected"), 4.0);
    assert!(!daemon.logs().contains(STRIPE_SECRET));

    let rows = query(
        &db,
        "SELECT id, name, _ferry_deleted_at IS NOT NULL FROM shop.customers ORDER BY id",
    );
    assert_eq!(
        rows,
        vec![
            vec![
                "cus_1".to_string(),
                "Ada v3".to_string(),
                "Boolean(true)".to_string()
            ],
            vec![
                "cus_2".to_string(),
                "Grace".to_string(),
                "Boolean(false)".to_string()
            ],
        ]
    );
}

fn close_event(id: &str, action: &str, updated: &str, lead: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": {
            "id": id,
            "object_type": "lead",
            "action": action,
            "date_updated": updated,
            "data": lead,
        },
        "subscription_id": "whsub_1",
    }))
    .unwrap()
}

fn send_close(daemon: &Daemon, key: &str, timestamp: i64, body: Vec<u8>) -> (u16, String) {
    let hash = close_signature(key, timestamp, &body).unwrap();
    post(
        &format!("{}/webhooks/crm", daemon.base),
        &[
            ("close-sig-hash", hash),
            ("close-sig-timestamp", timestamp.to_string()),
        ],
        body,
    )
}

#[test]
fn close_webhooks_verify_and_order_events() {
    let folder = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("warehouse.duckdb");
    write(folder.path(), "crm.yaml", CRM_CONNECTOR);
    write(
        folder.path(),
        "flow.yaml",
        &format!(
            "kind: Flow\nname: crm\nsource:\n  connector: crm\n  config:\n    base_url: http://127.0.0.1:9\ndestination: \"duckdb://{}\"\nwebhook:\n  secret: \"{CLOSE_KEY}\"\n",
            db.display()
        ),
    );
    let daemon = Daemon::start(folder.path(), &[]);

    let created = close_event(
        "ev_1",
        "created",
        "2019-01-15T12:48:23.395000",
        json!({"id": "lead_1", "display_name": "KLine"}),
    );
    let valid = send_close(&daemon, CLOSE_KEY, now(), created.clone());
    assert_eq!(valid.0, 200, "{}", valid.1);
    assert_eq!(outcome(&valid), "applied");

    // The key used as text instead of hex bytes is a different key.
    let wrong_key = hex::encode(CLOSE_KEY.as_bytes());
    assert_eq!(
        send_close(&daemon, &wrong_key[..64], now(), created.clone()).0,
        401
    );
    assert_eq!(
        send_close(&daemon, CLOSE_KEY, now() - 3600, created.clone()).0,
        401
    );
    assert_eq!(
        outcome(&send_close(&daemon, CLOSE_KEY, now(), created)),
        "duplicate"
    );

    let newer = close_event(
        "ev_3",
        "updated",
        "2019-01-15T12:50:00.000000",
        json!({"id": "lead_1", "display_name": "KLine 3"}),
    );
    let older = close_event(
        "ev_2",
        "updated",
        "2019-01-15T12:49:00.000000",
        json!({"id": "lead_1", "display_name": "KLine 2"}),
    );
    assert_eq!(
        outcome(&send_close(&daemon, CLOSE_KEY, now(), newer)),
        "applied"
    );
    assert_eq!(
        outcome(&send_close(&daemon, CLOSE_KEY, now(), older)),
        "stale"
    );

    let rows = query(&db, "SELECT id, display_name FROM crm.leads");
    assert_eq!(
        rows,
        vec![vec!["lead_1".to_string(), "KLine 3".to_string()]]
    );
    assert_eq!(webhook_count(&daemon, "crm", "rejected"), 2.0);
}

#[test]
fn trigger_webhook_starts_incremental_run() {
    let api = ShopApi::start(customers(3), 2, Duration::from_millis(1));
    let folder = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("warehouse.duckdb");
    write(folder.path(), "shop.yaml", &shop_connector("stripe"));
    let webhook = format!("webhook:\n  secret: {STRIPE_SECRET}\n  action: trigger\n");
    write(
        folder.path(),
        "billing.yaml",
        &shop_flow("billing", &api.base, &db, &webhook),
    );
    let daemon = Daemon::start(folder.path(), &[]);
    assert!(api.requests().is_empty());

    let event = stripe_event("evt_1", "customer.updated", 1000, json!({"id": "c1"}));
    let response = send_stripe(&daemon, "billing", STRIPE_SECRET, now(), event);
    assert_eq!(response.0, 202, "{}", response.1);
    assert_eq!(outcome(&response), "triggered");
    daemon.wait_for(
        Duration::from_secs(30),
        "the triggered run writes the table",
        || {
            let flows = daemon.get_json("/flows");
            flows["flows"][0]["entities"][0]["last_run"]["outcome"] == "succeeded"
        },
    );
    let rows = query(&db, "SELECT id FROM shop.customers ORDER BY id");
    assert_eq!(rows, vec![vec!["c1"], vec!["c2"], vec!["c3"]]);
    assert_eq!(webhook_count(&daemon, "billing", "triggered"), 1.0);
}

#[test]
fn sighup_rereads_file_secrets() {
    let folder = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("stripe_webhook_secret");
    std::fs::write(&secret_file, STRIPE_SECRET).unwrap();
    write(folder.path(), "shop.yaml", &shop_connector("stripe"));
    let webhook = format!("webhook:\n  secret: ${{file:{}}}\n", secret_file.display());
    let db = data.path().join("warehouse.duckdb");
    write(
        folder.path(),
        "billing.yaml",
        &shop_flow("billing", "http://127.0.0.1:9", &db, &webhook),
    );
    let daemon = Daemon::start(folder.path(), &[]);

    let event = |id: &str| stripe_event(id, "customer.created", 1000, json!({"id": "cus_1"}));
    assert_eq!(
        send_stripe(&daemon, "billing", STRIPE_SECRET, now(), event("evt_1")).0,
        200
    );

    // The secret file changes outside the config folder; SIGHUP reloads.
    std::fs::write(&secret_file, STRIPE_NEW_SECRET).unwrap();
    daemon.signal("HUP");
    daemon.wait_for(
        Duration::from_secs(30),
        "the new secret is accepted",
        || send_stripe(&daemon, "billing", STRIPE_NEW_SECRET, now(), event("evt_2")).0 == 200,
    );
    assert_eq!(
        send_stripe(&daemon, "billing", STRIPE_SECRET, now(), event("evt_3")).0,
        401
    );
    assert!(!daemon.logs().contains(STRIPE_NEW_SECRET));
}

#[test]
fn full_refresh_flow_webhook_writes_live_table() {
    let api = ShopApi::start(customers(2), 2, Duration::from_millis(1));
    let folder = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("warehouse.duckdb");
    write(folder.path(), "shop.yaml", &shop_connector("stripe"));
    let extra = format!("mode: full_refresh\nwebhook:\n  secret: {STRIPE_SECRET}\n");
    write(
        folder.path(),
        "billing.yaml",
        &shop_flow("billing", &api.base, &db, &extra),
    );
    let daemon = Daemon::start(folder.path(), &[]);

    let (status, _) = post(
        &format!("{}/flows/billing/run", daemon.base),
        &[],
        Vec::new(),
    );
    assert_eq!(status, 202);
    daemon.wait_for(Duration::from_secs(30), "the full refresh succeeds", || {
        daemon.get_json("/flows")["flows"][0]["entities"][0]["last_run"]["outcome"] == "succeeded"
    });
    let event = stripe_event(
        "evt_1",
        "customer.updated",
        1000,
        json!({"id": "c2", "name": "Renamed"}),
    );
    assert_eq!(
        outcome(&send_stripe(
            &daemon,
            "billing",
            STRIPE_SECRET,
            now(),
            event
        )),
        "applied"
    );

    let rows = query(&db, "SELECT id, name FROM shop.customers ORDER BY id");
    assert_eq!(rows, vec![vec!["c1", "Customer 1"], vec!["c2", "Renamed"]]);
}
