//! `examples/github` end to end: the example connector, a local emulation
//! of GitHub's REST and GraphQL APIs, and a DuckDB file, checked through
//! the requests sent and the rows and state written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry::sync::{FlowReport, Outcome, RunOptions, run_flow};
use serde_json::{Value, json};

use crate::support::duck;
use crate::support::github::{Comment, Github, TOKEN, hours, issues};

const EXAMPLE: &str = include_str!("../../examples/github/connector.yaml");

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
    github: Github,
}

/// Writes the example connector, with test-speed rate limits and retries
/// and `extra` replacements, and a flow of `entities` against `github`.
fn setup(github: Github, entities: &str, extra: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.d");
    std::fs::create_dir(&config).unwrap();
    let mut connector = EXAMPLE
        .replace("requests_per_second: 1\n", "requests_per_second: 1000\n")
        .replace(
            "max_attempts: 6\n",
            "max_attempts: 2\n    initial_backoff_seconds: 0.01\n    max_backoff_seconds: 0.02\n",
        );
    for (from, to) in extra {
        assert!(connector.contains(from), "the example has no {from:?}");
        connector = connector.replace(from, to);
    }
    std::fs::write(config.join("github.yaml"), connector).unwrap();
    // Not `github.duckdb`: DuckDB names the catalog after the file, and
    // a catalog named like the schema makes `github.comments` ambiguous.
    let db = dir.path().join("test.duckdb");
    let flow = format!(
        "kind: Flow\nname: test\nsource:\n  connector: github\n  config:\n    token: ${{GITHUB_TOKEN}}\n    owner: octo\n    repo: hello\n    base_url: \"{}\"\n    page_size: 2\ndestination: \"duckdb://{}\"\nentities: {entities}\n",
        github.url,
        db.display()
    );
    std::fs::write(config.join("flow.yaml"), flow).unwrap();
    Setup {
        dir,
        config,
        db,
        github,
    }
}

fn env(name: &str) -> Option<String> {
    (name == "GITHUB_TOKEN").then(|| TOKEN.to_string())
}

async fn sync(setup: &Setup, entities: &[&str], full: bool) -> FlowReport {
    let loaded = ferry::spec::load_with_env(&setup.config, &env).expect("config loads");
    let flow = loaded.catalog.flows["test"].clone();
    let entities: Vec<String> = entities.iter().map(|name| name.to_string()).collect();
    let options = RunOptions {
        full,
        ..RunOptions::default()
    };
    run_flow(Arc::clone(&flow), &entities, &options).await
}

fn assert_succeeded(report: &FlowReport) {
    for run in &report.runs {
        assert_eq!(run.outcome, Outcome::Succeeded, "{run:?}");
    }
}

fn comments_table(db: &Path) -> Vec<Vec<String>> {
    duck::query(
        db,
        "select id, issues_number, body from github.comments order by id",
    )
}

fn state(db: &Path, entity: &str) -> Value {
    let sql = format!(
        "select state::varchar from _ferry.state where flow = 'test' and entity = '{entity}'"
    );
    let rows = duck::query(db, &sql);
    rows.first()
        .map(|row| serde_json::from_str(&row[0]).unwrap())
        .unwrap_or(Value::Null)
}

fn comment_row(id: u64, number: u64, index: u64) -> Vec<String> {
    vec![
        id.to_string(),
        number.to_string(),
        format!("Comment {index} on issue {number}"),
    ]
}

/// Returns the comments table of `issues(5)`: issue n has n % 4 comments.
fn five_issues_comments() -> Vec<Vec<String>> {
    vec![
        comment_row(101, 1, 1),
        comment_row(201, 2, 1),
        comment_row(202, 2, 2),
        comment_row(301, 3, 1),
        comment_row(302, 3, 2),
        comment_row(303, 3, 3),
        comment_row(501, 5, 1),
    ]
}

fn issues_page(page: Option<u32>, since: Option<&str>) -> String {
    let mut line =
        "GET /repos/octo/hello/issues?state=all&per_page=2&sort=updated&direction=asc".to_string();
    if let Some(since) = since {
        line.push_str(&format!("&since={since}"));
    }
    if let Some(page) = page {
        line.push_str(&format!("&page={page}"));
    }
    line
}

