//! The bulk path: a chunk's values go through binary `COPY … FROM STDIN`
//! into a temporary table, and one `INSERT … SELECT … ON CONFLICT`
//! moves them into the entity table. Values travel as parameters of the
//! COPY stream, never as SQL text.
//!
//! Duplicate keys are resolved here, before the COPY: PostgreSQL rejects
//! an upsert that touches one row twice, so only the last record of each
//! key is sent.

use std::collections::HashMap;
use std::pin::pin;

use chrono::{DateTime, Utc};
use futures::SinkExt;
use indexmap::IndexMap;
use serde_json::Value;
use tokio_postgres::Transaction;

use super::copy::{CopyWriter, Repairs};
use super::table::qualified;
use super::types::{from_staged, staged_type};
use super::{Step, StepError, StepExt, StepResult};
use crate::destination::TableRef;
use crate::destination::columns::{
    ColumnKind, DELETED_AT, ExactNumber, SYNCED_AT, TrackedColumn, cell_text, field_value,
    json_type_name, quote_ident,
};
use crate::destination::upsert::on_conflict_update;
use crate::engine::Record;
use crate::spec::plan::FieldType;

const RECORDS_TABLE: &str = "__ferry_chunk";
const DELETIONS_TABLE: &str = "__ferry_deletions";

/// The COPY stream is sent in pieces of about this size, so the server
/// parses one piece while the next is encoded.
const SEND_BYTES: usize = 256 * 1024;

/// The destination of a load: table, columns and key.
pub struct LoadTarget<'a> {
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
/// (the run created the table, see `destination::fresh`), keyed records are
/// copied straight into the table too. A key already there then fails the
/// copy with [`StepError::is_conflict`].
pub async fn write_records(
    transaction: &Transaction<'_>,
    target: &LoadTarget<'_>,
    records: &[Record],
    append: bool,
) -> StepResult<()> {
    let all: Vec<usize> = (0..target.columns.len()).collect();
    let started = std::time::Instant::now();
    let rows = last_of_each_key(target, records)?;
    let binary = target
        .columns
        .iter()
        .all(|column| copies_in_binary(column.column_type.kind));
    if binary && (append || target.keys.is_empty()) {
        append_records(transaction, target, records, &rows).await?;
        tracing::debug!(
            table = %target.table,
            rows = rows.len(),
            copy_ms = started.elapsed().as_millis() as u64,
            "appended records"
        );
        return Ok(());
    }
    stage(transaction, target, RECORDS_TABLE, &all, records, &rows).await?;
    let staged = started.elapsed();

    let names: Vec<String> = target
        .columns
        .iter()
        .map(|column| quote_ident(&column.column))
        .collect();
    let values: Vec<String> = target
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| from_staged(&format!("c{index}"), column.column_type.kind))
        .collect();
    let mut sql = format!(
        "INSERT INTO {} ({}, {}, {}) SELECT {}, CAST($1 AS timestamp with time zone), NULL FROM pg_temp.{}",
        qualified(target.table),
        names.join(", "),
        quote_ident(SYNCED_AT),
        quote_ident(DELETED_AT),
        values.join(", "),
        quote_ident(RECORDS_TABLE),
    );
    let step = if target.keys.is_empty() {
        Step::Insert
    } else {
        sql.push_str(&on_conflict_update(&names, target.keys));
        Step::Upsert
    };
    transaction
        .execute(&sql, &[&target.synced_at])
        .await
        .step(step)?;
    tracing::debug!(
        table = %target.table,
        rows = rows.len(),
        stage_ms = staged.as_millis() as u64,
        upsert_ms = (started.elapsed() - staged).as_millis() as u64,
        "loaded records"
    );
    Ok(())
}

/// Returns whether the COPY stream carries a column of `kind` in the column's own
/// type, so it can go straight into the table (NUMERIC travels as text).
fn copies_in_binary(kind: ColumnKind) -> bool {
    !matches!(
        kind,
        ColumnKind::HugeInt | ColumnKind::BigNum | ColumnKind::Decimal
    )
}

