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
//!
//! Errors are reported in this order (the first rule broken wins):
//! empty input, ID longer than 2048 bytes, wrong scheme, then the input is scanned left to
//! right: a bad trust-domain character, a missing trust domain, a trust domain longer than
//! 255 bytes, then path errors in the order they occur (as go-spiffe does: an empty or dot
//! segment is reported when the `/` that ends it is reached, a bad character where it
//! stands; `spiffe://td/` is a trailing slash), and last a missing path for workload IDs.
//!
//! A parsed [`SpiffeId`] holds its text in one `String`; the trust domain and path are
//! borrowed views into it.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
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
    #[error("scheme is missing or invalid: a SPIFFE ID starts with `spiffe://` (lower case)")]
    WrongScheme,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error(
        "trust domain has an invalid character {0:?}{hint}: only a-z, 0-9, '.', '-' and '_' are allowed",
        hint = td_char_hint(*.0)
    )]
    BadTrustDomainChar(char),
    #[error("trust domain is longer than 255 bytes ({0} bytes)")]
    TrustDomainTooLong(usize),
    #[error(
        "path has an invalid character {0:?}{hint}: only a-z, A-Z, 0-9, '.', '-' and '_' are allowed in segments",
        hint = path_char_hint(*.0)
    )]
    BadPathChar(char),
    #[error("path has an empty segment ('//')")]
    EmptySegment,
    #[error("path has a '.' or '..' segment")]
    DotSegment,
    #[error("path has a trailing '/'")]
    TrailingSlash,
    #[error("SPIFFE ID is longer than 2048 bytes ({0} bytes)")]
    TooLong(usize),
    #[error("workload SPIFFE ID has no path")]
    MissingPath,
    #[error("path does not start with '/'")]
    NoLeadingSlash,
}

fn td_char_hint(c: char) -> &'static str {
    match c {
        ':' => " (a port is not allowed)",
        '@' => " (userinfo is not allowed)",
        '%' => " (percent-encoding is not allowed)",
        '?' => " (a query is not allowed)",
        '#' => " (a fragment is not allowed)",
        'A'..='Z' => " (upper case is not allowed)",
        _ => "",
    }
}

fn path_char_hint(c: char) -> &'static str {
    match c {
        '%' => " (percent-encoding is not allowed)",
        '?' => " (a query is not allowed)",
        '#' => " (a fragment is not allowed)",
        _ => "",
    }
}

/// A SPIFFE trust domain name such as `cluster.local`.
///
/// Equality, ordering and hashing are those of [`TrustDomain::as_str`].
pub struct TrustDomain {
    /// The bare name, or the whole SPIFFE ID text when this is the trust domain of a
    /// [`SpiffeId`] (so an ID needs one allocation, not two).
    buf: String,
    /// `buf[start..end]` is the name.
    start: usize,
    end: usize,
}

impl TrustDomain {
    /// Parses a bare trust domain name (`example.org`), or the SPIFFE ID of a trust domain
    /// (`spiffe://example.org`). Unlike go-spiffe, an ID with a path is not accepted here:
    /// `spiffe://example.org/x` is rejected with `BadTrustDomainChar('/')`.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        // Like go-spiffe: anything that looks like a URI is parsed as a SPIFFE ID, so
        // `SPIFFE://x` or `http://x` report a wrong scheme rather than a bad character.
        if name.contains(":/") {
            let td_end = validate_id(name.as_bytes())?;
            if td_end != name.len() {
                return Err(SpiffeIdError::BadTrustDomainChar('/'));
            }
            let bare = name.get(SCHEME_PREFIX.len()..).unwrap_or_default();
            return Ok(TrustDomain::from_validated(bare.to_owned()));
        }
        validate_trust_domain(name)?;
        Ok(TrustDomain::from_validated(name.to_owned()))
    }

    fn from_validated(name: String) -> Self {
        let end = name.len();
        TrustDomain {
            buf: name,
            start: 0,
            end,
        }
    }

    /// The trust domain name, e.g. `cluster.local`.
    pub fn as_str(&self) -> &str {
        // start/end are char boundaries: the text is ASCII.
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// The SPIFFE ID of the trust domain itself, e.g. `spiffe://cluster.local`.
    pub fn id_string(&self) -> String {
        let mut s = String::with_capacity(SCHEME_PREFIX.len() + self.as_str().len());
        s.push_str(SCHEME_PREFIX);
        s.push_str(self.as_str());
        s
    }
}

