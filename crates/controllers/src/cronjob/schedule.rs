//! CronJob schedules: the 5-field cron syntax (and `@hourly`, `@daily`, ...) of
//! `spec.schedule`, evaluated in `spec.timeZone` (UTC when unset) from the system tzdb.

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// More missed start times than this and the CronJob is told so (upstream's limit).
pub(crate) const MAX_MISSED: usize = 100;

/// A parsed `spec.schedule` in its time zone.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

/// The start times a CronJob has due at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    /// The latest start time not after now (and after the earliest time considered).
    pub latest: Option<Timestamp>,
    /// How many start times fell in that window, counted up to `MAX_MISSED + 1`.
    pub count: usize,
}

impl Schedule {
    /// Parses `schedule` for the time zone named `time_zone`.
    pub(crate) fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
        let tz = match time_zone {
            None | Some("") => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|e| format!("unknown time zone {name}: {e}"))?,
        };
        let text = schedule.trim();
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            return Err("the schedule must not name a time zone; use spec.timeZone".into());
        }
        if text.split_whitespace().count() != 5 && !text.starts_with('@') {
            return Err(format!("unparseable schedule {text:?}: expected exactly 5 fields"));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("unparseable schedule {text:?}: {e}"))?;
        Ok(Schedule { cron, tz })
    }

    /// The first start time strictly after `t`.
    pub(crate) fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.tz.clone());
        self.cron.find_next_occurrence(&zoned, false).ok().map(|z| z.timestamp())
    }

    /// The start times in `(earliest, now]`.
    pub(crate) fn due(&self, earliest: Timestamp, now: Timestamp) -> Due {
        let mut count = 0;
        let mut latest = None;
        let mut t = earliest;
        while let Some(next) = self.next_after(t).filter(|n| *n <= now) {
            count += 1;
            latest = Some(next);
            t = next;
            if count > MAX_MISSED {
                let zoned = now.to_zoned(self.tz.clone());
                latest = self.cron.find_previous_occurrence(&zoned, true).ok().map(|z| z.timestamp());
                break;
            }
        }
        Due { latest, count }
    }

    /// `t` as RFC 3339 in the schedule's time zone (`Z` for a zero offset, as Go writes it).
    pub(crate) fn format(&self, t: Timestamp) -> String {
        let zoned = t.to_zoned(self.tz.clone());
        if zoned.offset().seconds() == 0 {
            return zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        }
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn five_fields_and_descriptors_give_the_next_start() {
        let every_five = Schedule::parse("*/5 * * * *", None).unwrap();
        assert_eq!(every_five.next_after(t("2026-01-01T10:02:30Z")), Some(t("2026-01-01T10:05:00Z")));
        assert_eq!(every_five.next_after(t("2026-01-01T10:05:00Z")), Some(t("2026-01-01T10:10:00Z")));
        let hourly = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(hourly.next_after(t("2026-01-01T10:00:00Z")), Some(t("2026-01-01T11:00:00Z")));
        let weekdays = Schedule::parse("30 9 * * MON-FRI", None).unwrap();
        // 2026-01-03 is a Saturday.
        assert_eq!(weekdays.next_after(t("2026-01-03T00:00:00Z")), Some(t("2026-01-05T09:30:00Z")));
    }

    #[test]
    fn bad_schedules_and_zones_are_refused() {
        assert!(Schedule::parse("* * * *", None).is_err());
        assert!(Schedule::parse("0 * * * * *", None).is_err());
        assert!(Schedule::parse("TZ=UTC * * * * *", None).is_err());
        assert!(Schedule::parse("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn the_time_zone_moves_the_start() {
        let s = Schedule::parse("0 9 * * *", Some("America/New_York")).unwrap();
        // 09:00 in New York in winter is 14:00 UTC.
        let next = s.next_after(t("2026-01-10T00:00:00Z")).unwrap();
        assert_eq!(next, t("2026-01-10T14:00:00Z"));
        assert_eq!(s.format(next), "2026-01-10T09:00:00-05:00");
    }

    #[test]
    fn due_counts_missed_starts_and_finds_the_latest() {
        let s = Schedule::parse("* * * * *", None).unwrap();
        let due = s.due(t("2026-01-01T10:00:00Z"), t("2026-01-01T10:03:30Z"));
        assert_eq!(due, Due { latest: Some(t("2026-01-01T10:03:00Z")), count: 3 });
        let none = s.due(t("2026-01-01T10:00:00Z"), t("2026-01-01T10:00:59Z"));
        assert_eq!(none, Due { latest: None, count: 0 });
        let many = s.due(t("2026-01-01T00:00:00Z"), t("2026-01-02T00:00:30Z"));
        assert_eq!(many.latest, Some(t("2026-01-02T00:00:00Z")));
        assert!(many.count > MAX_MISSED);
    }
}
