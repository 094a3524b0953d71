//! Values of fields declared as timestamps or dates (`fields.types`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use super::number::ExactNumber;
use crate::spec::plan::FieldType;

/// Offsetless ISO-8601 forms, read as UTC.
const NAIVE_FORMATS: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];

/// ISO-8601 forms with an offset that RFC 3339 does not allow (`+0000`).
const OFFSET_FORMATS: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"];

/// Reads a value of a field declared `timestamp_iso`, `timestamp_unix` or
/// `timestamp_unix_ms`; `None` when it is not one, or outside the years
/// 1 to 9999 that every destination stores.
///
/// NOTE: destinations keep microseconds, so digits beyond them are cut.
pub fn parse_timestamp(value: &Value, declared: FieldType) -> Option<DateTime<Utc>> {
    let instant = match declared {
        FieldType::TimestampIso => parse_iso(value.as_str()?)?,
        FieldType::TimestampUnix => from_unix(value, 6)?,
        FieldType::TimestampUnixMs => from_unix(value, 3)?,
        _ => return None,
    };
    let year = instant.date_naive().format("%Y").to_string();
    let in_range = year
        .parse::<i32>()
        .is_ok_and(|year| (1..=9999).contains(&year));
    in_range.then_some(instant)
}

/// Reads a value of a field declared `date` (`YYYY-MM-DD`).
pub fn parse_date(value: &Value) -> Option<NaiveDate> {
    let text = value.as_str()?;
    if text.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Spells an instant with an explicit UTC offset, which both DuckDB and
/// PostgreSQL cast to a timestamp with time zone whatever the session's zone.
pub fn timestamp_text(instant: &DateTime<Utc>) -> String {
    instant.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

pub fn date_text(date: &NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    for format in OFFSET_FORMATS {
        if let Ok(instant) = DateTime::parse_from_str(text, format) {
            return Some(instant.with_timezone(&Utc));
        }
    }
    for format in NAIVE_FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    let date = parse_date(&Value::String(text.to_string()))?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

/// Seconds (`micro_digits` 6) or milliseconds (3) since the epoch, as a
/// number or a numeric string, converted through exact decimal digits.
fn from_unix(value: &Value, micro_digits: i64) -> Option<DateTime<Utc>> {
    let text = match value {
        Value::Number(number) => number.as_str(),
        Value::String(text) => text.as_str(),
        _ => return None,
    };
    let mut number = ExactNumber::parse(text)?;
    number.exponent = number.exponent.checked_add(micro_digits)?;
    // Digits below a microsecond are cut (the NOTE on parse_timestamp).
    if number.exponent < 0 {
        let keep = number.digits.len() as i64 + number.exponent;
        if keep <= 0 {
            return DateTime::from_timestamp_micros(0);
        }
        number.digits.truncate(keep as usize);
        number.exponent = 0;
    }
    if number.integer_digits() > 20 {
        return None;
    }
    let micros = i64::try_from(number.to_i128()?).ok()?;
    DateTime::from_timestamp_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn iso(text: &str) -> Option<String> {
        parse_timestamp(&json!(text), FieldType::TimestampIso).map(|t| timestamp_text(&t))
    }

    #[test]
    fn iso_forms() {
        let expected = Some("2024-03-01 12:30:00.000000+00".to_string());
        assert_eq!(iso("2024-03-01T12:30:00Z"), expected);
        assert_eq!(iso("2024-03-01T14:30:00+02:00"), expected);
        assert_eq!(iso("2024-03-01T14:30:00+0200"), expected);
        assert_eq!(iso("2024-03-01 12:30:00"), expected);
        assert_eq!(iso("2024-03-01T12:30:00"), expected);
        assert_eq!(
            iso("2024-03-01"),
            Some("2024-03-01 00:00:00.000000+00".into())
        );
        assert_eq!(
            iso("2024-03-01T12:30:00.123456789Z"),
            Some("2024-03-01 12:30:00.123456+00".into())
        );
    }

    #[test]
    fn iso_rejects() {
        assert_eq!(iso("yesterday"), None);
        assert_eq!(iso("2024-13-01T00:00:00Z"), None);
        assert_eq!(iso(""), None);
        let number = parse_timestamp(&json!(1700000000), FieldType::TimestampIso);
        assert_eq!(number, None);
    }

    #[test]
    fn unix_seconds_and_millis() {
        let seconds = parse_timestamp(&json!(1700000000), FieldType::TimestampUnix).unwrap();
        assert_eq!(timestamp_text(&seconds), "2023-11-14 22:13:20.000000+00");
        let fraction = parse_timestamp(&json!(1700000000.25), FieldType::TimestampUnix).unwrap();
        assert_eq!(timestamp_text(&fraction), "2023-11-14 22:13:20.250000+00");
        let text = parse_timestamp(&json!("1700000000"), FieldType::TimestampUnix).unwrap();
        assert_eq!(text, seconds);
        let millis =
            parse_timestamp(&json!(1700000000123_i64), FieldType::TimestampUnixMs).unwrap();
        assert_eq!(timestamp_text(&millis), "2023-11-14 22:13:20.123000+00");
        assert_eq!(
            parse_timestamp(&json!(1e300), FieldType::TimestampUnix),
            None
        );
        assert_eq!(
            parse_timestamp(&json!(true), FieldType::TimestampUnix),
            None
        );
        assert_eq!(
            parse_timestamp(&json!("soon"), FieldType::TimestampUnix),
            None
        );
    }

    #[test]
    fn dates() {
        let date = parse_date(&json!("2024-02-29")).unwrap();
        assert_eq!(date_text(&date), "2024-02-29");
        assert_eq!(parse_date(&json!("2023-02-29")), None);
        assert_eq!(parse_date(&json!("2024-2-1")), None);
        assert_eq!(parse_date(&json!(20240101)), None);
    }
}
