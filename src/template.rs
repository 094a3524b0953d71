//! Handlebars templates in paths, parameters, headers and bodies.
//!
//! Templates are compiled once when a spec is resolved and rendered per
//! request against a [`serde_json::Value`] context with the keys `config`,
//! `state`, `parent`, `window`, `entity` and `now`. Output is never
//! HTML-escaped. Strict mode is on, so `{{config.tokn}}` fails loudly
//! instead of rendering an empty string; the resolver also checks every
//! `config.*` reference against the connector's declared keys.

use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, Renderable, Template as HbTemplate, template::Parameter,
    template::TemplateElement,
};
use serde_json::Value;

/// A compiled string template.
#[derive(Clone)]
pub struct Template {
    source: String,
    compiled: HbTemplate,
    /// Set when the whole template is one `{{a.b.c}}` expression, so that a
    /// rendered value keeps its JSON type (numbers stay numbers).
    single_path: Option<Vec<String>>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

/// A YAML value whose strings are templates.
#[derive(Debug, Clone)]
pub enum TemplateValue {
    Literal(Value),
    Text(Template),
    Array(Vec<TemplateValue>),
    Object(Vec<(String, TemplateValue)>),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

impl Template {
    /// Compiles `source`; the error message says what is wrong in it.
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        let compiled =
            HbTemplate::compile(source).map_err(|error| TemplateError(describe_compile(&error)))?;
        let single_path = single_path(&compiled);
        Ok(Template {
            source: source.to_string(),
            compiled,
            single_path,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template has no expressions, so rendering returns it as is.
    pub fn is_static(&self) -> bool {
        self.compiled
            .elements
            .iter()
            .all(|element| matches!(element, TemplateElement::RawString(_)))
    }

    /// Renders the template to a string.
    pub fn render(&self, context: &Value) -> Result<String, TemplateError> {
        if self.is_static() {
            return Ok(self.source.clone());
        }
        let registry = registry();
        let context = Context::wraps(context).map_err(render_error)?;
        let mut render_context = RenderContext::new(None);
        self.compiled
            .renders(registry, &context, &mut render_context)
            .map_err(|error| {
                TemplateError(format!(
                    "template {:?} failed: {}",
                    self.source,
                    describe_render(&error)
                ))
            })
    }

    /// Renders the template to a JSON value: a single `{{path}}` expression
    /// keeps the type of the value it names, anything else is a string.
    pub fn render_value(&self, context: &Value) -> Result<Value, TemplateError> {
        match &self.single_path {
            Some(path) => match lookup(context, path) {
                Some(value) => Ok(value.clone()),
                None => Err(TemplateError(format!(
                    "template {:?} failed: {} is not set",
                    self.source,
                    path.join(".")
                ))),
            },
            None => self.render(context).map(Value::String),
        }
    }

    /// Every variable path the template reads (`config.token`, `parent.id`),
    /// with `this.` and `../` prefixes left as they are.
    pub fn variables(&self) -> Vec<String> {
        let mut found = Vec::new();
        collect_variables(&self.compiled, &mut found);
        found
    }
}

impl TemplateValue {
    /// Compiles every string inside `value` as a template.
    pub fn compile(value: &Value) -> Result<TemplateValue, TemplateError> {
        Ok(match value {
            Value::String(text) => {
                let template = Template::compile(text)?;
                if template.is_static() {
                    TemplateValue::Literal(value.clone())
                } else {
                    TemplateValue::Text(template)
                }
            }
            Value::Array(items) => TemplateValue::Array(
                items
                    .iter()
                    .map(TemplateValue::compile)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => TemplateValue::Object(
                map.iter()
                    .map(|(key, item)| Ok((key.clone(), TemplateValue::compile(item)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => TemplateValue::Literal(other.clone()),
        })
    }

    pub fn render(&self, context: &Value) -> Result<Value, TemplateError> {
        Ok(match self {
            TemplateValue::Literal(value) => value.clone(),
            TemplateValue::Text(template) => template.render_value(context)?,
            TemplateValue::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| item.render(context))
                    .collect::<Result<_, _>>()?,
            ),
            TemplateValue::Object(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for (key, item) in entries {
                    map.insert(key.clone(), item.render(context)?);
                }
                Value::Object(map)
            }
        })
    }

    /// Every variable path read by the templates inside this value.
    pub fn variables(&self) -> Vec<String> {
        match self {
            TemplateValue::Literal(_) => Vec::new(),
            TemplateValue::Text(template) => template.variables(),
            TemplateValue::Array(items) => items.iter().flat_map(|item| item.variables()).collect(),
            TemplateValue::Object(entries) => entries
                .iter()
                .flat_map(|(_, item)| item.variables())
                .collect(),
        }
    }
}

/// Looks up a dotted path in a JSON value.
pub fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = value;
    for segment in path {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Renders a scalar JSON value as request text: strings verbatim, numbers
/// in their source digits, null as empty.
pub fn value_to_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => other.to_string(),
    }
}

fn single_path(template: &HbTemplate) -> Option<Vec<String>> {
    let [TemplateElement::Expression(expression)] = template.elements.as_slice() else {
        return None;
    };
    if !expression.params.is_empty() || !expression.hash.is_empty() {
        return None;
    }
    match &expression.name {
        // A helper without arguments, such as `{{uuid}}`, renders as text.
        Parameter::Path(handlebars::Path::Relative((_, raw))) if is_helper_name(raw) => None,
        Parameter::Name(name) if is_helper_name(name) => None,
        Parameter::Path(handlebars::Path::Relative((_, raw))) => {
            Some(raw.split('.').map(str::to_string).collect())
        }
        Parameter::Name(name) => Some(name.split('.').map(str::to_string).collect()),
        _ => None,
    }
}

fn collect_variables(template: &HbTemplate, found: &mut Vec<String>) {
    for element in &template.elements {
        let helper = match element {
            TemplateElement::Expression(helper) | TemplateElement::HtmlExpression(helper) => helper,
            TemplateElement::HelperBlock(helper) => helper,
            _ => continue,
        };
        let is_helper_call = !helper.params.is_empty() || !helper.hash.is_empty();
        let names_helper = match &helper.name {
            Parameter::Path(handlebars::Path::Relative((_, raw))) => is_helper_name(raw),
            Parameter::Name(name) => is_helper_name(name),
            _ => false,
        };
        if !is_helper_call && !names_helper {
            collect_parameter(&helper.name, found);
        }
        for parameter in helper.params.iter().chain(helper.hash.values()) {
            collect_parameter(parameter, found);
        }
        for inner in helper.template.iter().chain(helper.inverse.iter()) {
            collect_variables(inner, found);
        }
    }
}

fn collect_parameter(parameter: &Parameter, found: &mut Vec<String>) {
    match parameter {
        Parameter::Path(handlebars::Path::Relative((_, raw))) => found.push(raw.clone()),
        Parameter::Name(name) if !is_helper_name(name) => found.push(name.clone()),
        Parameter::Subexpression(sub) => {
            for parameter in sub.params().into_iter().flatten() {
                collect_parameter(parameter, found);
            }
        }
        _ => {}
    }
}

/// Helpers registered below plus handlebars' built-in ones, because the
/// registry does not expose its helper names.
const HELPER_NAMES: &[&str] = &[
    "format_time",
    "url_encode",
    "default",
    "json",
    "capture",
    "uuid",
    "if",
    "unless",
    "each",
    "with",
    "lookup",
    "raw",
    "log",
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "len",
];

fn is_helper_name(name: &str) -> bool {
    HELPER_NAMES.contains(&name)
}

/// The one registry: helpers and settings, shared by every template.
fn registry() -> &'static Handlebars<'static> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        registry.set_strict_mode(true);
        registry.register_helper("format_time", Box::new(format_time_helper));
        registry.register_helper("url_encode", Box::new(url_encode_helper));
        registry.register_helper("default", Box::new(default_helper));
        registry.register_helper("json", Box::new(json_helper));
        registry.register_helper("capture", Box::new(capture_helper));
        registry.register_helper("uuid", Box::new(uuid_helper));
        registry
    })
}

/// `{{capture TEXT PATTERN GROUP}}`: capture group GROUP (a number, 0 for
/// the whole match) of the first match of the regular expression PATTERN
/// in TEXT. No match is an error naming both, so a value of the wrong
/// form fails before any request is sent with it.
fn capture_helper(
    helper: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let text = helper
        .param(0)
        .map(|param| value_to_text(param.value()))
        .unwrap_or_default();
    let pattern = helper
        .param(1)
        .and_then(|param| param.value().as_str().map(str::to_string))
        .ok_or_else(|| {
            RenderErrorReason::Other(
                "capture: the second argument must be a pattern in quotes".into(),
            )
        })?;
    let group = helper
        .param(2)
        .and_then(|param| param.value().as_u64())
        .unwrap_or(1);
    let regex = cached_regex(&pattern).map_err(|error| {
        RenderErrorReason::Other(format!("capture: invalid pattern {pattern:?}: {error}"))
    })?;
    let captured = regex
        .captures(&text)
        .and_then(|captures| captures.get(usize::try_from(group).ok()?))
        .ok_or_else(|| {
            RenderErrorReason::Other(format!(
                "capture: {text:?} does not match {pattern:?} (group {group})"
            ))
        })?;
    out.write(captured.as_str())?;
    Ok(())
}

/// Compiles a pattern once per process.
fn cached_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, regex::Regex>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(regex) = cache.get(pattern) {
        return Ok(regex.clone());
    }
    let regex = regex::Regex::new(pattern)?;
    cache.insert(pattern.to_string(), regex.clone());
    Ok(regex)
}

/// `{{uuid}}`: a new random UUID (version 4) each time a request is
/// rendered, for idempotency keys that a retry of the same request repeats.
fn uuid_helper(
    _: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    out.write(&uuid::Uuid::new_v4().to_string())?;
    Ok(())
}

/// `{{format_time VALUE FORMAT}}`: VALUE is an ISO-8601 string, a date or
/// unix seconds; FORMAT is `unix`, `unix_ms`, `iso`, `date` or a chrono
/// strftime pattern such as `%Y-%m-%d`.
fn format_time_helper(
    helper: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let value = helper
        .param(0)
        .map(|param| param.value().clone())
        .unwrap_or(Value::Null);
    let format = helper
        .param(1)
        .and_then(|param| param.value().as_str().map(str::to_string))
        .unwrap_or_else(|| "iso".to_string());
    if value.is_null() {
        return Ok(());
    }
    let time = parse_time(&value).ok_or_else(|| {
        RenderErrorReason::Other(format!(
            "format_time: {} is not a time (expected ISO-8601, a date or unix seconds)",
            value_to_text(&value)
        ))
    })?;
    out.write(&format_time(&time, &format))?;
    Ok(())
}

fn url_encode_helper(
    helper: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let text = helper
        .param(0)
        .map(|param| value_to_text(param.value()))
        .unwrap_or_default();
    let encoded: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
    out.write(&encoded)?;
    Ok(())
}

/// `{{default A B}}`: A unless it is null or empty, else B.
fn default_helper(
    helper: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    for param in helper.params() {
        let value = param.value();
        let empty = value.is_null() || value.as_str() == Some("");
        if !empty {
            out.write(&value_to_text(value))?;
            return Ok(());
        }
    }
    Ok(())
}

fn json_helper(
    helper: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let value = helper
        .param(0)
        .map(|param| param.value().clone())
        .unwrap_or(Value::Null);
    out.write(&value.to_string())?;
    Ok(())
}

/// Parses an ISO-8601 timestamp, a `YYYY-MM-DD` date, or unix seconds
/// (a number or a string of digits) as a UTC time.
pub fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(number) => {
            let seconds = number.to_string().parse::<f64>().ok()?;
            let whole = seconds.floor();
            let nanos = ((seconds - whole) * 1e9).round() as u32;
            Utc.timestamp_opt(whole as i64, nanos).single()
        }
        Value::String(text) => parse_time_text(text),
        _ => None,
    }
}

