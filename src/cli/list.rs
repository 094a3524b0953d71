//! `ferry list`: connectors, a connector's entities, flows.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::ConfigArgs;
use super::output::{Failure, print_json};
use crate::spec::plan::{Catalog, Origin, Trigger};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(subcommand)]
    what: Option<ListWhat>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl ListArgs {
    /// Returns whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }
}

#[derive(Debug, Subcommand)]
enum ListWhat {
    /// Built-in connectors and those in the config folder (the default).
    Connectors,
    /// Entities and templates of one connector.
    Entities { connector: String },
    /// Flows of the config folder.
    Flows,
}

pub fn execute(args: ListArgs) -> Result<ExitCode, Failure> {
    let loaded = args.config.load()?;
    let catalog = &loaded.catalog;
    match args.what.unwrap_or(ListWhat::Connectors) {
        ListWhat::Connectors => connectors(catalog, args.json),
        ListWhat::Entities { connector } => entities(catalog, &connector, args.json)?,
        ListWhat::Flows => flows(catalog, args.json),
    }
    Ok(ExitCode::SUCCESS)
}

fn connectors(catalog: &Catalog, json: bool) {
    if json {
        let rows: Vec<_> = catalog
            .connectors
            .values()
            .map(|connector| {
                json!({
                    "name": connector.name,
                    "version": connector.version,
                    "description": connector.description,
                    "origin": connector.origin.to_string(),
                    "entities": connector.entities.keys().collect::<Vec<_>>(),
                    "templates": connector.templates.keys().collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!(rows));
        return;
    }
    for connector in catalog.connectors.values() {
        let origin = match &connector.origin {
            Origin::File { path, .. } => path.clone(),
            other => other.to_string(),
        };
        println!(
            "{:<16} {:>3} entities  {:<10} {}",
            connector.name,
            connector.entities.len(),
            origin,
            connector.description.as_deref().unwrap_or("")
        );
    }
}

fn entities(catalog: &Catalog, name: &str, json: bool) -> Result<(), Failure> {
    let connector = catalog.connectors.get(name).ok_or_else(|| {
        let known: Vec<&str> = catalog.connectors.keys().map(String::as_str).collect();
        Failure::usage(format!(
            "unknown connector {name:?}; known connectors: {}",
            known.join(", ")
        ))
    })?;
    if json {
        let entities: Vec<_> = connector
            .entities
            .values()
            .map(|entity| {
                json!({
                    "name": entity.name,
                    "description": entity.description,
                    "incremental": entity.incremental.is_some() || entity.changes.is_some(),
                    "primary_key": entity.primary_key,
                    "parent": entity.parent.as_ref().map(|parent| &parent.entity),
                })
            })
            .collect();
        let templates: Vec<_> = connector
            .templates
            .values()
            .map(|template| {
                json!({
                    "name": template.name,
                    "description": template.description,
                    "parameters": template.parameters.keys().collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!({"connector": name, "entities": entities, "templates": templates}));
        return Ok(());
    }
    for entity in connector.entities.values() {
        let incremental = if entity.changes.is_some() {
            "incremental (change feed)"
        } else if entity.incremental.is_some() {
            "incremental"
        } else {
            "full"
        };
        println!(
            "{:<24} {:<26} {}",
            entity.name,
            incremental,
            entity.description.as_deref().unwrap_or("")
        );
    }
    for template in connector.templates.values() {
        let parameters: Vec<&str> = template.parameters.keys().map(String::as_str).collect();
        println!(
            "{:<24} {:<26} {}",
            template.name,
            format!("template ({})", parameters.join(", ")),
            template.description.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn flows(catalog: &Catalog, json: bool) {
    if json {
        let rows: Vec<_> = catalog
            .flows
            .values()
            .map(|flow| {
                json!({
                    "name": flow.name,
                    "connector": flow.connector.name,
                    "destination": flow.destination.display(),
                    "schema": flow.schema,
                    "entities": flow.entities.iter().map(|entity| &entity.name).collect::<Vec<_>>(),
                    "schedule": flow.trigger.as_ref().map(describe_trigger),
                    "origin": flow.origin.to_string(),
                })
            })
            .collect();
        print_json(&json!(rows));
        return;
    }
    for flow in catalog.flows.values() {
        println!(
            "{:<20} {:<12} {:<40} {}",
            flow.name,
            flow.connector.name,
            flow.destination.display(),
            flow.trigger
                .as_ref()
                .map(describe_trigger)
                .unwrap_or_else(|| "manual".to_string())
        );
    }
}

pub fn describe_trigger(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Cron {
            expression,
            timezone,
            ..
        } => format!("cron {expression} ({timezone})"),
        Trigger::Every(interval) => format!("every {}", humantime::format_duration(*interval)),
    }
}
