//! PostHog: bearer auth; events newest first with `after`/`before` (both
//! strict) and a `next` URL that repeats the query with
//! `before=<timestamp of the last event>`, pages capped below `limit`;
//! persons paged by `offset` in `next` URLs; group types, groups paged by
//! cursor; and the query API returning `columns` and row arrays.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Harness;

pub const API_KEY: &str = "phx_emulator_personal_key_5678";
pub const PROJECT: &str = "4242";

#[derive(Default)]
pub struct PostHogData {
    /// Events; served newest first.
    pub events: Vec<Value>,
    /// Rows an events page contains at most, whatever `limit` asks: PostHog
    /// may return fewer rows than asked while more follow.
    pub events_page_cap: usize,
    pub persons: Vec<Value>,
    pub group_types: Vec<Value>,
    pub groups: Vec<Value>,
    /// The query API response: `{columns, results, ...}`.
    pub query_response: Value,
    /// Set after start: the server's own URL, for `next` links.
    pub url: String,
}

pub struct PostHog {
    pub url: String,
    pub data: Arc<Mutex<PostHogData>>,
    pub harness: Harness,
}

type Shared = Arc<Mutex<PostHogData>>;

impl PostHog {
    pub async fn start(data: PostHogData) -> PostHog {
        let data = Arc::new(Mutex::new(data));
        let harness = Harness::default();
        let router = Router::new()
            .route("/api/projects/{project}/", get(project))
            .route("/api/projects/{project}/events/", get(events))
            .route("/api/projects/{project}/persons/", get(persons))
            .route("/api/projects/{project}/groups_types/", get(group_types))
            .route("/api/projects/{project}/groups/", get(groups))
            .route("/api/projects/{project}/query/", post(query))
            .with_state(data.clone());
        let url = harness.serve(router).await;
        data.lock().unwrap().url = url.clone();
        PostHog { url, data, harness }
    }
}

fn check(headers: &HeaderMap, project: &str) -> Result<(), Box<Response>> {
    let presented = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    if presented != Some(format!("Bearer {API_KEY}").as_str()) {
        return Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({
                    "type": "authentication_error",
                    "code": "authentication_failed",
                    "detail": "Invalid personal API key.",
                    "attr": null,
                })),
            )
                .into_response(),
        ));
    }
    if project != PROJECT {
        return Err(Box::new((
            StatusCode::NOT_FOUND,
            axum::Json(json!({"type": "invalid_request", "code": "not_found", "detail": "Not found.", "attr": null})),
        )
            .into_response()));
    }
    Ok(())
}

fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|text| {
            url::form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
}

/// Builds the request URL with `name` set to `value`, other parameters kept in order.
fn with_param(
    base: &str,
    path: &str,
    pairs: &[(String, String)],
    name: &str,
    value: &str,
) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    let mut replaced = false;
    for (key, current) in pairs {
        if key == name {
            serializer.append_pair(key, value);
            replaced = true;
        } else {
            serializer.append_pair(key, current);
        }
    }
    if !replaced {
        serializer.append_pair(name, value);
    }
    format!("{base}{path}?{}", serializer.finish())
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

async fn project(
    State(_data): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check(&headers, &project) {
        return *response;
    }
    axum::Json(json!({"id": PROJECT, "name": "Emulated project"})).into_response()
}

async fn events(
    State(data): State<Shared>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check(&headers, &project) {
        return *response;
    }
    let pairs = pairs(query.as_deref());
    let after = param(&pairs, "after").and_then(|text| time(&text));
    let before = param(&pairs, "before").and_then(|text| time(&text));
    let limit: usize = param(&pairs, "limit")
        .and_then(|text| text.parse().ok())
        .unwrap_or(100);
    let data = data.lock().unwrap();
    let mut selected: Vec<&Value> = data
        .events
        .iter()
        .filter(|event| {
            let Some(at) = event["timestamp"].as_str().and_then(time) else {
                return false;
            };
            after.is_none_or(|after| at > after) && before.is_none_or(|before| at < before)
        })
        .collect();
    selected.sort_by_key(|event| std::cmp::Reverse(event["timestamp"].as_str().and_then(time)));

    let take = limit.min(data.events_page_cap.max(1));
    let page: Vec<Value> = selected
        .iter()
        .take(take)
        .map(|event| (*event).clone())
        .collect();
    let next = if selected.len() > take {
        let last = page
            .last()
            .and_then(|event| event["timestamp"].as_str())
            .unwrap_or("");
        let path = format!("/api/projects/{project}/events/");
        Value::from(with_param(&data.url, &path, &pairs, "before", last))
    } else {
        Value::Null
    };
    axum::Json(json!({"next": next, "results": page})).into_response()
}

async fn persons(
    State(data): State<Shared>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check(&headers, &project) {
        return *response;
    }
    let pairs = pairs(query.as_deref());
    let offset: usize = param(&pairs, "offset")
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let limit: usize = param(&pairs, "limit")
        .and_then(|text| text.parse().ok())
        .unwrap_or(100);
    let data = data.lock().unwrap();
    let page: Vec<Value> = data
        .persons
        .iter()
        .skip(offset)
        .take(limit)
        .cloned()
        .collect();
    let next = if offset + page.len() < data.persons.len() {
        let path = format!("/api/projects/{project}/persons/");
        let next_offset = (offset + limit).to_string();
        Value::from(with_param(&data.url, &path, &pairs, "offset", &next_offset))
    } else {
        Value::Null
    };
    axum::Json(
        json!({"next": next, "previous": null, "count": data.persons.len(), "results": page}),
    )
    .into_response()
}

async fn group_types(
    State(data): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check(&headers, &project) {
        return *response;
    }
    axum::Json(Value::Array(data.lock().unwrap().group_types.clone())).into_response()
}

async fn groups(
    State(data): State<Shared>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check(&headers, &project) {
        return *response;
    }
    let pairs = pairs(query.as_deref());
    let Some(index) = param(&pairs, "group_type_index").and_then(|text| text.parse::<i64>().ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"type": "validation_error", "code": "required", "detail": "This field is required.", "attr": "group_type_index"})),
        )
            .into_response();
    };
    let data = data.lock().unwrap();
    let results: Vec<Value> = data
        .groups
        .iter()
        .filter(|group| group["group_type_index"] == index)
        .cloned()
        .collect();
    axum::Json(json!({"next": null, "previous": null, "results": results})).into_response()
}

async fn query(
    State(data): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Err(response) = check(&headers, &project) {
        return *response;
    }
    if body["query"]["kind"] != "HogQLQuery" {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"type": "validation_error", "code": "invalid_input", "detail": "query.kind must be HogQLQuery", "attr": "query"})),
        )
            .into_response();
    }
    axum::Json(data.lock().unwrap().query_response.clone()).into_response()
}
