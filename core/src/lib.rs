//! svidgate-core: the pure logic shared by the Envoy filter (wasm32) and the sidecar (native).
//! No I/O, no async runtime, no proxy-wasm.

pub mod http;
pub mod plugin_config;
pub mod policy;
pub mod spiffe_id;
pub mod svid;

pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
