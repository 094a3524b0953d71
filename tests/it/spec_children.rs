//! Loading GraphQL entities, child entities and flow-declared GraphQL
//! queries from real files, with the exact located messages of mistakes.

use ferry::spec::plan::{Pagination, Param, ParamLocation, ParentScope};
use ferry::spec::{self, Diagnostic, Loaded};
use serde_json::json;

/// A connector with a GraphQL entity, a REST parent and two children;
/// line numbers matter to the assertions.
const API: &str = r#"kind: Connector
name: api
config:
  base_url: { type: string, default: "https://api.example.com" }
http:
  base_url: "{{config.base_url}}"
entities:
  issues:
    graphql:
      query: "query($after: String, $since: DateTime) { issues(after: $after, since: $since) { nodes { id } pageInfo { hasNextPage endCursor } } }"
    records: "$.data.issues.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.issues.pageInfo" }
    incremental: { cursor_field: updatedAt, param: since }
  invoices:
    path: /v1/invoices
    records: "$.data[*]"
    primary_key: [id]
  invoice_lines:
    parent: { entity: invoices, fields: [id], embedded: "$.lines", concurrency: 4 }
    path: "/v1/invoices/{{parent.id}}/lines"
    records: "$.data[*]"
    primary_key: [id]
    pagination: { type: cursor, cursor: "$.data[-1:].id", param: starting_after, has_more: "$.has_more" }
  tags:
    parent: { entity: invoices, fields: [id], embedded: "$.tags", scope: all }
    records: "$[*]"
    primary_key: []
"#;

const FLOW: &str = r#"kind: Flow
name: api
source:
  connector: api
destination: duckdb://./api.duckdb
"#;

fn load(files: &[(&str, &str)]) -> Result<Loaded, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let prefix = format!("{}/", dir.path().display());
    spec::load_with_env(dir.path(), &|_| None).map_err(|problems: Vec<Diagnostic>| {
        problems
            .iter()
            .map(|problem| problem.to_string().replacen(&prefix, "", 1))
            .collect()
    })
}

fn loaded(files: &[(&str, &str)]) -> Loaded {
    load(files).unwrap_or_else(|problems| panic!("unexpected problems:\n{}", problems.join("\n")))
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load(files) {
        Ok(_) => panic!("the folder loaded without problems"),
        Err(problems) => problems,
    }
}

fn api_with(from: &str, to: &str) -> String {
    assert!(API.contains(from), "API does not contain {from:?}");
    API.replacen(from, to, 1)
}

fn variable(name: &str) -> Param {
    Param {
        location: ParamLocation::Variables,
        name: name.to_string(),
    }
}

#[test]
fn graphql_bare_params_are_variables() {
    let loaded = loaded(&[("api.yaml", API)]);
    let issues = &loaded.catalog.connectors["api"].entities["issues"];
    match &issues.pagination {
        Pagination::Relay {
            variable: param, ..
        } => assert_eq!(*param, variable("after")),
        other => panic!("expected relay pagination, found {other:?}"),
    }
    let incremental = issues.incremental.as_ref().unwrap();
    assert_eq!(incremental.param, Some(variable("since")));
}

#[test]
fn relay_variable_may_be_renamed_and_cursor_uses_variables() {
    let text = api_with(
        "pagination: { type: relay, page_info: \"$.data.issues.pageInfo\" }",
        "pagination: { type: cursor, cursor: \"$.data.issues.next\", param: { in: variables, name: page.cursor } }",
    );
    let loaded = loaded(&[("api.yaml", &text)]);
    let issues = &loaded.catalog.connectors["api"].entities["issues"];
    match &issues.pagination {
        Pagination::Cursor { param, .. } => assert_eq!(*param, variable("page.cursor")),
        other => panic!("expected cursor pagination, found {other:?}"),
    }
}

