use super::*;
use crate::fake::FakeHost;

const ID: &str = "spiffe://cluster.local/ns/web/sa/frontend";
const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn lax(host: &FakeHost) -> Peer {
    peer(host, false, &mut SvidCache::new(4))
}

fn strict(host: &FakeHost, cache: &mut SvidCache) -> Peer {
    peer(host, true, cache)
}

#[test]
fn non_strict_peer_table() {
    let id = SpiffeId::parse(ID).unwrap();
    // (mtls, uri san, expected)
    type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Peer);
    // A non-empty URI SAN comes from a presented peer certificate, which is what
    // `connection.mtls` says (see `without_certificate_property`): `mtls` only decides
    // why there is no identity when the URI SAN is absent or empty.
    let mut cases: Vec<Case> = vec![
        (Some(&[1]), Some(ID.as_bytes()), Peer::Identity(id.clone())),
        (None, Some(ID.as_bytes()), Peer::Identity(id.clone())),
        (Some(&[0]), Some(ID.as_bytes()), Peer::Identity(id.clone())),
        (None, None, Peer::None(NoIdentity::NotMtls)),
        (Some(&[0]), None, Peer::None(NoIdentity::NotMtls)),
        (Some(&[0]), Some(b""), Peer::None(NoIdentity::NotMtls)),
        (Some(&[]), None, Peer::None(NoIdentity::Unavailable)),
        (Some(&[2]), Some(b""), Peer::None(NoIdentity::Unavailable)),
        (Some(&[1, 0]), None, Peer::None(NoIdentity::Unavailable)),
        (Some(&[1]), None, Peer::None(NoIdentity::NoUriSan)),
        (Some(&[1]), Some(b""), Peer::None(NoIdentity::NoUriSan)),
    ];
    // URI SANs that are not SPIFFE IDs.
    let invalid: [&[u8]; 5] = [
        b"\xff\xfe",
        b"https://cluster.local/x",
        b"SPIFFE://cluster.local/x",
        b"spiffe://cluster.local",
        b"spiffe://cluster.local/a//b",
    ];
    for uri in invalid {
        cases.push((
            Some(&[1]),
            Some(uri),
            Peer::None(NoIdentity::InvalidSpiffeId),
        ));
    }
    for (mtls, uri, want) in cases {
        let host = FakeHost::default();
        if let Some(m) = mtls {
            host.set_property(PROP_MTLS, m);
        }
        if let Some(u) = uri {
            host.set_property(PROP_URI_SAN, u);
        }
        assert_eq!(lax(&host), want, "mtls {mtls:?} uri {uri:?}");
    }
}

#[test]
fn host_errors_mean_unavailable() {
    let host = FakeHost::default();
    host.fail_property(PROP_MTLS);
    assert_eq!(lax(&host), Peer::None(NoIdentity::Unavailable));
    // A URI SAN failing on a connection that is not mTLS is still "not mTLS".
    let host = FakeHost::default();
    host.set_property(PROP_MTLS, &[0]);
    host.fail_property(PROP_URI_SAN);
    assert_eq!(lax(&host), Peer::None(NoIdentity::NotMtls));
    let host = FakeHost::default();
    host.fail_property(PROP_PEER_DIGEST);
    assert_eq!(
        strict(&host, &mut SvidCache::new(4)),
        Peer::None(NoIdentity::NotMtls)
    );
    host.set_property(PROP_MTLS, &[1]);
    assert_eq!(
        strict(&host, &mut SvidCache::new(4)),
        Peer::None(NoIdentity::Unavailable)
    );
    let host = FakeHost::default();
    host.set_property(PROP_MTLS, &[1]);
    host.fail_property(PROP_URI_SAN);
    assert_eq!(lax(&host), Peer::None(NoIdentity::Unavailable));
    assert!(host
        .logs()
        .iter()
        .any(|(l, m)| *l == Level::Warn && m.contains("get_property")));
}

