//! `svidgate agent` configuration: flags, their environment variables (Istio's names where
//! Istio has one), and validation at start with messages that name the bad setting.
//!
//! [`AgentArgs`] is the raw command line (clap); [`AgentConfig::from_args`] turns it into the
//! validated configuration both the `--once` mode and the long-running mode use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use svidgate_core::{SpiffeId, TrustDomain};

use crate::ca_client::{CaClientConfig, RetryPolicy};
use crate::keys::KeyType;

/// Istio's default root for the CA's TLS certificate.
pub const DEFAULT_CA_ROOT: &str = "/var/run/secrets/istio/root-cert.pem";
/// Istio's external-SDS socket path.
pub const DEFAULT_SDS_SOCKET: &str = "/var/run/secrets/workload-spiffe-uds/socket";

/// Flags of `svidgate agent`. Every flag has an environment variable.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// CA address, `https://host:port` (a bare `host:port`, as Istio's CA_ADDR, means https).
    #[arg(long, env = "CA_ADDR", value_name = "URL")]
    pub ca_addr: String,

    /// PEM root(s) the CA's TLS certificate must chain to (re-read on every call).
    #[arg(long, env = "CA_ROOT_CERT", value_name = "FILE", default_value = DEFAULT_CA_ROOT)]
    pub ca_root: PathBuf,

    /// Name to verify the CA's TLS certificate against (default: the host of --ca-addr).
    #[arg(long, env = "ISTIOD_SAN", value_name = "NAME")]
    pub ca_server_name: Option<String>,

    /// The workload's SPIFFE ID; takes precedence over --trust-domain/--namespace/--service-account.
    #[arg(long, env = "SPIFFE_ID", value_name = "ID")]
    pub spiffe_id: Option<String>,

    /// Trust domain of the workload ID `spiffe://<TD>/ns/<NS>/sa/<SA>`.
    #[arg(
        long,
        env = "TRUST_DOMAIN",
        value_name = "TD",
        default_value = "cluster.local"
    )]
    pub trust_domain: String,

    /// Kubernetes namespace of the workload.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// Kubernetes service account of the workload.
    #[arg(long, env = "SERVICE_ACCOUNT", value_name = "SA")]
    pub service_account: Option<String>,

    /// Bearer token file sent as `authorization: Bearer <token>`, re-read on every call
    /// (Istio: /var/run/secrets/tokens/istio-token). Without it no token is sent.
    #[arg(long, env = "SVIDGATE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Requested certificate lifetime (`90s`, `10m`, `24h`).
    #[arg(
        long,
        env = "SECRET_TTL",
        value_name = "DURATION",
        default_value = "24h"
    )]
    pub cert_ttl: String,

    /// Key type: ecdsa-p256 (default), ecdsa-p384, rsa-2048. If unset, Istio's
    /// ECC_SIGNATURE_ALGORITHM=ECDSA with ECC_CURVE=P256|P384 is honoured.
    #[arg(long, env = "SVIDGATE_KEY_TYPE", value_name = "TYPE")]
    pub key_type: Option<String>,

    /// Istio's ECC_SIGNATURE_ALGORITHM (only `ECDSA`); used when --key-type is unset.
    #[arg(long, env = "ECC_SIGNATURE_ALGORITHM", value_name = "ALG", hide = true)]
    pub ecc_signature_algorithm: Option<String>,

    /// Istio's ECC_CURVE (`P256` or `P384`); used with ECC_SIGNATURE_ALGORITHM=ECDSA.
    #[arg(long, env = "ECC_CURVE", value_name = "CURVE", hide = true)]
    pub ecc_curve: Option<String>,

    /// Cluster ID sent to the CA in the `ClusterID` header.
    #[arg(
        long,
        env = "CLUSTER_ID",
        value_name = "ID",
        default_value = "Kubernetes"
    )]
    pub cluster_id: String,

    /// Deadline of one CA call attempt.
    #[arg(
        long,
        env = "SVIDGATE_CA_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub ca_timeout: String,

    /// Attempts per CA request (retries on transient errors, capped exponential backoff).
    #[arg(
        long,
        env = "SVIDGATE_CA_MAX_ATTEMPTS",
        value_name = "N",
        default_value = "5"
    )]
    pub ca_max_attempts: String,

    /// Trust bundles, repeatable. `FILE` (or `<local TD>=FILE`): the local trust domain's
    /// roots — the issued chain must end at one of them (default: the --ca-root file); they are
    /// served as ROOTCA. `TD=FILE`: another (federated) trust domain's roots, served as
    /// `spiffe://TD` and in `ALL`. Files are re-read when they change. Env: comma-separated.
    #[arg(
        long,
        env = "SVIDGATE_BUNDLE",
        value_name = "[TD=]FILE",
        value_delimiter = ','
    )]
    pub bundle: Vec<String>,

    /// How long a root the CA stopped using stays trusted (default: twice --cert-ttl). Set it
    /// to the CA's maximum certificate lifetime if peers may hold longer-lived certificates.
    #[arg(long, env = "SVIDGATE_ROOT_OVERLAP", value_name = "DURATION")]
    pub root_overlap: Option<String>,

    /// Permissions of the SDS socket (octal).
    #[arg(
        long,
        env = "SVIDGATE_SDS_SOCKET_MODE",
        value_name = "MODE",
        default_value = "0660"
    )]
    pub sds_socket_mode: String,

    /// Tolerated clock difference with the CA when checking validity windows.
    #[arg(
        long,
        env = "SVIDGATE_CLOCK_SKEW",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub clock_skew: String,

    /// Get one certificate, write it to --out, and exit.
    #[arg(long, env = "SVIDGATE_ONCE")]
    pub once: bool,

    /// Output directory for cert-chain.pem, key.pem, root-cert.pem (Istio's OUTPUT_CERTS).
    #[arg(long, env = "OUTPUT_CERTS", value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Renew at not_before + RATIO × lifetime (long-running mode).
    #[arg(
        long,
        env = "SECRET_GRACE_PERIOD_RATIO",
        value_name = "RATIO",
        default_value = "0.5"
    )]
    pub rotation_ratio: String,

    /// SDS Unix socket (long-running mode).
    #[arg(long, env = "SVIDGATE_SDS_SOCKET", value_name = "PATH", default_value = DEFAULT_SDS_SOCKET)]
    pub sds_socket: PathBuf,

    /// Admin HTTP address: /healthz/ready, /metrics (long-running mode).
    #[arg(
        long,
        env = "SVIDGATE_ADMIN_ADDR",
        value_name = "ADDR",
        default_value = crate::admin::DEFAULT_ADMIN_ADDR
    )]
    pub admin_addr: String,

    /// Log format: human (alias: text) or json.
    #[arg(
        long,
        env = "SVIDGATE_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "human"
    )]
    pub log_format: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
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
    pub sds_socket: PathBuf,
    pub admin_addr: SocketAddr,
    pub log_format: LogFormat,
}