fn comments_page(number: u64, page: Option<u32>) -> String {
    let mut line = format!("GET /repos/octo/hello/issues/{number}/comments?per_page=2");
    if let Some(page) = page {
        line.push_str(&format!("&page={page}"));
    }
    line
}

/// Splits requests into the issues requests, in order, and the comments
/// requests, sorted: parents run concurrently, so their order varies.
fn split(requests: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (mut comments, issues): (Vec<String>, Vec<String>) = requests
        .into_iter()
        .partition(|line| line.contains("/comments"));
    comments.sort();
    (issues, comments)
}

#[tokio::test]
async fn example_flow_loads() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github");
    let loaded = ferry::spec::load_with_env(&folder, &env).expect("the example loads");
    let flow = &loaded.catalog.flows["github"];
    let names: Vec<&str> = flow
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["issues", "comments", "issues_graphql", "releases"]
    );
    let comments = flow.entity("comments").unwrap();
    assert_eq!(comments.parent.as_ref().unwrap().concurrency, 4);
    assert!(flow.entity("releases").unwrap().graphql.is_some());
}

#[tokio::test]
async fn rest_issues_and_comments_sync() {
    let github = Github::start(issues(5)).await;
    github.with(|state| state.deleted = vec![4]);
    let setup = setup(github, "[issues, comments]", &[]);

    let report = sync(&setup, &[], false).await;

    assert_succeeded(&report);
    let (issue_requests, comment_requests) = split(setup.github.requests());
    assert_eq!(
        issue_requests,
        vec![
            issues_page(None, None),
            issues_page(Some(2), None),
            issues_page(Some(3), None)
        ]
    );
    assert_eq!(
        comment_requests,
        vec![
            comments_page(1, None),
            comments_page(2, None),
            comments_page(3, None),
            comments_page(3, Some(2)),
            comments_page(4, None),
            comments_page(5, None),
        ]
    );
    assert_eq!(comments_table(&setup.db), five_issues_comments());
    let issue_rows = duck::query(
        &setup.db,
        "select number from github.issues order by number",
    );
    assert_eq!(issue_rows.len(), 5);
    // The next run starts after the last parent this one read.
    let comments_state = state(&setup.db, "comments");
    assert_eq!(comments_state["parents"]["key"], json!([1005]));
    assert_eq!(comments_state["parents"]["done"], json!(true));
    assert_eq!(comments_state.get("resume"), None);
}

#[tokio::test]
async fn changed_issue_drives_its_comments_only() {
    let github = Github::start(issues(5)).await;
    let setup = setup(github, "[issues, comments]", &[]);
    assert_succeeded(&sync(&setup, &[], false).await);
    setup.github.clear_requests();

    // A new comment on issue 3 updates the issue, as on GitHub.
    setup.github.with(|state| {
        let issue = &mut state.issues[2];
        issue.updated_at = hours(10);
        issue.comments.push(Comment {
            id: 304,
            body: "Comment 4 on issue 3".to_string(),
            updated_at: hours(10),
        });
    });
    let report = sync(&setup, &[], false).await;

    assert_succeeded(&report);
    let (issue_requests, comment_requests) = split(setup.github.requests());
    // The saved cursor (issue 5's time) minus the 60 s lookback.
    assert_eq!(
        issue_requests,
        vec![issues_page(None, Some("2024-01-01T04:59:00Z"))]
    );
    // Issues 5 (within the lookback) and 3 (changed) were written again.
    assert_eq!(
        comment_requests,
        vec![
            comments_page(3, None),
            comments_page(3, Some(2)),
            comments_page(5, None)
        ]
    );
    let mut expected = five_issues_comments();
    expected.insert(6, comment_row(304, 3, 4));
    assert_eq!(comments_table(&setup.db), expected);
}

#[tokio::test]
async fn child_alone_reads_changed_parents_or_all() {
    let github = Github::start(issues(5)).await;
    let setup = setup(github, "[issues, comments]", &[]);
    assert_succeeded(&sync(&setup, &[], false).await);
    setup.github.clear_requests();

    let report = sync(&setup, &["comments"], false).await;
    assert_succeeded(&report);
    assert_eq!(report.runs.len(), 1);
    assert!(setup.github.requests().is_empty());

    let report = sync(&setup, &["comments"], true).await;
    assert_succeeded(&report);
    let (issue_requests, comment_requests) = split(setup.github.requests());
    assert!(issue_requests.is_empty());
    assert_eq!(comment_requests.len(), 6);
    assert_eq!(comments_table(&setup.db), five_issues_comments());
}

