//! Helpers shared by the signing integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sidecar_host::ca::{self, CaServerConfig, RunningCa};
use sidecar_host::ca_client::{CaClientConfig, IstioCaClient, RetryPolicy};
use svidgate_core::SpiffeId;

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

pub async fn start(cfg: CaServerConfig) -> RunningCa {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ca::start(cfg, l).await.unwrap()
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

pub fn bundle(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    sidecar_host::agent::once::load_bundle(path).unwrap()
}
