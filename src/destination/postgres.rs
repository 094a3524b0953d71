//! The PostgreSQL destination: entity tables in one database, and `_ferry`.
//!
//! Each destination value has its own session, so entities of one flow
//! write at once. Each trait method is one transaction. Dropping a
//! transaction without committing rolls it back, so an error at any
//! statement (or a lost connection) leaves the database as it was. A
//! session that closed is opened again by the next call.
//!
//! Runs hold an advisory lock per flow entity on a second session (see
//! `lock`), so two processes never write one entity at once.

mod bookkeeping;
mod connect;
mod copy;
mod error;
mod load;
mod lock;
mod rows;
mod table;
mod tls;
mod types;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};

use super::columns::{DELETED_AT, SYNCED_AT, TrackedColumn, plan_columns, quote_ident};
use super::drop_in_background;
use super::fresh::FreshTable;
use super::{
    Chunk, ColumnInfo, Destination, DestinationError, EntityTarget, RowQuery, RunOutcome,
    RunRecord, RunStatus, StateRow, StoredRow, TableRef,
};
use crate::engine::Record;
use crate::redact::{redact, register};
use connect::Settings;
use error::describe;
use load::LoadTarget;
use lock::LockSession;
use table::{derived_name, qualified};

pub use lock::run_lock_key;

pub struct PostgresDestination {
    settings: Settings,
    client: Client,
    /// The session holding this destination's run locks, while it has any.
    locks: Option<LockSession>,
    /// The table this run created, whose chunks skip the upsert.
    fresh: FreshTable,
    /// A statement failed because the server ended the session. The
    /// client may not have noticed the closed socket yet, so the next call
    /// connects again instead of asking it.
    ended: bool,
}

impl PostgresDestination {
    /// Connects to the database a `postgres://` or `postgresql://` URL
    /// names and creates `_ferry` where missing.
    pub async fn open(url: &str) -> Result<PostgresDestination, DestinationError> {
        let settings = Settings::from_url(url)?;
        if let Some(password) = settings.password() {
            register(&password);
        }
        let mut client = settings.connect().await?;
        bookkeeping::create_schema(&mut client)
            .await
            .map_err(|error| {
                DestinationError::Connect(redact(&format!(
                    "{}: creating schema _ferry failed: {}; create it as a role that may, or grant this role CREATE on the database",
                    settings.shown,
                    describe(&error)
                )))
            })?;
        Ok(PostgresDestination {
            settings,
            client,
            locks: None,
            fresh: FreshTable::default(),
            ended: false,
        })
    }

    /// Returns the session, opening it again when it closed (the server
    /// restarted, or the connection broke).
    async fn client(&mut self) -> Result<&mut Client, DestinationError> {
        if self.ended || self.client.is_closed() {
            tracing::warn!(destination = %self.settings.shown, "the PostgreSQL session closed; connecting again");
            self.client = self.settings.connect().await?;
            self.ended = false;
        }
        Ok(&mut self.client)
    }

    /// Takes the run lock of the target's entity, or checks that this
    /// destination still holds it: a lock session that closed lost its
    /// locks, so they are taken again before anything is written.
    async fn hold_lock(&mut self, target: &EntityTarget) -> Result<(), DestinationError> {
        let key = run_lock_key(&target.flow, &target.entity);
        let lost = self.locks.as_ref().is_some_and(LockSession::is_closed);
        if lost {
            let names = self
                .locks
                .as_ref()
                .map(LockSession::held_names)
                .unwrap_or_default();
            tracing::warn!(destination = %self.settings.shown, runs = ?names, "the session holding run locks closed; taking them again");
            self.locks = None;
        }
        if self.locks.as_ref().is_some_and(|locks| locks.holds(key)) {
            return Ok(());
        }
        if self.locks.is_none() {
            self.locks = Some(LockSession::open(&self.settings).await?);
        }
        let locks = self
            .locks
            .as_mut()
            .expect("the lock session was just opened");
        locks
            .try_lock(&self.settings.shown, &target.flow, &target.entity)
            .await
    }

