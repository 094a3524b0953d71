//! A connector document into a [`Connector`] plan: config declarations,
//! HTTP settings, entities, templates and webhooks.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use super::compile::{self, Problems};
use super::entity::{EntityContext, EntityMode, resolve_entity};
use super::names;
use super::site::{EntitySite, Site};
use super::values;
use super::variables::Scope;
use super::webhooks;
use crate::spec::plan::{
    AuthPlan, ConfigField, ConfigType, Connector, EntityTemplate, HttpMethod, HttpPlan, Origin,
    RateLimit, RequestPlan, RetryPolicy,
};
use crate::spec::raw::{RawAuth, RawCheck, RawConfigField, RawConnector, RawFields, RawHttp};

const DEFAULT_TIMEOUT_SECONDS: f64 = 30.0;

/// Default of `http.max_response_mb`. The limit keeps a runaway or
/// gzip-bomb response from taking the process's memory. It sits far above
/// usual API pages: BigQuery's REST discovery document limits its
/// responses to 10 MB.
const DEFAULT_MAX_RESPONSE_MB: u64 = 128;

const MIB: u64 = 1024 * 1024;

/// A connector document and what reading it left out.
pub struct ConnectorSource<'a> {
    pub raw: &'a RawConnector,
    pub site: Site,
    /// Entries left out because they did not deserialize: `(section, key)`.
    pub pruned: &'a [(String, String)],
    pub origin: Origin,
}

/// Resolves a connector; `None` when it had any problem, reading problems
/// (pruned entries) included.
pub fn resolve_connector(
    source: &ConnectorSource<'_>,
    problems: &mut Problems,
) -> Option<Connector> {
    let raw = source.raw;
    let site = EntitySite::Plain(source.site.clone());
    let mark = problems.len();
    let pruned_in = |section: &str| -> Vec<String> {
        source
            .pruned
            .iter()
            .filter(|(pruned_section, _)| pruned_section == section)
            .map(|(_, key)| key.clone())
            .collect()
    };
    let broken_config = pruned_in("config");

    names::check_name(&raw.name, "connector", &source.site, problems);
    let config = config_fields(&raw.config, &site, &["config"], "config key", problems);
    let scope = Scope {
        config: &config,
        broken_config: &broken_config,
        request: None,
    };
    let http = http_plan(&raw.http, &site, &scope, problems);
    let check = match &raw.check {
        Some(check) => check_plan(check, &site, &scope, problems).map(Some),
        None => Some(None),
    };

    let mut entity_names: Vec<String> = raw.entities.keys().cloned().collect();
    entity_names.extend(pruned_in("entities"));
    check_template_names(raw, &source.site, problems);
    check_parent_cycles(raw, &source.site, problems);
    check_parent_tables(raw, &source.site, problems);

    let context = EntityContext {
        connector: &raw.name,
        config: &config,
        broken_config: &broken_config,
        entity_names: &entity_names,
        base_url: &raw.http.base_url,
    };
    let mut entities = IndexMap::new();
    for (name, entity) in &raw.entities {
        let entity_site = EntitySite::Plain(source.site.child(&["entities", name]));
        let resolved = resolve_entity(
            name,
            entity,
            EntityMode::Entity,
            &context,
            &entity_site,
            problems,
        );
        if let Some(resolved) = resolved {
            entities.insert(name.clone(), Arc::new(resolved));
        }
    }
    let mut templates = IndexMap::new();
    for (name, template) in &raw.templates {
        let template_site = source.site.child(&["templates", name]);
        let plain_site = EntitySite::Plain(template_site.clone());
        let parameters = config_fields(
            &template.parameters,
            &plain_site,
            &["parameters"],
            "parameter",
            problems,
        );
        let mode = EntityMode::Template {
            name,
            parameters: &parameters,
        };
        resolve_entity(name, template, mode, &context, &plain_site, problems);
        templates.insert(
            name.clone(),
            Arc::new(EntityTemplate {
                name: name.clone(),
                description: template.description.clone(),
                parameters,
                raw: template.clone(),
            }),
        );
    }
    let webhooks = match &raw.webhooks {
        Some(raw_webhooks) => {
            webhooks::resolve(raw_webhooks, &entity_names, &source.site, problems).map(Some)
        }
        None => Some(None),
    };

    if !problems.clean_since(mark) || !source.pruned.is_empty() {
        return None;
    }
    Some(Connector {
        name: raw.name.clone(),
        version: raw.version.clone(),
        description: raw.description.clone(),
        origin: source.origin.clone(),
        config,
        http: http?,
        check: check?,
        entities,
        templates,
        webhooks: webhooks?,
    })
}

