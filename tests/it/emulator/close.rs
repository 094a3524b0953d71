//! Close: `/api/v1/...` lists with `_skip`/`_limit` and `has_more`, a
//! maximum `_skip` answered with 400, date filters (`date_updated__gte`,
//! `date_created__lt`, and the lead search `query`), basic auth with the
//! key as username and an empty password.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};

use super::Harness;

pub const API_KEY: &str = "api_close_emulator_1234";

#[derive(Default)]
pub struct CloseData {
    pub leads: Vec<Value>,
    pub opportunities: Vec<Value>,
    pub activities: Vec<Value>,
    pub lead_custom_fields: Vec<Value>,
    /// Largest `_skip` accepted; deeper requests get a 400.
    pub max_skip: usize,
}

pub struct Close {
    pub url: String,
    pub data: Arc<Mutex<CloseData>>,
    pub harness: Harness,
}

impl Close {
    pub async fn start(data: CloseData) -> Close {
        let data = Arc::new(Mutex::new(data));
        let harness = Harness::default();
        let router = Router::new()
            .route("/api/v1/{*path}", get(list))
            .with_state(data.clone());
        let url = harness.serve(router).await;
        Close { url, data, harness }
    }
}

async fn list(
    State(data): State<Arc<Mutex<CloseData>>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"error": "Unauthorized: provide your API key as the basic auth username"}),
            ),
        )
            .into_response();
    }
    let pairs: Vec<(String, String)> = query
        .as_deref()
        .map(|text| {
            url::form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let data = data.lock().unwrap();
    let path = path.trim_end_matches('/');
    let (records, time_field, type_filter): (&[Value], &str, Option<&str>) = match path {
        "lead" => (&data.leads, "date_updated", None),
        "opportunity" => (&data.opportunities, "date_updated", None),
        "activity" => (&data.activities, "date_created", None),
        "activity/call" => (&data.activities, "date_created", Some("Call")),
        "activity/note" => (&data.activities, "date_created", Some("Note")),
        "custom_field/lead" => (&data.lead_custom_fields, "date_created", None),
        "custom_field/opportunity" | "custom_field/contact" => (&[], "date_created", None),
        "me" => {
            return axum::Json(json!({"id": "user_emulator", "email": "me@example.com"}))
                .into_response();
        }
        _ => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": format!("no such endpoint: /api/v1/{path}/")})),
            )
                .into_response();
        }
    };

    let mut bounds = Bounds::default();
    for suffix in ["gte", "gt", "lte", "lt"] {
        if let Some(value) = param(&format!("{time_field}__{suffix}")) {
            bounds.set(suffix, parse_time(&value));
        }
    }
    if path == "lead"
        && let Some(query) = param("query")
    {
        bounds = lead_query_bounds(&query);
    }
    let mut selected: Vec<&Value> = records
        .iter()
        .filter(|record| type_filter.is_none_or(|kind| record["_type"] == kind))
        .filter(|record| {
            let time = record[time_field].as_str().and_then(parse_time);
            bounds.admits(time)
        })
        .collect();
    selected.sort_by_key(|record| record[time_field].as_str().and_then(parse_time));

    let skip: usize = param("_skip")
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let limit: usize = param("_limit")
        .and_then(|text| text.parse().ok())
        .unwrap_or(100);
    if skip > data.max_skip {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": format!(
                "The skip you set is larger than the maximum skip for this resource (max_skip = {}). Please refine your search query.",
                data.max_skip
            )})),
        )
            .into_response();
    }
    let page: Vec<Value> = selected
        .iter()
        .skip(skip)
        .take(limit)
        .map(|record| (*record).clone())
        .collect();
    let has_more = skip + page.len() < selected.len();
    axum::Json(json!({"data": page, "has_more": has_more})).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    decoded == format!("{API_KEY}:").as_bytes()
}

#[derive(Default)]
struct Bounds {
    gte: Option<DateTime<Utc>>,
    gt: Option<DateTime<Utc>>,
    lte: Option<DateTime<Utc>>,
    lt: Option<DateTime<Utc>>,
}

impl Bounds {
    fn set(&mut self, suffix: &str, time: Option<DateTime<Utc>>) {
        match suffix {
            "gte" => self.gte = time,
            "gt" => self.gt = time,
            "lte" => self.lte = time,
            _ => self.lt = time,
        }
    }

    fn admits(&self, time: Option<DateTime<Utc>>) -> bool {
        let Some(time) = time else {
            return self.gte.is_none()
                && self.gt.is_none()
                && self.lte.is_none()
                && self.lt.is_none();
        };
        self.gte.is_none_or(|bound| time >= bound)
            && self.gt.is_none_or(|bound| time > bound)
            && self.lte.is_none_or(|bound| time <= bound)
            && self.lt.is_none_or(|bound| time < bound)
    }
}

/// Reads `date_updated >= "..."` and `date_updated < "..."` from a lead search query.
fn lead_query_bounds(query: &str) -> Bounds {
    let mut bounds = Bounds::default();
    for (operator, suffix) in [(">=", "gte"), ("<", "lt")] {
        let marker = format!("date_updated {operator} \"");
        if let Some(start) = query.find(&marker) {
            let rest = &query[start + marker.len()..];
            if let Some(end) = rest.find('"') {
                bounds.set(suffix, parse_time(&rest[..end]));
            }
        }
    }
    bounds
}

/// Parses RFC 3339, or a date and time without offset read as UTC.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}
