//! The built-in BigQuery connector against a local emulation of the REST
//! API and Google's token endpoint, from the config folder to DuckDB rows.
//! The tests cover the service-account token exchange, tables, views,
//! queries that need polling, several pages, every column type, a token
//! that expires mid-run, a resumed run that continues the same job, and
//! incremental queries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry::sync::{FlowReport, Outcome, RunOptions, run_flow};
use serde_json::{Value, json};

use crate::support::bigquery::{
    ApiState, BigQuery, CLIENT_EMAIL, KEY_ID, Table, generate_key, key_file,
};
use crate::support::{duck, json as json_response, mount, requests};

const READONLY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery.readonly";

/// Returns a schema with every BigQuery type, nested repeated records included.
fn all_types_schema() -> Value {
    json!({"fields": [
        {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
        {"name": "name", "type": "STRING", "mode": "NULLABLE"},
        {"name": "price", "type": "NUMERIC"},
        {"name": "big", "type": "BIGNUMERIC"},
        {"name": "ratio", "type": "FLOAT"},
        {"name": "active", "type": "BOOLEAN"},
        {"name": "created", "type": "TIMESTAMP"},
        {"name": "day", "type": "DATE"},
        {"name": "local", "type": "DATETIME"},
        {"name": "clock", "type": "TIME"},
        {"name": "payload", "type": "JSON"},
        {"name": "raw", "type": "BYTES"},
        {"name": "place", "type": "GEOGRAPHY"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "owner", "type": "RECORD", "fields": [
            {"name": "name", "type": "STRING"},
            {"name": "addresses", "type": "RECORD", "mode": "REPEATED", "fields": [
                {"name": "city", "type": "STRING"},
                {"name": "zip", "type": "INTEGER"},
                {"name": "lines", "type": "STRING", "mode": "REPEATED"}
            ]}
        ]},
        {"name": "note", "type": "STRING"}
    ]})
}

fn cell(value: &str) -> Value {
    json!({"v": value})
}

fn null_cell() -> Value {
    json!({"v": null})
}

/// Row `id` of the all-types table, cells as strings as the API sends them;
/// row 3 is NULL wherever a column allows it.
fn all_types_row(id: u32) -> Value {
    if id == 3 {
        let mut cells = vec![cell("3")];
        cells.extend(std::iter::repeat_n(null_cell(), 12));
        cells.push(json!({"v": []}));
        cells.push(null_cell());
        cells.push(null_cell());
        return json!({"f": cells});
    }
    json!({"f": [
        cell(&id.to_string()),
        cell(&format!("order {id}")),
        cell(&format!("{id}.10")),
        cell(&format!("12345678901234567890.12345678901234567{id}")),
        cell(&format!("{id}.5")),
        cell(if id.is_multiple_of(2) { "true" } else { "false" }),
        // 2015-07-24T19:53:19.006000Z plus `id` microseconds.
        cell(&format!("143776759900600{id}")),
        cell(&format!("2024-02-2{id}")),
        cell(&format!("2024-02-2{id}T10:11:12.123456")),
        cell("23:59:58.5"),
        cell(&format!("{{\"id\":{id},\"nested\":{{\"ok\":true}}}}")),
        cell("AAEC/w=="),
        cell("POINT(1 2)"),
        {"v": [cell("red"), cell(&format!("tag{id}"))]},
        {"v": {"f": [
            cell(&format!("owner {id}")),
            {"v": [
                {"v": {"f": [cell("Bern"), cell("3000"), {"v": [cell("Main 1"), cell("Floor 2")]}]}},
                {"v": {"f": [cell("Oslo"), null_cell(), {"v": []}]}}
            ]}
        ]}},
        null_cell()
    ]})
}

fn all_types_table(rows: u32) -> Table {
    Table {
        schema: all_types_schema(),
        rows: (1..=rows).map(all_types_row).collect(),
    }
}

/// Returns the DuckDB rows the all-types table becomes, as text.
fn expected_all_types(ids: &[u32]) -> Vec<Vec<String>> {
    ids.iter()
        .map(|&id| {
            if id == 3 {
                let mut row = vec!["3".to_string()];
                row.extend(std::iter::repeat_n("NULL".to_string(), 12));
                row.push("[]".to_string());
                row.push("NULL".to_string());
                return row;
            }
            vec![
                id.to_string(),
                format!("order {id}"),
                format!("{id}.1"),
                format!("12345678901234567890.12345678901234567{id}"),
                format!("{id}.5"),
                id.is_multiple_of(2).to_string(),
                format!("2015-07-24 19:53:19.00600{id}+00"),
                format!("2024-02-2{id}"),
                format!("2024-02-2{id} 10:11:12.123456+00"),
                "23:59:58.5".to_string(),
                format!("{{\"id\":{id},\"nested\":{{\"ok\":true}}}}"),
                "AAEC/w==".to_string(),
                "POINT(1 2)".to_string(),
                format!("[\"red\",\"tag{id}\"]"),
                format!(
                    "{{\"name\":\"owner {id}\",\"addresses\":[{{\"city\":\"Bern\",\"zip\":3000,\"lines\":[\"Main 1\",\"Floor 2\"]}},{{\"city\":\"Oslo\",\"zip\":null,\"lines\":[]}}]}}"
                ),
            ]
        })
        .collect()
}

const ALL_TYPES_COLUMNS: &str = "id, name, price, big, ratio, active, created, day, local, clock, payload, raw, place, tags, owner";

/// A config folder with one flow of the built-in connector, its entities
/// given as YAML, and the key file the flow reads with `${file:…}`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
}