/// Copies the records at `rows` straight into the table, with
/// `_ferry_synced_at`; `_ferry_deleted_at` takes its NULL default.
async fn append_records(
    transaction: &Transaction<'_>,
    target: &LoadTarget<'_>,
    records: &[Record],
    rows: &[usize],
) -> StepResult<()> {
    let mut names: Vec<String> = target
        .columns
        .iter()
        .map(|column| quote_ident(&column.column))
        .collect();
    names.push(quote_ident(SYNCED_AT));
    let copy = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        qualified(target.table),
        names.join(", ")
    );
    let all: Vec<usize> = (0..target.columns.len()).collect();
    let step = if target.keys.is_empty() {
        Step::Insert
    } else {
        Step::Append
    };
    copy_rows(transaction, &copy, step, target, &all, records, rows, true).await
}

/// Sets `_ferry_deleted_at` on the rows of `deletions`' keys, inserting a
/// key-only row for a key the table does not have.
pub async fn mark_deleted(
    transaction: &Transaction<'_>,
    target: &LoadTarget<'_>,
    deletions: &[Record],
) -> StepResult<()> {
    let rows = last_of_each_key(target, deletions)?;
    stage(
        transaction,
        target,
        DELETIONS_TABLE,
        target.keys,
        deletions,
        &rows,
    )
    .await?;

    let names: Vec<String> = target
        .keys
        .iter()
        .map(|&key| quote_ident(&target.columns[key].column))
        .collect();
    let values: Vec<String> = target
        .keys
        .iter()
        .enumerate()
        .map(|(position, &key)| {
            from_staged(
                &format!("c{position}"),
                target.columns[key].column_type.kind,
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({keys}, {synced}, {deleted}) \
         SELECT {values}, CAST($1 AS timestamp with time zone), CAST($1 AS timestamp with time zone) \
         FROM pg_temp.{staged} \
         ON CONFLICT ({keys}) DO UPDATE SET {synced} = excluded.{synced}, \
         {deleted} = excluded.{deleted}",
        table = qualified(target.table),
        keys = names.join(", "),
        synced = quote_ident(SYNCED_AT),
        deleted = quote_ident(DELETED_AT),
        values = values.join(", "),
        staged = quote_ident(DELETIONS_TABLE),
    );
    transaction
        .execute(&sql, &[&target.synced_at])
        .await
        .step(Step::MarkDeleted)?;
    Ok(())
}

/// Copies the `columns` (indexes into the target's columns) of the
/// records at `rows` into a new temporary table `c0 … cN`, dropped at
/// commit or rollback.
async fn stage(
    transaction: &Transaction<'_>,
    target: &LoadTarget<'_>,
    name: &str,
    columns: &[usize],
    records: &[Record],
    rows: &[usize],
) -> StepResult<()> {
    let definitions: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(position, &index)| {
            format!(
                "c{position} {}",
                staged_type(target.columns[index].column_type.kind)
            )
        })
        .collect();
    let create = format!(
        "CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP",
        quote_ident(name),
        definitions.join(", ")
    );
    transaction.batch_execute(&create).await.step(Step::Stage)?;

    let copy = format!(
        "COPY pg_temp.{} FROM STDIN (FORMAT binary)",
        quote_ident(name)
    );
    copy_rows(
        transaction,
        &copy,
        Step::Stage,
        target,
        columns,
        records,
        rows,
        false,
    )
    .await
}

/// Sends the `columns` (indexes into the target's columns) of the records
/// at `rows` through `copy`, a binary `COPY … FROM STDIN`, each row ending
/// with the target's sync time when `with_synced_at`, and logs the values
/// it repaired.
#[allow(clippy::too_many_arguments)]
async fn copy_rows(
    transaction: &Transaction<'_>,
    copy: &str,
    step: Step,
    target: &LoadTarget<'_>,
    columns: &[usize],
    records: &[Record],
    rows: &[usize],
    with_synced_at: bool,
) -> StepResult<()> {
    let sink = transaction.copy_in(copy).await.step(step)?;
    let mut sink = pin!(sink);

    let kinds: Vec<(ColumnKind, Option<FieldType>, &str)> = columns
        .iter()
        .map(|&index| {
            let column = &target.columns[index];
            let declared = target.declared.get(&column.field).copied();
            (column.column_type.kind, declared, column.field.as_str())
        })
        .collect();
    let fields = columns.len() + usize::from(with_synced_at);
    let mut repairs = vec![Repairs::default(); columns.len()];
    let mut writer = CopyWriter::new(SEND_BYTES + SEND_BYTES / 4);
    for &row in rows {
        writer.start_row(fields);
        for (position, (kind, declared, field)) in kinds.iter().enumerate() {
            let value = field_value(&records[row], field);
            writer
                .put_value(value, *kind, *declared, &mut repairs[position])
                .map_err(|error| {
                    let column = &target.columns[columns[position]];
                    StepError::message(
                        step,
                        format!(
                            "column {} (field {:?}): {error}; widen the column or fix fields.types",
                            quote_ident(&column.column),
                            column.field
                        ),
                    )
                })?;
        }
        if with_synced_at {
            writer.put_timestamp(&target.synced_at);
        }
        if writer.buffered_bytes() >= SEND_BYTES {
            sink.send(writer.take()).await.step(step)?;
        }
    }
    writer.finish();
    sink.send(writer.take()).await.step(step)?;
    sink.as_mut().finish().await.step(step)?;

    for (position, repairs) in repairs.iter().enumerate() {
        let column = &target.columns[columns[position]].column;
        if repairs.nul > 0 {
            tracing::warn!(
                table = %target.table,
                column = %column,
                values = repairs.nul,
                "replaced U+0000 with U+FFFD, because PostgreSQL text and jsonb cannot hold it"
            );
        }
        if repairs.numbers > 0 {
            tracing::warn!(
                table = %target.table,
                column = %column,
                values = repairs.numbers,
                "stored JSON numbers beyond PostgreSQL's numeric range as strings of their digits"
            );
        }
    }
    Ok(())
}

/// Returns the positions of the records to write, in order: every record
/// of an append-only table, else the last record of each key.
fn last_of_each_key(target: &LoadTarget<'_>, records: &[Record]) -> StepResult<Vec<usize>> {
    if target.keys.is_empty() {
        return Ok((0..records.len()).collect());
    }
    let mut last: HashMap<Vec<u8>, usize> = HashMap::with_capacity(records.len());
    let mut identities = Vec::with_capacity(records.len());
    for (position, record) in records.iter().enumerate() {
        let identity = key_identity(target, record)?;
        last.insert(identity.clone(), position);
        identities.push(identity);
    }
    if last.len() == records.len() {
        return Ok((0..records.len()).collect());
    }
    Ok(identities
        .iter()
        .enumerate()
        .filter(|(position, identity)| last[*identity] == *position)
        .map(|(position, _)| position)
        .collect())
}

/// Spells a record's key so that two records get the same spelling
/// exactly when PostgreSQL finds their keys equal once stored. Integers
/// and timestamps are spelled by value, numeric text is normalized, -0.0
/// becomes 0.0, JSON gets sorted keys and normalized numbers, and U+0000
/// is replaced as it is when stored.
fn key_identity(target: &LoadTarget<'_>, record: &Record) -> StepResult<Vec<u8>> {
    let mut identity = Vec::new();
    for &index in target.keys {
        let column = &target.columns[index];
        let value = field_value(record, &column.field);
        let kind = column.column_type.kind;
        let declared = target.declared.get(&column.field).copied();
        let part = match kind {
            ColumnKind::Json => {
                let mut text = String::new();
                canonical_json(value, &mut text);
                text
            }
            ColumnKind::Double => {
                let text = value
                    .as_number()
                    .map(|number| number.as_str())
                    .unwrap_or("");
                let double = text.parse::<f64>().unwrap_or(f64::NAN);
                // -0.0 == 0.0 in PostgreSQL.
                format!("{}", if double == 0.0 { 0.0 } else { double })
            }
            _ => {
                let text = cell_text(value, kind, declared).map_err(|error| {
                    StepError::message(
                        Step::CheckKeys,
                        format!(
                            "key column {} (field {:?}): {error}",
                            quote_ident(&column.column),
                            column.field
                        ),
                    )
                })?;
                let text = text.unwrap_or_default();
                match kind {
                    ColumnKind::BigInt => normalized_number(&text),
                    _ => text.replace('\0', "\u{FFFD}"),
                }
            }
        };
        identity.extend_from_slice(&(part.len() as u64).to_be_bytes());
        identity.extend_from_slice(part.as_bytes());
    }
    Ok(identity)
}

/// Spells a number by its value (`1E3` and `1000` alike).
fn normalized_number(text: &str) -> String {
    match ExactNumber::parse(text) {
        Some(number) => format!(
            "{}{}e{}",
            if number.negative { "-" } else { "" },
            number.digits,
            number.exponent
        ),
        None => text.to_string(),
    }
}

/// Writes `value` with object keys sorted and numbers normalized, the
/// way `jsonb` compares values.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|left, right| left.0.cmp(right.0));
            out.push('{');
            for (position, (key, item)) in entries.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.replace('\0', "\u{FFFD}")).to_string());
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Number(number) => out.push_str(&normalized_number(number.as_str())),
        Value::String(text) => {
            out.push_str(&Value::String(text.replace('\0', "\u{FFFD}")).to_string())
        }
        other => out.push_str(&other.to_string()),
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

