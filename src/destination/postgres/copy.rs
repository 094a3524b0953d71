//! Rows in PostgreSQL's binary COPY format (PostgreSQL 15 documentation,
//! "COPY", section "Binary Format"), and each value's binary form.
//!
//! Values PostgreSQL would reject are repaired here, so no record is lost:
//!
//! - U+0000 in a string, which `text` and `jsonb` cannot hold, becomes
//!   U+FFFD (in text columns, and in JSON strings and object keys);
//! - a JSON number beyond `numeric`'s range (more than 131,072 digits
//!   before the point or 16,383 after it), which `jsonb` rejects, becomes
//!   a JSON string of its digits.
//!
//! Each repair is counted per column, and the caller logs the counts.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

use crate::destination::columns::{
    CellError, ColumnKind, ExactNumber, cell_text, json_type_name, parse_date, parse_timestamp,
};
use crate::spec::plan::FieldType;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Days from 0001-01-01 (chrono's day 1) to 2000-01-01.
const POSTGRES_EPOCH_DAYS_FROM_CE: i32 = 730_120;

/// `jsonb`'s binary form: a version byte, then the JSON text.
const JSONB_VERSION: u8 = 1;

/// Largest digit counts of `numeric` before and after the point.
const NUMERIC_MAX_INTEGER_DIGITS: u32 = 131_072;
const NUMERIC_MAX_SCALE: u32 = 16_383;

/// Repairs made to one column's values in one chunk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repairs {
    /// Values in which U+0000 became U+FFFD.
    pub nul: u64,
    /// JSON values in which a number beyond `numeric` became a string.
    pub numbers: u64,
}

/// A binary COPY stream being written.
pub struct CopyWriter {
    buffer: BytesMut,
}

impl CopyWriter {
    /// Starts the stream with the header: signature, flags, no extension.
    pub fn new(capacity: usize) -> CopyWriter {
        let mut buffer = BytesMut::with_capacity(capacity);
        buffer.put_slice(SIGNATURE);
        buffer.put_i32(0);
        buffer.put_i32(0);
        CopyWriter { buffer }
    }

    pub fn start_row(&mut self, fields: usize) {
        // A table has at most 1,600 columns, so the count fits.
        self.buffer.put_i16(fields as i16);
    }

    /// Ends the stream with the trailer.
    pub fn finish(&mut self) {
        self.buffer.put_i16(-1);
    }

    /// Bytes written since the last [`CopyWriter::take`].
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Takes the bytes written so far, to send them.
    pub fn take(&mut self) -> bytes::Bytes {
        self.buffer.split().freeze()
    }

    /// Writes one value for a column of `kind`, as the staged type
    /// (`types::staged_type`) reads it.
    pub fn put_value(
        &mut self,
        value: &Value,
        kind: ColumnKind,
        declared: Option<FieldType>,
        repairs: &mut Repairs,
    ) -> Result<(), CellError> {
        if value.is_null() {
            self.buffer.put_i32(-1);
            return Ok(());
        }
        let mismatch = || CellError {
            value_type: json_type_name(value),
            kind: kind.as_str(),
        };
        match kind {
            ColumnKind::Boolean => {
                let flag = value.as_bool().ok_or_else(mismatch)?;
                self.buffer.put_i32(1);
                self.buffer.put_u8(u8::from(flag));
            }
            ColumnKind::BigInt => {
                let integer = integer_value(value).ok_or_else(mismatch)?;
                self.buffer.put_i32(8);
                self.buffer.put_i64(integer);
            }
            ColumnKind::Double => {
                let double = double_value(value).ok_or_else(mismatch)?;
                self.buffer.put_i32(8);
                self.buffer.put_f64(double);
            }
            ColumnKind::Timestamp => {
                let declared = declared.ok_or_else(mismatch)?;
                let instant = parse_timestamp(value, declared).ok_or_else(mismatch)?;
                self.buffer.put_i32(8);
                self.buffer.put_i64(postgres_micros(&instant));
            }
            ColumnKind::Date => {
                let date = parse_date(value).ok_or_else(mismatch)?;
                self.buffer.put_i32(4);
                self.buffer.put_i32(postgres_days(&date));
            }
            ColumnKind::Json => self.put_json(value, repairs),
            ColumnKind::Text => match value {
                Value::String(text) => self.put_text(text, repairs),
                other => {
                    let text = cell_text(other, kind, declared)?.unwrap_or_default();
                    self.put_text(&text, repairs);
                }
            },
            // NUMERIC columns are staged as text; the spelling is digits only.
            ColumnKind::Decimal | ColumnKind::HugeInt | ColumnKind::BigNum => {
                let text = cell_text(value, ColumnKind::Decimal, declared)?.unwrap_or_default();
                self.put_bytes(text.as_bytes());
            }
        }
        Ok(())
    }

