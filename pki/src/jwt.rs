//! Kubernetes projected service-account tokens: a JWS (compact serialization, RFC 7515)
//! signed by the API server, verified against the cluster's JWKS (RFC 7517).
//!
//! What a token must be to pass [`verify`]:
//!
//! - at most [`MAX_TOKEN_LEN`] bytes, three base64url parts (no padding), a non-empty signature;
//! - header `alg` is `RS256` (RSASSA-PKCS1-v1_5 SHA-256, modulus 2048–8192 bits) or `ES256`
//!   (ECDSA P-256 SHA-256, 64-byte `r‖s`); anything else — `none`, `HS256`, `PS256`, `ES384` — is
//!   refused before any key is looked at; a `crit` header is refused;
//! - header `kid` names a key of the JWKS whose type matches `alg` (the API server always sets
//!   `kid`; a token without one is refused);
//! - the signature verifies over `header.payload` — claims are parsed only after that;
//! - `iss` equals the configured issuer; `aud` (a string or an array) contains the configured
//!   audience; `exp` is present and `now ≤ exp + leeway`; `nbf` (if present) `≤ now + leeway`;
//!   `iat` (if present) `≤ now + leeway`;
//! - `sub` is exactly `system:serviceaccount:<namespace>:<name>` with `<namespace>` and `<name>`
//!   from the `kubernetes.io` claim (`namespace`, `serviceaccount.name`), both DNS-1123 names
//!   (lower-case letters, digits, `-`, `.`; at most 253 bytes).
//!
//! The result is a [`ServiceAccount`]; the CA turns it into `spiffe://<td>/ns/<ns>/sa/<sa>`.
//! Bytes and the current time in, a typed value or a matchable [`JwtError`] out; no I/O. Error
//! messages never contain the token or its signature.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// The longest token accepted (projected tokens are about 1 KiB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The largest JWKS document accepted.
pub const MAX_JWKS_LEN: usize = 1024 * 1024;
/// The most keys a JWKS may hold.
pub const MAX_JWKS_KEYS: usize = 64;
/// Clock skew allowed on `exp`, `nbf` and `iat` (the API server's own leeway is 60 s).
pub const DEFAULT_LEEWAY_SECS: i64 = 60;