/// A bad setting, named by flag and environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} ({env}) {value:?}: {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub env: &'static str,
    pub value: String,
    pub reason: String,
}

fn bad(
    flag: &'static str,
    env: &'static str,
    value: &str,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError {
        flag,
        env,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Parses `90s`, `10m`, `24h`, `1h30m` (humantime); zero is refused.
pub fn parse_duration(
    flag: &'static str,
    env: &'static str,
    value: &str,
) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        bad(
            flag,
            env,
            value,
            format!("{e} (expected e.g. 90s, 10m, 24h)"),
        )
    })?;
    if d.is_zero() {
        return Err(bad(flag, env, value, "must be greater than zero"));
    }
    Ok(d)
}

/// Resolves the key type from --key-type, else Istio's ECC_SIGNATURE_ALGORITHM/ECC_CURVE.
pub fn resolve_key_type(
    key_type: Option<&str>,
    ecc_alg: Option<&str>,
    ecc_curve: Option<&str>,
) -> Result<KeyType, ConfigError> {
    if let Some(k) = key_type.filter(|s| !s.is_empty()) {
        return k.parse().map_err(|_| {
            bad(
                "--key-type",
                "SVIDGATE_KEY_TYPE",
                k,
                "expected ecdsa-p256, ecdsa-p384 or rsa-2048",
            )
        });
    }
    match ecc_alg.filter(|s| !s.is_empty()) {
        None => Ok(KeyType::EcdsaP256),
        Some("ECDSA") => match ecc_curve.filter(|s| !s.is_empty()) {
            None | Some("P256") => Ok(KeyType::EcdsaP256),
            Some("P384") => Ok(KeyType::EcdsaP384),
            Some(other) => Err(bad(
                "--ecc-curve",
                "ECC_CURVE",
                other,
                "expected P256 or P384",
            )),
        },
        Some(other) => Err(bad(
            "--ecc-signature-algorithm",
            "ECC_SIGNATURE_ALGORITHM",
            other,
            "only ECDSA is supported (or use --key-type)",
        )),
    }
}

