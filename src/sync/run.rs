//! One run of one entity: the chunk loop.
//!
//! Two tasks share the work. The fetch task (the engine) sends pages into a
//! bounded channel; this task collects them into chunks and commits each
//! chunk with the state that records where to resume. The channel overlaps
//! fetching page N+1 with writing page N, and its capacity bounds how many
//! pages wait in memory.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::destination::{
    Chunk, Destination, DestinationError, EntityTarget, RunOutcome, RunRecord, RunStatus, TableRef,
};
use crate::engine::{
    self, FetchContext, FetchError, HttpClient, Page, ParentPosition, ParentSource, Position,
    Record,
};
use crate::redact::redact;
use crate::spec::plan::{DeletedRows, Entity, Flow, ParentScope, SyncMode};

use super::changes::{self, FeedChoice, FeedState};
use super::parents::DestinationParents;
use super::state::{EntityState, Resume};

/// Pages that may wait between the fetch task and the writer. While a
/// chunk commits, the fetch task keeps reading up to this many pages
/// ahead: with 4, a 5,000-record chunk of 100-record pages left the fetch
/// idle for most of each commit, and a 100,000-record sync to DuckDB took
/// a quarter longer. The cost is memory: up to this many parsed pages.
const CHANNEL_PAGES: usize = 64;

/// Receives the counters of a run after every page.
pub type ProgressCallback = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Options a caller sets for one run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Ignore the saved cursor and resume position: read everything again.
    pub full: bool,
    /// Cancelled on shutdown: the chunk in hand is committed, then the run stops.
    pub shutdown: CancellationToken,
    /// Called after every page.
    pub progress: Option<ProgressCallback>,
}

/// Counters of a run in progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub flow: String,
    pub entity: String,
    pub records: u64,
    pub pages: u64,
    pub requests: u64,
    pub bytes: u64,
    /// GraphQL errors kept with their data (`partial_ok: true`).
    pub graphql_errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Interrupted,
}

/// The outcome of one run, with its counters.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub flow: String,
    pub entity: String,
    pub outcome: Outcome,
    pub records: u64,
    pub pages: u64,
    pub requests: u64,
    /// GraphQL errors kept with their data (`partial_ok: true`).
    pub graphql_errors: u64,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: f64,
    /// Secrets already masked.
    pub error: Option<RunError>,
    /// Set when the run continued an earlier one.
    pub resumed: bool,
}

/// A run's failure, with a kind an operator or a retry policy can act on.
#[derive(Debug, Clone, Serialize)]
pub struct RunError {
    /// `pagination_loop`, `http`, `locked`, `destination`, …
    pub kind: String,
    pub message: String,
}

impl RunError {
    /// Builds the run error for a fetch error, with the fetch error's kind
    /// (`auth`, `http`, `pagination_loop`, …) and its message masked.
    pub(crate) fn fetch(error: &FetchError) -> RunError {
        let kind = serde_json::to_value(&error.kind)
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_else(|| "fetch".to_string());
        RunError {
            kind,
            message: redact(&error.message),
        }
    }

    fn destination(error: &DestinationError) -> RunError {
        let kind = match error {
            DestinationError::Locked(_) => "locked",
            DestinationError::Connect(_) => "connect",
            DestinationError::Write(_) => "destination",
            DestinationError::State(_) => "state",
        };
        RunError {
            kind: kind.to_string(),
            message: redact(&error.to_string()),
        }
    }

