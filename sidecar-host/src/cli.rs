//! Command-line surface of `svidgate`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "svidgate", version, about = "SPIFFE identities and identity-based authorization for Envoy/Istio")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Policy author's tools: check, eval, explain, import.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file.
    Check { file: std::path::PathBuf },
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Policy(PolicyCommand::Check { file }) => {
            anyhow::bail!("policy check {}: not implemented yet", file.display())
        }
    }
}
