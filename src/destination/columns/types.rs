//! Logical column types, what each value needs, and how types widen.

use serde_json::Value;

use super::number::{ExactNumber, IntegerWidth};
use super::time::{parse_date, parse_timestamp};
use crate::spec::plan::FieldType;

/// A column's logical type; each backend names it in its own SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    Boolean,
    /// Integers in the 64-bit range.
    BigInt,
    /// Integers in the 128-bit range (backends with such a type).
    HugeInt,
    /// Integers of any size (backends with such a type: DuckDB BIGNUM).
    BigNum,
    Double,
    /// Exact decimals: declared `decimal`, fractions a double cannot hold,
    /// and integers beyond the backend's integer types.
    Decimal,
    Text,
    /// Objects, arrays, and every value of a column that also contains them.
    Json,
    /// An instant, stored in UTC.
    Timestamp,
    Date,
}

impl ColumnKind {
    /// Returns the name stored in `_ferry.columns.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Boolean => "boolean",
            ColumnKind::BigInt => "bigint",
            ColumnKind::HugeInt => "hugeint",
            ColumnKind::BigNum => "bignum",
            ColumnKind::Double => "double",
            ColumnKind::Decimal => "decimal",
            ColumnKind::Text => "text",
            ColumnKind::Json => "json",
            ColumnKind::Timestamp => "timestamp",
            ColumnKind::Date => "date",
        }
    }

    pub fn parse(name: &str) -> Option<ColumnKind> {
        let kinds = [
            ColumnKind::Boolean,
            ColumnKind::BigInt,
            ColumnKind::HugeInt,
            ColumnKind::BigNum,
            ColumnKind::Double,
            ColumnKind::Decimal,
            ColumnKind::Text,
            ColumnKind::Json,
            ColumnKind::Timestamp,
            ColumnKind::Date,
        ];
        kinds.into_iter().find(|kind| kind.as_str() == name)
    }

    fn is_number(self) -> bool {
        matches!(
            self,
            ColumnKind::BigInt
                | ColumnKind::HugeInt
                | ColumnKind::BigNum
                | ColumnKind::Double
                | ColumnKind::Decimal
        )
    }
}

/// The range of a backend's numeric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericLimits {
    /// Whether a 128-bit integer type exists (DuckDB HUGEINT).
    pub hugeint: bool,
    /// Whether an integer type of any size exists (DuckDB BIGNUM).
    pub bignum: bool,
    /// Maximum total digits of the decimal type; `None` when unbounded
    /// (PostgreSQL NUMERIC).
    pub max_decimal_precision: Option<u32>,
}

/// A column's type together with the widest numbers it has held, which
/// decide whether a later widening keeps every stored value exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    pub kind: ColumnKind,
    /// Maximum digits before the decimal point among the numbers held.
    pub integer_digits: u32,
    /// Maximum digits after the decimal point among the numbers held.
    pub scale: u32,
    /// Every number held is exactly representable as a double.
    pub double_exact: bool,
}

impl ColumnType {
    pub fn new(kind: ColumnKind) -> ColumnType {
        ColumnType {
            kind,
            integer_digits: 0,
            scale: 0,
            double_exact: true,
        }
    }
}

/// The column type one non-null value needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Boolean,
    /// An undeclared JSON number.
    Number(NumberFacts),
    /// A number under a `decimal` declaration.
    Decimal(NumberFacts),
    Text,
    Json,
    Timestamp,
    Date,
    /// A value its declared type cannot read (a bad timestamp): the column
    /// becomes text so the value is kept.
    Mismatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberFacts {
    /// `None` for a number written with a fraction or an exponent.
    pub integer_width: Option<IntegerWidth>,
    pub integer_digits: u32,
    pub scale: u32,
    pub double_exact: bool,
}

impl NumberFacts {
    fn of(number: &ExactNumber) -> NumberFacts {
        let integer_width = if number.integer_syntax {
            number.integer_width()
        } else {
            None
        };
        NumberFacts {
            integer_width,
            integer_digits: number.integer_digits(),
            scale: number.scale(),
            double_exact: number.exact_in_double(),
        }
    }
}

