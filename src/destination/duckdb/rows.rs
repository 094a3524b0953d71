//! Reading a table's rows in (`_ferry_synced_at`, key) order: the parent
//! rows of a child entity.
//!
//! DuckDB renders each row's keys and fields as JSON text (`json_array`,
//! `json_object`), so every column type comes back as the JSON value it
//! was written from. JSON columns return as objects and arrays, and
//! HUGEINT and DECIMAL as exact numbers, whose digits serde_json keeps.

use chrono::{DateTime, Utc};
use duckdb::Connection;
use duckdb::types::Value as SqlValue;
use serde_json::Value;

use super::bookkeeping;
use super::table::{catalog_columns, qualified};
use crate::destination::columns::{DELETED_AT, SYNCED_AT, quote_ident, timestamp_text};
use crate::destination::{RowQuery, StoredRow};
use crate::template::value_to_text;

/// A field's column and its SQL type.
struct FieldColumn {
    field: String,
    column: String,
    sql_type: String,
}

/// Reads the rows `query` selects; an error is a message without the
/// database's URL.
pub fn read_rows(
    connection: &Connection,
    catalog: &str,
    query: &RowQuery,
) -> Result<Vec<StoredRow>, String> {
    let table = &query.table;
    let columns = field_columns(connection, query).map_err(|error| error.to_string())?;
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let find = |field: &str| -> Result<&FieldColumn, String> {
        columns
            .iter()
            .find(|column| column.field == field)
            .ok_or_else(|| {
                let known: Vec<&str> = columns.iter().map(|column| column.field.as_str()).collect();
                format!(
                    "table {table} has no column for field {field:?}; its fields: {}",
                    known.join(", ")
                )
            })
    };
    let keys = query
        .key
        .iter()
        .map(|field| find(field))
        .collect::<Result<Vec<_>, _>>()?;
    let fields = match &query.fields {
        Some(fields) => fields
            .iter()
            .map(|field| find(field))
            .collect::<Result<Vec<_>, _>>()?,
        None => columns.iter().collect(),
    };

    let (sql, parameters) = select_sql(catalog, query, &keys, &fields);
    let mut statement = connection
        .prepare(&sql)
        .map_err(|error| error.to_string())?;
    let rows = statement
        .query_map(duckdb::params_from_iter(parameters), |row| {
            let micros: i64 = row.get(0)?;
            let keys: String = row.get(1)?;
            let fields: String = row.get(2)?;
            Ok((micros, keys, fields))
        })
        .map_err(|error| error.to_string())?;

    let mut stored = Vec::new();
    for row in rows {
        let (micros, keys, fields) = row.map_err(|error| error.to_string())?;
        stored.push(parse_row(table, micros, &keys, &fields)?);
    }
    Ok(stored)
}

/// Lists the table's field columns in table order; empty when the table
/// does not exist. Without `_ferry.columns` rows (lost bookkeeping), every
/// column but the metadata ones is a field of its own name.
fn field_columns(connection: &Connection, query: &RowQuery) -> duckdb::Result<Vec<FieldColumn>> {
    let catalog = catalog_columns(connection, &query.table)?;
    let tracked = bookkeeping::tracked_columns(connection, &query.table)?;
    let columns = catalog
        .into_iter()
        .filter(|(name, _)| name != SYNCED_AT && name != DELETED_AT)
        .filter_map(|(column, sql_type)| {
            let field = match tracked.iter().find(|tracked| tracked.column == column) {
                Some(tracked) => tracked.field.clone(),
                None if tracked.is_empty() => column.clone(),
                None => return None,
            };
            Some(FieldColumn {
                field,
                column,
                sql_type,
            })
        })
        .collect();
    Ok(columns)
}

