//! Human durations as users write them in manifests and the policy: `30s`, `15m`, `2h`, `7d`, `4w`,
//! and combinations such as `1h30m`.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The CEL pattern the apiserver checks, kept next to the parser so the two cannot drift apart.
pub const DURATION_PATTERN: &str = "^([0-9]+(s|m|h|d|w))+$";
const DURATION_MESSAGE: &str = "must be a duration such as 30s, 15m, 2h, 7d, 4w or 1h30m";

/// A CEL expression for the number of seconds in the duration string `field` (already checked
/// against [`DURATION_PATTERN`] by its own rule), so a manifest can bound a duration at admission:
/// CEL's own durations know neither days nor weeks.
pub fn cel_seconds(field: &str) -> String {
    format!(
        "{field}.findAll('[0-9]+[smhdw]').map(p, int(p.substring(0, p.size() - 1)) * \
         (p.endsWith('w') ? 604800 : (p.endsWith('d') ? 86400 : (p.endsWith('h') ? 3600 : \
         (p.endsWith('m') ? 60 : 1))))).sum()"
    )
}

/// A CEL rule: the optional duration `name` of `self` is within `[min, max]`.
pub fn cel_bounded(name: &str, min: Duration, max: Duration) -> String {
    format!(
        "!has(self.{name}) || ({secs} >= {min} && {secs} <= {max})",
        secs = cel_seconds(&format!("self.{name}")),
        min = min.as_secs(),
        max = max.as_secs()
    )
}

/// A non-negative span of time with one-second resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    seconds: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {DURATION_MESSAGE}")]
pub struct ParseDurationError {
    input: String,
}

impl Duration {
    pub const fn from_secs(seconds: i64) -> Self {
        Self { seconds }
    }

    pub const fn as_secs(self) -> i64 {
        self.seconds
    }

    pub fn as_signed(self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(self.seconds)
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds.max(0) as u64)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError {
            input: input.to_string(),
        };
        if input.is_empty() {
            return Err(err());
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        for c in input.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(err()),
            };
            if digits.is_empty() {
                return Err(err());
            }
            let n: i64 = digits.parse().map_err(|_| err())?;
            total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(err)?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(err());
        }
        Ok(Self { seconds: total })
    }
}

impl fmt::Display for Duration {
    /// Canonical form, largest units first (`90m` prints as `1h30m`); zero prints as `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.seconds;
        if rest <= 0 {
            return write!(f, "{}s", rest.max(0));
        }
        for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{}", rest / size, unit)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{DURATION_PATTERN}')"),
                "message": DURATION_MESSAGE,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_combined_units() {
        let cases = [
            ("30s", 30),
            ("15m", 900),
            ("2h", 7_200),
            ("7d", 604_800),
            ("4w", 2_419_200),
            ("1h30m", 5_400),
            ("1d2h3m4s", 93_784),
            ("0s", 0),
        ];
        for (input, secs) in cases {
            assert_eq!(input.parse::<Duration>().unwrap().as_secs(), secs, "{input}");
        }
    }

    #[test]
    fn rejects_malformed_input() {
        for input in [
            "",
            "5",
            "h",
            "1.5h",
            "-1h",
            "1H",
            "1h 30m",
            "1y",
            "99999999999999999999s",
        ] {
            assert!(input.parse::<Duration>().is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn prints_canonical_form_that_parses_back() {
        for (secs, text) in [(5_400, "1h30m"), (0, "0s"), (694_861, "1w1d1h1m1s"), (60, "1m")] {
            let d = Duration::from_secs(secs);
            assert_eq!(d.to_string(), text);
            assert_eq!(text.parse::<Duration>().unwrap(), d);
        }
    }
}