    /// Writes an instant for a `timestamp with time zone` column.
    pub fn put_timestamp(&mut self, instant: &DateTime<Utc>) {
        self.buffer.put_i32(8);
        self.buffer.put_i64(postgres_micros(instant));
    }

    fn put_bytes(&mut self, bytes: &[u8]) {
        self.buffer.put_i32(field_length(bytes.len()));
        self.buffer.put_slice(bytes);
    }

    fn put_text(&mut self, text: &str, repairs: &mut Repairs) {
        if text.contains('\0') {
            repairs.nul += 1;
            self.put_bytes(text.replace('\0', "\u{FFFD}").as_bytes());
        } else {
            self.put_bytes(text.as_bytes());
        }
    }

    /// Writes the JSON text after the length and version, then checks the
    /// written text, and writes a repaired copy in its place when needed.
    fn put_json(&mut self, value: &Value, repairs: &mut Repairs) {
        let start = self.buffer.len();
        self.buffer.put_i32(0);
        self.buffer.put_u8(JSONB_VERSION);
        let text_start = self.buffer.len();
        write_json(&mut self.buffer, value);
        if needs_repair(&self.buffer[text_start..]) {
            let mut repaired = value.clone();
            let (nul, numbers) = repair_json(&mut repaired);
            if nul > 0 || numbers > 0 {
                repairs.nul += u64::from(nul > 0);
                repairs.numbers += u64::from(numbers > 0);
                self.buffer.truncate(text_start);
                write_json(&mut self.buffer, &repaired);
            }
        }
        let length = field_length(self.buffer.len() - start - 4);
        self.buffer[start..start + 4].copy_from_slice(&length.to_be_bytes());
    }
}

fn write_json(buffer: &mut BytesMut, value: &Value) {
    // serde_json serializes every Value, and writing into memory has no
    // I/O error, so this branch only logs.
    if let Err(error) = serde_json::to_writer(buffer.writer(), value) {
        tracing::error!(%error, "serializing a JSON value failed");
    }
}

/// Converts a field's length to the format's 32-bit length. Values are
/// bounded by the chunk's memory, far below 2 GiB, and `i32::MAX` makes
/// the server reject an absurd one instead of misreading the stream.
fn field_length(length: usize) -> i32 {
    i32::try_from(length).unwrap_or(i32::MAX)
}

/// Reads an integer for a `bigint` column: the common short spelling
/// directly, others (`1E3`) through an exact parse.
fn integer_value(value: &Value) -> Option<i64> {
    let text = value.as_number()?.as_str();
    if let Ok(integer) = text.parse::<i64>() {
        return Some(integer);
    }
    let number = ExactNumber::parse(text)?;
    if number.integer_digits() > 19 {
        return None;
    }
    i64::try_from(number.to_i128()?).ok()
}

/// Reads a number for a `double precision` column. Columns are doubles
/// only while each value round-trips, so the parse is exact.
fn double_value(value: &Value) -> Option<f64> {
    let double = value.as_number()?.as_str().parse::<f64>().ok()?;
    double.is_finite().then_some(double)
}

fn postgres_micros(instant: &DateTime<Utc>) -> i64 {
    instant.timestamp_micros() - POSTGRES_EPOCH_MICROS
}

fn postgres_days(date: &NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - POSTGRES_EPOCH_DAYS_FROM_CE
}

/// Tells whether serialized JSON may hold a value `jsonb` rejects: the
/// escape `\u0000`, or a number with an exponent of five or more digits.
/// A false alarm (such text inside a string) only costs a repair pass
/// that changes nothing.
fn needs_repair(json: &[u8]) -> bool {
    memchr::memmem::find(json, b"\\u0000").is_some() || has_long_exponent(json)
}

