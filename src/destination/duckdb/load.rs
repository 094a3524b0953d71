//! The bulk path: a chunk's values go through DuckDB's Appender as Arrow
//! arrays, built column by column, either straight into a table the run
//! created (see `destination::fresh`) or into a temporary table that one
//! `INSERT … SELECT … ON CONFLICT` moves into the entity table.
//!
//! Booleans, 64-bit integers and doubles travel typed. Every other value
//! travels as text, which keeps it exact, because the column type's cast
//! parses 128-bit integers, decimals and JSON from their source digits.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use duckdb::Connection;
use std::collections::HashSet;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, StringBuilder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use indexmap::IndexMap;

use super::table::qualified;
use super::types::sql_type;
use super::{Step, StepError, StepResult};
use crate::destination::TableRef;
use crate::destination::columns::{
    CellError, ColumnKind, DELETED_AT, ExactNumber, SYNCED_AT, TrackedColumn, cell_text,
    field_value, json_type_name, quote_ident, record_cells, timestamp_text,
};
use crate::destination::upsert::on_conflict_update;
use crate::engine::Record;
use crate::spec::plan::FieldType;
use serde_json::Value;

const CHUNK_TABLE: &str = "__ferry_chunk";

/// The destination of a load: table, columns and key.
pub struct LoadTarget<'a> {
    pub catalog: &'a str,
    pub table: &'a TableRef,
    /// Every field column of the table, in table order.
    pub columns: &'a [TrackedColumn],
    /// Key columns, by index into `columns`; empty for append-only tables.
    pub keys: &'a [usize],
    pub declared: &'a IndexMap<String, FieldType>,
    pub synced_at: DateTime<Utc>,
}

/// Upserts `records` (the last record of a key wins, and replaces the
/// whole row), or appends them when the table has no key. With `append`
/// (the run created the table, see `destination::fresh`), a chunk whose
/// keys are distinct is appended straight into the table too. A key
/// already there then fails the append with [`StepError::is_conflict`].
pub fn write_records(
    connection: &Connection,
    target: &LoadTarget,
    records: &[Record],
    append: bool,
) -> StepResult<()> {
    let started = std::time::Instant::now();
    let all: Vec<usize> = (0..target.columns.len()).collect();
    let cells = target_cells(target, &all, records);
    let distinct = distinct_keys(target, &cells);
    if target.keys.is_empty() || (append && distinct == Some(true)) {
        append_records(connection, target, &cells, records.len())?;
        tracing::debug!(
            table = %target.table,
            rows = records.len(),
            append_ms = started.elapsed().as_millis() as u64,
            "appended records"
        );
        return Ok(());
    }
    stage(connection, target, &all, &cells, records.len())?;
    let staged = started.elapsed();

    let names: Vec<String> = target
        .columns
        .iter()
        .map(|c| quote_ident(&c.column))
        .collect();
    let values: Vec<String> = target
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| from_staged(index, column))
        .collect();
    let synced_at = format!(
        "CAST('{}' AS TIMESTAMPTZ)",
        timestamp_text(&target.synced_at)
    );

    let mut sql = format!(
        "INSERT INTO {} ({}, {}, {}) SELECT {}, {synced_at}, NULL FROM temp.{CHUNK_TABLE}",
        qualified(target.catalog, target.table),
        names.join(", "),
        quote_ident(SYNCED_AT),
        quote_ident(DELETED_AT),
        values.join(", "),
    );
    if distinct != Some(true) {
        // DuckDB rejects an upsert that touches one row twice, so the last
        // record of each key is picked first, comparing keys as cast.
        let partition: Vec<&str> = target
            .keys
            .iter()
            .map(|&key| values[key].as_str())
            .collect();
        sql.push_str(&format!(
            " QUALIFY row_number() OVER (PARTITION BY {} ORDER BY ord DESC) = 1",
            partition.join(", ")
        ));
    }
    sql.push_str(&on_conflict_update(&names, target.keys));
    connection
        .execute_batch(&sql)
        .map_err(|error| StepError::duckdb(Step::Upsert, error))?;
    drop_stage(connection)?;
    tracing::debug!(
        table = %target.table,
        rows = records.len(),
        stage_ms = staged.as_millis() as u64,
        upsert_ms = (started.elapsed() - staged).as_millis() as u64,
        "loaded records"
    );
    Ok(())
}

