//! The secrets the agent currently serves, and the watch channel that carries them to streams.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svidgate_core::{SpiffeId, TrustDomain};
use tokio::sync::watch;
use zeroize::Zeroizing;

/// Why a certificate chain cannot be turned into an [`Svid`].
#[derive(Debug, thiserror::Error)]
pub enum SvidError {
    #[error("certificate chain has no PEM certificate")]
    EmptyChain,
    #[error("certificate chain PEM block {index}: {reason}")]
    BadPem { index: usize, reason: String },
    #[error("leaf certificate does not parse: {0}")]
    BadLeaf(String),
    #[error("private key is empty")]
    EmptyKey,
}

/// A workload X.509-SVID ready to be served: the chain (leaf first, then intermediates, no
/// root) and its private key. The key is zeroized on drop and never printed by `Debug`.
pub struct Svid {
    spiffe_id: SpiffeId,
    chain_pem: String,
    key_pem: Zeroizing<String>,
    not_before: SystemTime,
    not_after: SystemTime,
    serial_hex: String,
}

impl fmt::Debug for Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Svid")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("serial", &self.serial_hex)
            .field("not_before", &unix_seconds(self.not_before))
            .field("not_after", &unix_seconds(self.not_after))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Svid {
    /// Builds an SVID from a chain of PEM certificates (leaf first) and its PEM private key.
    /// The validity window and serial come from the leaf. Identity checks are the signing
    /// code's job (`chain::verify_issued`); this only refuses what cannot be served at all.
    pub fn new(
        spiffe_id: SpiffeId,
        chain: &[String],
        key_pem: Zeroizing<String>,
    ) -> Result<Svid, SvidError> {
        let first = chain.first().ok_or(SvidError::EmptyChain)?;
        if key_pem.trim().is_empty() {
            return Err(SvidError::EmptyKey);
        }
        let mut chain_pem = String::new();
        for (index, c) in chain.iter().enumerate() {
            if pem::parse(c.as_bytes()).is_err() {
                return Err(SvidError::BadPem {
                    index,
                    reason: "not a PEM block".into(),
                });
            }
            chain_pem.push_str(c.trim_end());
            chain_pem.push('\n');
        }
        let (not_before, not_after, serial_hex) = leaf_info(first)?;
        Ok(Svid {
            spiffe_id,
            chain_pem,
            key_pem,
            not_before,
            not_after,
            serial_hex,
        })
    }

    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }
    /// The chain as concatenated PEM (leaf first).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
    /// The private key PEM. Only for serving to Envoy; never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
    /// The leaf's serial number, lower-case hex.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }
    /// Is `now` inside the leaf's validity window?
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

fn leaf_info(leaf_pem: &str) -> Result<(SystemTime, SystemTime, String), SvidError> {
    let block = pem::parse(leaf_pem.as_bytes()).map_err(|e| SvidError::BadPem {
        index: 0,
        reason: e.to_string(),
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents())
        .map_err(|e| SvidError::BadLeaf(e.to_string()))?;
    let v = cert.validity();
    Ok((
        to_system_time(v.not_before.timestamp()),
        to_system_time(v.not_after.timestamp()),
        cert.raw_serial_as_string().replace(':', ""),
    ))
}

fn to_system_time(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Everything SDS serves, as one immutable snapshot.
#[derive(Debug, Clone, Default)]
pub struct SecretState {
    /// The workload certificate and key (None until the first successful signing).
    pub svid: Option<Arc<Svid>>,
    /// Trust bundles: each trust domain's root certificates as PEM blocks.
    pub bundles: BTreeMap<TrustDomain, Vec<String>>,
    /// Bumped on every change.
    pub version: u64,
}

/// The shared, watched [`SecretState`]. Publishers call [`SecretStore::set_svid`] /
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
    pub fn set_svid(&self, svid: Arc<Svid>) {
        self.tx.send_modify(|s| {
            s.svid = Some(svid);
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
    pub fn set_svid_and_bundles(
        &self,
        svid: Arc<Svid>,
        bundles: BTreeMap<TrustDomain, Vec<String>>,
    ) {
        self.tx.send_modify(|s| {
            s.svid = Some(svid);
            s.bundles = bundles;
            s.version += 1;
        });
    }
}
