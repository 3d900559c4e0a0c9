//! `svidgate policy import FILE`: Istio `AuthorizationPolicy` resources → a svidgate policy
//! document.
//!
//! Reads Kubernetes YAML (one or many documents separated by `---`, `kind: List` too) and maps
//! every `security.istio.io/v1` / `v1beta1` `AuthorizationPolicy` to one svidgate policy named
//! `<namespace>.<name>`: `spec.action`, `spec.rules[].from[].source`, `to[].operation`, the
//! `when` keys svidgate supports and the `istio.io/dry-run` annotation.
//!
//! Nothing is dropped silently. What svidgate cannot express (CUSTOM and AUDIT actions, JWT
//! request principals and `request.auth.*` claims, IP blocks and IP conditions, unknown fields)
//! is an error, exit 3, and no document is written — unless `--skip-unsupported` is given; then
//! each item is a warning and is dropped the fail-closed way:
//! - in an ALLOW policy the whole rule that needs it is dropped (the rule allows nothing);
//! - in a DENY policy only that condition is dropped (the rule denies more, never less);
//! - CUSTOM and AUDIT policies are dropped.
//!
//! `selector` / `targetRef(s)` are dropped with a warning: a svidgate policy applies to the
//! filter instance that loads it.

use std::fmt;
use std::io::Write;

use serde::{Deserialize as _, Serialize};
use serde_yaml::Value;
use svidgate_core::TrustDomain;

use super::{
    load_policy, policy_error_lines, Input, PolicyCliError, EXIT_INVALID, EXIT_OK, EXIT_UNSUPPORTED,
};

/// The annotation Istio uses for dry-run policies.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Options of `import`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The output document's `trustDomain`.
    pub trust_domain: TrustDomain,
    /// Warn about and drop unsupported features instead of failing.
    pub skip_unsupported: bool,
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The input is wrong (not valid Istio either): always an error.
    Invalid,
    /// Valid Istio that svidgate cannot express: an error, or a warning with
    /// `--skip-unsupported`.
    Unsupported,
    /// Imported, but something changed that the user must know.
    Warning,
    /// For information (skipped non-policy documents).
    Note,
}

/// One message about the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub kind: Kind,
    /// `AuthorizationPolicy foo/bar (document 2)`.
    pub resource: String,
    /// Field path inside the resource, e.g. `spec.rules[0].from[0].source.ipBlocks`; may be
    /// empty.
    pub path: String,
    pub message: String,
    /// The offending value as compact JSON.
    pub value: Option<String>,
    /// What `--skip-unsupported` does about it.
    pub consequence: Option<String>,
}

