//! Kubernetes identities: projected service-account tokens (`authorization: Bearer <jwt>`)
//! verified with `svidgate_pki::jwt` against the cluster's JWKS, which comes from
//!
//! - a file (`--kube-jwks FILE`, e.g. `kubectl get --raw /openid/v1/jwks`), re-read when its
//!   modification time or size changes (checked on each token call); or
//! - the issuer (`--kube-issuer URL` without `--kube-jwks`): OIDC discovery, the way the API
//!   server publishes it — `GET <issuer>/.well-known/openid-configuration`, whose `issuer` must
//!   equal the configured one, then `GET <jwks_uri>`; both over HTTPS verified against
//!   `--kube-issuer-ca` (in a pod: the service account's `ca.crt`), with the CA's own
//!   service-account token as bearer when one is configured or mounted. Re-fetched every
//!   `--kube-jwks-refresh`, and early (at most every 30 s) when a token names an unknown `kid`
//!   (key rotation).
//!
//! A JWKS that fails to load or parse never replaces a good one; until one is loaded, token
//! callers get UNAVAILABLE.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use svidgate_core::{SpiffeId, TrustDomain};
use svidgate_pki::jwt::{self, Expect, Jwks, JwtError, MAX_JWKS_LEN};
use tokio::sync::Notify;
use tonic::Status;

use crate::runtime::read_cert_file;

/// The service-account files the kubelet mounts into every pod (the CA's own, for discovery).
pub const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
pub const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Istio's default audience for the token the agent presents.
pub const DEFAULT_AUDIENCE: &str = "istio-ca";
/// How often a discovered JWKS is re-fetched.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The shortest pause between two fetches (an unknown `kid` asks for an early one).
const MIN_REFETCH: Duration = Duration::from_secs(30);
/// Timeout of one discovery HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Discover {
        /// Roots for the issuer's TLS certificate.
        ca: PathBuf,
        /// Bearer token file for the discovery requests.
        token: Option<PathBuf>,
        refresh: Duration,
    },
}

/// `--kube-*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    pub issuer: String,
    pub audience: String,
    pub source: JwksSource,
}

/// Why the Kubernetes token mode cannot start or a JWKS cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// A file a flag names (`--kube-jwks`, `--kube-issuer-ca`, `--kube-discovery-token`).
    #[error("{flag} {path}: {reason}")]
    File {
        flag: &'static str,
        path: String,
        reason: String,
    },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{0}")]
    Jwks(#[from] jwt::JwksError),
}

type FileStamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| m.modified().ok().map(|t| (t, m.len())))
}

/// Reads a JWKS file (at most [`MAX_JWKS_LEN`] bytes) and parses it.
fn load_file(path: &Path) -> Result<Jwks, KubeError> {
    use std::io::Read;
    let err = |reason: String| KubeError::File {
        flag: "--kube-jwks",
        path: path.display().to_string(),
        reason,
    };
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_JWKS_LEN as u64 + 1).read_to_end(&mut buf))
        .map_err(|e| err(e.to_string()))?;
    Ok(Jwks::parse(&buf)?)
}

struct Loaded {
    jwks: Arc<Jwks>,
    stamp: FileStamp,
}

/// Verifies Kubernetes tokens for the CA.
pub struct KubeAuth {
    cfg: KubeConfig,
    loaded: RwLock<Option<Loaded>>,
    /// Discovery: asks the fetch task for an early refresh (unknown `kid`).
    refetch: Notify,
}

impl std::fmt::Debug for KubeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeAuth")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Maps a token verification failure to the gRPC status the caller sees.
fn status(e: &JwtError) -> Status {
    Status::unauthenticated(format!("Kubernetes token refused: {e}"))
}

impl KubeAuth {
    /// Loads a `--kube-jwks` file now (an error fails the start), or, for discovery, starts
    /// empty: call [`KubeAuth::spawn_discovery`].
    pub fn new(cfg: KubeConfig) -> Result<Arc<KubeAuth>, KubeError> {
        let loaded = match &cfg.source {
            JwksSource::File(p) => {
                let st = stamp(p);
                let jwks = load_file(p)?;
                tracing::info!(file = %p.display(), keys = jwks.len(), issuer = %cfg.issuer, "Kubernetes token authentication enabled");
                Some(Loaded {
                    jwks: Arc::new(jwks),
                    stamp: st,
                })
            }
            JwksSource::Discover { ca, .. } => {
                client_tls(ca)?;
                None
            }
        };
        Ok(Arc::new(KubeAuth {
            cfg,
            loaded: RwLock::new(loaded),
            refetch: Notify::new(),
        }))
    }

