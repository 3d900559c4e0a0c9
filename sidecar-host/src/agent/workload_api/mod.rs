//! The SPIFFE Workload API (`SpiffeWorkloadAPI`, X.509-SVID profile) on a Unix socket, for
//! applications that fetch their own SVID (go-spiffe, rust-spiffe, py-spiffe, java-spiffe,
//! spiffe-helper), served beside SDS from the same published state.
//!
//! Behaviour (SPIFFE Workload API and Workload Endpoint standards):
//! - every call must carry the metadata `workload.spiffe.io: true`; without it the answer is
//!   INVALID_ARGUMENT;
//! - `FetchX509SVID` streams the workload's one SVID (chain as concatenated DER, leaf first;
//!   key as PKCS#8 DER; the local trust domain's roots as `bundle`) and every other trust
//!   domain's roots as `federated_bundles`; `FetchX509Bundles` streams every trust domain's
//!   roots. Each message is complete; a new one goes to every open stream when what it holds
//!   changes (rotation, root rotation, a bundle file change), never a repeat;
//! - before the first certificate (and while the served certificate is expired) a stream
//!   **waits**: its first message is sent the moment a valid SVID is published. The standard
//!   also allows UNAVAILABLE ("still initializing"); waiting was chosen because the agent's one
//!   identity is normally moments away, so the application gets it without a client-side
//!   backoff delay or error noise, and a client with a deadline still gets DEADLINE_EXCEEDED
//!   and retries. Never an empty or invalid SVID;
//! - `FetchJWTSVID`, `FetchJWTBundles`, `ValidateJWTSVID` answer UNIMPLEMENTED (the Istio CA
//!   API issues no JWT-SVIDs), after the same header check;
//! - at most [`MAX_STREAMS`] open streams; one more is refused with UNAVAILABLE;
//! - the `:authority` that grpc-core and grpc-java clients put on Unix-socket requests (the
//!   socket path, which the HTTP/2 server would refuse) is replaced on the way in
//!   ([`svidgate_core::h2_authority`]), so py-spiffe and java-spiffe work like go-spiffe.
//!
//! Trust model: as with SDS, a local process that can connect to the socket obtains the
//! workload's private key. The socket's directory and mode are the access control; there is no
//! workload attestation (one agent serves one identity).

mod authority;
mod content;
mod metrics;
mod service;

#[cfg(test)]
mod tests;

pub use content::{
    bundle_key, concat_der, pkcs8_der, x509_bundles_response, x509_svid_response, ContentError,
};
pub use metrics::{Refusal, WorkloadApiMetrics};
pub use service::{
    has_security_header, LastSent, WorkloadApiService, MAX_REQUEST_BYTES, MAX_STREAMS,
    SECURITY_HEADER, SECURITY_HEADER_VALUE,
};

/// Generated code for `proto/workload.proto` (no protobuf package, as in the standard).
pub mod pb {
    #![allow(missing_docs, missing_debug_implementations, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
