//! The agent's client against `svidgate ca` (the library server on 127.0.0.1:0), over real
//! TLS on loopback: issuance for every key type, token and mTLS authentication, identity
//! checks, CSR rules, TTL capping, root reload.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType,
};
use sidecar_host::agent::ca_client::{CaClient, CaError};
use sidecar_host::agent::fetch::FetchError;
use svidgate_pki::{KeyType, WorkloadKey};
use tonic::Code;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// The lifetime the tests ask for.
const TTL: Duration = Duration::from_secs(3600);

/// A certificate for `want` asked of `ca` with `token` (`None`: no credential), trusting `root`.
async fn fetch_as(
    ca: &sidecar_host::ca::RunningCa,
    root: &std::path::Path,
    token: Option<&std::path::Path>,
    want: &str,
) -> Result<svidgate_pki::WorkloadCert, FetchError> {
    fetch(&client(ca.addr, root, token), &id(want), TTL, &bundle(root)).await
}

/// A CA in a new temporary directory with this tokens file: the directory, the CA, its root
/// file and the roots in it.
async fn ca_with_tokens(tokens: &str) -> TokenCa {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, root) = start_with_tokens(tmp.path(), tokens).await;
    let anchors = bundle(&root);
    (tmp, ca, root, anchors)
}

type TokenCa = (
    tempfile::TempDir,
    sidecar_host::ca::RunningCa,
    std::path::PathBuf,
    Vec<svidgate_pki::CertificateDer<'static>>,
);

