//! Trust bundles: the local trust domain's roots as the CA returns them, plus extra/federated
//! bundles from files (`--bundle TD=FILE`), with root-rotation overlap.
//!
//! ## Root rotation
//! Every self-signed certificate at the end of the CA's `cert_chain` is a root of the local
//! trust domain (Istio appends the whole `root-cert.pem`, which holds both roots during a
//! rotation). When a root stops appearing in the CA's answers, certificates it signed may
//! still be presented by peers: the latest were issued just before the switch and live at
//! most one maximum certificate lifetime. So the old root stays in `ROOTCA`/`ALL` until
//! `switch time + overlap` (`--root-overlap`, by default twice the requested certificate TTL:
//! the peers' lifetime plus a margin for their jittered refresh and clock skew; set it to the
//! CA's maximum TTL when peers may request longer certificates), then it is dropped — no
//! restart. If the CA serves the old root again before that, it is simply current again.
//!
//! A safe rotation (as with Istio's plugged-in CA) has the CA first *add* the new root to the
//! roots it returns while still signing under the old one; once every agent has rotated, it
//! signs under the new root; later it drops the old root, and the agents keep it for the
//! overlap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use svidgate_core::TrustDomain;
use svidgate_pki::pem::{certs_to_pem, parse_cert_blocks};
use tracing::{info, warn};

