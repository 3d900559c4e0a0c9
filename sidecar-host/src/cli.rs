//! Command-line surface of `svidgate`: argument parsing and dispatch only; each command's
//! arguments and work live in its module (`agent`, `ca`, `policy`).

use clap::{Parser, Subcommand};

pub use crate::policy::PolicyCommand;

#[derive(Debug, Parser)]
#[command(
    name = "svidgate",
    version,
    about = "SPIFFE identities and identity-based authorization for Envoy/Istio"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Policy author's tools: check, eval, explain, import.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The workload agent: key, CSR, CA call, checked certificate (`--once --out DIR`), SDS.
    Agent(Box<crate::agent::config::AgentArgs>),
    /// A small CA speaking the Istio CA gRPC API (local use, tests, demos).
    #[command(subcommand)]
    Ca(crate::ca::CaCommand),
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Policy(cmd) => Ok(crate::policy::run(cmd)?),
        Command::Agent(args) => crate::agent::main(&args),
        Command::Ca(cmd) => crate::ca::main(cmd),
    }
}
