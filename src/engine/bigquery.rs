//! BigQuery rows: `{"f": [{"v": ...}, ...]}` decoded with a table schema.
//!
//! The REST API sends every scalar as a string (`tabledata.list`,
//! `jobs.getQueryResults`), so the schema gives the type of each one:
//!
//! | BigQuery type | record value | column type declared |
//! |---|---|---|
//! | INT64 | integer | – |
//! | FLOAT64 | number; `NaN` and infinities stay text (JSON has no such numbers) | – |
//! | NUMERIC, BIGNUMERIC | exact number, every digit kept | `decimal` |
//! | BOOL | boolean | – |
//! | TIMESTAMP | ISO-8601 UTC text, exact to the microsecond | `timestamp_iso` |
//! | DATETIME | ISO-8601 text without offset | `timestamp_iso` (read as UTC) |
//! | DATE | `YYYY-MM-DD` | `date` |
//! | JSON | the parsed JSON value | `json` |
//! | RECORD / STRUCT | object | – (a JSON column) |
//! | REPEATED mode | array, `[]` for NULL | – (a JSON column) |
//! | STRING, BYTES (base64), TIME, GEOGRAPHY (WKT), INTERVAL, RANGE | text | – |
//!
//! A NULL cell (`{"v": null}`) is null. TIMESTAMP cells are epoch seconds
//! as a decimal string by default, integer microseconds with
//! `formatOptions.useInt64Timestamp=true` (`TimestampUnit::Microseconds`),
//! or ISO-8601 text with `formatOptions.timestampOutputFormat=ISO8601_STRING`.
//! The declared column types travel with each page, so the destination
//! makes typed columns for fields that no entity declares.

use chrono::{DateTime, SecondsFormat};
use indexmap::IndexMap;
use serde_json::{Map, Number, Value};

use crate::spec::plan::{FieldType, TimestampUnit};

/// A table schema, ready to decode rows.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    fields: Vec<Field>,
    timestamp_unit: TimestampUnit,
}

/// One column of a table schema.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: Kind,
    repeated: bool,
    fields: Vec<Field>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Integer,
    Float,
    Bool,
    Timestamp,
    DateTime,
    Date,
    Exact,
    Json,
    Record,
    Text,
}

/// Reads a schema: the `{"fields": [...]}` object or the fields array.
pub(crate) fn parse_schema(value: &Value, timestamp_unit: TimestampUnit) -> Result<Schema, String> {
    Ok(Schema {
        fields: parse_fields(value)?,
        timestamp_unit,
    })
}

fn parse_fields(value: &Value) -> Result<Vec<Field>, String> {
    let fields = match value {
        Value::Object(map) => map.get("fields").unwrap_or(&Value::Null),
        other => other,
    };
    let Value::Array(items) = fields else {
        return Err("the schema is not a {\"fields\": [...]} object or a list of fields".into());
    };
    items.iter().map(parse_field).collect()
}

fn parse_field(value: &Value) -> Result<Field, String> {
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("schema field {value} has no name"))?;
    let type_name = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("STRING");
    let kind = match type_name.to_ascii_uppercase().as_str() {
        "INT64" | "INTEGER" => Kind::Integer,
        "FLOAT64" | "FLOAT" => Kind::Float,
        "BOOL" | "BOOLEAN" => Kind::Bool,
        "TIMESTAMP" => Kind::Timestamp,
        "DATETIME" => Kind::DateTime,
        "DATE" => Kind::Date,
        "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => Kind::Exact,
        "JSON" => Kind::Json,
        "RECORD" | "STRUCT" => Kind::Record,
        _ => Kind::Text,
    };
    let repeated = value
        .get("mode")
        .and_then(Value::as_str)
        .is_some_and(|mode| mode.eq_ignore_ascii_case("REPEATED"));
    let fields = match value.get("fields") {
        Some(nested) if kind == Kind::Record => parse_fields(nested)?,
        _ => Vec::new(),
    };
    Ok(Field {
        name: name.to_string(),
        kind,
        repeated,
        fields,
    })
}

impl Schema {
    /// Returns the column type to declare for each top-level field whose
    /// decoded value alone does not say it (timestamps, dates, exact
    /// numbers, JSON).
    pub(crate) fn field_types(&self) -> IndexMap<String, FieldType> {
        self.fields
            .iter()
            .filter(|field| !field.repeated)
            .filter_map(|field| {
                let declared = match field.kind {
                    Kind::Timestamp | Kind::DateTime => FieldType::TimestampIso,
                    Kind::Date => FieldType::Date,
                    Kind::Exact => FieldType::Decimal,
                    Kind::Json => FieldType::Json,
                    _ => return None,
                };
                Some((field.name.clone(), declared))
            })
            .collect()
    }

