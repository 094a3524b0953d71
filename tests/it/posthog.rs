//! The built-in PostHog connector against the PostHog emulation: events in
//! one-day windows following `next` URLs, persons paged by `next`, the
//! HogQL template, and group types.
//!
//! Events and persons are PostHog's documented examples, and the HogQL
//! answer a recorded query response (`tests/fixtures/posthog/examples.json`
//! names the sources).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::emulator::posthog::{API_KEY, PROJECT, PostHog, PostHogData};
use crate::emulator::{FlowDir, sync_ok};
use crate::support::duck;

const EXAMPLES: &str = include_str!("../fixtures/posthog/examples.json");

fn examples() -> Value {
    serde_json::from_str(EXAMPLES).unwrap()
}

/// Returns the documented example event with its own id and timestamp.
fn event(number: usize, at: DateTime<Utc>) -> Value {
    let mut event = examples()["events"][number % 2].clone();
    event["id"] = json!(format!("0190a1b2-0000-7000-8000-{number:012}"));
    event["timestamp"] = json!(at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string());
    event
}

fn flow_dir(posthog: &PostHog, start_date: &str, entities: &str) -> FlowDir {
    let config = [
        ("api_key", API_KEY),
        ("project_id", PROJECT),
        ("base_url", posthog.url.as_str()),
        ("start_date", start_date),
    ];
    FlowDir::new("product", "posthog", &config, entities)
}

#[tokio::test]
async fn events_follow_next_urls_in_windows() {
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let start = today - Duration::days(3);
    let third_day = start + Duration::days(2);
    // Five events on the first day, none on the second, two on the third
    // (yesterday, so always in the past), and none today.
    let mut events: Vec<Value> = (0..5)
        .map(|n| event(n, start + Duration::hours(1 + n as i64)))
        .collect();
    events.push(event(5, third_day + Duration::seconds(1)));
    events.push(event(6, third_day + Duration::seconds(2)));
    let posthog = PostHog::start(PostHogData {
        events: events.clone(),
        events_page_cap: 2,
        ..PostHogData::default()
    })
    .await;
    let day = |time: DateTime<Utc>| time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let dir = flow_dir(&posthog, &day(start), "entities: [events]\n");
    let report = sync_ok(&dir.flow("product")).await;
    assert_eq!(report.runs[0].records, 7);

    let requests = posthog.harness.requests();
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(request.path, format!("/api/projects/{PROJECT}/events/"));
        assert_eq!(request.param("limit"), Some("1000"));
    }
    let windows: Vec<(Option<&str>, Option<&str>)> = requests
        .iter()
        .map(|request| (request.param("after"), request.param("before")))
        .collect();
    // Day one has 5 events at 2 per page, so two next URLs move `before`
    // to the last event read; the other windows take one request each.
    let ts = |n: usize| events[n]["timestamp"].as_str().unwrap().to_string();
    let (first, second, third) = (day(start), day(start + Duration::days(1)), day(third_day));
    assert_eq!(windows[0], (Some(first.as_str()), Some(second.as_str())));
    assert_eq!(windows[1], (Some(first.as_str()), Some(ts(3).as_str())));
    assert_eq!(windows[2], (Some(first.as_str()), Some(ts(1).as_str())));
    assert_eq!(windows[3], (Some(second.as_str()), Some(third.as_str())));
    assert_eq!(
        windows[4],
        (Some(third.as_str()), Some(day(today).as_str()))
    );
    assert_eq!(windows[5].0, Some(day(today).as_str()));
    assert_eq!(requests.len(), 6);

    let rows = duck::query(
        dir.db(),
        r#"select id, event, json_extract_string(properties, '$."$browser"') from posthog.events order by timestamp"#,
    );
    let expected: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            vec![
                event["id"].as_str().unwrap().to_string(),
                event["event"].as_str().unwrap().to_string(),
                "Chrome".to_string(),
            ]
        })
        .collect();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn persons_follow_offset_links() {
    let example = examples()["persons"][0].clone();
    let persons: Vec<Value> = (0..1_200)
        .map(|n| {
            let mut person = example.clone();
            person["id"] = json!(n);
            person["uuid"] = json!(format!("0190a1b2-0000-7000-9000-{n:012}"));
            person
        })
        .collect();
    let posthog = PostHog::start(PostHogData {
        persons,
        ..PostHogData::default()
    })
    .await;
    let dir = flow_dir(&posthog, "2024-01-01T00:00:00Z", "entities: [persons]\n");
    let report = sync_ok(&dir.flow("product")).await;
    assert_eq!(report.runs[0].records, 1_200);

    let offsets: Vec<Option<String>> = posthog
        .harness
        .requests()
        .iter()
        .map(|request| request.param("offset").map(str::to_string))
        .collect();
    assert_eq!(
        offsets,
        [None, Some("500".to_string()), Some("1000".to_string())]
    );
    let rows = duck::query(
        dir.db(),
        "select count(*), count(distinct id), min(name) from posthog.persons",
    );
    assert_eq!(rows, vec![vec!["1200", "1200", "tim@posthog.com"]]);
}