/// Resolves config key (or template parameter) declarations; a default or
/// `enum` value that does not fit the declared type is reported.
pub fn config_fields(
    raw: &IndexMap<String, RawConfigField>,
    site: &EntitySite,
    relative: &[&str],
    noun: &str,
    problems: &mut Problems,
) -> IndexMap<String, ConfigField> {
    let mut fields = IndexMap::new();
    for (key, declared) in raw {
        let path = compile::extend(relative, key);
        let pattern = match &declared.pattern {
            Some(source) => {
                match values::compile_pattern(source) {
                    Ok(pattern) => Some(pattern),
                    Err(error) => {
                        problems.push(site.value(
                        &compile::extend(&path, "pattern"),
                        format!("pattern of {noun} \"{key}\" is not a valid regular expression: {error}"),
                    ));
                        None
                    }
                }
            }
            None => None,
        };
        if declared.templated && declared.value_type != ConfigType::String {
            problems.push(site.key(
                &compile::extend(&path, "templated"),
                format!("templated {noun} \"{key}\" must have type: string"),
            ));
        }
        if declared.templated && noun != "parameter" {
            problems.push(site.key(
                &compile::extend(&path, "templated"),
                format!("templated applies only to template parameters, not to {noun} \"{key}\""),
            ));
        }
        let field = ConfigField {
            value_type: declared.value_type,
            secret: declared.secret,
            default: declared.default.clone(),
            required: declared.required.unwrap_or(declared.default.is_none()),
            description: declared.description.clone(),
            allowed: declared.allowed.clone(),
            pattern,
            templated: declared.templated,
        };
        if let Some(default) = &field.default {
            let label = format!("default of {noun} \"{key}\"");
            if let Err(message) = values::check_value(default, &field, &label) {
                problems.push(site.value(&compile::extend(&path, "default"), message));
            }
        }
        let unconstrained = ConfigField {
            allowed: None,
            ..field.clone()
        };
        for (i, allowed) in field.allowed.iter().flatten().enumerate() {
            let label = format!("enum value of {noun} \"{key}\"");
            if let Err(message) = values::check_value(allowed, &unconstrained, &label) {
                let index = i.to_string();
                let mut at = compile::extend(&path, "enum");
                at.push(&index);
                problems.push(site.value(&at, message));
            }
        }
        fields.insert(key.clone(), field);
    }
    fields
}

