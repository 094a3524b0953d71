//! Concrete requests from an entity's request plan and its position.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use url::Url;

use super::client::{HttpClient, PreparedRequest, header_pair};
use super::graphql;
use super::{FetchError, FetchErrorKind};
use crate::spec::plan::{GraphqlPlan, HttpMethod, Param, ParamLocation, RequestPlan};
use crate::template::{TemplateValue, value_to_text};

/// A value the engine places into a request: a page cursor, an offset,
/// the incremental cursor or a window bound.
pub(crate) struct Injection<'a> {
    pub param: &'a Param,
    pub value: Value,
}

/// The request plan and parameters to render, with a label for messages.
pub(crate) struct RequestSource<'a> {
    /// `entity customers` or `check`.
    pub label: &'a str,
    pub plan: &'a RequestPlan,
    /// The connector's `http.params`, sent with every request built from a plan.
    pub connector_params: &'a [(String, TemplateValue)],
    /// For a GraphQL entity: the body is its query and variables.
    pub graphql: Option<&'a GraphqlPlan>,
}

/// Builds the request that `source` describes, rendered with `context`,
/// with `injections` replacing any parameter of the same name.
pub(crate) fn build(
    client: &HttpClient,
    source: &RequestSource<'_>,
    context: &Value,
    injections: &[Injection<'_>],
) -> Result<PreparedRequest, FetchError> {
    let label = source.label;
    let plan = source.plan;

    let path = plan
        .path
        .render(context)
        .map_err(|error| template_error(format!("{label}: path: {error}")))?;
    let joined = client.join(&path);
    let mut url = Url::parse(&joined).map_err(|error| {
        template_error(format!(
            "{label}: request URL {:?} is not valid ({error}); check http.base_url and path",
            crate::redact::redact(&joined)
        ))
    })?;

    let mut query: Vec<(String, String)> = Vec::new();
    for (name, template) in source.connector_params.iter().chain(&plan.params) {
        let value = template
            .render(context)
            .map_err(|error| template_error(format!("{label}: params.{name}: {error}")))?;
        push_query_value(&mut query, name, &value);
    }

    let mut headers = client.headers().clone();
    for (name, template) in &plan.headers {
        let value = template
            .render(context)
            .map_err(|error| template_error(format!("{label}: headers.{name}: {error}")))?;
        if value.is_empty() {
            continue;
        }
        let (name, value) = header_pair(name, &value)
            .map_err(|message| template_error(format!("{label}: {message}")))?;
        headers.insert(name, value);
    }

    let mut body = match (&plan.body, source.graphql) {
        (_, Some(graphql)) => Some(
            graphql::request_body(graphql, context)
                .map_err(|message| template_error(format!("{label}: {message}")))?,
        ),
        (Some(template), None) => Some(
            template
                .render(context)
                .map_err(|error| template_error(format!("{label}: body: {error}")))?,
        ),
        (None, None) => None,
    };
    if source.graphql.is_some() && !headers.contains_key(reqwest::header::ACCEPT) {
        // The GraphQL-over-HTTP media type first, plain JSON for servers
        // that predate it; both bodies are read the same way.
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static(
                "application/graphql-response+json, application/json;q=0.9",
            ),
        );
    }

    for injection in injections {
        let name = injection.param.name.as_str();
        match injection.param.location {
            ParamLocation::Query => {
                query.retain(|(key, _)| key != name);
                push_query_value(&mut query, name, &injection.value);
            }
            ParamLocation::Header => {
                let (name, value) = header_pair(name, &value_to_text(&injection.value))
                    .map_err(|message| template_error(format!("{label}: {message}")))?;
                headers.insert(name, value);
            }
            ParamLocation::Body => {
                let body = body.get_or_insert_with(|| Value::Object(Map::new()));
                set_dotted(body, name, injection.value.clone())
                    .map_err(|message| template_error(format!("{label}: {message}")))?;
            }
            ParamLocation::Variables => {
                let variables = match (source.graphql, body.as_mut()) {
                    (Some(_), Some(Value::Object(body))) => body
                        .entry("variables")
                        .or_insert_with(|| Value::Object(Map::new())),
                    _ => {
                        return Err(template_error(format!(
                            "{label}: variable {name:?} cannot be set because the entity is not a GraphQL entity; \
                             place it in: query, body or header"
                        )));
                    }
                };
                set_dotted(variables, name, injection.value.clone())
                    .map_err(|message| template_error(format!("{label}: {message}")))?;
            }
        }
    }

    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(&query);
    }

    let body = match body {
        Some(value) => {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                reqwest::header::HeaderValue::from_static("application/json"),
            );
            Some(Bytes::from(serde_json::to_vec(&value).map_err(
                |error| {
                    template_error(format!(
                        "{label}: body could not be encoded as JSON: {error}"
                    ))
                },
            )?))
        }
        None => None,
    };

    Ok(PreparedRequest {
        method: match plan.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
        },
        url,
        headers,
        body,
    })
}

