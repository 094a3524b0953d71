//! Destinations for the daemon's runs: run slots, one writer queue per
//! DuckDB file, and waiting out a file another process holds.
//!
//! DuckDB lets one process write a file. Within ferry, every run writing
//! one file shares one database instance (the DuckDB destination keeps one
//! per file). Runs take turns: each call (begin, chunk, finish) takes the
//! file's queue lock, so two runs never have transactions open on the file
//! at once. The file is open only while some run has a destination for it,
//! so other programs can open it between runs. When another process has
//! locked the file, the run waits and tries again with backoff until the
//! file is free or ferry stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::metrics::Metrics;
use crate::destination::{
    self, Chunk, ColumnInfo, Destination, DestinationError, EntityTarget, RowQuery, RunOutcome,
    RunRecord, StateRow, StoredRow, TableRef,
};
use crate::spec::plan::DestinationUrl;
use crate::sync::Destinations;

/// First wait after a DuckDB file was found locked by another process.
const LOCK_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Maximum wait between two attempts to open a locked file.
const LOCK_RETRY_MAX: Duration = Duration::from_secs(30);

pub struct DestinationQueue {
    /// One queue lock per DuckDB file, taken for the length of one
    /// destination call. Entries stay for the life of the daemon, one per
    /// file the config names.
    files: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Run slots: the global limit on entity runs at once.
    slots: Arc<Semaphore>,
    /// The limit on destinations open outside the run slots at once.
    outside: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// Destinations open outside the run slots at once (history reads at
/// start, webhook writes). Each keeps a database session open: a daemon
/// starting 200 flows opened 200 DuckDB sessions on 200 threads to read
/// their histories and peaked at 1.4 GB resident.
const OUTSIDE_SLOTS: usize = 4;

impl DestinationQueue {
    pub fn new(max_runs: usize, metrics: Arc<Metrics>) -> DestinationQueue {
        DestinationQueue {
            files: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max_runs.max(1))),
            outside: Arc::new(Semaphore::new(OUTSIDE_SLOTS)),
            metrics,
        }
    }

    fn file_lock(&self, url: &DestinationUrl) -> Option<Arc<tokio::sync::Mutex<()>>> {
        let DestinationUrl::DuckDb { path } = url else {
            return None;
        };
        let key = std::path::absolute(path)
            .map(|path| path.display().to_string())
            .unwrap_or_else(|_| path.clone());
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        Some(files.entry(key).or_default().clone())
    }

    /// Opens a destination outside the run slots (webhook writes, history
    /// reads), in the file's queue, once fewer than [`OUTSIDE_SLOTS`] such
    /// destinations are open. Waits while another process has locked the
    /// DuckDB file, up to `patience` or until `shutdown` fires.
    pub async fn open_waiting(
        &self,
        url: &DestinationUrl,
        shutdown: &CancellationToken,
        patience: Option<Duration>,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        let slot = tokio::select! {
            slot = self.outside.clone().acquire_owned() => slot.ok(),
            _ = shutdown.cancelled() => None,
        };
        let Some(slot) = slot else {
            return Err(DestinationError::Connect(
                "ferry is stopping; the destination was not opened".to_string(),
            ));
        };
        let inner = self.open_raw(url, shutdown, patience).await?;
        Ok(Box::new(Queued {
            inner,
            file: self.file_lock(url),
            _slot: Some(slot),
            gauge: None,
        }))
    }

    /// Opens a destination, waiting with backoff while another process has
    /// locked its DuckDB file.
    async fn open_raw(
        &self,
        url: &DestinationUrl,
        shutdown: &CancellationToken,
        patience: Option<Duration>,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        let started = tokio::time::Instant::now();
        let mut delay = LOCK_RETRY_FIRST;
        loop {
            let error = match open_blocking(url).await {
                Ok(opened) => return Ok(opened),
                Err(error) => error,
            };
            let locked_file = matches!(
                (&error, url),
                (DestinationError::Locked(_), DestinationUrl::DuckDb { .. })
            );
            if !locked_file {
                return Err(error);
            }
            if patience.is_some_and(|patience| started.elapsed() + delay > patience) {
                return Err(error);
            }
            warn!(
                destination = %url.display(),
                holder = %crate::redact::redact(&error.to_string()),
                retry_in_seconds = delay.as_secs(),
                "destination file is locked by another process; waiting"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return Err(error),
            }
            delay = (delay * 2).min(LOCK_RETRY_MAX);
        }
    }
}