    async fn release_lock(&mut self, target: &EntityTarget) {
        let Some(locks) = self.locks.as_mut() else {
            return;
        };
        locks.unlock(&target.flow, &target.entity).await;
        if locks.is_empty() {
            self.locks = None;
        }
    }

    fn state_error(&self, what: &str, error: &tokio_postgres::Error) -> DestinationError {
        DestinationError::State(redact(&format!(
            "{}: {what} failed: {}",
            self.settings.shown,
            describe(error)
        )))
    }
}

pub(crate) use super::step::Step;

/// A failed step of a write, before the destination names its URL.
#[derive(Debug)]
pub(crate) struct StepError {
    step: Step,
    detail: String,
    /// Another process started the entity after this run: the write is
    /// [`DestinationError::Locked`] rather than a failed statement.
    overtaken: bool,
    /// A row's key was already in the table (SQLSTATE 23505).
    conflict: bool,
    /// The server ended the session (a closed socket, or SQLSTATE class
    /// 57P: terminated by an administrator, shut down, crashed).
    ended_session: bool,
}

pub(crate) type StepResult<T> = Result<T, StepError>;

impl StepError {
    fn message(step: Step, detail: String) -> StepError {
        StepError {
            step,
            detail,
            overtaken: false,
            conflict: false,
            ended_session: false,
        }
    }

    /// Returns whether the write failed on a key already in the table.
    fn is_conflict(&self) -> bool {
        self.conflict
    }

    fn into_destination_error(self, url: &str, table: &str) -> DestinationError {
        if self.overtaken {
            return DestinationError::Locked(redact(&format!("{url}: {}", self.detail)));
        }
        DestinationError::Write(redact(&format!(
            "{url}: {} failed for {table}: {}; the transaction was rolled back",
            self.step.as_str(),
            self.detail
        )))
    }
}

/// Attaches the step to a driver error.
pub(crate) trait StepExt<T> {
    fn step(self, step: Step) -> StepResult<T>;
}

impl<T> StepExt<T> for Result<T, tokio_postgres::Error> {
    fn step(self, step: Step) -> StepResult<T> {
        self.map_err(|error| StepError {
            conflict: error.code() == Some(&SqlState::UNIQUE_VIOLATION),
            ended_session: error.is_closed()
                || error
                    .code()
                    .is_some_and(|code| code.code().starts_with("57P")),
            ..StepError::message(step, describe(&error))
        })
    }
}