#[test]
fn strict_needs_digest_and_certificate() {
    // mTLS but no digest: unavailable, nothing cached.
    let host = FakeHost::default();
    host.set_property(PROP_MTLS, &[1]);
    host.set_property(PROP_URI_SAN, ID.as_bytes());
    let mut cache = SvidCache::new(4);
    assert_eq!(
        strict(&host, &mut cache),
        Peer::None(NoIdentity::Unavailable)
    );
    // A digest that is not lowercase sha256 hex is unexpected.
    host.set_property(PROP_PEER_DIGEST, DIGEST.to_uppercase().as_bytes());
    assert_eq!(
        strict(&host, &mut cache),
        Peer::None(NoIdentity::Unavailable)
    );
    // Digest but no certificate: unavailable, not cached.
    host.set_property(PROP_PEER_DIGEST, DIGEST.as_bytes());
    assert_eq!(
        strict(&host, &mut cache),
        Peer::None(NoIdentity::Unavailable)
    );
    assert!(cache.is_empty());
    // A certificate not in the cache is checked in full: not mTLS stops before the
    // certificate is read.
    host.set_property(PROP_MTLS, &[0]);
    let reads = host.property_reads(PROP_PEER_CERT);
    assert_eq!(strict(&host, &mut cache), Peer::None(NoIdentity::NotMtls));
    assert_eq!(host.property_reads(PROP_PEER_CERT), reads);
    // No digest at all (no peer certificate): `connection.mtls` says why.
    let host = FakeHost::default();
    assert_eq!(strict(&host, &mut cache), Peer::None(NoIdentity::NotMtls));
    host.set_property(PROP_MTLS, &[1]);
    assert_eq!(
        strict(&host, &mut cache),
        Peer::None(NoIdentity::Unavailable)
    );
}

#[test]
fn strict_uses_cached_verdict_without_reading_certificate() {
    let id = SpiffeId::parse(ID).unwrap();
    let host = FakeHost::default();
    host.set_property(PROP_MTLS, &[1]);
    host.set_property(PROP_PEER_DIGEST, DIGEST.as_bytes());
    let mut cache = SvidCache::new(4);
    cache.insert(DIGEST.to_owned(), Ok(id.clone()));
    assert_eq!(strict(&host, &mut cache), Peer::Identity(id));
    assert_eq!(host.property_reads(PROP_PEER_CERT), 0);
    assert_eq!(host.property_reads(PROP_URI_SAN), 0);
    // One host call: the digest (it implies a presented certificate, i.e. mTLS).
    assert_eq!(host.property_reads(PROP_MTLS), 0);
    assert_eq!(host.property_reads(PROP_PEER_DIGEST), 1);
    cache.insert(DIGEST.to_owned(), Err(NoIdentity::InvalidSvid));
    assert_eq!(
        strict(&host, &mut cache),
        Peer::None(NoIdentity::InvalidSvid)
    );
}

#[test]
fn strict_garbage_certificate_is_invalid_and_cached() {
    let host = FakeHost::default();
    host.set_property(PROP_MTLS, &[1]);
    host.set_property(PROP_PEER_DIGEST, DIGEST.as_bytes());
    host.set_property(PROP_PEER_CERT, b"not a certificate");
    let mut cache = SvidCache::new(4);
    let first = strict(&host, &mut cache);
    assert!(matches!(first, Peer::None(_)), "{first:?}");
    assert_eq!(cache.len(), 1);
    assert_eq!(strict(&host, &mut cache), first);
    assert_eq!(
        host.property_reads(PROP_PEER_CERT),
        1,
        "second lookup hits the cache"
    );
    // A broken URL escape is invalid too.
    let host = FakeHost::default();
    host.set_property(PROP_MTLS, &[1]);
    host.set_property(PROP_PEER_DIGEST, DIGEST.as_bytes());
    host.set_property(PROP_PEER_CERT, b"-----BEGIN%2");
    assert_eq!(
        strict(&host, &mut SvidCache::new(4)),
        Peer::None(NoIdentity::InvalidSvid)
    );
}

#[test]
fn cache_is_bounded_fifo() {
    let id = SpiffeId::parse(ID).unwrap();
    let mut cache = SvidCache::new(2);
    cache.insert("a".into(), Ok(id.clone()));
    cache.insert("b".into(), Err(NoIdentity::InvalidSvid));
    cache.insert("a".into(), Ok(id.clone())); // refresh, no growth
    assert_eq!(cache.len(), 2);
    cache.insert("c".into(), Ok(id.clone()));
    assert_eq!(cache.len(), 2);
    assert!(cache.get("a").is_none(), "oldest evicted");
    assert!(cache.get("b").is_some() && cache.get("c").is_some());
    for i in 0..100 {
        cache.insert(format!("k{i}"), Ok(id.clone()));
    }
    assert_eq!(cache.len(), 2);
    assert!(SvidCache::new(0).capacity >= 1);
}

#[test]
fn pem_property_decoding() {
    assert_eq!(
        decode_pem_property(b"-----BEGIN CERTIFICATE-----\nAB==\n").unwrap(),
        b"-----BEGIN CERTIFICATE-----\nAB==\n"
    );
    assert_eq!(
        decode_pem_property(b"-----BEGIN%20CERTIFICATE-----%0AAB%3D%3d%0A").unwrap(),
        b"-----BEGIN CERTIFICATE-----\nAB==\n"
    );
    assert_eq!(decode_pem_property(b"%"), None);
    assert_eq!(decode_pem_property(b"%4"), None);
    assert_eq!(decode_pem_property(b"%zz"), None);
}

