//! Loading config folders: real files in temporary folders, every kind of
//! invalid input with its exact located message.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use ferry::spec::plan::{DestinationUrl, Origin, SyncMode, Trigger};
use ferry::spec::{self, Diagnostic, Loaded};
use serde_json::json;

/// A connector used by most tests; line numbers matter to the assertions.
const GITHUB: &str = r#"kind: Connector
name: github
config:
  token: { type: string, secret: true }
  owner: { type: string }
  repo: { type: string }
  base_url: { type: string, default: "https://api.github.com" }
http:
  base_url: "{{config.base_url}}"
  auth: { type: bearer, token: "{{config.token}}" }
entities:
  issues:
    path: "/repos/{{config.owner}}/{{config.repo}}/issues"
    records: "$[*]"
    primary_key: [id]
    pagination: { type: link_header }
    incremental:
      cursor_field: updated_at
      param: since
  comments:
    parent: { entity: issues, fields: [number] }
    path: "/repos/{{config.owner}}/{{config.repo}}/issues/{{parent.number}}/comments"
    records: "$[*]"
    primary_key: [id]
"#;

const FLOW: &str = r#"kind: Flow
name: issues
source:
  connector: github
  config:
    token: ${GITHUB_TOKEN}
    owner: rust-lang
    repo: rust
destination: duckdb://./gh.duckdb
"#;

const TOKEN: &str = "ghp_integration_secret_0123";

fn environment(name: &str) -> Option<String> {
    match name {
        "GITHUB_TOKEN" => Some(TOKEN.to_string()),
        "GITHUB_OWNER" => Some("rust-lang".to_string()),
        "PER_PAGE" => Some("50".to_string()),
        "DATABASE_URL" => Some("postgres://ferry:pg_password_9876@db.internal/app".to_string()),
        _ => None,
    }
}

/// A config folder with the given files.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new(files: &[(&str, &str)]) -> Folder {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Folder { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn load(&self) -> Result<Loaded, Vec<Diagnostic>> {
        spec::load_with_env(self.path(), &environment)
    }

    fn loaded(&self) -> Loaded {
        match self.load() {
            Ok(loaded) => loaded,
            Err(problems) => panic!("unexpected problems:\n{}", self.show(&problems).join("\n")),
        }
    }

    /// Returns every problem as `file:line:column: message`, with paths
    /// relative to the folder.
    fn errors(&self) -> Vec<String> {
        match self.load() {
            Ok(_) => panic!("the folder loaded without problems"),
            Err(problems) => self.show(&problems),
        }
    }

    fn show(&self, problems: &[Diagnostic]) -> Vec<String> {
        let prefix = format!("{}/", self.path().display());
        problems
            .iter()
            .map(|problem| problem.to_string().replacen(&prefix, "", 1))
            .collect()
    }
}

fn github_with(from: &str, to: &str) -> String {
    assert!(GITHUB.contains(from), "GITHUB does not contain {from:?}");
    GITHUB.replacen(from, to, 1)
}

fn flow_with(from: &str, to: &str) -> String {
    assert!(FLOW.contains(from), "FLOW does not contain {from:?}");
    FLOW.replacen(from, to, 1)
}

// ---- loading a valid folder ----

#[test]
fn valid_folder_resolves() {
    let folder = Folder::new(&[
        ("connectors/github.yaml", GITHUB),
        ("flows/issues.yml", FLOW),
    ]);
    let loaded = folder.loaded();
    assert!(loaded.warnings.is_empty());
    let flow = &loaded.catalog.flows["issues"];
    assert_eq!(flow.connector.name, "github");
    assert_eq!(flow.schema, "github");
    assert_eq!(flow.mode, SyncMode::Incremental);
    assert_eq!(
        flow.destination,
        DestinationUrl::DuckDb {
            path: "./gh.duckdb".to_string()
        }
    );
    assert_eq!(
        serde_json::Value::Object(flow.config.clone()),
        json!({
            "token": TOKEN,
            "owner": "rust-lang",
            "repo": "rust",
            "base_url": "https://api.github.com"
        })
    );
    assert_eq!(flow.secrets, vec![TOKEN.to_string()]);
    let names: Vec<&str> = flow
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    assert_eq!(names, vec!["issues", "comments"]);
    let expected_origin = Origin::File {
        path: folder.path().join("flows/issues.yml").display().to_string(),
        line: 1,
    };
    assert_eq!(flow.origin, expected_origin);
    assert!(flow.trigger.is_none());
}

#[test]
fn entity_plan_has_defaults_and_fingerprint() {
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", FLOW)]);
    let loaded = folder.loaded();
    let issues = &loaded.catalog.connectors["github"].entities["issues"];
    assert_eq!(issues.primary_key, vec!["id"]);
    assert_eq!(issues.max_pages, 1_000_000);
    assert_eq!(issues.chunk.records, 5_000);
    assert_eq!(issues.fingerprint.len(), 64);
    let comments = &loaded.catalog.connectors["github"].entities["comments"];
    assert_ne!(issues.fingerprint, comments.fingerprint);
    assert_eq!(comments.parent.as_ref().unwrap().entity, "issues");
    let incremental = issues.incremental.as_ref().unwrap();
    assert_eq!(incremental.cursor_field, "updated_at");
}

#[test]
fn fingerprint_follows_base_url_text() {
    let first = Folder::new(&[("github.yaml", GITHUB)]).loaded();
    let changed = github_with(
        "  base_url: \"{{config.base_url}}\"",
        "  base_url: \"{{config.base_url}}/v3\"",
    );
    let second = Folder::new(&[("github.yaml", &changed)]).loaded();
    let fingerprint = |loaded: &Loaded| {
        loaded.catalog.connectors["github"].entities["issues"]
            .fingerprint
            .clone()
    };
    assert_ne!(fingerprint(&first), fingerprint(&second));
}

#[test]
fn hidden_folders_and_other_files_are_skipped() {
    let folder = Folder::new(&[
        ("github.yaml", GITHUB),
        (".git/broken.yaml", "kind: [oops"),
        ("notes.txt", "kind: Nonsense"),
    ]);
    assert!(folder.load().is_ok());
}

