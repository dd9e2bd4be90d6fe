//! When an overdue item's owner is reminded and when it escalates: pure functions of the deadline, what
//! the item's status records as already notified, and the time.
//!
//! Everything is computed from the record, never from elapsed ticks, so an operator that was down for a
//! week sends one reminder when it comes back, not seven, and a step that fired is never fired again.

use jiff::Timestamp;

use crate::api::{action_item::NotificationKind, duration::Duration};

/// One rung of the escalation ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    pub after: Duration,
    pub notify: Vec<String>,
}

/// A notification that is due now.
#[derive(Debug, Clone, PartialEq)]
pub struct DueNotification {
    pub kind: NotificationKind,
    /// 1-based escalation step for escalations.
    pub level: Option<u32>,
    pub recipients: Vec<String>,
}

/// What the record says was already notified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    /// Escalation steps that fired.
    pub level: u32,
    /// When the last reminder was decided on.
    pub last_reminder_at: Option<Timestamp>,
}

/// The ladder sorted by delay; steps with equal delays keep their written order.
pub fn sorted(mut rungs: Vec<Rung>) -> Vec<Rung> {
    rungs.sort_by_key(|r| r.after);
    rungs
}

/// When rung `level` (0-based) fires.
fn rung_time(due: Timestamp, rung: &Rung) -> Timestamp {
    due.checked_add(rung.after.as_signed()).unwrap_or(Timestamp::MAX)
}

/// When the next reminder is due: at the deadline for the first, then one interval after the last.
fn reminder_time(due: Timestamp, last: Option<Timestamp>, interval: Duration) -> Option<Timestamp> {
    match last {
        None => Some(due),
        // A zero interval means "remind once, at the deadline".
        Some(_) if interval.as_secs() == 0 => None,
        Some(t) => Some(t.checked_add(interval.as_signed()).unwrap_or(Timestamp::MAX)),
    }
}

/// The notification due at `now` for an item overdue since `due` (escalations first, one at a time),
/// and the next instant at which one becomes due.
pub fn next(
    due: Timestamp,
    rungs: &[Rung],
    record: Record,
    reminder_interval: Duration,
    owner: &str,
    now: Timestamp,
) -> (Option<DueNotification>, Option<Timestamp>) {
    let rung = rungs.get(record.level as usize);
    let escalation_at = rung.map(|r| rung_time(due, r));
    let reminder_at = reminder_time(due, record.last_reminder_at, reminder_interval);
    if let (Some(r), Some(at)) = (rung, escalation_at)
        && now >= at
    {
        let after_this = rungs.get(record.level as usize + 1).map(|r| rung_time(due, r));
        return (
            Some(DueNotification {
                kind: NotificationKind::Escalation,
                level: Some(record.level + 1),
                recipients: r.notify.clone(),
            }),
            earliest(after_this, reminder_at),
        );
    }
    if let Some(at) = reminder_at
        && now >= at
    {
        // The next reminder counts from now, so a long outage is followed by one reminder, not a burst.
        let following = reminder_time(due, Some(now), reminder_interval);
        return (
            Some(DueNotification {
                kind: NotificationKind::Reminder,
                level: None,
                recipients: vec![owner.to_string()],
            }),
            earliest(escalation_at, following),
        );
    }
    (None, earliest(escalation_at, reminder_at))
}

/// The earlier of two optional instants.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long to wait before retrying a delivery that failed `failures` times: 10s doubling, at most 10m.
pub fn retry_delay(failures: u32) -> Duration {
    let secs = 10i64.saturating_mul(1i64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ladder() -> Vec<Rung> {
        sorted(vec![
            Rung {
                after: Duration::from_secs(7 * 86_400),
                notify: vec!["em".into()],
            },
            Rung {
                after: Duration::from_secs(86_400),
                notify: vec!["lead".into()],
            },
        ])
    }

    const DAY: Duration = Duration::from_secs(86_400);
    const FRESH: Record = Record {
        level: 0,
        last_reminder_at: None,
    };

    #[test]
    fn nothing_before_the_deadline_and_first_reminder_at_it() {
        let due = ts("2026-03-10T00:00:00Z");
        let (n, wake) = next(due, &ladder(), FRESH, DAY, "alice", ts("2026-03-09T23:59:59Z"));
        assert_eq!(n, None);
        assert_eq!(wake, Some(due));
        let (n, wake) = next(due, &ladder(), FRESH, DAY, "alice", due);
        let n = n.unwrap();
        assert_eq!(n.kind, NotificationKind::Reminder);
        assert_eq!(n.recipients, vec!["alice".to_string()]);
        // Next: the first escalation and the next reminder coincide one day later.
        assert_eq!(wake, Some(ts("2026-03-11T00:00:00Z")));
    }

    #[test]
    fn each_step_fires_once_in_order_of_delay() {
        let due = ts("2026-03-10T00:00:00Z");
        let rec = Record {
            level: 0,
            last_reminder_at: Some(due),
        };
        let at = ts("2026-03-11T00:00:00Z");
        let (n, _) = next(due, &ladder(), rec, DAY, "alice", at);
        let n = n.unwrap();
        assert_eq!((n.kind, n.level), (NotificationKind::Escalation, Some(1)));
        assert_eq!(n.recipients, vec!["lead".to_string()]);
        // Recorded: level 1. The reminder due at the same instant comes next, not the step again.
        let rec = Record { level: 1, ..rec };
        let (n, wake) = next(due, &ladder(), rec, DAY, "alice", at);
        assert_eq!(n.unwrap().kind, NotificationKind::Reminder);
        assert_eq!(wake, Some(ts("2026-03-12T00:00:00Z")));
        // After both steps there are only reminders.
        let rec = Record {
            level: 2,
            last_reminder_at: Some(ts("2026-03-20T00:00:00Z")),
        };
        let (n, wake) = next(due, &ladder(), rec, DAY, "alice", ts("2026-03-20T12:00:00Z"));
        assert_eq!(n, None);
        assert_eq!(wake, Some(ts("2026-03-21T00:00:00Z")));
    }

    #[test]
    fn a_long_outage_yields_one_reminder_not_a_burst() {
        let due = ts("2026-03-10T00:00:00Z");
        let rec = Record {
            level: 2,
            last_reminder_at: Some(ts("2026-03-11T00:00:00Z")),
        };
        let back = ts("2026-03-18T09:30:00Z");
        let (n, wake) = next(due, &ladder(), rec, DAY, "alice", back);
        assert_eq!(n.unwrap().kind, NotificationKind::Reminder);
        assert_eq!(wake, Some(ts("2026-03-19T09:30:00Z")), "next one a full interval later");
        let rec = Record {
            last_reminder_at: Some(back),
            ..rec
        };
        assert_eq!(next(due, &ladder(), rec, DAY, "alice", back).0, None);
    }

    #[test]
    fn missed_steps_fire_one_after_another_after_an_outage() {
        let due = ts("2026-03-10T00:00:00Z");
        let late = ts("2026-03-30T00:00:00Z");
        let (n, _) = next(due, &ladder(), FRESH, DAY, "alice", late);
        assert_eq!(n.unwrap().level, Some(1));
        let (n, _) = next(due, &ladder(), Record { level: 1, ..FRESH }, DAY, "alice", late);
        assert_eq!(n.unwrap().level, Some(2));
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        assert_eq!(retry_delay(1).as_secs(), 10);
        assert_eq!(retry_delay(2).as_secs(), 20);
        assert_eq!(retry_delay(4).as_secs(), 80);
        assert_eq!(retry_delay(30).as_secs(), 600);
    }
}
