//! Check before use: a certificate chain returned by a CA is verified completely before
//! anything is written or served.
//!
//! [`verify_issued`] takes the CA's `cert_chain` (leaf first, root last; an element may hold
//! several PEM blocks, as istiod sends `cert-chain.pem` in one element) and checks, in order:
//! it parses; the leaf follows the X509-SVID leaf rules; its one URI SAN is exactly our
//! SPIFFE ID; its public key is ours; every link is signed by the next certificate, whose
//! subject is the link's issuer and which is a CA allowed to sign certificates (basic
//! constraints, keyCertSign, path length); every certificate is within its validity window
//! (`not_before - skew <= now < not_after`); and the chain ends at a trust anchor.
//! Each failure has its own [`ChainError`] variant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pki_types::CertificateDer;
use svidgate_core::SpiffeId;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::cert::{check_leaf_der, leaf_facts, parse_cert, same_public_key, WorkloadCert};
use crate::key::WorkloadKey;
use crate::pem::{parse_cert_blocks, PemError};
use crate::time::{fmt_time, from_unix, unix_seconds};

/// Default tolerated clock skew between us and the CA.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);

/// What the chain must end at.
#[derive(Debug, Clone, Copy)]
pub enum Anchors<'a> {
    /// The chain must end at one of these roots: its last certificate is one of them, or is
    /// signed by one of them.
    Bundle(&'a [CertificateDer<'static>]),
    /// Trust the self-signed root the CA returned last in the chain (Istio's agent behaviour;
    /// acceptable only because the channel to the CA is TLS-verified against a configured root).
    ReturnedRoot,
}

/// Why a returned chain was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("the CA returned an empty certificate chain")]
    EmptyChain,
    #[error("cert_chain[{index}]: not PEM: {reason}")]
    Pem { index: usize, reason: String },
    #[error("cert_chain[{index}]: PEM block {tag:?} is not a CERTIFICATE")]
    NotACertificate { index: usize, tag: String },
    #[error("certificate {position} of the chain cannot be parsed: {reason}")]
    Parse { position: usize, reason: String },
    #[error("leaf is not a valid X509-SVID: {0}")]
    LeafNotSvid(svidgate_core::svid::SvidError),
    #[error("leaf is for {got:?}, expected {expected:?}")]
    WrongIdentity { expected: String, got: String },
    #[error("leaf public key is not the key we generated")]
    WrongKey,
    #[error("certificate {position} ({subject}) is not valid before {not_before} (now {now}, skew {skew_secs}s)")]
    NotYetValid {
        position: usize,
        subject: String,
        not_before: String,
        now: String,
        skew_secs: u64,
    },
    #[error("certificate {position} ({subject}) expired at {not_after} (now {now})")]
    Expired {
        position: usize,
        subject: String,
        not_after: String,
        now: String,
    },
    #[error("certificate {position} was not issued by certificate {issuer_position}: {reason}")]
    BrokenLink {
        position: usize,
        issuer_position: usize,
        reason: String,
    },
    #[error("certificate {position} ({subject}) signs certificates but is not a CA: {reason}")]
    IssuerNotCa {
        position: usize,
        subject: String,
        reason: String,
    },
    #[error("the chain ends at {subject}, which is not a configured trust anchor")]
    UnknownRoot { subject: String },
    #[error("the chain does not end with a self-signed root (last: {subject})")]
    NoRoot { subject: String },
    #[error("no trust anchors configured")]
    NoTrustAnchors,
    #[error("path validation (webpki) failed: {0}")]
    PathValidation(String),
}

// Manual `From`s: the inner error is part of the message, not a `source` (no duplicate
// text in `{:#}` chains).
impl From<svidgate_core::svid::SvidError> for ChainError {
    fn from(e: svidgate_core::svid::SvidError) -> Self {
        ChainError::LeafNotSvid(e)
    }
}