/// Builds the SELECT and its parameters: rows not marked deleted, after
/// the query's position, in (`_ferry_synced_at`, key) order.
///
/// The inner query picks the page's rows, and only the outer one renders
/// them as JSON, so rows the LIMIT drops are never rendered.
fn select_sql(
    catalog: &str,
    query: &RowQuery,
    keys: &[&FieldColumn],
    fields: &[&FieldColumn],
) -> (String, Vec<SqlValue>) {
    let synced = quote_ident(SYNCED_AT);
    let key_list: Vec<String> = keys.iter().map(|key| quote_ident(&key.column)).collect();
    let mut order = vec![synced.clone()];
    order.extend(key_list.iter().cloned());

    let mut picked = order.clone();
    for field in fields {
        let column = quote_ident(&field.column);
        if !picked.contains(&column) {
            picked.push(column);
        }
    }
    let mut inner = format!(
        "SELECT {} FROM {} WHERE {} IS NULL",
        picked.join(", "),
        qualified(catalog, &query.table),
        quote_ident(DELETED_AT),
    );
    let mut parameters = Vec::new();
    if let Some(after) = &query.after {
        // The bare column (not `epoch_us` of it) lets DuckDB skip row
        // groups by their min and max times, and rows are written in time
        // order, so a late position reads few groups.
        let time = "CAST(? AS TIMESTAMPTZ)";
        inner.push_str(&format!(
            " AND ({synced} > {time} OR ({synced} = {time} AND {}))",
            after_keys(keys)
        ));
        let text = timestamp_text(&after.synced_at);
        parameters.push(SqlValue::Text(text.clone()));
        parameters.push(SqlValue::Text(text));
        for (index, _) in keys.iter().enumerate() {
            let value = after.key.get(index).map(value_to_text).unwrap_or_default();
            // Every key but the last is compared twice: greater, or equal
            // and the rest greater.
            let uses = if index + 1 < keys.len() { 2 } else { 1 };
            for _ in 0..uses {
                parameters.push(SqlValue::Text(value.clone()));
            }
        }
    }
    inner.push_str(&format!(
        " ORDER BY {} LIMIT {}",
        order.join(", "),
        query.limit
    ));

    let field_pairs: Vec<String> = fields
        .iter()
        .map(|field| {
            format!(
                "{}, {}",
                string_literal(&field.field),
                quote_ident(&field.column)
            )
        })
        .collect();
    let object = if field_pairs.is_empty() {
        "'{}'".to_string()
    } else {
        format!("CAST(json_object({}) AS VARCHAR)", field_pairs.join(", "))
    };
    let sql = format!(
        "SELECT epoch_us({synced}), CAST(json_array({}) AS VARCHAR), {object} FROM ({inner}) AS page ORDER BY {}",
        key_list.join(", "),
        order.join(", ")
    );
    (sql, parameters)
}

/// Builds `k1 > a OR (k1 = a AND (k2 > b ...))`: the key tuple strictly
/// after the position's, compared in each column's own type.
fn after_keys(keys: &[&FieldColumn]) -> String {
    let Some((first, rest)) = keys.split_first() else {
        return "FALSE".to_string();
    };
    let column = quote_ident(&first.column);
    let value = format!("CAST(? AS {})", first.sql_type);
    if rest.is_empty() {
        return format!("{column} > {value}");
    }
    format!(
        "({column} > {value} OR ({column} = {value} AND ({})))",
        after_keys(rest)
    )
}

fn parse_row(
    table: &crate::destination::TableRef,
    micros: i64,
    keys: &str,
    fields: &str,
) -> Result<StoredRow, String> {
    let synced_at = DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| format!("table {table}: _ferry_synced_at {micros} is out of range"))?;
    let key = match serde_json::from_str(keys) {
        Ok(Value::Array(key)) => key,
        _ => return Err(format!("table {table}: key values {keys:?} are not JSON")),
    };
    let fields = match serde_json::from_str(fields) {
        Ok(Value::Object(fields)) => fields,
        _ => {
            return Err(format!(
                "table {table}: a row's fields are not a JSON object"
            ));
        }
    };
    Ok(StoredRow {
        synced_at,
        key,
        fields,
    })
}

/// Quotes text as a SQL string literal.
fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
