//! Destinations: the databases ferry writes to.
//!
//! # Contract
//!
//! A destination owns the entity tables and the bookkeeping schema `_ferry`
//! (`state`, `runs`, `columns`). Its one promise is that
//! [`Destination::write_chunk`] is atomic: the chunk's rows, the entity's
//! new state and the run's record count are committed in one transaction,
//! or none of them is. Everything the sync loop needs for exactly-once
//! results follows from that:
//!
//! - a crash before the commit leaves the previous state, so the next run
//!   fetches the chunk again;
//! - a crash after it leaves the new state, so the next run starts after it;
//! - upserts on the primary key make a chunk fetched twice harmless anyway.
//!
//! Columns are created and widened inside the same transaction, from the
//! records themselves (`columns` holds the shared type rules). Repeating a
//! chunk is always safe; repeating `finish_run` is safe.

pub mod columns;
pub mod duckdb;
mod fresh;
pub mod postgres;
mod step;
mod upsert;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::engine::Record;
use crate::spec::plan::{DestinationUrl, FieldType};

/// A table, always quoted when it reaches SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub schema: String,
    pub table: String,
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// What one entity run writes, and how.
#[derive(Debug, Clone)]
pub struct EntityTarget {
    pub flow: String,
    pub entity: String,
    pub table: TableRef,
    /// Record fields that form the key; empty for append-only tables.
    pub primary_key: Vec<String>,
    /// Types the spec declares (`fields.types`), by record field name.
    pub declared_types: IndexMap<String, FieldType>,
    /// Write into a staging table that `finish_run` swaps in.
    pub full_refresh: bool,
    /// The run continues an interrupted one: keep the staging table a full
    /// refresh already filled instead of starting it again.
    pub resuming: bool,
}

/// One chunk: records and the state to commit with them.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    /// Records to upsert (or append). Later records win over earlier ones
    /// with the same key.
    pub records: Vec<Record>,
    /// Records whose rows get `_ferry_deleted_at`, matched on the key
    /// fields they carry; a key not in the table inserts a row marked deleted.
    pub deletions: Vec<Record>,
    /// The entity's state after this chunk.
    pub state: Value,
}

