//! Which secrets exist and what each one contains (pure functions of the [`SecretState`]).

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, DataSource, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, spiffe_cert_validator_config, CertificateValidationContext, Secret,
    SpiffeCertValidatorConfig, TlsCertificate,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use sha2::{Digest, Sha256};
use svidgate_core::{SpiffeId, TrustDomain};

use super::state::SecretState;

/// The `type_url` of every SDS resource.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// The workload certificate and key.
pub const DEFAULT: &str = "default";
/// The local trust domain's roots as `trusted_ca`.
pub const ROOTCA: &str = "ROOTCA";
/// Every trust domain's roots as an `envoy.tls.cert_validator.spiffe` validator.
pub const ALL: &str = "ALL";
/// Envoy's SPIFFE certificate validator extension name.
pub const SPIFFE_VALIDATOR_NAME: &str = "envoy.tls.cert_validator.spiffe";

/// A requested name this agent does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SDS resource {name:?}: this agent serves \"default\", \"{workload}\", \"ROOTCA\", \"ALL\" and spiffe://<trust domain> for {tds}")]
pub struct ResourceError {
    pub name: String,
    pub workload: String,
    pub tds: String,
}

/// What a resource name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// `default` or the workload's SPIFFE ID.
    Certificate,
    /// `ROOTCA`.
    RootCa,
    /// `ALL`.
    All,
    /// `spiffe://<td>`.
    TrustDomain(TrustDomain),
}

/// Classifies `name`. `known_tds` are the trust domains this agent has or will have a bundle
/// for (the local one and every configured `--bundle`).
pub fn classify(
    name: &str,
    workload: &SpiffeId,
    known_tds: &BTreeSet<TrustDomain>,
) -> Result<ResourceKind, ResourceError> {
    let kind = match name {
        DEFAULT => Some(ResourceKind::Certificate),
        ROOTCA => Some(ResourceKind::RootCa),
        ALL => Some(ResourceKind::All),
        n if n == workload.to_string() => Some(ResourceKind::Certificate),
        n if n.starts_with("spiffe://") => match TrustDomain::new(n) {
            Ok(td) if known_tds.contains(&td) || &td == workload.trust_domain() => {
                Some(ResourceKind::TrustDomain(td))
            }
            _ => None,
        },
        _ => None,
    };
    kind.ok_or_else(|| ResourceError {
        name: name.to_owned(),
        workload: workload.to_string(),
        tds: known_tds
            .iter()
            .chain(std::iter::once(workload.trust_domain()))
            .map(TrustDomain::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A resource ready to send: the packed `Secret` and its content version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub name: String,
    pub version: String,
    pub any: Any,
}

/// The secret `name` in `state`: `Err` if the name is unknown, `Ok(None)` if it is known but not
/// available yet (no certificate signed yet, bundle not loaded yet).
pub fn resolve(
    state: &SecretState,
    workload: &SpiffeId,
    known_tds: &BTreeSet<TrustDomain>,
    name: &str,
) -> Result<Option<Resolved>, ResourceError> {
    let kind = classify(name, workload, known_tds)?;
    let secret_type = match kind {
        ResourceKind::Certificate => state.cert.as_ref().map(|cert| {
            secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(cert.chain_pem().to_owned())),
                private_key: Some(inline(cert.key_pem().to_owned())),
                ..Default::default()
            })
        }),
        ResourceKind::RootCa => trusted_ca(state, workload.trust_domain()),
        ResourceKind::TrustDomain(td) => trusted_ca(state, &td),
        ResourceKind::All => {
            let trust_domains: Vec<_> = state
                .bundles
                .iter()
                .filter(|(_, certs)| !certs.is_empty())
                .map(|(td, certs)| spiffe_cert_validator_config::TrustDomain {
                    name: td.as_str().to_owned(),
                    trust_bundle: Some(inline(join(certs))),
                    workload_trust_domain: String::new(),
                })
                .collect();
            if trust_domains.is_empty() {
                None
            } else {
                let cfg = SpiffeCertValidatorConfig {
                    trust_domains,
                    trust_bundles: None,
                };
                Some(secret::Type::ValidationContext(
                    CertificateValidationContext {
                        custom_validator_config: Some(TypedExtensionConfig {
                            name: SPIFFE_VALIDATOR_NAME.to_owned(),
                            typed_config: Some(envoy_types::util::pack_any(cfg)),
                        }),
                        ..Default::default()
                    },
                ))
            }
        }
    };
    Ok(secret_type.map(|t| {
        let secret = Secret {
            name: name.to_owned(),
            r#type: Some(t),
        };
        let bytes = secret.encode_to_vec();
        let version = hex::encode(&Sha256::digest(&bytes)[..8]);
        Resolved {
            name: name.to_owned(),
            version,
            any: Any {
                type_url: SECRET_TYPE_URL.to_owned(),
                value: bytes,
            },
        }
    }))
}