#[tokio::test]
async fn failure_mid_parent_list_resumes_there() {
    let github = Github::start(issues(5)).await;
    github.with(|state| state.failing = vec![3]);
    let setup = setup(
        github,
        "[issues, comments]",
        &[("concurrency: 4", "concurrency: 1")],
    );

    let first = sync(&setup, &[], false).await;

    assert_eq!(first.runs[0].outcome, Outcome::Succeeded);
    assert_eq!(first.runs[1].outcome, Outcome::Failed);
    let error = first.runs[1].error.as_ref().unwrap();
    assert!(
        error
            .message
            .contains("entity comments, parent issues [1003]"),
        "{}",
        error.message
    );
    assert_eq!(
        comments_table(&setup.db),
        vec![
            comment_row(101, 1, 1),
            comment_row(201, 2, 1),
            comment_row(202, 2, 2)
        ]
    );
    let resume = &state(&setup.db, "comments")["resume"]["position"]["parent"];
    assert_eq!(resume["key"], json!([1002]));
    assert_eq!(resume["done"], json!(true));

    setup.github.with(|state| state.failing.clear());
    setup.github.clear_requests();
    let second = sync(&setup, &[], false).await;

    assert_succeeded(&second);
    let (_, comment_requests) = split(setup.github.requests());
    // Issues 1 and 2 are not read again; 5 was written again by the
    // issues run (lookback) and comes after 4 either way.
    assert_eq!(
        comment_requests,
        vec![
            comments_page(3, None),
            comments_page(3, Some(2)),
            comments_page(4, None),
            comments_page(5, None)
        ]
    );
    assert_eq!(comments_table(&setup.db), five_issues_comments());
}

