//! The Workload API's Prometheus metrics; registered into the agent's registry by
//! [`WorkloadApiMetrics::register`] (names get the registry's `svidgate_` prefix):
//!
//! - `svidgate_workload_api_streams_open`: open `FetchX509SVID` / `FetchX509Bundles` streams;
//! - `svidgate_workload_api_pushes_total{rpc}`: messages sent, by RPC;
//! - `svidgate_workload_api_refused_total{reason}`: calls refused, by reason
//!   (`missing_security_header`, `jwt_unsupported`, `too_many_streams`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::admin::{OpenStreams, StreamGuard};

/// Label of `svidgate_workload_api_pushes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabel {
    pub rpc: &'static str,
}

/// Label of `svidgate_workload_api_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Why a call was refused (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `workload.spiffe.io: true` metadata: INVALID_ARGUMENT.
    MissingSecurityHeader,
    /// A JWT-SVID profile call: UNIMPLEMENTED.
    JwtUnsupported,
    /// The stream limit is reached: UNAVAILABLE.
    TooManyStreams,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingSecurityHeader => "missing_security_header",
            Refusal::JwtUnsupported => "jwt_unsupported",
            Refusal::TooManyStreams => "too_many_streams",
        }
    }
}

/// Counters and gauge of the Workload API server; cheap to clone (shared handles).
#[derive(Clone, Debug, Default)]
pub struct WorkloadApiMetrics {
    streams: OpenStreams,
    pushes: Family<RpcLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
}

impl WorkloadApiMetrics {
    /// Adds the metrics to `registry` (call once).
    pub fn register(&self, registry: &mut Registry) {
        crate::admin::register_metrics! { registry;
            "workload_api_streams_open" => self.streams.gauge(), "Open SPIFFE Workload API streams (FetchX509SVID, FetchX509Bundles)";
            "workload_api_pushes" => self.pushes, "SPIFFE Workload API messages sent, by RPC";
            "workload_api_refused" => self.refused, "SPIFFE Workload API calls refused, by reason";
        }
    }

    /// Counts a stream as open while the guard lives.
    pub fn open_stream(&self) -> StreamGuard {
        self.streams.open()
    }
    pub fn streams_open(&self) -> i64 {
        self.streams.count()
    }
    /// Messages sent on `rpc` streams (a shared handle: `.inc()` counts one).
    pub fn pushes(&self, rpc: &'static str) -> Counter {
        self.pushes.get_or_create(&RpcLabel { rpc }).clone()
    }
    /// Calls refused for `why` (a shared handle: `.inc()` counts one).
    pub fn refusals(&self, why: Refusal) -> Counter {
        let reason = why.as_str();
        self.refused.get_or_create(&ReasonLabel { reason }).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let m = WorkloadApiMetrics::default();
        let mut registry = Registry::with_prefix("svidgate");
        m.register(&mut registry);
        let _stream = m.open_stream();
        m.pushes("FetchX509SVID").inc();
        m.refusals(Refusal::MissingSecurityHeader).inc();
        m.refusals(Refusal::JwtUnsupported).inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        crate::admin::assert_exposes(
            &text,
            [
                "svidgate_workload_api_streams_open 1",
                "svidgate_workload_api_pushes_total{rpc=\"FetchX509SVID\"} 1",
                "svidgate_workload_api_refused_total{reason=\"missing_security_header\"} 1",
                "svidgate_workload_api_refused_total{reason=\"jwt_unsupported\"} 1",
            ],
        );
    }
}
