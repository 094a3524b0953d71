//! GraphQL entities against a loopback server: the exact request bodies,
//! relay and cursor pagination, `errors` with and without data, rate
//! limits inside a 200, and incremental values in variables.

use std::sync::Arc;
use std::time::Duration;

use ferry::engine::{FetchErrorKind, PageToken, Position};
use ferry::spec::plan::{
    Entity, GraphqlPlan, HttpMethod, Incremental, Pagination, Param, ParamLocation, RecordsPlan,
};
use ferry::template::TemplateValue;
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::plan::{connector, entity, jsonpath, test_flow};
use crate::support::{Sequence, json as json_response, received, run};

const QUERY: &str = "query Issues($owner: String!, $first: Int!, $after: String) { \
    repository(owner: $owner) { issues(first: $first, after: $after) { \
    nodes { id number title } pageInfo { hasNextPage endCursor } } } }";

fn variable(name: &str) -> Param {
    Param {
        location: ParamLocation::Variables,
        name: name.to_string(),
    }
}

fn relay() -> Pagination {
    Pagination::Relay {
        page_info: jsonpath("$.data.repository.issues.pageInfo"),
        variable: variable("after"),
    }
}

/// Builds a GraphQL issues entity with relay pagination and `owner` and
/// `first` variables.
fn issues() -> Entity {
    let mut issues = entity("issues", "");
    issues.request.method = HttpMethod::Post;
    issues.graphql = Some(GraphqlPlan {
        query: QUERY.to_string(),
        variables: Some(
            TemplateValue::compile(
                &json!({"owner": "{{config.owner}}", "first": "{{config.first}}"}),
            )
            .unwrap(),
        ),
        operation_name: Some("Issues".to_string()),
    });
    issues.records = RecordsPlan::Path(jsonpath("$.data.repository.issues.nodes[*]"));
    issues.pagination = relay();
    issues
}

fn config() -> Value {
    json!({"owner": "octo", "first": 2})
}

fn page(nodes: Value, has_next_page: bool, end_cursor: Value) -> Value {
    json!({"data": {"repository": {"issues": {
        "nodes": nodes,
        "pageInfo": {"hasNextPage": has_next_page, "endCursor": end_cursor}
    }}}})
}

/// Starts a server that responds by the request's `after` variable (null
/// or absent is the first page), and with 404 to any other.
async fn serve_by_after(routes: Vec<(Option<&str>, ResponseTemplate)>) -> MockServer {
    let routes: Vec<(Option<String>, ResponseTemplate)> = routes
        .into_iter()
        .map(|(after, response)| (after.map(str::to_string), response))
        .collect();
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let after = body["variables"]["after"].as_str().map(str::to_string);
            routes
                .iter()
                .find(|(route, _)| *route == after)
                .map(|(_, response)| response.clone())
                .unwrap_or_else(|| ResponseTemplate::new(404).set_body_string("no route"))
        })
        .mount(&server)
        .await;
    server
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    received(server)
        .await
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect()
}

fn at(page: PageToken) -> Option<Position> {
    Some(Position {
        page,
        ..Position::default()
    })
}

#[tokio::test]
async fn relay_follows_end_cursor_with_exact_bodies() {
    let server = serve_by_after(vec![
        (
            None,
            json_response(page(
                json!([{"id": "I_1", "number": 1}, {"id": "I_2", "number": 2}]),
                true,
                json!("Y3Vyc29yOjI="),
            )),
        ),
        (
            Some("Y3Vyc29yOjI="),
            json_response(page(
                json!([{"id": "I_3", "number": 3}]),
                false,
                json!("Y3Vyc29yOjM="),
            )),
        ),
    ])
    .await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        bodies(&server).await,
        vec![
            json!({"query": QUERY, "variables": {"owner": "octo", "first": 2}, "operationName": "Issues"}),
            json!({"query": QUERY, "variables": {"owner": "octo", "first": 2, "after": "Y3Vyc29yOjI="}, "operationName": "Issues"}),
        ]
    );
    let requests = received(&server).await;
    assert_eq!(requests[0].method.as_str(), "POST");
    assert_eq!(requests[0].url.path(), "/");
    assert_eq!(
        requests[0].headers.get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(
        requests[0].headers.get("accept").unwrap(),
        "application/graphql-response+json, application/json;q=0.9"
    );
    assert_eq!(
        outcome.ids(),
        vec![json!("I_1"), json!("I_2"), json!("I_3")]
    );
    assert_eq!(
        outcome.nexts(),
        vec![at(PageToken::Cursor("Y3Vyc29yOjI=".into())), None]
    );
}