/// Runs the real binary with the emulation's token in its environment.
fn ferry(setup: &Setup, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .arg("--config")
        .arg(&setup.config)
        .env("GITHUB_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .env_remove("FERRY_LOG_FORMAT")
        .current_dir(setup.dir.path());
    command
}

fn comment_requests(github: &Github) -> Vec<String> {
    github
        .requests()
        .into_iter()
        .filter(|line| line.contains("/comments"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_process_resumes_in_parent_list() {
    let github = Github::start(issues(40)).await;
    github.with(|state| state.comments_delay = Duration::from_millis(30));
    // Every comments page commits on its own, so a kill lands between
    // committed parents.
    let setup = setup(
        github,
        "[issues, comments]",
        &[(
            "    on_status:\n      # An issue deleted",
            "    chunk: { records: 1, seconds: 0.01 }\n    on_status:\n      # An issue deleted",
        )],
    );

    let mut child = ferry(&setup, &["sync", "test"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while comment_requests(&setup.github).len() < 16 {
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
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before_kill = comment_requests(&setup.github);
    setup.github.clear_requests();

    let output = ferry(&setup, &["sync", "test"]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let after_kill = comment_requests(&setup.github);
    // The resumed run does not start the parent list again.
    assert!(
        !after_kill.contains(&comments_page(1, None)),
        "issue 1 was read again: {after_kill:?}"
    );
    // Together the two runs read every parent. The resumed run repeats
    // only pages fetched but not committed at the kill. Those are at most
    // the writer's channel (4 pages), for each of the 4 running parents its
    // channel (2) and request in flight (1), and the chunk in hand (1).
    // The last issue adds one, because the issues run wrote it again.
    let mut union: Vec<String> = before_kill.iter().chain(&after_kill).cloned().collect();
    union.sort();
    union.dedup();
    let clean: usize = (1..=40u64).map(|n| if n % 4 == 3 { 2 } else { 1 }).sum();
    assert_eq!(union.len(), clean);
    let repeated = after_kill
        .iter()
        .filter(|line| before_kill.contains(line))
        .count();
    assert!(
        repeated <= 18,
        "{repeated} requests repeated: {after_kill:?}"
    );

    let rows = duck::query(
        &setup.db,
        "select count(*), count(distinct id) from github.comments",
    );
    let expected: u64 = (1..=40u64).map(|n| n % 4).sum();
    assert_eq!(rows, vec![vec![expected.to_string(), expected.to_string()]]);
    let numbers = duck::query(
        &setup.db,
        "select count(*) from github.comments where id // 100 <> issues_number",
    );
    assert_eq!(numbers, vec![vec!["0".to_string()]]);
}

fn graphql_variables(github: &Github) -> Vec<Value> {
    github
        .requests()
        .iter()
        .filter_map(|line| line.strip_prefix("POST /graphql "))
        .map(|variables| serde_json::from_str(variables).unwrap())
        .collect()
}

fn cursor(index: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("cursor:{index}"))
}

#[tokio::test]
async fn graphql_issues_sync_and_increment() {
    let github = Github::start(issues(5)).await;
    let setup = setup(github, "[issues_graphql]", &[]);

    let report = sync(&setup, &[], false).await;

    assert_succeeded(&report);
    assert_eq!(
        graphql_variables(&setup.github),
        vec![
            json!({"owner": "octo", "name": "hello", "first": 2}),
            json!({"owner": "octo", "name": "hello", "first": 2, "after": cursor(1)}),
            json!({"owner": "octo", "name": "hello", "first": 2, "after": cursor(3)}),
        ]
    );
    let rows = duck::query(
        &setup.db,
        "select id, number, title, updatedAt from github.issues_graphql order by number",
    );
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[0],
        vec!["I_kwDOemu0001", "1", "Issue 1", "2024-01-01T01:00:00Z"]
    );
    assert_eq!(
        state(&setup.db, "issues_graphql"),
        json!({"cursor": "2024-01-01T05:00:00Z"})
    );

    setup.github.clear_requests();
    let report = sync(&setup, &[], false).await;
    assert_succeeded(&report);
    assert_eq!(
        graphql_variables(&setup.github),
        vec![
            json!({"owner": "octo", "name": "hello", "first": 2, "since": "2024-01-01T05:00:00Z"})
        ]
    );
}

#[tokio::test]
async fn graphql_rate_limit_in_body_is_retried() {
    let github = Github::start(issues(3)).await;
    github.with(|state| state.rate_limited = 1);
    let setup = setup(github, "[issues_graphql]", &[]);

    let report = sync(&setup, &[], false).await;

    assert_succeeded(&report);
    let variables = graphql_variables(&setup.github);
    assert_eq!(variables.len(), 3);
    assert_eq!(variables[0], variables[1]);
    assert_eq!(report.runs[0].requests, 3);
    assert_eq!(report.runs[0].records, 3);
}

#[tokio::test]
async fn graphql_null_end_cursor_fails_the_run() {
    let github = Github::start(issues(5)).await;
    github.with(|state| state.null_end_cursor = true);
    let setup = setup(github, "[issues_graphql]", &[]);

    let report = sync(&setup, &[], false).await;

    let run = &report.runs[0];
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
    assert_eq!(graphql_variables(&setup.github).len(), 1);
    // The first page is kept, and the next run requests it again.
    assert_eq!(run.records, 2);
    let saved = state(&setup.db, "issues_graphql");
    assert_eq!(
        saved["resume"]["position"]["page"],
        json!({"type": "start"})
    );
    assert_eq!(saved.get("cursor"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_reads_graphql_and_child_entities() {
    let github = Github::start(issues(3)).await;
    let setup = setup(github, "[issues]", &[]);
    let settings = |entity: &str| {
        vec![
            "preview".to_string(),
            "github".to_string(),
            entity.to_string(),
            "--set".to_string(),
            format!("token={TOKEN}"),
            "--set".to_string(),
            "owner=octo".to_string(),
            "--set".to_string(),
            "repo=hello".to_string(),
            "--set".to_string(),
            format!("base_url={}", setup.github.url),
            "--set".to_string(),
            "page_size=2".to_string(),
            "--json".to_string(),
        ]
    };

    let args = settings("issues_graphql");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ferry(&setup, &args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let preview: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(preview["records_in_page"], json!(2));
    assert_eq!(preview["more_pages"], json!(true));
    assert_eq!(preview["records"][0]["id"], json!("I_kwDOemu0001"));

    let args = settings("comments");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ferry(&setup, &args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let preview: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        preview["records"],
        json!([{"id": 101, "body": "Comment 1 on issue 1", "user": {"login": "octocat"},
                "updated_at": "2024-01-01T01:00:00Z",
                "issue_url": "https://api.github.com/repos/octo/hello/issues/1",
                "issues_number": 1}])
    );
    let output = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!output.contains(TOKEN));
}
