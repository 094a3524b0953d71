//! The DuckDB destination: one file, its entity tables, and `_ferry`.
//!
//! Every DuckDB call runs on a blocking thread (`spawn_blocking`) with
//! this destination's own connection. Each trait method is one
//! transaction. Dropping a transaction without committing rolls it back,
//! so an error at any statement leaves the file as it was.

mod bookkeeping;
mod load;
mod registry;
mod rows;
mod table;
mod types;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use duckdb::Connection;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::columns::{TrackedColumn, plan_columns};
use super::drop_in_background;
use super::fresh::FreshTable;
use super::{
    Chunk, ColumnInfo, Destination, DestinationError, EntityTarget, RowQuery, RunOutcome,
    RunRecord, RunStatus, StateRow, StoredRow, TableRef,
};
use crate::engine::Record;
use load::LoadTarget;
use table::qualified;

pub struct DuckDbDestination {
    path: String,
    session: Arc<Mutex<registry::Session>>,
    /// The table this run created, whose chunks skip the upsert.
    fresh: FreshTable,
    /// Permits for calls on the file, shared by its destinations.
    calls: Arc<Semaphore>,
}

impl DuckDbDestination {
    /// Opens (or creates) the database file at `path`, sharing the
    /// database with other destinations of this process that opened it.
    /// The directory must exist. A file locked by another process is
    /// [`DestinationError::Locked`].
    pub fn open(path: &str) -> Result<DuckDbDestination, DestinationError> {
        let mut session = registry::connect(path)?;
        let (writer, connection, _) = session.borrow(true);
        bookkeeping::create_schema(connection).map_err(|error| {
            DestinationError::Connect(format!(
                "duckdb://{path}: creating schema _ferry failed: {error}"
            ))
        })?;
        drop(writer);
        let calls = session.calls();
        Ok(DuckDbDestination {
            path: path.to_string(),
            session: Arc::new(Mutex::new(session)),
            fresh: FreshTable::default(),
            calls,
        })
    }

    /// Opens a new connection to the same database, for reading its tables,
    /// because another `Connection::open` of the file fails in this process.
    pub fn connection(&self) -> Result<Connection, DestinationError> {
        let session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        session.connection.try_clone().map_err(|error| {
            DestinationError::Connect(format!(
                "{}: opening a connection failed: {error}",
                self.url()
            ))
        })
    }

    /// Runs `work` on a blocking thread with this destination's connection,
    /// after the file's other write transactions when `access` is `Write`.
    async fn blocking<T, F>(&self, access: Access, work: F) -> Result<T, DestinationError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, DestinationError> + Send + 'static,
    {
        let session = Arc::clone(&self.session);
        // Acquiring fails only on a closed semaphore, and nothing closes
        // this one. Should it fail, the call runs without a permit.
        let permit = Arc::clone(&self.calls).acquire_owned().await.ok();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
            let (_writer, connection, catalog) = session.borrow(access == Access::Write);
            work(connection, catalog)
        });
        task.await.map_err(|error| {
            DestinationError::Write(format!(
                "duckdb://{}: the database task failed: {error}",
                self.path
            ))
        })?
    }

    fn url(&self) -> String {
        format!("duckdb://{}", self.path)
    }
}

/// Whether a call writes, and so waits for the file's writer lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

pub(crate) use super::step::Step;

/// A failed step of a write, before the destination names its file.
#[derive(Debug)]
pub(crate) struct StepError {
    step: Step,
    detail: String,
    /// An append met a key already in the table.
    conflict: bool,
}

pub(crate) type StepResult<T> = Result<T, StepError>;

impl StepError {
    /// NOTE: DuckDB's own message is kept as it is. The load path avoids
    /// the errors that quote a value (casts are widened first, keys are
    /// deduplicated), but a constraint a person added may still quote one.
    fn duckdb(step: Step, error: duckdb::Error) -> StepError {
        StepError {
            step,
            detail: registry::with_memory_advice(error.to_string()),
            conflict: false,
        }
    }