/// Appends the records straight into the table, with `_ferry_synced_at`;
/// `_ferry_deleted_at` takes its NULL default. DuckDB's appender casts
/// the text columns (JSON, decimals, times) to the column types.
fn append_records(
    connection: &Connection,
    target: &LoadTarget,
    cells: &Cells,
    rows: usize,
) -> StepResult<()> {
    let step = if target.keys.is_empty() {
        Step::Insert
    } else {
        Step::Append
    };
    let (mut fields, mut arrays) = column_arrays(target, cells, rows, step)?;
    let synced_at = timestamp_text(&target.synced_at);
    let mut builder = StringBuilder::with_capacity(rows, rows * synced_at.len());
    for _ in 0..rows {
        builder.append_value(&synced_at);
    }
    fields.push(Field::new(SYNCED_AT, DataType::Utf8, true));
    arrays.push(Arc::new(builder.finish()));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|error| StepError::message(step, format!("building the batch failed: {error}")))?;

    let mut names: Vec<&str> = target
        .columns
        .iter()
        .map(|column| column.column.as_str())
        .collect();
    names.push(SYNCED_AT);
    let append = || -> duckdb::Result<()> {
        let mut appender = connection.appender_with_columns_to_catalog_and_db(
            &target.table.table,
            target.catalog,
            &target.table.schema,
            &names,
        )?;
        appender.append_record_batch(batch)?;
        appender.flush()
    };
    append().map_err(|error| {
        let conflict = is_key_conflict(&error);
        let mut error = StepError::duckdb(step, error);
        error.conflict = conflict;
        error
    })
}

/// Tells whether DuckDB rejected rows because their key is already in the table.
/// DuckDB 2.0 words it in two ways: "Duplicate key … violates primary key
/// constraint" for a key committed before, and "PRIMARY KEY or UNIQUE
/// constraint violation: duplicate key …" for one the transaction wrote,
/// as in a table it rebuilt to widen the key column.
fn is_key_conflict(error: &duckdb::Error) -> bool {
    let text = error.to_string();
    (text.contains("Duplicate key") && text.contains("primary key constraint"))
        || text.contains("PRIMARY KEY or UNIQUE constraint violation")
}

/// Checks whether the chunk's keys are all distinct. `None` means a key
/// column's values are not compared here: only text and 64-bit integers
/// are, because their equality is their spelling's.
fn distinct_keys(target: &LoadTarget, cells: &Cells) -> Option<bool> {
    if target.keys.is_empty() {
        return Some(true);
    }
    let simple = target.keys.iter().all(|&key| {
        matches!(
            target.columns[key].column_type.kind,
            ColumnKind::Text | ColumnKind::BigInt
        )
    });
    if !simple {
        return None;
    }
    let positions = target
        .keys
        .iter()
        .map(|&key| cells.position(key))
        .collect::<Option<Vec<usize>>>()?;
    let mut seen: HashSet<Vec<&str>> = HashSet::with_capacity(cells.rows);
    for row in 0..cells.rows {
        let mut key = Vec::with_capacity(positions.len());
        for &position in &positions {
            // Integers as JSON spells them have one spelling per value
            // (no leading zeros, no plus sign), except `-0`.
            match cells.at(row, position) {
                Value::String(text) => key.push(text.as_str()),
                Value::Number(number) if number.as_str() != "-0" => key.push(number.as_str()),
                _ => return None,
            }
        }
        if !seen.insert(key) {
            return Some(false);
        }
    }
    Some(true)
}

/// Sets `_ferry_deleted_at` on the rows of `deletions`' keys, inserting a
/// key-only row for a key the table does not have.
pub fn mark_deleted(
    connection: &Connection,
    target: &LoadTarget,
    deletions: &[Record],
) -> StepResult<()> {
    let cells = target_cells(target, target.keys, deletions);
    stage(connection, target, target.keys, &cells, deletions.len())?;
    let names: Vec<String> = target
        .keys
        .iter()
        .map(|&key| quote_ident(&target.columns[key].column))
        .collect();
    let values: Vec<String> = target
        .keys
        .iter()
        .enumerate()
        .map(|(position, &key)| from_staged(position, &target.columns[key]))
        .collect();
    let now = format!(
        "CAST('{}' AS TIMESTAMPTZ)",
        timestamp_text(&target.synced_at)
    );
    let sql = format!(
        "INSERT INTO {table} ({keys}, {synced}, {deleted}) \
         SELECT DISTINCT {values}, {now}, {now} FROM temp.{CHUNK_TABLE} \
         ON CONFLICT ({keys}) DO UPDATE SET {synced} = excluded.{synced}, \
         {deleted} = excluded.{deleted}",
        table = qualified(target.catalog, target.table),
        keys = names.join(", "),
        synced = quote_ident(SYNCED_AT),
        deleted = quote_ident(DELETED_AT),
        values = values.join(", "),
    );
    connection
        .execute_batch(&sql)
        .map_err(|error| StepError::duckdb(Step::MarkDeleted, error))?;
    drop_stage(connection)
}