fn has_long_exponent(json: &[u8]) -> bool {
    memchr::memchr2_iter(b'e', b'E', json).any(|index| {
        let after_digit = index > 0 && json[index - 1].is_ascii_digit();
        let mut digit = index + 1;
        if digit < json.len() && (json[digit] == b'+' || json[digit] == b'-') {
            digit += 1;
        }
        let digits = json[digit..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        after_digit && digits >= 5
    })
}

/// Replaces U+0000 in strings and keys, and numbers beyond `numeric`,
/// throughout `value`; returns how many of each were changed.
pub fn repair_json(value: &mut Value) -> (u64, u64) {
    match value {
        Value::String(text) if text.contains('\0') => {
            *text = text.replace('\0', "\u{FFFD}");
            (1, 0)
        }
        Value::Number(number) if !fits_numeric(number.as_str()) => {
            *value = Value::String(number.as_str().to_string());
            (0, 1)
        }
        Value::Array(items) => items.iter_mut().map(repair_json).fold((0, 0), add),
        Value::Object(map) => {
            let mut counts = (0, 0);
            if map.keys().any(|key| key.contains('\0')) {
                let entries = std::mem::take(map);
                let mut repaired = Map::with_capacity(entries.len());
                for (key, value) in entries {
                    if key.contains('\0') {
                        counts.0 += 1;
                    }
                    repaired.insert(key.replace('\0', "\u{FFFD}"), value);
                }
                *map = repaired;
            }
            map.values_mut().map(repair_json).fold(counts, add)
        }
        _ => (0, 0),
    }
}

fn add(left: (u64, u64), right: (u64, u64)) -> (u64, u64) {
    (left.0 + right.0, left.1 + right.1)
}

fn fits_numeric(text: &str) -> bool {
    ExactNumber::parse(text).is_none_or(|number| {
        number.integer_digits() <= NUMERIC_MAX_INTEGER_DIGITS && number.scale() <= NUMERIC_MAX_SCALE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(value: Value, kind: ColumnKind, declared: Option<FieldType>) -> (Vec<u8>, Repairs) {
        let mut writer = CopyWriter::new(64);
        writer.take();
        let mut repairs = Repairs::default();
        writer
            .put_value(&value, kind, declared, &mut repairs)
            .unwrap();
        (writer.take().to_vec(), repairs)
    }

    #[test]
    fn header_and_trailer() {
        let mut writer = CopyWriter::new(64);
        writer.start_row(1);
        writer.finish();
        let bytes = writer.take();
        assert_eq!(&bytes[..11], SIGNATURE);
        assert_eq!(&bytes[11..19], &[0; 8]);
        assert_eq!(&bytes[19..], &[0, 1, 0xff, 0xff]);
    }

    #[test]
    fn scalar_encodings() {
        assert_eq!(encode(json!(null), ColumnKind::Text, None).0, [0xff; 4]);
        assert_eq!(
            encode(json!(true), ColumnKind::Boolean, None).0,
            [0, 0, 0, 1, 1]
        );
        let big: Value = serde_json::from_str("1E3").unwrap();
        let (bytes, _) = encode(big, ColumnKind::BigInt, None);
        assert_eq!(bytes[4..], 1000i64.to_be_bytes());
        let (bytes, _) = encode(json!(2.5), ColumnKind::Double, None);
        assert_eq!(bytes[4..], 2.5f64.to_be_bytes());
        let (bytes, _) = encode(json!("2000-01-02"), ColumnKind::Date, None);
        assert_eq!(bytes[4..], 1i32.to_be_bytes());
        let (bytes, _) = encode(
            json!(946684801),
            ColumnKind::Timestamp,
            Some(FieldType::TimestampUnix),
        );
        assert_eq!(bytes[4..], 1_000_000i64.to_be_bytes());
        let (bytes, _) = encode(json!("1.50"), ColumnKind::Decimal, Some(FieldType::Decimal));
        assert_eq!(&bytes[4..], b"1.5");
    }

    #[test]
    fn mismatch_names_types_only() {
        let mut writer = CopyWriter::new(16);
        let error = writer
            .put_value(
                &json!("secret"),
                ColumnKind::BigInt,
                None,
                &mut Repairs::default(),
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "a string value does not fit a bigint column"
        );
    }

    #[test]
    fn nul_becomes_replacement_character() {
        let (bytes, repairs) = encode(json!("a\u{0}b"), ColumnKind::Text, None);
        assert_eq!(&bytes[4..], "a\u{FFFD}b".as_bytes());
        assert_eq!(repairs.nul, 1);

        let (bytes, repairs) = encode(json!({"k\u{0}": ["\u{0}", "x"]}), ColumnKind::Json, None);
        assert_eq!(bytes[4], JSONB_VERSION);
        let text = std::str::from_utf8(&bytes[5..]).unwrap();
        assert_eq!(text, "{\"k\u{FFFD}\":[\"\u{FFFD}\",\"x\"]}");
        assert_eq!(
            i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            bytes.len() - 4
        );
        assert_eq!(repairs, Repairs { nul: 1, numbers: 0 });
    }

    #[test]
    fn escaped_backslash_is_not_repaired() {
        let (bytes, repairs) = encode(json!({"k": "\\u0000"}), ColumnKind::Json, None);
        assert_eq!(&bytes[5..], br#"{"k":"\\u0000"}"#);
        assert_eq!(repairs, Repairs::default());
    }

    #[test]
    fn numbers_beyond_numeric_become_strings() {
        let value: Value =
            serde_json::from_str(r#"{"a": 1e200000, "b": 1e5, "c": 1e-20000}"#).unwrap();
        let (bytes, repairs) = encode(value, ColumnKind::Json, None);
        let text = std::str::from_utf8(&bytes[5..]).unwrap();
        assert_eq!(text, r#"{"a":"1e+200000","b":1e+5,"c":"1e-20000"}"#);
        assert_eq!(repairs, Repairs { nul: 0, numbers: 1 });
    }
}
