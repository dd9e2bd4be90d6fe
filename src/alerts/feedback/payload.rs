//! The feedback a reporter (or a relay: a form webhook, a chat slash command) posts, checked and
//! normalised. Pure: the caller passes the bytes. The schema is documented in docs/src/feedback.md.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    api::feedback::{Impact, MAX_REPORTER_CHARS},
    text::plain,
};

/// Longest title, as the ActionItem's `spec.title`.
pub const MAX_TITLE: usize = 256;
/// Longest description taken.
pub const MAX_DESCRIPTION: usize = 4096;
/// Longest fingerprint given.
pub const MAX_FINGERPRINT: usize = 64;
/// Longest source name.
pub const MAX_SOURCE: usize = 32;
/// Longest link.
pub const MAX_LINK: usize = 2048;

/// One signal: checked, with the reporter's text made safe (no control characters) and bounded.
#[derive(Clone, Debug, PartialEq)]
pub struct Feedback {
    pub source: String,
    pub reporter: String,
    /// Lowercase, a label value: it becomes the item's `kaizen.dev/component` label.
    pub component: String,
    pub title: String,
    pub description: Option<String>,
    pub impact: Option<Impact>,
    /// Given by the sender, if any; see [`Feedback::digest`].
    pub fingerprint: Option<String>,
    pub link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    source: String,
    reporter: String,
    component: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, alias = "severity")]
    impact: Option<Impact>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    link: Option<String>,
}

/// Why a body is not feedback this intake takes: one line for the 400's body.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed feedback: {}", self.0)
    }
}

fn one_line(s: &str) -> String {
    plain(s, 300)
}

/// Parses and checks a feedback body.
pub fn parse(body: &[u8]) -> Result<Feedback, Malformed> {
    let raw: Raw = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(|e| {
        let path = e.path().to_string();
        let inner = one_line(&e.inner().to_string());
        Malformed(if path == "." {
            inner
        } else {
            format!("field `{path}`: {inner}")
        })
    })?;
    let bad = |m: String| Err(Malformed(m));
    let source = raw.source.trim().to_ascii_lowercase();
    if source.is_empty()
        || source.len() > MAX_SOURCE
        || !source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad(format!(
            "source must have 1 to {MAX_SOURCE} letters, digits, '-' or '_' (survey, support, chat, developer, ...)"
        ));
    }
    let reporter = plain(raw.reporter.trim(), usize::MAX);
    if reporter.is_empty() || reporter.chars().count() > MAX_REPORTER_CHARS {
        return bad(format!("reporter must have 1 to {MAX_REPORTER_CHARS} characters"));
    }
    let component = raw.component.trim().to_ascii_lowercase();
    if !crate::policy::is_label_value(&component) {
        return bad(
            "component must have 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                .into(),
        );
    }
    let title = plain(raw.title.trim(), usize::MAX);
    if title.is_empty() || title.chars().count() > MAX_TITLE {
        return bad(format!("title must have 1 to {MAX_TITLE} characters"));
    }
    let description = raw.description.map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return bad(format!("description must have at most {MAX_DESCRIPTION} characters"));
    }
    let fingerprint = raw.fingerprint.map(|f| f.trim().to_string()).filter(|f| !f.is_empty());
    if fingerprint
        .as_ref()
        .is_some_and(|f| f.chars().count() > MAX_FINGERPRINT || f.chars().any(char::is_control))
    {
        return bad(format!(
            "fingerprint must have at most {MAX_FINGERPRINT} printable characters"
        ));
    }
    let link = raw.link.map(|l| l.trim().to_string()).filter(|l| !l.is_empty());
    if link.as_ref().is_some_and(|l| {
        l.len() > MAX_LINK
            || !(l.starts_with("https://") || l.starts_with("http://"))
            || l.chars().any(|c| c.is_control() || c.is_whitespace())
    }) {
        return bad(format!("link must be an http(s) URL of at most {MAX_LINK} characters"));
    }
    Ok(Feedback {
        source,
        reporter,
        component,
        title,
        description,
        impact: raw.impact,
        fingerprint,
        link,
    })
}

/// A title as a pain point's identity: lowercase words of letters and digits, one space apart, so
/// "Deploys are SLOW!" and "deploys are slow" are one pain point.
pub fn normalised_title(title: &str) -> String {
    title
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Feedback {
    /// The pain point's digest: of the fingerprint given, else of the component and the normalised
    /// title. Stable across repeats and restarts: it names the item.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        match &self.fingerprint {
            Some(f) => {
                h.update(b"fingerprint\0");
                h.update(f.as_bytes());
            }
            None => {
                h.update(b"component-title\0");
                h.update(self.component.as_bytes());
                h.update([0]);
                h.update(normalised_title(&self.title).as_bytes());
            }
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// The item a pain point lands on: `fb-<digest>`.
pub fn item_name(digest: &str) -> String {
    format!("fb-{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "source": "developer", "reporter": "alice@example.com", "component": "Deploys",
            "title": "Deploys are SLOW!", "description": "14 minutes for a one-line change",
            "impact": "high", "link": "https://chat.example/t/1"
        })
    }

    #[test]
    fn feedback_parses_and_normalises() {
        let f = parse(&body(sample())).unwrap();
        assert_eq!(f.component, "deploys");
        assert_eq!(f.impact, Some(Impact::High));
        let mut v = sample();
        v["title"] = "  deploys are slow ".into();
        v["component"] = "deploys".into();
        v["reporter"] = "bob".into();
        assert_eq!(parse(&body(v)).unwrap().digest(), f.digest(), "the same pain point");
        let mut v = sample();
        v["fingerprint"] = "form-q3-deploys".into();
        let given = parse(&body(v.clone())).unwrap();
        v["title"] = "something else entirely".into();
        assert_eq!(parse(&body(v)).unwrap().digest(), given.digest());
        assert_ne!(given.digest(), f.digest());
        let mut v = sample();
        v["severity"] = "critical".into();
        v.as_object_mut().unwrap().remove("impact");
        assert_eq!(parse(&body(v)).unwrap().impact, Some(Impact::Critical));
    }

    #[test]
    fn bad_feedback_says_why_in_one_line() {
        let cases: [(&str, serde_json::Value); 6] = [
            ("source", "a b".into()),
            ("reporter", "".into()),
            ("component", "-x".into()),
            ("title", "x".repeat(300).into()),
            ("link", "javascript:alert(1)".into()),
            ("impact", "huge".into()),
        ];
        for (field, value) in cases {
            let mut v = sample();
            v[field] = value;
            let err = parse(&body(v)).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
            assert!(!err.contains('\n'));
        }
        let err = parse(b"{\"source\": 1").unwrap_err().to_string();
        assert!(err.starts_with("malformed feedback:"), "{err}");
        let mut v = sample();
        v.as_object_mut().unwrap().remove("title");
        assert!(parse(&body(v)).unwrap_err().to_string().contains("title"));
    }

    #[test]
    fn the_reporter_loses_control_characters() {
        let mut v = sample();
        v["reporter"] = "eve\u{1b}[31m\u{0}".into();
        assert_eq!(parse(&body(v)).unwrap().reporter, "eve[31m");
    }
}