/// Why a token (or a JWKS) was refused. Messages name the field and, for non-secret fields,
/// the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    #[error("token: longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("token: not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("token: {part} is not valid base64url")]
    Base64 { part: &'static str },
    #[error("token: {part} is not a valid JSON object: {reason}")]
    Json { part: &'static str, reason: String },
    #[error("token: alg {0:?} is not accepted (only RS256 and ES256)")]
    UnsupportedAlg(String),
    #[error("token: header has `crit`; no critical extensions are supported")]
    Crit,
    #[error("token: header has no kid")]
    MissingKid,
    #[error("token: kid {0:?} is not in the JWKS")]
    UnknownKid(String),
    #[error("token: key {kid:?} cannot verify alg {alg}")]
    KeyAlgMismatch { kid: String, alg: String },
    #[error("token: signature does not verify")]
    BadSignature,
    #[error("token: iss {found:?} is not the expected issuer {expected:?}")]
    Issuer { found: String, expected: String },
    #[error("token: aud {found:?} does not contain {expected:?}")]
    Audience {
        found: Vec<String>,
        expected: String,
    },
    #[error("token: missing claim {0}")]
    MissingClaim(&'static str),
    #[error("token: expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("token: not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    #[error("token: issued in the future at {iat} (now {now})")]
    IssuedInFuture { iat: i64, now: i64 },
    #[error("token: sub {sub:?} is not system:serviceaccount:{namespace}:{name}")]
    Subject {
        sub: String,
        namespace: String,
        name: String,
    },
    #[error("token: kubernetes.io {field} {value:?} is not a DNS-1123 name")]
    BadName { field: &'static str, value: String },
}

/// Why a JWKS document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    #[error("JWKS: larger than {MAX_JWKS_LEN} bytes")]
    TooLarge,
    #[error("JWKS: not a JSON object with a `keys` array: {0}")]
    Json(String),
    #[error("JWKS: more than {MAX_JWKS_KEYS} keys")]
    TooManyKeys,
    #[error("JWKS: key {index}: {reason}")]
    Key { index: usize, reason: String },
    #[error("JWKS: kid {0:?} appears twice")]
    DuplicateKid(String),
    #[error("JWKS: no RS256 or ES256 signing key")]
    NoUsableKey,
}

#[derive(Clone, PartialEq, Eq)]
enum PublicKey {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `04 ‖ x ‖ y`.
    P256(Vec<u8>),
}

impl PublicKey {
    fn alg(&self) -> &'static str {
        match self {
            PublicKey::Rsa { .. } => "RS256",
            PublicKey::P256(_) => "ES256",
        }
    }
}

/// A parsed JWKS: the RS256 and ES256 signing keys, by `kid`.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<(String, PublicKey)>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(kid, k)| (kid, k.alg())))
            .finish()
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

fn b64(part: &'static str, s: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| JwtError::Base64 { part })
}

impl Jwks {
    /// Parses a JWKS (`{"keys": [...]}`) the way the API server publishes it at
    /// `/openid/v1/jwks`. Keys that are not for signatures (`use` other than `sig`), of another
    /// type or curve (`oct`, `OKP`, P-384…) or with an `alg` other than RS256/ES256 are skipped;
    /// a usable key that is malformed (bad base64url, wrong coordinate length, RSA modulus
    /// under 2048 bits) or without a `kid` is an error, as is a repeated `kid`. At least one
    /// usable key is required.
    pub fn parse(bytes: &[u8]) -> Result<Jwks, JwksError> {
        if bytes.len() > MAX_JWKS_LEN {
            return Err(JwksError::TooLarge);
        }
        let raw: RawJwks =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Json(e.to_string()))?;
        if raw.keys.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for (index, k) in raw.keys.iter().enumerate() {
            let err = |reason: &str| JwksError::Key {
                index,
                reason: reason.to_owned(),
            };
            let s = |name: &str| k.get(name).and_then(|v| v.as_str());
            if let Some(u) = k.get("use") {
                if u.as_str() != Some("sig") {
                    continue;
                }
            }
            let field = |name: &'static str| -> Result<Vec<u8>, JwksError> {
                let v = s(name).ok_or_else(|| err(&format!("missing {name}")))?;
                URL_SAFE_NO_PAD
                    .decode(v.as_bytes())
                    .map_err(|_| err(&format!("{name} is not base64url")))
            };
            let key = match (s("kty"), s("alg")) {
                (Some("RSA"), None | Some("RS256")) => {
                    let n = strip_zeros(field("n")?);
                    let e = strip_zeros(field("e")?);
                    if n.len() * 8 < 2048 || n.len() * 8 > 8192 {
                        return Err(err(&format!(
                            "RSA modulus of {} bits (2048-8192 accepted)",
                            n.len() * 8
                        )));
                    }
                    if e.is_empty() || e.len() > 4 {
                        return Err(err("RSA exponent out of range"));
                    }
                    PublicKey::Rsa { n, e }
                }
                (Some("EC"), None | Some("ES256")) if s("crv") == Some("P-256") => {
                    let (x, y) = (field("x")?, field("y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err(err("P-256 coordinates must be 32 bytes each"));
                    }
                    let mut point = Vec::with_capacity(65);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    PublicKey::P256(point)
                }
                _ => continue,
            };
            let kid = s("kid").ok_or_else(|| err("missing kid"))?.to_owned();
            if !seen.insert(kid.clone()) {
                return Err(JwksError::DuplicateKid(kid));
            }
            keys.push((kid, key));
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Jwks { keys })
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true for a parsed JWKS (at least one key is required).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this `kid` is present.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == kid)
    }
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|b| **b == 0).count();
    v.drain(..lead);
    v
}