/// A bundle file that cannot be used (the previous contents stay in effect).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading trust bundle {path} for {td}: {source}")]
    Read {
        td: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trust bundle {path} for {td}: {reason}")]
    Parse {
        td: String,
        path: PathBuf,
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct CaRoot {
    pem: String,
    fingerprint: String,
    /// Set once the CA stopped returning this root: it is dropped at this time.
    retire_at: Option<SystemTime>,
}

#[derive(Debug, Clone)]
struct FileBundle {
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    certs: Vec<String>,
}

/// The agent's trust bundles (pure state; callers pass the time).
#[derive(Debug, Clone)]
pub struct TrustBundles {
    local: TrustDomain,
    overlap: Duration,
    ca_roots: Vec<CaRoot>,
    /// The local trust anchors file (`--bundle FILE` / `--ca-root`): its roots are the CA's
    /// current roots, with the same overlap when one disappears.
    anchors: Option<FileBundle>,
    files: BTreeMap<TrustDomain, FileBundle>,
}

/// Splits PEM text into certificate blocks, re-encoded canonically, with SHA-256 fingerprints.
pub fn parse_certs(text: &str) -> Result<Vec<(String, String)>, String> {
    let ders = parse_cert_blocks(text.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate {i} does not parse: {e}"))?;
        let fp = hex::encode(Sha256::digest(der));
        out.push((certs_to_pem(std::slice::from_ref(der)), fp));
    }
    if out.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(out)
}

impl TrustBundles {
    pub fn new(local: TrustDomain, overlap: Duration) -> TrustBundles {
        TrustBundles {
            local,
            overlap,
            ca_roots: Vec::new(),
            anchors: None,
            files: BTreeMap::new(),
        }
    }

    /// Watches the local trust anchors file: when its roots change, the new set is applied as
    /// [`TrustBundles::update_ca_roots`] does (removed roots kept for the overlap).
    pub fn set_anchor_file(&mut self, path: &Path) {
        self.anchors = Some(FileBundle {
            path: path.to_path_buf(),
            stamp: None,
            certs: Vec::new(),
        });
    }

    /// Adds a bundle file for `td` (loaded by [`TrustBundles::reload_files`]).
    pub fn add_file(&mut self, td: TrustDomain, path: &Path) {
        self.files.insert(
            td,
            FileBundle {
                path: path.to_path_buf(),
                stamp: None,
                certs: Vec::new(),
            },
        );
    }

    /// The trust domains this agent serves bundles for.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        std::iter::once(&self.local).chain(self.files.keys())
    }

    /// Records the roots the CA returned with a new certificate. Returns whether the bundle changed.
    pub fn update_ca_roots(&mut self, roots: &[String], now: SystemTime) -> bool {
        let mut fresh = Vec::new();
        for r in roots {
            match parse_certs(r) {
                Ok(certs) => fresh.extend(certs),
                Err(e) => warn!(error = %e, "ignoring an unparsable root from the CA"),
            }
        }
        if fresh.is_empty() {
            return false;
        }
        let mut changed = false;
        for old in &mut self.ca_roots {
            let served = fresh.iter().any(|(_, fp)| *fp == old.fingerprint);
            match (served, old.retire_at) {
                (false, None) => {
                    let at = now + self.overlap;
                    info!(root = %&old.fingerprint[..16], retire_at = %humantime::format_rfc3339_seconds(at),
                        "root no longer current (CA answer / trust anchors); keeping it trusted for the overlap");
                    old.retire_at = Some(at);
                    changed = true;
                }
                (true, Some(_)) => {
                    info!(root = %&old.fingerprint[..16], "CA returns this root again");
                    old.retire_at = None;
                    changed = true;
                }
                _ => {}
            }
        }
        for (pem, fp) in fresh {
            if !self.ca_roots.iter().any(|r| r.fingerprint == fp) {
                info!(root = %&fp[..16], "new root added to the local trust bundle");
                self.ca_roots.push(CaRoot {
                    pem,
                    fingerprint: fp,
                    retire_at: None,
                });
                changed = true;
            }
        }
        changed
    }

    /// Drops retired roots whose overlap has ended. Returns whether the bundle changed.
    pub fn expire(&mut self, now: SystemTime) -> bool {
        let before = self.ca_roots.len();
        self.ca_roots.retain(|r| match r.retire_at {
            Some(at) if at <= now => {
                info!(root = %&r.fingerprint[..16], "overlap ended; old root removed from the trust bundle");
                false
            }
            _ => true,
        });
        before != self.ca_roots.len()
    }

    /// When the next retired root is due to be dropped.
    pub fn next_expiry(&self) -> Option<SystemTime> {
        self.ca_roots.iter().filter_map(|r| r.retire_at).min()
    }

    /// Re-reads bundle files whose modification time or size changed. A file that cannot be
    /// read or parsed keeps its previous contents (logged). Returns whether anything changed.
    pub fn reload_files(&mut self, now: SystemTime) -> bool {
        let mut changed = false;
        let local = self.local.clone();
        if let Some(f) = self.anchors.as_mut() {
            if reload_one(&local, f) {
                let certs = f.certs.clone();
                changed |= self.update_ca_roots(&certs, now);
            }
        }
        for (td, f) in &mut self.files {
            changed |= reload_one(td, f);
        }
        changed
    }

    /// Every trust domain's roots (the local one: CA roots, current first, then retiring ones,
    /// then any file bundle given for the local domain).
    pub fn bundles(&self) -> BTreeMap<TrustDomain, Vec<String>> {
        let mut out: BTreeMap<TrustDomain, Vec<String>> = BTreeMap::new();
        let mut local: Vec<String> = self
            .ca_roots
            .iter()
            .filter(|r| r.retire_at.is_none())
            .map(|r| r.pem.clone())
            .collect();
        local.extend(
            self.ca_roots
                .iter()
                .filter(|r| r.retire_at.is_some())
                .map(|r| r.pem.clone()),
        );
        for (td, f) in &self.files {
            let entry = out.entry(td.clone()).or_default();
            for c in &f.certs {
                if !entry.contains(c) {
                    entry.push(c.clone());
                }
            }
        }
        let e = out.entry(self.local.clone()).or_default();
        for c in local.into_iter().rev() {
            if !e.contains(&c) {
                e.insert(0, c);
            }
        }
        out.retain(|_, v| !v.is_empty());
        out
    }
}

/// Re-reads one file if its modification time or size changed; true if its certificates changed.
fn reload_one(td: &TrustDomain, f: &mut FileBundle) -> bool {
    let stamp = std::fs::metadata(&f.path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    if stamp.is_some() && stamp == f.stamp {
        return false;
    }
    let report = stamp != f.stamp || f.certs.is_empty();
    f.stamp = stamp;
    match load_file(td, &f.path) {
        Ok(certs) => {
            if certs == f.certs {
                return false;
            }
            info!(trust_domain = %td, path = %f.path.display(), roots = certs.len(), "trust bundle loaded");
            f.certs = certs;
            true
        }
        Err(e) => {
            if report {
                warn!(error = %e, "keeping the previous trust bundle");
            }
            false
        }
    }
}

fn load_file(td: &TrustDomain, path: &Path) -> Result<Vec<String>, BundleError> {
    let text = std::fs::read_to_string(path).map_err(|source| BundleError::Read {
        td: td.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let certs = parse_certs(&text).map_err(|reason| BundleError::Parse {
        td: td.to_string(),
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(certs.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> String {
        svidgate_pki::testing::TestPki::new(name).root_pem()
    }

    fn td(s: &str) -> TrustDomain {
        TrustDomain::new(s).unwrap()
    }

    #[test]
    fn root_rotation_overlap() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let overlap = Duration::from_secs(100);
        let (a, b) = (root("A"), root("B"));
        let mut tb = TrustBundles::new(td("example.org"), overlap);
        assert!(tb.update_ca_roots(std::slice::from_ref(&a), t0));
        assert!(
            !tb.update_ca_roots(std::slice::from_ref(&a), t0),
            "same root: no change"
        );
        assert_eq!(tb.bundles()[&td("example.org")].len(), 1);
        // Phase 1: CA returns both (old still signing).
        assert!(tb.update_ca_roots(&[a.clone(), b.clone()], t0 + Duration::from_secs(10)));
        assert_eq!(tb.bundles()[&td("example.org")].len(), 2);
        assert_eq!(tb.next_expiry(), None);
        // Phase 3: CA drops A: A kept until the overlap ends.
        let t_switch = t0 + Duration::from_secs(50);
        assert!(tb.update_ca_roots(std::slice::from_ref(&b), t_switch));
        assert!(
            !tb.update_ca_roots(std::slice::from_ref(&b), t_switch + Duration::from_secs(5)),
            "retire time not pushed out"
        );
        assert_eq!(tb.next_expiry(), Some(t_switch + overlap));
        let both = tb.bundles()[&td("example.org")].clone();
        assert_eq!(both.len(), 2);
        assert_eq!(
            parse_certs(&both[0]).unwrap(),
            parse_certs(&b).unwrap(),
            "current root first"
        );
        assert!(!tb.expire(t_switch + overlap - Duration::from_secs(1)));
        assert!(tb.expire(t_switch + overlap));
        assert_eq!(tb.bundles()[&td("example.org")].len(), 1);
        // A root that comes back before retirement is current again.
        let mut tb2 = TrustBundles::new(td("example.org"), overlap);
        tb2.update_ca_roots(std::slice::from_ref(&a), t0);
        tb2.update_ca_roots(std::slice::from_ref(&b), t0);
        assert!(tb2.update_ca_roots(&[a.clone(), b.clone()], t0));
        assert_eq!(tb2.next_expiry(), None);
    }

    /// Two roots named `names`, and the file `name` in a new tempdir holding the first.
    fn pem_file_with_first_of(
        name: &str,
        names: [&str; 2],
    ) -> (tempfile::TempDir, std::path::PathBuf, [String; 2]) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(name);
        let roots = names.map(root);
        std::fs::write(&f, &roots[0]).unwrap();
        (dir, f, roots)
    }

    #[test]
    fn file_bundles_reload_and_keep_last_good() {
        let (_dir, f, [a, b]) = pem_file_with_first_of("fed.pem", ["F1", "F2"]);
        let mut tb = TrustBundles::new(td("example.org"), Duration::from_secs(1));
        tb.add_file(td("fed.example"), &f);
        assert!(tb.reload_files(SystemTime::now()));
        assert!(!tb.reload_files(SystemTime::now()));
        assert_eq!(tb.bundles()[&td("fed.example")].len(), 1);
        assert!(
            !tb.bundles().contains_key(&td("example.org")),
            "no CA root yet"
        );
        std::fs::write(&f, format!("{a}{b}")).unwrap();
        assert!(tb.reload_files(SystemTime::now()));
        assert_eq!(tb.bundles()[&td("fed.example")].len(), 2);
        std::fs::write(&f, "garbage").unwrap();
        assert!(
            !tb.reload_files(SystemTime::now()),
            "bad file keeps the last good bundle"
        );
        assert_eq!(tb.bundles()[&td("fed.example")].len(), 2);
        std::fs::remove_file(&f).unwrap();
        assert!(!tb.reload_files(SystemTime::now()));
        assert_eq!(tb.bundles()[&td("fed.example")].len(), 2);
        let tds: Vec<_> = tb.trust_domains().map(|t| t.to_string()).collect();
        assert_eq!(tds, ["example.org", "fed.example"]);
    }

    #[test]
    fn anchor_file_changes_retire_with_overlap() {
        let (_dir, f, [a, b]) = pem_file_with_first_of("root-cert.pem", ["A", "B"]);
        let t0 = SystemTime::now();
        let mut tb = TrustBundles::new(td("example.org"), Duration::from_secs(100));
        tb.set_anchor_file(&f);
        assert!(tb.reload_files(t0));
        assert_eq!(tb.bundles()[&td("example.org")].len(), 1);
        std::fs::write(&f, format!("{a}{b}")).unwrap();
        assert!(tb.reload_files(t0));
        assert_eq!(tb.bundles()[&td("example.org")].len(), 2);
        std::fs::write(&f, &b).unwrap();
        assert!(tb.reload_files(t0));
        assert_eq!(
            tb.bundles()[&td("example.org")].len(),
            2,
            "A kept for the overlap"
        );
        assert!(tb.expire(t0 + Duration::from_secs(100)));
        assert_eq!(tb.bundles()[&td("example.org")].len(), 1);
    }

    #[test]
    fn rejects_non_certificates() {
        assert!(parse_certs("").is_err());
        assert!(
            parse_certs("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
        );
        assert!(
            parse_certs("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
    }
}
