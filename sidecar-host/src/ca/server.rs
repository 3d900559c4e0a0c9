//! The gRPC server: `istio.v1.auth.IstioCertificateService/CreateCertificate` over TLS, with
//! optional client certificates, and hot reload of the `cacerts` directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use svidgate_core::{SpiffeId, TrustDomain};
use svidgate_pki::cert::check_leaf_der;
use svidgate_pki::csr_policy::{check_csr, CsrPublicKey, CsrRejection};
use svidgate_pki::pem::certs_to_pem;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tonic::metadata::MetadataMap;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};
use x509_parser::prelude::FromDer;

use super::auth::{Tokens, TokensError, TokensFile};
use super::issue::{issue_server_cert, issue_svid};
use super::kube::{KubeAuth, KubeConfig, KubeError};
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
    /// Token → SPIFFE ID file (parsed again whenever it changes on disk).
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
    /// Kubernetes projected service-account tokens (`--kube-issuer` …).
    pub kube: Option<KubeConfig>,
    /// Bounds on what callers can make the CA hold (before and after authentication).
    pub limits: Limits,
}

/// What a caller — authenticated or not — can make the CA hold. Callers are authenticated
/// from the request headers and the TLS session before any request body is read, so an
/// unauthenticated caller costs at most a TLS session and the HTTP/2 state of its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request message decoded (a CSR is 1–4 KiB).
    pub max_message_size: usize,
    /// Connections open at once (including TLS handshakes in progress); more wait in the
    /// listen queue, not yet accepted, until one ends.
    pub max_connections: usize,
    /// HTTP/2 streams at once per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams_per_connection: u32,
    /// A TLS handshake not finished by then is dropped.
    pub handshake_timeout: Duration,
    /// A request not answered by then fails with DEADLINE_EXCEEDED… or CANCELLED.
    pub request_timeout: Duration,
    /// HTTP/2 PING every interval; a peer that does not answer within the timeout is dropped.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// A connection — idle or not — is closed (GOAWAY, then 10 s grace) after this long;
    /// clients reconnect on their next call. This also bounds idle connections.
    pub max_connection_age: Duration,
}

/// HTTP/2 flow-control windows: what one stream / one connection may have in flight.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 256 * 1024;
/// Largest header block accepted (a projected token is about 1 KiB).
const MAX_HEADER_LIST: u32 = 32 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            max_connections: 512,
            max_streams_per_connection: 16,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
        }
    }
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
    #[error("Kubernetes tokens: {0}")]
    Kube(KubeError),
}

