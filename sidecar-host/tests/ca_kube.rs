//! `svidgate ca` with Kubernetes identities: projected service-account tokens minted the way
//! kube-apiserver mints them (RS256 and ES256), verified against a JWKS file or one discovered
//! from the issuer over HTTPS on 127.0.0.1; every refusal; renewal over mTLS only with a valid
//! token.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use sidecar_host::agent::ca_client::CaError;
use sidecar_host::agent::fetch::FetchError;
use sidecar_host::ca::kube::{JwksSource, KubeConfig};
use sidecar_host::ca::RunningCa;
use svidgate_pki::jwt::mint::{self, Signer};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const AUD: &str = "istio-ca";

fn now() -> i64 {
    svidgate_pki::time::unix_seconds(SystemTime::now())
}

fn code(e: &FetchError) -> Option<Code> {
    match e {
        FetchError::Ca(CaError::Rejected { code, .. }) => Some(*code),
        _ => None,
    }
}

/// A CA with `--kube-issuer ISSUER --kube-jwks <tmp>/jwks.json` (and no tokens file) in a new
/// temporary directory: the directory, the CA, its root file and the JWKS file.
async fn kube_ca(signers: &[&Signer]) -> (TempDir, RunningCa, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ca_dir(tmp.path(), "cacerts");
    let jwks = write(tmp.path(), "jwks.json", &mint::jwks(signers));
    let mut cfg = config(&dir);
    cfg.kube = Some(KubeConfig {
        issuer: ISSUER.into(),
        audience: AUD.into(),
        source: JwksSource::File(jwks.clone()),
    });
    (tmp, start(cfg).await, dir.join("root-cert.pem"), jwks)
}

/// Asks the CA for `want` with `token` as the bearer.
async fn sign_with(
    ca: &RunningCa,
    root: &Path,
    tmp: &Path,
    token: &str,
    want: &str,
) -> Result<svidgate_pki::WorkloadCert, FetchError> {
    let t = write(tmp, "sa-token", token);
    fetch(
        &client(ca.addr, root, Some(&t)),
        &id(want),
        Duration::from_secs(600),
        &bundle(root),
    )
    .await
}

#[tokio::test]
async fn projected_tokens_get_exactly_their_service_account_identity() {
    let (rsa, ec) = (Signer::rsa("rsa-key"), Signer::p256("ec-key"));
    let (tmp, ca, root, _) = kube_ca(&[&rsa, &ec]).await;
    for s in [&rsa, &ec] {
        let tok = s.sign(&mint::claims(ISSUER, AUD, "web", "frontend", now(), 3600));
        let svid = sign_with(&ca, &root, tmp.path(), &tok, WEB).await.unwrap();
        assert_eq!(*svid.spiffe_id(), id(WEB), "{}", s.alg());
        // The same token cannot get another identity.
        let e = sign_with(&ca, &root, tmp.path(), &tok, API)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(Code::PermissionDenied), "{e}");
    }
    ca.shutdown().await;
}

#[tokio::test]
async fn every_bad_token_is_refused() {
    let (ec, rsa) = (Signer::p256("ec-key"), Signer::rsa("rsa-key"));
    let (tmp, ca, root, _) = kube_ca(&[&ec, &rsa]).await;
    let n = now();
    let good = mint::claims(ISSUER, AUD, "web", "frontend", n, 3600);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good.clone();
        f(&mut c);
        ec.sign(&c)
    };
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let good_tok = ec.sign(&good);
    let mut parts = good_tok.split('.');
    let (_h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut evil = good.clone();
    evil["kubernetes.io"]["namespace"] = json!("api");
    evil["kubernetes.io"]["serviceaccount"]["name"] = json!("backend");
    evil["sub"] = json!("system:serviceaccount:api:backend");
    let cases: Vec<(&str, String, &str, Code)> = vec![
        (
            "wrong audience",
            with(&|c| c["aud"] = json!(["vault"])),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://other.example")),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "wrong key (same kid)",
            Signer::p256("ec-key").sign(&good),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "unknown kid",
            Signer::p256("elsewhere").sign(&good),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "expired",
            ec.sign(&mint::claims(
                ISSUER,
                AUD,
                "web",
                "frontend",
                n - 7200,
                3600,
            )),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "not yet valid",
            ec.sign(&mint::claims(ISSUER, AUD, "web", "frontend", n + 600, 3600)),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "alg none",
            format!("{}.{p}.{s}", b64(json!({"alg": "none", "kid": "ec-key"}))),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "HS256",
            format!("{}.{p}.{s}", b64(json!({"alg": "HS256", "kid": "ec-key"}))),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "tampered payload",
            format!("{}.{}.{s}", good_tok.split('.').next().unwrap(), b64(evil)),
            API,
            Code::Unauthenticated,
        ),
        (
            "sub for another service account",
            with(&|c| c["sub"] = json!("system:serviceaccount:web:admin")),
            WEB,
            Code::Unauthenticated,
        ),
        (
            "a token for another identity",
            ec.sign(&mint::claims(ISSUER, AUD, "api", "backend", n, 3600)),
            WEB,
            Code::PermissionDenied,
        ),
        (
            "not a JWT",
            "opaque-token".into(),
            WEB,
            Code::Unauthenticated,
        ),
    ];
    for (name, tok, want, expected) in cases {
        let e = sign_with(&ca, &root, tmp.path(), &tok, want)
            .await
            .expect_err(name);
        assert_eq!(code(&e), Some(expected), "{name}: {e}");
    }
    // And the good one, for contrast.
    sign_with(&ca, &root, tmp.path(), &good_tok, WEB)
        .await
        .unwrap();
    ca.shutdown().await;
}

