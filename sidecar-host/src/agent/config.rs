//! `svidgate agent` configuration: flags, their environment variables (Istio's names where
//! Istio has one), each parsed by clap into its type, and the cross-field checks in
//! [`AgentArgs::validate`]. A bad setting is reported by flag and variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Command};
use svidgate_core::{SpiffeId, TrustDomain};
use svidgate_pki::KeyType;

use super::ca_client::{CaClientConfig, RetryPolicy};
use crate::runtime::{
    self, duration, socket_addr, ConfigError, LogFormat, LogFormatArg, Setting, TrustDomainArg,
};

/// Istio's default root for the CA's TLS certificate.
pub const DEFAULT_CA_ROOT: &str = "/var/run/secrets/istio/root-cert.pem";

/// Istio's projected service-account token (istio/istio pkg/config/constants `ThirdPartyJwtPath`):
/// used when --token-file is not given and the file exists.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/tokens/istio-token";

/// Flags of `svidgate agent`. Every flag has an environment variable.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("trust_domain", |a| {
    a.help("Trust domain of the workload ID `spiffe://<TD>/ns/<NS>/sa/<SA>`")
}))]
pub struct AgentArgs {
    /// CA address, `https://host:port` (a bare `host:port`, as Istio's CA_ADDR, means https).
    #[arg(long, env = "CA_ADDR", value_name = "URL", value_parser = Setting(ca_addr))]
    pub ca_addr: String,

    /// PEM root(s) the CA's TLS certificate must chain to (re-read on every call).
    #[arg(long, env = "CA_ROOT_CERT", value_name = "FILE", default_value = DEFAULT_CA_ROOT)]
    pub ca_root: PathBuf,

    /// Name to verify the CA's TLS certificate against (default: the host of --ca-addr).
    #[arg(long, env = "ISTIOD_SAN", value_name = "NAME")]
    pub ca_server_name: Option<String>,

    /// The workload's SPIFFE ID; takes precedence over --trust-domain/--namespace/--service-account.
    #[arg(long, env = "SPIFFE_ID", value_name = "ID", value_parser = Setting(spiffe_id))]
    pub spiffe_id: Option<SpiffeId>,

    #[command(flatten)]
    pub td: TrustDomainArg,

    /// Kubernetes namespace of the workload.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// Kubernetes service account of the workload.
    #[arg(long, env = "SERVICE_ACCOUNT", value_name = "SA")]
    pub service_account: Option<String>,

    /// Bearer token file sent as `authorization: Bearer <token>`, re-read on every call.
    /// Default: Istio's /var/run/secrets/tokens/istio-token when that file exists (else no token).
    #[arg(long, env = "SVIDGATE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Requested certificate lifetime (`90s`, `10m`, `24h`).
    #[arg(long, env = "SECRET_TTL", value_name = "DURATION", default_value = "24h", value_parser = Setting(cert_ttl))]
    pub cert_ttl: Duration,

    /// Key type: ecdsa-p256 (default), ecdsa-p384, rsa-2048. If unset, Istio's
    /// ECC_SIGNATURE_ALGORITHM=ECDSA with ECC_CURVE=P256|P384 is honoured.
    #[arg(long, env = "SVIDGATE_KEY_TYPE", value_name = "TYPE", value_parser = Setting(key_type))]
    pub key_type: Option<KeyType>,

    /// Istio's ECC_SIGNATURE_ALGORITHM (only `ECDSA`); used when --key-type is unset.
    #[arg(long, env = "ECC_SIGNATURE_ALGORITHM", value_name = "ALG", hide = true)]
    pub ecc_signature_algorithm: Option<String>,

    /// Istio's ECC_CURVE (`P256` or `P384`); used with ECC_SIGNATURE_ALGORITHM=ECDSA.
    #[arg(long, env = "ECC_CURVE", value_name = "CURVE", hide = true)]
    pub ecc_curve: Option<String>,