/// Classifies one value; `None` for null, which needs no column.
pub fn observe(value: &Value, declared: Option<FieldType>) -> Option<Observation> {
    if value.is_null() {
        return None;
    }
    let Some(declared) = declared else {
        return Some(observe_undeclared(value));
    };
    let observation = match declared {
        FieldType::String => Observation::Text,
        FieldType::Json => Observation::Json,
        FieldType::Decimal => match numeric_text(value).and_then(ExactNumber::parse) {
            Some(number) => Observation::Decimal(NumberFacts::of(&number)),
            None => Observation::Mismatch,
        },
        FieldType::Date => match parse_date(value) {
            Some(_) => Observation::Date,
            None => Observation::Mismatch,
        },
        FieldType::TimestampIso | FieldType::TimestampUnix | FieldType::TimestampUnixMs => {
            match parse_timestamp(value, declared) {
                Some(_) => Observation::Timestamp,
                None => Observation::Mismatch,
            }
        }
    };
    Some(observation)
}

fn observe_undeclared(value: &Value) -> Observation {
    match value {
        Value::Bool(_) => Observation::Boolean,
        Value::Number(number) if is_small_integer(number.as_str()) => {
            Observation::Number(small_integer_facts(number.as_str()))
        }
        Value::Number(number) => match ExactNumber::parse(number.as_str()) {
            Some(number) => Observation::Number(NumberFacts::of(&number)),
            // serde_json only produces JSON number syntax; text keeps it anyway.
            None => Observation::Text,
        },
        Value::String(_) => Observation::Text,
        Value::Array(_) | Value::Object(_) => Observation::Json,
        Value::Null => Observation::Text,
    }
}

/// Up to 15 digits: within i64 and within 2^53, so a double represents it.
const SMALL_INTEGER_DIGITS: usize = 15;

/// Recognizes the most common number, a short integer, without the
/// allocation of a full parse.
fn is_small_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.len() <= SMALL_INTEGER_DIGITS
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

fn small_integer_facts(text: &str) -> NumberFacts {
    let digits = text.trim_start_matches('-');
    NumberFacts {
        integer_width: Some(IntegerWidth::I64),
        integer_digits: if digits == "0" {
            0
        } else {
            digits.len() as u32
        },
        scale: 0,
        double_exact: true,
    }
}

/// Returns a number's text, or a string's under a declaration that reads numbers.
pub(super) fn numeric_text(value: &Value) -> Option<&str> {
    match value {
        Value::Number(number) => Some(number.as_str()),
        Value::String(text) => Some(text.as_str()),
        _ => None,
    }
}

/// Returns the type of a column seen for the first time with this value.
pub fn initial_type(observation: &Observation, limits: NumericLimits) -> ColumnType {
    match observation {
        Observation::Boolean => ColumnType::new(ColumnKind::Boolean),
        Observation::Text | Observation::Mismatch => ColumnType::new(ColumnKind::Text),
        Observation::Json => ColumnType::new(ColumnKind::Json),
        Observation::Timestamp => ColumnType::new(ColumnKind::Timestamp),
        Observation::Date => ColumnType::new(ColumnKind::Date),
        Observation::Number(facts) => resolve_number(NumberSummary::from(*facts, false), limits),
        Observation::Decimal(facts) => resolve_number(NumberSummary::from(*facts, true), limits),
    }
}

/// Returns the narrowest type that stores every value `column` has seen and
/// this one exactly.
pub fn widen(column: ColumnType, observation: &Observation, limits: NumericLimits) -> ColumnType {
    let kind = column.kind;
    match observation {
        _ if kind == ColumnKind::Json => column,
        Observation::Json => ColumnType::new(ColumnKind::Json),
        Observation::Number(facts) | Observation::Decimal(facts) if kind.is_number() => {
            let declared = matches!(observation, Observation::Decimal(_));
            let summary =
                NumberSummary::of_column(column).merge(NumberSummary::from(*facts, declared));
            resolve_number(summary, limits)
        }
        Observation::Boolean if kind == ColumnKind::Boolean => column,
        Observation::Timestamp if kind == ColumnKind::Timestamp => column,
        Observation::Date if kind == ColumnKind::Date => column,
        Observation::Text if kind == ColumnKind::Text => column,
        // Every other mix: text keeps any scalar's spelling.
        _ => ColumnType::new(ColumnKind::Text),
    }
}

