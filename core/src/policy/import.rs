//! Istio `AuthorizationPolicy` resources (Kubernetes YAML) → a svidgate [`PolicyDocument`].
//!
//! Reads one or many documents separated by `---` (`kind: List` too) and maps every
//! `security.istio.io/v1` / `v1beta1` `AuthorizationPolicy` to one svidgate policy named
//! `<namespace>.<name>`: `spec.action`, `spec.rules[].from[].source` (principals, namespaces,
//! trustDomains, serviceAccounts `<ns>/<sa>` and their `not*`), `to[].operation`, the `when`
//! keys svidgate evaluates (`request.headers[..]`, `source.principal`, `source.namespace`,
//! `source.serviceAccount`, `destination.port`, `connection.sni`) and the `istio.io/dry-run`
//! annotation.
//!
//! Nothing is dropped silently, and nothing is ever widened. What svidgate cannot express
//! (CUSTOM and AUDIT actions, JWT request principals and `request.auth.*` claims, IP blocks and
//! IP conditions, path templates, unknown fields) is an error and no document is produced —
//! unless `skip_unsupported` is set; then an item is dropped only where that makes the result
//! stricter, with a warning:
//! - an ALLOW rule that needs it is dropped whole (it allows nothing);
//! - in a DENY rule only that condition is dropped (the rule denies more, never less);
//! - anything else (a CUSTOM, AUDIT or DENY policy as a whole, a DENY policy's unknown field)
//!   is refused: the import fails.
//!
//! `serviceAccounts` entries `<ns>/<sa>` become principals. Whether Istio matches them in the
//! local trust domain only or in any trust domain, the mapping picks the stricter reading for
//! each use: a principal of the local trust domain (and its aliases) where a wider match would
//! allow more (`serviceAccounts` in ALLOW, `notServiceAccounts` in DENY), `*/ns/<ns>/sa/<sa>`
//! (any trust domain) where it would deny more.
//!
//! A policy without a selector applies to every workload of its namespace in Istio, and a
//! svidgate document to every workload whose filter loads it: importing several namespaces
//! into one document gives a warning naming them; [`ImportOptions::namespace`] imports one
//! namespace (plus the mesh root namespace, whose policies apply everywhere).

use serde::Deserialize as _;
use serde_yaml::Value;

use super::model::{
    Action, Condition, Mode, Operation, Policy, PolicyDocument, Rule, RuleFrom, RuleTo, Source,
};
use super::{CompiledPolicy, PolicyError};
use crate::spiffe_id::TrustDomain;

/// The annotation Istio uses for dry-run policies.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Istio's default root namespace: its policies apply to every workload of the mesh.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// Largest input accepted (bytes) and deepest nesting, checked before parsing.
pub const MAX_INPUT_BYTES: usize = 4 << 20;
const MAX_DEPTH: usize = 64;

/// Errors that stop an import before any resource is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The text is not YAML.
    #[error("document {document}: {message}")]
    Syntax { document: usize, message: String },
    /// The input is larger or deeper than the import accepts.
    #[error("input too large: {0}")]
    TooLarge(String),
    /// An option is invalid (e.g. a trust domain).
    #[error("{option} {value:?}: {message}")]
    Option {
        option: &'static str,
        value: String,
        message: String,
    },
}

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The output document's `trustDomain` (default `cluster.local`).
    pub trust_domain: String,
    /// Istio's `meshConfig.trustDomainAliases`: written to the document so that a principal
    /// of the local trust domain or an alias matches the peer under every one of them.
    pub trust_domain_aliases: Vec<String>,
    /// Import only the policies of this namespace (and of the root namespace).
    pub namespace: Option<String>,
    /// Drop unsupported items where that only makes the result stricter, instead of failing.
    pub skip_unsupported: bool,
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The input is wrong (not valid Istio either): always an error.
    Invalid,
    /// Valid Istio that svidgate cannot express: an error, or, with `skip_unsupported`, a
    /// warning and dropped the stricter way.
    Unsupported,
    /// Valid Istio that svidgate cannot express and that cannot be dropped without widening
    /// the policy: always an error.
    Refused,
    /// Imported, but something changed that the user must know.
    Warning,
    /// For information (skipped documents).
    Note,
}

