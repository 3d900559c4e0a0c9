//! The policy document as policy authors write it (Istio `AuthorizationPolicy` shape).
//!
//! These are plain data types: [`super::PolicyDocument::from_yaml`] and friends build them from
//! text and validate them; [`super::CompiledPolicy::compile`] validates again (a document can
//! also be built in code, e.g. by the CLI's `import`) and compiles it.
//!
//! In the typed model an empty list means "field absent". The parser rejects an explicitly
//! empty list (`principals: []`) because its meaning is ambiguous to a reader.

use serde::Serialize;

/// The whole document: trust domain settings and the list of policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDocument {
    /// The local trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// Trust domains whose peers count as the local trust domain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domain_aliases: Vec<String>,
    /// `enforce` (default) or `dryRun` (every policy is dry-run).
    pub mode: Mode,
    /// The policies, in document order.
    pub policies: Vec<Policy>,
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
pub struct Policy {
    /// Unique, non-empty name; reported in decisions, logs and metrics.
    pub name: String,
    pub action: Action,
    /// Per-policy dry run (Istio's `istio.io/dry-run` annotation).
    #[serde(skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// No rules: the policy matches nothing.
    pub rules: Vec<Rule>,
}

/// A rule: at least one `from`, at least one `to` and every `when` must match; an absent
/// (empty) list matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rule {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

impl Rule {
    /// How many values the rule lists (every source, operation and `when` value, negated ones
    /// included): what `filter.limits.maxValues` counts and the playground reports.
    pub fn value_count(&self) -> usize {
        let from: usize = self
            .from
            .iter()
            .map(|f| {
                let s = &f.source;
                s.principals.len()
                    + s.not_principals.len()
                    + s.namespaces.len()
                    + s.not_namespaces.len()
                    + s.trust_domains.len()
                    + s.not_trust_domains.len()
            })
            .sum();
        let to: usize = self
            .to
            .iter()
            .map(|t| {
                let o = &t.operation;
                o.methods.len()
                    + o.not_methods.len()
                    + o.paths.len()
                    + o.not_paths.len()
                    + o.hosts.len()
                    + o.not_hosts.len()
                    + o.ports.len()
                    + o.not_ports.len()
            })
            .sum();
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
pub struct RuleFrom {
    pub source: Source,
}

/// `to[i]`: an operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleTo {
    pub operation: Operation,
}

/// Who sends the request. Fields are ANDed, values inside a field ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

impl Source {
    /// No field set.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
            && self.not_principals.is_empty()
            && self.namespaces.is_empty()
            && self.not_namespaces.is_empty()
            && self.trust_domains.is_empty()
            && self.not_trust_domains.is_empty()
    }
}

/// What the request does. Fields are ANDed, values inside a field ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
}

impl Operation {
    /// No field set.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
            && self.not_methods.is_empty()
            && self.paths.is_empty()
            && self.not_paths.is_empty()
            && self.hosts.is_empty()
            && self.not_hosts.is_empty()
            && self.ports.is_empty()
            && self.not_ports.is_empty()
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
pub struct Condition {
    pub key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}
