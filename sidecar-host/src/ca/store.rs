//! The CA's signing material: an Istio / cert-manager `cacerts` directory.
//!
//! | file             | content                                                           |
//! |------------------|-------------------------------------------------------------------|
//! | `ca-cert.pem`    | the signing (intermediate) CA certificate                         |
//! | `ca-key.pem`     | its private key (PKCS#8 `PRIVATE KEY`, or PKCS#1 `RSA PRIVATE KEY`, or SEC1 `EC PRIVATE KEY`) |
//! | `cert-chain.pem` | `ca-cert.pem`, further intermediates, then the root (Istio's `tools/certs` make `cat ca-cert.pem root-cert.pem`) |
//! | `root-cert.pem`  | the root(s) workloads trust; several during a root rotation       |
//!
//! `cert-chain.pem` may be missing, then the chain is `ca-cert.pem` + root. Loading checks that
//! the key matches `ca-cert.pem`, that it is a CA allowed to sign, and that the chain verifies
//! up to a root in `root-cert.pem`. [`generate`] creates a fresh root + intermediate (ECDSA
//! P-256) into an empty directory; it never overwrites a file. The root key is not kept.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use svidgate_core::TrustDomain;
use svidgate_pki::chain::find_issuer;
use svidgate_pki::key::key_pair_from_pem;
use svidgate_pki::time::{fmt_time, from_unix, unix_seconds};
use svidgate_pki::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::runtime::read_cert_file;

pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
/// Every file of a `cacerts` directory.
pub const ALL_FILES: [&str; 4] = [CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT];

/// Why the CA directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file of the directory, or the directory itself.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: the key does not match {CA_CERT}")]
    KeyMismatch { path: String },
    #[error("{CA_CERT} is not a usable CA: {0}")]
    NotCa(String),
    #[error("{CERT_CHAIN}/{ROOT_CERT}: the chain does not verify: {0}")]
    Chain(String),
    #[error("generating the CA: {0}")]
    Generate(String),
}

/// Loaded, checked signing material.
pub struct CaMaterial {
    /// Signs workload certificates.
    pub issuer: Issuer<'static, KeyPair>,
    /// `ca-cert.pem`.
    pub ca_cert: CertificateDer<'static>,
    /// Intermediates from `ca-cert.pem` up to (without) the root, in order.
    pub intermediates: Vec<CertificateDer<'static>>,
    /// The root the chain ends at (sent last in every answer).
    pub root: CertificateDer<'static>,
    /// All roots of `root-cert.pem` (trusted for client certificates).
    pub roots: Vec<CertificateDer<'static>>,
    /// `ca-cert.pem`'s notAfter: no leaf outlives it.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("intermediates", &self.intermediates.len())
            .field("roots", &self.roots.len())
            .field("not_after", &fmt_time(self.not_after))
            .finish_non_exhaustive()
    }
}

impl CaMaterial {
    /// The chain sent after the leaf: intermediates then the root.
    pub fn chain_after_leaf(&self) -> Vec<CertificateDer<'static>> {
        let mut v = self.intermediates.clone();
        v.push(self.root.clone());
        v
    }
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    read_cert_file(path).map_err(|e| file_err(path, e.reason))
}

/// Loads a private key from PEM: PKCS#8, PKCS#1 RSA, or SEC1 EC (P-256/P-384).
pub fn load_key(path: &Path) -> Result<KeyPair, StoreError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| file_err(path, e))?);
    key_pair_from_pem(&text).map_err(|e| file_err(path, e))
}

/// Loads and checks a `cacerts` directory.
pub fn load(dir: &Path) -> Result<CaMaterial, StoreError> {
    let ca_certs = read_certs(&dir.join(CA_CERT))?;
    let ca_cert = ca_certs[0].clone();
    let key = load_key(&dir.join(CA_KEY))?;
    let roots = read_certs(&dir.join(ROOT_CERT))?;
    let chain_path = dir.join(CERT_CHAIN);
    let chain_certs = if chain_path.exists() {
        read_certs(&chain_path)?
    } else {
        ca_certs.clone()
    };
    if chain_certs[0] != ca_cert {
        return Err(StoreError::Chain(format!(
            "{CERT_CHAIN} does not start with {CA_CERT}"
        )));
    }

    let (_, parsed) =
        X509Certificate::from_der(ca_cert.as_ref()).map_err(|e| file_err(&dir.join(CA_CERT), e))?;
    use rcgen::PublicKeyData;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(StoreError::KeyMismatch {
            path: dir.join(CA_KEY).display().to_string(),
        });
    }
    if !parsed.is_ca() {
        return Err(StoreError::NotCa("basicConstraints CA:true missing".into()));
    }
    if let Ok(Some(ku)) = parsed.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(StoreError::NotCa("keyUsage lacks keyCertSign".into()));
        }
    }
    let not_after = from_unix(parsed.validity().not_after.timestamp());
    if not_after <= SystemTime::now() {
        return Err(StoreError::NotCa(format!(
            "expired at {}",
            parsed.validity().not_after
        )));
    }

    // Intermediates: the chain without a trailing self-signed root.
    let mut intermediates: Vec<CertificateDer<'static>> = Vec::new();
    for c in &chain_certs {
        let (_, p) = X509Certificate::from_der(c.as_ref()).map_err(|e| file_err(&chain_path, e))?;
        let self_signed =
            p.subject().as_raw() == p.issuer().as_raw() && p.verify_signature(None).is_ok();
        if self_signed {
            break;
        }
        if intermediates.last() != Some(c) {
            intermediates.push(c.clone());
        }
    }
    if intermediates.is_empty() {
        return Err(StoreError::NotCa(format!(
            "{CA_CERT} is self-signed: use an intermediate"
        )));
    }
    let root = verify_ca_chain(&intermediates, &roots)?;

    let issuer =
        Issuer::from_ca_cert_der(&ca_cert, key).map_err(|e| StoreError::NotCa(e.to_string()))?;
    Ok(CaMaterial {
        issuer,
        ca_cert,
        intermediates,
        root,
        roots,
        not_after,
    })
}

