//! `svidgate policy`: the policy author's tools (check, eval, explain, lint, diff, import).
//!
//! Each command is a plain function over readers and writers so it can be tested without a
//! process; `crate::cli` only parses arguments and wires stdin/stdout/stderr to them.
//!
//! The work is done by `svidgate_core::policy` (shared with the playground and the npm
//! package); these modules read files, print and pick exit codes.
//!
//! Exit codes (all commands): 0 success; 1 the input was understood but is wrong (an invalid
//! policy for `check`, a malformed request line for `eval`, a finding at `--fail-on` for `lint`,
//! differences for `diff`, an invalid resource for `import`); 2 the tool could not run
//! (unreadable file, unusable policy for `eval`/`explain`/`lint`/`diff`, usage, an inconclusive
//! `diff`); 3 `import` met Istio features svidgate does not support (without
//! `--skip-unsupported`) or that cannot be dropped without widening the policy.

use std::io::{self, Read};
use std::path::Path;

use svidgate_core::plugin_config::{ConfigError, PluginConfig};
use svidgate_core::policy::{self, CompiledPolicy, PolicyDocument, PolicyError};

mod args;
pub mod check;
pub mod diff;
pub mod eval;
pub mod explain;
pub mod import;
pub mod lint;

/// The peer mapping and reasons of `eval`'s format live in core (the playground uses them).
pub use svidgate_core::policy::request_line::{
    decision_word, peer_from_envoy, verdict_reason, PeerView,
};

pub use args::{run, ExplainArgs, PolicyCommand};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the input was read but is invalid (policy problems, malformed lines).
pub const EXIT_INVALID: i32 = 1;
/// Exit code: the tool could not do its job (unreadable file, unusable policy).
pub const EXIT_UNUSABLE: i32 = 2;
/// Exit code: `import` found Istio features svidgate does not support.
pub const EXIT_UNSUPPORTED: i32 = 3;

/// Errors of the policy CLI that stop a command (problems in the input are reported by the
/// commands themselves, line by line, and turned into exit codes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyCliError {
    /// A file (or stdin) could not be read. (The cause is the error's source: `{:#}` shows it.)
    #[error("cannot read {name}")]
    Read {
        name: String,
        #[source]
        source: io::Error,
    },
    /// A file is not UTF-8 text.
    #[error("cannot read {name}: not UTF-8 text")]
    NotUtf8 { name: String },
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Write(#[from] io::Error),
    /// The policy given to `eval`/`explain` is not valid; its problems were printed.
    #[error("{name}: policy is not valid ({count} problem(s) above); run `svidgate policy check {name}`")]
    UnusablePolicy { name: String, count: usize },
    /// `eval --policy -`: stdin carries the requests.
    #[error("--policy -: stdin carries the requests for `eval`; give the policy as a file")]
    PolicyFromStdin,
    /// `--header` without `=`.
    #[error("--header {0:?}: expected NAME=VALUE")]
    BadHeader(String),
    /// An option's value is invalid, e.g. `--trust-domain Bad.Example`.
    #[error("{option} {value:?}: {message}")]
    BadOption {
        option: &'static str,
        value: String,
        message: String,
    },
    /// `diff OLD NEW` with both from stdin.
    #[error("diff: only one of OLD and NEW can be `-` (stdin)")]
    BothFromStdin,
}

/// A named input text: a file or stdin (`-`).
#[derive(Debug, Clone)]
pub struct Input {
    /// How to name the input in messages: the path as given, or `<stdin>`.
    pub name: String,
    /// Whether the name ends in `.json` (forces JSON parsing).
    pub json_extension: bool,
    pub text: String,
}