#[test]
fn empty_documents_are_skipped() {
    let text = format!("---\n# only a comment\n---\n{GITHUB}---\n");
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert!(folder.loaded().catalog.connectors.contains_key("github"));
}

// ---- the folder itself ----

#[test]
fn missing_folder_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ferry.d");
    let problems = spec::load_with_env(&missing, &environment).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        format!(
            "{}: config folder not found; create it, or pass --config DIR",
            missing.display()
        )
    );
}

// ---- document shape ----

#[test]
fn missing_kind_is_located() {
    let folder = Folder::new(&[("a.yaml", "name: x\n")]);
    assert_eq!(
        folder.errors(),
        vec!["a.yaml:1:1: missing field \"kind\"; add kind: Connector or kind: Flow"]
    );
}

#[test]
fn unknown_kind_is_suggested() {
    let folder = Folder::new(&[("a.yaml", "kind: Conector\nname: x\n")]);
    assert_eq!(
        folder.errors(),
        vec!["a.yaml:1:7: unknown kind \"Conector\"; did you mean \"Connector\"?"]
    );
}

#[test]
fn invalid_yaml_is_located() {
    let folder = Folder::new(&[("a.yaml", "kind: Flow\nname: [unclosed\n")]);
    let errors = folder.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("a.yaml:3:1: invalid YAML: "),
        "{}",
        errors[0]
    );
}

#[test]
fn duplicate_key_is_located() {
    let text = github_with("name: github\n", "name: github\nname: gitlab\n");
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec!["github.yaml:3:1: duplicate key \"name\"; it is already set at line 2"]
    );
}

// ---- serde errors, rewritten ----

#[test]
fn unknown_field_is_suggested() {
    let text = github_with("{ type: link_header }", "{ typ: link_header }");
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:16:19: unknown field \"typ\" in entities.issues.pagination; did you mean \"type\"?"
        ]
    );
}

#[test]
fn unknown_variant_is_suggested() {
    let text = github_with("{ type: link_header }", "{ type: link_headr }");
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:16:25: unknown value \"link_headr\" for entities.issues.pagination.type; did you mean \"link_header\"?"
        ]
    );
}

#[test]
fn missing_field_names_entity() {
    let text = github_with(
        "    records: \"$[*]\"\n    primary_key: [id]\n    pagination",
        "    primary_key: [id]\n    pagination",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec!["github.yaml:12:3: missing field \"records\" in entity \"issues\""]
    );
}

#[test]
fn wrong_type_is_explained() {
    let text = github_with(
        "    primary_key: [id]\n    pagination",
        "    primary_key: [id]\n    max_pages: many\n    pagination",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:16:16: entities.issues.max_pages must be a non-negative integer, found \"many\""
        ]
    );
}

#[test]
fn untagged_param_with_bad_location_is_explained() {
    let text = github_with(
        "      param: since",
        "      param: { in: qeury, name: since }",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:19:20: unknown value \"qeury\" for entities.issues.incremental.param.in; did you mean \"query\"?"
        ]
    );
}

#[test]
fn errors_in_several_entities_are_all_reported() {
    let text = github_with("{ type: link_header }", "{ typ: link_header }").replacen(
        "    parent: { entity: issues, fields: [number] }",
        "    parent: { entity: issues, field: [number] }",
        1,
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:16:19: unknown field \"typ\" in entities.issues.pagination; did you mean \"type\"?",
            "github.yaml:21:31: unknown field \"field\" in entities.comments.parent; did you mean \"fields\"?",
        ]
    );
}

#[test]
fn later_documents_are_located_in_the_file() {
    let broken_flow = flow_with(
        "destination: duckdb://./gh.duckdb\n",
        "destination: duckdb://./gh.duckdb\nschedul: \"* * * * *\"\n",
    )
    .replacen("name: issues", "name: issues_hourly", 1);
    let text = format!("{GITHUB}---\n{FLOW}---\n{broken_flow}");
    let folder = Folder::new(&[("all.yaml", &text)]);
    // GITHUB is 24 lines, each FLOW 9, and each `---` one.
    assert_eq!(
        folder.errors(),
        vec![
            "all.yaml:45:1: unknown field \"schedul\" in flow \"issues_hourly\"; did you mean \"schedule\"?"
        ]
    );
}

#[test]
fn problems_in_several_files_are_collected() {
    let connector = github_with("{ type: link_header }", "{ type: curser }");
    let flow = flow_with("connector: github", "connector: gitub");
    let other = "kind: Flow\nname: other\nsource: { connector: github }\ndestination: mysql://x\n";
    let folder = Folder::new(&[("a.yaml", &connector), ("b.yaml", &flow), ("c.yaml", other)]);
    assert_eq!(
        folder.errors(),
        vec![
            "a.yaml:16:25: unknown value \"curser\" for entities.issues.pagination.type; did you mean \"cursor\"?",
            "b.yaml:4:14: unknown connector \"gitub\"; did you mean \"github\"?",
            "c.yaml:4:14: unsupported destination \"mysql://x\"; use duckdb://PATH (duckdb://./ferry.duckdb, or duckdb:///var/lib/ferry/ferry.duckdb for an absolute path), postgres://USER@HOST/DATABASE or postgresql://USER@HOST/DATABASE",
        ]
    );
}

// ---- connector checks ----

#[test]
fn undeclared_config_reference_is_suggested() {
    let text = github_with("{{config.token}}", "{{config.tokn}}");
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:10:32: {{config.tokn}} is not a declared config key; did you mean \"token\"?"
        ]
    );
}