/// Numbers of a column and a value taken together.
#[derive(Debug, Clone, Copy)]
struct NumberSummary {
    /// Widest integer seen; `None` once any fraction was seen.
    integer_width: Option<IntegerWidth>,
    integer_digits: u32,
    scale: u32,
    double_exact: bool,
    /// A decimal column stays decimal: declared, or already needed.
    decimal: bool,
}

impl NumberSummary {
    fn from(facts: NumberFacts, decimal: bool) -> NumberSummary {
        NumberSummary {
            integer_width: facts.integer_width,
            integer_digits: facts.integer_digits,
            scale: facts.scale,
            double_exact: facts.double_exact,
            decimal,
        }
    }

    fn of_column(column: ColumnType) -> NumberSummary {
        let integer_width = match column.kind {
            ColumnKind::BigInt => Some(IntegerWidth::I64),
            ColumnKind::HugeInt => Some(IntegerWidth::I128),
            ColumnKind::BigNum => Some(IntegerWidth::Wider),
            _ => None,
        };
        NumberSummary {
            integer_width,
            integer_digits: column.integer_digits,
            scale: column.scale,
            double_exact: column.double_exact,
            decimal: column.kind == ColumnKind::Decimal,
        }
    }

    fn merge(self, other: NumberSummary) -> NumberSummary {
        let integer_width = match (self.integer_width, other.integer_width) {
            (Some(left), Some(right)) => Some(left.max(right)),
            _ => None,
        };
        NumberSummary {
            integer_width,
            integer_digits: self.integer_digits.max(other.integer_digits),
            scale: self.scale.max(other.scale),
            double_exact: self.double_exact && other.double_exact,
            decimal: self.decimal || other.decimal,
        }
    }
}

