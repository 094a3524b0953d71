//! `ferry sync`: run a flow's entities once, in the foreground.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::ConfigArgs;
use super::logging::Logs;
use super::output::{Failure, print_json};
use super::preview::parse_settings;
use crate::spec::plan::Flow;
use crate::sync::run::ProgressCallback;
use crate::sync::{FlowReport, Outcome, Progress, RunOptions, run_flow};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Flow to run. Without it (and without -s), ferry asks on a terminal.
    flow: Option<String>,
    /// Entities to run, comma-separated (default: every entity of the flow).
    #[arg(long, short = 'e', value_delimiter = ',')]
    entities: Vec<String>,
    /// Ignore saved cursors and resume positions: read everything again (rows are upserted).
    #[arg(long)]
    full: bool,
    /// Connector to run without a flow file; state is kept under its name.
    #[arg(long, short = 's', value_name = "CONNECTOR")]
    source: Option<String>,
    /// Destination URL for -s (default duckdb://./ferry.duckdb).
    #[arg(long, short = 'd', value_name = "URL")]
    destination: Option<String>,
    /// Connector config value for -s, as key=value; repeat for several.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl SyncArgs {
    /// Returns whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }
}

pub async fn execute(args: SyncArgs, logs: Logs) -> Result<ExitCode, Failure> {
    let loaded = args.config.load()?;
    let flow = match (&args.flow, &args.source) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage("name a flow or pass -s CONNECTOR, not both"));
        }
        (Some(name), None) => {
            if args.destination.is_some() || !args.settings.is_empty() {
                return Err(Failure::usage(
                    "-d and --set go with -s CONNECTOR; a flow file sets its own destination and config",
                ));
            }
            loaded.catalog.flows.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = loaded.catalog.flows.keys().map(String::as_str).collect();
                let hint = did_you_mean(name, &known);
                Failure::usage(format!(
                    "unknown flow {name:?} in {}{hint}; known flows: {}",
                    args.config.folder().display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })?
        }
        (None, Some(connector)) => {
            let settings = parse_settings(&args.settings)?;
            let flow = crate::spec::adhoc_flow(
                &loaded.catalog,
                connector,
                args.destination.as_deref(),
                &settings,
                &args.entities,
                &|name| std::env::var(name).ok(),
            )
            .map_err(|diagnostics| Failure::diagnostics(&diagnostics))?;
            Arc::new(flow)
        }
        (None, None) => {
            if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
                return super::interactive::execute(&loaded.catalog, logs).await;
            }
            return Err(Failure::usage(
                "name a flow (`ferry sync FLOW`) or a connector (`ferry sync -s CONNECTOR -d URL --set key=value`)",
            ));
        }
    };
    check_entities(&flow, &args.entities)?;
    let report = run(flow, &args.entities, args.full, &logs).await;
    Ok(print_report(&report, args.json))
}

/// Runs a flow with progress bars (on a terminal) and signal handling.
pub async fn run(flow: Arc<Flow>, entities: &[String], full: bool, logs: &Logs) -> FlowReport {
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(shutdown.clone()));
    let progress = logs
        .bars
        .as_ref()
        .map(|bars| progress_callback(bars.clone()));
    let options = RunOptions {
        full,
        shutdown,
        progress,
    };
    let report = run_flow(flow, entities, &options).await;
    signals.abort();
    if let Some(bars) = &logs.bars {
        let _ = bars.clear();
    }
    report
}

fn check_entities(flow: &Flow, entities: &[String]) -> Result<(), Failure> {
    let known: Vec<&str> = flow
        .entities
        .iter()
        .map(|entity| entity.name.as_str())
        .collect();
    for entity in entities {
        if !known.contains(&entity.as_str()) {
            return Err(Failure::usage(format!(
                "flow {} has no entity {entity:?}{}; its entities: {}",
                flow.name,
                did_you_mean(entity, &known),
                known.join(", ")
            )));
        }
    }
    Ok(())
}

pub fn did_you_mean(name: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| format!(" (did you mean {candidate:?}?)"))
        .unwrap_or_default()
}

/// The first signal asks runs to commit their chunk and stop; a second one
/// exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    if wait_for_signal().await.is_err() {
        return;
    }
    tracing::warn!("stopping: committing the chunk in flight (press Ctrl-C again to exit at once)");
    shutdown.cancel();
    if wait_for_signal().await.is_ok() {
        std::process::exit(130);
    }
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// One spinner per entity: records, pages and rate.
fn progress_callback(bars: indicatif::MultiProgress) -> ProgressCallback {
    let spinners: Mutex<HashMap<String, ProgressBar>> = Mutex::new(HashMap::new());
    let style = ProgressStyle::with_template("{spinner} {prefix:<28} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    Arc::new(move |progress: &Progress| {
        let mut spinners = spinners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = format!("{}/{}", progress.flow, progress.entity);
        let bar = spinners.entry(key.clone()).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(key);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let seconds = bar.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{} records, {} pages, {:.0} records/s",
            progress.records,
            progress.pages,
            progress.records as f64 / seconds
        ));
    })
}

/// Prints one line per entity (or JSON) and returns the exit code.
pub fn print_report(report: &FlowReport, json: bool) -> ExitCode {
    if json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
    } else {
        for run in &report.runs {
            let resumed = if run.resumed { ", resumed" } else { "" };
            match (&run.outcome, &run.error) {
                (Outcome::Succeeded, _) => println!(
                    "{}/{}: {} records in {:.1}s{resumed}",
                    run.flow, run.entity, run.records, run.duration_seconds
                ),
                (outcome, error) => {
                    let word = if *outcome == Outcome::Interrupted {
                        "interrupted"
                    } else {
                        "failed"
                    };
                    let message = error
                        .as_ref()
                        .map(|error| error.message.as_str())
                        .unwrap_or("unknown error");
                    eprintln!(
                        "{}/{}: {word} after {} records: {}",
                        run.flow,
                        run.entity,
                        run.records,
                        crate::redact::redact(message)
                    );
                }
            }
        }
    }
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