#[test]
fn url_pagination_on_graphql_is_rejected() {
    let text = api_with(
        "pagination: { type: relay, page_info: \"$.data.issues.pageInfo\" }",
        "pagination: { type: link_header }",
    );
    assert_eq!(
        errors(&[("api.yaml", &text)]),
        vec![
            "api.yaml:13:25: entities.issues.pagination.type link_header is for REST APIs: a GraphQL entity posts its query, so its pages come from variables; use relay, cursor, offset or page_number"
        ]
    );
}

#[test]
fn variables_on_rest_entity_are_rejected() {
    let text = api_with(
        "    path: /v1/invoices\n",
        "    path: /v1/invoices\n    pagination: { type: cursor, cursor: \"$.next\", param: { in: variables, name: after } }\n",
    );
    assert_eq!(
        errors(&[("api.yaml", &text)]),
        vec![
            "api.yaml:17:58: entities.invoices.pagination.param is placed in the variables, which only GraphQL entities have; use in: query, body or header"
        ]
    );
}

#[test]
fn parent_plan_reads_embedded_and_scope() {
    let loaded = loaded(&[("api.yaml", API)]);
    let entities = &loaded.catalog.connectors["api"].entities;
    let lines = entities["invoice_lines"].parent.as_ref().unwrap();
    assert_eq!(lines.entity, "invoices");
    assert_eq!(lines.fields, vec!["id"]);
    assert_eq!(lines.concurrency, 4);
    assert_eq!(lines.embedded.as_ref().unwrap().source(), "$.lines");
    assert_eq!(lines.scope, ParentScope::Changed);
    let tags = entities["tags"].parent.as_ref().unwrap();
    assert_eq!(tags.scope, ParentScope::All);
    assert_eq!(tags.concurrency, 1);
}

#[test]
fn embedded_child_that_paginates_needs_a_path() {
    let text = api_with("    path: \"/v1/invoices/{{parent.id}}/lines\"\n", "");
    assert_eq!(
        errors(&[("api.yaml", &text)]),
        vec![
            "api.yaml:23:5: entity \"invoice_lines\" paginates its embedded records but has no path to fetch the rest from; add path (the request that lists the rest) or remove pagination"
        ]
    );
}

#[test]
fn child_without_path_needs_embedded() {
    let text = api_with(", embedded: \"$.tags\"", "");
    assert_eq!(
        errors(&[("api.yaml", &text)]),
        vec![
            "api.yaml:25:3: missing field \"path\" in entity \"tags\" (or graphql, for a GraphQL API)"
        ]
    );
}

#[test]
fn parent_needs_a_primary_key() {
    let text = api_with(
        "    records: \"$.data[*]\"\n    primary_key: [id]\n  invoice_lines:",
        "    records: \"$.data[*]\"\n    primary_key: []\n  invoice_lines:",
    );
    let problems = errors(&[("api.yaml", &text)]);
    assert_eq!(
        problems,
        vec![
            "api.yaml:20:23: entity \"invoices\" is the parent of \"invoice_lines\", so it needs a primary_key: a child reads its parents' rows in key order to resume exactly",
            "api.yaml:26:23: entity \"invoices\" is the parent of \"tags\", so it needs a primary_key: a child reads its parents' rows in key order to resume exactly",
        ]
    );
}

#[test]
fn excluded_parent_field_is_rejected() {
    let text = api_with(
        "    path: /v1/invoices\n",
        "    path: /v1/invoices\n    fields: { exclude: [id] }\n",
    );
    let problems = errors(&[("api.yaml", &text)]);
    assert!(
        problems.contains(
            &"api.yaml:21:42: parent field \"id\" is excluded from the table of \"invoices\" (fields.exclude), so \"invoice_lines\" cannot read it"
                .to_string()
        ),
        "{problems:?}"
    );
}

