//! [`WorkloadCert`]: a workload's X509-SVID with its private key — the one certificate type
//! of svidgate, from the CA's answer to SDS, the `--once` files, mTLS to the CA and metrics.
//!
//! It is parsed once, when it is made: the leaf follows the X509-SVID rules and its public key
//! is the key's. Everything else (the ID, the validity window, the serial, PEM forms) is read
//! from the fields. A chain checked against trust anchors comes from
//! [`crate::chain::verify_issued`]; [`WorkloadCert::new`] only checks the leaf.

use std::fmt;
use std::time::{Duration, SystemTime};

use pki_types::CertificateDer;
use svidgate_core::SpiffeId;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::chain::ChainError;
use crate::key::{KeyType, WorkloadKey};
use crate::pem::certs_to_pem;
use crate::time::{fmt_time, from_unix};

/// A workload certificate: leaf + intermediates (DER and PEM), the trust anchor it chains to,
/// the private key (PKCS#8 PEM, zeroized on drop, never printed), and what the leaf says.
pub struct WorkloadCert {
    spiffe_id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
    chain_pem: String,
    key_pem: Zeroizing<String>,
    key_type: KeyType,
    not_before: SystemTime,
    not_after: SystemTime,
    serial: String,
}

impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("chain_len", &self.chain.len())
            .field("serial", &self.serial)
            .field("not_before", &fmt_time(self.not_before))
            .field("not_after", &fmt_time(self.not_after))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Parses one certificate of a chain (`position` 0 is the leaf), refusing trailing bytes.
pub(crate) fn parse_cert<'a>(
    der: &'a CertificateDer<'_>,
    position: usize,
) -> Result<X509Certificate<'a>, ChainError> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], c)) => Ok(c),
        Ok(_) => Err(ChainError::Parse {
            position,
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(ChainError::Parse {
            position,
            reason: e.to_string(),
        }),
    }
}

/// Whether `cert` carries the public key `our_spki_der` (DER SubjectPublicKeyInfo).
pub(crate) fn same_public_key(cert: &X509Certificate<'_>, our_spki_der: &[u8]) -> bool {
    if cert.public_key().raw == our_spki_der {
        return true;
    }
    // Same algorithm and same key bits, even if a CA re-encoded the algorithm parameters.
    match x509_parser::x509::SubjectPublicKeyInfo::from_der(our_spki_der) {
        Ok((_, ours)) => {
            ours.algorithm.algorithm == cert.public_key().algorithm.algorithm
                && ours.subject_public_key.data == cert.public_key().subject_public_key.data
        }
        Err(_) => false,
    }
}

/// The X509-SVID leaf rules (`svidgate_core::svid`): exactly one URI SAN holding a valid
/// workload SPIFFE ID, not a CA, keyUsage with digitalSignature and without
/// keyCertSign/cRLSign, EKU (when present) with serverAuth and clientAuth, well-formed
/// extensions. Returns the leaf's SPIFFE ID.
pub fn check_leaf_der(der: &[u8]) -> Result<SpiffeId, ChainError> {
    svidgate_core::svid::check_leaf_der(der).map_err(ChainError::LeafNotSvid)
}

impl WorkloadCert {
    /// A certificate for `key`: `chain` is leaf first, then intermediates (no root); `root` is
    /// the trust anchor. Checks the leaf rules and that the leaf's public key is `key`'s; the
    /// chain itself is not verified here (see [`crate::chain::verify_issued`]).
    pub fn new(
        key: &WorkloadKey,
        chain: Vec<CertificateDer<'static>>,
        root: CertificateDer<'static>,
    ) -> Result<WorkloadCert, ChainError> {
        let first = chain.first().ok_or(ChainError::EmptyChain)?;
        let spiffe_id = check_leaf_der(first)?;
        let leaf = parse_cert(first, 0)?;
        if !same_public_key(&leaf, key.public_key_der()) {
            return Err(ChainError::WrongKey);
        }
        let (not_before, not_after, serial) = leaf_facts(&leaf);
        drop(leaf);
        Ok(WorkloadCert::assemble(
            spiffe_id, chain, root, key, not_before, not_after, serial,
        ))
    }

    /// Puts together a certificate whose leaf was already checked and parsed.
    pub(crate) fn assemble(
        spiffe_id: SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        root: CertificateDer<'static>,
        key: &WorkloadKey,
        not_before: SystemTime,
        not_after: SystemTime,
        serial: String,
    ) -> WorkloadCert {
        WorkloadCert {
            spiffe_id,
            chain_pem: certs_to_pem(&chain),
            chain,
            root,
            key_pem: key.to_pkcs8_pem(),
            key_type: key.key_type(),
            not_before,
            not_after,
            serial,
        }
    }

    /// The SPIFFE ID in the leaf.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }
    /// Leaf first, then intermediates; without the root.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
    /// The leaf certificate (DER).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
    /// The trust anchor the chain validated to.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }
    /// Leaf + intermediates as PEM (Istio's `cert-chain.pem`; SDS `certificate_chain`).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
    /// The root as PEM (Istio's `root-cert.pem`).
    pub fn root_pem(&self) -> String {
        certs_to_pem(std::slice::from_ref(&self.root))
    }
    /// The private key as PKCS#8 PEM. Only for Envoy, the key file and mTLS; never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
    /// The leaf's serial number, lower-case hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }
    /// `not_after - not_before`.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }
    /// Is `now` inside the leaf's validity window?
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// Validity window and serial (lower-case hex) of a parsed leaf.
pub(crate) fn leaf_facts(leaf: &X509Certificate<'_>) -> (SystemTime, SystemTime, String) {
    (
        from_unix(leaf.validity().not_before.timestamp()),
        from_unix(leaf.validity().not_after.timestamp()),
        hex::encode(leaf.raw_serial()),
    )
}
