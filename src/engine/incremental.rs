//! Incremental cursors: where a run starts, its time windows, and the
//! maximum cursor value seen.
//!
//! A cursor is sent back to the API in the form the API used for it. So
//! every time computation here detects that form ([`TimeForm`]) first and
//! writes its result in the same form. An ISO-8601 string keeps its offset
//! style and fraction digits, and unix seconds stay an integer.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, TimeZone, Utc};
use serde_json::{Number, Value};

use super::{PageToken, Position, WindowPosition};
use crate::spec::plan::Entity;
use crate::template::parse_time_text;

/// Integers at or above this are read as unix milliseconds: as seconds they
/// would be past the year 5000.
const UNIX_MILLIS_THRESHOLD: i128 = 100_000_000_000;

/// Returns the position of an entity's first request in a run.
///
/// `since` is the saved cursor minus `incremental.lookback_seconds`, or
/// `incremental.start` when there is no saved cursor, or nothing when
/// `full` ignores the saved state. A windowed entity starts with the window
/// `[since, since + step)` capped at `now`; under `full` its range starts at
/// `incremental.start`, because a window needs a beginning.
pub fn initial_position(
    entity: &Entity,
    saved_cursor: Option<&Value>,
    now: DateTime<Utc>,
    full: bool,
) -> Position {
    let Some(incremental) = &entity.incremental else {
        return Position::default();
    };

    let saved = saved_cursor.filter(|cursor| !cursor.is_null());
    let since = match (full, saved) {
        (true, _) => None,
        (false, Some(cursor)) => Some(subtract_lookback(cursor, incremental.lookback)),
        (false, None) => incremental.start.clone(),
    };

    let window = incremental.window.as_ref().and_then(|window| {
        let from = since.as_ref().or(incremental.start.as_ref())?;
        let first = first_window(from, window.step, now);
        if first.is_none() {
            tracing::warn!(
                entity = %entity.name,
                cursor = %from,
                "incremental cursor is not a time, so the entity is read without windows"
            );
        }
        first
    });

    Position {
        since,
        window,
        parent: None,
        steps: serde_json::Map::new(),
        page: PageToken::Start,
    }
}

/// Returns `cursor` moved back by `lookback`, in the cursor's own form.
/// Values that are not times are returned unchanged.
pub fn subtract_lookback(cursor: &Value, lookback: Duration) -> Value {
    if lookback.is_zero() {
        return cursor.clone();
    }
    let Some((form, time)) = TimeForm::detect(cursor) else {
        return cursor.clone();
    };
    match TimeDelta::from_std(lookback)
        .ok()
        .and_then(|delta| time.checked_sub_signed(delta))
    {
        Some(earlier) => form.format(earlier),
        None => cursor.clone(),
    }
}

/// Returns `time` written in the form of `sample` (unix seconds, an
/// ISO-8601 string with its offset style, …); `None` when `sample` is not a time.
pub fn time_in_form_of(sample: &Value, time: DateTime<Utc>) -> Option<Value> {
    let (form, _) = TimeForm::detect(sample)?;
    Some(form.format(time))
}

/// Returns the first window `[from, from + step)`, capped at `now`, with
/// every bound in the form of `from`; `None` when `from` is not a time.
pub fn first_window(from: &Value, step: Duration, now: DateTime<Utc>) -> Option<WindowPosition> {
    let (form, start) = TimeForm::detect(from)?;
    let end = add_step(start, step).min(now).max(start);
    Some(WindowPosition {
        start: from.clone(),
        end: form.format(end),
        until: form.format(now),
    })
}

/// Returns the window after `window`, starting where it ended; `None` when
/// `window` reached the end of the range.
pub fn next_window(window: &WindowPosition, step: Duration) -> Option<WindowPosition> {
    let (form, start) = TimeForm::detect(&window.end)?;
    let (_, until) = TimeForm::detect(&window.until)?;
    if start >= until {
        return None;
    }
    let end = add_step(start, step).min(until);
    Some(WindowPosition {
        start: window.end.clone(),
        end: form.format(end),
        until: window.until.clone(),
    })
}

