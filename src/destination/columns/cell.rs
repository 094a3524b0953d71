//! The text a backend casts into a column: one spelling per value and
//! column kind, exact for every kind (no value passes through a float).

use std::borrow::Cow;

use serde_json::Value;

use super::number::ExactNumber;
use super::time::{date_text, parse_date, parse_timestamp, timestamp_text};
use super::types::{ColumnKind, numeric_text};
use crate::spec::plan::FieldType;

/// A value that its column's type cannot take. Inference widens columns
/// before values are converted, so this means a column changed type
/// between inference and writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {value_type} value does not fit a {kind} column")]
pub struct CellError {
    /// The JSON type of the value (`string`, `number`, ...); never the value.
    pub value_type: &'static str,
    pub kind: &'static str,
}

/// Spells `value` for a column of `kind`; `None` for null. Strings and
/// numbers are borrowed, because most cells are spelled as they came.
pub fn cell_text(
    value: &Value,
    kind: ColumnKind,
    declared: Option<FieldType>,
) -> Result<Option<Cow<'_, str>>, CellError> {
    if value.is_null() {
        return Ok(None);
    }
    let mismatch = || CellError {
        value_type: json_type_name(value),
        kind: kind.as_str(),
    };
    let text = match kind {
        ColumnKind::Text => match value {
            Value::String(text) => Cow::Borrowed(text.as_str()),
            Value::Number(number) => Cow::Borrowed(number.as_str()),
            other => Cow::Owned(other.to_string()),
        },
        ColumnKind::Json => Cow::Owned(value.to_string()),
        ColumnKind::Boolean => match value.as_bool().ok_or_else(mismatch)? {
            true => Cow::Borrowed("true"),
            false => Cow::Borrowed("false"),
        },
        ColumnKind::BigInt | ColumnKind::HugeInt | ColumnKind::BigNum | ColumnKind::Double => {
            match value {
                Value::Number(number) => Cow::Borrowed(number.as_str()),
                _ => return Err(mismatch()),
            }
        }
        ColumnKind::Decimal => {
            let number = numeric_text(value).and_then(ExactNumber::parse);
            Cow::Owned(number.ok_or_else(mismatch)?.plain_text())
        }
        ColumnKind::Timestamp => {
            let declared = declared.ok_or_else(mismatch)?;
            let instant = parse_timestamp(value, declared).ok_or_else(mismatch)?;
            Cow::Owned(timestamp_text(&instant))
        }
        ColumnKind::Date => Cow::Owned(date_text(&parse_date(value).ok_or_else(mismatch)?)),
    };
    Ok(Some(text))
}

/// The JSON type of a value, for messages that must not show the value.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spell(value: Value, kind: ColumnKind) -> Option<String> {
        cell_text(&value, kind, None).unwrap().map(Cow::into_owned)
    }

    #[test]
    fn text_and_json_spellings() {
        assert_eq!(
            spell(json!("a\"b"), ColumnKind::Text).as_deref(),
            Some("a\"b")
        );
        assert_eq!(spell(json!(12), ColumnKind::Text).as_deref(), Some("12"));
        assert_eq!(
            spell(json!({"a": [1]}), ColumnKind::Text).as_deref(),
            Some(r#"{"a":[1]}"#)
        );
        assert_eq!(
            spell(json!("x"), ColumnKind::Json).as_deref(),
            Some("\"x\"")
        );
        assert_eq!(spell(json!(null), ColumnKind::Json), None);
    }

    fn spell_declared(value: Value, kind: ColumnKind, declared: FieldType) -> Option<String> {
        cell_text(&value, kind, Some(declared))
            .unwrap()
            .map(Cow::into_owned)
    }

    #[test]
    fn numbers_keep_source_digits() {
        let big: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
        let spelled = spell(big, ColumnKind::HugeInt);
        assert_eq!(spelled.as_deref(), Some("123456789012345678901234567890"));
        let exponent: Value = serde_json::from_str("1.5E+3").unwrap();
        assert_eq!(
            spell(exponent, ColumnKind::Decimal).as_deref(),
            Some("1500")
        );
        let decimal = spell_declared(json!("-0.50"), ColumnKind::Decimal, FieldType::Decimal);
        assert_eq!(decimal.as_deref(), Some("-0.5"));
    }

    #[test]
    fn declared_time_spellings() {
        let unix = spell_declared(json!(0), ColumnKind::Timestamp, FieldType::TimestampUnix);
        assert_eq!(unix.as_deref(), Some("1970-01-01 00:00:00.000000+00"));
        let date = spell_declared(json!("2024-01-31"), ColumnKind::Date, FieldType::Date);
        assert_eq!(date.as_deref(), Some("2024-01-31"));
    }

    #[test]
    fn mismatch_names_types_only() {
        let error = cell_text(&json!("secret"), ColumnKind::BigInt, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "a string value does not fit a bigint column"
        );
    }
}