/// One message about the input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub kind: Kind,
    /// `AuthorizationPolicy foo/bar (document 2)`.
    pub resource: String,
    /// Field path inside the resource, e.g. `spec.rules[0].from[0].source.ipBlocks`.
    pub path: String,
    pub message: String,
    /// The offending value as compact JSON.
    pub value: Option<String>,
    /// What skipping does about it.
    pub consequence: Option<String>,
}

impl Diagnostic {
    /// The label and whether it is an error, given whether unsupported items are skipped.
    pub fn label(&self, skip: bool) -> &'static str {
        match self.kind {
            Kind::Invalid | Kind::Refused => "error",
            Kind::Unsupported if skip => "warning",
            Kind::Unsupported => "error",
            Kind::Warning => "warning",
            Kind::Note => "note",
        }
    }

    /// Renders the diagnostic as one line.
    pub fn render(&self, skip: bool) -> String {
        let label = self.label(skip);
        let consequence = match self.kind {
            Kind::Unsupported if skip => self.consequence.as_deref(),
            Kind::Warning | Kind::Refused => self.consequence.as_deref(),
            _ => None,
        };
        let mut s = format!("{label}: {}: ", self.resource);
        if !self.path.is_empty() {
            s.push_str(&self.path);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        if let Some(v) = &self.value {
            s.push_str(&format!(" ({v})"));
        }
        if let Some(c) = consequence {
            s.push_str("; ");
            s.push_str(c);
        }
        s
    }
}

/// The result of converting the input.
#[derive(Debug, Clone)]
pub struct Imported {
    pub document: PolicyDocument,
    pub diagnostics: Vec<Diagnostic>,
}

/// Why an import produced no document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Invalid input (exit 1 in the CLI).
    Invalid,
    /// Unsupported features without `skip_unsupported`, or refused ones (exit 3).
    Unsupported,
    /// The converted document is not a valid svidgate policy (exit 1).
    Rejected,
}

impl Imported {
    pub fn count(&self, kind: Kind) -> usize {
        self.diagnostics.iter().filter(|d| d.kind == kind).count()
    }

    /// Whether the document may be used, and if not why.
    pub fn failure(&self, skip: bool) -> Option<Failure> {
        if self.count(Kind::Invalid) > 0 {
            Some(Failure::Invalid)
        } else if self.count(Kind::Refused) > 0 || (!skip && self.count(Kind::Unsupported) > 0) {
            Some(Failure::Unsupported)
        } else if CompiledPolicy::compile(&self.document).is_err() {
            Some(Failure::Rejected)
        } else {
            None
        }
    }

    /// The engine's verdict on the converted document.
    pub fn check(&self) -> Result<(), PolicyError> {
        CompiledPolicy::compile(&self.document).map(|_| ())
    }
}

/// The document as YAML, with a header comment naming its origin.
pub fn render_document(doc: &PolicyDocument, source: &str) -> String {
    format!(
        "# svidgate policy imported from Istio AuthorizationPolicy resources ({source}).\n{}",
        doc.to_yaml()
    )
}