    fn message(step: Step, detail: String) -> StepError {
        StepError {
            step,
            detail,
            conflict: false,
        }
    }

    /// Returns whether the write failed on a key already in the table.
    fn is_conflict(&self) -> bool {
        self.conflict
    }

    fn into_destination_error(self, url: &str, table: &str) -> DestinationError {
        DestinationError::Write(format!(
            "{url}: {} failed for {table}: {}; the transaction was rolled back",
            self.step.as_str(),
            self.detail
        ))
    }
}

/// Attaches the step to a DuckDB error.
pub(crate) trait StepExt<T> {
    fn step(self, step: Step) -> StepResult<T>;
}

impl<T> StepExt<T> for duckdb::Result<T> {
    fn step(self, step: Step) -> StepResult<T> {
        self.map_err(|error| StepError::duckdb(step, error))
    }
}

/// Names the staging table of a full refresh, in the entity table's schema.
fn staging_table(table: &TableRef) -> TableRef {
    TableRef {
        schema: table.schema.clone(),
        table: format!("{}__ferry_staging", table.table),
    }
}

/// Returns the table a run writes into: the staging table during a full refresh.
fn write_table(target: &EntityTarget) -> TableRef {
    if target.full_refresh {
        staging_table(&target.table)
    } else {
        target.table.clone()
    }
}

fn state_error(url: &str, what: &str, error: duckdb::Error) -> DestinationError {
    let detail = registry::with_memory_advice(error.to_string());
    DestinationError::State(format!("{url}: {what} failed: {detail}"))
}

#[async_trait]
impl Destination for DuckDbDestination {
    fn describe(&self) -> String {
        self.url()
    }

    async fn read_state(
        &mut self,
        flow: &str,
        entity: &str,
    ) -> Result<Option<Value>, DestinationError> {
        let (url, flow, entity) = (self.url(), flow.to_string(), entity.to_string());
        self.blocking(Access::Read, move |connection, _| {
            bookkeeping::read_state(connection, &flow, &entity).map_err(|error| {
                state_error(
                    &url,
                    &format!("reading the state of {flow}.{entity}"),
                    error,
                )
            })
        })
        .await
    }

    async fn write_state(
        &mut self,
        flow: &str,
        entity: &str,
        state: Option<&Value>,
    ) -> Result<(), DestinationError> {
        let (url, flow, entity) = (self.url(), flow.to_string(), entity.to_string());
        let state = state.cloned();
        self.blocking(Access::Write, move |connection, _| {
            let result = match &state {
                Some(state) => {
                    bookkeeping::upsert_state(connection, &flow, &entity, state, &Utc::now())
                }
                None => bookkeeping::delete_state(connection, &flow, &entity),
            };
            result.map_err(|error| {
                state_error(
                    &url,
                    &format!("writing the state of {flow}.{entity}"),
                    error,
                )
            })
        })
        .await
    }

    async fn list_state(&mut self, flow: Option<&str>) -> Result<Vec<StateRow>, DestinationError> {
        let (url, flow) = (self.url(), flow.map(str::to_string));
        self.blocking(Access::Read, move |connection, _| {
            bookkeeping::list_state(connection, flow.as_deref())
                .map_err(|error| state_error(&url, "listing _ferry.state", error))
        })
        .await
    }

    async fn begin_run(
        &mut self,
        target: &EntityTarget,
        run: &RunRecord,
    ) -> Result<(), DestinationError> {
        let (url, target, run) = (self.url(), target.clone(), run.clone());
        self.blocking(Access::Write, move |connection, catalog| {
            begin_run(connection, catalog, &target, &run)
                .map_err(|error| error.into_destination_error(&url, &target.table.to_string()))
        })
        .await
    }