    /// Cluster ID sent to the CA in the `ClusterID` header (Istio's ISTIO_META_CLUSTER_ID, which
    /// istiod checks in multi-cluster meshes). Unset: no header.
    #[arg(long, env = "ISTIO_META_CLUSTER_ID", value_name = "ID", value_parser = Setting(cluster_id))]
    pub cluster_id: Option<String>,

    /// Deadline of one CA call attempt.
    #[arg(long, env = "SVIDGATE_CA_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = Setting(duration))]
    pub ca_timeout: Duration,

    /// Attempts per CA request (retries on transient errors, capped exponential backoff).
    #[arg(long, env = "SVIDGATE_CA_MAX_ATTEMPTS", value_name = "N", default_value = "5", value_parser = Setting(max_attempts))]
    pub ca_max_attempts: u32,

    /// Trust bundles, repeatable. `FILE` (or `<local TD>=FILE`): the local trust domain's
    /// roots — the issued chain must end at one of them (default: the --ca-root file); they are
    /// served as ROOTCA. `TD=FILE`: another (federated) trust domain's roots, served as
    /// `spiffe://TD` and in `ALL`. Files are re-read when they change. Env: comma-separated.
    #[arg(long, env = "SVIDGATE_BUNDLE", value_name = "[TD=]FILE", value_delimiter = ',', value_parser = Setting(bundle))]
    pub bundle: Vec<BundleArg>,

    /// How long a root the CA stopped using stays trusted (default: twice --cert-ttl). Set it
    /// to the CA's maximum certificate lifetime if peers may hold longer-lived certificates.
    #[arg(long, env = "SVIDGATE_ROOT_OVERLAP", value_name = "DURATION", value_parser = Setting(duration))]
    pub root_overlap: Option<Duration>,

    /// Permissions of the SDS socket (octal).
    #[arg(long, env = "SVIDGATE_SDS_SOCKET_MODE", value_name = "MODE", default_value = "0660", value_parser = Setting(runtime::socket_mode))]
    pub sds_socket_mode: u32,

    /// Tolerated clock difference with the CA when checking validity windows.
    #[arg(long, env = "SVIDGATE_CLOCK_SKEW", value_name = "DURATION", default_value = "60s", value_parser = Setting(clock_skew))]
    pub clock_skew: Duration,

    /// Get one certificate, write it to --out, and exit.
    #[arg(long, env = "SVIDGATE_ONCE")]
    pub once: bool,

    /// Output directory for cert-chain.pem, key.pem, root-cert.pem (Istio's OUTPUT_CERTS).
    #[arg(long, env = "OUTPUT_CERTS", value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Istio's grace period ratio: renew at not_after − RATIO × lifetime (long-running mode).
    #[arg(long, env = "SECRET_GRACE_PERIOD_RATIO", value_name = "RATIO", default_value = "0.5", value_parser = Setting(ratio))]
    pub rotation_ratio: f64,

    /// The ratio is moved up or down by a uniform random amount up to this, so a fleet started
    /// together does not renew together (Istio's default, 0.01, is ~15 minutes over 24 hours).
    #[arg(long, env = "SECRET_GRACE_PERIOD_RATIO_JITTER", value_name = "JITTER", default_value = "0.01", value_parser = Setting(jitter))]
    pub rotation_jitter: f64,

    /// SDS Unix socket (long-running mode).
    #[arg(long, env = "SVIDGATE_SDS_SOCKET", value_name = "PATH", default_value = super::sds::DEFAULT_SOCKET_PATH)]
    pub sds_socket: PathBuf,

    /// Also serve the SPIFFE Workload API on this Unix socket (long-running mode; off unless set).
    #[arg(long, env = "SVIDGATE_WORKLOAD_API_SOCKET", value_name = "PATH")]
    pub workload_api_socket: Option<PathBuf>,

    /// Permissions of the Workload API socket (octal).
    #[arg(long, env = "SVIDGATE_WORKLOAD_API_SOCKET_MODE", value_name = "MODE", default_value = "0660", value_parser = Setting(runtime::socket_mode))]
    pub workload_api_socket_mode: u32,

