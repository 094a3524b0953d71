//! `ferry state`: inspect and change saved entity state.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::ConfigArgs;
use super::output::{Failure, print_json};
use crate::destination::{self, Destination};
use crate::spec::plan::{DestinationUrl, Flow};
use crate::sync::EntityState;
use crate::sync::auth_state::{self, AUTH_ENTITY};

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    action: StateAction,
}

impl StateArgs {
    /// Returns whether `--json` was given (`state show` has it).
    pub fn json(&self) -> bool {
        matches!(self.action, StateAction::Show { json: true, .. })
    }
}

#[derive(Debug, Args)]
struct Target {
    /// Flow name (for `sync -s CONNECTOR`, the connector's name).
    flow: String,
    #[command(flatten)]
    config: ConfigArgs,
    /// Destination URL, for state written by `ferry sync -s CONNECTOR -d URL`.
    #[arg(long, short = 'd')]
    destination: Option<String>,
}

#[derive(Debug, Subcommand)]
enum StateAction {
    /// Print the saved state of a flow's entities.
    Show {
        #[command(flatten)]
        target: Target,
        entity: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Forget the saved state: the next run reads everything again.
    Reset {
        #[command(flatten)]
        target: Target,
        entity: Option<String>,
    },
    /// Set the cursor the next run starts from, for a backfill.
    Set {
        #[command(flatten)]
        target: Target,
        entity: String,
        /// New cursor value, in the form the API uses (ISO-8601 time, number, or text).
        #[arg(long)]
        cursor: String,
    },
}

pub async fn execute(args: StateArgs) -> Result<ExitCode, Failure> {
    match args.action {
        StateAction::Show {
            target,
            entity,
            json,
        } => {
            let (flow, mut destination) = open(&target).await?;
            check_entity(flow.as_ref(), entity.as_deref())?;
            let rows = destination
                .list_state(Some(&target.flow))
                .await
                .map_err(|error| Failure::run(error.to_string()))?;
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|row| entity.as_ref().is_none_or(|name| &row.entity == name))
                .map(|mut row| {
                    if row.entity == AUTH_ENTITY {
                        auth_state::mask(&mut row.state);
                    }
                    row
                })
                .collect();
            if json {
                print_json(&json!(rows));
            } else if rows.is_empty() {
                println!("no saved state for {}", target.flow);
            } else {
                for row in rows {
                    println!(
                        "{}/{} (updated {}): {}",
                        row.flow,
                        row.entity,
                        row.updated_at.to_rfc3339(),
                        row.state
                    );
                }
            }
        }
        StateAction::Reset { target, entity } => {
            let (flow, mut destination) = open(&target).await?;
            check_entity(flow.as_ref(), entity.as_deref())?;
            let entities: Vec<String> = match entity {
                Some(entity) => vec![entity],
                None => destination
                    .list_state(Some(&target.flow))
                    .await
                    .map_err(|error| Failure::run(error.to_string()))?
                    .into_iter()
                    .map(|row| row.entity)
                    // A rotated refresh token is not sync state: forgetting
                    // it would leave only the configured, invalidated one.
                    .filter(|entity| entity != AUTH_ENTITY)
                    .collect(),
            };
            for entity in &entities {
                destination
                    .write_state(&target.flow, entity, None)
                    .await
                    .map_err(|error| Failure::run(error.to_string()))?;
                println!("reset {}/{entity}", target.flow);
            }
            if entities.is_empty() {
                println!("no saved state for {}", target.flow);
            }
        }
        StateAction::Set {
            target,
            entity,
            cursor,
        } => {
            let (flow, mut destination) = open(&target).await?;
            check_entity(flow.as_ref(), Some(&entity))?;
            let stored = destination
                .read_state(&target.flow, &entity)
                .await
                .map_err(|error| Failure::run(error.to_string()))?;
            let mut state = match stored {
                Some(value) => EntityState::from_value(value).unwrap_or_default(),
                None => EntityState::default(),
            };
            let numeric_form = state.cursor.as_ref().is_some_and(Value::is_number)
                || flow
                    .as_ref()
                    .and_then(|flow| flow.entity(&entity))
                    .and_then(|entity| entity.incremental.as_ref())
                    .and_then(|incremental| incremental.start.as_ref())
                    .is_some_and(Value::is_number);
            state.cursor = Some(cursor_value(&cursor, numeric_form));
            state.pending_cursor = None;
            state.resume = None;
            destination
                .write_state(&target.flow, &entity, Some(&state.to_value()))
                .await
                .map_err(|error| Failure::run(error.to_string()))?;
            println!(
                "{}/{entity}: the next run starts from cursor {cursor}",
                target.flow
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Numbers stay numbers when the cursor is numeric, so the API receives
/// the form it sent.
fn cursor_value(text: &str, numeric_form: bool) -> Value {
    if numeric_form && let Ok(number) = serde_json::from_str::<serde_json::Number>(text) {
        return Value::Number(number);
    }
    Value::String(text.to_string())
}

async fn open(
    target: &Target,
) -> Result<(Option<std::sync::Arc<Flow>>, Box<dyn Destination>), Failure> {
    let (flow, url) = match &target.destination {
        Some(url) => (None, parse_destination(url)?),
        None => {
            let loaded = target.config.load()?;
            let flow = loaded.catalog.flows.get(&target.flow).cloned().ok_or_else(|| {
                Failure::usage(format!(
                    "unknown flow {:?} in {}; for state written by `ferry sync -s`, pass the destination with -d URL",
                    target.flow,
                    target.config.folder().display()
                ))
            })?;
            let url = flow.destination.clone();
            (Some(flow), url)
        }
    };
    let destination = destination::open(&url)
        .await
        .map_err(|error| Failure::run(error.to_string()))?;
    Ok((flow, destination))
}

fn check_entity(flow: Option<&std::sync::Arc<Flow>>, entity: Option<&str>) -> Result<(), Failure> {
    let (Some(flow), Some(entity)) = (flow, entity) else {
        return Ok(());
    };
    if flow.entity(entity).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = flow
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    Err(Failure::usage(format!(
        "flow {} has no entity {entity:?}; its entities: {}",
        flow.name,
        known.join(", ")
    )))
}

pub fn parse_destination(url: &str) -> Result<DestinationUrl, Failure> {
    if let Some(path) = url.strip_prefix("duckdb://") {
        return Ok(DestinationUrl::DuckDb {
            path: path.to_string(),
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DestinationUrl::Postgres {
            url: url.to_string(),
        });
    }
    Err(Failure::usage(format!(
        "invalid destination {:?}: expected duckdb://PATH or postgres://USER@HOST/DATABASE",
        crate::redact::url_without_password(url)
    )))
}
