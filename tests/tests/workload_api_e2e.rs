//! The SPIFFE Workload API of `svidgate agent`, checked with clients nobody here wrote:
//! rust-spiffe (the `spiffe` crate) and py-spiffe (the `spiffe` package in `.venv`, through
//! `scripts/wapi_fetch.py`), against a real `svidgate ca` and a real agent.
//!
//! - a stream opened before the agent has any certificate gets its first SVID once the CA is
//!   up (the server waits; it never sends an empty SVID);
//! - the SVID chains to the served bundle, the key matches the leaf, the federated bundle is
//!   there; `FetchX509Bundles` serves both trust domains;
//! - a rotation (TTL 10 s) arrives on the open stream;
//! - a call without the `workload.spiffe.io` header gets INVALID_ARGUMENT (a raw gRPC call,
//!   since the SPIFFE libraries always send the header); JWT calls get UNIMPLEMENTED;
//! - the metrics count streams, pushes and refusals; SIGTERM removes the socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use spiffe::transport::{Endpoint, GrpcStatusCode, TransportError};
use spiffe::{TrustDomain, WorkloadApiClient, WorkloadApiError, X509Context};
use svidgate_e2e::{
    ca_init, dev_ca_command, free_port, http_get, repo_root, run_combined, svidgate_bin, Proc,
};
use tokio_stream::StreamExt;

const ID: &str = "spiffe://example.org/ns/app/sa/worker";
const TD: &str = "example.org";
const FED_TD: &str = "fed.example";
/// Stream messages to wait for at most, each within [`STEP`].
const STEP: Duration = Duration::from_secs(30);

/// Does this build serve the Workload API?
fn have_workload_api() -> bool {
    svidgate_bin()
        .ok()
        .and_then(|b| Command::new(b).args(["agent", "--help"]).output().ok())
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains("--workload-api-socket"))
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    for _ in 0..300 {
        if f() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out after 30 s waiting for {what}")
}