fn rejected(e: &FetchError) -> Option<Code> {
    match e {
        FetchError::Ca(CaError::Rejected { code, .. }) => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn issues_checked_svids_for_every_key_type_with_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, root) = start_with_tokens(
        tmp.path(),
        &format!("# test\nweb-token {WEB}\napi-token {API}\n"),
    )
    .await;
    let token = write(tmp.path(), "token", "web-token\n");
    let c = client(ca.addr, &root, Some(&token));
    let anchors = bundle(&root);

    for kt in KeyType::ALL {
        let svid = fetch_key(&c, &id(WEB), kt, Duration::from_secs(3600), &anchors)
            .await
            .unwrap_or_else(|e| panic!("{kt}: {e}"));
        assert_eq!(*svid.spiffe_id(), id(WEB));
        assert_eq!(svid.chain().len(), 2, "leaf + intermediate");
        let life = svid.lifetime();
        assert!(
            life >= Duration::from_secs(3600) && life <= Duration::from_secs(3600 + 61),
            "{life:?}"
        );

        // The leaf follows the X509-SVID profile.
        let (_, leaf) = x509_parser::certificate::X509Certificate::from_der(svid.leaf()).unwrap();
        assert_eq!(leaf.subject().iter().count(), 0);
        let serial = leaf.raw_serial();
        assert!(
            serial.len() >= 8 && serial[0] & 0x80 == 0 && serial[0] != 0,
            "serial {serial:02x?}"
        );
        let nb = leaf.validity().not_before.timestamp();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            now - nb >= 50 && now - nb <= 120,
            "not-before back-dated ~1 min: {}",
            now - nb
        );
        let mut seen = Vec::new();
        for ext in leaf.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    assert!(ext.critical, "SAN critical with an empty subject");
                    assert_eq!(san.general_names, vec![GeneralName::URI(WEB)]);
                    seen.push("san");
                }
                ParsedExtension::BasicConstraints(bc) => {
                    assert!(!bc.ca);
                    seen.push("bc");
                }
                ParsedExtension::KeyUsage(ku) => {
                    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
                    assert_eq!(ku.key_encipherment(), kt.is_rsa());
                    seen.push("ku");
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    assert!(eku.server_auth && eku.client_auth);
                    seen.push("eku");
                }
                ParsedExtension::AuthorityKeyIdentifier(_) => seen.push("aki"),
                ParsedExtension::SubjectKeyIdentifier(_) => seen.push("ski"),
                other => panic!("{kt}: unexpected extension {other:?}"),
            }
        }
        seen.sort();
        assert_eq!(seen, ["aki", "bc", "eku", "ku", "san", "ski"], "{kt}");
    }
    // One issued certificate per key type; the tokens file, parsed at start and unchanged
    // since, was not parsed again.
    let m = ca.handle.metrics();
    for key_type in ["ecdsa-p256", "ecdsa-p384", "rsa"] {
        assert_eq!(m.issued_count(key_type), 1, "{key_type}");
    }
    assert_eq!(m.reload_count("tokens", true), 0);
    assert_eq!(m.refused_count(Code::PermissionDenied), 0);

    // Revoked by editing the file: the next call sees it (one re-read), and so does the one
    // after (no second re-read).
    write(tmp.path(), "tokens", &format!("api-token {API}\n"));
    for _ in 0..2 {
        let e = fetch(&c, &id(WEB), TTL, &anchors).await.unwrap_err();
        assert_eq!(rejected(&e), Some(Code::PermissionDenied), "{e}");
    }
    assert_eq!(m.reload_count("tokens", true), 1);
    ca.shutdown().await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_and_foreign_identities_are_refused() {
    let (tmp, ca, root, anchors) = ca_with_tokens(&format!("web-token {WEB}\n")).await;

    // Unknown token: PERMISSION_DENIED, not retried.
    let bad = write(tmp.path(), "bad-token", "nope");
    let e = fetch_as(&ca, &root, Some(&bad), WEB).await.unwrap_err();
    assert_eq!(rejected(&e), Some(Code::PermissionDenied), "{e}");

    // No credentials at all: UNAUTHENTICATED.
    let e = fetch_as(&ca, &root, None, WEB).await.unwrap_err();
    assert_eq!(rejected(&e), Some(Code::Unauthenticated), "{e}");

    // A valid token asking for another identity: PERMISSION_DENIED.
    let good = write(tmp.path(), "good-token", "web-token");
    let e = fetch_as(&ca, &root, Some(&good), API).await.unwrap_err();
    assert_eq!(rejected(&e), Some(Code::PermissionDenied), "{e}");

    // A CSR for our identity that also carries a DNS SAN: INVALID_ARGUMENT naming it.
    let key = WorkloadKey::generate(KeyType::EcdsaP256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![
        SanType::URI(WEB.try_into().unwrap()),
        SanType::DnsName("frontend.web.svc".try_into().unwrap()),
    ];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let csr = p
        .serialize_request(key.rcgen_key_pair())
        .unwrap()
        .pem()
        .unwrap();
    let with_good = || client(ca.addr, &root, Some(&good));
    let e = with_good().sign(&csr, TTL).await.unwrap_err();
    match e {
        CaError::Rejected {
            code: Code::InvalidArgument,
            message,
        } => assert!(message.contains("DNS"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A CSR for another trust domain: PERMISSION_DENIED.
    let other_td = id("spiffe://other.td/ns/web/sa/frontend");
    let e = fetch(&with_good(), &other_td, TTL, &anchors)
        .await
        .unwrap_err();
    assert_eq!(rejected(&e), Some(Code::PermissionDenied), "{e}");
    // Garbage CSR: INVALID_ARGUMENT.
    let e = with_good().sign("not a csr", TTL).await.unwrap_err();
    assert!(
        matches!(
            e,
            CaError::Rejected {
                code: Code::InvalidArgument,
                ..
            }
        ),
        "{e:?}"
    );
    // Too short a lifetime: INVALID_ARGUMENT.
    let too_short = Duration::from_secs(2);
    let e = fetch(&with_good(), &id(WEB), too_short, &anchors)
        .await
        .unwrap_err();
    assert_eq!(rejected(&e), Some(Code::InvalidArgument), "{e}");
    // Every refusal is counted by the status the caller got; nothing was issued.
    let m = ca.handle.metrics();
    assert_eq!(
        m.refused_count(Code::PermissionDenied),
        3,
        "token, identity, domain"
    );
    assert_eq!(m.refused_count(Code::Unauthenticated), 1);
    assert_eq!(
        m.refused_count(Code::InvalidArgument),
        3,
        "DNS SAN, garbage, TTL"
    );
    for key_type in ["ecdsa-p256", "ecdsa-p384", "rsa"] {
        assert_eq!(m.issued_count(key_type), 0);
    }
    ca.shutdown().await;
}

#[tokio::test]
async fn ttl_is_capped_by_max_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut cfg) = trusting_csrs(tmp.path());
    cfg.max_ttl = Duration::from_secs(600);
    let ca = start(cfg).await;
    let root = dir.join("root-cert.pem");
    let two_days = Duration::from_secs(48 * 3600);
    let c = client(ca.addr, &root, None);
    let svid = fetch(&c, &id(WEB), two_days, &bundle(&root)).await.unwrap();
    let life = svid.lifetime();
    assert!(
        life <= Duration::from_secs(600 + 61) && life >= Duration::from_secs(600),
        "{life:?}"
    );
    ca.shutdown().await;
}

#[tokio::test]
async fn renewal_over_mtls_uses_the_current_svid_identity() {
    let (tmp, ca, root, anchors) = ca_with_tokens(&format!("web-token {WEB}\n")).await;
    let (_, first) = first_web_svid(&ca, &root, tmp.path()).await;

    // No token now: the client certificate is the credential.
    let renewing = client(ca.addr, &root, None);
    renewing.set_client_identity(Some(first.clone()));
    let second = fetch(&renewing, &id(WEB), TTL, &anchors).await.unwrap();
    assert_ne!(second.serial(), first.serial());
    assert_ne!(second.key_pem(), first.key_pem());
    // The SVID of WEB cannot get a certificate for API.
    let e = fetch(&renewing, &id(API), TTL, &anchors).await.unwrap_err();
    assert_eq!(rejected(&e), Some(Code::PermissionDenied), "{e}");
    ca.shutdown().await;
}

#[tokio::test]
async fn a_client_certificate_and_a_token_for_another_identity_are_refused() {
    let (tmp, ca, root, anchors) =
        ca_with_tokens(&format!("web-token {WEB}\napi-token {API}\n")).await;
    let web_token = write(tmp.path(), "web", "web-token");
    let web = fetch_as(&ca, &root, Some(&web_token), WEB).await.unwrap();
    let identity = Arc::new(web);
    let sign = |token: &std::path::Path, want: &str| {
        let c = client(ca.addr, &root, Some(token));
        c.set_client_identity(Some(identity.clone()));
        let anchors = anchors.clone();
        let want = id(want);
        async move { fetch(&c, &want, TTL, &anchors).await }
    };
    // Certificate WEB + token API: neither identity is granted, whatever the CSR asks for.
    let api_token = write(tmp.path(), "api", "api-token");
    for want in [WEB, API] {
        let e = sign(&api_token, want).await.unwrap_err();
        assert_eq!(rejected(&e), Some(Code::PermissionDenied), "{want}: {e}");
    }
    // Certificate WEB + token WEB: fine. Certificate WEB + unknown token: the certificate
    // authenticates (the token grants nothing). Neither lets WEB ask for API.
    let unknown = write(tmp.path(), "unknown", "revoked-token");
    for token in [&web_token, &unknown] {
        let got = sign(token, WEB).await.unwrap();
        assert_eq!(*got.spiffe_id(), id(WEB));
        let e = sign(token, API).await.unwrap_err();
        assert_eq!(rejected(&e), Some(Code::PermissionDenied), "{e}");
    }
    ca.shutdown().await;
}

#[tokio::test]
async fn reload_switches_to_a_new_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cfg) = trusting_csrs(tmp.path());
    let new_dir = ca_dir(tmp.path(), "cacerts-new");
    let ca = start(cfg).await;
    let old_root = std::fs::read_to_string(dir.join("root-cert.pem")).unwrap();
    let new_root = std::fs::read_to_string(new_dir.join("root-cert.pem")).unwrap();
    // Agents trust both roots during the rotation.
    let both = write(
        tmp.path(),
        "both-roots.pem",
        &format!("{old_root}{new_root}"),
    );
    let anchors = bundle(&both);
    let c = client(ca.addr, &both, None);

    let before = fetch(&c, &id(WEB), TTL, &anchors).await.unwrap();
    assert_eq!(before.root_pem(), old_root);

    replace_cacerts(&new_dir, &dir);
    ca.handle.reload().unwrap();
    let after = fetch(&c, &id(WEB), TTL, &anchors).await.unwrap();
    assert_eq!(after.root_pem(), new_root);
    // An agent that trusts only the old root rejects the new chain (and cannot even connect).
    let old_only = write(tmp.path(), "old-root.pem", &old_root);
    let e = fetch(
        &client(ca.addr, &old_only, None),
        &id(WEB),
        TTL,
        &bundle(&old_only),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::Ca(CaError::Exhausted {
                code: Code::Unavailable,
                ..
            })
        ),
        "{e}"
    );

    // A broken directory is refused and the current material stays.
    std::fs::write(dir.join("ca-key.pem"), "garbage").unwrap();
    assert!(ca.handle.reload().is_err());
    fetch(&c, &id(WEB), TTL, &anchors).await.unwrap();
    let m = ca.handle.metrics();
    assert_eq!(m.reload_count("cacerts", true), 1);
    assert_eq!(m.reload_count("cacerts", false), 1);
    ca.shutdown().await;
}

