//! One entity (or template) of a connector: raw fields into an
//! [`Entity`] plan.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::compile::{self, Problems, extend};
use super::pagination;
use super::site::EntitySite;
use super::steps;
use super::variables::{self, RequestScope, Scope};
use crate::spec::fingerprint::fingerprint;
use crate::spec::plan::{
    ChangeFeed, ChunkPlan, ConfigField, DeletionMarker, Entity, FieldNames, FieldsPlan,
    GraphqlPlan, HttpMethod, Incremental, Order, ParamLocation, ParentPlan, RecordsPlan,
    RequestPlan, SchemaSource, StatusAction, Window,
};
use crate::spec::raw::{RawChanges, RawEntity, RawFields, RawIncremental, RawRecords};
use crate::spec::suggest;
use crate::template::Template;

/// What an entity is resolved against: its connector.
pub struct EntityContext<'a> {
    pub connector: &'a str,
    pub config: &'a IndexMap<String, ConfigField>,
    pub broken_config: &'a [String],
    /// Every entity name of the connector, those with errors included.
    pub entity_names: &'a [String],
    /// The connector's `http.base_url` template text, part of the fingerprint.
    pub base_url: &'a str,
}

/// Which kind of entity definition is being resolved.
pub enum EntityMode<'a> {
    /// An entry of a connector's `entities`.
    Entity,
    /// An entry of a connector's `templates`: fields a flow may still set
    /// (`path`, `records`, `primary_key`) are not required yet.
    Template {
        name: &'a str,
        parameters: &'a IndexMap<String, ConfigField>,
    },
    /// An entity a flow makes from a template, with its parameter values.
    Instance {
        template: &'a str,
        parameters: &'a IndexMap<String, ConfigField>,
        values: Map<String, Value>,
    },
}

impl EntityMode<'_> {
    fn is_template(&self) -> bool {
        matches!(self, EntityMode::Template { .. })
    }

    fn parameter_scope(&self) -> Option<(&str, Vec<&str>)> {
        match self {
            EntityMode::Entity => None,
            EntityMode::Template { name, parameters }
            | EntityMode::Instance {
                template: name,
                parameters,
                ..
            } => Some((name, parameters.keys().map(String::as_str).collect())),
        }
    }
}