#[tokio::test]
async fn base_url_path_is_the_endpoint() {
    let server = serve_by_after(vec![(
        None,
        json_response(page(json!([{"id": "I_1"}]), false, Value::Null)),
    )])
    .await;
    let issues = Arc::new(issues());
    let flow = test_flow(
        connector(&format!("{}/api/graphql", server.uri())),
        &issues,
        config(),
    );

    let outcome = run(&flow, &issues, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(received(&server).await[0].url.path(), "/api/graphql");
}

#[tokio::test]
async fn anonymous_query_sends_no_operation_name() {
    let server = serve_by_after(vec![(
        None,
        json_response(page(json!([{"id": "I_1"}]), false, Value::Null)),
    )])
    .await;
    let mut plain = issues();
    plain.graphql = Some(GraphqlPlan {
        query: "{ repository { issues { nodes { id } } } }".to_string(),
        variables: None,
        operation_name: None,
    });
    plain.pagination = Pagination::None;
    let plain = Arc::new(plain);
    let flow = test_flow(connector(&server.uri()), &plain, config());

    let outcome = run(&flow, &plain, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        bodies(&server).await,
        vec![json!({"query": "{ repository { issues { nodes { id } } } }", "variables": {}})]
    );
}

#[tokio::test]
async fn has_next_page_without_end_cursor_stops_with_error() {
    let server = serve_by_after(vec![(
        None,
        json_response(page(json!([{"id": "I_1"}]), true, Value::Null)),
    )])
    .await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Response);
    assert!(
        error
            .message
            .contains("hasNextPage true but endCursor null"),
        "{}",
        error.message
    );
    assert_eq!(received(&server).await.len(), 1);
    assert_eq!(outcome.ids(), vec![json!("I_1")]);
    // The saved position stays on the request whose page had no cursor.
    assert_eq!(outcome.nexts(), vec![Some(Position::default())]);
}

#[tokio::test]
async fn empty_page_with_null_end_cursor_ends() {
    let server = serve_by_after(vec![(
        None,
        json_response(page(json!([]), true, Value::Null)),
    )])
    .await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(outcome.nexts(), vec![None]);
}

#[tokio::test]
async fn repeated_end_cursor_is_a_pagination_loop() {
    let server = serve_by_after(vec![
        (
            None,
            json_response(page(json!([{"id": "I_1"}]), true, json!("c1"))),
        ),
        (
            Some("c1"),
            json_response(page(json!([{"id": "I_2"}]), true, json!("c1"))),
        ),
    ])
    .await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::PaginationLoop);
    assert_eq!(received(&server).await.len(), 2);
    assert_eq!(outcome.ids(), vec![json!("I_1"), json!("I_2")]);
}

#[tokio::test]
async fn errors_without_data_fail_the_page() {
    let server = serve_by_after(vec![(
        None,
        json_response(json!({
            "data": null,
            "errors": [{
                "message": "Could not resolve to a Repository with the name 'octo/nope'.",
                "path": ["repository"],
                "locations": [{"line": 1, "column": 60}]
            }]
        })),
    )])
    .await;
    let mut lenient = issues();
    lenient.partial_ok = true;
    let lenient = Arc::new(lenient);
    let flow = test_flow(connector(&server.uri()), &lenient, config());

    let outcome = run(&flow, &lenient, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Graphql);
    assert!(
        error.message.contains(
            "the GraphQL response has 1 error: Could not resolve to a Repository with the name 'octo/nope'. (at repository)"
        ),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("no data to keep"),
        "{}",
        error.message
    );
    assert!(outcome.pages.is_empty());
}

fn partial_response() -> ResponseTemplate {
    json_response(json!({
        "errors": [
            {"message": "Name could not be fetched.", "path": ["repository", "issues", "nodes", 1, "title"]},
            {"message": "Body could not be fetched.", "path": ["repository", "issues", "nodes", 1, "body"]}
        ],
        "data": {"repository": {"issues": {
            "nodes": [{"id": "I_1", "title": "a"}, {"id": "I_2", "title": null}],
            "pageInfo": {"hasNextPage": false, "endCursor": "c2"}
        }}}
    }))
}

