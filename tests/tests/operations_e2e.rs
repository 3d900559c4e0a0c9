//! The operations pack (deploy/observability/, deploy/envoy/*.yaml `stats_config`,
//! deploy/istio/stats-tags.yaml) against real processes.
//!
//! 1. `istio_bootstrap_override_turns_policy_counters_into_labels`: a real Envoy 1.40 with the
//!    filter, started the way istio-agent starts it with `sidecar.istio.io/bootstrapOverride`: an
//!    Istio-like bootstrap (`use_all_default_tags: false`, Istio's own tags) plus the ConfigMap's
//!    `custom_bootstrap.json` as `--config-yaml`. The per-policy counters show on
//!    `/stats/prometheus` as `svidgate_policy{policy,verdict}`, Istio's tags still apply (the
//!    override appends); without the override they are one metric name per policy.
//! 2. `prometheus_scrapes_agent_ca_and_envoy_every_query_returns_data`: a real Prometheus server
//!    (Debian `prometheus`) on 127.0.0.1 scrapes two `svidgate agent`s, `svidgate ca` (its
//!    `--admin-addr`) and an Envoy with the filter (stats_config taken from
//!    deploy/envoy/http.yaml) while a bounded workload runs (~15 s). Then every dashboard query and every alert's probe (the expression
//!    without its threshold, listed by `scripts/observability.py queries`) must return at least
//!    one series through the HTTP API, every alert `expr` must evaluate without error, and
//!    Prometheus's own evaluation of the loaded rule file must report every rule healthy.
//!
//! Istio's own metrics (`pilot_total_xds_rejects` from istiod, `istio_agent_wasm_remote_fetch_count`
//! from istio-agent) have no source here: a stand-in target serves those two series with the
//! names and labels Istio exports (istio/istio pkg/wasm/monitoring.go, pilot's xds monitoring),
//! so their alert expressions are evaluated against series of the real shape; this is the only
//! part that is not a real component.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use svidgate_e2e::{
    ca_init, dev_ca_command, filter_wasm, free_port, http_get, http_request, repo_root, run_ok,
    sds_api, sds_cluster, svidgate_bin, venv_python, wait_until, Envoy, Proc,
};

const TD: &str = "cluster.local";
const FRONTEND: &str = "spiffe://cluster.local/ns/web/sa/frontend";
const BACKEND: &str = "spiffe://cluster.local/ns/shop/sa/backend";

// ---------------------------------------------------------------------------------------------
// Small helpers

/// HTTP/1.1 request to 127.0.0.1:port: (status, body).
fn request(port: u16, method: &str, path: &str) -> Result<(u16, String)> {
    http_request(port, method, path).map(|(code, _, body)| (code, body))
}

fn prometheus_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN") {
        return Ok(PathBuf::from(p));
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("prometheus");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("prometheus not found on PATH (run `make setup`: Debian package prometheus)")
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters kept).
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Envoy configuration

/// The filter's policy document: GETs of /api/* by the frontend are allowed; /admin/* is denied
/// to everyone; a dry-run DENY of /api/private shows what enforcing it would deny.
fn policy_document() -> Value {
    json!({
        "trustDomain": TD,
        "policies": [
            {"name": "deny-admin", "action": "DENY",
             "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]},
            {"name": "lock-private", "action": "DENY", "dryRun": true,
             "rules": [{"to": [{"operation": {"paths": ["/api/private"]}}]}]},
            {"name": "frontend-reads", "action": "ALLOW",
             "rules": [{
                 "from": [{"source": {"principals": ["cluster.local/ns/web/sa/frontend"]}}],
                 "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}]
             }]}
        ]
    })
}

fn loopback(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// An HTTP connection manager answering 200 "ok" to everything, behind `filters`.
fn hcm(name: &str, filters: Vec<Value>) -> Value {
    let mut http_filters = filters;
    http_filters.push(
        json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
    );
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "route_config": {"virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]
            }]},
            "http_filters": http_filters
        }
    })
}