/// The values of some of the target's columns in each record, row by row.
struct Cells<'r> {
    /// Indexes into the target's columns, in cell order.
    columns: Vec<usize>,
    values: Vec<&'r Value>,
    rows: usize,
}

impl<'r> Cells<'r> {
    /// Finds the position of target column `column` among the cells.
    fn position(&self, column: usize) -> Option<usize> {
        self.columns.iter().position(|&index| index == column)
    }

    fn at(&self, row: usize, position: usize) -> &'r Value {
        self.values[row * self.columns.len() + position]
    }
}

fn target_cells<'r>(target: &LoadTarget, columns: &[usize], records: &'r [Record]) -> Cells<'r> {
    let fields: Vec<&str> = columns
        .iter()
        .map(|&index| target.columns[index].field.as_str())
        .collect();
    Cells {
        columns: columns.to_vec(),
        values: record_cells(records, &fields),
        rows: records.len(),
    }
}

/// Returns the staged type of a column: the column's own for booleans, 64-bit
/// integers and doubles (their values convert exactly here), else text
/// that the column type's cast reads (128-bit integers, decimals and JSON
/// from their source digits).
fn staged_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Boolean => DataType::Boolean,
        ColumnKind::BigInt => DataType::Int64,
        ColumnKind::Double => DataType::Float64,
        _ => DataType::Utf8,
    }
}

/// Reads staged column `position` into `column`'s type.
fn from_staged(position: usize, column: &TrackedColumn) -> String {
    match staged_type(column.column_type.kind) {
        DataType::Utf8 if column.column_type.kind != ColumnKind::Text => {
            format!("CAST(c{position} AS {})", sql_type(&column.column_type))
        }
        _ => format!("c{position}"),
    }
}

/// Appends the cells to a fresh temporary table `c0 … cN`, plus each
/// record's position as `ord`.
fn stage(
    connection: &Connection,
    target: &LoadTarget,
    columns: &[usize],
    cells: &Cells,
    rows: usize,
) -> StepResult<()> {
    let mut definitions = vec!["ord BIGINT".to_string()];
    definitions.extend(columns.iter().enumerate().map(|(position, &index)| {
        let staged = match staged_type(target.columns[index].column_type.kind) {
            DataType::Boolean => "BOOLEAN",
            DataType::Int64 => "BIGINT",
            DataType::Float64 => "DOUBLE",
            _ => "VARCHAR",
        };
        format!("c{position} {staged}")
    }));
    let sql = format!(
        "CREATE OR REPLACE TEMP TABLE {CHUNK_TABLE} ({})",
        definitions.join(", ")
    );
    connection
        .execute_batch(&sql)
        .map_err(|error| StepError::duckdb(Step::Stage, error))?;

    let (mut fields, mut arrays) = column_arrays(target, cells, rows, Step::Stage)?;
    fields.insert(0, Field::new("ord", DataType::Int64, false));
    arrays.insert(0, Arc::new(Int64Array::from_iter_values(0..rows as i64)));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|error| {
        StepError::message(Step::Stage, format!("building the batch failed: {error}"))
    })?;
    let mut appender = connection
        .appender_to_catalog_and_db(CHUNK_TABLE, "temp", "main")
        .map_err(|error| StepError::duckdb(Step::Stage, error))?;
    appender
        .append_record_batch(batch)
        .and_then(|()| appender.flush())
        .map_err(|error| StepError::duckdb(Step::Stage, error))
}

fn drop_stage(connection: &Connection) -> StepResult<()> {
    let sql = format!("DROP TABLE IF EXISTS temp.{CHUNK_TABLE}");
    connection
        .execute_batch(&sql)
        .map_err(|error| StepError::duckdb(Step::Stage, error))
}

