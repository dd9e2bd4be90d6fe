//! The storm limiter: at most N new Incidents a minute per Alertmanager receiver. Pure: the caller
//! passes the time, so the window is tested without waiting.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);
/// Receivers tracked apart; names beyond these share one budget, so the map stays bounded whatever
/// receiver names requests carry.
const MAX_RECEIVERS: usize = 64;
const SHARED: &str = "";

pub struct StormLimiter {
    per_minute: usize,
    opened: HashMap<String, VecDeque<Instant>>,
}

impl StormLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1) as usize,
            opened: HashMap::new(),
        }
    }

    fn bucket(&mut self, receiver: &str, now: Instant) -> &mut VecDeque<Instant> {
        let key = if self.opened.contains_key(receiver) || self.opened.len() < MAX_RECEIVERS {
            receiver
        } else {
            SHARED
        };
        let q = self.opened.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            q.pop_front();
        }
        q
    }

    /// Takes one opening from `receiver`'s budget: `Ok` when it may open an Incident now, else how
    /// long until it may.
    pub fn try_open(&mut self, receiver: &str, now: Instant) -> Result<(), Duration> {
        let per_minute = self.per_minute;
        let q = self.bucket(receiver, now);
        if q.len() < per_minute {
            q.push_back(now);
            return Ok(());
        }
        let oldest = *q.front().expect("a full window has an oldest entry");
        Err(WINDOW
            .saturating_sub(now.duration_since(oldest))
            .max(Duration::from_secs(1)))
    }

    /// Gives an opening back (the Incident could not be written after all).
    pub fn undo(&mut self, receiver: &str, now: Instant) {
        self.bucket(receiver, now).pop_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_a_minute_then_room_again_as_the_window_slides() {
        let t0 = Instant::now();
        let mut l = StormLimiter::new(3);
        for i in 0..3 {
            assert_eq!(l.try_open("am", t0 + Duration::from_secs(i)), Ok(()));
        }
        let wait = l.try_open("am", t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        // Another receiver has its own budget.
        assert_eq!(l.try_open("other", t0 + Duration::from_secs(10)), Ok(()));
        // The first opening leaves the window at 60 s.
        assert!(l.try_open("am", t0 + Duration::from_millis(59_999)).is_err());
        assert_eq!(l.try_open("am", t0 + Duration::from_secs(60)), Ok(()));
        assert!(l.try_open("am", t0 + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn undo_returns_the_opening() {
        let t0 = Instant::now();
        let mut l = StormLimiter::new(1);
        assert!(l.try_open("am", t0).is_ok());
        l.undo("am", t0);
        assert!(l.try_open("am", t0).is_ok());
    }

    #[test]
    fn receiver_names_cannot_grow_the_map_past_its_bound() {
        let t0 = Instant::now();
        let mut l = StormLimiter::new(1);
        for i in 0..1000 {
            let _ = l.try_open(&format!("r{i}"), t0);
        }
        assert!(l.opened.len() <= MAX_RECEIVERS + 1);
        // The overflow shares one budget: one opening among all of them.
        assert!(l.try_open("r999", t0).is_err());
    }
}