fn depth_ok(text: &str) -> bool {
    // Flow nesting depth: brackets and braces outside quotes. (Block nesting is bounded by the
    // input size and indentation.)
    let mut depth = 0usize;
    let (mut single, mut double) = (false, false);
    for c in text.chars() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '\n' => {
                single = false;
                double = false;
            }
            '[' | '{' if !single && !double => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            ']' | '}' if !single && !double => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Converts Kubernetes YAML text. `Err` only when the input cannot be read at all.
pub fn convert(text: &str, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let td = if opts.trust_domain.is_empty() {
        "cluster.local".to_owned()
    } else {
        opts.trust_domain.clone()
    };
    let check_td = |option: &'static str, v: &str| {
        TrustDomain::new(v)
            .map(|_| ())
            .map_err(|e| ImportError::Option {
                option,
                value: v.to_owned(),
                message: e.to_string(),
            })
    };
    check_td("--trust-domain", &td)?;
    for a in &opts.trust_domain_aliases {
        check_td("--trust-domain-alias", a)?;
    }
    if text.len() > MAX_INPUT_BYTES {
        return Err(ImportError::TooLarge(format!(
            "{} bytes, at most {MAX_INPUT_BYTES}",
            text.len()
        )));
    }
    if !depth_ok(text) {
        return Err(ImportError::TooLarge(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| ImportError::Syntax {
            document: i + 1,
            message: e.to_string(),
        })?;
        docs.push(value);
    }
    let mut imp = Importer {
        diags: Vec::new(),
        policies: Vec::new(),
        td: td.clone(),
        namespace: opts.namespace.clone(),
        namespaces: Vec::new(),
    };
    for (i, doc) in docs.iter().enumerate() {
        imp.document(doc, &format!("document {}", i + 1));
    }
    let scoped: Vec<&String> = imp
        .namespaces
        .iter()
        .filter(|n| n.as_str() != ROOT_NAMESPACE)
        .collect();
    if opts.namespace.is_none() && scoped.len() > 1 {
        let names: Vec<&str> = scoped.iter().map(|s| s.as_str()).collect();
        imp.diags.push(Diagnostic {
            kind: Kind::Warning,
            resource: "input".into(),
            path: String::new(),
            message: format!(
                "policies of {} namespaces ({}) imported into one document: in Istio a policy applies only to the workloads of its own namespace, in svidgate to every workload whose filter loads the document",
                names.len(),
                names.join(", ")
            ),
            value: None,
            consequence: Some(
                "import one namespace at a time (--namespace) and load each document only in that namespace's filters".into(),
            ),
        });
    }
    let mut aliases: Vec<String> = Vec::new();
    for a in &opts.trust_domain_aliases {
        if *a != td && !aliases.contains(a) {
            aliases.push(a.clone());
        }
    }
    Ok(Imported {
        document: PolicyDocument {
            trust_domain: td,
            trust_domain_aliases: aliases,
            mode: Mode::Enforce,
            policies: imp.policies,
        },
        diagnostics: imp.diags,
    })
}

struct Importer {
    diags: Vec<Diagnostic>,
    policies: Vec<Policy>,
    td: String,
    namespace: Option<String>,
    /// Namespaces of the imported policies, in order of first appearance.
    namespaces: Vec<String>,
}

/// Where diagnostics of one resource go.
struct Res<'a> {
    label: String,
    diags: &'a mut Vec<Diagnostic>,
    action: Action,
    td: &'a str,
}

impl Res<'_> {
    fn push(
        &mut self,
        kind: Kind,
        path: &str,
        message: impl Into<String>,
        value: Option<&Value>,
        consequence: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            kind,
            resource: self.label.clone(),
            path: path.to_owned(),
            message: message.into(),
            value: value.map(compact),
            consequence,
        });
    }

    fn invalid(&mut self, path: &str, message: impl Into<String>, value: &Value) {
        self.push(Kind::Invalid, path, message, Some(value), None);
    }

    /// Reports an unsupported item inside rule `rule`; says what skipping does about it.
    fn unsupported_in_rule(
        &mut self,
        rule: usize,
        path: &str,
        message: impl Into<String>,
        value: &Value,
    ) {
        let consequence = match self.action {
            Action::Allow => format!(
                "rule {rule} dropped: an ALLOW rule svidgate cannot fully check allows nothing"
            ),
            Action::Deny => {
                "condition dropped: the DENY rule now matches more requests, never fewer".to_owned()
            }
        };
        self.push(
            Kind::Unsupported,
            path,
            message,
            Some(value),
            Some(consequence),
        );
    }
}

