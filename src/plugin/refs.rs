//! How commands name an object, as kubectl accepts it: `canary/checkout`, `canary checkout` (two
//! arguments), or a bare `checkout` when exactly one kind has an object of that name in the namespace.

use super::{
    session::{Kind, Session, parse_ref},
    text::term,
};
use crate::{Error, Result};

/// A reference as typed, before the cluster is asked what a bare name means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ref {
    Typed(Kind, String),
    Bare(String),
}

fn bad_name(name: &str) -> bool {
    name.is_empty() || name.contains('/')
}

/// `KIND/NAME`, `KIND NAME` or `NAME`; anything else is a usage error, reported without a cluster.
pub fn parse(args: &[String]) -> Result<Ref> {
    match args {
        [one] if one.contains('/') => {
            let (kind, name) = parse_ref(one)?;
            Ok(Ref::Typed(kind, name))
        }
        [one] if !bad_name(one) => Ok(Ref::Bare(one.clone())),
        [kind, name] => match Kind::parse(kind) {
            Some(k) if !bad_name(name) => Ok(Ref::Typed(k, name.clone())),
            _ => Err(Error::Usage(format!(
                "expected KIND NAME (incident, actionitem or canary, then a name), got {:?} {:?}",
                term(kind, 100),
                term(name, 300)
            ))),
        },
        _ => Err(Error::Usage(
            "expected KIND/NAME, KIND NAME or NAME (incident, actionitem or canary)".into(),
        )),
    }
}

/// A reference that must name a Canary: `web`, `canary/web` or `canary web`.
pub fn parse_canary(args: &[String], verb: &str) -> Result<String> {
    match parse(args)? {
        Ref::Typed(Kind::Canary, name) | Ref::Bare(name) => Ok(name),
        Ref::Typed(kind, _) => Err(Error::Usage(format!(
            "{verb} acts on a Canary, not on an {}",
            kind.as_str()
        ))),
    }
}

/// The kind a bare name has in the namespace: exactly one kind must have an object of that name.
pub async fn resolve(s: &Session, r: Ref) -> Result<(Kind, String)> {
    let name = match r {
        Ref::Typed(kind, name) => return Ok((kind, name)),
        Ref::Bare(name) => name,
    };
    let mut found = Vec::new();
    for kind in Kind::ALL {
        if s.get_raw(kind, &name).await?.is_some() {
            found.push(kind);
        }
    }
    pick(&name, &s.namespace, &found)
}

/// The one kind found, else why not.
pub fn pick(name: &str, namespace: &str, found: &[Kind]) -> Result<(Kind, String)> {
    match found {
        [kind] => Ok((*kind, name.to_string())),
        [] => Err(Error::NotFound {
            kind: "Incident, ActionItem or Canary",
            name: name.to_string(),
            namespace: namespace.to_string(),
        }),
        many => Err(Error::Usage(format!(
            "{:?} is ambiguous in namespace {}: {}; name one of them",
            term(name, 253),
            term(namespace, 63),
            many.iter()
                .map(|k| format!("{}/{}", k.as_str().to_ascii_lowercase(), term(name, 253)))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn references_are_accepted_in_the_three_ways_kubectl_accepts_them() {
        assert_eq!(
            parse(&args(&["canary/checkout"])).unwrap(),
            Ref::Typed(Kind::Canary, "checkout".into())
        );
        assert_eq!(
            parse(&args(&["canary", "checkout"])).unwrap(),
            Ref::Typed(Kind::Canary, "checkout".into())
        );
        assert_eq!(
            parse(&args(&["kcanary", "checkout"])).unwrap(),
            Ref::Typed(Kind::Canary, "checkout".into())
        );
        assert_eq!(parse(&args(&["checkout"])).unwrap(), Ref::Bare("checkout".into()));
        for bad in [
            &["pod/web"][..],
            &["pod", "web"],
            &["canary", "a/b"],
            &["a", "b", "c"],
            &[],
        ] {
            assert!(matches!(parse(&args(bad)), Err(Error::Usage(_))), "{bad:?}");
        }
        assert!(matches!(
            parse_canary(&args(&["incident", "web"]), "pause"),
            Err(Error::Usage(_))
        ));
        assert_eq!(parse_canary(&args(&["web"]), "pause").unwrap(), "web");
    }

    #[test]
    fn a_bare_name_must_be_unambiguous() {
        assert_eq!(
            pick("web", "ns", &[Kind::Canary]).unwrap(),
            (Kind::Canary, "web".into())
        );
        assert!(matches!(pick("web", "ns", &[]), Err(Error::NotFound { .. })));
        let Err(Error::Usage(msg)) = pick("web", "ns", &[Kind::Incident, Kind::Canary]) else {
            panic!("two kinds must be a usage error")
        };
        assert!(msg.contains("incident/web, canary/web"), "{msg}");
    }
}
