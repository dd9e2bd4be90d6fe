//! The policy's `feedback` section: the intake (path, namespace, bounds) and the triage rules that
//! route a pain point by component (and source) to an owner, a priority and a deadline.

use serde::{Deserialize, Serialize};

use crate::api::{action_item::Priority, duration::Duration};

/// The name an item routed by no rule records in `status.feedback.routedBy`.
pub const DEFAULT_ROUTE: &str = "default";

/// The feedback intake: served by the receiver (on `alertmanager.listen`), off unless `enabled`. Its
/// bearer token is its own (`tokenSecretRef`): the people, forms and chat bots that send feedback
/// must not be able to open or mitigate Incidents with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FeedbackSettings {
    pub enabled: bool,
    /// The Secret key (in the operator's namespace) holding the intake's bearer token; required when
    /// enabled, and distinct from `alertmanager.tokenSecretRef`.
    pub token_secret_ref: Option<super::SecretKeyRef>,
    /// The path the intake answers on.
    pub path: String,
    /// Where Improvement items are created; absent: `alertmanager.namespace`, else the operator's own.
    pub namespace: Option<String>,
    /// Who owns feedback no rule routes.
    pub default_owner: String,
    /// The priority of feedback no rule routes.
    pub default_priority: Priority,
    /// Triage rules, first match wins.
    pub rules: Vec<FeedbackRule>,
    /// At most this many feedback posts a minute (all sources together); more are answered 503.
    pub max_posts_per_minute: u32,
    /// At most this many new Improvement items a minute; feedback on new pain points beyond is 503.
    pub max_new_per_minute: u32,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            token_secret_ref: None,
            path: "/feedback".into(),
            namespace: None,
            default_owner: "platform-team".into(),
            default_priority: Priority::P2,
            rules: Vec::new(),
            max_posts_per_minute: 600,
            max_new_per_minute: 30,
            max_body_bytes: 64 << 10,
        }
    }
}

/// One triage rule: feedback about one of `components` (and, if given, from one of `sources`) goes
/// to `owner` with `priority`, due `dueIn` after the item is created (else the policy's deadline for
/// the priority).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeedbackRule {
    /// Recorded on the items it routes (`status.feedback.routedBy`).
    pub name: String,
    /// Components it takes; empty: any.
    #[serde(default)]
    pub components: Vec<String>,
    /// Sources it takes; empty: any.
    #[serde(default)]
    pub sources: Vec<String>,
    pub owner: String,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_in: Option<Duration>,
}

/// Where a pain point goes: the owner, priority and deadline, and the rule that said so.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub rule: String,
    pub owner: String,
    pub priority: Priority,
    pub due_in: Option<Duration>,
}

impl FeedbackSettings {
    /// The first rule that takes feedback about `component` from `source`; else the default owner.
    pub fn route(&self, component: &str, source: &str) -> Route {
        let takes = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        match self
            .rules
            .iter()
            .find(|r| takes(&r.components, component) && takes(&r.sources, source))
        {
            Some(r) => Route {
                rule: r.name.clone(),
                owner: r.owner.clone(),
                priority: r.priority,
                due_in: r.due_in,
            },
            None => Route {
                rule: DEFAULT_ROUTE.into(),
                owner: self.default_owner.clone(),
                priority: self.default_priority,
                due_in: None,
            },
        }
    }

