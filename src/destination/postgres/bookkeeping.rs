//! The `_ferry` schema: entity state, runs, and the columns ferry created.
//!
//! `state` is `json`, not `jsonb`: it keeps the document's text exactly,
//! and accepts `\u0000`, which `jsonb` rejects (a cursor taken from a
//! record may hold one). Text written here (names, error messages) passes
//! through [`without_nul`], because `text` rejects U+0000.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::GenericClient;

use super::lock;
use super::types::sql_type;
use crate::destination::columns::{ColumnKind, ColumnType, TrackedColumn};
use crate::destination::{RunRecord, StateRow, TableRef};

/// `_ferry.columns` rows of a table are replaced together (delete, then
/// insert) in the transaction that changes the table.
const CREATE_SCHEMA: &str = r#"
CREATE SCHEMA IF NOT EXISTS _ferry;
CREATE TABLE IF NOT EXISTS _ferry.state (
    flow text NOT NULL,
    entity text NOT NULL,
    state json,
    updated_at timestamp with time zone NOT NULL,
    PRIMARY KEY (flow, entity)
);
CREATE TABLE IF NOT EXISTS _ferry.runs (
    run_id text PRIMARY KEY,
    flow text NOT NULL,
    entity text NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone,
    status text NOT NULL,
    records bigint NOT NULL,
    error text
);
CREATE INDEX IF NOT EXISTS runs_flow_entity ON _ferry.runs (flow, entity, started_at);
CREATE TABLE IF NOT EXISTS _ferry.columns (
    "schema" text NOT NULL,
    "table" text NOT NULL,
    field text NOT NULL,
    "column" text NOT NULL,
    "type" text NOT NULL,
    kind text NOT NULL,
    integer_digits integer NOT NULL,
    scale integer NOT NULL,
    double_exact boolean NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    PRIMARY KEY ("schema", "table", field)
);
"#;

/// Creates `_ferry` and its tables where missing. Sessions that start at
/// once take turns (a transaction lock), because two concurrent `CREATE
/// … IF NOT EXISTS` of one name can both pass the check and then collide.
/// A role that may not create schemas still works once they exist.
pub async fn create_schema(
    client: &mut tokio_postgres::Client,
) -> Result<(), tokio_postgres::Error> {
    if schema_exists(client).await? {
        return Ok(());
    }
    let transaction = client.transaction().await?;
    let (class, key) = lock::schema_lock_params("_ferry");
    transaction
        .execute(lock::TRANSACTION_LOCK_SQL, &[&class, &key])
        .await?;
    if !schema_exists(&transaction).await? {
        transaction.batch_execute(CREATE_SCHEMA).await?;
        tracing::info!("created schema _ferry");
    }
    transaction.commit().await
}

async fn schema_exists(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let sql = "SELECT count(*) = 3 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = '_ferry' AND c.relname IN ('state', 'runs', 'columns')";
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Replaces U+0000, which PostgreSQL `text` cannot hold, with U+FFFD.
pub fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

pub async fn read_state(
    client: &impl GenericClient,
    flow: &str,
    entity: &str,
) -> Result<Option<Value>, tokio_postgres::Error> {
    let sql = "SELECT state::text FROM _ferry.state WHERE flow = $1 AND entity = $2";
    let row = client
        .query_opt(sql, &[&without_nul(flow), &without_nul(entity)])
        .await?;
    Ok(row
        .and_then(|row| row.get::<_, Option<String>>(0))
        .map(|text| parse_json(&text)))
}

pub async fn upsert_state(
    client: &impl GenericClient,
    flow: &str,
    entity: &str,
    state: &Value,
    now: &DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let sql = "INSERT INTO _ferry.state (flow, entity, state, updated_at) \
               VALUES ($1, $2, CAST($3::text AS json), $4) \
               ON CONFLICT (flow, entity) DO UPDATE SET state = excluded.state, \
               updated_at = excluded.updated_at";
    let state = state.to_string();
    client
        .execute(
            sql,
            &[&without_nul(flow), &without_nul(entity), &state, now],
        )
        .await?;
    Ok(())
}

pub async fn delete_state(
    client: &impl GenericClient,
    flow: &str,
    entity: &str,
) -> Result<(), tokio_postgres::Error> {
    let sql = "DELETE FROM _ferry.state WHERE flow = $1 AND entity = $2";
    client
        .execute(sql, &[&without_nul(flow), &without_nul(entity)])
        .await?;
    Ok(())
}

pub async fn list_state(
    client: &impl GenericClient,
    flow: Option<&str>,
) -> Result<Vec<StateRow>, tokio_postgres::Error> {
    let sql = "SELECT flow, entity, state::text, updated_at FROM _ferry.state \
               WHERE $1::text IS NULL OR flow = $1 ORDER BY flow, entity";
    let flow = flow.map(without_nul);
    let rows = client.query(sql, &[&flow]).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let state: Option<String> = row.get(2);
            StateRow {
                flow: row.get(0),
                entity: row.get(1),
                state: state.map_or(Value::Null, |text| parse_json(&text)),
                updated_at: row.get(3),
            }
        })
        .collect())
}