/// Builds a GET of a URL taken from a response: sent as it is, with the
/// entity's headers but none of its parameters.
pub(crate) fn follow_url(
    client: &HttpClient,
    source: &RequestSource<'_>,
    context: &Value,
    url: &str,
) -> Result<PreparedRequest, FetchError> {
    let label = source.label;
    let url = Url::parse(url).map_err(|error| {
        FetchError::new(
            FetchErrorKind::Response,
            format!(
                "{label}: next URL {:?} is not valid: {error}",
                crate::redact::redact(url)
            ),
        )
    })?;
    let mut headers: HeaderMap = client.headers().clone();
    for (name, template) in &source.plan.headers {
        let value = template
            .render(context)
            .map_err(|error| template_error(format!("{label}: headers.{name}: {error}")))?;
        if value.is_empty() {
            continue;
        }
        let (name, value) = header_pair(name, &value)
            .map_err(|message| template_error(format!("{label}: {message}")))?;
        headers.insert(name, value);
    }
    Ok(PreparedRequest {
        method: Method::GET,
        url,
        headers,
        body: None,
    })
}

/// Adds a rendered parameter: a list is a repeated key, null is left out,
/// and any other value is sent as text.
fn push_query_value(query: &mut Vec<(String, String)>, name: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items.iter().filter(|item| !item.is_null()) {
                query.push((name.to_string(), value_to_text(item)));
            }
        }
        other => query.push((name.to_string(), value_to_text(other))),
    }
}

/// Sets `value` at a dotted path in a JSON body or in GraphQL variables,
/// creating objects on the way.
fn set_dotted(body: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut current = body;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let Value::Object(map) = current else {
            return Err(format!(
                "body parameter {path:?} cannot be set: the body has a non-object value on the way to {segment:?}"
            ));
        };
        if segments.peek().is_none() {
            map.insert(segment.to_string(), value);
            return Ok(());
        }
        current = map
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

fn template_error(message: String) -> FetchError {
    FetchError::new(FetchErrorKind::Template, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_body_path_creates_objects() {
        let mut body = json!({"query": {"kind": "HogQLQuery"}});
        set_dotted(&mut body, "query.offset", json!(100)).unwrap();
        set_dotted(&mut body, "page.size", json!(10)).unwrap();
        assert_eq!(
            body,
            json!({"query": {"kind": "HogQLQuery", "offset": 100}, "page": {"size": 10}})
        );
    }

    #[test]
    fn dotted_body_path_rejects_scalar_parent() {
        let mut body = json!({"query": "text"});
        assert!(set_dotted(&mut body, "query.offset", json!(1)).is_err());
    }

    #[test]
    fn lists_become_repeated_keys() {
        let mut query = Vec::new();
        push_query_value(&mut query, "types[]", &json!(["a", "b"]));
        push_query_value(&mut query, "skip", &Value::Null);
        push_query_value(&mut query, "limit", &json!(100));
        assert_eq!(
            query,
            vec![
                ("types[]".to_string(), "a".to_string()),
                ("types[]".to_string(), "b".to_string()),
                ("limit".to_string(), "100".to_string()),
            ]
        );
    }
}
