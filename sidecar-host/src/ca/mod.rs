//! `svidgate ca`: a small CA speaking the Istio CA gRPC API over TLS, for local use, tests
//! and demos.
//!
//! - [`store`]: the `cacerts` directory (load, check, `--generate`);
//! - the CSR checks (istio-csr's rules) are `svidgate_pki::csr_policy`;
//! - [`auth`]: the tokens file; [`kube`]: Kubernetes service-account tokens (JWKS file or
//!   discovery); the caller checks themselves are in [`server`];
//! - [`issue`]: X509-SVID leaves and the CA's serving certificate;
//! - [`server`]: the tonic service, TLS acceptor and hot reload;
//! - [`metrics`]: Prometheus metrics, served on `--admin-addr` by the agent's admin server.

pub mod auth;
pub mod issue;
pub mod kube;
pub mod metrics;
pub mod server;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use svidgate_core::TrustDomain;

use crate::admin;
use crate::runtime::{self, duration, ConfigError, LogFormatArg, Setting, TrustDomainArg};
pub use server::{start, CaHandle, CaServerConfig, RunningCa};

/// `svidgate ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Serve the Istio CA API (`CreateCertificate`) over TLS.
    Serve(Box<CaServeArgs>),
    /// Create a root + intermediate `cacerts` directory and exit (never overwrites).
    Init(CaInitArgs),
}

