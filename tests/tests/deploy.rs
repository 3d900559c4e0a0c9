//! deploy/ validation, run by `make test`:
//! - every YAML under deploy/ parses and every Kubernetes object validates against the pinned
//!   schemas (scripts/validate-deploy.py, see deploy/schemas/README.md);
//! - every example policy and every WasmPlugin `pluginConfig` passes `svidgate policy check`;
//! - every Envoy config (`deploy/**/envoy*.yaml`, `tests/envoy/*.yaml`) passes
//!   `envoy --mode validate` with the built filter module substituted for `{{WASM}}`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use svidgate_e2e::{
    envoy_validate, filter_wasm, output_text, repo_root, run_ok, svidgate_bin, venv_python,
};

/// The placeholder for the filter module path in Envoy configs under deploy/ and tests/envoy/.
const WASM_PLACEHOLDER: &str = "{{WASM}}";
/// The module path the filter's shipped examples (deploy/envoy/http.yaml, tcp.yaml) name.
const EXAMPLE_WASM_PATH: &str = "/etc/envoy/svidgate_filter.wasm";

/// All files under `dir` (recursively) whose name satisfies `pred`, sorted.
fn files_under(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if pred(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

#[test]
fn deploy_manifests_validate_against_pinned_schemas() -> Result<()> {
    let out = Command::new(venv_python()?)
        .arg(repo_root().join("scripts/validate-deploy.py"))
        .output()
        .context("running scripts/validate-deploy.py")?;
    let text = output_text(&out);
    println!("{text}");
    assert!(out.status.success(), "deploy validation failed:\n{text}");
    assert!(
        text.contains("WasmPlugin shop/svidgate-authz"),
        "validator did not see the WasmPlugin:\n{text}"
    );
    assert!(
        text.contains("svidgate injection template"),
        "validator did not check the template:\n{text}"
    );
    Ok(())
}

/// The built `svidgate` binary, for `svidgate policy check|eval`.
fn policy_cli() -> Result<PathBuf> {
    svidgate_bin()
}

fn policy_check(bin: &Path, file: &Path) -> Result<(bool, String)> {
    svidgate_e2e::run_combined(Command::new(bin).args(["policy", "check"]).arg(file))
}

/// Every `WasmPlugin` `pluginConfig` under deploy/, whole (policy document and `filter`
/// settings), as JSON files in `dir` (extracted by scripts/validate-deploy.py).
fn plugin_configs(dir: &Path) -> Result<Vec<PathBuf>> {
    run_ok(
        Command::new(venv_python()?)
            .arg(repo_root().join("scripts/validate-deploy.py"))
            .arg("--plugin-configs")
            .arg(dir),
        "extracting plugin configs",
    )?;
    Ok(files_under(dir, &|p| {
        p.extension().is_some_and(|e| e == "json")
    }))
}

#[test]
fn example_policies_and_plugin_configs_pass_policy_check() -> Result<()> {
    let examples = files_under(&repo_root().join("deploy/examples"), &is_yaml);
    assert!(
        examples.len() >= 5,
        "expected the example policies, found {examples:?}"
    );
    let bin = policy_cli()?;
    let mut failures = Vec::new();
    for f in &examples {
        let (ok, text) = policy_check(&bin, f)?;
        if !ok {
            failures.push(format!("{}:\n{text}", f.display()));
        }
    }
    let tmp = tempfile::tempdir()?;
    let configs = plugin_configs(&tmp.path().join("plugin-configs"))?;
    assert!(
        configs.len() >= 2,
        "expected the HTTP and the NETWORK WasmPlugin, found {configs:?}"
    );
    // The shipped pluginConfigs carry `filter` settings; they are checked whole.
    for file in &configs {
        let text = std::fs::read_to_string(file)?;
        assert!(
            text.contains("\"filter\""),
            "{} has no filter settings:\n{text}",
            file.display()
        );
    }
    for file in &configs {
        let (ok, text) = policy_check(&bin, file)?;
        if !ok {
            failures.push(format!(
                "WasmPlugin pluginConfig {}:\n{text}",
                file.display()
            ));
        }
    }
    // Negative control: the same check rejects a broken document, naming the file.
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"trustDomain": "cluster.local", "policies": [{"name": "x", "action": "ALLOW", "rulez": []}]}"#,
    )?;
    let (ok, text) = policy_check(&bin, &bad)?;
    assert!(!ok, "policy check accepted an unknown field:\n{text}");
    assert!(
        text.contains("bad.json"),
        "policy check error does not name the file:\n{text}"
    );
    assert!(
        failures.is_empty(),
        "policy check failed:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// The filter module exports a proxy-wasm ABI (not the workspace skeleton's empty module).
fn real_filter_module(wasm: &Path) -> bool {
    let needle = b"proxy_abi_version_";
    std::fs::read(wasm).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
}

/// Envoy configs shipped in deploy/ or used by tests: `deploy/envoy/*.yaml`,
/// `deploy/**/envoy*.yaml`, `tests/envoy/*.yaml`.
fn envoy_configs() -> Vec<PathBuf> {
    let root = repo_root();
    let envoy_deploy = root.join("deploy/envoy");
    let mut v = files_under(&root.join("deploy"), &|p| {
        is_yaml(p) && (file_name(p).starts_with("envoy") || p.starts_with(&envoy_deploy))
    });
    let envoy_dir = root.join("tests/envoy");
    v.extend(files_under(&envoy_dir, &|p| {
        is_yaml(p) && p.parent() == Some(envoy_dir.as_path())
    }));
    v
}

#[test]
fn envoy_configs_validate_with_built_module() -> Result<()> {
    let wasm = filter_wasm()?;
    if !real_filter_module(&wasm) {
        bail!("{} is not a proxy-wasm module", wasm.display());
    }
    let wasm_path = wasm.canonicalize()?;
    let wasm_str = wasm_path.to_str().context("wasm path is not UTF-8")?;
    let configs = envoy_configs();
    assert!(!configs.is_empty(), "no Envoy configs found");
    let tmp = tempfile::tempdir()?;
    let mut failures = Vec::new();
    for (i, f) in configs.iter().enumerate() {
        let text = std::fs::read_to_string(f)?
            .replace(WASM_PLACEHOLDER, wasm_str)
            .replace(EXAMPLE_WASM_PATH, wasm_str);
        let file = tmp.path().join(format!("{i}-{}", file_name(f)));
        std::fs::write(&file, &text)?;
        let (ok, out) = envoy_validate(&file)?;
        if !ok {
            failures.push(format!("{}:\n{out}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "envoy --mode validate failed:\n{}",
        failures.join("\n")
    );

    // Negative control: the filter's on_configure runs during validation, so a broken policy in
    // the deploy example makes Envoy refuse the config.
    let example = repo_root().join("deploy/envoy/envoy-sidecar.yaml");
    let good = std::fs::read_to_string(&example)?.replace(WASM_PLACEHOLDER, wasm_str);
    let broken = good.replace(
        r#""trustDomain": "cluster.local""#,
        r#""trustDomain": "Not A Trust Domain""#,
    );
    assert_ne!(good, broken, "negative control did not change the policy");
    let file = tmp.path().join("broken.yaml");
    std::fs::write(&file, broken)?;
    let (ok, out) = envoy_validate(&file)?;
    assert!(
        !ok,
        "envoy accepted a config whose policy is invalid:\n{out}"
    );
    Ok(())
}

/// Each example policy decides typical requests the way its header comment says
/// (tests/data/example-cases.yaml), evaluated by `svidgate policy eval` - the filter's engine.
#[test]
fn example_policies_decide_as_documented() -> Result<()> {
    let examples = repo_root().join("deploy/examples");
    let bin = policy_cli()?;
    let text = std::fs::read_to_string(repo_root().join("tests/data/example-cases.yaml"))?;
    let cases: serde_json::Value = serde_yaml::from_str(&text)?;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, cases) in cases
        .as_object()
        .context("cases: a map of example file -> cases")?
    {
        let cases = cases.as_array().context("cases list")?;
        let input: String = cases
            .iter()
            .map(|c| format!("{}\n", c["request"]))
            .collect();
        let mut child = Command::new(&bin)
            .args(["policy", "eval", "--policy"])
            .arg(examples.join(file))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().context("stdin")?;
            stdin.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        if !out.status.success() || lines.len() != cases.len() {
            failures.push(format!(
                "{file}: eval failed:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        for (case, line) in cases.iter().zip(lines) {
            let got: serde_json::Value = serde_json::from_str(line)?;
            let want = &case["expect"];
            let mut ok = got["decision"] == want["decision"] && got["policy"] == want["policy"];
            if let Some(dry) = want.get("dryRun") {
                ok &= got["dryRun"]["decision"] == dry["decision"]
                    && got["dryRun"]["policy"] == dry["policy"];
            }
            if !ok {
                failures.push(format!(
                    "{file}: {} -> {got}, expected {want}",
                    case["request"]
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "example policies:\n{}",
        failures.join("\n")
    );
    assert!(checked >= 20, "only {checked} cases checked");
    Ok(())
}

/// Starts `svidgate agent --once` for `id` and returns the directory with its cert-chain.pem and
/// key.pem.
fn once_svid(
    bin: &Path,
    dir: &Path,
    ca_port: u16,
    root: &Path,
    id: &str,
    token: &str,
) -> Result<PathBuf> {
    let name = id.rsplit('/').next().unwrap_or("x");
    let out = dir.join(format!("svid-{name}"));
    let token_file = dir.join(format!("token-{name}"));
    std::fs::write(&token_file, token)?;
    run_ok(
        Command::new(bin)
            .args(["agent", "--once", "--ca-addr"])
            .arg(format!("127.0.0.1:{ca_port}"))
            .arg("--ca-root")
            .arg(root)
            .arg("--spiffe-id")
            .arg(id)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--out")
            .arg(&out),
        &format!("agent --once {id}"),
    )?;
    Ok(out)
}

/// curl over mTLS with the given client SVID (or none); returns the HTTP status ("000" when the
/// TLS handshake is refused).
fn mtls_curl(port: u16, method: &str, path: &str, svid: Option<&Path>) -> Result<String> {
    let mut c = Command::new("curl");
    c.args([
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        "-X",
        method,
    ]);
    if let Some(d) = svid {
        c.arg("--cert")
            .arg(d.join("cert-chain.pem"))
            .arg("--key")
            .arg(d.join("key.pem"));
    }
    c.arg(format!("https://127.0.0.1:{port}{path}"));
    Ok(String::from_utf8_lossy(&c.output()?.stdout)
        .trim()
        .to_owned())
}

/// deploy/envoy/envoy-sidecar.yaml really runs: Envoy gets its certificate and trust bundle from
/// a long-running `svidgate agent` over SDS, requires client certificates, and the filter
/// authorizes by the caller's SPIFFE ID with the policy in the file (frontend may GET /api/*,
/// legacy is denied). Addresses are moved to loopback and free ports.
#[test]
fn deploy_envoy_config_serves_mtls_from_agent_sds() -> Result<()> {
    let bin = svidgate_bin()?;
    if !Command::new(&bin)
        .args(["ca", "serve", "--help"])
        .output()?
        .status
        .success()
    {
        bail!("`svidgate ca serve --help` failed");
    }
    let wasm = filter_wasm()?;
    if !real_filter_module(&wasm) {
        bail!("{} is not a proxy-wasm module", wasm.display());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let ids = [
        (
            "spiffe://cluster.local/ns/shop/sa/backend",
            "tok-backend-0123456789",
        ),
        (
            "spiffe://cluster.local/ns/web/sa/frontend",
            "tok-frontend-0123456789",
        ),
        (
            "spiffe://cluster.local/ns/legacy/sa/old",
            "tok-legacy-0123456789",
        ),
    ];
    let ca_port = svidgate_e2e::free_port()?;
    let tokens: Vec<(&str, &str)> = ids.iter().map(|(id, t)| (*t, *id)).collect();
    let _ca = svidgate_e2e::start_ca(&bin, dir, ca_port, &tokens)?;
    let root = dir.join("ca/root-cert.pem");

    // The backend's agent serving SDS.
    let socket = dir.join("sds.sock");
    let admin = svidgate_e2e::free_port()?;
    let token_file = dir.join("token-backend");
    std::fs::write(&token_file, ids[0].1)?;
    let mut cmd = Command::new(&bin);
    cmd.args(["agent", "--ca-addr"])
        .arg(format!("127.0.0.1:{ca_port}"))
        .arg("--ca-root")
        .arg(&root)
        .arg("--spiffe-id")
        .arg(ids[0].0)
        .arg("--token-file")
        .arg(&token_file)
        .arg("--sds-socket")
        .arg(&socket)
        .arg("--admin-addr")
        .arg(format!("127.0.0.1:{admin}"));
    let mut agent = svidgate_e2e::Proc::spawn("agent", cmd, dir.join("agent.log"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        ensure!(!agent.exited(), "agent exited:\n{}", agent.output());
        let ready = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{admin}/healthz/ready"))
            .output()?;
        if ready.stdout == b"200" {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "agent not ready:\n{}",
            agent.output()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The application behind Envoy.
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("api"))?;
    std::fs::write(www.join("api/items"), "items\n")?;
    let app_port = svidgate_e2e::free_port()?;
    let mut cmd = Command::new(venv_python()?);
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(&www)
        .arg(app_port.to_string());
    let _app = svidgate_e2e::Proc::spawn("app", cmd, dir.join("app.log"))?;

    // Envoy with the deploy config, on loopback and free ports.
    let listen = svidgate_e2e::free_port()?;
    let envoy_admin = svidgate_e2e::free_port()?;
    let cfg = std::fs::read_to_string(repo_root().join("deploy/envoy/envoy-sidecar.yaml"))?;
    let cfg = cfg
        .replace(
            WASM_PLACEHOLDER,
            wasm.canonicalize()?.to_str().context("wasm path")?,
        )
        .replace(
            "/var/run/secrets/workload-spiffe-uds/socket",
            socket.to_str().context("socket path")?,
        )
        .replace(
            "address: 0.0.0.0, port_value: 15006",
            &format!("address: 127.0.0.1, port_value: {listen}"),
        )
        .replace("port_value: 15000", &format!("port_value: {envoy_admin}"))
        .replace("port_value: 8080", &format!("port_value: {app_port}"));
    ensure!(
        !cfg.contains("0.0.0.0"),
        "config still binds a non-loopback address"
    );
    let mut envoy = svidgate_e2e::Envoy::start("envoy-sidecar", dir, &cfg, envoy_admin)?;
    if let Err(e) = envoy.wait_ready(std::time::Duration::from_secs(30)) {
        let sds = envoy.admin("/stats?filter=^sds\\.").unwrap_or_default();
        bail!("{e}\nEnvoy SDS stats:\n{sds}\nagent:\n{}", agent.output());
    }

    let frontend = once_svid(&bin, dir, ca_port, &root, ids[1].0, ids[1].1)?;
    let legacy = once_svid(&bin, dir, ca_port, &root, ids[2].0, ids[2].1)?;
    let cases = [
        ("GET", "/api/items", Some(frontend.as_path()), "200"),
        ("DELETE", "/api/items", Some(frontend.as_path()), "403"),
        ("GET", "/api/items", Some(legacy.as_path()), "403"),
        ("GET", "/api/items", None, "000"),
    ];
    let mut failures = Vec::new();
    for (method, path, svid, want) in cases {
        let got = mtls_curl(listen, method, path, svid)?;
        if got != want {
            failures.push(format!(
                "{method} {path} as {:?}: {got}, expected {want}",
                svid.map(|p| p.display().to_string())
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nenvoy:\n{}",
        failures.join("\n"),
        envoy.proc.output()
    );
    Ok(())
}
