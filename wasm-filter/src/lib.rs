//! svidgate-filter: a proxy-wasm module that authorizes requests and connections by the
//! SPIFFE ID of the mTLS peer, using the policy engine of `svidgate-core`.
//!
//! - [`config`]: the plugin configuration (policy document + `filter` settings).
//! - [`host`]: the host seam ([`host::Host`]), implemented over proxy-wasm in `envoy`
//!   (wasm32 only) and by a fake in the unit tests.
//! - [`peer`]: the peer identity from connection properties; strict X509-SVID checks with a
//!   bounded per-VM cache.
//! - [`filter`]: requests/connections → policy decision → local reply, close, or continue.
//! - [`metrics`]: the counters (`wasmcustom.svidgate_*`).

pub mod config;
pub mod filter;
pub mod host;
pub mod metrics;
pub mod peer;

#[cfg(target_arch = "wasm32")]
mod envoy;

#[cfg(test)]
mod fake;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    envoy::start();
}}
