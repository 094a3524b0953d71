//! A local emulation of the BigQuery REST API v2 and Google's token
//! endpoint. It follows the request and response shapes of Google's
//! discovery document and client tests (googleapis/python-bigquery,
//! Apache-2.0) for tables.get, tabledata.list, jobs.query and
//! jobs.getQueryResults: `pageToken` paging, `jobComplete: false` while a
//! job runs, and `{"f": [{"v": ...}]}` rows of string cells.
//!
//! Service-account assertions are verified against a key pair generated
//! for each emulator, and every API request must carry an access token
//! the token endpoint issued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::oauth::{self, JwtCheck, Settings, Shared};

pub const CLIENT_EMAIL: &str = "ferry-test@test-project.iam.gserviceaccount.com";
pub const KEY_ID: &str = "test-key-1";

/// A table or a query result: a schema and rows in the API's form.
#[derive(Clone)]
pub struct Table {
    pub schema: Value,
    pub rows: Vec<Value>,
}

struct Job {
    project: String,
    location: String,
    sql: String,
    /// getQueryResults responses that still report `jobComplete: false`.
    polls_left: usize,
}

#[derive(Default)]
pub struct ApiState {
    /// Tables and views by `project.dataset.table`.
    pub tables: HashMap<String, Table>,
    /// Query results by the exact SQL text.
    pub results: HashMap<String, Table>,
    /// How many getQueryResults responses of each new job report
    /// `jobComplete: false`; with 0, jobs.query itself reports completion.
    pub polls_before_complete: usize,
    /// Every API request as `METHOD path?query`, in order.
    pub requests: Vec<String>,
    /// The bodies of jobs.query requests.
    pub query_bodies: Vec<Value>,
    /// Responds once with the status to the next request whose target
    /// contains the text.
    pub fail_once: Vec<(String, u16)>,
    /// Expires every access token after this many API requests, once, as
    /// a token that runs out mid-run.
    pub expire_tokens_after: Option<usize>,
    jobs: HashMap<String, Job>,
}

#[derive(Clone)]
struct Emulator {
    api: Arc<Mutex<ApiState>>,
    provider: Shared,
}

/// A running emulator and what it recorded.
pub struct BigQuery {
    pub url: String,
    pub api: Arc<Mutex<ApiState>>,
    pub provider: Shared,
    /// The service-account key file's JSON, its token_uri pointing here.
    pub key_file: String,
}

impl BigQuery {
    pub async fn start(state: ApiState) -> BigQuery {
        let key = generate_key();
        let provider = oauth::shared(Settings {
            expires_in: Some(3599),
            jwt: Some(JwtCheck {
                public_key_pem: key.public_key_pem(),
                issuer: CLIENT_EMAIL.to_string(),
            }),
            ..Settings::default()
        });
        let api = Arc::new(Mutex::new(state));
        let emulator = Emulator {
            api: api.clone(),
            provider: provider.clone(),
        };
        let router = Router::new()
            .route("/bigquery/v2/projects", get(list_projects))
            .route(
                "/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}",
                get(get_table),
            )
            .route(
                "/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}/data",
                get(list_rows),
            )
            .route("/bigquery/v2/projects/{project}/queries", post(query))
            .route(
                "/bigquery/v2/projects/{project}/queries/{job}",
                get(query_results),
            )
            .with_state(emulator)
            .merge(oauth::routes(provider.clone()));
        let url = oauth::serve(router).await;
        provider.lock().unwrap().token_url = format!("{url}/token");
        let key_file = key_file(&key, &format!("{url}/token"));
        BigQuery {
            url,
            api,
            provider,
            key_file,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.api.lock().unwrap().requests.clone()
    }

    pub fn with<T>(&self, change: impl FnOnce(&mut ApiState) -> T) -> T {
        change(&mut self.api.lock().unwrap())
    }
}

/// Generates an RSA key pair for a test service account.
pub fn generate_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
}

