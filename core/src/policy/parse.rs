//! Text → `serde_json::Value` → typed document, reporting every structural problem with its
//! field path (unknown field, wrong type, missing field, empty list, bad enum value).
//!
//! YAML and JSON both go through a `serde_json::Value` so they get the same treatment; the
//! value is read with a visitor that rejects duplicate mapping keys (serde_json would silently
//! keep the last one, which could hide a rule from a reviewer).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::model::{
    Action, Condition, Mode, Operation, Policy, PolicyDocument, Rule, RuleFrom, RuleTo, Source,
};
use super::{PolicyError, Problem};

/// A JSON value read with duplicate keys rejected.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML/JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

pub(super) fn yaml_to_value(text: &str) -> Result<Value, PolicyError> {
    serde_yaml::from_str::<StrictValue>(text)
        .map(|v| v.0)
        .map_err(|e| PolicyError::Syntax(e.to_string()))
}

pub(super) fn json_to_value(text: &str) -> Result<Value, PolicyError> {
    serde_json::from_str::<StrictValue>(text)
        .map(|v| v.0)
        .map_err(|e| PolicyError::Syntax(e.to_string()))
}

/// Renders a value for a problem message, shortened.
pub(super) fn show(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    shorten(&s)
}

pub(super) fn shorten(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

pub(super) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Collects structural problems while building the typed document.
pub(super) struct Walker {
    pub(super) problems: Vec<Problem>,
}

/// Istio fields svidgate knowingly does not implement, with the reason given to the author.
fn unsupported(key: &str) -> Option<&'static str> {
    Some(match key {
        "requestPrincipals" | "notRequestPrincipals" => {
            "not supported by svidgate: JWT request principals are not available to the filter"
        }
        "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
            "not supported by svidgate: authorize by SPIFFE identity, not by IP address"
        }
        "serviceAccounts" | "notServiceAccounts" => {
            "not supported by svidgate: write the service account as a principal `<td>/ns/<ns>/sa/<sa>`"
        }
        "selector" | "targetRef" | "targetRefs" => {
            "not supported by svidgate: the policy applies to the workload whose filter loads it"
        }
        "provider" => "not supported by svidgate: CUSTOM action providers are not available",
        _ => return None,
    })
}

