//! One certificate, start to finish: fresh key → CSR → CA → check before use.
//!
//! [`fetch_svid`] is the step the agent repeats on every rotation (`--once` calls it one
//! time). Nothing it returns is unchecked: the chain has passed [`svidgate_pki::verify_issued`].

use std::time::{Duration, SystemTime};

use svidgate_core::SpiffeId;
use svidgate_pki::csr::{self, CsrError};
use svidgate_pki::time::fmt_time;
use svidgate_pki::{
    verify_issued, Anchors, ChainError, KeyError, KeyType, WorkloadCert, WorkloadKey,
};

use super::ca_client::{CaClient, CaError};

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

wrap_errors!(
    FetchError::Key(KeyError),
    FetchError::Csr(CsrError),
    FetchError::Ca(CaError),
    FetchError::Chain(ChainError),
);

/// Generates a fresh key of `key_type`, sends a CSR for `id` asking for `ttl`, and verifies
/// the answer against `anchors`, tolerating `skew` of clock difference with the CA
/// (use [`svidgate_pki::chain::DEFAULT_SKEW`] unless configured).
pub async fn fetch_svid(
    ca: &dyn CaClient,
    id: &SpiffeId,
    key_type: KeyType,
    ttl: Duration,
    anchors: Anchors<'_>,
    skew: Duration,
) -> Result<WorkloadCert, FetchError> {
    // RSA generation takes a while: keep it off the async workers.
    let key = tokio::task::spawn_blocking(move || WorkloadKey::generate(key_type))
        .await
        .map_err(|e| KeyError::Generate {
            key_type,
            reason: e.to_string(),
        })??;
    let csr_pem = csr::build(id, &key)?;
    let answer = ca.sign(&csr_pem, ttl).await?;
    let cert = verify_issued(&answer, id, &key, anchors, SystemTime::now(), skew)?;
    tracing::info!(
        spiffe_id = %cert.spiffe_id(),
        serial = %cert.serial(),
        not_after = %fmt_time(cert.not_after()),
        "certificate issued and verified"
    );
    Ok(cert)
}
