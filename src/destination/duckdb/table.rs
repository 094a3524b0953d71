//! An entity table's columns: reading them, creating the table, adding
//! and widening columns.

use duckdb::{Connection, params};

use super::types::{TIMESTAMP_SQL, sql_type, sql_type_changes, type_from_sql, widen_expression};
use super::{Step, StepExt, StepResult, bookkeeping};
use crate::destination::TableRef;
use crate::destination::columns::{
    ColumnPlan, ColumnType, DELETED_AT, SYNCED_AT, TrackedColumn, quote_ident,
};

/// A table's columns before a chunk is written.
#[derive(Debug, Default)]
pub struct TableShape {
    pub exists: bool,
    /// Columns that hold fields, in table order.
    pub tracked: Vec<TrackedColumn>,
    /// Every other column (metadata, columns a person added).
    pub other: Vec<String>,
}

/// Names a table with its catalog, because a schema named like the
/// database file (`stripe` in `stripe.duckdb`) is otherwise ambiguous.
pub fn qualified(catalog: &str, table: &TableRef) -> String {
    format!(
        "{}.{}.{}",
        quote_ident(catalog),
        quote_ident(&table.schema),
        quote_ident(&table.table)
    )
}

/// Catalog columns of a table in order, with their SQL types.
pub fn catalog_columns(
    connection: &Connection,
    table: &TableRef,
) -> duckdb::Result<Vec<(String, String)>> {
    let sql = "SELECT column_name, data_type FROM duckdb_columns() \
               WHERE database_name = current_database() AND schema_name = ? AND table_name = ? \
               ORDER BY column_index";
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map(params![table.schema, table.table], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    rows.collect()
}

pub fn exists(connection: &Connection, table: &TableRef) -> duckdb::Result<bool> {
    Ok(!catalog_columns(connection, table)?.is_empty())
}

/// Reads the table's columns from the catalog and `_ferry.columns`.
///
/// Recorded columns the table no longer has are dropped from the record.
/// When the table has no recorded columns at all, the bookkeeping was
/// lost, so its columns of known types are adopted as fields of their own
/// name. Otherwise unrecorded columns are left alone.
pub fn read_shape(connection: &Connection, table: &TableRef) -> duckdb::Result<TableShape> {
    let catalog = catalog_columns(connection, table)?;
    let recorded = bookkeeping::tracked_columns(connection, table)?;
    if catalog.is_empty() {
        if !recorded.is_empty() {
            bookkeeping::forget_columns(connection, table)?;
        }
        // The table will be created with the metadata columns, so fields
        // must not take their names.
        return Ok(TableShape {
            exists: false,
            tracked: Vec::new(),
            other: vec![SYNCED_AT.to_string(), DELETED_AT.to_string()],
        });
    }

    let mut shape = TableShape {
        exists: true,
        ..TableShape::default()
    };
    for (name, sql) in catalog {
        let metadata = name == SYNCED_AT || name == DELETED_AT;
        let known = recorded.iter().find(|column| column.column == name);
        match known {
            Some(column) if !metadata => shape.tracked.push(column.clone()),
            _ if recorded.is_empty() && !metadata => match type_from_sql(&sql) {
                Some(column_type) => shape.tracked.push(TrackedColumn {
                    field: name.clone(),
                    column: name,
                    column_type,
                }),
                None => shape.other.push(name),
            },
            _ => shape.other.push(name),
        }
    }
    Ok(shape)
}

/// Creates the table with the plan's columns, the metadata columns and
/// the primary key.
pub fn create(
    connection: &Connection,
    catalog: &str,
    table: &TableRef,
    plan: &ColumnPlan,
    key_columns: &[String],
) -> StepResult<()> {
    let mut definitions: Vec<String> = plan
        .columns
        .iter()
        .map(|column| {
            format!(
                "{} {}",
                quote_ident(&column.column),
                sql_type(&column.column_type)
            )
        })
        .collect();
    definitions.push(format!(
        "{} {TIMESTAMP_SQL} NOT NULL",
        quote_ident(SYNCED_AT)
    ));
    definitions.push(format!("{} {TIMESTAMP_SQL}", quote_ident(DELETED_AT)));
    if !key_columns.is_empty() {
        let keys: Vec<String> = key_columns.iter().map(|name| quote_ident(name)).collect();
        definitions.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }

    let schema = format!(
        "CREATE SCHEMA IF NOT EXISTS {}.{}",
        quote_ident(catalog),
        quote_ident(&table.schema)
    );
    connection.execute_batch(&schema).step(Step::CreateSchema)?;
    let sql = format!(
        "CREATE TABLE {} ({})",
        qualified(catalog, table),
        definitions.join(", ")
    );
    connection.execute_batch(&sql).step(Step::CreateTable)?;
    tracing::info!(table = %table, columns = plan.columns.len(), "created table");
    Ok(())
}

/// Adds the plan's new columns and widens the ones whose SQL type changes.
///
/// DuckDB 2.0 adds columns to a table with a primary key and changes the
/// type of its other columns in place, but rejects a type change of a key
/// column ("Cannot change the type of a column that has a UNIQUE or
/// PRIMARY KEY constraint specified"). When a key column widens, the
/// table is rebuilt in the transaction instead: copied into a new table
/// with the new types, the old one dropped, the new one renamed.
pub fn evolve(
    connection: &Connection,
    catalog: &str,
    table: &TableRef,
    shape: &TableShape,
    plan: &ColumnPlan,
    key_columns: &[String],
) -> StepResult<()> {
    let type_changes: Vec<&(usize, ColumnType)> = plan
        .widened
        .iter()
        .filter(|(index, from)| sql_type_changes(from, &plan.columns[*index].column_type))
        .collect();
    let key_changes = type_changes
        .iter()
        .any(|(index, _)| key_columns.contains(&plan.columns[*index].column));

    if key_changes {
        rebuild(connection, catalog, table, shape, plan, key_columns)?;
    } else {
        for (index, from) in &type_changes {
            let column = &plan.columns[*index];
            let sql = format!(
                "ALTER TABLE {} ALTER COLUMN {} SET DATA TYPE {} USING {}",
                qualified(catalog, table),
                quote_ident(&column.column),
                sql_type(&column.column_type),
                widen_expression(&column.column, from, &column.column_type)
            );
            connection.execute_batch(&sql).step(Step::WidenColumn)?;
        }
    }
    for (index, from) in type_changes {
        let column = &plan.columns[*index];
        tracing::info!(
            table = %table,
            column = %column.column,
            from = %sql_type(from),
            to = %sql_type(&column.column_type),
            rebuilt = key_changes,
            "widened column"
        );
    }

    // A table ferry did not create may lack the metadata columns.
    for metadata in [SYNCED_AT, DELETED_AT] {
        if !shape.other.iter().any(|name| name == metadata) {
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN {} {TIMESTAMP_SQL}",
                qualified(catalog, table),
                quote_ident(metadata)
            );
            connection.execute_batch(&sql).step(Step::AddColumn)?;
            tracing::info!(table = %table, column = metadata, "added column");
        }
    }

    for index in &plan.added {
        let column = &plan.columns[*index];
        let sql = format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            qualified(catalog, table),
            quote_ident(&column.column),
            sql_type(&column.column_type)
        );
        connection.execute_batch(&sql).step(Step::AddColumn)?;
        tracing::info!(
            table = %table,
            column = %column.column,
            field = %column.field,
            sql_type = %sql_type(&column.column_type),
            "added column"
        );
    }
    Ok(())
}

