//! `svidgate agent`: the workload's certificate agent.
//!
//! - [`config`]: flags, env vars and validation (shared by every mode);
//! - [`once`]: `--once --out DIR` — one certificate written as Istio's `OUTPUT_CERTS` files;
//! - the long-running mode (SDS server, rotation, admin) is built on [`crate::fetch::fetch_svid`]
//!   and plugs in at [`run_long_running`].

pub mod config;
pub mod once;
pub mod output;
pub mod serve;

use config::{AgentArgs, AgentConfig};

/// Errors of the agent's entry point.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error("configuration: {0}")]
    Config(config::ConfigError),
    #[error(transparent)]
    Once(#[from] once::OnceError),
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
}

// Manual `From`s: the inner error is part of the message, not a `source` (no duplicate
// text in `{:#}` chains).
impl From<config::ConfigError> for AgentError {
    fn from(e: config::ConfigError) -> Self {
        AgentError::Config(e)
    }
}

/// Runs the agent with a validated configuration.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    if config.once {
        once::run(&config).await?;
        Ok(())
    } else {
        run_long_running(config).await
    }
}

/// The long-running mode (issue 5): SDS, rotation, admin.
pub async fn run_long_running(config: AgentConfig) -> Result<(), AgentError> {
    Ok(serve::run(config).await?)
}

/// `svidgate agent` from the command line: validate, start a runtime, run. Exit code 0 on success.
pub fn main(args: &AgentArgs) -> anyhow::Result<i32> {
    let config = AgentConfig::from_args(args)?;
    crate::logging::init(config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(config))?;
    Ok(0)
}