/// Splits the CA's `cert_chain` strings into DER certificates, in order. Each element may
/// hold several PEM blocks; a certificate repeated right after itself (istiod sends the root
/// both at the end of `cert-chain.pem` and as the last element) is kept once.
pub fn parse_chain(chain: &[String]) -> Result<Vec<CertificateDer<'static>>, ChainError> {
    let mut out: Vec<CertificateDer<'static>> = Vec::new();
    for (index, element) in chain.iter().enumerate() {
        let ders = parse_cert_blocks(element.as_bytes()).map_err(|e| match e {
            PemError::NotACertificate { tag, .. } => ChainError::NotACertificate { index, tag },
            PemError::NotPem(reason) => ChainError::Pem { index, reason },
            other => ChainError::Pem {
                index,
                reason: other.to_string(),
            },
        })?;
        if ders.is_empty() {
            return Err(ChainError::Pem {
                index,
                reason: "no PEM block".into(),
            });
        }
        for der in ders {
            if out.last() != Some(&der) {
                out.push(der);
            }
        }
    }
    if out.is_empty() {
        return Err(ChainError::EmptyChain);
    }
    Ok(out)
}

/// Verifies a CA answer for our CSR signed with `key`; the result carries the key. See the
/// module docs for every check.
pub fn verify_issued(
    chain: &[String],
    expected: &SpiffeId,
    key: &WorkloadKey,
    anchors: Anchors<'_>,
    now: SystemTime,
    skew: Duration,
) -> Result<WorkloadCert, ChainError> {
    let ders = parse_chain(chain)?;
    let certs = ders
        .iter()
        .enumerate()
        .map(|(position, d)| parse_cert(d, position))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = &certs[0];

    // 1. The leaf is an X509-SVID for exactly our ID and our key.
    let got = check_leaf_der(ders[0].as_ref())?;
    if got != *expected {
        return Err(ChainError::WrongIdentity {
            expected: expected.to_string(),
            got: got.to_string(),
        });
    }
    if !same_public_key(leaf, key.public_key_der()) {
        return Err(ChainError::WrongKey);
    }

    // 2. Validity windows of every certificate.
    let now_s = unix_seconds(now);
    for (position, c) in certs.iter().enumerate() {
        check_validity(c, position, now_s, skew)?;
    }

    // 3. Every link: signed by the next certificate, which is a CA.
    for i in 0..certs.len() - 1 {
        check_link(&certs[i], i, &certs[i + 1], i + 1)?;
    }

    // 4. The chain ends at a trust anchor.
    let last_pos = certs.len() - 1;
    let last = &certs[last_pos];
    let last_self_signed =
        last.issuer().as_raw() == last.subject().as_raw() && last.verify_signature(None).is_ok();
    let root: CertificateDer<'static> = match anchors {
        Anchors::ReturnedRoot => {
            if !last_self_signed || last_pos == 0 {
                return Err(ChainError::NoRoot {
                    subject: last.subject().to_string(),
                });
            }
            check_ca(last, last_pos, last_pos - 1)?;
            ders[last_pos].clone()
        }
        Anchors::Bundle(bundle) => {
            if bundle.is_empty() {
                return Err(ChainError::NoTrustAnchors);
            }
            if last_pos > 0 && bundle.iter().any(|a| a.as_ref() == ders[last_pos].as_ref()) {
                ders[last_pos].clone()
            } else {
                // The last certificate is issued by an anchor.
                find_issuer(last, bundle, Some(now_s))
                    .cloned()
                    .ok_or_else(|| ChainError::UnknownRoot {
                        subject: if last_self_signed {
                            last.subject().to_string()
                        } else {
                            last.issuer().to_string()
                        },
                    })?
            }
        }
    };

    // 5. Defence in depth: the same path through rustls-webpki, a strict DER parser that also
    //    refuses what x509-parser tolerates (e.g. an outer signatureAlgorithm that differs
    //    from the signed one).
    let intermediates_end = if last_self_signed {
        last_pos
    } else {
        last_pos + 1
    };
    // webpki checks validity at one instant: take one inside every window (the windows were
    // checked above with the skew), i.e. now, or the latest not-before if that is a little ahead.
    let latest_nb = certs
        .iter()
        .map(|c| c.validity().not_before.timestamp())
        .max()
        .unwrap_or(now_s);
    let at = from_unix(latest_nb.max(now_s));
    webpki_check(&ders[0], &ders[1..intermediates_end.max(1)], &root, at)?;

    let (not_before, not_after, serial) = leaf_facts(leaf);
    drop(certs);
    // The chain we hand out: leaf + intermediates (without a self-signed root).
    let mut out_chain = ders;
    if last_self_signed && out_chain.len() > 1 {
        out_chain.pop();
    }
    Ok(WorkloadCert::assemble(
        got, out_chain, root, key, not_before, not_after, serial,
    ))
}

