//! The `ferry` binary: exit codes, messages and JSON output.

use std::process::{Command, Output};

use crate::support::api::{Api, records};

fn ferry(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("FERRY_LOG_FORMAT")
        .env_remove("FERRY_CONFIG");
    command
}

fn text(output: &[u8]) -> String {
    String::from_utf8_lossy(output).into_owned()
}

/// A config folder with the test API's connector and one flow.
fn folder(api_url: &str, token: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let connector = r#"kind: Connector
name: testapi
config:
  base_url: { type: string }
  token: { type: string, secret: true }
http:
  base_url: "{{config.base_url}}"
  auth: { type: bearer, token: "{{config.token}}" }
  retry: { max_attempts: 1 }
entities:
  items:
    path: /items
    params: { limit: "5" }
    records: "$.data"
    primary_key: [id]
    pagination: { type: cursor, cursor: "$.next", param: cursor }
"#;
    std::fs::write(dir.path().join("connector.yaml"), connector).unwrap();
    let flow = format!(
        "kind: Flow\nname: test\nsource:\n  connector: testapi\n  config:\n    base_url: \"{api_url}\"\n    token: \"{token}\"\ndestination: \"duckdb://{}/out.duckdb\"\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("flow.yaml"), flow).unwrap();
    dir
}

fn run(command: &mut Command) -> Output {
    command.output().expect("ferry runs")
}

#[test]
fn check_reports_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "kind: Connector\nname: x\nhttp:\n  base_url: \"http://127.0.0.1:9\"\n  retri: {}\nentities: {}\n",
    )
    .unwrap();
    let output = run(ferry(&["check", "--config"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    let path = dir.path().join("bad.yaml");
    assert_eq!(
        text(&output.stdout),
        format!(
            "{}:5:3: unknown field \"retri\" in http; did you mean \"retry\"?\n",
            path.display()
        )
    );
}

#[test]
fn check_json_lists_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "kind: Conector\nname: x\n").unwrap();
    let output = run(ferry(&["check", "--json", "--config"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"][0]["line"], 1);
    let message = report["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("Connector"), "{message}");
}

#[test]
fn unknown_flow_exits_2() {
    let dir = folder("http://127.0.0.1:9", "tok_abcdef");
    let output = run(ferry(&["sync", "tset", "--config"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("unknown flow \"tset\""), "{stderr}");
    assert!(stderr.contains("did you mean \"test\"?"), "{stderr}");
}

#[test]
fn unknown_entity_exits_2() {
    let dir = folder("http://127.0.0.1:9", "tok_abcdef");
    let output = run(ferry(&["sync", "test", "-e", "itms", "--config"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("did you mean \"items\"?"));
}

#[test]
fn unknown_entity_with_json_prints_json() {
    let dir = folder("http://127.0.0.1:9", "tok_abcdef");
    let output = run(ferry(&["sync", "test", "-e", "itms", "--json", "--config"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["ok"], false);
    let errors = printed["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains("did you mean \"items\"?"), "{message}");
    assert!(text(&output.stderr).contains("did you mean \"items\"?"));
}

#[test]
fn bad_argument_with_json_prints_json() {
    let output = run(&mut ferry(&["sync", "--json", "--bogus"]));
    assert_eq!(output.status.code(), Some(2));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::json!({
            "ok": false,
            "errors": [{ "message": "unexpected argument '--bogus' found" }]
        })
    );
    assert!(text(&output.stderr).contains("Usage: ferry sync"));
}

#[test]
fn missing_argument_with_json_names_it() {
    let output = run(&mut ferry(&["preview", "--json"]));
    assert_eq!(output.status.code(), Some(2));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let message = printed["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("<CONNECTOR>"), "{message}");
    assert!(message.contains("<ENTITY>"), "{message}");
    assert!(!message.contains("Usage"), "{message}");
}

#[test]
fn json_after_double_dash_is_no_flag() {
    let output = run(&mut ferry(&["preview", "--", "--json"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    assert!(text(&output.stderr).contains("<ENTITY>"));
}

#[test]
fn missing_variable_exits_2_before_requests() {
    let dir = folder("http://127.0.0.1:9", "${NOT_SET_ANYWHERE_42}");
    let output = run(ferry(&["sync", "test", "--config"])
        .arg(dir.path())
        .env_remove("NOT_SET_ANYWHERE_42"));
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("NOT_SET_ANYWHERE_42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_json_reports_runs() {
    let api = Api::start(records(7)).await;
    let dir = folder(&api.url, "tok_abcdef");
    let output = tokio::task::spawn_blocking(move || {
        let output = run(ferry(&["sync", "test", "--json", "--config"]).arg(dir.path()));
        drop(dir);
        output
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["flow"], "test");
    assert_eq!(report["runs"][0]["entity"], "items");
    assert_eq!(report["runs"][0]["outcome"], "succeeded");
    assert_eq!(report["runs"][0]["records"], 7);
    assert_eq!(report["runs"][0]["pages"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_exits_1_without_secret() {
    let api = Api::start(records(3)).await;
    // The server rejects the token; ferry's error quotes the response body,
    // which here echoes nothing secret, and must not print the token itself.
    api.with(|state| state.expected_token = Some("another_token".into()));
    let dir = folder(&api.url, "tok_very_secret_value");
    let output = tokio::task::spawn_blocking(move || {
        let output = run(ferry(&["sync", "test", "--config"]).arg(dir.path()));
        drop(dir);
        output
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("test/items: failed"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("tok_very_secret_value"), "{stderr}");
    assert!(!text(&output.stdout).contains("tok_very_secret_value"));
}

/// A libpq keyword/value string is not a destination ferry reads, and the
/// error that quotes it masks its password, quoted or not.
#[test]
fn check_masks_keyword_value_password() {
    let dir = folder("http://127.0.0.1:9", "tok_abcdef");
    let flow = std::fs::read_to_string(dir.path().join("flow.yaml")).unwrap();
    let flow = flow
        .lines()
        .map(|line| match line.starts_with("destination:") {
            true => "destination: ${FERRY_TEST_CONNINFO}",
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("flow.yaml"), flow).unwrap();
    let conninfo = r"host=db.internal password = 'se cr\'et-41' user=ferry sslpassword=key-pw-42";

    let output = run(ferry(&["check", "--json", "--config"])
        .arg(dir.path())
        .env("FERRY_TEST_CONNINFO", conninfo));
    assert_eq!(output.status.code(), Some(2));
    let stdout = text(&output.stdout);
    assert!(!stdout.contains("se cr"), "{stdout}");
    assert!(!stdout.contains("key-pw-42"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let message = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "unsupported destination \"host=db.internal password = *** user=ferry sslpassword=***\"; "
        ),
        "{message}"
    );
}
