//! `svidgate agent` (long-running): rotation loop → [`SecretStore`] → SDS on a Unix socket
//! (and the SPIFFE Workload API on another, when asked), trust bundles kept current, admin
//! HTTP, clean drain on SIGTERM/SIGINT.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use svidgate_core::{SpiffeId, TrustDomain};
use svidgate_pki::pem::certs_to_pem;
use svidgate_pki::{Anchors, CertificateDer, KeyType, WorkloadCert};
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
use super::workload_api::WorkloadApiService;

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
    #[error("Workload API server: {0}")]
    WorkloadApi(tonic::transport::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
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

impl CaSource {
    /// The configured identity, key type, lifetime, bundle file and skew, with a new CA client.
    pub fn new(config: &AgentConfig) -> Result<Self, CaError> {
        Ok(CaSource {
            client: IstioCaClient::new(config.ca.clone())?,
            spiffe_id: config.spiffe_id.clone(),
            key_type: config.key_type,
            ttl: config.cert_ttl,
            anchors: config.bundle.clone(),
            skew: config.clock_skew,
        })
    }

    /// One fresh certificate, checked against `anchors` (the bundle file as read by the caller).
    pub async fn fetch_with(
        &self,
        anchors: &[CertificateDer<'static>],
    ) -> Result<WorkloadCert, FetchError> {
        fetch_svid(
            &self.client,
            &self.spiffe_id,
            self.key_type,
            self.ttl,
            Anchors::Bundle(anchors),
            self.skew,
        )
        .await
    }
}

impl CertSource for CaSource {
    /// The bundle file (`OnceError::Bundle`) or the fetch (`OnceError::Fetch`).
    type Error = OnceError;

    async fn fetch(&self) -> Result<Issued, OnceError> {
        let anchors = load_bundle(&self.anchors)?;
        let cert = self.fetch_with(&anchors).await?;
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

/// Runs until SIGTERM/SIGINT, then drains: stops accepting, ends every SDS and Workload API
/// stream, removes the sockets. SIGHUP renews the certificate now (one CA request, however many signals).
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
    let workload_api = match &config.workload_api_socket {
        Some(path) => Some(sds::bind_socket(path, config.workload_api_socket_mode).await?),
        None => None,
    };
    let source = CaSource::new(&config)?;
    let rotator = Rotator::new(
        source,
        store.clone(),
        bundles.clone(),
        metrics.clone(),
        RotationConfig {
            ratio: config.rotation_ratio,
            jitter: config.rotation_jitter,
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
    let mut wapi_task = workload_api.map(|listener| {
        let service = WorkloadApiService::new(
            store.subscribe(),
            local.clone(),
            metrics.workload_api.clone(),
            shutdown.clone(),
        );
        tokio::spawn(service.serve(listener))
    });
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
    if let Some(path) = &config.workload_api_socket {
        info!(
            workload_api_socket = %path.display(),
            "serving the SPIFFE Workload API (X.509-SVID profile) on {}; SPIFFE_ENDPOINT_SOCKET=unix://{}",
            path.display(),
            path.display(),
        );
    }

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
            Some(r) = async { Some(wapi_task.as_mut()?.await) } => break match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServeError::WorkloadApi(e)),
                Err(e) => {
                    warn!(error = %e, "Workload API server task failed");
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
        if let Some(task) = wapi_task.as_mut().filter(|t| !t.is_finished()) {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        warn!("drain did not finish within {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    sds::remove_socket(&config.sds_socket);
    if let Some(path) = &config.workload_api_socket {
        sds::remove_socket(path);
    }
    info!(
        sds_socket = %config.sds_socket.display(),
        workload_api_socket = %config.workload_api_socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        "stopped; sockets removed"
    );
    result
}
