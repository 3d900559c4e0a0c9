//! `ca_storm`: the CA load client of `make bench` (`scripts/bench.py`). Against a running
//! `svidgate ca` on loopback it measures
//!
//! - a **storm**: `--agents` workloads starting at once, each with its own key, CSR, bearer
//!   token and TLS connection, all released together: per-agent latency from release to a
//!   verified certificate (p50, p99, max);
//! - **sustained signing**: `--concurrency` workers signing back to back for `--seconds`
//!   (each call its own connection, as an agent's), P-256 signatures per second.
//!
//! Every answer is checked: the leaf must be a valid X509-SVID for the agent's SPIFFE ID. Any
//! error or wrong answer is counted and makes the exit status non-zero. Tokens are read from
//! `--dir/token-<i>` for agent `i` (ID `spiffe://<td>/ns/storm/sa/agent-<i>`); the caller writes
//! them and the CA's tokens file. Bounded: every call has a deadline, the run a time limit.
//! Writes one JSON object to stdout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sidecar_host::agent::ca_client::{CaClient, CaClientConfig, IstioCaClient, RetryPolicy};
use svidgate_core::SpiffeId;
use svidgate_pki::{KeyType, WorkloadKey};

#[derive(Debug)]
struct Args {
    addr: String,
    root: PathBuf,
    dir: PathBuf,
    trust_domain: String,
    agents: usize,
    concurrency: usize,
    seconds: f64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        addr: String::new(),
        root: PathBuf::new(),
        dir: PathBuf::new(),
        trust_domain: "bench.local".to_owned(),
        agents: 1000,
        concurrency: 32,
        seconds: 5.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => a.addr = value,
            "--root" => a.root = value.into(),
            "--dir" => a.dir = value.into(),
            "--trust-domain" => a.trust_domain = value,
            "--agents" => a.agents = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.addr.is_empty() || a.agents == 0 || a.concurrency == 0 || a.agents > 20_000 {
        bail!("usage: ca_storm --addr https://127.0.0.1:PORT --root FILE --dir DIR [--agents N ≤ 20000] [--concurrency C] [--seconds S]");
    }
    Ok(a)
}

/// One prepared workload: its client (token), ID and CSR.
struct Agent {
    client: IstioCaClient,
    id: SpiffeId,
    csr: String,
}

fn prepare(a: &Args, i: usize) -> anyhow::Result<Agent> {
    let id = SpiffeId::parse(&format!(
        "spiffe://{}/ns/storm/sa/agent-{i}",
        a.trust_domain
    ))?;
    let key = WorkloadKey::generate(KeyType::EcdsaP256)?;
    let csr = svidgate_pki::csr::build(&id, &key)?;
    let client = IstioCaClient::new(CaClientConfig {
        addr: a.addr.clone(),
        root_cert: a.root.clone(),
        token_file: Some(a.dir.join(format!("token-{i}"))),
        cluster_id: None,
        tls_server_name: None,
        request_timeout: Duration::from_secs(30),
        // One attempt: the storm measures what the CA does, not the retries.
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
    })?;
    Ok(Agent { client, id, csr })
}

/// Signs once and checks the answer: Ok(latency) or Err(what went wrong).
async fn sign(agent: &Agent) -> Result<Duration, String> {
    let t = Instant::now();
    let chain = agent
        .client
        .sign(&agent.csr, Duration::from_secs(3600))
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = t.elapsed();
    let leaf = chain.first().ok_or("empty chain")?;
    let id = svidgate_core::svid::check_leaf_pem(leaf.as_bytes()).map_err(|e| e.to_string())?;
    if id != agent.id {
        return Err(format!("certificate for {id}, asked for {}", agent.id));
    }
    Ok(elapsed)
}

/// This process's CPU time (user + system) from `/proc/self/stat`, in seconds.
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn run(a: Args) -> anyhow::Result<serde_json::Value> {
    let agents: Vec<Arc<Agent>> = (0..a.agents)
        .map(|i| prepare(&a, i).map(Arc::new))
        .collect::<anyhow::Result<_>>()?;

    // Storm: every agent released at once.
    let gate = Arc::new(tokio::sync::Barrier::new(a.agents + 1));
    let mut tasks = Vec::with_capacity(a.agents);
    for agent in &agents {
        let (agent, gate) = (agent.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            sign(&agent).await
        }));
    }
    gate.wait().await;
    let started = Instant::now();
    let mut lat = Vec::with_capacity(a.agents);
    let mut errors: Vec<String> = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(Ok(d))) => lat.push(d),
            Ok(Ok(Err(e))) => errors.push(e),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("no answer within 60 s".to_owned()),
        }
    }
    let storm_s = started.elapsed().as_secs_f64();
    lat.sort();

    // Sustained: `concurrency` workers, back to back, for `seconds`.
    let cpu0 = own_cpu_seconds();
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let t0 = Instant::now();
    let mut workers = Vec::with_capacity(a.concurrency);
    for w in 0..a.concurrency {
        let agents = agents.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut errs) = (0u64, Vec::new());
            let mut i = w;
            while Instant::now() < deadline {
                let Some(agent) = agents.get(i % agents.len()) else {
                    break;
                };
                match sign(agent).await {
                    Ok(_) => ok += 1,
                    Err(e) => errs.push(e),
                }
                i += a.concurrency;
            }
            (ok, errs)
        }));
    }
    let mut signed = 0u64;
    for w in workers {
        let (ok, errs) = w.await?;
        signed += ok;
        errors.extend(errs);
    }
    let sustained_s = t0.elapsed().as_secs_f64();
    // This client's own CPU per certificate (its TLS handshakes, the chain checks): it shares
    // the machine with the CA.
    let client_cpu_ms_per_sign = match (cpu0, own_cpu_seconds()) {
        (Some(c0), Some(c1)) if signed > 0 => Some((c1 - c0) / signed as f64 * 1e3),
        _ => None,
    };

    let mut sample: Vec<&String> = errors.iter().take(5).collect();
    sample.dedup();
    Ok(serde_json::json!({
        "agents": a.agents,
        "storm_wall_ms": (storm_s * 1e3).round(),
        "burst_ok": lat.len(),
        "burst_p50_ms": percentile(&lat, 50.0),
        "burst_p99_ms": percentile(&lat, 99.0),
        "burst_max_ms": percentile(&lat, 100.0),
        "sustained_concurrency": a.concurrency,
        "sustained_seconds": sustained_s,
        "sustained_signed": signed,
        "p256_signs_per_s": signed as f64 / sustained_s,
        "client_cpu_ms_per_sign": client_cpu_ms_per_sign,
        "errors": errors.len(),
        "error_sample": sample,
    }))
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(run(a))?;
    println!("{report}");
    if report["errors"].as_u64() != Some(0) {
        std::process::exit(1);
    }
    Ok(())
}
