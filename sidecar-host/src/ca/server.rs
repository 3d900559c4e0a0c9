//! The gRPC server: `istio.v1.auth.IstioCertificateService/CreateCertificate` over TLS, with
//! optional client certificates, and hot reload of the `cacerts` directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use svidgate_core::{SpiffeId, TrustDomain};
use svidgate_pki::cert::check_leaf_der;
use svidgate_pki::csr_policy::{check_csr, CsrPublicKey, CsrRejection};
use svidgate_pki::pem::certs_to_pem;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tonic::{Request, Response, Status};
use x509_parser::prelude::FromDer;

use super::auth::{Tokens, TokensError};
use super::issue::{issue_server_cert, issue_svid};
use super::metrics::CaMetrics;
use super::store::{self, CaMaterial, StoreError};
use crate::pb::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use crate::pb::{IstioCertificateRequest, IstioCertificateResponse};

/// The default shortest certificate the CA issues (short lifetimes are for demos of rotation).
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(5);
/// The default names in the CA's serving certificate.
pub const DEFAULT_SERVER_NAMES: [&str; 4] = [
    "localhost",
    "istiod.istio-system.svc",
    "svidgate-ca.istio-system.svc",
    "127.0.0.1",
];

/// Settings of a running CA.
#[derive(Debug, Clone)]
pub struct CaServerConfig {
    pub ca_dir: PathBuf,
    pub trust_domain: TrustDomain,
    /// Token → SPIFFE ID file (re-read per call).
    pub tokens: Option<PathBuf>,
    /// Dev only: trust the identity the CSR asks for when the caller has no credentials.
    pub insecure_trust_csr: bool,
    pub max_ttl: Duration,
    /// Shorter requests are refused (INVALID_ARGUMENT).
    pub min_ttl: Duration,
    /// Used when the request's validity_duration is 0.
    pub default_ttl: Duration,
    /// DNS names / IPs of the CA's serving certificate.
    pub server_names: Vec<String>,
    /// Poll the `cacerts` files and reload on change (None: only on [`CaHandle::reload`]).
    pub watch_interval: Option<Duration>,
}

/// Errors starting the CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{0}")]
    Tokens(TokensError),
    #[error("listening: {0}")]
    Io(std::io::Error),
}

wrap_errors!(
    CaServeError::Tokens(TokensError),
    CaServeError::Io(std::io::Error),
);

struct CaState {
    material: CaMaterial,
    tls: Arc<ServerConfig>,
}

