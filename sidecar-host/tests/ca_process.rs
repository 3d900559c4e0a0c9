//! `svidgate ca serve` as a real process: under hostile callers (unauthenticated 4 MiB
//! requests over many connections and streams must not grow its memory, and a legitimate
//! agent is served right after); a tokens file with garbled lines never puts a token in the
//! log; loose secret file modes are warned about; the `--kube-*` flags.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use sidecar_host::pb::istio_certificate_service_client::IstioCertificateServiceClient;
use sidecar_host::pb::IstioCertificateRequest;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A `svidgate ca serve` child process; killed on drop.
struct CaProcess {
    child: Child,
    addr: std::net::SocketAddr,
    stderr: PathBuf,
}

impl Drop for CaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CaProcess {
    fn start(tmp: &Path, extra: &[&str]) -> CaProcess {
        let stderr = tmp.join("ca.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_svidgate"))
            .args(["ca", "serve", "--listen", "127.0.0.1:0", "--generate"])
            .arg("--ca-dir")
            .arg(tmp.join("cacerts"))
            .args(["--trust-domain", TD])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("svidgate ca listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "no listening line: {line:?}; stderr: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .parse()
            .unwrap();
        CaProcess {
            child,
            addr,
            stderr,
        }
    }

    /// `VmRSS` and `VmHWM` (peak) of the process, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {status}"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn log(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.stderr)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }
}

async fn channel(addr: std::net::SocketAddr, root: &Path) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(root).unwrap()))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap()
}

const CONNECTIONS: usize = 10;
const STREAMS: usize = 10;
const REQUESTS: usize = 200;
const BODY: usize = 4 * 1024 * 1024 - 64;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_4mib_requests_do_not_grow_memory_and_agents_are_served_after() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = write(tmp.path(), "tokens", &format!("web-token {WEB}\n"));
    let ca = CaProcess::start(tmp.path(), &["--tokens", tokens.to_str().unwrap()]);
    let root = tmp.path().join("cacerts/root-cert.pem");
    let (rss_start, _) = ca.memory_kib();

    // 10 connections; on each, 10 streams at a time, until 200 requests have been sent.
    let body = std::sync::Arc::new("A".repeat(BODY));
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let ch = channel(ca.addr, &root).await;
        let body = body.clone();
        conns.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for _round in 0..REQUESTS / (CONNECTIONS * STREAMS) {
                let mut streams = Vec::new();
                for _ in 0..STREAMS {
                    let mut c = IstioCertificateServiceClient::new(ch.clone());
                    let csr = (*body).clone();
                    streams.push(tokio::spawn(async move {
                        c.create_certificate(IstioCertificateRequest {
                            csr,
                            validity_duration: 3600,
                            metadata: None,
                        })
                        .await
                        .map(|_| ())
                        .map_err(|s| s.code())
                    }));
                }
                for s in streams {
                    codes.push(s.await.unwrap());
                }
            }
            codes
        }));
    }
    let mut refused = 0;
    for c in conns {
        for r in c.await.unwrap() {
            assert!(r.is_err(), "an unauthenticated request was served");
            refused += 1;
        }
    }
    assert_eq!(refused, REQUESTS);
    let (rss, hwm) = ca.memory_kib();
    eprintln!(
        "CA memory: VmRSS {rss_start} KiB at start, {rss} KiB after {REQUESTS} hostile requests, peak VmHWM {hwm} KiB"
    );
    assert!(
        hwm < RSS_LIMIT_KIB,
        "peak RSS {hwm} KiB under hostile load (limit {RSS_LIMIT_KIB} KiB)"
    );

    // A legitimate agent right after.
    let token = write(tmp.path(), "token", "web-token");
    fetch_web(ca.addr, &root, &token, 3600).await;
}

#[test]
fn a_garbled_tokens_file_never_puts_a_token_in_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "9f2c4e7a1b3d5f6081a2c3e4";
    // Swapped columns at start: the CA refuses to start and names the line only.
    let tokens = write(tmp.path(), "tokens", &format!("# t\n{WEB} {secret}\n"));
    let out = Command::new(env!("CARGO_BIN_EXE_svidgate"))
        .args(["ca", "serve", "--listen", "127.0.0.1:0", "--generate"])
        .arg("--ca-dir")
        .arg(tmp.path().join("cacerts"))
        .args(["--trust-domain", TD, "--tokens"])
        .arg(&tokens)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("line 2"), "{log}");
    assert!(!log.contains(secret), "the token is in the log: {log}");
}