fn add_step(time: DateTime<Utc>, step: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(step)
        .ok()
        .and_then(|delta| time.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Returns the greater of two cursor values. A null value loses to any
/// other, so a record without a cursor never lowers the saved one.
pub fn max_cursor(a: &Value, b: &Value) -> Value {
    if b.is_null() || (!a.is_null() && compare_cursors(a, b) != Ordering::Less) {
        a.clone()
    } else {
        b.clone()
    }
}

/// Orders cursor values: numbers numerically, two time strings
/// chronologically, other strings lexically. A digit string compared with
/// a number is compared as a number; other mixed pairs order by type
/// (null, bool, number, string, array, object).
pub fn compare_cursors(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => compare_strings(x, y),
        (Value::Number(x), Value::String(y)) => match y.trim().parse::<Number>() {
            Ok(y) => compare_numbers(x, &y),
            Err(_) => type_rank(a).cmp(&type_rank(b)),
        },
        (Value::String(x), Value::Number(y)) => match x.trim().parse::<Number>() {
            Ok(x) => compare_numbers(&x, y),
            Err(_) => type_rank(a).cmp(&type_rank(b)),
        },
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

fn compare_strings(x: &str, y: &str) -> Ordering {
    if x == y {
        return Ordering::Equal;
    }
    match (parse_time_text(x), parse_time_text(y)) {
        (Some(tx), Some(ty)) => tx.cmp(&ty).then_with(|| x.cmp(y)),
        _ => x.cmp(y),
    }
}

fn compare_numbers(x: &Number, y: &Number) -> Ordering {
    let (text_x, text_y) = (x.to_string(), y.to_string());
    if let (Ok(ix), Ok(iy)) = (text_x.parse::<i128>(), text_y.parse::<i128>()) {
        return ix.cmp(&iy);
    }
    match (text_x.parse::<f64>(), text_y.parse::<f64>()) {
        (Ok(fx), Ok(fy)) => fx.partial_cmp(&fy).unwrap_or(Ordering::Equal),
        _ => text_x.cmp(&text_y),
    }
}

fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// The maximum cursor over a page's records. Keeps the parsed time of the
/// current maximum, so each record costs one parse at most.
#[derive(Debug, Default)]
pub(crate) struct CursorMax {
    max: Option<Value>,
    max_time: Option<DateTime<Utc>>,
}

impl CursorMax {
    pub(crate) fn observe(&mut self, value: &Value) {
        if value.is_null() {
            return;
        }
        let Some(max) = &self.max else {
            self.replace(value);
            return;
        };
        let greater = match (max, value) {
            (Value::String(current), Value::String(candidate)) => {
                if current == candidate {
                    return;
                }
                match (self.max_time, parse_time_text(candidate)) {
                    (Some(current_time), Some(time)) => {
                        time > current_time || (time == current_time && candidate > current)
                    }
                    _ => compare_strings(candidate, current) == Ordering::Greater,
                }
            }
            _ => compare_cursors(value, max) == Ordering::Greater,
        };
        if greater {
            self.replace(value);
        }
    }

    fn replace(&mut self, value: &Value) {
        self.max_time = value.as_str().and_then(parse_time_text);
        self.max = Some(value.clone());
    }

    pub(crate) fn into_value(self) -> Option<Value> {
        self.max
    }
}

/// The notation of a time in a cursor value, so computed times can be
/// written the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeForm {
    /// RFC 3339 text, keeping its offset, `Z`, separator and fraction digits.
    Rfc3339 {
        offset: FixedOffset,
        zulu: bool,
        separator: char,
        fraction_digits: usize,
    },
    /// Date and time without an offset, read as UTC.
    Naive {
        separator: char,
        fraction_digits: usize,
    },
    Date,
    /// Unix seconds written as a string of digits.
    UnixText,
    UnixSeconds,
    UnixMillis,
    /// Unix seconds with a fraction.
    UnixFloat,
}

impl TimeForm {
    fn detect(value: &Value) -> Option<(TimeForm, DateTime<Utc>)> {
        match value {
            Value::Number(number) => Self::detect_number(number),
            Value::String(text) => Self::detect_text(text),
            _ => None,
        }
    }

    fn detect_number(number: &Number) -> Option<(TimeForm, DateTime<Utc>)> {
        let text = number.to_string();
        if let Ok(integer) = text.parse::<i128>() {
            if integer.abs() >= UNIX_MILLIS_THRESHOLD {
                let millis = i64::try_from(integer).ok()?;
                return Some((
                    TimeForm::UnixMillis,
                    Utc.timestamp_millis_opt(millis).single()?,
                ));
            }
            let seconds = i64::try_from(integer).ok()?;
            return Some((
                TimeForm::UnixSeconds,
                Utc.timestamp_opt(seconds, 0).single()?,
            ));
        }
        let seconds = text.parse::<f64>().ok()?;
        let time = crate::template::parse_time(&Value::from(seconds))?;
        Some((TimeForm::UnixFloat, time))
    }

    fn detect_text(text: &str) -> Option<(TimeForm, DateTime<Utc>)> {
        if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Some((TimeForm::UnixText, parse_time_text(text)?));
        }
        if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Some((TimeForm::Date, date.and_hms_opt(0, 0, 0)?.and_utc()));
        }
        let separator = text
            .chars()
            .nth(10)
            .filter(|c| matches!(c, 'T' | 't' | ' '))?;
        let fraction_digits = fraction_digits(text);
        if let Ok(time) = DateTime::parse_from_rfc3339(text) {
            let zulu = text.ends_with(['Z', 'z']);
            let form = TimeForm::Rfc3339 {
                offset: *time.offset(),
                zulu,
                separator,
                fraction_digits,
            };
            return Some((form, time.with_timezone(&Utc)));
        }
        let normalized = text.replacen(separator, "T", 1);
        let naive =
            chrono::NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
        let form = TimeForm::Naive {
            separator,
            fraction_digits,
        };
        Some((form, naive.and_utc()))
    }

    fn format(self, time: DateTime<Utc>) -> Value {
        match self {
            TimeForm::Rfc3339 {
                offset,
                zulu,
                separator,
                fraction_digits,
            } => {
                let local = time.with_timezone(&offset);
                let mut text = format_clock(&local, separator, fraction_digits);
                if zulu {
                    text.push('Z');
                } else {
                    text.push_str(&local.format("%:z").to_string());
                }
                Value::String(text)
            }
            TimeForm::Naive {
                separator,
                fraction_digits,
            } => Value::String(format_clock(&time, separator, fraction_digits)),
            TimeForm::Date => Value::String(time.format("%Y-%m-%d").to_string()),
            TimeForm::UnixText => Value::String(time.timestamp().to_string()),
            TimeForm::UnixSeconds => Value::from(time.timestamp()),
            TimeForm::UnixMillis => Value::from(time.timestamp_millis()),
            TimeForm::UnixFloat => {
                let seconds =
                    time.timestamp() as f64 + f64::from(time.timestamp_subsec_nanos()) / 1e9;
                Number::from_f64(seconds).map_or(Value::Null, Value::Number)
            }
        }
    }
}

