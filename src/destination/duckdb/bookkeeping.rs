//! The `_ferry` schema: entity state, runs, and the columns ferry created.
//!
//! Times are bound as text with an explicit `+00` offset and read back as
//! epoch microseconds, so no session time zone setting can shift them.

use chrono::{DateTime, Utc};
use duckdb::{Connection, OptionalExt, params};
use serde_json::Value;

use super::types::sql_type;
use crate::destination::columns::{ColumnKind, ColumnType, TrackedColumn, timestamp_text};
use crate::destination::{RunRecord, StateRow, TableRef};

/// `_ferry.columns` rows of a table are replaced together (delete, then
/// insert), so the table needs no key to upsert on.
const CREATE_SCHEMA: &str = r#"
CREATE SCHEMA IF NOT EXISTS _ferry;
CREATE TABLE IF NOT EXISTS _ferry.state (
    flow VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    state JSON,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (flow, entity)
);
CREATE TABLE IF NOT EXISTS _ferry.runs (
    run_id VARCHAR PRIMARY KEY,
    flow VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    status VARCHAR NOT NULL,
    records BIGINT NOT NULL,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS _ferry.columns (
    "schema" VARCHAR NOT NULL,
    "table" VARCHAR NOT NULL,
    field VARCHAR NOT NULL,
    "column" VARCHAR NOT NULL,
    "type" VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    integer_digits INTEGER NOT NULL,
    scale INTEGER NOT NULL,
    double_exact BOOLEAN NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL
);
"#;

pub fn create_schema(connection: &Connection) -> duckdb::Result<()> {
    connection.execute_batch(CREATE_SCHEMA)
}

pub fn read_state(
    connection: &Connection,
    flow: &str,
    entity: &str,
) -> duckdb::Result<Option<Value>> {
    let sql = "SELECT CAST(state AS VARCHAR) FROM _ferry.state WHERE flow = ? AND entity = ?";
    let text: Option<Option<String>> = connection
        .query_row(sql, params![flow, entity], |row| row.get(0))
        .optional()?;
    Ok(text.flatten().map(|text| parse_json(&text)))
}

pub fn upsert_state(
    connection: &Connection,
    flow: &str,
    entity: &str,
    state: &Value,
    now: &DateTime<Utc>,
) -> duckdb::Result<()> {
    let sql = "INSERT INTO _ferry.state VALUES (?, ?, CAST(? AS JSON), CAST(? AS TIMESTAMPTZ)) \
               ON CONFLICT (flow, entity) DO UPDATE SET state = excluded.state, \
               updated_at = excluded.updated_at";
    connection.execute(
        sql,
        params![flow, entity, state.to_string(), timestamp_text(now)],
    )?;
    Ok(())
}

pub fn delete_state(connection: &Connection, flow: &str, entity: &str) -> duckdb::Result<()> {
    let sql = "DELETE FROM _ferry.state WHERE flow = ? AND entity = ?";
    connection.execute(sql, params![flow, entity])?;
    Ok(())
}

pub fn list_state(connection: &Connection, flow: Option<&str>) -> duckdb::Result<Vec<StateRow>> {
    let sql = "SELECT flow, entity, CAST(state AS VARCHAR), epoch_us(updated_at) \
               FROM _ferry.state WHERE ? IS NULL OR flow = ? ORDER BY flow, entity";
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map(params![flow, flow], |row| {
        let state: Option<String> = row.get(2)?;
        Ok(StateRow {
            flow: row.get(0)?,
            entity: row.get(1)?,
            state: state.map_or(Value::Null, |text| parse_json(&text)),
            updated_at: from_micros(row.get(3)?),
        })
    })?;
    rows.collect()
}

/// Marks the entity's older `running` runs `interrupted` and inserts `run`.
pub fn insert_run(connection: &Connection, run: &RunRecord) -> duckdb::Result<()> {
    let interrupt = "UPDATE _ferry.runs SET status = 'interrupted' \
                     WHERE flow = ? AND entity = ? AND status = 'running' AND run_id <> ?";
    connection.execute(interrupt, params![run.flow, run.entity, run.run_id])?;

    let insert = "INSERT INTO _ferry.runs VALUES (?, ?, ?, CAST(? AS TIMESTAMPTZ), \
                  CAST(? AS TIMESTAMPTZ), ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET \
                  status = excluded.status, finished_at = excluded.finished_at, error = excluded.error";
    connection.execute(
        insert,
        params![
            run.run_id,
            run.flow,
            run.entity,
            timestamp_text(&run.started_at),
            run.finished_at.as_ref().map(timestamp_text),
            run.status,
            run.records as i64,
            run.error,
        ],
    )?;
    Ok(())
}

pub fn add_run_records(connection: &Connection, run_id: &str, records: u64) -> duckdb::Result<()> {
    let sql = "UPDATE _ferry.runs SET records = records + ? WHERE run_id = ?";
    connection.execute(sql, params![records as i64, run_id])?;
    Ok(())
}

pub fn finish_run(
    connection: &Connection,
    run_id: &str,
    status: &str,
    records: u64,
    error: Option<&str>,
    now: &DateTime<Utc>,
) -> duckdb::Result<()> {
    let sql = "UPDATE _ferry.runs SET status = ?, finished_at = CAST(? AS TIMESTAMPTZ), \
               records = ?, error = ? WHERE run_id = ?";
    connection.execute(
        sql,
        params![status, timestamp_text(now), records as i64, error, run_id],
    )?;
    Ok(())
}

pub fn list_runs(
    connection: &Connection,
    flow: Option<&str>,
    limit: usize,
) -> duckdb::Result<Vec<RunRecord>> {
    let sql = "SELECT run_id, flow, entity, epoch_us(started_at), epoch_us(finished_at), \
               status, records, error FROM _ferry.runs WHERE ? IS NULL OR flow = ? \
               ORDER BY started_at DESC, run_id DESC LIMIT ?";
    let mut statement = connection.prepare(sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![flow, flow, limit], |row| {
        let finished: Option<i64> = row.get(4)?;
        let records: i64 = row.get(6)?;
        Ok(RunRecord {
            run_id: row.get(0)?,
            flow: row.get(1)?,
            entity: row.get(2)?,
            started_at: from_micros(row.get(3)?),
            finished_at: finished.map(from_micros),
            status: row.get(5)?,
            records: u64::try_from(records).unwrap_or(0),
            error: row.get(7)?,
        })
    })?;
    rows.collect()
}

/// The columns recorded for a table, in no particular order; rows whose
/// kind this version does not know are skipped.
pub fn tracked_columns(
    connection: &Connection,
    table: &TableRef,
) -> duckdb::Result<Vec<TrackedColumn>> {
    let sql = "SELECT field, \"column\", kind, integer_digits, scale, double_exact \
               FROM _ferry.columns WHERE \"schema\" = ? AND \"table\" = ?";
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map(params![table.schema, table.table], |row| {
        let kind: String = row.get(2)?;
        let integer_digits: i32 = row.get(3)?;
        let scale: i32 = row.get(4)?;
        let double_exact: bool = row.get(5)?;
        let field: String = row.get(0)?;
        let column: String = row.get(1)?;
        let column_type = ColumnKind::parse(&kind).map(|kind| ColumnType {
            kind,
            integer_digits: integer_digits.max(0) as u32,
            scale: scale.max(0) as u32,
            double_exact,
        });
        Ok(column_type.map(|column_type| TrackedColumn {
            field,
            column,
            column_type,
        }))
    })?;
    let mut columns = Vec::new();
    for row in rows {
        match row? {
            Some(column) => columns.push(column),
            None => {
                tracing::warn!(table = %table, "skipped a _ferry.columns row of an unknown kind")
            }
        }
    }
    Ok(columns)
}

/// Replaces the recorded columns of a table.
pub fn save_columns(
    connection: &Connection,
    table: &TableRef,
    columns: &[TrackedColumn],
    now: &DateTime<Utc>,
) -> duckdb::Result<()> {
    forget_columns(connection, table)?;
    let sql =
        "INSERT INTO _ferry.columns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))";
    let mut statement = connection.prepare(sql)?;
    let now = timestamp_text(now);
    for column in columns {
        let column_type = &column.column_type;
        statement.execute(params![
            table.schema,
            table.table,
            column.field,
            column.column,
            sql_type(column_type),
            column_type.kind.as_str(),
            i32::try_from(column_type.integer_digits).unwrap_or(i32::MAX),
            i32::try_from(column_type.scale).unwrap_or(i32::MAX),
            column_type.double_exact,
            now,
        ])?;
    }
    Ok(())
}

pub fn forget_columns(connection: &Connection, table: &TableRef) -> duckdb::Result<()> {
    let sql = "DELETE FROM _ferry.columns WHERE \"schema\" = ? AND \"table\" = ?";
    connection.execute(sql, params![table.schema, table.table])?;
    Ok(())
}

/// Moves the recorded columns of `from` to `to` (the staging swap).
pub fn rename_columns_table(
    connection: &Connection,
    from: &TableRef,
    to: &TableRef,
) -> duckdb::Result<()> {
    forget_columns(connection, to)?;
    let sql = "UPDATE _ferry.columns SET \"table\" = ? WHERE \"schema\" = ? AND \"table\" = ?";
    connection.execute(sql, params![to.table, from.schema, from.table])?;
    Ok(())
}

fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Parses a stored state. Ferry writes JSON, so a parse failure means the
/// row was edited by hand, and the text is then kept as a JSON string.
fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| {
        tracing::warn!(%error, "a _ferry.state value is not valid JSON; it is read as a string");
        Value::String(text.to_string())
    })
}