impl Diagnostic {
    /// Renders the diagnostic; `skip` says whether `--skip-unsupported` is in effect.
    pub fn render(&self, skip: bool) -> String {
        let (label, consequence) = match self.kind {
            Kind::Invalid => ("error", None),
            Kind::Unsupported if skip => ("warning", self.consequence.as_deref()),
            Kind::Unsupported => ("error", None),
            Kind::Warning => ("warning", self.consequence.as_deref()),
            Kind::Note => ("note", None),
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

/// The result of converting the input, before it is checked and written.
#[derive(Debug, Clone)]
pub struct Imported {
    pub document: OutDocument,
    pub diagnostics: Vec<Diagnostic>,
}

impl Imported {
    pub fn count(&self, kind: Kind) -> usize {
        self.diagnostics.iter().filter(|d| d.kind == kind).count()
    }
}

/// The svidgate policy document written by `import`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutDocument {
    pub trust_domain: String,
    pub policies: Vec<OutPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutPolicy {
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "is_false")]
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<OutRule>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "DENY")]
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<OutFrom>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<OutTo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Vec<OutCondition>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutFrom {
    pub source: OutSource,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_principals: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_namespaces: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutTo {
    pub operation: OutOperation,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutOperation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ports: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutCondition {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_values: Option<Vec<String>>,
}

/// The `when` keys svidgate evaluates (besides `request.headers[<name>]`).
const SUPPORTED_WHEN_KEYS: &[&str] = &[
    "source.principal",
    "source.namespace",
    "destination.port",
    "connection.sni",
];

/// Runs `import` end to end: converts, reports on `err`, and on success writes the document
/// (checked by the policy engine) to `out`. Returns the exit code.
pub fn run(
    input: &Input,
    opts: &ImportOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, PolicyCliError> {
    let name = &input.name;
    let imported = match convert(&input.text, opts) {
        Ok(i) => i,
        Err(message) => {
            writeln!(err, "{name}: error: {message}")?;
            return Ok(EXIT_INVALID);
        }
    };
    for d in &imported.diagnostics {
        writeln!(err, "{name}: {}", d.render(opts.skip_unsupported))?;
    }
    let invalid = imported.count(Kind::Invalid);
    let unsupported = imported.count(Kind::Unsupported);
    if invalid > 0 {
        writeln!(
            err,
            "{name}: {invalid} error(s) in the input; nothing written"
        )?;
        return Ok(EXIT_INVALID);
    }
    if unsupported > 0 && !opts.skip_unsupported {
        writeln!(
            err,
            "{name}: {unsupported} unsupported feature(s); nothing written \
             (--skip-unsupported imports the rest, dropping them the fail-closed way)"
        )?;
        return Ok(EXIT_UNSUPPORTED);
    }
    let yaml = render_document(&imported.document, name)?;
    // The output must be a valid svidgate policy: check it with the real engine.
    if let Err(e) = load_policy(&Input::from_text("<imported>", &yaml)) {
        for line in policy_error_lines("imported policy", &e) {
            writeln!(err, "{name}: error: {line}")?;
        }
        writeln!(
            err,
            "{name}: the imported policy is not valid for svidgate; nothing written"
        )?;
        return Ok(EXIT_INVALID);
    }
    out.write_all(yaml.as_bytes())?;
    out.flush()?;
    if imported.document.policies.is_empty() {
        writeln!(err, "{name}: note: no AuthorizationPolicy imported")?;
    }
    Ok(EXIT_OK)
}

/// The document as YAML, with a header comment naming its origin.
pub fn render_document(doc: &OutDocument, source: &str) -> Result<String, PolicyCliError> {
    let body = serde_yaml::to_string(doc).map_err(|e| PolicyCliError::Serialize(e.to_string()))?;
    Ok(format!(
        "# svidgate policy imported from Istio AuthorizationPolicy resources ({source}).\n{body}"
    ))
}

/// Converts Kubernetes YAML text. `Err` only when the YAML does not parse.
pub fn convert(text: &str, opts: &ImportOptions) -> Result<Imported, String> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| format!("document {}: {e}", i + 1))?;
        docs.push(value);
    }
    let mut imp = Importer {
        diags: Vec::new(),
        policies: Vec::new(),
    };
    for (i, doc) in docs.iter().enumerate() {
        imp.document(doc, &format!("document {}", i + 1));
    }
    Ok(Imported {
        document: OutDocument {
            trust_domain: opts.trust_domain.as_str().to_owned(),
            policies: imp.policies,
        },
        diagnostics: imp.diags,
    })
}

struct Importer {
    diags: Vec<Diagnostic>,
    policies: Vec<OutPolicy>,
}

/// Where diagnostics of one resource go.
struct Res<'a> {
    label: String,
    diags: &'a mut Vec<Diagnostic>,
    action: Action,
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

