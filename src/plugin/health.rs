//! The STATUS a table shows, from the kstatus conditions, so a stalled object never looks healthy:
//! `Stalled:<Reason>` while Stalled is True, `Reconciling` while the operator has not caught up,
//! `Ready`, or `NotReady:<Reason>` (kubectl's `Init:CrashLoopBackOff` spelling, one word for `awk`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::conditions::{READY, RECONCILING, STALLED};

fn find<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

fn with_reason(word: &str, reason: &str) -> String {
    if reason.is_empty() {
        word.to_string()
    } else {
        format!("{word}:{}", super::text::term(reason, 60).replace(' ', "_"))
    }
}

/// The one-word health of an object: Stalled first (it needs a human), then whether the operator has
/// seen the latest spec, then Ready.
pub fn status_word(conds: &[Condition], generation: Option<i64>, observed: Option<i64>) -> String {
    if let Some(c) = find(conds, STALLED).filter(|c| c.status == "True") {
        return with_reason("Stalled", &c.reason);
    }
    if find(conds, RECONCILING).is_some_and(|c| c.status == "True")
        || matches!((generation, observed), (Some(g), Some(o)) if o < g)
    {
        return "Reconciling".into();
    }
    match find(conds, READY) {
        Some(c) if c.status == "True" => "Ready".into(),
        Some(c) => with_reason("NotReady", &c.reason),
        None => "Unknown".into(),
    }
}

/// The message that explains the status (Stalled's, else Ready's), for `-o wide`.
pub fn status_message(conds: &[Condition]) -> String {
    find(conds, STALLED)
        .filter(|c| c.status == "True")
        .or_else(|| find(conds, READY))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{type_} message"),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    #[test]
    fn a_stalled_object_never_reads_healthy() {
        let stalled = [
            cond(READY, "False", "TargetNotFound"),
            cond(STALLED, "True", "TargetNotFound"),
        ];
        assert_eq!(status_word(&stalled, Some(1), Some(1)), "Stalled:TargetNotFound");
        assert_eq!(status_message(&stalled), "Stalled message");
        assert_eq!(status_word(&[cond(READY, "True", "Idle")], Some(2), Some(2)), "Ready");
        assert_eq!(
            status_word(&[cond(READY, "True", "Idle")], Some(3), Some(2)),
            "Reconciling",
            "the operator has not seen generation 3 yet"
        );
        assert_eq!(
            status_word(&[cond(READY, "False", "Analysis Failed")], None, None),
            "NotReady:Analysis_Failed"
        );
        assert_eq!(status_word(&[], None, None), "Unknown");
    }
}
