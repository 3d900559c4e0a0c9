//! One test per X509-SVID leaf rule, each with a valid and an invalid certificate generated
//! by rcgen.

use super::*;
use rcgen::string::Ia5String;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CustomExtension, DnType,
    ExtendedKeyUsagePurpose as Eku, IsCa, KeyPair, KeyUsagePurpose as Ku, PublicKeyData, SanType,
    SerialNumber,
};

const ID: &str = "spiffe://example.org/ns/default/sa/web";

fn uri(s: &str) -> SanType {
    SanType::URI(Ia5String::try_from(s).unwrap())
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(Ia5String::try_from(s).unwrap())
}

/// The parameters of a valid X509-SVID leaf, as the agent requests it.
fn leaf_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.subject_alt_names = vec![uri(ID)];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![Ku::DigitalSignature];
    p.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
    p
}

struct Issued {
    pem: String,
    der: Vec<u8>,
}

fn self_signed(p: &CertificateParams) -> Issued {
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Issued {
        pem: cert.pem(),
        der: cert.der().to_vec(),
    }
}

/// Both entry points agree; returns the verdict.
fn check(p: &CertificateParams) -> Result<SpiffeId, SvidError> {
    let c = self_signed(p);
    let from_pem = check_leaf_pem(c.pem.as_bytes());
    assert_eq!(from_pem, check_leaf_der(&c.der), "PEM and DER disagree");
    assert_eq!(
        LeafInfo::from_der(&c.der).map(|i| i.spiffe_id),
        from_pem,
        "LeafInfo disagrees"
    );
    from_pem
}

fn ok() -> Result<SpiffeId, SvidError> {
    Ok(SpiffeId::parse(ID).unwrap())
}

#[test]
fn valid_leaf_signed_by_a_ca() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test root");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut p = leaf_params();
    p.serial_number = Some(SerialNumber::from(vec![0x00, 0x01, 0xab]));
    p.not_before = date_time_ymd(2026, 1, 1);
    p.not_after = date_time_ymd(2026, 1, 2);
    let leaf = p.signed_by(&leaf_key, &issuer).unwrap();

    let id = check_leaf_pem(leaf.pem().as_bytes()).unwrap();
    assert_eq!(id.as_str(), ID);
    assert_eq!(check_leaf_der(leaf.der()).unwrap(), id);

    let info = LeafInfo::from_pem(leaf.pem().as_bytes()).unwrap();
    assert_eq!(info.spiffe_id, id);
    assert_eq!(info.not_before, 1_767_225_600); // 2026-01-01T00:00:00Z
    assert_eq!(info.not_after, 1_767_225_600 + 86_400);
    assert_eq!(info.serial_hex, "01ab");
    assert_eq!(info.public_key_der, leaf_key.subject_public_key_info());
    assert_eq!(LeafInfo::from_der(leaf.der()).unwrap(), info);

    // A chain, leaf first: the first certificate is the one checked.
    let chain = format!("{}{}", leaf.pem(), ca.pem());
    assert_eq!(check_leaf_pem(chain.as_bytes()).unwrap(), id);
    // CA first: the CA is taken as the leaf and rejected.
    let wrong_order = format!("{}{}", ca.pem(), leaf.pem());
    assert_ne!(check_leaf_pem(wrong_order.as_bytes()), Ok(id));
}

#[test]
fn rule_exactly_one_uri_san() {
    // valid: one URI SAN, other SAN types allowed beside it
    let mut p = leaf_params();
    p.subject_alt_names = vec![dns("web.default.svc"), uri(ID)];
    assert_eq!(check(&p), ok());

    // invalid: no SAN extension at all
    let mut p = leaf_params();
    p.subject_alt_names = vec![];
    assert_eq!(check(&p), Err(SvidError::NoUriSan));

    // invalid: SANs but no URI
    let mut p = leaf_params();
    p.subject_alt_names = vec![dns("web.default.svc")];
    assert_eq!(check(&p), Err(SvidError::NoUriSan));

    // invalid: two URI SANs (even if both are valid SPIFFE IDs)
    let mut p = leaf_params();
    p.subject_alt_names = vec![uri(ID), uri("spiffe://example.org/other")];
    assert_eq!(check(&p), Err(SvidError::MultipleUriSans(2)));

    let mut p = leaf_params();
    p.subject_alt_names = vec![uri(ID), dns("a"), uri("https://x/"), uri("spiffe://y/z")];
    assert_eq!(check(&p), Err(SvidError::MultipleUriSans(3)));
}

