//! Envoy Secret Discovery Service (`envoy.service.secret.v3.SecretDiscoveryService`) over a
//! Unix socket.
//!
//! The seam between the agent's rotation/bundle logic and Envoy is [`SecretStore`]: the rotation
//! loop and the bundle manager publish a [`SecretState`] into it, and every open SDS stream
//! watches it and pushes what changed.
//!
//! Why the `envoy-types` crate rather than compiling Envoy's protos ourselves: it is the
//! complete, generated v3 API (Secret, validation contexts, the SPIFFE validator config, the
//! discovery messages and the SDS service trait) on the same tonic/prost versions we use, and
//! vendoring Envoy's proto tree (with its udpa/xds/validate imports) would add hundreds of files
//! for no gain.

mod resources;
mod server;
mod state;
mod uds;

pub use resources::{
    resolve, ResourceError, ResourceKind, ALL, DEFAULT, ROOTCA, SECRET_TYPE_URL,
    SPIFFE_VALIDATOR_NAME,
};
pub use server::{SdsServer, SdsService};
pub use state::{SecretState, SecretStore};
pub use uds::{bind_socket, remove_socket, UdsError, DEFAULT_SOCKET_PATH};

#[cfg(test)]
pub(crate) mod tests;