/// Marks the entity's older `running` runs `interrupted` and inserts `run`.
pub async fn insert_run(
    client: &impl GenericClient,
    run: &RunRecord,
) -> Result<(), tokio_postgres::Error> {
    let (flow, entity) = (without_nul(&run.flow), without_nul(&run.entity));
    let interrupt = "UPDATE _ferry.runs SET status = 'interrupted' \
                     WHERE flow = $1 AND entity = $2 AND status = 'running' AND run_id <> $3";
    client
        .execute(interrupt, &[&flow, &entity, &run.run_id])
        .await?;

    let insert = "INSERT INTO _ferry.runs \
                  (run_id, flow, entity, started_at, finished_at, status, records, error) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (run_id) DO UPDATE SET \
                  status = excluded.status, finished_at = excluded.finished_at, \
                  error = excluded.error";
    let records = i64::try_from(run.records).unwrap_or(i64::MAX);
    let error = run.error.as_deref().map(without_nul);
    client
        .execute(
            insert,
            &[
                &run.run_id,
                &flow,
                &entity,
                &run.started_at,
                &run.finished_at,
                &run.status,
                &records,
                &error,
            ],
        )
        .await?;
    Ok(())
}

/// Reads a run's status and locks its row until the transaction ends;
/// `None` when the run has no row.
pub async fn lock_run_status(
    client: &impl GenericClient,
    run_id: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let sql = "SELECT status FROM _ferry.runs WHERE run_id = $1 FOR UPDATE";
    let row = client.query_opt(sql, &[&run_id]).await?;
    Ok(row.map(|row| row.get(0)))
}

pub async fn add_run_records(
    client: &impl GenericClient,
    run_id: &str,
    records: u64,
) -> Result<(), tokio_postgres::Error> {
    let sql = "UPDATE _ferry.runs SET records = records + $1 WHERE run_id = $2";
    let records = i64::try_from(records).unwrap_or(i64::MAX);
    client.execute(sql, &[&records, &run_id]).await?;
    Ok(())
}

pub async fn finish_run(
    client: &impl GenericClient,
    run_id: &str,
    status: &str,
    records: u64,
    error: Option<&str>,
    now: &DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let sql = "UPDATE _ferry.runs SET status = $1, finished_at = $2, records = $3, error = $4 \
               WHERE run_id = $5";
    let records = i64::try_from(records).unwrap_or(i64::MAX);
    let error = error.map(without_nul);
    client
        .execute(sql, &[&status, now, &records, &error, &run_id])
        .await?;
    Ok(())
}

pub async fn list_runs(
    client: &impl GenericClient,
    flow: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRecord>, tokio_postgres::Error> {
    let sql = "SELECT run_id, flow, entity, started_at, finished_at, status, records, error \
               FROM _ferry.runs WHERE $1::text IS NULL OR flow = $1 \
               ORDER BY started_at DESC, run_id DESC LIMIT $2";
    let flow = flow.map(without_nul);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(sql, &[&flow, &limit]).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let records: i64 = row.get(6);
            RunRecord {
                run_id: row.get(0),
                flow: row.get(1),
                entity: row.get(2),
                started_at: row.get(3),
                finished_at: row.get(4),
                status: row.get(5),
                records: u64::try_from(records).unwrap_or(0),
                error: row.get(7),
            }
        })
        .collect())
}

