//! `svidgate policy`: the policy author's tools (check, eval, explain, import).
//!
//! Each command is a plain function over readers and writers so it can be tested without a
//! process; `crate::cli` only parses arguments and wires stdin/stdout/stderr to them.
//!
//! Exit codes (all commands): 0 success; 1 the input was understood but is wrong (an invalid
//! policy for `check`, a malformed request line for `eval`, an invalid resource for `import`);
//! 2 the tool could not run (unreadable file, unusable policy for `eval`/`explain`, usage);
//! 3 `import` met Istio features svidgate does not support (without `--skip-unsupported`).

use std::io::{self, Read};
use std::path::Path;

use svidgate_core::policy::{
    CompiledPolicy, NoIdentity, Peer, PolicyDocument, PolicyError, Verdict,
};
use svidgate_core::SpiffeId;

mod args;
pub mod check;
pub mod eval;
pub mod explain;
pub mod import;

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
    /// `--trust-domain` is not a valid trust domain (the cause is the error's source).
    #[error("--trust-domain {value:?}")]
    BadTrustDomain {
        value: String,
        #[source]
        source: svidgate_core::SpiffeIdError,
    },
    /// The Kubernetes YAML given to `import` does not parse.
    #[error("{name}: {message}")]
    ImportSyntax { name: String, message: String },
    /// The document produced by `import` could not be serialized.
    #[error("cannot write the imported policy as YAML: {0}")]
    Serialize(String),
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
pub fn load_policy(input: &Input) -> Result<LoadedPolicy, PolicyError> {
    let document = if input.is_json() {
        PolicyDocument::from_json(&input.text)?
    } else {
        PolicyDocument::from_yaml(&input.text)?
    };
    let compiled = CompiledPolicy::compile(&document)?;
    Ok(LoadedPolicy { document, compiled })
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

/// The peer as the filter derives it from Envoy's connection properties, plus, when there is
/// no valid identity, a human-readable why (`no valid peer identity: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub peer: Peer,
    pub why_none: Option<String>,
}

/// Maps `connection.mtls` and `connection.uri_san_peer_certificate` to a [`Peer`] with the
/// engine's [`Peer::from_uri_san`] — the mapping the filter uses: not mTLS →
/// [`NoIdentity::NotMtls`]; no or an empty URI SAN → [`NoIdentity::NoUriSan`]; a URI SAN that
/// is not a valid workload SPIFFE ID (strict parsing, nothing normalized) →
/// [`NoIdentity::InvalidSpiffeId`] — and adds, when there is no identity, why.
pub fn peer_from_envoy(mtls: bool, uri_san: Option<&str>) -> PeerView {
    let peer = Peer::from_uri_san(mtls, uri_san);
    let why_none = match &peer {
        Peer::Identity(_) => None,
        Peer::None(NoIdentity::InvalidSpiffeId) => {
            let san = uri_san.unwrap_or_default();
            let detail = match SpiffeId::parse(san) {
                Err(e) => e.to_string(),
                Ok(_) => NoIdentity::InvalidSpiffeId.describe().to_owned(),
            };
            Some(format!("invalid SPIFFE ID {san:?}: {detail}"))
        }
        Peer::None(kind) => Some(kind.describe().to_owned()),
    };
    PeerView {
        peer,
        why_none: why_none.map(|why| format!("no valid peer identity: {why}")),
    }
}

/// The reason shown for a verdict: the engine's reason, preceded by why the peer has no
/// identity when it has none (e.g. `no valid peer identity: invalid SPIFFE ID "x": <what is
/// wrong>; no ALLOW policy matched`). The engine's own short note on the missing identity
/// (` (no peer identity: ...)`) is left out: the prefix says it, with the details.
pub fn verdict_reason(peer: &PeerView, verdict: &Verdict<'_>) -> String {
    match &peer.why_none {
        Some(why) => {
            let base = match verdict.reason.find(" (no peer identity: ") {
                Some(i) if verdict.reason.ends_with(')') => &verdict.reason[..i],
                _ => verdict.reason,
            };
            format!("{why}; {base}")
        }
        None => verdict.reason.to_owned(),
    }
}

/// `allow` / `deny`.
pub fn decision_word(verdict: &Verdict<'_>) -> &'static str {
    if verdict.allow {
        "allow"
    } else {
        "deny"
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
    fn peer_mapping_matches_the_filter() {
        let id = "spiffe://cluster.local/ns/web/sa/frontend";
        let cases: [(bool, Option<&str>, Peer, Option<&str>); 7] = [
            (
                true,
                Some(id),
                Peer::Identity(SpiffeId::parse(id).unwrap()),
                None,
            ),
            // mTLS false wins over whatever URI SAN is given.
            (
                false,
                Some(id),
                Peer::None(NoIdentity::NotMtls),
                Some("no valid peer identity: connection is not mTLS"),
            ),
            (
                true,
                None,
                Peer::None(NoIdentity::NoUriSan),
                Some("no valid peer identity: peer certificate has no URI SAN"),
            ),
            (
                true,
                Some("SPIFFE://cluster.local/ns/a/sa/b"),
                Peer::None(NoIdentity::InvalidSpiffeId),
                Some("no valid peer identity: invalid SPIFFE ID \"SPIFFE://cluster.local/ns/a/sa/b\": "),
            ),
            (
                true,
                Some("spiffe://cluster.local"),
                Peer::None(NoIdentity::InvalidSpiffeId),
                Some("no valid peer identity: invalid SPIFFE ID \"spiffe://cluster.local\": workload SPIFFE ID has no path"),
            ),
            (
                true,
                Some(""),
                Peer::None(NoIdentity::NoUriSan),
                Some("no valid peer identity: peer certificate has no URI SAN"),
            ),
            (
                true,
                Some("spiffe://cluster.local/ns/a/../b"),
                Peer::None(NoIdentity::InvalidSpiffeId),
                Some("no valid peer identity: invalid SPIFFE ID \"spiffe://cluster.local/ns/a/../b\": path has a '.' or '..' segment"),
            ),
        ];
        for (mtls, san, peer, why) in cases {
            let view = peer_from_envoy(mtls, san);
            assert_eq!(view.peer, peer, "{mtls} {san:?}");
            match (why, &view.why_none) {
                (None, None) => {}
                (Some(want), Some(got)) => assert!(got.starts_with(want), "{got} vs {want}"),
                (want, got) => panic!("{san:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn reason_includes_why_the_peer_has_no_identity() {
        let verdict = Verdict {
            allow: false,
            policy: None,
            rule: None,
            reason: "no ALLOW policy matched",
        };
        let none = peer_from_envoy(false, None);
        assert_eq!(
            verdict_reason(&none, &verdict),
            "no valid peer identity: connection is not mTLS; no ALLOW policy matched"
        );
        let some = peer_from_envoy(true, Some("spiffe://td/x"));
        assert_eq!(verdict_reason(&some, &verdict), "no ALLOW policy matched");
        let engine_noted = Verdict {
            reason: "no ALLOW policy matched (no peer identity: connection is not mTLS)",
            ..verdict
        };
        assert_eq!(
            verdict_reason(&none, &engine_noted),
            "no valid peer identity: connection is not mTLS; no ALLOW policy matched"
        );
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
