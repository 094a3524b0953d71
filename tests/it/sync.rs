//! The chunk loop end to end: a real API on loopback, the YAML loader, the
//! engine and a DuckDB file, checked through the rows and state written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry::sync::{Outcome, RunOptions, run_flow};
use serde_json::{Value, json};

use crate::support::api::{Api, records, timestamp};
use crate::support::duck;

const CONNECTOR: &str = r#"
kind: Connector
name: testapi
config:
  base_url: { type: string }
  token: { type: string, secret: true }
http:
  base_url: "{{config.base_url}}"
  auth: { type: bearer, token: "{{config.token}}" }
  retry: { max_attempts: 2, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02 }
entities:
  items:
    path: /items
    params: { limit: "3" }
    records: "$.data"
    primary_key: [id]
    pagination: { type: cursor, cursor: "$.next", param: cursor }
    incremental: { cursor_field: updated_at, param: since ORDER_LINE }
    chunk: { records: 3 }
"#;

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
    api: Api,
}

/// Writes a connector and a flow for `api` into a fresh folder.
fn setup(api: Api, descending: bool, lookback_seconds: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.d");
    std::fs::create_dir(&config).unwrap();
    let order = if descending {
        "}\n    order: descending".to_string()
    } else {
        "}".to_string()
    };
    let incremental = format!(", lookback_seconds: {lookback_seconds} {order}");
    let connector = CONNECTOR.replace(" ORDER_LINE }", &incremental);
    std::fs::write(config.join("testapi.yaml"), connector).unwrap();
    let db = dir.path().join("test.duckdb");
    let flow = format!(
        "kind: Flow\nname: test\nsource:\n  connector: testapi\n  config:\n    base_url: \"{}\"\n    token: \"${{API_TOKEN}}\"\ndestination: \"duckdb://{}\"\n",
        api.url,
        db.display()
    );
    std::fs::write(config.join("flow.yaml"), flow).unwrap();
    Setup {
        _dir: dir,
        config,
        db,
        api,
    }
}

fn env(name: &str) -> Option<String> {
    (name == "API_TOKEN").then(|| "tok_test_123456".to_string())
}

async fn sync_once(config: &Path) -> ferry::sync::FlowReport {
    let loaded = ferry::spec::load_with_env(config, &env).expect("config loads");
    let flow = loaded.catalog.flows["test"].clone();
    run_flow(Arc::clone(&flow), &[], &RunOptions::default()).await
}

fn table(db: &Path) -> Vec<Vec<String>> {
    duck::query(
        db,
        "select id, name, amount, updated_at from testapi.items order by id",
    )
}

fn state(db: &Path) -> Value {
    let rows = duck::query(
        db,
        "select state::varchar from _ferry.state where flow = 'test' and entity = 'items'",
    );
    rows.first()
        .map(|row| serde_json::from_str(&row[0]).unwrap())
        .unwrap_or(Value::Null)
}

fn expected_rows(count: usize) -> Vec<Vec<String>> {
    (1..=count)
        .map(|id| {
            vec![
                id.to_string(),
                format!("item {id}"),
                (id * 100).to_string(),
                timestamp(id as i64 - 1),
            ]
        })
        .collect()
}

#[tokio::test]
async fn clean_run_writes_every_record() {
    let api = Api::start(records(10)).await;
    let setup = setup(api, false, 0);
    let report = sync_once(&setup.config).await;
    assert_eq!(report.runs[0].outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.runs[0].records, 10);
    assert_eq!(table(&setup.db), expected_rows(10));
    assert_eq!(
        setup.api.requests(),
        vec![
            "limit=3",
            "limit=3&cursor=3",
            "limit=3&cursor=6",
            "limit=3&cursor=9"
        ]
    );
    assert_eq!(state(&setup.db), json!({"cursor": timestamp(9)}));
}

#[tokio::test]
async fn failure_at_page_resumes_there() {
    let api = Api::start(records(12)).await;
    api.with(|state| state.failing_pages = vec![2]);
    let setup = setup(api, false, 0);

    let first = sync_once(&setup.config).await;
    assert_eq!(first.runs[0].outcome, Outcome::Failed);
    assert_eq!(first.runs[0].records, 6);
    // The first two pages are committed, nothing after them.
    assert_eq!(table(&setup.db), expected_rows(6));
    let saved = state(&setup.db);
    assert_eq!(
        saved["resume"]["position"]["page"],
        json!({"type": "cursor", "value": "6"})
    );
    assert_eq!(
        saved.get("cursor"),
        None,
        "the cursor moves only when a run completes"
    );

    setup.api.with(|state| state.failing_pages.clear());
    setup.api.clear_requests();
    let second = sync_once(&setup.config).await;
    assert_eq!(second.runs[0].outcome, Outcome::Succeeded, "{second:?}");
    assert!(second.runs[0].resumed);
    // No request before the failed page is sent again.
    assert_eq!(
        setup.api.requests(),
        vec!["limit=3&cursor=6", "limit=3&cursor=9"]
    );
    assert_eq!(table(&setup.db), expected_rows(12));
    assert_eq!(state(&setup.db), json!({"cursor": timestamp(11)}));
}