/// Flags of `svidgate ca serve`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("trust_domain", |a| a.help("Trust domain of the identities this CA signs")))]
pub struct CaServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(
        long,
        env = "SVIDGATE_CA_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:15012"
    )]
    pub listen: String,
    /// `cacerts` directory: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem.
    #[arg(long, env = "SVIDGATE_CA_DIR", value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Create a root + intermediate in --ca-dir if it holds none of the files.
    #[arg(long, env = "SVIDGATE_CA_GENERATE")]
    pub generate: bool,
    #[command(flatten)]
    pub td: TrustDomainArg,
    /// Token file: lines `<token> <spiffe-id>` (parsed again whenever it changes on disk).
    #[arg(long, env = "SVIDGATE_CA_TOKENS", value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Accept Kubernetes projected service-account tokens from this issuer (the API server's
    /// --service-account-issuer): `spiffe://<td>/ns/<ns>/sa/<sa>`.
    #[arg(long, env = "SVIDGATE_CA_KUBE_ISSUER", value_name = "URL")]
    pub kube_issuer: Option<String>,
    /// The cluster's JWKS (`kubectl get --raw /openid/v1/jwks`), re-read when it changes.
    /// Without it, discovered from --kube-issuer (/.well-known/openid-configuration).
    #[arg(long, env = "SVIDGATE_CA_KUBE_JWKS", value_name = "FILE")]
    pub kube_jwks: Option<PathBuf>,
    /// Audience the Kubernetes tokens must carry.
    #[arg(long, env = "SVIDGATE_CA_KUBE_AUDIENCE", value_name = "AUD", default_value = kube::DEFAULT_AUDIENCE)]
    pub kube_audience: String,
    /// Discovery: roots for the issuer's TLS certificate (default: the pod's service-account
    /// ca.crt).
    #[arg(long, env = "SVIDGATE_CA_KUBE_ISSUER_CA", value_name = "FILE")]
    pub kube_issuer_ca: Option<PathBuf>,
    /// Discovery: bearer token file for the issuer (default: the pod's service-account token,
    /// when mounted).
    #[arg(long, env = "SVIDGATE_CA_KUBE_DISCOVERY_TOKEN", value_name = "FILE")]
    pub kube_discovery_token: Option<PathBuf>,
    /// Discovery: re-fetch the JWKS this often.
    #[arg(long, env = "SVIDGATE_CA_KUBE_JWKS_REFRESH", value_name = "DURATION", default_value = "5m", value_parser = Setting(duration))]
    pub kube_jwks_refresh: Duration,
    /// Open connections at once (TLS handshakes included); more wait, not yet accepted.
    #[arg(long, env = "SVIDGATE_CA_MAX_CONNECTIONS", value_name = "N", default_value = "512", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Concurrent HTTP/2 streams per connection.
    #[arg(long, env = "SVIDGATE_CA_MAX_STREAMS", value_name = "N", default_value = "16", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,
    /// A TLS handshake not finished within this is dropped.
    #[arg(long, env = "SVIDGATE_CA_HANDSHAKE_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = Setting(duration))]
    pub handshake_timeout: Duration,
    /// A request not answered within this fails.
    #[arg(long, env = "SVIDGATE_CA_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = Setting(duration))]
    pub request_timeout: Duration,
    /// HTTP/2 PING interval.
    #[arg(long, env = "SVIDGATE_CA_KEEPALIVE_INTERVAL", value_name = "DURATION", default_value = "30s", value_parser = Setting(duration))]
    pub keepalive_interval: Duration,
    /// A peer not answering a PING within this is dropped.
    #[arg(long, env = "SVIDGATE_CA_KEEPALIVE_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = Setting(duration))]
    pub keepalive_timeout: Duration,
    /// Every connection, idle or not, is closed after this (GOAWAY, 10 s grace).
    #[arg(long, env = "SVIDGATE_CA_MAX_CONNECTION_AGE", value_name = "DURATION", default_value = "5m", value_parser = Setting(duration))]
    pub max_connection_age: Duration,
    /// DEV ONLY: callers without credentials get the identity their CSR asks for.
    #[arg(long, env = "SVIDGATE_CA_INSECURE_TRUST_CSR")]
    pub insecure_trust_csr: bool,
    /// Longest certificate lifetime issued (longer requests are capped).
    #[arg(long, env = "SVIDGATE_CA_MAX_TTL", value_name = "DURATION", default_value = "24h", value_parser = Setting(duration))]
    pub max_ttl: Duration,
    /// Shortest lifetime issued (shorter requests get INVALID_ARGUMENT).
    #[arg(long, env = "SVIDGATE_CA_MIN_TTL", value_name = "DURATION", default_value = "5s", value_parser = Setting(duration))]
    pub min_ttl: Duration,
    /// Lifetime issued when a request asks for 0 (no preference).
    #[arg(long, env = "SVIDGATE_CA_DEFAULT_TTL", value_name = "DURATION", default_value = "24h", value_parser = Setting(duration))]
    pub default_ttl: Duration,
    /// Names (DNS or IP) in the CA's serving certificate; repeat the flag. Default:
    /// localhost, istiod.istio-system.svc, svidgate-ca.istio-system.svc, 127.0.0.1.
    #[arg(
        long = "server-name",
        env = "SVIDGATE_CA_SERVER_NAMES",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub server_names: Vec<String>,
    /// Re-read --ca-dir when its files change, checking this often (`0s` disables;
    /// SIGHUP always reloads).
    #[arg(long, env = "SVIDGATE_CA_WATCH_INTERVAL", value_name = "DURATION", default_value = "2s", value_parser = Setting(runtime::duration_or_zero))]
    pub watch_interval: Duration,
    /// Admin HTTP (`/metrics`, `/healthz/ready`, `/healthz/live`), plain HTTP apart from the
    /// TLS port. Default 127.0.0.1:15031; if that default is taken the CA runs without it
    /// (logged), an address given explicitly must bind.
    #[arg(long, env = "SVIDGATE_CA_ADMIN_ADDR", value_name = "ADDR", value_parser = Setting(runtime::socket_addr))]
    pub admin_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub log: LogFormatArg,
}

/// Flags of `svidgate ca init`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("trust_domain", |a| a.help("Trust domain (the O= of the CA certificates)")))]
pub struct CaInitArgs {
    /// Directory to create the `cacerts` files in.
    #[arg(long, env = "SVIDGATE_CA_DIR", value_name = "DIR")]
    pub ca_dir: PathBuf,
    #[command(flatten)]
    pub td: TrustDomainArg,
}