/// Iterates a mapping's entries as (`key`, value); non-string keys are reported by the caller
/// as unknown fields with their YAML form.
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
        let note = |diags: &mut Vec<Diagnostic>, message: String| {
            diags.push(Diagnostic {
                kind: Kind::Note,
                resource: loc.to_owned(),
                path: String::new(),
                message,
                value: None,
                consequence: None,
            })
        };
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
            note(
                &mut self.diags,
                format!("skipped {kind} ({api_version}): not an Istio AuthorizationPolicy"),
            );
            return;
        }
        self.authorization_policy(doc, loc, api_version);
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
        let spec = doc.get("spec").unwrap_or(&Value::Null);
        let action_value = spec.get("action");
        let action = match action_value.and_then(Value::as_str) {
            None | Some("ALLOW") => Action::Allow,
            _ => Action::Deny,
        };
        let mut res = Res {
            label,
            diags: &mut self.diags,
            action,
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
        // Action first: CUSTOM and AUDIT policies are dropped whole.
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
                    Kind::Unsupported,
                    "spec.action",
                    format!("CUSTOM action{provider} is not supported: svidgate has no external authorizer"),
                    action_value,
                    Some("policy skipped: the requests it sent to the external authorizer are no longer checked by it".into()),
                );
                return;
            }
            Some(Value::String(a)) if a == "AUDIT" => {
                res.push(
                    Kind::Unsupported,
                    "spec.action",
                    "AUDIT action is not supported",
                    action_value,
                    Some("policy skipped (AUDIT never changes a decision)".into()),
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

        let mut rules = None;
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
                        let mut out = Vec::new();
                        for (i, rule) in seq.iter().enumerate() {
                            match convert_rule(&mut res, i, rule) {
                                RuleOutcome::Keep(r) => out.push(r),
                                RuleOutcome::Drop => {}
                                RuleOutcome::Invalid => ok = false,
                            }
                        }
                        // Istio: an empty `rules` list is the same as none (matches nothing).
                        rules =
                            Some(out).filter(|r: &Vec<OutRule>| !r.is_empty() || !seq.is_empty());
                    }
                    other => {
                        res.invalid(&path, "must be a list", other);
                        ok = false;
                    }
                },
                _ => {
                    let consequence = match action {
                        Action::Allow => "all rules dropped: the ALLOW policy allows nothing",
                        Action::Deny => {
                            "field dropped: the DENY policy now matches more requests, never fewer"
                        }
                    };
                    res.push(
                        Kind::Unsupported,
                        &path,
                        "field not supported by svidgate",
                        Some(value),
                        Some(consequence.into()),
                    );
                    allow_nothing = action == Action::Allow;
                }
            }
        }
        if !ok {
            return;
        }
        if allow_nothing {
            rules = Some(Vec::new());
        }
        self.policies.push(OutPolicy {
            name: policy_name,
            action,
            dry_run,
            rules,
        });
    }
}

enum RuleOutcome {
    Keep(OutRule),
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
}

impl RuleState {
    fn unsupported(
        &mut self,
        res: &mut Res<'_>,
        path: &str,
        message: impl Into<String>,
        value: &Value,
    ) {
        self.unsupported = true;
        res.unsupported_in_rule(self.index, path, message, value);
    }
    fn invalid(
        &mut self,
        res: &mut Res<'_>,
        path: &str,
        message: impl Into<String>,
        value: &Value,
    ) {
        self.invalid = true;
        res.invalid(path, message, value);
    }
}