fn build_state(cfg: &CaServerConfig) -> Result<CaState, CaServeError> {
    let material = store::load(&cfg.ca_dir)?;
    let (chain, key) = issue_server_cert(&material, &cfg.server_names, SystemTime::now())
        .map_err(|e| CaServeError::Tls(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for r in &material.roots {
        roots
            .add(r.clone())
            .map_err(|e| CaServeError::Tls(format!("root-cert.pem: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| CaServeError::Tls(e.to_string()))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| CaServeError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(CaState {
        material,
        tls: Arc::new(tls),
    })
}

/// Shared handle: reload the `cacerts` directory (root rotation) without a restart.
#[derive(Clone)]
pub struct CaHandle {
    cfg: Arc<CaServerConfig>,
    state: Arc<RwLock<Arc<CaState>>>,
    metrics: Arc<CaMetrics>,
}

impl std::fmt::Debug for CaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaHandle")
            .field("ca_dir", &self.cfg.ca_dir)
            .finish_non_exhaustive()
    }
}

impl CaHandle {
    /// Re-reads the `cacerts` directory; on any error the current material stays in use.
    /// New connections get a new serving certificate; issued chains use the new root.
    pub fn reload(&self) -> Result<(), CaServeError> {
        let new = build_state(&self.cfg);
        self.metrics.reloaded("cacerts", new.is_ok());
        let new = new?;
        self.metrics.set_ca_certificate(new.material.not_after);
        tracing::info!(ca_dir = %self.cfg.ca_dir.display(), roots = new.material.roots.len(), "reloaded CA material");
        if let Ok(mut g) = self.state.write() {
            *g = Arc::new(new);
        }
        Ok(())
    }

    /// The CA's Prometheus metrics (served by `svidgate ca serve` on `--admin-addr`).
    pub fn metrics(&self) -> Arc<CaMetrics> {
        self.metrics.clone()
    }

    /// Reads the tokens file (on every call that uses it), counted as a tokens reload.
    fn load_tokens(&self, path: &std::path::Path) -> Result<Tokens, TokensError> {
        let t = Tokens::load(path);
        self.metrics.reloaded("tokens", t.is_ok());
        t
    }

    fn current(&self) -> Result<Arc<CaState>, Status> {
        self.state
            .read()
            .map(|g| g.clone())
            .map_err(|_| Status::internal("CA state unavailable"))
    }

    /// The root workloads should trust now (PEM).
    pub fn root_pem(&self) -> Option<String> {
        self.current().ok().map(|s| certs_to_pem(&s.material.roots))
    }
}

/// A CA serving in the background (tests, `svidgate ca serve`).
#[derive(Debug)]
pub struct RunningCa {
    pub addr: SocketAddr,
    pub handle: CaHandle,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl RunningCa {
    /// Stops accepting and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }

    /// Waits until the server ends (it ends on shutdown or a fatal error).
    pub async fn wait(mut self) {
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

impl Drop for RunningCa {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            j.abort();
        }
    }
}

/// Loads the CA and serves on `listener` until shut down.
pub async fn start(cfg: CaServerConfig, listener: TcpListener) -> Result<RunningCa, CaServeError> {
    if let Some(t) = &cfg.tokens {
        let tokens = Tokens::load(t)?;
        tracing::info!(tokens = tokens.len(), file = %t.display(), "token authentication enabled");
    }
    let state = build_state(&cfg)?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(CaMetrics::new());
    metrics.set_ca_certificate(state.material.not_after);
    let handle = CaHandle {
        cfg: Arc::new(cfg),
        state: Arc::new(RwLock::new(Arc::new(state))),
        metrics,
    };
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(64);
    let service = CaService {
        handle: handle.clone(),
    };

    let accept_handle = handle.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(state) = accept_handle.current() else {
                continue;
            };
            let tx = conn_tx.clone();
            tokio::spawn(async move {
                let acceptor = TlsAcceptor::from(state.tls.clone());
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });

    let watcher = handle.cfg.watch_interval.map(|every| {
        let h = handle.clone();
        tokio::spawn(async move {
            let mut last = fingerprint(&h.cfg.ca_dir);
            loop {
                tokio::time::sleep(every).await;
                let now = fingerprint(&h.cfg.ca_dir);
                if now != last {
                    match h.reload() {
                        Ok(()) => last = now,
                        Err(e) => tracing::warn!(error = %e, "cacerts changed but cannot be loaded; keeping the current material"),
                    }
                }
            }
        })
    });

    let join = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
        let res = tonic::transport::Server::builder()
            .add_service(IstioCertificateServiceServer::new(service))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = shutdown_rx.await;
            })
            .await;
        acceptor.abort();
        if let Some(w) = watcher {
            w.abort();
        }
        if let Err(e) = res {
            tracing::error!(error = %e, "CA server stopped");
        }
    });
    Ok(RunningCa {
        addr,
        handle,
        shutdown: Some(shutdown_tx),
        join: Some(join),
    })
}

fn fingerprint(dir: &std::path::Path) -> Vec<Option<(SystemTime, u64)>> {
    store::ALL_FILES
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .ok()
                .and_then(|m| m.modified().ok().map(|t| (t, m.len())))
        })
        .collect()
}

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    Mtls(SpiffeId),
    Token(SpiffeId),
    TrustCsr,
}

impl Caller {
    fn method(&self) -> &'static str {
        match self {
            Caller::Mtls(_) => "mtls",
            Caller::Token(_) => "token",
            Caller::TrustCsr => "insecure-trust-csr",
        }
    }
}

struct CaService {
    handle: CaHandle,
}

impl CaService {
    fn authenticate(&self, req: &Request<IstioCertificateRequest>) -> Result<Caller, Status> {
        let cfg = &self.handle.cfg;
        if let Some(certs) = req.peer_certs() {
            if let Some(leaf) = certs.first() {
                let id = client_cert_identity(leaf)?;
                self.token_agrees(req, &id)?;
                return Ok(Caller::Mtls(id));
            }
        }
        if let Some(value) = req.metadata().get("authorization") {
            let value = value
                .to_str()
                .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Status::unauthenticated("authorization header is not a Bearer token")
                })?;
            match &cfg.tokens {
                Some(path) => {
                    let tokens = self.handle.load_tokens(path).map_err(|e| {
                        tracing::error!(error = %e, "tokens file unusable; refusing token callers");
                        Status::unavailable("token authentication is unavailable")
                    })?;
                    return match tokens.lookup(token) {
                        Some(id) => Ok(Caller::Token(id.clone())),
                        None => Err(Status::permission_denied("unknown token")),
                    };
                }
                None if cfg.insecure_trust_csr => return Ok(Caller::TrustCsr),
                None => {
                    return Err(Status::unauthenticated(
                        "token authentication is not enabled on this CA (--tokens)",
                    ))
                }
            }
        }
        if cfg.insecure_trust_csr {
            return Ok(Caller::TrustCsr);
        }
        Err(Status::unauthenticated(
            "no credentials: present a client certificate or a Bearer token",
        ))
    }
}

