//! A flow document (or a `ferry sync -s` command line) into a [`Flow`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::compile::Problems;
use super::destination::{self, DEFAULT_DESTINATION};
use super::flow_entities;
use super::names;
use super::schedule;
use super::site::Site;
use super::starts;
use super::urls;
use super::values::{self, Given, Naming, Part, ValueProblem};
use crate::spec::EnvLookup;
use crate::spec::env::Expander;
use crate::spec::plan::{Connector, Flow, FlowWebhook, Origin, SyncMode, WebhookAction};
use crate::spec::raw::{RawFlow, SecretList};
use crate::spec::suggest;

/// What flows are resolved against.
pub struct FlowContext<'a> {
    pub connectors: &'a IndexMap<String, Arc<Connector>>,
    /// Connectors that are defined but had errors: a flow that uses one is
    /// not checked against it (its problems are already reported).
    pub broken: &'a HashSet<String>,
    pub env: EnvLookup<'a>,
}

/// A flow document and how to read it.
pub struct FlowSource<'a> {
    pub raw: &'a RawFlow,
    pub site: Site,
    pub origin: Origin,
    /// Folder that relative `${file:…}` paths are read from.
    pub base_dir: Option<PathBuf>,
    /// True when config values are command-line text (`--set key=value`),
    /// converted to each key's declared type.
    pub config_from_text: bool,
}

/// Resolves a flow; `None` when it had any problem.
pub fn resolve_flow(
    source: &FlowSource<'_>,
    context: &FlowContext<'_>,
    problems: &mut Problems,
) -> Option<Flow> {
    let raw = source.raw;
    let site = &source.site;
    let mark = problems.len();
    let expander = Expander {
        env: context.env,
        base_dir: source.base_dir.clone(),
    };
    let mut secrets = Vec::new();

    names::check_name(&raw.name, "flow", site, problems);
    let connector = find_connector(&raw.source.connector, context, site, problems);
    let config = connector.as_ref().and_then(|connector| {
        let config = flow_config(source, connector, &expander, &mut secrets, problems)?;
        check_base_url(connector, &config, site, problems).then_some(config)
    });

    let destination = destination(raw, site, &expander, &mut secrets, problems);
    let schema = schema(raw, site, &expander, problems);
    let entities = connector.as_ref().and_then(|connector| {
        let selection =
            flow_entities::select(raw.entities.as_ref(), connector, site, &expander, problems)?;
        secrets.extend(selection.secrets);
        Some(selection.entities)
    });
    let entities = match (entities, &config) {
        (Some(entities), Some(config)) => starts::render(entities, config, site, problems),
        (entities, _) => entities,
    };
    let trigger = trigger(raw, site, &expander, problems);
    let mode = raw.mode.unwrap_or(SyncMode::Incremental);
    if raw.deleted_rows.is_some() && mode != SyncMode::FullRefresh {
        problems.push(site.key(
            &["deleted_rows"],
            "deleted_rows only applies with mode: full_refresh; set mode: full_refresh or remove deleted_rows",
        ));
    }
    let webhook = webhook(
        raw,
        connector.as_deref(),
        site,
        &expander,
        &mut secrets,
        problems,
    );
    let alert_url = alert_url(raw, site, &expander, problems);

    for secret in &secrets {
        crate::redact::register(secret);
    }
    if !problems.clean_since(mark) {
        return None;
    }
    Some(Flow {
        name: raw.name.clone(),
        description: raw.description.clone(),
        origin: source.origin.clone(),
        connector: connector?,
        config: config?,
        destination: destination?,
        schema: schema?,
        entities: entities?,
        trigger: trigger?,
        mode,
        deleted_rows: raw.deleted_rows,
        webhook: webhook?,
        alert_url: alert_url?,
        secrets,
    })
}

