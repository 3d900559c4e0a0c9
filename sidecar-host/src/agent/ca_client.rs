//! The client side of the Istio CA gRPC API (`istio.v1.auth.IstioCertificateService`).
//!
//! [`CaClient`] is the seam the agent depends on (tests and the rotation loop can use any
//! implementation); [`IstioCaClient`] is the real one: TLS verified against a configured root
//! file, `authorization: Bearer <token>` read fresh from a token file on every call (projected
//! tokens rotate), the `ClusterID` header, a deadline per attempt, and retries with capped
//! exponential backoff and jitter on transient codes.
//!
//! Retried codes: `UNAVAILABLE` (CA down, connection refused/reset, TLS/DNS trouble — tonic
//! maps transport errors here), `DEADLINE_EXCEEDED` (our per-attempt deadline), and
//! `RESOURCE_EXHAUSTED` / `ABORTED` (overload/contention, explicitly "try again" in the gRPC
//! status-code guide). `INTERNAL` is not retried: istiod and istio-csr answer it for signing
//! failures that repeat on retry, and a bounded retry storm against a broken CA helps nobody;
//! the rotation loop retries later anyway. Everything else (`PERMISSION_DENIED`,
//! `INVALID_ARGUMENT`, `UNAUTHENTICATED`, …) is permanent for this request and is returned at once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::Rng;
use svidgate_pki::pem::certs_to_pem;
use svidgate_pki::WorkloadCert;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;
use zeroize::Zeroizing;

use super::rotation::backoff_delay;
use crate::pb::istio_certificate_service_client::IstioCertificateServiceClient;
use crate::pb::IstioCertificateRequest;
use crate::runtime::read_cert_file;

/// Signs CSRs. Implemented by [`IstioCaClient`]; tests may implement it directly.
#[tonic::async_trait]
pub trait CaClient: Send + Sync {
    /// Sends a PEM CSR asking for a certificate valid for `ttl`; returns the CA's
    /// `cert_chain` as sent (leaf first, root last; an element may hold several PEM blocks).
    /// The answer is untrusted: check it with [`svidgate_pki::verify_issued`].
    async fn sign(&self, csr_pem: &str, ttl: Duration) -> Result<Vec<String>, CaError>;
}

/// Why a CA call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("{setting} {path:?}: {reason}")]
    Config {
        setting: &'static str,
        path: String,
        reason: String,
    },
    #[error("CA answered {code:?} (not retried): {message}")]
    Rejected { code: Code, message: String },
    #[error("CA call failed after {attempts} attempt(s), last {code:?}: {message}")]
    Exhausted {
        code: Code,
        message: String,
        attempts: u32,
    },
}

impl CaError {
    /// The gRPC code of the (last) failure, if the CA was reached or a call was attempted.
    pub fn code(&self) -> Option<Code> {
        match self {
            CaError::Rejected { code, .. } | CaError::Exhausted { code, .. } => Some(*code),
            CaError::Config { .. } => None,
        }
    }
}

/// Whether a gRPC code is worth retrying (see the module docs).
pub fn is_retriable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
    )
}

/// Capped exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first (≥ 1).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `attempt` (0-based): `min(max, initial·2^attempt)`,
    /// with "equal jitter": half fixed, half uniform in `jitter ∈ [0, 1)`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        backoff_delay(self.initial_backoff, self.max_backoff, attempt, jitter)
    }
}

