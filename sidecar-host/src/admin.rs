//! The admin HTTP endpoint both long-lived commands serve (loopback by default): health and
//! Prometheus metrics over whatever implements [`Exposition`]. The agent serves its metrics on
//! `svidgate agent --admin-addr` (`agent::admin`), the CA its own on `svidgate ca serve
//! --admin-addr` (`ca::metrics`).
//!
//! - `GET /healthz/live`: 200 while the process runs.
//! - `GET /healthz/ready`: 200 when ready (the agent: a currently valid certificate is being
//!   served), else 503.
//! - `GET /metrics`: Prometheus/OpenMetrics text.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

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

/// The Prometheus text exposition (OpenMetrics text format) of a registry.
pub fn encode_registry(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Test helper: asserts that an exposition holds each of `lines` (whole lines or their start).
#[cfg(test)]
pub(crate) fn assert_exposes<L: AsRef<str>>(text: &str, lines: impl IntoIterator<Item = L>) {
    for line in lines {
        let line = line.as_ref();
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
}

/// Registers a clone of each metric handle into a registry, one line per metric:
/// `register_metrics! { registry; "name" => handle, "help"; ... }` (the registry's prefix and,
/// for counters, `_total` are added by `prometheus_client`).
macro_rules! register_metrics {
    ($registry:expr; $($name:literal => $metric:expr, $help:literal;)+) => {
        $( $registry.register($name, $help, $metric.clone()); )+
    };
}
pub(crate) use register_metrics;

/// A gauge of open streams (`*_streams_open`): [`OpenStreams::open`] counts a stream for as
/// long as the returned guard lives. Cheap to clone (a shared handle).
#[derive(Clone, Debug, Default)]
pub struct OpenStreams(prometheus_client::metrics::gauge::Gauge);

impl OpenStreams {
    /// Counts one more open stream until the guard is dropped.
    pub fn open(&self) -> StreamGuard {
        self.0.inc();
        StreamGuard(self.0.clone())
    }
    /// Streams open now.
    pub fn count(&self) -> i64 {
        self.0.get()
    }
    /// The gauge, to register.
    pub fn gauge(&self) -> &prometheus_client::metrics::gauge::Gauge {
        &self.0
    }
}

/// One stream counted in an [`OpenStreams`] gauge.
#[derive(Debug)]
pub struct StreamGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
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