/// A row of `_ferry.runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub flow: String,
    pub entity: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded`, `failed` or `interrupted`.
    pub status: String,
    pub records: u64,
    pub error: Option<String>,
}

/// A row of `_ferry.state`.
#[derive(Debug, Clone, Serialize)]
pub struct StateRow {
    pub flow: String,
    pub entity: String,
    pub state: Value,
    pub updated_at: DateTime<Utc>,
}

/// How a run ended, for `finish_run`.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub records: u64,
    pub error: Option<String>,
    /// The state to commit with the outcome.
    pub state: Value,
    /// For a completed full refresh with `deleted_rows: mark`: rows not
    /// synced since this time get `_ferry_deleted_at`.
    pub mark_unseen_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

/// A column as the destination keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// Field name in the records; empty for a column without a field
    /// (`_ferry_synced_at`, `_ferry_deleted_at`, a column a person added).
    pub field: String,
    /// Column name in the table (differs when the name had to change).
    pub column: String,
    /// SQL type as the database names it.
    pub sql_type: String,
}

/// Which rows [`Destination::read_rows`] returns: a child entity's parents.
#[derive(Debug, Clone)]
pub struct RowQuery {
    pub table: TableRef,
    /// Record fields of the table's primary key, in key order.
    pub key: Vec<String>,
    /// Record fields to return; `None` returns every field column.
    pub fields: Option<Vec<String>>,
    /// Only rows strictly after this (`_ferry_synced_at`, key) position.
    pub after: Option<RowPosition>,
    pub limit: usize,
}

/// A place in (`_ferry_synced_at`, key) order.
#[derive(Debug, Clone, PartialEq)]
pub struct RowPosition {
    pub synced_at: DateTime<Utc>,
    /// Key values in key order, as JSON values.
    pub key: Vec<Value>,
}

/// A row returned by [`Destination::read_rows`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub synced_at: DateTime<Utc>,
    /// Key values in key order.
    pub key: Vec<Value>,
    /// The requested fields by record field name; JSON columns parsed
    /// back into JSON values; NULL cells present as null.
    pub fields: Record,
}

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The destination cannot be opened or reached.
    #[error("{0}")]
    Connect(String),
    /// Another process holds the entity (PostgreSQL advisory lock) or the file.
    #[error("{0}")]
    Locked(String),
    /// A statement failed; the transaction was rolled back.
    #[error("{0}")]
    Write(String),
    /// State or bookkeeping rows that cannot be read.
    #[error("{0}")]
    State(String),
}

/// A database ferry writes to. One value per entity run (or per command);
/// each method is one transaction unless it says otherwise.
#[async_trait]
pub trait Destination: Send {
    /// The URL without secrets, for messages.
    fn describe(&self) -> String;

    /// Reads an entity's saved state.
    async fn read_state(
        &mut self,
        flow: &str,
        entity: &str,
    ) -> Result<Option<Value>, DestinationError>;

    /// Replaces (`Some`) or deletes (`None`) an entity's state outside a run.
    async fn write_state(
        &mut self,
        flow: &str,
        entity: &str,
        state: Option<&Value>,
    ) -> Result<(), DestinationError>;

    /// Lists saved states, of one flow or of all.
    async fn list_state(&mut self, flow: Option<&str>) -> Result<Vec<StateRow>, DestinationError>;

    /// Starts a run: takes the entity's lock (where the backend has one),
    /// marks older `running` rows of the entity as `interrupted`, and
    /// inserts the run's `running` row. A lock held elsewhere is
    /// [`DestinationError::Locked`], returned at once.
    async fn begin_run(
        &mut self,
        target: &EntityTarget,
        run: &RunRecord,
    ) -> Result<(), DestinationError>;

    /// Commits a chunk's rows, its state and the run's record count in one
    /// transaction.
    async fn write_chunk(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        chunk: Chunk,
    ) -> Result<(), DestinationError>;

    /// Ends a run: records the outcome and the final state, and for a
    /// completed full refresh swaps the staging table in, all in one
    /// transaction. Releases the lock.
    async fn finish_run(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        outcome: RunOutcome,
    ) -> Result<(), DestinationError>;

    /// Recent runs, newest first.
    async fn list_runs(
        &mut self,
        flow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, DestinationError>;

    /// Columns of an entity table, in table order; empty when it does not exist.
    async fn columns(&mut self, table: &TableRef) -> Result<Vec<ColumnInfo>, DestinationError>;

    /// Reads up to `query.limit` rows not marked deleted, in
    /// (`_ferry_synced_at`, key) order, strictly after `query.after`; no rows
    /// when the table does not exist. Text keys order by their bytes (a
    /// binary or "C" collation), numbers by value: the engine checks that
    /// each row comes after the last in that order. A row written again gets a later
    /// `_ferry_synced_at` and so moves to the end of this order, which lets
    /// a child entity resume in its parent list without skipping a parent
    /// that changed meanwhile. Reads only, so it may run beside a write
    /// on another handle of the same database.
    ///
    /// NOTE: this holds only while rows become visible in
    /// `_ferry_synced_at` order. DuckDB serializes a file's writes and
    /// takes the time inside them; a backend with concurrent writers to
    /// one table must do the same, or a child may pass a row that commits
    /// later with an earlier time.
    async fn read_rows(&mut self, query: &RowQuery) -> Result<Vec<StoredRow>, DestinationError> {
        Err(DestinationError::State(format!(
            "{}: reading the rows of {} (a child entity's parents) is not supported by this destination",
            self.describe(),
            query.table
        )))
    }
}

/// Frees a written chunk on a thread of its own. Freeing thousands of
/// records' maps and strings took about a tenth of the writing thread's
/// time, which the next chunk waits for, while the fetching thread had room.
pub(crate) fn drop_in_background(chunk: Chunk) {
    const SMALL: usize = 1_000;
    if chunk.records.len() + chunk.deletions.len() < SMALL {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ferry-free".into())
        .spawn(move || drop(chunk));
    if let Err(error) = spawned {
        // The closure and the chunk were dropped here instead.
        tracing::debug!(%error, "starting a thread to free a chunk failed; freed it in place");
    }
}

/// Opens the destination a URL names.
pub async fn open(url: &DestinationUrl) -> Result<Box<dyn Destination>, DestinationError> {
    match url {
        DestinationUrl::DuckDb { path } => Ok(Box::new(duckdb::DuckDbDestination::open(path)?)),
        DestinationUrl::Postgres { url } => {
            Ok(Box::new(postgres::PostgresDestination::open(url).await?))
        }
    }
}
