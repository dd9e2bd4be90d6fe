//! A small Prometheus HTTP API client: instant and range queries, and the query templates canaries use.
//!
//! Query failures are a value (`QueryError`), not a crate `Error`: a canary counts them as analysis
//! errors and an ActionItem shows them in its condition, and neither may treat them as a verdict.

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use crate::{policy::addresses::AllowedAddress, text::plain};

/// Why a query produced no usable answer. It reaches statuses, Events and logs, so it carries nothing
/// the server chose to say, except the error type and (bounded) text of a Prometheus API error
/// document: an address may point at something that is not Prometheus, and its answer must not be
/// reflected back to whoever named it. The address appears as its host only (its path may be secret).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus at {host} is unreachable: {message}")]
    Unreachable { host: String, message: String },
    #[error("Prometheus at {host} answered HTTP {status}, not a Prometheus API response")]
    Http { host: String, status: u16 },
    #[error(
        "Prometheus at {host} answered with a redirect (HTTP {status}); Kaizen never follows redirects for metric queries: name the final address instead"
    )]
    Redirected { host: String, status: u16 },
    #[error("Prometheus rejected the query ({kind}): {message}")]
    Rejected { kind: String, message: String },
    #[error("Prometheus at {host} answered something Kaizen cannot read: {what}")]
    Decode { host: String, what: &'static str },
}

/// The error types of the Prometheus HTTP API: an error document with another one is not Prometheus'.
const ERROR_TYPES: [&str; 8] = [
    "timeout",
    "canceled",
    "execution",
    "bad_data",
    "internal",
    "unavailable",
    "not_found",
    "not_acceptable",
];
/// The longest Prometheus error text kept.
const MAX_ERROR_CHARS: usize = 300;
/// The largest answer read: a bigger one is refused rather than held in memory.
const MAX_BODY_BYTES: usize = 32 << 20;

/// One series of an instant query: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range query: its labels and the values over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: std::collections::BTreeMap<String, String>,
    pub values: Vec<f64>,
}

#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorItem>),
    Matrix(Vec<MatrixItem>),
    Scalar((f64, String)),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// A sample value, `None` when it is not a number (the value itself is never shown: see `QueryError`).
