//! What the long-lived commands (`agent`, `ca serve`) share, and nothing else: log setup,
//! the shutdown signal, reading certificate files, and the value parsers their settings use.
//!
//! Settings errors read the same everywhere: `invalid --cert-ttl (SECRET_TTL) "soon": <why>`.
//! [`Setting`] gives clap parsers that report that way; [`ConfigError::for_arg`] does it for
//! the cross-field checks, taking the flag and variable names from the clap definition.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use svidgate_core::TrustDomain;
use svidgate_pki::pem::parse_certs;
use svidgate_pki::CertificateDer;
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------------
// Logging

/// Log output format: `human` (alias `text`) or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Parses `human`, `text` or `json`.
pub fn log_format(v: &str) -> Result<LogFormat, String> {
    match v {
        "human" | "text" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected human, text or json".into()),
    }
}

/// Installs the global `tracing` subscriber once (later calls are no-ops): stderr, human or
/// JSON, filter from `RUST_LOG` (default `info`). Key and CSR bodies are never logged anywhere.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A single-threaded runtime (the agent: one workload's few streams; key generation still
/// runs on the blocking pool). Smaller than two workers at idle and as fast to first secret
/// (docs/bench.md).
pub fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A multi-threaded runtime with two workers (the CA: signing is CPU-bound).
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

// ---------------------------------------------------------------------------------------------
// Shutdown

/// The drain signal every task of a server watches: `true` means stop.
pub type Shutdown = watch::Receiver<bool>;

