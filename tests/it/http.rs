//! Requests, retries, status handling, rate limits and response decoding.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferry::engine::{FetchErrorKind, HttpClient, Position, check_connection};
use ferry::spec::plan::{AuthPlan, HttpMethod, RateLimit, RequestPlan, RetryPolicy, StatusAction};
use ferry::template::TemplateValue;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::support::plan::{connector, entity, header, param, template, test_flow};
use crate::support::{json, received, requests, run, run_with, serve, serve_sequence};

fn ok_page() -> ResponseTemplate {
    json(json!({"data": [{"id": 1}]}))
}

fn too_many(retry_after: &str) -> ResponseTemplate {
    ResponseTemplate::new(429).insert_header("Retry-After", retry_after)
}

#[tokio::test]
async fn url_joins_with_one_slash() {
    for (base, path) in [
        ("/spi/v3", "/jobs"),
        ("/spi/v3/", "jobs"),
        ("/spi/v3/", "/jobs"),
    ] {
        let server = serve(vec![("/spi/v3/jobs", ok_page())]).await;
        let jobs = Arc::new(entity("jobs", path));
        let flow = test_flow(
            connector(&format!("{}{base}", server.uri())),
            &jobs,
            json!({}),
        );

        run(&flow, &jobs, Position::default()).await.assert_ok();

        assert_eq!(
            requests(&server).await,
            vec!["GET /spi/v3/jobs"],
            "{base} + {path}"
        );
    }
}

#[tokio::test]
async fn templates_render_path_params_headers() {
    let server = serve(vec![(
        "/repos/acme/issues?version=2&state=all&types%5B%5D=a&types%5B%5D=b&per_page=50",
        ok_page(),
    )])
    .await;
    let mut issues = entity("issues", "/repos/{{config.owner}}/issues");
    issues.request.params = vec![
        param("state", json!("all")),
        param("types[]", json!(["a", "b"])),
        param("per_page", json!("{{entity.page_size}}")),
        param("optional", json!("{{config.missing_ok}}")),
    ];
    issues.request.headers = vec![header("X-Owner", "{{config.owner}}")];
    issues.parameters = json!({"page_size": 50}).as_object().unwrap().clone();
    let issues = Arc::new(issues);
    let mut api = connector(&server.uri());
    api.http.headers = vec![header("Accept", "application/vnd.test+json")];
    api.http.params = vec![param("version", json!(2))];
    let flow = test_flow(api, &issues, json!({"owner": "acme", "missing_ok": null}));

    run(&flow, &issues, Position::default()).await.assert_ok();

    let request = &received(&server).await[0];
    assert_eq!(request.headers["x-owner"], "acme");
    assert_eq!(request.headers["accept"], "application/vnd.test+json");
    assert_eq!(request.method.as_str(), "GET");
}

