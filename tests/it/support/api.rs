//! A small paginated JSON API on 127.0.0.1 for sync tests.
//!
//! `GET /items?limit=N[&cursor=C][&since=S]` returns
//! `{"data": [...], "next": C|null}`. Records are ordered by `updated_at`
//! (ascending, or newest first with `descending`), `since` keeps records
//! with `updated_at >= since`, and the cursor is the index of the next
//! record. Tests change the data between runs, make pages fail, or slow
//! every page down, and read back every request the server received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
pub struct ApiState {
    pub records: Vec<Value>,
    pub descending: bool,
    /// Pages (0-based, counted within one request sequence) that answer 500.
    pub failing_pages: Vec<usize>,
    pub page_delay: Duration,
    /// Each request: its query string.
    pub requests: Vec<String>,
    pub expected_token: Option<String>,
}

#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub state: Arc<Mutex<ApiState>>,
}

impl Api {
    pub async fn start(records: Vec<Value>) -> Api {
        let state = Arc::new(Mutex::new(ApiState {
            records,
            ..ApiState::default()
        }));
        let router = Router::new()
            .route("/items", get(items))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Api {
            url: format!("http://{address}"),
            state,
        }
    }

    pub fn with<R>(&self, change: impl FnOnce(&mut ApiState) -> R) -> R {
        change(&mut self.state.lock().unwrap())
    }

    /// Query strings of the requests received so far, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.with(|state| state.requests.clone())
    }

    pub fn clear_requests(&self) {
        self.with(|state| state.requests.clear());
    }
}

/// `count` records `{id, name, amount, updated_at}` with one update per minute.
pub fn records(count: usize) -> Vec<Value> {
    (0..count)
        .map(|index| {
            json!({
                "id": index + 1,
                "name": format!("item {}", index + 1),
                "amount": (index as i64 + 1) * 100,
                "updated_at": timestamp(index as i64),
            })
        })
        .collect()
}

pub fn timestamp(minutes: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
    (base + chrono::Duration::minutes(minutes))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn items(
    State(state): State<Arc<Mutex<ApiState>>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let get = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let (body, delay, status) = {
        let mut state = state.lock().unwrap();
        let text: Vec<String> = query
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        state.requests.push(text.join("&"));

        if let Some(token) = &state.expected_token {
            let sent = headers
                .get("authorization")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            if sent != format!("Bearer {token}") {
                return (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid token\"}").into_response();
            }
        }

        let limit: usize = get("limit")
            .and_then(|limit| limit.parse().ok())
            .unwrap_or(10);
        let start: usize = get("cursor")
            .and_then(|cursor| cursor.parse().ok())
            .unwrap_or(0);
        let since = get("since");
        let mut selected: Vec<&Value> = state
            .records
            .iter()
            .filter(|record| match &since {
                Some(since) => record["updated_at"].as_str().unwrap_or("") >= since.as_str(),
                None => true,
            })
            .collect();
        selected.sort_by(|a, b| {
            let order = a["updated_at"].as_str().cmp(&b["updated_at"].as_str());
            if state.descending {
                order.reverse()
            } else {
                order
            }
        });
        let page_index = start / limit.max(1);
        let status = if state.failing_pages.contains(&page_index) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        let page: Vec<Value> = selected
            .iter()
            .skip(start)
            .take(limit)
            .map(|record| (*record).clone())
            .collect();
        let next = if start + limit < selected.len() {
            Value::String((start + limit).to_string())
        } else {
            Value::Null
        };
        (
            json!({"data": page, "next": next}),
            state.page_delay,
            status,
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if status != StatusCode::OK {
        return (status, "{\"error\":\"server error\"}").into_response();
    }
    axum::Json(body).into_response()
}