#[test]
fn rule_uri_san_is_a_valid_workload_spiffe_id() {
    let cases = [
        ("spiffe://example.org", SpiffeIdError::MissingPath),
        ("https://example.org/x", SpiffeIdError::WrongScheme),
        ("SPIFFE://example.org/x", SpiffeIdError::WrongScheme),
        (
            "spiffe://Example.org/x",
            SpiffeIdError::BadTrustDomainChar('E'),
        ),
        ("spiffe://example.org/x/", SpiffeIdError::TrailingSlash),
        (
            "spiffe://example.org/a%20b",
            SpiffeIdError::BadPathChar('%'),
        ),
    ];
    for (san, want) in cases {
        let mut p = leaf_params();
        p.subject_alt_names = vec![uri(san)];
        assert_eq!(check(&p), Err(SvidError::InvalidSpiffeId(want)), "{san}");
    }
    let mut p = leaf_params();
    p.subject_alt_names = vec![uri("spiffe://cluster.local/ns/a/sa/b")];
    assert_eq!(
        check(&p).unwrap().as_str(),
        "spiffe://cluster.local/ns/a/sa/b"
    );
}

#[test]
fn rule_not_a_ca() {
    // valid: basicConstraints CA:false, or no basicConstraints at all
    let p = leaf_params();
    assert_eq!(check(&p), ok());
    let mut p = leaf_params();
    p.is_ca = IsCa::NoCa;
    assert_eq!(check(&p), ok());

    // invalid: CA:true (with or without a path length)
    for bc in [
        BasicConstraints::Unconstrained,
        BasicConstraints::Constrained(0),
    ] {
        let mut p = leaf_params();
        p.is_ca = IsCa::Ca(bc);
        assert_eq!(check(&p), Err(SvidError::IsCa));
    }
}

/// Each case: a leaf with these key usages checks to `want`.
fn key_usage_cases(cases: &[(&[Ku], Result<SpiffeId, SvidError>)]) {
    for (usages, want) in cases {
        let mut p = leaf_params();
        p.key_usages = usages.to_vec();
        assert_eq!(&check(&p), want, "{usages:?}");
    }
}

#[test]
fn rule_key_usage_present_with_digital_signature() {
    #[rustfmt::skip]
    let cases: &[(&[Ku], _)] = &[
        // valid: digitalSignature (+ keyEncipherment, as for RSA keys)
        (&[Ku::DigitalSignature, Ku::KeyEncipherment], ok()),
        // invalid: no keyUsage extension
        (&[], Err(SvidError::MissingKeyUsage)),
        // invalid: keyUsage without digitalSignature
        (&[Ku::KeyEncipherment], Err(SvidError::MissingDigitalSignature)),
    ];
    key_usage_cases(cases);
}

#[test]
fn rule_key_usage_without_key_cert_sign_or_crl_sign() {
    #[rustfmt::skip]
    let cases: &[(&[Ku], _)] = &[
        (&[Ku::DigitalSignature, Ku::KeyAgreement], ok()),
        (&[Ku::DigitalSignature, Ku::KeyCertSign], Err(SvidError::KeyCertSign)),
        (&[Ku::DigitalSignature, Ku::ContentCommitment], ok()),
        (&[Ku::DigitalSignature, Ku::CrlSign], Err(SvidError::CrlSign)),
    ];
    key_usage_cases(cases);
}