#[tokio::test]
async fn the_jwks_file_is_reread_when_it_changes() {
    let (old, new) = (Signer::p256("old"), Signer::rsa("new"));
    let (tmp, ca, root, jwks) = kube_ca(&[&old]).await;
    let tok = new.sign(&mint::claims(ISSUER, AUD, "web", "frontend", now(), 3600));
    let e = sign_with(&ca, &root, tmp.path(), &tok, WEB)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::Unauthenticated), "{e}");
    // The API server rotated its key: the new JWKS is written over the file.
    std::fs::write(&jwks, mint::jwks(&[&old, &new])).unwrap();
    sign_with(&ca, &root, tmp.path(), &tok, WEB).await.unwrap();
    // A broken JWKS keeps the previous keys.
    std::fs::write(&jwks, "{\"keys\": 7}").unwrap();
    sign_with(&ca, &root, tmp.path(), &tok, WEB).await.unwrap();
    ca.shutdown().await;
}

#[tokio::test]
async fn renewal_over_mtls_needs_a_valid_token_for_the_same_identity() {
    let ec = Signer::p256("ec-key");
    let (tmp, ca, root, _) = kube_ca(&[&ec]).await;
    let anchors = bundle(&root);
    let ttl = Duration::from_secs(600);
    let good = ec.sign(&mint::claims(ISSUER, AUD, "web", "frontend", now(), 3600));
    let first = Arc::new(sign_with(&ca, &root, tmp.path(), &good, WEB).await.unwrap());
    let renew = |token: Option<&Path>| {
        let c = client(ca.addr, &root, token);
        c.set_client_identity(Some(first.clone()));
        c
    };
    // Certificate + current token (what the agent sends): renewed.
    let t = write(tmp.path(), "good", &good);
    fetch(&renew(Some(&t)), &id(WEB), ttl, &anchors)
        .await
        .unwrap();
    // Certificate alone, or with an expired token (the service account is gone, kubelet no
    // longer refreshes it): refused.
    let expired = write(
        tmp.path(),
        "expired",
        &ec.sign(&mint::claims(
            ISSUER,
            AUD,
            "web",
            "frontend",
            now() - 7200,
            3600,
        )),
    );
    for token in [None, Some(expired.as_path())] {
        let e = fetch(&renew(token), &id(WEB), ttl, &anchors)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(Code::PermissionDenied), "{token:?}: {e}");
        assert!(e.to_string().contains("no longer authorized"), "{e}");
    }
    // Certificate for WEB + a valid token for API: refused.
    let api = write(
        tmp.path(),
        "api",
        &ec.sign(&mint::claims(ISSUER, AUD, "api", "backend", now(), 3600)),
    );
    let e = fetch(&renew(Some(&api)), &id(WEB), ttl, &anchors)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied), "{e}");
    ca.shutdown().await;
}

