//! OAuth 2.0 auth types against a local provider: the exact token
//! requests, token reuse and renewal, one new token after a 401,
//! token endpoint errors, and refresh tokens that rotate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferry::engine::{FetchErrorKind, HttpClient, Position, SavedRefreshToken, TokenStore};
use ferry::spec::plan::{AuthPlan, ClientAuth, Flow, Pagination};
use serde_json::{Value, json};

use crate::support::oauth::{self, Settings, Shared};
use crate::support::plan::{connector, entity, query, template, test_flow};
use crate::support::run_with;

/// Pages the items API serves; `page=4` and later are empty.
const PAGES: u64 = 3;

async fn items(
    State(provider): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if oauth::authorize(&provider, &headers).is_none() {
        return oauth::unauthorized();
    }
    let page: u64 = query
        .get("page")
        .and_then(|page| page.parse().ok())
        .unwrap_or(1);
    let data: Vec<Value> = if page <= PAGES {
        vec![json!({"id": page})]
    } else {
        Vec::new()
    };
    axum::Json(json!({"data": data})).into_response()
}

/// Starts the provider and the items API on one loopback server.
async fn start(settings: Settings) -> (String, Shared) {
    let provider = oauth::shared(settings);
    let router = Router::new()
        .route("/items", get(items))
        .with_state(provider.clone())
        .merge(oauth::routes(provider.clone()));
    let url = oauth::serve(router).await;
    provider.lock().unwrap().token_url = format!("{url}/token");
    (url, provider)
}

fn settings() -> Settings {
    Settings {
        client_id: "client-1".into(),
        client_secret: "client-secret-xyz".into(),
        refresh_tokens: vec!["rt-configured".into()],
        expires_in: Some(3600),
        ..Settings::default()
    }
}

fn client_credentials(client_auth: ClientAuth) -> AuthPlan {
    AuthPlan::OAuth2ClientCredentials {
        token_url: template("{{config.base}}/token"),
        client_id: template("{{config.client_id}}"),
        client_secret: template("{{config.client_secret}}"),
        scopes: vec!["read:items".into(), "read:users".into()],
        extra: vec![("audience".into(), template("https://api.example"))],
        client_auth,
    }
}

fn refresh_token() -> AuthPlan {
    AuthPlan::OAuth2RefreshToken {
        token_url: template("{{config.base}}/token"),
        client_id: template("{{config.client_id}}"),
        client_secret: template("{{config.client_secret}}"),
        refresh_token: template("{{config.refresh_token}}"),
        scopes: Vec::new(),
        extra: Vec::new(),
        client_auth: ClientAuth::Body,
    }
}

/// Builds a flow that reads `/items?page=N` until an empty page, with `auth`.
fn flow(base: &str, auth: AuthPlan) -> Arc<Flow> {
    let mut paged = entity("items", "/items");
    paged.pagination = Pagination::PageNumber {
        param: query("page"),
        start: 1,
        total_pages: None,
        stop_on_short_page: false,
        page_size: None,
        page_size_param: None,
    };
    let paged = Arc::new(paged);
    let mut api = connector(base);
    api.http.auth = auth;
    test_flow(
        api,
        &paged,
        json!({
            "base": base,
            "client_id": "client-1",
            "client_secret": "client-secret-xyz",
            "refresh_token": "rt-configured",
        }),
    )
}

/// A token store in memory, standing in for `_ferry.state`.
#[derive(Default)]
struct MemoryStore {
    saved: Mutex<Option<SavedRefreshToken>>,
    saves: Mutex<usize>,
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self) -> Result<Option<SavedRefreshToken>, String> {
        Ok(self.saved.lock().unwrap().clone())
    }

    async fn save(&self, token: &SavedRefreshToken) -> Result<(), String> {
        *self.saved.lock().unwrap() = Some(token.clone());
        *self.saves.lock().unwrap() += 1;
        Ok(())
    }
}

async fn run_flow(flow: &Arc<Flow>, store: Option<Arc<dyn TokenStore>>) -> crate::support::Outcome {
    let client = Arc::new(HttpClient::with_token_store(flow, store).expect("client builds"));
    run_with(flow, &flow.entities[0], client, Position::default()).await
}

