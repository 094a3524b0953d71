//! `schedule` (cron), `every` and `timezone` into a [`Trigger`].

use std::str::FromStr;

use crate::spec::plan::Trigger;
use crate::spec::suggest;

/// Parses a cron expression: 5 fields (minute first, as in crontab) or 6
/// (seconds first); a 7th field is a year.
///
/// The `cron` crate numbers weekdays 1 (Sunday) to 7 (Saturday), while
/// crontab uses 0 to 6 with 7 also Sunday, so numeric weekdays of a 5-field
/// expression are translated. A 6-field expression keeps the crate's
/// numbering (names such as MON-FRI mean the same in both).
pub fn cron(expression: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let full = match fields.len() {
        5 => {
            let weekdays = crontab_weekdays(fields[4])
                .map_err(|message| format!("invalid schedule \"{expression}\": {message}"))?;
            format!("0 {} {weekdays}", fields[..4].join(" "))
        }
        6 | 7 => fields.join(" "),
        count => {
            return Err(format!(
                "schedule \"{expression}\" has {count} fields; write 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
            ));
        }
    };
    cron::Schedule::from_str(&full)
        .map_err(|error| format!("invalid schedule \"{expression}\": {error}"))
}

/// Translates a crontab day-of-week field (0-7, 0 and 7 are Sunday) to the
/// `cron` crate's numbering (1-7, 1 is Sunday).
fn crontab_weekdays(field: &str) -> Result<String, String> {
    let mut items = Vec::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let translated = match base.split_once('-') {
            Some((first, last)) if last.trim() == "7" => {
                // Crontab's 7 is Sunday, which the crate numbers 1: the range
                // wraps around the end of the week.
                if step.is_some() {
                    return Err(format!(
                        "day-of-week range \"{item}\" ends on 7 (Sunday) with a step; list the days instead"
                    ));
                }
                match first.trim() {
                    "0" | "1" => "1-7".to_string(),
                    _ => format!("{}-7,1", shift(first)),
                }
            }
            Some((first, last)) => format!("{}-{}", shift(first), shift(last)),
            None => shift(base),
        };
        match step {
            Some(step) => items.push(format!("{translated}/{step}")),
            None => items.push(translated),
        }
    }
    Ok(items.join(","))
}

/// Shifts a crontab weekday number to the crate's; names and `*` stay.
fn shift(value: &str) -> String {
    match value.parse::<u32>() {
        Ok(7) => "1".to_string(),
        Ok(day) if day < 7 => (day + 1).to_string(),
        _ => value.to_string(),
    }
}

/// Parses an interval such as `15m` or `1h 30m`.
pub fn every(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(duration) if duration.is_zero() => Err("every must be longer than 0".to_string()),
        Ok(duration) if !schedulable(duration) => Err(format!(
            "every \"{text}\" is too long: one interval from now is past the latest date ferry can schedule; write a shorter interval such as 1d"
        )),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "invalid interval \"{text}\" for every ({error}); write it like 30s, 15m, 1h or 1d"
        )),
    }
}

/// True when a time one interval from now is a date chrono can represent.
fn schedulable(interval: std::time::Duration) -> bool {
    chrono::Duration::from_std(interval)
        .ok()
        .and_then(|interval| chrono::Utc::now().checked_add_signed(interval))
        .is_some()
}

/// Parses an IANA time zone name, suggesting the closest one when misspelt.
pub fn timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    if let Ok(zone) = chrono_tz::Tz::from_str(name) {
        return Ok(zone);
    }
    let names = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
    let mut hint = suggest::did_you_mean(name, names);
    if hint.is_empty() {
        hint = "; use an IANA name such as UTC or Europe/Paris".to_string();
    }
    Err(format!("unknown time zone \"{name}\"{hint}"))
}

/// Builds the trigger from a flow's settings (already expanded).
pub fn trigger(
    schedule: Option<&str>,
    every_text: Option<&str>,
    zone: chrono_tz::Tz,
) -> Result<Option<Trigger>, String> {
    match (schedule, every_text) {
        (Some(_), Some(_)) => {
            Err("set either schedule (cron) or every (an interval), not both".to_string())
        }
        (Some(expression), None) => Ok(Some(Trigger::Cron {
            expression: expression.to_string(),
            schedule: Box::new(cron(expression)?),
            timezone: zone,
        })),
        (None, Some(text)) => Ok(Some(Trigger::Every(every(text)?))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Utc, Weekday};

    fn next_weekdays(expression: &str, count: usize) -> Vec<Weekday> {
        let schedule = cron(expression).unwrap();
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        schedule
            .after(&start)
            .take(count)
            .map(|time| time.weekday())
            .collect()
    }

    #[test]
    fn five_fields_get_seconds() {
        let schedule = cron("*/15 * * * *").unwrap();
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let next: Vec<String> = schedule
            .after(&start)
            .take(2)
            .map(|time| time.format("%H:%M:%S").to_string())
            .collect();
        assert_eq!(next, vec!["00:15:00", "00:30:00"]);
    }

    #[test]
    fn crontab_weekdays_keep_their_meaning() {
        use Weekday::*;
        assert_eq!(
            next_weekdays("0 9 * * 1-5", 5),
            vec![Mon, Tue, Wed, Thu, Fri]
        );
        assert_eq!(next_weekdays("0 9 * * 0", 1), vec![Sun]);
        assert_eq!(next_weekdays("0 9 * * 7", 1), vec![Sun]);
        assert_eq!(next_weekdays("0 9 * * 5-7", 3), vec![Fri, Sat, Sun]);
        assert_eq!(next_weekdays("0 9 * * MON", 1), vec![Mon]);
    }

    #[test]
    fn six_fields_are_used_as_written() {
        assert!(cron("30 */5 * * * *").is_ok());
    }

    #[test]
    fn wrong_field_count_is_explained() {
        assert_eq!(
            cron("* * *").unwrap_err(),
            "schedule \"* * *\" has 3 fields; write 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
        );
    }

    #[test]
    fn misspelt_timezone_is_suggested() {
        assert_eq!(
            timezone("Europe/Pari").unwrap_err(),
            "unknown time zone \"Europe/Pari\"; did you mean \"Europe/Paris\"?"
        );
        assert!(timezone("UTC").is_ok());
    }

    #[test]
    fn both_schedule_and_every_is_an_error() {
        assert_eq!(
            trigger(Some("* * * * *"), Some("5m"), chrono_tz::UTC).unwrap_err(),
            "set either schedule (cron) or every (an interval), not both"
        );
    }
}