fn svidgate_filter(wasm: &Path) -> Value {
    json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": "svidgate",
            "root_id": "svidgate",
            "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm}}},
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": policy_document().to_string()
            },
            "fail_open": false
        }
    }})
}

/// A plaintext listener with the filter (every request there has no peer identity).
fn plain_listener(name: &str, port: u16, wasm: &Path) -> Value {
    json!({
        "name": name,
        "address": loopback(port),
        "filter_chains": [{"filters": [hcm(name, vec![svidgate_filter(wasm)])]}]
    })
}

/// The `stats_config` block shipped in deploy/envoy/http.yaml (as JSON).
fn shipped_stats_config() -> Result<Value> {
    let text = std::fs::read_to_string(repo_root().join("deploy/envoy/http.yaml"))?;
    let doc: Value = serde_yaml::from_str(&text)?;
    let sc = doc
        .get("stats_config")
        .context("deploy/envoy/http.yaml has no stats_config")?;
    Ok(sc.clone())
}

/// The Istio bootstrap override file from deploy/istio/stats-tags.yaml.
fn istio_override() -> Result<String> {
    let text = std::fs::read_to_string(repo_root().join("deploy/istio/stats-tags.yaml"))?;
    let doc: Value = serde_yaml::from_str(&text)?;
    let file = doc["data"]["custom_bootstrap.json"]
        .as_str()
        .context("stats-tags.yaml: no data.custom_bootstrap.json")?;
    Ok(file.to_owned())
}

/// The lines of a Prometheus exposition whose metric name is `name` (any labels).
fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. The Istio form of the stats tags

#[test]
fn istio_bootstrap_override_turns_policy_counters_into_labels() -> Result<()> {
    let wasm = filter_wasm()?;
    let tmp = tempfile::Builder::new().prefix("ops-tags-").tempdir()?;
    let dir = tmp.path();
    let (admin, port) = (free_port()?, free_port()?);
    // What matters of Istio's generated bootstrap here: its stats_config (default tags off, its
    // own tag regexes; two of them, verbatim from Istio's bootstrap template).
    let base = json!({
        "node": {"id": "sidecar~127.0.0.1~backend-0.shop~shop.svc.cluster.local", "cluster": "backend.shop"},
        "admin": {"address": loopback(admin)},
        "stats_config": {
            "use_all_default_tags": false,
            "stats_tags": [
                {"tag_name": "cluster_name", "regex": "^cluster\\.((.+?(\\..+?\\.svc\\.cluster\\.local)?)\\.)"},
                {"tag_name": "http_conn_manager_prefix", "regex": "^http\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"}
            ]
        },
        "static_resources": {
            "listeners": [plain_listener("inbound", port, &wasm)],
            "clusters": [{"name": "outbound|8080||backend.shop.svc.cluster.local", "type": "STATIC",
                          "connect_timeout": "1s",
                          "load_assignment": {"cluster_name": "x", "endpoints": []}}]
        }
    });
    let base = base.to_string();

    let run = |name: &str, override_yaml: Option<&str>| -> Result<String> {
        let extra: Vec<&str> = override_yaml
            .map(|o| vec!["--config-yaml", o])
            .unwrap_or_default();
        let mut envoy = Envoy::start_with(name, dir, &base, admin, &extra)?;
        envoy.wait_ready(Duration::from_secs(30))?;
        // One request without a peer identity: counted, denied.
        let (code, _) = request(port, "GET", "/api/x")?;
        ensure!(code == 403, "plaintext request not denied: {code}");
        // The filter adds its counters to Envoy's every 200 ms: wait for this one.
        let counted = |t: &str| {
            series(t, "svidgate_no_identity")
                .iter()
                .any(|l| l.ends_with(" 1"))
        };
        let mut text = String::new();
        wait_until("svidgate_no_identity 1", Duration::from_secs(5), || {
            text = envoy.admin("/stats/prometheus").unwrap_or_default();
            counted(&text)
        })?;
        envoy.proc.stop();
        Ok(text)
    };

    // Without the override: one metric name per policy and verdict.
    let plain = run("envoy-no-override", None)?;
    ensure!(
        plain.contains("svidgate_policy_frontend-reads_allowed")
            || plain.contains("svidgate_policy_frontend_reads_allowed"),
        "expected per-policy metric names without the tags:\n{}",
        series_dump(&plain)
    );
    ensure!(
        series(&plain, "svidgate_policy").is_empty(),
        "no tags, yet a labelled svidgate_policy:\n{}",
        series_dump(&plain)
    );

    // With the ConfigMap's file as --config-yaml (what istio-agent does with the annotation).
    let tagged = run("envoy-istio-override", Some(&istio_override()?))?;
    let lines = series(&tagged, "svidgate_policy");
    for policy in ["deny-admin", "lock-private", "frontend-reads"] {
        for verdict in ["allowed", "denied"] {
            let want = format!("svidgate_policy{{policy=\"{policy}\",verdict=\"{verdict}\"}} 0");
            ensure!(
                lines.iter().any(|l| *l == want),
                "missing {want} in:\n{}",
                series_dump(&tagged)
            );
        }
    }
    ensure!(
        lines.len() == 6,
        "exactly 3 policies x 2 verdicts: {lines:#?}"
    );
    ensure!(
        !tagged.contains("svidgate_policy_"),
        "an untagged per-policy name is left:\n{}",
        series_dump(&tagged)
    );
    // Istio's own tags still work: the override's stats_tags were appended, not substituted.
    ensure!(
        tagged.contains("cluster_name=\"outbound|8080||backend.shop.svc.cluster.local\""),
        "Istio's cluster_name tag lost after the merge"
    );
    // The fixed counters keep their names; the plaintext request counted as no identity.
    ensure!(
        series(&tagged, "svidgate_no_identity")
            .iter()
            .any(|l| l.ends_with(" 1")),
        "svidgate_no_identity 1 expected:\n{}",
        series_dump(&tagged)
    );
    Ok(())
}