#[tokio::test]
async fn client_credentials_sends_form_and_reuses_token() {
    let (base, provider) = start(settings()).await;
    let flow = flow(&base, client_credentials(ClientAuth::Body));

    let outcome = run_flow(&flow, None).await;

    outcome.assert_ok();
    assert_eq!(outcome.ids(), vec![json!(1), json!(2), json!(3)]);
    let provider = provider.lock().unwrap();
    assert_eq!(
        provider.token_requests.len(),
        1,
        "one token serves every page"
    );
    let request = &provider.token_requests[0];
    assert_eq!(
        request.names(),
        vec![
            "grant_type",
            "scope",
            "client_id",
            "client_secret",
            "audience"
        ]
    );
    assert_eq!(request.field("grant_type"), Some("client_credentials"));
    assert_eq!(request.field("scope"), Some("read:items read:users"));
    assert_eq!(request.field("client_id"), Some("client-1"));
    assert_eq!(request.field("client_secret"), Some("client-secret-xyz"));
    assert_eq!(request.field("audience"), Some("https://api.example"));
    assert_eq!(request.authorization, None);
    assert_eq!(provider.accepted, vec!["at-1"; 4]);
}

#[tokio::test]
async fn client_credentials_with_basic_header() {
    let (base, provider) = start(Settings {
        client_basic: true,
        ..settings()
    })
    .await;
    let flow = flow(&base, client_credentials(ClientAuth::Basic));

    run_flow(&flow, None).await.assert_ok();

    let provider = provider.lock().unwrap();
    let request = &provider.token_requests[0];
    assert_eq!(request.names(), vec!["grant_type", "scope", "audience"]);
    // base64("client-1:client-secret-xyz")
    assert_eq!(
        request.authorization.as_deref(),
        Some("Basic Y2xpZW50LTE6Y2xpZW50LXNlY3JldC14eXo=")
    );
}

#[tokio::test]
async fn refresh_token_grant_sends_configured_token() {
    let (base, provider) = start(settings()).await;
    let flow = flow(&base, refresh_token());

    run_flow(&flow, None).await.assert_ok();

    let provider = provider.lock().unwrap();
    assert_eq!(provider.token_requests.len(), 1);
    let request = &provider.token_requests[0];
    assert_eq!(
        request.names(),
        vec!["grant_type", "refresh_token", "client_id", "client_secret"]
    );
    assert_eq!(request.field("grant_type"), Some("refresh_token"));
    assert_eq!(request.field("refresh_token"), Some("rt-configured"));
}

#[tokio::test]
async fn expiring_token_is_renewed_before_use() {
    // A one-second token is renewed after half its lifetime.
    let (base, provider) = start(Settings {
        expires_in: Some(1),
        ..settings()
    })
    .await;
    let flow = flow(&base, client_credentials(ClientAuth::Body));
    let client = HttpClient::with_token_store(&flow, None).unwrap();
    let client = Arc::new(client);

    let first = run_with(
        &flow,
        &flow.entities[0],
        client.clone(),
        Position::default(),
    )
    .await;
    first.assert_ok();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = run_with(&flow, &flow.entities[0], client, Position::default()).await;
    second.assert_ok();

    let provider = provider.lock().unwrap();
    assert_eq!(provider.token_requests.len(), 2);
    assert_eq!(
        provider.rejected, 0,
        "no request left with an expired token"
    );
    assert_eq!(
        provider.accepted,
        vec![
            "at-1", "at-1", "at-1", "at-1", "at-2", "at-2", "at-2", "at-2"
        ]
    );
}

/// Serves items but expires every access token after the first page, as
/// a token that runs out mid-run.
async fn items_expiring(
    State(provider): State<Shared>,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
) -> Response {
    let response = items(State(provider.clone()), headers, query).await;
    let served = provider.lock().unwrap().accepted.len();
    if served == 1 {
        oauth::expire_access_tokens(&provider);
    }
    response
}

#[tokio::test]
async fn unauthorized_response_renews_token_once() {
    let provider = oauth::shared(settings());
    let router = Router::new()
        .route("/items", get(items_expiring))
        .with_state(provider.clone())
        .merge(oauth::routes(provider.clone()));
    let base = oauth::serve(router).await;
    let flow = flow(&base, client_credentials(ClientAuth::Body));

    let outcome = run_flow(&flow, None).await;

    outcome.assert_ok();
    assert_eq!(outcome.ids(), vec![json!(1), json!(2), json!(3)]);
    let provider = provider.lock().unwrap();
    assert_eq!(provider.token_requests.len(), 2);
    assert_eq!(provider.rejected, 1);
    assert_eq!(provider.accepted, vec!["at-1", "at-2", "at-2", "at-2"]);
}

/// Rejects every request with 401, whatever the token.
async fn always_unauthorized(State(provider): State<Shared>) -> Response {
    oauth::expire_access_tokens(&provider);
    assert!(oauth::authorize(&provider, &HeaderMap::new()).is_none());
    oauth::unauthorized()
}

