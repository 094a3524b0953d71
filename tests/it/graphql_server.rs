//! GraphQL entities against a real GraphQL server (graphql-yoga on
//! Node.js, see `support::graphql_server`) into DuckDB files: relay
//! pagination, child pagination inside parent iteration, incremental
//! variables, errors with and without data, a null `endCursor`, rate
//! limits in the body, and validation errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry::sync::{FlowReport, Outcome, RunOptions, run_flow};
use serde_json::{Value, json};

use crate::support::duck;
use crate::support::graphql_server::server;

const CONNECTOR: &str = r#"kind: Connector
name: yoga
config:
  base_url: { type: string }
  key: { type: string }
http:
  base_url: "{{config.base_url}}"
  retry: { max_attempts: 3, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02 }
entities:
  issues:
    path: /graphql
    graphql:
      query: >-
        query Issues($first: Int!, $after: String, $since: String) {
          repository(owner: "octo", name: "hello") {
            issues(first: $first, after: $after, since: $since) {
              nodes { id number updatedAt } pageInfo { hasNextPage endCursor } } } }
      operation_name: Issues
      variables: { first: 3 }
    records: "$.data.repository.issues.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.repository.issues.pageInfo" }
    incremental: { cursor_field: updatedAt, param: since }
  comments:
    parent: { entity: issues, fields: [number], concurrency: 3 }
    path: /graphql
    graphql:
      query: >-
        query Comments($number: Int!, $after: String) {
          repository(owner: "octo", name: "hello") { issue(number: $number) {
            comments(first: 1, after: $after) { nodes { id body } pageInfo { hasNextPage endCursor } } } } }
      variables: { number: "{{parent.number}}" }
    records: "$.data.repository.issue.comments.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.repository.issue.comments.pageInfo" }
  titles:
    path: /graphql
    graphql:
      query: >-
        query Titles($after: String) { repository(owner: "octo", name: "hello") {
          issues(first: 3, after: $after) { nodes { id title } pageInfo { hasNextPage endCursor } } } }
    records: "$.data.repository.issues.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.repository.issues.pageInfo" }
    partial_ok: true
  strict_titles:
    path: /graphql
    graphql:
      query: >-
        query Titles($after: String) { repository(owner: "octo", name: "hello") {
          issues(first: 3, after: $after) { nodes { id title } pageInfo { hasNextPage endCursor } } } }
    records: "$.data.repository.issues.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.repository.issues.pageInfo" }
  missing_repository:
    path: /graphql
    graphql:
      query: >-
        { requiredRepository(owner: "nobody", name: "hello") {
          issues(first: 3) { nodes { id } pageInfo { hasNextPage endCursor } } } }
    records: "$.data.requiredRepository.issues.nodes[*]"
    primary_key: [id]
    partial_ok: true
  broken:
    path: /graphql
    graphql:
      query: >-
        query Broken($after: String) { brokenIssues(first: 3, after: $after) {
          nodes { id } pageInfo { hasNextPage endCursor } } }
    records: "$.data.brokenIssues.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.brokenIssues.pageInfo" }
  throttled:
    path: /graphql
    graphql:
      query: >-
        query Throttled($key: String!, $after: String) { throttled(key: $key, failures: 2, first: 4, after: $after) {
          nodes { id } pageInfo { hasNextPage endCursor } } }
      variables: { key: "{{config.key}}" }
    records: "$.data.throttled.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.throttled.pageInfo" }
  misspelt:
    path: /graphql
    graphql:
      query: '{ repository(owner: "octo", name: "hello") { issues(first: 3) { nodez { id } } } }'
    records: "$.data.repository.issues.nodes[*]"
    primary_key: [id]
templates:
  query:
    description: A GraphQL query of the flow's own
    path: /graphql
"#;

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
}

