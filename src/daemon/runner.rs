//! One flow run as the daemon does it: the sync, retries with exponential
//! backoff, metrics, `/flows` status and alerts.
//!
//! A retry runs only the entities that failed; each resumes from its last
//! committed chunk, because the sync saves a resume position with every
//! chunk. Each error kind maps to one decision:
//!
//! | kind | decision |
//! |---|---|
//! | `pagination_loop`, `cross_host`, `max_pages`, `missing_key`, `template`, `state`, `auth` | needs a person: no retry, alert |
//! | `locked` on PostgreSQL | another replica runs the entity: skipped, no retry, no alert |
//! | `interrupted` | shutdown or a removed flow: stop |
//! | anything else (`http`, `network`, `response`, `graphql`, `connect`, `destination`, …) | retry with backoff, alert when retries run out |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::alerts::Alerts;
use super::metrics::{FlowLabels, Metrics, outcome_label};
use super::schedule::LastRun;
use super::scheduler::{Launcher, RunRequest};
use super::status::StatusBoard;
use super::writers::DestinationQueue;
use crate::destination::RunRecord;
use crate::spec::plan::{Catalog, DestinationUrl, Flow};
use crate::sync::{Destinations, FlowReport, Outcome, RunOptions, RunReport};

/// Runs a flow's entities; the daemon's runs the sync, tests fake it.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    async fn run(&self, flow: Arc<Flow>, entities: Vec<String>, options: RunOptions) -> FlowReport;
}

/// Runs flows with the sync layer, through the daemon's destination queue.
pub struct SyncExecutor {
    pub destinations: Arc<DestinationQueue>,
}

#[async_trait]
impl Executor for SyncExecutor {
    async fn run(&self, flow: Arc<Flow>, entities: Vec<String>, options: RunOptions) -> FlowReport {
        let destinations: Arc<dyn Destinations> = self.destinations.clone();
        crate::sync::run_flow_with(flow, &entities, &options, destinations).await
    }
}

/// Retry settings for failed runs.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per run, the first included.
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            first_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// Returns the wait before attempt `attempt + 1`: `first_delay`,
    /// doubled per attempt, capped at `max_delay`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// The action a failed entity run calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Retry,
    NeedsPerson,
    /// Another replica holds the entity's lock.
    RunningElsewhere,
    Stop,
}

pub fn decide(run: &RunReport, destination: &DestinationUrl) -> Decision {
    if run.outcome == Outcome::Interrupted {
        return Decision::Stop;
    }
    let kind = run
        .error
        .as_ref()
        .map(|error| error.kind.as_str())
        .unwrap_or("");
    match kind {
        "interrupted" => Decision::Stop,
        "locked" if matches!(destination, DestinationUrl::Postgres { .. }) => {
            Decision::RunningElsewhere
        }
        "pagination_loop" | "cross_host" | "max_pages" | "missing_key" | "template" | "state"
        | "auth" => Decision::NeedsPerson,
        _ => Decision::Retry,
    }
}

/// Maximum wait of the start-up history read for a DuckDB file another
/// process has locked (someone querying it); after it, no run counts as missed.
const HISTORY_PATIENCE: Duration = Duration::from_secs(30);

/// Rows of `_ferry.runs` read to find each entity's newest run.
const HISTORY_ROWS: usize = 200;

/// Summarizes `_ferry.runs` rows (newest first) of a flow: the newest
/// start, and whether every entity's newest run succeeded.
fn last_run(flow: &Flow, runs: &[RunRecord]) -> Option<LastRun> {
    let started_at = runs.iter().map(|run| run.started_at).max()?;
    let complete = flow.entities.iter().all(|entity| {
        runs.iter()
            .filter(|run| run.entity == entity.name)
            .max_by_key(|run| run.started_at)
            .is_some_and(|run| run.status == "succeeded")
    });
    Some(LastRun {
        started_at,
        complete,
    })
}

pub struct FlowRunner {
    /// The last good catalog; a run reads its flow when it starts and
    /// again before each retry, so changes apply at the next attempt.
    pub catalog: watch::Receiver<Arc<Catalog>>,
    pub executor: Arc<dyn Executor>,
    pub destinations: Arc<DestinationQueue>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub alerts: Arc<Alerts>,
    pub retry: RetryPolicy,
}

impl FlowRunner {
    fn flow(&self, name: &str) -> Option<Arc<Flow>> {
        self.catalog.borrow().flows.get(name).cloned()
    }

