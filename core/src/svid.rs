//! X.509-SVID leaf checks (x509-parser, no crypto: builds for wasm32).
//!
//! [`check_leaf_pem`] / [`check_leaf_der`] enforce the X509-SVID leaf rules and return the
//! certificate's SPIFFE ID; [`LeafInfo`] adds what the agent needs for rotation (validity,
//! serial, public key). Signatures, the chain and the validity window are NOT checked here:
//! that is the TLS stack's job (Envoy) or the agent's (against its bundle and clock).
//!
//! Rules, checked in this order:
//! 1. the input is one DER certificate (PEM: see [`check_leaf_pem`]), nothing after it;
//! 2. the extensions that matter are well-formed: none of them appears twice, none fails to
//!    parse, and no critical extension is unknown to the parser;
//! 3. the subjectAltName holds exactly one URI, and it is a valid workload SPIFFE ID
//!    (other SAN types, e.g. DNS, are allowed as the X509-SVID spec allows them);
//! 4. not a CA: basicConstraints, when present, has `cA` false;
//! 5. keyUsage is present, has digitalSignature, and has neither keyCertSign nor cRLSign;
//! 6. extendedKeyUsage, when present, lists both clientAuth and serverAuth explicitly
//!    (`anyExtendedKeyUsage` alone does not count).

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;

use crate::spiffe_id::{SpiffeId, SpiffeIdError};

/// Why a certificate is not a valid X509-SVID leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    #[error("not a PEM certificate: the input does not start with a `-----BEGIN ...-----` line")]
    NotPem,
    #[error("malformed PEM: {0}")]
    MalformedPem(&'static str),
    #[error("PEM block is {0:?}, expected \"CERTIFICATE\"")]
    WrongPemLabel(String),
    #[error("unexpected data after the certificate")]
    TrailingData,
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    #[error("certificate has the extension {0} more than once")]
    DuplicateExtension(String),
    #[error("certificate extension {0} is malformed")]
    MalformedExtension(String),
    #[error("certificate has a critical extension {0} that is not understood")]
    UnsupportedCriticalExtension(String),
    #[error("certificate has no URI SAN")]
    NoUriSan,
    #[error("certificate has {0} URI SANs; an X509-SVID has exactly one")]
    MultipleUriSans(usize),
    #[error("URI SAN is not a valid workload SPIFFE ID: {0}")]
    InvalidSpiffeId(SpiffeIdError),
    #[error("leaf certificate is a CA (basicConstraints CA:true)")]
    IsCa,
    #[error("leaf certificate has no keyUsage extension")]
    MissingKeyUsage,
    #[error("keyUsage lacks digitalSignature")]
    MissingDigitalSignature,
    #[error("leaf keyUsage has keyCertSign")]
    KeyCertSign,
    #[error("leaf keyUsage has cRLSign")]
    CrlSign,
    #[error("extendedKeyUsage present without {0}")]
    MissingExtendedKeyUsage(&'static str),
}

/// A checked X509-SVID leaf: its SPIFFE ID and what rotation and key matching need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    pub spiffe_id: SpiffeId,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// The serial number as lower-case hex of its value, no separators, no leading zero
    /// bytes (at least two digits), e.g. `01ab`.
    pub serial_hex: String,
    /// The DER SubjectPublicKeyInfo, to compare with the key the agent generated.
    pub public_key_der: Vec<u8>,
}

impl LeafInfo {
    /// Checks a PEM leaf (see [`check_leaf_pem`]) and returns its details.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SvidError> {
        let der = leaf_der_from_pem(pem)?;
        Self::from_der(&der)
    }

    /// Checks a DER leaf (see [`check_leaf_der`]) and returns its details.
    pub fn from_der(der: &[u8]) -> Result<Self, SvidError> {
        let cert = parse_der(der)?;
        let spiffe_id = check_cert(&cert)?;
        Ok(LeafInfo {
            spiffe_id,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial_hex: serial_hex(cert.raw_serial()),
            public_key_der: cert.public_key().raw.to_vec(),
        })
    }
}