impl CaServeArgs {
    /// The cross-field checks; the settings into a server configuration.
    pub fn validate(&self) -> Result<CaServerConfig, ConfigError> {
        if self.max_ttl < self.min_ttl {
            let cmd = Self::augment_args(clap::Command::new("serve"));
            return Err(ConfigError::for_arg(
                &cmd,
                "max_ttl",
                &humantime::format_duration(self.max_ttl).to_string(),
                format!(
                    "below --min-ttl {:?}",
                    humantime::format_duration(self.min_ttl).to_string()
                ),
            ));
        }
        let server_names = if self.server_names.is_empty() {
            server::DEFAULT_SERVER_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            self.server_names.clone()
        };
        Ok(CaServerConfig {
            ca_dir: self.ca_dir.clone(),
            trust_domain: self.td.trust_domain.clone(),
            tokens: self.tokens.clone(),
            insecure_trust_csr: self.insecure_trust_csr,
            max_ttl: self.max_ttl,
            min_ttl: self.min_ttl,
            default_ttl: self.default_ttl,
            server_names,
            watch_interval: (!self.watch_interval.is_zero()).then_some(self.watch_interval),
            kube: self.kube_config()?,
            limits: server::Limits {
                max_connections: self.max_connections as usize,
                max_streams_per_connection: self.max_streams_per_connection,
                handshake_timeout: self.handshake_timeout,
                request_timeout: self.request_timeout,
                keepalive_interval: self.keepalive_interval,
                keepalive_timeout: self.keepalive_timeout,
                max_connection_age: self.max_connection_age,
                ..server::Limits::default()
            },
        })
    }

    /// `--kube-*` into a [`kube::KubeConfig`]: a JWKS file, or discovery (roots and token
    /// defaulting to the pod's service-account files).
    fn kube_config(&self) -> Result<Option<kube::KubeConfig>, ConfigError> {
        let cmd = || Self::augment_args(clap::Command::new("serve"));
        let Some(issuer) = &self.kube_issuer else {
            let set = [
                ("kube_jwks", &self.kube_jwks),
                ("kube_issuer_ca", &self.kube_issuer_ca),
                ("kube_discovery_token", &self.kube_discovery_token),
            ];
            if let Some((id, Some(v))) = set.into_iter().find(|(_, v)| v.is_some()) {
                return Err(ConfigError::for_arg(
                    &cmd(),
                    id,
                    &v.display().to_string(),
                    "needs --kube-issuer",
                ));
            }
            return Ok(None);
        };
        if !issuer.starts_with("https://") {
            return Err(ConfigError::for_arg(
                &cmd(),
                "kube_issuer",
                issuer,
                "must be an https:// URL (the API server's --service-account-issuer)",
            ));
        }
        let source = match &self.kube_jwks {
            Some(f) => kube::JwksSource::File(f.clone()),
            None => {
                let in_cluster = |p: &str| {
                    let p = PathBuf::from(p);
                    p.exists().then_some(p)
                };
                let Some(ca) = self
                    .kube_issuer_ca
                    .clone()
                    .or_else(|| in_cluster(kube::IN_CLUSTER_CA))
                else {
                    return Err(ConfigError::for_arg(
                        &cmd(),
                        "kube_issuer",
                        issuer,
                        format!("JWKS discovery needs the issuer's roots: --kube-issuer-ca, or run in a pod ({} is missing), or give --kube-jwks", kube::IN_CLUSTER_CA),
                    ));
                };
                kube::JwksSource::Discover {
                    ca,
                    token: self
                        .kube_discovery_token
                        .clone()
                        .or_else(|| in_cluster(kube::IN_CLUSTER_TOKEN)),
                    refresh: self.kube_jwks_refresh,
                }
            }
        };
        Ok(Some(kube::KubeConfig {
            issuer: issuer.clone(),
            audience: self.kube_audience.clone(),
            source,
        }))
    }
}

/// `svidgate ca …` from the command line.
pub fn main(cmd: CaCommand) -> anyhow::Result<i32> {
    match cmd {
        CaCommand::Init(a) => {
            let files = store::generate(&a.ca_dir, &a.td.trust_domain)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(0)
        }
        CaCommand::Serve(a) => serve_main(&a),
    }
}

