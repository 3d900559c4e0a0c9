//! The policy engine: the document policy authors write (Istio AuthorizationPolicy shape),
//! its validation, the compiled index and its evaluation.
//!
//! Public contract used by the filter and the CLI (keep these names and shapes):
//! - [`PolicyDocument::from_yaml`] / [`PolicyDocument::from_json`] parse and validate a document;
//!   every problem is reported as a [`Problem`] naming the field path and the value.
//! - [`CompiledPolicy::compile`] builds the index once; [`CompiledPolicy::evaluate`] decides one
//!   [`Request`] in O(1) in the size of the allowlists; [`CompiledPolicy::explain`] traces it.
//! - [`CompiledPolicy::header_names`] lists the request headers any `when` condition reads, so
//!   the filter fetches only those; [`CompiledPolicy::attributes`] says which of the other
//!   request attributes (method, path, host, port, SNI) any rule reads at all, so the filter
//!   skips the host calls for the rest.

use std::fmt;

use crate::spiffe_id::SpiffeId;

mod compile;
pub mod diff;
mod evaluate;
mod explain;
pub mod import;
mod index;
pub mod lint;
mod model;
mod parse;
mod pattern;
pub mod request_line;
mod shape;
mod validate;
mod value;

pub use model::{
    Action, Condition, Mode, Operation, Policy, PolicyDocument, Rule, RuleFrom, RuleTo, Source,
};
pub(crate) use parse::DocStr;
pub(crate) use value::Json;

/// Is `path` equal to `parent` or below it (`parent.x`, `parent[i]`)?
fn within(path: &str, parent: &str) -> bool {
    match path.strip_prefix(parent) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

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
    /// The text is larger or nested deeper than the caps ([`MAX_DOCUMENT_BYTES`],
    /// [`MAX_DEPTH`], [`MAX_ALIASES`], [`MAX_ALIAS_NODES`]); it was not parsed.
    #[error("policy document too large: {0}")]
    TooLarge(String),
    /// The document parsed but is invalid; every problem found is listed.
    #[error("invalid policy document: {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

/// Largest policy document accepted, in bytes (YAML or JSON), checked before parsing. Large
/// enough for the default `maxValues` (100,000) of Istio-form principals (~45 bytes each).
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
/// Deepest nesting of mappings and lists accepted, checked before parsing (a policy document
/// needs about 10 levels).
pub const MAX_DEPTH: usize = 32;
/// Most YAML aliases (`*name`) accepted in a document, checked before parsing.
pub const MAX_ALIASES: usize = 1_000;
/// Most nodes YAML aliases may add to a document once expanded (a "billion laughs" document
/// is refused before anything expands it).
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Parses YAML text into a JSON value with the size and depth caps and duplicate keys
/// rejected (the first step of [`PolicyDocument::from_yaml`]).
pub fn yaml_value(text: &str) -> Result<serde_json::Value, PolicyError> {
    yaml_json(text).map(serde_json::Value::from)
}

/// Parses JSON text into a value with the size and depth caps and duplicate keys rejected
/// (the first step of [`PolicyDocument::from_json`]).
pub fn json_value(text: &str) -> Result<serde_json::Value, PolicyError> {
    json_json(text).map(serde_json::Value::from)
}

/// [`yaml_value`] as a [`Json`].
pub(crate) fn yaml_json(text: &str) -> Result<Json<'_>, PolicyError> {
    shape::yaml_shape(text)?;
    parse::yaml_to_value(text)
}

/// [`json_value`] as a [`Json`] whose strings borrow from `text` where they can.
pub(crate) fn json_json(text: &str) -> Result<Json<'_>, PolicyError> {
    let lengths = shape::json_lists(text)?;
    parse::json_to_value(text, lengths)
}

impl PolicyDocument {
    /// Parses and validates a YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        document_from_json(yaml_json(text)?)
    }

    /// Parses and validates a JSON document. Duplicate keys are rejected.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        document_from_json(json_json(text)?)
    }

    /// Parses and validates a `serde_json::Value` (the filter's `pluginConfig` minus its
    /// `filter` key). Every problem of the document is reported, in document order.
    pub fn from_json_value(value: serde_json::Value) -> Result<Self, PolicyError> {
        document_from_json(Json::from(value))
    }
}

