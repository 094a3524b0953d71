//! Config files: raw YAML documents resolved into a checked plan.
//!
//! `load` reads every `*.yaml`/`*.yml` file under a folder (recursively,
//! several documents per file), adds the built-in connectors, and either
//! returns the whole [`plan::Catalog`] or every problem found, each located
//! as `path:line:column`.

pub mod builtin;
pub mod diagnostic;
mod env;
mod fingerprint;
pub mod plan;
pub mod raw;
mod resolve;
pub mod schema;
mod suggest;
mod yaml;

use std::path::Path;

pub use diagnostic::Diagnostic;
use plan::{Catalog, Flow};
pub use resolve::{COMMAND_LINE, DEFAULT_DESTINATION};

/// Reads environment variables for `${VAR}` expansion; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A loaded catalog and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub catalog: Catalog,
    pub warnings: Vec<Diagnostic>,
}

/// Loads and resolves every file under `dir`, with the process environment.
pub fn load(dir: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    load_with_env(dir, &|name| std::env::var(name).ok())
}

/// Loads the built-in connectors alone, for commands run without a config folder.
pub fn load_builtin() -> Result<Loaded, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let built_in = builtin::documents(&mut problems);
    let mut collected = resolve::Problems { list: problems };
    let env: EnvLookup<'_> = &|name| std::env::var(name).ok();
    let resolved = resolve::resolve_documents(&built_in, &[], env, &mut collected);
    finish(collected.list).map(|()| Loaded {
        catalog: resolved.catalog,
        warnings: resolved.warnings,
    })
}

/// Loads and resolves every file under `dir`.
pub fn load_with_env(dir: &Path, env: EnvLookup<'_>) -> Result<Loaded, Vec<Diagnostic>> {
    if !dir.is_dir() {
        let message = match dir.exists() {
            true => "config folder is a file, not a folder; pass --config DIR with a folder",
            false => "config folder not found; create it, or pass --config DIR",
        };
        return Err(vec![Diagnostic {
            path: dir.display().to_string(),
            line: 0,
            column: 0,
            message: message.to_string(),
        }]);
    }
    let (files, mut problems) = yaml::discover(dir);
    let built_in = builtin::documents(&mut problems);
    let mut documents = Vec::new();
    for file in &files {
        let (read, found) = yaml::read_file(file);
        documents.extend(read);
        problems.extend(found);
    }
    let mut collected = resolve::Problems { list: problems };
    let resolved = resolve::resolve_documents(&built_in, &documents, env, &mut collected);
    finish(collected.list).map(|()| Loaded {
        catalog: resolved.catalog,
        warnings: resolved.warnings,
    })
}

/// Sorts problems by place and masks any registered secret in them, as a
/// last guard: messages are written not to contain secret values at all.
fn finish(mut problems: Vec<Diagnostic>) -> Result<(), Vec<Diagnostic>> {
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    problems.dedup();
    for problem in &mut problems {
        problem.message = crate::redact::redact(&problem.message);
    }
    Err(problems)
}

/// Builds a flow from the command line (`ferry sync -s CONNECTOR -d URL
/// --set key=value`): named after the connector, every entity unless
/// `entities` names some (their parents are added). Each setting is text
/// converted to its key's declared type (JSON for objects and lists), and
/// may use `${VAR}` like a flow file. Without a destination the flow writes
/// to [`DEFAULT_DESTINATION`]. Diagnostics have the path [`COMMAND_LINE`].
pub fn adhoc_flow(
    catalog: &Catalog,
    connector: &str,
    destination: Option<&str>,
    settings: &[(String, String)],
    entities: &[String],
    env: EnvLookup<'_>,
) -> Result<Flow, Vec<Diagnostic>> {
    let config = settings
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone())))
        .collect();
    let raw = raw::RawFlow {
        kind: raw::Kind::Flow,
        name: connector.to_string(),
        description: None,
        source: raw::RawSource {
            connector: connector.to_string(),
            config,
        },
        destination: destination.map(str::to_string),
        schema: None,
        entities: (!entities.is_empty()).then(|| raw::RawFlowEntities::List(entities.to_vec())),
        schedule: None,
        every: None,
        timezone: None,
        mode: None,
        deleted_rows: None,
        webhook: None,
        alert: None,
    };
    resolve::resolve_command_line_flow(&raw, catalog, env)
        .map_err(|problems| finish(problems).err().unwrap_or_default())
}
