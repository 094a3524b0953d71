//! The built-in Close connector against the Close emulation: basic auth,
//! date windows that keep `_skip` shallow, custom fields under readable
//! names, and the RateLimit header on 429.
//!
//! Leads and activities come from `tests/fixtures/close/records.json`
//! (Close's fictional sample data as Airbyte's Close connector tests
//! recorded it, MIT licence); opportunities are copies of the sample lead's
//! opportunity with their own ids and dates.

use std::time::Instant;

use base64::Engine;
use chrono::{Duration, Utc};
use ferry::sync::{Outcome, RunOptions};
use serde_json::{Value, json};

use crate::emulator::close::{API_KEY, Close, CloseData};
use crate::emulator::{Fault, FlowDir, sync, sync_ok};
use crate::support::duck;

const RECORDS: &str = include_str!("../fixtures/close/records.json");

fn fixture(list: &str) -> Vec<Value> {
    let records: Value = serde_json::from_str(RECORDS).unwrap();
    records[list].as_array().unwrap().clone()
}

/// Returns the four custom fields of the sample lead, by id.
fn lead_custom_fields() -> Vec<Value> {
    [
        ("cf_1exVDDcGOEiIdhBhBv2VEGqnpIcJZZqiWkk4O7hbU3D", "Current Vendor/Software"),
        ("cf_ZuP9X9UjiQzjptNHlT7DxzRATaFil2Ysoz0aGMq0Kim", "Industry"),
        ("cf_mhBoQeiuwFRlz7zqyi4kJgzUreEoUp0hUsLwrnUTEgh", "Lead Owner"),
        ("cf_05o22yQYHMrFh4cCYCMSQJdSpODdabCbGQ8il5Do7X4", "Referral Source"),
    ]
    .iter()
    .map(|(id, name)| {
        json!({"id": id, "name": name, "type": "text", "date_created": "2021-07-13T11:39:04.000000+00:00"})
    })
    .collect()
}

/// `count` opportunities updated `spacing_hours` apart from `first`.
fn opportunities(count: usize, first: chrono::DateTime<Utc>, spacing_hours: i64) -> Vec<Value> {
    let example = fixture("leads")[1]["opportunities"][0].clone();
    (0..count)
        .map(|index| {
            let mut opportunity = example.clone();
            let updated = first + Duration::hours(index as i64 * spacing_hours);
            opportunity["id"] = json!(format!("oppo_{index:05}"));
            opportunity["date_updated"] =
                json!(updated.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string());
            opportunity
        })
        .collect()
}

fn flow_dir(close: &Close, entities: &str, start_date: &str) -> FlowDir {
    let config = [
        ("api_key", API_KEY),
        ("base_url", close.url.as_str()),
        ("start_date", start_date),
    ];
    FlowDir::new(
        "crm",
        "close",
        &config,
        &format!("entities: [{entities}]\n"),
    )
}

fn basic_header() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{API_KEY}:"));
    format!("Basic {encoded}")
}