impl AgentConfig {
    /// Validates every setting; the first bad one is reported by name.
    pub fn from_args(a: &AgentArgs) -> Result<Self, ConfigError> {
        let spiffe_id = match &a.spiffe_id {
            Some(id) => SpiffeId::parse(id)
                .map_err(|e| bad("--spiffe-id", "SPIFFE_ID", id, e.to_string()))?,
            None => {
                let td = TrustDomain::new(&a.trust_domain).map_err(|e| {
                    bad(
                        "--trust-domain",
                        "TRUST_DOMAIN",
                        &a.trust_domain,
                        e.to_string(),
                    )
                })?;
                let ns = a.namespace.as_deref().unwrap_or("");
                let sa = a.service_account.as_deref().unwrap_or("");
                if ns.is_empty() {
                    return Err(bad(
                        "--namespace",
                        "POD_NAMESPACE",
                        ns,
                        "required unless --spiffe-id is given",
                    ));
                }
                if sa.is_empty() {
                    return Err(bad(
                        "--service-account",
                        "SERVICE_ACCOUNT",
                        sa,
                        "required unless --spiffe-id is given",
                    ));
                }
                check_segment("--namespace", "POD_NAMESPACE", ns)?;
                check_segment("--service-account", "SERVICE_ACCOUNT", sa)?;
                SpiffeId::from_parts(&td, &format!("/ns/{ns}/sa/{sa}"))
                    .map_err(|e| bad("--namespace", "POD_NAMESPACE", ns, e.to_string()))?
            }
        };

        let addr = a.ca_addr.trim();
        let addr = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("https://{addr}")
        };
        if !addr.starts_with("https://") {
            return Err(bad(
                "--ca-addr",
                "CA_ADDR",
                &a.ca_addr,
                "the CA is reached over TLS: use https://host:port",
            ));
        }
        if addr.parse::<tonic::transport::Uri>().is_err() || addr.len() <= "https://".len() {
            return Err(bad(
                "--ca-addr",
                "CA_ADDR",
                &a.ca_addr,
                "not a valid https://host:port address",
            ));
        }
        check_readable_pem("--ca-root", "CA_ROOT_CERT", &a.ca_root)?;
        if let Some(t) = &a.token_file {
            if let Err(e) = std::fs::metadata(t) {
                return Err(bad(
                    "--token-file",
                    "SVIDGATE_TOKEN_FILE",
                    &t.display().to_string(),
                    e.to_string(),
                ));
            }
        }
        let mut local_bundle = None;
        let mut federated_bundles = Vec::new();
        for b in a.bundle.iter().map(|b| b.trim()).filter(|b| !b.is_empty()) {
            let (td, path) = match b.split_once('=') {
                Some((td, path)) => {
                    let td = TrustDomain::new(td).map_err(|e| {
                        bad(
                            "--bundle",
                            "SVIDGATE_BUNDLE",
                            b,
                            format!("trust domain: {e}"),
                        )
                    })?;
                    (Some(td), PathBuf::from(path))
                }
                None => (None, PathBuf::from(b)),
            };
            check_readable_pem("--bundle", "SVIDGATE_BUNDLE", &path)?;
            match td {
                Some(td) if &td != spiffe_id.trust_domain() => {
                    if federated_bundles.iter().any(|(t, _)| *t == td) {
                        return Err(bad(
                            "--bundle",
                            "SVIDGATE_BUNDLE",
                            b,
                            "trust domain given twice",
                        ));
                    }
                    federated_bundles.push((td, path));
                }
                _ => {
                    if local_bundle.replace(path).is_some() {
                        return Err(bad(
                            "--bundle",
                            "SVIDGATE_BUNDLE",
                            b,
                            "the local trust domain's bundle is given twice",
                        ));
                    }
                }
            }
        }
        let bundle = local_bundle.unwrap_or_else(|| a.ca_root.clone());