/// Compact JSON of a YAML value, for messages.
fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| {
        serde_yaml::to_string(v)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

fn str_field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// A mapping's entries as (`key`, value); non-string keys are shown in their JSON form.
fn entries(v: &Value) -> Vec<(String, &Value)> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map(str::to_owned).unwrap_or_else(|| compact(k)),
                        v,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Importer {
    fn document(&mut self, doc: &Value, loc: &str) {
        if doc.is_null() {
            return; // an empty document, e.g. a trailing `---`
        }
        let kind = str_field(doc, "kind").unwrap_or("");
        let api_version = str_field(doc, "apiVersion").unwrap_or("");
        if !doc.is_mapping() || kind.is_empty() {
            self.diags.push(Diagnostic {
                kind: Kind::Invalid,
                resource: loc.to_owned(),
                path: String::new(),
                message: "not a Kubernetes resource (no `kind`)".into(),
                value: None,
                consequence: None,
            });
            return;
        }
        if kind.ends_with("List") {
            if let Some(items) = doc.get("items").and_then(Value::as_sequence) {
                for (i, item) in items.iter().enumerate() {
                    self.document(item, &format!("{loc}, items[{i}]"));
                }
                return;
            }
        }
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        if kind != "AuthorizationPolicy" || group != "security.istio.io" {
            self.note(
                loc,
                format!("skipped {kind} ({api_version}): not an Istio AuthorizationPolicy"),
            );
            return;
        }
        self.authorization_policy(doc, loc, api_version);
    }

    fn note(&mut self, loc: &str, message: String) {
        self.diags.push(Diagnostic {
            kind: Kind::Note,
            resource: loc.to_owned(),
            path: String::new(),
            message,
            value: None,
            consequence: None,
        });
    }

    fn authorization_policy(&mut self, doc: &Value, loc: &str, api_version: &str) {
        let meta = doc.get("metadata").unwrap_or(&Value::Null);
        let name = str_field(meta, "name").filter(|n| !n.is_empty());
        let namespace = str_field(meta, "namespace").filter(|n| !n.is_empty());
        let label = match (namespace, name) {
            (Some(ns), Some(n)) => format!("AuthorizationPolicy {ns}/{n} ({loc})"),
            (None, Some(n)) => format!("AuthorizationPolicy {n} ({loc})"),
            _ => format!("AuthorizationPolicy ({loc})"),
        };
        if let (Some(want), Some(ns)) = (&self.namespace, namespace) {
            if ns != want && ns != ROOT_NAMESPACE {
                self.note(
                    &label,
                    format!("skipped: namespace {ns:?} is not the one imported ({want:?})"),
                );
                return;
            }
        }
        let spec = doc.get("spec").unwrap_or(&Value::Null);
        let action_value = spec.get("action");
        let action = match action_value.and_then(Value::as_str) {
            None | Some("ALLOW") => Action::Allow,
            _ => Action::Deny,
        };
        let td = self.td.clone();
        let mut res = Res {
            label,
            diags: &mut self.diags,
            action,
            td: &td,
        };
        let mut ok = true;

        if !matches!(
            api_version,
            "security.istio.io/v1" | "security.istio.io/v1beta1"
        ) {
            res.invalid(
                "apiVersion",
                "unknown version: expected security.istio.io/v1 or v1beta1",
                &Value::String(api_version.to_owned()),
            );
            return;
        }
        let Some(name) = name else {
            res.invalid(
                "metadata.name",
                "missing or empty",
                meta.get("name").unwrap_or(&Value::Null),
            );
            return;
        };
        let policy_name = match namespace {
            Some(ns) => format!("{ns}.{name}"),
            None => name.to_owned(),
        };

        let dry_run = match meta
            .get("annotations")
            .and_then(|a| a.get(DRY_RUN_ANNOTATION))
        {
            None => false,
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                res.invalid(
                    &format!("metadata.annotations[{DRY_RUN_ANNOTATION}]"),
                    "must be \"true\" or \"false\"",
                    other,
                );
                ok = false;
                false
            }
        };

        if !spec.is_mapping() && !spec.is_null() {
            res.invalid("spec", "must be a mapping", spec);
            return;
        }
        // Action first: CUSTOM and AUDIT policies cannot be imported, nor dropped.
        match action_value {
            None => {}
            Some(Value::String(a)) if a == "ALLOW" || a == "DENY" => {
                if let Some(p) = spec.get("provider") {
                    res.invalid("spec.provider", "only valid with action CUSTOM", p);
                    ok = false;
                }
            }
            Some(Value::String(a)) if a == "CUSTOM" => {
                let provider = spec
                    .get("provider")
                    .and_then(|p| str_field(p, "name"))
                    .map(|p| format!(" (provider {p:?})"))
                    .unwrap_or_default();
                res.push(
                    Kind::Refused,
                    "spec.action",
                    format!("CUSTOM action{provider} is not supported: svidgate has no external authorizer"),
                    action_value,
                    Some("cannot be skipped: dropping the policy would let through what the external authorizer denies".into()),
                );
                return;
            }
            Some(Value::String(a)) if a == "AUDIT" => {
                res.push(
                    Kind::Refused,
                    "spec.action",
                    "AUDIT action is not supported",
                    action_value,
                    Some("cannot be skipped: import a copy without the AUDIT policy if losing its audit records is intended".into()),
                );
                return;
            }
            Some(other) => {
                res.invalid(
                    "spec.action",
                    "unknown action: expected ALLOW, DENY, AUDIT or CUSTOM",
                    other,
                );
                return;
            }
        }

        let mut rules = Vec::new();
        let mut allow_nothing = false;
        for (key, value) in entries(spec) {
            let path = format!("spec.{key}");
            match key.as_str() {
                "action" | "provider" => {}
                "selector" | "targetRef" | "targetRefs" => res.push(
                    Kind::Warning,
                    &path,
                    "dropped: a svidgate policy applies to every workload whose filter loads it",
                    Some(value),
                    Some(format!(
                        "load policy {policy_name} only in the filters of the workloads it selected"
                    )),
                ),
                "rules" => match value {
                    Value::Null => {}
                    Value::Sequence(seq) => {
                        for (i, rule) in seq.iter().enumerate() {
                            match convert_rule(&mut res, i, rule) {
                                RuleOutcome::Keep(r) => rules.push(r),
                                RuleOutcome::Drop => {}
                                RuleOutcome::Invalid => ok = false,
                            }
                        }
                    }
                    other => {
                        res.invalid(&path, "must be a list", other);
                        ok = false;
                    }
                },
                _ => match action {
                    Action::Allow => {
                        res.push(
                            Kind::Unsupported,
                            &path,
                            "field not supported by svidgate",
                            Some(value),
                            Some("all rules dropped: the ALLOW policy allows nothing".into()),
                        );
                        allow_nothing = true;
                    }
                    Action::Deny => res.push(
                        Kind::Refused,
                        &path,
                        "field not supported by svidgate",
                        Some(value),
                        Some("cannot be skipped: what it changes in a DENY policy is unknown, so dropping it could deny less".into()),
                    ),
                },
            }
        }
        if !ok {
            return;
        }
        if allow_nothing {
            rules.clear();
        }
        if let Some(ns) = namespace {
            if !self.namespaces.iter().any(|n| n == ns) {
                self.namespaces.push(ns.to_owned());
            }
        }
        self.policies.push(Policy {
            name: policy_name,
            action,
            dry_run,
            rules,
        });
    }
}

