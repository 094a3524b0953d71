//! Entity tables: their shape before a chunk, creating them, and adding
//! and widening columns.

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use super::types::{
    MAX_IDENTIFIER_BYTES, TIMESTAMP_SQL, sql_type, sql_type_changes, type_from_sql,
    widen_expression,
};
use super::{Step, StepExt, StepResult, bookkeeping, lock};
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

pub fn qualified(table: &TableRef) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.table)
    )
}

/// Names a table or index ferry derives from `base` (`items__ferry_staging`,
/// `items_pkey`). A name longer than PostgreSQL keeps gets `base` cut and
/// a hash of the whole of it, so two long bases never share a name.
pub fn derived_name(base: &str, suffix: &str) -> String {
    let name = format!("{base}{suffix}");
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name;
    }
    let hash = hex::encode(Sha256::digest(base.as_bytes()));
    let hash = &hash[..8];
    let room = MAX_IDENTIFIER_BYTES - suffix.len() - hash.len() - 1;
    let mut end = room.min(base.len());
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}_{hash}{suffix}", &base[..end])
}

/// Checks that PostgreSQL keeps the schema and table names as they are:
/// it would cut a name longer than 63 bytes, and rejects U+0000.
pub fn check_names(table: &TableRef) -> StepResult<()> {
    for (what, name) in [("schema", &table.schema), ("table", &table.table)] {
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(super::StepError::message(
                Step::CheckNames,
                format!(
                    "the {what} name {name:?} is {} bytes long and PostgreSQL keeps {MAX_IDENTIFIER_BYTES}; shorten the entity name or the flow's schema",
                    name.len()
                ),
            ));
        }
        if name.contains('\0') {
            return Err(super::StepError::message(
                Step::CheckNames,
                format!(
                    "the {what} name {name:?} contains U+0000, which PostgreSQL names cannot hold"
                ),
            ));
        }
    }
    Ok(())
}

/// Catalog columns of a table in order, with their `format_type` names.
pub async fn catalog_columns(
    client: &impl GenericClient,
    table: &TableRef,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let sql = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
    let rows = client.query(sql, &[&table.schema, &table.table]).await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

pub async fn exists(
    client: &impl GenericClient,
    table: &TableRef,
) -> Result<bool, tokio_postgres::Error> {
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))";
    Ok(client
        .query_one(sql, &[&table.schema, &table.table])
        .await?
        .get(0))
}