/// Returns a service-account key file's JSON for `key`, as Google issues
/// them, with `token_uri` pointing at a local token endpoint.
pub fn key_file(key: &rcgen::KeyPair, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": KEY_ID,
        "private_key": key.serialize_pem(),
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

/// Checks the token, records the request and applies injected failures.
/// Returns the response to send instead of the API's, if any.
fn admit(emulator: &Emulator, headers: &HeaderMap, method: &str, uri: &Uri) -> Option<Response> {
    let target = uri
        .path_and_query()
        .map(|target| target.as_str().to_string())
        .unwrap_or_default();
    if oauth::authorize(&emulator.provider, headers).is_none() {
        emulator
            .api
            .lock()
            .unwrap()
            .requests
            .push(format!("{method} {target} (401)"));
        return Some(oauth::unauthorized());
    }
    let mut api = emulator.api.lock().unwrap();
    api.requests.push(format!("{method} {target}"));
    let served = api
        .requests
        .iter()
        .filter(|line| !line.ends_with("(401)"))
        .count();
    if api.expire_tokens_after == Some(served) {
        api.expire_tokens_after = None;
        oauth::expire_access_tokens(&emulator.provider);
    }
    if let Some(at) = api
        .fail_once
        .iter()
        .position(|(text, _)| target.contains(text.as_str()))
    {
        let (_, status) = api.fail_once.remove(at);
        let body = json!({"error": {"code": status, "message": "injected failure", "errors": [{"message": "injected failure", "domain": "global", "reason": "backendError"}]}});
        return Some((StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response());
    }
    None
}

fn not_found(what: &str) -> Response {
    let message = format!("Not found: {what}");
    let body = json!({"error": {"code": 404, "message": message, "errors": [{"message": message, "domain": "global", "reason": "notFound"}], "status": "NOT_FOUND"}});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

async fn list_projects(State(emulator): State<Emulator>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(response) = admit(&emulator, &headers, "GET", &uri) {
        return response;
    }
    axum::Json(json!({
        "kind": "bigquery#projectList",
        "projects": [{"id": "test-project", "projectReference": {"projectId": "test-project"}}],
        "totalItems": 1
    }))
    .into_response()
}

async fn get_table(
    State(emulator): State<Emulator>,
    UrlPath((project, dataset, table)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some(response) = admit(&emulator, &headers, "GET", &uri) {
        return response;
    }
    let name = format!("{project}.{dataset}.{table}");
    let api = emulator.api.lock().unwrap();
    let Some(found) = api.tables.get(&name) else {
        return not_found(&format!("Table {project}:{dataset}.{table}"));
    };
    axum::Json(json!({
        "kind": "bigquery#table",
        "id": format!("{project}:{dataset}.{table}"),
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "schema": found.schema,
        "type": "TABLE",
        "location": "US"
    }))
    .into_response()
}

async fn list_rows(
    State(emulator): State<Emulator>,
    UrlPath((project, dataset, table)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some(response) = admit(&emulator, &headers, "GET", &uri) {
        return response;
    }
    let name = format!("{project}.{dataset}.{table}");
    let api = emulator.api.lock().unwrap();
    let Some(found) = api.tables.get(&name) else {
        return not_found(&format!("Table {project}:{dataset}.{table}"));
    };
    let mut body = json!({"kind": "bigquery#tableDataList", "etag": "etag-1"});
    page(&mut body, found, &query);
    axum::Json(body).into_response()
}

/// Adds `rows`, `totalRows` and `pageToken` for the page that `maxResults`
/// and `pageToken` select.
fn page(body: &mut Value, table: &Table, query: &HashMap<String, String>) {
    let start: usize = query
        .get("pageToken")
        .and_then(|token| token.strip_prefix("tok-"))
        .and_then(|offset| offset.parse().ok())
        .unwrap_or(0);
    let size: usize = query
        .get("maxResults")
        .and_then(|size| size.parse().ok())
        .unwrap_or(100_000);
    let end = (start + size).min(table.rows.len());
    body["totalRows"] = json!(table.rows.len().to_string());
    if size == 0 {
        return;
    }
    let rows = &table.rows[start.min(end)..end];
    if !rows.is_empty() {
        body["rows"] = json!(rows);
    }
    if end < table.rows.len() {
        body["pageToken"] = json!(format!("tok-{end}"));
    }
}

async fn query(
    State(emulator): State<Emulator>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if let Some(response) = admit(&emulator, &headers, "POST", &uri) {
        return response;
    }
    let mut api = emulator.api.lock().unwrap();
    api.query_bodies.push(request.clone());
    let sql = request["query"].as_str().unwrap_or_default().to_string();
    if !api.results.contains_key(&sql) {
        let body = json!({"error": {"code": 400, "message": format!("Syntax error: no result for {sql:?}"), "errors": [{"reason": "invalidQuery", "domain": "global", "message": "Syntax error"}], "status": "INVALID_ARGUMENT"}});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let id = format!("job_{}", api.jobs.len() + 1);
    let location = request["location"].as_str().unwrap_or("US").to_string();
    let polls_left = api.polls_before_complete;
    api.jobs.insert(
        id.clone(),
        Job {
            project: project.clone(),
            location: location.clone(),
            sql: sql.clone(),
            polls_left,
        },
    );
    let mut body = json!({
        "kind": "bigquery#queryResponse",
        "jobReference": {"projectId": project, "jobId": id, "location": location},
        "jobComplete": polls_left == 0,
    });
    if polls_left == 0 {
        let result = &api.results[&sql];
        body["schema"] = result.schema.clone();
        let mut size = HashMap::new();
        if let Some(max) = request.get("maxResults") {
            let text = max.as_str().map(str::to_string).unwrap_or(max.to_string());
            size.insert("maxResults".to_string(), text);
        }
        page(&mut body, result, &size);
    }
    axum::Json(body).into_response()
}

async fn query_results(
    State(emulator): State<Emulator>,
    UrlPath((project, job)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some(response) = admit(&emulator, &headers, "GET", &uri) {
        return response;
    }
    let mut api = emulator.api.lock().unwrap();
    let Some(found) = api.jobs.get_mut(&job) else {
        return not_found(&format!("Job {project}:{job}"));
    };
    if query.get("location") != Some(&found.location) {
        return not_found(&format!("Job {project}:{job} in this location"));
    }
    let reference = json!({"projectId": found.project, "jobId": job, "location": found.location});
    if found.polls_left > 0 {
        found.polls_left -= 1;
        return axum::Json(json!({
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": reference,
            "jobComplete": false
        }))
        .into_response();
    }
    let sql = found.sql.clone();
    let result = &api.results[&sql];
    let mut body = json!({
        "kind": "bigquery#getQueryResultsResponse",
        "jobReference": reference,
        "jobComplete": true,
        "schema": result.schema,
        "cacheHit": false
    });
    page(&mut body, result, &query);
    axum::Json(body).into_response()
}