    /// Admin HTTP address: /healthz/ready, /metrics (long-running mode).
    #[arg(long, env = "SVIDGATE_ADMIN_ADDR", value_name = "ADDR", default_value = super::admin::DEFAULT_ADMIN_ADDR, value_parser = Setting(socket_addr))]
    pub admin_addr: SocketAddr,

    #[command(flatten)]
    pub log: LogFormatArg,
}

/// One `--bundle` value: `FILE` or `TD=FILE` (empty entries of the env list are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleArg {
    pub trust_domain: Option<TrustDomain>,
    pub path: PathBuf,
    /// As given (for messages).
    pub raw: String,
}

/// The validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub spiffe_id: SpiffeId,
    pub ca: CaClientConfig,
    pub cert_ttl: Duration,
    pub key_type: KeyType,
    /// Trust bundle file for checking issued chains (the local trust domain's roots).
    pub bundle: PathBuf,
    /// Other trust domains' bundle files (`--bundle TD=FILE`).
    pub federated_bundles: Vec<(TrustDomain, PathBuf)>,
    /// How long a root the CA stopped using stays trusted.
    pub root_overlap: Duration,
    /// SDS socket permissions.
    pub sds_socket_mode: u32,
    pub clock_skew: Duration,
    pub once: bool,
    pub out: Option<PathBuf>,
    pub rotation_ratio: f64,
    pub rotation_jitter: f64,
    pub sds_socket: PathBuf,
    /// The SPIFFE Workload API socket, if it is served.
    pub workload_api_socket: Option<PathBuf>,
    pub workload_api_socket_mode: u32,
    pub admin_addr: SocketAddr,
    pub log_format: LogFormat,
}

fn ca_addr(v: &str) -> Result<String, String> {
    let v = v.trim();
    let addr = if v.contains("://") {
        v.to_owned()
    } else {
        format!("https://{v}")
    };
    if !addr.starts_with("https://") {
        return Err("the CA is reached over TLS: use https://host:port".into());
    }
    if addr.parse::<tonic::transport::Uri>().is_err() || addr.len() <= "https://".len() {
        return Err("not a valid https://host:port address".into());
    }
    Ok(addr)
}

fn spiffe_id(v: &str) -> Result<SpiffeId, String> {
    SpiffeId::parse(v).map_err(|e| e.to_string())
}

fn cert_ttl(v: &str) -> Result<Duration, String> {
    let d = duration(v)?;
    // Short lifetimes are for tests and demos (live rotation); below 5s rotation cannot keep up.
    if d < Duration::from_secs(5) {
        return Err("must be at least 5s".into());
    }
    Ok(d)
}

fn key_type(v: &str) -> Result<KeyType, String> {
    v.parse()
        .map_err(|_| "expected ecdsa-p256, ecdsa-p384 or rsa-2048".into())
}

fn cluster_id(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be non-empty printable ASCII".into());
    }
    Ok(v.to_owned())
}

fn max_attempts(v: &str) -> Result<u32, String> {
    v.trim()
        .parse()
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| "expected an integer from 1 to 100".into())
}

fn bundle(v: &str) -> Result<BundleArg, String> {
    let raw = v.trim().to_owned();
    let (trust_domain, path) = match raw.split_once('=') {
        Some((td, path)) => (
            Some(TrustDomain::new(td).map_err(|e| format!("trust domain: {e}"))?),
            path,
        ),
        None => (None, raw.as_str()),
    };
    Ok(BundleArg {
        trust_domain,
        path: PathBuf::from(path),
        raw: raw.clone(),
    })
}

fn clock_skew(v: &str) -> Result<Duration, String> {
    let d = runtime::duration_or_zero(v)?;
    if d > Duration::from_secs(600) {
        return Err("at most 10m".into());
    }
    Ok(d)
}