/// Types and validates a parsed value, consuming it (its strings move into the document).
/// Every problem of the document is reported, in document order.
pub(crate) fn document_from_json<'a, S: DocStr<'a>>(
    value: Json<'a>,
) -> Result<PolicyDocument<S>, PolicyError> {
    let is_object = matches!(value, Json::Object(_));
    let mut walker = parse::Walker::new();
    let doc = walker.document(value);
    let mut problems = walker.problems;
    // A field that failed structurally is left empty (or holds a placeholder) in `doc`;
    // the validator's findings at, below or above it (e.g. "empty source" for a source
    // whose only field is unknown) would repeat the same problem and are left out.
    // A document that is not a mapping at all gets that one problem only.
    let value_problems = if is_object {
        validate::validate(&doc)
    } else {
        Vec::new()
    };
    for p in value_problems {
        if !problems
            .iter()
            .any(|q| within(&p.path, &q.path) || within(&q.path, &p.path))
        {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(PolicyError::Invalid(problems))
    }
}

impl PolicyDocument {
    /// Validates a document built in code (e.g. by `svidgate policy import`).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let problems = validate::validate(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Invalid(problems))
        }
    }

    /// The document as YAML (what `import` prints).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// The document as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
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

impl NoIdentity {
    /// A short description, e.g. `connection is not mTLS`.
    pub fn describe(self) -> &'static str {
        match self {
            NoIdentity::NotMtls => "connection is not mTLS",
            NoIdentity::NoUriSan => "peer certificate has no URI SAN",
            NoIdentity::InvalidSpiffeId => "URI SAN is not a valid SPIFFE ID",
            NoIdentity::InvalidSvid => "peer certificate is not a valid X509-SVID",
            NoIdentity::Unavailable => "peer identity unavailable",
        }
    }
}

/// The peer of a request: a verified SPIFFE ID, or none (and why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Identity(SpiffeId),
    None(NoIdentity),
}

impl Peer {
    /// The peer as Envoy reports it: `mtls` from `connection.mtls`, `uri_san` from
    /// `connection.uri_san_peer_certificate` (absent or empty: no URI SAN). An invalid
    /// SPIFFE ID is not an error: the peer simply has no identity.
    pub fn from_uri_san(mtls: bool, uri_san: Option<&str>) -> Peer {
        if !mtls {
            return Peer::None(NoIdentity::NotMtls);
        }
        match uri_san {
            None | Some("") => Peer::None(NoIdentity::NoUriSan),
            Some(s) => match SpiffeId::parse(s) {
                Ok(id) => Peer::Identity(id),
                Err(_) => Peer::None(NoIdentity::InvalidSpiffeId),
            },
        }
    }

    /// The SPIFFE ID, if the peer has one.
    pub fn identity(&self) -> Option<&SpiffeId> {
        match self {
            Peer::Identity(id) => Some(id),
            Peer::None(_) => None,
        }
    }
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

impl<'a> Request<'a> {
    /// A request with only a peer; set the other public fields as needed.
    pub fn new(peer: Peer) -> Self {
        Request {
            peer,
            method: None,
            path: None,
            host: None,
            port: None,
            headers: &[],
            sni: None,
        }
    }

    /// A network (TCP) connection: peer, destination port and SNI only.
    pub fn network(peer: Peer, port: Option<u16>, sni: Option<&'a str>) -> Self {
        Request {
            port,
            sni,
            ..Request::new(peer)
        }
    }

    /// An HTTP request with method and path (query string allowed: it is ignored).
    pub fn http(peer: Peer, method: &'a str, path: &'a str) -> Self {
        Request {
            method: Some(method),
            path: Some(path),
            ..Request::new(peer)
        }
    }
}

/// Which request attributes a compiled policy reads, computed once at compile time from the
/// compiled rules (`to` operations and `when` conditions of every policy, DENY and ALLOW,
/// enforced and dry-run). The peer is always read.
///
/// An attribute that is `false` here is never consulted by [`CompiledPolicy::evaluate`] (nor
/// [`CompiledPolicy::explain`]): leaving it `None` in the [`Request`] gives the same
/// [`Decision`] — same verdicts, policies, rules and reasons — as filling it in. A caller that
/// must pay to read an attribute (the filter: one host call each) reads only those set here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attributes {
    /// `methods` / `notMethods` (HTTP only).
    pub method: bool,
    /// `paths` / `notPaths` (HTTP only).
    pub path: bool,
    /// `hosts` / `notHosts` (HTTP only).
    pub host: bool,
    /// `ports` / `notPorts` or a `destination.port` condition.
    pub port: bool,
    /// A `connection.sni` condition.
    pub sni: bool,
    /// A `request.headers[..]` condition (HTTP only; names in
    /// [`CompiledPolicy::header_names`]).
    pub headers: bool,
}