wrap_errors!(
    CaServeError::Tokens(TokensError),
    CaServeError::Io(std::io::Error),
    CaServeError::Kube(KubeError),
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
    // No TLS 1.3 session tickets: an agent connects once per certificate (hours apart, from a
    // fresh process or TLS configuration), so a ticket is never used — issuing two per
    // handshake was wasted work in a restart storm.
    tls.send_tls13_tickets = 0;
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
    kube: Option<Arc<KubeAuth>>,
    tokens: Option<Arc<TokensFile>>,
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

/// A TLS connection holding one of the `max_connections` permits until hyper drops it.
struct Conn {
    io: tokio_rustls::server::TlsStream<TcpStream>,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = <tokio_rustls::server::TlsStream<TcpStream> as Connected>::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Loads the CA and serves on `listener` until shut down.
pub async fn start(cfg: CaServerConfig, listener: TcpListener) -> Result<RunningCa, CaServeError> {
    warn_loose_modes(&cfg);
    let tokens = match &cfg.tokens {
        Some(t) => {
            let file = TokensFile::new(t.clone());
            let n = file.current()?.tokens.len();
            tracing::info!(tokens = n, file = %t.display(), "token authentication enabled");
            Some(Arc::new(file))
        }
        None => None,
    };
    let kube = cfg.kube.clone().map(KubeAuth::new).transpose()?;
    let discovery = kube.as_ref().and_then(|k| k.spawn_discovery());
    let state = build_state(&cfg)?;
    let addr = listener.local_addr()?;
    let limits = cfg.limits.clone();
    let metrics = Arc::new(CaMetrics::new());
    metrics.set_ca_certificate(state.material.not_after);
    let handle = CaHandle {
        cfg: Arc::new(cfg),
        state: Arc::new(RwLock::new(Arc::new(state))),
        kube,
        tokens,
        metrics,
    };
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(64);
    let service = CaService {
        handle: handle.clone(),
    };

    let accept_handle = handle.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let handshake_timeout = limits.handshake_timeout;
    let acceptor = tokio::spawn(async move {
        loop {
            // At the limit, stop accepting: new connections wait in the listen queue (the
            // kernel's backlog), in arrival order, until one ends — a restart storm is served
            // as fast as the CPU allows instead of being refused.
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            if permits.available_permits() == 0 {
                tracing::debug!(
                    "connection limit reached (--max-connections); new connections wait"
                );
            }
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Small TLS records and HTTP/2 frames must not wait for the peer's delayed ACK
            // (Nagle): with it, every call took ~40 ms longer on loopback.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
            }
            let Ok(state) = accept_handle.current() else {
                continue;
            };
            let tx = conn_tx.clone();
            tokio::spawn(async move {
                let acceptor = TlsAcceptor::from(state.tls.clone());
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(io)) => {
                        let conn = Conn {
                            io,
                            _permit: permit,
                        };
                        let _ = tx.send(Ok::<_, std::io::Error>(conn)).await;
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

    // Authentication runs in the interceptor, on the headers and the TLS session, before the
    // body is read; only an authenticated request has its message decoded (≤ max_message_size).
    let grpc = IstioCertificateServiceServer::new(service)
        .max_decoding_message_size(limits.max_message_size);
    let authed = InterceptedService::new(
        grpc,
        Authenticator {
            handle: handle.clone(),
        },
    );
    let join = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
        let res = tonic::transport::Server::builder()
            .max_concurrent_streams(limits.max_streams_per_connection)
            .concurrency_limit_per_connection(limits.max_streams_per_connection as usize)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_max_header_list_size(MAX_HEADER_LIST)
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            .max_connection_age(limits.max_connection_age)
            .max_connection_age_grace(Duration::from_secs(10))
            .timeout(limits.request_timeout)
            .add_service(authed)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = shutdown_rx.await;
            })
            .await;
        acceptor.abort();
        if let Some(w) = watcher {
            w.abort();
        }
        if let Some(d) = discovery {
            d.abort();
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

/// Warns (once, at start) when the CA key or the tokens file is readable by group or others.
fn warn_loose_modes(cfg: &CaServerConfig) {
    let key = cfg.ca_dir.join(store::CA_KEY);
    for path in std::iter::once(&key).chain(cfg.tokens.as_ref()) {
        if let Some(mode) = store::loose_mode(path) {
            tracing::warn!(
                file = %path.display(),
                mode = %format!("{mode:04o}"),
                "secret file is accessible to group/others; chmod 0600 it (Kubernetes: defaultMode 0400)"
            );
        }
    }
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
    Kube(SpiffeId),
    TrustCsr,
}

impl Caller {
    fn method(&self) -> &'static str {
        match self {
            Caller::Mtls(_) => "mtls",
            Caller::Token(_) => "token",
            Caller::Kube(_) => "kubernetes-token",
            Caller::TrustCsr => "insecure-trust-csr",
        }
    }

    fn identity(&self) -> Option<&SpiffeId> {
        match self {
            Caller::Mtls(id) | Caller::Token(id) | Caller::Kube(id) => Some(id),
            Caller::TrustCsr => None,
        }
    }
}

/// The bearer token of `authorization: Bearer <token>`; `Err` for a header that is present
/// but not a usable Bearer token.
fn bearer(md: &MetadataMap) -> Option<Result<&str, Status>> {
    let value = md.get("authorization")?;
    Some(
        value
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Status::unauthenticated("authorization header is not a Bearer token")
                    })
            }),
    )
}

/// Authenticates every call from its headers and TLS session before the body is read, and
/// hands the [`Caller`] to the handler in the request extensions.
#[derive(Clone)]
struct Authenticator {
    handle: CaHandle,
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.handle.authenticate(&req).inspect_err(|status| {
            self.handle.metrics.refused(status.code());
        })?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

impl CaHandle {
    /// Who is calling: the client certificate if there is one (renewal), else the bearer
    /// token, else (dev only) nobody in particular.
    ///
    /// A caller with a client certificate may also send a Bearer token (Istio's agent does).
    /// The certificate is the credential; the token can only take away: when it is valid for
    /// a different identity the call is refused (PERMISSION_DENIED), so two credentials never
    /// combine into more than either grants.
    fn authenticate(&self, req: &Request<()>) -> Result<Caller, Status> {
        let token = bearer(req.metadata());
        if let Some(leaf) = req.peer_certs().and_then(|c| c.first().cloned()) {
            let id = client_cert_identity(&leaf)?;
            let token_id = match token {
                Some(Ok(t)) if self.token_auth_enabled() => Some(self.token_identity(t)),
                _ => None,
            };
            if let Some(Ok(tok)) = &token_id {
                if let Some(tid) = tok.identity().filter(|tid| **tid != id) {
                    tracing::info!(caller = %id, token_for = %tid, "client certificate and token disagree");
                    return Err(Status::permission_denied(format!(
                        "client certificate is {id} but the bearer token is for {tid}"
                    )));
                }
            }
            self.still_authorized(&id, token_id.is_some_and(|t| t.is_ok()))?;
            return Ok(Caller::Mtls(id));
        }
        match token {
            Some(t) if self.token_auth_enabled() => self.token_identity(t?),
            Some(_) if self.cfg.insecure_trust_csr => Ok(Caller::TrustCsr),
            Some(_) => Err(Status::unauthenticated(
                "token authentication is not enabled on this CA (--tokens, --kube-issuer)",
            )),
            None if self.cfg.insecure_trust_csr => Ok(Caller::TrustCsr),
            None => Err(Status::unauthenticated(
                "no credentials: present a client certificate or a Bearer token",
            )),
        }
    }

    fn token_auth_enabled(&self) -> bool {
        self.cfg.tokens.is_some() || self.kube.is_some()
    }

    /// The tokens file as it is now (parsed again only when it changed on disk).
    fn tokens(&self) -> Option<Result<Arc<Tokens>, Status>> {
        let current = self.tokens.as_ref()?.current();
        match &current {
            Ok(c) if c.reloaded => self.metrics.reloaded("tokens", true),
            Ok(_) => {}
            Err(_) => self.metrics.reloaded("tokens", false),
        }
        Some(current.map(|c| c.tokens).map_err(|e| {
            tracing::error!(error = %e, "tokens file unusable; refusing token callers");
            Status::unavailable("token authentication is unavailable")
        }))
    }

    /// The identity of a bearer token: an entry of the tokens file, else (with
    /// `--kube-issuer`) a valid Kubernetes service-account token.
    fn token_identity(&self, token: &str) -> Result<Caller, Status> {
        if let Some(tokens) = self.tokens() {
            if let Some(id) = tokens?.lookup(token) {
                return Ok(Caller::Token(id.clone()));
            }
        }
        match &self.kube {
            Some(k) => k.identity(token, &self.cfg.trust_domain).map(Caller::Kube),
            None => Err(Status::permission_denied("unknown token")),
        }
    }

    /// Revocation: with a tokens file or Kubernetes tokens configured, a client certificate
    /// renews only while its identity is still authorized there — the call carries a valid
    /// token for it (`token_valid`: checked to agree with the certificate), or an entry of the
    /// tokens file maps to it. Without either mechanism the certificate alone is the
    /// credential.
    fn still_authorized(&self, id: &SpiffeId, token_valid: bool) -> Result<(), Status> {
        if !self.token_auth_enabled() || token_valid {
            return Ok(());
        }
        if let Some(tokens) = self.tokens() {
            if tokens?.authorizes(id) {
                return Ok(());
            }
        }
        tracing::info!(caller = %id, "renewal refused: the identity is no longer authorized");
        let why = match (self.cfg.tokens.is_some(), self.kube.is_some()) {
            (true, false) => "no entry of the tokens file maps to it",
            (false, true) => "the call carries no valid Kubernetes token for it",
            _ => "no entry of the tokens file maps to it and the call carries no valid Kubernetes token for it",
        };
        Err(Status::permission_denied(format!(
            "client certificate for {id}: the identity is no longer authorized ({why})"
        )))
    }
}

struct CaService {
    handle: CaHandle,
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
    /// CreateCertificate: the answer and the key type of the issued certificate. The caller
    /// was authenticated by the interceptor before the body was decoded.
    fn create(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<(Response<IstioCertificateResponse>, &'static str), Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::internal("unauthenticated request reached the handler"))?;
        let cfg = &self.handle.cfg;
        let req = request.into_inner();
        let csr = check_csr(&req.csr, &cfg.trust_domain).map_err(|e| {
            tracing::info!(auth = caller.method(), reason = %e, "CSR refused");
            rejection_status(e)
        })?;
        match caller.identity() {
            Some(id) if *id != csr.spiffe_id => {
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