/// Names the staging table of a full refresh, in the entity table's schema.
fn staging_table(table: &TableRef) -> TableRef {
    TableRef {
        schema: table.schema.clone(),
        table: derived_name(&table.table, "__ferry_staging"),
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

#[async_trait]
impl Destination for PostgresDestination {
    fn describe(&self) -> String {
        self.settings.shown.clone()
    }

    async fn read_state(
        &mut self,
        flow: &str,
        entity: &str,
    ) -> Result<Option<Value>, DestinationError> {
        let client = self.client().await?;
        let result = bookkeeping::read_state(client, flow, entity).await;
        result.map_err(|error| {
            self.state_error(&format!("reading the state of {flow}.{entity}"), &error)
        })
    }

    async fn write_state(
        &mut self,
        flow: &str,
        entity: &str,
        state: Option<&Value>,
    ) -> Result<(), DestinationError> {
        let client = self.client().await?;
        let result = match state {
            Some(state) => {
                bookkeeping::upsert_state(client, flow, entity, state, &Utc::now()).await
            }
            None => bookkeeping::delete_state(client, flow, entity).await,
        };
        result.map_err(|error| {
            self.state_error(&format!("writing the state of {flow}.{entity}"), &error)
        })
    }

    async fn list_state(&mut self, flow: Option<&str>) -> Result<Vec<StateRow>, DestinationError> {
        let client = self.client().await?;
        let result = bookkeeping::list_state(client, flow).await;
        result.map_err(|error| self.state_error("listing _ferry.state", &error))
    }

    async fn begin_run(
        &mut self,
        target: &EntityTarget,
        run: &RunRecord,
    ) -> Result<(), DestinationError> {
        let shown = self.settings.shown.clone();
        let table_name = target.table.to_string();
        let named = table::check_names(&target.table)
            .map_err(|error| error.into_destination_error(&shown, &table_name));
        named?;
        self.hold_lock(target).await?;

        let client = self.client().await?;
        let begun = begin_run(client, target, run).await;
        if let Err(error) = begun {
            self.ended |= error.ended_session;
            self.release_lock(target).await;
            return Err(error.into_destination_error(&shown, &table_name));
        }
        Ok(())
    }

    async fn write_chunk(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        mut chunk: Chunk,
    ) -> Result<(), DestinationError> {
        self.hold_lock(target).await?;
        let shown = self.settings.shown.clone();
        let table = write_table(target);
        let appending = self.fresh.allows_append(&table);
        let mut fresh = std::mem::take(&mut self.fresh);
        let client = self.client().await?;
        let mut written = write_chunk(client, target, run_id, &mut chunk, &mut fresh).await;
        if appending && written.as_ref().is_err_and(StepError::is_conflict) {
            // The transaction rolled back; the chunk goes again, as upserts.
            tracing::info!(
                table = %table,
                "a chunk met a key already in the table; this run upserts from now on"
            );
            fresh.conflicted();
            written = write_chunk(client, target, run_id, &mut chunk, &mut fresh).await;
        }
        self.fresh = fresh;
        self.ended |= written.as_ref().is_err_and(|error| error.ended_session);
        drop_in_background(chunk);
        written.map_err(|error| error.into_destination_error(&shown, &table.to_string()))
    }

    async fn finish_run(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        outcome: RunOutcome,
    ) -> Result<(), DestinationError> {
        let shown = self.settings.shown.clone();
        let finished = match self.client().await {
            Ok(client) => {
                let finished = finish_run(client, target, run_id, &outcome).await;
                self.ended |= finished.as_ref().is_err_and(|error| error.ended_session);
                finished.map_err(|error| {
                    error.into_destination_error(&shown, &target.table.to_string())
                })
            }
            Err(error) => Err(error),
        };
        // The run is over either way, so another process may start it.
        self.release_lock(target).await;
        finished
    }

    async fn list_runs(
        &mut self,
        flow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, DestinationError> {
        let client = self.client().await?;
        let result = bookkeeping::list_runs(client, flow, limit).await;
        result.map_err(|error| self.state_error("listing _ferry.runs", &error))
    }

    async fn columns(&mut self, table: &TableRef) -> Result<Vec<ColumnInfo>, DestinationError> {
        let client = self.client().await?;
        let result = column_infos(client, table).await;
        result.map_err(|error| self.state_error(&format!("reading the columns of {table}"), &error))
    }

    async fn read_rows(&mut self, query: &RowQuery) -> Result<Vec<StoredRow>, DestinationError> {
        let shown = self.settings.shown.clone();
        let client = self.client().await?;
        read_rows(client, query).await.map_err(|message| {
            DestinationError::State(redact(&format!(
                "{shown}: reading the rows of {} failed: {message}",
                query.table
            )))
        })
    }
}

/// Reads rows in a read-only transaction whose settings make `to_json`
/// spell timestamps in UTC and doubles by their shortest exact digits.
async fn read_rows(client: &mut Client, query: &RowQuery) -> Result<Vec<StoredRow>, String> {
    let transaction = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|error| describe(&error))?;
    let settings = "SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 1";
    transaction
        .batch_execute(settings)
        .await
        .map_err(|error| describe(&error))?;
    let rows = rows::read_rows(&transaction, query).await?;
    transaction
        .commit()
        .await
        .map_err(|error| describe(&error))?;
    Ok(rows)
}

/// Connects to the database `url` names and runs `SELECT 1`, without
/// creating anything: a readiness check with the destination's TLS
/// settings.
pub async fn ping(url: &str) -> Result<(), DestinationError> {
    let settings = Settings::from_url(url)?;
    let client = settings.connect().await?;
    client.simple_query("SELECT 1").await.map_err(|error| {
        DestinationError::Connect(redact(&format!(
            "{}: SELECT 1 failed: {}",
            settings.shown,
            describe(&error)
        )))
    })?;
    Ok(())
}

/// Fails when another process started the entity after this run. Its
/// `begin_run` marked this run `interrupted`, which happens only when this
/// run's lock session closed (the lock is then free) while the run went
/// on. The row stays locked until the transaction ends, so a `begin_run`
/// elsewhere waits for this write. A run without a row (a webhook write)
/// passes.
async fn check_run_current(
    transaction: &Transaction<'_>,
    target: &EntityTarget,
    run_id: &str,
) -> StepResult<()> {
    let status = bookkeeping::lock_run_status(transaction, run_id)
        .await
        .step(Step::CheckRun)?;
    if status.as_deref() != Some("interrupted") {
        return Ok(());
    }
    Err(StepError {
        step: Step::CheckRun,
        detail: format!(
            "{}/{} started elsewhere after this run's lock session closed, and run {run_id} is marked interrupted; this run stopped without writing",
            target.flow, target.entity
        ),
        overtaken: true,
        conflict: false,
        ended_session: false,
    })
}

/// Waits for the table's other write transactions (see
/// `lock::table_lock_params`); the lock ends with the transaction.
async fn lock_table(transaction: &Transaction<'_>, table: &TableRef) -> StepResult<()> {
    let (class, key) = lock::table_lock_params(table);
    transaction
        .execute(lock::TRANSACTION_LOCK_SQL, &[&class, &key])
        .await
        .step(Step::LockTable)?;
    Ok(())
}

async fn begin_run(client: &mut Client, target: &EntityTarget, run: &RunRecord) -> StepResult<()> {
    let transaction = client.transaction().await.step(Step::Begin)?;
    if target.full_refresh && !target.resuming {
        let staging = staging_table(&target.table);
        let sql = format!("DROP TABLE IF EXISTS {}", qualified(&staging));
        transaction
            .batch_execute(&sql)
            .await
            .step(Step::DropStaging)?;
        bookkeeping::forget_columns(&transaction, &staging)
            .await
            .step(Step::DropStaging)?;
    }
    bookkeeping::insert_run(&transaction, run)
        .await
        .step(Step::SaveRun)?;
    transaction.commit().await.step(Step::Commit)
}

async fn write_chunk(
    client: &mut Client,
    target: &EntityTarget,
    run_id: &str,
    chunk: &mut Chunk,
    fresh: &mut FreshTable,
) -> StepResult<()> {
    let started = std::time::Instant::now();
    let transaction = client.transaction().await.step(Step::Begin)?;
    // A chunk's commit does not wait for its WAL flush. A server crash
    // may then lose the last chunks, but rows and state together, so the
    // next run fetches those pages again. `finish_run` commits with the
    // flush, which makes every earlier chunk durable before ferry reports
    // the run.
    transaction
        .batch_execute("SET LOCAL synchronous_commit = off")
        .await
        .step(Step::Begin)?;
    check_run_current(&transaction, target, run_id).await?;
    lock_table(&transaction, &write_table(target)).await?;
    // Taken once the table's earlier writes committed, so sync times
    // grow in commit order.
    let now = Utc::now();
    if !chunk.records.is_empty() || !chunk.deletions.is_empty() {
        write_rows(&transaction, target, chunk, now, fresh).await?;
    }
    let rows_written = started.elapsed();
    bookkeeping::upsert_state(
        &transaction,
        &target.flow,
        &target.entity,
        &chunk.state,
        &now,
    )
    .await
    .step(Step::SaveState)?;
    bookkeeping::add_run_records(&transaction, run_id, chunk.records.len() as u64)
        .await
        .step(Step::SaveRun)?;
    transaction.commit().await.step(Step::Commit)?;
    tracing::debug!(
        table = %write_table(target),
        records = chunk.records.len(),
        rows_ms = rows_written.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "committed chunk"
    );
    Ok(())
}

/// Creates or evolves the table for the chunk, then loads its records and
/// deletions (in that order, so a key both written and deleted in one
/// chunk ends up marked deleted).
async fn write_rows(
    transaction: &Transaction<'_>,
    target: &EntityTarget,
    chunk: &mut Chunk,
    now: DateTime<Utc>,
    fresh: &mut FreshTable,
) -> StepResult<()> {
    let table = write_table(target);
    table::check_names(&table)?;
    let keyed = !target.primary_key.is_empty();
    load::check_keys(&table, &target.primary_key, &chunk.records, "record")?;
    if keyed {
        load::check_keys(&table, &target.primary_key, &chunk.deletions, "deletion")?;
    }
    let renamed = load::repair_field_names(&mut chunk.records)
        + load::repair_field_names(&mut chunk.deletions);
    if renamed > 0 {
        tracing::warn!(
            table = %table,
            records = renamed,
            "replaced U+0000 in field names with U+FFFD, because PostgreSQL names cannot hold it"
        );
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

    let shape = table::read_shape(transaction, &table)
        .await
        .step(Step::ReadCatalog)?;
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
        table::evolve(transaction, &table, &shape, &plan).await?;
    } else {
        table::create(transaction, &table, &plan, &key_columns).await?;
        fresh.created(&table);
    }
    if !shape.exists || plan.changes_schema() {
        bookkeeping::save_columns(transaction, &table, &plan.columns, &now)
            .await
            .step(Step::SaveColumns)?;
    }

    let load_target = LoadTarget {
        table: &table,
        columns: &plan.columns,
        keys: &keys,
        declared: &target.declared_types,
        synced_at: now,
    };
    if !chunk.records.is_empty() {
        let append = fresh.allows_append(&table);
        load::write_records(transaction, &load_target, &chunk.records, append).await?;
    }
    if !chunk.deletions.is_empty() {
        if keyed {
            load::mark_deleted(transaction, &load_target, &deleted_keys).await?;
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
            let field = field.replace('\0', "\u{FFFD}");
            columns
                .iter()
                .position(|column| column.field == field)
                .ok_or_else(|| {
                    StepError::message(
                        Step::CheckKeys,
                        format!("{table} has no column for primary-key field {field:?}"),
                    )
                })
        })
        .collect()
}

async fn finish_run(
    client: &mut Client,
    target: &EntityTarget,
    run_id: &str,
    outcome: &RunOutcome,
) -> StepResult<()> {
    let transaction = client.transaction().await.step(Step::Begin)?;
    // Set here, not left to the server's default, which may be off: this
    // commit waits for the log flush, and with it every earlier chunk's
    // commit, before ferry reports the run.
    transaction
        .batch_execute("SET LOCAL synchronous_commit = on")
        .await
        .step(Step::Begin)?;
    check_run_current(&transaction, target, run_id).await?;
    let succeeded = outcome.status == RunStatus::Succeeded;
    if succeeded && (target.full_refresh || outcome.mark_unseen_before.is_some()) {
        lock_table(&transaction, &target.table).await?;
    }
    let now = Utc::now();
    if succeeded && target.full_refresh {
        swap_staging(&transaction, &target.table).await?;
    }
    if let (true, Some(before)) = (succeeded, &outcome.mark_unseen_before) {
        mark_unseen(&transaction, &target.table, before, &now).await?;
    }
    bookkeeping::upsert_state(
        &transaction,
        &target.flow,
        &target.entity,
        &outcome.state,
        &now,
    )
    .await
    .step(Step::SaveState)?;
    bookkeeping::finish_run(
        &transaction,
        run_id,
        outcome.status.as_str(),
        outcome.records,
        outcome.error.as_deref(),
        &now,
    )
    .await
    .step(Step::SaveRun)?;
    transaction.commit().await.step(Step::Commit)
}

/// Replaces the table with its staging table, and gives the staging
/// table's primary key the table's own key name. A full refresh that
/// wrote no rows has no staging table: the source is empty, so the table
/// is emptied.
async fn swap_staging(transaction: &Transaction<'_>, table: &TableRef) -> StepResult<()> {
    let staging = staging_table(table);
    if !table::exists(transaction, &staging)
        .await
        .step(Step::ReadCatalog)?
    {
        if table::exists(transaction, table)
            .await
            .step(Step::ReadCatalog)?
        {
            let sql = format!("DELETE FROM {}", qualified(table));
            transaction.batch_execute(&sql).await.step(Step::Swap)?;
        }
        return Ok(());
    }
    let statements = [
        format!("DROP TABLE IF EXISTS {}", qualified(table)),
        format!(
            "ALTER TABLE {} RENAME TO {}",
            qualified(&staging),
            quote_ident(&table.table)
        ),
    ];
    for sql in statements {
        transaction.batch_execute(&sql).await.step(Step::Swap)?;
    }
    rename_primary_key(transaction, table, &staging).await?;
    bookkeeping::rename_columns_table(transaction, &staging, table)
        .await
        .step(Step::Swap)?;
    tracing::info!(table = %table, "swapped the staging table in");
    Ok(())
}

/// Renames the swapped-in table's key from the staging name, so the next
/// full refresh can give its staging table that name again.
async fn rename_primary_key(
    transaction: &Transaction<'_>,
    table: &TableRef,
    staging: &TableRef,
) -> StepResult<()> {
    let from = derived_name(&staging.table, "_pkey");
    let to = derived_name(&table.table, "_pkey");
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = $1 AND c.relname = $2 AND k.conname = $3) \
               AND NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = $1 AND c.relname = $4)";
    let row = transaction
        .query_one(sql, &[&table.schema, &table.table, &from, &to])
        .await
        .step(Step::Swap)?;
    if row.get(0) {
        let sql = format!(
            "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
            qualified(table),
            quote_ident(&from),
            quote_ident(&to)
        );
        transaction.batch_execute(&sql).await.step(Step::Swap)?;
    }
    Ok(())
}

async fn mark_unseen(
    transaction: &Transaction<'_>,
    table: &TableRef,
    before: &DateTime<Utc>,
    now: &DateTime<Utc>,
) -> StepResult<()> {
    if !table::exists(transaction, table)
        .await
        .step(Step::ReadCatalog)?
    {
        return Ok(());
    }
    let synced = quote_ident(SYNCED_AT);
    let deleted = quote_ident(DELETED_AT);
    let sql = format!(
        "UPDATE {} SET {deleted} = $1 WHERE {synced} < $2 AND {deleted} IS NULL",
        qualified(table)
    );
    let marked = transaction
        .execute(&sql, &[now, before])
        .await
        .step(Step::MarkUnseen)?;
    tracing::info!(table = %table, rows = marked, "marked rows the run did not see as deleted");
    Ok(())
}

async fn column_infos(
    client: &mut Client,
    table: &TableRef,
) -> Result<Vec<ColumnInfo>, tokio_postgres::Error> {
    let catalog = table::catalog_columns(client, table).await?;
    let tracked = bookkeeping::tracked_columns(client, table).await?;
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