/// Resolves when `shutdown` becomes true; never if its sender is gone without saying so.
/// How many connections the kernel queues for a listener before it is accepted (Linux caps it at
/// `net.core.somaxconn`, 4096 by default). The standard library's and tokio's `bind` use 128,
/// which a burst of new connections overflows: the overflow is dropped and the clients' TCP
/// retries a second later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` (`host:port`) with a [`LISTEN_BACKLOG`] queue.
pub async fn listen_tcp(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = match a {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

pub async fn wait_shutdown(shutdown: &mut Shutdown) {
    if shutdown.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// A certificate file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CertFileError {
    pub path: String,
    pub reason: String,
}

/// Reads the `CERTIFICATE` blocks of a PEM file (at least one).
pub fn read_cert_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertFileError> {
    let err = |reason: String| CertFileError {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    parse_certs(&bytes).map_err(|e| err(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Settings

/// A bad setting, named by flag and environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} ({env}) {value:?}: {reason}")]
pub struct ConfigError {
    pub flag: String,
    pub env: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    /// An error for the argument `id` of `cmd` (its field name), e.g. from a `validate()`.
    pub fn for_arg(
        cmd: &clap::Command,
        id: &str,
        value: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        let arg = cmd.get_arguments().find(|a| a.get_id() == id);
        let (flag, env) = names(arg, id);
        ConfigError {
            flag,
            env,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

fn names(arg: Option<&clap::Arg>, fallback: &str) -> (String, String) {
    let flag = arg
        .and_then(|a| a.get_long())
        .map_or_else(|| fallback.to_owned(), |l| format!("--{l}"));
    let env = arg
        .and_then(|a| a.get_env())
        .map_or_else(String::new, |e| e.to_string_lossy().into_owned());
    (flag, env)
}

/// A clap value parser from a plain `fn(&str) -> Result<T, reason>`, whose errors name the
/// flag and its environment variable ([`ConfigError`]'s wording).
#[derive(Debug, Clone, Copy)]
pub struct Setting<T>(pub fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Setting<T> {
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let v = value.to_string_lossy();
        (self.0)(&v).map_err(|reason| {
            let (flag, env) = names(arg, "value");
            let e = ConfigError {
                flag,
                env,
                value: v.into_owned(),
                reason,
            };
            clap::Error::raw(ErrorKind::ValueValidation, format!("{e}\n"))
        })
    }
}

/// The message of a clap error raised by a [`Setting`] parser (`invalid --flag (ENV) ...`),
/// without clap's `error: ` prefix; `None` for clap's own errors (usage, help, version).
pub fn setting_error(e: &clap::Error) -> Option<String> {
    if e.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let text = e.to_string();
    let msg = text.strip_prefix("error: ")?;
    msg.starts_with("invalid --")
        .then(|| msg.trim_end().to_owned())
}

/// A duration such as `90s`, `10m`, `24h`, `1h30m`; zero allowed.
pub fn duration_or_zero(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v.trim()).map_err(|e| e.to_string())
}

/// A duration greater than zero.
pub fn duration(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v.trim())
        .map_err(|e| format!("{e} (expected e.g. 90s, 10m, 24h)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// A trust domain name.
pub fn trust_domain(v: &str) -> Result<TrustDomain, String> {
    TrustDomain::new(v).map_err(|e| e.to_string())
}

// The flags the agent and the CA share, each declared once and flattened into the commands'
// flags (`#[command(flatten)]`). A command words `--trust-domain`'s help itself
// (`#[command(mut_arg("trust_domain", ...))]`): the trust domain means something else to each.

/// `--trust-domain TD` (`TRUST_DOMAIN`, default `cluster.local`).
#[derive(Debug, Clone, clap::Args)]
pub struct TrustDomainArg {
    #[arg(long, env = "TRUST_DOMAIN", value_name = "TD", default_value = "cluster.local", value_parser = Setting(trust_domain))]
    pub trust_domain: TrustDomain,
}

/// `--log-format FORMAT` (`SVIDGATE_LOG_FORMAT`, default `human`).
#[derive(Debug, Clone, clap::Args)]
pub struct LogFormatArg {
    /// Log format: human (alias: text) or json.
    #[arg(long, env = "SVIDGATE_LOG_FORMAT", value_name = "FORMAT", default_value = "human", value_parser = Setting(log_format))]
    pub log_format: LogFormat,
}

/// `host:port` (an IP address, not a name).
pub fn socket_addr(v: &str) -> Result<std::net::SocketAddr, String> {
    v.parse()
        .map_err(|e: std::net::AddrParseError| e.to_string())
}

/// File permissions in octal, at most `0777`.
pub fn socket_mode(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| "expected an octal mode such as 0660".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_parsers() {
        for (s, secs) in [("90s", 90), ("10m", 600), ("24h", 86400), ("1h30m", 5400)] {
            assert_eq!(duration(s), Ok(Duration::from_secs(secs)));
        }
        assert_eq!(duration("0s"), Err("must be greater than zero".into()));
        assert!(duration("5").is_err());
        assert_eq!(duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(socket_mode("0660"), Ok(0o660));
        assert!(socket_mode("999").is_err());
        assert!(socket_mode("1777").is_err());
        assert_eq!(log_format("text"), Ok(LogFormat::Human));
        assert_eq!(log_format("human"), Ok(LogFormat::Human));
        assert_eq!(log_format("json"), Ok(LogFormat::Json));
        assert!(log_format("yaml").is_err());
    }

    #[test]
    fn errors_name_the_flag_and_variable() {
        #[derive(Debug, clap::Parser)]
        struct T {
            #[arg(long, env = "T_TTL", value_parser = Setting(duration))]
            ttl: Duration,
        }
        let e = <T as clap::Parser>::try_parse_from(["t", "--ttl", "soon"]).unwrap_err();
        let msg = setting_error(&e).unwrap();
        assert!(
            msg.starts_with("invalid --ttl (T_TTL) \"soon\": expected number"),
            "{msg}"
        );
        let e = <T as clap::Parser>::try_parse_from(["t", "--nope"]).unwrap_err();
        assert_eq!(setting_error(&e), None);
        let cmd = <T as clap::CommandFactory>::command();
        assert_eq!(
            ConfigError::for_arg(&cmd, "ttl", "x", "bad").to_string(),
            "invalid --ttl (T_TTL) \"x\": bad"
        );
    }
}
