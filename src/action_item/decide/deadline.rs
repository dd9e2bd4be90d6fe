//! Deadline arithmetic: the effective due time of an ActionItem, optionally counted in business days.

use jiff::{SignedDuration, Timestamp, civil::Weekday, tz::TimeZone};

use crate::api::duration::Duration;

const DAY: i64 = 86_400;

/// `start + span`, where whole days of `span` are business days (Monday–Friday) in `tz` when given.
/// Calendar days are stepped in the time zone, so a DST change keeps the wall-clock time.
pub fn add(start: Timestamp, span: Duration, business_days_in: Option<&TimeZone>) -> Timestamp {
    let Some(tz) = business_days_in else {
        return start.checked_add(span.as_signed()).unwrap_or(Timestamp::MAX);
    };
    let whole_days = span.as_secs() / DAY;
    let rest = SignedDuration::from_secs(span.as_secs() % DAY);
    let mut zoned = start.to_zoned(tz.clone());
    let mut counted = 0;
    while counted < whole_days {
        zoned = match zoned.checked_add(jiff::Span::new().days(1)) {
            Ok(z) => z,
            Err(_) => return Timestamp::MAX,
        };
        if !matches!(zoned.weekday(), Weekday::Saturday | Weekday::Sunday) {
            counted += 1;
        }
    }
    zoned.timestamp().checked_add(rest).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn calendar_days_without_business_calendar() {
        let d: Duration = "7d".parse().unwrap();
        assert_eq!(add(ts("2026-03-06T10:00:00Z"), d, None), ts("2026-03-13T10:00:00Z"));
    }

    #[test]
    fn business_days_skip_weekends() {
        let utc = TimeZone::UTC;
        // Friday + 1 business day = Monday.
        assert_eq!(
            add(ts("2026-03-06T10:00:00Z"), "1d".parse().unwrap(), Some(&utc)),
            ts("2026-03-09T10:00:00Z")
        );
        // Friday + 5 business days = next Friday.
        assert_eq!(
            add(ts("2026-03-06T10:00:00Z"), "5d".parse().unwrap(), Some(&utc)),
            ts("2026-03-13T10:00:00Z")
        );
        // Saturday + 1 business day = Monday.
        assert_eq!(
            add(ts("2026-03-07T10:00:00Z"), "1d".parse().unwrap(), Some(&utc)),
            ts("2026-03-09T10:00:00Z")
        );
        // Hours are added on top of the days.
        assert_eq!(
            add(ts("2026-03-06T10:00:00Z"), "1d2h".parse().unwrap(), Some(&utc)),
            ts("2026-03-09T12:00:00Z")
        );
    }

    #[test]
    fn business_days_keep_wall_clock_across_dst() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // Friday 2026-03-27 09:00 CET (08:00Z); DST starts Sunday 29 March; Monday 09:00 CEST is 07:00Z.
        assert_eq!(
            add(ts("2026-03-27T08:00:00Z"), "1d".parse().unwrap(), Some(&berlin)),
            ts("2026-03-30T07:00:00Z")
        );
    }

    #[test]
    fn weekend_is_judged_in_the_configured_zone() {
        // 2026-03-06T23:30Z is already Saturday in Tokyo: one business day later is Monday 08:30 JST.
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(
            add(ts("2026-03-06T23:30:00Z"), "1d".parse().unwrap(), Some(&tokyo)),
            ts("2026-03-08T23:30:00Z")
        );
    }

    #[test]
    fn calendar_addition_is_exact_to_the_second() {
        assert_eq!(
            add(ts("2026-03-06T10:00:00Z"), "90s".parse().unwrap(), None),
            ts("2026-03-06T10:01:30Z")
        );
    }
}
