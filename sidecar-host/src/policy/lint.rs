//! `svidgate policy lint FILE [--network] [--format human|json] [--fail-on LEVEL]`: findings
//! about a valid policy that is probably not what its author meant (the rules are
//! `svidgate_core::policy::lint`'s; the playground and the npm package run the same code).
//!
//! Human format: one line per finding, `FILE: <severity>: <path>: <message> [<code>]`, then a
//! count. JSON: the findings as one array of `{"severity", "path", "code", "message"}`.
//! Exit 1 when a finding reaches `--fail-on` (default `error`), 0 otherwise; 2 when the policy
//! is not valid (its problems are printed as `check` prints them).

use std::io::Write;

use svidgate_core::policy::lint::{lint, Finding, LintOptions, Severity};

use super::{LoadedPolicy, PolicyCliError, EXIT_INVALID, EXIT_OK};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// The least severe finding that fails the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Info,
    /// Never fail on findings.
    Never,
}

impl FailOn {
    fn fails(self, s: Severity) -> bool {
        match self {
            FailOn::Error => s >= Severity::Error,
            FailOn::Warning => s >= Severity::Warning,
            FailOn::Info => true,
            FailOn::Never => false,
        }
    }
}

/// Lints a loaded policy; writes the findings to `out`; returns the exit code.
pub fn run(
    name: &str,
    loaded: &LoadedPolicy,
    network: bool,
    format: Format,
    fail_on: FailOn,
    out: &mut dyn Write,
) -> Result<i32, PolicyCliError> {
    let findings = lint(&loaded.document, LintOptions { network });
    match format {
        Format::Json => {
            let json = serde_json::to_string(&findings)
                .map_err(|e| PolicyCliError::Write(std::io::Error::other(e)))?;
            writeln!(out, "{json}")?;
        }
        Format::Human => {
            for f in &findings {
                writeln!(out, "{name}: {f}")?;
            }
            writeln!(out, "{name}: {}", count(&findings))?;
        }
    }
    out.flush()?;
    let failed = findings.iter().any(|f| fail_on.fails(f.severity));
    Ok(if failed { EXIT_INVALID } else { EXIT_OK })
}

fn count(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings".into();
    }
    let n = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    format!(
        "{} error(s), {} warning(s), {} info",
        n(Severity::Error),
        n(Severity::Warning),
        n(Severity::Info)
    )
}