#[tokio::test]
async fn hogql_template_makes_a_table() {
    let posthog = PostHog::start(PostHogData {
        query_response: examples()["hogql_response"].clone(),
        ..PostHogData::default()
    })
    .await;
    let query = "select event, count() from events group by event";
    let entities = format!(
        "entities:\n  event_counts:\n    template: hogql\n    query: \"{query}\"\n    primary_key: [event]\n"
    );
    let dir = flow_dir(&posthog, "2024-01-01T00:00:00Z", &entities);
    let report = sync_ok(&dir.flow("product")).await;
    assert_eq!(report.runs[0].records, 2);

    let requests = posthog.harness.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, format!("/api/projects/{PROJECT}/query/"));
    assert_eq!(
        requests[0].json_body(),
        json!({"query": {"kind": "HogQLQuery", "query": query}, "name": "ferry"})
    );
    let rows = duck::query(
        dir.db(),
        r#"select event, "count()" from posthog.event_counts order by event"#,
    );
    assert_eq!(
        rows,
        vec![vec!["$identify", "24"], vec!["$pageleave", "145"]]
    );
}

#[tokio::test]
async fn group_types_sync_for_groups() {
    let posthog = PostHog::start(PostHogData {
        group_types: vec![
            json!({"group_type": "company", "group_type_index": 0, "name_singular": null, "name_plural": null}),
            json!({"group_type": "team", "group_type_index": 1, "name_singular": null, "name_plural": null}),
        ],
        ..PostHogData::default()
    })
    .await;
    let dir = flow_dir(
        &posthog,
        "2024-01-01T00:00:00Z",
        "entities: [group_types]\n",
    );
    sync_ok(&dir.flow("product")).await;
    let rows = duck::query(
        dir.db(),
        "select group_type_index, group_type from posthog.group_types order by 1",
    );
    assert_eq!(rows, vec![vec!["0", "company"], vec!["1", "team"]]);
}

#[tokio::test]
async fn groups_read_once_per_group_type() {
    let posthog = PostHog::start(PostHogData {
        group_types: vec![
            json!({"group_type": "company", "group_type_index": 0}),
            json!({"group_type": "team", "group_type_index": 1}),
        ],
        groups: vec![
            json!({"group_type_index": 0, "group_key": "acme", "group_properties": {"plan": "team"}, "created_at": "2024-01-02T00:00:00Z"}),
            json!({"group_type_index": 1, "group_key": "core", "group_properties": {}, "created_at": "2024-01-03T00:00:00Z"}),
        ],
        ..PostHogData::default()
    })
    .await;
    let dir = flow_dir(&posthog, "2024-01-01T00:00:00Z", "entities: [groups]\n");
    sync_ok(&dir.flow("product")).await;

    let indexes: Vec<Option<String>> = posthog
        .harness
        .requests_to(&format!("/api/projects/{PROJECT}/groups/"))
        .iter()
        .map(|request| request.param("group_type_index").map(str::to_string))
        .collect();
    assert_eq!(indexes, [Some("0".to_string()), Some("1".to_string())]);
    let rows = duck::query(
        dir.db(),
        "select group_type_index, group_key from posthog.groups order by 1",
    );
    assert_eq!(rows, vec![vec!["0", "acme"], vec!["1", "core"]]);
}
