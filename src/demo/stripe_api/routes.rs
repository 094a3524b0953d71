//! HTTP routes of the local Stripe-compatible API: authentication, list
//! parameters and Stripe's error bodies.

use std::sync::{Arc, RwLock};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

use super::store::{ListError, ListQuery, MAX_LIMIT, RESOURCES, StripeStore};

/// The store behind the routes, shared with the code that changes it (tests, the demo).
pub type SharedStore = Arc<RwLock<StripeStore>>;

#[derive(Clone)]
struct ApiState {
    store: SharedStore,
    /// The secret key every request must carry.
    api_key: Arc<str>,
}

/// Builds the router: `GET /v1/<list>`, `GET /v1/<list>/<id>`, with the
/// key sent as a bearer token or as the basic-auth username, as Stripe accepts.
pub fn router(store: SharedStore, api_key: &str) -> Router {
    let state = ApiState {
        store,
        api_key: Arc::from(api_key),
    };
    Router::new()
        .route("/v1/{*path}", get(serve))
        .fallback(unknown_url)
        .with_state(state)
}

async fn serve(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = authenticate(&headers, &state.api_key) {
        return error.into_response();
    }
    let path = path.trim_end_matches('/');
    let pairs: Vec<(String, String)> = query
        .as_deref()
        .map(|text| {
            url::form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let store = match state.store.read() {
        Ok(store) => store,
        Err(poisoned) => poisoned.into_inner(),
    };

    if RESOURCES.iter().any(|(list, _)| *list == path) {
        let query = match parse_list_query(&pairs) {
            Ok(query) => query,
            Err(error) => return error.into_response(),
        };
        return match store.list(path, &query) {
            Ok(page) => Json(json!({
                "object": "list",
                "url": format!("/v1/{path}"),
                "has_more": page.has_more,
                "data": page.data,
            }))
            .into_response(),
            Err(ListError::NoSuchObject { param, id }) => stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                Some(param),
                &format!("No such object: '{id}'"),
            ),
            Err(ListError::UnknownResource(_)) => unknown_path(path),
        };
    }

    // `/v1/<list>/<id>` retrieves one object.
    if let Some((list, id)) = path.rsplit_once('/')
        && RESOURCES.iter().any(|(known, _)| *known == list)
    {
        return match store.get(list, id) {
            Some(object) => Json(object.clone()).into_response(),
            None => stripe_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("resource_missing"),
                Some("id"),
                &format!("No such object: '{id}'"),
            ),
        };
    }
    unknown_path(path)
}

fn authenticate(headers: &HeaderMap, api_key: &str) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(presented_key);
    match presented {
        Some(key) if key == api_key => Ok(()),
        Some(key) => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: None,
            param: None,
            message: format!("Invalid API Key provided: {}", mask_key(&key)),
        }),
        None => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: None,
            param: None,
            message: "You did not provide an API key. You need to provide your API key in the \
                      Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                .to_string(),
        }),
    }
}

/// Extracts the key of a `Bearer KEY` or `Basic base64(KEY:)` header.
fn presented_key(value: &str) -> Option<String> {
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or("").to_string())
}

/// Masks a key the way Stripe's error message does: prefix and last four.
fn mask_key(key: &str) -> String {
    let prefix: String = key.chars().take(8).collect();
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if key.chars().count() <= 12 {
        return "*".repeat(key.chars().count());
    }
    format!("{prefix}********{tail}")
}

/// Reads `limit`, `starting_after`, `ending_before`, `created`,
/// `created[gt|gte|lt|lte]`, `type`, `types[]` and `status`.
fn parse_list_query(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery::default();
    for (name, value) in pairs {
        match name.as_str() {
            "limit" => {
                query.limit = match value.parse::<usize>() {
                    Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                    _ => {
                        return Err(invalid_param(
                            "limit",
                            &format!(
                                "Invalid integer: {value}; limit must be between 1 and {MAX_LIMIT}"
                            ),
                        ));
                    }
                }
            }
            "starting_after" => query.starting_after = Some(value.clone()),
            "ending_before" => query.ending_before = Some(value.clone()),
            "created" => {
                let exact = parse_time(name, value)?;
                query.created.gte = Some(exact);
                query.created.lte = Some(exact);
            }
            "created[gt]" => query.created.gt = Some(parse_time(name, value)?),
            "created[gte]" => query.created.gte = Some(parse_time(name, value)?),
            "created[lt]" => query.created.lt = Some(parse_time(name, value)?),
            "created[lte]" => query.created.lte = Some(parse_time(name, value)?),
            "types[]" => query.types.push(value.clone()),
            "type" => query.type_pattern = Some(value.clone()),
            "status" => query.status = Some(value.clone()),
            _ => {}
        }
    }
    if query.starting_after.is_some() && query.ending_before.is_some() {
        return Err(invalid_param(
            "ending_before",
            "You may only specify one of these parameters: starting_after, ending_before.",
        ));
    }
    if query.type_pattern.is_some() && !query.types.is_empty() {
        return Err(invalid_param(
            "types",
            "You may only specify one of these parameters: type, types.",
        ));
    }
    Ok(query)
}

fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .map_err(|_| invalid_param(name, &format!("Invalid integer: {value}")))
}

fn invalid_param(param: &str, message: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: Some("parameter_invalid_integer"),
        param: Some(param.to_string()),
        message: message.to_string(),
    }
}

/// A rejected request, turned into Stripe's error body by [`stripe_error`].
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: Option<&'static str>,
    param: Option<String>,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        stripe_error(
            self.status,
            "invalid_request_error",
            self.code,
            self.param.as_deref(),
            &self.message,
        )
    }
}

fn unknown_path(path: &str) -> Response {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        None,
        &format!("Unrecognized request URL (GET: /v1/{path})."),
    )
}

async fn unknown_url(uri: axum::http::Uri) -> Response {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        None,
        &format!("Unrecognized request URL (GET: {}).", uri.path()),
    )
}

/// Stripe's error envelope: `{"error": {"type", "code", "param", "message"}}`.
pub fn stripe_error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> Response {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = Value::from(code);
    }
    if let Some(param) = param {
        error["param"] = Value::from(param);
    }
    (status, Json(json!({ "error": error }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_bearer_and_basic() {
        assert_eq!(presented_key("Bearer sk_test_1"), Some("sk_test_1".into()));
        let basic = base64::engine::general_purpose::STANDARD.encode("sk_test_2:");
        assert_eq!(
            presented_key(&format!("Basic {basic}")),
            Some("sk_test_2".into())
        );
        assert_eq!(presented_key("Token x"), None);
    }

    #[test]
    fn masked_key_keeps_prefix_and_tail() {
        assert_eq!(mask_key("sk_test_abcdefghijkl"), "sk_test_********ijkl");
        assert_eq!(mask_key("short"), "*****");
    }

    #[test]
    fn list_parameters() {
        let pairs = vec![
            ("limit".to_string(), "100".to_string()),
            ("created[gte]".to_string(), "1700000000".to_string()),
            ("types[]".to_string(), "customer.created".to_string()),
            ("types[]".to_string(), "customer.updated".to_string()),
        ];
        let query = parse_list_query(&pairs).unwrap();
        assert_eq!(query.limit, 100);
        assert_eq!(query.created.gte, Some(1_700_000_000));
        assert_eq!(query.types, ["customer.created", "customer.updated"]);
    }

    #[test]
    fn limit_out_of_range_is_rejected() {
        let pairs = vec![("limit".to_string(), "101".to_string())];
        let error = parse_list_query(&pairs).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.param.as_deref(), Some("limit"));
    }
}