/// Renames record fields whose names hold U+0000, which no PostgreSQL
/// text or identifier can hold, to the name with U+FFFD; returns how many
/// records changed.
pub fn repair_field_names(records: &mut [Record]) -> usize {
    let mut changed = 0;
    for record in records.iter_mut() {
        if !record.keys().any(|field| field.contains('\0')) {
            continue;
        }
        let fields = std::mem::take(record);
        for (field, value) in fields {
            record.insert(field.replace('\0', "\u{FFFD}"), value);
        }
        changed += 1;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::columns::ColumnType;
    use serde_json::json;

    fn target_with<'a>(
        table: &'a TableRef,
        columns: &'a [TrackedColumn],
        keys: &'a [usize],
        declared: &'a IndexMap<String, FieldType>,
    ) -> LoadTarget<'a> {
        LoadTarget {
            table,
            columns,
            keys,
            declared,
            synced_at: Utc::now(),
        }
    }

    fn column(field: &str, kind: ColumnKind) -> TrackedColumn {
        TrackedColumn {
            field: field.into(),
            column: field.into(),
            column_type: ColumnType::new(kind),
        }
    }

    fn records(text: &str) -> Vec<Record> {
        let values: Vec<Value> = serde_json::from_str(text).unwrap();
        values
            .into_iter()
            .map(|v| v.as_object().unwrap().clone())
            .collect()
    }

    #[test]
    fn last_record_of_each_key_is_kept() {
        let table = TableRef {
            schema: "s".into(),
            table: "t".into(),
        };
        let columns = [
            column("id", ColumnKind::BigInt),
            column("j", ColumnKind::Json),
        ];
        let declared = IndexMap::new();
        let target = target_with(&table, &columns, &[0, 1], &declared);
        let chunk = records(
            r#"[{"id": 1, "j": {"a": 1, "b": 2}}, {"id": 2, "j": 1},
                {"id": 1E0, "j": {"b": 2, "a": 1.0}}, {"id": 2, "j": 2}]"#,
        );
        assert_eq!(last_of_each_key(&target, &chunk).unwrap(), [1, 2, 3]);

        let append = target_with(&table, &columns, &[], &declared);
        assert_eq!(last_of_each_key(&append, &chunk).unwrap(), [0, 1, 2, 3]);
    }

    #[test]
    fn field_names_lose_nul() {
        let mut chunk = vec![json!({"a\u{0}b": 1, "c": 2}).as_object().unwrap().clone()];
        assert_eq!(repair_field_names(&mut chunk), 1);
        let fields: Vec<&String> = chunk[0].keys().collect();
        assert_eq!(fields, ["a\u{FFFD}b", "c"]);
    }
}