/// What the token must be for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect<'a> {
    /// `iss`, exactly (the API server's `--service-account-issuer`).
    pub issuer: &'a str,
    /// One of `aud` (Istio's default is `istio-ca`).
    pub audience: &'a str,
    /// Clock skew allowed on `exp`, `nbf`, `iat`, in seconds.
    pub leeway_secs: i64,
}

/// The workload a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
    /// The pod the token is bound to, when it is bound to one (`kubernetes.io.pod.name`).
    pub pod: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Deserialize)]
struct KubeClaims {
    namespace: Option<String>,
    serviceaccount: Option<Named>,
    pod: Option<Named>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    sub: Option<String>,
    #[serde(rename = "kubernetes.io")]
    kube: Option<KubeClaims>,
}

fn json<'a, T: Deserialize<'a>>(part: &'static str, bytes: &'a [u8]) -> Result<T, JwtError> {
    serde_json::from_slice(bytes).map_err(|e| JwtError::Json {
        part,
        reason: e.to_string(),
    })
}

/// A DNS-1123 subdomain (namespace and service-account names are at least DNS-1123 labels):
/// what may safely become a SPIFFE path segment.
fn dns1123(field: &'static str, v: &str) -> Result<(), JwtError> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric()
        && !v.contains("..");
    if ok {
        Ok(())
    } else {
        Err(JwtError::BadName {
            field,
            value: v.chars().take(64).collect(),
        })
    }
}

/// Verifies a projected service-account token at unix time `now` (see the module docs for
/// every rule) and returns the service account it is for.
pub fn verify(
    token: &str,
    jwks: &Jwks,
    expect: &Expect<'_>,
    now: i64,
) -> Result<ServiceAccount, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(JwtError::Malformed);
    }
    let header: Header = json("header", &b64("header", h64)?)?;
    if header.alg != "RS256" && header.alg != "ES256" {
        return Err(JwtError::UnsupportedAlg(
            header.alg.chars().take(32).collect(),
        ));
    }
    if header.crit.is_some() {
        return Err(JwtError::Crit);
    }
    let kid = header.kid.ok_or(JwtError::MissingKid)?;
    let key = jwks
        .keys
        .iter()
        .find(|(k, _)| *k == kid)
        .map(|(_, key)| key)
        .ok_or_else(|| JwtError::UnknownKid(kid.chars().take(128).collect()))?;
    if key.alg() != header.alg {
        return Err(JwtError::KeyAlgMismatch {
            kid,
            alg: header.alg,
        });
    }
    let sig = b64("signature", s64)?;
    let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    let ok = match key {
        PublicKey::Rsa { n, e } => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
            .is_ok(),
        PublicKey::P256(point) => {
            sig.len() == 64
                && UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, &sig)
                    .is_ok()
        }
    };
    if !ok {
        return Err(JwtError::BadSignature);
    }

    let claims: Claims = json("payload", &b64("payload", p64)?)?;
    let iss = claims.iss.ok_or(JwtError::MissingClaim("iss"))?;
    if iss != expect.issuer {
        return Err(JwtError::Issuer {
            found: iss,
            expected: expect.issuer.to_owned(),
        });
    }
    let aud = match claims.aud.ok_or(JwtError::MissingClaim("aud"))? {
        Audience::One(a) => vec![a],
        Audience::Many(v) => v,
    };
    if !aud.iter().any(|a| a == expect.audience) {
        return Err(JwtError::Audience {
            found: aud,
            expected: expect.audience.to_owned(),
        });
    }
    let exp = claims.exp.ok_or(JwtError::MissingClaim("exp"))?;
    if now > exp.saturating_add(expect.leeway_secs) {
        return Err(JwtError::Expired { exp, now });
    }
    if let Some(nbf) = claims.nbf {
        if nbf > now.saturating_add(expect.leeway_secs) {
            return Err(JwtError::NotYetValid { nbf, now });
        }
    }
    if let Some(iat) = claims.iat {
        if iat > now.saturating_add(expect.leeway_secs) {
            return Err(JwtError::IssuedInFuture { iat, now });
        }
    }
    let kube = claims.kube.ok_or(JwtError::MissingClaim("kubernetes.io"))?;
    let namespace = kube
        .namespace
        .ok_or(JwtError::MissingClaim("kubernetes.io.namespace"))?;
    let name = kube
        .serviceaccount
        .and_then(|s| s.name)
        .ok_or(JwtError::MissingClaim("kubernetes.io.serviceaccount.name"))?;
    dns1123("namespace", &namespace)?;
    dns1123("serviceaccount.name", &name)?;
    let sub = claims.sub.ok_or(JwtError::MissingClaim("sub"))?;
    if sub != format!("system:serviceaccount:{namespace}:{name}") {
        return Err(JwtError::Subject {
            sub,
            namespace,
            name,
        });
    }
    Ok(ServiceAccount {
        namespace,
        name,
        pod: kube.pod.and_then(|p| p.name),
    })
}

