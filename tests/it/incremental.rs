//! Incremental cursors: the first position of a run, the cursor parameter,
//! windows, and the cursor maximum of each page.

use std::sync::Arc;
use std::time::Duration;

use ferry::engine::{PageToken, Position, WindowPosition, initial_position};
use ferry::spec::plan::{Incremental, Pagination, Window};
use serde_json::{Value, json};

use crate::support::plan::{connector, entity, jsonpath, query, test_flow};
use crate::support::{json as json_response, now, requests, run, serve};

const DAY: u64 = 86_400;

fn incremental(start: Value, lookback_seconds: u64, window: Option<Window>) -> Incremental {
    Incremental {
        cursor_field: "updated_at".into(),
        param: Some(query("since")),
        start: Some(start),
        lookback: Duration::from_secs(lookback_seconds),
        window,
    }
}

fn weekly() -> Window {
    Window {
        step: Duration::from_secs(7 * DAY),
        start_param: Some(query("from")),
        end_param: Some(query("to")),
    }
}

#[test]
fn initial_position_from_saved_cursor() {
    let mut items = entity("items", "/items");
    items.incremental = Some(incremental(json!("2020-01-01T00:00:00Z"), 60, None));

    let saved = json!("2024-01-10T12:00:30Z");
    let position = initial_position(&items, Some(&saved), now(), false);
    assert_eq!(position.since, Some(json!("2024-01-10T11:59:30Z")));
    assert_eq!(position.page, PageToken::Start);
    assert_eq!(position.window, None);

    let position = initial_position(&items, Some(&json!(1_704_888_030)), now(), false);
    assert_eq!(position.since, Some(json!(1_704_887_970)));

    let position = initial_position(&items, None, now(), false);
    assert_eq!(position.since, Some(json!("2020-01-01T00:00:00Z")));

    let position = initial_position(&items, Some(&saved), now(), true);
    assert_eq!(position.since, None);
}

#[test]
fn initial_position_without_incremental_is_start() {
    let items = entity("items", "/items");
    let position = initial_position(&items, Some(&json!("x")), now(), false);
    assert_eq!(position, Position::default());
}

#[test]
fn initial_window_is_capped_at_now() {
    let mut items = entity("items", "/items");
    items.incremental = Some(incremental(
        json!("2024-01-15T00:00:00Z"),
        0,
        Some(weekly()),
    ));

    let position = initial_position(&items, None, now(), false);

    assert_eq!(
        position.window,
        Some(WindowPosition {
            start: json!("2024-01-15T00:00:00Z"),
            end: json!("2024-01-20T00:00:00Z"),
            until: json!("2024-01-20T00:00:00Z"),
        })
    );
}

#[tokio::test]
async fn since_param_and_cursor_max() {
    let server = serve(vec![(
        "/items?since=2024-01-10T11%3A59%3A30Z",
        json_response(json!({"data": [
            {"id": 1, "updated_at": "2024-01-11T00:00:00Z"},
            {"id": 2, "updated_at": "2024-01-12T00:00:00+05:00"},
            {"id": 3, "updated_at": "2024-01-11T12:00:00Z"}
        ]})),
    )])
    .await;
    let mut items = entity("items", "/items");
    items.incremental = Some(incremental(json!("2020-01-01T00:00:00Z"), 60, None));
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));
    let start = initial_position(&items, Some(&json!("2024-01-10T12:00:30Z")), now(), false);

    let outcome = run(&flow, &items, start).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items?since=2024-01-10T11%3A59%3A30Z"]
    );
    // 2024-01-12T00:00:00+05:00 is 2024-01-11T19:00:00Z, the latest.
    assert_eq!(
        outcome.pages[0].cursor_max,
        Some(json!("2024-01-12T00:00:00+05:00"))
    );
}