fn setup(emulator: &BigQuery, entities: &str) -> Setup {
    setup_with(&emulator.url, &emulator.key_file, entities)
}

/// Like [`setup`], for an API at `url` and a key file's JSON.
fn setup_with(url: &str, key_file: &str, entities: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.d");
    std::fs::create_dir(&config).unwrap();
    let key = dir.path().join("service-account.json");
    std::fs::write(&key, key_file).unwrap();
    let db = dir.path().join("warehouse.duckdb");
    let flow = format!(
        "kind: Flow\nname: warehouse\nsource:\n  connector: bigquery\n  config:\n    service_account: \"${{file:{}}}\"\n    project_id: test-project\n    base_url: \"{url}\"\ndestination: \"duckdb://{}\"\nentities:\n{entities}",
        key.display(),
        db.display()
    );
    std::fs::write(config.join("flow.yaml"), flow).unwrap();
    Setup { dir, config, db }
}

async fn sync(config: &Path) -> FlowReport {
    let loaded = match ferry::spec::load_with_env(config, &|_| None) {
        Ok(loaded) => loaded,
        Err(problems) => panic!("config does not load: {problems:?}"),
    };
    let flow = loaded.catalog.flows["warehouse"].clone();
    run_flow(Arc::clone(&flow), &[], &RunOptions::default()).await
}

fn assert_succeeded(report: &FlowReport) {
    for run in &report.runs {
        assert_eq!(run.outcome, Outcome::Succeeded, "{report:?}");
    }
}

