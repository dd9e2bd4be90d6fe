//! The analysis checks a Canary reconcile keeps in memory instead of writing them (see
//! [`recording`](super::decide::recording), which decides when a check may wait): a store, so it
//! lives here, outside the pure `decide/`.

use std::collections::HashSet;

use super::decide::recording::{KeptCheck, with_check};
use crate::{api::canary::CanaryStatus, runtime::coalesce::Coalesced};

/// The checks kept unwritten, by Canary UID: one entry per Canary at most, gone once its status is
/// written, moves on, or the Canary goes.
#[derive(Default)]
pub struct KeptChecks(Coalesced<KeptCheck>);

impl KeptChecks {
    pub fn keep(&self, uid: &str, check: KeptCheck) {
        self.0.keep(uid, |_| check);
    }

    pub fn forget(&self, uid: &str) {
        self.0.take(uid);
    }

    /// `status` with the check kept for `uid` (see [`with_check`]); a check the status has caught up
    /// with or moved past is forgotten.
    pub fn applied_to(&self, uid: &str, status: Option<&CanaryStatus>) -> Option<CanaryStatus> {
        let mut map = self.0.kept();
        let kept = map.get(uid)?;
        let applied = status.and_then(|s| with_check(s, kept));
        if applied.is_none() {
            map.remove(uid);
        }
        applied
    }

    /// Forgets the checks of Canaries `live` does not know (deleted while a watch was away).
    pub fn retain_live(&self, live: impl FnOnce() -> HashSet<String>) {
        let mut map = self.0.kept();
        if map.is_empty() {
            return;
        }
        let live = live();
        map.retain(|uid, _| live.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::canary::MetricOutcome, canary::decide::recording::tests::checked};

    #[test]
    fn kept_checks_go_once_the_status_catches_up_or_the_canary_is_gone() {
        let kept = KeptChecks::default();
        let recorded = checked(0, MetricOutcome::Pass, 0.1);
        kept.keep("a", KeptCheck::of(&checked(5, MetricOutcome::Pass, 0.2)).unwrap());
        assert!(kept.applied_to("a", Some(&recorded)).is_some());
        // Written since: forgotten, and not applied again.
        assert!(
            kept.applied_to("a", Some(&checked(5, MetricOutcome::Pass, 0.2)))
                .is_none()
        );
        assert!(kept.applied_to("a", Some(&recorded)).is_none());
        kept.keep("b", KeptCheck::of(&checked(5, MetricOutcome::Pass, 0.2)).unwrap());
        kept.retain_live(|| ["c".to_string()].into());
        assert!(kept.applied_to("b", Some(&recorded)).is_none());
        // Nothing kept: the live set is not even built.
        kept.retain_live(|| unreachable!("no check is kept"));
    }
}