/// Formats date and clock time with exactly `fraction_digits` digits of
/// fraction (truncated), without an offset.
fn format_clock<Tz: TimeZone>(
    time: &DateTime<Tz>,
    separator: char,
    fraction_digits: usize,
) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut text = time
        .format(&format!("%Y-%m-%d{separator}%H:%M:%S"))
        .to_string();
    if fraction_digits > 0 {
        let nanos = format!("{:09}", time.timestamp_subsec_nanos());
        text.push('.');
        text.push_str(&nanos[..fraction_digits.min(9)]);
    }
    text
}

/// Counts the digits after the seconds' decimal point, if any.
fn fraction_digits(text: &str) -> usize {
    let Some(dot) = text.get(19..).filter(|rest| rest.starts_with('.')) else {
        return 0;
    };
    dot[1..].bytes().take_while(u8::is_ascii_digit).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn lookback_keeps_zulu_form() {
        let cursor = json!("2024-03-01T00:00:30Z");
        assert_eq!(
            subtract_lookback(&cursor, MINUTE),
            json!("2024-02-29T23:59:30Z")
        );
    }

    #[test]
    fn lookback_keeps_offset_and_fraction() {
        let cursor = json!("2024-03-01T10:00:00.250+02:00");
        assert_eq!(
            subtract_lookback(&cursor, MINUTE),
            json!("2024-03-01T09:59:00.250+02:00")
        );
    }

    #[test]
    fn lookback_keeps_naive_space_form() {
        let cursor = json!("2024-03-01 10:00:00");
        assert_eq!(
            subtract_lookback(&cursor, MINUTE),
            json!("2024-03-01 09:59:00")
        );
    }

    #[test]
    fn lookback_on_unix_numbers() {
        assert_eq!(
            subtract_lookback(&json!(1_700_000_060), MINUTE),
            json!(1_700_000_000)
        );
        assert_eq!(
            subtract_lookback(&json!(1_700_000_060_000_i64), MINUTE),
            json!(1_700_000_000_000_i64)
        );
        assert_eq!(
            subtract_lookback(&json!("1700000060"), MINUTE),
            json!("1700000000")
        );
    }

    #[test]
    fn time_written_in_sample_form() {
        let time = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(
            time_in_form_of(&json!(1_700_000_000), time),
            Some(json!(1_709_294_400))
        );
        assert_eq!(
            time_in_form_of(&json!("2020-01-01T00:00:00.000+00:00"), time),
            Some(json!("2024-03-01T12:00:00.000+00:00"))
        );
        assert_eq!(time_in_form_of(&json!("cur_abc"), time), None);
    }

    #[test]
    fn lookback_leaves_other_strings() {
        assert_eq!(
            subtract_lookback(&json!("cur_abc"), MINUTE),
            json!("cur_abc")
        );
    }

    #[test]
    fn lookback_on_date_goes_to_previous_day() {
        assert_eq!(
            subtract_lookback(&json!("2024-03-01"), MINUTE),
            json!("2024-02-29")
        );
    }

    #[test]
    fn cursors_compare_by_kind() {
        assert_eq!(compare_cursors(&json!(9), &json!(10)), Ordering::Less);
        assert_eq!(
            compare_cursors(
                &json!("2024-01-01T10:00:00+02:00"),
                &json!("2024-01-01T09:00:00Z")
            ),
            Ordering::Less
        );
        assert_eq!(compare_cursors(&json!("b"), &json!("a")), Ordering::Greater);
        assert_eq!(compare_cursors(&json!("99"), &json!("100")), Ordering::Less);
    }

    #[test]
    fn max_cursor_ignores_null() {
        assert_eq!(max_cursor(&Value::Null, &json!(3)), json!(3));
        assert_eq!(max_cursor(&json!(5), &Value::Null), json!(5));
        assert_eq!(max_cursor(&json!(5), &json!(7)), json!(7));
        assert_eq!(max_cursor(&json!("b"), &json!("a")), json!("b"));
    }

    #[test]
    fn cursor_max_orders_times_chronologically() {
        let mut max = CursorMax::default();
        for value in [
            "2024-01-01T09:00:00Z",
            "2024-01-01T10:30:00+02:00",
            "2024-01-01T09:10:00Z",
        ] {
            max.observe(&json!(value));
        }
        assert_eq!(max.into_value(), Some(json!("2024-01-01T09:10:00Z")));
    }

    #[test]
    fn windows_step_until_now() {
        let now = Utc.with_ymd_and_hms(2024, 1, 10, 12, 0, 0).unwrap();
        let week = Duration::from_secs(7 * 86_400);
        let first = first_window(&json!("2024-01-01T00:00:00Z"), week, now).unwrap();
        assert_eq!(first.end, json!("2024-01-08T00:00:00Z"));
        assert_eq!(first.until, json!("2024-01-10T12:00:00Z"));
        let second = next_window(&first, week).unwrap();
        assert_eq!(second.start, json!("2024-01-08T00:00:00Z"));
        assert_eq!(second.end, json!("2024-01-10T12:00:00Z"));
        assert_eq!(next_window(&second, week), None);
    }
}