#[tokio::test]
async fn a_watched_directory_is_reloaded_when_its_files_change() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut cfg) = trusting_csrs(tmp.path());
    let new_dir = ca_dir(tmp.path(), "cacerts-new");
    cfg.watch_interval = Some(Duration::from_millis(100));
    let ca = start(cfg).await;
    let new_root = std::fs::read_to_string(new_dir.join("root-cert.pem")).unwrap();
    let both = write(
        tmp.path(),
        "both.pem",
        &format!(
            "{}{new_root}",
            std::fs::read_to_string(dir.join("root-cert.pem")).unwrap()
        ),
    );
    // Replace the files one by one (a half-copied directory in between is refused, then retried).
    for f in [
        "root-cert.pem",
        "cert-chain.pem",
        "ca-cert.pem",
        "ca-key.pem",
    ] {
        std::fs::copy(new_dir.join(f), dir.join(f)).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let c = client(ca.addr, &both, None);
    let mut last = String::new();
    for _ in 0..50 {
        let svid = fetch(&c, &id(WEB), Duration::from_secs(600), &bundle(&both))
            .await
            .unwrap();
        last = svid.root_pem();
        if last == new_root {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, new_root);
    ca.shutdown().await;
}

#[test]
fn generate_never_overwrites_and_load_checks_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ca_dir(tmp.path(), "cacerts");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let key_before = std::fs::read(dir.join("ca-key.pem")).unwrap();
    let td = svidgate_core::TrustDomain::new(TD).unwrap();
    assert!(sidecar_host::ca::store::generate(&dir, &td).is_err());
    assert_eq!(std::fs::read(dir.join("ca-key.pem")).unwrap(), key_before);
    sidecar_host::ca::store::load(&dir).unwrap();

    // A key that does not match ca-cert.pem.
    let other = ca_dir(tmp.path(), "other");
    std::fs::copy(other.join("ca-key.pem"), dir.join("ca-key.pem")).unwrap();
    let e = sidecar_host::ca::store::load(&dir).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    // A chain to a root that is not in root-cert.pem.
    std::fs::copy(other.join("ca-key.pem"), dir.join("ca-key.pem")).unwrap();
    std::fs::copy(other.join("ca-cert.pem"), dir.join("ca-cert.pem")).unwrap();
    std::fs::copy(other.join("cert-chain.pem"), dir.join("cert-chain.pem")).unwrap();
    let e = sidecar_host::ca::store::load(&dir).unwrap_err();
    assert!(
        e.to_string().contains("not signed by any certificate"),
        "{e}"
    );
}

