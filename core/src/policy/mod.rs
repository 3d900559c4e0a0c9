//! The policy engine: the document policy authors write (Istio AuthorizationPolicy shape),
//! its validation, the compiled index and its evaluation.
//!
//! Public contract used by the filter and the CLI (keep these names and shapes):
//! - [`PolicyDocument::from_yaml`] / [`PolicyDocument::from_json`] parse and validate a document;
//!   every problem is reported as a [`Problem`] naming the field path and the value.
//! - [`CompiledPolicy::compile`] builds the index once; [`CompiledPolicy::evaluate`] decides one
//!   [`Request`] in O(1) in the size of the allowlists; [`CompiledPolicy::explain`] traces it.
//! - [`CompiledPolicy::header_names`] lists the request headers any `when` condition reads, so
//!   the filter fetches only those.

use std::fmt;

use crate::spiffe_id::SpiffeId;

/// One problem found in a policy document: `<path>: <problem> (<value>)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `policies[1].rules[0].from[0].source.principals[2]`.
    pub path: String,
    /// What is wrong, e.g. `wildcard '*' is only allowed at the start or end`.
    pub problem: String,
    /// The offending value as written, e.g. `cluster.local/ns/*/sa/x`.
    pub value: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.problem, self.value)
    }
}

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not valid YAML/JSON at all.
    #[error("cannot parse policy document: {0}")]
    Syntax(String),
    /// The document parsed but is invalid; every problem found is listed.
    #[error("invalid policy document: {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

/// The policy document as written (YAML or JSON). Fields mirror DESIGN.md.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    // Filled in by the policy module implementation.
    _private: (),
}

impl PolicyDocument {
    pub fn from_yaml(_text: &str) -> Result<Self, PolicyError> {
        Err(PolicyError::Syntax("not implemented yet".into()))
    }
    pub fn from_json(_text: &str) -> Result<Self, PolicyError> {
        Err(PolicyError::Syntax("not implemented yet".into()))
    }
    /// Parses a `serde_json::Value` (the filter's `pluginConfig` minus its `filter` key).
    pub fn from_json_value(_value: serde_json::Value) -> Result<Self, PolicyError> {
        Err(PolicyError::Syntax("not implemented yet".into()))
    }
}

/// Whether the request is seen by an HTTP filter or a network (TCP) filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMode {
    Http,
    Network,
}

/// Why a request carries no valid identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoIdentity {
    /// The connection is not mTLS.
    NotMtls,
    /// mTLS, but the peer certificate has no URI SAN.
    NoUriSan,
    /// The URI SAN is not a valid SPIFFE ID.
    InvalidSpiffeId,
    /// The peer certificate breaks the X509-SVID leaf rules (strict mode).
    InvalidSvid,
    /// A host call failed or returned something unexpected.
    Unavailable,
}

/// The peer of a request: a verified SPIFFE ID, or none (and why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Identity(SpiffeId),
    None(NoIdentity),
}

/// The attributes of one request or connection. HTTP fields are `None` in network mode.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub peer: Peer,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    /// `:authority` / Host, as sent.
    pub host: Option<&'a str>,
    /// Destination (listener) port.
    pub port: Option<u16>,
    /// Request headers the policy reads (see [`CompiledPolicy::header_names`]); names lower case.
    pub headers: &'a [(&'a str, &'a str)],
    pub sni: Option<&'a str>,
}

/// The outcome of one evaluation pass (enforced or dry-run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'p> {
    pub allow: bool,
    /// The deciding policy's name, if a policy decided.
    pub policy: Option<&'p str>,
    /// Index of the deciding rule inside that policy.
    pub rule: Option<usize>,
    /// A short reason, e.g. `matched DENY policy`, `no ALLOW policy matched`.
    pub reason: &'static str,
}

/// The decision for a request: the enforced verdict and, when dry-run policies exist,
/// what they would have decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    pub enforced: Verdict<'p>,
    pub dry_run: Option<Verdict<'p>>,
}

/// The compiled, immutable index. Built once; evaluated per request.
#[derive(Debug)]
pub struct CompiledPolicy {
    _private: (),
}

impl CompiledPolicy {
    pub fn compile(_doc: &PolicyDocument) -> Result<Self, PolicyError> {
        Err(PolicyError::Syntax("not implemented yet".into()))
    }
    pub fn evaluate<'p>(&'p self, _req: &Request<'_>, _mode: EvalMode) -> Decision<'p> {
        Decision {
            enforced: Verdict {
                allow: false,
                policy: None,
                rule: None,
                reason: "not implemented",
            },
            dry_run: None,
        }
    }
    /// Human-readable trace: one line per policy and rule, matched or not and why.
    pub fn explain(&self, _req: &Request<'_>, _mode: EvalMode) -> Vec<String> {
        Vec::new()
    }
    /// Lower-case names of the request headers any `when` condition reads.
    pub fn header_names(&self) -> &[String] {
        &[]
    }
}