#[tokio::test]
async fn lead_custom_fields_get_readable_columns() {
    let close = Close::start(CloseData {
        leads: fixture("leads"),
        lead_custom_fields: lead_custom_fields(),
        max_skip: 250_000,
        ..CloseData::default()
    })
    .await;
    let dir = flow_dir(&close, "leads", "2022-07-01T00:00:00Z");
    let report = sync_ok(&dir.flow("crm")).await;
    assert_eq!(report.runs[0].records, 2);

    let requests = close.harness.requests();
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(basic_header().as_str())
        );
    }
    assert_eq!(requests[0].path, "/api/v1/custom_field/lead/");
    let leads: Vec<_> = requests
        .iter()
        .filter(|request| request.path == "/api/v1/lead/")
        .collect();
    assert_eq!(
        leads[0].param("query"),
        Some(
            r#"date_updated >= "2022-07-01T00:00:00" date_updated < "2022-07-31T00:00:00" sort:date_updated"#
        )
    );
    assert_eq!(leads[0].param("_skip"), Some("0"));
    assert_eq!(leads[0].param("_limit"), Some("200"));
    assert_eq!(
        leads[1].param("query"),
        Some(
            r#"date_updated >= "2022-07-31T00:00:00" date_updated < "2022-08-30T00:00:00" sort:date_updated"#
        )
    );

    let rows = duck::query(
        dir.db(),
        r#"select id, "custom.Industry", "custom.Current Vendor/Software", "custom.Referral Source", date_updated
           from close.leads order by date_updated"#,
    );
    assert_eq!(
        rows,
        vec![
            vec![
                "lead_Eohw2Vf6WOKZHQ97nS1UTL3iV62pAJFX3ROgJ5WT4cY",
                "NULL",
                "NULL",
                "NULL",
                "2022-07-05 21:01:25.658+00",
            ],
            vec![
                "lead_p7HyK4BZKAZJH2m8AAhFpcla2E0fDa6TACgU8KWv7o2",
                "Real estate",
                "BiffCo",
                "Google Search",
                "2022-11-08 16:28:54.174+00",
            ],
        ]
    );
    let columns = duck::query(
        dir.db(),
        "select count(*) filter (where column_name like 'custom.cf_%' or column_name = 'custom') \
         from information_schema.columns where table_schema = 'close' and table_name = 'leads'",
    );
    assert_eq!(columns, vec![vec!["0"]]);
}

#[tokio::test]
async fn opportunity_windows_keep_skip_shallow() {
    // 600 opportunities over 100 days: read at once they would need
    // _skip=500, but no 30-day window contains more than 250 of them.
    let first = Utc::now() - Duration::days(110);
    let close = Close::start(CloseData {
        opportunities: opportunities(600, first, 4),
        max_skip: 250,
        ..CloseData::default()
    })
    .await;
    let start = (first - Duration::days(1))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let dir = flow_dir(&close, "opportunities", &start);
    let report = sync_ok(&dir.flow("crm")).await;
    assert_eq!(report.runs[0].records, 600);

    let requests = close.harness.requests_to("/api/v1/opportunity/");
    let skips: Vec<&str> = requests
        .iter()
        .map(|request| request.param("_skip").unwrap_or(""))
        .collect();
    assert!(skips.iter().all(|skip| *skip == "0"), "{skips:?}");
    assert_eq!(requests[0].param("date_updated__gte"), Some(start.as_str()));
    assert_eq!(requests[0].param("_limit"), Some("250"));
    assert_eq!(requests[0].param("_order_by"), Some("date_updated"));
    // Each window starts where the previous one ended.
    for pair in requests.windows(2) {
        assert_eq!(
            pair[0].param("date_updated__lt"),
            pair[1].param("date_updated__gte")
        );
    }
    let rows = duck::query(
        dir.db(),
        "select count(*), count(distinct id) from close.opportunities",
    );
    assert_eq!(rows, vec![vec!["600", "600"]]);
}

#[tokio::test]
async fn window_too_deep_fails_with_close_message() {
    let first = Utc::now() - Duration::days(20);
    let close = Close::start(CloseData {
        opportunities: opportunities(600, first, 0),
        max_skip: 250,
        ..CloseData::default()
    })
    .await;
    let start = (Utc::now() - Duration::days(25))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let dir = flow_dir(&close, "opportunities", &start);
    let report = sync(&dir.flow("crm"), &RunOptions::default()).await;

    let run = &report.runs[0];
    assert_eq!(run.outcome, Outcome::Failed);
    let message = &run.error.as_ref().unwrap().message;
    assert!(message.contains("HTTP 400"), "{message}");
    assert!(message.contains("max_skip = 250"), "{message}");
    let skips: Vec<String> = close
        .harness
        .requests_to("/api/v1/opportunity/")
        .iter()
        .map(|request| request.param("_skip").unwrap_or("").to_string())
        .collect();
    assert_eq!(skips, ["0", "250", "500"]);
    // The pages before the rejected request are kept.
    let rows = duck::query(dir.db(), "select count(*) from close.opportunities");
    assert_eq!(rows, vec![vec!["500"]]);
}