/// Minting tokens the way kube-apiserver mints projected service-account tokens, for tests
/// and fuzz seeds.
#[cfg(any(test, feature = "testing"))]
pub mod mint {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
    use serde_json::{json, Value};

    /// A signing key of a fake API server.
    #[derive(Debug)]
    pub enum IssuerKey {
        Rsa(RsaKeyPair),
        P256(EcdsaKeyPair),
    }

    /// An API server's service-account signer: a key and its `kid`.
    #[derive(Debug)]
    pub struct Signer {
        pub kid: String,
        pub key: IssuerKey,
    }

    impl Signer {
        /// A fresh RSA-2048 signer (RS256).
        pub fn rsa(kid: &str) -> Signer {
            use rsa::pkcs8::EncodePrivateKey;
            let mut rng = rand::thread_rng();
            let k = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
            let der = k.to_pkcs8_der().expect("PKCS#8");
            Signer {
                kid: kid.to_owned(),
                key: IssuerKey::Rsa(RsaKeyPair::from_pkcs8(der.as_bytes()).expect("ring RSA")),
            }
        }

        /// A fresh P-256 signer (ES256).
        pub fn p256(kid: &str) -> Signer {
            let rng = SystemRandom::new();
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let der = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("P-256 key");
            Signer {
                kid: kid.to_owned(),
                key: IssuerKey::P256(
                    EcdsaKeyPair::from_pkcs8(alg, der.as_ref(), &rng).expect("ring P-256"),
                ),
            }
        }

        pub fn alg(&self) -> &'static str {
            match self.key {
                IssuerKey::Rsa(_) => "RS256",
                IssuerKey::P256(_) => "ES256",
            }
        }

        /// The public key as the API server publishes it in `/openid/v1/jwks`.
        pub fn jwk(&self) -> Value {
            match &self.key {
                IssuerKey::Rsa(k) => {
                    let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                    let (n, e) = (c.n, c.e);
                    json!({"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
                           "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)})
                }
                IssuerKey::P256(k) => {
                    let pt = k.public_key().as_ref();
                    json!({"use": "sig", "kty": "EC", "kid": self.kid, "alg": "ES256", "crv": "P-256",
                           "x": URL_SAFE_NO_PAD.encode(&pt[1..33]), "y": URL_SAFE_NO_PAD.encode(&pt[33..65])})
                }
            }
        }

        /// Signs `header.payload` (both JSON values, serialized compactly) into a compact JWS.
        pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let rng = SystemRandom::new();
            let sig = match &self.key {
                IssuerKey::Rsa(k) => {
                    let mut sig = vec![0; k.public().modulus_len()];
                    k.sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        input.as_bytes(),
                        &mut sig,
                    )
                    .expect("RSA sign");
                    sig
                }
                IssuerKey::P256(k) => k
                    .sign(&rng, input.as_bytes())
                    .expect("sign")
                    .as_ref()
                    .to_vec(),
            };
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
        }