#[test]
fn excluded_embedded_field_is_rejected() {
    let text = api_with(
        "    path: /v1/invoices\n",
        "    path: /v1/invoices\n    fields: { exclude: [lines], rename: { tags: labels } }\n",
    );
    let problems = errors(&[("api.yaml", &text)]);
    // invoice_lines has a path, so it fetches what the table lacks; tags
    // reads only the embedded list.
    assert_eq!(
        problems,
        vec![
            "api.yaml:27:57: parent field \"tags\" is stored as \"labels\" in the table of \"invoices\" (fields.rename); list \"labels\" and read it as {{parent.labels}}",
        ]
    );
}

/// Returns `API` with the invoices' `fields` set to `fields` and the
/// `invoice_lines` child listing `listed` as its parent fields.
fn api_with_parent_fields(fields: &str, listed: &str) -> String {
    let text = api_with(
        "    path: /v1/invoices\n",
        &format!("    path: /v1/invoices\n    fields: {fields}\n"),
    );
    text.replacen(
        "parent: { entity: invoices, fields: [id], embedded",
        &format!("parent: {{ entity: invoices, fields: {listed}, embedded"),
        1,
    )
}

#[test]
fn parent_field_names_its_stored_column() {
    let text = api_with_parent_fields("{ rename: { number: invoice_number } }", "[id, number]");
    assert_eq!(
        errors(&[("api.yaml", &text)]),
        vec![
            "api.yaml:21:46: parent field \"number\" is stored as \"invoice_number\" in the table of \"invoices\" (fields.rename); list \"invoice_number\" and read it as {{parent.invoice_number}}"
        ]
    );

    let text = api_with_parent_fields(
        "{ rename: { number: invoice_number } }",
        "[id, invoice_number]",
    );
    let loaded = loaded(&[("api.yaml", &text)]);
    let lines = &loaded.catalog.connectors["api"].entities["invoice_lines"];
    let parent = lines.parent.as_ref().unwrap();
    assert_eq!(parent.fields, vec!["id", "invoice_number"]);
}

#[test]
fn parent_field_renamed_onto_excluded_name() {
    // The API's `number` is dropped, and the column "number" contains `code`.
    let text = api_with_parent_fields(
        "{ exclude: [number], rename: { code: number } }",
        "[id, number]",
    );
    let loaded = loaded(&[("api.yaml", &text)]);
    let lines = &loaded.catalog.connectors["api"].entities["invoice_lines"];
    let parent = lines.parent.as_ref().unwrap();
    assert_eq!(parent.fields, vec!["id", "number"]);
}

#[test]
fn parent_field_from_names_loads() {
    // `fields.names` renames `custom.cf_1` to `custom.<name>` at run time.
    let text = api_with_parent_fields(
        "{ include: [id, tags, custom.cf_1], names: { from: issues, id: id, name: name, prefix: custom. } }",
        "[id, custom.Industry]",
    );
    let loaded = loaded(&[("api.yaml", &text)]);
    let lines = &loaded.catalog.connectors["api"].entities["invoice_lines"];
    let parent = lines.parent.as_ref().unwrap();
    assert_eq!(parent.fields, vec!["id", "custom.Industry"]);
}

#[test]
fn parent_field_left_out_is_rejected() {
    let text = api_with_parent_fields(
        "{ exclude: [secret], rename: { secret: code } }",
        "[id, code]",
    );
    assert_eq!(
        errors(&[("api.yaml", &text)]),
        vec![
            "api.yaml:21:46: parent field \"code\" (renamed from \"secret\") is excluded from the table of \"invoices\" (fields.exclude), so \"invoice_lines\" cannot read it"
        ]
    );

    let text = api_with_parent_fields("{ include: [id, total, tags] }", "[id, number]");
    assert_eq!(
        errors(&[("api.yaml", &text)]),
        vec![
            "api.yaml:21:46: parent field \"number\" is not in the fields.include list of \"invoices\", so \"invoice_lines\" cannot read it; add \"number\" to that list"
        ]
    );
}