/// Writes the connector and a flow of `entities` against the server.
fn setup(url: &str, entities: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.d");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("yoga.yaml"), CONNECTOR).unwrap();
    let db = dir.path().join("test.duckdb");
    // Each setup throttles under its own key, because the server counts
    // failures per key for the whole test binary.
    let key = uuid::Uuid::new_v4().to_string();
    let flow = format!(
        "kind: Flow\nname: test\nsource:\n  connector: yoga\n  config:\n    base_url: \"{url}\"\n    key: \"{key}\"\ndestination: \"duckdb://{}\"\nentities: {entities}\n",
        db.display()
    );
    std::fs::write(config.join("flow.yaml"), flow).unwrap();
    Setup {
        _dir: dir,
        config,
        db,
    }
}

async fn sync(setup: &Setup) -> FlowReport {
    let loaded = ferry::spec::load_with_env(&setup.config, &|_| None).expect("config loads");
    let flow = loaded.catalog.flows["test"].clone();
    run_flow(Arc::clone(&flow), &[], &RunOptions::default()).await
}

fn query(db: &Path, sql: &str) -> Vec<Vec<String>> {
    duck::query(db, sql)
}

fn run_of<'a>(report: &'a FlowReport, entity: &str) -> &'a ferry::sync::RunReport {
    report
        .runs
        .iter()
        .find(|run| run.entity == entity)
        .unwrap_or_else(|| panic!("no run of {entity}: {report:?}"))
}