    /// Decodes one `{"f": [...]}` row into an object keyed by field name.
    pub(crate) fn decode_row(&self, row: Value) -> Result<Map<String, Value>, String> {
        self.decode_record(&self.fields, row)
    }

    fn decode_record(&self, fields: &[Field], row: Value) -> Result<Map<String, Value>, String> {
        let cells = match row {
            Value::Object(mut map) => match map.remove("f") {
                Some(Value::Array(cells)) => cells,
                _ => return Err("a row has no \"f\" list of cells".into()),
            },
            other => return Err(format!("a row is {other}, expected {{\"f\": [...]}}")),
        };
        if cells.len() != fields.len() {
            return Err(format!(
                "a row has {} cells but the schema has {} fields",
                cells.len(),
                fields.len()
            ));
        }
        let mut record = Map::with_capacity(fields.len());
        for (field, cell) in fields.iter().zip(cells) {
            let value = self
                .decode_field(field, cell_value(cell))
                .map_err(|message| format!("field {}: {message}", field.name))?;
            record.insert(field.name.clone(), value);
        }
        Ok(record)
    }

    fn decode_field(&self, field: &Field, value: Value) -> Result<Value, String> {
        if !field.repeated {
            return self.decode_scalar(field, value);
        }
        match value {
            Value::Null => Ok(Value::Array(Vec::new())),
            Value::Array(items) => items
                .into_iter()
                .map(|item| self.decode_scalar(field, cell_value(item)))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Err(format!("REPEATED value is {other}, expected a list")),
        }
    }

    fn decode_scalar(&self, field: &Field, value: Value) -> Result<Value, String> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        if field.kind == Kind::Record {
            return self.decode_record(&field.fields, value).map(Value::Object);
        }
        let text = match value {
            Value::String(text) => text,
            // Some endpoints and test doubles send numbers and booleans
            // typed; timestamps still need converting from their unit.
            Value::Number(number) if field.kind == Kind::Timestamp => number.to_string(),
            other => return Ok(other),
        };
        match field.kind {
            Kind::Integer => match text.parse::<i64>() {
                Ok(integer) => Ok(Value::from(integer)),
                Err(_) => Err(format!("{text:?} is not an INT64")),
            },
            Kind::Float => match text.parse::<f64>() {
                Ok(float) if float.is_finite() => {
                    Ok(exact_number(&text).unwrap_or_else(|| Value::from(float)))
                }
                // NaN and infinities have no JSON number, so they stay text.
                Ok(_) => Ok(Value::String(text)),
                Err(_) => Err(format!("{text:?} is not a FLOAT64")),
            },
            Kind::Bool => match text.to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("{text:?} is not a BOOL")),
            },
            Kind::Timestamp => timestamp(&text, self.timestamp_unit)
                .ok_or_else(|| format!("{text:?} is not a TIMESTAMP")),
            Kind::Exact => exact_number(&text).ok_or_else(|| format!("{text:?} is not a NUMERIC")),
            // A JSON cell is JSON text; text that does not parse is kept.
            Kind::Json => Ok(serde_json::from_str(&text).unwrap_or(Value::String(text))),
            Kind::DateTime | Kind::Date | Kind::Record | Kind::Text => Ok(Value::String(text)),
        }
    }
}

/// Returns the `v` of a `{"v": ...}` cell.
fn cell_value(cell: Value) -> Value {
    match cell {
        Value::Object(mut map) => map.remove("v").unwrap_or(Value::Null),
        other => other,
    }
}

/// Parses `text` as a number with every digit kept (serde_json's arbitrary
/// precision stores the digits as written).
fn exact_number(text: &str) -> Option<Value> {
    text.trim().parse::<Number>().ok().map(Value::Number)
}

