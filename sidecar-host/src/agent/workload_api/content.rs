//! What the Workload API sends, built from the agent's published state: pure functions, no I/O.
//!
//! - `FetchX509SVID`: one `X509SVID` (the agent serves exactly one identity) with the chain as
//!   concatenated DER (leaf first), the key as unencrypted PKCS#8 DER and the SVID's trust
//!   domain's roots as concatenated DER; every other trust domain in `federated_bundles`.
//! - `FetchX509Bundles`: every trust domain's roots, the local one included.
//!
//! Nothing is sent rather than something incomplete: no SVID yet, an expired SVID, or no roots
//! for the local trust domain all give `None` (the stream waits for the next change).

use std::collections::BTreeMap;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use svidgate_core::TrustDomain;
use svidgate_pki::pem::parse_cert_blocks;
use svidgate_pki::CertificateDer;
use zeroize::Zeroizing;

use super::pb::{X509BundlesResponse, X509svid, X509svidResponse};
use crate::agent::sds::SecretState;

/// PEM label of an unencrypted PKCS#8 private key.
const PKCS8_LABEL: &str = "PRIVATE KEY";

/// Why the published state cannot be turned into a Workload API message. The agent validated
/// all of it before publishing, so this means a bug; the stream then sends nothing.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentError {
    #[error("SVID private key: {0}")]
    Key(String),
    #[error("trust bundle of {trust_domain}: {reason}")]
    Bundle {
        trust_domain: String,
        reason: String,
    },
}

/// The key of a bundle in the Workload API maps: the trust domain's SPIFFE ID.
pub fn bundle_key(td: &TrustDomain) -> String {
    format!("spiffe://{td}")
}

/// Certificates as the Workload API carries them: their DER encodings back to back.
pub fn concat_der(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    certs.iter().flat_map(|c| c.iter().copied()).collect()
}

/// The PKCS#8 DER of the first unencrypted `PRIVATE KEY` PEM block (zeroized on drop). The
/// error never holds key material.
pub fn pkcs8_der(key_pem: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| format!("no unencrypted PKCS#8 {PKCS8_LABEL} PEM block"))?;
    let der = Zeroizing::new(key.secret_pkcs8_der().to_vec());
    if der.is_empty() {
        return Err("empty key".into());
    }
    Ok(der)
}

/// Every trust domain's roots as concatenated DER, keyed by `spiffe://<td>`; trust domains
/// without roots are left out.
fn bundles_der(
    bundles: &BTreeMap<TrustDomain, Vec<String>>,
) -> Result<BTreeMap<String, Vec<u8>>, ContentError> {
    let mut out = BTreeMap::new();
    for (td, pems) in bundles {
        if pems.is_empty() {
            continue;
        }
        let bad = |reason: String| ContentError::Bundle {
            trust_domain: td.to_string(),
            reason,
        };
        let certs = parse_cert_blocks(pems.concat().as_bytes()).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate".into()));
        }
        out.insert(bundle_key(td), concat_der(&certs));
    }
    Ok(out)
}

/// The `FetchX509SVID` message for `state` at `now`, or `None` while there is nothing valid
/// to send (no certificate yet, the certificate expired, no local roots).
pub fn x509_svid_response(
    state: &SecretState,
    now: SystemTime,
) -> Result<Option<X509svidResponse>, ContentError> {
    let Some(cert) = state.cert.as_ref() else {
        return Ok(None);
    };
    if now >= cert.not_after() {
        return Ok(None);
    }
    let local = bundle_key(cert.spiffe_id().trust_domain());
    let mut bundles = bundles_der(&state.bundles)?;
    let Some(bundle) = bundles.remove(&local) else {
        return Ok(None);
    };
    let x509_svid = concat_der(cert.chain());
    let key = pkcs8_der(cert.key_pem()).map_err(ContentError::Key)?;
    Ok(Some(X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: cert.spiffe_id().to_string(),
            x509_svid,
            x509_svid_key: key.to_vec(),
            bundle,
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: bundles,
    }))
}

/// The `FetchX509Bundles` message for `state`, or `None` while the local trust domain
/// (`local`) has no roots yet.
pub fn x509_bundles_response(
    state: &SecretState,
    local: &TrustDomain,
) -> Result<Option<X509BundlesResponse>, ContentError> {
    let bundles = bundles_der(&state.bundles)?;
    if !bundles.contains_key(&bundle_key(local)) {
        return Ok(None);
    }
    Ok(Some(X509BundlesResponse {
        crl: Vec::new(),
        bundles,
    }))
}
