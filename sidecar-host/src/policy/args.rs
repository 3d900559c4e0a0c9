//! `svidgate policy ...` arguments (clap), and the dispatcher that wires them to the commands
//! with the process's stdin, stdout and stderr.

use std::io::{self, Read};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use svidgate_core::policy::EvalMode;

use super::{
    check, diff, eval, explain, import, lint, load_policy_or_report, Input, PolicyCliError, EXIT_OK,
};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files: a one-line summary each, or one line per problem (exit 1).
    Check {
        /// Policy documents (YAML, or JSON when named *.json or starting with `{`); `-` = stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Decide requests read as JSON Lines on stdin; one JSON decision per line on stdout.
    Eval {
        /// The policy document.
        #[arg(long)]
        policy: PathBuf,
        /// Evaluate as the network (TCP) filter: no HTTP attributes.
        #[arg(long)]
        network: bool,
    },
    /// Trace which policies and rules match one request, and the decision.
    Explain(ExplainArgs),
    /// Find what is valid but probably not meant: shadowed rules, conditions that never hold,
    /// unreachable paths, foreign trust domains, ... (exit 1 at --fail-on).
    Lint {
        /// The policy document; `-` = stdin.
        file: PathBuf,
        /// Lint as the network (TCP) filter sees the document: no HTTP attributes.
        #[arg(long)]
        network: bool,
        /// `human` (one line per finding) or `json` (one array).
        #[arg(long, value_enum, default_value = "human")]
        format: lint::Format,
        /// The least severe finding that makes the command fail (exit 1).
        #[arg(long, value_enum, default_value = "error")]
        fail_on: lint::FailOn,
    },
    /// Print, as JSON lines, requests that OLD and NEW decide differently (exit 1 if any,
    /// 0 if equivalent).
    Diff {
        /// The old policy document; `-` = stdin.
        old: PathBuf,
        /// The new policy document; `-` = stdin.
        new: PathBuf,
        /// Compare as the network (TCP) filter decides: no HTTP attributes.
        #[arg(long)]
        network: bool,
    },
    /// Convert Istio AuthorizationPolicy resources (Kubernetes YAML) to a svidgate policy.
    Import {
        /// Kubernetes YAML, one or many documents; `-` = stdin.
        file: PathBuf,
        /// The trustDomain of the generated document.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// A trust domain alias (Istio's meshConfig.trustDomainAliases); repeatable.
        #[arg(long = "trust-domain-alias", value_name = "TD")]
        trust_domain_aliases: Vec<String>,
        /// Import only the policies of this namespace (and of istio-system, the mesh root).
        #[arg(long)]
        namespace: Option<String>,
        /// Drop unsupported items where that only makes the policy stricter (a condition of a
        /// DENY rule, a whole ALLOW rule) instead of failing; never widens it.
        #[arg(long)]
        skip_unsupported: bool,
    },
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The policy document.
    #[arg(long)]
    pub policy: PathBuf,
    /// The peer's URI SAN as Envoy reports it (omit for a certificate without URI SAN).
    #[arg(long)]
    pub peer: Option<String>,
    /// The connection is not mTLS (no peer identity at all).
    #[arg(long)]
    pub no_mtls: bool,
    #[arg(long)]
    pub method: Option<String>,
    #[arg(long)]
    pub path: Option<String>,
    /// `:authority` / Host.
    #[arg(long)]
    pub host: Option<String>,
    /// Destination port.
    #[arg(long)]
    pub port: Option<u16>,
    /// A request header, NAME=VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// TLS SNI.
    #[arg(long)]
    pub sni: Option<String>,
    /// Evaluate as the network (TCP) filter: no HTTP attributes.
    #[arg(long)]
    pub network: bool,
}

/// Runs one `svidgate policy` command; returns the exit code.
pub fn run(cmd: PolicyCommand) -> Result<i32, PolicyCliError> {
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    match cmd {
        PolicyCommand::Check { files } => {
            let mut code = EXIT_OK;
            for file in files {
                let input = Input::read(&file, &mut stdin as &mut dyn Read)?;
                code = code.max(check::check(&input, &mut stdout)?);
            }
            Ok(code)
        }
        PolicyCommand::Eval { policy, network } => {
            // stdin carries the requests, so the policy cannot come from it.
            if policy.as_os_str() == "-" {
                return Err(PolicyCliError::PolicyFromStdin);
            }
            let input = Input::read(&policy, &mut io::empty())?;
            let loaded = load_policy_or_report(&input, &mut stderr)?;
            eval::eval(
                &loaded.compiled,
                mode(network),
                &mut stdin,
                &mut stdout,
                &mut stderr,
            )
        }
        PolicyCommand::Explain(args) => {
            let input = Input::read(&args.policy, &mut stdin as &mut dyn Read)?;
            let loaded = load_policy_or_report(&input, &mut stderr)?;
            let mode = mode(args.network);
            let spec = explain::request_from_args(&args, mode)?;
            explain::explain(&loaded.compiled, &spec, mode, &mut stdout)?;
            Ok(EXIT_OK)
        }
        PolicyCommand::Lint {
            file,
            network,
            format,
            fail_on,
        } => {
            let input = Input::read(&file, &mut stdin as &mut dyn Read)?;
            let loaded = load_policy_or_report(&input, &mut stderr)?;
            lint::run(&input.name, &loaded, network, format, fail_on, &mut stdout)
        }
        PolicyCommand::Diff { old, new, network } => {
            if old.as_os_str() == "-" && new.as_os_str() == "-" {
                return Err(PolicyCliError::BothFromStdin);
            }
            let old = Input::read(&old, &mut stdin as &mut dyn Read)?;
            let new = Input::read(&new, &mut stdin as &mut dyn Read)?;
            let a = load_policy_or_report(&old, &mut stderr)?;
            let b = load_policy_or_report(&new, &mut stderr)?;
            diff::run(
                (&old.name, &new.name),
                &a,
                &b,
                network,
                &mut stdout,
                &mut stderr,
            )
        }
        PolicyCommand::Import {
            file,
            trust_domain,
            trust_domain_aliases,
            namespace,
            skip_unsupported,
        } => {
            let input = Input::read(&file, &mut stdin as &mut dyn Read)?;
            let opts = svidgate_core::policy::import::ImportOptions {
                trust_domain,
                trust_domain_aliases,
                namespace,
                skip_unsupported,
            };
            import::run(&input, &opts, &mut stdout, &mut stderr)
        }
    }
}

fn mode(network: bool) -> EvalMode {
    if network {
        EvalMode::Network
    } else {
        EvalMode::Http
    }
}