#[tokio::test]
async fn removing_the_token_stops_renewal_over_mtls() {
    let (tmp, ca, root, anchors) =
        ca_with_tokens(&format!("web-token {WEB}\napi-token {API}\n")).await;
    let (token, first) = first_web_svid(&ca, &root, tmp.path()).await;
    // The agent renews with its certificate (and sends its token along).
    let renewing = client(ca.addr, &root, Some(&token));
    renewing.set_client_identity(Some(first.clone()));
    let cert_only = client(ca.addr, &root, None);
    cert_only.set_client_identity(Some(first.clone()));
    fetch(&renewing, &id(WEB), TTL, &anchors).await.unwrap();
    fetch(&cert_only, &id(WEB), TTL, &anchors).await.unwrap();

    // WEB is revoked: its line is removed. Neither the certificate alone nor with the old
    // token renews; API is unaffected.
    write(tmp.path(), "tokens", &format!("api-token {API}\n"));
    for c in [&renewing, &cert_only] {
        let e = fetch(c, &id(WEB), TTL, &anchors).await.unwrap_err();
        assert_eq!(rejected(&e), Some(Code::PermissionDenied), "{e}");
        assert!(e.to_string().contains("no longer authorized"), "{e}");
    }
    let api_token = write(tmp.path(), "api", "api-token");
    fetch_as(&ca, &root, Some(&api_token), API).await.unwrap();

    // Authorized again under a new token: the certificate renews again.
    write(
        tmp.path(),
        "tokens",
        &format!("new-web-token {WEB}\napi-token {API}\n"),
    );
    fetch(&cert_only, &id(WEB), TTL, &anchors).await.unwrap();
    ca.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_before_their_body_and_large_messages_are_refused() {
    use sidecar_host::pb::istio_certificate_service_client::IstioCertificateServiceClient;
    use sidecar_host::pb::IstioCertificateRequest;
    let (_tmp, ca, root, _) = ca_with_tokens(&format!("web-token {WEB}\n")).await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(&root).unwrap(),
        ))
        .domain_name("localhost");
    let ch =
        tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{}", ca.addr.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
    let call = |token: Option<&'static str>, size: usize| {
        let mut c = IstioCertificateServiceClient::new(ch.clone());
        async move {
            let mut req = tonic::Request::new(IstioCertificateRequest {
                csr: "x".repeat(size),
                validity_duration: 600,
                metadata: None,
            });
            if let Some(t) = token {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            c.create_certificate(req).await.unwrap_err()
        }
    };
    // No credentials, a big body: UNAUTHENTICATED (not a size error: the body is not read).
    let s = call(None, 1 << 20).await;
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let s = call(Some("nope"), 1 << 20).await;
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    // Authenticated: a message over 64 KiB is refused, one under reaches the CSR checks.
    let s = call(Some("web-token"), 65 * 1024).await;
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
    let s = call(Some("web-token"), 60 * 1024).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    ca.shutdown().await;
}