#[tokio::test]
async fn second_run_sends_saved_cursor() {
    let api = Api::start(records(5)).await;
    let setup = setup(api, false, 60);
    sync_once(&setup.config).await;

    // One new record and one update to an old one.
    setup.api.with(|state| {
        state.records[1]["name"] = json!("item 2 renamed");
        state.records[1]["updated_at"] = json!(timestamp(10));
        state
            .records
            .push(json!({"id": 6, "name": "item 6", "amount": 600, "updated_at": timestamp(11)}));
    });
    setup.api.clear_requests();
    let report = sync_once(&setup.config).await;
    assert_eq!(report.runs[0].outcome, Outcome::Succeeded);
    // The saved maximum minus the 60 s lookback, in the source's own form,
    // on every request of the run.
    let since = timestamp(3);
    assert_eq!(
        setup.api.requests(),
        vec![
            format!("limit=3&since={since}"),
            format!("limit=3&since={since}&cursor=3")
        ]
    );
    // Ids 4 and 5 (inside the lookback), the updated id 2 and the new id 6.
    assert_eq!(report.runs[0].records, 4);
    let rows = table(&setup.db);
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[1], vec!["2", "item 2 renamed", "200", &timestamp(10)]);
    assert_eq!(state(&setup.db), json!({"cursor": timestamp(11)}));
}

#[tokio::test]
async fn descending_failure_keeps_cursor() {
    let api = Api::start(records(9)).await;
    api.with(|state| {
        state.descending = true;
        state.failing_pages = vec![1];
    });
    let setup = setup(api, true, 0);
    let first = sync_once(&setup.config).await;
    assert_eq!(first.runs[0].outcome, Outcome::Failed);
    let saved = state(&setup.db);
    // The newest record was seen, but older ones were not: the saved cursor
    // must not move, or the next run would skip them.
    assert_eq!(saved.get("cursor"), None);
    assert_eq!(saved["pending_cursor"], json!(timestamp(8)));

    setup.api.with(|state| state.failing_pages.clear());
    let second = sync_once(&setup.config).await;
    assert_eq!(second.runs[0].outcome, Outcome::Succeeded);
    assert_eq!(table(&setup.db), expected_rows(9));
    assert_eq!(state(&setup.db), json!({"cursor": timestamp(8)}));

    setup.api.clear_requests();
    sync_once(&setup.config).await;
    assert_eq!(
        setup.api.requests(),
        vec![format!("limit=3&since={}", timestamp(8))]
    );
}

#[tokio::test]
async fn runs_are_recorded() {
    let api = Api::start(records(4)).await;
    api.with(|state| state.failing_pages = vec![1]);
    let setup = setup(api, false, 0);
    sync_once(&setup.config).await;
    setup.api.with(|state| state.failing_pages.clear());
    sync_once(&setup.config).await;
    let runs = duck::query(
        &setup.db,
        "select flow, entity, status, records, error is null from _ferry.runs order by started_at",
    );
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0][..4], ["test", "items", "failed", "3"]);
    assert_eq!(runs[0][4], "false");
    assert_eq!(runs[1], vec!["test", "items", "succeeded", "1", "true"]);
}