/// Reads the table's columns from the catalog and `_ferry.columns`.
///
/// Recorded columns the table no longer has are dropped from the record.
/// When the table has no recorded columns at all, the bookkeeping was
/// lost, so its columns of known types are adopted as fields of their own
/// name. Otherwise unrecorded columns are left alone.
pub async fn read_shape(
    client: &impl GenericClient,
    table: &TableRef,
) -> Result<TableShape, tokio_postgres::Error> {
    let catalog = catalog_columns(client, table).await?;
    let recorded = bookkeeping::tracked_columns(client, table).await?;
    if catalog.is_empty() {
        if !recorded.is_empty() {
            bookkeeping::forget_columns(client, table).await?;
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

/// Creates the schema where missing and the table with the plan's
/// columns, the metadata columns and the primary key.
pub async fn create(
    client: &impl GenericClient,
    table: &TableRef,
    plan: &ColumnPlan,
    key_columns: &[String],
) -> StepResult<()> {
    create_schema(client, &table.schema).await?;

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
        definitions.push(format!(
            "CONSTRAINT {} PRIMARY KEY ({})",
            quote_ident(&derived_name(&table.table, "_pkey")),
            keys.join(", ")
        ));
    }
    let sql = format!(
        "CREATE TABLE {} ({})",
        qualified(table),
        definitions.join(", ")
    );
    client.batch_execute(&sql).await.step(Step::CreateTable)?;
    tracing::info!(table = %table, columns = plan.columns.len(), "created table");
    Ok(())
}

/// Creates `schema` unless it exists. The existence check comes first
/// because `CREATE SCHEMA IF NOT EXISTS` needs the CREATE privilege on
/// the database even when the schema is there. The transaction lock makes
/// concurrent writers of one new schema take turns instead of colliding.
async fn create_schema(client: &impl GenericClient, schema: &str) -> StepResult<()> {
    let exists_sql = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";
    let exists = |client| async move {
        let row = GenericClient::query_one(client, exists_sql, &[&schema]).await?;
        Ok::<bool, tokio_postgres::Error>(row.get(0))
    };
    if exists(client).await.step(Step::CreateSchema)? {
        return Ok(());
    }
    let (class, key) = lock::schema_lock_params(schema);
    client
        .execute(lock::TRANSACTION_LOCK_SQL, &[&class, &key])
        .await
        .step(Step::CreateSchema)?;
    // A statement after the lock reads the schemas committed while it waited.
    if exists(client).await.step(Step::CreateSchema)? {
        return Ok(());
    }
    let sql = format!("CREATE SCHEMA {}", quote_ident(schema));
    client.batch_execute(&sql).await.step(Step::CreateSchema)?;
    tracing::info!(schema, "created schema");
    Ok(())
}

/// Widens the columns whose SQL type changes in one `ALTER TABLE`, which
/// rewrites the table once, then adds the plan's new columns in another,
/// which changes only the catalog. PostgreSQL rebuilds the primary key's
/// index when a key column widens.
pub async fn evolve(
    client: &impl GenericClient,
    table: &TableRef,
    shape: &TableShape,
    plan: &ColumnPlan,
) -> StepResult<()> {
    let type_changes: Vec<&(usize, ColumnType)> = plan
        .widened
        .iter()
        .filter(|(index, from)| sql_type_changes(from, &plan.columns[*index].column_type))
        .collect();
    if !type_changes.is_empty() {
        // The casts to text and JSON spell timestamps, dates and doubles
        // by these settings; they end with the transaction.
        let settings = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; \
                        SET LOCAL extra_float_digits = 1";
        client
            .batch_execute(settings)
            .await
            .step(Step::WidenColumn)?;
        let clauses: Vec<String> = type_changes
            .iter()
            .map(|(index, from)| {
                let column = &plan.columns[*index];
                format!(
                    "ALTER COLUMN {} TYPE {} USING {}",
                    quote_ident(&column.column),
                    sql_type(&column.column_type),
                    widen_expression(&column.column, from, &column.column_type)
                )
            })
            .collect();
        let sql = format!("ALTER TABLE {} {}", qualified(table), clauses.join(", "));
        client.batch_execute(&sql).await.step(Step::WidenColumn)?;
    }
    for (index, from) in type_changes {
        let column = &plan.columns[*index];
        tracing::info!(
            table = %table,
            column = %column.column,
            from = %sql_type(from),
            to = %sql_type(&column.column_type),
            "widened column"
        );
    }

    let mut additions = Vec::new();
    // A table ferry did not create may lack the metadata columns.
    for metadata in [SYNCED_AT, DELETED_AT] {
        if !shape.other.iter().any(|name| name == metadata) {
            additions.push((metadata.to_string(), TIMESTAMP_SQL, String::new()));
        }
    }
    for index in &plan.added {
        let column = &plan.columns[*index];
        additions.push((
            column.column.clone(),
            sql_type(&column.column_type),
            column.field.clone(),
        ));
    }
    if additions.is_empty() {
        return Ok(());
    }
    let clauses: Vec<String> = additions
        .iter()
        .map(|(name, sql, _)| format!("ADD COLUMN {} {sql}", quote_ident(name)))
        .collect();
    let sql = format!("ALTER TABLE {} {}", qualified(table), clauses.join(", "));
    client.batch_execute(&sql).await.step(Step::AddColumn)?;
    for (column, sql_type, field) in additions {
        tracing::info!(table = %table, column = %column, field = %field, sql_type, "added column");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_fit() {
        assert_eq!(
            derived_name("items", "__ferry_staging"),
            "items__ferry_staging"
        );
        let long = "x".repeat(60);
        let staging = derived_name(&long, "__ferry_staging");
        assert_eq!(staging.len(), MAX_IDENTIFIER_BYTES);
        assert!(staging.ends_with("__ferry_staging"), "{staging}");
        let other = derived_name(&format!("{long}y"), "__ferry_staging");
        assert_ne!(staging, other);
        let unicode = derived_name(&"é".repeat(40), "_pkey");
        assert!(unicode.len() <= MAX_IDENTIFIER_BYTES);
    }
}
