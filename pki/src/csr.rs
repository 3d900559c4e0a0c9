//! PKCS#10 certificate signing requests for a workload SPIFFE ID (rcgen).
//!
//! The request carries exactly one URI SAN (the SPIFFE ID, marked critical because the
//! subject is empty), no subject (no CN), no DNS/IP/email SANs, keyUsage digitalSignature
//! (+keyEncipherment for RSA keys) and extendedKeyUsage serverAuth + clientAuth. Nothing else.
//! The CSR is not secret, but it is never logged either (it identifies the key).

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType,
};
use svidgate_core::SpiffeId;

use crate::key::WorkloadKey;

/// Errors building a CSR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    #[error("SPIFFE ID {id:?} cannot be a URI SAN: {reason}")]
    BadUri { id: String, reason: String },
    #[error("signing the CSR for {id:?}: {reason}")]
    Sign { id: String, reason: String },
}

/// The keyUsage a workload certificate for this key asks for.
pub fn key_usages(key: &WorkloadKey) -> Vec<KeyUsagePurpose> {
    let mut ku = vec![KeyUsagePurpose::DigitalSignature];
    if key.key_type().is_rsa() {
        ku.push(KeyUsagePurpose::KeyEncipherment);
    }
    ku
}

/// Builds and signs a CSR for `id` with `key`; returns it as PEM (`CERTIFICATE REQUEST`).
pub fn build(id: &SpiffeId, key: &WorkloadKey) -> Result<String, CsrError> {
    let id_str = id.to_string();
    let mut params = CertificateParams::default();
    // rcgen's default subject is `CN=rcgen self signed cert`: an X509-SVID CSR has no subject.
    params.distinguished_name = DistinguishedName::new();
    let uri = id_str
        .clone()
        .try_into()
        .map_err(|e: rcgen::Error| CsrError::BadUri {
            id: id_str.clone(),
            reason: e.to_string(),
        })?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.key_usages = key_usages(key);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let csr = params
        .serialize_request(key.rcgen_key_pair())
        .map_err(|e| CsrError::Sign {
            id: id_str.clone(),
            reason: e.to_string(),
        })?;
    csr.pem().map_err(|e| CsrError::Sign {
        id: id_str,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;

    #[test]
    fn csr_has_one_uri_san_no_subject_and_the_right_usages() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/web").unwrap();
        for kt in KeyType::ALL {
            let key = WorkloadKey::generate(kt).unwrap();
            let pem_str = build(&id, &key).unwrap();
            let der = pem::parse(&pem_str).unwrap();
            assert_eq!(der.tag(), "CERTIFICATE REQUEST");
            let (rest, csr) = X509CertificationRequest::from_der(der.contents()).unwrap();
            assert!(rest.is_empty());
            csr.verify_signature().unwrap();
            let info = &csr.certification_request_info;
            assert_eq!(
                info.subject.iter().count(),
                0,
                "{kt}: subject must be empty"
            );
            assert_eq!(info.subject_pki.raw, key.public_key_der());
            let exts: Vec<_> = csr.requested_extensions().unwrap().collect();
            assert_eq!(exts.len(), 3, "{kt}: SAN, keyUsage, EKU only");
            let mut seen = 0;
            for ext in exts {
                match ext {
                    ParsedExtension::SubjectAlternativeName(san) => {
                        assert_eq!(
                            san.general_names,
                            vec![GeneralName::URI("spiffe://cluster.local/ns/default/sa/web")]
                        );
                        seen |= 1;
                    }
                    ParsedExtension::KeyUsage(ku) => {
                        assert!(ku.digital_signature());
                        assert_eq!(ku.key_encipherment(), kt.is_rsa());
                        assert!(!ku.key_cert_sign() && !ku.crl_sign());
                        seen |= 2;
                    }
                    ParsedExtension::ExtendedKeyUsage(eku) => {
                        assert!(eku.server_auth && eku.client_auth);
                        assert!(!eku.any && eku.other.is_empty());
                        seen |= 4;
                    }
                    other => panic!("{kt}: unexpected extension {other:?}"),
                }
            }
            assert_eq!(seen, 7);
        }
    }
}
