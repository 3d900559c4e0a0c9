//! The real `svidgate` binary on both sides: `svidgate ca serve` on 127.0.0.1:0 and
//! `svidgate agent --once`, over real TLS; the written files are checked with the `openssl`
//! command line, a tool we did not write.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_svidgate");
const TD: &str = "td.test";

/// A `svidgate ca serve` process, killed on drop.
struct CaProc {
    child: Child,
    addr: String,
}

impl Drop for CaProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ca(ca_dir: &Path, extra: &[&str]) -> CaProc {
    let mut child = Command::new(BIN)
        .args([
            "ca",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--generate",
            "--trust-domain",
            TD,
            "--ca-dir",
        ])
        .arg(ca_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("svidgate ca did not start");
        }
    };
    let addr = line
        .trim()
        .strip_prefix("svidgate ca listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    CaProc { child, addr }
}

/// A new temporary directory and a CA generating and serving its `cacerts` subdirectory.
fn ca_in_tempdir(extra: &[&str]) -> (tempfile::TempDir, PathBuf, CaProc) {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("cacerts");
    let ca = start_ca(&ca_dir, extra);
    (tmp, ca_dir, ca)
}

fn agent(ca: &CaProc, ca_dir: &Path, out: &Path, extra: &[&str]) -> Output {
    agent_trusting(ca, &ca_dir.join("root-cert.pem"), out, extra)
}

/// `svidgate agent --once` against `ca`, trusting the roots in `root`.
fn agent_trusting(ca: &CaProc, root: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "agent",
            "--once",
            "--ca-addr",
            &format!("https://{}", ca.addr),
            "--ca-root",
        ])
        .arg(root)
        .arg("--out")
        .arg(out)
        .args(["--trust-domain", TD])
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn openssl_verify(out: &Path) {
    use svidgate_pki::pem::certs_to_pem;
    // Split the written chain: leaf, then the intermediates as -untrusted.
    let chain = std::fs::read_to_string(out.join("cert-chain.pem")).unwrap();
    let blocks = svidgate_pki::pem::parse_certs(chain.as_bytes()).unwrap();
    assert!(blocks.len() >= 2, "leaf + intermediate");
    let leaf = out.join("leaf.pem");
    let inter = out.join("intermediates.pem");
    std::fs::write(&leaf, certs_to_pem(&blocks[..1])).unwrap();
    std::fs::write(&inter, certs_to_pem(&blocks[1..])).unwrap();
    let v = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(out.join("root-cert.pem"))
        .arg("-untrusted")
        .arg(&inter)
        .arg(&leaf)
        .output()
        .expect("the openssl command line");
    assert!(
        v.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(String::from_utf8_lossy(&v.stdout).contains(": OK"));
    // The key matches the leaf: compare the public keys openssl derives from both.
    let pk = |args: &[&str], file: &PathBuf| {
        let o = Command::new("openssl")
            .args(args)
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert_eq!(
        pk(&["x509", "-noout", "-pubkey", "-in"], &leaf),
        pk(&["pkey", "-pubout", "-in"], &out.join("key.pem"))
    );
    std::fs::remove_file(leaf).unwrap();
    std::fs::remove_file(inter).unwrap();
}

#[test]
fn agent_once_against_svidgate_ca_with_a_token_for_every_key_type() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("cacerts");
    let tokens = tmp.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("web-token spiffe://{TD}/ns/web/sa/frontend\n"),
    )
    .unwrap();
    let ca = start_ca(
        &ca_dir,
        &["--tokens", tokens.to_str().unwrap(), "--max-ttl", "2h"],
    );
    let token = tmp.path().join("token");
    std::fs::write(&token, "web-token\n").unwrap();
    let tok = token.to_str().unwrap();

    for kt in ["ecdsa-p256", "ecdsa-p384", "rsa-2048"] {
        let out = tmp.path().join(format!("out-{kt}"));
        let o = agent(
            &ca,
            &ca_dir,
            &out,
            &[
                "--namespace",
                "web",
                "--service-account",
                "frontend",
                "--key-type",
                kt,
                "--cert-ttl",
                "1h",
                "--token-file",
                tok,
            ],
        );
        assert!(
            o.status.success(),
            "{kt}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{kt}");
        assert_eq!(
            std::fs::read_to_string(out.join("root-cert.pem")).unwrap(),
            std::fs::read_to_string(ca_dir.join("root-cert.pem")).unwrap()
        );
        openssl_verify(&out);
        // Key material never reaches the logs.
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("PRIVATE KEY") && !stderr.contains("CERTIFICATE REQUEST"));
    }

    // A wrong token: PERMISSION_DENIED, exit code 2, nothing written.
    std::fs::write(&token, "not-the-token\n").unwrap();
    let out = tmp.path().join("out-denied");
    let denied = |extra: &[&str]| agent(&ca, &ca_dir, &out, extra);
    let web = format!("spiffe://{TD}/ns/web/sa/frontend");
    let o = denied(&["--spiffe-id", &web, "--token-file", tok]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("PermissionDenied"), "{stderr}");
    assert!(!out.join("key.pem").exists() && !out.join("cert-chain.pem").exists());

    // The right token, another identity: PERMISSION_DENIED.
    std::fs::write(&token, "web-token\n").unwrap();
    let api = ["--namespace", "api", "--service-account", "backend"];
    let o = denied(&[&api[..], &["--token-file", tok]].concat());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("PermissionDenied"));
    assert!(!out.join("cert-chain.pem").exists());
}

