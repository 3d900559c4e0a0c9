//! Value patterns (`exact`, `prefix*`, `*suffix`, `*`) and the per-field syntax checks.

use crate::spiffe_id::{
    is_path_segment_byte, is_trust_domain_byte, validate_path, validate_trust_domain, SpiffeId,
    SCHEME_PREFIX,
};

/// A parsed value pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern<'a> {
    /// `*`: any value (for principals: any authenticated peer).
    Any,
    Exact(&'a str),
    /// `prefix*`, holding `prefix`.
    Prefix(&'a str),
    /// `*suffix`, holding `suffix`.
    Suffix(&'a str),
}

impl<'a> Pattern<'a> {
    /// Splits a written value into its pattern kind; at most one `*`, at the start or the end.
    pub(crate) fn parse(s: &'a str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("empty value");
        }
        if s == "*" {
            return Ok(Pattern::Any);
        }
        match s.bytes().filter(|b| *b == b'*').count() {
            0 => Ok(Pattern::Exact(s)),
            1 => {
                if let Some(rest) = s.strip_prefix('*') {
                    Ok(Pattern::Suffix(rest))
                } else if let Some(rest) = s.strip_suffix('*') {
                    Ok(Pattern::Prefix(rest))
                } else {
                    Err("wildcard '*' is only allowed at the start or the end of a value")
                }
            }
            _ => Err("at most one wildcard '*' is allowed, at the start or the end of a value"),
        }
    }

    /// The literal text of the pattern (empty for `Any`).
    pub(crate) fn text(&self) -> &'a str {
        match self {
            Pattern::Any => "",
            Pattern::Exact(s) | Pattern::Prefix(s) | Pattern::Suffix(s) => s,
        }
    }
}

/// Strips an optional `spiffe://` so both principal spellings become Istio's `td/path` form.
pub(crate) fn principal_body(s: &str) -> &str {
    s.strip_prefix(SCHEME_PREFIX).unwrap_or(s)
}

/// Validates a principal pattern (`td/path` or `spiffe://td/path`, with wildcards).
pub(crate) fn check_principal(value: &str) -> Result<(), String> {
    let pattern = Pattern::parse(value).map_err(str::to_owned)?;
    match pattern {
        Pattern::Any => Ok(()),
        Pattern::Exact(s) => {
            let body = principal_body(s);
            SpiffeId::parse(&format!("{SCHEME_PREFIX}{body}"))
                .map(|_| ())
                .map_err(|e| format!("invalid SPIFFE ID: {e}"))
        }
        Pattern::Prefix(s) => {
            let body = principal_body(s);
            match body.split_once('/') {
                None => {
                    if body.bytes().all(is_trust_domain_byte) {
                        Ok(())
                    } else {
                        Err("invalid principal prefix: the trust domain allows only a-z, 0-9, '.', '-' and '_'".into())
                    }
                }
                Some((td, path)) => {
                    validate_trust_domain(td)
                        .map_err(|e| format!("invalid trust domain in principal: {e}"))?;
                    // Some valid ID must start with the prefix: complete it with one character.
                    validate_path(&format!("/{path}x"))
                        .map_err(|e| format!("invalid principal prefix: {e}"))
                }
            }
        }
        Pattern::Suffix(s) => {
            if s.contains("://") {
                return Err(
                    "wildcard '*' is only allowed at the start or the end of a value".into(),
                );
            }
            check_id_suffix(s).map_err(|e| format!("invalid principal suffix: {e}"))
        }
    }
}

/// Some valid SPIFFE ID (in `td/path` form) ends with `suffix`.
fn check_id_suffix(suffix: &str) -> Result<(), String> {
    let (head, tail) = match suffix.find('/') {
        Some(i) => suffix.split_at(i),
        None => (suffix, ""),
    };
    if let Some(c) = head
        .chars()
        .find(|c| !c.is_ascii() || !is_path_segment_byte(*c as u8))
    {
        return Err(format!("invalid character {c:?}"));
    }
    validate_path(tail).map_err(|e| e.to_string())
}

/// Validates a namespace pattern (a path segment).
pub(crate) fn check_namespace(value: &str) -> Result<(), String> {
    let pattern = Pattern::parse(value).map_err(str::to_owned)?;
    let text = pattern.text();
    if pattern != Pattern::Any && text.is_empty() {
        return Err("empty namespace".into());
    }
    if let Some(c) = text
        .chars()
        .find(|c| !c.is_ascii() || !is_path_segment_byte(*c as u8))
    {
        return Err(format!(
            "invalid namespace: character {c:?} cannot appear in a SPIFFE ID path segment"
        ));
    }
    Ok(())
}