#[tokio::test]
async fn rate_limit_header_sets_the_wait() {
    let first = Utc::now() - Duration::days(2);
    let close = Close::start(CloseData {
        opportunities: opportunities(2, first, 1),
        max_skip: 250_000,
        ..CloseData::default()
    })
    .await;
    close.harness.fail_next(Fault {
        path_prefix: "/api/v1/opportunity/".into(),
        status: axum::http::StatusCode::TOO_MANY_REQUESTS,
        headers: vec![("ratelimit", "limit=10, remaining=0, reset=1".into())],
        body: json!({"error": {"message": "API rate limit exceeded", "rate_reset": 1}}),
    });
    let start = (Utc::now() - Duration::days(5))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let dir = flow_dir(&close, "opportunities", &start);
    let started = Instant::now();
    let report = sync_ok(&dir.flow("crm")).await;
    let elapsed = started.elapsed();

    assert_eq!(report.runs[0].records, 2);
    assert!(
        elapsed.as_secs_f64() >= 1.0,
        "retried after {elapsed:?}, before reset=1"
    );
    let requests = close.harness.requests_to("/api/v1/opportunity/");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].query, requests[1].query);
    assert_eq!(
        requests[0].param("date_updated__gte"),
        Some(start.as_str()),
        "the first window starts at start_date"
    );
}

#[tokio::test]
async fn calls_read_their_own_activity_list() {
    let close = Close::start(CloseData {
        activities: fixture("activities"),
        max_skip: 250_000,
        ..CloseData::default()
    })
    .await;
    let start = "2021-07-01T00:00:00Z";
    let dir = flow_dir(&close, "calls", start);
    let flow = dir.flow("crm");
    sync_ok(&flow).await;

    let first = &close.harness.requests()[0];
    assert_eq!(first.path, "/api/v1/activity/call/");
    assert_eq!(first.param("date_created__gte"), Some(start));
    assert_eq!(
        first.param("date_created__lt"),
        Some("2021-07-08T00:00:00Z")
    );
    let rows = duck::query(
        dir.db(),
        "select id, _type, duration, date_created from close.calls",
    );
    assert_eq!(
        rows,
        vec![vec![
            "acti_wszWUd92D7wNYSbn5gKWXCf55NeyU0jc1Vguv7DfUiH",
            "Call",
            "0",
            "2021-07-05 11:39:00.85+00",
        ]]
    );
}

#[tokio::test]
async fn wrong_key_is_rejected() {
    let close = Close::start(CloseData::default()).await;
    let config = [("api_key", "api_wrong"), ("base_url", close.url.as_str())];
    let dir = FlowDir::new("crm", "close", &config, "entities: [users]\n");
    let flow = dir.flow("crm");
    let error = ferry::engine::check_connection(&flow).await.unwrap_err();
    assert!(error.message.contains("HTTP 401"), "{}", error.message);
    assert_eq!(close.harness.requests()[0].path, "/api/v1/me/");
}

#[test]
fn webhook_events_route_to_entities() {
    let loaded = ferry::spec::load_builtin().unwrap();
    let plan = loaded.catalog.connectors["close"].webhooks.clone().unwrap();
    let routed = |object_type: &str, action: &str| {
        let body = json!({"subscription_id": "whsub_1", "event": {
            "id": "ev_1", "object_type": object_type, "action": action,
            "date_updated": "2024-01-01T00:00:00.000000+00:00", "data": {"id": "lead_1"},
        }});
        let event = ferry::daemon::webhooks::event::read(&plan, &body).unwrap();
        let route = ferry::daemon::webhooks::event::route(&plan, &event.event_type);
        (
            event.event_type.clone(),
            route.and_then(|route| route.entity.clone()),
            route.is_some_and(|route| route.delete),
        )
    };
    assert_eq!(
        routed("lead", "updated"),
        ("lead.updated".to_string(), Some("leads".to_string()), false)
    );
    assert_eq!(
        routed("lead", "deleted"),
        ("lead.deleted".to_string(), Some("leads".to_string()), true)
    );
    assert_eq!(
        routed("activity.call", "created"),
        (
            "activity.call.created".to_string(),
            Some("calls".to_string()),
            false
        )
    );
    assert_eq!(routed("task", "created").1, None);
}
