//! `svidgate agent`: the workload's certificate agent.
//!
//! - [`config`]: flags, env vars and validation (shared by every mode);
//! - [`fetch`]: one certificate — fresh key, CSR, [`ca_client`] call, check before use;
//! - [`once`]: `--once --out DIR` — one certificate written as Istio's `OUTPUT_CERTS` files
//!   ([`output`]);
//! - [`serve`]: the long-running mode — [`rotation`] publishes into [`sds`] (and, when asked,
//!   [`workload_api`]), [`bundle`] keeps trust bundles current, [`admin`] serves health and
//!   [`metrics`];
//! - [`health`]: `svidgate health`, the client of [`admin`] for Kubernetes exec probes.

pub mod admin;
pub mod bundle;
pub mod ca_client;
pub mod config;
pub mod fetch;
pub mod health;
pub mod metrics;
pub mod once;
pub mod output;
pub mod rotation;
pub mod sds;
pub mod serve;
pub mod workload_api;

use crate::runtime::ConfigError;
use config::{AgentArgs, AgentConfig};

/// Errors of the agent's entry point.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error("configuration: {0}")]
    Config(ConfigError),
    #[error(transparent)]
    Once(#[from] once::OnceError),
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
}

wrap_errors!(AgentError::Config(ConfigError));

/// Runs the agent with a validated configuration.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    if config.once {
        once::run(&config).await?;
    } else {
        serve::run(config).await?;
    }
    Ok(())
}

/// `svidgate agent` from the command line: validate, start a runtime, run. Exit code 0 on success.
pub fn main(args: &AgentArgs) -> anyhow::Result<i32> {
    let config = args.validate()?;
    crate::runtime::init_logging(config.log_format);
    crate::runtime::current_thread_runtime()?.block_on(run(config))?;
    Ok(0)
}
