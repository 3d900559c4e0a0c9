//! `svidgate ca`'s Prometheus metrics, served at `/metrics` on `--admin-addr`.
//!
//! Every label value is created at start (zero counters), so a refusal reason, key type or
//! reload result that has not happened yet is a 0 series, not a missing one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tonic::Code;

/// Key types of issued certificates (`key_type` label).
pub const KEY_TYPES: [&str; 3] = ["ecdsa-p256", "ecdsa-p384", "rsa"];
/// Why a request was refused (`reason` label): the gRPC status the caller got.
pub const REASONS: [&str; 5] = [
    "unauthenticated",
    "permission_denied",
    "invalid_argument",
    "unavailable",
    "internal",
];
/// What the CA re-reads (`source` label of `svidgate_ca_reloads_total`).
pub const SOURCES: [&str; 2] = ["cacerts", "tokens"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyTypeLabel {
    key_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabel {
    source: &'static str,
    result: &'static str,
}

/// The `reason` label of a refusal with this gRPC code.
pub fn reason(code: Code) -> &'static str {
    match code {
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "permission_denied",
        Code::InvalidArgument => "invalid_argument",
        Code::Unavailable => "unavailable",
        _ => "internal",
    }
}

/// Every metric of the CA, registered once.
#[derive(Debug)]
pub struct CaMetrics {
    registry: Registry,
    issued: Family<KeyTypeLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    duration: Histogram,
    reloads: Family<ReloadLabel, Counter>,
    ca_not_after: Gauge,
    ready: AtomicBool,
}

impl CaMetrics {
    pub fn new() -> CaMetrics {
        let mut registry = Registry::with_prefix("svidgate_ca");
        let issued = Family::<KeyTypeLabel, Counter>::default();
        let refused = Family::<ReasonLabel, Counter>::default();
        let reloads = Family::<ReloadLabel, Counter>::default();
        for key_type in KEY_TYPES {
            let _ = issued.get_or_create(&KeyTypeLabel { key_type });
        }
        for reason in REASONS {
            let _ = refused.get_or_create(&ReasonLabel { reason });
        }
        for source in SOURCES {
            for result in ["ok", "failed"] {
                let _ = reloads.get_or_create(&ReloadLabel { source, result });
            }
        }
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let ca_not_after = Gauge::default();
        crate::admin::register_metrics! { registry;
            "issued" => issued, "Certificates issued, by the key type of the CSR";
            "refused" => refused, "CreateCertificate calls refused, by the gRPC status returned";
            "create_certificate_duration_seconds" => duration, "Time to answer CreateCertificate (issued or refused)";
            "reloads" => reloads, "Re-reads of the cacerts directory and of the tokens file, by result";
            "cert_not_after_seconds" => ca_not_after, "Not-after of the CA certificate that signs (ca-cert.pem), Unix seconds";
        }
        CaMetrics {
            registry,
            issued,
            refused,
            duration,
            reloads,
            ca_not_after,
            ready: AtomicBool::new(false),
        }
    }

    /// A certificate was issued for a key of this type (one of [`KEY_TYPES`]).
    pub fn issued(&self, key_type: &'static str) {
        self.issued.get_or_create(&KeyTypeLabel { key_type }).inc();
    }
    pub fn issued_count(&self, key_type: &'static str) -> u64 {
        self.issued.get_or_create(&KeyTypeLabel { key_type }).get()
    }
    /// A call was refused with this gRPC code.
    pub fn refused(&self, code: Code) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason(code),
            })
            .inc();
    }
    pub fn refused_count(&self, code: Code) -> u64 {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason(code),
            })
            .get()
    }
    pub fn observe_duration(&self, seconds: f64) {
        self.duration.observe(seconds);
    }
    /// A re-read of `source` (one of [`SOURCES`]) succeeded or failed.
    pub fn reloaded(&self, source: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&ReloadLabel { source, result })
            .inc();
    }
    pub fn reload_count(&self, source: &'static str, ok: bool) -> u64 {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&ReloadLabel { source, result })
            .get()
    }
    /// The signing CA certificate in use (the server is ready from the first one on).
    pub fn set_ca_certificate(&self, not_after: SystemTime) {
        self.ca_not_after
            .set(svidgate_pki::time::unix_seconds(not_after));
        self.ready.store(true, Ordering::Relaxed);
    }
    /// True once CA material is loaded (the server is up).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

impl Default for CaMetrics {
    fn default() -> Self {
        CaMetrics::new()
    }
}

impl crate::admin::Exposition for CaMetrics {
    fn ready(&self) -> bool {
        self.is_ready()
    }
    fn not_ready_reason(&self) -> &'static str {
        "not ready: no CA material loaded\n"
    }
    fn exposition(&self) -> String {
        crate::admin::encode_registry(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{assert_exposes, Exposition};

    #[test]
    fn every_label_value_exists_from_the_start() {
        let text = CaMetrics::new().exposition();
        let issued = KEY_TYPES.map(|k| format!("svidgate_ca_issued_total{{key_type=\"{k}\"}} 0"));
        let refused = REASONS.map(|r| format!("svidgate_ca_refused_total{{reason=\"{r}\"}} 0"));
        let reloads = SOURCES.iter().flat_map(|s| {
            ["ok", "failed"]
                .map(|r| format!("svidgate_ca_reloads_total{{source=\"{s}\",result=\"{r}\"}} 0"))
        });
        assert_exposes(&text, issued.into_iter().chain(refused).chain(reloads));
        assert!(text.contains("svidgate_ca_create_certificate_duration_seconds_bucket"));
        assert!(text.contains("svidgate_ca_cert_not_after_seconds 0"));
    }

    #[test]
    fn counts_by_label() {
        let m = CaMetrics::new();
        m.issued("rsa");
        m.refused(Code::PermissionDenied);
        m.refused(Code::DeadlineExceeded);
        m.reloaded("tokens", false);
        m.observe_duration(0.002);
        m.set_ca_certificate(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000),
        );
        assert_exposes(
            &m.exposition(),
            [
                "svidgate_ca_issued_total{key_type=\"rsa\"} 1",
                "svidgate_ca_issued_total{key_type=\"ecdsa-p256\"} 0",
                "svidgate_ca_refused_total{reason=\"permission_denied\"} 1",
                // Codes without their own reason count as internal.
                "svidgate_ca_refused_total{reason=\"internal\"} 1",
                "svidgate_ca_reloads_total{source=\"tokens\",result=\"failed\"} 1",
                "svidgate_ca_create_certificate_duration_seconds_count 1",
                "svidgate_ca_cert_not_after_seconds 1900000000",
            ],
        );
        assert!(m.is_ready());
    }
}
