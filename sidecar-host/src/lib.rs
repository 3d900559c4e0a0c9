//! sidecar-host: the `svidgate` binary's library.
//!
//! - [`agent`]: the workload's certificate agent (CA client, rotation, trust bundles, SDS,
//!   admin, metrics, `--once` files);
//! - [`ca`]: a small CA speaking the Istio CA API;
//! - [`policy`]: the policy author's CLI (check, eval, explain, lint, diff, import);
//! - [`runtime`]: what the long-lived commands share (logging, shutdown, settings parsers);
//! - [`admin`]: the admin HTTP server (health, metrics) both long-lived commands serve.
//!
//! `agent` and `ca` never import each other; the certificate logic both need is in
//! `svidgate-pki`, the policy engine in `svidgate-core`.

/// `impl From<Inner> for Outer` as `Outer::Variant(inner)`, for error variants whose message
/// already contains the inner error (as a `source` too it would be printed twice in `{:#}`).
macro_rules! wrap_errors {
    ($($outer:ident :: $variant:ident ( $inner:ty )),+ $(,)?) => {$(
        impl From<$inner> for $outer {
            fn from(e: $inner) -> Self {
                $outer::$variant(e)
            }
        }
    )+};
}

pub mod admin;
pub mod agent;
pub mod ca;
pub mod cli;
pub mod policy;
pub mod runtime;

/// Generated code for the Istio CA gRPC service (`proto/istio-ca.proto`), client and server.
pub mod pb {
    #![allow(missing_docs, missing_debug_implementations, clippy::all)]
    tonic::include_proto!("istio.v1.auth");
}