fn convert_rule(res: &mut Res<'_>, index: usize, rule: &Value) -> RuleOutcome {
    let base = format!("spec.rules[{index}]");
    let mut st = RuleState {
        index,
        unsupported: false,
        invalid: false,
    };
    let mut out = OutRule::default();
    if !rule.is_mapping() && !rule.is_null() {
        st.invalid(res, &base, "must be a mapping", rule);
        return RuleOutcome::Invalid;
    }
    for (key, value) in entries(rule) {
        let path = format!("{base}.{key}");
        match key.as_str() {
            "from" => {
                out.from = list(res, &mut st, &path, value, |res, st, p, v| {
                    convert_from(res, st, p, v)
                })
            }
            "to" => out.to = list(res, &mut st, &path, value, convert_to),
            "when" => out.when = list(res, &mut st, &path, value, convert_condition),
            _ => st.unsupported(res, &path, "field not supported by svidgate", value),
        }
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
) -> Option<Vec<T>> {
    match value {
        Value::Null => None,
        Value::Sequence(seq) => {
            let out: Vec<T> = seq
                .iter()
                .enumerate()
                .filter_map(|(i, item)| f(res, st, &format!("{path}[{i}]"), item))
                .collect();
            Some(out).filter(|o| !o.is_empty())
        }
        other => {
            st.invalid(res, path, "must be a list", other);
            None
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

fn convert_from(
    res: &mut Res<'_>,
    st: &mut RuleState,
    path: &str,
    item: &Value,
) -> Option<OutFrom> {
    let mut out = OutSource::default();
    let ok = walk_section(
        res,
        st,
        path,
        item,
        "source",
        |res, st, fp, field, v| {
            match field {
            "principals" => out.principals = strings(res, st, fp, v),
            "notPrincipals" => out.not_principals = strings(res, st, fp, v),
            "namespaces" => out.namespaces = strings(res, st, fp, v),
            "notNamespaces" => out.not_namespaces = strings(res, st, fp, v),
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
    ok.then_some(OutFrom { source: out })
}

fn convert_to(res: &mut Res<'_>, st: &mut RuleState, path: &str, item: &Value) -> Option<OutTo> {
    let mut out = OutOperation::default();
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
            "paths" => out.paths = strings(res, st, fp, v),
            "notPaths" => out.not_paths = strings(res, st, fp, v),
            _ => st.unsupported(res, fp, "field not supported by svidgate", v),
        },
    );
    ok.then_some(OutTo { operation: out })
}

/// Why a `when` key is not supported, or `None` if svidgate evaluates it.
fn unsupported_when_key(key: &str) -> Option<&'static str> {
    if let Some(rest) = key.strip_prefix("request.headers[") {
        return if rest.len() > 1 && rest.ends_with(']') {
            None
        } else {
            Some("malformed request.headers key: expected request.headers[<name>]")
        };
    }
    if SUPPORTED_WHEN_KEYS.contains(&key) {
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
) -> Option<OutCondition> {
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
    let mut out = OutCondition {
        key: key.to_owned(),
        ..Default::default()
    };
    for (field, v) in entries(item) {
        let fp = format!("{path}.{field}");
        match field.as_str() {
            "key" => {}
            "values" => out.values = strings(res, st, &fp, v),
            "notValues" => out.not_values = strings(res, st, &fp, v),
            _ => st.unsupported(res, &fp, "field not supported by svidgate", v),
        }
    }
    if out.values.is_none() && out.not_values.is_none() {
        st.invalid(res, path, "a condition needs values or notValues", item);
        return None;
    }
    Some(out)
}

/// A list of strings; an empty list is `None` (as in Istio's protobuf model).
fn strings(res: &mut Res<'_>, st: &mut RuleState, path: &str, v: &Value) -> Option<Vec<String>> {
    let Some(seq) = v.as_sequence() else {
        if !v.is_null() {
            st.invalid(res, path, "must be a list of strings", v);
        }
        return None;
    };
    let mut out = Vec::with_capacity(seq.len());
    for (i, item) in seq.iter().enumerate() {
        match item.as_str() {
            Some(s) => out.push(s.to_owned()),
            None => st.invalid(res, &format!("{path}[{i}]"), "must be a string", item),
        }
    }
    Some(out).filter(|o| !o.is_empty())
}

/// Ports, written as strings in Istio (`"8080"`); numbers are accepted too.
fn ports(res: &mut Res<'_>, st: &mut RuleState, path: &str, v: &Value) -> Option<Vec<u16>> {
    let Some(seq) = v.as_sequence() else {
        if !v.is_null() {
            st.invalid(res, path, "must be a list of ports", v);
        }
        return None;
    };
    let mut out = Vec::with_capacity(seq.len());
    for (i, item) in seq.iter().enumerate() {
        let port = match item {
            Value::String(s) => s.parse::<u16>().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        };
        match port {
            Some(p) => out.push(p),
            None => st.invalid(
                res,
                &format!("{path}[{i}]"),
                "not a port number (0-65535)",
                item,
            ),
        }
    }
    Some(out).filter(|o| !o.is_empty())
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(skip: bool) -> ImportOptions {
        ImportOptions {
            trust_domain: TrustDomain::new("cluster.local").unwrap(),
            skip_unsupported: skip,
        }
    }

    fn yaml(doc: &OutDocument) -> String {
        serde_yaml::to_string(doc).unwrap()
    }

    fn rendered(imp: &Imported, skip: bool) -> Vec<String> {
        imp.diagnostics.iter().map(|d| d.render(skip)).collect()
    }

    #[test]
    fn maps_sources_operations_conditions_and_dry_run() {
        let text = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: api
  namespace: shop
  annotations:
    istio.io/dry-run: "true"
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/web/sa/frontend"]
        notNamespaces: [legacy]
    to:
    - operation:
        methods: [GET, HEAD]
        paths: ["/api/*"]
        ports: ["8080", 9090]
        notHosts: [admin.example]
    when:
    - key: request.headers[x-tenant]
      values: [a]
    - key: source.namespace
      notValues: [kube-system]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all}
spec:
  action: DENY
  rules: [{}]
"#;
        let imp = convert(text, &opts(false)).unwrap();
        assert_eq!(rendered(&imp, false), Vec::<String>::new());
        assert_eq!(
            yaml(&imp.document),
            r#"trustDomain: cluster.local
policies:
- name: shop.api
  action: ALLOW
  dryRun: true
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/web/sa/frontend
        notNamespaces:
        - legacy
    to:
    - operation:
        notHosts:
        - admin.example
        ports:
        - 8080
        - 9090
        methods:
        - GET
        - HEAD
        paths:
        - /api/*
    when:
    - key: request.headers[x-tenant]
      values:
      - a
    - key: source.namespace
      notValues:
      - kube-system
- name: deny-all
  action: DENY
  rules:
  - {}
"#
        );
    }

    #[test]
    fn empty_spec_and_rule_lists() {
        let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: n}\nspec: {}\n---\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: b}\n";
        let imp = convert(text, &opts(false)).unwrap();
        assert!(imp.diagnostics.is_empty(), "{:?}", imp.diagnostics);
        assert_eq!(
            yaml(&imp.document),
            "trustDomain: cluster.local\npolicies:\n- name: n.a\n  action: ALLOW\n- name: b\n  action: ALLOW\n"
        );
    }

    #[test]
    fn unsupported_features_are_reported_with_paths() {
        let text = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit}
spec: {action: AUDIT}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-ip, namespace: foo}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - from:
    - source: {ipBlocks: ["10.0.0.0/8"]}
  - from:
    - source: {principals: ["cluster.local/ns/a/sa/b"], requestPrincipals: ["*"]}
  - to:
    - operation: {methods: [GET]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-jwt, namespace: foo}
spec:
  action: DENY
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
  rules:
  - from:
    - source: {namespaces: [legacy], notRemoteIpBlocks: ["1.2.3.4"]}
    when:
    - key: request.auth.claims[iss]
      values: ["https://issuer"]
    - key: destination.ip
      values: ["10.0.0.1"]
    - key: connection.sni
      values: [a.example]
---
apiVersion: v1
kind: Service
metadata: {name: svc}
"#;
        let imp = convert(text, &opts(true)).unwrap();
        let want = [
            r#"warning: AuthorizationPolicy foo/ext (document 1): spec.action: CUSTOM action (provider "opa") is not supported: svidgate has no external authorizer ("CUSTOM"); policy skipped: the requests it sent to the external authorizer are no longer checked by it"#,
            r#"warning: AuthorizationPolicy audit (document 2): spec.action: AUDIT action is not supported ("AUDIT"); policy skipped (AUDIT never changes a decision)"#,
            r#"warning: AuthorizationPolicy foo/allow-ip (document 3): spec.selector: dropped: a svidgate policy applies to every workload whose filter loads it ({"matchLabels":{"app":"api"}}); load policy foo.allow-ip only in the filters of the workloads it selected"#,
            r#"warning: AuthorizationPolicy foo/allow-ip (document 3): spec.rules[0].from[0].source.ipBlocks: IP blocks are not supported: svidgate authorizes by SPIFFE identity, not address (["10.0.0.0/8"]); rule 0 dropped: an ALLOW rule svidgate cannot fully check allows nothing"#,
            r#"warning: AuthorizationPolicy foo/allow-ip (document 3): spec.rules[1].from[0].source.requestPrincipals: JWT request principals are not supported: svidgate authorizes the mTLS peer identity (["*"]); rule 1 dropped: an ALLOW rule svidgate cannot fully check allows nothing"#,
            r#"warning: AuthorizationPolicy foo/deny-jwt (document 4): spec.targetRefs: dropped: a svidgate policy applies to every workload whose filter loads it ([{"kind":"Gateway","group":"gateway.networking.k8s.io","name":"gw"}]); load policy foo.deny-jwt only in the filters of the workloads it selected"#,
            r#"warning: AuthorizationPolicy foo/deny-jwt (document 4): spec.rules[0].from[0].source.notRemoteIpBlocks: IP blocks are not supported: svidgate authorizes by SPIFFE identity, not address (["1.2.3.4"]); condition dropped: the DENY rule now matches more requests, never fewer"#,
            r#"warning: AuthorizationPolicy foo/deny-jwt (document 4): spec.rules[0].when[0].key: JWT claims (request.auth.*) are not supported: svidgate authorizes the mTLS peer identity ("request.auth.claims[iss]"); condition dropped: the DENY rule now matches more requests, never fewer"#,
            r#"warning: AuthorizationPolicy foo/deny-jwt (document 4): spec.rules[0].when[1].key: IP conditions are not supported: svidgate authorizes by SPIFFE identity, not address ("destination.ip"); condition dropped: the DENY rule now matches more requests, never fewer"#,
            r#"note: document 5: skipped Service (v1): not an Istio AuthorizationPolicy"#,
        ];
        assert_eq!(rendered(&imp, true), want);
        assert_eq!(imp.count(Kind::Unsupported), 7);
        assert_eq!(
            yaml(&imp.document),
            r#"trustDomain: cluster.local
policies:
- name: foo.allow-ip
  action: ALLOW
  rules:
  - to:
    - operation:
        methods:
        - GET
- name: foo.deny-jwt
  action: DENY
  rules:
  - from:
    - source:
        namespaces:
        - legacy
    when:
    - key: connection.sni
      values:
      - a.example
"#
        );
        // Without --skip-unsupported the same items are errors.
        assert!(rendered(&imp, false)[0].starts_with(
            "error: AuthorizationPolicy foo/ext (document 1): spec.action: CUSTOM action"
        ));
    }

    #[test]
    fn allow_policy_whose_rules_are_all_dropped_still_allows_nothing() {
        let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules:\n  - from: [{source: {ipBlocks: [1.2.3.4]}}]\n";
        let imp = convert(text, &opts(true)).unwrap();
        assert_eq!(imp.count(Kind::Unsupported), 1);
        // `rules: []` (not absent): the policy exists and matches nothing.
        assert_eq!(
            yaml(&imp.document),
            "trustDomain: cluster.local\npolicies:\n- name: a\n  action: ALLOW\n  rules: []\n"
        );
    }

    #[test]
    fn invalid_input_is_reported() {
        let cases = [
            (
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: x}\n",
                "error: AuthorizationPolicy (document 1): metadata.name: missing or empty (null)",
            ),
            (
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: PERMIT}\n",
                r#"error: AuthorizationPolicy a (document 1): spec.action: unknown action: expected ALLOW, DENY, AUDIT or CUSTOM ("PERMIT")"#,
            ),
            (
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{to: [{operation: {ports: [\"http\"]}}]}]}\n",
                r#"error: AuthorizationPolicy a (document 1): spec.rules[0].to[0].operation.ports[0]: not a port number (0-65535) ("http")"#,
            ),
            (
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, annotations: {istio.io/dry-run: \"yes\"}}\n",
                r#"error: AuthorizationPolicy a (document 1): metadata.annotations[istio.io/dry-run]: must be "true" or "false" ("yes")"#,
            ),
            (
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{from: [{source: {principals: a}}]}]}\n",
                r#"error: AuthorizationPolicy a (document 1): spec.rules[0].from[0].source.principals: must be a list of strings ("a")"#,
            ),
            (
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{when: [{key: source.namespace}]}]}\n",
                r#"error: AuthorizationPolicy a (document 1): spec.rules[0].when[0]: a condition needs values or notValues ({"key":"source.namespace"})"#,
            ),
            (
                "just a string\n",
                "error: document 1: not a Kubernetes resource (no `kind`)",
            ),
        ];
        for (text, want) in cases {
            let imp = convert(text, &opts(true)).unwrap();
            assert_eq!(rendered(&imp, true), [want], "{text}");
            assert_eq!(imp.count(Kind::Invalid), 1);
        }
        assert!(convert("a: [", &opts(false))
            .unwrap_err()
            .starts_with("document 1: "));
    }

    #[test]
    fn lists_and_other_resources() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: security.istio.io/v1\n  kind: AuthorizationPolicy\n  metadata: {name: a, namespace: n}\n  spec: {action: DENY, rules: [{from: [{source: {principals: ['*']}}]}]}\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {name: vs}\n";
        let imp = convert(text, &opts(false)).unwrap();
        assert_eq!(
            rendered(&imp, false),
            ["note: document 1, items[1]: skipped VirtualService (networking.istio.io/v1): not an Istio AuthorizationPolicy"]
        );
        assert_eq!(imp.document.policies.len(), 1);
        assert_eq!(imp.document.policies[0].name, "n.a");
        assert_eq!(imp.document.policies[0].action, Action::Deny);
    }

    #[test]
    fn when_keys() {
        for ok in [
            "request.headers[x-a]",
            "source.principal",
            "source.namespace",
            "destination.port",
            "connection.sni",
        ] {
            assert_eq!(unsupported_when_key(ok), None, "{ok}");
        }
        for bad in [
            "request.headers[]",
            "request.headers",
            "request.auth.principal",
            "request.auth.audiences",
            "request.auth.claims[groups]",
            "source.ip",
            "remote.ip",
            "destination.ip",
            "experimental.envoy.filters.network.mysql_proxy[db.table]",
            "source.serviceAccount",
        ] {
            assert!(unsupported_when_key(bad).is_some(), "{bad}");
        }
    }
}