/// Resolves one entity; every problem is reported, and `None` returned
/// when there was any. Templates always return `None` once checked: a flow
/// resolves them again with its parameters.
pub fn resolve_entity(
    name: &str,
    raw: &RawEntity,
    mode: EntityMode<'_>,
    context: &EntityContext<'_>,
    site: &EntitySite,
    problems: &mut Problems,
) -> Option<Entity> {
    let mark = problems.len();
    let required = !mode.is_template();
    let label = match &mode {
        EntityMode::Template { .. } => format!("template \"{name}\""),
        _ => format!("entity \"{name}\""),
    };

    if required && name.starts_with("_ferry") {
        problems.push(site.key(
            &[],
            format!("{label} has a reserved name: names starting with _ferry are kept for ferry's bookkeeping; rename it"),
        ));
    }
    if matches!(mode, EntityMode::Entity) && !raw.parameters.is_empty() {
        problems.push(site.key(
            &["parameters"],
            format!("parameters are only allowed in templates; move {label} under templates or remove its parameters"),
        ));
    }
    // A GraphQL entity posts to `http.base_url`, or to `path` under it when
    // one connector serves REST and GraphQL (GitHub's `/graphql`).
    let is_graphql = raw.graphql.is_some();
    let embedded = raw
        .parent
        .as_ref()
        .is_some_and(|parent| parent.embedded.is_some());
    let paginated = !matches!(
        raw.pagination,
        None | Some(crate::spec::raw::RawPagination::None)
    );
    if raw.path.is_none() && !is_graphql && required {
        if !embedded {
            problems.push(site.key(
                &[],
                format!("missing field \"path\" in {label} (or graphql, for a GraphQL API)"),
            ));
        } else if paginated {
            problems.push(site.key(
                &["pagination"],
                format!(
                    "{label} paginates its embedded records but has no path to fetch the rest from; \
                     add path (the request that lists the rest) or remove pagination"
                ),
            ));
        }
    }

    let parent = raw.parent.as_ref();
    let scope = Scope {
        config: context.config,
        broken_config: context.broken_config,
        request: Some(RequestScope {
            entity: name,
            incremental: raw.incremental.is_some(),
            window: raw
                .incremental
                .as_ref()
                .is_some_and(|incremental| incremental.window.is_some()),
            parent: parent.map(|parent| (parent.entity.as_str(), parent.fields.as_slice())),
            parameters: mode.parameter_scope(),
            steps: steps::outputs(&raw.steps),
        }),
    };

    let request = request_plan(raw, is_graphql, site, &scope, problems);
    let graphql = graphql_plan(raw, site, &scope, problems);
    let steps = steps::resolve(&raw.steps, site, &scope, problems);
    let records = records_plan(
        raw.records.as_ref(),
        required,
        &label,
        site,
        &scope,
        problems,
    );
    let primary_key = primary_key(raw, required, &label, site, problems);
    let pagination = pagination::resolve(
        raw.pagination.as_ref(),
        is_graphql,
        site,
        &["pagination"],
        problems,
    );
    let incremental = incremental_plan(raw.incremental.as_ref(), is_graphql, site, problems);
    let fields = fields_plan(raw.fields.as_ref(), primary_key.as_ref(), site, problems);
    let fields = fields.and_then(|fields| {
        let names = field_names(name, raw.fields.as_ref(), context, site, problems)?;
        Some(FieldsPlan { names, ..fields })
    });
    let parent = parent_plan(name, raw, context, site, problems);
    let changes = change_feed(raw.changes.as_ref(), site, &scope, problems);
    let on_status = on_status(&raw.on_status, site, problems);
    let chunk = chunk_plan(raw, site, problems);
    let max_pages = max_pages(raw, site, problems);

    check_body_params(raw, is_graphql, &request, site, problems);

    let (values, templated_parameters) = match &mode {
        EntityMode::Instance {
            values, parameters, ..
        } => {
            let templated = templated_parameters(parameters, values, site, &scope, problems);
            let mut values = values.clone();
            // Optional parameters the flow leaves out render as null.
            for name in parameters.keys() {
                if !values.contains_key(name) {
                    values.insert(name.clone(), Value::Null);
                }
            }
            (values, templated)
        }
        _ => (Map::new(), Some(Vec::new())),
    };
    if !problems.clean_since(mark) || !required {
        return None;
    }
    Some(Entity {
        name: name.to_string(),
        description: raw.description.clone(),
        request: request?,
        graphql: graphql?,
        records: records??,
        primary_key: primary_key??,
        pagination: pagination?,
        incremental: incremental?,
        order: raw.order.unwrap_or(Order::Ascending),
        fields: fields?,
        parent: parent?,
        changes: changes?,
        on_status: on_status?,
        chunk: chunk?,
        max_pages: max_pages?,
        partial_ok: raw.partial_ok,
        mode: raw.mode,
        fingerprint: fingerprint(raw, context.base_url, &values),
        parameters: values,
        templated_parameters: templated_parameters?,
        steps: steps?,
    })
}