impl Attributes {
    /// The attributes that matter in `mode`: network evaluation ignores the HTTP ones
    /// (method, path, host, headers), so only port and SNI remain.
    pub fn for_mode(self, mode: EvalMode) -> Attributes {
        match mode {
            EvalMode::Http => self,
            EvalMode::Network => Attributes {
                port: self.port,
                sni: self.sni,
                ..Attributes::default()
            },
        }
    }

    /// `req` with every attribute not listed here removed (set to `None` / no headers): what
    /// a caller that reads only these attributes builds. For tests of the equivalence.
    pub fn reduce<'a>(self, req: &Request<'a>) -> Request<'a> {
        Request {
            peer: req.peer.clone(),
            method: req.method.filter(|_| self.method),
            path: req.path.filter(|_| self.path),
            host: req.host.filter(|_| self.host),
            port: req.port.filter(|_| self.port),
            headers: if self.headers { req.headers } else { &[] },
            sni: req.sni.filter(|_| self.sni),
        }
    }
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

impl Decision<'_> {
    /// Is the request allowed (the enforced verdict)?
    pub fn allowed(&self) -> bool {
        self.enforced.allow
    }
}

/// A [`CompiledPolicy`] whose hash tables are still to be built (see
/// [`CompiledPolicy::compile_parsed`]).
#[derive(Debug)]
pub(crate) struct UnfinishedPolicy(compile::Unfinished);

impl UnfinishedPolicy {
    pub(crate) fn finish(self) -> CompiledPolicy {
        CompiledPolicy {
            index: self.0.finish(),
        }
    }
}

/// The compiled, immutable index. Built once; evaluated per request.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    index: compile::Index,
}

impl CompiledPolicy {
    /// Validates (again: a document may have been built in code) and compiles a document.
    pub fn compile<S: AsRef<str>>(doc: &PolicyDocument<S>) -> Result<Self, PolicyError> {
        compile::compile(doc).map(|index| CompiledPolicy { index })
    }

    /// Compiles a document [`document_from_json`] just returned (so validated: not again)
    /// whose strings borrow from `text`: the index keeps the exact values of its large sets
    /// as spans of `text` (holding it) rather than copies. Free the document, then
    /// [`UnfinishedPolicy::finish`] builds the hash tables.
    pub(crate) fn compile_parsed<S: AsRef<str>>(
        doc: &PolicyDocument<S>,
        text: &std::sync::Arc<String>,
    ) -> Result<UnfinishedPolicy, PolicyError> {
        compile::compile_validated(doc, text).map(UnfinishedPolicy)
    }

    /// Parses, validates and compiles a YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        Self::compile(&PolicyDocument::from_yaml(text)?)
    }

    /// Decides one request. Cost does not depend on the size of the allowlists. Nothing is
    /// allocated, except for a peer of a trust-domain alias whose ID is longer than 256 bytes
    /// and for a host or SNI value with upper-case letters (lower-cased once per request).
    pub fn evaluate<'p>(&'p self, req: &Request<'_>, mode: EvalMode) -> Decision<'p> {
        let mut buf = evaluate::IdBuf::new();
        let ctx = self.index.ctx(req, mode, &mut buf);
        self.index.decide(&ctx, &req.peer)
    }

    /// Human-readable trace: one line per policy and rule, matched or not and why, then the
    /// decision (and the dry-run decision when there is one).
    pub fn explain(&self, req: &Request<'_>, mode: EvalMode) -> Vec<String> {
        explain::explain(&self.index, req, mode)
    }

    /// Lower-case names of the request headers any `when` condition reads.
    pub fn header_names(&self) -> &[String] {
        &self.index.header_names
    }

    /// Which request attributes any rule reads (computed at compile time). Attributes not
    /// listed cannot change a decision; see [`Attributes`].
    pub fn attributes(&self) -> Attributes {
        self.index.attributes
    }

    /// The local trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.index.local_td
    }

    /// Does any policy run in dry-run (so [`Decision::dry_run`] is always `Some`)?
    pub fn has_dry_run(&self) -> bool {
        self.index.has_dry_run
    }

    /// Every policy as `(name, action, dry_run)`: DENY policies first, then ALLOW, each in
    /// document order (the evaluation order). For per-policy metrics.
    pub fn policies(&self) -> impl Iterator<Item = (&str, Action, bool)> + '_ {
        self.index
            .deny
            .iter()
            .chain(&self.index.allow)
            .map(|p| (&*p.name, p.action, p.dry_run))
    }
}