#[test]
fn template_variable_scopes_are_checked() {
    let text = github_with(
        "/issues/{{parent.number}}/comments\"",
        "/issues/{{parent.title}}/comments\"\n    params: { since: \"{{state.cursor}}\", from: \"{{window.start}}\", q: \"{{entity.query}}\" }",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:22:11: {{parent.title}} is not in parent.fields of entity \"comments\" ([number]); add it to parent.fields to read it from \"issues\"",
            "github.yaml:23:22: {{state.cursor}} needs incremental on entity \"comments\"",
            "github.yaml:23:48: {{window.start}} needs incremental.window on entity \"comments\"",
            "github.yaml:23:71: {{entity.query}} is only available in templates, where it reads the flow's parameters",
        ]
    );
}

#[test]
fn unknown_time_pattern_is_located() {
    let text = github_with(
        "    records: \"$[*]\"\n    primary_key: [id]\n    pagination",
        "    params: { since: '{{format_time now \"%Y-%Q\"}}' }\n    records: \"$[*]\"\n    primary_key: [id]\n    pagination",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    let errors = folder.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .starts_with("github.yaml:14:22: invalid template in entities.issues.params.since: "),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("\"%Y-%Q\""), "{}", errors[0]);
}

#[test]
fn invalid_template_and_jsonpath_are_located() {
    let text = github_with(
        "    records: \"$[*]\"\n    primary_key: [id]\n    pagination",
        "    records: \"$[\"\n    primary_key: [id]\n    pagination",
    )
    .replacen(
        "\"/repos/{{config.owner}}/{{config.repo}}/issues\"",
        "\"/repos/{{config.owner\"",
        1,
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    let errors = folder.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("github.yaml:13:11: invalid template in entities.issues.path: "),
        "{}",
        errors[0]
    );
    assert!(
        errors[1]
            .starts_with("github.yaml:14:14: entities.issues.records: invalid JSONPath \"$[\""),
        "{}",
        errors[1]
    );
}

#[test]
fn entity_value_checks() {
    let text = github_with(
        "    pagination: { type: link_header }",
        "    pagination: { type: offset, offset_param: offset, limit_param: limit, limit: 0 }\n    on_status: { \"700\": ignore }\n    parameters: { q: { type: string } }\n    fields: { exclude: [id] }",
    )
    .replacen("      param: since", "      param: since\n      window: { step: 7 days ago }", 1);
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:16:82: entities.issues.pagination.limit must be at least 1, found 0",
            "github.yaml:17:18: on_status key \"700\" is not an HTTP status code (100 to 599)",
            "github.yaml:18:5: parameters are only allowed in templates; move entity \"issues\" under templates or remove its parameters",
            "github.yaml:19:25: fields.exclude removes \"id\", which is part of the primary key",
            "github.yaml:23:23: entities.issues.incremental.window.step: invalid duration \"7 days ago\" (expected number at 7); write it like 30s, 15m, 12h or 7d",
        ]
    );
}

#[test]
fn http_value_checks() {
    let text = github_with(
        "  auth: { type: bearer, token: \"{{config.token}}\" }",
        "  auth: { type: bearer, token: \"{{config.token}}\" }\n  retry: { max_attempts: 0 }\n  timeout_seconds: 0\n  rate_limit: { requests_per_second: -1 }\n  max_response_mb: 0",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:11:26: http.retry.max_attempts must be at least 1 (1 means no retry), found 0",
            "github.yaml:12:20: http.timeout_seconds must be greater than 0, found 0",
            "github.yaml:13:38: http.rate_limit.requests_per_second must be greater than 0, found -1",
            "github.yaml:14:20: http.max_response_mb must be at least 1, found 0",
        ]
    );

    let text = github_with(
        "  auth: { type: bearer, token: \"{{config.token}}\" }",
        "  auth: { type: bearer, token: \"{{config.token}}\" }\n  rate_limit: { requests_per_second: 1e-300 }",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:11:38: http.rate_limit.requests_per_second 1e-300 is too small: the wait between two requests would be longer than any duration ferry can represent",
        ]
    );
}

#[test]
fn response_limit_defaults_and_converts() {
    let folder = Folder::new(&[("github.yaml", GITHUB)]);
    let loaded = folder.loaded();
    let http = &loaded.catalog.connectors["github"].http;
    assert_eq!(http.max_response_bytes, 128 * 1024 * 1024);

    let text = github_with(
        "  auth: { type: bearer, token: \"{{config.token}}\" }",
        "  auth: { type: bearer, token: \"{{config.token}}\" }\n  max_response_mb: 2",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    let loaded = folder.loaded();
    let http = &loaded.catalog.connectors["github"].http;
    assert_eq!(http.max_response_bytes, 2 * 1024 * 1024);
}

#[test]
fn unknown_parent_and_cycles_are_reported() {
    let text = github_with(
        "parent: { entity: issues, fields: [number] }",
        "parent: { entity: isues, fields: [number] }",
    )
    .replacen(
        "    pagination: { type: link_header }",
        "    pagination: { type: link_header }\n    parent: { entity: comments, fields: [id] }",
        1,
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:22:23: unknown parent entity \"isues\" in connector \"github\"; did you mean \"issues\"?",
        ]
    );
    let cycle = github_with(
        "    pagination: { type: link_header }",
        "    pagination: { type: link_header }\n    parent: { entity: comments, fields: [id] }",
    );
    let folder = Folder::new(&[("github.yaml", &cycle)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:17:23: entity \"issues\" is its own ancestor: issues -> comments -> issues",
            "github.yaml:22:23: entity \"comments\" is its own ancestor: comments -> issues -> comments",
        ]
    );
}

#[test]
fn relay_outside_graphql_is_rejected() {
    let text = github_with(
        "{ type: link_header }",
        "{ type: relay, page_info: \"$.data.pageInfo\" }",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:16:25: entities.issues.pagination.type relay is for GraphQL entities (graphql: {query, variables}); use cursor for a REST API"
        ]
    );
}

// ---- flow checks ----

#[test]
fn config_values_are_checked() {
    let flow = flow_with(
        "    owner: rust-lang\n    repo: rust\n",
        "    ownr: rust-lang\n    repo: 5\n",
    );
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:5:3: missing config key \"owner\" (required by connector \"github\")",
            "flow.yaml:7:5: unknown config key \"ownr\" for connector \"github\"; did you mean \"owner\"?",
            "flow.yaml:8:11: config key \"repo\" must be a string, found 5",
        ]
    );
}