#[test]
fn agent_once_with_insecure_trust_csr_and_a_capped_ttl() {
    let (tmp, ca_dir, ca) = ca_in_tempdir(&["--insecure-trust-csr", "--max-ttl", "10m"]);
    let out = tmp.path().join("out");
    let demo = format!("spiffe://{TD}/ns/demo/sa/x");
    let args = ["--spiffe-id", &demo, "--cert-ttl", "24h"];
    let o = agent(&ca, &ca_dir, &out, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    openssl_verify(&out);
    // openssl: the leaf expires within 10 minutes (+ margin) and is for our ID.
    let check = Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "700", "-in"])
        .arg(out.join("cert-chain.pem"))
        .output()
        .unwrap();
    assert!(!check.status.success(), "a 24h request is capped to 10m");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(out.join("cert-chain.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("URI:spiffe://{TD}/ns/demo/sa/x"))
    );
}

#[test]
fn bad_settings_are_reported_by_name_before_anything_happens() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root.pem");
    let ck = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
    std::fs::write(&root, ck.cert.pem()).unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--cert-ttl", "soon"], &[], "SECRET_TTL"),
        (&[], &[("SECRET_TTL", "forever")], "--cert-ttl (SECRET_TTL)"),
        (&["--key-type", "dsa"], &[], "--key-type"),
        (
            &[],
            &[("ECC_SIGNATURE_ALGORITHM", "RSA")],
            "ECC_SIGNATURE_ALGORITHM",
        ),
        (
            &[],
            &[("SECRET_GRACE_PERIOD_RATIO", "2")],
            "SECRET_GRACE_PERIOD_RATIO",
        ),
        (&[], &[("TRUST_DOMAIN", "x")], "REMOVE-ROOT"),
    ];
    for (args, envs, expect) in cases {
        let mut expect = *expect;
        if expect == "REMOVE-ROOT" {
            std::fs::remove_file(&root).unwrap();
            expect = "--ca-root (CA_ROOT_CERT)";
        }
        let mut cmd = Command::new(BIN);
        cmd.args(["agent", "--once", "--out"])
            .arg(tmp.path().join("out"))
            .args([
                "--ca-addr",
                "https://127.0.0.1:1",
                "--spiffe-id",
                "spiffe://td.test/x",
                "--ca-root",
            ])
            .arg(&root)
            .args(*args);
        for (k, v) in *envs {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?} {envs:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(expect), "{args:?} {envs:?}: {stderr}");
    }
    // --help documents the flags and their env vars.
    let help = Command::new(BIN)
        .args(["agent", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for s in [
        "--ca-addr",
        "CA_ADDR",
        "POD_NAMESPACE",
        "SERVICE_ACCOUNT",
        "TRUST_DOMAIN",
        "SECRET_TTL",
        "--key-type",
        "--once",
        "OUTPUT_CERTS",
    ] {
        assert!(help.contains(s), "--help lacks {s}");
    }
}

#[test]
fn sighup_reloads_the_ca_directory() {
    let (tmp, ca_dir, ca) = ca_in_tempdir(&["--insecure-trust-csr", "--watch-interval", "0s"]);
    let new_dir = tmp.path().join("new");
    let o = Command::new(BIN)
        .args(["ca", "init", "--trust-domain", TD, "--ca-dir"])
        .arg(&new_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let old_root = std::fs::read_to_string(ca_dir.join("root-cert.pem")).unwrap();
    let new_root = std::fs::read_to_string(new_dir.join("root-cert.pem")).unwrap();
    let both = tmp.path().join("both.pem");
    std::fs::write(&both, format!("{old_root}{new_root}")).unwrap();
    for f in sidecar_host::ca::store::ALL_FILES {
        std::fs::copy(new_dir.join(f), ca_dir.join(f)).unwrap();
    }
    let id = format!("spiffe://{TD}/ns/a/sa/b");
    let run = |out: &Path| agent_trusting(&ca, &both, out, &["--spiffe-id", &id]);
    // Not reloaded yet (watching is off): still the old root.
    let out = tmp.path().join("before");
    assert!(run(&out).status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("root-cert.pem")).unwrap(),
        old_root
    );
    let k = Command::new("kill")
        .args(["-HUP", &ca.child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let out = tmp.path().join("after");
    for _ in 0..50 {
        let o = run(&out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if std::fs::read_to_string(out.join("root-cert.pem")).unwrap() == new_root {
            openssl_verify(&out);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("SIGHUP did not switch the CA to the new root");
}