/// Checks a PEM leaf certificate against the X509-SVID leaf rules; returns its SPIFFE ID.
///
/// The input is one or more `CERTIFICATE` PEM blocks, separated and surrounded only by
/// whitespace. The FIRST block is the leaf and is the one checked (a chain in the usual
/// leaf-first order is accepted); the others must be well-formed `CERTIFICATE` blocks but
/// are not parsed. Anything else — text before the first block or after the last, another
/// label such as `PRIVATE KEY`, a malformed block — is rejected.
pub fn check_leaf_pem(pem: &[u8]) -> Result<SpiffeId, SvidError> {
    let der = leaf_der_from_pem(pem)?;
    check_leaf_der(&der)
}

/// Checks a DER leaf certificate against the X509-SVID leaf rules; returns its SPIFFE ID.
/// The input must be exactly one certificate (no trailing bytes).
pub fn check_leaf_der(der: &[u8]) -> Result<SpiffeId, SvidError> {
    check_cert(&parse_der(der)?)
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, SvidError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| SvidError::Parse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SvidError::TrailingData);
    }
    Ok(cert)
}

fn check_cert(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    // 2. Extensions are well-formed. x509-parser's accessors treat a malformed extension as
    //    absent (e.g. an unparsable basicConstraints would read as "not a CA"), so reject
    //    those first.
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::ParseError { .. } => {
                return Err(SvidError::MalformedExtension(ext.oid.to_id_string()))
            }
            ParsedExtension::UnsupportedExtension { .. } if ext.critical => {
                return Err(SvidError::UnsupportedCriticalExtension(
                    ext.oid.to_id_string(),
                ))
            }
            _ => {}
        }
    }
    for oid in [
        &OID_X509_EXT_SUBJECT_ALT_NAME,
        &OID_X509_EXT_BASIC_CONSTRAINTS,
        &OID_X509_EXT_KEY_USAGE,
        &OID_X509_EXT_EXTENDED_KEY_USAGE,
    ] {
        if cert.get_extension_unique(oid).is_err() {
            return Err(SvidError::DuplicateExtension(oid.to_id_string()));
        }
    }
    let malformed =
        |oid: &x509_parser::der_parser::Oid<'_>| SvidError::MalformedExtension(oid.to_id_string());

    // 3. Exactly one URI SAN, a valid workload SPIFFE ID.
    let san = cert
        .subject_alternative_name()
        .map_err(|_| malformed(&OID_X509_EXT_SUBJECT_ALT_NAME))?;
    let mut uris = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let uri = uris.next().ok_or(SvidError::NoUriSan)?;
    let more = uris.count();
    if more > 0 {
        return Err(SvidError::MultipleUriSans(more + 1));
    }
    let id = SpiffeId::parse(uri).map_err(SvidError::InvalidSpiffeId)?;

    // 4. Not a CA.
    let bc = cert
        .basic_constraints()
        .map_err(|_| malformed(&OID_X509_EXT_BASIC_CONSTRAINTS))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(SvidError::IsCa);
    }

    // 5. keyUsage: digitalSignature, no keyCertSign, no cRLSign.
    let ku = cert
        .key_usage()
        .map_err(|_| malformed(&OID_X509_EXT_KEY_USAGE))?
        .ok_or(SvidError::MissingKeyUsage)?;
    if !ku.value.digital_signature() {
        return Err(SvidError::MissingDigitalSignature);
    }
    if ku.value.key_cert_sign() {
        return Err(SvidError::KeyCertSign);
    }
    if ku.value.crl_sign() {
        return Err(SvidError::CrlSign);
    }

    // 6. extendedKeyUsage, when present: clientAuth and serverAuth.
    let eku = cert
        .extended_key_usage()
        .map_err(|_| malformed(&OID_X509_EXT_EXTENDED_KEY_USAGE))?;
    if let Some(eku) = eku {
        if !eku.value.client_auth {
            return Err(SvidError::MissingExtendedKeyUsage("clientAuth"));
        }
        if !eku.value.server_auth {
            return Err(SvidError::MissingExtendedKeyUsage("serverAuth"));
        }
    }
    Ok(id)
}