#[test]
fn enum_values_are_checked() {
    let connector = github_with(
        "  repo: { type: string }",
        "  repo: { type: string, enum: [rust, cargo] }",
    );
    let flow = flow_with("    repo: rust", "    repo: miri");
    let folder = Folder::new(&[("github.yaml", &connector), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:8:11: config key \"repo\" must be one of \"rust\", \"cargo\", found \"miri\""
        ]
    );
}

#[test]
fn environment_variables_expand() {
    let flow = flow_with(
        "    owner: rust-lang",
        "    owner: ${GITHUB_OWNER}\n    base_url: ${GITHUB_URL:-https://ghe.example/api/v3}",
    );
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    let loaded = folder.loaded();
    let config = &loaded.catalog.flows["issues"].config;
    assert_eq!(config["owner"], json!("rust-lang"));
    assert_eq!(config["base_url"], json!("https://ghe.example/api/v3"));
    assert_eq!(config["token"], json!(TOKEN));
}

#[test]
fn missing_variable_names_it() {
    let flow = flow_with("${GITHUB_TOKEN}", "${GH_TOKEN}");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:6:12: environment variable GH_TOKEN is not set (used by source.config.token); set it, or write ${GH_TOKEN:-DEFAULT} to give a default"
        ]
    );
}

#[test]
fn expanded_text_takes_declared_type() {
    let connector = github_with(
        "  repo: { type: string }",
        "  repo: { type: string }\n  per_page: { type: integer, default: 100 }",
    );
    let flow = flow_with(
        "    repo: rust",
        "    repo: rust\n    per_page: ${PER_PAGE}",
    );
    let folder = Folder::new(&[("github.yaml", &connector), ("flow.yaml", &flow)]);
    let loaded = folder.loaded();
    assert_eq!(loaded.catalog.flows["issues"].config["per_page"], json!(50));
}

#[test]
fn file_reference_is_read_relative_to_flow() {
    let flow = flow_with("${GITHUB_TOKEN}", "${file:secrets/token}");
    let folder = Folder::new(&[
        ("github.yaml", GITHUB),
        ("flows/flow.yaml", &flow),
        ("flows/secrets/token", "ghp_from_file_4567\n"),
    ]);
    let loaded = folder.loaded();
    let flow = &loaded.catalog.flows["issues"];
    assert_eq!(flow.config["token"], json!("ghp_from_file_4567"));
    assert_eq!(flow.secrets, vec!["ghp_from_file_4567".to_string()]);
}

#[test]
fn missing_file_reference_names_path() {
    let flow = flow_with("${GITHUB_TOKEN}", "${file:/nonexistent/ferry/token}");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:6:12: cannot read /nonexistent/ferry/token for ${file:…} in source.config.token: No such file or directory (os error 2)"
        ]
    );
}

#[test]
fn secret_values_never_appear_in_messages() {
    let connector = github_with(
        "  token: { type: string, secret: true }",
        "  token: { type: integer, secret: true }",
    );
    let flow = flow_with(
        "destination: duckdb://./gh.duckdb",
        "destination: ${DATABASE_URL}",
    );
    let second = flow_with("name: issues", "name: issues_copy").replacen(
        "destination: duckdb://./gh.duckdb",
        "destination: ${DATABASE_URL}",
        1,
    );
    let folder = Folder::new(&[
        ("github.yaml", &connector),
        ("a.yaml", &flow),
        ("b.yaml", &second),
    ]);
    let errors = folder.errors();
    assert_eq!(
        errors[0],
        "a.yaml:6:12: config key \"token\" must be an integer"
    );
    for error in &errors {
        assert!(!error.contains(TOKEN), "{error}");
        assert!(!error.contains("pg_password_9876"), "{error}");
    }
}

#[test]
fn same_table_in_two_flows_is_an_error() {
    let second = flow_with("name: issues", "name: issues_again").replacen(
        "duckdb://./gh.duckdb",
        "duckdb://gh.duckdb",
        1,
    );
    let folder = Folder::new(&[
        ("github.yaml", GITHUB),
        ("a.yaml", FLOW),
        ("b.yaml", &second),
    ]);
    let first_path = folder.path().join("a.yaml").display().to_string();
    assert_eq!(
        folder.errors(),
        vec![format!(
            "b.yaml:9:1: flows \"issues\" and \"issues_again\" both write tables github.issues, github.comments in duckdb://gh.duckdb (flow \"issues\" is defined at {first_path}:1); give one of them another schema or destination"
        )]
    );
}

#[test]
fn same_table_with_postgres_hides_password() {
    let first = flow_with(
        "destination: duckdb://./gh.duckdb",
        "destination: ${DATABASE_URL}",
    );
    let second = flow_with("name: issues", "name: issues_again").replacen(
        "destination: duckdb://./gh.duckdb",
        "destination: postgres://other@DB.internal:5432/app\nentities: [issues]",
        1,
    );
    let folder = Folder::new(&[
        ("github.yaml", GITHUB),
        ("a.yaml", &first),
        ("b.yaml", &second),
    ]);
    let errors = folder.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("b.yaml:9:1: flows \"issues\" and \"issues_again\" both write table github.issues in postgres://other@DB.internal:5432/app"),
        "{}",
        errors[0]
    );
    assert!(!errors[0].contains("pg_password_9876"));
}

#[test]
fn long_postgres_schema_is_an_error() {
    let schema = "s".repeat(64);
    let flow = flow_with(
        "destination: duckdb://./gh.duckdb",
        &format!("destination: ${{DATABASE_URL}}\nschema: {schema}"),
    );
    let folder = Folder::new(&[("github.yaml", GITHUB), ("a.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![format!(
            "a.yaml:10:9: schema \"{schema}\" is 64 bytes long, and PostgreSQL keeps 63 bytes of a name; choose a shorter schema"
        )]
    );

    let duckdb = flow_with(
        "destination: duckdb://./gh.duckdb",
        &format!("destination: duckdb://./gh.duckdb\nschema: {schema}"),
    );
    let folder = Folder::new(&[("github.yaml", GITHUB), ("a.yaml", &duckdb)]);
    folder.loaded();
}

