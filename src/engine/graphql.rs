//! GraphQL over HTTP: the request body, and what a response's `errors`
//! mean for the page.
//!
//! A GraphQL API returns most failures with HTTP 200 and an `errors` list
//! (the "Response" section of the GraphQL specification). Three cases are
//! told apart:
//! - a rate-limit refusal ([`throttle`]): retried like a 429;
//! - errors with `data` on an entity with `partial_ok: true`: the data is
//!   kept and the errors are logged and counted;
//! - any other errors: the page fails with each message and path.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use graphql_client::{PathFragment, Response};
use reqwest::header::HeaderMap;
use serde::de::{Deserialize, IgnoredAny};
use serde_json::{Map, Value};

use super::client::Exchange;
use crate::spec::plan::GraphqlPlan;

/// Error codes that mean "rate limited" in an error's `type` (GitHub) or
/// `extensions.code` (Shopify's `THROTTLED`), compared case-insensitively.
const RATE_LIMIT_CODES: &[&str] = &["RATE_LIMITED", "THROTTLED"];

/// Errors quoted in a failure message; the rest are counted.
const ERRORS_QUOTED: usize = 5;

/// The JSON body of a GraphQL request.
///
/// graphql_client's `QueryBody` stores the query as `&'static str` and
/// always sends `operationName`, which suits queries compiled into a
/// program. These queries come from spec files and may be anonymous.
#[derive(serde::Serialize)]
struct RequestBody<'a> {
    query: &'a str,
    variables: Value,
    #[serde(rename = "operationName", skip_serializing_if = "Option::is_none")]
    operation_name: Option<&'a str>,
}

/// Builds the request body: the query as written, the variables rendered
/// with `context` (single-expression templates keep their JSON type).
pub(crate) fn request_body(plan: &GraphqlPlan, context: &Value) -> Result<Value, String> {
    let variables = match &plan.variables {
        Some(template) => template
            .render(context)
            .map_err(|error| format!("graphql.variables: {error}"))?,
        None => Value::Object(Map::new()),
    };
    if !variables.is_object() {
        return Err(format!(
            "graphql.variables renders to {variables}, expected a mapping of variable names to values"
        ));
    }
    let body = RequestBody {
        query: &plan.query,
        variables,
        operation_name: plan.operation_name.as_deref(),
    };
    serde_json::to_value(body).map_err(|error| format!("the GraphQL request body: {error}"))
}

/// The `errors` of a response, read with graphql_client's envelope.
#[derive(Debug, Default)]
pub(crate) struct ResponseErrors {
    pub errors: Vec<graphql_client::Error>,
    /// `data` is present and not null.
    pub has_data: bool,
}

impl ResponseErrors {
    /// Formats up to five errors as `message (at a.b.0.c)`, then a count
    /// of the rest, secrets masked.
    pub(crate) fn describe(&self) -> String {
        let mut text = String::new();
        for (i, error) in self.errors.iter().take(ERRORS_QUOTED).enumerate() {
            if i > 0 {
                text.push_str("; ");
            }
            text.push_str(&describe_error(error));
        }
        let rest = self.errors.len().saturating_sub(ERRORS_QUOTED);
        if rest > 0 {
            let _ = write!(text, "; and {rest} more");
        }
        crate::redact::redact(&text)
    }
}

/// Reads the `errors` of a response body. A body that is not a GraphQL
/// response (not an object, or errors without messages) is an error.
pub(crate) fn read_errors(body: &Value) -> Result<ResponseErrors, String> {
    if !body.is_object() {
        return Err(format!(
            "the response is {}, not a GraphQL response object with data or errors",
            kind_of(body)
        ));
    }
    let envelope = Response::<IgnoredAny>::deserialize(body)
        .map_err(|error| format!("the response is not a GraphQL response: {error}"))?;
    Ok(ResponseErrors {
        errors: envelope.errors.unwrap_or_default(),
        has_data: envelope.data.is_some(),
    })
}

fn describe_error(error: &graphql_client::Error) -> String {
    let mut text = error.message.trim().to_string();
    if let Some(path) = error.path.as_ref().filter(|path| !path.is_empty()) {
        let dotted: Vec<String> = path
            .iter()
            .map(|fragment| match fragment {
                PathFragment::Key(key) => key.clone(),
                PathFragment::Index(index) => index.to_string(),
            })
            .collect();
        let _ = write!(text, " (at {})", dotted.join("."));
    } else if let Some(location) = error.locations.as_ref().and_then(|list| list.first()) {
        let _ = write!(
            text,
            " (query line {}, column {})",
            location.line, location.column
        );
    }
    text
}

/// A rate-limit refusal found inside a successful response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Throttle {
    /// The refusing error's message, for logs.
    pub reason: String,
    /// The wait the response requests, when it names one.
    pub wait: Option<Duration>,
}

/// Returns the rate-limit refusal in a 2xx GraphQL response, if any: an
/// error whose `type` or `extensions.code` is `RATE_LIMITED` or
/// `THROTTLED`, or a cost extension (`extensions.cost.throttleStatus`)
/// whose available points are below the query's cost.
pub(crate) fn throttle(exchange: &Exchange) -> Option<Throttle> {
    if !exchange.status.is_success() || !contains(&exchange.body, b"\"errors\"") {
        return None;
    }
    let body: Value = serde_json::from_slice(&exchange.body).ok()?;
    let errors = body.get("errors")?.as_array()?;
    if errors.is_empty() {
        return None;
    }
    let cost_wait = cost_wait(&body);
    let coded = errors.iter().find(|error| has_rate_limit_code(error));
    let reason = match (coded, cost_wait) {
        (Some(error), _) => message_of(error),
        (None, Some(_)) => message_of(&errors[0]),
        (None, None) => return None,
    };
    let wait = cost_wait.or_else(|| reset_wait(&exchange.headers, SystemTime::now()));
    Some(Throttle { reason, wait })
}