#[tokio::test]
async fn second_unauthorized_fails_with_auth_kind() {
    let provider = oauth::shared(settings());
    let router = Router::new()
        .route("/items", get(always_unauthorized))
        .with_state(provider.clone())
        .merge(oauth::routes(provider.clone()));
    let base = oauth::serve(router).await;
    let flow = flow(&base, client_credentials(ClientAuth::Body));

    let outcome = run_flow(&flow, None).await;

    assert_eq!(outcome.error().kind, FetchErrorKind::Auth);
    assert!(
        outcome.error().message.contains("HTTP 401"),
        "{}",
        outcome.error()
    );
    let provider = provider.lock().unwrap();
    assert_eq!(
        provider.token_requests.len(),
        2,
        "one renewal, then the 401 stands"
    );
    assert_eq!(provider.rejected, 2);
}

#[tokio::test]
async fn token_endpoint_error_names_provider_error() {
    let (base, provider) = start(settings()).await;
    let mut flow_plan = flow(&base, refresh_token());
    Arc::get_mut(&mut flow_plan).unwrap().config["refresh_token"] = json!("rt-revoked-0001");

    let outcome = run_flow(&flow_plan, None).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Auth);
    assert!(
        error
            .message
            .contains("HTTP 400: invalid_grant: Token has been expired or revoked."),
        "{error}"
    );
    assert!(error.message.contains("/token"), "{error}");
    assert!(!error.message.contains("rt-revoked-0001"), "{error}");
    assert!(!error.message.contains("client-secret-xyz"), "{error}");
    assert_eq!(
        provider.lock().unwrap().token_requests.len(),
        1,
        "4xx is not retried"
    );
    assert!(outcome.records().is_empty());
}

#[tokio::test]
async fn token_endpoint_failures_are_retried() {
    let (base, provider) = start(settings()).await;
    provider.lock().unwrap().scripted = [
        (503, json!({"error": "unavailable"})),
        (400, json!({"error": "temporarily_unavailable"})),
    ]
    .into();
    let flow = flow(&base, client_credentials(ClientAuth::Body));

    let outcome = run_flow(&flow, None).await;

    outcome.assert_ok();
    assert_eq!(provider.lock().unwrap().token_requests.len(), 3);
}

#[tokio::test]
async fn token_endpoint_retries_run_out() {
    let (base, provider) = start(settings()).await;
    provider.lock().unwrap().scripted = vec![(503, json!({"error": "backend"})); 5].into();
    let flow = flow(&base, client_credentials(ClientAuth::Body));

    let outcome = run_flow(&flow, None).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Auth);
    assert!(
        error.message.contains("HTTP 503 after 3 attempts: backend"),
        "{error}"
    );
    // fast_retry allows three attempts.
    assert_eq!(provider.lock().unwrap().token_requests.len(), 3);
}

#[tokio::test]
async fn rotated_refresh_token_is_saved_and_reused() {
    let (base, provider) = start(Settings {
        rotate: true,
        ..settings()
    })
    .await;
    let flow = flow(&base, refresh_token());
    let store = Arc::new(MemoryStore::default());

    run_flow(&flow, Some(store.clone())).await.assert_ok();
    let saved = store
        .saved
        .lock()
        .unwrap()
        .clone()
        .expect("rotated token saved");
    assert_eq!(saved.refresh_token, "rt-rotated-1");
    assert_eq!(*store.saves.lock().unwrap(), 1);

    // A second client is a new run: it starts from the saved token, which
    // the provider accepts, while the configured one is no longer valid.
    run_flow(&flow, Some(store.clone())).await.assert_ok();

    let provider = provider.lock().unwrap();
    let sent: Vec<_> = provider
        .token_requests
        .iter()
        .map(|request| request.field("refresh_token").unwrap().to_string())
        .collect();
    assert_eq!(sent, vec!["rt-configured", "rt-rotated-1"]);
    assert!(!provider.valid_refresh_tokens.contains("rt-configured"));
    assert_eq!(
        store.saved.lock().unwrap().as_ref().unwrap().refresh_token,
        "rt-rotated-2"
    );
}

#[tokio::test]
async fn new_configured_token_wins_over_saved_one() {
    let (base, provider) = start(Settings {
        refresh_tokens: vec!["rt-configured".into()],
        ..settings()
    })
    .await;
    let flow = flow(&base, refresh_token());
    let store = Arc::new(MemoryStore::default());
    *store.saved.lock().unwrap() = Some(SavedRefreshToken {
        refresh_token: "rt-from-an-older-config".into(),
        configured_sha256: "0".repeat(64),
    });

    run_flow(&flow, Some(store)).await.assert_ok();

    let provider = provider.lock().unwrap();
    assert_eq!(
        provider.token_requests[0].field("refresh_token"),
        Some("rt-configured")
    );
}

/// Runs the `ferry` binary with `args` in a blocking task, so the provider
/// on this test's runtime keeps serving.
async fn ferry(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(&args)
            .env("RUST_LOG", "info")
            .env_remove("FERRY_LOG_FORMAT")
            .env_remove("FERRY_CONFIG")
            .output()
            .expect("ferry runs")
    })
    .await
    .unwrap()
}

