//! Helpers shared by the signing integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sidecar_host::agent::ca_client::{CaClient, CaClientConfig, IstioCaClient, RetryPolicy};
use sidecar_host::agent::fetch::{fetch_svid, FetchError};
use sidecar_host::ca::{self, CaServerConfig, RunningCa};
use svidgate_core::SpiffeId;
use svidgate_pki::chain::DEFAULT_SKEW;
use svidgate_pki::{Anchors, CertificateDer, KeyType, WorkloadCert};

pub const TD: &str = "td.test";
pub const WEB: &str = "spiffe://td.test/ns/web/sa/frontend";
pub const API: &str = "spiffe://td.test/ns/api/sa/backend";

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// A fresh `cacerts` directory with a generated root + intermediate.
pub fn ca_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    ca::store::generate(&dir, &svidgate_core::TrustDomain::new(TD).unwrap()).unwrap();
    dir
}

pub fn config(dir: &Path) -> CaServerConfig {
    ca::dev_config(dir.to_path_buf(), TD).unwrap()
}

/// A new CA directory `cacerts` under `tmp` and a config over it that trusts the identity a
/// CSR asks for (`insecure_trust_csr`).
pub fn trusting_csrs(tmp: &Path) -> (PathBuf, CaServerConfig) {
    let dir = ca_dir(tmp, "cacerts");
    let mut cfg = config(&dir);
    cfg.insecure_trust_csr = true;
    (dir, cfg)
}

pub async fn start(cfg: CaServerConfig) -> RunningCa {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ca::start(cfg, l).await.unwrap()
}

/// A CA over a fresh `tmp/cacerts` whose tokens file `tmp/tokens` holds `tokens`; returns it
/// and its `root-cert.pem`.
pub async fn start_with_tokens(tmp: &Path, tokens: &str) -> (RunningCa, PathBuf) {
    let dir = ca_dir(tmp, "cacerts");
    let mut cfg = config(&dir);
    cfg.tokens = Some(write(tmp, "tokens", tokens));
    (start(cfg).await, dir.join("root-cert.pem"))
}

/// Copies every `cacerts` file of `from` over the ones in `to` (a root rotation).
pub fn replace_cacerts(from: &Path, to: &Path) {
    for f in ca::store::ALL_FILES {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

pub fn client_config(
    addr: std::net::SocketAddr,
    root: &Path,
    token: Option<&Path>,
) -> CaClientConfig {
    CaClientConfig {
        addr: format!("https://127.0.0.1:{}", addr.port()),
        root_cert: root.to_path_buf(),
        token_file: token.map(Path::to_path_buf),
        cluster_id: Some("Kubernetes".into()),
        tls_server_name: None,
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
    }
}

pub fn client(addr: std::net::SocketAddr, root: &Path, token: Option<&Path>) -> IstioCaClient {
    IstioCaClient::new(client_config(addr, root, token)).unwrap()
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

pub fn bundle(path: &Path) -> Vec<CertificateDer<'static>> {
    sidecar_host::agent::once::load_bundle(path).unwrap()
}

/// One certificate for `id` with a `key_type` key, checked against `anchors`.
pub async fn fetch_key(
    c: &dyn CaClient,
    id: &SpiffeId,
    key_type: KeyType,
    ttl: Duration,
    anchors: &[CertificateDer<'static>],
) -> Result<WorkloadCert, FetchError> {
    fetch_svid(c, id, key_type, ttl, Anchors::Bundle(anchors), DEFAULT_SKEW).await
}

/// [`fetch_key`] with an ECDSA P-256 key.
pub async fn fetch(
    c: &dyn CaClient,
    id: &SpiffeId,
    ttl: Duration,
    anchors: &[CertificateDer<'static>],
) -> Result<WorkloadCert, FetchError> {
    fetch_key(c, id, KeyType::EcdsaP256, ttl, anchors).await
}
