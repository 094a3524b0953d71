//! Columns inferred from records, shared by every backend: logical types,
//! the rules for widening them, value spellings, and column names.
//!
//! Type rules, for values that are not null (a field that was only ever
//! null gets no column):
//!
//! - booleans → boolean; strings → text; objects and arrays → JSON;
//! - integers → 64-bit, then 128-bit where the backend has it, then an
//!   integer of any size where the backend has one, else an exact
//!   decimal, then text when the backend's decimal is too narrow;
//! - numbers with a fraction or an exponent → double while a double
//!   represents the value exactly, else an exact decimal;
//! - integers and fractions together → double only while every integer
//!   fits a double exactly (|n| ≤ 2^53), else a decimal wide enough for the
//!   largest integer part and the longest fraction, else text;
//! - `fields.types` declarations (`timestamp_iso`, `timestamp_unix`,
//!   `timestamp_unix_ms`, `date`, `decimal`, `json`, `string`) fix the
//!   type; a value the declaration cannot read makes the column text, with
//!   a warning, so the value is kept;
//! - any mix with JSON → JSON (scalars become JSON scalars); any other mix
//!   → text.

mod cell;
mod names;
mod number;
mod time;
mod types;

use indexmap::IndexMap;
use serde_json::Value;

pub use cell::{CellError, cell_text, json_type_name};
pub use names::{DELETED_AT, NamingRules, SYNCED_AT, assign_column_names, quote_ident};
pub use number::{ExactNumber, IntegerWidth};
pub use time::{date_text, parse_date, parse_timestamp, timestamp_text};
pub use types::{ColumnKind, ColumnType, NumericLimits, Observation, initial_type, observe, widen};

use super::TableRef;
use crate::engine::Record;
use crate::spec::plan::FieldType;

/// A backend's storage limits, for the shared rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub numbers: NumericLimits,
    pub names: NamingRules,
}

/// A field's column, as `_ferry.columns` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedColumn {
    pub field: String,
    pub column: String,
    pub column_type: ColumnType,
}

/// The columns a table needs after a chunk.
#[derive(Debug, Clone, Default)]
pub struct ColumnPlan {
    /// Every field column: the existing ones in their order, then new ones
    /// in the order their fields first appear.
    pub columns: Vec<TrackedColumn>,
    /// Indexes into `columns` of the columns to add.
    pub added: Vec<usize>,
    /// Indexes into `columns` of existing columns whose type widens, with
    /// the type they had.
    pub widened: Vec<(usize, ColumnType)>,
}

impl ColumnPlan {
    pub fn changes_schema(&self) -> bool {
        !self.added.is_empty() || !self.widened.is_empty()
    }

    pub fn column_for(&self, field: &str) -> Option<&TrackedColumn> {
        self.columns.iter().find(|column| column.field == field)
    }
}

/// Works out the columns `records` need on top of `existing`.
///
/// `other_names` are the table's columns that hold no field (metadata
/// columns, columns a person added); new columns never take their names.
pub fn plan_columns<'a>(
    table: &TableRef,
    existing: &[TrackedColumn],
    other_names: &[String],
    records: impl IntoIterator<Item = &'a Record>,
    declared: &IndexMap<String, FieldType>,
    dialect: Dialect,
) -> ColumnPlan {
    let mut types: IndexMap<&str, Option<ColumnType>> = existing
        .iter()
        .map(|column| (column.field.as_str(), Some(column.column_type)))
        .collect();
    let mut mismatches: IndexMap<&str, usize> = IndexMap::new();

    for record in records {
        for (field, value) in record {
            let declared = declared.get(field).copied();
            let Some(observation) = observe(value, declared) else {
                continue;
            };
            if observation == Observation::Mismatch {
                *mismatches.entry(field).or_default() += 1;
            }
            let slot = types.entry(field.as_str()).or_insert(None);
            *slot = Some(match *slot {
                None => initial_type(&observation, dialect.numbers),
                Some(current) => widen(current, &observation, dialect.numbers),
            });
        }
    }

    for (field, count) in &mismatches {
        tracing::warn!(
            table = %table,
            field,
            values = count,
            declared = ?declared.get(*field),
            "values do not match the declared type; the column stores them as text"
        );
    }

    build_plan(existing, other_names, types, dialect)
}

