//! Issuing certificates: workload X509-SVIDs and the CA's own TLS serving certificate.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use svidgate_core::SpiffeId;
use svidgate_pki::csr_policy::CsrPublicKey;
use svidgate_pki::CertificateDer;

use super::store::CaMaterial;

/// How far not-before is back-dated (clock skew between CA and workloads).
pub const BACKDATE: Duration = Duration::from_secs(60);

/// Why issuing failed (an internal error: the CSR was already accepted).
#[derive(Debug, thiserror::Error)]
#[error("issuing a certificate: {0}")]
pub struct IssueError(String);

/// A random positive serial of 128 bits (first byte 0x01..=0x7f: positive, full length).
pub fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] = (b[0] & 0x7f).max(1);
    SerialNumber::from_slice(&b)
}

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

/// Issues an X509-SVID leaf for `id` and `key`, valid from now − [`BACKDATE`] for `ttl`, but
/// never past the signing CA's notAfter. Returns the DER leaf.
pub fn issue_svid(
    ca: &CaMaterial,
    id: &SpiffeId,
    key: &CsrPublicKey,
    ttl: Duration,
    now: SystemTime,
) -> Result<CertificateDer<'static>, IssueError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    let uri = id
        .to_string()
        .try_into()
        .map_err(|e: rcgen::Error| IssueError(e.to_string()))?;
    p.subject_alt_names = vec![SanType::URI(uri)];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key.is_rsa() {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = to_offset(now - BACKDATE);
    p.not_after = to_offset((now + ttl).min(ca.not_after));
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    let cert = p
        .signed_by(key, &ca.issuer)
        .map_err(|e| IssueError(e.to_string()))?;
    Ok(cert.der().clone())
}

/// The CA's own TLS serving certificate (fresh P-256 key), for `names` (DNS names or IPs),
/// valid 30 days (or until the signing CA expires). Returns the chain (leaf + intermediates)
/// and the key.
pub fn issue_server_cert(
    ca: &CaMaterial,
    names: &[String],
    now: SystemTime,
) -> Result<(Vec<CertificateDer<'static>>, KeyPair), IssueError> {
    let key = KeyPair::generate().map_err(|e| IssueError(e.to_string()))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "svidgate-ca");
    for n in names {
        p.subject_alt_names.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                n.clone()
                    .try_into()
                    .map_err(|e: rcgen::Error| IssueError(format!("server name {n:?}: {e}")))?,
            ),
        });
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = to_offset(now - BACKDATE);
    p.not_after = to_offset((now + Duration::from_secs(30 * 86400)).min(ca.not_after));
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    let cert = p
        .signed_by(&key, &ca.issuer)
        .map_err(|e| IssueError(e.to_string()))?;
    let mut chain = vec![cert.der().clone()];
    chain.extend(ca.intermediates.iter().cloned());
    Ok((chain, key))
}
