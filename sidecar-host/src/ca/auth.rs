//! Who is calling the CA: the SPIFFE ID of its mTLS client certificate (renewal), or the
//! identity a bearer token maps to in the tokens file, or — only with
//! `--insecure-trust-csr` — whatever the CSR asks for. With both a client certificate and a
//! token, the certificate is the identity and a token mapping to a different identity makes
//! the call fail (see `CaService::token_agrees` in `server.rs`).
//!
//! Tokens file: one entry per line, `<token> <spiffe-id>`, separated by whitespace; blank
//! lines and lines starting with `#` are ignored. [`TokensFile`] re-reads it whenever it
//! changes on disk (checked with one `stat` per call), so tokens can be added or revoked
//! without a restart, and an unchanged file costs no parse. Tokens are kept only as their
//! SHA-256 digests and looked up by digest: how long a lookup takes depends on the digest of
//! the presented token, never on how much of a stored token it shares. Errors name the line,
//! never its content: with swapped or garbled columns the "SPIFFE ID" may be the secret.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// A parsed tokens file (digests only). With a token listed twice, its first line counts.
#[derive(Clone)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], SpiffeId>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("entries", &self.by_digest.len())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses the tokens file text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, TokensError> {
        let mut by_digest = HashMap::new();
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
            by_digest.entry(digest(token)).or_insert(id);
        }
        Ok(Tokens { by_digest })
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

    /// The identity of `token`, looked up by its SHA-256 digest.
    pub fn lookup(&self, token: &str) -> Option<&SpiffeId> {
        self.by_digest.get(&digest(token))
    }

    /// Whether some entry maps to `id` (the identity is still authorized: renewal over mTLS).
    pub fn authorizes(&self, id: &SpiffeId) -> bool {
        self.by_digest.values().any(|e| e == id)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// What identifies one version of a file on disk: device, inode (a Kubernetes Secret volume
/// swaps a symlink, so an update is a new inode), size, modification and change times (the
/// change time cannot be set back by `touch` or `cp -p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The tokens file, parsed again only when its [`FileStamp`] changes. A file that cannot be
/// read or parsed is an error on every call (never the last good version): token callers are
/// refused until it is fixed.
#[derive(Debug)]
pub struct TokensFile {
    path: PathBuf,
    cached: Mutex<Option<(FileStamp, Arc<Tokens>)>>,
}

/// [`TokensFile::current`]'s answer.
#[derive(Debug)]
pub struct Current {
    pub tokens: Arc<Tokens>,
    /// The file was parsed by this call (first use or changed on disk).
    pub reloaded: bool,
}

impl TokensFile {
    pub fn new(path: PathBuf) -> Self {
        TokensFile {
            path,
            cached: Mutex::new(None),
        }
    }

    /// The tokens as the file is now.
    pub fn current(&self) -> Result<Current, TokensError> {
        let read_err = |e: std::io::Error| TokensError::Read {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let stamp = FileStamp::of(&std::fs::metadata(&self.path).map_err(read_err)?);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, tokens)) = cached.as_ref() {
            if *s == stamp {
                return Ok(Current {
                    tokens: Arc::clone(tokens),
                    reloaded: false,
                });
            }
        }
        *cached = None;
        let tokens = Arc::new(Tokens::load(&self.path)?);
        // The stamp is taken again after reading: a write that raced the read makes the next
        // call read once more instead of keeping a torn version.
        let after = std::fs::metadata(&self.path).map(|m| FileStamp::of(&m));
        if after.as_ref().is_ok_and(|a| *a == stamp) {
            *cached = Some((stamp, Arc::clone(&tokens)));
        }
        Ok(Current {
            tokens,
            reloaded: true,
        })
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

    #[test]
    fn tokens_file_is_parsed_again_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "tok-a spiffe://td/ns/a/sa/x\n").unwrap();
        let file = TokensFile::new(path.clone());
        let first = file.current().unwrap();
        assert!(first.reloaded);
        assert!(first.tokens.lookup("tok-a").is_some());
        let again = file.current().unwrap();
        assert!(!again.reloaded, "an unchanged file is not parsed again");
        assert!(Arc::ptr_eq(&first.tokens, &again.tokens));

        // Revocation: the same size, rewritten in place.
        std::fs::write(&path, "tok-b spiffe://td/ns/a/sa/x\n").unwrap();
        let changed = file.current().unwrap();
        assert!(changed.reloaded);
        assert!(changed.tokens.lookup("tok-a").is_none());
        assert!(changed.tokens.lookup("tok-b").is_some());

        // A Secret-volume style update: a new file renamed over the old one.
        let next = dir.path().join("tokens.new");
        std::fs::write(&next, "tok-c spiffe://td/ns/c/sa/z\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        let swapped = file.current().unwrap();
        assert!(swapped.reloaded);
        assert!(swapped.tokens.lookup("tok-c").is_some());
        assert!(swapped.tokens.lookup("tok-b").is_none());

        // A broken or missing file is an error on every call, never the last good version.
        std::fs::write(&path, "only-a-token\n").unwrap();
        assert!(matches!(
            file.current(),
            Err(TokensError::Line { line: 1, .. })
        ));
        assert!(file.current().is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(file.current(), Err(TokensError::Read { .. })));
        std::fs::write(&path, "tok-d spiffe://td/ns/d/sa/w\n").unwrap();
        assert!(file.current().unwrap().tokens.lookup("tok-d").is_some());
    }

    #[test]
    fn a_token_listed_twice_keeps_its_first_line() {
        let t = Tokens::parse(
            "tok spiffe://td/ns/a/sa/first\ntok spiffe://td/ns/a/sa/second\n",
            "f",
        )
        .unwrap();
        assert_eq!(
            t.lookup("tok").unwrap().to_string(),
            "spiffe://td/ns/a/sa/first"
        );
    }
}
