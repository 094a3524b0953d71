//! Reading a table's rows in (`_ferry_synced_at`, key) order: the parent
//! rows of a child entity.
//!
//! Each key and field cell comes back as `to_json(column)::text`, so every
//! column type returns as the JSON value it was written from: `jsonb` as
//! objects and arrays, `numeric` as exact numbers (serde_json keeps their
//! digits), timestamps as ISO 8601 strings. Text keys are compared and
//! ordered by their bytes (`COLLATE "C"`), numbers by value.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::bookkeeping;
use super::error::describe;
use super::table::{catalog_columns, qualified};
use crate::destination::columns::{DELETED_AT, SYNCED_AT, quote_ident};
use crate::destination::{RowQuery, StoredRow, TableRef};
use crate::template::value_to_text;

/// A field's column and its SQL type.
struct FieldColumn {
    field: String,
    column: String,
    sql_type: String,
}

/// Reads the rows `query` selects; an error is a message without the
/// database's URL.
pub async fn read_rows(
    client: &impl GenericClient,
    query: &RowQuery,
) -> Result<Vec<StoredRow>, String> {
    let table = &query.table;
    let columns = field_columns(client, table)
        .await
        .map_err(|error| describe(&error))?;
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

    let (sql, parameters) = select_sql(query, &keys, &fields);
    let references: Vec<&(dyn ToSql + Sync)> = parameters
        .iter()
        .map(|parameter| parameter.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client
        .query(&sql, &references)
        .await
        .map_err(|error| describe(&error))?;

    let mut stored = Vec::with_capacity(rows.len());
    for row in rows {
        let synced_at: DateTime<Utc> = row.get(0);
        let mut key = Vec::with_capacity(keys.len());
        for index in 0..keys.len() {
            key.push(json_cell(table, row.get(1 + index))?);
        }
        let mut values = Map::new();
        for (index, field) in fields.iter().enumerate() {
            let cell = json_cell(table, row.get(1 + keys.len() + index))?;
            values.insert(field.field.clone(), cell);
        }
        stored.push(StoredRow {
            synced_at,
            key,
            fields: values,
        });
    }
    Ok(stored)
}

/// Lists the table's field columns in table order; empty when the table
/// does not exist. Without `_ferry.columns` rows (lost bookkeeping), every
/// column but the metadata ones is a field of its own name.
async fn field_columns(
    client: &impl GenericClient,
    table: &TableRef,
) -> Result<Vec<FieldColumn>, tokio_postgres::Error> {
    let catalog = catalog_columns(client, table).await?;
    let tracked = bookkeeping::tracked_columns(client, table).await?;
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

type Parameter = Box<dyn ToSql + Sync + Send>;

/// Builds the SELECT and its parameters: rows not marked deleted, after
/// the query's position, in (`_ferry_synced_at`, key) order.
fn select_sql(
    query: &RowQuery,
    keys: &[&FieldColumn],
    fields: &[&FieldColumn],
) -> (String, Vec<Parameter>) {
    let synced = quote_ident(SYNCED_AT);
    let mut order = vec![synced.clone()];
    order.extend(keys.iter().map(|key| ordered(key)));

    let mut selected = vec![synced.clone()];
    selected.extend(
        keys.iter()
            .chain(fields)
            .map(|column| format!("to_json({})::text", quote_ident(&column.column))),
    );

    let mut sql = format!(
        "SELECT {} FROM {} WHERE {} IS NULL",
        selected.join(", "),
        qualified(&query.table),
        quote_ident(DELETED_AT),
    );
    let mut parameters: Vec<Parameter> = Vec::new();
    if let Some(after) = &query.after {
        parameters.push(Box::new(after.synced_at));
        let mut texts = Vec::new();
        for index in 0..keys.len() {
            let value = after.key.get(index).map(value_to_text).unwrap_or_default();
            texts.push(value);
        }
        let first_key = parameters.len() + 1;
        sql.push_str(&format!(
            " AND ({synced} > $1 OR ({synced} = $1 AND {}))",
            after_keys(keys, first_key)
        ));
        for text in texts {
            parameters.push(Box::new(text));
        }
    }
    sql.push_str(&format!(
        " ORDER BY {} LIMIT {}",
        order.join(", "),
        query.limit
    ));
    (sql, parameters)
}

/// Spells a key column for comparison and ordering: text by its bytes.
fn ordered(key: &FieldColumn) -> String {
    let column = quote_ident(&key.column);
    if is_text(&key.sql_type) {
        format!("{column} COLLATE \"C\"")
    } else {
        column
    }
}

fn is_text(sql_type: &str) -> bool {
    sql_type == "text" || sql_type.starts_with("character")
}

/// Builds `k1 > $n OR (k1 = $n AND (k2 > $n+1 ...))`: the key tuple
/// strictly after the position's, compared in each column's own type.
fn after_keys(keys: &[&FieldColumn], parameter: usize) -> String {
    let Some((first, rest)) = keys.split_first() else {
        return "FALSE".to_string();
    };
    let column = ordered(first);
    let mut value = format!("CAST(${parameter}::text AS {})", first.sql_type);
    if is_text(&first.sql_type) {
        value.push_str(" COLLATE \"C\"");
    }
    if rest.is_empty() {
        return format!("{column} > {value}");
    }
    format!(
        "({column} > {value} OR ({column} = {value} AND ({})))",
        after_keys(rest, parameter + 1)
    )
}

/// Parses a `to_json` cell; SQL NULL is JSON null.
fn json_cell(table: &TableRef, cell: Option<String>) -> Result<Value, String> {
    match cell {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(&text)
            .map_err(|error| format!("table {table}: a cell is not JSON ({error})")),
    }
}