/// The svidgate lines of an exposition (for failure messages).
fn series_dump(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("svidgate"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// 2. A real Prometheus

struct Agent {
    socket: PathBuf,
    admin: u16,
    proc: Proc,
}

fn start_agent(work: &Path, name: &str, id: &str, ca_port: u16, root: &Path) -> Result<Agent> {
    let socket = work.join(format!("{name}.sock"));
    let admin = free_port()?;
    let mut cmd = Command::new(svidgate_bin()?);
    cmd.arg("agent")
        .arg("--ca-addr")
        .arg(format!("https://127.0.0.1:{ca_port}"))
        .arg("--ca-root")
        .arg(root)
        .args([
            "--spiffe-id",
            id,
            "--cert-ttl",
            "10s",
            "--rotation-ratio",
            "0.5",
        ])
        .arg("--sds-socket")
        .arg(&socket)
        .arg("--admin-addr")
        .arg(format!("127.0.0.1:{admin}"));
    let proc = Proc::spawn(name, cmd, work.join(format!("{name}.log")))?;
    Ok(Agent {
        socket,
        admin,
        proc,
    })
}

impl Agent {
    fn ready(&self) -> bool {
        request(self.admin, "GET", "/healthz/ready").is_ok_and(|r| r.0 == 200)
    }
}

/// The stand-in for istiod's and istio-agent's metrics endpoints (see the module doc).
/// Stopped (thread joined) when dropped.
struct StandIn {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn istio_standin() -> Result<StandIn> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let body = "# TYPE pilot_total_xds_rejects counter\n\
        pilot_total_xds_rejects{type=\"type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\"} 0\n\
        # TYPE istio_agent_wasm_remote_fetch_count counter\n\
        istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n";
    let handle = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    let _ = sock.set_nonblocking(false);
                    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf);
                    let _ = write!(
                        sock,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Ok(StandIn {
        port,
        stop,
        thread: Some(handle),
    })
}

/// Runs a PromQL instant query; returns the result vector.
fn query(prom: u16, expr: &str) -> Result<Vec<Value>> {
    let body = http_get(prom, &format!("/api/v1/query?query={}", urlencode(expr)))?;
    let v: Value =
        serde_json::from_str(&body).with_context(|| format!("query {expr}: answer {body}"))?;
    ensure!(
        v["status"] == "success",
        "query {expr}: {}",
        v["error"].as_str().unwrap_or(&body)
    );
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Dashboard and alert queries, from the single source.
fn observability_queries() -> Result<Value> {
    let out = run_ok(
        Command::new(venv_python()?)
            .arg(repo_root().join("scripts/observability.py"))
            .arg("queries"),
        "observability.py queries",
    )?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Grafana's `$__rate_interval` for a 1 s scrape interval: at least 4 scrapes.
fn grafana_expr(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
}

#[test]
fn prometheus_scrapes_agent_ca_and_envoy_every_query_returns_data() -> Result<()> {
    let wasm = filter_wasm()?;
    let prometheus = prometheus_bin()?;
    let tmp = tempfile::Builder::new().prefix("ops-prom-").tempdir()?;
    let work = tmp.path().to_path_buf();
    if std::env::var_os("OPS_E2E_KEEP").is_some() {
        eprintln!("work dir kept: {}", work.display());
        std::mem::forget(tmp);
    }

    // CA, agents.
    let ca_dir = work.join("ca");
    ca_init(&svidgate_bin()?, &ca_dir, TD)?;
    let root = ca_dir.join("root-cert.pem");
    let (ca_port, ca_admin) = (free_port()?, free_port()?);
    let mut ca_cmd = dev_ca_command(&svidgate_bin()?, ca_port, &ca_dir, TD);
    ca_cmd
        .arg("--admin-addr")
        .arg(format!("127.0.0.1:{ca_admin}"));
    let mut ca = Proc::spawn("ca", ca_cmd, work.join("ca.log"))?;
    wait_until("the CA to listen", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", ca_port)).is_ok()
    })
    .with_context(|| ca.output())?;
    let mut server_agent = start_agent(&work, "agent-backend", BACKEND, ca_port, &root)?;
    let mut client_agent = start_agent(&work, "agent-frontend", FRONTEND, ca_port, &root)?;
    for a in [&server_agent, &client_agent] {
        wait_until("agent ready", Duration::from_secs(20), || a.ready())
            .with_context(|| a.proc.output())?;
    }

    // Server Envoy: mTLS listener (certificates over SDS from the backend agent) and a
    // plaintext listener, both with the filter; the shipped stats_config.
    let (s_admin, s_mtls, s_plain) = (free_port()?, free_port()?, free_port()?);
    let server_cfg = json!({
        "node": {"id": "backend", "cluster": "backend"},
        "admin": {"address": loopback(s_admin)},
        "stats_config": shipped_stats_config()?,
        "static_resources": {
            "listeners": [
                {
                    "name": "inbound_mtls",
                    "address": loopback(s_mtls),
                    "filter_chains": [{
                        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "require_client_certificate": true,
                            "common_tls_context": {
                                "tls_certificate_sds_secret_configs": [sds_api("default", "GRPC")],
                                "validation_context_sds_secret_config": sds_api("ROOTCA", "GRPC")
                            }
                        }},
                        "filters": [hcm("inbound_mtls", vec![svidgate_filter(&wasm)])]
                    }]
                },
                plain_listener("inbound_plain", s_plain, &wasm)
            ],
            "clusters": [sds_cluster(&server_agent.socket)]
        }
    });
    // Client Envoy: plaintext in, mTLS out with the frontend's SVID (SDS from its agent).
    let (c_admin, c_port) = (free_port()?, free_port()?);
    let client_cfg = json!({
        "node": {"id": "frontend", "cluster": "frontend"},
        "admin": {"address": loopback(c_admin)},
        "static_resources": {
            "listeners": [{
                "name": "outbound",
                "address": loopback(c_port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "outbound",
                        "route_config": {"virtual_hosts": [{"name": "up", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "5s"}}]}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                    }
                }]}]
            }],
            "clusters": [
                {
                    "name": "backend",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": loopback(s_mtls)}}]}]},
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "common_tls_context": {
                            "tls_certificate_sds_secret_configs": [sds_api("default", "GRPC")],
                            "combined_validation_context": {
                                "default_validation_context": {
                                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": BACKEND}}]
                                },
                                "validation_context_sds_secret_config": sds_api("ROOTCA", "GRPC")
                            }
                        }
                    }}
                },
                sds_cluster(&client_agent.socket)
            ]
        }
    });
    let mut server = Envoy::start("envoy-backend", &work, &server_cfg.to_string(), s_admin)?;
    let mut client = Envoy::start("envoy-frontend", &work, &client_cfg.to_string(), c_admin)?;
    server.wait_ready(Duration::from_secs(30))?;
    client.wait_ready(Duration::from_secs(30))?;
    let (code, body) = request(c_port, "GET", "/api/items")?;
    ensure!(
        code == 200 && body == "ok",
        "allowed request: {code} {body}"
    );

    // Prometheus on loopback, scraping every second, with the alert rules loaded.
    let standin = istio_standin()?;
    let prom_port = free_port()?;
    let targets = |ports: &[u16]| -> Value {
        json!([{"targets": ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>()}])
    };
    let prom_cfg = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [repo_root().join("deploy/observability/svidgate.rules.yml")],
        "scrape_configs": [
            {"job_name": "svidgate-agent", "static_configs": targets(&[server_agent.admin, client_agent.admin])},
            {"job_name": "svidgate-ca", "static_configs": targets(&[ca_admin])},
            {"job_name": "envoy", "metrics_path": "/stats/prometheus", "static_configs": targets(&[s_admin])},
            {"job_name": "istio-standin", "static_configs": targets(&[standin.port])}
        ]
    });
    let prom_file = work.join("prometheus.yml");
    std::fs::write(&prom_file, serde_yaml::to_string(&prom_cfg)?)?;
    let mut prom_cmd = Command::new(&prometheus);
    prom_cmd
        .arg(format!("--config.file={}", prom_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let mut prom = Proc::spawn("prometheus", prom_cmd, work.join("prometheus.log"))?;

    let result = (|| -> Result<()> {
        wait_until("prometheus ready", Duration::from_secs(30), || {
            request(prom_port, "GET", "/-/ready").is_ok_and(|r| r.0 == 200)
        })
        .with_context(|| prom.output())?;

        // Bounded workload: ~15 s, one round every 100 ms.
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<[u64; 5]> {
                let mut n = [0u64; 5];
                while !stop.load(Ordering::Relaxed) {
                    let round = [
                        (c_port, "GET", "/api/items", 200),   // allowed by frontend-reads
                        (c_port, "GET", "/api/private", 200), // allowed; dry-run denied
                        (c_port, "GET", "/admin/users", 403), // denied by deny-admin
                        (c_port, "POST", "/api/items", 403),  // no ALLOW matches
                        (s_plain, "GET", "/api/items", 403),  // no identity
                    ];
                    for (i, (port, method, path, want)) in round.into_iter().enumerate() {
                        let (code, _) = request(port, method, path)?;
                        ensure!(code == want, "{method} {path}: {code}, expected {want}");
                        n[i] += 1;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(n)
            })
        };
        std::thread::sleep(Duration::from_secs(15));
        stop.store(true, Ordering::Relaxed);
        let counts = load
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        eprintln!("workload rounds: {counts:?}");
        // Let the last requests be scraped.
        std::thread::sleep(Duration::from_secs(3));

        // Every target was scraped.
        let up = query(prom_port, "up")?;
        ensure!(up.len() == 5, "5 targets expected: {up:?}");
        for s in &up {
            ensure!(s["value"][1] == "1", "target down: {s}");
        }

        // Per-policy counters arrive as one metric with policy and verdict labels.
        let v = |expr: &str| -> Result<f64> {
            let r = query(prom_port, expr)?;
            let s = r.first().with_context(|| format!("{expr}: no data"))?;
            Ok(s["value"][1].as_str().unwrap_or("nan").parse()?)
        };
        ensure!(v("svidgate_policy{policy=\"frontend-reads\",verdict=\"allowed\"}")? >= 1.0);
        ensure!(v("svidgate_policy{policy=\"deny-admin\",verdict=\"denied\"}")? >= 1.0);
        ensure!(v("svidgate_dry_run_denied")? >= 1.0);
        ensure!(v("svidgate_no_identity")? >= 1.0);
        ensure!(v("sum(svidgate_rotations_total{result=\"ok\"})")? >= 2.0);
        ensure!(v("svidgate_ca_issued_total{key_type=\"ecdsa-p256\"}")? >= 2.0);
        ensure!(v("svidgate_ca_cert_not_after_seconds - time()")? > 0.0);

        let queries = observability_queries()?;
        let mut failures = Vec::new();
        let (mut n, mut alerts) = (0, 0);
        for q in queries["dashboard"].as_array().into_iter().flatten() {
            let expr = grafana_expr(q["expr"].as_str().unwrap_or_default());
            n += 1;
            match query(prom_port, &expr) {
                Ok(r) if !r.is_empty() => {}
                Ok(_) => failures.push(format!("panel {}: no data for {expr}", q["panel"])),
                Err(e) => failures.push(format!("panel {}: {e:#}", q["panel"])),
            }
        }
        for a in queries["alerts"].as_array().into_iter().flatten() {
            let (name, expr, probe) = (
                a["alert"].as_str().unwrap_or_default(),
                a["expr"].as_str().unwrap_or_default(),
                a["probe"].as_str().unwrap_or_default(),
            );
            n += 2;
            alerts += 1;
            if let Err(e) = query(prom_port, expr) {
                failures.push(format!("alert {name}: expr fails: {e:#}"));
            }
            match query(prom_port, probe) {
                Ok(r) if !r.is_empty() => {}
                Ok(_) => failures.push(format!("alert {name}: no data for its probe {probe}")),
                Err(e) => failures.push(format!("alert {name}: probe: {e:#}")),
            }
        }
        ensure!(
            failures.is_empty(),
            "{} of {n} queries failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        eprintln!(
            "{} dashboard queries and {alerts} alert probes returned data; {alerts} alert expressions evaluated",
            n - 2 * alerts
        );

        // Prometheus evaluated the rule file itself: every rule healthy.
        let rules: Value = serde_json::from_str(&http_get(prom_port, "/api/v1/rules")?)?;
        let mut seen = 0;
        for g in rules["data"]["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                seen += 1;
                ensure!(r["health"] == "ok", "rule not healthy: {r}");
            }
        }
        let want = queries["alerts"].as_array().map_or(0, Vec::len);
        ensure!(seen == want, "{seen} rules evaluated, {want} defined");

        if let Some(out) = std::env::var_os("OPS_E2E_DUMP") {
            dump_ranges(prom_port, &queries, Path::new(&out))?;
        }
        Ok(())
    })();

    prom.stop();
    drop(standin);
    client.proc.stop();
    server.proc.stop();
    client_agent.proc.stop();
    server_agent.proc.stop();
    ca.stop();
    result.with_context(|| {
        format!(
            "prometheus log:\n{}\nserver envoy log (tail):\n{}",
            prom.output(),
            tail(&server.proc.output(), 40)
        )
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Writes the dashboard queries' range results (last 20 s, 1 s step) as JSON, for
/// scripts/render_dashboard.py (the picture in docs/operations.md).
fn dump_ranges(prom: u16, queries: &Value, out: &Path) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut panels = Vec::new();
    for q in queries["dashboard"].as_array().into_iter().flatten() {
        let expr = grafana_expr(q["expr"].as_str().unwrap_or_default());
        let body = http_get(
            prom,
            &format!(
                "/api/v1/query_range?query={}&start={}&end={now}&step=1",
                urlencode(&expr),
                now - 20
            ),
        )?;
        let v: Value = serde_json::from_str(&body)?;
        panels.push(
            json!({"panel": q["panel"], "legend": q["legend"], "expr": expr,
                           "result": v["data"]["result"]}),
        );
    }
    std::fs::write(out, serde_json::to_string_pretty(&panels)?)?;
    Ok(())
}