/// Settings of [`IstioCaClient`].
#[derive(Debug, Clone)]
pub struct CaClientConfig {
    /// `https://host:port`.
    pub addr: String,
    /// PEM root(s) the CA's TLS certificate must chain to; re-read for every call.
    pub root_cert: PathBuf,
    /// Bearer token file, re-read for every call. `None`: no `authorization` header.
    pub token_file: Option<PathBuf>,
    /// Sent as the `ClusterID` header when set.
    pub cluster_id: Option<String>,
    /// Name to verify the CA's certificate against (default: the host of `addr`).
    pub tls_server_name: Option<String>,
    /// Deadline of one attempt (connect + call).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

/// The Istio CA client over tonic. Cheap to share (`Arc`); calls may run concurrently.
#[derive(Debug)]
pub struct IstioCaClient {
    config: CaClientConfig,
    /// The client certificate (mTLS renewal with the current one; never presented once
    /// expired).
    identity: Mutex<Option<Arc<WorkloadCert>>>,
}

impl IstioCaClient {
    /// Validates the address; files are read at each call.
    pub fn new(config: CaClientConfig) -> Result<Self, CaError> {
        let _ = endpoint_for(&config.addr)?;
        Ok(IstioCaClient {
            config,
            identity: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &CaClientConfig {
        &self.config
    }

    /// Sets (or clears) the client certificate presented to the CA from the next call on.
    /// An expired certificate is never presented (the call then goes out with the bearer
    /// token only).
    pub fn set_client_identity(&self, identity: Option<Arc<WorkloadCert>>) {
        let mut g = self
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = identity;
    }

    /// The client certificate to present now: the configured one while it is valid.
    fn current_identity(&self) -> Option<Arc<WorkloadCert>> {
        let mut g = self
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.as_ref()
            .is_some_and(|c| SystemTime::now() >= c.not_after())
        {
            tracing::info!("client certificate expired; no longer presenting it to the CA");
            *g = None;
        }
        g.clone()
    }

    /// Whether a (valid) client certificate will be presented on the next call.
    pub fn has_client_identity(&self) -> bool {
        self.current_identity().is_some()
    }

    fn channel(&self) -> Result<Channel, CaError> {
        let roots = read_cert_file(&self.config.root_cert).map_err(|e| CaError::Config {
            setting: "CA root certificate",
            path: e.path,
            reason: e.reason,
        })?;
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(certs_to_pem(&roots)));
        if let Some(name) = &self.config.tls_server_name {
            tls = tls.domain_name(name.clone());
        }
        if let Some(id) = self.current_identity() {
            tls = tls.identity(Identity::from_pem(id.chain_pem(), id.key_pem()));
        }
        let ep = endpoint_for(&self.config.addr)?
            .tls_config(tls)
            .map_err(|e| CaError::Config {
                setting: "CA address",
                path: self.config.addr.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.config.request_timeout);
        Ok(ep.connect_lazy())
    }

    fn bearer(&self) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, CaError> {
        let Some(path) = &self.config.token_file else {
            return Ok(None);
        };
        // Like Istio's agent: the token goes along whenever it is available, but a missing or
        // empty token file is not fatal while a valid client certificate authenticates us.
        let renewing = self.has_client_identity();
        let cfg_err = |reason: String| CaError::Config {
            setting: "token file",
            path: path.display().to_string(),
            reason,
        };
        let raw = match std::fs::read_to_string(path) {
            Ok(raw) => Zeroizing::new(raw),
            Err(e) if renewing && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cfg_err(e.to_string())),
        };
        let token = raw.trim();
        if token.is_empty() {
            if renewing {
                return Ok(None);
            }
            return Err(cfg_err("the token file is empty".into()));
        }
        let value = Zeroizing::new(format!("Bearer {token}"));
        MetadataValue::try_from(value.as_str())
            .map(Some)
            .map_err(|_| cfg_err("the token is not a valid header value".into()))
    }

    async fn attempt(
        &self,
        channel: Channel,
        csr_pem: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, tonic::Status> {
        let mut req = tonic::Request::new(IstioCertificateRequest {
            csr: csr_pem.to_owned(),
            validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            metadata: None,
        });
        req.set_timeout(self.config.request_timeout);
        match self.bearer() {
            Ok(Some(v)) => {
                req.metadata_mut().insert("authorization", v);
            }
            Ok(None) => {}
            Err(e) => return Err(tonic::Status::failed_precondition(e.to_string())),
        }
        if let Some(cluster) = &self.config.cluster_id {
            let v = MetadataValue::try_from(cluster.as_str()).map_err(|_| {
                tonic::Status::invalid_argument("cluster id is not a valid header value")
            })?;
            req.metadata_mut().insert("clusterid", v);
        }
        let mut client = IstioCertificateServiceClient::new(channel);
        let started = tokio::time::Instant::now();
        let call = client.create_certificate(req);
        let deadline = || {
            tonic::Status::deadline_exceeded(format!(
                "no answer within {}",
                humantime::format_duration(self.config.request_timeout)
            ))
        };
        match tokio::time::timeout(self.config.request_timeout, call).await {
            Ok(Ok(resp)) => Ok(resp.into_inner().cert_chain),
            // tonic servers answer an expired `grpc-timeout` with CANCELLED: that is our deadline.
            Ok(Err(status))
                if status.code() == Code::Cancelled
                    && started.elapsed() >= self.config.request_timeout.mul_f64(0.9) =>
            {
                Err(deadline())
            }
            Ok(Err(status)) => Err(status),
            Err(_) => Err(deadline()),
        }
    }
}

fn endpoint_for(addr: &str) -> Result<Endpoint, CaError> {
    let bad = |reason: &str| CaError::Config {
        setting: "CA address",
        path: addr.to_owned(),
        reason: reason.to_owned(),
    };
    if !addr.starts_with("https://") {
        return Err(bad(
            "must be https://host:port (the CA is always reached over TLS)",
        ));
    }
    Endpoint::from_shared(addr.to_owned()).map_err(|e| bad(&e.to_string()))
}

#[tonic::async_trait]
impl CaClient for IstioCaClient {
    async fn sign(&self, csr_pem: &str, ttl: Duration) -> Result<Vec<String>, CaError> {
        let channel = self.channel()?;
        let max = self.config.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            // Token problems are configuration errors: surface them as such, not as a status.
            self.bearer()?;
            let status = match self.attempt(channel.clone(), csr_pem, ttl).await {
                Ok(chain) => return Ok(chain),
                Err(s) => s,
            };
            attempt += 1;
            let code = status.code();
            let message = status.message().to_owned();
            if !is_retriable(code) {
                tracing::warn!(?code, %message, addr = %self.config.addr, "CA rejected the request; not retrying");
                return Err(CaError::Rejected { code, message });
            }
            if attempt >= max {
                tracing::warn!(?code, %message, attempts = attempt, "CA call failed; giving up");
                return Err(CaError::Exhausted {
                    code,
                    message,
                    attempts: attempt,
                });
            }
            let pause = self
                .config
                .retry
                .backoff(attempt - 1, rand::thread_rng().gen::<f64>());
            tracing::info!(?code, %message, attempt, retry_in = ?pause, "CA call failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_codes() {
        for c in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
        ] {
            assert!(is_retriable(c), "{c:?}");
        }
        for c in [
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::Internal,
            Code::Unimplemented,
            Code::FailedPrecondition,
            Code::NotFound,
            Code::Unknown,
        ] {
            assert!(!is_retriable(c), "{c:?}");
        }
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(300));
        // capped at max_backoff
        assert_eq!(p.backoff(10, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(100, 0.0), Duration::from_millis(500));
    }

    fn identity_valid_for(secs: i64) -> Option<Arc<WorkloadCert>> {
        let pki = svidgate_pki::testing::TestPki::new("client");
        Some(Arc::new(pki.cert_with(
            "spiffe://td/ns/a/sa/b",
            -3600,
            secs,
        )))
    }

    #[test]
    fn expired_client_certificates_are_never_presented() {
        let dir = tempfile::tempdir().unwrap();
        let c = IstioCaClient::new(CaClientConfig {
            addr: "https://127.0.0.1:1".into(),
            root_cert: "/nonexistent".into(),
            token_file: Some(dir.path().join("missing-token")),
            cluster_id: None,
            tls_server_name: None,
            request_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        })
        .unwrap();
        // No certificate: a missing token file is an error.
        assert!(matches!(c.bearer(), Err(CaError::Config { .. })));
        c.set_client_identity(identity_valid_for(3600));
        assert!(c.has_client_identity());
        // With a valid certificate the token is optional.
        assert!(matches!(c.bearer(), Ok(None)));
        std::fs::write(dir.path().join("missing-token"), "  \n").unwrap();
        assert!(matches!(c.bearer(), Ok(None)));
        c.set_client_identity(identity_valid_for(-1));
        assert!(!c.has_client_identity());
        assert!(matches!(c.bearer(), Err(CaError::Config { .. })));
        c.set_client_identity(identity_valid_for(3600));
        c.set_client_identity(None);
        assert!(!c.has_client_identity());
    }

    #[test]
    fn address_must_be_https() {
        let cfg = |addr: &str| CaClientConfig {
            addr: addr.into(),
            root_cert: "/nonexistent".into(),
            token_file: None,
            cluster_id: None,
            tls_server_name: None,
            request_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        };
        assert!(matches!(
            IstioCaClient::new(cfg("http://127.0.0.1:1")),
            Err(CaError::Config { .. })
        ));
        assert!(IstioCaClient::new(cfg("https://127.0.0.1:15012")).is_ok());
    }
}
