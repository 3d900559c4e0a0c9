//! `svidgate policy diff OLD NEW [--network]`: requests the two documents decide differently,
//! one JSON line each, `{"request": <eval input>, "old": <decision>, "new": <decision>}` (the
//! request in `policy eval`'s input format, the decisions in its output format).
//!
//! Exit 0: equivalent (no request over both documents' vocabulary decides differently);
//! 1: differences printed; 2: an input is unusable, or a search cap stopped the search before
//! a difference was found (said on stderr instead of claiming equivalence).
//! The search is `svidgate_core::policy::diff` (exact and complete over the vocabulary).

use std::io::Write;

use svidgate_core::policy::diff::{diff, DiffOptions};

use super::{LoadedPolicy, PolicyCliError, EXIT_INVALID, EXIT_OK, EXIT_UNUSABLE};

/// Compares two loaded policies; differences on `out`, notes on `err`; returns the exit code.
pub fn run(
    names: (&str, &str),
    old: &LoadedPolicy,
    new: &LoadedPolicy,
    network: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, PolicyCliError> {
    let opts = DiffOptions {
        network,
        ..DiffOptions::default()
    };
    let report = diff(&old.document, &new.document, opts)
        .map_err(|e| PolicyCliError::Write(std::io::Error::other(format!("diff: {e}"))))?;
    for d in &report.differences {
        let json = serde_json::to_string(d)
            .map_err(|e| PolicyCliError::Write(std::io::Error::other(e)))?;
        writeln!(out, "{json}")?;
    }
    out.flush()?;
    let (a, b) = names;
    let shown = report.differences.len() as u64;
    if report.total_differences > shown {
        writeln!(
            err,
            "{a} {b}: {} more class(es) of requests decide differently (first {shown} printed)",
            report.total_differences - shown
        )?;
    }
    if let Some(why) = &report.inconclusive {
        writeln!(err, "{a} {b}: inconclusive: {why}")?;
    }
    Ok(if report.total_differences > 0 {
        EXIT_INVALID
    } else if report.inconclusive.is_some() {
        EXIT_UNUSABLE
    } else {
        writeln!(
            err,
            "{a} {b}: equivalent ({} request classes compared)",
            report.searched
        )?;
        EXIT_OK
    })
}
