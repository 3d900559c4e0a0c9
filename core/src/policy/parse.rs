//! Text → [`Json`] → typed document, reporting every structural problem with its field path
//! (unknown field, wrong type, missing field, empty list, bad enum value).
//!
//! YAML and JSON both go through a [`Json`] value so they get the same treatment; it is read
//! with duplicate mapping keys rejected (serde_json would silently keep the last one, which
//! could hide a rule from a reviewer). The walker consumes the value: its strings are moved
//! into the document (or, borrowed from the text, stay borrowed in a `Cow` document).

use std::borrow::Cow;

use super::model::{
    Action, Condition, Mode, Operation, Policy, PolicyDocument, Rule, RuleFrom, RuleTo, Source,
};
use super::value::{self, Json, Object};
use super::{PolicyError, Problem};

/// A string type a document can hold: `String`, or `Cow<str>` borrowing from the text.
pub(crate) trait DocStr<'a>: From<Cow<'a, str>> + AsRef<str> + Default {}

impl<'a, S: From<Cow<'a, str>> + AsRef<str> + Default> DocStr<'a> for S {}

pub(super) fn yaml_to_value(text: &str) -> Result<Json<'_>, PolicyError> {
    value::from_yaml_text(text).map_err(|e| PolicyError::Syntax(e.to_string()))
}

pub(super) fn json_to_value(text: &str, lengths: Vec<u32>) -> Result<Json<'_>, PolicyError> {
    value::from_json_text(text, lengths).map_err(|e| PolicyError::Syntax(e.to_string()))
}