fn state(db: &Path, entity: &str) -> Value {
    let rows = duck::query(
        db,
        &format!(
            "select state::varchar from _ferry.state where flow = 'warehouse' and entity = '{entity}'"
        ),
    );
    rows.first()
        .map(|row| serde_json::from_str(&row[0]).unwrap())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn table_rows_land_typed_in_duckdb() {
    let mut api = ApiState::default();
    api.tables
        .insert("test-project.sales.orders".into(), all_types_table(5));
    let emulator = BigQuery::start(api).await;
    let setup = setup(
        &emulator,
        "  orders: { template: table, table: test-project.sales.orders, page_size: 2 }\n",
    );

    let report = sync(&setup.config).await;

    assert_succeeded(&report);
    assert_eq!(report.runs[0].records, 5);
    assert_eq!(
        emulator.requests(),
        vec![
            "GET /bigquery/v2/projects/test-project/datasets/sales/tables/orders?view=BASIC",
            "GET /bigquery/v2/projects/test-project/datasets/sales/tables/orders/data?maxResults=2&formatOptions.useInt64Timestamp=true",
            "GET /bigquery/v2/projects/test-project/datasets/sales/tables/orders/data?maxResults=2&formatOptions.useInt64Timestamp=true&pageToken=tok-2",
            "GET /bigquery/v2/projects/test-project/datasets/sales/tables/orders/data?maxResults=2&formatOptions.useInt64Timestamp=true&pageToken=tok-4",
        ]
    );
    let rows = duck::query(
        &setup.db,
        &format!("select {ALL_TYPES_COLUMNS} from bigquery.orders order by id"),
    );
    assert_eq!(rows, expected_all_types(&[1, 2, 3, 4, 5]));
    let types = duck::query(
        &setup.db,
        "select column_name, data_type from information_schema.columns \
         where table_schema = 'bigquery' and table_name = 'orders' order by ordinal_position",
    );
    let types: Vec<(String, String)> = types
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("price", "DECIMAL(38,1)"),
        ("big", "DECIMAL(38,18)"),
        ("ratio", "DOUBLE"),
        ("active", "BOOLEAN"),
        ("created", "TIMESTAMP WITH TIME ZONE"),
        ("day", "DATE"),
        ("local", "TIMESTAMP WITH TIME ZONE"),
        ("clock", "VARCHAR"),
        ("payload", "JSON"),
        ("raw", "VARCHAR"),
        ("place", "VARCHAR"),
        ("tags", "JSON"),
        ("owner", "JSON"),
        ("_ferry_synced_at", "TIMESTAMP WITH TIME ZONE"),
        ("_ferry_deleted_at", "TIMESTAMP WITH TIME ZONE"),
    ]
    .iter()
    .map(|(name, kind)| (name.to_string(), kind.to_string()))
    .collect();
    assert_eq!(types, expected);
    drop(setup.dir);
}

#[tokio::test]
async fn token_exchange_sends_signed_assertion() {
    let mut api = ApiState::default();
    api.tables
        .insert("test-project.sales.orders".into(), all_types_table(1));
    let emulator = BigQuery::start(api).await;
    let setup = setup(
        &emulator,
        "  orders: { template: table, table: test-project.sales.orders }\n",
    );

    let report = sync(&setup.config).await;

    assert_succeeded(&report);
    let provider = emulator.provider.lock().unwrap();
    assert_eq!(provider.token_requests.len(), 1);
    let request = &provider.token_requests[0];
    assert_eq!(request.names(), vec!["grant_type", "assertion"]);
    assert_eq!(
        request.field("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(request.authorization, None);
    // The emulator verified the signature with the key pair's public key.
    let (header, claims) = &provider.assertions[0];
    assert_eq!(header["alg"], json!("RS256"));
    assert_eq!(header["typ"], json!("JWT"));
    assert_eq!(header["kid"], json!(KEY_ID));
    assert_eq!(claims["iss"], json!(CLIENT_EMAIL));
    assert_eq!(claims["aud"], json!(format!("{}/token", emulator.url)));
    assert_eq!(claims["scope"], json!(READONLY_SCOPE));
    assert_eq!(claims.get("sub"), None);
    let issued = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - issued, 3600);
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - 60..=now).contains(&issued),
        "iat {issued}, now {now}"
    );
    // Both API requests carried the one token.
    assert_eq!(provider.accepted, vec!["at-1", "at-1"]);
}

/// Builds an API whose only query result is `rows` rows of the all-types schema.
fn query_state(sql: &str, rows: u32, polls: usize) -> ApiState {
    let mut api = ApiState::default();
    api.polls_before_complete = polls;
    api.results.insert(sql.to_string(), all_types_table(rows));
    api
}

const SQL: &str = "select * from `test-project.sales.orders`";