fn metric(admin: u16, name: &str) -> f64 {
    http_get(admin, "/metrics")
        .ok()
        .and_then(|body| {
            body.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0.0)
}

/// The leaf's serial number and not-after (Unix seconds).
fn leaf_info(ctx: &X509Context) -> Result<(Vec<u8>, i64)> {
    let svid = ctx.default_svid().context("no default SVID")?;
    let (_, cert) = x509_parser::parse_x509_certificate(svid.leaf().as_bytes())?;
    Ok((
        cert.raw_serial().to_vec(),
        cert.validity().not_after.timestamp(),
    ))
}

/// What an application would check: our identity, a chain that verifies against the served
/// bundle of its trust domain, a key that belongs to the leaf, the federated bundle.
fn check_context(ctx: &X509Context, fed_root_der: &[u8]) -> Result<()> {
    let svid = ctx.default_svid().context("no default SVID")?;
    ensure!(
        svid.spiffe_id().to_string() == ID,
        "SPIFFE ID {}",
        svid.spiffe_id()
    );
    let td = TrustDomain::new(TD)?;
    let bundle = ctx
        .bundle_set()
        .get(&td)
        .context("no bundle for the SVID's trust domain")?;
    let mut roots = rustls::RootCertStore::empty();
    for a in bundle.authorities() {
        roots.add(CertificateDer::from(a.as_bytes().to_vec()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let chain: Vec<CertificateDer<'static>> = svid
        .cert_chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
        .collect();
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .context("the SVID does not verify against the served bundle")?;
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(
            svid.private_key().as_bytes().to_vec().into(),
        ))?;
    rustls::sign::CertifiedKey::new(chain, key)
        .keys_match()
        .context("the served key does not belong to the leaf")?;
    let fed = ctx
        .bundle_set()
        .get(&TrustDomain::new(FED_TD)?)
        .context("no federated bundle")?;
    ensure!(
        fed.authorities()
            .iter()
            .map(|c| c.as_bytes())
            .collect::<Vec<_>>()
            == vec![fed_root_der],
        "federated bundle differs from the configured one"
    );
    Ok(())
}

fn status_code(e: &WorkloadApiError) -> Option<GrpcStatusCode> {
    match e {
        WorkloadApiError::Transport(TransportError::Status(s)) => Some(s.code()),
        _ => None,
    }
}

/// `FetchX509SVID` without the security header, as a raw gRPC call (the SPIFFE libraries
/// always add it): the request and the answer are empty messages, so `()` encodes them.
async fn call_without_header(endpoint: &Endpoint) -> Result<tonic::Status> {
    let channel = spiffe::transport::connect(endpoint).await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/SpiffeWorkloadAPI/FetchX509SVID");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc
        .server_streaming(tonic::Request::new(()), path, codec)
        .await
    {
        Ok(_) => bail!("a call without the security header was accepted"),
        Err(status) => Ok(status),
    }
}

fn pem_der(pem_file: &Path) -> Result<Vec<u8>> {
    Ok(CertificateDer::from_pem_file(pem_file)?.to_vec())
}

fn py_spiffe_fetch(socket: &Path) -> Result<String> {
    let python = repo_root().join(".venv/bin/python");
    let (ok, text) = run_combined(
        Command::new(&python)
            .arg(repo_root().join("scripts/wapi_fetch.py"))
            .env(
                "SPIFFE_ENDPOINT_SOCKET",
                format!("unix://{}", socket.display()),
            ),
    )
    .with_context(|| format!("{} (run `make setup`)", python.display()))?;
    ensure!(ok, "py-spiffe client failed: {text}");
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_api_with_independent_clients() -> Result<()> {
    if !have_workload_api() {
        eprintln!("SKIP: this svidgate has no --workload-api-socket yet");
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("wapi-e2e-").tempdir()?;
    let work = tmp.path().to_path_buf();
    let (ca_dir, fed_dir) = (work.join("ca"), work.join("fed"));
    for (dir, td) in [(&ca_dir, TD), (&fed_dir, FED_TD)] {
        ca_init(&svidgate_bin()?, dir, td)?;
    }
    let anchors = ca_dir.join("root-cert.pem");
    let fed_root = fed_dir.join("root-cert.pem");
    let fed_root_der = pem_der(&fed_root)?;
    let socket: PathBuf = work.join("wapi/socket");
    let (ca_port, admin) = (free_port()?, free_port()?);

    // The agent starts before its CA: it serves the socket but has no certificate yet.
    let mut agent_cmd = Command::new(svidgate_bin()?);
    agent_cmd
        .args(["agent", "--ca-addr"])
        .arg(format!("https://127.0.0.1:{ca_port}"))
        .arg("--ca-root")
        .arg(&anchors)
        .args([
            "--spiffe-id",
            ID,
            "--cert-ttl",
            "10s",
            "--rotation-ratio",
            "0.5",
        ])
        .arg("--bundle")
        .arg(format!("{FED_TD}={}", fed_root.display()))
        .arg("--sds-socket")
        .arg(work.join("sds/socket"))
        .arg("--admin-addr")
        .arg(format!("127.0.0.1:{admin}"))
        .args(["--ca-timeout", "2s"])
        .env("SVIDGATE_WORKLOAD_API_SOCKET", &socket)
        .args(["--workload-api-socket-mode", "0600"])
        .env("RUST_LOG", "info,sidecar_host=debug");
    let mut agent = Proc::spawn("agent", agent_cmd, work.join("agent.log"))?;
    wait_until("the Workload API socket", || socket.exists())
        .await
        .with_context(|| agent.output())?;
    let mode = std::fs::metadata(&socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");

    let endpoint = Endpoint::parse(&format!("unix://{}", socket.display()))?;
    let client = WorkloadApiClient::connect(endpoint.clone()).await?;
    let mut stream = client.stream_x509_contexts().await?;
    wait_until("the stream to be open", || {
        metric(admin, "svidgate_workload_api_streams_open") >= 1.0
    })
    .await?;
    assert_eq!(
        metric(
            admin,
            "svidgate_workload_api_pushes_total{rpc=\"FetchX509SVID\"}"
        ),
        0.0,
        "nothing may be sent before the first certificate"
    );

    let ca_cmd = dev_ca_command(&svidgate_bin()?, ca_port, &ca_dir, TD);
    let mut ca = Proc::spawn("ca", ca_cmd, work.join("ca.log"))?;

    let first = tokio::time::timeout(STEP, stream.next())
        .await
        .with_context(|| format!("no SVID on the open stream\n{}", agent.output()))?
        .context("stream ended")??;
    check_context(&first, &fed_root_der)?;
    let (first_serial, first_not_after) = leaf_info(&first)?;

    // A rotation arrives on the same stream (a bundle file change would also push; skip
    // messages that carry the same certificate).
    let mut rotated = None;
    for _ in 0..5 {
        let ctx = tokio::time::timeout(STEP, stream.next())
            .await
            .context("no rotation on the open stream")?
            .context("stream ended")??;
        if leaf_info(&ctx)?.0 != first_serial {
            rotated = Some(ctx);
            break;
        }
    }
    let rotated = rotated.context("five messages without a new certificate")?;
    check_context(&rotated, &fed_root_der)?;
    assert!(leaf_info(&rotated)?.1 >= first_not_after);

    // One-shot calls from the same client, and the bundles RPC.
    check_context(&client.fetch_x509_context().await?, &fed_root_der)?;
    let bundles = client.fetch_x509_bundles().await?;
    for td in [TD, FED_TD] {
        assert!(
            bundles.get(&TrustDomain::new(td)?).is_some(),
            "bundle of {td}"
        );
    }

    // py-spiffe, a second independent client.
    let py = py_spiffe_fetch(&socket)?;
    assert!(py.contains(ID), "py-spiffe output: {py}");

    // JWT-SVID profile: UNIMPLEMENTED, not a hang.
    let e = client.fetch_jwt_svid(["aud"], None).await.unwrap_err();
    assert_eq!(status_code(&e), Some(GrpcStatusCode::Unimplemented), "{e}");
    let e = client.fetch_jwt_bundles().await.unwrap_err();
    assert_eq!(status_code(&e), Some(GrpcStatusCode::Unimplemented), "{e}");
    let e = client.validate_jwt_token("aud", "a.b.c").await.unwrap_err();
    assert_eq!(status_code(&e), Some(GrpcStatusCode::Unimplemented), "{e}");

    // The security header.
    let refused = call_without_header(&endpoint).await?;
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let m = |name: &str| metric(admin, name);
    assert!(m("svidgate_workload_api_pushes_total{rpc=\"FetchX509SVID\"}") >= 3.0);
    assert!(m("svidgate_workload_api_pushes_total{rpc=\"FetchX509Bundles\"}") >= 1.0);
    assert_eq!(
        m("svidgate_workload_api_refused_total{reason=\"jwt_unsupported\"}"),
        3.0
    );
    assert_eq!(
        m("svidgate_workload_api_refused_total{reason=\"missing_security_header\"}"),
        1.0
    );
    assert!(
        m("svidgate_ready") == 1.0,
        "readiness is unchanged by the Workload API"
    );

    // SIGTERM: the open stream ends and the socket is removed.
    agent.signal("TERM", Duration::from_secs(10))?;
    let end = tokio::time::timeout(STEP, stream.next()).await?;
    assert!(
        !matches!(end, Some(Ok(_))),
        "after shutdown the stream must end, got a message"
    );
    assert!(!socket.exists(), "SIGTERM removes the Workload API socket");
    ca.stop();
    Ok(())
}
