//! Child entities against a loopback server, with parent rows held in
//! memory: one request sequence per parent, parent order, resume
//! positions, concurrency, deleted parents and embedded records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::engine::{
    FetchContext, FetchErrorKind, HttpClient, PageToken, ParentPosition, Position, fetch_first_page,
};
use ferry::spec::plan::{
    Entity, GraphqlPlan, HttpMethod, Pagination, ParentPlan, ParentScope, RecordsPlan, StatusAction,
};
use ferry::template::TemplateValue;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::plan::{connector, entity, jsonpath, param, query, test_flow};
use crate::support::{
    MemoryParents, Outcome, json as json_response, now, received, requests, run_children, serve,
};

fn parent_plan(entity: &str, fields: &[&str], concurrency: u32) -> ParentPlan {
    ParentPlan {
        entity: entity.to_string(),
        fields: fields.iter().map(|field| field.to_string()).collect(),
        concurrency,
        embedded: None,
        scope: ParentScope::Changed,
    }
}

/// Comments of each issue, `$[*]` records, Link header pagination.
fn comments(concurrency: u32) -> Entity {
    let mut comments = entity("comments", "/issues/{{parent.number}}/comments");
    comments.records = RecordsPlan::Path(jsonpath("$[*]"));
    comments.pagination = Pagination::LinkHeader;
    comments.parent = Some(parent_plan("issues", &["number"], concurrency));
    comments
}

fn issues(numbers: &[u64]) -> MemoryParents {
    MemoryParents::numbered(
        numbers
            .iter()
            .map(|number| json!({"number": number, "title": format!("issue {number}")}))
            .collect(),
    )
}

/// Returns the in-progress position of parent `index` (0-based).
fn in_progress(parents: &MemoryParents, index: usize) -> ParentPosition {
    let row = parents.row(index);
    ParentPosition {
        synced_at: row.synced_at,
        key: row.key.clone(),
        fields: serde_json::Map::from_iter([("number".to_string(), row.fields["number"].clone())]),
        done: false,
    }
}

fn at(parent: ParentPosition, page: PageToken) -> Option<Position> {
    Some(Position {
        parent: Some(parent),
        page,
        ..Position::default()
    })
}

fn link_next(server_uri: &str, path: &str) -> String {
    format!("<{server_uri}{path}>; rel=\"next\"")
}

fn comment_ids(outcome: &Outcome) -> Vec<Value> {
    outcome.ids()
}

#[tokio::test]
async fn each_parent_gets_its_request_sequence() {
    let server = wiremock::MockServer::start().await;
    let uri = server.uri();
    crate::support::mount(
        &server,
        vec![
            ("/issues/1/comments", json_response(json!([{"id": 11}]))),
            (
                "/issues/2/comments",
                json_response(json!([{"id": 21}, {"id": 22}]))
                    .insert_header("Link", link_next(&uri, "/issues/2/comments?page=2")),
            ),
            (
                "/issues/2/comments?page=2",
                json_response(json!([{"id": 23}])),
            ),
            ("/issues/3/comments", json_response(json!([]))),
        ],
    )
    .await;
    let parents = Arc::new(issues(&[1, 2, 3]));
    let child = Arc::new(comments(1));
    let flow = test_flow(connector(&uri), &child, json!({}));

    let outcome = run_children(&flow, &child, parents.clone(), Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /issues/1/comments",
            "GET /issues/2/comments",
            "GET /issues/2/comments?page=2",
            "GET /issues/3/comments",
        ]
    );
    assert_eq!(
        outcome.records(),
        vec![
            json!({"id": 11, "issues_number": 1}),
            json!({"id": 21, "issues_number": 2}),
            json!({"id": 22, "issues_number": 2}),
            json!({"id": 23, "issues_number": 2}),
        ]
    );
    assert_eq!(
        outcome.nexts(),
        vec![
            at(in_progress(&parents, 0).finished(), PageToken::Start),
            at(
                in_progress(&parents, 1),
                PageToken::Url(format!("{uri}/issues/2/comments?page=2"))
            ),
            at(in_progress(&parents, 1).finished(), PageToken::Start),
            at(in_progress(&parents, 2).finished(), PageToken::Start),
        ]
    );
    assert_eq!(*parents.asked.lock().unwrap(), vec![None]);
}