#[test]
fn rule_extended_key_usage_when_present_has_client_and_server_auth() {
    let missing = |eku| Err(SvidError::MissingExtendedKeyUsage(eku));
    let cases: [(&[Eku], _); 5] = [
        // valid: absent
        (&[], ok()),
        // valid: both, plus others
        (&[Eku::ClientAuth, Eku::CodeSigning, Eku::ServerAuth], ok()),
        // invalid: one of them missing
        (&[Eku::ServerAuth], missing("clientAuth")),
        (&[Eku::ClientAuth], missing("serverAuth")),
        // invalid: anyExtendedKeyUsage alone does not count
        (&[Eku::Any], missing("clientAuth")),
    ];
    for (usages, want) in cases {
        let mut p = leaf_params();
        p.extended_key_usages = usages.to_vec();
        assert_eq!(check(&p), want, "{usages:?}");
    }
}

/// DER of a SubjectAltName value with one URI.
fn san_ext_value(uri: &str) -> Vec<u8> {
    let mut gn = vec![0x86, u8::try_from(uri.len()).unwrap()];
    gn.extend_from_slice(uri.as_bytes());
    let mut v = vec![0x30, u8::try_from(gn.len()).unwrap()];
    v.extend(gn);
    v
}

#[test]
fn rule_extensions_are_well_formed() {
    // valid: an unknown non-critical extension is ignored
    let mut p = leaf_params();
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 99999, 1],
        vec![0x05, 0x00],
    )];
    assert_eq!(check(&p), ok());

    // invalid: an unknown critical extension
    let mut ext =
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x05, 0x00]);
    ext.set_criticality(true);
    let mut p = leaf_params();
    p.custom_extensions = vec![ext];
    assert_eq!(
        check(&p),
        Err(SvidError::UnsupportedCriticalExtension(
            "1.3.6.1.4.1.99999.1".into()
        ))
    );

    // invalid: a second subjectAltName (could smuggle a second URI past a naive reader)
    let mut p = leaf_params();
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[2, 5, 29, 17],
        san_ext_value("spiffe://example.org/evil"),
    )];
    assert_eq!(
        check(&p),
        Err(SvidError::DuplicateExtension("2.5.29.17".into()))
    );

    // invalid: a malformed basicConstraints must not read as "not a CA"
    let mut p = leaf_params();
    p.is_ca = IsCa::NoCa;
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[2, 5, 29, 19],
        vec![0x30, 0x03, 0x01, 0x01],
    )];
    assert_eq!(
        check(&p),
        Err(SvidError::MalformedExtension("2.5.29.19".into()))
    );

    // invalid: a malformed keyUsage
    let mut p = leaf_params();
    p.key_usages = vec![];
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[2, 5, 29, 15],
        vec![0x04, 0x00],
    )];
    assert_eq!(
        check(&p),
        Err(SvidError::MalformedExtension("2.5.29.15".into()))
    );
}