/// Opens a destination on a blocking thread: opening a DuckDB file reads
/// and may create it synchronously, which must not stall the runtime's
/// workers (the HTTP server shares them).
async fn open_blocking(url: &DestinationUrl) -> Result<Box<dyn Destination>, DestinationError> {
    let url = url.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(destination::open(&url)))
        .await
        .map_err(|error| {
            DestinationError::Connect(format!(
                "opening the destination stopped unexpectedly: {error}"
            ))
        })?
}

#[async_trait]
impl Destinations for DestinationQueue {
    /// Takes a run slot, then opens the destination for one entity run.
    async fn open(
        &self,
        url: &DestinationUrl,
        shutdown: &CancellationToken,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        let slot = tokio::select! {
            slot = self.slots.clone().acquire_owned() => slot.ok(),
            _ = shutdown.cancelled() => None,
        };
        let Some(slot) = slot else {
            return Err(DestinationError::Connect(
                "ferry is stopping; the run did not start".to_string(),
            ));
        };
        let inner = self.open_raw(url, shutdown, None).await?;
        if self.slots.available_permits() == 0 {
            info!(
                destination = %url.display(),
                "every run slot is in use; further runs wait for one"
            );
        }
        self.metrics.runs_in_progress.inc();
        let queued = Queued {
            inner,
            file: self.file_lock(url),
            _slot: Some(slot),
            gauge: Some(self.metrics.clone()),
        };
        Ok(Box::new(queued))
    }
}

/// A destination whose calls take turns on its file, holding a run slot.
struct Queued {
    inner: Box<dyn Destination>,
    file: Option<Arc<tokio::sync::Mutex<()>>>,
    _slot: Option<OwnedSemaphorePermit>,
    /// Set when this destination counts in `ferry_runs_in_progress`.
    gauge: Option<Arc<Metrics>>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(metrics) = &self.gauge {
            metrics.runs_in_progress.dec();
        }
    }
}

/// Waits for the file's turn; `None` for destinations without a file.
async fn turn(
    file: Option<Arc<tokio::sync::Mutex<()>>>,
) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    match file {
        Some(file) => Some(file.lock_owned().await),
        None => None,
    }
}

#[async_trait]
impl Destination for Queued {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn read_state(
        &mut self,
        flow: &str,
        entity: &str,
    ) -> Result<Option<Value>, DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.read_state(flow, entity).await
    }

    async fn write_state(
        &mut self,
        flow: &str,
        entity: &str,
        state: Option<&Value>,
    ) -> Result<(), DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.write_state(flow, entity, state).await
    }

    async fn list_state(&mut self, flow: Option<&str>) -> Result<Vec<StateRow>, DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.list_state(flow).await
    }

    async fn begin_run(
        &mut self,
        target: &EntityTarget,
        run: &RunRecord,
    ) -> Result<(), DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.begin_run(target, run).await
    }

    async fn write_chunk(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        chunk: Chunk,
    ) -> Result<(), DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.write_chunk(target, run_id, chunk).await
    }

    async fn finish_run(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        outcome: RunOutcome,
    ) -> Result<(), DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.finish_run(target, run_id, outcome).await
    }

    async fn list_runs(
        &mut self,
        flow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.list_runs(flow, limit).await
    }

    async fn columns(&mut self, table: &TableRef) -> Result<Vec<ColumnInfo>, DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.columns(table).await
    }

    async fn read_rows(&mut self, query: &RowQuery) -> Result<Vec<StoredRow>, DestinationError> {
        let _turn = turn(self.file.clone()).await;
        self.inner.read_rows(query).await
    }
}
