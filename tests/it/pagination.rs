//! Every pagination type and stop rule, against a loopback server, with the
//! exact requests sent and the exact positions handed back.

use std::sync::Arc;

use ferry::engine::{FetchErrorKind, PageToken, Position};
use ferry::spec::plan::{ApiKeyLocation, AuthPlan, HttpMethod, Pagination, ParamLocation};
use ferry::template::TemplateValue;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::support::plan::{
    connector, entity, jsonpath, param, placed, query, template, test_flow,
};
use crate::support::{json, received, requests, run, serve};

fn at(page: PageToken) -> Option<Position> {
    Some(Position {
        page,
        ..Position::default()
    })
}

fn cursor_pagination() -> Pagination {
    Pagination::Cursor {
        cursor: jsonpath("$.next"),
        param: query("after"),
        has_more: None,
    }
}

fn offset_pagination(stop_on_short_page: bool) -> Pagination {
    Pagination::Offset {
        offset_param: query("offset"),
        limit_param: query("limit"),
        limit: 2,
        start: 0,
        has_more: None,
        stop_on_short_page,
    }
}

#[tokio::test]
async fn cursor_follows_until_null() {
    let server = serve(vec![
        (
            "/items",
            json(json!({"data": [{"id": 1}, {"id": 2}], "next": "c2"})),
        ),
        (
            "/items?after=c2",
            json(json!({"data": [{"id": 3}], "next": null})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = cursor_pagination();
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items", "GET /items?after=c2"]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2), json!(3)]);
    assert_eq!(
        outcome.nexts(),
        vec![at(PageToken::Cursor("c2".into())), None]
    );
    assert_eq!(outcome.pages[0].requests, 1);
    assert!(outcome.pages[0].bytes > 0);
}

#[tokio::test]
async fn cursor_stops_on_has_more_false() {
    let server = serve(vec![(
        "/items",
        json(json!({"data": [{"id": 1}], "next": "c2", "more": false})),
    )])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::Cursor {
        cursor: jsonpath("$.next"),
        param: query("after"),
        has_more: Some(jsonpath("$.more")),
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(requests(&server).await, vec!["GET /items"]);
    assert_eq!(outcome.nexts(), vec![None]);
}

#[tokio::test]
async fn cursor_empty_string_ends_and_integer_is_decimal() {
    let server = serve(vec![
        ("/items", json(json!({"data": [{"id": 1}], "next": 42}))),
        (
            "/items?after=42",
            json(json!({"data": [{"id": 2}], "next": ""})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = cursor_pagination();
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items", "GET /items?after=42"]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2)]);
}

#[tokio::test]
async fn cursor_from_last_record_with_slice() {
    let server = serve(vec![
        ("/items", json(json!({"data": [{"id": "a"}, {"id": "b"}]}))),
        ("/items?starting_after=b", json(json!({"data": []}))),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::Cursor {
        cursor: jsonpath("$.data[-1:].id"),
        param: query("starting_after"),
        has_more: None,
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items", "GET /items?starting_after=b"]
    );
    assert_eq!(outcome.ids(), vec![json!("a"), json!("b")]);
}

#[tokio::test]
async fn cursor_in_json_body_and_header() {
    let server = serve(vec![(
        "/search",
        json(json!({"data": [{"id": 1}], "next": "c2"})),
    )])
    .await;
    let mut items = entity("items", "/search");
    items.request.method = HttpMethod::Post;
    items.request.body = Some(
        TemplateValue::compile(&json!({"query": "{{config.q}}", "page": {"size": 2}})).unwrap(),
    );
    items.pagination = Pagination::Cursor {
        cursor: jsonpath("$.next"),
        param: placed(ParamLocation::Body, "page.after"),
        has_more: None,
    };
    items.max_pages = 2;
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({"q": "open"}));

    let outcome = run(&flow, &items, Position::default()).await;

    // The server returns the same cursor twice, so only the bodies matter here.
    let bodies: Vec<serde_json::Value> = received(&server)
        .await
        .iter()
        .map(|request| request.body_json().unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec![
            json!({"query": "open", "page": {"size": 2}}),
            json!({"query": "open", "page": {"size": 2, "after": "c2"}}),
        ]
    );
    assert_eq!(outcome.error().kind, FetchErrorKind::PaginationLoop);

    let server = serve(vec![(
        "/items",
        json(json!({"data": [{"id": 1}], "next": "c2"})),
    )])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::Cursor {
        cursor: jsonpath("$.next"),
        param: placed(ParamLocation::Header, "X-Cursor"),
        has_more: None,
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));
    let outcome = run(&flow, &items, Position::default()).await;
    let cursors: Vec<Option<String>> = received(&server)
        .await
        .iter()
        .map(|request| {
            request
                .headers
                .get("x-cursor")
                .map(|value| value.to_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(cursors, vec![None, Some("c2".to_string())]);
    assert_eq!(outcome.error().kind, FetchErrorKind::PaginationLoop);
}

#[tokio::test]
async fn next_url_relative_resolves_against_request() {
    let server = serve(vec![
        (
            "/v1/items",
            json(json!({"data": [{"id": 1}], "links": {"next": "items?page=2"}})),
        ),
        (
            "/v1/items?page=2",
            json(json!({"data": [{"id": 2}], "links": {"next": null}})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::NextUrl {
        path: jsonpath("$.links.next"),
    };
    let items = Arc::new(items);
    let base = format!("{}/v1/", server.uri());
    let flow = test_flow(connector(&base), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /v1/items", "GET /v1/items?page=2"]
    );
    let next = format!("{}/v1/items?page=2", server.uri());
    assert_eq!(outcome.nexts(), vec![at(PageToken::Url(next)), None]);
}

#[tokio::test]
async fn next_url_absolute_is_sent_as_it_is() {
    let server = wiremock::MockServer::start().await;
    let next = format!("{}/v2/other?cursor=abc&limit=5", server.uri());
    crate::support::mount(
        &server,
        vec![
            (
                "/items?limit=2&since=2024-01-01",
                json(json!({"data": [{"id": 1}], "next": next})),
            ),
            (
                "/v2/other?cursor=abc&limit=5",
                json(json!({"data": [{"id": 2}]})),
            ),
        ],
    )
    .await;
    let mut items = entity("items", "/items");
    items.request.params = vec![param("limit", json!(2))];
    items.pagination = Pagination::NextUrl {
        path: jsonpath("$.next"),
    };
    items.incremental = Some(ferry::spec::plan::Incremental {
        cursor_field: "id".into(),
        param: Some(query("since")),
        start: Some(json!("2024-01-01")),
        lookback: std::time::Duration::ZERO,
        window: None,
    });
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));
    let start = ferry::engine::initial_position(&items, None, crate::support::now(), false);

    let outcome = run(&flow, &items, start).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /items?limit=2&since=2024-01-01",
            "GET /v2/other?cursor=abc&limit=5"
        ]
    );
}

#[tokio::test]
async fn next_url_gets_query_api_key_once() {
    let server = wiremock::MockServer::start().await;
    let without_key = format!("{}/items?page=2", server.uri());
    let with_key = format!("{}/items?page=3&api_key=k_12345", server.uri());
    crate::support::mount(
        &server,
        vec![
            (
                "/items?api_key=k_12345",
                json(json!({"data": [{"id": 1}], "next": without_key})),
            ),
            (
                "/items?page=2&api_key=k_12345",
                json(json!({"data": [{"id": 2}], "next": with_key})),
            ),
            (
                "/items?page=3&api_key=k_12345",
                json(json!({"data": [{"id": 3}]})),
            ),
        ],
    )
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::NextUrl {
        path: jsonpath("$.next"),
    };
    let items = Arc::new(items);
    let mut api = connector(&server.uri());
    api.http.auth = AuthPlan::ApiKey {
        location: ApiKeyLocation::Query,
        name: "api_key".into(),
        value: template("{{config.key}}"),
    };
    let flow = test_flow(api, &items, json!({"key": "k_12345"}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /items?api_key=k_12345",
            "GET /items?page=2&api_key=k_12345",
            "GET /items?page=3&api_key=k_12345",
        ]
    );
}

#[tokio::test]
async fn link_header_follows_rel_next() {
    let server = serve(vec![
        (
            "/items?per_page=2",
            json(json!([{"id": 1}, {"id": 2}])).insert_header(
                "Link",
                r#"</items?per_page=2&page=2>; rel="next", </items?per_page=2&page=2>; rel="last""#,
            ),
        ),
        (
            "/items?per_page=2&page=2",
            json(json!([{"id": 3}]))
                .insert_header("Link", r#"</items?per_page=2&page=1>; rel="prev first""#),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.records = ferry::spec::plan::RecordsPlan::Path(jsonpath("$[*]"));
    items.request.params = vec![param("per_page", json!("2"))];
    items.pagination = Pagination::LinkHeader;
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items?per_page=2", "GET /items?per_page=2&page=2"]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2), json!(3)]);
}

#[tokio::test]
async fn offset_runs_until_empty_page() {
    let server = serve(vec![
        (
            "/items?offset=0&limit=2",
            json(json!({"data": [{"id": 1}, {"id": 2}]})),
        ),
        (
            "/items?offset=2&limit=2",
            json(json!({"data": [{"id": 3}]})),
        ),
        ("/items?offset=4&limit=2", json(json!({"data": []}))),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = offset_pagination(false);
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /items?offset=0&limit=2",
            "GET /items?offset=2&limit=2",
            "GET /items?offset=4&limit=2"
        ]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2), json!(3)]);
    assert_eq!(
        outcome.nexts(),
        vec![at(PageToken::Offset(2)), at(PageToken::Offset(4)), None]
    );
}

#[tokio::test]
async fn offset_short_page_stops_when_allowed() {
    let server = serve(vec![
        (
            "/items?offset=0&limit=2",
            json(json!({"data": [{"id": 1}, {"id": 2}]})),
        ),
        (
            "/items?offset=2&limit=2",
            json(json!({"data": [{"id": 3}]})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = offset_pagination(true);
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items?offset=0&limit=2", "GET /items?offset=2&limit=2"]
    );
}

#[tokio::test]
async fn offset_has_more_false_ends() {
    let server = serve(vec![(
        "/items?offset=0&limit=2",
        json(json!({"data": [{"id": 1}, {"id": 2}], "has_more": false})),
    )])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::Offset {
        offset_param: query("offset"),
        limit_param: query("limit"),
        limit: 2,
        start: 0,
        has_more: Some(jsonpath("$.has_more")),
        stop_on_short_page: false,
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(requests(&server).await, vec!["GET /items?offset=0&limit=2"]);
}

#[tokio::test]
async fn offset_replaces_entity_param_of_same_name() {
    let server = serve(vec![("/items?offset=0&limit=2", json(json!({"data": []})))]).await;
    let mut items = entity("items", "/items");
    items.request.params = vec![param("limit", json!(100))];
    items.pagination = offset_pagination(false);
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    run(&flow, &items, Position::default()).await.assert_ok();

    assert_eq!(requests(&server).await, vec!["GET /items?offset=0&limit=2"]);
}

#[tokio::test]
async fn page_number_stops_at_total_pages() {
    let server = serve(vec![
        (
            "/items?page=1&per_page=2",
            json(json!({"data": [{"id": 1}, {"id": 2}], "pages": 2})),
        ),
        (
            "/items?page=2&per_page=2",
            json(json!({"data": [{"id": 3}, {"id": 4}], "pages": 2})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::PageNumber {
        param: query("page"),
        start: 1,
        total_pages: Some(jsonpath("$.pages")),
        stop_on_short_page: false,
        page_size: Some(2),
        page_size_param: Some(query("per_page")),
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /items?page=1&per_page=2",
            "GET /items?page=2&per_page=2"
        ]
    );
    assert_eq!(outcome.nexts(), vec![at(PageToken::Page(2)), None]);
}

#[tokio::test]
async fn page_number_short_page_rules() {
    let routes = || {
        vec![
            (
                "/items?page=0",
                json(json!({"data": [{"id": 1}, {"id": 2}]})),
            ),
            ("/items?page=1", json(json!({"data": [{"id": 3}]}))),
            ("/items?page=2", json(json!({"data": []}))),
        ]
    };
    for (stop_on_short_page, expected) in [
        (true, vec!["GET /items?page=0", "GET /items?page=1"]),
        (
            false,
            vec![
                "GET /items?page=0",
                "GET /items?page=1",
                "GET /items?page=2",
            ],
        ),
    ] {
        let server = serve(routes()).await;
        let mut items = entity("items", "/items");
        items.pagination = Pagination::PageNumber {
            param: query("page"),
            start: 0,
            total_pages: None,
            stop_on_short_page,
            page_size: Some(2),
            page_size_param: None,
        };
        let items = Arc::new(items);
        let flow = test_flow(connector(&server.uri()), &items, json!({}));

        let outcome = run(&flow, &items, Position::default()).await;

        outcome.assert_ok();
        assert_eq!(
            requests(&server).await,
            expected,
            "stop_on_short_page {stop_on_short_page}"
        );
        assert_eq!(outcome.ids(), vec![json!(1), json!(2), json!(3)]);
    }
}

#[tokio::test]
async fn empty_page_ends_despite_cursor() {
    let server = serve(vec![
        ("/items", json(json!({"data": [{"id": 1}], "next": "c2"}))),
        ("/items?after=c2", json(json!({"data": [], "next": "c3"}))),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = cursor_pagination();
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items", "GET /items?after=c2"]
    );
    assert_eq!(
        outcome.nexts(),
        vec![at(PageToken::Cursor("c2".into())), None]
    );
    assert!(outcome.pages[1].records.is_empty());
}

#[tokio::test]
async fn null_or_missing_records_are_empty_page() {
    for body in [json!({"data": null, "next": "c2"}), json!({"next": "c2"})] {
        let server = serve(vec![("/items", json(body.clone()))]).await;
        let mut items = entity("items", "/items");
        items.pagination = cursor_pagination();
        let items = Arc::new(items);
        let flow = test_flow(connector(&server.uri()), &items, json!({}));

        let outcome = run(&flow, &items, Position::default()).await;

        outcome.assert_ok();
        assert_eq!(requests(&server).await, vec!["GET /items"], "body {body}");
        assert_eq!(outcome.nexts(), vec![None], "body {body}");
    }
}

#[tokio::test]
async fn repeated_cursor_is_a_loop() {
    let server = serve(vec![
        ("/items", json(json!({"data": [{"id": 1}], "next": "c2"}))),
        (
            "/items?after=c2",
            json(json!({"data": [{"id": 2}], "next": "c2"})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = cursor_pagination();
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::PaginationLoop);
    assert!(
        outcome.error().message.contains("cursor \"c2\""),
        "{}",
        outcome.error()
    );
    assert_eq!(
        requests(&server).await,
        vec!["GET /items", "GET /items?after=c2"]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2)]);
    assert_eq!(
        outcome.nexts(),
        vec![
            at(PageToken::Cursor("c2".into())),
            at(PageToken::Cursor("c2".into()))
        ]
    );
}

#[tokio::test]
async fn repeated_url_is_a_loop() {
    let server = wiremock::MockServer::start().await;
    let first = format!("{}/items", server.uri());
    let second = format!("{}/items?page=2", server.uri());
    crate::support::mount(
        &server,
        vec![
            ("/items", json(json!({"data": [{"id": 1}], "next": second}))),
            (
                "/items?page=2",
                json(json!({"data": [{"id": 2}], "next": first})),
            ),
        ],
    )
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::NextUrl {
        path: jsonpath("$.next"),
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::PaginationLoop);
    assert_eq!(
        requests(&server).await,
        vec!["GET /items", "GET /items?page=2"]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2)]);
    assert_eq!(outcome.nexts()[1], at(PageToken::Url(first)));
}

#[tokio::test]
async fn identical_pages_are_a_loop() {
    let page = json!({"data": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]});
    let server = serve(vec![
        ("/items?offset=0&limit=2", json(page.clone())),
        ("/items?offset=2&limit=2", json(page)),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = offset_pagination(false);
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::PaginationLoop);
    assert!(
        outcome.error().message.contains("same primary keys"),
        "{}",
        outcome.error()
    );
    assert_eq!(
        requests(&server).await,
        vec!["GET /items?offset=0&limit=2", "GET /items?offset=2&limit=2"]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2)]);
    assert_eq!(outcome.nexts(), vec![at(PageToken::Offset(2))]);
}

#[tokio::test]
async fn append_only_compares_whole_records() {
    let server = serve(vec![
        (
            "/items?offset=0&limit=2",
            json(json!({"data": [{"n": 1}, {"n": 2}]})),
        ),
        (
            "/items?offset=2&limit=2",
            json(json!({"data": [{"n": 1}, {"n": 3}]})),
        ),
        (
            "/items?offset=4&limit=2",
            json(json!({"data": [{"n": 1}, {"n": 3}]})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.primary_key = Vec::new();
    items.pagination = offset_pagination(false);
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::PaginationLoop);
    assert_eq!(requests(&server).await.len(), 3);
    assert_eq!(
        outcome.records(),
        vec![
            json!({"n": 1}),
            json!({"n": 2}),
            json!({"n": 1}),
            json!({"n": 3})
        ]
    );
}

#[tokio::test]
async fn cross_host_next_url_is_refused() {
    let other = serve(vec![("/steal", json(json!({"data": [{"id": 9}]})))]).await;
    let next = format!("{}/steal", other.uri());
    let server = serve(vec![(
        "/items",
        json(json!({"data": [{"id": 1}], "next": next})),
    )])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::NextUrl {
        path: jsonpath("$.next"),
    };
    let items = Arc::new(items);
    let mut api = connector(&server.uri());
    api.http.auth = AuthPlan::Bearer {
        token: template("tok_cross_host_secret"),
    };
    let flow = test_flow(api, &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::CrossHost);
    assert!(
        outcome.error().message.contains("allow_cross_host"),
        "{}",
        outcome.error()
    );
    assert_eq!(requests(&other).await, Vec::<String>::new());
    assert_eq!(outcome.ids(), vec![json!(1)]);
    assert_eq!(outcome.nexts(), vec![at(PageToken::Url(next.clone()))]);

    // Resuming from the refused URL sends nothing either.
    let resumed = run(&flow, &items, at(PageToken::Url(next)).unwrap()).await;
    assert_eq!(resumed.error().kind, FetchErrorKind::CrossHost);
    assert_eq!(requests(&other).await, Vec::<String>::new());
}

#[tokio::test]
async fn cross_host_allowed_when_configured() {
    let other = serve(vec![("/more", json(json!({"data": [{"id": 2}]})))]).await;
    let next = format!("{}/more", other.uri());
    let server = serve(vec![(
        "/items",
        json(json!({"data": [{"id": 1}], "next": next})),
    )])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::NextUrl {
        path: jsonpath("$.next"),
    };
    let items = Arc::new(items);
    let mut api = connector(&server.uri());
    api.http.allow_cross_host = true;
    let flow = test_flow(api, &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(requests(&other).await, vec!["GET /more"]);
    assert_eq!(outcome.ids(), vec![json!(1), json!(2)]);
}

#[tokio::test]
async fn max_pages_stops_with_resume_point() {
    let server = serve(vec![
        ("/items?page=1", json(json!({"data": [{"id": 1}]}))),
        ("/items?page=2", json(json!({"data": [{"id": 2}]}))),
        ("/items?page=3", json(json!({"data": [{"id": 3}]}))),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::PageNumber {
        param: query("page"),
        start: 1,
        total_pages: None,
        stop_on_short_page: false,
        page_size: None,
        page_size_param: None,
    };
    items.max_pages = 2;
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::MaxPages);
    assert_eq!(
        requests(&server).await,
        vec!["GET /items?page=1", "GET /items?page=2"]
    );
    assert_eq!(
        outcome.nexts(),
        vec![at(PageToken::Page(2)), at(PageToken::Page(3))]
    );
}

#[tokio::test]
async fn resume_sends_only_the_next_request() {
    let server = serve(vec![
        (
            "/items?after=c2",
            json(json!({"data": [{"id": 3}], "next": "c3"})),
        ),
        ("/items?after=c3", json(json!({"data": [{"id": 4}]}))),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = cursor_pagination();
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, at(PageToken::Cursor("c2".into())).unwrap()).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items?after=c2", "GET /items?after=c3"]
    );
    assert_eq!(outcome.ids(), vec![json!(3), json!(4)]);

    let server = serve(vec![("/items?offset=4&limit=2", json(json!({"data": []})))]).await;
    let mut items = entity("items", "/items");
    items.pagination = offset_pagination(false);
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));
    run(&flow, &items, at(PageToken::Offset(4)).unwrap())
        .await
        .assert_ok();
    assert_eq!(requests(&server).await, vec!["GET /items?offset=4&limit=2"]);
}

#[tokio::test]
async fn resume_after_failure_continues_exactly() {
    // Page 2 fails for good; a second run from the last page's `next`
    // sends page 2 and then page 3, and never page 1 again.
    let server = wiremock::MockServer::start().await;
    crate::support::mount(
        &server,
        vec![
            ("/items?page=1", json(json!({"data": [{"id": 1}]}))),
            ("/items?page=2", ResponseTemplate::new(500)),
        ],
    )
    .await;
    let mut items = entity("items", "/items");
    items.pagination = Pagination::PageNumber {
        param: query("page"),
        start: 1,
        total_pages: Some(jsonpath("$.pages")),
        stop_on_short_page: false,
        page_size: None,
        page_size_param: None,
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let first = run(&flow, &items, Position::default()).await;
    assert_eq!(first.error().kind, FetchErrorKind::Http);
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /items?page=1",
            "GET /items?page=2",
            "GET /items?page=2",
            "GET /items?page=2"
        ]
    );
    let resume = first.pages.last().unwrap().next.clone().unwrap();

    server.reset().await;
    crate::support::mount(
        &server,
        vec![
            (
                "/items?page=2",
                json(json!({"data": [{"id": 2}], "pages": 3})),
            ),
            (
                "/items?page=3",
                json(json!({"data": [{"id": 3}], "pages": 3})),
            ),
        ],
    )
    .await;
    let second = run(&flow, &items, resume).await;

    second.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items?page=2", "GET /items?page=3"]
    );
    assert_eq!(second.ids(), vec![json!(2), json!(3)]);
}
