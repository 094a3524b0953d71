//! `ferry sync` with no arguments on a terminal: ask for the connector, its
//! config, the destination and the entities, run, and print the command
//! that does the same without questions.

use std::process::ExitCode;
use std::sync::Arc;

use dialoguer::{Input, MultiSelect, Password, Select, theme::ColorfulTheme};

use super::logging::Logs;
use super::output::Failure;
use super::sync::{print_report, run};
use crate::spec::plan::Catalog;
use crate::template::value_to_text;

pub async fn execute(catalog: &Catalog, logs: Logs) -> Result<ExitCode, Failure> {
    let theme = ColorfulTheme::default();
    let names: Vec<&String> = catalog.connectors.keys().collect();
    if names.is_empty() {
        return Err(Failure::usage("no connectors are available"));
    }
    let labels: Vec<String> = catalog
        .connectors
        .values()
        .map(|connector| match &connector.description {
            Some(description) => format!("{} — {description}", connector.name),
            None => connector.name.clone(),
        })
        .collect();
    let choice = Select::with_theme(&theme)
        .with_prompt("Connector")
        .items(&labels)
        .default(0)
        .interact()
        .map_err(prompt_failed)?;
    let connector = &catalog.connectors[names[choice]];

    let mut settings: Vec<(String, String)> = Vec::new();
    let mut shown_settings: Vec<String> = Vec::new();
    for (key, field) in &connector.config {
        let prompt = match &field.description {
            Some(description) => format!("{key} ({description})"),
            None => key.clone(),
        };
        let value = if field.secret {
            Password::with_theme(&theme)
                .with_prompt(&prompt)
                .allow_empty_password(!field.required)
                .interact()
                .map_err(prompt_failed)?
        } else {
            let mut input = Input::<String>::with_theme(&theme).with_prompt(&prompt);
            if let Some(default) = &field.default {
                input = input.default(value_to_text(default));
            }
            input
                .allow_empty(!field.required)
                .interact_text()
                .map_err(prompt_failed)?
        };
        if value.is_empty() {
            continue;
        }
        if field.secret {
            crate::redact::register(&value);
            let variable = format!("{}_{}", connector.name, key)
                .to_uppercase()
                .replace('-', "_");
            shown_settings.push(format!("--set {key}=\"${variable}\""));
        } else if field.default.as_ref().map(value_to_text).as_deref() != Some(value.as_str()) {
            shown_settings.push(format!("--set {key}={}", shell_quote(&value)));
        }
        settings.push((key.clone(), value));
    }

    let destination: String = Input::with_theme(&theme)
        .with_prompt("Destination")
        .default("duckdb://./ferry.duckdb".to_string())
        .interact_text()
        .map_err(prompt_failed)?;

    let entity_names: Vec<&String> = connector.entities.keys().collect();
    let picked = MultiSelect::with_theme(&theme)
        .with_prompt("Entities (space toggles, enter confirms)")
        .items(&entity_names)
        .defaults(&vec![true; entity_names.len()])
        .interact()
        .map_err(prompt_failed)?;
    let entities: Vec<String> = if picked.len() == entity_names.len() {
        Vec::new()
    } else {
        picked
            .iter()
            .map(|index| entity_names[*index].clone())
            .collect()
    };

    let flow = crate::spec::adhoc_flow(
        catalog,
        &connector.name,
        Some(&destination),
        &settings,
        &entities,
        &|name| std::env::var(name).ok(),
    )
    .map_err(|diagnostics| Failure::diagnostics(&diagnostics))?;

    let mut command = format!(
        "ferry sync -s {} -d {}",
        connector.name,
        shell_quote(&crate::redact::url_without_password(&destination))
    );
    if !entities.is_empty() {
        command.push_str(&format!(" -e {}", entities.join(",")));
    }
    for setting in &shown_settings {
        command.push(' ');
        command.push_str(setting);
    }
    eprintln!("The same sync without questions:\n  {command}");
    let report = run(Arc::new(flow), &[], false, &logs).await;
    Ok(print_report(&report, false))
}

fn prompt_failed(error: dialoguer::Error) -> Failure {
    Failure::usage(format!("prompt failed: {error}"))
}

fn shell_quote(text: &str) -> String {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@=,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