    async fn write_chunk(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        chunk: Chunk,
    ) -> Result<(), DestinationError> {
        let (url, target, run_id) = (self.url(), target.clone(), run_id.to_string());
        let mut fresh = std::mem::take(&mut self.fresh);
        let (written, fresh) = self
            .blocking(Access::Write, move |connection, catalog| {
                let table = write_table(&target);
                let appending = fresh.allows_append(&table);
                let mut written =
                    write_chunk(connection, catalog, &target, &run_id, &chunk, &mut fresh);
                if appending && written.as_ref().is_err_and(StepError::is_conflict) {
                    // The transaction rolled back; the chunk goes again, as upserts.
                    tracing::info!(
                        table = %table,
                        "a chunk met a key already in the table; this run upserts from now on"
                    );
                    fresh.conflicted();
                    written =
                        write_chunk(connection, catalog, &target, &run_id, &chunk, &mut fresh);
                }
                let written =
                    written.map_err(|error| error.into_destination_error(&url, &table.to_string()));
                drop_in_background(chunk);
                Ok((written, fresh))
            })
            .await?;
        self.fresh = fresh;
        written
    }

    async fn finish_run(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        outcome: RunOutcome,
    ) -> Result<(), DestinationError> {
        let (url, target, run_id) = (self.url(), target.clone(), run_id.to_string());
        self.blocking(Access::Write, move |connection, catalog| {
            finish_run(connection, catalog, &target, &run_id, &outcome)
                .map_err(|error| error.into_destination_error(&url, &target.table.to_string()))
        })
        .await
    }

