//! A local emulation of the parts of GitHub's APIs that
//! `examples/github` reads, on 127.0.0.1.
//!
//! REST, with a subset of GitHub's fields:
//! - `GET /repos/{owner}/{repo}/issues?state=all&per_page=N&sort=updated&direction=asc[&since=T][&page=P]`
//! - `GET /repos/{owner}/{repo}/issues/{number}/comments?per_page=N[&page=P]`
//!
//! Both order by `updated_at` and send an RFC 8288 `Link` header with
//! `rel="next"` and `rel="last"` while more pages follow.
//!
//! GraphQL: `POST /graphql` returns `repository.issues` as a Relay
//! connection (`nodes`, `pageInfo { hasNextPage endCursor }`) from the
//! variables `owner`, `name`, `first`, `after` and `since`, following the
//! schema excerpt in `tests/fixtures/github-graphql-issues.graphql`. The
//! query text is not parsed. Tests make it rate limit inside a 200 or send
//! a null `endCursor`, and read back every request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

pub const TOKEN: &str = "ghp_emulated_token_0123456789";

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub updated_at: String,
    pub comments: Vec<Comment>,
}

#[derive(Default)]
pub struct GithubState {
    pub issues: Vec<Issue>,
    /// Issues whose comments respond 404, as for a deleted issue.
    pub deleted: Vec<u64>,
    /// Issues whose comments respond 500.
    pub failing: Vec<u64>,
    /// Wait before every comments response.
    pub comments_delay: Duration,
    /// GraphQL requests still to get a rate-limit error in a 200.
    pub rate_limited: usize,
    /// GraphQL pages that have more get `endCursor: null`.
    pub null_end_cursor: bool,
    /// Each request: `GET /path?query`, or `POST /graphql` with its variables.
    pub requests: Vec<String>,
}

#[derive(Clone)]
pub struct Github {
    pub url: String,
    pub state: Arc<Mutex<GithubState>>,
}

impl Github {
    pub async fn start(issues: Vec<Issue>) -> Github {
        let state = Arc::new(Mutex::new(GithubState {
            issues,
            ..GithubState::default()
        }));
        let router = Router::new()
            .route("/user", get(user))
            .route("/repos/{owner}/{repo}/issues", get(list_issues))
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                get(list_comments),
            )
            .route("/graphql", post(graphql))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Github {
            url: format!("http://{address}"),
            state,
        }
    }

    pub fn with<R>(&self, change: impl FnOnce(&mut GithubState) -> R) -> R {
        change(&mut self.state.lock().unwrap())
    }

    /// Requests received so far, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.with(|state| state.requests.clone())
    }

    pub fn clear_requests(&self) {
        self.with(|state| state.requests.clear());
    }
}

/// Returns `count` issues numbered from 1, each updated an hour after the
/// one before; issue `n` has `n % 4` comments.
pub fn issues(count: u64) -> Vec<Issue> {
    (1..=count)
        .map(|number| Issue {
            number,
            title: format!("Issue {number}"),
            updated_at: hours(number as i64),
            comments: (1..=number % 4)
                .map(|index| Comment {
                    id: number * 100 + index,
                    body: format!("Comment {index} on issue {number}"),
                    updated_at: hours(number as i64),
                })
                .collect(),
        })
        .collect()
}

/// Returns the time `hours` after 2024-01-01T00:00:00Z, as GitHub writes it.
pub fn hours(hours: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
    (base + chrono::Duration::hours(hours))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
}

