//! SPIFFE IDs and trust domains, parsed strictly per the SPIFFE ID specification
//! (go-spiffe's strict reading): nothing is case-folded or normalised.
//!
//! `spiffe://<trust-domain>/<path>`:
//! - scheme `spiffe`, lower case;
//! - trust domain: non-empty, `[a-z0-9._-]`, at most 255 bytes, no port, userinfo or
//!   percent-encoding;
//! - path: segments of `[a-zA-Z0-9._-]`, no empty, `.` or `..` segment, no trailing `/`,
//!   no percent-encoding, no query or fragment;
//! - the whole ID at most 2048 bytes.

use std::fmt;
use std::str::FromStr;

/// The URI scheme prefix of every SPIFFE ID.
pub const SCHEME_PREFIX: &str = "spiffe://";
/// Maximum length of a trust domain name in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// Maximum length of a whole SPIFFE ID in bytes.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// What is wrong with a SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    #[error("empty SPIFFE ID")]
    Empty,
    #[error("scheme is missing or invalid: a SPIFFE ID starts with `spiffe://`")]
    WrongScheme,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error("trust domain has an invalid character {0:?}: only a-z, 0-9, '.', '-' and '_' are allowed")]
    BadTrustDomainChar(char),
    #[error("trust domain is longer than 255 bytes ({0} bytes)")]
    TrustDomainTooLong(usize),
    #[error("path has an invalid character {0:?}: only a-z, A-Z, 0-9, '.', '-' and '_' are allowed in segments")]
    BadPathChar(char),
    #[error("path has an empty segment")]
    EmptySegment,
    #[error("path has a '.' or '..' segment")]
    DotSegment,
    #[error("path has a trailing '/'")]
    TrailingSlash,
    #[error("SPIFFE ID is longer than 2048 bytes ({0} bytes)")]
    TooLong(usize),
    #[error("workload SPIFFE ID has no path")]
    MissingPath,
}

/// A SPIFFE trust domain name such as `cluster.local`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name (`example.org`), or the SPIFFE ID of a trust domain
    /// (`spiffe://example.org`, no path).
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if let Some(rest) = name.strip_prefix(SCHEME_PREFIX) {
            let id = SpiffeId::parse_any(name)?;
            if !id.path().is_empty() {
                return Err(SpiffeIdError::BadTrustDomainChar('/'));
            }
            debug_assert_eq!(rest, id.trust_domain().as_str());
            return Ok(id.td);
        }
        validate_trust_domain(name)?;
        Ok(TrustDomain(name.to_owned()))
    }

    /// The trust domain name, e.g. `cluster.local`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself, e.g. `spiffe://cluster.local`.
    pub fn id_string(&self) -> String {
        format!("{SCHEME_PREFIX}{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::new(s)
    }
}

/// A workload SPIFFE ID: `spiffe://<trust-domain>/<path>` with a non-empty path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    td: TrustDomain,
    /// The path including its leading `/`; empty only for a trust-domain ID.
    path: String,
}

impl SpiffeId {
    /// Parses a workload SPIFFE ID. The path must be non-empty.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        let parsed = Self::parse_any(id)?;
        if parsed.path.is_empty() {
            return Err(SpiffeIdError::MissingPath);
        }
        Ok(parsed)
    }

    /// Builds a workload ID from a trust domain and a path (`/ns/x/sa/y`).
    pub fn from_parts(td: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        Self::parse(&format!("{SCHEME_PREFIX}{}{path}", td.as_str()))
    }

    /// Parses any SPIFFE ID, including a trust-domain ID with an empty path.
    fn parse_any(id: &str) -> Result<Self, SpiffeIdError> {
        if id.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong(id.len()));
        }
        let rest = id
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(SpiffeId {
            td: TrustDomain(td.to_owned()),
            path: path.to_owned(),
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The path with its leading `/`, e.g. `/ns/default/sa/web`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The Kubernetes namespace of an Istio-style ID (`/ns/<ns>/sa/<sa>`), if the path has one.
    pub fn namespace(&self) -> Option<&str> {
        let mut segs = self.path.strip_prefix('/')?.split('/');
        match (segs.next(), segs.next()) {
            (Some("ns"), Some(ns)) => Some(ns),
            _ => None,
        }
    }

    /// The ID in Istio's principal form, `<td>/<path>` without the scheme.
    pub fn principal(&self) -> String {
        format!("{}{}", self.td.as_str(), self.path)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME_PREFIX}{}{}", self.td.as_str(), self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

/// Is `b` allowed in a trust domain name?
pub fn is_trust_domain_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

/// Is `b` allowed in a path segment?
pub fn is_path_segment_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn first_bad_char(s: &str, ok: fn(u8) -> bool) -> Option<char> {
    s.chars().find(|c| !c.is_ascii() || !ok(*c as u8))
}

/// Validates a bare trust domain name.
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if let Some(c) = first_bad_char(td, is_trust_domain_byte) {
        return Err(SpiffeIdError::BadTrustDomainChar(c));
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong(td.len()));
    }
    Ok(())
}

/// Validates a SPIFFE ID path: empty, or `/seg(/seg)*`.
pub fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    let Some(body) = path.strip_prefix('/') else {
        // Callers split at the first '/', so a non-empty path always starts with one.
        return Err(SpiffeIdError::BadPathChar(path.chars().next().unwrap_or('?')));
    };
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            return Err(if i == last && i > 0 {
                SpiffeIdError::TrailingSlash
            } else {
                SpiffeIdError::EmptySegment
            });
        }
        if let Some(c) = first_bad_char(seg, is_path_segment_byte) {
            return Err(SpiffeIdError::BadPathChar(c));
        }
        if *seg == "." || *seg == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
    }
    Ok(())
}
