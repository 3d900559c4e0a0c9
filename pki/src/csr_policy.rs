//! The CA's CSR checks, the way istio-csr does them (pure: no I/O).
//!
//! A CSR is accepted only if: it is one PEM `CERTIFICATE REQUEST` that parses with nothing
//! trailing; its signature verifies with its own key; its subject has no CN and no email;
//! its extensions are only subjectAltName, keyUsage, extendedKeyUsage and basicConstraints
//! (CA:false); the SAN is exactly one URI that is a strict workload SPIFFE ID in our trust
//! domain, with no DNS, IP, email or other names; keyUsage asks for nothing beyond
//! digitalSignature, keyEncipherment and keyAgreement; EKU for nothing beyond serverAuth and
//! clientAuth; and the key is ECDSA P-256/P-384 or RSA 2048..8192 bits.
//!
//! Nothing from the CSR but the SPIFFE ID and the public key reaches the certificate.

use rcgen::{PublicKeyData, SignatureAlgorithm};
use svidgate_core::{SpiffeId, TrustDomain};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS9_EMAIL_ADDRESS, OID_X509_COMMON_NAME,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Why a CSR was refused. Every variant maps to gRPC `INVALID_ARGUMENT` except
/// [`CsrRejection::ForeignTrustDomain`] (`PERMISSION_DENIED`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrRejection {
    #[error("csr: not a PEM CERTIFICATE REQUEST: {0}")]
    NotPem(String),
    #[error("csr: cannot parse: {0}")]
    Parse(String),
    #[error("csr: signature does not verify with the CSR's key")]
    BadSignature,
    #[error("csr: subject has a {0}; an X509-SVID CSR has none")]
    SubjectAttribute(&'static str),
    #[error("csr: extension {0} is not allowed (only subjectAltName, keyUsage, extendedKeyUsage, basicConstraints)")]
    Extension(String),
    #[error("csr: basicConstraints asks for a CA certificate")]
    AsksForCa,
    #[error("csr: subjectAltName has a {0}; only one URI SAN is allowed")]
    ForbiddenSan(&'static str),
    #[error("csr: has {0} URI SANs; exactly one is required")]
    UriSanCount(usize),
    #[error("csr: URI SAN {uri:?} is not a valid workload SPIFFE ID: {reason}")]
    BadSpiffeId { uri: String, reason: String },
    #[error("csr: identity {id} is not in trust domain {trust_domain}")]
    ForeignTrustDomain { id: String, trust_domain: String },
    #[error("csr: keyUsage {0} is not allowed")]
    KeyUsage(&'static str),
    #[error("csr: extendedKeyUsage {0} is not allowed (only serverAuth, clientAuth)")]
    ExtendedKeyUsage(String),
    #[error("csr: unsupported public key: {0} (ECDSA P-256/P-384 or RSA 2048..8192 bits)")]
    PublicKey(String),
}

/// The public key of an accepted CSR, in the form rcgen signs.
#[derive(Debug, Clone)]
pub struct CsrPublicKey {
    alg: &'static SignatureAlgorithm,
    raw: Vec<u8>,
    is_rsa: bool,
}

impl CsrPublicKey {
    pub fn is_rsa(&self) -> bool {
        self.is_rsa
    }
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// An accepted CSR: the identity it asks for and its key.
#[derive(Debug, Clone)]
pub struct ApprovedCsr {
    pub spiffe_id: SpiffeId,
    pub public_key: CsrPublicKey,
}

/// Runs every check on a PEM CSR for trust domain `td`.
pub fn check_csr(csr_pem: &str, td: &TrustDomain) -> Result<ApprovedCsr, CsrRejection> {
    let blocks = pem::parse_many(csr_pem).map_err(|e| CsrRejection::NotPem(e.to_string()))?;
    let block = match blocks.as_slice() {
        [one] if one.tag() == "CERTIFICATE REQUEST" || one.tag() == "NEW CERTIFICATE REQUEST" => {
            one
        }
        [one] => {
            return Err(CsrRejection::NotPem(format!(
                "PEM block is {:?}",
                one.tag()
            )))
        }
        [] => return Err(CsrRejection::NotPem("no PEM block".into())),
        many => {
            return Err(CsrRejection::NotPem(format!(
                "{} PEM blocks, expected one",
                many.len()
            )))
        }
    };
    let csr = match X509CertificationRequest::from_der(block.contents()) {
        Ok(([], csr)) => csr,
        Ok(_) => return Err(CsrRejection::Parse("trailing bytes after the CSR".into())),
        Err(e) => return Err(CsrRejection::Parse(e.to_string())),
    };
    csr.verify_signature()
        .map_err(|_| CsrRejection::BadSignature)?;
    let info = &csr.certification_request_info;

    for attr in info.subject.iter_attributes() {
        if *attr.attr_type() == OID_X509_COMMON_NAME {
            return Err(CsrRejection::SubjectAttribute("common name (CN)"));
        }
        if *attr.attr_type() == OID_PKCS9_EMAIL_ADDRESS {
            return Err(CsrRejection::SubjectAttribute("emailAddress"));
        }
    }

    let mut uris: Vec<String> = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::URI(u) => uris.push((*u).to_owned()),
                            GeneralName::DNSName(_) => {
                                return Err(CsrRejection::ForbiddenSan("DNS name"))
                            }
                            GeneralName::IPAddress(_) => {
                                return Err(CsrRejection::ForbiddenSan("IP address"))
                            }
                            GeneralName::RFC822Name(_) => {
                                return Err(CsrRejection::ForbiddenSan("email address"))
                            }
                            _ => return Err(CsrRejection::ForbiddenSan("non-URI name")),
                        }
                    }
                }
                ParsedExtension::KeyUsage(ku) => {
                    let forbidden = [
                        (ku.non_repudiation(), "contentCommitment"),
                        (ku.data_encipherment(), "dataEncipherment"),
                        (ku.key_cert_sign(), "keyCertSign"),
                        (ku.crl_sign(), "cRLSign"),
                        (ku.encipher_only(), "encipherOnly"),
                        (ku.decipher_only(), "decipherOnly"),
                    ];
                    if let Some((_, name)) = forbidden.into_iter().find(|(set, _)| *set) {
                        return Err(CsrRejection::KeyUsage(name));
                    }
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let extra = [
                        (eku.any, "anyExtendedKeyUsage"),
                        (eku.code_signing, "codeSigning"),
                        (eku.email_protection, "emailProtection"),
                        (eku.time_stamping, "timeStamping"),
                        (eku.ocsp_signing, "OCSPSigning"),
                    ];
                    if let Some((_, name)) = extra.into_iter().find(|(set, _)| *set) {
                        return Err(CsrRejection::ExtendedKeyUsage(name.into()));
                    }
                    if let Some(oid) = eku.other.first() {
                        return Err(CsrRejection::ExtendedKeyUsage(oid.to_id_string()));
                    }
                }
                ParsedExtension::BasicConstraints(bc) => {
                    if bc.ca {
                        return Err(CsrRejection::AsksForCa);
                    }
                }
                ParsedExtension::UnsupportedExtension { oid } => {
                    return Err(CsrRejection::Extension(oid.to_id_string()));
                }
                ParsedExtension::ParseError { error } => {
                    return Err(CsrRejection::Parse(format!("extension: {error}")));
                }
                other => return Err(CsrRejection::Extension(extension_name(other))),
            }
        }
    }

    let uri = match uris.as_slice() {
        [one] => one.clone(),
        other => return Err(CsrRejection::UriSanCount(other.len())),
    };
    let spiffe_id = SpiffeId::parse(&uri).map_err(|e| CsrRejection::BadSpiffeId {
        uri: uri.clone(),
        reason: e.to_string(),
    })?;
    if spiffe_id.trust_domain() != td {
        return Err(CsrRejection::ForeignTrustDomain {
            id: spiffe_id.to_string(),
            trust_domain: td.to_string(),
        });
    }

    let spki = &info.subject_pki;
    let raw = spki.subject_public_key.data.to_vec();
    let alg_oid = &spki.algorithm.algorithm;
    let public_key = if *alg_oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CsrRejection::PublicKey("EC key without a named curve".into()))?;
        let alg = if curve == OID_EC_P256 {
            &rcgen::PKCS_ECDSA_P256_SHA256
        } else if curve == OID_NIST_EC_P384 {
            &rcgen::PKCS_ECDSA_P384_SHA384
        } else {
            return Err(CsrRejection::PublicKey(format!(
                "EC curve {}",
                curve.to_id_string()
            )));
        };
        CsrPublicKey {
            alg,
            raw,
            is_rsa: false,
        }
    } else if *alg_oid == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err(CsrRejection::PublicKey("unparsable RSA key".into())),
        };
        if !(2048..=8192).contains(&bits) {
            return Err(CsrRejection::PublicKey(format!("RSA {bits} bits")));
        }
        CsrPublicKey {
            alg: &rcgen::PKCS_RSA_SHA256,
            raw,
            is_rsa: true,
        }
    } else {
        return Err(CsrRejection::PublicKey(format!(
            "algorithm {}",
            alg_oid.to_id_string()
        )));
    };

    Ok(ApprovedCsr {
        spiffe_id,
        public_key,
    })
}