pub fn parse_time_text(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    if let Ok(time) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|naive| naive.and_utc());
    }
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Utc.timestamp_opt(text.parse().ok()?, 0).single();
    }
    None
}

pub fn format_time(time: &DateTime<Utc>, format: &str) -> String {
    match format {
        "unix" => time.timestamp().to_string(),
        "unix_ms" => time.timestamp_millis().to_string(),
        "iso" => time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "date" => time.format("%Y-%m-%d").to_string(),
        pattern => time.format(pattern).to_string(),
    }
}

fn describe_compile(error: &handlebars::TemplateError) -> String {
    let reason = error.reason().to_string();
    match error.pos() {
        Some((line, column)) => {
            format!("invalid template: {reason} (line {line}, column {column} of the template)")
        }
        _ => format!("invalid template: {reason}"),
    }
}

fn describe_render(error: &RenderError) -> String {
    match error.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => format!("{path} is not set"),
        reason => reason.to_string(),
    }
}

fn render_error(error: RenderError) -> TemplateError {
    TemplateError(describe_render(&error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_expression_keeps_type() {
        let template = Template::compile("{{config.limit}}").unwrap();
        let value = template
            .render_value(&json!({"config": {"limit": 100}}))
            .unwrap();
        assert_eq!(value, json!(100));
    }

    #[test]
    fn mixed_text_renders_string() {
        let template = Template::compile("/repos/{{config.owner}}/issues").unwrap();
        let value = template
            .render_value(&json!({"config": {"owner": "a&b"}}))
            .unwrap();
        assert_eq!(value, json!("/repos/a&b/issues"));
    }

    #[test]
    fn missing_variable_fails() {
        let template = Template::compile("{{config.tokn}}x").unwrap();
        let error = template.render(&json!({"config": {}})).unwrap_err();
        assert!(error.0.contains("config.tokn"), "{}", error.0);
    }

    #[test]
    fn format_time_unix() {
        let template = Template::compile(r#"{{format_time state.cursor "unix"}}"#).unwrap();
        let text = template
            .render(&json!({"state": {"cursor": "2024-01-02T00:00:00Z"}}))
            .unwrap();
        assert_eq!(text, "1704153600");
    }

    #[test]
    fn capture_reads_a_group() {
        let template = Template::compile(
            r#"/projects/{{capture entity.table "^(.+)[.]([^.]+)[.]([^.]+)$" 1}}/tables/{{capture entity.table "[.]([^.]+)$" 1}}"#,
        )
        .unwrap();
        let context = json!({"entity": {"table": "example.com:proj.sales.orders"}});
        assert_eq!(
            template.render(&context).unwrap(),
            "/projects/example.com:proj/tables/orders"
        );
        assert_eq!(template.variables(), vec!["entity.table", "entity.table"]);
        let error = template
            .render(&json!({"entity": {"table": "orders"}}))
            .unwrap_err();
        assert!(error.0.contains("\"orders\" does not match"), "{}", error.0);
    }

    #[test]
    fn uuid_renders_fresh_text() {
        let template = Template::compile("{{uuid}}").unwrap();
        let first = template.render_value(&json!({})).unwrap();
        let second = template.render_value(&json!({})).unwrap();
        assert_eq!(first.as_str().map(str::len), Some(36));
        assert_ne!(first, second);
        assert!(template.variables().is_empty());
    }

    #[test]
    fn variables_lists_paths() {
        let template =
            Template::compile(r#"{{config.a}}/{{format_time state.cursor "unix"}}"#).unwrap();
        assert_eq!(template.variables(), vec!["config.a", "state.cursor"]);
    }
}
