//! The admin HTTP endpoint (loopback by default): health and Prometheus metrics. The agent
//! serves it on `--admin-addr`; `svidgate ca serve` uses the same server for its own metrics.
//!
//! - `GET /healthz/live`: 200 while the process runs.
//! - `GET /healthz/ready`: 200 when ready (the agent: a currently valid certificate is being
//!   served), else 503.
//! - `GET /metrics`: Prometheus/OpenMetrics text.
//!
//! Default address `127.0.0.1:15030`: outside the ports istio-proxy uses (15000 Envoy admin,
//! 15001/15006 capture, 15004, 15008 HBONE, 15009, 15010-15012/15014/15017 istiod, 15020 merged
//! metrics, 15021 health, 15053 DNS, 15090 Envoy Prometheus).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// Default admin listen address.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:15030";

/// Why the admin endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("binding the admin address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin server: {0}")]
    Serve(std::io::Error),
}

/// What an admin endpoint serves: readiness and the metrics exposition.
pub trait Exposition: Send + Sync + 'static {
    fn ready(&self) -> bool;
    /// The 503 body when not ready.
    fn not_ready_reason(&self) -> &'static str;
    /// Prometheus/OpenMetrics text.
    fn exposition(&self) -> String;
}

impl Exposition for Metrics {
    fn ready(&self) -> bool {
        self.is_ready()
    }
    fn not_ready_reason(&self) -> &'static str {
        "not ready: no valid certificate is being served\n"
    }
    fn exposition(&self) -> String {
        self.encode()
    }
}

/// The Prometheus text exposition (OpenMetrics text format) of a registry.
pub fn encode_registry(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The admin routes.
pub fn router<M: Exposition>(metrics: Arc<M>) -> Router {
    Router::new()
        .route("/healthz/live", get(|| async { "live\n" }))
        .route("/healthz/ready", get(ready::<M>))
        .route("/metrics", get(prom::<M>))
        .with_state(metrics)
}

async fn ready<M: Exposition>(State(m): State<Arc<M>>) -> impl IntoResponse {
    if m.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, m.not_ready_reason())
    }
}

async fn prom<M: Exposition>(State(m): State<Arc<M>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.exposition(),
    )
}

/// Binds the admin address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })
}

/// Serves until `shutdown` becomes true.
pub async fn serve<M: Exposition>(
    listener: TcpListener,
    metrics: Arc<M>,
    mut shutdown: crate::runtime::Shutdown,
) -> Result<(), AdminError> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move { crate::runtime::wait_shutdown(&mut shutdown).await })
        .await
        .map_err(AdminError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::watch;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let code = buf[9..12].parse().unwrap();
        (code, buf.split_once("\r\n\r\n").unwrap().1.to_owned())
    }

    #[tokio::test]
    async fn health_and_metrics() {
        let m = Arc::new(Metrics::new());
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve(l, m.clone(), rx));
        assert_eq!(get(addr, "/healthz/live").await.0, 200);
        assert_eq!(get(addr, "/healthz/ready").await.0, 503);
        m.set_ready(true);
        assert_eq!(get(addr, "/healthz/ready").await.0, 200);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("svidgate_ready 1"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        tx.send(true).unwrap();
        server.await.unwrap().unwrap();
    }
}
