//! Raw documents into the resolved [`Catalog`]: every connector and flow
//! checked, every problem collected.
//!
//! Connectors resolve first (built-in ones, then files), so that flows can
//! be checked against them; then flows; then checks across flows.
//! A connector with problems is left out of the catalog but remembered, so
//! the flows that use it do not also report it as unknown.

mod compile;
mod connector;
mod destination;
mod entity;
pub(crate) mod flow;
mod flow_entities;
mod names;
mod pagination;
mod schedule;
pub(crate) mod site;
mod starts;
mod steps;
mod tables;
mod urls;
mod values;
mod variables;
mod webhooks;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

pub use compile::Problems;
use connector::{ConnectorSource, resolve_connector};
pub use destination::DEFAULT_DESTINATION;
use flow::{FlowContext, FlowSource, resolve_flow};
use site::Site;

use super::EnvLookup;
use super::diagnostic::Diagnostic;
use super::plan::{Catalog, Connector, DestinationUrl, Flow, Origin};
use super::yaml::{Body, Document};

/// The result of resolving every document.
pub struct Resolved {
    pub catalog: Catalog,
    pub warnings: Vec<Diagnostic>,
}

/// Resolves built-in connector documents and the folder's documents.
pub fn resolve_documents(
    built_in: &[Document],
    documents: &[Document],
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Resolved {
    let mut warnings = Vec::new();
    let (connectors, broken) = resolve_connectors(built_in, documents, problems, &mut warnings);
    let context = FlowContext {
        connectors: &connectors,
        broken: &broken,
        env,
    };
    let flows = resolve_flows(documents, &context, problems);
    warn_file_named_like_schema(&flows, &mut warnings);
    tables::check_tables(&flows, problems);
    tables::check_postgres_names(&flows, problems);
    let flows = flows
        .into_iter()
        .map(|(flow, _)| (flow.name.clone(), flow))
        .collect();
    Resolved {
        catalog: Catalog { connectors, flows },
        warnings,
    }
}

/// Warns about a DuckDB file named like its flow's schema. DuckDB names
/// the database after the file, so in `shop.duckdb` the query `select *
/// from shop.orders` fails as an ambiguous reference.
fn warn_file_named_like_schema(flows: &[(Arc<Flow>, Site)], warnings: &mut Vec<Diagnostic>) {
    for (flow, site) in flows {
        let DestinationUrl::DuckDb { path } = &flow.destination else {
            continue;
        };
        let Some(stem) = Path::new(path).file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if !stem.eq_ignore_ascii_case(&flow.schema) {
            continue;
        }
        let schema = &flow.schema;
        warnings.push(site.value(
            &["destination"],
            format!(
                "the DuckDB file {path} has the name of schema \"{schema}\", so queries must \
                 name its tables as {stem}.{schema}.TABLE because {schema}.TABLE is ambiguous; \
                 give the file another name, such as duckdb://./warehouse.duckdb"
            ),
        ));
    }
}

fn site_of(document: &Document) -> Site {
    Site::new(document.file.clone(), document.index.clone())
}

/// `file:line:column` of a document's `name` value.
fn name_location(document: &Document) -> String {
    let at = document
        .index
        .value_position(&["name"])
        .map(|at| format!("{}:{}", at.line, at.column))
        .unwrap_or_else(|| document.line.to_string());
    format!("{}:{at}", document.file)
}

fn resolve_connectors(
    built_in: &[Document],
    documents: &[Document],
    problems: &mut Problems,
    warnings: &mut Vec<Diagnostic>,
) -> (IndexMap<String, Arc<Connector>>, HashSet<String>) {
    let mut connectors = IndexMap::new();
    let mut broken = HashSet::new();
    let built_in_names: HashSet<String> = built_in
        .iter()
        .filter_map(|document| match &document.body {
            Body::Connector(parsed) => parsed.name.clone(),
            Body::Flow(_) => None,
        })
        .collect();
    // Where each file connector name was first defined.
    let mut defined: HashMap<String, String> = HashMap::new();
    for (document, is_built_in) in built_in
        .iter()
        .map(|document| (document, true))
        .chain(documents.iter().map(|document| (document, false)))
    {
        let Body::Connector(parsed) = &document.body else {
            continue;
        };
        let site = site_of(document);
        let Some(name) = parsed.name.clone() else {
            // serde has reported the missing name.
            continue;
        };
        if !is_built_in {
            if let Some(first) = defined.get(&name) {
                problems.push(site.value(
                    &["name"],
                    format!("duplicate connector \"{name}\"; it is already defined at {first}"),
                ));
                continue;
            }
            defined.insert(name.clone(), name_location(document));
            if built_in_names.contains(&name) {
                warnings.push(site.value(
                    &["name"],
                    format!(
                        "connector \"{name}\" overrides the built-in connector of the same name"
                    ),
                ));
                connectors.shift_remove(&name);
                broken.remove(&name);
            }
        }
        let Some(raw) = &parsed.raw else {
            broken.insert(name);
            continue;
        };
        let origin = match is_built_in {
            true => Origin::BuiltIn,
            false => Origin::File {
                path: document.file.to_string(),
                line: document.line,
            },
        };
        let source = ConnectorSource {
            raw,
            site,
            pruned: &parsed.pruned,
            origin,
        };
        match resolve_connector(&source, problems) {
            Some(connector) => {
                connectors.insert(name, Arc::new(connector));
            }
            None => {
                broken.insert(name);
            }
        }
    }
    (connectors, broken)
}

fn resolve_flows(
    documents: &[Document],
    context: &FlowContext<'_>,
    problems: &mut Problems,
) -> Vec<(Arc<Flow>, Site)> {
    let mut flows: Vec<(Arc<Flow>, Site)> = Vec::new();
    let mut defined: HashMap<String, String> = HashMap::new();
    for document in documents {
        let Body::Flow(parsed) = &document.body else {
            continue;
        };
        let site = site_of(document);
        if let Some(name) = &parsed.name {
            if let Some(first) = defined.get(name) {
                problems.push(site.value(
                    &["name"],
                    format!("duplicate flow \"{name}\"; it is already defined at {first}"),
                ));
                continue;
            }
            defined.insert(name.clone(), name_location(document));
        }
        let Some(raw) = &parsed.raw else {
            continue;
        };
        let source = FlowSource {
            raw,
            site: site.clone(),
            origin: Origin::File {
                path: document.file.to_string(),
                line: document.line,
            },
            base_dir: Path::new(&*document.file).parent().map(Path::to_path_buf),
            config_from_text: false,
        };
        if let Some(flow) = resolve_flow(&source, context, problems) {
            flows.push((Arc::new(flow), site));
        }
    }
    flows
}

/// Resolves a flow given on the command line, against a loaded catalog.
pub fn resolve_command_line_flow(
    raw: &super::raw::RawFlow,
    catalog: &Catalog,
    env: EnvLookup<'_>,
) -> Result<Flow, Vec<Diagnostic>> {
    let mut problems = Problems::default();
    let broken = HashSet::new();
    let context = FlowContext {
        connectors: &catalog.connectors,
        broken: &broken,
        env,
    };
    let site = Site::new(Arc::from(COMMAND_LINE), Arc::default());
    let source = FlowSource {
        raw,
        site,
        origin: Origin::CommandLine,
        base_dir: None,
        config_from_text: true,
    };
    match resolve_flow(&source, &context, &mut problems) {
        Some(flow) if problems.list.is_empty() => Ok(flow),
        _ => Err(problems.list),
    }
}

/// How diagnostics about the command line name their source.
pub const COMMAND_LINE: &str = "<command line>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse_source;

    const CONNECTOR: &str = "kind: Connector
name: demo
http: { base_url: \"https://a.example\" }
entities:
  items: { path: /items, records: \"$[*]\", primary_key: [id] }
";

    fn resolve(built_in_text: &str, file_text: Option<&str>) -> (Resolved, Vec<String>) {
        let (built_in, mut found) = parse_source("<built-in>/demo.yaml", built_in_text);
        let mut documents = Vec::new();
        if let Some(text) = file_text {
            let (parsed, more) = parse_source("demo.yaml", text);
            documents = parsed;
            found.extend(more);
        }
        let mut problems = Problems { list: found };
        let resolved = resolve_documents(&built_in, &documents, &|_| None, &mut problems);
        let shown = problems.list.iter().map(ToString::to_string).collect();
        (resolved, shown)
    }

    #[test]
    fn file_connector_overrides_built_in() {
        let file_text = CONNECTOR.replace("https://a.example", "https://b.example");
        let (resolved, problems) = resolve(CONNECTOR, Some(&file_text));
        assert!(problems.is_empty(), "{problems:?}");
        let warnings: Vec<String> = resolved.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            vec![
                "demo.yaml:2:7: connector \"demo\" overrides the built-in connector of the same name"
            ]
        );
        let connector = &resolved.catalog.connectors["demo"];
        assert_eq!(connector.http.base_url.source(), "https://b.example");
        assert_eq!(
            connector.origin,
            Origin::File {
                path: "demo.yaml".to_string(),
                line: 1
            }
        );
    }

    #[test]
    fn duckdb_file_named_like_schema_warns() {
        let flow = "kind: Flow\nname: f\nsource: { connector: demo }\ndestination: duckdb://./Demo.duckdb\n";
        let (resolved, problems) = resolve(CONNECTOR, Some(flow));
        assert!(problems.is_empty(), "{problems:?}");
        let warnings: Vec<String> = resolved.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            vec![
                "demo.yaml:4:14: the DuckDB file ./Demo.duckdb has the name of schema \"demo\", so queries must name its tables as Demo.demo.TABLE because demo.TABLE is ambiguous; give the file another name, such as duckdb://./warehouse.duckdb"
            ]
        );

        let other = flow.replace("Demo.duckdb", "warehouse.duckdb");
        let (resolved, problems) = resolve(CONNECTOR, Some(&other));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
    }

    #[test]
    fn built_in_connector_has_built_in_origin() {
        let (resolved, problems) = resolve(CONNECTOR, None);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(resolved.catalog.connectors["demo"].origin, Origin::BuiltIn);
    }

    #[test]
    fn built_in_problem_names_built_in_path() {
        let broken = CONNECTOR.replace("path: /items", "path: \"{{config.x}}\"");
        let (resolved, problems) = resolve(&broken, None);
        assert!(resolved.catalog.connectors.is_empty());
        assert_eq!(
            problems,
            vec![
                "<built-in>/demo.yaml:5:18: {{config.x}} is not a declared config key; there are no config keys declared"
            ]
        );
    }
}
