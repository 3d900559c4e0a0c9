//! `svidgate agent` (long-running): rotation loop → [`SecretStore`] → SDS on a Unix socket,
//! trust bundles kept current, admin HTTP, clean drain on SIGTERM/SIGINT.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use svidgate_core::{SpiffeId, TrustDomain};
use svidgate_pki::pem::certs_to_pem;
use svidgate_pki::{Anchors, KeyType, WorkloadCert};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

use super::admin::{self, AdminError};
use super::bundle::TrustBundles;
use super::ca_client::{CaError, IstioCaClient};
use super::config::AgentConfig;
use super::fetch::{fetch_svid, FetchError};
use super::metrics::Metrics;
use super::once::{load_bundle, OnceError};
use super::rotation::{bundle_watch, CertSource, Issued, RotationConfig, Rotator};
use super::sds::{self, SdsService, SecretStore, UdsError};

/// How often bundle files are checked for changes.
pub const BUNDLE_POLL: Duration = Duration::from_secs(2);
/// How long the drain may take before the agent exits anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the long-running agent stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Client(#[from] CaError),
    #[error(transparent)]
    Socket(#[from] UdsError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("SDS server: {0}")]
    Sds(#[from] tonic::transport::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Why one rotation attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Bundle(#[from] OnceError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// The real certificate source: fresh key → CSR → CA → check against the trust anchors
/// (re-read on every attempt, so a root rotation in the file takes effect without restart).
#[derive(Debug)]
pub struct CaSource {
    pub client: IstioCaClient,
    pub spiffe_id: SpiffeId,
    pub key_type: KeyType,
    pub ttl: Duration,
    pub anchors: PathBuf,
    pub skew: Duration,
}

impl CertSource for CaSource {
    type Error = SourceError;

    async fn fetch(&self) -> Result<Issued, SourceError> {
        let anchors = load_bundle(&self.anchors)?;
        let cert = fetch_svid(
            &self.client,
            &self.spiffe_id,
            self.key_type,
            self.ttl,
            Anchors::Bundle(&anchors),
            self.skew,
        )
        .await?;
        Ok(Issued {
            cert,
            roots: vec![certs_to_pem(&anchors)],
        })
    }

    /// Renewal authenticates with the certificate just published (mTLS), plus the bearer
    /// token when the token file is there (Istio's agent does the same).
    fn published(&self, cert: &Arc<WorkloadCert>) {
        self.client.set_client_identity(Some(cert.clone()));
    }

    fn expired(&self) {
        self.client.set_client_identity(None);
    }
}

/// Runs until SIGTERM/SIGINT, then drains: stops accepting, ends every SDS stream, removes the
/// socket. SIGHUP renews the certificate now (one CA request, however many signals).
pub async fn run(config: AgentConfig) -> Result<(), ServeError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SecretStore::new());
    let (shutdown_tx, shutdown) = watch::channel(false);

    let local = config.spiffe_id.trust_domain().clone();
    let mut tb = TrustBundles::new(local.clone(), config.root_overlap);
    tb.set_anchor_file(&config.bundle);
    for (td, path) in &config.federated_bundles {
        tb.add_file(td.clone(), path);
    }
    let known: BTreeSet<TrustDomain> = tb.trust_domains().cloned().collect();
    let bundles = Arc::new(Mutex::new(tb));

    let admin_listener = admin::bind(config.admin_addr).await?;
    let admin_addr = admin_listener.local_addr().unwrap_or(config.admin_addr);
    let listener = sds::bind_socket(&config.sds_socket, config.sds_socket_mode).await?;
    let source = CaSource {
        client: IstioCaClient::new(config.ca.clone())?,
        spiffe_id: config.spiffe_id.clone(),
        key_type: config.key_type,
        ttl: config.cert_ttl,
        anchors: config.bundle.clone(),
        skew: config.clock_skew,
    };
    let rotator = Rotator::new(
        source,
        store.clone(),
        bundles.clone(),
        metrics.clone(),
        RotationConfig {
            ratio: config.rotation_ratio,
            ..RotationConfig::default()
        },
    );
    let service = SdsService::new(
        store.subscribe(),
        config.spiffe_id.clone(),
        known.clone(),
        metrics.clone(),
        shutdown.clone(),
    );

    let mut sds_task = tokio::spawn(service.serve(listener));
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        metrics.clone(),
        shutdown.clone(),
    ));
    let rotation = rotator.handle();
    let rotation_task = tokio::spawn(rotator.run(shutdown.clone()));
    let bundle_task = tokio::spawn(bundle_watch(
        bundles,
        store.clone(),
        BUNDLE_POLL,
        shutdown.clone(),
    ));

    let tds: Vec<String> = known.iter().map(|t| format!("spiffe://{t}")).collect();
    info!(
        spiffe_id = %config.spiffe_id,
        sds_socket = %config.sds_socket.display(),
        admin = %format!("http://{admin_addr}"),
        ca = %config.ca.addr,
        cert_ttl = %humantime::format_duration(config.cert_ttl),
        rotation_ratio = config.rotation_ratio,
        "svidgate agent serving SDS secrets default, {}, ROOTCA, ALL, {} on {}; admin /healthz/ready and /metrics on http://{}",
        config.spiffe_id,
        tds.join(", "),
        config.sds_socket.display(),
        admin_addr,
    );

    let result = loop {
        tokio::select! {
            _ = sigterm.recv() => {
                info!("SIGTERM: draining");
                break Ok(());
            }
            _ = sigint.recv() => {
                info!("SIGINT: draining");
                break Ok(());
            }
            _ = sighup.recv() => {
                info!("SIGHUP: renewing the certificate now");
                rotation.trigger();
            }
            r = &mut sds_task => break match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServeError::Sds(e)),
                Err(e) => {
                    warn!(error = %e, "SDS server task failed");
                    Ok(())
                }
            },
        }
    };
    let _ = shutdown_tx.send(true);
    let drain = async {
        if !sds_task.is_finished() {
            let _ = (&mut sds_task).await;
        }
        let _ = admin_task.await;
        let _ = rotation_task.await;
        let _ = bundle_task.await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        warn!("drain did not finish within {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    sds::remove_socket(&config.sds_socket);
    info!(sds_socket = %config.sds_socket.display(), "stopped; SDS socket removed");
    result
}