impl Clone for TrustDomain {
    /// Clones only the name (not the whole ID text a trust domain may be a view into).
    fn clone(&self) -> Self {
        TrustDomain::from_validated(self.as_str().to_owned())
    }
}

/// The traits of a type that is a validated view of text: Debug, equality, ordering, hashing,
/// borrowing and Display are those of `as_str()`, and `FromStr` is `$parse`.
macro_rules! str_view_impls {
    ($t:ident, $parse:path) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($t)).field(&self.as_str()).finish()
            }
        }
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }
        impl Eq for $t {}
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> Ordering {
                self.as_str().cmp(other.as_str())
            }
        }
        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
        impl Borrow<str> for $t {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = SpiffeIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $parse(s)
            }
        }
    };
}
str_view_impls!(TrustDomain, TrustDomain::new);

/// A workload SPIFFE ID: `spiffe://<trust-domain>/<path>` with a non-empty path.
///
/// Equality, ordering and hashing are those of [`SpiffeId::as_str`] (the whole ID text).
pub struct SpiffeId {
    /// `td.buf` is the whole ID text; the path is `td.buf[td.end..]`.
    td: TrustDomain,
}

impl SpiffeId {
    /// Parses a workload SPIFFE ID. The path must be non-empty.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        let td_end = validate_workload_id(id.as_bytes())?;
        Ok(SpiffeId::from_validated(id.to_owned(), td_end))
    }

    /// Parses a workload SPIFFE ID from raw bytes (e.g. a proxy-wasm property value).
    /// A byte that is not valid UTF-8 is reported as the character U+FFFD.
    pub fn parse_bytes(id: &[u8]) -> Result<Self, SpiffeIdError> {
        let td_end = validate_workload_id(id)?;
        // A valid ID is ASCII, so this cannot fail; fail closed anyway rather than panic.
        let text = std::str::from_utf8(id)
            .map_err(|_| SpiffeIdError::BadPathChar(char::REPLACEMENT_CHARACTER))?;
        Ok(SpiffeId::from_validated(text.to_owned(), td_end))
    }

    /// Builds a workload ID from a trust domain and a path (`/ns/x/sa/y`). The path must
    /// start with `/` and follow the path rules; it is not normalised.
    pub fn from_parts(td: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        let len = SCHEME_PREFIX.len() + td.as_str().len() + path.len();
        if len > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong(len));
        }
        validate_path(path)?;
        if path.is_empty() {
            return Err(SpiffeIdError::MissingPath);
        }
        let mut s = String::with_capacity(len);
        s.push_str(SCHEME_PREFIX);
        s.push_str(td.as_str());
        s.push_str(path);
        Ok(SpiffeId::from_validated(
            s,
            SCHEME_PREFIX.len() + td.as_str().len(),
        ))
    }

    fn from_validated(text: String, td_end: usize) -> Self {
        SpiffeId {
            td: TrustDomain {
                buf: text,
                start: SCHEME_PREFIX.len(),
                end: td_end,
            },
        }
    }

    /// The trust domain of this ID.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The path with its leading `/`, e.g. `/ns/default/sa/web`.
    pub fn path(&self) -> &str {
        self.td.buf.get(self.td.end..).unwrap_or_default()
    }

    /// The whole ID, e.g. `spiffe://cluster.local/ns/default/sa/web` (no allocation).
    pub fn as_str(&self) -> &str {
        &self.td.buf
    }

    /// The Kubernetes namespace of an Istio-style ID: `Some(ns)` when the path's first two
    /// segments are `ns` and `<ns>` (`/ns/<ns>/sa/<sa>`).
    pub fn namespace(&self) -> Option<&str> {
        let mut segs = self.path().strip_prefix('/')?.split('/');
        match (segs.next(), segs.next()) {
            (Some("ns"), Some(ns)) => Some(ns),
            _ => None,
        }
    }

    /// The ID in Istio's principal form, `<td>/<path>` without the scheme.
    pub fn principal(&self) -> String {
        self.principal_str().to_owned()
    }

    /// Like [`SpiffeId::principal`], borrowed (no allocation).
    pub fn principal_str(&self) -> &str {
        self.td.buf.get(SCHEME_PREFIX.len()..).unwrap_or_default()
    }
}