impl Input {
    /// Reads `path`, or `stdin` when `path` is `-`.
    pub fn read(path: &Path, stdin: &mut dyn Read) -> Result<Self, PolicyCliError> {
        let is_stdin = path.as_os_str() == "-";
        let name = if is_stdin {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        let mut bytes = Vec::new();
        let res = if is_stdin {
            stdin.read_to_end(&mut bytes).map(|_| ())
        } else {
            std::fs::read(path).map(|b| bytes = b)
        };
        res.map_err(|source| PolicyCliError::Read {
            name: name.clone(),
            source,
        })?;
        let text =
            String::from_utf8(bytes).map_err(|_| PolicyCliError::NotUtf8 { name: name.clone() })?;
        let json_extension = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Ok(Input {
            name,
            json_extension,
            text,
        })
    }

    /// An in-memory input (tests).
    pub fn from_text(name: &str, text: &str) -> Self {
        Input {
            name: name.to_owned(),
            json_extension: name.to_ascii_lowercase().ends_with(".json"),
            text: text.to_owned(),
        }
    }

    /// JSON when the file is named `*.json` or its first non-blank character is `{`;
    /// YAML otherwise.
    pub fn is_json(&self) -> bool {
        self.json_extension || self.text.trim_start().starts_with('{')
    }
}

/// A validated and compiled policy.
#[derive(Debug)]
pub struct LoadedPolicy {
    pub document: PolicyDocument,
    pub compiled: CompiledPolicy,
}

/// Parses, validates and compiles a policy document.
///
/// The input may be a whole WasmPlugin `pluginConfig`: its `filter` settings are checked as
/// the filter checks them and otherwise ignored here (a bad one is reported like a syntax
/// error, with the field named).
pub fn load_policy(input: &Input) -> Result<LoadedPolicy, PolicyError> {
    let config = load_plugin_config(input).map_err(|e| match e {
        ConfigError::Policy(e) => e,
        other => PolicyError::Syntax(other.to_string()),
    })?;
    let compiled = CompiledPolicy::compile(&config.document)?;
    Ok(LoadedPolicy {
        document: config.document,
        compiled,
    })
}

/// Parses (YAML, or JSON with duplicate keys rejected) and validates the input as a
/// `pluginConfig`: what the filter's `on_configure` does with the same text.
pub fn load_plugin_config(input: &Input) -> Result<PluginConfig, ConfigError> {
    if input.is_json() {
        PluginConfig::from_value(policy::json_value(&input.text)?)
    } else {
        PluginConfig::from_yaml(&input.text)
    }
}

/// One line per problem: `NAME: <path>: <problem> (<value>)`, or `NAME: <syntax error>`.
pub fn policy_error_lines(name: &str, err: &PolicyError) -> Vec<String> {
    match err {
        PolicyError::Syntax(msg) => vec![format!("{name}: {msg}")],
        PolicyError::Invalid(problems) if !problems.is_empty() => {
            problems.iter().map(|p| format!("{name}: {p}")).collect()
        }
        other => vec![format!("{name}: {other}")],
    }
}

/// Loads the policy for `eval`/`explain`; on problems prints them to `err` and fails.
pub fn load_policy_or_report(
    input: &Input,
    err: &mut dyn io::Write,
) -> Result<LoadedPolicy, PolicyCliError> {
    match load_policy(input) {
        Ok(p) => Ok(p),
        Err(e) => {
            let lines = policy_error_lines(&input.name, &e);
            for line in &lines {
                writeln!(err, "{line}")?;
            }
            Err(PolicyCliError::UnusablePolicy {
                name: input.name.clone(),
                count: lines.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_detection() {
        let cases = [
            ("p.json", "trustDomain: x", true),
            ("p.JSON", "", true),
            ("p.yaml", "trustDomain: x", false),
            ("p.yaml", "  \n {\"trustDomain\": \"x\"}", true),
            ("<stdin>", "{}", true),
            ("<stdin>", "# c\n{}", false),
        ];
        for (name, text, json) in cases {
            assert_eq!(
                Input::from_text(name, text).is_json(),
                json,
                "{name} {text:?}"
            );
        }
    }

    #[test]
    fn read_missing_file_is_a_read_error() {
        let err = Input::read(Path::new("/nonexistent/p.yaml"), &mut io::empty()).unwrap_err();
        let msg = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(
            msg,
            "cannot read /nonexistent/p.yaml: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn read_stdin_and_reject_non_utf8() {
        let input = Input::read(Path::new("-"), &mut &b"trustDomain: x\n"[..]).unwrap();
        assert_eq!(input.name, "<stdin>");
        assert_eq!(input.text, "trustDomain: x\n");
        let err = Input::read(Path::new("-"), &mut &b"\xff\xfe"[..]).unwrap_err();
        assert_eq!(err.to_string(), "cannot read <stdin>: not UTF-8 text");
    }

    #[test]
    fn problem_lines() {
        let err = PolicyError::Invalid(vec![svidgate_core::policy::Problem {
            path: "policies[0].name".into(),
            problem: "must not be empty".into(),
            value: "".into(),
        }]);
        assert_eq!(
            policy_error_lines("p.yaml", &err),
            ["p.yaml: policies[0].name: must not be empty ()"]
        );
        let err = PolicyError::Syntax("expected ':' at line 2 column 3".into());
        assert_eq!(
            policy_error_lines("p.yaml", &err),
            ["p.yaml: expected ':' at line 2 column 3"]
        );
    }
}
