//! The allow-list of metric sources, pure: which Prometheus addresses an object may make the operator
//! query. A tenant who can create a Canary or an ActionItem names an address; without this check the
//! operator would send requests wherever the tenant points it (an internal admin endpoint, the cloud's
//! metadata server) and show the answer back in the object's status.
//!
//! An entry is a URL prefix: scheme, host and port must equal the address's (after the URL parser's
//! normalisation: lowercase scheme and host, default ports made explicit); the address's path must
//! equal the entry's or continue it after a `/`, so `/prom` allows `/prom/eu` and never `/prometheus`.

use reqwest::Url;

/// The condition reason of an object that names an address outside the allow-list.
pub const ADDRESS_NOT_ALLOWED: &str = "AddressNotAllowed";

/// An address the policy allows, normalised: the only form the Prometheus client accepts, so no
/// request goes out unchecked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedAddress(Url);

impl AllowedAddress {
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// `host[:port]`: all of the address that errors may show (its path may carry a secret).
    pub fn host(&self) -> String {
        host_of(&self.0)
    }
}

fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Parses an address or an allow-list entry: an absolute http(s) URL with a host and neither
/// credentials, query nor fragment (they would ride along on every request, or change its meaning).
pub fn parse(text: &str) -> Result<Url, &'static str> {
    let url = Url::parse(text.trim()).map_err(|_| "it is not a URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("only http:// and https:// are allowed");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials (user@) in the URL are refused");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a query (?) or fragment (#) is refused");
    }
    // Percent-encoded separators look like one segment here and may be decoded into several by the
    // server, escaping the prefix.
    let path = url.path().to_ascii_lowercase();
    if ["%2f", "%5c", "%2e"].iter().any(|e| path.contains(e)) {
        return Err("an encoded '/', '\\' or '.' in the path is refused");
    }
    Ok(url)
}

fn trimmed_path(url: &Url) -> &str {
    url.path().trim_end_matches('/')
}

/// Whether `address` lies under the prefix `entry`.
fn under(entry: &Url, address: &Url) -> bool {
    let (prefix, path) = (trimmed_path(entry), trimmed_path(address));
    entry.scheme() == address.scheme()
        && entry.host() == address.host()
        && entry.port_or_known_default() == address.port_or_known_default()
        && (path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')))
}

/// Checks `address` against `allowed` (entries that do not parse allow nothing: the policy's
/// validation refuses them at start-up). The error says why, for [`not_allowed`].
pub fn check<'a>(allowed: impl IntoIterator<Item = &'a str>, address: &str) -> Result<AllowedAddress, String> {
    let url = parse(address).map_err(str::to_string)?;
    if allowed
        .into_iter()
        .filter_map(|e| parse(e).ok())
        .any(|entry| under(&entry, &url))
    {
        Ok(AllowedAddress(url))
    } else {
        Err(format!("{} is not under any allowed prefix", host_of(&url)))
    }
}