#[tokio::test]
async fn cursor_param_is_sent_on_every_plan_request() {
    let server = serve(vec![
        (
            "/items?since=100",
            json_response(json!({"data": [{"id": 1, "updated_at": 150}], "next": "c2"})),
        ),
        (
            "/items?since=100&after=c2",
            json_response(json!({"data": [{"id": 2, "updated_at": 120}]})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.incremental = Some(incremental(json!(100), 0, None));
    items.pagination = Pagination::Cursor {
        cursor: jsonpath("$.next"),
        param: query("after"),
        has_more: None,
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));
    let start = initial_position(&items, None, now(), false);

    let outcome = run(&flow, &items, start).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec!["GET /items?since=100", "GET /items?since=100&after=c2"]
    );
    assert_eq!(outcome.pages[0].cursor_max, Some(json!(150)));
    assert_eq!(outcome.pages[1].cursor_max, Some(json!(120)));
    let next = outcome.pages[0].next.clone().unwrap();
    assert_eq!(next.since, Some(json!(100)));
}

#[tokio::test]
async fn windows_are_paginated_one_by_one() {
    let server = serve(vec![
        (
            "/items?from=2024-01-01&to=2024-01-08",
            json_response(json!({"data": [{"id": 1}], "next": "w1c2"})),
        ),
        (
            "/items?from=2024-01-01&to=2024-01-08&after=w1c2",
            json_response(json!({"data": [{"id": 2}]})),
        ),
        (
            "/items?from=2024-01-08&to=2024-01-15",
            json_response(json!({"data": []})),
        ),
        (
            "/items?from=2024-01-15&to=2024-01-20",
            json_response(json!({"data": [{"id": 3}], "next": "w1c2"})),
        ),
        (
            "/items?from=2024-01-15&to=2024-01-20&after=w1c2",
            json_response(json!({"data": [{"id": 4}]})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.incremental = Some(Incremental {
        param: None,
        ..incremental(json!("2024-01-01"), 0, Some(weekly()))
    });
    items.pagination = Pagination::Cursor {
        cursor: jsonpath("$.next"),
        param: query("after"),
        has_more: None,
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));
    let start = initial_position(&items, None, now(), false);

    let outcome = run(&flow, &items, start).await;

    outcome.assert_ok();
    // A cursor may repeat across windows: loop detection is per window.
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /items?from=2024-01-01&to=2024-01-08",
            "GET /items?from=2024-01-01&to=2024-01-08&after=w1c2",
            "GET /items?from=2024-01-08&to=2024-01-15",
            "GET /items?from=2024-01-15&to=2024-01-20",
            "GET /items?from=2024-01-15&to=2024-01-20&after=w1c2",
        ]
    );
    assert_eq!(outcome.ids(), vec![json!(1), json!(2), json!(3), json!(4)]);

    let window = |start: &str, end: &str| {
        Some(WindowPosition {
            start: json!(start),
            end: json!(end),
            until: json!("2024-01-20"),
        })
    };
    let nexts = outcome.nexts();
    assert_eq!(
        nexts[0].as_ref().unwrap().window,
        window("2024-01-01", "2024-01-08")
    );
    assert_eq!(
        nexts[0].as_ref().unwrap().page,
        PageToken::Cursor("w1c2".into())
    );
    assert_eq!(
        nexts[1].as_ref().unwrap().window,
        window("2024-01-08", "2024-01-15")
    );
    assert_eq!(nexts[1].as_ref().unwrap().page, PageToken::Start);
    assert_eq!(
        nexts[2].as_ref().unwrap().window,
        window("2024-01-15", "2024-01-20")
    );
    assert_eq!(nexts[4], None);
}

#[tokio::test]
async fn window_templates_and_resume() {
    let server = serve(vec![
        (
            "/items?range=2024-01-08..2024-01-15",
            json_response(json!({"data": [{"id": 2}]})),
        ),
        (
            "/items?range=2024-01-15..2024-01-20",
            json_response(json!({"data": [{"id": 3}]})),
        ),
    ])
    .await;
    let mut items = entity("items", "/items");
    items.request.params = vec![crate::support::plan::param(
        "range",
        json!("{{window.start}}..{{window.end}}"),
    )];
    items.incremental = Some(Incremental {
        param: None,
        ..incremental(
            json!("2024-01-01"),
            0,
            Some(Window {
                step: Duration::from_secs(7 * DAY),
                start_param: None,
                end_param: None,
            }),
        )
    });
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));
    let resume = Position {
        since: Some(json!("2024-01-01")),
        window: Some(WindowPosition {
            start: json!("2024-01-08"),
            end: json!("2024-01-15"),
            until: json!("2024-01-20"),
        }),
        parent: None,
        page: PageToken::Start,
        ..Position::default()
    };

    let outcome = run(&flow, &items, resume).await;

    outcome.assert_ok();
    assert_eq!(
        requests(&server).await,
        vec![
            "GET /items?range=2024-01-08..2024-01-15",
            "GET /items?range=2024-01-15..2024-01-20"
        ]
    );
    assert_eq!(outcome.ids(), vec![json!(2), json!(3)]);
}

#[tokio::test]
async fn next_url_requests_skip_cursor_param() {
    let server = wiremock::MockServer::start().await;
    let next = format!("{}/items?page=2", server.uri());
    crate::support::mount(
        &server,
        vec![
            (
                "/items?since=5",
                json_response(json!({"data": [{"id": 1}], "next": next})),
            ),
            ("/items?page=2", json_response(json!({"data": [{"id": 2}]}))),
        ],
    )
    .await;
    let mut items = entity("items", "/items");
    items.incremental = Some(incremental(json!(5), 0, None));
    items.pagination = Pagination::NextUrl {
        path: jsonpath("$.next"),
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));
    let start = initial_position(&items, None, now(), false);

    run(&flow, &items, start).await.assert_ok();

    assert_eq!(
        requests(&server).await,
        vec!["GET /items?since=5", "GET /items?page=2"]
    );
}