#[tokio::test]
async fn resume_mid_parent_continues_then_lists_after() {
    let server = wiremock::MockServer::start().await;
    let uri = server.uri();
    crate::support::mount(
        &server,
        vec![
            (
                "/issues/2/comments?page=2",
                json_response(json!([{"id": 23}])),
            ),
            ("/issues/3/comments", json_response(json!([{"id": 31}]))),
        ],
    )
    .await;
    let parents = Arc::new(issues(&[1, 2, 3]));
    let child = Arc::new(comments(1));
    let flow = test_flow(connector(&uri), &child, json!({}));
    let start = at(
        in_progress(&parents, 1),
        PageToken::Url(format!("{uri}/issues/2/comments?page=2")),
    )
    .unwrap();

    let outcome = run_children(&flow, &child, parents.clone(), start).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /issues/2/comments?page=2", "GET /issues/3/comments"]
    );
    assert_eq!(comment_ids(&outcome), vec![json!(23), json!(31)]);
    assert_eq!(outcome.records()[0], json!({"id": 23, "issues_number": 2}));
    assert_eq!(
        *parents.asked.lock().unwrap(),
        vec![Some(in_progress(&parents, 1).finished())]
    );
}

#[tokio::test]
async fn resume_after_done_parent_reads_the_next() {
    let server = serve(vec![(
        "/issues/3/comments",
        json_response(json!([{"id": 31}])),
    )])
    .await;
    let parents = Arc::new(issues(&[1, 2, 3]));
    let child = Arc::new(comments(1));
    let flow = test_flow(connector(&server.uri()), &child, json!({}));
    let start = at(in_progress(&parents, 1).finished(), PageToken::Start).unwrap();

    let outcome = run_children(&flow, &child, parents.clone(), start).await;

    outcome.assert_ok();
    assert_eq!(requests(&server).await, vec!["GET /issues/3/comments"]);
    assert_eq!(comment_ids(&outcome), vec![json!(31)]);
}

#[tokio::test]
async fn concurrent_parents_deliver_in_parent_order() {
    let delay = Duration::from_millis(400);
    // The first parent responds last, so pages arrive out of order. Read
    // one parent at a time, the four would take 700 ms.
    let server = serve(vec![
        (
            "/issues/1/comments",
            json_response(json!([{"id": 11}])).set_delay(delay),
        ),
        (
            "/issues/2/comments",
            json_response(json!([{"id": 21}])).set_delay(delay / 2),
        ),
        (
            "/issues/3/comments",
            json_response(json!([{"id": 31}])).set_delay(delay / 4),
        ),
        ("/issues/4/comments", json_response(json!([{"id": 41}]))),
    ])
    .await;
    let parents = Arc::new(issues(&[1, 2, 3, 4]));
    let child = Arc::new(comments(3));
    let flow = test_flow(connector(&server.uri()), &child, json!({}));

    let started = Instant::now();
    let outcome = run_children(&flow, &child, parents.clone(), Position::default()).await;
    let elapsed = started.elapsed();

    outcome.assert_ok();
    assert_eq!(
        comment_ids(&outcome),
        vec![json!(11), json!(21), json!(31), json!(41)]
    );
    let nexts: Vec<Vec<Value>> = outcome
        .nexts()
        .into_iter()
        .map(|next| next.unwrap().parent.unwrap().key)
        .collect();
    assert_eq!(
        nexts,
        vec![
            vec![json!(1)],
            vec![json!(2)],
            vec![json!(3)],
            vec![json!(4)]
        ]
    );
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 4);
    // Parents 2 and 3 were requested while parent 1 was still waiting.
    assert!(elapsed < Duration::from_millis(650), "{elapsed:?}");
}