fn has_rate_limit_code(error: &Value) -> bool {
    let codes = [
        error.get("type"),
        error.pointer("/extensions/code"),
        error.pointer("/extensions/type"),
    ];
    codes.into_iter().flatten().any(|code| {
        code.as_str().is_some_and(|code| {
            RATE_LIMIT_CODES
                .iter()
                .any(|known| code.eq_ignore_ascii_case(known))
        })
    })
}

fn message_of(error: &Value) -> String {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("rate limited");
    crate::redact::redact(message)
}

/// Reads Shopify-style query cost: when fewer points are available than
/// the query requested, the wait is the missing points over the restore
/// rate (points per second).
fn cost_wait(body: &Value) -> Option<Duration> {
    let cost = body.pointer("/extensions/cost")?;
    let requested = number(cost.get("requestedQueryCost")?)?;
    let status = cost.get("throttleStatus")?;
    let available = number(status.get("currentlyAvailable")?)?;
    if available >= requested {
        return None;
    }
    let rate = status.get("restoreRate").and_then(number)?;
    if rate <= 0.0 {
        return None;
    }
    // A NaN (from a "NaN" or an overflowing number) yields no usable wait.
    let seconds = ((requested - available) / rate).clamp(0.0, 86_400.0);
    Duration::try_from_secs_f64(seconds).ok()
}

/// Reads GitHub-style `x-ratelimit-remaining: 0` with
/// `x-ratelimit-reset` (unix seconds): the wait lasts until the reset.
fn reset_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if header("x-ratelimit-remaining")? != 0 {
        return None;
    }
    // A reset beyond the range of SystemTime is a wait as long as allowed,
    // which the retry policy's max_wait then caps.
    let Some(reset) = UNIX_EPOCH.checked_add(Duration::from_secs(header("x-ratelimit-reset")?))
    else {
        return Some(Duration::MAX);
    };
    Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.to_string().parse().ok(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use reqwest::StatusCode;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn exchange(body: Value, headers: HeaderMap) -> Exchange {
        Exchange {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body.to_string()),
            attempts: 1,
        }
    }

    #[test]
    fn github_rate_limited_type_is_a_throttle() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&(now + 30).to_string()).unwrap(),
        );
        let body =
            json!({"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]});
        let found = throttle(&exchange(body, headers)).unwrap();
        assert_eq!(found.reason, "API rate limit exceeded");
        let wait = found.wait.unwrap();
        assert!(wait <= Duration::from_secs(30), "{wait:?}");
        assert!(wait >= Duration::from_secs(28), "{wait:?}");
    }

    #[test]
    fn shopify_cost_extension_is_a_throttle() {
        let body = json!({
            "errors": [{"message": "Throttled"}],
            "extensions": {"cost": {
                "requestedQueryCost": 202, "actualQueryCost": null,
                "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 102, "restoreRate": 50.0}
            }}
        });
        let found = throttle(&exchange(body, HeaderMap::new())).unwrap();
        assert_eq!(found.reason, "Throttled");
        assert_eq!(found.wait, Some(Duration::from_secs(2)));
    }

    #[test]
    fn other_errors_are_not_throttles() {
        let body = json!({"errors": [{"message": "Field 'x' doesn't exist", "extensions": {"code": "undefinedField"}}]});
        assert_eq!(throttle(&exchange(body, HeaderMap::new())), None);
        let body = json!({"data": {"errors": "a field named errors"}});
        assert_eq!(throttle(&exchange(body, HeaderMap::new())), None);
    }

    #[test]
    fn errors_are_described_with_paths() {
        let body = json!({
            "data": {"hero": null},
            "errors": [
                {"message": "Name could not be fetched.", "path": ["hero", "heroFriends", 1, "name"]},
                {"message": "Syntax error", "locations": [{"line": 3, "column": 7}]}
            ]
        });
        let read = read_errors(&body).unwrap();
        assert!(read.has_data);
        assert_eq!(
            read.describe(),
            "Name could not be fetched. (at hero.heroFriends.1.name); Syntax error (query line 3, column 7)"
        );
    }

    #[test]
    fn null_data_is_no_data() {
        let read = read_errors(&json!({"data": null, "errors": [{"message": "boom"}]})).unwrap();
        assert!(!read.has_data);
        assert_eq!(read.errors.len(), 1);
    }

    #[test]
    fn error_without_message_is_not_graphql() {
        let error = read_errors(&json!({"errors": [{"path": ["a"]}]})).unwrap_err();
        assert!(error.contains("not a GraphQL response"), "{error}");
        let error = read_errors(&json!([1])).unwrap_err();
        assert!(error.contains("an array"), "{error}");
    }

    #[test]
    fn request_body_keeps_variable_types() {
        let plan = GraphqlPlan {
            query: "query Q($n: Int) { a(n: $n) }".to_string(),
            variables: Some(
                crate::template::TemplateValue::compile(
                    &json!({"n": "{{config.n}}", "s": "x{{config.n}}"}),
                )
                .unwrap(),
            ),
            operation_name: Some("Q".to_string()),
        };
        let body = request_body(&plan, &json!({"config": {"n": 5}})).unwrap();
        assert_eq!(
            body,
            json!({"query": "query Q($n: Int) { a(n: $n) }", "variables": {"n": 5, "s": "x5"}, "operationName": "Q"})
        );
    }
}