fn trusted_ca(state: &SecretState, td: &TrustDomain) -> Option<secret::Type> {
    let certs = state.bundles.get(td).filter(|c| !c.is_empty())?;
    Some(secret::Type::ValidationContext(
        CertificateValidationContext {
            trusted_ca: Some(inline(join(certs))),
            ..Default::default()
        },
    ))
}

fn join(certs: &[String]) -> String {
    let mut out = String::new();
    for c in certs {
        out.push_str(c.trim_end());
        out.push('\n');
    }
    out
}

fn inline(s: String) -> DataSource {
    DataSource {
        specifier: Some(Specifier::InlineString(s)),
        watched_directory: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap()
    }

    #[test]
    fn classify_table() {
        let known: BTreeSet<_> = [TrustDomain::new("fed.example").unwrap()].into();
        let cases: &[(&str, Option<ResourceKind>)] = &[
            ("default", Some(ResourceKind::Certificate)),
            (
                "spiffe://example.org/ns/a/sa/b",
                Some(ResourceKind::Certificate),
            ),
            ("ROOTCA", Some(ResourceKind::RootCa)),
            ("ALL", Some(ResourceKind::All)),
            (
                "spiffe://example.org",
                Some(ResourceKind::TrustDomain(
                    TrustDomain::new("example.org").unwrap(),
                )),
            ),
            (
                "spiffe://fed.example",
                Some(ResourceKind::TrustDomain(
                    TrustDomain::new("fed.example").unwrap(),
                )),
            ),
            ("spiffe://other.example", None),
            ("spiffe://example.org/ns/a/sa/c", None),
            ("Default", None),
            ("rootca", None),
            ("", None),
            ("file-cert:/etc/x.pem~/etc/y.pem", None),
        ];
        for (name, want) in cases {
            let got = classify(name, &id(), &known).ok();
            assert_eq!(&got, want, "{name}");
        }
        let err = classify("nope", &id(), &known).unwrap_err().to_string();
        assert!(err.contains("\"nope\""), "{err}");
    }

    #[test]
    fn pending_until_available() {
        let st = SecretState::default();
        let known = BTreeSet::new();
        for n in ["default", "ROOTCA", "ALL", "spiffe://example.org"] {
            assert_eq!(resolve(&st, &id(), &known, n).unwrap(), None, "{n}");
        }
    }

    #[test]
    fn all_is_a_spiffe_validator_with_every_domain() {
        let mut st = SecretState::default();
        st.bundles
            .insert(TrustDomain::new("example.org").unwrap(), vec!["A".into()]);
        st.bundles.insert(
            TrustDomain::new("fed.example").unwrap(),
            vec!["B".into(), "C".into()],
        );
        let r = resolve(&st, &id(), &BTreeSet::new(), "ALL")
            .unwrap()
            .unwrap();
        let secret = Secret::decode(r.any.value.as_slice()).unwrap();
        let Some(secret::Type::ValidationContext(vc)) = secret.r#type else {
            panic!("not a validation context")
        };
        let cfg = vc.custom_validator_config.unwrap();
        assert_eq!(cfg.name, SPIFFE_VALIDATOR_NAME);
        let any = cfg.typed_config.unwrap();
        assert!(any.type_url.ends_with("SPIFFECertValidatorConfig"));
        let cfg = SpiffeCertValidatorConfig::decode(any.value.as_slice()).unwrap();
        let names: Vec<_> = cfg.trust_domains.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["example.org", "fed.example"]);
        assert_eq!(
            cfg.trust_domains[1]
                .trust_bundle
                .as_ref()
                .unwrap()
                .specifier,
            Some(Specifier::InlineString("B\nC\n".into()))
        );
        // ROOTCA holds the local domain only.
        let r = resolve(&st, &id(), &BTreeSet::new(), "ROOTCA")
            .unwrap()
            .unwrap();
        let secret = Secret::decode(r.any.value.as_slice()).unwrap();
        let Some(secret::Type::ValidationContext(vc)) = secret.r#type else {
            panic!()
        };
        assert_eq!(
            vc.trusted_ca.unwrap().specifier,
            Some(Specifier::InlineString("A\n".into()))
        );
    }
}
