//! `svidgate policy eval --policy FILE [--network]`: decide requests read as JSON Lines.
//!
//! Input, one request per line (all keys optional; unknown keys make the line malformed):
//! `{"peer": "<URI SAN as Envoy reports it>" | null, "mtls": true, "method": "GET",
//!   "path": "/x", "host": "h", "port": 8080, "headers": {"k": "v"}, "sni": "s"}`
//!
//! Output, one line per request, flushed at once:
//! `{"decision":"allow"|"deny","policy":<name|null>,"rule":<index|null>,"reason":"...",
//!   "dryRun":{...same shape...}}` — `dryRun` only when the policy has dry-run policies.
//!
//! A malformed line is reported on `err` as `line N: <problem>`; the rest is still answered
//! and the command exits 1 at the end. Blank lines are skipped.

use std::io::{BufRead, Write};

use svidgate_core::policy::{CompiledPolicy, EvalMode};

use super::{PolicyCliError, EXIT_INVALID, EXIT_OK};

/// The request and decision format, shared with the playground and the npm package.
pub use svidgate_core::policy::request_line::{
    decide, parse_line, DecisionOut, RequestLine, RequestSpec, VerdictOut,
};

/// Reads requests from `input` until EOF, answers each on `out` (flushed per line), reports
/// malformed lines on `err`. Returns the exit code: 0, or 1 if any line was malformed.
pub fn eval(
    policy: &CompiledPolicy,
    mode: EvalMode,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, PolicyCliError> {
    let mut malformed = 0usize;
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| PolicyCliError::Read {
                name: "<stdin>".into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let parsed = match std::str::from_utf8(&buf) {
            Err(_) => Err("not UTF-8 text".to_owned()),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse_line(text.trim_end_matches(['\n', '\r'])),
        };
        match parsed {
            Ok(line) => {
                let answer = decide(policy, &RequestSpec::new(line, mode), mode);
                let json = serde_json::to_string(&answer)
                    .map_err(|e| PolicyCliError::Write(std::io::Error::other(e)))?;
                writeln!(out, "{json}")?;
                out.flush()?;
            }
            Err(problem) => {
                malformed += 1;
                writeln!(err, "line {line_no}: {problem}")?;
                err.flush()?;
            }
        }
    }
    Ok(if malformed > 0 { EXIT_INVALID } else { EXIT_OK })
}