    /// The current JWKS; for a file source, re-read first when the file changed (a file that
    /// no longer parses keeps the previous keys, with a warning).
    fn jwks(&self) -> Result<Arc<Jwks>, Status> {
        if let JwksSource::File(path) = &self.cfg.source {
            let now = stamp(path);
            let changed = self
                .loaded
                .read()
                .map(|g| g.as_ref().map(|l| l.stamp) != Some(now))
                .unwrap_or(true);
            if changed {
                match load_file(path) {
                    Ok(jwks) => {
                        tracing::info!(file = %path.display(), keys = jwks.len(), "JWKS file changed; reloaded");
                        self.set(jwks, now);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS file changed but cannot be used; keeping the previous keys");
                        // Do not re-read it on every call until it changes again.
                        if let Ok(mut g) = self.loaded.write() {
                            if let Some(l) = g.as_mut() {
                                l.stamp = now;
                            }
                        }
                    }
                }
            }
        }
        self.loaded
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|l| l.jwks.clone()))
            .ok_or_else(|| Status::unavailable("the Kubernetes JWKS is not loaded yet"))
    }

    fn set(&self, jwks: Jwks, stamp: FileStamp) {
        if let Ok(mut g) = self.loaded.write() {
            *g = Some(Loaded {
                jwks: Arc::new(jwks),
                stamp,
            });
        }
    }

    /// Whether a JWKS is loaded (discovery may still be fetching the first one).
    pub fn ready(&self) -> bool {
        self.loaded.read().map(|g| g.is_some()).unwrap_or(false)
    }

    /// The SPIFFE ID `spiffe://<td>/ns/<ns>/sa/<sa>` a valid token speaks for.
    pub fn identity(&self, token: &str, td: &TrustDomain) -> Result<SpiffeId, Status> {
        let jwks = self.jwks()?;
        let expect = Expect {
            issuer: &self.cfg.issuer,
            audience: &self.cfg.audience,
            leeway_secs: jwt::DEFAULT_LEEWAY_SECS,
        };
        let now = svidgate_pki::time::unix_seconds(SystemTime::now());
        let sa = jwt::verify(token, &jwks, &expect, now).map_err(|e| {
            if matches!(e, JwtError::UnknownKid(_)) {
                self.refetch.notify_one();
            }
            tracing::info!(reason = %e, "Kubernetes token refused");
            status(&e)
        })?;
        SpiffeId::parse(&format!("spiffe://{td}/ns/{}/sa/{}", sa.namespace, sa.name))
            .map_err(|e| Status::permission_denied(format!("service account: {e}")))
    }

    /// Discovery: fetches the JWKS now and then every `refresh` (after a failure: every 30 s,
    /// or earlier when asked by an unknown `kid`). No-op for a file source.
    pub fn spawn_discovery(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let JwksSource::Discover { ca, token, refresh } = self.cfg.source.clone() else {
            return None;
        };
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut last = None::<Instant>;
            loop {
                if let Some(t) = last {
                    let wait = MIN_REFETCH.saturating_sub(t.elapsed());
                    tokio::time::sleep(wait).await;
                }
                last = Some(Instant::now());
                let next = match discover(&me.cfg.issuer, &ca, token.as_deref()).await {
                    Ok(jwks) => {
                        tracing::info!(issuer = %me.cfg.issuer, keys = jwks.len(), "fetched the Kubernetes JWKS");
                        me.set(jwks, None);
                        refresh
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS discovery failed; keeping the current keys");
                        MIN_REFETCH
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(next) => {}
                    _ = me.refetch.notified() => {}
                }
            }
        }))
    }
}

fn client_tls(ca: &Path) -> Result<Arc<ClientConfig>, KubeError> {
    let err = |reason: String| KubeError::File {
        flag: "--kube-issuer-ca",
        path: ca.display().to_string(),
        reason,
    };
    let certs = read_cert_file(ca).map_err(|e| err(e.reason))?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| err(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// OIDC discovery: the issuer's configuration, then its `jwks_uri`.
pub async fn discover(issuer: &str, ca: &Path, token: Option<&Path>) -> Result<Jwks, KubeError> {
    let tls = client_tls(ca)?;
    let bearer = match token {
        Some(p) => Some(zeroize::Zeroizing::new(
            std::fs::read_to_string(p)
                .map_err(|e| KubeError::File {
                    flag: "--kube-discovery-token",
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?
                .trim()
                .to_owned(),
        )),
        None => None,
    };
    let bearer = bearer.as_ref().map(|b| b.as_str());
    let config_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = https_get(&config_url, &tls, bearer).await?;
    #[derive(serde::Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let d: Discovery = serde_json::from_slice(&body).map_err(|e| KubeError::Http {
        url: config_url.clone(),
        reason: format!("not an OpenID configuration: {e}"),
    })?;
    if d.issuer != issuer {
        return Err(KubeError::Http {
            url: config_url,
            reason: format!("issuer {:?} is not --kube-issuer {issuer:?}", d.issuer),
        });
    }
    let body = https_get(&d.jwks_uri, &tls, bearer).await?;
    Ok(Jwks::parse(&body)?)
}

/// One HTTPS GET (HTTP/1.1), at most [`MAX_JWKS_LEN`] bytes of body, within [`HTTP_TIMEOUT`].
async fn https_get(
    url: &str,
    tls: &Arc<ClientConfig>,
    bearer: Option<&str>,
) -> Result<Bytes, KubeError> {
    let err = |reason: String| KubeError::Http {
        url: url.to_owned(),
        reason,
    };
    let uri: hyper::Uri = url.parse().map_err(|e| err(format!("not a URL: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(err("only https URLs are fetched".into()));
    }
    let host = uri
        .host()
        .ok_or_else(|| err("no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.clone()).map_err(|e| err(e.to_string()))?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| err(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| err(format!("TLS: {e}")))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| err(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(
                hyper::header::HOST,
                uri.authority().map_or("", |a| a.as_str()),
            )
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(t) = bearer {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| err(e.to_string()))?;
        let res = send
            .send_request(req)
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_JWKS_LEN)
            .collect()
            .await
            .map_err(|e| err(format!("body: {e}")))?
            .to_bytes();
        driver.abort();
        if !status.is_success() {
            return Err(err(format!("HTTP {status}")));
        }
        Ok(body)
    };
    tokio::time::timeout(HTTP_TIMEOUT, work)
        .await
        .map_err(|_| err(format!("no answer within {HTTP_TIMEOUT:?}")))?
}
