//! One certificate, start to finish: fresh key → CSR → CA → check before use.
//!
//! [`fetch_svid`] is the step the agent repeats on every rotation (`--once` calls it one
//! time). Nothing it returns is unchecked: the chain has passed [`crate::chain::verify_issued`].

use std::time::{Duration, SystemTime};

use svidgate_core::SpiffeId;

use crate::ca_client::{CaClient, CaError};
use crate::chain::{self, Anchors, ChainError, IssuedCert};
use crate::csr::{self, CsrError};
use crate::keys::{KeyError, KeyType, WorkloadKey};

/// A verified X509-SVID with its private key (in memory only, zeroized on drop).
#[derive(Debug)]
pub struct Svid {
    pub key: WorkloadKey,
    pub cert: IssuedCert,
}

/// Which step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("key generation: {0}")]
    Key(KeyError),
    #[error("CSR: {0}")]
    Csr(CsrError),
    #[error("CA: {0}")]
    Ca(CaError),
    #[error("rejected the CA's answer: {0}")]
    Chain(ChainError),
}

// Manual `From`s: the inner error is part of the message, not a `source` (no duplicate
// text in `{:#}` chains).
impl From<KeyError> for FetchError {
    fn from(e: KeyError) -> Self {
        FetchError::Key(e)
    }
}

impl From<CsrError> for FetchError {
    fn from(e: CsrError) -> Self {
        FetchError::Csr(e)
    }
}

impl From<CaError> for FetchError {
    fn from(e: CaError) -> Self {
        FetchError::Ca(e)
    }
}

impl From<ChainError> for FetchError {
    fn from(e: ChainError) -> Self {
        FetchError::Chain(e)
    }
}

/// Generates a fresh key of `key_type`, sends a CSR for `id` asking for `ttl`, and verifies
/// the answer against `anchors`, tolerating `skew` of clock difference with the CA
/// (use [`chain::DEFAULT_SKEW`] unless configured).
pub async fn fetch_svid(
    ca: &dyn CaClient,
    id: &SpiffeId,
    key_type: KeyType,
    ttl: Duration,
    anchors: Anchors<'_>,
    skew: Duration,
) -> Result<Svid, FetchError> {
    // RSA generation takes a while: keep it off the async workers.
    let key = tokio::task::spawn_blocking(move || WorkloadKey::generate(key_type))
        .await
        .map_err(|e| KeyError::Generate {
            key_type,
            reason: e.to_string(),
        })??;
    let csr_pem = csr::build(id, &key)?;
    let answer = ca.sign(&csr_pem, ttl).await?;
    let cert = chain::verify_issued(
        &answer,
        id,
        key.public_key_der(),
        anchors,
        SystemTime::now(),
        skew,
    )?;
    tracing::info!(
        spiffe_id = %cert.spiffe_id,
        serial = %cert.serial,
        not_after = %chain::fmt_time(cert.not_after),
        "certificate issued and verified"
    );
    Ok(Svid { key, cert })
}