/// The first of `candidates` that issued `cert`: its subject is `cert`'s issuer, its key
/// verifies `cert`'s signature, it is a CA, and (given `now`, Unix seconds) it has not expired.
pub fn find_issuer<'a>(
    cert: &X509Certificate<'_>,
    candidates: &'a [CertificateDer<'static>],
    now: Option<i64>,
) -> Option<&'a CertificateDer<'static>> {
    candidates.iter().find(|c| {
        let Ok((_, issuer)) = X509Certificate::from_der(c.as_ref()) else {
            return false;
        };
        issuer.subject().as_raw() == cert.issuer().as_raw()
            && cert.verify_signature(Some(issuer.public_key())).is_ok()
            && issuer.is_ca()
            && now.is_none_or(|t| issuer.validity().not_after.timestamp() > t)
    })
}

fn webpki_check(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
    root: &CertificateDer<'_>,
    at: SystemTime,
) -> Result<(), ChainError> {
    let err = |e: webpki::Error| ChainError::PathValidation(format!("{e:?}"));
    let anchor = webpki::anchor_from_trusted_cert(root).map_err(err)?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(err)?;
    let at = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        intermediates,
        pki_types::UnixTime::since_unix_epoch(at),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(err)
}

fn check_validity(
    c: &X509Certificate<'_>,
    position: usize,
    now: i64,
    skew: Duration,
) -> Result<(), ChainError> {
    let nb = c.validity().not_before.timestamp();
    let na = c.validity().not_after.timestamp();
    let skew_s = i64::try_from(skew.as_secs()).unwrap_or(i64::MAX);
    if nb.saturating_sub(skew_s) > now {
        return Err(ChainError::NotYetValid {
            position,
            subject: describe(c),
            not_before: c.validity().not_before.to_string(),
            now: fmt_unix(now),
            skew_secs: skew.as_secs(),
        });
    }
    if na <= now {
        return Err(ChainError::Expired {
            position,
            subject: describe(c),
            not_after: c.validity().not_after.to_string(),
            now: fmt_unix(now),
        });
    }
    Ok(())
}

fn check_link(
    child: &X509Certificate<'_>,
    position: usize,
    issuer: &X509Certificate<'_>,
    issuer_position: usize,
) -> Result<(), ChainError> {
    if child.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(ChainError::BrokenLink {
            position,
            issuer_position,
            reason: format!(
                "issuer {:?} is not the next certificate's subject {:?}",
                child.issuer().to_string(),
                issuer.subject().to_string()
            ),
        });
    }
    if let Err(e) = child.verify_signature(Some(issuer.public_key())) {
        return Err(ChainError::BrokenLink {
            position,
            issuer_position,
            reason: format!("signature does not verify: {e}"),
        });
    }
    // CAs below this issuer, not counting the leaf.
    check_ca(issuer, issuer_position, position)
}

/// `cas_below` is the number of CA certificates between the issuer and the leaf
/// (the position of the certificate it signed, as position 0 is the leaf).
fn check_ca(c: &X509Certificate<'_>, position: usize, cas_below: usize) -> Result<(), ChainError> {
    let err = |reason: String| ChainError::IssuerNotCa {
        position,
        subject: describe(c),
        reason,
    };
    match c.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            if let Some(max) = bc.value.path_len_constraint {
                if cas_below > max as usize {
                    return Err(err(format!(
                        "pathLenConstraint {max} exceeded ({cas_below} CA certificates below it)"
                    )));
                }
            }
        }
        Ok(_) => return Err(err("no basicConstraints CA:true".into())),
        Err(e) => return Err(err(format!("basicConstraints: {e}"))),
    }
    match c.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(err("keyUsage lacks keyCertSign".into())),
        Ok(_) => Ok(()),
        Err(e) => Err(err(format!("keyUsage: {e}"))),
    }
}