impl Clone for SpiffeId {
    fn clone(&self) -> Self {
        SpiffeId::from_validated(self.td.buf.clone(), self.td.end)
    }
}

str_view_impls!(SpiffeId, SpiffeId::parse);

/// Is `b` allowed in a trust domain name? (`[a-z0-9._-]`)
pub fn is_trust_domain_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

/// Is `b` allowed in a path segment? (`[a-zA-Z0-9._-]`)
pub fn is_path_segment_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

/// The character starting at byte `i` of `s`, for error messages; U+FFFD if `s` is not
/// valid UTF-8 there.
fn char_at(s: &[u8], i: usize) -> char {
    s.get(i..)
        .and_then(|rest| rest.utf8_chunks().next())
        .and_then(|chunk| chunk.valid().chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Scans a trust domain at the start of `s`, up to the first `/` when `stop_at_slash`,
/// else to the end. Returns its length.
fn scan_trust_domain(s: &[u8], stop_at_slash: bool) -> Result<usize, SpiffeIdError> {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'/' && stop_at_slash {
            break;
        }
        if !is_trust_domain_byte(b) {
            return Err(SpiffeIdError::BadTrustDomainChar(char_at(s, i)));
        }
        i += 1;
    }
    if i == 0 {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if i > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong(i));
    }
    Ok(i)
}

/// Checks one complete path segment (the bytes between two `/`, characters already checked).
fn check_segment(seg: &[u8]) -> Result<(), SpiffeIdError> {
    match seg {
        b"" => Err(SpiffeIdError::EmptySegment),
        b"." | b".." => Err(SpiffeIdError::DotSegment),
        _ => Ok(()),
    }
}

fn scan_path(path: &[u8]) -> Result<(), SpiffeIdError> {
    let Some((&first, body)) = path.split_first() else {
        return Ok(());
    };
    if first != b'/' {
        return Err(SpiffeIdError::NoLeadingSlash);
    }
    let mut seg_start = 0;
    for (i, &b) in body.iter().enumerate() {
        if b == b'/' {
            check_segment(&body[seg_start..i])?;
            seg_start = i + 1;
        } else if !is_path_segment_byte(b) {
            return Err(SpiffeIdError::BadPathChar(char_at(body, i)));
        }
    }
    match &body[seg_start..] {
        b"" => Err(SpiffeIdError::TrailingSlash),
        last => check_segment(last),
    }
}

/// Validates a whole SPIFFE ID (trust-domain IDs included); returns the end of the trust
/// domain (where the path starts).
fn validate_id(id: &[u8]) -> Result<usize, SpiffeIdError> {
    if id.is_empty() {
        return Err(SpiffeIdError::Empty);
    }
    if id.len() > MAX_SPIFFE_ID_LEN {
        return Err(SpiffeIdError::TooLong(id.len()));
    }
    let rest = id
        .strip_prefix(SCHEME_PREFIX.as_bytes())
        .ok_or(SpiffeIdError::WrongScheme)?;
    let td_len = scan_trust_domain(rest, true)?;
    scan_path(&rest[td_len..])?;
    Ok(SCHEME_PREFIX.len() + td_len)
}

fn validate_workload_id(id: &[u8]) -> Result<usize, SpiffeIdError> {
    let td_end = validate_id(id)?;
    if td_end == id.len() {
        return Err(SpiffeIdError::MissingPath);
    }
    Ok(td_end)
}

/// Validates a bare trust domain name (no scheme).
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    scan_trust_domain(td.as_bytes(), false).map(|_| ())
}

/// Validates a SPIFFE ID path: empty, or `/seg(/seg)*`.
pub fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    scan_path(path.as_bytes())
}

#[cfg(test)]
mod tests;
