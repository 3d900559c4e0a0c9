//! `svidgate agent --once --out DIR`: get one certificate, check it, write it, exit.

use std::time::Instant;

use svidgate_pki::CertificateDer;

use super::ca_client::CaError;
use super::config::AgentConfig;
use super::fetch::FetchError;
use super::output::{self, OutputError};
use super::serve::CaSource;
use crate::runtime::read_cert_file;

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
    read_cert_file(path).map_err(|e| OnceError::Bundle {
        path: e.path,
        reason: e.reason,
    })
}

/// Fetches one certificate for the configured identity and writes it to `config.out`.
pub async fn run(config: &AgentConfig) -> Result<(), OnceError> {
    let out = config.out.as_deref().ok_or(OnceError::NoOutput)?;
    let start = Instant::now();
    let anchors = load_bundle(&config.bundle)?;
    let cert = CaSource::new(config)?.fetch_with(&anchors).await?;
    let paths = output::write_cert(out, &cert)?;
    tracing::info!(
        spiffe_id = %cert.spiffe_id(),
        key_type = %config.key_type,
        out = %out.display(),
        files = paths.len(),
        elapsed_ms = start.elapsed().as_millis() as u64,
        "wrote certificate"
    );
    Ok(())
}
