//! Workload private keys: generated fresh for every certificate, held in memory only and
//! zeroized on drop.
//!
//! ECDSA P-256 is the default; P-384 and RSA-2048 are selectable. ring cannot generate RSA
//! keys, so RSA keys come from the `rsa` crate (exported as PKCS#8 into a zeroizing buffer)
//! and are then loaded into an rcgen [`KeyPair`] for signing the CSR.
//!
//! What is zeroized: our PKCS#8 copies and rcgen's serialized key (`KeyPair::zeroize`, rcgen's
//! `zeroize` feature). ring's parsed key inside rcgen is freed without zeroing (a limit of
//! ring); it lives exactly as long as the [`WorkloadKey`].

use std::fmt;
use std::str::FromStr;

use pki_types::PrivatePkcs8KeyDer;
use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use zeroize::{Zeroize, Zeroizing};

/// The kind of key to generate for a workload certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256 (the default; what Istio uses with `ECC_SIGNATURE_ALGORITHM=ECDSA`).
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// RSA 2048 bits, PKCS#1 v1.5 with SHA-256 (Istio's default when no ECC algorithm is set).
    Rsa2048,
}

impl KeyType {
    /// All key types, in the order of their names in `--help`.
    pub const ALL: [KeyType; 3] = [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048];

    /// The command-line name: `ecdsa-p256`, `ecdsa-p384` or `rsa-2048`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
        }
    }

    /// The signature algorithm a key of this type signs with.
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Whether the key is RSA (then keyUsage also carries keyEncipherment).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| KeyError::UnknownKeyType(s.to_owned()))
    }
}

/// Errors of key generation and encoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("unknown key type {0:?}: expected one of ecdsa-p256, ecdsa-p384, rsa-2048")]
    UnknownKeyType(String),
    #[error("generating a {key_type} key: {reason}")]
    Generate { key_type: KeyType, reason: String },
    #[error("{0}")]
    Parse(String),
}

/// A workload's private key (in memory only). Dropping it zeroizes the key material we hold.
///
/// `Debug` never prints key material.
pub struct WorkloadKey {
    key_type: KeyType,
    key_pair: KeyPair,
    /// DER SubjectPublicKeyInfo of the public half.
    spki_der: Vec<u8>,
}

impl WorkloadKey {
    /// Generates a fresh key of the given type.
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::Generate { key_type, reason };
        let key_pair = match key_type {
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
                KeyPair::generate_for(key_type.signature_algorithm())
                    .map_err(|e| err(e.to_string()))?
            }
            KeyType::Rsa2048 => {
                use rsa::pkcs8::EncodePrivateKey;
                let mut rng = rand::rngs::OsRng;
                // `RsaPrivateKey` zeroizes itself on drop; the PKCS#8 document too.
                let rsa_key =
                    rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| err(e.to_string()))?;
                let doc = rsa_key.to_pkcs8_der().map_err(|e| err(e.to_string()))?;
                let der = PrivatePkcs8KeyDer::from(doc.as_bytes());
                KeyPair::from_pkcs8_der_and_sign_algo(&der, key_type.signature_algorithm())
                    .map_err(|e| err(e.to_string()))?
            }
        };
        let spki_der = key_pair.subject_public_key_info();
        Ok(WorkloadKey {
            key_type,
            key_pair,
            spki_der,
        })
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public key as DER `SubjectPublicKeyInfo` (compare it with a certificate's).
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The private key as PKCS#8 DER, in a buffer zeroized on drop.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key_pair.serialized_der().to_vec())
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), zeroized on drop.
    /// This is what Envoy (SDS `private_key`) and Istio's `key.pem` take.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let der = self.to_pkcs8_der();
        let p = pem::Pem::new("PRIVATE KEY", der.as_slice());
        let out = Zeroizing::new(pem::encode_config(
            &p,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ));
        // `pem::Pem` owns a copy of the DER: zeroize it before it is freed.
        let mut contents = p.into_contents();
        contents.zeroize();
        out
    }

    /// The rcgen key pair (for signing the CSR; also usable as a rustls signing key source).
    pub fn rcgen_key_pair(&self) -> &KeyPair {
        &self.key_pair
    }
}

impl Drop for WorkloadKey {
    fn drop(&mut self) {
        self.key_pair.zeroize();
    }
}