        let cert_ttl = parse_duration("--cert-ttl", "SECRET_TTL", &a.cert_ttl)?;
        // Short lifetimes are for tests and demos (live rotation); below 5s rotation cannot keep up.
        if cert_ttl < Duration::from_secs(5) {
            return Err(bad(
                "--cert-ttl",
                "SECRET_TTL",
                &a.cert_ttl,
                "must be at least 5s",
            ));
        }
        let root_overlap = match a.root_overlap.as_deref() {
            Some(v) => parse_duration("--root-overlap", "SVIDGATE_ROOT_OVERLAP", v)?,
            None => cert_ttl.saturating_mul(2),
        };
        let sds_socket_mode = u32::from_str_radix(a.sds_socket_mode.trim(), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                bad(
                    "--sds-socket-mode",
                    "SVIDGATE_SDS_SOCKET_MODE",
                    &a.sds_socket_mode,
                    "expected an octal mode such as 0660",
                )
            })?;
        let request_timeout = parse_duration("--ca-timeout", "SVIDGATE_CA_TIMEOUT", &a.ca_timeout)?;
        let max_attempts: u32 = a
            .ca_max_attempts
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                bad(
                    "--ca-max-attempts",
                    "SVIDGATE_CA_MAX_ATTEMPTS",
                    &a.ca_max_attempts,
                    "expected an integer from 1 to 100",
                )
            })?;
        let clock_skew = humantime::parse_duration(a.clock_skew.trim()).map_err(|e| {
            bad(
                "--clock-skew",
                "SVIDGATE_CLOCK_SKEW",
                &a.clock_skew,
                e.to_string(),
            )
        })?;
        if clock_skew > Duration::from_secs(600) {
            return Err(bad(
                "--clock-skew",
                "SVIDGATE_CLOCK_SKEW",
                &a.clock_skew,
                "at most 10m",
            ));
        }
        let key_type = resolve_key_type(
            a.key_type.as_deref(),
            a.ecc_signature_algorithm.as_deref(),
            a.ecc_curve.as_deref(),
        )?;
        let cluster_id = a.cluster_id.trim();
        if cluster_id.is_empty() || !cluster_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "--cluster-id",
                "CLUSTER_ID",
                &a.cluster_id,
                "must be non-empty printable ASCII",
            ));
        }
        if a.once && a.out.is_none() {
            return Err(bad(
                "--out",
                "OUTPUT_CERTS",
                "",
                "--once needs an output directory",
            ));
        }
        let rotation_ratio: f64 = a
            .rotation_ratio
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| *r > 0.0 && *r < 1.0)
            .ok_or_else(|| {
                bad(
                    "--rotation-ratio",
                    "SECRET_GRACE_PERIOD_RATIO",
                    &a.rotation_ratio,
                    "expected a number strictly between 0 and 1",
                )
            })?;
        let admin_addr: SocketAddr =
            a.admin_addr
                .parse()
                .map_err(|e: std::net::AddrParseError| {
                    bad(
                        "--admin-addr",
                        "SVIDGATE_ADMIN_ADDR",
                        &a.admin_addr,
                        e.to_string(),
                    )
                })?;
        let log_format = match a.log_format.as_str() {
            "human" | "text" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "--log-format",
                    "SVIDGATE_LOG_FORMAT",
                    other,
                    "expected human, text or json",
                ))
            }
        };

        Ok(AgentConfig {
            spiffe_id,
            ca: CaClientConfig {
                addr,
                root_cert: a.ca_root.clone(),
                token_file: a.token_file.clone(),
                cluster_id: Some(cluster_id.to_owned()),
                tls_server_name: a.ca_server_name.clone().filter(|s| !s.is_empty()),
                request_timeout,
                retry: RetryPolicy {
                    max_attempts,
                    ..RetryPolicy::default()
                },
            },
            cert_ttl,
            key_type,
            bundle,
            federated_bundles,
            root_overlap,
            sds_socket_mode,
            clock_skew,
            once: a.once,
            out: a.out.clone(),
            rotation_ratio,
            sds_socket: a.sds_socket.clone(),
            admin_addr,
            log_format,
        })
    }
}

fn check_segment(flag: &'static str, env: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.contains('/') || v == "." || v == ".." {
        return Err(bad(flag, env, v, "must be a single path segment"));
    }
    Ok(())
}