/// Compiles the values of parameters declared `templated`, which render
/// for each request like any other request template.
fn templated_parameters(
    declared: &IndexMap<String, ConfigField>,
    values: &Map<String, Value>,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Vec<(String, Template)>> {
    let mark = problems.len();
    let mut compiled = Vec::new();
    for (name, field) in declared {
        let Some(Value::String(text)) = values.get(name).filter(|_| field.templated) else {
            continue;
        };
        let template = match Template::compile(text) {
            Ok(template) => template,
            Err(error) => {
                problems.push(site.parameter(
                    name,
                    format!("invalid template in parameter \"{name}\": {error}"),
                ));
                continue;
            }
        };
        for message in variables::check(&template, scope) {
            problems.push(site.parameter(name, format!("parameter \"{name}\": {message}")));
        }
        compiled.push((name.clone(), template));
    }
    problems.clean_since(mark).then_some(compiled)
}

fn request_plan(
    raw: &RawEntity,
    is_graphql: bool,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<RequestPlan> {
    let path = match &raw.path {
        Some(text) => compile::template(text, site, &["path"], scope, problems),
        // A GraphQL entity posts to `http.base_url` itself.
        None => Template::compile("").ok(),
    };
    let default_method = if raw.body.is_some() || is_graphql {
        HttpMethod::Post
    } else {
        HttpMethod::Get
    };
    let method = raw.method.unwrap_or(default_method);
    if is_graphql && method == HttpMethod::Get {
        problems.push(site.value(
            &["method"],
            "GraphQL requests are sent with POST; remove method: GET",
        ));
    }
    if is_graphql && raw.body.is_some() {
        problems.push(site.key(
            &["body"],
            "a GraphQL entity's body is built from graphql.query and graphql.variables; remove body",
        ));
    }
    let params = compile::template_value_map(&raw.params, site, &["params"], scope, problems);
    let headers = compile::template_map(&raw.headers, site, &["headers"], scope, problems);
    let body = match &raw.body {
        Some(body) => compile::template_value(body, site, &["body"], scope, problems).map(Some),
        None => Some(None),
    };
    Some(RequestPlan {
        method,
        path: path?,
        params: params?,
        headers: headers?,
        body: body?,
    })
}

fn graphql_plan(
    raw: &RawEntity,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Option<GraphqlPlan>> {
    let Some(graphql) = &raw.graphql else {
        return Some(None);
    };
    if graphql.query.trim().is_empty() {
        problems.push(site.value(&["graphql", "query"], "graphql.query must not be empty"));
        return None;
    }
    let variables = match &graphql.variables {
        Some(variables) => {
            compile::template_value(variables, site, &["graphql", "variables"], scope, problems)
                .map(Some)
        }
        None => Some(None),
    };
    Some(Some(GraphqlPlan {
        query: graphql.query.clone(),
        variables: variables?,
        operation_name: graphql.operation_name.clone(),
    }))
}

/// `Some(None)` when a template leaves `records` to the flow.
fn records_plan(
    raw: Option<&RawRecords>,
    required: bool,
    label: &str,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Option<RecordsPlan>> {
    let Some(raw) = raw else {
        if required {
            problems.push(site.key(&[], format!("missing field \"records\" in {label}")));
            return None;
        }
        return Some(None);
    };
    match raw {
        RawRecords::Path(path) => {
            let path = compile::json_path(path, site, &["records"], problems)?;
            Some(Some(RecordsPlan::Path(path)))
        }
        RawRecords::Rows(rows) => {
            let rows_path = compile::json_path(&rows.rows, site, &["records", "rows"], problems);
            let columns = compile::optional_json_path(
                rows.columns.as_ref(),
                site,
                &["records", "columns"],
                problems,
            );
            let schema = schema_source(rows.schema.as_ref(), site, scope, problems);
            if rows.timestamp_unit.is_some() && rows.schema.is_none() {
                problems.push(site.key(
                    &["records", "timestamp_unit"],
                    "records.timestamp_unit applies to rows decoded with a schema; add records.schema or remove it",
                ));
                return None;
            }
            let timestamp_unit = rows.timestamp_unit.unwrap_or_default();
            match (rows_path?, columns?, schema?) {
                (rows, Some(columns), None) => Some(Some(RecordsPlan::Columns { rows, columns })),
                (rows, None, Some(schema)) => Some(Some(RecordsPlan::Schema {
                    rows,
                    schema,
                    timestamp_unit,
                })),
                _ => {
                    problems.push(site.value(
                        &["records"],
                        "records with rows needs exactly one of columns (column names) or schema (a BigQuery table schema)",
                    ));
                    None
                }
            }
        }
    }
}

/// Reads `records.schema`: a template when it contains `{{`, such as
/// `{{steps.table.schema}}`, else a JSONPath into each response.
fn schema_source(
    text: Option<&String>,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Option<SchemaSource>> {
    let Some(text) = text else {
        return Some(None);
    };
    let relative = ["records", "schema"];
    if text.contains("{{") {
        let template = compile::template(text, site, &relative, scope, problems)?;
        return Some(Some(SchemaSource::Template(template)));
    }
    compile::json_path(text, site, &relative, problems)
        .map(|path| Some(SchemaSource::Response(path)))
}

/// `Some(None)` when a template leaves `primary_key` to the flow.
fn primary_key(
    raw: &RawEntity,
    required: bool,
    label: &str,
    site: &EntitySite,
    problems: &mut Problems,
) -> Option<Option<Vec<String>>> {
    let Some(key) = &raw.primary_key else {
        if required {
            problems.push(site.key(
                &[],
                format!("missing field \"primary_key\" in {label} (write primary_key: [] for an append-only table)"),
            ));
            return None;
        }
        return Some(None);
    };
    let fields = key.fields();
    let mut failed = false;
    for (i, field) in fields.iter().enumerate() {
        if field.trim().is_empty() {
            problems.push(site.value(&["primary_key"], "primary_key fields must not be empty"));
            failed = true;
        } else if fields[..i].contains(field) {
            problems.push(site.value(
                &["primary_key"],
                format!("primary_key lists \"{field}\" twice"),
            ));
            failed = true;
        }
    }
    (!failed).then_some(Some(fields))
}

fn incremental_plan(
    raw: Option<&RawIncremental>,
    is_graphql: bool,
    site: &EntitySite,
    problems: &mut Problems,
) -> Option<Option<Incremental>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let mark = problems.len();
    let bare = pagination::bare_location(is_graphql);
    if raw.cursor_field.trim().is_empty() {
        problems.push(site.value(
            &["incremental", "cursor_field"],
            "incremental.cursor_field must not be empty",
        ));
    }
    let param = compile::optional_param_in(
        raw.param.as_ref(),
        bare,
        site,
        &["incremental", "param"],
        problems,
    );
    let window = match &raw.window {
        None => Some(None),
        Some(window) => {
            let relative = ["incremental", "window"];
            let step = compile::duration(&window.step, site, &extend(&relative, "step"), problems);
            let start_param = compile::optional_param_in(
                window.start_param.as_ref(),
                bare,
                site,
                &extend(&relative, "start_param"),
                problems,
            );
            let end_param = compile::optional_param_in(
                window.end_param.as_ref(),
                bare,
                site,
                &extend(&relative, "end_param"),
                problems,
            );
            match (step, start_param, end_param) {
                (Some(step), Some(start_param), Some(end_param)) => Some(Some(Window {
                    step,
                    start_param,
                    end_param,
                })),
                _ => None,
            }
        }
    };
    if !problems.clean_since(mark) {
        return None;
    }
    Some(Some(Incremental {
        cursor_field: raw.cursor_field.clone(),
        param: param?,
        start: raw.start.clone(),
        lookback: std::time::Duration::from_secs(raw.lookback_seconds),
        window: window?,
    }))
}

fn fields_plan(
    raw: Option<&RawFields>,
    primary_key: Option<&Option<Vec<String>>>,
    site: &EntitySite,
    problems: &mut Problems,
) -> Option<FieldsPlan> {
    let Some(raw) = raw else {
        return Some(FieldsPlan::default());
    };
    let mark = problems.len();
    let mut targets: HashMap<&str, &str> = HashMap::new();
    for (field, target) in &raw.rename {
        if target.trim().is_empty() {
            problems.push(site.value(
                &["fields", "rename", field],
                format!("fields.rename: \"{field}\" is renamed to an empty name"),
            ));
        } else if let Some(first) = targets.insert(target, field) {
            problems.push(site.value(
                &["fields", "rename", field],
                format!("fields.rename: \"{first}\" and \"{field}\" are both renamed to \"{target}\"; each column needs its own name"),
            ));
        }
    }
    let key_fields = primary_key.and_then(Option::as_ref);
    for key in key_fields.into_iter().flatten() {
        if let Some(i) = raw.exclude.iter().position(|field| field == key) {
            let index = i.to_string();
            problems.push(site.value(
                &["fields", "exclude", &index],
                format!("fields.exclude removes \"{key}\", which is part of the primary key"),
            ));
        }
        if !raw.include.is_empty() && !raw.include.contains(key) {
            problems.push(site.key(
                &["fields", "include"],
                format!(
                    "fields.include leaves out \"{key}\", which is part of the primary key; add it"
                ),
            ));
        }
    }
    problems.clean_since(mark).then(|| FieldsPlan {
        include: raw.include.clone(),
        exclude: raw.exclude.clone(),
        rename: raw.rename.clone(),
        types: raw.types.clone(),
        names: None,
    })
}

/// Resolves `fields.names`: the lookup entity must be another entity of
/// the connector.
fn field_names(
    name: &str,
    raw: Option<&RawFields>,
    context: &EntityContext<'_>,
    site: &EntitySite,
    problems: &mut Problems,
) -> Option<Option<FieldNames>> {
    let Some(names) = raw.and_then(|fields| fields.names.as_ref()) else {
        return Some(None);
    };
    let mark = problems.len();
    if names.from == name {
        problems.push(site.value(
            &["fields", "names", "from"],
            format!("fields.names.from: entity \"{name}\" cannot look up its own field names"),
        ));
    } else if !context
        .entity_names
        .iter()
        .any(|known| known == &names.from)
    {
        let known: Vec<&str> = context.entity_names.iter().map(String::as_str).collect();
        let hint = suggest::hint(&names.from, &known, "other entities");
        problems.push(site.value(
            &["fields", "names", "from"],
            format!(
                "fields.names.from: unknown entity \"{}\" in connector \"{}\"{hint}",
                names.from, context.connector
            ),
        ));
    }
    for (key, value) in [("id", &names.id), ("name", &names.name)] {
        if value.trim().is_empty() {
            problems.push(site.value(
                &["fields", "names", key],
                format!("fields.names.{key} must name a field of the looked-up records"),
            ));
        }
    }
    problems.clean_since(mark).then(|| {
        Some(FieldNames {
            from: names.from.clone(),
            id: names.id.clone(),
            name: names.name.clone(),
            prefix: names.prefix.clone(),
        })
    })
}

fn parent_plan(
    name: &str,
    raw: &RawEntity,
    context: &EntityContext<'_>,
    site: &EntitySite,
    problems: &mut Problems,
) -> Option<Option<ParentPlan>> {
    let Some(parent) = &raw.parent else {
        return Some(None);
    };
    let mark = problems.len();
    if parent.entity == name {
        problems.push(site.value(
            &["parent", "entity"],
            format!("entity \"{name}\" cannot be its own parent"),
        ));
    } else if !context
        .entity_names
        .iter()
        .any(|known| known == &parent.entity)
    {
        let names: Vec<&str> = context
            .entity_names
            .iter()
            .map(String::as_str)
            .filter(|known| *known != name)
            .collect();
        let hint = suggest::hint(&parent.entity, &names, "other entities");
        problems.push(site.value(
            &["parent", "entity"],
            format!(
                "unknown parent entity \"{}\" in connector \"{}\"{hint}",
                parent.entity, context.connector
            ),
        ));
    }
    for (i, field) in parent.fields.iter().enumerate() {
        if field.trim().is_empty() {
            let index = i.to_string();
            problems.push(site.value(
                &["parent", "fields", &index],
                "parent.fields entries must not be empty",
            ));
        }
    }
    if parent.concurrency == Some(0) {
        problems.push(site.value(
            &["parent", "concurrency"],
            "parent.concurrency must be at least 1, found 0",
        ));
    }
    if raw
        .incremental
        .as_ref()
        .is_some_and(|incremental| incremental.window.is_some())
    {
        problems.push(site.key(
            &["incremental", "window"],
            format!(
                "entity \"{name}\" has a parent, and child entities cannot use incremental.window; \
                 remove the window or filter with incremental.param"
            ),
        ));
    }
    let embedded = compile::optional_json_path(
        parent.embedded.as_ref(),
        site,
        &["parent", "embedded"],
        problems,
    );
    if !problems.clean_since(mark) {
        return None;
    }
    Some(Some(ParentPlan {
        entity: parent.entity.clone(),
        fields: parent.fields.clone(),
        concurrency: parent.concurrency.unwrap_or(1),
        embedded: embedded?,
        scope: parent.scope.unwrap_or_default(),
    }))
}

fn change_feed(
    raw: Option<&RawChanges>,
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Option<ChangeFeed>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let relative = ["changes"];
    let path = compile::template(&raw.path, site, &extend(&relative, "path"), scope, problems);
    let params = compile::template_value_map(
        &raw.params,
        site,
        &extend(&relative, "params"),
        scope,
        problems,
    );
    let records = compile::json_path(&raw.records, site, &extend(&relative, "records"), problems);
    let object = compile::json_path(&raw.object, site, &extend(&relative, "object"), problems);
    if raw.cursor_field.trim().is_empty() {
        problems.push(site.value(
            &["changes", "cursor_field"],
            "changes.cursor_field must not be empty",
        ));
    }
    let param = compile::optional_param(
        raw.param.as_ref(),
        site,
        &extend(&relative, "param"),
        problems,
    );
    let deleted = match &raw.deleted {
        None => Some(None),
        Some(marker) => compile::json_path(
            &marker.path,
            site,
            &["changes", "deleted", "path"],
            problems,
        )
        .map(|path| {
            Some(DeletionMarker {
                path,
                values: marker.values.clone(),
            })
        }),
    };
    let pagination = pagination::resolve(
        raw.pagination.as_ref(),
        false,
        site,
        &["changes", "pagination"],
        problems,
    );
    check_feed_params(raw, site, problems);
    if raw.cursor_field.trim().is_empty() {
        return None;
    }
    Some(Some(ChangeFeed {
        request: RequestPlan {
            method: HttpMethod::Get,
            path: path?,
            params: params?,
            headers: Vec::new(),
            body: None,
        },
        records: records?,
        object: object?,
        cursor_field: raw.cursor_field.clone(),
        param: param?,
        deleted: deleted?,
        max_age: raw.max_age_seconds.map(std::time::Duration::from_secs),
        pagination: pagination?,
        order: raw.order.unwrap_or(Order::Ascending),
    }))
}

fn on_status(
    raw: &IndexMap<String, StatusAction>,
    site: &EntitySite,
    problems: &mut Problems,
) -> Option<IndexMap<u16, StatusAction>> {
    let mut codes = IndexMap::new();
    let mut failed = false;
    for (key, action) in raw {
        match key.trim().parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) => {
                codes.insert(code, *action);
            }
            _ => {
                problems.push(site.key(
                    &["on_status", key],
                    format!("on_status key \"{key}\" is not an HTTP status code (100 to 599)"),
                ));
                failed = true;
            }
        }
    }
    (!failed).then_some(codes)
}

fn chunk_plan(raw: &RawEntity, site: &EntitySite, problems: &mut Problems) -> Option<ChunkPlan> {
    let defaults = ChunkPlan::default();
    let Some(chunk) = &raw.chunk else {
        return Some(defaults);
    };
    let mark = problems.len();
    if chunk.records == Some(0) {
        problems.push(site.value(
            &["chunk", "records"],
            "chunk.records must be at least 1, found 0",
        ));
    }
    let seconds = match chunk.seconds {
        Some(seconds) => compile::positive_seconds(seconds, site, &["chunk", "seconds"], problems)
            .map(|duration| duration.as_secs_f64()),
        None => Some(defaults.seconds),
    };
    if !problems.clean_since(mark) {
        return None;
    }
    Some(ChunkPlan {
        records: chunk.records.unwrap_or(defaults.records),
        seconds: seconds?,
    })
}

const DEFAULT_MAX_PAGES: u64 = 1_000_000;

fn max_pages(raw: &RawEntity, site: &EntitySite, problems: &mut Problems) -> Option<u64> {
    match raw.max_pages {
        Some(0) => {
            problems.push(site.value(&["max_pages"], "max_pages must be at least 1, found 0"));
            None
        }
        Some(pages) => Some(pages),
        None => Some(DEFAULT_MAX_PAGES),
    }
}

/// Reports change feed parameters placed in the body or the variables,
/// because the feed is a REST GET without either.
fn check_feed_params(raw: &RawChanges, site: &EntitySite, problems: &mut Problems) {
    for (relative, param) in pagination::feed_params(raw) {
        let relative: Vec<&str> = relative.iter().map(String::as_str).collect();
        let problem = match param.location {
            ParamLocation::Query | ParamLocation::Header => continue,
            ParamLocation::Body => "in the body, but a change feed request is a GET without a body",
            ParamLocation::Variables => {
                "in the variables, but a change feed request is a REST GET without variables"
            }
        };
        problems.push(site.value(
            &relative,
            format!(
                "{} is placed {problem}; use in: query or in: header",
                site.dotted(&relative)
            ),
        ));
    }
}

/// Reports parameters placed `in: variables` on a REST entity, and `in:
/// body` when the request is a GET without a JSON body.
fn check_body_params(
    raw: &RawEntity,
    is_graphql: bool,
    request: &Option<RequestPlan>,
    site: &EntitySite,
    problems: &mut Problems,
) {
    let Some(request) = request else { return };
    for (relative, param) in pagination::placed_params(raw) {
        if param.location == ParamLocation::Variables && !is_graphql {
            let relative: Vec<&str> = relative.iter().map(String::as_str).collect();
            problems.push(site.value(
                &relative,
                format!(
                    "{} is placed in the variables, which only GraphQL entities have; use in: query, body or header",
                    site.dotted(&relative)
                ),
            ));
        }
    }
    if request.method == HttpMethod::Post || is_graphql {
        return;
    }
    for (relative, param) in pagination::placed_params(raw) {
        if param.location == ParamLocation::Body {
            let relative: Vec<&str> = relative.iter().map(String::as_str).collect();
            problems.push(site.value(
                &relative,
                format!(
                    "{} is placed in the body, but the request is a GET without a body; set method: POST or a body",
                    site.dotted(&relative)
                ),
            ));
        }
    }
}