impl Walker {
    pub(super) fn new() -> Self {
        Walker {
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, path: String, problem: impl Into<String>, value: impl Into<String>) {
        self.problems.push(Problem {
            path,
            problem: problem.into(),
            value: value.into(),
        });
    }

    /// Checks `v` is a mapping and reports its keys that are not in `known`.
    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            let p = if path.is_empty() { "(document)" } else { path };
            self.problem(p.to_owned(), "expected a mapping", show(v));
            return None;
        };
        for key in map.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            let msg = match unsupported(key) {
                Some(why) => why.to_owned(),
                None => format!("unknown field, expected one of: {}", known.join(", ")),
            };
            self.problem(child(path, key), msg, key.clone());
        }
        Some(map)
    }

    fn string(&mut self, v: &Value, path: String) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(path, "expected a string", show(other));
                None
            }
        }
    }

    fn bool(&mut self, v: &Value, path: String) -> bool {
        match v {
            Value::Bool(b) => *b,
            other => {
                self.problem(path, "expected true or false", show(other));
                false
            }
        }
    }

    fn array<'v>(&mut self, v: &'v Value, path: &str, allow_empty: bool) -> &'v [Value] {
        match v {
            Value::Array(items) => {
                if items.is_empty() && !allow_empty {
                    self.problem(
                        path.to_owned(),
                        "empty list: remove the field or list at least one value",
                        "[]",
                    );
                }
                items
            }
            other => {
                self.problem(path.to_owned(), "expected a list", show(other));
                &[]
            }
        }
    }

    /// A non-empty list of strings; integers are accepted and written as decimal strings
    /// (YAML authors write `values: [8080]`).
    fn strings(&mut self, v: &Value, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, item) in self.array(v, path, false).iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) if n.is_u64() || n.is_i64() => out.push(n.to_string()),
                other => {
                    self.problem(index(path, i), "expected a string", show(other));
                    // Keeps later indices aligned for the value validator; the document is
                    // rejected anyway.
                    out.push("*".into());
                }
            }
        }
        out
    }

    /// A non-empty list of ports: integers or decimal strings (Istio writes `"8080"`), 1-65535.
    fn ports(&mut self, v: &Value, path: &str) -> Vec<u16> {
        let mut out = Vec::new();
        for (i, item) in self.array(v, path, false).iter().enumerate() {
            let port = match item {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => parse_port(s).map(u64::from),
                _ => None,
            };
            match port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
                Some(p) => out.push(p),
                None => {
                    self.problem(
                        index(path, i),
                        "invalid port: expected a number from 1 to 65535",
                        show(item),
                    );
                    out.push(1);
                }
            }
        }
        out
    }

    pub(super) fn document(&mut self, v: &Value) -> PolicyDocument {
        let mut doc = PolicyDocument {
            trust_domain: String::new(),
            trust_domain_aliases: Vec::new(),
            mode: Mode::Enforce,
            policies: Vec::new(),
        };
        let known = ["trustDomain", "trustDomainAliases", "mode", "policies"];
        let Some(map) = self.object(v, "", &known) else {
            return doc;
        };
        match map.get("trustDomain") {
            Some(td) => {
                doc.trust_domain = self.string(td, "trustDomain".into()).unwrap_or_default();
            }
            None => self.problem(
                "trustDomain".into(),
                "missing required field: the local trust domain",
                "",
            ),
        }
        if let Some(a) = map.get("trustDomainAliases") {
            for (i, item) in self.array(a, "trustDomainAliases", true).iter().enumerate() {
                let alias = self.string(item, index("trustDomainAliases", i));
                doc.trust_domain_aliases.push(alias.unwrap_or_default());
            }
        }
        if let Some(m) = map.get("mode") {
            doc.mode = match m.as_str() {
                Some("enforce") => Mode::Enforce,
                Some("dryRun") => Mode::DryRun,
                _ => {
                    self.problem(
                        "mode".into(),
                        "invalid mode: expected enforce or dryRun",
                        show(m),
                    );
                    Mode::Enforce
                }
            };
        }
        if let Some(p) = map.get("policies") {
            for (i, item) in self.array(p, "policies", true).iter().enumerate() {
                doc.policies.push(self.policy(item, &index("policies", i)));
            }
        }
        doc
    }

    fn policy(&mut self, v: &Value, path: &str) -> Policy {
        let mut policy = Policy {
            name: String::new(),
            action: Action::Allow,
            dry_run: false,
            rules: Vec::new(),
        };
        let Some(map) = self.object(v, path, &["name", "action", "dryRun", "rules"]) else {
            return policy;
        };
        match map.get("name") {
            Some(n) => policy.name = self.string(n, child(path, "name")).unwrap_or_default(),
            None => self.problem(
                child(path, "name"),
                "missing required field: every policy has a unique name",
                "",
            ),
        }
        if let Some(a) = map.get("action") {
            policy.action = match a.as_str() {
                Some("ALLOW") => Action::Allow,
                Some("DENY") => Action::Deny,
                Some(other @ ("AUDIT" | "CUSTOM")) => {
                    self.problem(
                        child(path, "action"),
                        format!("action {other} is not supported by svidgate: use ALLOW or DENY"),
                        other,
                    );
                    Action::Deny
                }
                _ => {
                    self.problem(
                        child(path, "action"),
                        "unknown action: expected ALLOW or DENY",
                        show(a),
                    );
                    Action::Deny
                }
            };
        }
        if let Some(d) = map.get("dryRun") {
            policy.dry_run = self.bool(d, child(path, "dryRun"));
        }
        if let Some(r) = map.get("rules") {
            let rpath = child(path, "rules");
            for (i, item) in self.array(r, &rpath, true).iter().enumerate() {
                policy.rules.push(self.rule(item, &index(&rpath, i)));
            }
        }
        policy
    }

    fn rule(&mut self, v: &Value, path: &str) -> Rule {
        let mut rule = Rule::default();
        let Some(map) = self.object(v, path, &["from", "to", "when"]) else {
            return rule;
        };
        if let Some(f) = map.get("from") {
            let fpath = child(path, "from");
            for (i, item) in self.array(f, &fpath, false).iter().enumerate() {
                let ipath = index(&fpath, i);
                let Some(m) = self.object(item, &ipath, &["source"]) else {
                    rule.from.push(RuleFrom::default());
                    continue;
                };
                match m.get("source") {
                    Some(s) => rule.from.push(RuleFrom {
                        source: self.source(s, &child(&ipath, "source")),
                    }),
                    None => {
                        self.problem(child(&ipath, "source"), "missing required field", "");
                        rule.from.push(RuleFrom::default());
                    }
                }
            }
        }
        if let Some(t) = map.get("to") {
            let tpath = child(path, "to");
            for (i, item) in self.array(t, &tpath, false).iter().enumerate() {
                let ipath = index(&tpath, i);
                let Some(m) = self.object(item, &ipath, &["operation"]) else {
                    rule.to.push(RuleTo::default());
                    continue;
                };
                match m.get("operation") {
                    Some(o) => rule.to.push(RuleTo {
                        operation: self.operation(o, &child(&ipath, "operation")),
                    }),
                    None => {
                        self.problem(child(&ipath, "operation"), "missing required field", "");
                        rule.to.push(RuleTo::default());
                    }
                }
            }
        }
        if let Some(w) = map.get("when") {
            let wpath = child(path, "when");
            for (i, item) in self.array(w, &wpath, false).iter().enumerate() {
                let ipath = index(&wpath, i);
                let Some(m) = self.object(item, &ipath, &["key", "values", "notValues"]) else {
                    rule.when.push(Condition::default());
                    continue;
                };
                let mut cond = Condition::default();
                match m.get("key") {
                    Some(k) => cond.key = self.string(k, child(&ipath, "key")).unwrap_or_default(),
                    None => self.problem(child(&ipath, "key"), "missing required field", ""),
                }
                if let Some(vals) = m.get("values") {
                    cond.values = self.strings(vals, &child(&ipath, "values"));
                }
                if let Some(vals) = m.get("notValues") {
                    cond.not_values = self.strings(vals, &child(&ipath, "notValues"));
                }
                rule.when.push(cond);
            }
        }
        rule
    }

    fn source(&mut self, v: &Value, path: &str) -> Source {
        let mut s = Source::default();
        let known = [
            "principals",
            "notPrincipals",
            "namespaces",
            "notNamespaces",
            "trustDomains",
            "notTrustDomains",
        ];
        let Some(map) = self.object(v, path, &known) else {
            return s;
        };
        for (key, field) in [
            ("principals", &mut s.principals),
            ("notPrincipals", &mut s.not_principals),
            ("namespaces", &mut s.namespaces),
            ("notNamespaces", &mut s.not_namespaces),
            ("trustDomains", &mut s.trust_domains),
            ("notTrustDomains", &mut s.not_trust_domains),
        ] {
            if let Some(val) = map.get(key) {
                *field = self.strings(val, &child(path, key));
            }
        }
        s
    }

    fn operation(&mut self, v: &Value, path: &str) -> Operation {
        let mut o = Operation::default();
        let known = [
            "methods",
            "notMethods",
            "paths",
            "notPaths",
            "hosts",
            "notHosts",
            "ports",
            "notPorts",
        ];
        let Some(map) = self.object(v, path, &known) else {
            return o;
        };
        for (key, field) in [
            ("methods", &mut o.methods),
            ("notMethods", &mut o.not_methods),
            ("paths", &mut o.paths),
            ("notPaths", &mut o.not_paths),
            ("hosts", &mut o.hosts),
            ("notHosts", &mut o.not_hosts),
        ] {
            if let Some(val) = map.get(key) {
                *field = self.strings(val, &child(path, key));
            }
        }
        if let Some(val) = map.get("ports") {
            o.ports = self.ports(val, &child(path, "ports"));
        }
        if let Some(val) = map.get("notPorts") {
            o.not_ports = self.ports(val, &child(path, "notPorts"));
        }
        o
    }
}

/// A decimal port 1-65535, digits only (no sign, no spaces, no leading `+`).
pub(super) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}
