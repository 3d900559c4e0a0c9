//! svidgate-pki: the certificate logic the agent and the CA share, without I/O.
//!
//! - [`key`]: workload keys (generated fresh, in memory only, zeroized on drop);
//! - [`csr`]: the workload's CSR (one URI SAN, no subject), and [`csr_policy`]: the CA's
//!   checks on a CSR;
//! - [`cert`]: [`WorkloadCert`], the one workload-certificate type (chain, key, SPIFFE ID,
//!   validity — parsed once), carried from the CA answer to SDS, files and metrics;
//! - [`chain`]: verification of a CA answer (links, CA constraints, validity, trust anchor,
//!   a second pass through rustls-webpki) plus the X509-SVID leaf rules of `svidgate-core`;
//! - [`pem`] and [`time`]: encoding and clock helpers;
//! - `testing` (feature `testing`): [`testing::TestPki`], a root, an intermediate and
//!   workload certificates for tests.
//!
//! Bytes in, typed values and matchable errors out: no tokio, no tonic, no filesystem.

pub mod cert;
pub mod chain;
pub mod csr;
pub mod csr_policy;
pub mod key;
pub mod pem;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;

pub use cert::WorkloadCert;
pub use chain::{verify_issued, Anchors, ChainError};
pub use key::{KeyError, KeyType, WorkloadKey};
pub use pki_types::CertificateDer;