enum RuleOutcome {
    Keep(Rule),
    /// An ALLOW rule with something unsupported.
    Drop,
    /// Invalid input (already reported).
    Invalid,
}

/// Tracks, while converting one rule, whether it hit unsupported or invalid items.
struct RuleState {
    index: usize,
    unsupported: bool,
    invalid: bool,
    /// A `from` / `to` entry lost every condition (DENY only): it matches everything.
    from_emptied: bool,
    to_emptied: bool,
}

impl RuleState {
    fn unsupported(&mut self, res: &mut Res<'_>, path: &str, msg: impl Into<String>, v: &Value) {
        self.unsupported = true;
        res.unsupported_in_rule(self.index, path, msg, v);
    }

    fn invalid(&mut self, res: &mut Res<'_>, path: &str, msg: impl Into<String>, v: &Value) {
        self.invalid = true;
        res.invalid(path, msg, v);
    }
}

fn convert_rule(res: &mut Res<'_>, index: usize, rule: &Value) -> RuleOutcome {
    let base = format!("spec.rules[{index}]");
    let mut st = RuleState {
        index,
        unsupported: false,
        invalid: false,
        from_emptied: false,
        to_emptied: false,
    };
    let mut out = Rule::default();
    if !rule.is_mapping() && !rule.is_null() {
        st.invalid(res, &base, "must be a mapping", rule);
        return RuleOutcome::Invalid;
    }
    for (key, value) in entries(rule) {
        let path = format!("{base}.{key}");
        match key.as_str() {
            "from" => out.from = list(res, &mut st, &path, value, convert_from),
            "to" => out.to = list(res, &mut st, &path, value, convert_to),
            "when" => out.when = list(res, &mut st, &path, value, convert_condition),
            _ => st.unsupported(res, &path, "field not supported by svidgate", value),
        }
    }
    // An entry with no condition left matches every source / operation: so does the list.
    if st.from_emptied {
        out.from.clear();
    }
    if st.to_emptied {
        out.to.clear();
    }
    if st.invalid {
        RuleOutcome::Invalid
    } else if st.unsupported && res.action == Action::Allow {
        RuleOutcome::Drop
    } else {
        RuleOutcome::Keep(out)
    }
}