fn check_readable_pem(
    flag: &'static str,
    env: &'static str,
    path: &std::path::Path,
) -> Result<(), ConfigError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| bad(flag, env, &shown, e.to_string()))?;
    let certs =
        pem::parse_many(&bytes).map_err(|e| bad(flag, env, &shown, format!("not PEM: {e}")))?;
    if !certs.iter().any(|p| p.tag() == "CERTIFICATE") {
        return Err(bad(flag, env, &shown, "no CERTIFICATE in the file"));
    }
    Ok(())
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
        let ck = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), ck.cert.pem()).unwrap();
        f
    }

    fn parse(extra: &[&str], root: &std::path::Path) -> Result<AgentConfig, ConfigError> {
        let mut argv = vec![
            "t",
            "--ca-addr",
            "127.0.0.1:15012",
            "--ca-root",
            root.to_str().unwrap(),
        ];
        argv.extend_from_slice(extra);
        let t = T::try_parse_from(argv).unwrap();
        AgentConfig::from_args(&t.a)
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
        assert_eq!(c.ca.cluster_id.as_deref(), Some("Kubernetes"));
        assert_eq!(c.admin_addr.to_string(), "127.0.0.1:15030");
        assert_eq!(c.root_overlap, Duration::from_secs(48 * 3600));
        assert_eq!(c.sds_socket_mode, 0o660);
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
            ],
            root.path(),
        )
        .unwrap();
        assert_eq!(c.bundle, root.path());
        assert_eq!(c.federated_bundles.len(), 1);
        assert_eq!(c.federated_bundles[0].0.as_str(), "fed.example");
    }

    #[test]
    fn bad_settings_are_named() {
        let root = root_file();
        let cases: &[(&[&str], &str)] = &[
            (&["--spiffe-id", "spiffe://TD/x"], "--spiffe-id"),
            (&["--namespace", "web"], "--service-account"),
            (&["--service-account", "x"], "--namespace"),
            (
                &["--spiffe-id", "spiffe://td/x", "--cert-ttl", "soon"],
                "SECRET_TTL",
            ),
            (
                &["--spiffe-id", "spiffe://td/x", "--cert-ttl", "4s"],
                "--cert-ttl",
            ),
            (
                &["--spiffe-id", "spiffe://td/x", "--key-type", "dsa"],
                "--key-type",
            ),
            (
                &["--spiffe-id", "spiffe://td/x", "--rotation-ratio", "1.5"],
                "SECRET_GRACE_PERIOD_RATIO",
            ),
            (&["--spiffe-id", "spiffe://td/x", "--once"], "--out"),
            (
                &["--spiffe-id", "spiffe://td/x", "--bundle", "BAD TD=/x"],
                "--bundle",
            ),
            (
                &["--spiffe-id", "spiffe://td/x", "--bundle", "/nonexistent"],
                "--bundle",
            ),
            (
                &["--spiffe-id", "spiffe://td/x", "--sds-socket-mode", "999"],
                "--sds-socket-mode",
            ),
            (
                &["--spiffe-id", "spiffe://td/x", "--root-overlap", "0s"],
                "--root-overlap",
            ),
            (
                &["--spiffe-id", "spiffe://td/x", "--ca-timeout", "0s"],
                "--ca-timeout",
            ),
            (
                &[
                    "--spiffe-id",
                    "spiffe://td/x",
                    "--token-file",
                    "/nonexistent/t",
                ],
                "--token-file",
            ),
            (
                &[
                    "--spiffe-id",
                    "spiffe://td/x",
                    "--trust-domain",
                    "x",
                    "--admin-addr",
                    "nope",
                ],
                "--admin-addr",
            ),
            (
                &["--spiffe-id", "spiffe://td/x", "--ca-max-attempts", "0"],
                "--ca-max-attempts",
            ),
        ];
        for (args, name) in cases {
            let e = parse(args, root.path()).unwrap_err();
            assert!(e.to_string().contains(name), "{args:?}: {e}");
        }
        let e = AgentConfig::from_args(
            &T::try_parse_from([
                "t",
                "--ca-addr",
                "http://x:1",
                "--ca-root",
                "/nonexistent",
                "--spiffe-id",
                "spiffe://td/x",
            ])
            .unwrap()
            .a,
        )
        .unwrap_err();
        assert_eq!(e.flag, "--ca-addr");
        let e = AgentConfig::from_args(
            &T::try_parse_from([
                "t",
                "--ca-addr",
                "x:1",
                "--ca-root",
                "/nonexistent",
                "--spiffe-id",
                "spiffe://td/x",
            ])
            .unwrap()
            .a,
        )
        .unwrap_err();
        assert_eq!(e.flag, "--ca-root");
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
            resolve_key_type(Some("rsa-2048"), Some("ECDSA"), None).unwrap(),
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
    fn durations() {
        for (s, secs) in [("90s", 90), ("10m", 600), ("24h", 86400), ("1h30m", 5400)] {
            assert_eq!(
                parse_duration("--x", "X", s).unwrap(),
                Duration::from_secs(secs)
            );
        }
        assert!(parse_duration("--x", "X", "0s").is_err());
        assert!(parse_duration("--x", "X", "5").is_err());
    }
}