fn resolve_number(summary: NumberSummary, limits: NumericLimits) -> ColumnType {
    let column = |kind| ColumnType {
        kind,
        integer_digits: summary.integer_digits,
        scale: summary.scale,
        double_exact: summary.double_exact,
    };
    let decimal_fits = match limits.max_decimal_precision {
        None => true,
        Some(max) => summary.scale <= max && summary.integer_digits <= max - summary.scale,
    };
    let decimal_or_text = if decimal_fits {
        column(ColumnKind::Decimal)
    } else {
        ColumnType::new(ColumnKind::Text)
    };

    if summary.decimal {
        return decimal_or_text;
    }
    match summary.integer_width {
        Some(IntegerWidth::I64) => column(ColumnKind::BigInt),
        Some(IntegerWidth::I128) if limits.hugeint => column(ColumnKind::HugeInt),
        Some(IntegerWidth::I128 | IntegerWidth::Wider) if limits.bignum => {
            column(ColumnKind::BigNum)
        }
        Some(_) => decimal_or_text,
        None if summary.double_exact => column(ColumnKind::Double),
        None => decimal_or_text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DUCKDB: NumericLimits = NumericLimits {
        hugeint: true,
        bignum: true,
        max_decimal_precision: Some(38),
    };
    const POSTGRES: NumericLimits = NumericLimits {
        hugeint: false,
        bignum: false,
        max_decimal_precision: None,
    };

    fn infer(values: &[Value], declared: Option<FieldType>, limits: NumericLimits) -> ColumnType {
        let mut column: Option<ColumnType> = None;
        for value in values {
            let Some(observation) = observe(value, declared) else {
                continue;
            };
            column = Some(match column {
                None => initial_type(&observation, limits),
                Some(column) => widen(column, &observation, limits),
            });
        }
        column.expect("a non-null value")
    }

    fn kind(values: &[Value]) -> ColumnKind {
        infer(values, None, DUCKDB).kind
    }

    #[test]
    fn scalar_kinds() {
        assert_eq!(kind(&[json!(true)]), ColumnKind::Boolean);
        assert_eq!(kind(&[json!(1)]), ColumnKind::BigInt);
        assert_eq!(kind(&[json!(1.5)]), ColumnKind::Double);
        assert_eq!(kind(&[json!("x")]), ColumnKind::Text);
        assert_eq!(kind(&[json!({"a": 1})]), ColumnKind::Json);
        assert_eq!(kind(&[json!([1])]), ColumnKind::Json);
        assert_eq!(observe(&json!(null), None), None);
    }

    #[test]
    fn big_integers() {
        let beyond_i64: Value = serde_json::from_str("9223372036854775808").unwrap();
        assert_eq!(kind(&[json!(1), beyond_i64.clone()]), ColumnKind::HugeInt);
        assert_eq!(
            infer(&[beyond_i64], None, POSTGRES).kind,
            ColumnKind::Decimal
        );
        let beyond_i128: Value =
            serde_json::from_str("170141183460469231731687303715884105728").unwrap();
        assert_eq!(kind(&[json!(1), beyond_i128.clone()]), ColumnKind::BigNum);
        assert_eq!(kind(&[beyond_i128.clone(), json!(0.5)]), ColumnKind::Text);
        assert_eq!(
            infer(&[beyond_i128], None, POSTGRES).kind,
            ColumnKind::Decimal
        );
    }

    #[test]
    fn integer_and_double() {
        assert_eq!(kind(&[json!(1), json!(1.5)]), ColumnKind::Double);
        assert_eq!(
            kind(&[json!(1.5), json!(9007199254740992_i64)]),
            ColumnKind::Double
        );
        let column = infer(&[json!(1.25), json!(9007199254740993_i64)], None, DUCKDB);
        assert_eq!(column.kind, ColumnKind::Decimal);
        assert_eq!(column.integer_digits, 16);
        assert_eq!(column.scale, 2);
        let long_fraction: Value = serde_json::from_str("0.1000000000000000000001").unwrap();
        assert_eq!(kind(&[long_fraction]), ColumnKind::Decimal);
        let too_wide: Value = serde_json::from_str("1e-40").unwrap();
        assert_eq!(
            kind(&[json!(9007199254740993_i64), too_wide]),
            ColumnKind::Text
        );
    }

    #[test]
    fn decimal_stays_decimal() {
        let column = infer(
            &[json!(1.25), json!(9007199254740993_i64), json!(2.5)],
            None,
            DUCKDB,
        );
        assert_eq!(column.kind, ColumnKind::Decimal);
        let declared = infer(&[json!(1), json!("2.50")], Some(FieldType::Decimal), DUCKDB);
        assert_eq!(declared.kind, ColumnKind::Decimal);
        assert_eq!(declared.scale, 1);
    }

    #[test]
    fn mixes_fall_back() {
        assert_eq!(kind(&[json!(1), json!("x")]), ColumnKind::Text);
        assert_eq!(kind(&[json!(true), json!(1)]), ColumnKind::Text);
        assert_eq!(kind(&[json!("x"), json!(true)]), ColumnKind::Text);
        assert_eq!(kind(&[json!(1), json!([1])]), ColumnKind::Json);
        assert_eq!(kind(&[json!({}), json!("x")]), ColumnKind::Json);
    }

    #[test]
    fn declared_types() {
        let iso = Some(FieldType::TimestampIso);
        let good = infer(&[json!("2024-01-01T00:00:00Z")], iso, DUCKDB);
        assert_eq!(good.kind, ColumnKind::Timestamp);
        let bad = infer(
            &[json!("2024-01-01T00:00:00Z"), json!("never")],
            iso,
            DUCKDB,
        );
        assert_eq!(bad.kind, ColumnKind::Text);
        let json_column = infer(&[json!(1), json!("x")], Some(FieldType::Json), DUCKDB);
        assert_eq!(json_column.kind, ColumnKind::Json);
        let text = infer(&[json!(1), json!(true)], Some(FieldType::String), DUCKDB);
        assert_eq!(text.kind, ColumnKind::Text);
        let date = infer(&[json!("2024-01-01")], Some(FieldType::Date), DUCKDB);
        assert_eq!(date.kind, ColumnKind::Date);
    }

    #[test]
    fn small_integer_fast_path_matches_full_parse() {
        for text in ["0", "-0", "7", "-42", "123456789012345", "-999999999999999"] {
            let fast = small_integer_facts(text);
            let full = NumberFacts::of(&ExactNumber::parse(text).unwrap());
            assert!(is_small_integer(text), "{text}");
            assert_eq!(fast, full, "{text}");
        }
        for text in ["1234567890123456", "01", "1.0", "1e3", "-", ""] {
            assert!(!is_small_integer(text), "{text}");
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in [
            ColumnKind::Boolean,
            ColumnKind::HugeInt,
            ColumnKind::Timestamp,
        ] {
            assert_eq!(ColumnKind::parse(kind.as_str()), Some(kind));
        }
    }
}