#[tokio::test]
async fn errors_with_data_fail_without_partial_ok() {
    let server = serve_by_after(vec![(None, partial_response())]).await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Graphql);
    assert!(
        error.message.contains(
            "2 errors: Name could not be fetched. (at repository.issues.nodes.1.title); \
             Body could not be fetched. (at repository.issues.nodes.1.body)"
        ),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("set partial_ok: true"),
        "{}",
        error.message
    );
    assert!(outcome.pages.is_empty());
}

#[tokio::test]
async fn partial_ok_keeps_data_and_counts_errors() {
    let server = serve_by_after(vec![(None, partial_response())]).await;
    let mut lenient = issues();
    lenient.partial_ok = true;
    let lenient = Arc::new(lenient);
    let flow = test_flow(connector(&server.uri()), &lenient, config());

    let outcome = run(&flow, &lenient, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        outcome.records(),
        vec![
            json!({"id": "I_1", "title": "a"}),
            json!({"id": "I_2", "title": null})
        ]
    );
    assert_eq!(outcome.pages[0].graphql_errors, 2);
}

fn rate_limited() -> ResponseTemplate {
    json_response(json!({
        "errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]
    }))
}

#[tokio::test]
async fn rate_limit_in_body_is_retried() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(Sequence::new(vec![
            rate_limited(),
            json_response(page(json!([{"id": "I_1"}]), false, Value::Null)),
        ]))
        .mount(&server)
        .await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    outcome.assert_ok();
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1]);
    assert_eq!(outcome.ids(), vec![json!("I_1")]);
    assert_eq!(outcome.pages[0].requests, 2);
}

#[tokio::test]
async fn rate_limit_in_body_gives_up_after_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(rate_limited())
        .mount(&server)
        .await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Http);
    assert!(
        error.message.contains(
            "rate limited (the response body says: API rate limit exceeded for user ID 1.) after 3 attempts"
        ),
        "{}",
        error.message
    );
    assert_eq!(received(&server).await.len(), 3);
}

#[tokio::test]
async fn cost_extension_wait_is_honoured() {
    let server = MockServer::start().await;
    // 40 missing points restored at 100 per second: a 400 ms wait.
    let throttled = json_response(json!({
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {"cost": {
            "requestedQueryCost": 50, "actualQueryCost": null,
            "throttleStatus": {"maximumAvailable": 1000, "currentlyAvailable": 10, "restoreRate": 100}
        }}
    }));
    Mock::given(any())
        .respond_with(Sequence::new(vec![
            throttled,
            json_response(page(json!([{"id": "I_1"}]), false, Value::Null)),
        ]))
        .mount(&server)
        .await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let started = std::time::Instant::now();
    let outcome = run(&flow, &issues, Position::default()).await;
    let elapsed = started.elapsed();

    outcome.assert_ok();
    assert_eq!(received(&server).await.len(), 2);
    // The test retry policy caps backoff at 5 ms, so only the cost
    // extension explains a wait this long.
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
}