/// Validates a trust-domain pattern.
pub(crate) fn check_trust_domain_pattern(value: &str) -> Result<(), String> {
    let pattern = Pattern::parse(value).map_err(str::to_owned)?;
    match pattern {
        Pattern::Any => Ok(()),
        Pattern::Exact(s) => {
            validate_trust_domain(s).map_err(|e| format!("invalid trust domain: {e}"))
        }
        Pattern::Prefix(s) | Pattern::Suffix(s) => {
            match s
                .chars()
                .find(|c| !c.is_ascii() || !is_trust_domain_byte(*c as u8))
            {
                Some(c) => Err(format!("invalid trust domain: character {c:?}")),
                None => Ok(()),
            }
        }
    }
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Validates an HTTP method pattern.
pub(crate) fn check_method(value: &str) -> Result<(), String> {
    let pattern = Pattern::parse(value).map_err(str::to_owned)?;
    if pattern != Pattern::Any && pattern.text().is_empty() {
        return Err("invalid method: empty".into());
    }
    if !pattern.text().bytes().all(is_tchar) {
        return Err("invalid method: only HTTP token characters are allowed".into());
    }
    Ok(())
}

fn visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Validates a path pattern.
pub(crate) fn check_path(value: &str) -> Result<(), String> {
    let pattern = Pattern::parse(value).map_err(str::to_owned)?;
    let text = pattern.text();
    if !visible_ascii(text) {
        return Err("invalid path: only visible ASCII characters are allowed".into());
    }
    if text.contains(['?', '#']) {
        return Err("invalid path: paths are matched without query string or fragment".into());
    }
    match pattern {
        Pattern::Exact(s) | Pattern::Prefix(s) if !s.starts_with('/') => {
            Err("invalid path: must start with '/' (or '*' for a suffix)".into())
        }
        _ => Ok(()),
    }
}

/// Validates a host or SNI pattern (compared case-insensitively).
pub(crate) fn check_host(value: &str) -> Result<(), String> {
    let pattern = Pattern::parse(value).map_err(str::to_owned)?;
    let text = pattern.text();
    if !visible_ascii(text) || text.contains('/') {
        return Err(
            "invalid host: only visible ASCII characters other than '/' are allowed".into(),
        );
    }
    if let Some((_, port)) = text.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("hosts are matched without the port (the request's port is \
                        stripped): remove the port and use `ports`"
                .into());
        }
    }
    Ok(())
}

/// A `hosts` value as it is matched: the request host is lower case without port or
/// trailing dot (`crate::http::normalize_host`), so `example.com:*` (Istio's way to
/// match any port) and `example.com.` mean `example.com`.
pub(crate) fn host_pattern(value: &str) -> &str {
    let v = value.strip_suffix(":*").unwrap_or(value);
    v.strip_suffix('.').filter(|r| !r.is_empty()).unwrap_or(v)
}

/// Validates a header value pattern.
pub(crate) fn check_header_value(value: &str) -> Result<(), String> {
    let pattern = Pattern::parse(value).map_err(str::to_owned)?;
    if pattern.text().chars().any(|c| c.is_control()) {
        return Err("invalid header value: control characters are not allowed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_kinds() {
        assert_eq!(Pattern::parse("*"), Ok(Pattern::Any));
        assert_eq!(Pattern::parse("a"), Ok(Pattern::Exact("a")));
        assert_eq!(Pattern::parse("a*"), Ok(Pattern::Prefix("a")));
        assert_eq!(Pattern::parse("*a"), Ok(Pattern::Suffix("a")));
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("a*b").is_err());
        assert!(Pattern::parse("**").is_err());
        assert!(Pattern::parse("*a*").is_err());
    }

    #[test]
    fn principals() {
        for ok in [
            "*",
            "cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b",
            "cluster.local/ns/a/*",
            "cluster.local/*",
            "spiffe://cluster.local/ns/a/sa/b*",
            "clus*",
            "spiffe://*",
            "*/sa/admin",
            "*admin",
            "*.local/ns/a/sa/b",
        ] {
            assert_eq!(check_principal(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "cluster.local/ns/*/sa/b",
            "*cluster*",
            "Cluster.local/ns/a",
            "cluster.local",
            "cluster.local/ns//x",
            "cluster.local/ns/a/",
            "spiffe://cluster.local/ns/a/sa/b/",
            "cluster.local/ns//*",
            "*spiffe://x/y",
            "*/ns/a/",
            "Clu*",
            "SPIFFE://cluster.local/ns/a/sa/b",
        ] {
            assert!(check_principal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_fields() {
        assert!(check_path("/api/*").is_ok());
        assert!(check_path("*.css").is_ok());
        assert!(check_path("api").is_err());
        assert!(check_path("/a?b").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_method("GET").is_ok());
        assert!(check_method("G T").is_err());
        assert!(check_host("Example.COM:*").is_ok());
        assert!(check_host("a/b").is_err());
        assert!(check_host("example.com:8080").is_err());
        assert!(check_host("*:8080").is_err());
        assert_eq!(host_pattern("example.com:*"), "example.com");
        assert_eq!(host_pattern("example.com."), "example.com");
        assert_eq!(host_pattern("*.example.com.:*"), "*.example.com");
        assert_eq!(host_pattern("*"), "*");
        assert!(check_namespace("prod-*").is_ok());
        assert!(check_namespace("a/b").is_err());
        assert!(check_trust_domain_pattern("example.org").is_ok());
        assert!(check_trust_domain_pattern("Example.org").is_err());
        assert!(check_trust_domain_pattern("*.example.org").is_ok());
    }
}