fn serve_main(a: &CaServeArgs) -> anyhow::Result<i32> {
    let cfg = a.validate()?;
    runtime::init_logging(a.log.log_format);
    if a.insecure_trust_csr {
        tracing::warn!("--insecure-trust-csr: callers without credentials get any identity in {} they ask for; never use this outside local demos", cfg.trust_domain);
    }
    if a.tokens.is_none() && a.kube_issuer.is_none() && !a.insecure_trust_csr {
        tracing::warn!("none of --tokens, --kube-issuer, --insecure-trust-csr: only callers presenting a client SVID issued under root-cert.pem can get certificates");
    }
    if a.generate {
        let existing = store::existing_files(&cfg.ca_dir);
        if existing.is_empty() {
            store::generate(&cfg.ca_dir, &cfg.trust_domain)?;
            tracing::info!(ca_dir = %cfg.ca_dir.display(), "generated a new root and intermediate");
        } else if existing.len() != store::ALL_FILES.len() {
            anyhow::bail!(
                "--generate: {} holds only {} of the cacerts files; refusing to overwrite or mix",
                cfg.ca_dir.display(),
                existing.join(", ")
            );
        }
    }
    runtime::tokio_runtime()?.block_on(async move {
        let listener = runtime::listen_tcp(&a.listen)
            .await
            .map_err(|e| anyhow::anyhow!("--listen {}: {e}", a.listen))?;
        // Signal handlers before the "listening" line: a SIGHUP right after it must reload,
        // not kill the process.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let running = start(cfg, listener).await?;
        let (admin_stop, admin) = start_admin(a.admin_addr, &running.handle).await?;
        println!("svidgate ca listening on {}", running.addr);
        tracing::info!(addr = %running.addr, "svidgate ca serving");
        let admin_task = admin.map(|(addr, task)| {
            // Not println!: a parent that read only the first line may have closed the pipe.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "svidgate ca admin (metrics, health) on http://{addr}");
            tracing::info!(%addr, "admin endpoint (metrics, health)");
            task
        });
        let handle = running.handle.clone();
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    if let Err(e) = handle.reload() {
                        tracing::warn!(error = %e, "SIGHUP: reload failed; keeping the current material");
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        running.shutdown().await;
        let _ = admin_stop.send(true);
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        Ok::<_, anyhow::Error>(0)
    })
}

/// The running admin server: its address and task.
type AdminTask = (SocketAddr, tokio::task::JoinHandle<()>);

/// Starts the admin server (metrics, health): `--admin-addr`, else the default address, which
/// may be taken (then the CA runs without it and says so).
async fn start_admin(
    explicit: Option<SocketAddr>,
    handle: &CaHandle,
) -> anyhow::Result<(tokio::sync::watch::Sender<bool>, Option<AdminTask>)> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let addr = match explicit {
        Some(a) => a,
        None => ADMIN_DEFAULT.parse()?,
    };
    let listener = match admin::bind(addr).await {
        Ok(l) => l,
        Err(e) if explicit.is_none() => {
            tracing::warn!(error = %e, "no admin endpoint (metrics): the default address is taken; set --admin-addr");
            return Ok((stop, None));
        }
        Err(e) => return Err(anyhow::anyhow!("--admin-addr: {e}")),
    };
    let local = listener.local_addr()?;
    let metrics = handle.metrics();
    let task = tokio::spawn(async move {
        if let Err(e) = admin::serve(listener, metrics, stopped).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok((stop, Some((local, task))))
}

/// Default `--admin-addr` of `svidgate ca serve` (the agent's is 15030).
pub const ADMIN_DEFAULT: &str = "127.0.0.1:15031";

/// Default `Duration` helpers for tests and embedders.
pub fn dev_config(ca_dir: PathBuf, td: &str) -> anyhow::Result<CaServerConfig> {
    Ok(CaServerConfig {
        ca_dir,
        trust_domain: TrustDomain::new(td)?,
        tokens: None,
        insecure_trust_csr: false,
        max_ttl: Duration::from_secs(24 * 3600),
        min_ttl: server::DEFAULT_MIN_TTL,
        default_ttl: Duration::from_secs(24 * 3600),
        server_names: server::DEFAULT_SERVER_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        watch_interval: None,
        kube: None,
        limits: server::Limits::default(),
    })
}