impl CaService {
    /// A caller with a client certificate may also send a Bearer token (Istio's agent does).
    /// The certificate is the credential; the token can only take away: when it maps to a
    /// different identity in the tokens file the call is refused (PERMISSION_DENIED), so two
    /// credentials never combine into more than either grants. A token that maps to nothing
    /// (unknown, revoked, tokens file unusable, tokens not enabled, malformed header) grants
    /// nothing and is ignored.
    fn token_agrees(
        &self,
        req: &Request<IstioCertificateRequest>,
        cert_id: &SpiffeId,
    ) -> Result<(), Status> {
        let (Some(path), Some(value)) =
            (&self.handle.cfg.tokens, req.metadata().get("authorization"))
        else {
            return Ok(());
        };
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(());
        };
        let Ok(tokens) = self.handle.load_tokens(path) else {
            return Ok(());
        };
        match tokens.lookup(token) {
            Some(token_id) if token_id != cert_id => {
                tracing::info!(caller = %cert_id, token_for = %token_id, "client certificate and token disagree");
                Err(Status::permission_denied(format!(
                    "client certificate is {cert_id} but the bearer token is for {token_id}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The SPIFFE ID of a (TLS-verified) client certificate.
fn client_cert_identity(leaf: &CertificateDer<'_>) -> Result<SpiffeId, Status> {
    check_leaf_der(leaf.as_ref()).map_err(|e| {
        Status::permission_denied(format!("client certificate is not an X509-SVID: {e}"))
    })
}

fn rejection_status(e: CsrRejection) -> Status {
    match e {
        CsrRejection::ForeignTrustDomain { .. } => Status::permission_denied(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

/// The lifetime to issue for a requested `validity_duration` (seconds).
pub fn effective_ttl(requested: i64, cfg: &CaServerConfig) -> Result<Duration, Status> {
    if requested < 0 {
        return Err(Status::invalid_argument(format!(
            "validity_duration {requested} is negative"
        )));
    }
    if requested == 0 {
        return Ok(cfg.default_ttl.min(cfg.max_ttl));
    }
    let d = Duration::from_secs(requested as u64);
    if d < cfg.min_ttl {
        return Err(Status::invalid_argument(format!(
            "validity_duration {requested}s is below the minimum of {}s",
            cfg.min_ttl.as_secs()
        )));
    }
    Ok(d.min(cfg.max_ttl))
}

#[tonic::async_trait]
impl IstioCertificateService for CaService {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let started = std::time::Instant::now();
        let result = self.create(request);
        let m = &self.handle.metrics;
        m.observe_duration(started.elapsed().as_secs_f64());
        match &result {
            Ok((_, key_type)) => m.issued(key_type),
            Err(status) => m.refused(status.code()),
        }
        result.map(|(response, _)| response)
    }
}

/// The `key_type` label of an accepted CSR's key.
fn key_type(key: &CsrPublicKey) -> &'static str {
    if key.is_rsa() {
        "rsa"
    } else if rcgen::PublicKeyData::algorithm(key) == &rcgen::PKCS_ECDSA_P384_SHA384 {
        "ecdsa-p384"
    } else {
        "ecdsa-p256"
    }
}

impl CaService {
    /// CreateCertificate: the answer and the key type of the issued certificate.
    fn create(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<(Response<IstioCertificateResponse>, &'static str), Status> {
        let caller = self.authenticate(&request)?;
        let cfg = &self.handle.cfg;
        let req = request.into_inner();
        let csr = check_csr(&req.csr, &cfg.trust_domain).map_err(|e| {
            tracing::info!(auth = caller.method(), reason = %e, "CSR refused");
            rejection_status(e)
        })?;
        match &caller {
            Caller::Mtls(id) | Caller::Token(id) if *id != csr.spiffe_id => {
                tracing::info!(auth = caller.method(), caller = %id, requested = %csr.spiffe_id, "identity mismatch");
                return Err(Status::permission_denied(format!(
                    "caller is {id} but the CSR asks for {}",
                    csr.spiffe_id
                )));
            }
            _ => {}
        }
        let ttl = effective_ttl(req.validity_duration, cfg)?;
        let state = self.handle.current()?;
        let now = SystemTime::now();
        let leaf = issue_svid(&state.material, &csr.spiffe_id, &csr.public_key, ttl, now).map_err(
            |e| {
                tracing::error!(error = %e, "signing failed");
                Status::internal("signing failed")
            },
        )?;
        let mut chain = vec![leaf];
        chain.extend(state.material.chain_after_leaf());
        if let Ok((_, c)) = x509_parser::certificate::X509Certificate::from_der(chain[0].as_ref()) {
            tracing::info!(
                spiffe_id = %csr.spiffe_id,
                auth = caller.method(),
                serial = %hex::encode(c.raw_serial()),
                not_after = %c.validity().not_after,
                "issued certificate"
            );
        }
        let response = Response::new(IstioCertificateResponse {
            cert_chain: chain
                .iter()
                .map(|c| certs_to_pem(std::slice::from_ref(c)))
                .collect(),
        });
        Ok((response, key_type(&csr.public_key)))
    }
}
