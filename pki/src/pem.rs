//! PEM in and out: certificates as DER ([`CertificateDer`]) inside, PEM with LF line endings
//! at the edges (files, SDS, the CA's `cert_chain`).

use pki_types::CertificateDer;

/// A PEM text that holds no usable certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    #[error("not PEM: {0}")]
    NotPem(String),
    #[error("no CERTIFICATE in the file")]
    NoCertificate,
    #[error("PEM block {block} is a {tag:?}, not a CERTIFICATE")]
    NotACertificate { block: usize, tag: String },
}

/// PEM-encodes one block with LF line endings.
pub fn encode(tag: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(tag, der),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// PEM-encodes certificates, concatenated.
pub fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| encode("CERTIFICATE", c)).collect()
}

/// The `CERTIFICATE` blocks of a PEM text, in order (other blocks are skipped); at least one.
pub fn parse_certs(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let blocks = ::pem::parse_many(text).map_err(|e| PemError::NotPem(e.to_string()))?;
    let certs: Vec<_> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// Every PEM block of `text`, each of which must be a `CERTIFICATE` (there may be none).
pub fn parse_cert_blocks(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let blocks = ::pem::parse_many(text).map_err(|e| PemError::NotPem(e.to_string()))?;
    blocks
        .into_iter()
        .enumerate()
        .map(|(block, b)| match b.tag() {
            "CERTIFICATE" => Ok(CertificateDer::from(b.into_contents())),
            tag => Err(PemError::NotACertificate {
                block,
                tag: tag.to_owned(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let der = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let text = certs_to_pem(&[der.clone(), der.clone()]);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!text.contains('\r'));
        assert_eq!(
            parse_certs(text.as_bytes()).unwrap(),
            vec![der.clone(), der]
        );
        assert_eq!(parse_certs(b""), Err(PemError::NoCertificate));
        let key = encode("PRIVATE KEY", &[1, 2, 3]);
        assert_eq!(parse_certs(key.as_bytes()), Err(PemError::NoCertificate));
        assert!(matches!(
            parse_certs(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"),
            Err(PemError::NotPem(_))
        ));
        assert_eq!(parse_cert_blocks(b"").unwrap(), vec![]);
        assert_eq!(
            parse_cert_blocks(format!("{text}{key}").as_bytes()),
            Err(PemError::NotACertificate {
                block: 2,
                tag: "PRIVATE KEY".into()
            })
        );
    }
}
