//! The peer identity of the current connection, from Envoy's connection properties.
//!
//! - `connection.mtls`: one byte, 1 when the downstream connection is mTLS.
//! - non-strict: `connection.uri_san_peer_certificate`, the first URI SAN (plain UTF-8).
//! - strict: `connection.peer_certificate` (the leaf as PEM) checked against the X509-SVID
//!   leaf rules of `svidgate-core`; the verdict is cached per
//!   `connection.sha256_peer_certificate_digest` in a bounded per-VM cache.
//!
//! Anything missing, empty, non-UTF-8 or unexpected means "no valid identity": the policy
//! then decides (and denies whenever an ALLOW policy exists).

use std::collections::{HashMap, VecDeque};

use svidgate_core::policy::{NoIdentity, Peer};
use svidgate_core::svid::{check_leaf_pem, SvidError};
use svidgate_core::SpiffeId;

use crate::host::{Host, Level};

pub const PROP_MTLS: &[&str] = &["connection", "mtls"];
pub const PROP_URI_SAN: &[&str] = &["connection", "uri_san_peer_certificate"];
pub const PROP_PEER_CERT: &[&str] = &["connection", "peer_certificate"];
pub const PROP_PEER_DIGEST: &[&str] = &["connection", "sha256_peer_certificate_digest"];
pub const PROP_SNI: &[&str] = &["connection", "requested_server_name"];
pub const PROP_DESTINATION_PORT: &[&str] = &["destination", "port"];

/// Default number of certificates whose verdict one VM remembers.
pub const SVID_CACHE_CAPACITY: usize = 1024;

/// A cached strict-mode verdict for one peer certificate.
pub type SvidVerdict = Result<SpiffeId, NoIdentity>;

/// Bounded map from certificate digest to verdict. When full, the oldest entry goes
/// (FIFO): certificates rotate, so old entries are the ones least likely to be seen again.
#[derive(Debug)]
pub struct SvidCache {
    capacity: usize,
    map: HashMap<String, SvidVerdict>,
    order: VecDeque<String>,
}