#[tokio::test]
async fn failed_parent_stops_after_earlier_parents() {
    let server = serve(vec![
        (
            "/issues/1/comments",
            json_response(json!([{"id": 11}])).set_delay(Duration::from_millis(200)),
        ),
        (
            "/issues/2/comments",
            ResponseTemplate::new(400).set_body_string("bad issue"),
        ),
        ("/issues/3/comments", json_response(json!([{"id": 31}]))),
    ])
    .await;
    let parents = Arc::new(issues(&[1, 2, 3]));
    let child = Arc::new(comments(2));
    let flow = test_flow(connector(&server.uri()), &child, json!({}));

    let outcome = run_children(&flow, &child, parents.clone(), Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Http);
    assert!(
        error
            .message
            .starts_with("entity comments, parent issues [2]: GET "),
        "{}",
        error.message
    );
    assert_eq!(comment_ids(&outcome), vec![json!(11)]);
    assert_eq!(
        outcome.nexts(),
        vec![at(in_progress(&parents, 0).finished(), PageToken::Start)]
    );
}

#[tokio::test]
async fn deleted_parent_404_is_ignored() {
    let server = serve(vec![
        ("/issues/1/comments", json_response(json!([{"id": 11}]))),
        (
            "/issues/2/comments",
            ResponseTemplate::new(404).set_body_string("Not Found"),
        ),
        ("/issues/3/comments", json_response(json!([{"id": 31}]))),
    ])
    .await;
    let parents = Arc::new(issues(&[1, 2, 3]));
    let mut child = comments(1);
    child.on_status.insert(404, StatusAction::Ignore);
    let child = Arc::new(child);
    let flow = test_flow(connector(&server.uri()), &child, json!({}));

    let outcome = run_children(&flow, &child, parents.clone(), Position::default()).await;

    outcome.assert_ok();
    assert_eq!(comment_ids(&outcome), vec![json!(11), json!(31)]);
    assert_eq!(outcome.pages.len(), 3);
    assert!(outcome.pages[1].records.is_empty());
    assert_eq!(
        outcome.nexts()[1],
        at(in_progress(&parents, 1).finished(), PageToken::Start)
    );
}

#[tokio::test]
async fn max_pages_counts_every_parent() {
    let server = serve(vec![
        ("/issues/1/comments", json_response(json!([{"id": 11}]))),
        ("/issues/2/comments", json_response(json!([{"id": 21}]))),
        ("/issues/3/comments", json_response(json!([{"id": 31}]))),
    ])
    .await;
    let parents = Arc::new(issues(&[1, 2, 3]));
    let mut child = comments(1);
    child.max_pages = 2;
    let child = Arc::new(child);
    let flow = test_flow(connector(&server.uri()), &child, json!({}));

    let outcome = run_children(&flow, &child, parents.clone(), Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::MaxPages);
    assert_eq!(comment_ids(&outcome), vec![json!(11), json!(21)]);
    assert_eq!(requests(&server).await.len(), 2);
}

fn stripe_invoices() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stripe-invoices.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Invoice lines embedded in each invoice row; the rest of a truncated
/// list is fetched with Stripe's `starting_after` cursor.
fn invoice_lines() -> Entity {
    let mut lines = entity("invoice_lines", "/v1/invoices/{{parent.id}}/lines");
    lines.request.params = vec![param("limit", json!("2"))];
    lines.pagination = Pagination::Cursor {
        cursor: jsonpath("$.data[-1:].id"),
        param: query("starting_after"),
        has_more: Some(jsonpath("$.has_more")),
    };
    let mut plan = parent_plan("invoices", &["id"], 1);
    plan.embedded = Some(jsonpath("$.lines"));
    lines.parent = Some(plan);
    lines
}

