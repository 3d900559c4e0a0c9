//! Who is calling the CA: the SPIFFE ID of its mTLS client certificate (renewal), or the
//! identity a bearer token maps to in the tokens file, or — only with
//! `--insecure-trust-csr` — whatever the CSR asks for. With both a client certificate and a
//! token, the certificate is the identity and a token mapping to a different identity makes
//! the call fail (see `CaService::token_agrees` in `server.rs`).
//!
//! Tokens file: one entry per line, `<token> <spiffe-id>`, separated by whitespace; blank
//! lines and lines starting with `#` are ignored. It is re-read on every call, so tokens can
//! be added or revoked without a restart. Tokens are compared through their SHA-256 digests in
//! constant time, over every entry. Errors name the line, never its content: with swapped or
//! garbled columns the "SPIFFE ID" may be the secret.

use std::path::Path;

use sha2::{Digest, Sha256};
use svidgate_core::SpiffeId;

/// Errors reading the tokens file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokensError {
    #[error("tokens file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("tokens file {path} line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

/// A parsed tokens file (digests only).
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<([u8; 32], SpiffeId)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("entries", &self.entries.len())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Parses the tokens file text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, TokensError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| TokensError::Line {
                path: path.to_owned(),
                line: i + 1,
                reason,
            };
            let mut parts = line.split_whitespace();
            let (Some(token), Some(id), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected `<token> <spiffe-id>`".into()));
            };
            // The error must not quote the field (nor the parser's message, which may).
            let id = SpiffeId::parse(id).map_err(|_| {
                err("the second field is not a SPIFFE ID (expected `<token> <spiffe-id>`)".into())
            })?;
            entries.push((digest(token), id));
        }
        Ok(Tokens { entries })
    }

    /// Reads and parses a tokens file.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let shown = path.display().to_string();
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            TokensError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            }
        })?);
        Self::parse(&text, &shown)
    }

    /// The identity of `token`, comparing against every entry in constant time.
    pub fn lookup(&self, token: &str) -> Option<&SpiffeId> {
        let d = digest(token);
        let mut found = None;
        for (e, id) in &self.entries {
            if ct_eq(e, &d) && found.is_none() {
                found = Some(id);
            }
        }
        found
    }

    /// Whether some entry maps to `id` (the identity is still authorized: renewal over mTLS).
    pub fn authorizes(&self, id: &SpiffeId) -> bool {
        self.entries.iter().any(|(_, e)| e == id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_looks_up() {
        let t = Tokens::parse(
            "# comment\n\ntok-a spiffe://td/ns/a/sa/x\n  tok-b   spiffe://td/ns/b/sa/y  \n",
            "f",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.lookup("tok-a").unwrap().to_string(),
            "spiffe://td/ns/a/sa/x"
        );
        assert_eq!(
            t.lookup("tok-b").unwrap().to_string(),
            "spiffe://td/ns/b/sa/y"
        );
        assert!(t.lookup("tok-c").is_none());
        assert!(t.lookup("").is_none());
        assert!(t.lookup("tok-a ").is_none());
    }

    #[test]
    fn authorizes_while_an_entry_maps_to_the_identity() {
        let t = Tokens::parse("tok-a spiffe://td/ns/a/sa/x\n", "f").unwrap();
        assert!(t.authorizes(&SpiffeId::parse("spiffe://td/ns/a/sa/x").unwrap()));
        assert!(!t.authorizes(&SpiffeId::parse("spiffe://td/ns/b/sa/y").unwrap()));
    }

    #[test]
    fn bad_lines_are_named() {
        let e = Tokens::parse("a spiffe://td/x\nonly-token\n", "f").unwrap_err();
        assert_eq!(
            e,
            TokensError::Line {
                path: "f".into(),
                line: 2,
                reason: "expected `<token> <spiffe-id>`".into()
            }
        );
        assert!(matches!(
            Tokens::parse("a spiffe://TD/x", "f"),
            Err(TokensError::Line { line: 1, .. })
        ));
        // Swapped columns: the message names the line, never the secret.
        let secret = "s3cr3t-t0ken-value";
        let e = Tokens::parse(&format!("# x\nspiffe://td/ns/a/sa/x {secret}\n"), "f").unwrap_err();
        assert!(matches!(e, TokensError::Line { line: 2, .. }), "{e}");
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(matches!(
            Tokens::parse("a b c", "f"),
            Err(TokensError::Line { .. })
        ));
    }
}
