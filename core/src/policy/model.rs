//! The policy document as policy authors write it (Istio `AuthorizationPolicy` shape).
//!
//! These are plain data types: [`super::PolicyDocument::from_yaml`] and friends build them from
//! text and validate them; [`super::CompiledPolicy::compile`] validates again (a document can
//! also be built in code, e.g. by the CLI's `import`) and compiles it.
//!
//! In the typed model an empty list means "field absent". The parser rejects an explicitly
//! empty list (`principals: []`) because its meaning is ambiguous to a reader.
//!
//! The types are generic over their string type `S`, `String` unless said otherwise: the
//! filter validates and compiles a document whose strings borrow from the configuration
//! text (`Cow<str>`), so a large allowlist is never copied string by string.

use serde::Serialize;

/// The whole document: trust domain settings and the list of policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDocument<S = String> {
    /// The local trust domain, e.g. `cluster.local`.
    pub trust_domain: S,
    /// Trust domains whose peers count as the local trust domain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domain_aliases: Vec<S>,
    /// `enforce` (default) or `dryRun` (every policy is dry-run).
    pub mode: Mode,
    /// The policies, in document order.
    pub policies: Vec<Policy<S>>,
}

/// Document mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Mode {
    /// Policies decide.
    #[default]
    #[serde(rename = "enforce")]
    Enforce,
    /// Every policy is evaluated and reported, none is enforced.
    #[serde(rename = "dryRun")]
    DryRun,
}

/// A policy's action. Istio's `AUDIT` and `CUSTOM` are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Action {
    /// Allow when a rule matches (Istio's default action).
    #[default]
    #[serde(rename = "ALLOW")]
    Allow,
    /// Deny when a rule matches; evaluated before every ALLOW policy.
    #[serde(rename = "DENY")]
    Deny,
}

impl Action {
    /// `ALLOW` or `DENY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One AuthorizationPolicy-shaped entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy<S = String> {
    /// Unique, non-empty name; reported in decisions, logs and metrics.
    pub name: S,
    pub action: Action,
    /// Per-policy dry run (Istio's `istio.io/dry-run` annotation).
    #[serde(skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// No rules: the policy matches nothing.
    pub rules: Vec<Rule<S>>,
}

/// A rule: at least one `from`, at least one `to` and every `when` must match; an absent
/// (empty) list matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rule<S = String> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom<S>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo<S>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition<S>>,
}

impl<S> Rule<S> {
    /// How many values the rule lists (every source, operation and `when` value, negated ones
    /// included): what `filter.limits.maxValues` counts and the playground reports.
    pub fn value_count(&self) -> usize {
        let from: usize = self.from.iter().map(|f| f.source.value_count()).sum();
        let to: usize = self.to.iter().map(|t| t.operation.value_count()).sum();
        let when: usize = self
            .when
            .iter()
            .map(|c| c.values.len() + c.not_values.len())
            .sum();
        from + to + when
    }
}

/// `from[i]`: a source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleFrom<S = String> {
    pub source: Source<S>,
}

/// `to[i]`: an operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleTo<S = String> {
    pub operation: Operation<S>,
}

/// Who sends the request. Fields are ANDed, values inside a field ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source<S = String> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<S>,
}

impl<S> Source<S> {
    /// How many values the fields list, negated ones included.
    pub fn value_count(&self) -> usize {
        self.principals.len()
            + self.not_principals.len()
            + self.namespaces.len()
            + self.not_namespaces.len()
            + self.trust_domains.len()
            + self.not_trust_domains.len()
    }

    /// No field set.
    pub fn is_empty(&self) -> bool {
        self.value_count() == 0
    }
}

/// What the request does. Fields are ANDed, values inside a field ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation<S = String> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
}

impl<S> Operation<S> {
    /// How many values the fields list, negated ones included.
    pub fn value_count(&self) -> usize {
        self.methods.len()
            + self.not_methods.len()
            + self.paths.len()
            + self.not_paths.len()
            + self.hosts.len()
            + self.not_hosts.len()
            + self.ports.len()
            + self.not_ports.len()
    }

    /// No field set.
    pub fn is_empty(&self) -> bool {
        self.value_count() == 0
    }

    /// Does the operation use HTTP-only fields (methods, paths, hosts and their `not*`)?
    pub fn uses_http(&self) -> bool {
        !(self.methods.is_empty()
            && self.not_methods.is_empty()
            && self.paths.is_empty()
            && self.not_paths.is_empty()
            && self.hosts.is_empty()
            && self.not_hosts.is_empty())
    }
}

/// A `when` condition: `key` with `values` (one must match) and/or `notValues` (none may match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition<S = String> {
    pub key: S,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<S>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<S>,
}