type ItemFn<T> = fn(&mut Res<'_>, &mut RuleState, &str, &Value) -> Option<T>;

/// Converts a list field; items for which `f` returns `None` are left out. An empty list is
/// the same as an absent one (as in Istio's protobuf model).
fn list<T>(
    res: &mut Res<'_>,
    st: &mut RuleState,
    path: &str,
    value: &Value,
    f: ItemFn<T>,
) -> Vec<T> {
    match value {
        Value::Null => Vec::new(),
        Value::Sequence(seq) => seq
            .iter()
            .enumerate()
            .filter_map(|(i, item)| f(res, st, &format!("{path}[{i}]"), item))
            .collect(),
        other => {
            st.invalid(res, path, "must be a list", other);
            Vec::new()
        }
    }
}

/// Walks one Istio `from[i]` / `to[i]` item, `{<section>: {<field>: <value>, ...}}`: anything
/// but `section` is reported as unsupported, non-mappings as invalid, and `field` is called
/// with (field path, field name, value) for each field inside the section.
/// Returns false when the item itself is not a mapping.
fn walk_section<'a>(
    res: &mut Res<'a>,
    st: &mut RuleState,
    path: &str,
    item: &Value,
    section: &str,
    mut field: impl FnMut(&mut Res<'a>, &mut RuleState, &str, &str, &Value),
) -> bool {
    if !item.is_mapping() && !item.is_null() {
        st.invalid(res, path, "must be a mapping", item);
        return false;
    }
    for (key, value) in entries(item) {
        let p = format!("{path}.{key}");
        if key != section {
            st.unsupported(res, &p, "field not supported by svidgate", value);
            continue;
        }
        if !value.is_mapping() && !value.is_null() {
            st.invalid(res, &p, "must be a mapping", value);
            continue;
        }
        for (name, v) in entries(value) {
            field(res, st, &format!("{p}.{name}"), &name, v);
        }
    }
    true
}

/// `<ns>/<sa>` → principals, the stricter reading for this use (see the module docs).
fn service_accounts(
    res: &mut Res<'_>,
    st: &mut RuleState,
    path: &str,
    v: &Value,
    negated: bool,
) -> Vec<String> {
    let wide = (res.action == Action::Deny) != negated;
    let mut out = Vec::new();
    for (i, sa) in strings(res, st, path, v).iter().enumerate() {
        match sa.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => out
                .push(if wide {
                    format!("*/ns/{ns}/sa/{name}")
                } else {
                    format!("{}/ns/{ns}/sa/{name}", res.td)
                }),
            _ => st.invalid(
                res,
                &format!("{path}[{i}]"),
                "expected <namespace>/<service account>",
                &Value::String(sa.clone()),
            ),
        }
    }
    out
}