/// WEB's first certificate, issued with the token `web-token` (written to `tmp/token`, whose
/// path is returned too).
async fn first_web_svid(
    ca: &sidecar_host::ca::RunningCa,
    root: &std::path::Path,
    tmp: &std::path::Path,
) -> (std::path::PathBuf, Arc<svidgate_pki::WorkloadCert>) {
    let token = write(tmp, "token", "web-token");
    let c = client(ca.addr, root, Some(&token));
    let svid = fetch(&c, &id(WEB), Duration::from_secs(3600), &bundle(root))
        .await
        .unwrap();
    (token, Arc::new(svid))
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut cfg) = trusting_csrs(tmp.path());
    cfg.limits.max_connections = 1;
    let ca = start(cfg).await;
    let root = dir.join("root-cert.pem");
    let endpoint = || {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(
                std::fs::read(&root).unwrap(),
            ))
            .domain_name("localhost");
        tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{}", ca.addr.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
    };
    // An idle caller holds the only connection: an agent arriving now waits, unserved...
    let idle = endpoint().connect().await.unwrap();
    let waiting = {
        let c = client(ca.addr, &root, None);
        let anchors = bundle(&root);
        tokio::spawn(async move { fetch(&c, &id(WEB), Duration::from_secs(600), &anchors).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "served (or refused) beyond the limit"
    );
    // ...and is served as soon as the idle one goes away.
    drop(idle);
    let svid = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiting agent was not served after the idle connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(*svid.spiffe_id(), id(WEB));
    ca.shutdown().await;
}