/// Converts a TIMESTAMP cell to an ISO-8601 UTC string, exact to the
/// microsecond: epoch seconds (`1.7000000001234E9`, `1700000000.123456`),
/// integer epoch microseconds, or ISO-8601 text.
fn timestamp(text: &str, unit: TimestampUnit) -> Option<Value> {
    let text = text.trim();
    // ISO-8601 text has a colon or a `YYYY-` year; a number has neither.
    let year = text.get(..5).is_some_and(|start| {
        start.ends_with('-') && start[..4].bytes().all(|byte| byte.is_ascii_digit())
    });
    let iso = year || text.contains(':');
    let micros = if iso {
        let parsed = crate::template::parse_time_text(text)?;
        i128::from(parsed.timestamp_micros())
    } else {
        match unit {
            TimestampUnit::Seconds => decimal_micros(text)?,
            TimestampUnit::Microseconds => text.parse::<i128>().ok()?,
        }
    };
    let seconds = micros.div_euclid(1_000_000);
    let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1_000).ok()?;
    let time = DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)?;
    Some(Value::String(
        time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    ))
}

/// Parses a decimal number, with an optional exponent, as whole
/// microseconds without going through a float.
fn decimal_micros(text: &str) -> Option<i128> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    // value = digits * 10^(exponent - fraction.len()); micros = value * 10^6.
    let shift = exponent + 6 - i32::try_from(fraction.len()).ok()?;
    let mut micros: i128 = digits.trim_start_matches('0').parse::<i128>().unwrap_or(0);
    if shift >= 0 {
        micros = micros.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
    } else {
        let divisor = 10i128
            .checked_pow(u32::try_from(-shift).ok()?)
            .unwrap_or(i128::MAX);
        micros /= divisor;
    }
    Some(if negative { -micros } else { micros })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(unit: TimestampUnit) -> Schema {
        parse_schema(
            &json!({"fields": [
                {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
                {"name": "score", "type": "FLOAT"},
                {"name": "ok", "type": "BOOLEAN"},
                {"name": "at", "type": "TIMESTAMP"},
                {"name": "amount", "type": "NUMERIC"},
                {"name": "big", "type": "BIGNUMERIC"},
                {"name": "day", "type": "DATE"},
                {"name": "local", "type": "DATETIME"},
                {"name": "clock", "type": "TIME"},
                {"name": "doc", "type": "JSON"},
                {"name": "raw", "type": "BYTES"},
                {"name": "place", "type": "GEOGRAPHY"},
                {"name": "tags", "type": "STRING", "mode": "REPEATED"},
                {"name": "owner", "type": "RECORD", "fields": [
                    {"name": "name", "type": "STRING"},
                    {"name": "age", "type": "INT64"}
                ]},
                {"name": "note", "type": "STRING"}
            ]}),
            unit,
        )
        .unwrap()
    }

    fn number(text: &str) -> Value {
        serde_json::from_str::<Value>(text).unwrap()
    }

    #[test]
    fn row_is_decoded_with_types() {
        let row = json!({"f": [
            {"v": "42"},
            {"v": "1.5"},
            {"v": "true"},
            {"v": "1.7000000001234E9"},
            {"v": "123456789012345678901234567890.123456789"},
            {"v": "578960446186580977117854925043439539266.34992332820282019728792003956564819967"},
            {"v": "2024-02-29"},
            {"v": "2024-02-29T13:45:00.123456"},
            {"v": "13:45:00"},
            {"v": "{\"a\":[1,2]}"},
            {"v": "AAEC"},
            {"v": "POINT(1 2)"},
            {"v": [{"v": "a"}, {"v": "b"}]},
            {"v": {"f": [{"v": "Ann"}, {"v": "31"}]}},
            {"v": null}
        ]});
        let record = schema(TimestampUnit::Seconds).decode_row(row).unwrap();
        let expected = json!({
            "id": 42,
            "score": 1.5,
            "ok": true,
            "at": "2023-11-14T22:13:20.123400Z",
            "amount": number("123456789012345678901234567890.123456789"),
            "big": number("578960446186580977117854925043439539266.34992332820282019728792003956564819967"),
            "day": "2024-02-29",
            "local": "2024-02-29T13:45:00.123456",
            "clock": "13:45:00",
            "doc": {"a": [1, 2]},
            "raw": "AAEC",
            "place": "POINT(1 2)",
            "tags": ["a", "b"],
            "owner": {"name": "Ann", "age": 31},
            "note": null
        });
        assert_eq!(Value::Object(record), expected);
    }

    #[test]
    fn null_cells_are_null_and_empty_lists() {
        let mut cells = vec![json!({"v": "1"})];
        cells.extend(std::iter::repeat_n(json!({"v": null}), 14));
        let record = schema(TimestampUnit::Seconds)
            .decode_row(json!({"f": cells}))
            .unwrap();
        assert_eq!(record["at"], Value::Null);
        assert_eq!(record["doc"], Value::Null);
        assert_eq!(record["owner"], Value::Null);
        assert_eq!(record["tags"], json!([]));
    }

    #[test]
    fn nested_repeated_records() {
        // The shape of Google's python-bigquery test_list_rows_repeated_fields.
        let schema = parse_schema(
            &json!({"fields": [
                {"name": "color", "type": "STRING", "mode": "REPEATED"},
                {"name": "struct", "type": "RECORD", "mode": "REPEATED", "fields": [
                    {"name": "index", "type": "INTEGER", "mode": "REPEATED"},
                    {"name": "score", "type": "FLOAT", "mode": "REPEATED"}
                ]}
            ]}),
            TimestampUnit::Seconds,
        )
        .unwrap();
        let row = json!({"f": [
            {"v": [{"v": "red"}, {"v": "green"}]},
            {"v": [{"v": {"f": [
                {"v": [{"v": "1"}, {"v": "2"}]},
                {"v": [{"v": "3.1415"}, {"v": "1.414"}]}
            ]}}]}
        ]});
        let record = schema.decode_row(row).unwrap();
        assert_eq!(
            Value::Object(record),
            json!({
                "color": ["red", "green"],
                "struct": [{"index": [1, 2], "score": [number("3.1415"), number("1.414")]}]
            })
        );
    }

    #[test]
    fn field_types_declare_what_values_cannot_show() {
        let types = schema(TimestampUnit::Seconds).field_types();
        let expected: IndexMap<String, FieldType> = [
            ("at", FieldType::TimestampIso),
            ("amount", FieldType::Decimal),
            ("big", FieldType::Decimal),
            ("day", FieldType::Date),
            ("local", FieldType::TimestampIso),
            ("doc", FieldType::Json),
        ]
        .into_iter()
        .map(|(name, kind)| (name.to_string(), kind))
        .collect();
        assert_eq!(types, expected);
    }

    #[test]
    fn numeric_keeps_every_digit() {
        let value = exact_number("123456789012345678901234567890.123456789").unwrap();
        assert_eq!(
            value.to_string(),
            "123456789012345678901234567890.123456789"
        );
    }

    #[test]
    fn float_special_values_stay_text() {
        let schema = parse_schema(
            &json!([{"name": "x", "type": "FLOAT64"}]),
            TimestampUnit::Seconds,
        )
        .unwrap();
        let record = schema.decode_row(json!({"f": [{"v": "NaN"}]})).unwrap();
        assert_eq!(record["x"], json!("NaN"));
    }

    #[test]
    fn timestamp_forms() {
        let seconds = TimestampUnit::Seconds;
        assert_eq!(
            timestamp("1700000000", seconds),
            Some(json!("2023-11-14T22:13:20Z"))
        );
        assert_eq!(
            timestamp("1700000000.5", seconds),
            Some(json!("2023-11-14T22:13:20.500Z"))
        );
        assert_eq!(
            timestamp("-1.0E0", seconds),
            Some(json!("1969-12-31T23:59:59Z"))
        );
        assert_eq!(
            timestamp("1.0E-6", seconds),
            Some(json!("1970-01-01T00:00:00.000001Z"))
        );
        assert_eq!(timestamp("soon", seconds), None);
    }

    #[test]
    fn timestamp_in_microseconds_and_iso_text() {
        let micros = TimestampUnit::Microseconds;
        assert_eq!(
            timestamp("1437767599006000", micros),
            Some(json!("2015-07-24T19:53:19.006Z"))
        );
        assert_eq!(
            timestamp("2015-07-24T19:53:19.006001Z", micros),
            Some(json!("2015-07-24T19:53:19.006001Z"))
        );
        assert_eq!(timestamp("1.5", micros), None);
    }

    #[test]
    fn typed_timestamp_number_uses_unit() {
        let schema = parse_schema(
            &json!([{"name": "joined", "type": "TIMESTAMP"}]),
            TimestampUnit::Microseconds,
        )
        .unwrap();
        let record = schema
            .decode_row(json!({"f": [{"v": 1437767599006000u64}]}))
            .unwrap();
        assert_eq!(record["joined"], json!("2015-07-24T19:53:19.006Z"));
    }

    #[test]
    fn cell_count_mismatch_is_an_error() {
        let error = schema(TimestampUnit::Seconds)
            .decode_row(json!({"f": [{"v": "1"}]}))
            .unwrap_err();
        assert!(error.contains("1 cells"), "{error}");
    }
}