#[tokio::test]
async fn post_sends_json_body() {
    let server = serve(vec![("/query", ok_page())]).await;
    let mut rows = entity("rows", "/query");
    rows.request = RequestPlan {
        method: HttpMethod::Post,
        path: template("/query"),
        params: Vec::new(),
        headers: Vec::new(),
        body: Some(
            TemplateValue::compile(
                &json!({"query": {"kind": "HogQLQuery", "limit": "{{config.limit}}"}}),
            )
            .unwrap(),
        ),
    };
    let rows = Arc::new(rows);
    let flow = test_flow(connector(&server.uri()), &rows, json!({"limit": 100}));

    run(&flow, &rows, Position::default()).await.assert_ok();

    let request = &received(&server).await[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(
        request.body_json::<serde_json::Value>().unwrap(),
        json!({"query": {"kind": "HogQLQuery", "limit": 100}})
    );
}

async fn timed_run(
    responses: Vec<ResponseTemplate>,
    retry: RetryPolicy,
) -> (Duration, usize, crate::support::Outcome) {
    let server = serve_sequence(responses).await;
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector(&server.uri());
    api.http.retry = retry;
    let flow = test_flow(api, &items, json!({}));
    let started = Instant::now();
    let outcome = run(&flow, &items, Position::default()).await;
    (started.elapsed(), requests(&server).await.len(), outcome)
}

fn retry(max_attempts: u32, max_wait: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        max_wait,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let (elapsed, count, outcome) = timed_run(
        vec![too_many("1"), ok_page()],
        retry(3, Duration::from_secs(5)),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(count, 2);
    assert!(elapsed >= Duration::from_secs(1), "waited {elapsed:?}");
    assert_eq!(outcome.pages[0].requests, 2);
}

#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let (elapsed, count, outcome) = timed_run(
        vec![too_many(&date), ok_page()],
        retry(3, Duration::from_secs(5)),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(count, 2);
    // The date has whole seconds, so the wait is between 1 and 2 seconds.
    assert!(elapsed >= Duration::from_millis(900), "waited {elapsed:?}");
}

#[tokio::test]
async fn retry_after_zero_and_past_retry_now() {
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
    let responses = vec![too_many("0"), too_many(&past), ok_page()];
    let slow_backoff = RetryPolicy {
        max_attempts: 3,
        max_wait: Duration::from_secs(5),
        initial_backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(10),
    };
    let (elapsed, count, outcome) = timed_run(responses, slow_backoff).await;

    outcome.assert_ok();
    assert_eq!(count, 3);
    assert!(elapsed < Duration::from_secs(2), "waited {elapsed:?}");
}

#[tokio::test]
async fn retry_after_is_capped_at_max_wait() {
    let (elapsed, count, outcome) = timed_run(
        vec![too_many("3600"), ok_page()],
        retry(3, Duration::from_millis(50)),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(count, 2);
    assert!(elapsed < Duration::from_secs(2), "waited {elapsed:?}");
}

#[tokio::test]
async fn server_error_then_success() {
    let (_, count, outcome) = timed_run(
        vec![ResponseTemplate::new(503), ok_page()],
        retry(3, Duration::from_secs(1)),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(count, 2);
    assert_eq!(outcome.ids(), vec![json!(1)]);
}

#[tokio::test]
async fn max_attempts_counts_first_attempt() {
    let (_, count, outcome) = timed_run(
        vec![ResponseTemplate::new(503).set_body_string("upstream down")],
        retry(3, Duration::from_secs(1)),
    )
    .await;

    assert_eq!(count, 3);
    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Http);
    assert!(
        error.message.contains("HTTP 503 after 3 attempts"),
        "{error}"
    );
    assert!(error.message.contains("upstream down"), "{error}");
    assert!(outcome.pages.is_empty());
}

#[tokio::test]
async fn one_attempt_means_no_retry() {
    let (_, count, outcome) = timed_run(
        vec![ResponseTemplate::new(502), ok_page()],
        retry(1, Duration::from_secs(1)),
    )
    .await;

    assert_eq!(count, 1);
    assert_eq!(outcome.error().kind, FetchErrorKind::Http);
}

#[tokio::test]
async fn client_error_fails_at_once_with_excerpt() {
    let long_tail = "x".repeat(1000);
    let body =
        format!("{{\"error\": \"invalid parameter per_page\", \"detail\": \"{long_tail}\"}}");
    let (_, count, outcome) = timed_run(
        vec![ResponseTemplate::new(400).set_body_string(body)],
        retry(3, Duration::from_secs(1)),
    )
    .await;

    assert_eq!(count, 1);
    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Http);
    assert!(error.message.contains("HTTP 400 Bad Request"), "{error}");
    assert!(
        error.message.contains("invalid parameter per_page"),
        "{error}"
    );
    assert!(error.message.contains("/items"), "{error}");
    assert!(
        error.message.len() < 700,
        "excerpt not cut: {} chars",
        error.message.len()
    );
}

#[tokio::test]
async fn unauthorized_is_an_auth_error() {
    let (_, count, outcome) = timed_run(
        vec![ResponseTemplate::new(401)],
        retry(3, Duration::from_secs(1)),
    )
    .await;

    assert_eq!(count, 1);
    assert_eq!(outcome.error().kind, FetchErrorKind::Auth);
}

#[tokio::test]
async fn on_status_ignore_and_empty_page() {
    for (status, action) in [(404, StatusAction::Ignore), (204, StatusAction::EmptyPage)] {
        let server = serve_sequence(vec![ResponseTemplate::new(status)]).await;
        let mut items = entity("items", "/items");
        items.on_status.insert(status, action);
        let items = Arc::new(items);
        let flow = test_flow(connector(&server.uri()), &items, json!({}));

        let outcome = run(&flow, &items, Position::default()).await;

        outcome.assert_ok();
        assert_eq!(requests(&server).await.len(), 1, "status {status}");
        assert_eq!(outcome.pages.len(), 1, "status {status}");
        assert!(outcome.pages[0].records.is_empty(), "status {status}");
        assert_eq!(outcome.pages[0].next, None, "status {status}");
    }
}

#[tokio::test]
async fn on_status_fail_skips_retries() {
    let server = serve_sequence(vec![ResponseTemplate::new(503), ok_page()]).await;
    let mut items = entity("items", "/items");
    items.on_status.insert(503, StatusAction::Fail);
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::Http);
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn timeouts_are_retried() {
    let server = serve_sequence(vec![ok_page().set_delay(Duration::from_secs(2))]).await;
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector(&server.uri());
    api.http.timeout = Duration::from_millis(200);
    api.http.retry = retry(2, Duration::from_secs(1));
    let flow = test_flow(api, &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Network);
    assert!(error.message.contains("timed out"), "{error}");
    assert!(error.message.contains("after 2 attempts"), "{error}");
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&format!("http://{address}")), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Network);
    assert!(error.message.contains("after 3 attempts"), "{error}");
}