fn ratio(v: &str) -> Result<f64, String> {
    v.trim()
        .parse()
        .ok()
        .filter(|r: &f64| *r > 0.0 && *r < 1.0)
        .ok_or_else(|| "expected a number strictly between 0 and 1".into())
}

fn jitter(v: &str) -> Result<f64, String> {
    v.trim()
        .parse()
        .ok()
        .filter(|r: &f64| (0.0..1.0).contains(r))
        .ok_or_else(|| "expected a number from 0 up to (not including) 1".into())
}

/// Resolves the key type from --key-type, else Istio's ECC_SIGNATURE_ALGORITHM/ECC_CURVE.
pub fn resolve_key_type(
    key_type: Option<KeyType>,
    ecc_alg: Option<&str>,
    ecc_curve: Option<&str>,
) -> Result<KeyType, ConfigError> {
    if let Some(k) = key_type {
        return Ok(k);
    }
    match ecc_alg.filter(|s| !s.is_empty()) {
        None => Ok(KeyType::EcdsaP256),
        Some("ECDSA") => match ecc_curve.filter(|s| !s.is_empty()) {
            None | Some("P256") => Ok(KeyType::EcdsaP256),
            Some("P384") => Ok(KeyType::EcdsaP384),
            Some(other) => Err(bad("ecc_curve", other, "expected P256 or P384")),
        },
        Some(other) => Err(bad(
            "ecc_signature_algorithm",
            other,
            "only ECDSA is supported (or use --key-type)",
        )),
    }
}

/// An error for the setting whose field is `id`.
fn bad(id: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::for_arg(
        &AgentArgs::augment_args(Command::new("agent")),
        id,
        value,
        reason,
    )
}

impl AgentArgs {
    /// The checks that involve several settings or the filesystem; the first bad setting is
    /// reported by name.
    pub fn validate(&self) -> Result<AgentConfig, ConfigError> {
        let spiffe_id = match &self.spiffe_id {
            Some(id) => id.clone(),
            None => self.workload_id()?,
        };
        check_readable_pem("ca_root", &self.ca_root)?;
        if let Some(t) = &self.token_file {
            std::fs::metadata(t)
                .map_err(|e| bad("token_file", &t.display().to_string(), &e.to_string()))?;
        }
        let token_file = self
            .token_file
            .clone()
            .or_else(|| default_token_file(Path::new(DEFAULT_TOKEN_FILE)));
        let mut local_bundle = None;
        let mut federated_bundles: Vec<(TrustDomain, PathBuf)> = Vec::new();
        for b in self.bundle.iter().filter(|b| !b.raw.is_empty()) {
            check_readable_pem("bundle", &b.path)?;
            match &b.trust_domain {
                Some(td) if td != spiffe_id.trust_domain() => {
                    if federated_bundles.iter().any(|(t, _)| t == td) {
                        return Err(bad("bundle", &b.raw, "trust domain given twice"));
                    }
                    federated_bundles.push((td.clone(), b.path.clone()));
                }
                _ => {
                    if local_bundle.replace(b.path.clone()).is_some() {
                        return Err(bad(
                            "bundle",
                            &b.raw,
                            "the local trust domain's bundle is given twice",
                        ));
                    }
                }
            }
        }
        let key_type = resolve_key_type(
            self.key_type,
            self.ecc_signature_algorithm.as_deref(),
            self.ecc_curve.as_deref(),
        )?;
        if self.once && self.out.is_none() {
            return Err(bad("out", "", "--once needs an output directory"));
        }
        Ok(AgentConfig {
            spiffe_id,
            ca: CaClientConfig {
                addr: self.ca_addr.clone(),
                root_cert: self.ca_root.clone(),
                token_file,
                cluster_id: self.cluster_id.clone(),
                tls_server_name: self.ca_server_name.clone().filter(|s| !s.is_empty()),
                request_timeout: self.ca_timeout,
                retry: RetryPolicy {
                    max_attempts: self.ca_max_attempts,
                    ..RetryPolicy::default()
                },
            },
            cert_ttl: self.cert_ttl,
            key_type,
            bundle: local_bundle.unwrap_or_else(|| self.ca_root.clone()),
            federated_bundles,
            root_overlap: self.root_overlap.unwrap_or(self.cert_ttl.saturating_mul(2)),
            sds_socket_mode: self.sds_socket_mode,
            clock_skew: self.clock_skew,
            once: self.once,
            out: self.out.clone(),
            rotation_ratio: self.rotation_ratio,
            rotation_jitter: self.rotation_jitter,
            sds_socket: self.sds_socket.clone(),
            workload_api_socket: self.workload_api_socket.clone(),
            workload_api_socket_mode: self.workload_api_socket_mode,
            admin_addr: self.admin_addr,
            log_format: self.log.log_format,
        })
    }