    fn new(kind: &str, message: impl Into<String>) -> RunError {
        RunError {
            kind: kind.to_string(),
            message: redact(&message.into()),
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Builds the write target of an entity: its table, key, declared types and mode.
pub fn target_for(flow: &Flow, entity: &Entity, resuming: bool) -> EntityTarget {
    let output_name = |field: &String| engine::output_field_name(&entity.fields, field).to_string();
    let mode = entity_mode(flow, entity);
    EntityTarget {
        flow: flow.name.clone(),
        entity: entity.name.clone(),
        table: TableRef {
            schema: flow.schema.clone(),
            table: entity.name.clone(),
        },
        primary_key: entity.primary_key.iter().map(output_name).collect(),
        declared_types: entity
            .fields
            .types
            .iter()
            .map(|(field, kind)| (output_name(field), *kind))
            .collect(),
        full_refresh: mode == SyncMode::FullRefresh && flow.deleted_rows != Some(DeletedRows::Mark),
        resuming,
    }
}

/// Returns the entity's sync mode: a flow's `full_refresh` wins over the entity's mode.
fn entity_mode(flow: &Flow, entity: &Entity) -> SyncMode {
    match (flow.mode, entity.mode) {
        (SyncMode::FullRefresh, _) => SyncMode::FullRefresh,
        (_, Some(mode)) => mode,
        (mode, None) => mode,
    }
}

/// The starting point of a run.
struct Start {
    /// `None`: the previous attempt fetched everything and only its
    /// completion is left to commit.
    position: Option<Position>,
    resumed: bool,
    run_started_at: DateTime<Utc>,
    /// What the run reads: the entity's list, or its change feed.
    source: Source,
}

/// The request sequence a run reads.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    List,
    /// The change feed from this saved feed cursor (`None`: the whole feed).
    Feed {
        since: Option<Value>,
        saved: FeedState,
    },
}

fn plan_start(
    flow: &Flow,
    entity: &Entity,
    state: &EntityState,
    full: bool,
    now: DateTime<Utc>,
) -> Start {
    if !full && let Some(resume) = &state.resume {
        if resume.fingerprint == entity.fingerprint {
            return Start {
                position: resume.position.clone(),
                resumed: true,
                run_started_at: resume.run_started_at,
                source: Source::List,
            };
        }
        warn!(
                flow = %flow.name,
                entity = %entity.name,
            "the entity's definition changed since its last run stopped; starting over instead of resuming"
        );
    }
    // A full refresh reads everything each run, so the saved cursor is not used.
    let mut use_cursor = !full && entity_mode(flow, entity) == SyncMode::Incremental;
    if use_cursor && entity.changes.is_some() {
        match changes::choose(entity, state, now) {
            FeedChoice::Feed { since } => {
                let saved = FeedState::read(state).unwrap_or(FeedState {
                    cursor: None,
                    checked_at: now,
                });
                return Start {
                    position: Some(Position::default()),
                    resumed: false,
                    run_started_at: now,
                    source: Source::Feed { since, saved },
                };
            }
            // The list filters on creation only, so a load that follows a
            // saved list cursor would miss updates: read the list in full.
            FeedChoice::FullLoad => use_cursor = false,
        }
    }
    let saved = if use_cursor {
        state.cursor.as_ref()
    } else {
        None
    };
    let mut position = engine::initial_position(entity, saved, now, !use_cursor);
    // A child reads the parents written since its last completed run,
    // unless it reads them all (`scope: all`, `--full`, full refresh).
    let changed_parents = entity
        .parent
        .as_ref()
        .is_some_and(|parent| parent.scope == ParentScope::Changed);
    if use_cursor && changed_parents {
        position.parent = state.parents.clone();
    }
    Start {
        position: Some(position),
        resumed: false,
        run_started_at: now,
        source: Source::List,
    }
}

/// A run's starting point and write target, and the state they come from.
struct Plan {
    state: EntityState,
    start: Start,
    target: EntityTarget,
}

fn plan(flow: &Flow, entity: &Entity, state: EntityState, full: bool, now: DateTime<Utc>) -> Plan {
    let start = plan_start(flow, entity, &state, full, now);
    let target = target_for(flow, entity, start.resumed);
    Plan {
        state,
        start,
        target,
    }
}

/// Reads the state again once `begin_run` holds the entity's lock, and
/// plans the run again when another process changed the state after it
/// was first read. A resume position from before that run would otherwise
/// fill a new staging table from the middle of the list.
async fn replan_under_lock(
    destination: &mut dyn Destination,
    flow: &Flow,
    entity: &Entity,
    options: &RunOptions,
    planned: Plan,
    run_row: &RunRecord,
) -> Result<Plan, RunError> {
    let mut current = read_state(destination, flow, entity).await?;
    if current == planned.state {
        return Ok(planned);
    }
    warn!(
        flow = %flow.name,
        entity = %entity.name,
        run_id = %run_row.run_id,
        "another process ran the entity while this run started; planning again from the state it left"
    );
    if planned.target.full_refresh && !planned.target.resuming {
        // begin_run dropped the staging table, so no resume position has
        // rows left to continue.
        current.resume = None;
    }
    let replanned = plan(flow, entity, current, options.full, run_row.started_at);
    if replanned.target.resuming != planned.target.resuming {
        // A new plan that starts over must drop the staging table the
        // first plan kept. The lock is held already, and the run's row is
        // written again.
        destination
            .begin_run(&replanned.target, run_row)
            .await
            .map_err(|error| RunError::destination(&error))?;
    }
    Ok(replanned)
}

/// Runs one entity of a flow to completion or failure, and records the
/// outcome in `_ferry.runs` unless the destination itself fails.
pub async fn run_entity(
    flow: Arc<Flow>,
    entity: Arc<Entity>,
    client: Arc<HttpClient>,
    destination: &mut dyn Destination,
    options: &RunOptions,
) -> RunReport {
    let started_at = Utc::now();
    let clock = Instant::now();
    let run_id = uuid::Uuid::now_v7().to_string();
    let mut report = RunReport {
        run_id: run_id.clone(),
        flow: flow.name.clone(),
        entity: entity.name.clone(),
        outcome: Outcome::Failed,
        records: 0,
        pages: 0,
        requests: 0,
        graphql_errors: 0,
        started_at,
        duration_seconds: 0.0,
        error: None,
        resumed: false,
    };

    let state = match read_state(destination, &flow, &entity).await {
        Ok(state) => state,
        Err(error) => {
            report.error = Some(error);
            return finished(report, clock);
        }
    };
    let planned = plan(&flow, &entity, state, options.full, started_at);
    let parents = match open_parents(&flow, &entity).await {
        Ok(parents) => parents,
        Err(error) => {
            report.error = Some(error);
            return finished(report, clock);
        }
    };

    let run_row = RunRecord {
        run_id: run_id.clone(),
        flow: flow.name.clone(),
        entity: entity.name.clone(),
        started_at,
        finished_at: None,
        status: "running".to_string(),
        records: 0,
        error: None,
    };
    if let Err(error) = destination.begin_run(&planned.target, &run_row).await {
        report.error = Some(RunError::destination(&error));
        return finished(report, clock);
    }
    let replanned = replan_under_lock(destination, &flow, &entity, options, planned, &run_row);
    let Plan {
        state,
        start,
        target,
    } = match replanned.await {
        Ok(planned) => planned,
        Err(error) => {
            report.error = Some(error);
            return finished(report, clock);
        }
    };
    report.resumed = start.resumed;
    info!(
        flow = %flow.name,
        entity = %entity.name,
        run_id = %run_id,
        resumed = start.resumed,
        destination = %destination.describe(),
        "run started"
    );

    let mut writer = ChunkWriter {
        destination,
        target: target.clone(),
        run_id: &run_id,
        entity: &entity,
        committed_state: state.clone(),
        state,
        run_started_at: start.run_started_at,
        buffer: Vec::new(),
        deletions: Vec::new(),
        feed: match &start.source {
            Source::Feed { saved, .. } => Some(FeedRun {
                saved: saved.clone(),
                pending: None,
            }),
            Source::List => None,
        },
        keeps_feed: entity.changes.is_some()
            && entity_mode(&flow, &entity) == SyncMode::Incremental,
        last_parent: start
            .position
            .as_ref()
            .and_then(|position| position.parent.clone()),
        position: start.position.clone(),
        uncommitted: false,
        opened: None,
        committed_records: 0,
    };
    let ended = match start.position {
        Some(position) => {
            let context = FetchContext {
                flow: flow.clone(),
                entity: entity.clone(),
                client,
                now: started_at,
                parents,
            };
            let fetch = match start.source {
                Source::Feed { since, .. } => FetchStart::Feed(since),
                Source::List => FetchStart::List(Box::new(position)),
            };
            pump(&mut writer, context, fetch, options, &mut report).await
        }
        None => Ended::Complete,
    };
    report.records = writer.committed_records;

    let (status, error) = match ended {
        Ended::Complete => (RunStatus::Succeeded, None),
        Ended::Failed(error) => (RunStatus::Failed, Some(error)),
        Ended::Interrupted => (
            RunStatus::Failed,
            Some(RunError::new(
                "interrupted",
                "interrupted by shutdown; the next run resumes after the last committed chunk",
            )),
        ),
    };
    let final_state = writer.final_state(status == RunStatus::Succeeded);
    let mark_unseen_before = (status == RunStatus::Succeeded
        && entity_mode(&flow, &entity) == SyncMode::FullRefresh
        && flow.deleted_rows == Some(DeletedRows::Mark))
    .then_some(writer.run_started_at);
    let outcome = RunOutcome {
        status,
        records: writer.committed_records,
        error: error.as_ref().map(|error| error.message.clone()),
        state: final_state,
        mark_unseen_before,
    };
    if let Err(finish_error) = writer
        .destination
        .finish_run(&writer.target, &run_id, outcome)
        .await
    {
        warn!(
            flow = %flow.name,
            entity = %entity.name,
            run_id = %run_id,
            error = %redact(&finish_error.to_string()),
            "recording the run's end failed"
        );
        if error.is_none() {
            report.error = Some(RunError::destination(&finish_error));
            return finished(report, clock);
        }
    }

    report.outcome = ended_kind(status, &error);
    report.error = error;
    let report = finished(report, clock);
    match &report.error {
        None => info!(
            flow = %report.flow,
            entity = %report.entity,
            run_id = %report.run_id,
            records = report.records,
            pages = report.pages,
            seconds = report.duration_seconds,
            "run succeeded"
        ),
        Some(error) => warn!(
            flow = %report.flow,
            entity = %report.entity,
            run_id = %report.run_id,
            records = report.records,
            kind = %error.kind,
            error = %error.message,
            "run failed"
        ),
    }
    report
}

/// Opens the parent table of a child entity on a second destination
/// handle; `None` for other entities.
///
/// The handle is opened directly, not through the daemon's run slots, so
/// a child never waits for a second slot while holding one. A DuckDB file
/// is open already for the run's own handle, and the DuckDB destination
/// shares one database per file within the process.
async fn open_parents(
    flow: &Flow,
    entity: &Entity,
) -> Result<Option<Arc<dyn ParentSource>>, RunError> {
    let Some(plan) = &entity.parent else {
        return Ok(None);
    };
    // Opening a DuckDB file reads it synchronously, so it runs on a
    // blocking thread rather than stalling the runtime's workers.
    let url = flow.destination.clone();
    let runtime = tokio::runtime::Handle::current();
    let opened =
        tokio::task::spawn_blocking(move || runtime.block_on(crate::destination::open(&url)))
            .await
            .map_err(|error| {
                RunError::new(
                    "connect",
                    format!(
                        "opening the destination for the parent rows stopped unexpectedly: {error}"
                    ),
                )
            })?;
    let destination = opened.map_err(|error| RunError::destination(&error))?;
    match DestinationParents::new(flow, entity, destination) {
        Some(parents) => Ok(Some(Arc::new(parents))),
        None => Err(RunError::new(
            "config",
            format!(
                "entity {}: parent entity {} is not an entity of connector {}",
                entity.name, plan.entity, flow.connector.name
            ),
        )),
    }
}

fn ended_kind(status: RunStatus, error: &Option<RunError>) -> Outcome {
    match (status, error) {
        (RunStatus::Succeeded, _) => Outcome::Succeeded,
        (_, Some(error)) if error.kind == "interrupted" => Outcome::Interrupted,
        _ => Outcome::Failed,
    }
}

fn finished(mut report: RunReport, clock: Instant) -> RunReport {
    report.duration_seconds = clock.elapsed().as_secs_f64();
    report
}

async fn read_state(
    destination: &mut dyn Destination,
    flow: &Flow,
    entity: &Entity,
) -> Result<EntityState, RunError> {
    let stored = destination
        .read_state(&flow.name, &entity.name)
        .await
        .map_err(|error| RunError::destination(&error))?;
    match stored {
        None => Ok(EntityState::default()),
        Some(value) => EntityState::from_value(value).map_err(|error| {
            RunError::new(
                "state",
                format!(
                    "the saved state of {}/{} is unreadable ({error}); inspect it with `ferry state show {}` or clear it with `ferry state reset {} {}`",
                    flow.name, entity.name, flow.name, flow.name, entity.name
                ),
            )
        }),
    }
}

enum Ended {
    Complete,
    Failed(RunError),
    Interrupted,
}

/// Moves pages from the fetch task into committed chunks until the fetch
/// ends, a write fails, or shutdown is requested.
/// Where the fetch task starts.
enum FetchStart {
    List(Box<Position>),
    /// The change feed, from the saved feed cursor.
    Feed(Option<Value>),
}

async fn pump(
    writer: &mut ChunkWriter<'_>,
    context: FetchContext,
    start: FetchStart,
    options: &RunOptions,
    report: &mut RunReport,
) -> Ended {
    let (sender, mut receiver) = mpsc::channel::<Page>(CHANNEL_PAGES);
    let mut fetch = match start {
        FetchStart::List(position) => tokio::spawn(engine::fetch(context, *position, sender)),
        FetchStart::Feed(since) => tokio::spawn(engine::fetch_changes(context, since, sender)),
    };
    let chunk_records = writer.entity.chunk.records.max(1) as usize;
    let chunk_time = Duration::from_secs_f64(writer.entity.chunk.seconds.max(0.001));
    let mut progress = Progress {
        flow: report.flow.clone(),
        entity: report.entity.clone(),
        ..Progress::default()
    };

    loop {
        let deadline = writer.opened.map(|opened| opened + chunk_time);
        tokio::select! {
            page = receiver.recv() => {
                let Some(page) = page else { break };
                progress.pages += 1;
                progress.records += page.records.len() as u64;
                progress.requests += u64::from(page.requests);
                progress.bytes += page.bytes;
                progress.graphql_errors += u64::from(page.graphql_errors);
                if let Some(callback) = &options.progress {
                    callback(&progress);
                }
                writer.add(page);
                if writer.buffer.len() + writer.deletions.len() >= chunk_records
                    && let Err(error) = writer.commit().await
                {
                    fetch.abort();
                    record_progress(report, &progress);
                    return Ended::Failed(error);
                }
            }
            _ = sleep_until_deadline(deadline) => {
                if let Err(error) = writer.commit().await {
                    fetch.abort();
                    record_progress(report, &progress);
                    return Ended::Failed(error);
                }
            }
            _ = options.shutdown.cancelled() => {
                fetch.abort();
                record_progress(report, &progress);
                // Pages already received are kept: commit them before stopping.
                return match writer.commit().await {
                    Ok(()) => Ended::Interrupted,
                    Err(error) => Ended::Failed(error),
                };
            }
        }
    }
    record_progress(report, &progress);

    let fetched = match (&mut fetch).await {
        Ok(result) => result.map_err(|error| RunError::fetch(&error)),
        Err(join_error) => Err(RunError::new(
            "internal",
            format!("the fetch task stopped unexpectedly: {join_error}"),
        )),
    };
    if let Err(error) = writer.commit().await {
        return Ended::Failed(error);
    }
    match fetched {
        Ok(()) => Ended::Complete,
        Err(error) => Ended::Failed(error),
    }
}

fn record_progress(report: &mut RunReport, progress: &Progress) {
    report.pages = progress.pages;
    report.requests = progress.requests;
    report.graphql_errors = progress.graphql_errors;
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Collects pages into a chunk and commits it with its state.
struct ChunkWriter<'a> {
    destination: &'a mut dyn Destination,
    /// The run's target; column types that responses declare are added to
    /// it as pages arrive.
    target: EntityTarget,
    run_id: &'a str,
    entity: &'a Entity,
    /// The state with the pages received so far, committed or not.
    state: EntityState,
    /// The state as the destination has it after the last committed chunk.
    committed_state: EntityState,
    run_started_at: DateTime<Utc>,
    buffer: Vec<Record>,
    deletions: Vec<Record>,
    /// Set when the run reads the change feed.
    feed: Option<FeedRun>,
    /// The entity reads a change feed after a full load, so a completed
    /// list run records where the feed starts.
    keeps_feed: bool,
    /// The request after the last page received; `None` once complete.
    position: Option<Position>,
    /// For a child entity: the parent of the last page received, which a
    /// completed run saves as the place the next run starts after.
    last_parent: Option<ParentPosition>,
    /// Pages were received since the last commit.
    uncommitted: bool,
    /// When the chunk in hand received its first page.
    opened: Option<Instant>,
    committed_records: u64,
}

/// A change feed run: the feed position it started from, and the
/// maximum feed cursor seen, saved only when the run completes.
struct FeedRun {
    saved: FeedState,
    pending: Option<Value>,
}

impl ChunkWriter<'_> {
    fn add(&mut self, page: Page) {
        if let Some(max) = page.cursor_max {
            let pending = match &mut self.feed {
                Some(feed) => &mut feed.pending,
                None => &mut self.state.pending_cursor,
            };
            *pending = Some(match pending.take() {
                Some(seen) => engine::max_cursor(&seen, &max),
                None => max,
            });
        }
        for (field, declared) in page.field_types {
            // The entity's own fields.types were there first and win.
            self.target.declared_types.entry(field).or_insert(declared);
        }
        self.buffer.extend(page.records);
        self.deletions.extend(page.deletions);
        if let Some(parent) = page.next.as_ref().and_then(|next| next.parent.as_ref()) {
            self.last_parent = Some(parent.clone());
        }
        self.position = page.next;
        self.uncommitted = true;
        self.opened.get_or_insert_with(Instant::now);
    }

    /// Commits the chunk in hand, if pages arrived since the last commit.
    async fn commit(&mut self) -> Result<(), RunError> {
        self.opened = None;
        if !self.uncommitted {
            return Ok(());
        }
        // A feed run is never resumed mid-way (the change feed module says
        // why), so it leaves no resume position behind.
        self.state.resume = match self.feed {
            Some(_) => None,
            None => Some(Resume {
                fingerprint: self.entity.fingerprint.clone(),
                run_started_at: self.run_started_at,
                position: self.position.clone(),
            }),
        };
        let records = std::mem::take(&mut self.buffer);
        let deletions = std::mem::take(&mut self.deletions);
        let count = (records.len() + deletions.len()) as u64;
        let chunk = Chunk {
            records,
            deletions,
            state: self.state.to_value(),
        };
        let written = self
            .destination
            .write_chunk(&self.target, self.run_id, chunk)
            .await;
        if let Err(error) = written {
            // The run's outcome saves this state. It must not point past
            // the rejected records, so that the next run fetches them again.
            self.state = self.committed_state.clone();
            return Err(RunError::destination(&error));
        }
        self.committed_state = self.state.clone();
        self.uncommitted = false;
        self.committed_records += count;
        Ok(())
    }

    /// Moves the pending cursor into the saved one when the run succeeded,
    /// and returns the state to store with the run's outcome.
    fn final_state(&mut self, succeeded: bool) -> Value {
        if let Some(feed) = &self.feed {
            if succeeded {
                feed.saved
                    .after_feed_run(feed.pending.as_ref(), self.run_started_at)
                    .write(&mut self.state);
            }
            return self.state.to_value();
        }
        if succeeded {
            if let Some(pending) = self.state.pending_cursor.take() {
                self.state.cursor = Some(match self.state.cursor.take() {
                    Some(saved) => engine::max_cursor(&saved, &pending),
                    None => pending,
                });
            }
            self.state.resume = None;
            if self.keeps_feed {
                FeedState::after_full_load(self.state.cursor.as_ref(), self.run_started_at)
                    .write(&mut self.state);
            }
            if self.entity.parent.is_some()
                && let Some(parent) = &self.last_parent
            {
                self.state.parents = Some(parent.finished());
            }
        }
        self.state.to_value()
    }
}