#[tokio::test]
async fn connection_reset_is_retried() {
    // A server that reads one request and closes the connection without a
    // response, then responds properly on the next connection.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut seen = 0;
        for answer in [false, true] {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            let _ = socket.read(&mut buffer).await.unwrap();
            seen += 1;
            if answer {
                let body = r#"{"data":[{"id":7}]}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(response.as_bytes()).await.unwrap();
            }
        }
        seen
    });
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&format!("http://{address}")), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(outcome.ids(), vec![json!(7)]);
    assert_eq!(server.await.unwrap(), 2);
}

#[tokio::test]
async fn gzip_body_is_decoded() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(br#"{"data": [{"id": 1, "name": "zipped"}]}"#)
        .unwrap();
    let compressed = encoder.finish().unwrap();
    let server = serve(vec![(
        "/items",
        ResponseTemplate::new(200)
            .insert_header("Content-Encoding", "gzip")
            .insert_header("Content-Type", "application/json")
            .set_body_bytes(compressed),
    )])
    .await;
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(outcome.records(), vec![json!({"id": 1, "name": "zipped"})]);
    let request = &received(&server).await[0];
    let accepted = request.headers["accept-encoding"].to_str().unwrap();
    assert!(accepted.contains("gzip"), "{accepted}");
}