#[test]
fn svid_errors_map_to_no_identity_kinds() {
    assert_eq!(svid_error_kind(&SvidError::NoUriSan), NoIdentity::NoUriSan);
    assert_eq!(
        svid_error_kind(&SvidError::MultipleUriSans(2)),
        NoIdentity::InvalidSvid
    );
    assert_eq!(svid_error_kind(&SvidError::IsCa), NoIdentity::InvalidSvid);
    assert_eq!(svid_error_kind(&SvidError::NotPem), NoIdentity::InvalidSvid);
    assert_eq!(
        svid_error_kind(&SvidError::InvalidSpiffeId(
            svidgate_core::SpiffeIdError::Empty
        )),
        NoIdentity::InvalidSpiffeId
    );
}

#[test]
fn port_and_sni_properties() {
    let host = FakeHost::default();
    assert_eq!(destination_port(&host), None);
    host.set_property(PROP_DESTINATION_PORT, &8443u64.to_le_bytes());
    assert_eq!(destination_port(&host), Some(8443));
    host.set_property(PROP_DESTINATION_PORT, &70000u64.to_le_bytes());
    assert_eq!(destination_port(&host), None);
    host.set_property(PROP_DESTINATION_PORT, b"8443");
    assert_eq!(destination_port(&host), None);
    assert_eq!(string_property(&host, PROP_SNI), None);
    host.set_property(PROP_SNI, b"");
    assert_eq!(string_property(&host, PROP_SNI), None);
    host.set_property(PROP_SNI, b"api.example");
    assert_eq!(
        string_property(&host, PROP_SNI).as_deref(),
        Some("api.example")
    );
    host.set_property(PROP_SNI, b"\xff");
    assert_eq!(string_property(&host, PROP_SNI), None);
}

/// Real certificates through the strict path (core's X509-SVID leaf checks).
mod strict_with_certificates {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose, SanType,
    };

    fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(
        ca: &CertifiedIssuer<'static, KeyPair>,
        uris: &[&str],
        f: impl Fn(&mut CertificateParams),
    ) -> String {
        let mut p = CertificateParams::default();
        p.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        f(&mut p);
        let key = KeyPair::generate().unwrap();
        p.signed_by(&key, ca).unwrap().pem()
    }

    fn strict_peer(pem: &str) -> Peer {
        let host = FakeHost::default();
        host.set_property(PROP_MTLS, &[1]);
        host.set_property(PROP_PEER_DIGEST, DIGEST.as_bytes());
        host.set_property(PROP_PEER_CERT, pem.as_bytes());
        // Envoy's first URI SAN: strict mode must not rely on it.
        host.set_property(PROP_URI_SAN, ID.as_bytes());
        let p = strict(&host, &mut SvidCache::new(4));
        for (_, m) in host.logs() {
            eprintln!("{m}");
        }
        p
    }

    #[test]
    fn table() {
        let ca = ca();
        let other = "spiffe://cluster.local/ns/x/sa/y";
        let id = SpiffeId::parse(ID).unwrap();
        let cases: Vec<(&str, String, Peer)> = vec![
            (
                "valid",
                leaf(&ca, &[ID], |_| {}),
                Peer::Identity(id.clone()),
            ),
            (
                "no uri san",
                leaf(&ca, &[], |_| {}),
                Peer::None(NoIdentity::NoUriSan),
            ),
            (
                "two uri sans",
                leaf(&ca, &[ID, other], |_| {}),
                Peer::None(NoIdentity::InvalidSvid),
            ),
            (
                "ca leaf",
                leaf(&ca, &[ID], |p| {
                    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
                }),
                Peer::None(NoIdentity::InvalidSvid),
            ),
            (
                "keyCertSign",
                leaf(&ca, &[ID], |p| {
                    p.key_usages.push(KeyUsagePurpose::KeyCertSign)
                }),
                Peer::None(NoIdentity::InvalidSvid),
            ),
            (
                "no digitalSignature",
                leaf(&ca, &[ID], |p| {
                    p.key_usages = vec![KeyUsagePurpose::KeyAgreement]
                }),
                Peer::None(NoIdentity::InvalidSvid),
            ),
            (
                "invalid spiffe id",
                leaf(&ca, &["spiffe://Cluster.local/x"], |_| {}),
                Peer::None(NoIdentity::InvalidSpiffeId),
            ),
        ];
        for (what, pem, want) in cases {
            assert_eq!(strict_peer(&pem), want, "{what}");
        }
        // URL-encoded PEM (the access-log form) is accepted too.
        let pem = leaf(&ca, &[ID], |_| {});
        let encoded = pem
            .replace(' ', "%20")
            .replace('\n', "%0A")
            .replace('=', "%3D");
        assert_eq!(strict_peer(&encoded), Peer::Identity(id));
    }
}