#[test]
fn different_schemas_do_not_conflict() {
    let second = flow_with("name: issues", "name: issues_again\nschema: github_copy");
    let folder = Folder::new(&[
        ("github.yaml", GITHUB),
        ("a.yaml", FLOW),
        ("b.yaml", &second),
    ]);
    assert_eq!(
        folder.loaded().catalog.flows["issues_again"].schema,
        "github_copy"
    );
}

#[test]
fn entities_are_checked_and_parents_added() {
    let flow = format!("{FLOW}entities: [comments]\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    let loaded = folder.loaded();
    let names: Vec<&str> = loaded.catalog.flows["issues"]
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    assert_eq!(names, vec!["issues", "comments"]);

    let misspelt = format!("{FLOW}entities: [issue, pulls]\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &misspelt)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:10:12: unknown entity \"issue\" in connector \"github\"; did you mean \"issues\"?",
            "flow.yaml:10:19: unknown entity \"pulls\" in connector \"github\"; the github connector has: issues, comments",
        ]
    );
}

#[test]
fn schedule_settings_are_checked() {
    let flow = format!("{FLOW}schedule: \"*/15 * * *\"\ntimezone: Europe/Pari\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec!["flow.yaml:11:11: unknown time zone \"Europe/Pari\"; did you mean \"Europe/Paris\"?"]
    );
    let flow = format!("{FLOW}schedule: \"*/15 * * *\"\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:10:11: schedule \"*/15 * * *\" has 4 fields; write 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
        ]
    );
    let flow = format!("{FLOW}schedule: \"*/15 * * * *\"\nevery: 15m\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec!["flow.yaml:11:1: set either schedule (cron) or every (an interval), not both"]
    );
    let flow = format!("{FLOW}every: 300000y\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    let errors = folder.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("flow.yaml:10:8: every \"300000y\" is too long"),
        "{}",
        errors[0]
    );
}

#[test]
fn schedule_and_every_resolve() {
    let flow = format!("{FLOW}schedule: \"*/15 * * * *\"\ntimezone: Europe/Paris\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    let loaded = folder.loaded();
    match &loaded.catalog.flows["issues"].trigger {
        Some(Trigger::Cron {
            expression,
            timezone,
            ..
        }) => {
            assert_eq!(expression, "*/15 * * * *");
            assert_eq!(*timezone, chrono_tz::Europe::Paris);
        }
        other => panic!("expected a cron trigger, found {other:?}"),
    }
    let flow = format!("{FLOW}every: 90m\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    match &folder.loaded().catalog.flows["issues"].trigger {
        Some(Trigger::Every(interval)) => assert_eq!(interval.as_secs(), 5400),
        other => panic!("expected an interval trigger, found {other:?}"),
    }
}

#[test]
fn flow_option_checks() {
    let flow = format!(
        "{FLOW}deleted_rows: mark\nwebhook: {{ secret: whsec_0123456789 }}\nalert: {{ url: \"mailto:ops@example.com\" }}\nschema: \"\"\n"
    );
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:10:1: deleted_rows only applies with mode: full_refresh; set mode: full_refresh or remove deleted_rows",
            "flow.yaml:11:1: connector \"github\" declares no webhooks, so this flow cannot receive webhook events; remove webhook",
            "flow.yaml:12:15: alert.url \"mailto:ops@example.com\" is not an http(s) URL (scheme \"mailto\")",
            "flow.yaml:13:9: schema must not be empty; remove it to use the connector's name",
        ]
    );
}

#[test]
fn base_url_must_render_to_http_url() {
    let flow = flow_with(
        "    repo: rust",
        "    repo: rust\n    base_url: ftp://files.example",
    );
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:5:3: http.base_url of connector \"github\" renders to \"ftp://files.example\" is not an http(s) URL (scheme \"ftp\"); check the config values it reads ({{config.base_url}})"
        ]
    );
}

// ---- across files ----

#[test]
fn duplicate_names_name_both_places() {
    let folder = Folder::new(&[
        ("a.yaml", GITHUB),
        ("b.yaml", GITHUB),
        ("c.yaml", FLOW),
        ("d.yaml", FLOW),
    ]);
    let first_connector = folder.path().join("a.yaml").display().to_string();
    let first_flow = folder.path().join("c.yaml").display().to_string();
    assert_eq!(
        folder.errors(),
        vec![
            format!(
                "b.yaml:2:7: duplicate connector \"github\"; it is already defined at {first_connector}:2:7"
            ),
            format!(
                "d.yaml:2:7: duplicate flow \"issues\"; it is already defined at {first_flow}:2:7"
            ),
        ]
    );
}

#[test]
fn broken_connector_is_not_reported_again_by_flows() {
    let connector = github_with("{ type: link_header }", "{ typ: link_header }");
    let folder = Folder::new(&[("github.yaml", &connector), ("flow.yaml", FLOW)]);
    assert_eq!(folder.errors().len(), 1);
}

// ---- templates ----

const POSTHOG: &str = r#"kind: Connector
name: posthog
config:
  api_key: { type: string, secret: true }
  project_id: { type: string }
http:
  base_url: https://us.posthog.com
  auth: { type: bearer, token: "{{config.api_key}}" }
entities:
  events:
    path: "/api/projects/{{config.project_id}}/events"
    records: "$.results[*]"
    primary_key: [id]
templates:
  hogql:
    path: "/api/projects/{{config.project_id}}/query"
    body: { query: { kind: HogQLQuery, query: "{{entity.query}}" }, limit: "{{entity.limit}}" }
    records: { rows: "$.results", columns: "$.columns" }
    parameters:
      query: { type: string }
      limit: { type: integer, default: 1000 }
"#;