    /// Counts and records each entity run; returns the failures and
    /// what each calls for.
    fn account(&self, flow: &Flow, report: &FlowReport) -> Vec<(RunReport, Decision)> {
        let mut failures = Vec::new();
        for run in &report.runs {
            let outcome = match (run.outcome, decide(run, &flow.destination)) {
                (Outcome::Succeeded, _) => "succeeded",
                (_, Decision::RunningElsewhere) => "skipped_locked",
                _ => outcome_label(run),
            };
            self.metrics.record_run(run, outcome);
            self.status.record(run, outcome);
            if run.outcome != Outcome::Succeeded {
                failures.push((run.clone(), decide(run, &flow.destination)));
            }
        }
        failures
    }
}

#[async_trait]
impl Launcher for FlowRunner {
    async fn run(&self, request: RunRequest, cancel: CancellationToken) {
        let mut entities = request.entities.clone();
        let mut attempt = 1;
        loop {
            let Some(flow) = self.flow(&request.flow) else {
                info!(flow = %request.flow, "flow no longer in the config; run dropped");
                return;
            };
            info!(flow = %flow.name, reason = request.reason.as_str(), attempt, entities = ?entities, "flow run started");
            let options = RunOptions {
                full: false,
                shutdown: cancel.clone(),
                progress: None,
            };
            let report = self
                .executor
                .run(flow.clone(), entities.clone(), options)
                .await;
            let failures = self.account(&flow, &report);
            if cancel.is_cancelled() {
                info!(flow = %flow.name, "flow run stopped: ferry is stopping or the flow was removed");
                return;
            }

            let stop = failures
                .iter()
                .any(|(_, decision)| *decision == Decision::Stop);
            let real: Vec<&(RunReport, Decision)> = failures
                .iter()
                .filter(|(_, decision)| *decision != Decision::RunningElsewhere)
                .collect();
            if real.is_empty() {
                info!(flow = %flow.name, entities = report.runs.len(), "flow run succeeded");
                self.alerts
                    .succeeded(&flow.name, flow.alert_url.as_deref(), &report.runs);
                return;
            }
            let retryable: Vec<String> = real
                .iter()
                .filter(|(_, decision)| *decision == Decision::Retry)
                .map(|(run, _)| run.entity.clone())
                .collect();
            if stop || retryable.len() < real.len() || attempt >= self.retry.max_attempts {
                let runs: Vec<RunReport> = real.iter().map(|(run, _)| run.clone()).collect();
                warn!(
                    flow = %flow.name,
                    attempt,
                    failed = ?runs.iter().map(|run| run.entity.as_str()).collect::<Vec<_>>(),
                    "flow run failed; no retry left"
                );
                self.alerts
                    .failed(&flow.name, flow.alert_url.as_deref(), &runs);
                return;
            }

            let delay = self.retry.delay(attempt);
            warn!(
                flow = %flow.name,
                attempt,
                retry_in_seconds = delay.as_secs_f64(),
                entities = ?retryable,
                "flow run failed; retrying"
            );
            self.metrics
                .run_retries
                .get_or_create(&FlowLabels {
                    flow: flow.name.clone(),
                })
                .inc();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return,
            }
            entities = retryable;
            attempt += 1;
        }
    }

    async fn last_run(&self, flow: &str) -> Result<Option<LastRun>, String> {
        let Some(flow) = self.flow(flow) else {
            return Ok(None);
        };
        let never = CancellationToken::new();
        let read = async {
            let mut destination = self
                .destinations
                .open_waiting(&flow.destination, &never, Some(HISTORY_PATIENCE))
                .await
                .map_err(|error| crate::redact::redact(&error.to_string()))?;
            let runs = destination
                .list_runs(Some(&flow.name), HISTORY_ROWS)
                .await
                .map_err(|error| crate::redact::redact(&error.to_string()))?;
            self.status.seed(&flow.name, &runs);
            Ok(last_run(&flow, &runs))
        };
        let limit = HISTORY_PATIENCE + Duration::from_secs(15);
        match tokio::time::timeout(limit, read).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "reading _ferry.runs from {} timed out after {}s",
                flow.destination.display(),
                limit.as_secs()
            )),
        }
    }

    fn publish(&self, flow: &str, next: Option<DateTime<Utc>>, running: bool) {
        self.status.set_schedule(flow, next, running);
    }
}