/// The columns recorded for a table, in no particular order; rows whose
/// kind this version does not know are skipped.
pub async fn tracked_columns(
    client: &impl GenericClient,
    table: &TableRef,
) -> Result<Vec<TrackedColumn>, tokio_postgres::Error> {
    let sql = "SELECT field, \"column\", kind, integer_digits, scale, double_exact \
               FROM _ferry.columns WHERE \"schema\" = $1 AND \"table\" = $2";
    let rows = client.query(sql, &[&table.schema, &table.table]).await?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.get(2);
        let Some(kind) = ColumnKind::parse(&kind) else {
            tracing::warn!(table = %table, kind, "skipped a _ferry.columns row of an unknown kind");
            continue;
        };
        let integer_digits: i32 = row.get(3);
        let scale: i32 = row.get(4);
        columns.push(TrackedColumn {
            field: row.get(0),
            column: row.get(1),
            column_type: ColumnType {
                kind,
                integer_digits: integer_digits.max(0) as u32,
                scale: scale.max(0) as u32,
                double_exact: row.get(5),
            },
        });
    }
    Ok(columns)
}

/// Replaces the recorded columns of a table.
pub async fn save_columns(
    client: &impl GenericClient,
    table: &TableRef,
    columns: &[TrackedColumn],
    now: &DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    forget_columns(client, table).await?;
    if columns.is_empty() {
        return Ok(());
    }

    // One statement for every column, from parallel arrays.
    let sql = "INSERT INTO _ferry.columns SELECT $1, $2, field, \"column\", \"type\", kind, \
               integer_digits, scale, double_exact, $3 \
               FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::int[], \
               $10::bool[]) AS c(field, \"column\", \"type\", kind, integer_digits, scale, double_exact)";
    let fields: Vec<&str> = columns.iter().map(|c| c.field.as_str()).collect();
    let names: Vec<&str> = columns.iter().map(|c| c.column.as_str()).collect();
    let types: Vec<&str> = columns.iter().map(|c| sql_type(&c.column_type)).collect();
    let kinds: Vec<&str> = columns
        .iter()
        .map(|c| c.column_type.kind.as_str())
        .collect();
    let digits: Vec<i32> = columns
        .iter()
        .map(|c| i32::try_from(c.column_type.integer_digits).unwrap_or(i32::MAX))
        .collect();
    let scales: Vec<i32> = columns
        .iter()
        .map(|c| i32::try_from(c.column_type.scale).unwrap_or(i32::MAX))
        .collect();
    let exact: Vec<bool> = columns.iter().map(|c| c.column_type.double_exact).collect();

    client
        .execute(
            sql,
            &[
                &table.schema,
                &table.table,
                now,
                &fields,
                &names,
                &types,
                &kinds,
                &digits,
                &scales,
                &exact,
            ],
        )
        .await?;
    Ok(())
}

pub async fn forget_columns(
    client: &impl GenericClient,
    table: &TableRef,
) -> Result<(), tokio_postgres::Error> {
    let sql = "DELETE FROM _ferry.columns WHERE \"schema\" = $1 AND \"table\" = $2";
    client.execute(sql, &[&table.schema, &table.table]).await?;
    Ok(())
}

/// Moves the recorded columns of `from` to `to` (the staging swap).
pub async fn rename_columns_table(
    client: &impl GenericClient,
    from: &TableRef,
    to: &TableRef,
) -> Result<(), tokio_postgres::Error> {
    forget_columns(client, to).await?;
    let sql = "UPDATE _ferry.columns SET \"table\" = $1 WHERE \"schema\" = $2 AND \"table\" = $3";
    client
        .execute(sql, &[&to.table, &from.schema, &from.table])
        .await?;
    Ok(())
}

/// Parses a stored state. Ferry writes JSON, so a parse failure means the
/// row was edited by hand, and the text is then kept as a JSON string.
fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| {
        tracing::warn!(%error, "a _ferry.state value is not valid JSON; it is read as a string");
        Value::String(text.to_string())
    })
}
