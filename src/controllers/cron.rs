//! Cron schedules as the CronJob controller reads `spec.schedule`: the standard five
//! fields (minute, hour, day of month, month, day of week) with names, ranges, steps
//! and lists, and the `@yearly`…`@hourly` descriptors, evaluated in UTC.
//!
//! Modelled on robfig/cron's `ParseStandard`, which upstream's controller uses, but not
//! identical to it: no `@every` or `TZ=` prefix, 7 is accepted as Sunday, and the error
//! wording is close to robfig's rather than the same. A crate could replace this only
//! if it matched robfig exactly; it lives apart from the controller so the parser and
//! its tests can be read and changed without the reconcile loop.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("expected exactly 5 fields, found {0}")]
    FieldCount(usize),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("bad value {0:?}")]
    Value(String),
    #[error("{0} is out of range {1}-{2}")]
    Range(u32, u32, u32),
    #[error("beginning of range {0} beyond end {1}")]
    Reversed(u32, u32),
}

/// A parsed 5-field cron schedule in UTC: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day-of-month / day-of-week was `*` (or `?`): cron then requires both
    /// to match; when both are restricted a day matching either one runs.
    days_star: bool,
    weekdays_star: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's bits, and whether it was a plain `*`.
fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    first_name: u32,
) -> Result<(u64, bool), ScheduleError> {
    let value = |s: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(first_name + u32::try_from(i).unwrap_or(0));
        }
        s.parse::<u32>()
            .map_err(|_| ScheduleError::Value(s.to_string()))
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| ScheduleError::Value(s.into()))?,
                ),
            ),
            None => (part, None),
        };
        if step == Some(0) {
            return Err(ScheduleError::Value(part.into()));
        }
        let (lo, hi) = if range == "*" || range == "?" {
            star |= step.is_none_or(|s| s == 1);
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if step.is_some() { max } else { v })
        };
        for v in [lo, hi] {
            if v < min || v > max {
                return Err(ScheduleError::Range(v, min, max));
            }
        }
        if lo > hi {
            return Err(ScheduleError::Reversed(lo, hi));
        }
        let step = usize::try_from(step.unwrap_or(1)).unwrap_or(1);
        for v in (lo..=hi).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(ScheduleError::Descriptor(other.into()));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(ScheduleError::FieldCount(fields.len()));
        };
        let (minutes, _) = field(minute, 0, 59, &[], 0)?;
        let (hours, _) = field(hour, 0, 23, &[], 0)?;
        let (days, days_star) = field(day, 1, 31, &[], 0)?;
        let (months, _) = field(month, 1, 12, &MONTHS, 1)?;
        // 7 is Sunday too, as in most crons.
        let (mut weekdays, weekdays_star) = field(weekday, 0, 7, &WEEKDAYS, 0)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
        })
    }
}

fn has(bits: u64, v: i8) -> bool {
    u32::try_from(v).is_ok_and(|v| bits & (1 << v) != 0)
}

impl Schedule {
    fn day_matches(&self, t: DateTime) -> bool {
        let day = has(self.days, t.day());
        let weekday = has(self.weekdays, t.weekday().to_sunday_zero_offset());
        if self.days_star || self.weekdays_star {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// The first scheduled time strictly after `after`; None if there is none within
    /// five years (e.g. the 30th of February).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        use jiff::ToSpan;
        let start = after.to_zoned(TimeZone::UTC).datetime();
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let end_year = start.year().saturating_add(5);
        while t.year() <= end_year {
            t = if !has(self.months, t.month()) {
                t.first_of_month()
                    .start_of_day()
                    .checked_add(1.month())
                    .ok()?
            } else if !self.day_matches(t) {
                t.start_of_day().checked_add(1.day()).ok()?
            } else if !has(self.hours, t.hour()) {
                t.with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?
            } else if !has(self.minutes, t.minute()) {
                t.checked_add(1.minute()).ok()?
            } else {
                return TimeZone::UTC.to_timestamp(t).ok();
            };
        }
        None
    }

    /// The latest scheduled time in (`earliest`, `now`], if any.
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let mut found = None;
        let mut t = earliest;
        while let Some(next) = self.next_after(t).filter(|n| *n <= now) {
            found = Some(next);
            t = next;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        schedule
            .parse::<Schedule>()
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn examples_from_the_cron_documentation() {
        // Every minute.
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        // "0 0 13 * 5": the 13th or any Friday (both day fields restricted: either).
        assert_eq!(
            next("0 0 13 * 5", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2024-01-12T00:00:00Z"),
            "2024-01-13T00:00:00Z"
        );
        // Every 15 minutes.
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:16:00Z"),
            "2024-01-01T10:30:00Z"
        );
        // 22:00 on weekdays (names and ranges).
        assert_eq!(
            next("0 22 * * MON-FRI", "2024-01-05T22:00:00Z"),
            "2024-01-08T22:00:00Z"
        );
        // A list with a range and a step.
        assert_eq!(
            next("23 0-20/2 * * *", "2024-01-01T00:23:00Z"),
            "2024-01-01T02:23:00Z"
        );
        assert_eq!(
            next("23 0-20/2 * * *", "2024-01-01T20:23:00Z"),
            "2024-01-02T00:23:00Z"
        );
        assert_eq!(
            next("5,10 4 * * sun", "2024-01-01T00:00:00Z"),
            "2024-01-07T04:05:00Z"
        );
        // Month names; 7 is Sunday.
        assert_eq!(
            next("0 0 1 jan,Jul *", "2024-02-01T00:00:00Z"),
            "2024-07-01T00:00:00Z"
        );
        assert_eq!(
            next("0 12 * * 7", "2024-01-01T00:00:00Z"),
            "2024-01-07T12:00:00Z"
        );
        // `5/20`: from 5 on, every 20.
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T10:25:00Z"),
            "2024-01-01T10:45:00Z"
        );
        // Leap day.
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
    }

    #[test]
    fn macros() {
        let t = "2024-05-15T10:30:00Z";
        assert_eq!(next("@hourly", t), "2024-05-15T11:00:00Z");
        assert_eq!(next("@daily", t), "2024-05-16T00:00:00Z");
        assert_eq!(next("@midnight", t), "2024-05-16T00:00:00Z");
        assert_eq!(next("@weekly", t), "2024-05-19T00:00:00Z");
        assert_eq!(next("@monthly", t), "2024-06-01T00:00:00Z");
        assert_eq!(next("@yearly", t), "2025-01-01T00:00:00Z");
        assert_eq!(next("@annually", t), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn bad_schedules_are_rejected() {
        for bad in [
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "* * * FOO *",
            "@reboot",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad} should not parse");
        }
        assert_eq!(
            "0 0 30 2 *"
                .parse::<Schedule>()
                .unwrap()
                .next_after(at("2024-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn only_the_most_recent_missed_time_counts() {
        let s: Schedule = "*/10 * * * *".parse().unwrap();
        let recent = s.most_recent(at("2024-01-01T10:00:00Z"), at("2024-01-01T10:35:00Z"));
        assert_eq!(recent, Some(at("2024-01-01T10:30:00Z")));
        assert_eq!(
            s.most_recent(at("2024-01-01T10:30:00Z"), at("2024-01-01T10:35:00Z")),
            None
        );
    }
}