#[tokio::test]
async fn chunk_commits_after_its_seconds() {
    let api = Api::start(records(6)).await;
    // Slow pages and a chunk far larger than the data: only the time limit
    // can close a chunk before the run ends.
    api.with(|state| state.page_delay = Duration::from_millis(1000));
    let setup = setup(api, false, 0);
    let text = std::fs::read_to_string(setup.config.join("testapi.yaml")).unwrap();
    std::fs::write(
        setup.config.join("testapi.yaml"),
        text.replace(
            "chunk: { records: 3 }",
            "chunk: { records: 1000, seconds: 0.1 }",
        ),
    )
    .unwrap();
    let config = setup.config.clone();
    let db = setup.db.clone();
    let run = tokio::spawn(async move { sync_once(&config).await });
    // After the first page (300 ms) and the chunk time (100 ms), its rows are committed.
    // The first page arrives after 1 s and its chunk closes 100 ms later,
    // while the second page is still on its way.
    let committed = loop {
        let count = duck::try_query(&db, "select count(*) from testapi.items")
            .ok()
            .and_then(|rows| rows.first().map(|row| row[0].clone()));
        if count.is_some() || run.is_finished() {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!run.is_finished(), "rows appeared only when the run ended");
    assert_eq!(committed.as_deref(), Some("3"));
    let report = run.await.unwrap();
    assert_eq!(report.runs[0].outcome, Outcome::Succeeded);
    assert_eq!(table(&setup.db), expected_rows(6));
}

/// Runs the real binary with the test's token in its environment.
fn ferry(setup: &Setup, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .arg("--config")
        .arg(&setup.config)
        .env("API_TOKEN", "tok_test_123456")
        .env("RUST_LOG", "warn")
        .env_remove("FERRY_LOG_FORMAT");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_process_resumes_exactly() {
    let api = Api::start(records(90)).await;
    api.with(|state| state.page_delay = Duration::from_millis(40));
    let setup = setup(api, false, 0);

    // Kill the process three times at different points of the 30 pages
    // (each run resumes, so the counts are per run), then let it finish.
    for requests_before_kill in [4, 5, 7] {
        let mut child = ferry(&setup, &["sync", "test"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while setup.api.requests().len() < requests_before_kill {
            assert!(
                std::time::Instant::now() < deadline,
                "the sync did not progress"
            );
            if child.try_wait().unwrap().is_some() {
                let output = child.wait_with_output().unwrap();
                panic!(
                    "the sync ended before the kill: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        setup.api.clear_requests();
    }

    let status = ferry(&setup, &["sync", "test"]).status().unwrap();
    assert!(status.success());
    // The last run started after the committed chunks, not at the beginning.
    let first = setup.api.requests().first().cloned().unwrap();
    assert!(
        first.contains("cursor="),
        "restarted from the beginning: {first}"
    );
    assert_eq!(table(&setup.db), expected_rows(90));
    assert_eq!(state(&setup.db), json!({"cursor": timestamp(89)}));
}

/// Syncs entity `items` (with `entity_mode`) twice in a flow with
/// `flow_mode`. The second response leaves out item 2. Returns the second
/// request's target and the ids in the table.
async fn sync_twice_with_modes(
    flow_mode: Option<&str>,
    entity_mode: Option<&str>,
) -> (String, Vec<Vec<String>>) {
    let item = |id: u64| json!({"id": id, "updated_at": "2024-01-01T00:00:00Z"});
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/items"))
        .respond_with(crate::support::Sequence::new(vec![
            crate::support::json(json!([item(1), item(2)])),
            crate::support::json(json!([item(1)])),
        ]))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let entity_mode = entity_mode.map_or(String::new(), |mode| format!("\n    mode: {mode}"));
    let connector = format!(
        "kind: Connector\nname: modes\nconfig: {{ base_url: {{ type: string }} }}\n\
         http: {{ base_url: \"{{{{config.base_url}}}}\" }}\nentities:\n  items:\n    path: /items\n    \
         records: \"$[*]\"\n    primary_key: [id]\n    incremental: {{ cursor_field: updated_at, param: since }}{entity_mode}\n"
    );
    std::fs::write(dir.path().join("modes.yaml"), connector).unwrap();
    let db = dir.path().join("test.duckdb");
    let flow_mode = flow_mode.map_or(String::new(), |mode| format!("mode: {mode}\n"));
    let flow = format!(
        "kind: Flow\nname: test\nsource:\n  connector: modes\n  config: {{ base_url: \"{}\" }}\n\
         destination: \"duckdb://{}\"\n{flow_mode}",
        server.uri(),
        db.display()
    );
    std::fs::write(dir.path().join("flow.yaml"), flow).unwrap();

    for _ in 0..2 {
        let report = sync_once(dir.path()).await;
        assert_eq!(report.runs[0].outcome, Outcome::Succeeded, "{report:?}");
    }

    let requests = crate::support::requests(&server).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    let ids = duck::query(&db, "select id from modes.items order by id");
    (requests[1].clone(), ids)
}

/// Only a flow's `full_refresh` overrides an entity's `mode`. A flow that
/// sets `mode: incremental` leaves an entity's `full_refresh` alone.
#[tokio::test]
async fn flow_full_refresh_overrides_entity_mode() {
    let incremental = (
        "GET /items?since=2024-01-01T00%3A00%3A00Z".to_string(),
        vec![vec!["1".to_string()], vec!["2".to_string()]],
    );
    let full_refresh = ("GET /items".to_string(), vec![vec!["1".to_string()]]);
    let cases = [
        (None, None, &incremental),
        (Some("incremental"), None, &incremental),
        (None, Some("full_refresh"), &full_refresh),
        (Some("incremental"), Some("full_refresh"), &full_refresh),
        (Some("full_refresh"), Some("incremental"), &full_refresh),
        (Some("full_refresh"), None, &full_refresh),
    ];
    for (flow_mode, entity_mode, expected) in cases {
        let outcome = sync_twice_with_modes(flow_mode, entity_mode).await;
        assert_eq!(
            &outcome, expected,
            "flow mode {flow_mode:?}, entity mode {entity_mode:?}"
        );
    }
}