#[tokio::test]
async fn embedded_records_are_read_without_requests() {
    let fixture = stripe_invoices();
    let server = serve(vec![(
        "/v1/invoices/in_2Pgc6tB7WZ01zgkWu9fdqL6J/lines?limit=2&starting_after=il_2b",
        json_response(fixture["rest_of_second_invoice"].clone()),
    )])
    .await;
    let parents = Arc::new(MemoryParents::numbered(
        fixture["invoices"].as_array().unwrap().clone(),
    ));
    let lines = Arc::new(invoice_lines());
    let flow = test_flow(connector(&server.uri()), &lines, json!({}));

    let outcome = run_children(&flow, &lines, parents.clone(), Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /v1/invoices/in_2Pgc6tB7WZ01zgkWu9fdqL6J/lines?limit=2&starting_after=il_2b"]
    );
    assert_eq!(
        outcome.ids(),
        vec![
            json!("il_1Pgc6sB7WZ01zgkWFnxLrLCq"),
            json!("il_2a"),
            json!("il_2b"),
            json!("il_2c"),
            json!("il_2d")
        ]
    );
    let invoice_ids: Vec<Value> = outcome
        .records()
        .iter()
        .map(|record| record["invoices_id"].clone())
        .collect();
    assert_eq!(
        invoice_ids,
        vec![
            json!("in_1Pgc6tB7WZ01zgkWu9fdqL6I"),
            json!("in_2Pgc6tB7WZ01zgkWu9fdqL6J"),
            json!("in_2Pgc6tB7WZ01zgkWu9fdqL6J"),
            json!("in_2Pgc6tB7WZ01zgkWu9fdqL6J"),
            json!("in_2Pgc6tB7WZ01zgkWu9fdqL6J")
        ]
    );
    assert_eq!(outcome.pages[0].requests, 0);
    // The truncated list continues from the request after the embedded page.
    let second = outcome.nexts()[1].clone().unwrap();
    assert_eq!(second.page, PageToken::Cursor("il_2b".into()));
    assert_eq!(
        second.parent.unwrap().fields,
        serde_json::Map::from_iter([("id".to_string(), json!("in_2Pgc6tB7WZ01zgkWu9fdqL6J"))])
    );
}

#[tokio::test]
async fn embedded_list_without_path_sends_nothing() {
    let server = serve(vec![]).await;
    let parents = Arc::new(MemoryParents::numbered(vec![
        json!({"id": "a", "tags": [{"name": "red"}, {"name": "blue"}]}),
        json!({"id": "b", "tags": null}),
        json!({"id": "c", "tags": [{"name": "green"}]}),
    ]));
    let mut tags = entity("tags", "");
    tags.records = RecordsPlan::Path(jsonpath("$[*]"));
    tags.primary_key = vec!["items_id".to_string(), "name".to_string()];
    let mut plan = parent_plan("items", &["id"], 1);
    plan.embedded = Some(jsonpath("$.tags"));
    tags.parent = Some(plan);
    let tags = Arc::new(tags);
    let flow = test_flow(connector(&server.uri()), &tags, json!({}));

    let outcome = run_children(&flow, &tags, parents.clone(), Position::default()).await;

    outcome.assert_ok();
    assert!(received(&server).await.is_empty());
    assert_eq!(
        outcome.records(),
        vec![
            json!({"name": "red", "items_id": "a"}),
            json!({"name": "blue", "items_id": "a"}),
            json!({"name": "green", "items_id": "c"}),
        ]
    );
    assert_eq!(outcome.pages.len(), 3);
}