#[test]
fn pem_framing() {
    let c = self_signed(&leaf_params());
    let pem = c.pem.as_str();
    let want = ok();

    // valid variants
    for (name, input) in [
        ("plain", pem.to_owned()),
        ("CRLF line ends", pem.replace('\n', "\r\n")),
        ("surrounding whitespace", format!("\n  \n{pem}\n\n")),
        ("no final newline", pem.trim_end().to_owned()),
        ("two certificates", format!("{pem}{pem}")),
        ("blank line between", format!("{pem}\n{pem}")),
    ] {
        assert_eq!(check_leaf_pem(input.as_bytes()), want, "{name}");
    }

    let key_pem = KeyPair::generate().unwrap().serialize_pem();
    let body_start = pem.find('\n').unwrap() + 1;
    let invalid: Vec<(&str, String, SvidError)> = vec![
        ("empty", String::new(), SvidError::NotPem),
        ("whitespace", " \n".into(), SvidError::NotPem),
        ("not PEM", "hello".into(), SvidError::NotPem),
        (
            "text before",
            format!("subject=CN=x\n{pem}"),
            SvidError::NotPem,
        ),
        (
            "DER given as PEM",
            String::from_utf8_lossy(&c.der).into_owned(),
            SvidError::NotPem,
        ),
        (
            "private key",
            key_pem.clone(),
            SvidError::WrongPemLabel("PRIVATE KEY".into()),
        ),
        (
            "certificate then key",
            format!("{pem}{key_pem}"),
            SvidError::WrongPemLabel("PRIVATE KEY".into()),
        ),
        (
            "trailing garbage",
            format!("{pem}garbage\n"),
            SvidError::TrailingData,
        ),
        ("trailing NUL", format!("{pem}\0"), SvidError::TrailingData),
        (
            "no END line",
            pem.replace("-----END CERTIFICATE-----", ""),
            SvidError::MalformedPem("no END line"),
        ),
        (
            "END label mismatch",
            pem.replace("END CERTIFICATE", "END X509 CRL"),
            SvidError::MalformedPem("END label does not match BEGIN"),
        ),
        (
            "BEGIN line with trailing text",
            pem.replacen(
                "-----BEGIN CERTIFICATE-----",
                "-----BEGIN CERTIFICATE----- x",
                1,
            ),
            SvidError::MalformedPem("BEGIN line is not `-----BEGIN <label>-----`"),
        ),
        (
            "bad base64 character",
            format!("{}!{}", &pem[..body_start], &pem[body_start + 1..]),
            SvidError::MalformedPem("invalid base64"),
        ),
        (
            "truncated base64",
            format!("{}{}", &pem[..body_start], &pem[body_start + 1..]),
            SvidError::MalformedPem("invalid base64"),
        ),
        (
            "empty block",
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
            SvidError::MalformedPem("empty block"),
        ),
    ];
    for (name, input, want) in invalid {
        assert_eq!(check_leaf_pem(input.as_bytes()), Err(want), "{name}");
    }

    // A well-framed block whose content is not a certificate.
    let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        check_leaf_pem(junk.as_bytes()),
        Err(SvidError::Parse(_))
    ));
}

#[test]
fn der_framing() {
    let c = self_signed(&leaf_params());
    assert_eq!(check_leaf_der(&c.der), ok());

    let mut trailing = c.der.clone();
    trailing.push(0);
    assert_eq!(check_leaf_der(&trailing), Err(SvidError::TrailingData));

    for bad in [&[][..], &c.der[..c.der.len() - 1], &c.der[1..], b"\x30\x00"] {
        assert!(
            matches!(check_leaf_der(bad), Err(SvidError::Parse(_))),
            "{:?}",
            check_leaf_der(bad)
        );
    }
    // PEM text given as DER.
    assert!(matches!(
        check_leaf_der(c.pem.as_bytes()),
        Err(SvidError::Parse(_))
    ));
}

#[test]
fn base64_decoder() {
    assert_eq!(base64_decode(b"").unwrap(), b"");
    assert_eq!(base64_decode(b"Zg==").unwrap(), b"f");
    assert_eq!(base64_decode(b"Zm8=").unwrap(), b"fo");
    assert_eq!(base64_decode(b"Zm9v").unwrap(), b"foo");
    assert_eq!(base64_decode(b"Zm9vYmFy").unwrap(), b"foobar");
    assert_eq!(base64_decode(b"+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    for bad in "Zg= Zg Z=== Zg==Zg== Zm9v= Zm-v =Zm9".split(' ') {
        assert_eq!(base64_decode(bad.as_bytes()), None, "{bad:?}");
    }
}

#[test]
fn serial_hex_format() {
    assert_eq!(serial_hex(&[]), "00");
    assert_eq!(serial_hex(&[0]), "00");
    assert_eq!(serial_hex(&[0, 0x80]), "80");
    assert_eq!(serial_hex(&[0x12, 0x0a]), "120a");
}