#[test]
fn child_cannot_use_windows() {
    let text = api_with(
        "    records: \"$[*]\"\n    primary_key: []\n",
        "    records: \"$[*]\"\n    primary_key: []\n    incremental: { cursor_field: t, window: { step: 1d } }\n",
    );
    assert_eq!(
        errors(&[("api.yaml", &text)]),
        vec![
            "api.yaml:29:37: entity \"tags\" has a parent, and child entities cannot use incremental.window; remove the window or filter with incremental.param"
        ]
    );
}

/// A connector whose templates let flows declare GraphQL queries.
const TEMPLATES: &str = r#"kind: Connector
name: gql
config:
  owner: { type: string }
http:
  base_url: https://api.example.com/graphql
entities:
  viewer:
    graphql: { query: "{ viewer { login } }" }
    records: "$.data.viewer"
    primary_key: [login]
templates:
  query:
    description: A GraphQL query of the flow's own; it sets graphql, records, primary_key and pagination
  labelled_issues:
    parameters:
      label: { type: string }
    graphql:
      query: "query($owner: String!, $label: String!, $after: String) { issues(owner: $owner, label: $label, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }"
      variables: { owner: "{{config.owner}}", label: "{{entity.label}}" }
    records: "$.data.issues.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.issues.pageInfo" }
"#;

const TEMPLATE_FLOW: &str = r#"kind: Flow
name: gql
source:
  connector: gql
  config: { owner: octo }
entities:
  viewer: {}
  bugs: { template: labelled_issues, label: bug }
  open_prs:
    template: query
    graphql:
      query: "query($owner: String!, $after: String) { pulls(owner: $owner, after: $after) { nodes { id number } pageInfo { hasNextPage endCursor } } }"
      variables: { owner: "{{config.owner}}" }
    records: "$.data.pulls.nodes[*]"
    primary_key: [id]
    pagination: { type: relay, page_info: "$.data.pulls.pageInfo", variable: after }
"#;

#[test]
fn flows_declare_graphql_queries_from_templates() {
    let loaded = loaded(&[("gql.yaml", TEMPLATES), ("flow.yaml", TEMPLATE_FLOW)]);
    let flow = &loaded.catalog.flows["gql"];
    let names: Vec<&str> = flow
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    assert_eq!(names, vec!["viewer", "bugs", "open_prs"]);

    let bugs = flow.entity("bugs").unwrap();
    assert_eq!(
        serde_json::Value::Object(bugs.parameters.clone()),
        json!({"label": "bug"})
    );
    let rendered = bugs
        .graphql
        .as_ref()
        .unwrap()
        .variables
        .as_ref()
        .unwrap()
        .render(&json!({"config": flow.config, "entity": bugs.parameters}))
        .unwrap();
    assert_eq!(rendered, json!({"owner": "octo", "label": "bug"}));

    let open_prs = flow.entity("open_prs").unwrap();
    assert!(
        open_prs
            .graphql
            .as_ref()
            .unwrap()
            .query
            .starts_with("query($owner: String!, $after: String) { pulls")
    );
    match &open_prs.pagination {
        Pagination::Relay {
            variable: param, ..
        } => assert_eq!(*param, variable("after")),
        other => panic!("expected relay pagination, found {other:?}"),
    }
    assert_ne!(bugs.fingerprint, open_prs.fingerprint);
}

#[test]
fn flow_query_without_records_is_reported() {
    let flow = TEMPLATE_FLOW.replace("    records: \"$.data.pulls.nodes[*]\"\n", "");
    let problems = errors(&[("gql.yaml", TEMPLATES), ("flow.yaml", &flow)]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("missing field \"records\" in entity \"open_prs\""),
        "{problems:?}"
    );
}

#[test]
fn flow_for_children_is_valid() {
    let folder = loaded(&[("api.yaml", API), ("flow.yaml", FLOW)]);
    let flow = &folder.catalog.flows["api"];
    let names: Vec<&str> = flow
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    assert_eq!(names, vec!["issues", "invoices", "invoice_lines", "tags"]);
}