#[tokio::test]
async fn http_error_status_quotes_the_errors() {
    let server = serve_by_after(vec![(
        None,
        ResponseTemplate::new(400).set_body_json(json!({
            "errors": [{"message": "Cannot query field \"nodez\" on type \"IssueConnection\"."}]
        })),
    )])
    .await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Http);
    assert!(error.message.contains("HTTP 400"), "{}", error.message);
    assert!(
        error.message.contains("Cannot query field"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn non_object_response_is_not_graphql() {
    let server = serve_by_after(vec![(None, json_response(json!(["not", "graphql"])))]).await;
    let issues = Arc::new(issues());
    let flow = test_flow(connector(&server.uri()), &issues, config());

    let outcome = run(&flow, &issues, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Response);
    assert!(
        error.message.contains("not a GraphQL response object"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn incremental_value_goes_to_a_variable() {
    let server = serve_by_after(vec![(
        None,
        json_response(page(
            json!([{"id": "I_1", "updatedAt": "2024-01-05T00:00:00Z"}]),
            false,
            Value::Null,
        )),
    )])
    .await;
    let mut recent = issues();
    recent.incremental = Some(Incremental {
        cursor_field: "updatedAt".to_string(),
        param: Some(variable("filter.since")),
        start: None,
        lookback: Duration::ZERO,
        window: None,
    });
    recent.graphql.as_mut().unwrap().variables = Some(
        TemplateValue::compile(&json!({
            "owner": "{{config.owner}}",
            "first": "{{config.first}}",
            "since": "{{state.cursor}}"
        }))
        .unwrap(),
    );
    let recent = Arc::new(recent);
    let flow = test_flow(connector(&server.uri()), &recent, config());
    let start = Position {
        since: Some(json!("2024-01-01T00:00:00Z")),
        ..Position::default()
    };

    let outcome = run(&flow, &recent, start).await;

    outcome.assert_ok();
    assert_eq!(
        bodies(&server).await[0]["variables"],
        json!({
            "owner": "octo",
            "first": 2,
            "since": "2024-01-01T00:00:00Z",
            "filter": {"since": "2024-01-01T00:00:00Z"}
        })
    );
    assert_eq!(
        outcome.pages[0].cursor_max,
        Some(json!("2024-01-05T00:00:00Z"))
    );
}

#[tokio::test]
async fn first_run_sends_null_state_cursor() {
    let server = serve_by_after(vec![(
        None,
        json_response(page(json!([{"id": "I_1"}]), false, Value::Null)),
    )])
    .await;
    let mut recent = issues();
    recent.incremental = Some(Incremental {
        cursor_field: "updatedAt".to_string(),
        param: None,
        start: None,
        lookback: Duration::ZERO,
        window: None,
    });
    recent.graphql.as_mut().unwrap().variables =
        Some(TemplateValue::compile(&json!({"since": "{{state.cursor}}"})).unwrap());
    let recent = Arc::new(recent);
    let flow = test_flow(connector(&server.uri()), &recent, config());

    let outcome = run(&flow, &recent, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        bodies(&server).await[0]["variables"],
        json!({"since": null})
    );
}

#[tokio::test]
async fn cursor_pagination_on_a_plain_field() {
    let server = serve_by_after(vec![
        (
            None,
            json_response(json!({"data": {"items": {"list": [{"id": 1}], "next": "n1"}}})),
        ),
        (
            Some("n1"),
            json_response(json!({"data": {"items": {"list": [{"id": 2}], "next": null}}})),
        ),
    ])
    .await;
    let mut items = issues();
    items.records = RecordsPlan::Path(jsonpath("$.data.items.list[*]"));
    items.pagination = Pagination::Cursor {
        cursor: jsonpath("$.data.items.next"),
        param: variable("after"),
        has_more: None,
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, config());

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["variables"].get("after"), None);
    assert_eq!(sent[1]["variables"]["after"], json!("n1"));
    assert_eq!(outcome.ids(), vec![json!(1), json!(2)]);
}

#[tokio::test]
async fn page_number_pagination_through_variables() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let page = body["variables"]["page"].as_u64().unwrap_or(0);
            let items: Vec<Value> = match page {
                0 => vec![json!({"id": 1}), json!({"id": 2})],
                1 => vec![json!({"id": 3})],
                _ => vec![],
            };
            json_response(json!({"data": {"allItems": items}}))
        })
        .mount(&server)
        .await;
    let mut items = issues();
    items.graphql.as_mut().unwrap().variables = None;
    items.records = RecordsPlan::Path(jsonpath("$.data.allItems[*]"));
    items.pagination = Pagination::PageNumber {
        param: variable("page"),
        start: 0,
        total_pages: None,
        stop_on_short_page: true,
        page_size: Some(2),
        page_size_param: Some(variable("perPage")),
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, config());

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    let variables: Vec<Value> = bodies(&server)
        .await
        .into_iter()
        .map(|body| body["variables"].clone())
        .collect();
    assert_eq!(
        variables,
        vec![
            json!({"page": 0, "perPage": 2}),
            json!({"page": 1, "perPage": 2})
        ]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2), json!(3)]);
}

#[tokio::test]
async fn variables_must_render_to_a_mapping() {
    let server = serve_by_after(vec![]).await;
    let mut broken = issues();
    broken.graphql.as_mut().unwrap().variables =
        Some(TemplateValue::compile(&json!("{{config.owner}}")).unwrap());
    let broken = Arc::new(broken);
    let flow = test_flow(connector(&server.uri()), &broken, config());

    let outcome = run(&flow, &broken, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Template);
    assert!(
        error
            .message
            .contains("graphql.variables renders to \"octo\", expected a mapping"),
        "{}",
        error.message
    );
    assert!(received(&server).await.is_empty());
}