/// Renders a value for a problem message, shortened.
pub(super) fn show(v: &Json<'_>) -> String {
    match v {
        Json::String(s) => shorten(s),
        other => shorten(&other.to_json_string()),
    }
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
    fn object<'a>(&mut self, v: Json<'a>, path: &str, known: &[&str]) -> Option<Object<'a>> {
        let Json::Object(map) = v else {
            let p = if path.is_empty() { "(document)" } else { path };
            self.problem(p.to_owned(), "expected a mapping", show(&v));
            return None;
        };
        for key in map.keys() {
            if known.contains(&key.as_ref()) {
                continue;
            }
            let msg = match unsupported(key) {
                Some(why) => why.to_owned(),
                None => format!("unknown field, expected one of: {}", known.join(", ")),
            };
            self.problem(child(path, key), msg, key.as_ref());
        }
        Some(map)
    }

    fn string<'a, S: DocStr<'a>>(&mut self, v: Json<'a>, path: String) -> Option<S> {
        match v {
            Json::String(s) => Some(S::from(s)),
            other => {
                self.problem(path, "expected a string", show(&other));
                None
            }
        }
    }

    fn bool(&mut self, v: &Json<'_>, path: String) -> bool {
        match v {
            Json::Bool(b) => *b,
            other => {
                self.problem(path, "expected true or false", show(other));
                false
            }
        }
    }

    fn array<'a>(&mut self, v: Json<'a>, path: &str, allow_empty: bool) -> Vec<Json<'a>> {
        match v {
            Json::Array(items) => {
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
                self.problem(path.to_owned(), "expected a list", show(&other));
                Vec::new()
            }
        }
    }

    /// A non-empty list of strings; integers are accepted and written as decimal strings
    /// (YAML authors write `values: [8080]`).
    fn strings<'a, S: DocStr<'a>>(&mut self, v: Json<'a>, path: &str) -> Vec<S> {
        let items = self.array(v, path, false);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Json::String(s) => out.push(S::from(s)),
                Json::Number(n) if n.is_u64() || n.is_i64() => {
                    out.push(S::from(Cow::Owned(n.to_string())));
                }
                other => {
                    self.problem(index(path, i), "expected a string", show(&other));
                    // Keeps later indices aligned for the value validator; the document is
                    // rejected anyway.
                    out.push(S::from(Cow::Borrowed("*")));
                }
            }
        }
        out
    }

    /// A non-empty list of ports: integers or decimal strings (Istio writes `"8080"`), 1-65535.
    fn ports(&mut self, v: Json<'_>, path: &str) -> Vec<u16> {
        let items = self.array(v, path, false);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let port = match item {
                Json::Number(n) => n.as_u64(),
                Json::String(s) => parse_port(s).map(u64::from),
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

    pub(super) fn document<'a, S: DocStr<'a>>(&mut self, v: Json<'a>) -> PolicyDocument<S> {
        let mut doc = PolicyDocument {
            trust_domain: S::default(),
            trust_domain_aliases: Vec::new(),
            mode: Mode::Enforce,
            policies: Vec::new(),
        };
        let known = ["trustDomain", "trustDomainAliases", "mode", "policies"];
        let Some(mut map) = self.object(v, "", &known) else {
            return doc;
        };
        match map.remove("trustDomain") {
            Some(td) => {
                if let Some(td) = self.string(td, "trustDomain".into()) {
                    doc.trust_domain = td;
                }
            }
            None => self.problem(
                "trustDomain".into(),
                "missing required field: the local trust domain",
                "",
            ),
        }
        if let Some(a) = map.remove("trustDomainAliases") {
            let items = self.array(a, "trustDomainAliases", true);
            doc.trust_domain_aliases.reserve_exact(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let alias = self.string(item, index("trustDomainAliases", i));
                doc.trust_domain_aliases
                    .push(alias.unwrap_or_else(|| S::default()));
            }
        }
        if let Some(m) = map.remove("mode") {
            doc.mode = match m.as_str() {
                Some("enforce") => Mode::Enforce,
                Some("dryRun") => Mode::DryRun,
                _ => {
                    self.problem(
                        "mode".into(),
                        "invalid mode: expected enforce or dryRun",
                        show(&m),
                    );
                    Mode::Enforce
                }
            };
        }
        if let Some(p) = map.remove("policies") {
            let items = self.array(p, "policies", true);
            doc.policies.reserve_exact(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let policy = self.policy(item, &index("policies", i));
                doc.policies.push(policy);
            }
        }
        doc
    }

    fn policy<'a, S: DocStr<'a>>(&mut self, v: Json<'a>, path: &str) -> Policy<S> {
        let mut policy = Policy {
            name: S::default(),
            action: Action::Allow,
            dry_run: false,
            rules: Vec::new(),
        };
        let Some(mut map) = self.object(v, path, &["name", "action", "dryRun", "rules"]) else {
            return policy;
        };
        match map.remove("name") {
            Some(n) => {
                if let Some(name) = self.string(n, child(path, "name")) {
                    policy.name = name;
                }
            }
            None => self.problem(
                child(path, "name"),
                "missing required field: every policy has a unique name",
                "",
            ),
        }
        if let Some(a) = map.remove("action") {
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
                        show(&a),
                    );
                    Action::Deny
                }
            };
        }
        if let Some(d) = map.remove("dryRun") {
            policy.dry_run = self.bool(&d, child(path, "dryRun"));
        }
        if let Some(r) = map.remove("rules") {
            let rpath = child(path, "rules");
            let items = self.array(r, &rpath, true);
            policy.rules.reserve_exact(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let rule = self.rule(item, &index(&rpath, i));
                policy.rules.push(rule);
            }
        }
        policy
    }

    /// The one required field `key` of the mapping at `path` (`from[i].source`,
    /// `to[i].operation`), or `None` after reporting the problem.
    fn only_field<'a>(&mut self, v: Json<'a>, path: &str, key: &str) -> Option<Json<'a>> {
        let mut map = self.object(v, path, &[key])?;
        let field = map.remove(key);
        if field.is_none() {
            self.problem(child(path, key), "missing required field", "");
        }
        field
    }

    fn rule<'a, S: DocStr<'a>>(&mut self, v: Json<'a>, path: &str) -> Rule<S> {
        let mut rule = Rule::default();
        let Some(mut map) = self.object(v, path, &["from", "to", "when"]) else {
            return rule;
        };
        if let Some(f) = map.remove("from") {
            let fpath = child(path, "from");
            let items = self.array(f, &fpath, false);
            rule.from.reserve_exact(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let ipath = index(&fpath, i);
                let source = match self.only_field(item, &ipath, "source") {
                    Some(s) => self.source(s, &child(&ipath, "source")),
                    None => Source::default(),
                };
                rule.from.push(RuleFrom { source });
            }
        }
        if let Some(t) = map.remove("to") {
            let tpath = child(path, "to");
            let items = self.array(t, &tpath, false);
            rule.to.reserve_exact(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let ipath = index(&tpath, i);
                let operation = match self.only_field(item, &ipath, "operation") {
                    Some(o) => self.operation(o, &child(&ipath, "operation")),
                    None => Operation::default(),
                };
                rule.to.push(RuleTo { operation });
            }
        }
        if let Some(w) = map.remove("when") {
            let wpath = child(path, "when");
            let items = self.array(w, &wpath, false);
            rule.when.reserve_exact(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let ipath = index(&wpath, i);
                let Some(mut m) = self.object(item, &ipath, &["key", "values", "notValues"]) else {
                    rule.when.push(Condition::default());
                    continue;
                };
                let mut cond = Condition::default();
                match m.remove("key") {
                    Some(k) => {
                        if let Some(key) = self.string(k, child(&ipath, "key")) {
                            cond.key = key;
                        }
                    }
                    None => self.problem(child(&ipath, "key"), "missing required field", ""),
                }
                if let Some(vals) = m.remove("values") {
                    cond.values = self.strings(vals, &child(&ipath, "values"));
                }
                if let Some(vals) = m.remove("notValues") {
                    cond.not_values = self.strings(vals, &child(&ipath, "notValues"));
                }
                rule.when.push(cond);
            }
        }
        rule
    }

    fn source<'a, S: DocStr<'a>>(&mut self, v: Json<'a>, path: &str) -> Source<S> {
        let mut s = Source::default();
        let fields = [
            ("principals", &mut s.principals),
            ("notPrincipals", &mut s.not_principals),
            ("namespaces", &mut s.namespaces),
            ("notNamespaces", &mut s.not_namespaces),
            ("trustDomains", &mut s.trust_domains),
            ("notTrustDomains", &mut s.not_trust_domains),
        ];
        let known = fields.each_ref().map(|(key, _)| *key);
        let Some(mut map) = self.object(v, path, &known) else {
            return Source::default();
        };
        for (key, field) in fields {
            if let Some(val) = map.remove(key) {
                *field = self.strings(val, &child(path, key));
            }
        }
        s
    }

    fn operation<'a, S: DocStr<'a>>(&mut self, v: Json<'a>, path: &str) -> Operation<S> {
        let mut o = Operation::default();
        let fields = [
            ("methods", &mut o.methods),
            ("notMethods", &mut o.not_methods),
            ("paths", &mut o.paths),
            ("notPaths", &mut o.not_paths),
            ("hosts", &mut o.hosts),
            ("notHosts", &mut o.not_hosts),
        ];
        let [m, nm, p, np, h, nh] = fields.each_ref().map(|(key, _)| *key);
        let known = [m, nm, p, np, h, nh, "ports", "notPorts"];
        let Some(mut map) = self.object(v, path, &known) else {
            return Operation::default();
        };
        for (key, field) in fields {
            if let Some(val) = map.remove(key) {
                *field = self.strings(val, &child(path, key));
            }
        }
        if let Some(val) = map.remove("ports") {
            o.ports = self.ports(val, &child(path, "ports"));
        }
        if let Some(val) = map.remove("notPorts") {
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