/// Builds one Arrow array per cell column, named `c0 … cN`, of the
/// column's staged type.
fn column_arrays(
    target: &LoadTarget,
    cells: &Cells,
    rows: usize,
    step: Step,
) -> StepResult<(Vec<Field>, Vec<ArrayRef>)> {
    let mut fields = Vec::with_capacity(cells.columns.len() + 1);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cells.columns.len() + 1);
    let mut json = Vec::new();
    for (position, &index) in cells.columns.iter().enumerate() {
        let column = &target.columns[index];
        let kind = column.column_type.kind;
        let declared = target.declared.get(&column.field).copied();
        let values = (0..rows).map(|row| cells.at(row, position));
        let fail = |error: CellError| {
            StepError::message(
                step,
                format!(
                    "column {} (field {:?}): {error}; widen the column or fix fields.types",
                    quote_ident(&column.column),
                    column.field
                ),
            )
        };
        let mismatch = |value: &Value| CellError {
            value_type: json_type_name(value),
            kind: kind.as_str(),
        };
        let staged = staged_type(kind);
        let array: ArrayRef = match staged {
            DataType::Boolean => {
                let mut builder = BooleanBuilder::with_capacity(rows);
                for value in values {
                    match value {
                        Value::Null => builder.append_null(),
                        Value::Bool(flag) => builder.append_value(*flag),
                        other => return Err(fail(mismatch(other))),
                    }
                }
                Arc::new(builder.finish())
            }
            DataType::Int64 => {
                let mut builder = Int64Builder::with_capacity(rows);
                for value in values {
                    match value {
                        Value::Null => builder.append_null(),
                        other => builder
                            .append_value(integer(other).ok_or_else(|| fail(mismatch(other)))?),
                    }
                }
                Arc::new(builder.finish())
            }
            DataType::Float64 => {
                let mut builder = Float64Builder::with_capacity(rows);
                for value in values {
                    match value {
                        Value::Null => builder.append_null(),
                        other => builder
                            .append_value(double(other).ok_or_else(|| fail(mismatch(other)))?),
                    }
                }
                Arc::new(builder.finish())
            }
            _ => {
                let mut builder = StringBuilder::with_capacity(rows, rows * 16);
                for value in values {
                    if kind == ColumnKind::Json && !value.is_null() {
                        // Serialized into one reused buffer, not a string per value.
                        json.clear();
                        write_json(&mut json, value);
                        builder.append_value(String::from_utf8_lossy(&json));
                        continue;
                    }
                    let text = cell_text(value, kind, declared).map_err(fail)?;
                    builder.append_option(text);
                }
                Arc::new(builder.finish())
            }
        };
        fields.push(Field::new(format!("c{position}"), staged, true));
        arrays.push(array);
    }
    Ok((fields, arrays))
}

/// Reads a JSON number for a BIGINT column; integers beyond 64 bits
/// widened the column before this.
fn integer(value: &Value) -> Option<i64> {
    let text = value.as_number()?.as_str();
    text.parse::<i64>().ok().or_else(|| {
        let number = ExactNumber::parse(text)?;
        number.plain_text().parse::<i64>().ok()
    })
}

/// Reads a JSON number for a DOUBLE column. Rust's parse rounds correctly,
/// as DuckDB's cast of the same text does.
fn double(value: &Value) -> Option<f64> {
    value.as_number()?.as_str().parse::<f64>().ok()
}

fn write_json(buffer: &mut Vec<u8>, value: &Value) {
    // A `Value` always serializes, and a Vec has no I/O error.
    if let Err(error) = serde_json::to_writer(&mut *buffer, value) {
        tracing::error!(%error, "serializing a JSON value failed");
    }
}

/// Checks that every record has a value for every key field, so a missing
/// key is reported by position instead of as a constraint error.
pub fn check_keys(
    table: &TableRef,
    key_fields: &[String],
    records: &[Record],
    what: &str,
) -> StepResult<()> {
    for (position, record) in records.iter().enumerate() {
        for field in key_fields {
            let value = field_value(record, field);
            if value.is_null() {
                return Err(StepError::message(
                    Step::CheckKeys,
                    format!(
                        "{what} {position} of the chunk for {table} has no value for primary-key field {field:?} ({})",
                        json_type_name(value)
                    ),
                ));
            }
        }
    }
    Ok(())
}