/// A tiny HTTPS server on 127.0.0.1 serving the API server's discovery documents; records
/// the requests it saw (request line + authorization header).
struct Issuer {
    url: String,
    jwks: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn issuer(tmp: &Path, jwks: String) -> (Issuer, PathBuf) {
    // The server certificate (for 127.0.0.1) comes from a fresh `cacerts` directory.
    let dir = ca_dir(tmp, "issuer-ca");
    let material = sidecar_host::ca::store::load(&dir).unwrap();
    let (chain, key) = sidecar_host::ca::issue::issue_server_cert(
        &material,
        &["127.0.0.1".into()],
        SystemTime::now(),
    )
    .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let jwks = Arc::new(Mutex::new(jwks));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (j, s, u) = (jwks.clone(), seen.clone(), url.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let line = head.lines().next().unwrap_or("").to_owned();
            let auth = head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                .unwrap_or("")
                .to_owned();
            s.lock().unwrap().push(format!("{line} | {auth}"));
            let body = if line.starts_with("GET /.well-known/openid-configuration ") {
                json!({
                    "issuer": u,
                    "jwks_uri": format!("{u}/openid/v1/jwks"),
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"]
                })
                .to_string()
            } else if line.starts_with("GET /openid/v1/jwks ") {
                j.lock().unwrap().clone()
            } else {
                String::new()
            };
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let _ = tls
                .write_all(
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = tls.shutdown().await;
        }
    });
    (
        Issuer {
            url,
            jwks,
            seen,
            task,
        },
        dir.join("root-cert.pem"),
    )
}

#[tokio::test]
async fn the_jwks_is_discovered_from_the_issuer_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let rsa = Signer::rsa("rsa-key");
    let (iss, iss_root) = issuer(tmp.path(), mint::jwks(&[&rsa])).await;
    let reader_token = write(tmp.path(), "reader-token", "ca-pod-token\n");

    // Directly: discovery, then the JWKS.
    let jwks = sidecar_host::ca::kube::discover(&iss.url, &iss_root, Some(&reader_token))
        .await
        .unwrap();
    assert!(jwks.has_kid("rsa-key"));
    let seen = iss.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with("GET /.well-known/openid-configuration HTTP/1.1"));
    assert!(seen[1].starts_with("GET /openid/v1/jwks HTTP/1.1"));
    assert!(
        seen.iter().all(|l| l.ends_with("Bearer ca-pod-token")),
        "{seen:?}"
    );
    // The issuer in the document must be the configured one.
    let e = sidecar_host::ca::kube::discover(&format!("{}/", iss.url), &iss_root, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is not --kube-issuer"), "{e}");
    // TLS is verified: another root does not reach it.
    let other = ca_dir(tmp.path(), "other");
    assert!(
        sidecar_host::ca::kube::discover(&iss.url, &other.join("root-cert.pem"), None)
            .await
            .is_err()
    );
    *iss.jwks.lock().unwrap() = "not json".into();
    assert!(sidecar_host::ca::kube::discover(&iss.url, &iss_root, None)
        .await
        .is_err());
    *iss.jwks.lock().unwrap() = mint::jwks(&[&rsa]);

    // A CA discovering its JWKS serves a token for that issuer once the keys are in.
    let dir = ca_dir(tmp.path(), "cacerts");
    let root = dir.join("root-cert.pem");
    let mut cfg = config(&dir);
    cfg.kube = Some(KubeConfig {
        issuer: iss.url.clone(),
        audience: AUD.into(),
        source: JwksSource::Discover {
            ca: iss_root.clone(),
            token: Some(reader_token.clone()),
            refresh: Duration::from_secs(300),
        },
    });
    let ca = start(cfg).await;
    let tok = rsa.sign(&mint::claims(&iss.url, AUD, "web", "frontend", now(), 3600));
    let mut last = None;
    for _ in 0..100 {
        match sign_with(&ca, &root, tmp.path(), &tok, WEB).await {
            Ok(svid) => {
                last = Some(Ok(svid));
                break;
            }
            // UNAVAILABLE until the first fetch has completed (retried by the client).
            Err(e) => last = Some(Err(e)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let svid = last.unwrap().unwrap();
    assert_eq!(*svid.spiffe_id(), id(WEB));
    let e = sign_with(
        &ca,
        &root,
        tmp.path(),
        &rsa.sign(&mint::claims(ISSUER, AUD, "web", "frontend", now(), 3600)),
        WEB,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), Some(Code::Unauthenticated), "{e}");
    ca.shutdown().await;
}
