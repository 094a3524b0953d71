//! The bulk path: a chunk's values go through DuckDB's Appender into a
//! temporary table as text (Arrow string arrays, built column by column),
//! and one `INSERT … SELECT` casts them into the entity table.
//!
//! Text keeps every value exact on its way in: the column type's cast
//! parses 128-bit integers, decimals and JSON from their source digits.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use duckdb::Connection;
use duckdb::arrow::array::{ArrayRef, Int64Array, StringBuilder};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use indexmap::IndexMap;

use super::table::qualified;
use super::types::sql_type;
use super::{Step, StepError, StepResult};
use crate::destination::TableRef;
use crate::destination::columns::{
    DELETED_AT, SYNCED_AT, TrackedColumn, cell_text, field_value, json_type_name, quote_ident,
    timestamp_text,
};
use crate::engine::Record;
use crate::spec::plan::FieldType;

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
/// whole row), or appends them when the table has no key.
pub fn write_records(
    connection: &Connection,
    target: &LoadTarget,
    records: &[Record],
) -> StepResult<()> {
    let all: Vec<usize> = (0..target.columns.len()).collect();
    stage(connection, target, &all, records)?;

    let names: Vec<String> = target
        .columns
        .iter()
        .map(|c| quote_ident(&c.column))
        .collect();
    let casts: Vec<String> = target
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| format!("CAST(c{index} AS {})", sql_type(&column.column_type)))
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
        casts.join(", "),
    );
    if !target.keys.is_empty() {
        // DuckDB rejects an upsert that touches one row twice, so the last
        // record of each key is picked first, comparing keys as cast.
        let partition: Vec<&str> = target.keys.iter().map(|&key| casts[key].as_str()).collect();
        let keys: Vec<&str> = target.keys.iter().map(|&key| names[key].as_str()).collect();
        let updates: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(index, _)| !target.keys.contains(index))
            .map(|(_, name)| format!("{name} = excluded.{name}"))
            .chain([
                format!("{0} = excluded.{0}", quote_ident(SYNCED_AT)),
                format!("{} = NULL", quote_ident(DELETED_AT)),
            ])
            .collect();
        sql.push_str(&format!(
            " QUALIFY row_number() OVER (PARTITION BY {} ORDER BY ord DESC) = 1 \
             ON CONFLICT ({}) DO UPDATE SET {}",
            partition.join(", "),
            keys.join(", "),
            updates.join(", ")
        ));
    }
    let step = if target.keys.is_empty() {
        Step::Insert
    } else {
        Step::Upsert
    };
    connection
        .execute_batch(&sql)
        .map_err(|error| StepError::duckdb(step, error))?;
    drop_stage(connection)
}

/// Sets `_ferry_deleted_at` on the rows of `deletions`' keys, inserting a
/// key-only row for a key the table does not have.
pub fn mark_deleted(
    connection: &Connection,
    target: &LoadTarget,
    deletions: &[Record],
) -> StepResult<()> {
    stage(connection, target, target.keys, deletions)?;
    let names: Vec<String> = target
        .keys
        .iter()
        .map(|&key| quote_ident(&target.columns[key].column))
        .collect();
    let casts: Vec<String> = target
        .keys
        .iter()
        .enumerate()
        .map(|(position, &key)| {
            format!(
                "CAST(c{position} AS {})",
                sql_type(&target.columns[key].column_type)
            )
        })
        .collect();
    let now = format!(
        "CAST('{}' AS TIMESTAMPTZ)",
        timestamp_text(&target.synced_at)
    );
    let sql = format!(
        "INSERT INTO {table} ({keys}, {synced}, {deleted}) \
         SELECT DISTINCT {casts}, {now}, {now} FROM temp.{CHUNK_TABLE} \
         ON CONFLICT ({keys}) DO UPDATE SET {synced} = excluded.{synced}, \
         {deleted} = excluded.{deleted}",
        table = qualified(target.catalog, target.table),
        keys = names.join(", "),
        synced = quote_ident(SYNCED_AT),
        deleted = quote_ident(DELETED_AT),
        casts = casts.join(", "),
    );
    connection
        .execute_batch(&sql)
        .map_err(|error| StepError::duckdb(Step::MarkDeleted, error))?;
    drop_stage(connection)
}

/// Appends the `columns` (indexes into the target's columns) of `records`
/// to a fresh temporary table `c0 … cN` of text, plus each record's
/// position as `ord`.
fn stage(
    connection: &Connection,
    target: &LoadTarget,
    columns: &[usize],
    records: &[Record],
) -> StepResult<()> {
    let mut definitions = vec!["ord BIGINT".to_string()];
    definitions.extend((0..columns.len()).map(|position| format!("c{position} VARCHAR")));
    let sql = format!(
        "CREATE OR REPLACE TEMP TABLE {CHUNK_TABLE} ({})",
        definitions.join(", ")
    );
    connection
        .execute_batch(&sql)
        .map_err(|error| StepError::duckdb(Step::Stage, error))?;

    let batch = record_batch(target, columns, records)?;
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

fn record_batch(
    target: &LoadTarget,
    columns: &[usize],
    records: &[Record],
) -> StepResult<RecordBatch> {
    let mut fields = vec![Field::new("ord", DataType::Int64, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(
        0..records.len() as i64,
    ))];

    for (position, &index) in columns.iter().enumerate() {
        let column = &target.columns[index];
        let declared = target.declared.get(&column.field).copied();
        let mut builder = StringBuilder::with_capacity(records.len(), records.len() * 8);
        for record in records {
            let value = field_value(record, &column.field);
            let text = cell_text(value, column.column_type.kind, declared).map_err(|error| {
                StepError::message(
                    Step::Stage,
                    format!(
                        "column {} (field {:?}): {error}; widen the column or fix fields.types",
                        quote_ident(&column.column),
                        column.field
                    ),
                )
            })?;
            builder.append_option(text);
        }
        fields.push(Field::new(format!("c{position}"), DataType::Utf8, true));
        arrays.push(Arc::new(builder.finish()));
    }

    let schema = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, arrays).map_err(|error| {
        StepError::message(Step::Stage, format!("building the batch failed: {error}"))
    })
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
