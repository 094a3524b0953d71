//! `ferry preview` and `ferry check-connection`: one request, nothing written.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use clap::Args;
use serde_json::{Value, json};

use super::ConfigArgs;
use super::output::{Failure, print_json};
use crate::engine::{self, FetchContext, HttpClient};
use crate::sync::run::target_for;

#[derive(Debug, Args)]
pub struct PreviewArgs {
    connector: String,
    entity: String,
    /// Connector config value, as key=value; repeat for several.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Records to print.
    #[arg(long, default_value_t = 5)]
    limit: usize,
    #[command(flatten)]
    config: ConfigArgs,
    #[arg(long)]
    json: bool,
}

impl PreviewArgs {
    /// Returns whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Splits `key=value` arguments.
pub fn parse_settings(settings: &[String]) -> Result<Vec<(String, String)>, Failure> {
    settings
        .iter()
        .map(|setting| {
            setting
                .split_once('=')
                .map(|(key, value)| (key.trim().to_string(), value.to_string()))
                .ok_or_else(|| {
                    Failure::usage(format!("invalid --set {setting:?}: expected KEY=VALUE"))
                })
        })
        .collect()
}

pub async fn execute(args: PreviewArgs) -> Result<ExitCode, Failure> {
    let loaded = args.config.load()?;
    let settings = parse_settings(&args.settings)?;
    let flow = crate::spec::adhoc_flow(
        &loaded.catalog,
        &args.connector,
        None,
        &settings,
        std::slice::from_ref(&args.entity),
        &|name| std::env::var(name).ok(),
    )
    .map_err(|diagnostics| Failure::diagnostics(&diagnostics))?;
    let flow = Arc::new(flow);
    let entity = flow.entity(&args.entity).cloned().ok_or_else(|| {
        Failure::usage(format!(
            "connector {} has no entity {:?}",
            args.connector, args.entity
        ))
    })?;

    let client = Arc::new(HttpClient::new(&flow).map_err(|error| Failure::run(error.message))?);
    let now = Utc::now();
    let start = engine::initial_position(&entity, None, now, false);
    let context = FetchContext {
        flow: flow.clone(),
        entity: entity.clone(),
        client,
        now,
        parents: None,
    };
    let page = engine::fetch_first_page(&context, start)
        .await
        .map_err(|error| Failure::run(error.message))?;

    let target = target_for(&flow, &entity, false);
    let columns =
        crate::destination::duckdb::preview_columns(&page.records, &target.declared_types);
    let shown: Vec<Value> = page
        .records
        .iter()
        .take(args.limit)
        .map(|record| Value::Object(record.clone()))
        .collect();
    if args.json {
        print_json(&json!({
            "connector": args.connector,
            "entity": args.entity,
            "records_in_page": page.records.len(),
            "more_pages": page.next.is_some(),
            "records": shown,
            "columns": columns.iter().map(|(name, sql_type)| json!({"name": name, "type": sql_type})).collect::<Vec<_>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}.{}: {} records in the first page{}",
        args.connector,
        args.entity,
        page.records.len(),
        if page.next.is_some() {
            ", more pages follow"
        } else {
            ""
        }
    );
    for record in &shown {
        println!("{}", crate::redact::redact(&record.to_string()));
    }
    println!();
    println!("columns (as created in DuckDB):");
    for (name, sql_type) in &columns {
        println!("  {name:<32} {sql_type}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn check_connection(flow: &str, config: &ConfigArgs) -> Result<ExitCode, Failure> {
    let loaded = config.load()?;
    let flow = loaded.catalog.flows.get(flow).cloned().ok_or_else(|| {
        Failure::usage(format!(
            "unknown flow {flow:?} in {}; known flows: {}",
            config.folder().display(),
            loaded
                .catalog
                .flows
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    engine::check_connection(&flow).await.map_err(|error| {
        Failure::run(format!(
            "{}: connection check failed: {}",
            flow.name, error.message
        ))
    })?;
    println!("{}: connection to {} works", flow.name, flow.connector.name);
    Ok(ExitCode::SUCCESS)
}