fn serial_hex(raw: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let first = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let digits = match &raw[first..] {
        [] => &[0u8][..],
        v => v,
    };
    let mut s = String::with_capacity(digits.len() * 2);
    for &b in digits {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

// ---------------------------------------------------------------------------------------
// Strict PEM (RFC 7468 "strict" textual encoding, with CRLF or LF line ends).

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";
const CERTIFICATE: &[u8] = b"CERTIFICATE";

/// Decodes the first block of a PEM input (which must be `CERTIFICATE`) and checks that
/// the rest is only further well-formed `CERTIFICATE` blocks and whitespace.
fn leaf_der_from_pem(input: &[u8]) -> Result<Vec<u8>, SvidError> {
    let (label, der, mut rest) = pem_block(skip_ws(input)).ok_or(SvidError::NotPem)??;
    if label != CERTIFICATE {
        return Err(SvidError::WrongPemLabel(
            String::from_utf8_lossy(label).into_owned(),
        ));
    }
    loop {
        rest = skip_ws(rest);
        if rest.is_empty() {
            return Ok(der);
        }
        let (label, _, next) = pem_block(rest).ok_or(SvidError::TrailingData)??;
        if label != CERTIFICATE {
            return Err(SvidError::WrongPemLabel(
                String::from_utf8_lossy(label).into_owned(),
            ));
        }
        rest = next;
    }
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// One PEM block: its label, the decoded contents, and the input after its END line.
type PemBlock<'a> = (&'a [u8], Vec<u8>, &'a [u8]);

/// Splits off one line (without its `\n` or `\r\n`); `None` at the end of input.
fn split_line(s: &[u8]) -> Option<(&[u8], &[u8])> {
    if s.is_empty() {
        return None;
    }
    let (line, rest) = match s.iter().position(|&b| b == b'\n') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &s[s.len()..]),
    };
    Some((line.strip_suffix(b"\r").unwrap_or(line), rest))
}

/// Parses `-----BEGIN <label>-----` at the start of `s`. `None` when `s` does not start
/// with a BEGIN line at all; `Some(Err)` for a malformed block.
fn pem_block(s: &[u8]) -> Option<Result<PemBlock<'_>, SvidError>> {
    if !s.starts_with(BEGIN) {
        return None;
    }
    Some(pem_block_inner(s))
}

fn pem_block_inner(s: &[u8]) -> Result<PemBlock<'_>, SvidError> {
    let (begin, mut rest) = split_line(s).ok_or(SvidError::MalformedPem("empty"))?;
    let label = begin
        .strip_prefix(BEGIN)
        .and_then(|l| l.strip_suffix(DASHES))
        .ok_or(SvidError::MalformedPem(
            "BEGIN line is not `-----BEGIN <label>-----`",
        ))?;
    if label.is_empty() || !label.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(SvidError::MalformedPem("invalid label"));
    }
    let mut b64 = Vec::with_capacity(rest.len().min(64 * 1024));
    loop {
        let (line, next) = split_line(rest).ok_or(SvidError::MalformedPem("no END line"))?;
        rest = next;
        if let Some(end) = line.strip_prefix(END) {
            if end.strip_suffix(DASHES) != Some(label) {
                return Err(SvidError::MalformedPem("END label does not match BEGIN"));
            }
            break;
        }
        for &b in line {
            if !(b == b' ' || b == b'\t') {
                b64.push(b);
            }
        }
    }
    let der = base64_decode(&b64).ok_or(SvidError::MalformedPem("invalid base64"))?;
    if der.is_empty() {
        return Err(SvidError::MalformedPem("empty block"));
    }
    Ok((label, der, rest))
}

/// Standard base64 with `=` padding; the length must be a multiple of 4.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    fn val(b: u8) -> Option<u32> {
        Some(u32::from(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (qi, q) in s.chunks_exact(4).enumerate() {
        let last = qi + 1 == quads;
        let pad = match q {
            [_, _, b'=', b'='] if last => 2,
            [_, _, _, b'='] if last => 1,
            _ => 0,
        };
        let mut n: u32 = 0;
        for &b in &q[..4 - pad] {
            n = (n << 6) | val(b)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