fn unauthorized() -> Response {
    let body =
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

fn not_found() -> Response {
    let body = json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn record(state: &Mutex<GithubState>, line: String) {
    state.lock().unwrap().requests.push(line);
}

fn query_text(query: &[(String, String)]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    pairs.join("&")
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

async fn user(State(state): State<Arc<Mutex<GithubState>>>, headers: HeaderMap) -> Response {
    record(&state, "GET /user".to_string());
    if !authorized(&headers) {
        return unauthorized();
    }
    axum::Json(json!({"login": "octocat", "id": 1})).into_response()
}

/// Cuts `items` into pages of `per_page` and returns page `page` (from 1)
/// with the `Link` header GitHub sends: `next` and `last` while more follow.
fn paginate(items: Vec<Value>, path: &str, query: &[(String, String)], base: &str) -> Response {
    let per_page: usize = param(query, "per_page")
        .and_then(|value| value.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = param(query, "page")
        .and_then(|value| value.parse().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = axum::Json(Value::Array(body)).into_response();
    if page < last {
        let link_to = |target: usize| {
            let mut pairs: Vec<(String, String)> = query
                .iter()
                .filter(|(key, _)| key != "page")
                .cloned()
                .collect();
            pairs.push(("page".to_string(), target.to_string()));
            format!("{base}{path}?{}", query_text(&pairs))
        };
        let link = format!(
            "<{}>; rel=\"next\", <{}>; rel=\"last\"",
            link_to(page + 1),
            link_to(last)
        );
        response
            .headers_mut()
            .insert("link", HeaderValue::from_str(&link).unwrap());
    }
    response
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn list_issues(
    State(state): State<Arc<Mutex<GithubState>>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/issues");
    record(&state, format!("GET {path}?{}", query_text(&query)));
    if !authorized(&headers) {
        return unauthorized();
    }
    let since = param(&query, "since").map(str::to_string);
    let mut selected: Vec<Issue> = {
        let state = state.lock().unwrap();
        state
            .issues
            .iter()
            .filter(|issue| {
                since
                    .as_deref()
                    .is_none_or(|since| issue.updated_at.as_str() >= since)
            })
            .cloned()
            .collect()
    };
    selected.sort_by(|a, b| (&a.updated_at, a.number).cmp(&(&b.updated_at, b.number)));
    let items = selected
        .iter()
        .map(|issue| {
            json!({
                "id": 1_000 + issue.number,
                "node_id": node_id(issue.number),
                "number": issue.number,
                "title": issue.title,
                "state": "open",
                "comments": issue.comments.len(),
                "updated_at": issue.updated_at,
                "url": format!("https://api.github.com{path}/{}", issue.number),
            })
        })
        .collect();
    paginate(items, &path, &query, &base_url(&headers))
}

async fn list_comments(
    State(state): State<Arc<Mutex<GithubState>>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/issues/{number}/comments");
    record(&state, format!("GET {path}?{}", query_text(&query)));
    if !authorized(&headers) {
        return unauthorized();
    }
    let (issue, delay, deleted, failing) = {
        let state = state.lock().unwrap();
        (
            state
                .issues
                .iter()
                .find(|issue| issue.number == number)
                .cloned(),
            state.comments_delay,
            state.deleted.contains(&number),
            state.failing.contains(&number),
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if failing {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"message\":\"Server Error\"}",
        )
            .into_response();
    }
    let Some(issue) = issue.filter(|_| !deleted) else {
        return not_found();
    };
    let items = issue
        .comments
        .iter()
        .map(|comment| {
            json!({
                "id": comment.id,
                "body": comment.body,
                "user": {"login": "octocat"},
                "updated_at": comment.updated_at,
                "issue_url": format!("https://api.github.com/repos/{owner}/{repo}/issues/{number}"),
            })
        })
        .collect();
    paginate(items, &path, &query, &base_url(&headers))
}

fn node_id(number: u64) -> String {
    format!("I_kwDOemu{number:04}")
}

fn encode_cursor(index: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("cursor:{index}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("cursor:")?
        .parse()
        .ok()
}

fn graphql_error(message: &str, path: Value) -> Response {
    axum::Json(json!({"data": null, "errors": [{"message": message, "path": path}]}))
        .into_response()
}

async fn graphql(
    State(state): State<Arc<Mutex<GithubState>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let variables = request["variables"].clone();
    record(&state, format!("POST /graphql {variables}"));
    if !authorized(&headers) {
        return unauthorized();
    }
    if !request["query"]
        .as_str()
        .is_some_and(|query| query.contains("issues("))
    {
        return graphql_error(
            "the emulation answers repository.issues queries only",
            json!([]),
        );
    }
    {
        let mut state = state.lock().unwrap();
        if state.rate_limited > 0 {
            state.rate_limited -= 1;
            // GitHub's rate-limit body: HTTP 200 with a top-level error type.
            let body = json!({"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]});
            return axum::Json(body).into_response();
        }
    }
    let first = variables["first"].as_u64().unwrap_or(0);
    if !(1..=100).contains(&first) {
        return graphql_error(
            "You must provide a `first` or `last` value between 1 and 100 to properly paginate the `issues` connection.",
            json!(["repository", "issues"]),
        );
    }
    let start = match variables["after"].as_str() {
        None => 0,
        Some(cursor) => match decode_cursor(cursor) {
            Some(index) => index + 1,
            None => {
                return graphql_error(
                    &format!("`{cursor}` does not appear to be a valid cursor."),
                    json!(["repository", "issues"]),
                );
            }
        },
    };
    let since = variables["since"].as_str().map(str::to_string);
    let (mut selected, null_end_cursor) = {
        let state = state.lock().unwrap();
        let selected: Vec<Issue> = state
            .issues
            .iter()
            .filter(|issue| {
                since
                    .as_deref()
                    .is_none_or(|since| issue.updated_at.as_str() >= since)
            })
            .cloned()
            .collect();
        (selected, state.null_end_cursor)
    };
    selected.sort_by(|a, b| (&a.updated_at, a.number).cmp(&(&b.updated_at, b.number)));
    let end = (start + first as usize).min(selected.len());
    let nodes: Vec<Value> = selected[start.min(end)..end]
        .iter()
        .map(|issue| {
            json!({
                "id": node_id(issue.number),
                "number": issue.number,
                "title": issue.title,
                "state": "OPEN",
                "updatedAt": issue.updated_at,
                "comments": {"totalCount": issue.comments.len()},
            })
        })
        .collect();
    let has_next_page = end < selected.len();
    let end_cursor = if nodes.is_empty() || (has_next_page && null_end_cursor) {
        Value::Null
    } else {
        Value::String(encode_cursor(end - 1))
    };
    axum::Json(json!({"data": {"repository": {"issues": {
        "nodes": nodes,
        "pageInfo": {
            "hasNextPage": has_next_page,
            "hasPreviousPage": start > 0,
            "endCursor": end_cursor,
        }
    }}}}))
    .into_response()
}
