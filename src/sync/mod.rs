//! Runs: entities of a flow, from their saved state to committed tables.
//!
//! - `state`: the per-entity state document (cursor, resume position).
//! - `auth_state`: a flow's rotated refresh token, kept beside it.
//! - `run`: one entity's chunk loop.
//! - `changes`: when an entity reads its change feed, and the feed position.
//! - `parents`: a child entity's parent rows, read from the destination.
//!
//! [`run_flow`] runs the selected entities of a flow, a few at a time, each
//! with its own destination handle. The in-process lock below keeps an
//! entity from running twice at once in one process. Across processes the
//! destination's own lock does the same: DuckDB's file lock, or a
//! PostgreSQL advisory lock.

pub mod auth_state;
pub mod changes;
pub mod parents;
pub mod run;
pub mod state;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::destination::{self, Destination, DestinationError};
use crate::engine::HttpClient;
use crate::spec::plan::{DestinationUrl, Entity, Flow};

pub use run::{Outcome, Progress, RunError, RunOptions, RunReport, run_entity};
pub use state::{EntityState, Resume};

/// Entities of one flow that run at once.
const ENTITY_CONCURRENCY: usize = 4;

/// The outcome of every entity a flow run touched.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlowReport {
    pub flow: String,
    pub runs: Vec<RunReport>,
}

impl FlowReport {
    pub fn succeeded(&self) -> bool {
        self.runs
            .iter()
            .all(|run| run.outcome == Outcome::Succeeded)
    }
}

/// Opens the destination of each entity run. [`DirectDestinations`] opens
/// the URL; the daemon supplies one that queues runs writing the same
/// DuckDB file and waits while another process holds the file.
#[async_trait]
pub trait Destinations: Send + Sync {
    async fn open(
        &self,
        url: &DestinationUrl,
        shutdown: &CancellationToken,
    ) -> Result<Box<dyn Destination>, DestinationError>;
}

/// Opens each destination URL as it is, for one-off commands.
pub struct DirectDestinations;

#[async_trait]
impl Destinations for DirectDestinations {
    async fn open(
        &self,
        url: &DestinationUrl,
        _shutdown: &CancellationToken,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        destination::open(url).await
    }
}

/// Runs `entities` of `flow` (all selected entities when empty), parents
/// before children.
pub async fn run_flow(flow: Arc<Flow>, entities: &[String], options: &RunOptions) -> FlowReport {
    run_flow_with(flow, entities, options, Arc::new(DirectDestinations)).await
}

/// [`run_flow`] with destinations opened by `destinations`.
pub async fn run_flow_with(
    flow: Arc<Flow>,
    entities: &[String],
    options: &RunOptions,
    destinations: Arc<dyn Destinations>,
) -> FlowReport {
    let selected: Vec<Arc<Entity>> = flow
        .entities
        .iter()
        .filter(|entity| entities.is_empty() || entities.contains(&entity.name))
        .cloned()
        .collect();
    let mut report = FlowReport {
        flow: flow.name.clone(),
        runs: Vec::new(),
    };

    let client = match HttpClient::new(&flow) {
        Ok(client) => Arc::new(client),
        Err(error) => {
            for entity in &selected {
                report
                    .runs
                    .push(failed_report(&flow, entity, RunError::fetch(&error)));
            }
            return report;
        }
    };

    // Entities whose parent is also selected wait for it: a child's
    // requests are made from its parent's records.
    let selected_names: HashSet<String> =
        selected.iter().map(|entity| entity.name.clone()).collect();
    let mut waves: Vec<Vec<Arc<Entity>>> = Vec::new();
    let mut placed: HashSet<String> = HashSet::new();
    let mut remaining = selected;
    while !remaining.is_empty() {
        let (ready, waiting): (Vec<_>, Vec<_>) = remaining.into_iter().partition(|entity| {
            entity.parent.as_ref().is_none_or(|parent| {
                placed.contains(&parent.entity) || !selected_names.contains(&parent.entity)
            })
        });
        if ready.is_empty() {
            // A cycle cannot pass the spec checks; run the rest anyway.
            waves.push(waiting);
            break;
        }
        placed.extend(ready.iter().map(|entity| entity.name.clone()));
        waves.push(ready);
        remaining = waiting;
    }

    for wave in waves {
        let mut tasks = JoinSet::new();
        let mut queue = wave.into_iter();
        loop {
            while tasks.len() < ENTITY_CONCURRENCY {
                let Some(entity) = queue.next() else { break };
                let flow = flow.clone();
                let client = client.clone();
                let options = options.clone();
                let destinations = destinations.clone();
                tasks.spawn(async move {
                    run_locked(flow, entity, client, options, destinations).await
                });
            }
            match tasks.join_next().await {
                Some(Ok(run)) => report.runs.push(run),
                Some(Err(join_error)) => {
                    tracing::error!(flow = %flow.name, error = %join_error, "an entity run stopped unexpectedly");
                }
                None => break,
            }
        }
    }
    report
}

/// Runs one entity under the in-process lock, with its own destination handle.
async fn run_locked(
    flow: Arc<Flow>,
    entity: Arc<Entity>,
    client: Arc<HttpClient>,
    options: RunOptions,
    destinations: Arc<dyn Destinations>,
) -> RunReport {
    let key = format!(
        "{}\u{0}{}\u{0}{}",
        flow.destination.display(),
        flow.name,
        entity.name
    );
    let Some(_guard) = EntityLock::acquire(key) else {
        return failed_report(
            &flow,
            &entity,
            RunError {
                kind: "locked".to_string(),
                message: format!(
                    "{}/{} is already running in this process",
                    flow.name, entity.name
                ),
            },
        );
    };
    let mut destination = match destinations
        .open(&flow.destination, &options.shutdown)
        .await
    {
        Ok(destination) => destination,
        Err(error) => {
            let kind = match error {
                destination::DestinationError::Locked(_) => "locked",
                _ => "connect",
            };
            return failed_report(
                &flow,
                &entity,
                RunError {
                    kind: kind.to_string(),
                    message: crate::redact::redact(&error.to_string()),
                },
            );
        }
    };
    run_entity(flow, entity, client, destination.as_mut(), &options).await
}

fn failed_report(flow: &Flow, entity: &Entity, error: RunError) -> RunReport {
    tracing::warn!(flow = %flow.name, entity = %entity.name, kind = %error.kind, error = %error.message, "run not started");
    RunReport {
        run_id: String::new(),
        flow: flow.name.clone(),
        entity: entity.name.clone(),
        outcome: Outcome::Failed,
        records: 0,
        pages: 0,
        requests: 0,
        graphql_errors: 0,
        started_at: chrono::Utc::now(),
        duration_seconds: 0.0,
        error: Some(error),
        resumed: false,
    }
}

/// Marks a flow entity as running in this process until dropped.
struct EntityLock {
    key: String,
}

fn running() -> &'static Mutex<HashSet<String>> {
    static RUNNING: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    RUNNING.get_or_init(|| Mutex::new(HashSet::new()))
}

impl EntityLock {
    fn acquire(key: String) -> Option<EntityLock> {
        let mut running = running()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        running.insert(key.clone()).then_some(EntityLock { key })
    }
}

impl Drop for EntityLock {
    fn drop(&mut self) {
        let mut running = running()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        running.remove(&self.key);
    }
}