/// Copies the table into one with the plan's types for its existing
/// columns, keeping the column order and every other column as it is.
fn rebuild(
    connection: &Connection,
    catalog: &str,
    table: &TableRef,
    shape: &TableShape,
    plan: &ColumnPlan,
    key_columns: &[String],
) -> StepResult<()> {
    let existing = catalog_columns(connection, table).step(Step::ReadCatalog)?;
    let mut definitions = Vec::new();
    let mut expressions = Vec::new();
    for (name, sql) in &existing {
        let tracked = shape
            .tracked
            .iter()
            .position(|column| &column.column == name);
        let (new_sql, expression) = match tracked {
            Some(index) => {
                let from = &shape.tracked[index].column_type;
                let to = &plan.columns[index].column_type;
                (sql_type(to), widen_expression(name, from, to))
            }
            None => (sql.clone(), quote_ident(name)),
        };
        let not_null = if name == SYNCED_AT { " NOT NULL" } else { "" };
        definitions.push(format!("{} {new_sql}{not_null}", quote_ident(name)));
        expressions.push(expression);
    }
    if !key_columns.is_empty() {
        let keys: Vec<String> = key_columns.iter().map(|name| quote_ident(name)).collect();
        definitions.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }

    let rebuilt = TableRef {
        schema: table.schema.clone(),
        table: format!("{}__ferry_rebuild", table.table),
    };
    let statements = [
        format!("DROP TABLE IF EXISTS {}", qualified(catalog, &rebuilt)),
        format!(
            "CREATE TABLE {} ({})",
            qualified(catalog, &rebuilt),
            definitions.join(", ")
        ),
        format!(
            "INSERT INTO {} SELECT {} FROM {}",
            qualified(catalog, &rebuilt),
            expressions.join(", "),
            qualified(catalog, table)
        ),
        format!("DROP TABLE {}", qualified(catalog, table)),
        format!(
            "ALTER TABLE {} RENAME TO {}",
            qualified(catalog, &rebuilt),
            quote_ident(&table.table)
        ),
    ];
    for statement in statements {
        connection
            .execute_batch(&statement)
            .step(Step::WidenColumn)?;
    }
    Ok(())
}