/// The message of an object whose `field` names an address the policy refuses: what to change, and
/// where (the tenant usually cannot change the policy, and must know whom to ask).
pub fn not_allowed(field: &str, address: &str, why: &str) -> String {
    format!(
        "{field} names {:?}, which Kaizen does not query: {why}. Kaizen queries only prometheus.defaultAddress and \
         the URL prefixes in the policy key prometheus.allowedAddresses (chart value \
         config.prometheus.allowedAddresses); ask the operator's administrator to add it there, or leave {field} \
         out to use the default.",
        crate::text::plain(address, 200)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(allowed: &[&str], address: &str) -> bool {
        check(allowed.iter().copied(), address).is_ok()
    }

    #[test]
    fn scheme_host_and_port_must_match_exactly() {
        let list = ["http://prometheus.monitoring:9090"];
        assert!(ok(&list, "http://prometheus.monitoring:9090"));
        assert!(ok(&list, "http://prometheus.monitoring:9090/"));
        assert!(!ok(&list, "https://prometheus.monitoring:9090"));
        assert!(!ok(&list, "http://prometheus.monitoring:9091"));
        assert!(!ok(&list, "http://prometheus.monitoring"));
        assert!(!ok(&list, "http://prometheus.monitoring.evil.example:9090"));
        assert!(!ok(&list, "http://evil.example/prometheus.monitoring:9090"));
        assert!(!ok(&list, "http://127.0.0.1:18777/internal/admin"));
        // A default port written out or left out is the same port.
        assert!(ok(&["http://prom"], "http://prom:80/"));
        assert!(ok(&["https://prom:443"], "https://prom"));
        assert!(!ok(&["http://prom"], "http://prom:443"));
    }

    #[test]
    fn the_path_is_a_prefix_on_a_segment_boundary() {
        let list = ["http://h:9090/prom/"];
        assert!(ok(&list, "http://h:9090/prom"));
        assert!(ok(&list, "http://h:9090/prom/"));
        assert!(ok(&list, "http://h:9090/prom/eu"));
        assert!(ok(&list, "http://h:9090/prom/eu/"));
        assert!(!ok(&list, "http://h:9090/prometheus"));
        assert!(!ok(&list, "http://h:9090/"));
        assert!(!ok(&list, "http://h:9090/internal/admin"));
        // Dot segments are resolved before the comparison, and encoded ones are refused.
        assert!(!ok(&list, "http://h:9090/prom/../internal/admin"));
        assert!(!ok(&list, "http://h:9090/prom/%2e%2e/internal"));
        assert!(!ok(&list, "http://h:9090/prom/x%2F..%2F..%2Finternal"));
        assert!(!ok(&list, "http://h:9090/prom/..%5cinternal"));
        // A root entry allows every path of its origin.
        assert!(ok(&["http://h:9090"], "http://h:9090/any/path"));
        assert!(ok(&["http://h:9090/"], "http://h:9090/any/path"));
    }

    #[test]
    fn scheme_and_host_compare_without_case_the_path_with() {
        assert!(ok(
            &["http://Prometheus.Monitoring:9090"],
            "HTTP://PROMETHEUS.monitoring:9090"
        ));
        assert!(!ok(&["http://h/Prom"], "http://h/prom"));
    }

    #[test]
    fn credentials_queries_fragments_and_other_schemes_are_refused() {
        let list = ["http://h:9090"];
        let why = |a: &str| check(list, a).unwrap_err();
        assert!(why("http://user@h:9090").contains("credentials"));
        assert!(why("http://user:pw@h:9090/").contains("credentials"));
        assert!(why("http://h:9090@evil.example/").contains("credentials"));
        assert!(why("http://h:9090/?x=1").contains("query"));
        assert!(why("http://h:9090/#x").contains("fragment"));
        assert!(why("file:///etc/passwd").contains("http"));
        assert!(why("h:9090").contains("http"));
        assert!(why("not a url").contains("not a URL"));
        assert!(why("http://127.0.0.1:18777/x").contains("127.0.0.1:18777"));
        // An entry with credentials allows nothing.
        assert!(!ok(&["http://u@h:9090"], "http://h:9090"));
    }

    #[test]
    fn the_checked_address_is_normalised_and_shows_only_its_host() {
        let a = check(["http://h:9090"], "HTTP://H:9090/a/./b/../c").unwrap();
        assert_eq!(a.url().as_str(), "http://h:9090/a/c");
        assert_eq!(a.host(), "h:9090");
        assert_eq!(check(["https://h"], "https://h/x").unwrap().host(), "h");
    }

    #[test]
    fn the_message_names_the_field_and_the_policy_key() {
        let m = not_allowed("spec.outcome.address", "http://x/y", "why");
        assert!(m.contains("spec.outcome.address names \"http://x/y\""), "{m}");
        assert!(m.contains("prometheus.allowedAddresses"), "{m}");
    }
}
