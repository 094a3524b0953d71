//! Compiles the pieces of a document (templates, JSONPaths, parameters,
//! durations), reporting each failure at the value it came from.
//!
//! Every helper returns `None` after reporting, so a caller can check every
//! field before giving up on the document.

use std::time::Duration;

use serde_json::Value;

use super::site::EntitySite;
use super::variables::{self, Scope};
use crate::jsonpath::JsonPath;
use crate::spec::diagnostic::Diagnostic;
use crate::spec::plan::{Param, ParamLocation};
use crate::spec::raw::RawParam;
use crate::template::{Template, TemplateValue};

/// Collects problems, and reports whether any was found since a mark.
#[derive(Debug, Default)]
pub struct Problems {
    pub list: Vec<Diagnostic>,
}

impl Problems {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.list.push(diagnostic);
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when nothing was reported since `mark` (an earlier `len()`).
    pub fn clean_since(&self, mark: usize) -> bool {
        self.list.len() == mark
    }
}

/// Compiles one template string found at `relative`, and checks the
/// variables it reads against `scope`.
pub fn template(
    text: &str,
    site: &EntitySite,
    relative: &[&str],
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Template> {
    let compiled = match Template::compile(text) {
        Ok(compiled) => compiled,
        Err(error) => {
            let field = site.dotted(relative);
            problems.push(site.value(relative, format!("invalid template in {field}: {error}")));
            return None;
        }
    };
    let mark = problems.len();
    for message in variables::check(&compiled, scope) {
        problems.push(site.value(relative, message));
    }
    problems.clean_since(mark).then_some(compiled)
}

/// Compiles every string inside `value` as a template.
pub fn template_value(
    value: &Value,
    site: &EntitySite,
    relative: &[&str],
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<TemplateValue> {
    match value {
        Value::String(text) => {
            let compiled = template(text, site, relative, scope, problems)?;
            Some(if compiled.is_static() {
                TemplateValue::Literal(value.clone())
            } else {
                TemplateValue::Text(compiled)
            })
        }
        Value::Array(items) => {
            let mut compiled = Vec::with_capacity(items.len());
            let mut failed = false;
            for (i, item) in items.iter().enumerate() {
                let index = i.to_string();
                let path = extend(relative, &index);
                match template_value(item, site, &path, scope, problems) {
                    Some(item) => compiled.push(item),
                    None => failed = true,
                }
            }
            (!failed).then_some(TemplateValue::Array(compiled))
        }
        Value::Object(map) => {
            let mut compiled = Vec::with_capacity(map.len());
            let mut failed = false;
            for (key, item) in map {
                let path = extend(relative, key);
                match template_value(item, site, &path, scope, problems) {
                    Some(item) => compiled.push((key.clone(), item)),
                    None => failed = true,
                }
            }
            (!failed).then_some(TemplateValue::Object(compiled))
        }
        other => Some(TemplateValue::Literal(other.clone())),
    }
}

/// Compiles a map of templates (`headers`), keeping its order.
pub fn template_map<'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a String)>,
    site: &EntitySite,
    relative: &[&str],
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Vec<(String, Template)>> {
    let mut compiled = Vec::new();
    let mut failed = false;
    for (key, text) in entries {
        let path = extend(relative, key);
        match template(text, site, &path, scope, problems) {
            Some(template) => compiled.push((key.clone(), template)),
            None => failed = true,
        }
    }
    (!failed).then_some(compiled)
}

/// Compiles a map of template values (`params`), keeping its order.
pub fn template_value_map<'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a Value)>,
    site: &EntitySite,
    relative: &[&str],
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Vec<(String, TemplateValue)>> {
    let mut compiled = Vec::new();
    let mut failed = false;
    for (key, value) in entries {
        let path = extend(relative, key);
        match template_value(value, site, &path, scope, problems) {
            Some(value) => compiled.push((key.clone(), value)),
            None => failed = true,
        }
    }
    (!failed).then_some(compiled)
}

pub fn json_path(
    text: &str,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<JsonPath> {
    match JsonPath::compile(text) {
        Ok(path) => Some(path),
        Err(error) => {
            let field = site.dotted(relative);
            problems.push(site.value(relative, format!("{field}: {error}")));
            None
        }
    }
}

pub fn optional_json_path(
    text: Option<&String>,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Option<JsonPath>> {
    match text {
        None => Some(None),
        Some(text) => json_path(text, site, relative, problems).map(Some),
    }
}

/// Resolves `name` or `{in, name}`. A body name is a dotted path into the
/// JSON body, so neither it nor any of its parts may be empty.
/// Resolves a parameter whose bare-name form goes to `bare`: the query for
/// REST entities, the variables for GraphQL entities.
pub fn param_in(
    raw: &RawParam,
    bare: ParamLocation,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Param> {
    let (location, name, name_path) = match raw {
        RawParam::Query(name) => (bare, name, relative.to_vec()),
        RawParam::Placed(placed) => (placed.location, &placed.name, extend(relative, "name")),
    };
    let field = site.dotted(&name_path);
    if name.trim().is_empty() {
        problems.push(site.value(&name_path, format!("{field} must not be empty")));
        return None;
    }
    let dotted = matches!(location, ParamLocation::Body | ParamLocation::Variables);
    if dotted && name.split('.').any(str::is_empty) {
        let into = match location {
            ParamLocation::Variables => "the variables",
            _ => "the body",
        };
        problems.push(site.value(
            &name_path,
            format!("{field}: \"{name}\" is not a dotted path into {into} (empty part)"),
        ));
        return None;
    }
    Some(Param {
        location,
        name: name.clone(),
    })
}

pub fn optional_param(
    raw: Option<&RawParam>,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Option<Param>> {
    optional_param_in(raw, ParamLocation::Query, site, relative, problems)
}

pub fn optional_param_in(
    raw: Option<&RawParam>,
    bare: ParamLocation,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Option<Param>> {
    match raw {
        None => Some(None),
        Some(raw) => param_in(raw, bare, site, relative, problems).map(Some),
    }
}

/// Parses a humantime duration (`7d`, `15m`, `1h 30m`) that must be positive.
pub fn duration(
    text: &str,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Duration> {
    let field = site.dotted(relative);
    match humantime::parse_duration(text.trim()) {
        Ok(parsed) if parsed.is_zero() => {
            problems.push(site.value(relative, format!("{field} must be longer than 0")));
            None
        }
        Ok(parsed) => Some(parsed),
        Err(error) => {
            problems.push(site.value(
                relative,
                format!("{field}: invalid duration \"{text}\" ({error}); write it like 30s, 15m, 12h or 7d"),
            ));
            None
        }
    }
}

/// Converts a number of seconds that must be finite and above zero.
pub fn positive_seconds(
    seconds: f64,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Duration> {
    if seconds.is_finite() && seconds > 0.0 && seconds < 1e12 {
        return Some(Duration::from_secs_f64(seconds));
    }
    let field = site.dotted(relative);
    problems.push(site.value(
        relative,
        format!("{field} must be greater than 0, found {seconds}"),
    ));
    None
}

/// Converts a number of seconds that must be finite and not negative.
pub fn non_negative_seconds(
    seconds: f64,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Duration> {
    if seconds.is_finite() && (0.0..1e12).contains(&seconds) {
        return Some(Duration::from_secs_f64(seconds));
    }
    let field = site.dotted(relative);
    problems.push(site.value(
        relative,
        format!("{field} must be 0 or more, found {seconds}"),
    ));
    None
}

/// `relative` with one more segment.
pub fn extend<'a>(relative: &[&'a str], segment: &'a str) -> Vec<&'a str> {
    let mut path = relative.to_vec();
    path.push(segment);
    path
}
