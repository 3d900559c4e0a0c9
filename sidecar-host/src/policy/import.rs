//! `svidgate policy import FILE [--trust-domain TD] [--trust-domain-alias TD]...
//! [--namespace NS] [--skip-unsupported]`: Istio `AuthorizationPolicy` resources → a svidgate
//! policy document on stdout. The conversion is `svidgate_core::policy::import` (shared with
//! the playground and the npm package); this module prints its diagnostics and picks the exit
//! code: 0 written; 1 invalid input or output the engine rejects; 3 unsupported features
//! (without `--skip-unsupported`) or features that cannot be skipped without widening the
//! policy (CUSTOM, AUDIT, unknown fields of a DENY policy).

use std::io::Write;

use svidgate_core::policy::import::ImportError;
use svidgate_core::policy::import::{convert, render_document, Failure, ImportOptions, Kind};

use super::{policy_error_lines, Input, PolicyCliError, EXIT_INVALID, EXIT_OK, EXIT_UNSUPPORTED};

/// Runs `import` end to end; returns the exit code.
pub fn run(
    input: &Input,
    opts: &ImportOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, PolicyCliError> {
    let name = &input.name;
    let imported = match convert(&input.text, opts) {
        Ok(i) => i,
        Err(ImportError::Option {
            option,
            value,
            message,
        }) => {
            return Err(PolicyCliError::BadOption {
                option,
                value,
                message,
            })
        }
        Err(e) => {
            writeln!(err, "{name}: error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let skip = opts.skip_unsupported;
    for d in &imported.diagnostics {
        writeln!(err, "{name}: {}", d.render(skip))?;
    }
    match imported.failure(skip) {
        Some(Failure::Invalid) => {
            let n = imported.count(Kind::Invalid);
            writeln!(err, "{name}: {n} error(s) in the input; nothing written")?;
            Ok(EXIT_INVALID)
        }
        Some(Failure::Unsupported) => {
            let refused = imported.count(Kind::Refused);
            if refused > 0 {
                writeln!(
                    err,
                    "{name}: {refused} feature(s) that cannot be dropped without widening the policy; nothing written"
                )?;
            } else {
                writeln!(
                    err,
                    "{name}: {} unsupported feature(s); nothing written \
                     (--skip-unsupported imports the rest, dropping them only where that is stricter)",
                    imported.count(Kind::Unsupported)
                )?;
            }
            Ok(EXIT_UNSUPPORTED)
        }
        Some(Failure::Rejected) => {
            if let Err(e) = imported.check() {
                for line in policy_error_lines("imported policy", &e) {
                    writeln!(err, "{name}: error: {line}")?;
                }
            }
            writeln!(
                err,
                "{name}: the imported policy is not valid for svidgate; nothing written"
            )?;
            Ok(EXIT_INVALID)
        }
        None => {
            out.write_all(render_document(&imported.document, name).as_bytes())?;
            out.flush()?;
            if imported.document.policies.is_empty() {
                writeln!(err, "{name}: note: no AuthorizationPolicy imported")?;
            }
            Ok(EXIT_OK)
        }
    }
}