    /// `spiffe://<TD>/ns/<NS>/sa/<SA>` from --trust-domain, --namespace, --service-account.
    fn workload_id(&self) -> Result<SpiffeId, ConfigError> {
        let ns = self.namespace.as_deref().unwrap_or("");
        let sa = self.service_account.as_deref().unwrap_or("");
        for (id, v) in [("namespace", ns), ("service_account", sa)] {
            if v.is_empty() {
                return Err(bad(id, v, "required unless --spiffe-id is given"));
            }
        }
        for (id, v) in [("namespace", ns), ("service_account", sa)] {
            if v.contains('/') || v == "." || v == ".." {
                return Err(bad(id, v, "must be a single path segment"));
            }
        }
        SpiffeId::from_parts(&self.td.trust_domain, &format!("/ns/{ns}/sa/{sa}"))
            .map_err(|e| bad("namespace", ns, &e.to_string()))
    }
}

/// Istio's token path when no --token-file is given: used if it exists (in a pod the template
/// mounts it), else no token is sent (local use without Kubernetes).
fn default_token_file(path: &Path) -> Option<PathBuf> {
    path.is_file().then(|| path.to_path_buf())
}

fn check_readable_pem(id: &str, path: &Path) -> Result<(), ConfigError> {
    runtime::read_cert_file(path)
        .map(|_| ())
        .map_err(|e| bad(id, &e.path, &e.reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: AgentArgs,
    }

    fn root_file() -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            svidgate_pki::testing::TestPki::new("t").root_pem(),
        )
        .unwrap();
        f
    }

    /// Parses and validates; a parse error and a validation error both come back as text.
    fn parse(extra: &[&str], root: &Path) -> Result<AgentConfig, String> {
        let mut argv = vec!["t", "--ca-root", root.to_str().unwrap()];
        if !extra.contains(&"--ca-addr") {
            argv.extend_from_slice(&["--ca-addr", "127.0.0.1:15012"]);
        }
        argv.extend_from_slice(extra);
        let t = T::try_parse_from(argv).map_err(|e| e.to_string())?;
        t.a.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn builds_istio_identity_and_defaults() {
        let root = root_file();
        let c = parse(
            &["--namespace", "web", "--service-account", "front"],
            root.path(),
        )
        .unwrap();
        assert_eq!(
            c.spiffe_id.to_string(),
            "spiffe://cluster.local/ns/web/sa/front"
        );
        assert_eq!(c.ca.addr, "https://127.0.0.1:15012");
        assert_eq!(c.cert_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.key_type, KeyType::EcdsaP256);
        assert_eq!(c.bundle, root.path());
        // Istio's semantics: no ClusterID header unless ISTIO_META_CLUSTER_ID is set; renew at
        // half-life with Istio's jitter.
        assert_eq!(c.ca.cluster_id, None);
        assert_eq!(c.rotation_ratio, 0.5);
        assert_eq!(c.rotation_jitter, 0.01);
        assert_eq!(c.admin_addr.to_string(), "127.0.0.1:15030");
        assert_eq!(c.root_overlap, Duration::from_secs(48 * 3600));
        assert_eq!(c.sds_socket_mode, 0o660);
        assert_eq!(
            c.workload_api_socket, None,
            "the Workload API is off unless asked for"
        );
        assert_eq!(c.workload_api_socket_mode, 0o660);
        assert_eq!(c.log_format, LogFormat::Human);
        assert!(c.federated_bundles.is_empty());
        // --bundle: FILE and <local TD>=FILE are the local anchors; other TDs are federated.
        let r = root.path().to_str().unwrap();
        let local = format!("cluster.local={r}");
        let fed = format!("fed.example={r}");
        let c = parse(
            &[
                "--namespace",
                "web",
                "--service-account",
                "front",
                "--bundle",
                &local,
                "--bundle",
                &fed,
                "--log-format",
                "text",
                "--workload-api-socket",
                "/run/wapi/socket",
                "--workload-api-socket-mode",
                "0666",
            ],
            root.path(),
        )
        .unwrap();
        assert_eq!(
            c.workload_api_socket.as_deref(),
            Some(Path::new("/run/wapi/socket"))
        );
        assert_eq!(c.workload_api_socket_mode, 0o666);
        assert_eq!(c.bundle, root.path());
        assert_eq!(c.federated_bundles.len(), 1);
        assert_eq!(c.federated_bundles[0].0.as_str(), "fed.example");
        assert_eq!(c.log_format, LogFormat::Human);
    }

    #[test]
    fn bad_settings_are_named() {
        // Each case: flags (the workload ID added unless they name its parts) and what the
        // error must name.
        #[derive(serde::Deserialize)]
        struct Case {
            args: Vec<String>,
            error_names: String,
        }
        let root = root_file();
        let id = ["--spiffe-id", "spiffe://td/x"];
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("../../tests/fixtures/agent-bad-settings.json"))
                .unwrap();
        assert_eq!(cases.len(), 23);
        for Case { args, error_names } in &cases {
            let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
            if !args
                .iter()
                .any(|a| a.starts_with("--namespace") || a.starts_with("--service"))
            {
                argv.extend_from_slice(&id);
            }
            let e = parse(&argv, root.path()).unwrap_err();
            assert!(e.contains(error_names.as_str()), "{args:?}: {e}");
        }
        let e = parse(&id, Path::new("/nonexistent")).unwrap_err();
        assert!(e.contains("--ca-root (CA_ROOT_CERT)"), "{e}");
    }

    #[test]
    fn istio_ecc_settings() {
        assert_eq!(
            resolve_key_type(None, None, None).unwrap(),
            KeyType::EcdsaP256
        );
        assert_eq!(
            resolve_key_type(None, Some("ECDSA"), Some("P384")).unwrap(),
            KeyType::EcdsaP384
        );
        assert_eq!(
            resolve_key_type(Some(KeyType::Rsa2048), Some("ECDSA"), None).unwrap(),
            KeyType::Rsa2048
        );
        assert_eq!(
            resolve_key_type(None, Some("RSA"), None).unwrap_err().env,
            "ECC_SIGNATURE_ALGORITHM"
        );
        assert_eq!(
            resolve_key_type(None, Some("ECDSA"), Some("P521"))
                .unwrap_err()
                .env,
            "ECC_CURVE"
        );
    }

    #[test]
    fn cluster_id_and_default_token_file() {
        let root = root_file();
        let id = ["--spiffe-id", "spiffe://td/x"];
        let c = parse(&[id[0], id[1], "--cluster-id", "east"], root.path()).unwrap();
        assert_eq!(c.ca.cluster_id.as_deref(), Some("east"));
        // Istio's token path is used only when it exists.
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("istio-token");
        assert_eq!(default_token_file(&token), None);
        std::fs::write(&token, "t").unwrap();
        assert_eq!(default_token_file(&token), Some(token.clone()));
        assert_eq!(default_token_file(dir.path()), None);
        // An explicit --token-file wins.
        let t = token.to_str().unwrap();
        let c = parse(&[id[0], id[1], "--token-file", t], root.path()).unwrap();
        assert_eq!(c.ca.token_file.as_deref(), Some(token.as_path()));
    }
}