fn parse_value(s: &str) -> Option<f64> {
    // Prometheus spells special floats its own way.
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

impl Prometheus {
    /// A client whose every request gives up after `timeout` and never follows a redirect: a
    /// permitted address must not lead the operator to one the policy does not permit.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Self { http }
    }

    async fn get(&self, address: &AllowedAddress, path: &str, params: &[(&str, String)]) -> Result<Data, QueryError> {
        let host = address.host();
        let mut url = address.url().clone();
        url.set_path(&format!("{}/api/v1/{path}", url.path().trim_end_matches('/')));
        let unreachable = |e: reqwest::Error| QueryError::Unreachable {
            host: host.clone(),
            message: without_url(&e),
        };
        let mut resp = self.http.get(url).query(params).send().await.map_err(unreachable)?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(QueryError::Redirected {
                host,
                status: status.as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(QueryError::Decode {
                    host,
                    what: "the answer is larger than 32 MiB",
                });
            }
            body.extend_from_slice(&chunk);
        }
        decode(&host, status, &body)
    }

    /// Evaluates `query` now. A scalar result comes back as one unlabelled sample.
    pub async fn instant(&self, address: &AllowedAddress, query: &str) -> Result<Vec<Sample>, QueryError> {
        self.instant_at(address, query, None).await
    }

    /// Evaluates `query` at `time` (now when `None`): a past instant is answered from history.
    pub async fn instant_at(
        &self,
        address: &AllowedAddress,
        query: &str,
        time: Option<Timestamp>,
    ) -> Result<Vec<Sample>, QueryError> {
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = time {
            params.push(("time", format!("{:.3}", t.as_millisecond() as f64 / 1000.0)));
        }
        let not_a_number = || QueryError::Decode {
            host: address.host(),
            what: "a sample value is not a number",
        };
        match self.get(address, "query", &params).await? {
            Data::Vector(items) => items
                .into_iter()
                .map(|i| {
                    Ok(Sample {
                        labels: i.metric,
                        value: parse_value(&i.value.1).ok_or_else(not_a_number)?,
                    })
                })
                .collect(),
            Data::Scalar((_, v)) => Ok(vec![Sample {
                labels: Default::default(),
                value: parse_value(&v).ok_or_else(not_a_number)?,
            }]),
            Data::Matrix(_) | Data::String(_) => Err(QueryError::Decode {
                host: address.host(),
                what: "an instant query must return a vector or a scalar",
            }),
        }
    }

    /// Evaluates `query` at every `step` from `start` to `end`.
    pub async fn range(
        &self,
        address: &AllowedAddress,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<Vec<Series>, QueryError> {
        let params = [
            ("query", query.to_string()),
            ("start", format!("{:.3}", start.as_millisecond() as f64 / 1000.0)),
            ("end", format!("{:.3}", end.as_millisecond() as f64 / 1000.0)),
            ("step", format!("{:.3}", step.as_secs_f64().max(0.001))),
        ];
        let decode = |what| QueryError::Decode {
            host: address.host(),
            what,
        };
        match self.get(address, "query_range", &params).await? {
            Data::Matrix(items) => items
                .into_iter()
                .map(|i| {
                    Ok(Series {
                        labels: i.metric,
                        values: i
                            .values
                            .iter()
                            .map(|(_, v)| parse_value(v))
                            .collect::<Option<_>>()
                            .ok_or_else(|| decode("a sample value is not a number"))?,
                    })
                })
                .collect(),
            _ => Err(decode("a range query must return a matrix")),
        }
    }
}

/// What an answer says: the data of a Prometheus success document, the type and bounded text of a
/// Prometheus error document, or else only the HTTP status (see `QueryError`).
fn decode(host: &str, status: reqwest::StatusCode, body: &[u8]) -> Result<Data, QueryError> {
    let host = host.to_string();
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if env.status == "success" => env.data.ok_or(QueryError::Decode {
            host,
            what: "a success without data",
        }),
        Ok(Envelope {
            status: s,
            error_type: Some(kind),
            error: Some(message),
            ..
        }) if s == "error" && ERROR_TYPES.contains(&kind.as_str()) => Err(QueryError::Rejected {
            kind,
            message: plain(&message, MAX_ERROR_CHARS),
        }),
        _ if !status.is_success() => Err(QueryError::Http {
            host,
            status: status.as_u16(),
        }),
        _ => Err(QueryError::Decode {
            host,
            what: "the answer is not a Prometheus API response",
        }),
    }
}

/// What went wrong with an HTTP request, in words without its URL: reqwest's own message embeds the
/// full URL (query, or a webhook's secret path, included). Shared by every HTTP client here.
pub fn transport_failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// `transport_failure` plus the chain of underlying causes, which do not carry the URL.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = String::from(transport_failure(e));
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// Substitutes `{{ name }}` placeholders (spaces inside the braces optional). Unknown placeholders are
/// left as they are so Prometheus's parse error points at them.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let key = after[..close].trim();
                match vars.iter().find(|(k, _)| *k == key) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[open..open + 2 + close + 2]),
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A comparison such as `< 0.01` or `>= 99.9`, as ActionItem verification writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub op: Op,
    pub bound: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl QueryError {
    /// Whether asking again later may answer: the request never reached a verdict on the query.
    pub fn transient(&self) -> bool {
        match self {
            QueryError::Unreachable { .. } => true,
            QueryError::Http { status, .. } => *status >= 500 || *status == 429,
            QueryError::Rejected { kind, .. } => kind == "timeout" || kind == "unavailable" || kind == "internal",
            QueryError::Redirected { .. } | QueryError::Decode { .. } => false,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        };
        write!(f, "{op} {}", self.bound)
    }
}

