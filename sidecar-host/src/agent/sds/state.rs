//! The secrets the agent currently serves, and the watch channel that carries them to streams.

use std::collections::BTreeMap;
use std::sync::Arc;

use svidgate_core::TrustDomain;
use svidgate_pki::WorkloadCert;
use tokio::sync::watch;

/// Everything SDS serves, as one immutable snapshot.
#[derive(Debug, Clone, Default)]
pub struct SecretState {
    /// The workload certificate and key (None until the first successful signing).
    pub cert: Option<Arc<WorkloadCert>>,
    /// Trust bundles: each trust domain's root certificates as PEM blocks.
    pub bundles: BTreeMap<TrustDomain, Vec<String>>,
    /// Bumped on every change.
    pub version: u64,
}

/// The shared, watched [`SecretState`]. Publishers call [`SecretStore::set_cert`] /
/// [`SecretStore::set_bundles`]; SDS streams hold a [`watch::Receiver`] from
/// [`SecretStore::subscribe`] and are woken on every change at once.
#[derive(Debug)]
pub struct SecretStore {
    tx: watch::Sender<SecretState>,
}

impl Default for SecretStore {
    fn default() -> Self {
        SecretStore::new()
    }
}

impl SecretStore {
    pub fn new() -> SecretStore {
        SecretStore {
            tx: watch::Sender::new(SecretState::default()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<SecretState> {
        self.tx.subscribe()
    }

    /// A copy of the current state.
    pub fn current(&self) -> SecretState {
        self.tx.borrow().clone()
    }

    /// Publishes a new certificate.
    pub fn set_cert(&self, cert: Arc<WorkloadCert>) {
        self.tx.send_modify(|s| {
            s.cert = Some(cert);
            s.version += 1;
        });
    }

    /// Replaces the trust bundles; a no-op (no push) if nothing changed.
    pub fn set_bundles(&self, bundles: BTreeMap<TrustDomain, Vec<String>>) -> bool {
        self.tx.send_if_modified(|s| {
            if s.bundles == bundles {
                return false;
            }
            s.bundles = bundles;
            s.version += 1;
            true
        })
    }

    /// Publishes a certificate and bundles together (one version, one push per stream).
    pub fn set_cert_and_bundles(
        &self,
        cert: Arc<WorkloadCert>,
        bundles: BTreeMap<TrustDomain, Vec<String>>,
    ) {
        self.tx.send_modify(|s| {
            s.cert = Some(cert);
            s.bundles = bundles;
            s.version += 1;
        });
    }
}