fn build_plan(
    existing: &[TrackedColumn],
    other_names: &[String],
    types: IndexMap<&str, Option<ColumnType>>,
    dialect: Dialect,
) -> ColumnPlan {
    let mut plan = ColumnPlan::default();
    for (index, column) in existing.iter().enumerate() {
        let column_type = types[column.field.as_str()].unwrap_or(column.column_type);
        if column_type != column.column_type {
            // Stats-only changes (a wider integer part within the same kind
            // and SQL type) are recorded too; the backend decides whether
            // the SQL type changes.
            plan.widened.push((index, column.column_type));
        }
        plan.columns.push(TrackedColumn {
            column_type,
            ..column.clone()
        });
    }

    let new_fields: Vec<String> = types
        .iter()
        .filter(|(field, column_type)| {
            column_type.is_some() && !existing.iter().any(|column| column.field == **field)
        })
        .map(|(field, _)| field.to_string())
        .collect();
    let mut taken: Vec<String> = existing
        .iter()
        .map(|column| column.column.clone())
        .collect();
    taken.extend(other_names.iter().cloned());

    for (field, column) in assign_column_names(&taken, &new_fields, dialect.names) {
        let column_type = types[field.as_str()].expect("new fields have a type");
        plan.added.push(plan.columns.len());
        plan.columns.push(TrackedColumn {
            field,
            column,
            column_type,
        });
    }
    plan
}

/// Reads a field from a record, treating a missing field as null.
pub fn field_value<'a>(record: &'a Record, field: &str) -> &'a Value {
    record.get(field).unwrap_or(&Value::Null)
}

/// Lays out the values of `fields` in each record, row by row: the value
/// of field `f` in record `r` is at `r * fields.len() + f`, null where
/// the record lacks it.
///
/// One pass over each record's own fields. Records of one API list their
/// fields in the same order, so the previous record's order predicts the
/// column of each field, and a string comparison replaces a hash lookup.
pub fn record_cells<'r>(records: &'r [Record], fields: &[&str]) -> Vec<&'r Value> {
    const NULL: &Value = &Value::Null;
    let width = fields.len();
    let index: std::collections::HashMap<&str, usize> = fields
        .iter()
        .enumerate()
        .map(|(column, field)| (*field, column))
        .collect();
    let mut cells = vec![NULL; records.len() * width];
    // `order[i]`: the column of the previous record's i-th field.
    let mut order: Vec<usize> = Vec::new();
    for (row, record) in records.iter().enumerate() {
        let slots = &mut cells[row * width..(row + 1) * width];
        for (position, (field, value)) in record.iter().enumerate() {
            let predicted = order
                .get(position)
                .copied()
                .filter(|&column| column < width && fields[column] == field.as_str());
            let Some(column) = predicted.or_else(|| index.get(field.as_str()).copied()) else {
                continue;
            };
            slots[column] = value;
            match order.get_mut(position) {
                Some(slot) => *slot = column,
                None => order.push(column),
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_cells_follow_field_order_changes() {
        let records: Vec<Record> = [
            json!({"a": 1, "b": 2, "c": 3}),
            json!({"a": 4, "b": 5, "c": 6}),
            json!({"c": 7, "a": 8}),
            json!({"x": 0, "b": 9}),
        ]
        .into_iter()
        .map(|value| value.as_object().unwrap().clone())
        .collect();
        let cells = record_cells(&records, &["a", "b", "c"]);
        let shown: Vec<String> = cells.iter().map(|value| value.to_string()).collect();
        assert_eq!(
            shown,
            [
                "1", "2", "3", "4", "5", "6", "8", "null", "7", "null", "9", "null"
            ]
        );
    }

    const DUCKDB: Dialect = Dialect {
        numbers: NumericLimits {
            hugeint: true,
            bignum: true,
            max_decimal_precision: Some(38),
        },
        names: NamingRules {
            case_insensitive: true,
            max_bytes: None,
        },
    };

    fn table() -> TableRef {
        TableRef {
            schema: "s".into(),
            table: "t".into(),
        }
    }

    fn record(value: Value) -> Record {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn plan_adds_and_widens() {
        let existing = vec![TrackedColumn {
            field: "id".into(),
            column: "id".into(),
            column_type: ColumnType::new(ColumnKind::BigInt),
        }];
        let records = [
            record(json!({"id": 1.5, "Name": "x", "never": null})),
            record(json!({"name": "y"})),
        ];
        let others = [SYNCED_AT.to_string(), DELETED_AT.to_string()];
        let plan = plan_columns(
            &table(),
            &existing,
            &others,
            &records,
            &IndexMap::new(),
            DUCKDB,
        );

        let names: Vec<(&str, &str, ColumnKind)> = plan
            .columns
            .iter()
            .map(|c| (c.field.as_str(), c.column.as_str(), c.column_type.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("id", "id", ColumnKind::Double),
                ("Name", "Name", ColumnKind::Text),
                ("name", "name_82a3537f", ColumnKind::Text),
            ]
        );
        assert_eq!(plan.added, [1, 2]);
        assert_eq!(plan.widened, [(0, ColumnType::new(ColumnKind::BigInt))]);
    }
}
