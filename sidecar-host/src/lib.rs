//! sidecar-host: the `svidgate` binary's library — agent, CA and policy CLI.

pub mod agent;
pub mod ca;
pub mod ca_client;
pub mod chain;
pub mod cli;
pub mod csr;
pub mod fetch;
pub mod keys;
pub mod logging;
pub mod policy_cli;

/// Generated code for the Istio CA gRPC service (`proto/istio-ca.proto`).
pub mod pb {
    #![allow(missing_docs, missing_debug_implementations, clippy::all)]
    tonic::include_proto!("istio.v1.auth");
}

pub mod admin;
pub mod bundle;
pub mod metrics;
pub mod rotation;
pub mod sds;