/// Writes a connector with refresh-token auth and a flow into `dir`, the
/// flow writing to `db`.
fn rotating_folder(dir: &std::path::Path, base: &str, db: &std::path::Path) {
    let connector = format!(
        r#"kind: Connector
name: rotating
config:
  refresh_token: {{ type: string, secret: true }}
  client_secret: {{ type: string, secret: true }}
http:
  base_url: "{base}"
  auth:
    type: oauth2_refresh_token
    token_url: "{base}/token"
    client_id: client-1
    client_secret: "{{{{config.client_secret}}}}"
    refresh_token: "{{{{config.refresh_token}}}}"
  retry: {{ max_attempts: 1 }}
entities:
  items:
    path: /items
    records: "$.data"
    primary_key: [id]
    pagination: {{ type: page_number, param: page }}
"#
    );
    std::fs::write(dir.join("connector.yaml"), connector).unwrap();
    let flow = format!(
        "kind: Flow\nname: rotating\nsource:\n  connector: rotating\n  config:\n    refresh_token: rt-configured\n    client_secret: client-secret-xyz\ndestination: \"duckdb://{}\"\n",
        db.display()
    );
    std::fs::write(dir.join("flow.yaml"), flow).unwrap();
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_token_survives_restart() {
    let (base, provider) = start(Settings {
        rotate: true,
        ..settings()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.d");
    std::fs::create_dir(&config).unwrap();
    let db = dir.path().join("out.duckdb");
    rotating_folder(&config, &base, &db);
    let sync_args = || {
        vec![
            "sync".to_string(),
            "rotating".to_string(),
            "--config".to_string(),
            config.display().to_string(),
        ]
    };

    // Two processes, one after the other: the second starts from the
    // token the first one received and saved.
    let first = ferry(sync_args()).await;
    assert_eq!(first.status.code(), Some(0), "{}", output_text(&first));
    let second = ferry(sync_args()).await;
    assert_eq!(second.status.code(), Some(0), "{}", output_text(&second));

    {
        let provider = provider.lock().unwrap();
        let sent: Vec<&str> = provider
            .token_requests
            .iter()
            .map(|request| request.field("refresh_token").unwrap())
            .collect();
        assert_eq!(sent, vec!["rt-configured", "rt-rotated-1"]);
        assert!(!provider.valid_refresh_tokens.contains("rt-configured"));
        assert!(provider.valid_refresh_tokens.contains("rt-rotated-2"));
    }
    for output in [&first, &second] {
        let text = output_text(output);
        for secret in [
            "rt-configured",
            "rt-rotated-1",
            "rt-rotated-2",
            "client-secret-xyz",
            "at-1",
            "at-2",
        ] {
            assert!(!text.contains(secret), "{secret} in the output: {text}");
        }
    }

    let rows = crate::support::duck::query(&db, "select id from rotating.items order by id");
    assert_eq!(rows, vec![vec!["1"], vec!["2"], vec!["3"]]);
    let saved = crate::support::duck::query(
        &db,
        "select state->>'refresh_token' from _ferry.state where flow = 'rotating' and entity = '_ferry_auth'",
    );
    assert_eq!(saved, vec![vec!["rt-rotated-2"]]);

    // `ferry state show` masks the saved token.
    let show = ferry(vec![
        "state".into(),
        "show".into(),
        "rotating".into(),
        "--json".into(),
        "--config".into(),
        config.display().to_string(),
    ])
    .await;
    assert_eq!(show.status.code(), Some(0), "{}", output_text(&show));
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    let auth_row = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["entity"] == "_ferry_auth")
        .expect("the auth row is listed");
    assert_eq!(auth_row["state"]["refresh_token"], json!("***"));

    // `ferry state reset` forgets the entities' state but keeps the token.
    let reset = ferry(vec![
        "state".into(),
        "reset".into(),
        "rotating".into(),
        "--config".into(),
        config.display().to_string(),
    ])
    .await;
    assert_eq!(reset.status.code(), Some(0), "{}", output_text(&reset));
    let entities = crate::support::duck::query(
        &db,
        "select entity from _ferry.state where flow = 'rotating' order by entity",
    );
    assert_eq!(entities, vec![vec!["_ferry_auth"]]);

    // A destination without the saved token falls back to the configured
    // one, which the provider rejects since the first rotation.
    let fresh = dir.path().join("fresh.duckdb");
    rotating_folder(&config, &base, &fresh);
    let third = ferry(sync_args()).await;
    assert_eq!(third.status.code(), Some(1));
    let text = output_text(&third);
    assert!(text.contains("invalid_grant"), "{text}");
    assert!(!text.contains("rt-configured"), "{text}");
}