        /// A token with kube-apiserver's header (`alg`, `kid`) for `claims`.
        pub fn sign(&self, claims: &Value) -> String {
            self.sign_raw(&json!({"alg": self.alg(), "kid": self.kid}), claims)
        }
    }

    /// A JWKS document holding these signers' public keys.
    pub fn jwks(signers: &[&Signer]) -> String {
        json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()}).to_string()
    }

    /// The claims kube-apiserver puts in a pod-bound projected token (`aud`, `exp`, `iat`,
    /// `iss`, `jti`, `kubernetes.io` {namespace, node, pod, serviceaccount}, `nbf`, `sub`),
    /// issued at `now` for `lifetime` seconds.
    pub fn claims(issuer: &str, aud: &str, ns: &str, sa: &str, now: i64, lifetime: i64) -> Value {
        json!({
            "aud": [aud],
            "exp": now + lifetime,
            "iat": now,
            "iss": issuer,
            "jti": "5d1d8b4e-2d8e-4c1c-9f5c-2a7f3e0c9b11",
            "kubernetes.io": {
                "namespace": ns,
                "node": {"name": "node-1", "uid": "8a4c3a55-94a8-4f43-8b9e-5e9d5c2f1a00"},
                "pod": {"name": format!("{sa}-7d9f8c6b5-x2x4q"), "uid": "3f0c2e1d-6a5b-4c3d-9e8f-7a6b5c4d3e2f"},
                "serviceaccount": {"name": sa, "uid": "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"}
            },
            "nbf": now,
            "sub": format!("system:serviceaccount:{ns}:{sa}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::mint::{claims, jwks, Signer};
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://kubernetes.default.svc.cluster.local";
    const AUD: &str = "istio-ca";
    const NOW: i64 = 1_764_460_800;

    fn expect() -> Expect<'static> {
        Expect {
            issuer: ISS,
            audience: AUD,
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }

    fn good() -> serde_json::Value {
        claims(ISS, AUD, "web", "frontend", NOW, 3600)
    }

    #[test]
    fn accepts_rs256_and_es256_tokens_as_the_api_server_mints_them() {
        let rsa = Signer::rsa("rsa-1");
        let ec = Signer::p256("ec-1");
        let set = Jwks::parse(jwks(&[&rsa, &ec]).as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        for s in [&rsa, &ec] {
            let sa = verify(&s.sign(&good()), &set, &expect(), NOW).unwrap();
            assert_eq!(
                sa,
                ServiceAccount {
                    namespace: "web".into(),
                    name: "frontend".into(),
                    pod: Some("frontend-7d9f8c6b5-x2x4q".into())
                }
            );
        }
        // `aud` as a plain string and a list with several audiences; no nbf/iat/pod.
        let mut c = good();
        c["aud"] = json!(AUD);
        c.as_object_mut().unwrap().remove("nbf");
        c.as_object_mut().unwrap().remove("iat");
        c["kubernetes.io"].as_object_mut().unwrap().remove("pod");
        assert_eq!(
            verify(&ec.sign(&c), &set, &expect(), NOW).unwrap().pod,
            None
        );
        c["aud"] = json!(["https://kubernetes.default.svc", AUD]);
        verify(&ec.sign(&c), &set, &expect(), NOW).unwrap();
    }

    #[test]
    fn refusals_table() {
        let rsa = Signer::rsa("rsa-1");
        let ec = Signer::p256("ec-1");
        let stranger = Signer::p256("ec-1"); // same kid, other key
        let set = Jwks::parse(jwks(&[&rsa, &ec]).as_bytes()).unwrap();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = good();
            f(&mut c);
            ec.sign(&c)
        };
        // A good token without this claim.
        let without = |claim: &str| {
            with(&|c| {
                c.as_object_mut().unwrap().remove(claim);
            })
        };
        let hdr = |h: serde_json::Value| ec.sign_raw(&h, &good());
        let good_tok = ec.sign(&good());
        let (h, rest) = good_tok.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let mut tampered_claims = good();
        tampered_claims["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
        tampered_claims["sub"] = json!("system:serviceaccount:web:admin");
        let tampered = format!(
            "{h}.{}.{s}",
            URL_SAFE_NO_PAD.encode(tampered_claims.to_string())
        );
        let unsigned = format!(
            "{}.{p}.",
            URL_SAFE_NO_PAD.encode(json!({"alg":"none","kid":"ec-1"}).to_string())
        );
        let hs256 = format!(
            "{}.{p}.{s}",
            URL_SAFE_NO_PAD.encode(json!({"alg":"HS256","kid":"ec-1"}).to_string())
        );
        type Check = fn(&JwtError) -> bool;
        let cases: Vec<(&str, String, i64, Check)> = vec![
            ("empty", String::new(), NOW, |e| *e == JwtError::Malformed),
            ("two parts", format!("{h}.{p}"), NOW, |e| {
                *e == JwtError::Malformed
            }),
            ("four parts", format!("{good_tok}.x"), NOW, |e| {
                *e == JwtError::Malformed
            }),
            ("alg none, empty signature", unsigned, NOW, |e| {
                *e == JwtError::Malformed
            }),
            (
                "alg none",
                hdr(json!({"alg":"none","kid":"ec-1"})),
                NOW,
                |e| matches!(e, JwtError::UnsupportedAlg(a) if a == "none"),
            ),
            (
                "HS256 with the public key as secret",
                hs256,
                NOW,
                |e| matches!(e, JwtError::UnsupportedAlg(a) if a == "HS256"),
            ),
            (
                "ES384",
                hdr(json!({"alg":"ES384","kid":"ec-1"})),
                NOW,
                |e| matches!(e, JwtError::UnsupportedAlg(_)),
            ),
            (
                "crit",
                hdr(json!({"alg":"ES256","kid":"ec-1","crit":["b64"]})),
                NOW,
                |e| *e == JwtError::Crit,
            ),
            ("no kid", hdr(json!({"alg":"ES256"})), NOW, |e| {
                *e == JwtError::MissingKid
            }),
            (
                "unknown kid",
                hdr(json!({"alg":"ES256","kid":"other"})),
                NOW,
                |e| matches!(e, JwtError::UnknownKid(k) if k == "other"),
            ),
            (
                "RS256 header on an EC key",
                hdr(json!({"alg":"RS256","kid":"ec-1"})),
                NOW,
                |e| matches!(e, JwtError::KeyAlgMismatch { .. }),
            ),
            ("wrong key, same kid", stranger.sign(&good()), NOW, |e| {
                *e == JwtError::BadSignature
            }),
            ("tampered payload", tampered, NOW, |e| {
                *e == JwtError::BadSignature
            }),
            (
                "padding in the signature",
                format!("{good_tok}="),
                NOW,
                |e| matches!(e, JwtError::Base64 { part: "signature" }),
            ),
            (
                "header not JSON",
                format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode("nope")),
                NOW,
                |e| matches!(e, JwtError::Json { part: "header", .. }),
            ),
            ("too long", "a".repeat(MAX_TOKEN_LEN + 1), NOW, |e| {
                *e == JwtError::TooLong
            }),
            (
                "wrong issuer",
                with(&|c| c["iss"] = json!("https://evil")),
                NOW,
                |e| matches!(e, JwtError::Issuer { .. }),
            ),
            (
                "wrong audience",
                with(&|c| c["aud"] = json!(["api"])),
                NOW,
                |e| matches!(e, JwtError::Audience { .. }),
            ),
            ("no audience", without("aud"), NOW, |e| {
                *e == JwtError::MissingClaim("aud")
            }),
            ("no exp", without("exp"), NOW, |e| {
                *e == JwtError::MissingClaim("exp")
            }),
            (
                "expired beyond leeway",
                good_tok.clone(),
                NOW + 3600 + 61,
                |e| matches!(e, JwtError::Expired { .. }),
            ),
            ("not yet valid", good_tok.clone(), NOW - 61, |e| {
                matches!(e, JwtError::NotYetValid { .. })
            }),
            (
                "issued in the future",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("nbf");
                    c["iat"] = json!(NOW + 600);
                }),
                NOW,
                |e| matches!(e, JwtError::IssuedInFuture { .. }),
            ),
            (
                "sub for another service account",
                with(&|c| c["sub"] = json!("system:serviceaccount:web:admin")),
                NOW,
                |e| matches!(e, JwtError::Subject { .. }),
            ),
            (
                "sub for another namespace",
                with(&|c| c["kubernetes.io"]["namespace"] = json!("kube-system")),
                NOW,
                |e| matches!(e, JwtError::Subject { .. }),
            ),
            (
                "legacy secret token claims",
                without("kubernetes.io"),
                NOW,
                |e| *e == JwtError::MissingClaim("kubernetes.io"),
            ),
            (
                "slash in the name",
                with(&|c| {
                    c["kubernetes.io"]["serviceaccount"]["name"] = json!("a/b");
                    c["sub"] = json!("system:serviceaccount:web:a/b");
                }),
                NOW,
                |e| matches!(e, JwtError::BadName { .. }),
            ),
            (
                "exp not an integer",
                with(&|c| c["exp"] = json!("tomorrow")),
                NOW,
                |e| {
                    matches!(
                        e,
                        JwtError::Json {
                            part: "payload",
                            ..
                        }
                    )
                },
            ),
        ];
        for (name, tok, now, check) in cases {
            let e = verify(&tok, &set, &expect(), now).unwrap_err();
            assert!(check(&e), "{name}: {e:?}");
            let msg = e.to_string();
            if tok.len() > 20 {
                assert!(!msg.contains(&tok), "{name}: the message echoes the token");
            }
        }
        // Within the leeway on both sides.
        verify(&good_tok, &set, &expect(), NOW + 3600 + 60).unwrap();
        verify(&good_tok, &set, &expect(), NOW - 60).unwrap();
    }

    #[test]
    fn jwks_table() {
        let rsa = Signer::rsa("r");
        let mut jwk = rsa.jwk();
        assert!(Jwks::parse(b"{}").is_err());
        assert!(Jwks::parse(b"[]").is_err());
        assert_eq!(Jwks::parse(br#"{"keys":[]}"#), Err(JwksError::NoUsableKey));
        // Unusable keys are skipped: oct, OKP, P-384, encryption keys, other algs.
        let skipped = json!({"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","kid":"o","x":"AA"},
            {"kty":"EC","crv":"P-384","kid":"p","x":"AA","y":"AA"},
            {"kty":"RSA","use":"enc","kid":"e","n":"AA","e":"AQAB"},
            {"kty":"RSA","alg":"PS256","kid":"ps","n":"AA","e":"AQAB"},
            jwk.clone()
        ]});
        let set = Jwks::parse(skipped.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.has_kid("r") && !set.has_kid("h"));
        let dup = json!({"keys":[jwk.clone(), jwk.clone()]});
        assert_eq!(
            Jwks::parse(dup.to_string().as_bytes()),
            Err(JwksError::DuplicateKid("r".into()))
        );
        jwk["n"] = json!(URL_SAFE_NO_PAD.encode([0xffu8; 128]));
        let short = json!({"keys":[jwk.clone()]});
        assert!(matches!(
            Jwks::parse(short.to_string().as_bytes()),
            Err(JwksError::Key { index: 0, .. })
        ));
        jwk.as_object_mut().unwrap().remove("kid");
        jwk["n"] = rsa.jwk()["n"].clone();
        assert!(matches!(
            Jwks::parse(json!({"keys":[jwk]}).to_string().as_bytes()),
            Err(JwksError::Key { .. })
        ));
        let bad_ec = json!({"keys":[{"kty":"EC","crv":"P-256","kid":"x","x":"AAAA","y":"AAAA"}]});
        assert!(matches!(
            Jwks::parse(bad_ec.to_string().as_bytes()),
            Err(JwksError::Key { .. })
        ));
        let many = json!({"keys": vec![json!({"kty":"oct"}); MAX_JWKS_KEYS + 1]});
        assert_eq!(
            Jwks::parse(many.to_string().as_bytes()),
            Err(JwksError::TooManyKeys)
        );
        assert_eq!(
            Jwks::parse(&vec![b' '; MAX_JWKS_LEN + 1]),
            Err(JwksError::TooLarge)
        );
    }
}