#[tokio::test]
async fn graphql_child_gets_typed_parent_variables() {
    let server = serve(vec![(
        "/",
        json_response(json!({"data": {"issue": {"comments": {"nodes": [{"id": "C_1"}]}}}})),
    )])
    .await;
    let parents = Arc::new(issues(&[7]));
    let mut child = entity("comments", "");
    child.request.method = HttpMethod::Post;
    child.graphql = Some(GraphqlPlan {
        query: "query($number: Int!) { issue(number: $number) { comments { nodes { id } } } }"
            .to_string(),
        variables: Some(TemplateValue::compile(&json!({"number": "{{parent.number}}"})).unwrap()),
        operation_name: None,
    });
    child.records = RecordsPlan::Path(jsonpath("$.data.issue.comments.nodes[*]"));
    child.parent = Some(parent_plan("issues", &["number"], 1));
    let child = Arc::new(child);
    let flow = test_flow(connector(&server.uri()), &child, json!({}));

    let outcome = run_children(&flow, &child, parents.clone(), Position::default()).await;

    outcome.assert_ok();
    let body: Value = serde_json::from_slice(&received(&server).await[0].body).unwrap();
    assert_eq!(body["variables"], json!({"number": 7}));
    assert_eq!(
        outcome.records(),
        vec![json!({"id": "C_1", "issues_number": 7})]
    );
}

#[tokio::test]
async fn first_page_without_rows_uses_the_parents_first_page() {
    let server = serve(vec![
        (
            "/issues",
            json_response(json!({"data": [{"id": 500, "number": 5}, {"id": 600, "number": 6}]})),
        ),
        ("/issues/5/comments", json_response(json!([{"id": 51}]))),
    ])
    .await;
    let parent = Arc::new(entity("issues", "/issues"));
    let child = Arc::new(comments(1));
    let mut api = connector(&server.uri());
    api.entities.insert("issues".to_string(), parent.clone());
    let flow = test_flow(api, &child, json!({}));
    let context = FetchContext {
        flow: flow.clone(),
        entity: child.clone(),
        client: Arc::new(HttpClient::new(&flow).unwrap()),
        now: now(),
        parents: None,
    };

    let page = fetch_first_page(&context, Position::default())
        .await
        .unwrap();

    assert_eq!(
        requests(&server).await,
        vec!["GET /issues", "GET /issues/5/comments"]
    );
    assert_eq!(
        page.records,
        vec![
            json!({"id": 51, "issues_number": 5})
                .as_object()
                .unwrap()
                .clone()
        ]
    );
    // The first parent's sequence ended with this page.
    assert_eq!(page.next, None);
}

