//! BigQuery rows: `{"f": [{"v": ...}, ...]}` decoded with a table schema.
//!
//! The REST API sends every scalar as a string (`tabledata.list`,
//! `jobs.getQueryResults`), so the schema gives the type of each one: INT64
//! becomes an integer, FLOAT64 a number, BOOL a boolean, TIMESTAMP (epoch
//! seconds as text) an ISO-8601 string, NUMERIC and BIGNUMERIC exact
//! numbers, RECORD an object and a REPEATED field an array. Other types
//! (STRING, DATE, DATETIME, TIME, BYTES, JSON, GEOGRAPHY) stay strings.

use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Number, Value};

/// One column of a table schema.
#[derive(Debug, Clone)]
pub(crate) struct Field {
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
    Exact,
    Record,
    Text,
}

/// Reads a schema: the `{"fields": [...]}` object or the fields array.
pub(crate) fn parse_schema(value: &Value) -> Result<Vec<Field>, String> {
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
        "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => Kind::Exact,
        "RECORD" | "STRUCT" => Kind::Record,
        _ => Kind::Text,
    };
    let repeated = value
        .get("mode")
        .and_then(Value::as_str)
        .is_some_and(|mode| mode.eq_ignore_ascii_case("REPEATED"));
    let fields = match value.get("fields") {
        Some(Value::Array(items)) => items.iter().map(parse_field).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(Field {
        name: name.to_string(),
        kind,
        repeated,
        fields,
    })
}

/// Decodes one `{"f": [...]}` row into an object keyed by field name.
pub(crate) fn decode_row(schema: &[Field], row: Value) -> Result<Map<String, Value>, String> {
    let cells = match row {
        Value::Object(mut map) => match map.remove("f") {
            Some(Value::Array(cells)) => cells,
            _ => return Err("a row has no \"f\" list of cells".into()),
        },
        other => return Err(format!("a row is {other}, expected {{\"f\": [...]}}")),
    };
    if cells.len() != schema.len() {
        return Err(format!(
            "a row has {} cells but the schema has {} fields",
            cells.len(),
            schema.len()
        ));
    }
    let mut record = Map::with_capacity(schema.len());
    for (field, cell) in schema.iter().zip(cells) {
        let value = decode_field(field, cell_value(cell))
            .map_err(|message| format!("field {}: {message}", field.name))?;
        record.insert(field.name.clone(), value);
    }
    Ok(record)
}

/// Returns the `v` of a `{"v": ...}` cell.
fn cell_value(cell: Value) -> Value {
    match cell {
        Value::Object(mut map) => map.remove("v").unwrap_or(Value::Null),
        other => other,
    }
}

fn decode_field(field: &Field, value: Value) -> Result<Value, String> {
    if !field.repeated {
        return decode_scalar(field, value);
    }
    match value {
        Value::Null => Ok(Value::Array(Vec::new())),
        Value::Array(items) => items
            .into_iter()
            .map(|item| decode_scalar(field, cell_value(item)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Err(format!("REPEATED value is {other}, expected a list")),
    }
}

fn decode_scalar(field: &Field, value: Value) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if field.kind == Kind::Record {
        return decode_row(&field.fields, value).map(Value::Object);
    }
    let text = match value {
        Value::String(text) => text,
        // Already typed, as some endpoints send numbers and booleans.
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
        Kind::Timestamp => timestamp(&text).ok_or_else(|| format!("{text:?} is not a TIMESTAMP")),
        Kind::Exact => exact_number(&text).ok_or_else(|| format!("{text:?} is not a NUMERIC")),
        Kind::Record | Kind::Text => Ok(Value::String(text)),
    }
}

/// Parses `text` as a number with every digit kept (serde_json's arbitrary
/// precision stores the digits as written).
fn exact_number(text: &str) -> Option<Value> {
    text.trim().parse::<Number>().ok().map(Value::Number)
}

/// Epoch seconds as text (`1.7000000001234E9` or `1700000000.123456`) to
/// an ISO-8601 UTC string, exact to the microsecond.
fn timestamp(text: &str) -> Option<Value> {
    let micros = decimal_micros(text.trim())?;
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

    fn schema() -> Vec<Field> {
        parse_schema(&json!({"fields": [
            {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
            {"name": "score", "type": "FLOAT"},
            {"name": "ok", "type": "BOOLEAN"},
            {"name": "at", "type": "TIMESTAMP"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
            {"name": "owner", "type": "RECORD", "fields": [
                {"name": "name", "type": "STRING"},
                {"name": "age", "type": "INT64"}
            ]},
            {"name": "note", "type": "STRING"}
        ]}))
        .unwrap()
    }

    #[test]
    fn row_is_decoded_with_types() {
        let row = json!({"f": [
            {"v": "42"},
            {"v": "1.5"},
            {"v": "true"},
            {"v": "1.7000000001234E9"},
            {"v": "123456789012345678901234567890.123456789"},
            {"v": [{"v": "a"}, {"v": "b"}]},
            {"v": {"f": [{"v": "Ann"}, {"v": "31"}]}},
            {"v": null}
        ]});
        let record = decode_row(&schema(), row).unwrap();
        assert_eq!(
            Value::Object(record),
            json!({
                "id": 42,
                "score": 1.5,
                "ok": true,
                "at": "2023-11-14T22:13:20.123400Z",
                "amount": serde_json::from_str::<Value>("123456789012345678901234567890.123456789").unwrap(),
                "tags": ["a", "b"],
                "owner": {"name": "Ann", "age": 31},
                "note": null
            })
        );
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
    fn timestamp_forms() {
        assert_eq!(timestamp("1700000000"), Some(json!("2023-11-14T22:13:20Z")));
        assert_eq!(
            timestamp("1700000000.5"),
            Some(json!("2023-11-14T22:13:20.500Z"))
        );
        assert_eq!(timestamp("-1.0E0"), Some(json!("1969-12-31T23:59:59Z")));
        assert_eq!(timestamp("soon"), None);
    }

    #[test]
    fn cell_count_mismatch_is_an_error() {
        let error = decode_row(&schema(), json!({"f": [{"v": "1"}]})).unwrap_err();
        assert!(error.contains("1 cells"), "{error}");
    }
}