const POSTHOG_FLOW: &str = r#"kind: Flow
name: product
source:
  connector: posthog
  config: { api_key: phx_secret_key_5555, project_id: "42" }
entities:
  events: {}
  signups_by_day:
    template: hogql
    query: "select toDate(timestamp) as day, count() as n from events group by day"
    primary_key: [day]
"#;

#[test]
fn template_entry_makes_an_entity() {
    let folder = Folder::new(&[("posthog.yaml", POSTHOG), ("flow.yaml", POSTHOG_FLOW)]);
    let loaded = folder.loaded();
    let flow = &loaded.catalog.flows["product"];
    let names: Vec<&str> = flow
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    assert_eq!(names, vec!["events", "signups_by_day"]);
    let signups = flow.entity("signups_by_day").unwrap();
    assert_eq!(signups.primary_key, vec!["day"]);
    assert_eq!(
        serde_json::Value::Object(signups.parameters.clone()),
        json!({
            "query": "select toDate(timestamp) as day, count() as n from events group by day",
            "limit": 1000
        })
    );
    let body = signups.request.body.as_ref().unwrap();
    let rendered = body
        .render(&json!({"config": flow.config, "entity": signups.parameters}))
        .unwrap();
    assert_eq!(rendered["limit"], json!(1000));
    assert_eq!(rendered["query"]["kind"], json!("HogQLQuery"));
    assert_eq!(flow.secrets, vec!["phx_secret_key_5555".to_string()]);
}

#[test]
fn template_entry_problems_are_located() {
    let flow = POSTHOG_FLOW
        .replacen("    query: \"select", "    qeury: \"select", 1)
        .replacen(
            "    primary_key: [day]",
            "    primary_key: [day]\n    limit: lots\n    pagination: { type: offst }",
            1,
        );
    let folder = Folder::new(&[("posthog.yaml", POSTHOG), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:8:3: missing parameter \"query\" (required by template \"hogql\")",
            "flow.yaml:10:5: unknown parameter \"qeury\" for template \"hogql\"; did you mean \"query\"?",
            "flow.yaml:12:12: parameter \"limit\" must be an integer, found \"lots\"",
            "flow.yaml:13:25: unknown value \"offst\" for entities.signups_by_day.pagination.type; did you mean \"offset\"?",
        ]
    );
}

#[test]
fn template_needs_primary_key_from_flow() {
    let flow = POSTHOG_FLOW.replacen("    primary_key: [day]\n", "", 1);
    let folder = Folder::new(&[("posthog.yaml", POSTHOG), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:8:3: missing field \"primary_key\" in entity \"signups_by_day\" (write primary_key: [] for an append-only table)"
        ]
    );
}

#[test]
fn template_listed_as_entity_is_explained() {
    let flow = POSTHOG_FLOW.replacen("  events: {}\n", "  hogql: {}\n", 1);
    let folder = Folder::new(&[("posthog.yaml", POSTHOG), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:7:3: \"hogql\" is a template of connector \"posthog\", not an entity; declare it in the entities mapping as NAME: {template: hogql, ...}"
        ]
    );
}

#[test]
fn template_variables_are_checked_against_parameters() {
    let connector = POSTHOG.replacen("{{entity.limit}}", "{{entity.limt}}", 1);
    let folder = Folder::new(&[("posthog.yaml", &connector)]);
    assert_eq!(
        folder.errors(),
        vec![
            "posthog.yaml:17:76: {{entity.limt}} is not a parameter of template \"hogql\"; did you mean \"limit\"?"
        ]
    );
}

// ---- command-line flows ----

#[test]
fn command_line_flow_coerces_settings() {
    let connector = github_with(
        "  repo: { type: string }",
        "  repo: { type: string }\n  per_page: { type: integer, default: 100 }",
    );
    let folder = Folder::new(&[("github.yaml", &connector)]);
    let catalog = folder.loaded().catalog;
    let settings = vec![
        ("token".to_string(), TOKEN.to_string()),
        ("owner".to_string(), "rust-lang".to_string()),
        ("repo".to_string(), "rust".to_string()),
        ("per_page".to_string(), "25".to_string()),
    ];
    let flow = spec::adhoc_flow(
        &catalog,
        "github",
        None,
        &settings,
        &["comments".to_string()],
        &environment,
    )
    .unwrap();
    assert_eq!(flow.name, "github");
    assert_eq!(flow.origin, Origin::CommandLine);
    assert_eq!(flow.config["per_page"], json!(25));
    assert_eq!(
        flow.destination,
        DestinationUrl::DuckDb {
            path: "./ferry.duckdb".to_string()
        }
    );
    let names: Vec<&str> = flow
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    assert_eq!(names, vec!["issues", "comments"]);
}

#[test]
fn command_line_flow_problems() {
    let folder = Folder::new(&[("github.yaml", GITHUB)]);
    let catalog = folder.loaded().catalog;
    let problems = spec::adhoc_flow(&catalog, "gitub", None, &[], &[], &environment).unwrap_err();
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec!["<command line>: unknown connector \"gitub\"; did you mean \"github\"?"]
    );

    let settings = vec![
        ("token".to_string(), TOKEN.to_string()),
        ("ownr".to_string(), "rust-lang".to_string()),
        ("repo".to_string(), "rust".to_string()),
    ];
    let problems = spec::adhoc_flow(
        &catalog,
        "github",
        Some("sqlite://x"),
        &settings,
        &[],
        &environment,
    )
    .unwrap_err();
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "<command line>: unknown config key \"ownr\" for connector \"github\"; did you mean \"owner\"?",
            "<command line>: missing config key \"owner\" (required by connector \"github\")",
            "<command line>: unsupported destination \"sqlite://x\"; use duckdb://PATH (duckdb://./ferry.duckdb, or duckdb:///var/lib/ferry/ferry.duckdb for an absolute path), postgres://USER@HOST/DATABASE or postgresql://USER@HOST/DATABASE",
        ]
    );
}

// ---- examples and speed ----

