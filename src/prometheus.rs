//! A small Prometheus HTTP API client: instant and range queries, and the query templates canaries use.
//!
//! Query failures are a value (`QueryError`), not a crate `Error`: a canary counts them as analysis
//! errors and an ActionItem shows them in its condition, and neither may treat them as a verdict.

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

/// Why a query produced no usable answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus at {address} is unreachable: {message}")]
    Unreachable { address: String, message: String },
    #[error("Prometheus at {address} answered HTTP {status}: {message}")]
    Http {
        address: String,
        status: u16,
        message: String,
    },
    #[error("Prometheus rejected the query ({kind}): {message}")]
    Rejected { kind: String, message: String },
    #[error("Prometheus answered something Kaizen cannot read: {0}")]
    Decode(String),
}

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

fn parse_value(s: &str) -> Result<f64, QueryError> {
    // Prometheus spells special floats its own way.
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse()
            .map_err(|_| QueryError::Decode(format!("value {s:?} is not a number"))),
    }
}

impl Prometheus {
    /// A client whose every request gives up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("a TLS backend is compiled in");
        Self { http }
    }

    async fn get(&self, address: &str, path: &str, params: &[(&str, String)]) -> Result<Data, QueryError> {
        let url = format!("{}/api/v1/{path}", address.trim_end_matches('/'));
        let resp = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .map_err(|e| QueryError::Unreachable {
                address: address.to_string(),
                message: without_url(&e),
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| QueryError::Unreachable {
            address: address.to_string(),
            message: without_url(&e),
        })?;
        // Prometheus reports bad queries as 400/422 with a JSON body that says why; prefer that message.
        match serde_json::from_slice::<Envelope>(&body) {
            Ok(env) if env.status == "success" => env
                .data
                .ok_or_else(|| QueryError::Decode("success without data".into())),
            Ok(env) => Err(QueryError::Rejected {
                kind: env.error_type.unwrap_or_else(|| "error".into()),
                message: env.error.unwrap_or_default(),
            }),
            Err(_) if !status.is_success() => Err(QueryError::Http {
                address: address.to_string(),
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
            Err(e) => Err(QueryError::Decode(e.to_string())),
        }
    }

    /// Evaluates `query` now. A scalar result comes back as one unlabelled sample.
    pub async fn instant(&self, address: &str, query: &str) -> Result<Vec<Sample>, QueryError> {
        self.instant_at(address, query, None).await
    }

    /// Evaluates `query` at `time` (now when `None`): a past instant is answered from history.
    pub async fn instant_at(
        &self,
        address: &str,
        query: &str,
        time: Option<Timestamp>,
    ) -> Result<Vec<Sample>, QueryError> {
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = time {
            params.push(("time", format!("{:.3}", t.as_millisecond() as f64 / 1000.0)));
        }
        match self.get(address, "query", &params).await? {
            Data::Vector(items) => items
                .into_iter()
                .map(|i| {
                    Ok(Sample {
                        labels: i.metric,
                        value: parse_value(&i.value.1)?,
                    })
                })
                .collect(),
            Data::Scalar((_, v)) => Ok(vec![Sample {
                labels: Default::default(),
                value: parse_value(&v)?,
            }]),
            Data::Matrix(_) | Data::String(_) => Err(QueryError::Decode(
                "an instant query must return a vector or a scalar".into(),
            )),
        }
    }

    /// Evaluates `query` at every `step` from `start` to `end`.
    pub async fn range(
        &self,
        address: &str,
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
        match self.get(address, "query_range", &params).await? {
            Data::Matrix(items) => items
                .into_iter()
                .map(|i| {
                    Ok(Series {
                        labels: i.metric,
                        values: i.values.iter().map(|(_, v)| parse_value(v)).collect::<Result<_, _>>()?,
                    })
                })
                .collect(),
            _ => Err(QueryError::Decode("a range query must return a matrix".into())),
        }
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
            QueryError::Decode(_) => false,
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
        assert!(parse_value("x").is_err());
    }
}