fn http_plan(
    raw: &RawHttp,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<HttpPlan> {
    let base_url = base_url(&raw.base_url, site, scope, problems);
    let headers = compile::template_map(&raw.headers, site, &["http", "headers"], scope, problems);
    let params =
        compile::template_value_map(&raw.params, site, &["http", "params"], scope, problems);
    let auth = match &raw.auth {
        Some(auth) => auth_plan(auth, site, scope, problems),
        None => Some(AuthPlan::None),
    };
    let rate_limit = match &raw.rate_limit {
        None => Some(None),
        Some(limit) => {
            let mark = problems.len();
            let rate = limit.requests_per_second;
            let plan = RateLimit {
                requests_per_second: rate,
                burst: limit.burst.unwrap_or(1),
            };
            if let Some(message) = plan.problem() {
                problems.push(site.value(&["http", "rate_limit", "requests_per_second"], message));
            }
            if limit.burst == Some(0) {
                problems.push(site.value(
                    &["http", "rate_limit", "burst"],
                    "http.rate_limit.burst must be at least 1, found 0",
                ));
            }
            problems.clean_since(mark).then_some(Some(plan))
        }
    };
    let retry = retry_policy(raw, site, problems);
    let timeout = compile::positive_seconds(
        raw.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        site,
        &["http", "timeout_seconds"],
        problems,
    );
    let max_response_bytes = max_response_bytes(raw, site, problems);
    Some(HttpPlan {
        base_url: base_url?,
        headers: headers?,
        params: params?,
        auth: auth?,
        rate_limit: rate_limit?,
        retry: retry?,
        timeout: timeout?,
        allow_cross_host: raw.allow_cross_host,
        max_response_bytes: max_response_bytes?,
    })
}

/// Converts `http.max_response_mb` to bytes.
fn max_response_bytes(raw: &RawHttp, site: &EntitySite, problems: &mut Problems) -> Option<u64> {
    let megabytes = raw.max_response_mb.unwrap_or(DEFAULT_MAX_RESPONSE_MB);
    let message = if megabytes == 0 {
        format!("http.max_response_mb must be at least 1, found {megabytes}")
    } else {
        match megabytes.checked_mul(MIB) {
            Some(bytes) => return Some(bytes),
            None => format!(
                "http.max_response_mb must be at most {}, found {megabytes}",
                u64::MAX / MIB
            ),
        }
    };
    problems.push(site.value(&["http", "max_response_mb"], message));
    None
}

/// Compiles `http.base_url`; one without templates must already be an
/// http(s) URL (one with templates is checked per flow, once rendered).
fn base_url(
    text: &str,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<crate::template::Template> {
    let relative = ["http", "base_url"];
    if text.trim().is_empty() {
        problems.push(site.value(&relative, "http.base_url must not be empty"));
        return None;
    }
    let template = compile::template(text, site, &relative, scope, problems)?;
    if template.is_static()
        && let Err(message) = super::urls::check_http_url(text)
    {
        problems.push(site.value(
            &relative,
            format!("http.base_url {message}; write it like https://api.example.com"),
        ));
        return None;
    }
    Some(template)
}

fn retry_policy(raw: &RawHttp, site: &EntitySite, problems: &mut Problems) -> Option<RetryPolicy> {
    let defaults = RetryPolicy::default();
    let Some(retry) = &raw.retry else {
        return Some(defaults);
    };
    let mark = problems.len();
    if retry.max_attempts == Some(0) {
        problems.push(site.value(
            &["http", "retry", "max_attempts"],
            "http.retry.max_attempts must be at least 1 (1 means no retry), found 0",
        ));
    }
    let seconds =
        |value: Option<f64>, field: &str, default: Duration, problems: &mut Problems| match value {
            Some(value) => {
                compile::non_negative_seconds(value, site, &["http", "retry", field], problems)
            }
            None => Some(default),
        };
    let max_wait = seconds(
        retry.max_wait_seconds,
        "max_wait_seconds",
        defaults.max_wait,
        problems,
    );
    let initial_backoff = seconds(
        retry.initial_backoff_seconds,
        "initial_backoff_seconds",
        defaults.initial_backoff,
        problems,
    );
    let max_backoff = seconds(
        retry.max_backoff_seconds,
        "max_backoff_seconds",
        defaults.max_backoff,
        problems,
    );
    if !problems.clean_since(mark) {
        return None;
    }
    Some(RetryPolicy {
        max_attempts: retry.max_attempts.unwrap_or(defaults.max_attempts),
        max_wait: max_wait?,
        initial_backoff: initial_backoff?,
        max_backoff: max_backoff?,
    })
}

fn auth_plan(
    raw: &RawAuth,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<AuthPlan> {
    let text = |value: &str, field: &'static str, problems: &mut Problems| {
        compile::template(value, site, &["http", "auth", field], scope, problems)
    };
    Some(match raw {
        RawAuth::None => AuthPlan::None,
        RawAuth::Bearer { token } => AuthPlan::Bearer {
            token: text(token, "token", problems)?,
        },
        RawAuth::ApiKey {
            location,
            name,
            value,
        } => {
            let value = text(value, "value", problems);
            if name.trim().is_empty() {
                problems.push(site.value(
                    &["http", "auth", "name"],
                    "http.auth.name must not be empty",
                ));
                return None;
            }
            AuthPlan::ApiKey {
                location: *location,
                name: name.clone(),
                value: value?,
            }
        }
        RawAuth::Basic { username, password } => {
            let username = text(username, "username", problems);
            let password = text(password, "password", problems);
            AuthPlan::Basic {
                username: username?,
                password: password?,
            }
        }
        RawAuth::Oauth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scopes,
            extra,
            client_auth,
        } => {
            let token_url = text(token_url, "token_url", problems);
            let client_id = text(client_id, "client_id", problems);
            let client_secret = text(client_secret, "client_secret", problems);
            let extra =
                compile::template_map(extra, site, &["http", "auth", "extra"], scope, problems);
            AuthPlan::OAuth2ClientCredentials {
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                scopes: scopes.clone(),
                extra: extra?,
                client_auth: *client_auth,
            }
        }
        RawAuth::Oauth2RefreshToken {
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scopes,
            extra,
            client_auth,
        } => {
            let token_url = text(token_url, "token_url", problems);
            let client_id = text(client_id, "client_id", problems);
            let client_secret = text(client_secret, "client_secret", problems);
            let refresh_token = text(refresh_token, "refresh_token", problems);
            let extra =
                compile::template_map(extra, site, &["http", "auth", "extra"], scope, problems);
            AuthPlan::OAuth2RefreshToken {
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                refresh_token: refresh_token?,
                scopes: scopes.clone(),
                extra: extra?,
                client_auth: *client_auth,
            }
        }
        RawAuth::JwtServiceAccount {
            service_account,
            scopes,
            token_url,
            subject,
        } => {
            let service_account = text(service_account, "service_account", problems);
            let token_url = token_url
                .as_ref()
                .map(|url| text(url, "token_url", problems))
                .map_or(Some(None), |compiled| compiled.map(Some));
            let subject = subject
                .as_ref()
                .map(|subject| text(subject, "subject", problems))
                .map_or(Some(None), |compiled| compiled.map(Some));
            AuthPlan::JwtServiceAccount {
                service_account: service_account?,
                scopes: scopes.clone(),
                token_url: token_url?,
                subject: subject?,
            }
        }
    })
}

fn check_plan(
    raw: &RawCheck,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<RequestPlan> {
    let path = compile::template(&raw.path, site, &["check", "path"], scope, problems);
    let params =
        compile::template_value_map(&raw.params, site, &["check", "params"], scope, problems);
    let headers = compile::template_map(&raw.headers, site, &["check", "headers"], scope, problems);
    let body = match &raw.body {
        Some(body) => {
            compile::template_value(body, site, &["check", "body"], scope, problems).map(Some)
        }
        None => Some(None),
    };
    let default_method = if raw.body.is_some() {
        HttpMethod::Post
    } else {
        HttpMethod::Get
    };
    Some(RequestPlan {
        method: raw.method.unwrap_or(default_method),
        path: path?,
        params: params?,
        headers: headers?,
        body: body?,
    })
}

/// Reports templates named like an entity, because a flow's `entities`
/// entry with that name would be ambiguous.
fn check_template_names(raw: &RawConnector, site: &Site, problems: &mut Problems) {
    for name in raw.templates.keys() {
        if raw.entities.contains_key(name) {
            problems.push(site.key(
                &["templates", name],
                format!("template \"{name}\" has the same name as an entity of this connector; rename one of them"),
            ));
        }
    }
}

/// Reports children whose parent's table cannot drive them: a child reads
/// parent rows in primary key order, and reads the fields it names from
/// the parent's columns.
fn check_parent_tables(raw: &RawConnector, site: &Site, problems: &mut Problems) {
    let children = raw
        .entities
        .iter()
        .map(|(name, entity)| ("entities", name, entity))
        .chain(
            raw.templates
                .iter()
                .map(|(name, entity)| ("templates", name, entity)),
        );
    for (section, child, entity) in children {
        let Some(link) = &entity.parent else { continue };
        let Some(parent) = raw.entities.get(&link.entity) else {
            continue;
        };
        let keyless = parent
            .primary_key
            .as_ref()
            .is_none_or(|key| key.fields().is_empty());
        if keyless {
            problems.push(site.value(
                &[section, child, "parent", "entity"],
                format!(
                    "entity \"{}\" is the parent of \"{child}\", so it needs a primary_key: \
                     a child reads its parents' rows in key order to resume exactly",
                    link.entity
                ),
            ));
        }
        let no_rules = RawFields::default();
        let rules = parent.fields.as_ref().unwrap_or(&no_rules);
        for (i, field) in link.fields.iter().enumerate() {
            if let Some(reason) = missing_parent_column(rules, field) {
                let index = i.to_string();
                problems.push(site.value(
                    &[section, child, "parent", "fields", &index],
                    missing_column_message(&reason, field, &link.entity, child),
                ));
            }
        }
        // A child with a path still works when the parent's table lacks
        // the embedded field, because it requests each parent's records.
        // A child without a path would never read a record.
        let embedded_only = entity.path.is_none() && entity.graphql.is_none();
        let embedded = link.embedded.as_deref().and_then(top_field);
        if let Some(field) = embedded.filter(|_| embedded_only)
            && let Some(reason) = missing_parent_column(rules, field)
        {
            problems.push(site.value(
                &[section, child, "parent", "embedded"],
                missing_column_message(&reason, field, &link.entity, child),
            ));
        }
    }
}

/// Returns the top-level field a JSONPath starts with (`lines` in `$.lines.data`
/// or `$['lines']`); `None` for `$` alone, wildcards and filters.
fn top_field(path: &str) -> Option<&str> {
    let rest = path.trim().strip_prefix('$')?.trim_start();
    let field = if let Some(dotted) = rest.strip_prefix('.') {
        dotted.split(['.', '[', ' ']).next()?
    } else {
        let (quote, quoted) = match rest.strip_prefix("['") {
            Some(quoted) => ('\'', quoted),
            None => ('"', rest.strip_prefix("[\"")?),
        };
        let field = quoted.split(quote).next()?;
        // An escaped quote or backslash: the name is not this text, so
        // the path is left unchecked rather than checked for a wrong name.
        if field.contains('\\') {
            return None;
        }
        field
    };
    (!field.is_empty() && field != "*" && !field.starts_with('.')).then_some(field)
}

/// Explains why the table of `parent` has no column `field` for `child`.
fn missing_column_message(
    reason: &MissingColumn<'_>,
    field: &str,
    parent: &str,
    child: &str,
) -> String {
    match *reason {
        MissingColumn::RenamedAway(stored) => format!(
            "parent field \"{field}\" is stored as \"{stored}\" in the table of \"{parent}\" (fields.rename); \
             list \"{stored}\" and read it as {{{{parent.{stored}}}}}"
        ),
        MissingColumn::Excluded(source) => format!(
            "parent field \"{field}\"{} is excluded from the table of \"{parent}\" (fields.exclude), \
             so \"{child}\" cannot read it",
            renamed_from(field, source)
        ),
        MissingColumn::NotIncluded(source) => format!(
            "parent field \"{field}\"{} is not in the fields.include list of \"{parent}\", \
             so \"{child}\" cannot read it; add \"{source}\" to that list",
            renamed_from(field, source)
        ),
    }
}

/// Why a parent's table has no column for a field a child lists.
enum MissingColumn<'a> {
    /// `fields.rename` stores the API field of that name under this name.
    RenamedAway(&'a str),
    /// `fields.exclude` removes this API field, the column's only source.
    Excluded(&'a str),
    /// `fields.include` leaves out this API field, the column's only source.
    NotIncluded(&'a str),
}

/// Checks `column`, a stored (renamed) field name, against the parent's
/// field rules, which name API fields. Returns `None` when the rules keep
/// the API field stored under that name.
fn missing_parent_column<'a>(rules: &'a RawFields, column: &'a str) -> Option<MissingColumn<'a>> {
    let excluded = |field: &str| rules.exclude.iter().any(|excluded| excluded == field);
    let included = |field: &str| {
        rules.include.is_empty() || rules.include.iter().any(|included| included == field)
    };

    // A column that a rename targets contains that field. Otherwise it is
    // the API field of its own name, unless a rename moves that field.
    let renamed_onto = rules
        .rename
        .iter()
        .find(|(_, target)| target.as_str() == column)
        .map(|(source, _)| source.as_str());
    let source = match (renamed_onto, rules.rename.get(column)) {
        (Some(source), _) => source,
        (None, Some(stored)) if included(column) && !excluded(column) => {
            return Some(MissingColumn::RenamedAway(stored));
        }
        (None, _) => column,
    };
    // `fields.names` may store a field of another API name under this
    // name, and that name is known only at run time.
    let renamed_at_run_time = rules
        .names
        .as_ref()
        .is_some_and(|names| column.starts_with(&names.prefix));
    if source == column && renamed_at_run_time {
        return None;
    }

    if excluded(source) {
        Some(MissingColumn::Excluded(source))
    } else if !included(source) {
        Some(MissingColumn::NotIncluded(source))
    } else {
        None
    }
}

/// Returns ` (renamed from "SOURCE")` when the column has another API name.
fn renamed_from(column: &str, source: &str) -> String {
    if column == source {
        String::new()
    } else {
        format!(" (renamed from \"{source}\")")
    }
}

/// Reports each entity whose chain of parents leads back to itself.
fn check_parent_cycles(raw: &RawConnector, site: &Site, problems: &mut Problems) {
    for start in raw.entities.keys() {
        let mut chain = vec![start.as_str()];
        let mut current = start.as_str();
        while let Some(parent) = raw
            .entities
            .get(current)
            .and_then(|entity| entity.parent.as_ref())
        {
            let parent = parent.entity.as_str();
            if parent == start && chain.len() > 1 {
                chain.push(parent);
                problems.push(site.value(
                    &["entities", start, "parent", "entity"],
                    format!(
                        "entity \"{start}\" is its own ancestor: {}",
                        chain.join(" -> ")
                    ),
                ));
                break;
            }
            // A chain that loops without `start` is reported from its members.
            if chain.contains(&parent) {
                break;
            }
            chain.push(parent);
            current = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::top_field;

    #[test]
    fn top_field_of_paths() {
        assert_eq!(top_field("$.lines"), Some("lines"));
        assert_eq!(top_field("$.lines.data[*]"), Some("lines"));
        assert_eq!(top_field("$['line items']"), Some("line items"));
        assert_eq!(top_field("$"), None);
        assert_eq!(top_field("$.*"), None);
        assert_eq!(top_field("$..lines"), None);
        assert_eq!(top_field("$[\"a'b\"]"), Some("a'b"));
        assert_eq!(top_field("$['it\\'s']"), None);
        assert_eq!(top_field("$ .lines"), Some("lines"));
    }
}
