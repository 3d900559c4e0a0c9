//! The agent's Prometheus metrics (served by [`super::admin`] at `/metrics`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::workload_api::WorkloadApiMetrics;
use crate::admin::{OpenStreams, StreamGuard};

/// Label of `svidgate_rotations_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Every metric of the agent, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    cert_not_before: Gauge,
    cert_not_after: Gauge,
    cert_expiry_seconds: Gauge<f64, AtomicU64>,
    rotations: Family<ResultLabel, Counter>,
    ca_latency: Histogram,
    expired: Counter,
    sds_streams: OpenStreams,
    sds_pushes: Counter,
    sds_nacks: Counter,
    ready_gauge: Gauge,
    /// The SPIFFE Workload API server's metrics (`svidgate_workload_api_*`).
    pub workload_api: WorkloadApiMetrics,
    ready: AtomicBool,
    not_after_unix: std::sync::atomic::AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("svidgate");
        let m = Metrics {
            cert_not_before: Gauge::default(),
            cert_not_after: Gauge::default(),
            cert_expiry_seconds: Gauge::default(),
            rotations: Family::default(),
            ca_latency: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            expired: Counter::default(),
            sds_streams: OpenStreams::default(),
            sds_pushes: Counter::default(),
            sds_nacks: Counter::default(),
            ready_gauge: Gauge::default(),
            workload_api: WorkloadApiMetrics::default(),
            ready: AtomicBool::new(false),
            not_after_unix: std::sync::atomic::AtomicI64::new(0),
            registry: Registry::default(),
        };
        crate::admin::register_metrics! { registry;
            "cert_not_before_seconds" => m.cert_not_before, "Not-before of the served certificate, Unix seconds";
            "cert_not_after_seconds" => m.cert_not_after, "Not-after of the served certificate, Unix seconds";
            "cert_expiry_seconds" => m.cert_expiry_seconds, "Seconds until the served certificate expires (negative once expired)";
            "rotations" => m.rotations, "Certificate rotations by result (ok, failed)";
            "ca_request_duration_seconds" => m.ca_latency, "Latency of CA signing requests (successful or not)";
            "cert_expired" => m.expired, "Times the served certificate expired before it could be replaced";
            "sds_streams_open" => m.sds_streams.gauge(), "Open SDS streams";
            "sds_pushes" => m.sds_pushes, "SDS responses sent";
            "sds_nacks" => m.sds_nacks, "SDS responses rejected by Envoy (NACK)";
            "ready" => m.ready_gauge, "1 when a currently valid certificate is served";
        }
        m.workload_api.register(&mut registry);
        // Both results exist from the start (0), so "no failure yet" is a 0 series, not none.
        for result in ["ok", "failed"] {
            let _ = m.rotations.get_or_create(&ResultLabel { result });
        }
        Metrics { registry, ..m }
    }

    pub fn rotation_ok(&self) {
        self.rotations
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
    }
    pub fn rotation_failed(&self) {
        self.rotations
            .get_or_create(&ResultLabel { result: "failed" })
            .inc();
    }
    pub fn rotations(&self, ok: bool) -> u64 {
        self.rotations
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" },
            })
            .get()
    }
    pub fn observe_ca_latency(&self, seconds: f64) {
        self.ca_latency.observe(seconds);
    }
    pub fn cert_expired(&self) {
        self.expired.inc();
    }
    pub fn expired_count(&self) -> u64 {
        self.expired.get()
    }
    /// A new certificate is being served (its validity window).
    pub fn set_certificate(&self, not_before: SystemTime, not_after: SystemTime) {
        let t = svidgate_pki::time::unix_seconds(not_after);
        self.not_after_unix.store(t, Ordering::Relaxed);
        self.cert_not_after.set(t);
        self.cert_not_before
            .set(svidgate_pki::time::unix_seconds(not_before));
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        self.ready_gauge.set(i64::from(ready));
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// Counts an SDS stream as open while the guard lives.
    pub fn open_stream(&self) -> StreamGuard {
        self.sds_streams.open()
    }
    pub fn streams_open(&self) -> i64 {
        self.sds_streams.count()
    }
    pub fn pushed(&self) {
        self.sds_pushes.inc();
    }
    pub fn pushes(&self) -> u64 {
        self.sds_pushes.get()
    }
    pub fn nacked(&self) {
        self.sds_nacks.inc();
    }
    pub fn nacks(&self) -> u64 {
        self.sds_nacks.get()
    }

    /// The Prometheus text exposition (OpenMetrics text format).
    pub fn encode(&self) -> String {
        let na = self.not_after_unix.load(Ordering::Relaxed);
        if na != 0 {
            let now = svidgate_pki::time::unix_seconds(SystemTime::now());
            #[allow(clippy::cast_precision_loss)]
            self.cert_expiry_seconds.set((na - now) as f64);
        }
        crate::admin::encode_registry(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::assert_exposes;

    #[test]
    fn rotation_results_exist_before_any_rotation() {
        assert_exposes(
            &Metrics::new().encode(),
            [
                "svidgate_rotations_total{result=\"ok\"} 0",
                "svidgate_rotations_total{result=\"failed\"} 0",
            ],
        );
    }

    #[test]
    fn exposition_names() {
        let m = Metrics::new();
        m.rotation_ok();
        m.rotation_failed();
        m.observe_ca_latency(0.01);
        let not_before = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        m.set_certificate(
            not_before,
            SystemTime::now() + std::time::Duration::from_secs(100),
        );
        assert_exposes(
            &m.encode(),
            [
                "svidgate_cert_not_before_seconds 1800000000",
                "svidgate_cert_not_after_seconds ",
                "svidgate_cert_expiry_seconds ",
                "svidgate_rotations_total{result=\"ok\"} 1",
                "svidgate_rotations_total{result=\"failed\"} 1",
                "svidgate_ca_request_duration_seconds_bucket",
                "svidgate_cert_expired_total 0",
                "svidgate_sds_streams_open 0",
                "svidgate_sds_pushes_total 0",
                "svidgate_sds_nacks_total 0",
                "svidgate_ready 0",
                "svidgate_workload_api_streams_open 0",
            ],
        );
    }
}