fn describe(c: &X509Certificate<'_>) -> String {
    let s = c.subject().to_string();
    if !s.is_empty() {
        return s;
    }
    // SVIDs have an empty subject: name them by URI SAN.
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::URI(u) = n {
                return (*u).to_owned();
            }
        }
    }
    "<no subject>".into()
}

fn fmt_unix(s: i64) -> String {
    fmt_time(from_unix(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;
    use crate::testing::{leaf_params, TestPki};
    use rcgen::{CertificateParams, CertifiedIssuer, DnType, KeyPair};

    const ID: &str = "spiffe://td.test/ns/a/sa/b";

    fn pki(name: &str) -> TestPki {
        TestPki::new(name)
    }

    fn leaf(pki: &TestPki, id: &str, key: &WorkloadKey, nb: i64, na: i64) -> String {
        pki.leaf_pem(id, key.rcgen_key_pair(), nb, na)
    }

    fn answer(pki: &TestPki, leaf: String) -> Vec<String> {
        pki.answer(leaf)
    }

    fn check(
        chain: &[String],
        key: &WorkloadKey,
        anchors: Anchors<'_>,
    ) -> Result<WorkloadCert, ChainError> {
        verify_issued(
            chain,
            &SpiffeId::parse(ID).unwrap(),
            key,
            anchors,
            SystemTime::now(),
            DEFAULT_SKEW,
        )
    }

    #[test]
    fn accepts_a_good_chain_with_either_anchor_mode() {
        let p = pki("a");
        let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        let chain = answer(&p, leaf(&p, ID, &key, -60, 3600));
        let bundle = vec![p.root.der().clone()];
        let got = check(&chain, &key, Anchors::Bundle(&bundle)).unwrap();
        assert_eq!(got.chain().len(), 2);
        assert_eq!(*got.root(), *p.root.der());
        assert!(got.lifetime() >= Duration::from_secs(3600));
        check(&chain, &key, Anchors::ReturnedRoot).unwrap();
        // istiod style: cert-chain.pem (intermediate + root) in one element, then the root again.
        let istiod = vec![
            chain[0].clone(),
            format!("{}{}", p.inter.pem(), p.root.pem()),
            p.root.pem(),
        ];
        let dedup = check(&istiod, &key, Anchors::Bundle(&bundle)).unwrap();
        assert_eq!((dedup.chain(), dedup.root()), (got.chain(), got.root()));
        // Without the root in the answer: the intermediate is signed by a bundle root.
        let no_root = vec![chain[0].clone(), p.inter.pem()];
        check(&no_root, &key, Anchors::Bundle(&bundle)).unwrap();
        assert!(matches!(
            check(&no_root, &key, Anchors::ReturnedRoot),
            Err(ChainError::NoRoot { .. })
        ));
    }

    #[test]
    fn rejects_each_bad_answer_with_its_own_error() {
        let p = pki("a");
        let other = pki("b");
        let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        let other_key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        let bundle = vec![p.root.der().clone()];
        let b = Anchors::Bundle(&bundle);

        let e = check(
            &answer(&p, leaf(&p, "spiffe://td.test/ns/a/sa/c", &key, -60, 3600)),
            &key,
            b,
        );
        assert!(matches!(e, Err(ChainError::WrongIdentity { .. })), "{e:?}");
        let e = check(&answer(&p, leaf(&p, ID, &other_key, -60, 3600)), &key, b);
        assert!(matches!(e, Err(ChainError::WrongKey)), "{e:?}");
        let e = check(&answer(&p, leaf(&p, ID, &key, -7200, -3600)), &key, b);
        assert!(
            matches!(e, Err(ChainError::Expired { position: 0, .. })),
            "{e:?}"
        );
        let e = check(&answer(&p, leaf(&p, ID, &key, 3600, 7200)), &key, b);
        assert!(
            matches!(e, Err(ChainError::NotYetValid { position: 0, .. })),
            "{e:?}"
        );
        // 30 s in the future is within the skew.
        check(&answer(&p, leaf(&p, ID, &key, 30, 7200)), &key, b).unwrap();
        // Short-lived certificates (demos rotate every few seconds) are fine.
        check(&answer(&p, leaf(&p, ID, &key, -1, 10)), &key, b).unwrap();
        check(&answer(&p, leaf(&p, ID, &key, 20, 30)), &key, b).unwrap();
        let e = check(&[], &key, b);
        assert!(matches!(e, Err(ChainError::EmptyChain)), "{e:?}");
        let e = check(&["garbage".to_string()], &key, b);
        assert!(matches!(e, Err(ChainError::Pem { index: 0, .. })), "{e:?}");
        let e = check(&[key.to_pkcs8_pem().to_string()], &key, b);
        assert!(
            matches!(e, Err(ChainError::NotACertificate { index: 0, .. })),
            "{e:?}"
        );
        // A consistent chain to another root.
        let e = check(&answer(&other, leaf(&other, ID, &key, -60, 3600)), &key, b);
        assert!(matches!(e, Err(ChainError::UnknownRoot { .. })), "{e:?}");
        // A leaf from one PKI with the intermediate of another.
        let mixed = vec![
            leaf(&other, ID, &key, -60, 3600),
            p.inter.pem(),
            p.root.pem(),
        ];
        let e = check(&mixed, &key, b);
        assert!(
            matches!(e, Err(ChainError::BrokenLink { position: 0, .. })),
            "{e:?}"
        );
        let e = check(&mixed, &key, Anchors::ReturnedRoot);
        assert!(
            matches!(e, Err(ChainError::BrokenLink { position: 0, .. })),
            "{e:?}"
        );
        let e = check(
            &answer(&p, leaf(&p, ID, &key, -60, 3600)),
            &key,
            Anchors::Bundle(&[]),
        );
        assert!(matches!(e, Err(ChainError::NoTrustAnchors)), "{e:?}");
    }

    #[test]
    fn rejects_a_leaf_signed_by_a_non_ca() {
        let p = pki("a");
        let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        // A "leaf" issued by another leaf.
        let mut mid_params = CertificateParams::default();
        mid_params
            .distinguished_name
            .push(DnType::CommonName, "not a ca");
        let mid =
            CertifiedIssuer::signed_by(mid_params, KeyPair::generate().unwrap(), &p.inter).unwrap();
        let l = leaf_params(ID, -60, 3600)
            .signed_by(key.rcgen_key_pair(), &mid)
            .unwrap()
            .pem();
        let bundle = vec![p.root.der().clone()];
        let e = check(
            &[l, mid.pem(), p.inter.pem(), p.root.pem()],
            &key,
            Anchors::Bundle(&bundle),
        );
        assert!(
            matches!(e, Err(ChainError::IssuerNotCa { position: 1, .. })),
            "{e:?}"
        );
    }

    /// Mutation robustness: byte flips anywhere in the leaf never panic and are never
    /// accepted (the signature covers the TBS; a flipped signature or outer field fails).
    #[test]
    fn mutated_leaves_never_panic_and_are_never_accepted() {
        let p = pki("a");
        let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
        let good = answer(&p, leaf(&p, ID, &key, -60, 3600));
        let der = pem::parse(&good[0]).unwrap().into_contents();
        let bundle = vec![p.root.der().clone()];
        for m in crate::testing::mutants(&der, 7, 3000) {
            let chain = vec![
                pem::encode(&pem::Pem::new("CERTIFICATE", m)),
                good[1].clone(),
                good[2].clone(),
            ];
            assert!(check(&chain, &key, Anchors::Bundle(&bundle)).is_err());
        }
    }
}
