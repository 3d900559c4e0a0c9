//! The host seam: everything the adapter needs from Envoy, as a small trait.
//!
//! [`crate::envoy`] implements it over `proxy_wasm::hostcalls` (wasm32 only); the unit tests
//! implement it with an in-memory fake. The adapter never calls proxy-wasm directly, so all
//! of its logic runs natively under `cargo test`.

use std::fmt;

/// A host call failed (the proxy-wasm status, as text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host call {call} failed: {status}")]
pub struct HostError {
    /// The host call, e.g. `get_property(connection.mtls)`.
    pub call: &'static str,
    /// The status the host returned, e.g. `BadArgument`.
    pub status: String,
}

/// Log levels, mirroring proxy-wasm's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// What the filter asks of its host (Envoy). Methods take `&self`: the host is ambient.
pub trait Host {
    /// Reads a property such as `["connection", "mtls"]`. `Ok(None)` when absent.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// Reads a request header (first value, raw bytes), e.g. `:path`. `Ok(None)` when absent.
    fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Every request header as `(name, value)`, in order, repeated names included
    /// (`proxy_get_header_map_pairs`). Only called when the policy reads a header.
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// Removes every value of a request header.
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    /// Replaces every value of a request header with `value`, in one host call
    /// (`proxy_replace_header_map_value`: Envoy's `setCopy` removes all copies first).
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Records the decision for this stream where Envoy's access log can see it
    /// (`%FILTER_STATE(wasm.svidgate.decision:PLAIN)%`).
    fn set_decision_state(&self, details: &str) -> Result<(), HostError>;
    /// Sends a local HTTP reply instead of forwarding the request.
    fn send_local_reply(&self, status: u32, body: &[u8]) -> Result<(), HostError>;
    /// Closes the downstream connection (network mode).
    fn close_downstream(&self) -> Result<(), HostError>;
    /// Defines a counter; returns its id.
    fn define_counter(&self, name: &str) -> Result<u32, HostError>;
    /// Adds one to a counter defined by [`Host::define_counter`]. Failures are ignored. Envoy's
    /// host tallies in the VM and adds the tally on the root context's tick (no host call per
    /// increment); the fake counts at once.
    fn increment(&self, counter: u32);
    /// Writes a log line.
    fn log(&self, level: Level, message: &str);
}