/// Returns `body` gzip-compressed.
fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn oversized_gzip_body_fails_once() {
    // 4 MiB of JSON that gzip shrinks to a few KiB, against a 1 MiB limit.
    let padding = "a".repeat(4 * 1024 * 1024);
    let body = format!(r#"{{"data": [{{"id": 1, "pad": "{padding}"}}]}}"#);
    let server = serve(vec![(
        "/items",
        ResponseTemplate::new(200)
            .insert_header("Content-Encoding", "gzip")
            .insert_header("Content-Type", "application/json")
            .set_body_bytes(gzip(body.as_bytes())),
    )])
    .await;
    let mut api = connector(&server.uri());
    api.http.max_response_bytes = 1024 * 1024;
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(api, &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Response);
    assert!(
        error
            .message
            .contains("response body is larger than http.max_response_mb (1 MiB)"),
        "{error}"
    );
    assert!(outcome.pages.is_empty());
    assert_eq!(requests(&server).await, vec!["GET /items"]);
}

#[tokio::test]
async fn oversized_declared_length_fails() {
    let padding = "a".repeat(2 * 1024 * 1024);
    let body = format!(r#"{{"data": [{{"id": 1, "pad": "{padding}"}}]}}"#);
    let server = serve(vec![(
        "/items",
        ResponseTemplate::new(200).set_body_raw(body, "application/json"),
    )])
    .await;
    let mut api = connector(&server.uri());
    api.http.max_response_bytes = 1024 * 1024;
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(api, &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Response);
    assert!(error.message.contains("(1 MiB)"), "{error}");
    assert_eq!(requests(&server).await, vec!["GET /items"]);
}

#[tokio::test]
async fn body_at_the_limit_is_read() {
    let body = br#"{"data": [{"id": 1}]}"#;
    let server = serve(vec![(
        "/items",
        ResponseTemplate::new(200)
            .insert_header("Content-Encoding", "gzip")
            .set_body_bytes(gzip(body)),
    )])
    .await;
    let mut api = connector(&server.uri());
    api.http.max_response_bytes = body.len() as u64;
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(api, &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(outcome.ids(), vec![json!(1)]);
}

#[tokio::test]
async fn invalid_json_is_a_response_error() {
    let server = serve(vec![(
        "/items",
        ResponseTemplate::new(200).set_body_string("<html>oops</html>"),
    )])
    .await;
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Response);
    assert!(error.message.contains("not JSON"), "{error}");
    assert!(error.message.contains("<html>oops</html>"), "{error}");
}

#[tokio::test]
async fn secrets_stay_out_of_errors() {
    let token = "sk_test_never_print_this_42";
    let server = serve(vec![(
        "/items?api_key=sk_test_never_print_this_42",
        ResponseTemplate::new(400).set_body_string(format!("bad key {token}")),
    )])
    .await;
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector(&server.uri());
    api.http.auth = AuthPlan::ApiKey {
        location: ferry::spec::plan::ApiKeyLocation::Query,
        name: "api_key".into(),
        value: template("{{config.key}}"),
    };
    let flow = test_flow(api, &items, json!({"key": token}));

    let outcome = run(&flow, &items, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Http);
    assert!(!error.message.contains(token), "{error}");
    // The URL in messages is the one before credentials are added.
    assert!(error.message.contains("/items: HTTP 400"), "{error}");
    assert!(error.message.contains("bad key ***"), "{error}");

    // A network failure names the URL too, still masked.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector(&format!("http://{address}"));
    api.http.auth = AuthPlan::ApiKey {
        location: ferry::spec::plan::ApiKeyLocation::Query,
        name: "api_key".into(),
        value: template("{{config.key}}"),
    };
    let flow = test_flow(api, &items, json!({"key": token}));
    let outcome = run(&flow, &items, Position::default()).await;
    assert_eq!(outcome.error().kind, FetchErrorKind::Network);
    assert!(
        !outcome.error().message.contains(token),
        "{}",
        outcome.error()
    );
}

#[tokio::test]
async fn echoed_json_escaped_secret_is_masked() {
    let token = r#"tok"quoted\slash_0987"#;
    let echoed = r#"tok\"quoted\\slash_0987"#;
    let server = serve(vec![(
        "/items",
        ResponseTemplate::new(401).set_body_json(json!({"error": format!("bad token {token}")})),
    )])
    .await;
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector(&server.uri());
    api.http.auth = AuthPlan::Bearer {
        token: template("{{config.token}}"),
    };
    let flow = test_flow(api, &items, json!({"token": token}));

    let outcome = run(&flow, &items, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Auth);
    assert!(error.message.contains(r#""bad token ***""#), "{error}");
    assert!(!error.message.contains(echoed), "{error}");
    assert!(!error.message.contains("slash_0987"), "{error}");
}

#[tokio::test]
async fn redirect_to_other_origin_is_refused() {
    let other = serve(vec![("/landing", ok_page())]).await;
    let server = serve(vec![(
        "/items",
        ResponseTemplate::new(302).insert_header("Location", format!("{}/landing", other.uri())),
    )])
    .await;
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::CrossHost);
    assert_eq!(requests(&other).await, Vec::<String>::new());
}

#[tokio::test]
async fn rate_limit_is_shared_by_credentials() {
    let server = serve(vec![("/items", ok_page())]).await;
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector(&server.uri());
    api.http.auth = AuthPlan::Bearer {
        token: template("rate-limit-test-token"),
    };
    api.http.rate_limit = Some(RateLimit {
        requests_per_second: 10.0,
        burst: 1,
    });
    let flow = test_flow(api, &items, json!({}));

    // Two clients (two runs) with the same credentials: six requests at
    // 10 per second take at least half a second together.
    let first = Arc::new(HttpClient::new(&flow).unwrap());
    let second = Arc::new(HttpClient::new(&flow).unwrap());
    let started = Instant::now();
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            run_with(&flow, &items, first.clone(), Position::default()),
            run_with(&flow, &items, second.clone(), Position::default())
        );
        a.assert_ok();
        b.assert_ok();
    }
    let elapsed = started.elapsed();

    assert_eq!(requests(&server).await.len(), 6);
    assert!(elapsed >= Duration::from_millis(450), "took {elapsed:?}");
}

#[test]
fn tiny_rate_limit_builds_client() {
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector("http://127.0.0.1:9");
    api.http.rate_limit = Some(RateLimit {
        requests_per_second: 1e-300,
        burst: 1,
    });
    let flow = test_flow(api, &items, json!({}));

    let client = HttpClient::new(&flow);

    let error = client.expect_err("a rate that cannot be waited for is an error");
    assert_eq!(error.kind, FetchErrorKind::Template);
    assert!(
        error
            .message
            .contains("requests_per_second 1e-300 is too small"),
        "{error}"
    );
}

#[tokio::test]
async fn check_connection_sends_check_request() {
    let server = serve(vec![("/user", json(json!({"login": "me"})))]).await;
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector(&server.uri());
    api.check = Some(RequestPlan {
        method: HttpMethod::Get,
        path: template("/user"),
        params: Vec::new(),
        headers: Vec::new(),
        body: None,
    });
    let flow = test_flow(api, &items, json!({}));

    check_connection(&flow).await.unwrap();

    assert_eq!(requests(&server).await, vec!["GET /user"]);
}

#[tokio::test]
async fn check_connection_without_check_reads_first_page() {
    let server = serve(vec![(
        "/items",
        json(json!({"data": [{"id": 1}], "next": "c2"})),
    )])
    .await;
    let mut items = entity("items", "/items");
    items.pagination = ferry::spec::plan::Pagination::Cursor {
        cursor: crate::support::plan::jsonpath("$.next"),
        param: crate::support::plan::query("after"),
        has_more: None,
    };
    let items = Arc::new(items);
    let flow = test_flow(connector(&server.uri()), &items, json!({}));

    check_connection(&flow).await.unwrap();

    assert_eq!(requests(&server).await, vec!["GET /items"]);

    let failing = serve(vec![("/items", ResponseTemplate::new(403))]).await;
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&failing.uri()), &items, json!({}));
    let error = check_connection(&flow).await.unwrap_err();
    assert_eq!(error.kind, FetchErrorKind::Auth);
}

const PROXY_TARGET_VARIABLE: &str = "FERRY_TEST_PROXY_TARGET";

#[tokio::test]
async fn http_proxy_from_environment() {
    // The proxy is a loopback server; the API address has no server, so a
    // request that skipped the proxy would fail.
    let proxy = crate::support::serve_sequence(vec![ok_page()]).await;
    let test_binary = std::env::current_exe().unwrap();
    let output = tokio::process::Command::new(test_binary)
        .args([
            "http::proxied_fetch_in_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("HTTP_PROXY", proxy.uri())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env(PROXY_TARGET_VARIABLE, "http://127.0.0.2:9")
        .output()
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
    let received = received(&proxy).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].url.path(), "/items");
    assert_eq!(received[0].headers["host"], "127.0.0.2:9");
}

/// Runs only as the child of `http_proxy_from_environment`.
#[tokio::test]
#[ignore = "run by http_proxy_from_environment in a child process"]
async fn proxied_fetch_in_child() {
    let Ok(target) = std::env::var(PROXY_TARGET_VARIABLE) else {
        return;
    };
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&target), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(outcome.ids(), vec![json!(1)]);
}