/// Stripe-like invoices with embedded line items, through the YAML loader
/// and a DuckDB file: the child reads each invoice's `lines` back from the
/// parent table and requests only the rest of the truncated list.
#[tokio::test]
async fn embedded_lines_sync_from_the_parent_table() {
    let fixture = stripe_invoices();
    let server = serve(vec![
        (
            "/v1/invoices",
            json_response(
                json!({"object": "list", "data": fixture["invoices"], "has_more": false}),
            ),
        ),
        (
            "/v1/invoices/in_2Pgc6tB7WZ01zgkWu9fdqL6J/lines?limit=2&starting_after=il_2b",
            json_response(fixture["rest_of_second_invoice"].clone()),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let connector = r#"kind: Connector
name: shop
config: { base_url: { type: string } }
http: { base_url: "{{config.base_url}}" }
entities:
  invoices:
    path: /v1/invoices
    records: "$.data[*]"
    primary_key: [id]
  invoice_lines:
    parent: { entity: invoices, fields: [id], embedded: "$.lines" }
    path: "/v1/invoices/{{parent.id}}/lines"
    params: { limit: "2" }
    records: "$.data[*]"
    primary_key: [id]
    pagination: { type: cursor, cursor: "$.data[-1:].id", param: starting_after, has_more: "$.has_more" }
"#;
    std::fs::write(dir.path().join("shop.yaml"), connector).unwrap();
    let db = dir.path().join("test.duckdb");
    let flow = format!(
        "kind: Flow\nname: shop\nsource:\n  connector: shop\n  config: {{ base_url: \"{}\" }}\ndestination: \"duckdb://{}\"\n",
        server.uri(),
        db.display()
    );
    std::fs::write(dir.path().join("flow.yaml"), flow).unwrap();
    let loaded = ferry::spec::load_with_env(dir.path(), &|_| None).unwrap();
    let flow = loaded.catalog.flows["shop"].clone();

    let report = ferry::sync::run_flow(flow, &[], &ferry::sync::RunOptions::default()).await;

    for run in &report.runs {
        assert_eq!(run.outcome, ferry::sync::Outcome::Succeeded, "{run:?}");
    }
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /v1/invoices",
            "GET /v1/invoices/in_2Pgc6tB7WZ01zgkWu9fdqL6J/lines?limit=2&starting_after=il_2b"
        ]
    );
    let rows = crate::support::duck::query(
        &db,
        "select id, invoices_id, amount from shop.invoice_lines order by id",
    );
    assert_eq!(
        rows,
        vec![
            vec![
                "il_1Pgc6sB7WZ01zgkWFnxLrLCq",
                "in_1Pgc6tB7WZ01zgkWu9fdqL6I",
                "1000"
            ],
            vec!["il_2a", "in_2Pgc6tB7WZ01zgkWu9fdqL6J", "1000"],
            vec!["il_2b", "in_2Pgc6tB7WZ01zgkWu9fdqL6J", "2000"],
            vec!["il_2c", "in_2Pgc6tB7WZ01zgkWu9fdqL6J", "3000"],
            vec!["il_2d", "in_2Pgc6tB7WZ01zgkWu9fdqL6J", "4000"],
        ]
    );
}

/// A parent that renames and drops fields, through the YAML loader and a
/// DuckDB file: `parent.fields` names the parent's stored columns.
#[tokio::test]
async fn parent_fields_read_renamed_columns() {
    let server = serve(vec![
        (
            "/issues",
            json_response(json!([
                {"id": 101, "number": 1, "slug": "first"},
                {"id": 102, "number": 2, "slug": "second"}
            ])),
        ),
        (
            "/issues/1/comments?issue=101",
            json_response(json!([{"id": 11}])),
        ),
        (
            "/issues/2/comments?issue=102",
            json_response(json!([{"id": 21}])),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    // The API's `slug` is dropped, and the column "slug" contains `id`.
    let connector = r#"kind: Connector
name: tracker
config: { base_url: { type: string } }
http: { base_url: "{{config.base_url}}" }
entities:
  issues:
    path: /issues
    records: "$[*]"
    primary_key: [id]
    fields: { exclude: [slug], rename: { number: issue_number, id: slug } }
  comments:
    parent: { entity: issues, fields: [issue_number, slug] }
    path: "/issues/{{parent.issue_number}}/comments"
    params: { issue: "{{parent.slug}}" }
    records: "$[*]"
    primary_key: [id]
"#;
    std::fs::write(dir.path().join("tracker.yaml"), connector).unwrap();
    let db = dir.path().join("test.duckdb");
    let flow = format!(
        "kind: Flow\nname: tracker\nsource:\n  connector: tracker\n  config: {{ base_url: \"{}\" }}\ndestination: \"duckdb://{}\"\n",
        server.uri(),
        db.display()
    );
    std::fs::write(dir.path().join("flow.yaml"), flow).unwrap();
    let loaded = match ferry::spec::load_with_env(dir.path(), &|_| None) {
        Ok(loaded) => loaded,
        Err(problems) => panic!("config does not load: {problems:?}"),
    };
    let flow = loaded.catalog.flows["tracker"].clone();

    let report = ferry::sync::run_flow(flow, &[], &ferry::sync::RunOptions::default()).await;

    for run in &report.runs {
        assert_eq!(run.outcome, ferry::sync::Outcome::Succeeded, "{run:?}");
    }
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /issues",
            "GET /issues/1/comments?issue=101",
            "GET /issues/2/comments?issue=102"
        ]
    );
    let rows = crate::support::duck::query(
        &db,
        "select id, issues_issue_number, issues_slug from tracker.comments order by id",
    );
    assert_eq!(rows, vec![vec!["11", "1", "101"], vec!["21", "2", "102"]]);
}
