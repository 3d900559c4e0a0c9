//! `svidgate agent --once --out DIR`: get one certificate, check it, write it, exit.

use std::time::Instant;

use rustls::pki_types::CertificateDer;

use super::config::AgentConfig;
use super::output::{self, OutputError};
use crate::ca_client::{CaError, IstioCaClient};
use crate::chain::Anchors;
use crate::fetch::{fetch_svid, FetchError};

/// Why `--once` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnceError {
    #[error("trust bundle {path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error(transparent)]
    Client(#[from] CaError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("--once needs --out")]
    NoOutput,
}

/// Reads a PEM bundle of CA certificates.
pub fn load_bundle(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, OnceError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| OnceError::Bundle {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let blocks = pem::parse_many(&bytes).map_err(|e| OnceError::Bundle {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let certs: Vec<_> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(OnceError::Bundle {
            path: shown,
            reason: "no CERTIFICATE in the file".into(),
        });
    }
    Ok(certs)
}

/// Fetches one certificate for the configured identity and writes it to `config.out`.
pub async fn run(config: &AgentConfig) -> Result<(), OnceError> {
    let out = config.out.as_deref().ok_or(OnceError::NoOutput)?;
    let start = Instant::now();
    let anchors = load_bundle(&config.bundle)?;
    let client = IstioCaClient::new(config.ca.clone())?;
    let svid = fetch_svid(
        &client,
        &config.spiffe_id,
        config.key_type,
        config.cert_ttl,
        Anchors::Bundle(&anchors),
        config.clock_skew,
    )
    .await?;
    let paths = output::write_svid(out, &svid)?;
    tracing::info!(
        spiffe_id = %svid.cert.spiffe_id,
        key_type = %config.key_type,
        out = %out.display(),
        files = paths.len(),
        elapsed_ms = start.elapsed().as_millis() as u64,
        "wrote certificate"
    );
    Ok(())
}
