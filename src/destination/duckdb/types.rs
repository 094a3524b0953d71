//! DuckDB names for the logical column types, and the casts that widen
//! one into another.

use crate::destination::columns::{
    ColumnKind, ColumnType, Dialect, NamingRules, NumericLimits, quote_ident,
};

/// DuckDB 2.0: HUGEINT for 128-bit integers, BIGNUM beyond, DECIMAL up to
/// 38 digits, quoted identifiers compared without regard to ASCII case,
/// no length limit.
pub const DIALECT: Dialect = Dialect {
    numbers: NumericLimits {
        hugeint: true,
        bignum: true,
        max_decimal_precision: Some(DECIMAL_PRECISION),
    },
    names: NamingRules {
        case_insensitive: true,
        max_bytes: None,
    },
};

/// Decimals always use the full precision, so a growing integer part
/// never needs an ALTER; only a longer fraction does.
const DECIMAL_PRECISION: u32 = 38;

/// The type name DuckDB's catalog reports for `TIMESTAMPTZ`.
pub const TIMESTAMP_SQL: &str = "TIMESTAMP WITH TIME ZONE";

pub fn sql_type(column_type: &ColumnType) -> String {
    match column_type.kind {
        ColumnKind::Boolean => "BOOLEAN".into(),
        ColumnKind::BigInt => "BIGINT".into(),
        ColumnKind::HugeInt => "HUGEINT".into(),
        ColumnKind::BigNum => "BIGNUM".into(),
        ColumnKind::Double => "DOUBLE".into(),
        ColumnKind::Decimal => format!("DECIMAL({DECIMAL_PRECISION},{})", column_type.scale),
        ColumnKind::Text => "VARCHAR".into(),
        ColumnKind::Json => "JSON".into(),
        ColumnKind::Timestamp => TIMESTAMP_SQL.into(),
        ColumnKind::Date => "DATE".into(),
    }
}

/// Reads the logical type of a column that `_ferry.columns` does not
/// record (made by a person, or its bookkeeping row lost) from its
/// catalog type.
pub fn type_from_sql(sql: &str) -> Option<ColumnType> {
    let kind = match sql {
        "BOOLEAN" => ColumnKind::Boolean,
        "BIGINT" => ColumnKind::BigInt,
        "HUGEINT" => ColumnKind::HugeInt,
        "BIGNUM" => ColumnKind::BigNum,
        "DOUBLE" => ColumnKind::Double,
        "VARCHAR" => ColumnKind::Text,
        "JSON" => ColumnKind::Json,
        TIMESTAMP_SQL => ColumnKind::Timestamp,
        "DATE" => ColumnKind::Date,
        _ => return decimal_from_sql(sql),
    };
    // Unknown history: assume the widest values the type allows.
    let integer_digits = match kind {
        ColumnKind::BigInt => 19,
        ColumnKind::HugeInt => 39,
        _ => 0,
    };
    Some(ColumnType {
        kind,
        integer_digits,
        scale: 0,
        double_exact: !matches!(
            kind,
            ColumnKind::BigInt | ColumnKind::HugeInt | ColumnKind::BigNum
        ),
    })
}

fn decimal_from_sql(sql: &str) -> Option<ColumnType> {
    let inner = sql.strip_prefix("DECIMAL(")?.strip_suffix(')')?;
    let (precision, scale) = inner.split_once(',')?;
    let precision: u32 = precision.trim().parse().ok()?;
    let scale: u32 = scale.trim().parse().ok()?;
    Some(ColumnType {
        kind: ColumnKind::Decimal,
        integer_digits: precision.checked_sub(scale)?,
        scale,
        double_exact: false,
    })
}

/// Builds the expression that converts `column` from `from` to `to` in an
/// ALTER or a rebuild, keeping each value exact.
pub fn widen_expression(column: &str, from: &ColumnType, to: &ColumnType) -> String {
    let quoted = quote_ident(column);
    match (from.kind, to.kind) {
        // A plain cast would parse text as JSON; to_json makes a text value
        // a JSON string and keeps numbers and booleans as JSON scalars.
        (_, ColumnKind::Json) => format!("to_json({quoted})"),
        // A double reaches a decimal through its shortest spelling, which
        // is the source's digits because the column only held doubles that
        // round-trip.
        (ColumnKind::Double, ColumnKind::Decimal) => {
            format!("CAST(CAST({quoted} AS VARCHAR) AS {})", sql_type(to))
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
        let decimal = ColumnType {
            kind: ColumnKind::Decimal,
            integer_digits: 36,
            scale: 2,
            double_exact: false,
        };
        assert_eq!(sql_type(&decimal), "DECIMAL(38,2)");
        assert_eq!(type_from_sql("DECIMAL(38,2)"), Some(decimal));
        let timestamp = type_from_sql(TIMESTAMP_SQL).unwrap();
        assert_eq!(timestamp.kind, ColumnKind::Timestamp);
        assert_eq!(type_from_sql("INTERVAL"), None);
    }
}
