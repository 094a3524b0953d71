//! PostgreSQL names for the logical column types, the types chunks are
//! staged in, and the casts that widen one type into another.
//!
//! Type names are written as `format_type` spells them (`double
//! precision`, `timestamp with time zone`), so the name ferry records in
//! `_ferry.columns` equals the one the catalog reports.

use crate::destination::columns::{
    ColumnKind, ColumnType, Dialect, NamingRules, NumericLimits, quote_ident,
};

/// PostgreSQL 15: no 128-bit integer, NUMERIC for every integer beyond 64
/// bits and every exact decimal, quoted identifiers kept apart by case and
/// cut at 63 bytes (NAMEDATALEN - 1).
pub const DIALECT: Dialect = Dialect {
    numbers: NumericLimits {
        hugeint: false,
        bignum: false,
        max_decimal_precision: Some(NUMERIC_SAFE_DIGITS),
    },
    names: NamingRules {
        case_insensitive: false,
        max_bytes: Some(MAX_IDENTIFIER_BYTES),
    },
};

/// Maximum identifier length in bytes. PostgreSQL cuts longer names
/// silently.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// An unconstrained NUMERIC holds up to 131,072 digits before the point
/// and 16,383 after it. A number whose integer digits and scale add up to
/// at most 16,383 fits both limits. A wider one makes the column text,
/// which keeps its spelling.
const NUMERIC_SAFE_DIGITS: u32 = 16_383;

pub const TIMESTAMP_SQL: &str = "timestamp with time zone";

/// Names the column type. Decimals are unconstrained NUMERIC, so a longer
/// fraction or a wider integer part never needs an ALTER and every value
/// keeps its own scale.
pub fn sql_type(column_type: &ColumnType) -> &'static str {
    match column_type.kind {
        ColumnKind::Boolean => "boolean",
        ColumnKind::BigInt => "bigint",
        // The dialect never plans these; a `_ferry.columns` row written by
        // another backend could still name them.
        ColumnKind::HugeInt | ColumnKind::BigNum | ColumnKind::Decimal => "numeric",
        ColumnKind::Double => "double precision",
        ColumnKind::Text => "text",
        ColumnKind::Json => "jsonb",
        ColumnKind::Timestamp => TIMESTAMP_SQL,
        ColumnKind::Date => "date",
    }
}

/// Names the type a column is staged as in the chunk's temporary table.
/// Numbers for NUMERIC columns travel as their decimal text, which the
/// cast reads exactly; every other kind travels in its binary form.
pub fn staged_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::HugeInt | ColumnKind::BigNum | ColumnKind::Decimal => "text",
        _ => sql_type(&ColumnType::new(kind)),
    }
}

/// Returns the expression that reads staged column `staged` into a column
/// of `kind`.
pub fn from_staged(staged: &str, kind: ColumnKind) -> String {
    match kind {
        ColumnKind::HugeInt | ColumnKind::BigNum | ColumnKind::Decimal => {
            format!("CAST({staged} AS numeric)")
        }
        _ => staged.to_string(),
    }
}

/// Reads the logical type of a column that `_ferry.columns` does not
/// record (made by a person, or its bookkeeping row lost) from its
/// `format_type` name. A NUMERIC with a declared precision is not adopted,
/// because ferry's decimals are unconstrained.
pub fn type_from_sql(sql: &str) -> Option<ColumnType> {
    let kind = match sql {
        "boolean" => ColumnKind::Boolean,
        "bigint" => ColumnKind::BigInt,
        "double precision" => ColumnKind::Double,
        "numeric" => ColumnKind::Decimal,
        "text" | "character varying" => ColumnKind::Text,
        "jsonb" => ColumnKind::Json,
        TIMESTAMP_SQL => ColumnKind::Timestamp,
        "date" => ColumnKind::Date,
        _ => return None,
    };
    // Unknown history: assume the widest values the type allows. A
    // NUMERIC stays NUMERIC whatever it held, so its digits do not matter.
    let (integer_digits, double_exact) = match kind {
        ColumnKind::BigInt => (19, false),
        ColumnKind::Decimal => (0, false),
        _ => (0, true),
    };
    Some(ColumnType {
        kind,
        integer_digits,
        scale: 0,
        double_exact,
    })
}

/// Builds the `USING` expression that converts `column` from `from` to
/// `to`, keeping each value exact. The transaction sets `TimeZone` to UTC,
/// `DateStyle` to ISO and `extra_float_digits` to 1 first, so timestamps,
/// dates and doubles become the same text on every server.
pub fn widen_expression(column: &str, from: &ColumnType, to: &ColumnType) -> String {
    let quoted = quote_ident(column);
    match (from.kind, to.kind) {
        // to_jsonb makes text a JSON string and keeps numbers and booleans
        // JSON scalars; a plain cast would parse the text as JSON.
        (_, ColumnKind::Json) => format!("to_jsonb({quoted})"),
        // A double's shortest spelling (extra_float_digits > 0) is the
        // source's digits, because the column only held doubles that
        // round-trip; the direct cast keeps only 15 significant digits.
        (ColumnKind::Double, to_kind) if sql_type(&ColumnType::new(to_kind)) == "numeric" => {
            format!("CAST(CAST({quoted} AS text) AS numeric)")
        }
        _ => format!("CAST({quoted} AS {})", sql_type(to)),
    }
}

/// Tells whether a widening changes the SQL type; changes to the tracked
/// digits alone do not.
pub fn sql_type_changes(from: &ColumnType, to: &ColumnType) -> bool {
    sql_type(from) != sql_type(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_round_trip() {
        for kind in [
            ColumnKind::Boolean,
            ColumnKind::BigInt,
            ColumnKind::Double,
            ColumnKind::Decimal,
            ColumnKind::Text,
            ColumnKind::Json,
            ColumnKind::Timestamp,
            ColumnKind::Date,
        ] {
            let name = sql_type(&ColumnType::new(kind));
            assert_eq!(type_from_sql(name).map(|t| t.kind), Some(kind), "{name}");
        }
        assert_eq!(type_from_sql("numeric(10,2)"), None);
        assert_eq!(type_from_sql("interval"), None);
    }

    #[test]
    fn double_to_numeric_goes_through_text() {
        let from = ColumnType::new(ColumnKind::Double);
        let to = ColumnType::new(ColumnKind::Decimal);
        assert_eq!(
            widen_expression("v", &from, &to),
            "CAST(CAST(\"v\" AS text) AS numeric)"
        );
        let bigint = ColumnType::new(ColumnKind::BigInt);
        assert_eq!(
            widen_expression("v", &bigint, &to),
            "CAST(\"v\" AS numeric)"
        );
        let json = ColumnType::new(ColumnKind::Json);
        assert_eq!(widen_expression("v", &bigint, &json), "to_jsonb(\"v\")");
    }
}
