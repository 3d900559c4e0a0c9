//! Request attributes in the form the policy compares: the normal-form check for `:path`, the
//! method token check, the host a `hosts` rule sees, and the view of a header the policy reads.
//!
//! These are the filter's defence in depth. The shipped Envoy configurations already normalize
//! paths and hosts and reject headers with underscores; if an Envoy is configured without
//! those options, a request whose attributes could be read two ways (by the policy one way,
//! by the upstream another) is refused instead of being matched on a form the upstream does
//! not serve.
//!
//! # Normal form of a path
//!
//! The check looks at the path part of `:path` (everything before the first `?`; the query
//! string is not checked and never matched by `paths` rules). The path part is in normal form
//! when (RFC 3986 section 3.3 and 6.2.2, tightened):
//!
//! 1. it starts with `/` (origin form);
//! 2. every byte is printable ASCII (`0x21..=0x7E`): no space, control character or raw
//!    non-ASCII byte;
//! 3. it has no `\` (servers on Windows, and some frameworks, treat it as `/`), no `#`
//!    (a fragment is never sent) and no `;` (a path parameter, which Tomcat, Jetty and Spring
//!    strip from a segment before routing);
//! 4. no segment is empty (`//`), except the last one (a trailing `/`);
//! 5. no segment is `.` or `..` (RFC 3986 section 5.2.4 removes them);
//! 6. every `%` starts a complete escape `%XY` of two hexadecimal digits, and no escape
//!    encodes an unreserved character (`A-Z a-z 0-9 - . _ ~`, which RFC 3986 section 6.2.2.2
//!    says must be decoded), `/` or `\` (`%2F`, `%5C`, any case). Other escapes (`%20`, `%25`,
//!    `%3A`, …) are allowed, in either case of hex digit;
//! 7. no encoded `%` (`%25`) is followed by two hex digits that would make it, decoded once
//!    more, one of the escapes refused above (`%252e`, `%252F`, `%255c`, `%2561`, …): a server
//!    or framework that decodes twice would otherwise see `.`, `/` or `\`.
//!
//! Envoy's `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action` take care
//! of dot segments, `//` and escaped slashes; they do not remove `;` path parameters or undo
//! double encoding, so requests using those are refused here even behind a correctly
//! configured Envoy.

use std::borrow::Cow;

/// Why a `:path` is not in normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathFormError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("path has a byte outside printable ASCII (0x{0:02X})")]
    Byte(u8),
    #[error("path has a backslash")]
    Backslash,
    #[error("path has a fragment ('#')")]
    Fragment,
    #[error("path has a path parameter (';')")]
    Parameter,
    #[error("path has an empty segment ('//')")]
    EmptySegment,
    #[error("path has a '.' or '..' segment")]
    DotSegment,
    #[error("path has a malformed percent-escape")]
    BadEscape,
    #[error("path has a percent-encoded unreserved character (%{0:02X})")]
    EncodedUnreserved(u8),
    #[error("path has a percent-encoded slash or backslash (%{0:02X})")]
    EncodedSlash(u8),
    #[error("path has a double percent-encoded character (%25{0:02X})")]
    DoubleEncoded(u8),
}