impl Threshold {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (op, rest) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find_map(|(p, op)| s.strip_prefix(p).map(|r| (op, r)))?;
        let bound: f64 = rest.trim().parse().ok()?;
        bound.is_finite().then_some(Self { op, bound })
    }

    /// NaN never holds.
    pub fn holds(&self, v: f64) -> bool {
        match self.op {
            Op::Lt => v < self.bound,
            Op::Le => v <= self.bound,
            Op::Gt => v > self.bound,
            Op::Ge => v >= self.bound,
            Op::Eq => v == self.bound,
            Op::Ne => !v.is_nan() && v != self.bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_substitutes_known_placeholders_with_or_without_spaces() {
        let q = render(
            "rate(x{ns=\"{{ namespace }}\",pod=~\"{{target}}-.*\"}[{{ interval }}]) {{ other }}",
            &[("namespace", "shop"), ("target", "api-primary"), ("interval", "1m")],
        );
        assert_eq!(q, "rate(x{ns=\"shop\",pod=~\"api-primary-.*\"}[1m]) {{ other }}");
        assert_eq!(render("a {{ b", &[("b", "x")]), "a {{ b");
    }

    #[test]
    fn thresholds_parse_and_judge() {
        let t = Threshold::parse(" <= 0.01").unwrap();
        assert!(t.holds(0.01) && !t.holds(0.02) && !t.holds(f64::NAN));
        assert!(Threshold::parse(">=99.9").unwrap().holds(99.95));
        assert!(Threshold::parse("!= 0").unwrap().holds(1.0));
        assert!(!Threshold::parse("!= 0").unwrap().holds(f64::NAN));
        assert!(Threshold::parse("> -1e3").unwrap().holds(0.0));
        assert_eq!(Threshold::parse("~ 3"), None);
        assert_eq!(Threshold::parse("< abc"), None);
    }

    #[test]
    fn special_float_spellings_decode() {
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("+Inf").unwrap(), f64::INFINITY);
        assert_eq!(parse_value("0.25").unwrap(), 0.25);
        assert!(parse_value("x").is_none());
    }

    fn decoded(status: u16, body: &str) -> Result<(), QueryError> {
        decode("h:1", reqwest::StatusCode::from_u16(status).unwrap(), body.as_bytes()).map(|_| ())
    }

    #[test]
    fn only_a_prometheus_error_document_is_shown_and_bounded() {
        let long = "x".repeat(1000);
        let doc = format!(r#"{{"status":"error","errorType":"bad_data","error":"parse error: {long}"}}"#);
        let Err(QueryError::Rejected { kind, message }) = decoded(400, &doc) else {
            panic!("a Prometheus error document is Rejected")
        };
        assert_eq!(kind, "bad_data");
        assert!(
            message.starts_with("parse error: x") && message.chars().count() <= 300,
            "{message}"
        );
        // Anything else shows the status and the host, never the body.
        for (status, body) in [
            (403, "secret admin page"),
            (200, "secret admin page"),
            (
                200,
                r#"{"status":"success","data":{"resultType":"secret","result":"secret"}}"#,
            ),
            (500, r#"{"status":"error","errorType":"secret","error":"secret"}"#),
            (200, r#"{"status":"secret"}"#),
        ] {
            let e = decoded(status, body).unwrap_err();
            let text = e.to_string();
            assert!(!text.contains("secret"), "{status} {body}: {text}");
            assert!(text.contains("h:1"), "{text}");
        }
        assert!(matches!(decoded(403, "x"), Err(QueryError::Http { status: 403, .. })));
    }

    #[test]
    fn a_redirect_is_named_and_final() {
        let e = QueryError::Redirected {
            host: "h:1".into(),
            status: 302,
        };
        assert!(e.to_string().contains("redirect (HTTP 302)"), "{e}");
        assert!(!e.transient());
    }
}
