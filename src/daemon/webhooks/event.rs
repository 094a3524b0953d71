//! A verified webhook body read through the connector's `webhooks` paths,
//! and the route its type selects.

use std::cmp::Ordering;

use serde_json::Value;

use crate::spec::plan::{WebhookPlan, WebhookRoute};

/// The parts of an event ferry uses.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    /// When several values sit at the type path (Close's
    /// `$.event['object_type','action']`), they are joined with `.`.
    pub event_type: String,
    pub object: Option<Value>,
    pub occurred_at: Option<Value>,
}

/// Reads an event from a parsed body. Errors name the missing part.
pub fn read(plan: &WebhookPlan, body: &Value) -> Result<Event, String> {
    let id = match plan.id.find(body).first() {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err(format!("no event id at {}", plan.id.source())),
    };
    let parts: Vec<String> = plan
        .event_type
        .find(body)
        .into_iter()
        .filter_map(|value| value.as_str().map(str::to_string))
        .collect();
    if parts.is_empty() {
        return Err(format!("no event type at {}", plan.event_type.source()));
    }
    let object = plan
        .object
        .find(body)
        .first()
        .map(|value| (*value).clone())
        .filter(|value| !value.is_null());
    let occurred_at = plan.occurred_at.as_ref().and_then(|path| {
        path.find(body)
            .first()
            .map(|value| (*value).clone())
            .filter(|value| !value.is_null())
    });
    Ok(Event {
        id,
        event_type: parts.join("."),
        object,
        occurred_at,
    })
}

/// Returns the first route whose patterns match the type.
pub fn route<'a>(plan: &'a WebhookPlan, event_type: &str) -> Option<&'a WebhookRoute> {
    plan.routes.iter().find(|route| {
        route
            .events
            .iter()
            .any(|pattern| glob_matches(pattern, event_type))
    })
}

/// `*` matches any run of characters, including none and dots.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Orders two source times: numbers as numbers (unix times), strings as
/// RFC 3339 or naive ISO-8601 times when both parse, else as text. `None`
/// when the two cannot be compared.
pub fn compare_times(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => match (parse_time(a), parse_time(b)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(a.cmp(b)),
        },
        _ => None,
    }
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&chrono::Utc));
    }
    // Close sends times without an offset ("2019-01-15T12:48:23.395000"); they are UTC.
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_match_event_types() {
        assert!(glob_matches("customer.*", "customer.created"));
        assert!(glob_matches("customer.*", "customer.subscription.updated"));
        assert!(!glob_matches("customer.*", "invoice.created"));
        assert!(glob_matches("*.deleted", "customer.deleted"));
        assert!(glob_matches("lead.created", "lead.created"));
        assert!(!glob_matches("lead.created", "lead.created2"));
        assert!(glob_matches("a*b*c", "a-x-b-y-c"));
        assert!(!glob_matches("ab*ba", "aba"));
    }

    #[test]
    fn times_compare_by_kind() {
        assert_eq!(
            compare_times(&json!(10), &json!(9)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_times(
                &json!("2019-01-15T12:48:23.395000"),
                &json!("2019-01-15T12:48:23.4+00:00")
            ),
            Some(Ordering::Less)
        );
        assert_eq!(compare_times(&json!(1), &json!("x")), None);
    }
}