fn find_connector(
    name: &str,
    context: &FlowContext<'_>,
    site: &Site,
    problems: &mut Problems,
) -> Option<Arc<Connector>> {
    if let Some(connector) = context.connectors.get(name) {
        return Some(connector.clone());
    }
    if context.broken.contains(name) {
        return None;
    }
    let mut known: Vec<&str> = context.connectors.keys().map(String::as_str).collect();
    known.extend(context.broken.iter().map(String::as_str));
    known.sort_unstable();
    let hint = suggest::hint(name, &known, "connectors");
    problems.push(site.value(
        &["source", "connector"],
        format!("unknown connector \"{name}\"{hint}"),
    ));
    None
}

/// Expands `${…}` in every string inside `value`, with a flag that is true
/// when anything was substituted. Returns `None` after reporting a failure.
pub fn expand_value(
    value: &Value,
    expander: &Expander<'_>,
    site: &Site,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<(Value, bool)> {
    match value {
        Value::String(text) => {
            let expanded = expand_text(text, expander, site, relative, problems)?;
            Some((Value::String(expanded.text), expanded.substituted))
        }
        Value::Array(items) => {
            let mut expanded = Vec::with_capacity(items.len());
            let mut substituted = false;
            for (i, item) in items.iter().enumerate() {
                let index = i.to_string();
                let mut path = relative.to_vec();
                path.push(&index);
                let (item, item_substituted) = expand_value(item, expander, site, &path, problems)?;
                substituted |= item_substituted;
                expanded.push(item);
            }
            Some((Value::Array(expanded), substituted))
        }
        Value::Object(map) => {
            let mut expanded = Map::with_capacity(map.len());
            let mut substituted = false;
            for (key, item) in map {
                let mut path = relative.to_vec();
                path.push(key);
                let (item, item_substituted) = expand_value(item, expander, site, &path, problems)?;
                substituted |= item_substituted;
                expanded.insert(key.clone(), item);
            }
            Some((Value::Object(expanded), substituted))
        }
        other => Some((other.clone(), false)),
    }
}

pub fn expand_text(
    text: &str,
    expander: &Expander<'_>,
    site: &Site,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<crate::spec::env::Expanded> {
    match expander.expand(text, &site.dotted(relative)) {
        Ok(expanded) => Some(expanded),
        Err(error) => {
            problems.push(site.value(relative, error.to_string()));
            None
        }
    }
}

fn expand_optional(
    text: Option<&String>,
    expander: &Expander<'_>,
    site: &Site,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Option<String>> {
    match text {
        None => Some(None),
        Some(text) => expand_text(text, expander, site, relative, problems).map(|e| Some(e.text)),
    }
}

/// Collects the text of a secret value. A string is kept as it is. A list or
/// a mapping (a service-account key) gives its JSON and every string inside.
pub fn secret_texts(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::String(text) => found.push(text.clone()),
        Value::Array(items) => {
            found.push(value.to_string());
            items.iter().for_each(|item| secret_texts(item, found));
        }
        Value::Object(map) => {
            found.push(value.to_string());
            map.values().for_each(|item| secret_texts(item, found));
        }
        other => found.push(other.to_string()),
    }
}

/// Expands, checks and completes the flow's `source.config`.
fn flow_config(
    source: &FlowSource<'_>,
    connector: &Connector,
    expander: &Expander<'_>,
    secrets: &mut Vec<String>,
    problems: &mut Problems,
) -> Option<Map<String, Value>> {
    let site = &source.site;
    let mark = problems.len();
    let mut given = Vec::new();
    // Keys whose `${…}` failed: already reported, so not "missing" as well.
    let mut unexpanded = Vec::new();
    for (key, value) in &source.raw.source.config {
        let relative = ["source", "config", key.as_str()];
        let Some((value, substituted)) = expand_value(value, expander, site, &relative, problems)
        else {
            unexpanded.push(key.clone());
            continue;
        };
        // Registered before any check, so no later message can show it.
        if connector.config.get(key).is_some_and(|field| field.secret) {
            secret_texts(&value, secrets);
        }
        given.push(Given {
            key: key.clone(),
            value,
            from_text: substituted || source.config_from_text,
        });
    }
    for secret in secrets.iter() {
        crate::redact::register(secret);
    }

    let owner = format!("connector \"{}\"", connector.name);
    let naming = Naming {
        noun: "config key",
        owner: &owner,
    };
    let (config, mut value_problems) = values::check_values(&connector.config, &given, &naming);
    value_problems
        .retain(|problem| !(problem.part == Part::Container && unexpanded.contains(&problem.key)));
    report_value_problems(&value_problems, site, &["source", "config"], problems);
    problems.clean_since(mark).then_some(config)
}

/// Reports value problems at the key, the value, or the containing mapping
/// (for a missing key).
pub fn report_value_problems(
    value_problems: &[ValueProblem],
    site: &Site,
    container: &[&str],
    problems: &mut Problems,
) {
    for problem in value_problems {
        let mut path = container.to_vec();
        match problem.part {
            Part::Key => {
                path.push(&problem.key);
                problems.push(site.key(&path, problem.message.clone()));
            }
            Part::Value => {
                path.push(&problem.key);
                problems.push(site.value(&path, problem.message.clone()));
            }
            Part::Container => problems.push(site.key(&path, problem.message.clone())),
        }
    }
}

/// Renders the connector's `http.base_url` with the flow's config: it must
/// be an http(s) URL.
fn check_base_url(
    connector: &Connector,
    config: &Map<String, Value>,
    site: &Site,
    problems: &mut Problems,
) -> bool {
    let template = &connector.http.base_url;
    if template.is_static() {
        return true;
    }
    let context = serde_json::json!({ "config": config });
    let message = match template.render(&context) {
        Ok(url) => match urls::check_http_url(&url) {
            Ok(_) => return true,
            Err(message) => format!(
                "http.base_url of connector \"{}\" renders to {message}; check the config values it reads ({})",
                connector.name,
                template.source()
            ),
        },
        Err(error) => format!(
            "http.base_url of connector \"{}\" cannot be rendered with this flow's config: {error}",
            connector.name
        ),
    };
    problems.push(site.key(&["source", "config"], message));
    false
}

fn destination(
    raw: &RawFlow,
    site: &Site,
    expander: &Expander<'_>,
    secrets: &mut Vec<String>,
    problems: &mut Problems,
) -> Option<crate::spec::plan::DestinationUrl> {
    let text = match &raw.destination {
        Some(text) => expand_text(text, expander, site, &["destination"], problems)?.text,
        None => DEFAULT_DESTINATION.to_string(),
    };
    match destination::parse(&text) {
        Ok(parsed) => {
            for secret in &parsed.secrets {
                crate::redact::register(secret);
            }
            secrets.extend(parsed.secrets);
            Some(parsed.url)
        }
        Err(message) => {
            problems.push(site.value(&["destination"], message));
            None
        }
    }
}

fn schema(
    raw: &RawFlow,
    site: &Site,
    expander: &Expander<'_>,
    problems: &mut Problems,
) -> Option<String> {
    let Some(text) = &raw.schema else {
        return Some(raw.source.connector.clone());
    };
    let schema = expand_text(text, expander, site, &["schema"], problems)?.text;
    if schema.trim().is_empty() {
        problems.push(site.value(
            &["schema"],
            "schema must not be empty; remove it to use the connector's name",
        ));
        return None;
    }
    Some(schema)
}

fn trigger(
    raw: &RawFlow,
    site: &Site,
    expander: &Expander<'_>,
    problems: &mut Problems,
) -> Option<Option<crate::spec::plan::Trigger>> {
    let mark = problems.len();
    let schedule_text = expand_optional(
        raw.schedule.as_ref(),
        expander,
        site,
        &["schedule"],
        problems,
    );
    let every_text = expand_optional(raw.every.as_ref(), expander, site, &["every"], problems);
    let zone_text = expand_optional(
        raw.timezone.as_ref(),
        expander,
        site,
        &["timezone"],
        problems,
    );
    if !problems.clean_since(mark) {
        return None;
    }
    let (schedule_text, every_text) = (schedule_text?, every_text?);
    let zone = match zone_text? {
        None => chrono_tz::UTC,
        Some(name) => match schedule::timezone(&name) {
            Ok(zone) => zone,
            Err(message) => {
                problems.push(site.value(&["timezone"], message));
                return None;
            }
        },
    };

    if schedule_text.is_some() && every_text.is_some() {
        problems.push(site.key(
            &["every"],
            "set either schedule (cron) or every (an interval), not both",
        ));
        return None;
    }
    if let Some(expression) = &schedule_text
        && let Err(message) = schedule::cron(expression)
    {
        problems.push(site.value(&["schedule"], message));
        return None;
    }
    if let Some(text) = &every_text
        && let Err(message) = schedule::every(text)
    {
        problems.push(site.value(&["every"], message));
        return None;
    }
    match schedule::trigger(schedule_text.as_deref(), every_text.as_deref(), zone) {
        Ok(trigger) => Some(trigger),
        Err(message) => {
            problems.push(site.key(&["schedule"], message));
            None
        }
    }
}

fn webhook(
    raw: &RawFlow,
    connector: Option<&Connector>,
    site: &Site,
    expander: &Expander<'_>,
    secrets: &mut Vec<String>,
    problems: &mut Problems,
) -> Option<Option<FlowWebhook>> {
    let Some(webhook) = &raw.webhook else {
        return Some(None);
    };
    let mark = problems.len();
    if let Some(connector) = connector
        && connector.webhooks.is_none()
    {
        problems.push(site.key(
                &["webhook"],
                format!(
                    "connector \"{}\" declares no webhooks, so this flow cannot receive webhook events; remove webhook",
                    connector.name
                ),
            ));
    }
    let written: Vec<(Option<String>, &String)> = match &webhook.secret {
        SecretList::One(secret) => vec![(None, secret)],
        SecretList::Many(list) => list
            .iter()
            .enumerate()
            .map(|(i, secret)| (Some(i.to_string()), secret))
            .collect(),
    };
    let mut webhook_secrets = Vec::new();
    for (index, text) in &written {
        let mut relative = vec!["webhook", "secret"];
        relative.extend(index.as_deref());
        let Some(expanded) = expand_text(text, expander, site, &relative, problems) else {
            continue;
        };
        if expanded.text.is_empty() {
            problems.push(site.value(&relative, "webhook.secret must not be empty"));
            continue;
        }
        crate::redact::register(&expanded.text);
        webhook_secrets.push(expanded.text);
    }
    if webhook_secrets.is_empty() && problems.clean_since(mark) {
        problems.push(site.key(
            &["webhook", "secret"],
            "webhook.secret must list at least one secret",
        ));
    }
    secrets.extend(webhook_secrets.iter().cloned());
    problems.clean_since(mark).then(|| {
        Some(FlowWebhook {
            secrets: webhook_secrets,
            action: webhook.action.unwrap_or(WebhookAction::Upsert),
        })
    })
}

fn alert_url(
    raw: &RawFlow,
    site: &Site,
    expander: &Expander<'_>,
    problems: &mut Problems,
) -> Option<Option<String>> {
    let Some(alert) = &raw.alert else {
        return Some(None);
    };
    let url = expand_text(&alert.url, expander, site, &["alert", "url"], problems)?.text;
    match urls::check_http_url(&url) {
        Ok(_) => Some(Some(url)),
        Err(message) => {
            problems.push(site.value(&["alert", "url"], format!("alert.url {message}")));
            None
        }
    }
}