impl fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadKey")
            .field("key_type", &self.key_type)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// Loads a private key from PEM: PKCS#8, PKCS#1 RSA, or SEC1 EC (P-256/P-384).
pub fn key_pair_from_pem(text: &str) -> Result<KeyPair, KeyError> {
    let block =
        pem::parse(text.as_bytes()).map_err(|e| KeyError::Parse(format!("not PEM: {e}")))?;
    let der = Zeroizing::new(block.contents().to_vec());
    let pkcs8: Zeroizing<Vec<u8>> = match block.tag() {
        "PRIVATE KEY" => der,
        "RSA PRIVATE KEY" => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::EncodePrivateKey;
            let k = rsa::RsaPrivateKey::from_pkcs1_der(&der)
                .map_err(|e| KeyError::Parse(e.to_string()))?;
            Zeroizing::new(
                k.to_pkcs8_der()
                    .map_err(|e| KeyError::Parse(e.to_string()))?
                    .as_bytes()
                    .to_vec(),
            )
        }
        "EC PRIVATE KEY" => {
            // Wrap SEC1 in PKCS#8; try both curves (ring checks the key against the curve).
            for (curve, alg) in [
                (
                    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07][..],
                    &rcgen::PKCS_ECDSA_P256_SHA256,
                ),
                (
                    &[0x2b, 0x81, 0x04, 0x00, 0x22][..],
                    &rcgen::PKCS_ECDSA_P384_SHA384,
                ),
            ] {
                let p8 = sec1_to_pkcs8(&der, curve);
                if let Ok(k) = KeyPair::from_pkcs8_der_and_sign_algo(
                    &PrivatePkcs8KeyDer::from(p8.as_slice()),
                    alg,
                ) {
                    return Ok(k);
                }
            }
            return Err(KeyError::Parse("EC key is neither P-256 nor P-384".into()));
        }
        other => return Err(KeyError::Parse(format!("unsupported PEM block {other:?}"))),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| KeyError::Parse(e.to_string()))
}

fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der_tlv(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    der_len(content.len(), out);
    out.extend_from_slice(content);
}

fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut alg = Vec::new();
    der_tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], &mut alg); // id-ecPublicKey
    der_tlv(0x06, curve_oid, &mut alg);
    let mut body = Zeroizing::new(vec![0x02, 0x01, 0x00]); // version 0
    der_tlv(0x30, &alg, &mut body);
    der_tlv(0x04, sec1, &mut body);
    let mut out = Zeroizing::new(Vec::new());
    der_tlv(0x30, &body, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::SubjectPublicKeyInfo;

    #[test]
    fn key_type_names_round_trip() {
        for k in KeyType::ALL {
            assert_eq!(k.as_str().parse::<KeyType>().unwrap(), k);
        }
        assert!(matches!(
            "ECDSA".parse::<KeyType>(),
            Err(KeyError::UnknownKeyType(s)) if s == "ECDSA"
        ));
        assert_eq!(KeyType::default(), KeyType::EcdsaP256);
    }

    #[test]
    fn generates_each_key_type_with_matching_spki() {
        for k in KeyType::ALL {
            let key = WorkloadKey::generate(k).unwrap();
            assert_eq!(key.key_type(), k);
            let (rest, spki) = SubjectPublicKeyInfo::from_der(key.public_key_der()).unwrap();
            assert!(rest.is_empty());
            let alg = spki.algorithm.algorithm.to_id_string();
            match k {
                KeyType::EcdsaP256 | KeyType::EcdsaP384 => assert_eq!(alg, "1.2.840.10045.2.1"),
                KeyType::Rsa2048 => assert_eq!(alg, "1.2.840.113549.1.1.1"),
            }
            let pem = key.to_pkcs8_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            // The PEM loads back into a key with the same public key.
            let back = KeyPair::from_pem_and_sign_algo(&pem, k.signature_algorithm()).unwrap();
            assert_eq!(back.subject_public_key_info(), key.public_key_der());
        }
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        let dbg = format!("{key:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains("serialized_der"));
    }

    #[test]
    fn fresh_keys_differ() {
        let a = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        let b = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        assert_ne!(a.public_key_der(), b.public_key_der());
    }
}