    async fn list_runs(
        &mut self,
        flow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, DestinationError> {
        let (url, flow) = (self.url(), flow.map(str::to_string));
        self.blocking(Access::Read, move |connection, _| {
            bookkeeping::list_runs(connection, flow.as_deref(), limit)
                .map_err(|error| state_error(&url, "listing _ferry.runs", error))
        })
        .await
    }

    async fn columns(&mut self, table: &TableRef) -> Result<Vec<ColumnInfo>, DestinationError> {
        let (url, table) = (self.url(), table.clone());
        self.blocking(Access::Read, move |connection, _| {
            column_infos(connection, &table).map_err(|error| {
                state_error(&url, &format!("reading the columns of {table}"), error)
            })
        })
        .await
    }

    async fn read_rows(&mut self, query: &RowQuery) -> Result<Vec<StoredRow>, DestinationError> {
        let (url, query) = (self.url(), query.clone());
        self.blocking(Access::Read, move |connection, catalog| {
            rows::read_rows(connection, catalog, &query).map_err(|message| {
                DestinationError::State(format!(
                    "{url}: reading the rows of {} failed: {message}",
                    query.table
                ))
            })
        })
        .await
    }
}

fn begin_run(
    connection: &mut Connection,
    catalog: &str,
    target: &EntityTarget,
    run: &RunRecord,
) -> StepResult<()> {
    let transaction = connection.transaction().step(Step::Begin)?;
    if target.full_refresh && !target.resuming {
        let staging = staging_table(&target.table);
        let sql = format!("DROP TABLE IF EXISTS {}", qualified(catalog, &staging));
        transaction.execute_batch(&sql).step(Step::DropStaging)?;
        bookkeeping::forget_columns(&transaction, &staging).step(Step::DropStaging)?;
    }
    bookkeeping::insert_run(&transaction, run).step(Step::SaveRun)?;
    transaction.commit().step(Step::Commit)
}

fn write_chunk(
    connection: &mut Connection,
    catalog: &str,
    target: &EntityTarget,
    run_id: &str,
    chunk: &Chunk,
    fresh: &mut FreshTable,
) -> StepResult<()> {
    let started = std::time::Instant::now();
    let now = Utc::now();
    let transaction = connection.transaction().step(Step::Begin)?;
    if !chunk.records.is_empty() || !chunk.deletions.is_empty() {
        write_rows(&transaction, catalog, target, chunk, now, fresh)?;
    }
    let rows_written = started.elapsed();
    bookkeeping::upsert_state(
        &transaction,
        &target.flow,
        &target.entity,
        &chunk.state,
        &now,
    )
    .step(Step::SaveState)?;
    bookkeeping::add_run_records(&transaction, run_id, chunk.records.len() as u64)
        .step(Step::SaveRun)?;
    let before_commit = started.elapsed();
    transaction.commit().step(Step::Commit)?;
    tracing::debug!(
        table = %write_table(target),
        records = chunk.records.len(),
        rows_ms = rows_written.as_millis() as u64,
        commit_ms = (started.elapsed() - before_commit).as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "committed chunk"
    );
    Ok(())
}

/// Creates or evolves the table for the chunk, then loads its records and
/// deletions (in that order, so a key both written and deleted in one
/// chunk ends up marked deleted).
fn write_rows(
    connection: &Connection,
    catalog: &str,
    target: &EntityTarget,
    chunk: &Chunk,
    now: DateTime<Utc>,
    fresh: &mut FreshTable,
) -> StepResult<()> {
    let table = write_table(target);
    let keyed = !target.primary_key.is_empty();
    load::check_keys(&table, &target.primary_key, &chunk.records, "record")?;
    if keyed {
        load::check_keys(&table, &target.primary_key, &chunk.deletions, "deletion")?;
    }

    // Deletions contribute only their key fields to the table.
    let deleted_keys: Vec<Record> = chunk
        .deletions
        .iter()
        .map(|record| {
            let keys = record
                .iter()
                .filter(|(field, _)| target.primary_key.contains(field));
            keys.map(|(field, value)| (field.clone(), value.clone()))
                .collect()
        })
        .collect();

    let shape = table::read_shape(connection, &table).step(Step::ReadCatalog)?;
    let deletion_rows: &[Record] = if keyed { &deleted_keys } else { &[] };
    let rows = chunk.records.iter().chain(deletion_rows);
    let plan = plan_columns(
        &table,
        &shape.tracked,
        &shape.other,
        rows,
        &target.declared_types,
        types::DIALECT,
    );

    let keys = key_indexes(&table, &plan.columns, &target.primary_key)?;
    let key_columns: Vec<String> = keys
        .iter()
        .map(|&index| plan.columns[index].column.clone())
        .collect();
    if shape.exists {
        table::evolve(connection, catalog, &table, &shape, &plan, &key_columns)?;
    } else {
        table::create(connection, catalog, &table, &plan, &key_columns)?;
        fresh.created(&table);
    }
    if !shape.exists || !plan.widened.is_empty() || !plan.added.is_empty() {
        bookkeeping::save_columns(connection, &table, &plan.columns, &now)
            .step(Step::SaveColumns)?;
    }

    let load_target = LoadTarget {
        catalog,
        table: &table,
        columns: &plan.columns,
        keys: &keys,
        declared: &target.declared_types,
        synced_at: now,
    };
    if !chunk.records.is_empty() {
        let append = fresh.allows_append(&table);
        load::write_records(connection, &load_target, &chunk.records, append)?;
    }
    if !chunk.deletions.is_empty() {
        if keyed {
            load::mark_deleted(connection, &load_target, &deleted_keys)?;
        } else {
            tracing::warn!(
                table = %table,
                deletions = chunk.deletions.len(),
                "ignored deletions for an append-only table, which has no key to match"
            );
        }
    }
    Ok(())
}

fn key_indexes(
    table: &TableRef,
    columns: &[TrackedColumn],
    primary_key: &[String],
) -> StepResult<Vec<usize>> {
    primary_key
        .iter()
        .map(|field| {
            columns
                .iter()
                .position(|column| &column.field == field)
                .ok_or_else(|| {
                    StepError::message(
                        Step::CheckKeys,
                        format!("{table} has no column for primary-key field {field:?}"),
                    )
                })
        })
        .collect()
}

fn finish_run(
    connection: &mut Connection,
    catalog: &str,
    target: &EntityTarget,
    run_id: &str,
    outcome: &RunOutcome,
) -> StepResult<()> {
    let now = Utc::now();
    let transaction = connection.transaction().step(Step::Begin)?;
    let succeeded = outcome.status == RunStatus::Succeeded;
    if succeeded && target.full_refresh {
        swap_staging(&transaction, catalog, &target.table)?;
    }
    if let (true, Some(before)) = (succeeded, &outcome.mark_unseen_before) {
        mark_unseen(&transaction, catalog, &target.table, before, &now)?;
    }
    bookkeeping::upsert_state(
        &transaction,
        &target.flow,
        &target.entity,
        &outcome.state,
        &now,
    )
    .step(Step::SaveState)?;
    bookkeeping::finish_run(
        &transaction,
        run_id,
        outcome.status.as_str(),
        outcome.records,
        outcome.error.as_deref(),
        &now,
    )
    .step(Step::SaveRun)?;
    transaction.commit().step(Step::Commit)
}

/// Replaces the table with its staging table. A full refresh that wrote
/// no rows has no staging table: the source is empty, so the table is
/// emptied.
fn swap_staging(connection: &Connection, catalog: &str, table: &TableRef) -> StepResult<()> {
    let staging = staging_table(table);
    if !table::exists(connection, &staging).step(Step::ReadCatalog)? {
        if table::exists(connection, table).step(Step::ReadCatalog)? {
            let sql = format!("DELETE FROM {}", qualified(catalog, table));
            connection.execute_batch(&sql).step(Step::Swap)?;
        }
        return Ok(());
    }
    let statements = [
        format!("DROP TABLE IF EXISTS {}", qualified(catalog, table)),
        format!(
            "ALTER TABLE {} RENAME TO {}",
            qualified(catalog, &staging),
            super::columns::quote_ident(&table.table)
        ),
    ];
    for sql in statements {
        connection.execute_batch(&sql).step(Step::Swap)?;
    }
    bookkeeping::rename_columns_table(connection, &staging, table).step(Step::Swap)?;
    tracing::info!(table = %table, "swapped the staging table in");
    Ok(())
}

fn mark_unseen(
    connection: &Connection,
    catalog: &str,
    table: &TableRef,
    before: &DateTime<Utc>,
    now: &DateTime<Utc>,
) -> StepResult<()> {
    if !table::exists(connection, table).step(Step::ReadCatalog)? {
        return Ok(());
    }
    let synced = super::columns::quote_ident(super::columns::SYNCED_AT);
    let deleted = super::columns::quote_ident(super::columns::DELETED_AT);
    let sql = format!(
        "UPDATE {} SET {deleted} = CAST(? AS TIMESTAMPTZ) \
         WHERE {synced} < CAST(? AS TIMESTAMPTZ) AND {deleted} IS NULL",
        qualified(catalog, table)
    );
    let marked = connection
        .execute(
            &sql,
            duckdb::params![
                super::columns::timestamp_text(now),
                super::columns::timestamp_text(before)
            ],
        )
        .step(Step::MarkUnseen)?;
    tracing::info!(table = %table, rows = marked, "marked rows the run did not see as deleted");
    Ok(())
}

fn column_infos(connection: &Connection, table: &TableRef) -> duckdb::Result<Vec<ColumnInfo>> {
    let catalog = table::catalog_columns(connection, table)?;
    let tracked = bookkeeping::tracked_columns(connection, table)?;
    let infos = catalog
        .into_iter()
        .map(|(column, sql_type)| {
            let field = tracked
                .iter()
                .find(|tracked| tracked.column == column)
                .map(|tracked| tracked.field.clone())
                .unwrap_or_default();
            ColumnInfo {
                field,
                column,
                sql_type,
            }
        })
        .collect();
    Ok(infos)
}

/// Column names and DuckDB types that `records` would create in a new
/// table, for `ferry preview`.
pub fn preview_columns(
    records: &[Record],
    declared: &indexmap::IndexMap<String, crate::spec::plan::FieldType>,
) -> Vec<(String, String)> {
    let table = TableRef {
        schema: String::new(),
        table: String::new(),
    };
    let plan = plan_columns(&table, &[], &[], records, declared, types::DIALECT);
    plan.columns
        .iter()
        .map(|column| (column.column.clone(), types::sql_type(&column.column_type)))
        .collect()
}