fn state(db: &Path, entity: &str) -> Value {
    let sql = format!(
        "select state::varchar from _ferry.state where flow = 'test' and entity = '{entity}'"
    );
    query(db, &sql)
        .first()
        .map(|row| serde_json::from_str(&row[0]).unwrap())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn relay_and_child_pagination() {
    let Some(server) = server() else { return };
    let setup = setup(&server.url, "[issues, comments]");

    let report = sync(&setup).await;

    assert_eq!(
        run_of(&report, "issues").outcome,
        Outcome::Succeeded,
        "{report:?}"
    );
    assert_eq!(
        run_of(&report, "comments").outcome,
        Outcome::Succeeded,
        "{report:?}"
    );
    // Seven issues, three per page.
    assert_eq!(run_of(&report, "issues").requests, 3);
    assert_eq!(
        query(
            &setup.db,
            "select id, number, updatedAt from yoga.issues order by number"
        ),
        (1..=7)
            .map(|n| vec![
                format!("I_{n}"),
                n.to_string(),
                format!("2024-01-01T0{n}:00:00Z")
            ])
            .collect::<Vec<_>>()
    );
    // Issue n has n % 3 comments, one per page: a sequence of one request
    // per comment, and one for an issue without comments.
    assert_eq!(
        query(
            &setup.db,
            "select id, body, issues_number from yoga.comments order by id"
        ),
        vec![
            vec!["C_1_1", "Comment 1 on issue 1", "1"],
            vec!["C_2_1", "Comment 1 on issue 2", "2"],
            vec!["C_2_2", "Comment 2 on issue 2", "2"],
            vec!["C_4_1", "Comment 1 on issue 4", "4"],
            vec!["C_5_1", "Comment 1 on issue 5", "5"],
            vec!["C_5_2", "Comment 2 on issue 5", "5"],
            vec!["C_7_1", "Comment 1 on issue 7", "7"],
        ]
    );
    assert_eq!(run_of(&report, "comments").requests, 9);
    assert_eq!(
        state(&setup.db, "issues"),
        json!({"cursor": "2024-01-01T07:00:00Z"})
    );

    // The second run sends the saved cursor as the `since` variable: only
    // issue 7 comes back, and only its comments are read again.
    let report = sync(&setup).await;
    assert_eq!(run_of(&report, "issues").records, 1);
    assert_eq!(run_of(&report, "issues").requests, 1);
    assert_eq!(run_of(&report, "comments").records, 1);
    assert_eq!(run_of(&report, "comments").requests, 1);
}

#[tokio::test]
async fn partial_ok_keeps_data_and_counts_errors() {
    let Some(server) = server() else { return };
    let setup = setup(&server.url, "[titles]");

    let report = sync(&setup).await;

    let run = run_of(&report, "titles");
    assert_eq!(run.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(run.records, 7);
    assert_eq!(run.graphql_errors, 1);
    assert_eq!(
        query(
            &setup.db,
            "select id, title from yoga.titles where id in ('I_3', 'I_4') order by id"
        ),
        vec![vec!["I_3", "Issue 3"], vec!["I_4", "NULL"]]
    );
}

#[tokio::test]
async fn errors_with_data_fail_without_partial_ok() {
    let Some(server) = server() else { return };
    let setup = setup(&server.url, "[strict_titles]");

    let report = sync(&setup).await;

    let run = run_of(&report, "strict_titles");
    assert_eq!(run.outcome, Outcome::Failed);
    let error = run.error.as_ref().unwrap();
    assert_eq!(error.kind, "graphql");
    assert!(
        error.message.contains(
            "the GraphQL response has 1 error: The title of issue 4 could not be read. (at repository.issues.nodes.0.title)"
        ),
        "{}",
        error.message
    );
    // The page before the failing one is committed.
    assert_eq!(run.records, 3);
    assert_eq!(
        query(&setup.db, "select count(*) from yoga.strict_titles"),
        vec![vec!["3"]]
    );
}

#[tokio::test]
async fn errors_without_data_fail_even_with_partial_ok() {
    let Some(server) = server() else { return };
    let setup = setup(&server.url, "[missing_repository]");

    let report = sync(&setup).await;

    let run = run_of(&report, "missing_repository");
    assert_eq!(run.outcome, Outcome::Failed);
    let error = run.error.as_ref().unwrap();
    assert_eq!(error.kind, "graphql");
    assert!(
        error.message.contains(
            "Could not resolve to a Repository with the name 'nobody/hello'. (at requiredRepository)"
        ),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("no data to keep"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn null_end_cursor_stops_the_run() {
    let Some(server) = server() else { return };
    let setup = setup(&server.url, "[broken]");

    let report = sync(&setup).await;

    let run = run_of(&report, "broken");
    assert_eq!(run.outcome, Outcome::Failed);
    let error = run.error.as_ref().unwrap();
    assert_eq!(error.kind, "response");
    assert!(
        error
            .message
            .contains("hasNextPage true but endCursor null"),
        "{}",
        error.message
    );
    assert_eq!(run.requests, 1);
    assert_eq!(run.records, 3);
}

#[tokio::test]
async fn rate_limit_in_body_is_retried() {
    let Some(server) = server() else { return };
    let setup = setup(&server.url, "[throttled]");

    let report = sync(&setup).await;

    let run = run_of(&report, "throttled");
    assert_eq!(run.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(run.records, 7);
    // Two refusals, then two pages of four.
    assert_eq!(run.requests, 4);
}

#[tokio::test]
async fn flow_declared_query_syncs() {
    let Some(server) = server() else { return };
    let entities = r#"
  commented:
    template: query
    graphql:
      query: >-
        query Commented($number: Int!, $after: String) { repository(owner: "octo", name: "hello") {
          issue(number: $number) { comments(first: 1, after: $after) { nodes { id body } pageInfo { hasNextPage endCursor } } } } }
      variables: { number: 5 }
    records: "$.data.repository.issue.comments.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.repository.issue.comments.pageInfo" }"#;
    let setup = setup(&server.url, entities);

    let report = sync(&setup).await;

    let run = run_of(&report, "commented");
    assert_eq!(run.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(run.requests, 2);
    assert_eq!(
        query(&setup.db, "select id, body from yoga.commented order by id"),
        vec![
            vec!["C_5_1", "Comment 1 on issue 5"],
            vec!["C_5_2", "Comment 2 on issue 5"]
        ]
    );
}

#[tokio::test]
async fn validation_error_names_the_field() {
    let Some(server) = server() else { return };
    let setup = setup(&server.url, "[misspelt]");

    let report = sync(&setup).await;

    let run = run_of(&report, "misspelt");
    assert_eq!(run.outcome, Outcome::Failed);
    let error = run.error.as_ref().unwrap();
    assert_eq!(error.kind, "http");
    assert!(error.message.contains("HTTP 400"), "{}", error.message);
    assert!(
        error
            .message
            .contains(r#"Cannot query field \"nodez\" on type \"IssueConnection\"."#),
        "{}",
        error.message
    );
}