/// The path part of a `:path`: everything before the first `?`.
pub fn path_part(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// Is the path part of `path` (before the first `?`) in normal form? See the module
/// documentation for the exact rules.
pub fn check_path(path: &str) -> Result<(), PathFormError> {
    let p = path_part(path).as_bytes();
    if p.first() != Some(&b'/') {
        return Err(PathFormError::NotAbsolute);
    }
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' => return Err(PathFormError::Backslash),
            b'#' => return Err(PathFormError::Fragment),
            b';' => return Err(PathFormError::Parameter),
            b'%' => {
                let (Some(h), Some(l)) = (
                    p.get(i + 1).copied().and_then(hex_digit),
                    p.get(i + 2).copied().and_then(hex_digit),
                ) else {
                    return Err(PathFormError::BadEscape);
                };
                let decoded = h * 16 + l;
                if is_unreserved(decoded) {
                    return Err(PathFormError::EncodedUnreserved(decoded));
                }
                if decoded == b'/' || decoded == b'\\' {
                    return Err(PathFormError::EncodedSlash(decoded));
                }
                if decoded == b'%' {
                    if let (Some(h), Some(l)) = (
                        p.get(i + 3).copied().and_then(hex_digit),
                        p.get(i + 4).copied().and_then(hex_digit),
                    ) {
                        let twice = h * 16 + l;
                        if is_unreserved(twice) || twice == b'/' || twice == b'\\' {
                            return Err(PathFormError::DoubleEncoded(twice));
                        }
                    }
                }
                i += 3;
                continue;
            }
            b if !(0x21..=0x7e).contains(&b) => return Err(PathFormError::Byte(b)),
            _ => {}
        }
        i += 1;
    }
    // Segments after the leading '/': the last may be empty (a trailing slash).
    let mut segments = p[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        match seg {
            b"" if segments.peek().is_some() => return Err(PathFormError::EmptySegment),
            b"." | b".." => return Err(PathFormError::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// The value of one hexadecimal digit (either case).
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 section 2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 9110 section 5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Longest method accepted by [`check_method`].
pub const MAX_METHOD_LEN: usize = 64;

/// Why a `:method` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MethodFormError {
    #[error("method is empty or longer than 64 bytes")]
    Length,
    #[error("method is not an RFC 9110 token")]
    NotToken,
    #[error("method has lower-case letters")]
    LowerCase,
}

/// Is `method` an upper-case RFC 9110 token (no lower-case ASCII letter)? Methods are
/// case-sensitive (RFC 9110 section 9.1) and policies name them in upper case, but many
/// frameworks dispatch `delete` to the DELETE handler: such a method is refused rather than
/// compared.
pub fn check_method(method: &str) -> Result<(), MethodFormError> {
    let b = method.as_bytes();
    if b.is_empty() || b.len() > MAX_METHOD_LEN {
        return Err(MethodFormError::Length);
    }
    if !b.iter().all(|&c| is_tchar(c)) {
        return Err(MethodFormError::NotToken);
    }
    if b.iter().any(u8::is_ascii_lowercase) {
        return Err(MethodFormError::LowerCase);
    }
    Ok(())
}

/// Why an `:authority` / Host is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostFormError {
    #[error("host is empty")]
    Empty,
    #[error("host is longer than 255 bytes")]
    TooLong,
    #[error("host has a character outside a DNS name or IP literal (0x{0:02X})")]
    Byte(u8),
    #[error("host has a malformed port")]
    BadPort,
    #[error("host has a malformed IPv6 literal")]
    BadLiteral,
    #[error("host has an empty label")]
    EmptyLabel,
}

/// The host a `hosts` rule sees: `authority` lower-cased, without its port and without one
/// trailing dot (`API.Example.com.:8443` → `api.example.com`; `[::1]:80` → `[::1]`).
/// Refused: an empty host, userinfo (`@`), a list (`,`, which is what two Host headers become
/// when joined), whitespace, any byte outside `A-Z a-z 0-9 - . _` (plus the brackets and
/// colons of an IPv6 literal), a non-numeric port, or an empty label (`a..b`, `..`).
pub fn normalize_host(authority: &str) -> Result<Cow<'_, str>, HostFormError> {
    if authority.is_empty() {
        return Err(HostFormError::Empty);
    }
    if authority.len() > 255 + 6 {
        return Err(HostFormError::TooLong);
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(HostFormError::BadLiteral);
        };
        let literal = &rest[..end];
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(HostFormError::BadLiteral);
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(HostFormError::BadLiteral),
        };
        (&authority[..end + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HostFormError::BadPort);
        }
    }
    if host.starts_with('[') {
        return Ok(lower(host));
    }
    if let Some(b) = host
        .bytes()
        .find(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')))
    {
        return Err(HostFormError::Byte(b));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(HostFormError::Empty);
    }
    if host.len() > 255 {
        return Err(HostFormError::TooLong);
    }
    if host.split('.').any(str::is_empty) {
        return Err(HostFormError::EmptyLabel);
    }
    Ok(lower(host))
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// How a header that appears more than once is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepeatedHeaders {
    /// Refuse the request (the default) when the header is sent more than once or its value
    /// is a list (has a `,`): the upstream may read the first, the last or all of the values
    /// (and cannot tell `a` + `b` from `a,b`, which is what Envoy forwards), so no single
    /// value is what the policy should decide on.
    #[default]
    Deny,
    /// Join every value with `,` in the order received (Istio RBAC's view, RFC 9110
    /// section 5.3).
    Join,
}

/// Why the headers of a request cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderFormError {
    #[error("header {0} is repeated")]
    Repeated(String),
    #[error("header {0} has a list value (',')")]
    List(String),
    #[error("header {0} is also sent with '_' for '-' ({1})")]
    Underscore(String, String),
}

/// The values of the headers a policy reads, and the underscore variants of the identity
/// header to remove. Built by [`collect_headers`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderView {
    /// `(name, value)` for each name in `names` that is present; with
    /// [`RepeatedHeaders::Join`] the value is every value joined with `,`.
    pub headers: Vec<(String, String)>,
    /// Request header names that a server could fold into the identity header (same name
    /// once `_` is read as `-`, any case), other than the identity header itself.
    pub identity_variants: Vec<String>,
}

/// Reads the headers named in `names` (lower case) out of all the request's header `pairs`,
/// in order. Header names are compared case-insensitively. A pair whose name becomes one of
/// `names` when `_` is read as `-` makes the request ambiguous ([`HeaderFormError::Underscore`]),
/// as does (with [`RepeatedHeaders::Deny`]) a name present more than once or a value with a
/// `,`. Pseudo-headers
/// (`:path`, …) are never variants. The names of identity-header variants are returned so the
/// caller removes them.
pub fn collect_headers(
    pairs: &[(String, String)],
    names: &[String],
    identity: Option<&str>,
    repeated: RepeatedHeaders,
) -> Result<HeaderView, HeaderFormError> {
    let mut view = HeaderView::default();
    for (raw, value) in pairs {
        if raw.starts_with(':') {
            continue;
        }
        let name = lower(raw);
        if let Some(wanted) = names.iter().find(|n| **n == *name) {
            if repeated == RepeatedHeaders::Deny && value.contains(',') {
                return Err(HeaderFormError::List(wanted.clone()));
            }
            match view.headers.iter_mut().find(|(n, _)| n == wanted) {
                None => view.headers.push((wanted.clone(), value.clone())),
                Some((n, v)) => match repeated {
                    RepeatedHeaders::Deny => return Err(HeaderFormError::Repeated(n.clone())),
                    RepeatedHeaders::Join => join_value(v, value),
                },
            }
            continue;
        }
        if !name.contains('_') {
            continue;
        }
        let dashed = name.replace('_', "-");
        if let Some(wanted) = names.iter().find(|n| **n == dashed) {
            return Err(HeaderFormError::Underscore(wanted.clone(), raw.clone()));
        }
        if identity == Some(dashed.as_str()) {
            view.identity_variants.push(raw.clone());
        }
    }
    Ok(view)
}

/// Appends one more value of a header: `joined` becomes `joined,value`.
pub fn join_value(joined: &mut String, value: &str) {
    joined.push(',');
    joined.push_str(value);
}

#[cfg(test)]
mod tests;