    /// The first problem as (key, message); only checked when the intake is enabled.
    pub fn validate(
        &self,
        receiver_token: Option<&super::SecretKeyRef>,
        scope: &[String],
    ) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((format!("feedback.{k}"), m.to_string()));
        if !self.enabled {
            return Ok(());
        }
        let Some(token) = self
            .token_secret_ref
            .as_ref()
            .filter(|r| !r.name.is_empty() && !r.key.is_empty())
        else {
            return bad(
                "tokenSecretRef",
                "is required: the Secret key holding the intake's own bearer token",
            );
        };
        if receiver_token == Some(token) {
            return bad(
                "tokenSecretRef",
                "must differ from alertmanager.tokenSecretRef: whoever sends feedback must not be able to open Incidents",
            );
        }
        if !super::is_receiver_path(&self.path) {
            return bad(
                "path",
                "must start with /, have no empty or {..} segments and not be /metrics, /healthz or /readyz",
            );
        }
        if let (Some(ns), false) = (&self.namespace, scope.is_empty())
            && !scope.contains(ns)
        {
            return bad("namespace", "must be one of the watched namespaces");
        }
        if !owner_ok(&self.default_owner) {
            return bad("defaultOwner", "must have 1 to 128 characters");
        }
        if !(1..=100_000).contains(&self.max_posts_per_minute) {
            return bad("maxPostsPerMinute", "must be between 1 and 100000");
        }
        if !(1..=1000).contains(&self.max_new_per_minute) {
            return bad("maxNewPerMinute", "must be between 1 and 1000");
        }
        if !(1024..=1 << 20).contains(&self.max_body_bytes) {
            return bad("maxBodyBytes", "must be between 1024 and 1048576");
        }
        if self.rules.len() > 256 {
            return bad("rules", "at most 256 rules");
        }
        for (i, r) in self.rules.iter().enumerate() {
            if !(1..=63).contains(&r.name.len()) {
                return bad(&format!("rules[{i}].name"), "must have 1 to 63 characters");
            }
            if !owner_ok(&r.owner) {
                return bad(&format!("rules[{i}].owner"), "must have 1 to 128 characters");
            }
            if r.components.len() > 32 || r.sources.len() > 16 {
                return bad(&format!("rules[{i}]"), "at most 32 components and 16 sources");
            }
        }
        Ok(())
    }
}

fn owner_ok(owner: &str) -> bool {
    (1..=128).contains(&owner.chars().count()) && !owner.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, components: &[&str], sources: &[&str], owner: &str, priority: Priority) -> FeedbackRule {
        FeedbackRule {
            name: name.into(),
            components: components.iter().map(|s| s.to_string()).collect(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            owner: owner.into(),
            priority,
            due_in: None,
        }
    }

    #[test]
    fn the_first_matching_rule_routes_and_unrouted_goes_to_the_default_owner() {
        let s = FeedbackSettings {
            rules: vec![
                rule("ci-support", &["ci"], &["support"], "team-ci-oncall", Priority::P1),
                rule("ci", &["ci", "deploys"], &[], "team-ci", Priority::P2),
            ],
            ..FeedbackSettings::default()
        };
        let r = s.route("ci", "support");
        assert_eq!(
            (r.rule.as_str(), r.owner.as_str(), r.priority),
            ("ci-support", "team-ci-oncall", Priority::P1)
        );
        assert_eq!(s.route("deploys", "support").rule, "ci");
        assert_eq!(s.route("ci", "survey").owner, "team-ci");
        let r = s.route("docs", "survey");
        assert_eq!((r.rule.as_str(), r.owner.as_str()), (DEFAULT_ROUTE, "platform-team"));
    }

    #[test]
    fn enabled_intake_needs_its_own_token_and_sane_bounds() {
        let secret = |name: &str| super::super::SecretKeyRef {
            name: name.into(),
            key: "token".into(),
        };
        let without = FeedbackSettings {
            enabled: true,
            ..FeedbackSettings::default()
        };
        assert_eq!(without.validate(None, &[]).unwrap_err().0, "feedback.tokenSecretRef");
        let on = FeedbackSettings {
            token_secret_ref: Some(secret("fb")),
            ..without
        };
        assert!(on.validate(None, &[]).is_ok());
        assert!(on.validate(Some(&secret("am")), &[]).is_ok());
        let (key, why) = on.validate(Some(&secret("fb")), &[]).unwrap_err();
        assert_eq!(key, "feedback.tokenSecretRef");
        assert!(why.contains("must differ from alertmanager.tokenSecretRef"), "{why}");
        let bad = FeedbackSettings {
            max_new_per_minute: 0,
            ..on.clone()
        };
        assert_eq!(bad.validate(None, &[]).unwrap_err().0, "feedback.maxNewPerMinute");
        let bad = FeedbackSettings {
            rules: vec![rule("", &[], &[], "x", Priority::P2)],
            ..on
        };
        assert_eq!(bad.validate(None, &[]).unwrap_err().0, "feedback.rules[0].name");
    }
}