#[tokio::test]
async fn query_polls_job_then_reads_pages() {
    let emulator = BigQuery::start(query_state(SQL, 5, 2)).await;
    let setup = setup(
        &emulator,
        &format!("  orders:\n    template: query\n    query: \"{SQL}\"\n    page_size: 2\n"),
    );

    let report = sync(&setup.config).await;

    assert_succeeded(&report);
    let results = "/bigquery/v2/projects/test-project/queries/job_1";
    assert_eq!(
        emulator.requests(),
        vec![
            "POST /bigquery/v2/projects/test-project/queries".to_string(),
            format!("GET {results}?location=US&maxResults=0&timeoutMs=10000"),
            format!("GET {results}?location=US&maxResults=0&timeoutMs=10000"),
            format!("GET {results}?location=US&maxResults=0&timeoutMs=10000"),
            format!("GET {results}?location=US&maxResults=2&formatOptions.useInt64Timestamp=true"),
            format!(
                "GET {results}?location=US&maxResults=2&formatOptions.useInt64Timestamp=true&pageToken=tok-2"
            ),
            format!(
                "GET {results}?location=US&maxResults=2&formatOptions.useInt64Timestamp=true&pageToken=tok-4"
            ),
        ]
    );
    let bodies = emulator.with(|api| api.query_bodies.clone());
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["query"], json!(SQL));
    assert_eq!(body["useLegacySql"], json!(false));
    assert_eq!(body["maxResults"], json!(1));
    assert_eq!(body["timeoutMs"], json!(10000));
    assert_eq!(body["location"], Value::Null);
    assert_eq!(body["requestId"].as_str().map(str::len), Some(36));
    let rows = duck::query(
        &setup.db,
        &format!("select {ALL_TYPES_COLUMNS} from bigquery.orders order by id"),
    );
    assert_eq!(rows, expected_all_types(&[1, 2, 3, 4, 5]));
    assert_eq!(state(&setup.db, "orders"), json!({}));
}

#[tokio::test]
async fn view_is_read_through_query() {
    let sql = "SELECT * FROM `test-project.sales.open_orders`";
    let emulator = BigQuery::start(query_state(sql, 2, 0)).await;
    let setup = setup(
        &emulator,
        "  open_orders: { template: view, table: test-project.sales.open_orders }\n",
    );

    let report = sync(&setup.config).await;

    assert_succeeded(&report);
    let bodies = emulator.with(|api| api.query_bodies.clone());
    assert_eq!(bodies[0]["query"], json!(sql));
    let rows = duck::query(
        &setup.db,
        &format!("select {ALL_TYPES_COLUMNS} from bigquery.open_orders order by id"),
    );
    assert_eq!(rows, expected_all_types(&[1, 2]));
}

#[tokio::test]
async fn expired_token_mid_run_is_renewed() {
    let mut api = query_state(SQL, 5, 0);
    // The token expires after the job is created and its result polled.
    api.expire_tokens_after = Some(2);
    let emulator = BigQuery::start(api).await;
    let setup = setup(
        &emulator,
        &format!("  orders:\n    template: query\n    query: \"{SQL}\"\n    page_size: 2\n"),
    );

    let report = sync(&setup.config).await;

    assert_succeeded(&report);
    let results = "/bigquery/v2/projects/test-project/queries/job_1?location=US&maxResults=2&formatOptions.useInt64Timestamp=true";
    assert_eq!(
        emulator.requests(),
        vec![
            "POST /bigquery/v2/projects/test-project/queries".to_string(),
            "GET /bigquery/v2/projects/test-project/queries/job_1?location=US&maxResults=0&timeoutMs=10000".to_string(),
            format!("GET {results} (401)"),
            format!("GET {results}"),
            format!("GET {results}&pageToken=tok-2"),
            format!("GET {results}&pageToken=tok-4"),
        ]
    );
    let provider = emulator.provider.lock().unwrap();
    assert_eq!(provider.token_requests.len(), 2);
    assert_eq!(provider.assertions.len(), 2, "both assertions verified");
    assert_eq!(provider.rejected, 1);
    assert_eq!(
        provider.accepted,
        vec!["at-1", "at-1", "at-2", "at-2", "at-2"]
    );
    drop(provider);
    let rows = duck::query(&setup.db, "select id from bigquery.orders order by id");
    assert_eq!(
        rows,
        vec![vec!["1"], vec!["2"], vec!["3"], vec!["4"], vec!["5"]]
    );
}