impl SvidCache {
    pub fn new(capacity: usize) -> Self {
        SvidCache {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, digest: &str) -> Option<&SvidVerdict> {
        self.map.get(digest)
    }

    pub fn insert(&mut self, digest: String, verdict: SvidVerdict) {
        if let Some(slot) = self.map.get_mut(&digest) {
            *slot = verdict;
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(digest.clone());
        self.map.insert(digest, verdict);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Reads a property; host errors are logged and become `Err(Unavailable)`.
fn read(host: &dyn Host, path: &[&str]) -> Result<Option<Vec<u8>>, NoIdentity> {
    host.property(path).map_err(|e| {
        host.log(
            Level::Warn,
            &format!("svidgate: {e}; treating the peer as unidentified"),
        );
        NoIdentity::Unavailable
    })
}

/// Reads a property as a non-empty UTF-8 string (`None` when absent, empty, or not UTF-8).
pub fn string_property(host: &dyn Host, path: &[&str]) -> Option<String> {
    let bytes = host.property(path).ok()??;
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// Reads `destination.port`: Envoy encodes integers as 8 bytes, little-endian.
pub fn destination_port(host: &dyn Host) -> Option<u16> {
    let bytes = host.property(PROP_DESTINATION_PORT).ok()??;
    let raw: [u8; 8] = bytes.as_slice().try_into().ok()?;
    u16::try_from(u64::from_le_bytes(raw)).ok()
}

/// The peer of the current connection.
pub fn peer(host: &dyn Host, strict: bool, cache: &mut SvidCache) -> Peer {
    match identify(host, strict, cache) {
        Ok(id) => Peer::Identity(id),
        Err(why) => Peer::None(why),
    }
}

fn identify(host: &dyn Host, strict: bool, cache: &mut SvidCache) -> Result<SpiffeId, NoIdentity> {
    if strict {
        strict_identity(host, cache)
    } else {
        lax_identity(host)
    }
}

/// `connection.mtls` is read only when the certificate properties do not already answer.
/// In Envoy every `connection.*` certificate property comes from the same downstream TLS
/// connection: `mtls` is "an SSL connection with a peer certificate presented"
/// (`peerCertificatePresented()`, i.e. `SSL_get_peer_certificate` is not null), and the
/// certificate digest and URI SAN are computed from that same peer certificate — empty
/// (absent) without one. A non-empty digest or URI SAN therefore implies `mtls == 1`, and
/// only their absence (or a failed read) needs `mtls` to tell "not mTLS" from "no URI SAN" /
/// "unavailable". The decision cannot change: absent values give no identity either way.
fn without_certificate_property(host: &dyn Host, otherwise: NoIdentity) -> NoIdentity {
    match host.property(PROP_MTLS) {
        Ok(Some(v)) if v.as_slice() == [1] => otherwise,
        Ok(Some(v)) if v.as_slice() == [0] => NoIdentity::NotMtls,
        Ok(None) => NoIdentity::NotMtls,
        Ok(Some(_)) => NoIdentity::Unavailable,
        Err(e) => {
            host.log(
                Level::Warn,
                &format!("svidgate: {e}; treating the peer as unidentified"),
            );
            NoIdentity::Unavailable
        }
    }
}

/// Non-strict: Envoy's first URI SAN (non-empty: the peer presented a certificate).
fn lax_identity(host: &dyn Host) -> Result<SpiffeId, NoIdentity> {
    let uri = match read(host, PROP_URI_SAN) {
        Ok(Some(uri)) if !uri.is_empty() => uri,
        Ok(_) => return Err(without_certificate_property(host, NoIdentity::NoUriSan)),
        Err(_) => return Err(without_certificate_property(host, NoIdentity::Unavailable)),
    };
    let uri = std::str::from_utf8(&uri).map_err(|_| NoIdentity::InvalidSpiffeId)?;
    SpiffeId::parse(uri).map_err(|_| NoIdentity::InvalidSpiffeId)
}

fn is_sha256_hex(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Strict: the verdict cached for the certificate's digest (one host call on a hit), or the
/// certificate checked against the X509-SVID leaf rules (once per certificate).
fn strict_identity(host: &dyn Host, cache: &mut SvidCache) -> Result<SpiffeId, NoIdentity> {
    let digest = match read(host, PROP_PEER_DIGEST) {
        Ok(Some(d)) if is_sha256_hex(&d) => d,
        Ok(_) | Err(_) => return Err(without_certificate_property(host, NoIdentity::Unavailable)),
    };
    // Lower-case hex only (checked above), so the bytes are UTF-8.
    let digest = String::from_utf8(digest).map_err(|_| NoIdentity::Unavailable)?;
    if let Some(verdict) = cache.get(&digest) {
        return verdict.clone();
    }
    // A certificate not seen before: the full checks, `connection.mtls` included.
    match read(host, PROP_MTLS)?.as_deref() {
        Some([1]) => {}
        Some([0]) | None => return Err(NoIdentity::NotMtls),
        Some(_) => return Err(NoIdentity::Unavailable),
    }
    let pem = read(host, PROP_PEER_CERT)?
        .filter(|b| !b.is_empty())
        .ok_or(NoIdentity::Unavailable)?;
    let verdict = match decode_pem_property(&pem) {
        Some(pem) => check_leaf_pem(&pem).map_err(|e| {
            host.log(
                Level::Debug,
                &format!("svidgate: peer certificate {digest} is not a valid X509-SVID: {e}"),
            );
            svid_error_kind(&e)
        }),
        None => Err(NoIdentity::InvalidSvid),
    };
    cache.insert(digest, verdict.clone());
    verdict
}

/// Maps an X509-SVID check failure to the policy's notion of "no identity".
pub fn svid_error_kind(e: &SvidError) -> NoIdentity {
    match e {
        SvidError::NoUriSan => NoIdentity::NoUriSan,
        SvidError::InvalidSpiffeId(_) => NoIdentity::InvalidSpiffeId,
        _ => NoIdentity::InvalidSvid,
    }
}

/// `connection.peer_certificate` is plain PEM in Envoy 1.40. Envoy's access-log form
/// (`%DOWNSTREAM_PEER_CERT%`) is URL-encoded PEM; PEM itself never contains `%`, so a `%`
/// means URL-encoding and is decoded. A malformed escape gives `None`.
pub fn decode_pem_property(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.contains(&b'%') {
        return Some(bytes.to_vec());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut it = bytes.iter();
    while let Some(&b) = it.next() {
        if b == b'%' {
            let hi = svidgate_core::http::hex_digit(*it.next()?)?;
            let lo = svidgate_core::http::hex_digit(*it.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