#[tokio::test]
async fn a_tokens_file_garbled_while_serving_never_puts_a_token_in_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "5b8e0d2f4a6c8e1037b9d1f3";
    let tokens = write(tmp.path(), "tokens", &format!("{secret} {WEB}\n"));
    let ca = CaProcess::start(tmp.path(), &["--tokens", tokens.to_str().unwrap()]);
    let root = tmp.path().join("cacerts/root-cert.pem");
    let token = write(tmp.path(), "token", secret);
    let c = client(ca.addr, &root, Some(&token));
    fetch(&c, &id(WEB), Duration::from_secs(600), &bundle(&root))
        .await
        .unwrap();
    write(tmp.path(), "tokens", &format!("{WEB} {secret}\n"));
    let e = fetch(&c, &id(WEB), Duration::from_secs(600), &bundle(&root))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Unavailable"), "{e}");
    let log = ca.log();
    assert!(log.contains("line 1"), "{log}");
    assert!(!log.contains(secret), "the token is in the log: {log}");
}

#[test]
fn secrets_readable_by_others_are_warned_about_and_generate_creates_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let tokens = write(tmp.path(), "tokens", &format!("tok {WEB}\n"));
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ca = CaProcess::start(tmp.path(), &["--tokens", tokens.to_str().unwrap()]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tmp.path().join("cacerts");
    assert_eq!(mode(&dir), 0o700);
    for f in sidecar_host::ca::store::ALL_FILES {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let log = ca.log();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("accessible")).collect();
    assert!(
        warned.len() == 1 && warned[0].contains("/tokens") && warned[0].contains("0644"),
        "only the tokens file is loose (the generated key is private): {log}"
    );
    drop(ca);

    // A CA key made world-readable is named at the next start.
    std::fs::set_permissions(
        dir.join("ca-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = CaProcess::start(tmp.path(), &["--tokens", tokens.to_str().unwrap()]);
    let log = ca.log();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("accessible")).collect();
    assert!(
        warned.len() == 1 && warned[0].contains("ca-key.pem") && warned[0].contains("0644"),
        "{log}"
    );
}

#[tokio::test]
async fn kube_flags_accept_a_projected_token_and_bad_combinations_are_named() {
    use svidgate_pki::jwt::mint::{self, Signer};
    let tmp = tempfile::tempdir().unwrap();
    let issuer = "https://kubernetes.default.svc.cluster.local";
    let ec = Signer::p256("k1");
    let jwks = write(tmp.path(), "jwks.json", &mint::jwks(&[&ec]));
    let ca = CaProcess::start(
        tmp.path(),
        &[
            "--kube-issuer",
            issuer,
            "--kube-jwks",
            jwks.to_str().unwrap(),
        ],
    );
    let root = tmp.path().join("cacerts/root-cert.pem");
    let now = svidgate_pki::time::unix_seconds(std::time::SystemTime::now());
    let token = write(
        tmp.path(),
        "istio-token",
        &ec.sign(&mint::claims(
            issuer, "istio-ca", "web", "frontend", now, 3600,
        )),
    );
    fetch_web(ca.addr, &root, &token, 600).await;
    assert!(
        ca.log().contains("auth=\"kubernetes-token\""),
        "{}",
        ca.log()
    );
    drop(ca);

    for (args, expect) in [
        (vec!["--kube-jwks", "x.json"], "needs --kube-issuer"),
        (vec!["--kube-issuer", "http://insecure"], "https://"),
        (
            vec!["--kube-issuer", issuer, "--kube-audience", "vault"],
            "--kube-issuer-ca",
        ),
    ] {
        if expect == "--kube-issuer-ca" && Path::new(sidecar_host::ca::kube::IN_CLUSTER_CA).exists()
        {
            continue; // inside a pod discovery has its default roots
        }
        let out = Command::new(env!("CARGO_BIN_EXE_svidgate"))
            .args(["ca", "serve", "--listen", "127.0.0.1:0"])
            .arg("--ca-dir")
            .arg(tmp.path().join("cacerts"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

/// A certificate for WEB fetched with `token`, valid `secs`: it names WEB.
async fn fetch_web(addr: std::net::SocketAddr, root: &Path, token: &Path, secs: u64) {
    let svid = fetch(
        &client(addr, root, Some(token)),
        &id(WEB),
        Duration::from_secs(secs),
        &bundle(root),
    )
    .await
    .unwrap();
    assert_eq!(*svid.spiffe_id(), id(WEB));
}