fn convert_from(
    res: &mut Res<'_>,
    st: &mut RuleState,
    path: &str,
    item: &Value,
) -> Option<RuleFrom> {
    let mut out = Source::default();
    let ok = walk_section(
        res,
        st,
        path,
        item,
        "source",
        |res, st, fp, field, v| {
            match field {
            "principals" => out.principals.extend(strings(res, st, fp, v)),
            "notPrincipals" => out.not_principals.extend(strings(res, st, fp, v)),
            "namespaces" => out.namespaces = strings(res, st, fp, v),
            "notNamespaces" => out.not_namespaces = strings(res, st, fp, v),
            "trustDomains" => out.trust_domains = strings(res, st, fp, v),
            "notTrustDomains" => out.not_trust_domains = strings(res, st, fp, v),
            "serviceAccounts" => {
                let p = service_accounts(res, st, fp, v, false);
                out.principals.extend(p);
            }
            "notServiceAccounts" => {
                let p = service_accounts(res, st, fp, v, true);
                out.not_principals.extend(p);
            }
            "requestPrincipals" | "notRequestPrincipals" => st.unsupported(
                    res,
                    fp,
                    "JWT request principals are not supported: svidgate authorizes the mTLS peer identity",
                    v,
                ),
            "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => st.unsupported(
                    res,
                    fp,
                    "IP blocks are not supported: svidgate authorizes by SPIFFE identity, not address",
                    v,
                ),
            _ => st.unsupported(res, fp, "field not supported by svidgate", v),
        }
        },
    );
    let empty = out.is_empty();
    kept_section(ok, out, empty, &mut st.from_emptied).map(|source| RuleFrom { source })
}

/// A converted `source` / `operation`: `None` when it failed, or when it is empty (Istio: a
/// section without conditions matches everything), which sets `emptied`.
fn kept_section<T>(ok: bool, section: T, empty: bool, emptied: &mut bool) -> Option<T> {
    if !ok {
        return None;
    }
    if empty {
        *emptied = true;
        return None;
    }
    Some(section)
}

fn convert_to(res: &mut Res<'_>, st: &mut RuleState, path: &str, item: &Value) -> Option<RuleTo> {
    let mut out = Operation::default();
    let ok = walk_section(
        res,
        st,
        path,
        item,
        "operation",
        |res, st, fp, field, v| match field {
            "hosts" => out.hosts = strings(res, st, fp, v),
            "notHosts" => out.not_hosts = strings(res, st, fp, v),
            "ports" => out.ports = ports(res, st, fp, v),
            "notPorts" => out.not_ports = ports(res, st, fp, v),
            "methods" => out.methods = strings(res, st, fp, v),
            "notMethods" => out.not_methods = strings(res, st, fp, v),
            "paths" | "notPaths" => {
                let values = strings(res, st, fp, v);
                if let Some(t) = values.iter().find(|p| p.contains('{') || p.contains('}')) {
                    st.unsupported(
                        res,
                        fp,
                        "path templates ({*}, {**}) are not supported: svidgate matches exact, prefix* and *suffix paths",
                        &Value::String(t.clone()),
                    );
                } else if field == "paths" {
                    out.paths = values;
                } else {
                    out.not_paths = values;
                }
            }
            _ => st.unsupported(res, fp, "field not supported by svidgate", v),
        },
    );
    let empty = out.is_empty();
    kept_section(ok, out, empty, &mut st.to_emptied).map(|operation| RuleTo { operation })
}