#[test]
fn examples_resolve_without_problems() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let env: HashMap<&str, &str> = HashMap::from([
        ("BOOKSHOP_API_TOKEN", "bookshop-test-token"),
        ("GITHUB_TOKEN", "github-test-token"),
        (
            "BIGQUERY_SERVICE_ACCOUNT",
            "{\"type\": \"service_account\"}",
        ),
    ]);
    let lookup = |name: &str| env.get(name).map(|value| value.to_string());
    let mut folders = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let folder = entry.unwrap().path();
        // A Docker Compose example needs its containers' secret files;
        // the daemon tests check its flow.
        if !folder.is_dir() || folder.join("compose.yaml").exists() {
            continue;
        }
        folders += 1;
        match spec::load_with_env(&folder, &lookup) {
            Ok(loaded) => assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings),
            Err(problems) => {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                panic!("{} has problems:\n{}", folder.display(), lines.join("\n"));
            }
        }
    }
    assert!(
        folders > 0,
        "no example folders under {}",
        examples.display()
    );
}

#[test]
fn two_hundred_flows_load_quickly() {
    let mut files = vec![("github.yaml".to_string(), GITHUB.to_string())];
    for i in 0..200 {
        let flow = flow_with("name: issues", &format!("name: issues_{i}")).replacen(
            "./gh.duckdb",
            &format!("./gh_{i}.duckdb"),
            1,
        );
        files.push((format!("flows/flow_{i}.yaml"), flow));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let folder = Folder::new(&borrowed);
    let started = Instant::now();
    let loaded = folder.loaded();
    let elapsed = started.elapsed();
    assert_eq!(loaded.catalog.flows.len(), 200);
    // About 25 ms in a debug build on two shared cores; 500 ms is the budget.
    assert!(
        elapsed.as_millis() < 500,
        "loading 200 flows took {elapsed:?}"
    );
}

// ---- webhooks, body parameters, literal dollars ----

const SHOP: &str = r#"kind: Connector
name: shop
config:
  api_key: { type: string, secret: true }
http:
  base_url: https://api.shop.example
  auth: { type: api_key, in: header, name: X-Api-Key, value: "{{config.api_key}}" }
entities:
  orders:
    path: /orders/search
    body: { filter: {} }
    records: "$.orders"
    primary_key: id
    pagination: { type: cursor, cursor: "$.next", param: { in: body, name: page.after } }
    on_status: { 404: ignore, "204": empty_page }
webhooks:
  signature: { type: hmac, header: X-Shop-Signature, prefix: "sha256=" }
  id: "$.id"
  type: "$.type"
  object: "$.data"
  routes:
    - { events: ["order.*"], entity: orders }
"#;

const SHOP_FLOW: &str = r#"kind: Flow
name: shop
source: { connector: shop, config: { api_key: "key_$$_literal_${SHOP_SUFFIX:-123}" } }
destination: ${DATABASE_URL}
webhook: { secret: [whsec_old_111111, whsec_new_222222], action: trigger }
"#;

#[test]
fn webhook_flow_collects_secrets() {
    let folder = Folder::new(&[("shop.yaml", SHOP), ("flow.yaml", SHOP_FLOW)]);
    let loaded = folder.loaded();
    let flow = &loaded.catalog.flows["shop"];
    assert_eq!(flow.config["api_key"], json!("key_$_literal_123"));
    assert_eq!(
        flow.secrets,
        vec![
            "key_$_literal_123".to_string(),
            "pg_password_9876".to_string(),
            "whsec_old_111111".to_string(),
            "whsec_new_222222".to_string(),
        ]
    );
    let webhook = flow.webhook.as_ref().unwrap();
    assert_eq!(webhook.action, ferry::spec::plan::WebhookAction::Trigger);
    assert_eq!(webhook.secrets.len(), 2);
    assert_eq!(
        ferry::redact::redact("signed with whsec_new_222222"),
        "signed with ***"
    );
    assert!(!flow.destination.display().contains("pg_password_9876"));
}

#[test]
fn request_settings_resolve() {
    use ferry::spec::plan::{HttpMethod, Pagination, ParamLocation, StatusAction};
    let folder = Folder::new(&[("shop.yaml", SHOP)]);
    let loaded = folder.loaded();
    let orders = &loaded.catalog.connectors["shop"].entities["orders"];
    assert_eq!(orders.request.method, HttpMethod::Post);
    assert_eq!(orders.primary_key, vec!["id"]);
    assert_eq!(orders.on_status.get(&404), Some(&StatusAction::Ignore));
    assert_eq!(orders.on_status.get(&204), Some(&StatusAction::EmptyPage));
    match &orders.pagination {
        Pagination::Cursor { param, .. } => {
            assert_eq!(param.location, ParamLocation::Body);
            assert_eq!(param.name, "page.after");
        }
        other => panic!("expected cursor pagination, found {other:?}"),
    }
    let webhooks = loaded.catalog.connectors["shop"].webhooks.as_ref().unwrap();
    assert_eq!(webhooks.routes[0].entity.as_deref(), Some("orders"));
}

#[test]
fn body_parameter_needs_a_body() {
    let text = SHOP.replacen("    body: { filter: {} }\n", "", 1);
    let folder = Folder::new(&[("shop.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "shop.yaml:13:58: entities.orders.pagination.param is placed in the body, but the request is a GET without a body; set method: POST or a body"
        ]
    );
}

#[test]
fn change_feed_params_need_query_or_header() {
    let text = github_with(
        "      param: since\n  comments:",
        "      param: since\n    changes:\n      path: /events\n      records: \"$[*]\"\n      object: \"$.issue\"\n      cursor_field: created_at\n      param: { in: body, name: since }\n      pagination: { type: cursor, cursor: \"$[-1:].id\", param: { in: variables, name: after } }\n  comments:",
    );
    let folder = Folder::new(&[("github.yaml", &text), ("flow.yaml", FLOW)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:25:14: entities.issues.changes.param is placed in the body, but a change feed request is a GET without a body; use in: query or in: header",
            "github.yaml:26:63: entities.issues.changes.pagination.param is placed in the variables, but a change feed request is a REST GET without variables; use in: query or in: header",
        ]
    );
}

#[test]
fn webhook_route_entity_is_checked() {
    let text = SHOP.replacen("entity: orders }", "entity: ordrs }", 1);
    let folder = Folder::new(&[("shop.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "shop.yaml:22:38: webhooks.routes: unknown entity \"ordrs\"; did you mean \"orders\"?"
        ]
    );
}

#[test]
fn rename_targets_must_be_unique() {
    let text = github_with(
        "    pagination: { type: link_header }",
        "    pagination: { type: link_header }\n    fields: { rename: { title: name, body: name } }",
    );
    let folder = Folder::new(&[("github.yaml", &text)]);
    assert_eq!(
        folder.errors(),
        vec![
            "github.yaml:17:44: fields.rename: \"title\" and \"body\" are both renamed to \"name\"; each column needs its own name"
        ]
    );
}

#[test]
fn missing_required_fields_are_named() {
    let folder = Folder::new(&[(
        "a.yaml",
        "kind: Connector\nhttp: { base_url: \"https://x.example\" }\nentities: {}\n",
    )]);
    assert_eq!(
        folder.errors(),
        vec!["a.yaml:1:1: missing field \"name\" in the connector"]
    );
    let folder = Folder::new(&[(
        "a.yaml",
        "kind: Connector\nname: x\nhttp: { timeout_seconds: 5 }\nentities: {}\n",
    )]);
    assert_eq!(
        folder.errors(),
        vec!["a.yaml:3:1: missing field \"base_url\" in http"]
    );
}

#[test]
fn looping_link_is_read_once() {
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flows/issues.yaml", FLOW)]);
    std::os::unix::fs::symlink(folder.path(), folder.path().join("flows/loop")).unwrap();
    let loaded = folder.loaded();
    assert_eq!(loaded.catalog.flows.len(), 1);
}

#[test]
fn empty_entity_settings_are_explained() {
    let flow = format!("{FLOW}entities:\n  issues:\n  comments: {{}}\n");
    let folder = Folder::new(&[("github.yaml", GITHUB), ("flow.yaml", &flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:11:3: entities.issues must be a mapping; write issues: {} to select the entity, or issues: {template: NAME, ...}"
        ]
    );
}

// ---- steps, templated parameters, patterns ----

const STEPS: &str = r#"kind: Connector
name: jobs
config:
  region: { type: string, templated: true }
  mode: { type: string, pattern: "(fast" }
http:
  base_url: "https://api.example"
entities:
  _ferry_runs:
    path: /x
    records: "$[*]"
    primary_key: []
  results:
    steps:
      - name: job
        method: POST
        path: /jobs
        body: { wait: "{{steps.wait.done}}" }
        outputs: { id: "$.id" }
      - name: job
        path: "/jobs/{{steps.job.idd}}"
        until: "$.["
        poll_interval_seconds: 0
    path: "/jobs/{{steps.job.id}}/results"
    records: { rows: "$.rows", schema: "{{steps.job.schema}}" }
    primary_key: []
"#;

#[test]
fn steps_and_declarations_are_checked() {
    let folder = Folder::new(&[("jobs.yaml", STEPS)]);
    assert_eq!(
        folder.errors(),
        vec![
            "jobs.yaml:4:27: templated applies only to template parameters, not to config key \"region\"",
            "jobs.yaml:5:34: pattern of config key \"mode\" is not a valid regular expression: regex parse error:\n    (fast\n    ^\nerror: unclosed group",
            "jobs.yaml:9:3: entity \"_ferry_runs\" has a reserved name: names starting with _ferry are kept for ferry's bookkeeping; rename it",
            "jobs.yaml:18:23: {{steps.wait.done}} reads step \"wait\", which does not run before this request; no step runs before this request",
            "jobs.yaml:20:15: step name \"job\" is used twice; give each step its own name",
            "jobs.yaml:21:15: {{steps.job.idd}} is not an output of step \"job\"; did you mean \"id\"?",
            "jobs.yaml:22:16: entities.results.steps.1.until: invalid JSONPath \"$.[\": Failed to parse rule:  --> 1:3\n  |\n1 | $.[\n  |   ^---\n  |\n  = expected wildcard_selector or ALPHA",
            "jobs.yaml:23:32: entities.results.steps.1.poll_interval_seconds must be greater than 0, found 0",
            "jobs.yaml:25:40: {{steps.job.schema}} is not an output of step \"job\"; expected one of: id",
        ]
    );
}

#[test]
fn templated_parameter_reads_request_scope() {
    let connector = r#"kind: Connector
name: warehouse
http:
  base_url: "https://api.example"
entities: {}
templates:
  sql:
    parameters:
      query: { type: string, templated: true }
    path: /query
    body: { sql: "{{entity.query}}" }
    records: "$.rows"
    primary_key: []
"#;
    let flow = r#"kind: Flow
name: reports
source: { connector: warehouse }
destination: duckdb://./w.duckdb
entities:
  daily:
    template: sql
    query: "select * from t where at > '{{state.cursor}}'"
"#;
    let folder = Folder::new(&[("warehouse.yaml", connector), ("flow.yaml", flow)]);
    assert_eq!(
        folder.errors(),
        vec![
            "flow.yaml:8:12: parameter \"query\": {{state.cursor}} needs incremental on entity \"daily\""
        ]
    );

    let incremental = flow.replace(
        "    query:",
        "    incremental: { cursor_field: at, start: \"2024-01-01\" }\n    query:",
    );
    let folder = Folder::new(&[("warehouse.yaml", connector), ("flow.yaml", &incremental)]);
    let loaded = folder.loaded();
    let entity = loaded.catalog.flows["reports"]
        .entity("daily")
        .unwrap()
        .clone();
    assert_eq!(entity.templated_parameters.len(), 1);
    assert_eq!(entity.templated_parameters[0].0, "query");
}