fn extension_name(ext: &ParsedExtension<'_>) -> String {
    let dbg = format!("{ext:?}");
    dbg.split(['(', ' ', '{'])
        .next()
        .unwrap_or("unknown")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyType, WorkloadKey};
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose as E, IsCa, KeyUsagePurpose as K, SanType,
    };

    const ID: &str = "spiffe://td.test/ns/a/sa/b";

    fn base() -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI(ID.try_into().unwrap())];
        p.key_usages = vec![K::DigitalSignature];
        p.extended_key_usages = vec![E::ServerAuth, E::ClientAuth];
        p
    }

    fn run(p: &CertificateParams, key: &WorkloadKey) -> Result<ApprovedCsr, CsrRejection> {
        let pem = p
            .serialize_request(key.rcgen_key_pair())
            .unwrap()
            .pem()
            .unwrap();
        check_csr(&pem, &TrustDomain::new("td.test").unwrap())
    }

    #[test]
    fn accepts_our_own_csrs_for_every_key_type() {
        let id = SpiffeId::parse(ID).unwrap();
        for kt in KeyType::ALL {
            let key = WorkloadKey::generate(kt).unwrap();
            let pem = crate::csr::build(&id, &key).unwrap();
            let ok = check_csr(&pem, &TrustDomain::new("td.test").unwrap()).unwrap();
            assert_eq!(ok.spiffe_id, id);
            assert_eq!(ok.public_key.is_rsa(), kt.is_rsa());
            assert_eq!(
                ok.public_key.subject_public_key_info(),
                key.public_key_der(),
                "{kt}"
            );
        }
    }

    #[test]
    fn refuses_every_rule_violation() {
        let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        type Edit = fn(&mut CertificateParams);
        type Expect = fn(&CsrRejection) -> bool;
        let cases: Vec<(&str, Edit, Expect)> = vec![
            (
                "CN",
                |p| p.distinguished_name.push(DnType::CommonName, "web"),
                |e| matches!(e, CsrRejection::SubjectAttribute(_)),
            ),
            (
                "no SAN",
                |p| p.subject_alt_names.clear(),
                |e| matches!(e, CsrRejection::UriSanCount(0)),
            ),
            (
                "bad id",
                |p| p.subject_alt_names = vec![SanType::URI("spiffe://TD/x".try_into().unwrap())],
                |e| matches!(e, CsrRejection::BadSpiffeId { .. }),
            ),
            (
                "other td",
                |p| {
                    p.subject_alt_names = vec![SanType::URI("spiffe://other/x".try_into().unwrap())]
                },
                |e| matches!(e, CsrRejection::ForeignTrustDomain { .. }),
            ),
            (
                "keyCertSign",
                |p| p.key_usages.push(K::KeyCertSign),
                |e| matches!(e, CsrRejection::KeyUsage("keyCertSign")),
            ),
            (
                "codeSigning",
                |p| p.extended_key_usages.push(E::CodeSigning),
                |e| matches!(e, CsrRejection::ExtendedKeyUsage(_)),
            ),
            (
                "CA",
                |p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained),
                |e| matches!(e, CsrRejection::AsksForCa),
            ),
            (
                "custom ext",
                |p| {
                    p.custom_extensions
                        .push(CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0]))
                },
                |e| matches!(e, CsrRejection::Extension(_)),
            ),
        ];
        for (name, edit, expect) in cases {
            let mut p = base();
            edit(&mut p);
            let got = run(&p, &key);
            assert!(matches!(&got, Err(e) if expect(e)), "{name}: {got:?}");
        }
        // One SAN more: a second URI, or a kind an X509-SVID must not have.
        let extra_sans = [
            (
                SanType::DnsName("web.example".try_into().unwrap()),
                CsrRejection::ForbiddenSan("DNS name"),
            ),
            (
                SanType::IpAddress([127, 0, 0, 1].into()),
                CsrRejection::ForbiddenSan("IP address"),
            ),
            (
                SanType::Rfc822Name("a@b.c".try_into().unwrap()),
                CsrRejection::ForbiddenSan("email address"),
            ),
            (
                SanType::URI("spiffe://td.test/x".try_into().unwrap()),
                CsrRejection::UriSanCount(2),
            ),
        ];
        for (san, want) in extra_sans {
            let mut p = base();
            p.subject_alt_names.push(san.clone());
            assert_eq!(run(&p, &key).err(), Some(want), "{san:?}");
        }
        // basicConstraints CA:false is fine.
        let mut p = base();
        p.is_ca = IsCa::ExplicitNoCa;
        run(&p, &key).unwrap();
    }

    #[test]
    fn refuses_garbage_and_tampered_csrs() {
        let td = TrustDomain::new("td.test").unwrap();
        assert!(matches!(
            check_csr("garbage", &td),
            Err(CsrRejection::NotPem(_))
        ));
        let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        assert!(matches!(
            check_csr(&key.to_pkcs8_pem(), &td),
            Err(CsrRejection::NotPem(_))
        ));
        let pem_str = base()
            .serialize_request(key.rcgen_key_pair())
            .unwrap()
            .pem()
            .unwrap();
        let mut der = pem::parse(&pem_str).unwrap().into_contents();
        let n = der.len();
        der[n - 3] ^= 0x55; // flip bits in the signature
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        let got = check_csr(&tampered, &td);
        assert!(
            matches!(
                got,
                Err(CsrRejection::BadSignature | CsrRejection::Parse(_))
            ),
            "{got:?}"
        );
    }

    /// Mutation robustness: byte flips in a valid CSR never panic, and an accepted mutant
    /// still names a valid identity in the trust domain.
    #[test]
    fn mutated_csrs_never_panic() {
        let td = TrustDomain::new("td.test").unwrap();
        let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        let pem_str = crate::csr::build(&SpiffeId::parse(ID).unwrap(), &key).unwrap();
        let der = pem::parse(&pem_str).unwrap().into_contents();
        for m in crate::testing::mutants(&der, 11, 3000) {
            let pem_m = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", m));
            if let Ok(ok) = check_csr(&pem_m, &td) {
                assert_eq!(ok.spiffe_id.trust_domain(), &td);
            }
        }
    }
}