/// Why a `when` key is not supported, or `None` if svidgate evaluates it.
pub fn unsupported_when_key(key: &str) -> Option<&'static str> {
    if let Some(rest) = key.strip_prefix("request.headers[") {
        return if rest.len() > 1 && rest.ends_with(']') {
            None
        } else {
            Some("malformed request.headers key: expected request.headers[<name>]")
        };
    }
    if matches!(
        key,
        "source.principal"
            | "source.namespace"
            | "source.serviceAccount"
            | "destination.port"
            | "connection.sni"
    ) {
        return None;
    }
    Some(if key.starts_with("request.auth.") {
        "JWT claims (request.auth.*) are not supported: svidgate authorizes the mTLS peer identity"
    } else if matches!(key, "source.ip" | "remote.ip" | "destination.ip") {
        "IP conditions are not supported: svidgate authorizes by SPIFFE identity, not address"
    } else {
        "condition key not supported by svidgate"
    })
}

fn convert_condition(
    res: &mut Res<'_>,
    st: &mut RuleState,
    path: &str,
    item: &Value,
) -> Option<Condition> {
    if !item.is_mapping() {
        st.invalid(res, path, "must be a mapping", item);
        return None;
    }
    let Some(key) = str_field(item, "key") else {
        st.invalid(
            res,
            &format!("{path}.key"),
            "missing or not a string",
            item.get("key").unwrap_or(&Value::Null),
        );
        return None;
    };
    if let Some(why) = unsupported_when_key(key) {
        st.unsupported(
            res,
            &format!("{path}.key"),
            why,
            &Value::String(key.to_owned()),
        );
        return None;
    }
    let sa = key == "source.serviceAccount";
    let mut out = Condition {
        key: if sa { "source.principal" } else { key }.to_owned(),
        ..Default::default()
    };
    for (field, v) in entries(item) {
        let fp = format!("{path}.{field}");
        match field.as_str() {
            "key" => {}
            "values" if sa => out.values = service_accounts(res, st, &fp, v, false),
            "notValues" if sa => out.not_values = service_accounts(res, st, &fp, v, true),
            "values" => out.values = strings(res, st, &fp, v),
            "notValues" => out.not_values = strings(res, st, &fp, v),
            _ => st.unsupported(res, &fp, "field not supported by svidgate", v),
        }
    }
    if out.values.is_empty() && out.not_values.is_empty() {
        st.invalid(res, path, "a condition needs values or notValues", item);
        return None;
    }
    Some(out)
}

/// A list of strings; an empty list is the same as none (as in Istio's protobuf model).
fn strings(res: &mut Res<'_>, st: &mut RuleState, path: &str, v: &Value) -> Vec<String> {
    typed_list(
        res,
        st,
        path,
        v,
        ["strings", "must be a string"],
        |item: &Value| item.as_str().map(str::to_owned),
    )
}

/// Ports, written as strings in Istio (`"8080"`); numbers are accepted too.
fn ports(res: &mut Res<'_>, st: &mut RuleState, path: &str, v: &Value) -> Vec<u16> {
    typed_list(
        res,
        st,
        path,
        v,
        ["ports", "not a port number (1-65535)"],
        |item| {
            let port = match item {
                Value::String(s) => s.parse::<u16>().ok(),
                Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                _ => None,
            };
            port.filter(|p| *p > 0)
        },
    )
}

/// A list of what `convert` makes of each item; `[what, bad_item]` name the items and the
/// problem of one `convert` refuses (`None`). An empty list is the same as none.
fn typed_list<T>(
    res: &mut Res<'_>,
    st: &mut RuleState,
    path: &str,
    v: &Value,
    [what, bad_item]: [&str; 2],
    convert: impl Fn(&Value) -> Option<T>,
) -> Vec<T> {
    let Some(seq) = v.as_sequence() else {
        if !v.is_null() {
            st.invalid(res, path, format!("must be a list of {what}"), v);
        }
        return Vec::new();
    };
    let mut out = Vec::with_capacity(seq.len());
    for (i, item) in seq.iter().enumerate() {
        match convert(item) {
            Some(t) => out.push(t),
            None => st.invalid(res, &format!("{path}[{i}]"), bad_item, item),
        }
    }
    out
}