/// Verifies `intermediates` (signing CA first) up to one of `roots`; returns that root.
fn verify_ca_chain(
    intermediates: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Result<CertificateDer<'static>, StoreError> {
    let now = SystemTime::now();
    let mut prev: Option<X509Certificate<'_>> = None;
    let parsed: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .map(|c| X509Certificate::from_der(c.as_ref()).map(|(_, p)| p))
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Chain(e.to_string()))?;
    for (i, c) in parsed.iter().enumerate() {
        if let Some(child) = prev.take() {
            if child.issuer().as_raw() != c.subject().as_raw()
                || child.verify_signature(Some(c.public_key())).is_err()
            {
                return Err(StoreError::Chain(format!(
                    "intermediate {} does not sign intermediate {}",
                    i,
                    i - 1
                )));
            }
        }
        let now_s = unix_seconds(now);
        let valid = c.validity().not_before.timestamp() <= now_s
            && now_s < c.validity().not_after.timestamp();
        if !c.is_ca() || !valid {
            return Err(StoreError::Chain(format!(
                "intermediate {i} ({}) is not a currently valid CA",
                c.subject()
            )));
        }
        prev = Some(c.clone());
    }
    let top = parsed
        .last()
        .ok_or_else(|| StoreError::Chain("empty chain".into()))?;
    if let Some(root) = find_issuer(top, roots, None) {
        return Ok(root.clone());
    }
    Err(StoreError::Chain(format!(
        "{} is not signed by any certificate in {ROOT_CERT}",
        top.subject()
    )))
}

/// The permission bits of `path` when group or others may read or write it (a secret —
/// the CA key, the tokens file — should be 0600 or 0400); `None` when it is private or
/// cannot be inspected.
pub fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Which files of a `cacerts` directory exist.
pub fn existing_files(dir: &Path) -> Vec<&'static str> {
    ALL_FILES
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect()
}

fn ca_params(
    td: &TrustDomain,
    cn: &str,
    lifetime: Duration,
    path_len: Option<u8>,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, td.as_str());
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::try_from(lifetime).unwrap_or(time::Duration::days(365));
    p.serial_number = Some(super::issue::random_serial());
    p.use_authority_key_identifier_extension = true;
    p
}

/// Creates a root (10 years) and an intermediate (5 years, pathLen 0), both ECDSA P-256, in
/// `dir` (created if missing, mode 0700; the files mode 0600). Refuses if any `cacerts` file exists already. The
/// root key is discarded: it signs nothing else. Returns the written paths.
pub fn generate(dir: &Path, td: &TrustDomain) -> Result<Vec<PathBuf>, StoreError> {
    let existing = existing_files(dir);
    if !existing.is_empty() {
        return Err(file_err(
            dir,
            format!("refusing to overwrite existing {}", existing.join(", ")),
        ));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| file_err(dir, e))?;
    let gen = |e: rcgen::Error| StoreError::Generate(e.to_string());
    let root = CertifiedIssuer::self_signed(
        ca_params(
            td,
            "svidgate root CA",
            Duration::from_secs(10 * 365 * 86400),
            None,
        ),
        KeyPair::generate().map_err(gen)?,
    )
    .map_err(gen)?;
    let inter_key = KeyPair::generate().map_err(gen)?;
    let inter_key_pem = Zeroizing::new(inter_key.serialize_pem());
    let inter = CertifiedIssuer::signed_by(
        ca_params(
            td,
            "svidgate intermediate CA",
            Duration::from_secs(5 * 365 * 86400),
            Some(0),
        ),
        inter_key,
        &root,
    )
    .map_err(gen)?;
    let files: [(&str, String, u32); 4] = [
        (CA_KEY, inter_key_pem.to_string(), 0o600),
        (CA_CERT, inter.pem(), 0o600),
        (ROOT_CERT, root.pem(), 0o600),
        (CERT_CHAIN, format!("{}{}", inter.pem(), root.pem()), 0o600),
    ];
    let mut written = Vec::new();
    for (name, content, mode) in files {
        let content = Zeroizing::new(content);
        let path = dir.join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| file_err(&path, e))?;
        f.write_all(content.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| file_err(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