#[tokio::test]
async fn resumed_run_continues_same_job() {
    let mut api = query_state(SQL, 6, 1);
    // The third page fails once with a status that is not retried.
    api.fail_once = vec![("pageToken=tok-4".into(), 400)];
    let emulator = BigQuery::start(api).await;
    let entities = format!(
        "  orders:\n    template: query\n    query: \"{SQL}\"\n    page_size: 2\n    chunk: {{ records: 2 }}\n"
    );
    let setup = setup(&emulator, &entities);

    let first = sync(&setup.config).await;

    assert_eq!(first.runs[0].outcome, Outcome::Failed, "{first:?}");
    let error = first.runs[0].error.as_ref().unwrap();
    assert!(error.message.contains("HTTP 400"), "{}", error.message);
    let saved = state(&setup.db, "orders");
    let position = &saved["resume"]["position"];
    assert_eq!(
        position["steps"]["job"],
        json!({"project": "test-project", "job_id": "job_1", "location": "US"})
    );
    assert_eq!(
        position["steps"]["result"],
        json!({"schema": all_types_schema()})
    );
    assert_eq!(
        position["page"],
        json!({"type": "cursor", "value": "tok-4"})
    );
    // A full refresh fills a staging table, swapped in when a run completes.
    let rows = duck::query(
        &setup.db,
        "select id from bigquery.orders__ferry_staging order by id",
    );
    assert_eq!(rows, vec![vec!["1"], vec!["2"], vec!["3"], vec!["4"]]);
    assert!(duck::try_query(&setup.db, "select id from bigquery.orders").is_err());

    let second = sync(&setup.config).await;

    assert_succeeded(&second);
    assert!(second.runs[0].resumed);
    let requests = emulator.requests();
    let posts = requests
        .iter()
        .filter(|line| line.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "the job is not created again: {requests:?}");
    assert_eq!(
        requests.last().unwrap(),
        "GET /bigquery/v2/projects/test-project/queries/job_1?location=US&maxResults=2&formatOptions.useInt64Timestamp=true&pageToken=tok-4"
    );
    let rows = duck::query(
        &setup.db,
        &format!("select {ALL_TYPES_COLUMNS} from bigquery.orders order by id"),
    );
    assert_eq!(rows, expected_all_types(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(state(&setup.db, "orders"), json!({}));
}

#[tokio::test]
async fn incremental_query_reads_saved_cursor() {
    let first_sql = "select * from t where created > timestamp '2015-01-01 00:00:00.000000+00'";
    let second_sql = "select * from t where created > timestamp '2015-07-24 19:53:19.006005+00'";
    let mut api = query_state(first_sql, 5, 0);
    api.results.insert(
        second_sql.into(),
        Table {
            schema: all_types_schema(),
            rows: vec![all_types_row(6)],
        },
    );
    let emulator = BigQuery::start(api).await;
    let entities = r#"  orders:
    template: query
    query: >-
      select * from t where created >
      timestamp '{{format_time state.cursor "%Y-%m-%d %H:%M:%S%.6f+00"}}'
    mode: incremental
    primary_key: [id]
    incremental: { cursor_field: created, start: "2015-01-01T00:00:00Z" }
"#;
    let setup = setup(&emulator, entities);

    assert_succeeded(&sync(&setup.config).await);
    assert_eq!(
        state(&setup.db, "orders"),
        json!({"cursor": "2015-07-24T19:53:19.006005Z"})
    );
    assert_succeeded(&sync(&setup.config).await);

    let bodies = emulator.with(|api| api.query_bodies.clone());
    let sent: Vec<&str> = bodies
        .iter()
        .map(|body| body["query"].as_str().unwrap())
        .collect();
    assert_eq!(sent, vec![first_sql, second_sql]);
    let rows = duck::query(&setup.db, "select id from bigquery.orders order by id");
    assert_eq!(
        rows,
        vec![
            vec!["1"],
            vec!["2"],
            vec!["3"],
            vec!["4"],
            vec!["5"],
            vec!["6"]
        ]
    );
    assert_eq!(
        state(&setup.db, "orders"),
        json!({"cursor": "2015-07-24T19:53:19.006006Z"})
    );
}

#[tokio::test]
async fn table_name_without_dataset_is_rejected() {
    let emulator = BigQuery::start(ApiState::default()).await;
    let setup = setup(&emulator, "  orders: { template: table, table: orders }\n");

    let problems = match ferry::spec::load_with_env(&setup.config, &|_| None) {
        Ok(_) => panic!("the flow loads, but its table name has no dataset"),
        Err(problems) => problems,
    };

    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let flow = setup.config.join("flow.yaml");
    assert_eq!(
        messages,
        vec![format!(
            "{}:11:37: parameter \"table\" must match the pattern [^/]+[.][^./]+[.][^./]+, found \"orders\"",
            flow.display()
        )]
    );
    assert!(emulator.requests().is_empty());
}

#[tokio::test]
async fn rejected_assertion_reports_provider_error() {
    let mut api = ApiState::default();
    api.tables
        .insert("test-project.sales.orders".into(), all_types_table(1));
    let emulator = BigQuery::start(api).await;
    emulator.provider.lock().unwrap().scripted = [(
        400,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    )]
    .into();
    let setup = setup(
        &emulator,
        "  orders: { template: table, table: test-project.sales.orders }\n",
    );

    let report = sync(&setup.config).await;

    let run = &report.runs[0];
    assert_eq!(run.outcome, Outcome::Failed);
    let error = run.error.as_ref().unwrap();
    assert_eq!(error.kind, "auth");
    assert!(
        error
            .message
            .contains("HTTP 400: invalid_grant: Invalid JWT Signature."),
        "{}",
        error.message
    );
    assert!(!error.message.contains("PRIVATE KEY"), "{}", error.message);
    assert!(emulator.requests().is_empty());
}

#[tokio::test]
async fn broken_private_key_is_never_shown() {
    let emulator = BigQuery::start(ApiState::default()).await;
    let setup = setup(
        &emulator,
        "  orders: { template: table, table: test-project.sales.orders }\n",
    );
    let key_path = setup.dir.path().join("service-account.json");
    let mut key: Value = serde_json::from_str(&emulator.key_file).unwrap();
    key["private_key"] = json!(
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IHNlY3JldC1ieXRlcw==\n-----END PRIVATE KEY-----\n"
    );
    std::fs::write(&key_path, key.to_string()).unwrap();

    let report = sync(&setup.config).await;

    let error = report.runs[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "auth");
    assert!(
        error
            .message
            .contains("http.auth.service_account has a private_key that is not an RSA private key"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("bm90IGEga2V5"), "{}", error.message);
    assert!(emulator.requests().is_empty());
}

/// Reads the response bodies copied from Google's python-bigquery tests.
fn client_fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/bigquery-client-responses.json")).unwrap()
}

#[tokio::test]
async fn client_fixture_rows_decode() {
    let fixture = client_fixture();
    let mut api = ApiState::default();
    let examples = [
        ("people", "tabledata_list_page"),
        ("colors", "tabledata_list_repeated_and_record"),
    ];
    for (name, key) in examples {
        let example = &fixture[key];
        let table = Table {
            schema: example["table_schema"].clone(),
            rows: example["response"]["rows"].as_array().unwrap().clone(),
        };
        api.tables
            .insert(format!("test-project.fixtures.{name}"), table);
    }
    let emulator = BigQuery::start(api).await;
    let setup = setup(
        &emulator,
        "  people: { template: table, table: test-project.fixtures.people }\n  colors: { template: table, table: test-project.fixtures.colors }\n",
    );

    let report = sync(&setup.config).await;

    assert_succeeded(&report);
    let people = duck::query(
        &setup.db,
        "select full_name, age, joined from bigquery.people order by full_name",
    );
    assert_eq!(
        people,
        vec![
            vec!["Bharney Rhubble", "33", "2015-07-24 19:53:19.006001+00"],
            vec!["Bhettye Rhubble", "NULL", "NULL"],
            vec!["Phred Phlyntstone", "32", "2015-07-24 19:53:19.006+00"],
            vec!["Wylma Phlyntstone", "29", "2015-07-24 19:53:19.006002+00"],
        ]
    );
    let colors = duck::query(&setup.db, "select color, \"struct\" from bigquery.colors");
    assert_eq!(
        colors,
        vec![vec![
            "[\"red\",\"green\"]",
            "[{\"index\":[1,2],\"score\":[3.1415,1.414]}]"
        ]]
    );
}

#[tokio::test]
async fn client_fixture_poll_sequence_replays() {
    // jobs.query answers jobComplete: false, the poll returns the schema
    // without rows, and two pages follow, the first with pageToken page-2.
    let fixture = client_fixture();
    let sequence = fixture["jobs_query_then_poll"]["sequence"]
        .as_array()
        .unwrap()
        .clone();
    let server = wiremock::MockServer::start().await;
    let results = "/bigquery/v2/projects/response-project/queries/response-job-id";
    let first_page = format!(
        "{results}?location=response-location&maxResults=10000&formatOptions.useInt64Timestamp=true"
    );
    let second_page = format!("{first_page}&pageToken=page-2");
    let poll = format!("{results}?location=response-location&maxResults=0&timeoutMs=10000");
    mount(
        &server,
        vec![
            (
                "/token",
                json_response(json!({"access_token": "ya29.fixture-token", "expires_in": 3599, "token_type": "Bearer"})),
            ),
            (
                "/bigquery/v2/projects/test-project/queries",
                json_response(sequence[0]["response"].clone()),
            ),
            (&poll, json_response(sequence[2]["response"].clone())),
            (&first_page, json_response(sequence[4]["response"].clone())),
            (&second_page, json_response(sequence[5]["response"].clone())),
        ],
    )
    .await;
    let key = generate_key();
    let setup = setup_with(
        &server.uri(),
        &key_file(&key, &format!("{}/token", server.uri())),
        "  people:\n    template: query\n    query: \"SELECT full_name, age FROM people;\"\n",
    );

    let report = sync(&setup.config).await;

    assert_succeeded(&report);
    assert_eq!(
        requests(&server).await,
        vec![
            "POST /token".to_string(),
            "POST /bigquery/v2/projects/test-project/queries".to_string(),
            format!("GET {poll}"),
            format!("GET {first_page}"),
            format!("GET {second_page}"),
        ]
    );
    let rows = duck::query(
        &setup.db,
        "select full_name, age from bigquery.people order by age",
    );
    assert_eq!(
        rows,
        vec![
            vec!["Whillma Phlyntstone", "27"],
            vec!["Bhetty Rhubble", "28"],
            vec!["Phred Phlyntstone", "32"],
            vec!["Bharney Rhubble", "33"],
            vec!["Pearl Slaghoople", "53"],
        ]
    );
}

#[tokio::test]
async fn check_connection_lists_projects() {
    let emulator = BigQuery::start(ApiState::default()).await;
    let setup = setup(
        &emulator,
        "  orders: { template: table, table: test-project.sales.orders }\n",
    );
    let loaded = ferry::spec::load_with_env(&setup.config, &|_| None).unwrap();
    let flow = loaded.catalog.flows["warehouse"].clone();

    ferry::engine::check_connection(&flow)
        .await
        .expect("the check succeeds");

    assert_eq!(
        emulator.requests(),
        vec!["GET /bigquery/v2/projects?maxResults=1"]
    );
}
