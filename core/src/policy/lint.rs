//! `policy lint`: findings about a valid document that is probably not what its author meant.
//!
//! Every finding has a severity, the field path it is about, a stable code and a message.
//! The checks are syntactic and sound: a finding is only reported when it is certain (e.g. a
//! rule is only called shadowed when an earlier rule provably matches every request it
//! matches); `policy diff` answers the general question of what two documents decide.
//!
//! Codes:
//! - `http-in-network-deny` / `http-in-network-allow` (with `network`): conditions a network
//!   filter cannot see. A DENY rule drops them (matches more, possibly every connection); an
//!   ALLOW rule that needs them never matches.
//! - `duplicate-rule` / `shadowed-rule`: a rule equal to, or matching only requests already
//!   matched by, an earlier rule of the same action (and the same dry-run state).
//! - `never-matches`: conditions that can never hold together (`principals` all listed in
//!   `notPrincipals`, a principal outside `namespaces`, two single-valued `when` conditions with
//!   disjoint values, ...).
//! - `unreachable-path`: a path pattern no request in normal form can have (`//`, `.` or `..`
//!   segments, a backslash, `%2f`/`%5c` or a percent-encoded unreserved character).
//! - `foreign-trust-domain`: a principal or trust domain that is neither the local trust
//!   domain, one of its aliases, nor `cluster.local`.
//! - `deny-all`: an enforced DENY rule that matches every request.
//! - `duplicate-value` / `redundant-value`: a value listed twice, or covered by another
//!   pattern of the same list.
//! - `allow-nothing` (info): an ALLOW policy without rules (denies whatever no other ALLOW
//!   policy allows).

use serde::Serialize;

use super::compile::CLUSTER_LOCAL;
use super::model::{Action, Condition, Mode, Operation, PolicyDocument, Rule, Source};
use super::parse::{child, index};
use super::pattern::{principal_body, Pattern};
use super::validate::{parse_when_key, WhenKey};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parses `error`, `warning` or `info`.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "error" => Some(Severity::Error),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Field path, e.g. `policies[1].rules[0]`.
    pub path: String,
    /// Stable code, e.g. `shadowed-rule`.
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {} [{}]",
            self.severity.as_str(),
            self.path,
            self.message,
            self.code
        )
    }
}

/// Lint options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LintOptions {
    /// The document is loaded by the network (TCP) filter.
    pub network: bool,
}

/// Every code [`lint`] can report, for documentation and tests.
pub const CODES: &[&str] = &[
    "http-in-network-deny",
    "http-in-network-allow",
    "duplicate-rule",
    "shadowed-rule",
    "never-matches",
    "unreachable-path",
    "foreign-trust-domain",
    "deny-all",
    "duplicate-value",
    "redundant-value",
    "allow-nothing",
];

/// Pairwise rule comparisons are bounded (they are quadratic in the number of rules).
const MAX_RULE_PAIRS: usize = 1_000_000;

/// An owned, normalized pattern. `canonical` marks principal and trust-domain patterns that
/// are matched against the canonical (alias-rewritten) identity; the others against the
/// identity as presented. Patterns of different kinds are never compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pat {
    kind: PatKind,
    canonical: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatKind {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl Pat {
    fn plain(value: &str, fold_case: bool) -> Option<Pat> {
        let v = if fold_case {
            value.to_ascii_lowercase()
        } else {
            value.to_owned()
        };
        let kind = match Pattern::parse(&v).ok()? {
            Pattern::Any => PatKind::Any,
            Pattern::Exact(s) => PatKind::Exact(s.into()),
            Pattern::Prefix(s) => PatKind::Prefix(s.into()),
            Pattern::Suffix(s) => PatKind::Suffix(s.into()),
        };
        Some(Pat {
            kind,
            canonical: false,
        })
    }

    /// Does `self` match every value `other` matches?
    fn covers(&self, other: &Pat) -> bool {
        if self.kind == PatKind::Any {
            return true;
        }
        if self.canonical != other.canonical {
            return false;
        }
        match (&self.kind, &other.kind) {
            (PatKind::Exact(a), PatKind::Exact(b)) => a == b,
            (PatKind::Prefix(p), PatKind::Exact(b) | PatKind::Prefix(b)) => b.starts_with(p),
            (PatKind::Suffix(s), PatKind::Exact(b) | PatKind::Suffix(b)) => b.ends_with(s),
            _ => false,
        }
    }

    fn exact(&self) -> Option<&str> {
        match &self.kind {
            PatKind::Exact(s) => Some(s),
            _ => None,
        }
    }
}

fn all_covered(by: &[Pat], values: &[Pat]) -> bool {
    values.iter().all(|v| by.iter().any(|b| b.covers(v)))
}

/// The trust-domain class of the document: local, aliases and `cluster.local`.
#[derive(Debug, Clone)]
struct Tds {
    local: String,
    class: Vec<String>,
}

impl Tds {
    fn in_class(&self, td: &str) -> bool {
        self.class.iter().any(|c| c == td)
    }

    fn principal(&self, value: &str) -> Option<Pat> {
        let kind = match Pattern::parse(value).ok()? {
            Pattern::Any => return Pat::plain("*", false),
            Pattern::Suffix(s) => {
                return Some(Pat {
                    kind: PatKind::Suffix(s.into()),
                    canonical: false,
                })
            }
            Pattern::Exact(s) => (true, principal_body(s)),
            Pattern::Prefix(s) => (false, principal_body(s)),
        };
        let (exact, body) = kind;
        let Some((td, path)) = body.split_once('/') else {
            // `clus*`: matched as presented.
            return Some(Pat {
                kind: PatKind::Prefix(body.into()),
                canonical: false,
            });
        };
        let td = if self.in_class(td) { &self.local } else { td };
        let text = format!("{td}/{path}");
        Some(Pat {
            kind: if exact {
                PatKind::Exact(text)
            } else {
                PatKind::Prefix(text)
            },
            canonical: true,
        })
    }

    fn trust_domain(&self, value: &str) -> Option<Pat> {
        let mut p = Pat::plain(value, false)?;
        if let PatKind::Exact(td) = &p.kind {
            if self.in_class(td) {
                p.kind = PatKind::Exact(self.local.clone());
            }
            p.canonical = true;
        }
        Some(p)
    }
}

/// A normalized source or operation: named fields, each positive or negated.
#[derive(Debug, Clone)]
struct Fields {
    fields: Vec<(&'static str, bool, Vec<Pat>)>,
}

impl Fields {
    fn get(&self, name: &str, positive: bool) -> Option<&[Pat]> {
        self.fields
            .iter()
            .find(|(n, p, _)| *n == name && *p == positive)
            .map(|(_, _, v)| v.as_slice())
    }

    fn has_positive_identity(&self) -> bool {
        self.fields
            .iter()
            .any(|(n, p, _)| *p && matches!(*n, "principals" | "namespaces" | "trustDomains"))
    }

    /// Does `self` match every request `other` matches?
    fn covers(&self, other: &Fields) -> bool {
        self.fields.iter().all(|(name, positive, mine)| {
            if *positive {
                if mine.iter().any(|p| p.kind == PatKind::Any)
                    && *name == "principals"
                    && other.has_positive_identity()
                {
                    return true;
                }
                other
                    .get(name, true)
                    .is_some_and(|theirs| all_covered(mine, theirs))
            } else {
                other
                    .get(name, false)
                    .is_some_and(|theirs| all_covered(theirs, mine))
            }
        })
    }

    /// Why this source/operation can never match, if it provably cannot.
    fn never(&self) -> Option<String> {
        for (name, positive, values) in &self.fields {
            if !*positive {
                continue;
            }
            if let Some(neg) = self.get(name, false) {
                if all_covered(neg, values) {
                    return Some(format!(
                        "every value of `{name}` is excluded by `not{}`",
                        capitalize(name)
                    ));
                }
            }
        }
        if self.has_positive_identity() {
            if let Some(neg) = self.get("principals", false) {
                if neg.iter().any(|p| p.kind == PatKind::Any) {
                    return Some(
                        "`notPrincipals: [\"*\"]` excludes every peer with an identity, which the other fields require"
                            .into(),
                    );
                }
            }
        }
        // Exact principals whose namespace or trust domain the other fields exclude.
        if let Some(principals) = self.get("principals", true) {
            let exact: Option<Vec<&str>> = principals.iter().map(Pat::exact).collect();
            if let Some(exact) = exact {
                let ns_ok = |id: &str| {
                    let ns = id
                        .split_once("/ns/")
                        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest));
                    let pos = self.get("namespaces", true).is_none_or(|l| {
                        ns.is_some_and(|ns| l.iter().any(|p| p.covers(&exact_pat(ns))))
                    });
                    let neg = self.get("namespaces", false).is_none_or(|l| {
                        ns.is_none_or(|ns| !l.iter().any(|p| p.covers(&exact_pat(ns))))
                    });
                    pos && neg
                };
                let td_ok = |id: &str| {
                    let td = id.split('/').next().unwrap_or(id);
                    let mut p = exact_pat(td);
                    p.canonical = true;
                    // A pattern matched against the presented trust domain cannot be judged
                    // from the canonical one: assume it may match.
                    let pos = self
                        .get("trustDomains", true)
                        .is_none_or(|l| l.iter().any(|q| !q.canonical || q.covers(&p)));
                    let neg = self
                        .get("trustDomains", false)
                        .is_none_or(|l| !l.iter().any(|q| q.covers(&p)));
                    pos && neg
                };
                // Only canonical exact IDs are checked (aliases were rewritten already).
                if principals.iter().all(|p| p.canonical)
                    && exact.iter().all(|id| !(ns_ok(id) && td_ok(id)))
                {
                    return Some(
                        "no listed principal has a namespace and trust domain the other fields allow"
                            .into(),
                    );
                }
            }
        }
        None
    }
}

fn exact_pat(s: &str) -> Pat {
    Pat {
        kind: PatKind::Exact(s.into()),
        canonical: false,
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// A normalized `when` condition.
#[derive(Debug, Clone)]
struct Cond {
    /// `request.headers[<lower-case name>]` or the key as written.
    key: String,
    single_valued: bool,
    values: Option<Vec<Pat>>,
    not_values: Option<Vec<Pat>>,
}

/// A normalized rule.
#[derive(Debug, Clone)]
struct NRule {
    from: Vec<Fields>,
    to: Vec<Fields>,
    when: Vec<Cond>,
}

impl NRule {
    /// Does `self` match every request `other` matches?
    fn covers(&self, other: &NRule) -> bool {
        let list = |mine: &[Fields], theirs: &[Fields]| {
            mine.is_empty()
                || (!theirs.is_empty() && theirs.iter().all(|t| mine.iter().any(|m| m.covers(t))))
        };
        list(&self.from, &other.from)
            && list(&self.to, &other.to)
            && self.when.iter().all(|c| {
                let values = c.values.as_ref().is_none_or(|v| {
                    other.when.iter().any(|o| {
                        o.key == c.key && o.values.as_ref().is_some_and(|ov| all_covered(v, ov))
                    })
                });
                let not_values = c.not_values.as_ref().is_none_or(|n| {
                    other.when.iter().any(|o| {
                        o.key == c.key && o.not_values.as_ref().is_some_and(|on| all_covered(on, n))
                    })
                });
                values && not_values
            })
    }
}

struct Linter {
    tds: Tds,
    opts: LintOptions,
    out: Vec<Finding>,
}

impl Linter {
    fn push(&mut self, severity: Severity, path: String, code: &'static str, message: String) {
        self.out.push(Finding {
            severity,
            path,
            code,
            message,
        });
    }

    /// Normalizes a list and reports duplicate and redundant values.
    fn list(
        &mut self,
        path: &str,
        values: &[String],
        norm: impl Fn(&str) -> Option<Pat>,
    ) -> Vec<Pat> {
        let pats: Vec<Option<Pat>> = values.iter().map(|v| norm(v)).collect();
        for (i, p) in pats.iter().enumerate() {
            let Some(p) = p else { continue };
            let earlier = pats[..i].iter().position(|q| q.as_ref() == Some(p));
            if let Some(j) = earlier {
                self.push(
                    Severity::Warning,
                    index(path, i),
                    "duplicate-value",
                    format!(
                        "{:?} is listed twice (first at {})",
                        values[i],
                        index(path, j)
                    ),
                );
                continue;
            }
            let coverer = pats
                .iter()
                .enumerate()
                .find(|(j, q)| *j != i && q.as_ref().is_some_and(|q| q != p && q.covers(p)));
            if let Some((j, _)) = coverer {
                self.push(
                    Severity::Warning,
                    index(path, i),
                    "redundant-value",
                    format!(
                        "{:?} is already matched by {:?} ({})",
                        values[i],
                        values[j],
                        index(path, j)
                    ),
                );
            }
        }
        pats.into_iter().flatten().collect()
    }

    fn principals(&mut self, path: &str, values: &[String]) -> Vec<Pat> {
        for (i, v) in values.iter().enumerate() {
            let body = principal_body(v);
            if let (Ok(Pattern::Exact(_) | Pattern::Prefix(_)), Some((td, _))) =
                (Pattern::parse(v), body.split_once('/'))
            {
                self.foreign(&index(path, i), td, v);
            }
        }
        let tds = self.tds.clone();
        self.list(path, values, |v| tds.principal(v))
    }

    fn trust_domains(&mut self, path: &str, values: &[String]) -> Vec<Pat> {
        for (i, v) in values.iter().enumerate() {
            if let Ok(Pattern::Exact(td)) = Pattern::parse(v) {
                self.foreign(&index(path, i), td, v);
            }
        }
        let tds = self.tds.clone();
        self.list(path, values, |v| tds.trust_domain(v))
    }

    fn foreign(&mut self, path: &str, td: &str, value: &str) {
        if !self.tds.in_class(td) {
            self.push(
                Severity::Warning,
                path.to_owned(),
                "foreign-trust-domain",
                format!(
                    "{value:?} is in trust domain {td:?}, which is neither the local trust domain {:?}, an alias, nor cluster.local (add it to trustDomainAliases if its peers are local)",
                    self.tds.local
                ),
            );
        }
    }

    fn paths(&mut self, path: &str, values: &[String], deny: bool, negated: bool) -> Vec<Pat> {
        for (i, v) in values.iter().enumerate() {
            if let Some(why) = Pattern::parse(v).ok().and_then(unreachable_path) {
                let (severity, effect) = match (deny, negated) {
                    (true, false) => (Severity::Error, "this DENY never matches it: the request arrives normalized (e.g. /admin/x) and is not denied by this value"),
                    (false, false) => (Severity::Warning, "this ALLOW value never matches"),
                    (_, true) => (Severity::Warning, "excluding it has no effect"),
                };
                self.push(
                    severity,
                    index(path, i),
                    "unreachable-path",
                    format!("{v:?} has {why}, which no request in normal form has; {effect}"),
                );
            }
        }
        self.list(path, values, |v| Pat::plain(v, false))
    }

    fn source(&mut self, path: &str, s: &Source) -> Fields {
        let mut fields = Vec::new();
        let mut add = |name: &'static str, positive: bool, pats: Vec<Pat>, set: bool| {
            if set {
                fields.push((name, positive, pats));
            }
        };
        let p = self.principals(&child(path, "principals"), &s.principals);
        add("principals", true, p, !s.principals.is_empty());
        let p = self.principals(&child(path, "notPrincipals"), &s.not_principals);
        add("principals", false, p, !s.not_principals.is_empty());
        let p = self.list(&child(path, "namespaces"), &s.namespaces, |v| {
            Pat::plain(v, false)
        });
        add("namespaces", true, p, !s.namespaces.is_empty());
        let p = self.list(&child(path, "notNamespaces"), &s.not_namespaces, |v| {
            Pat::plain(v, false)
        });
        add("namespaces", false, p, !s.not_namespaces.is_empty());
        let p = self.trust_domains(&child(path, "trustDomains"), &s.trust_domains);
        add("trustDomains", true, p, !s.trust_domains.is_empty());
        let p = self.trust_domains(&child(path, "notTrustDomains"), &s.not_trust_domains);
        add("trustDomains", false, p, !s.not_trust_domains.is_empty());
        Fields { fields }
    }

    fn operation(&mut self, path: &str, o: &Operation, deny: bool) -> Fields {
        let mut fields = Vec::new();
        let plain = |fold: bool| move |v: &str| Pat::plain(v, fold);
        let lists: [(&'static str, bool, &[String], &str, bool); 4] = [
            ("methods", true, &o.methods, "methods", false),
            ("methods", false, &o.not_methods, "notMethods", false),
            ("hosts", true, &o.hosts, "hosts", true),
            ("hosts", false, &o.not_hosts, "notHosts", true),
        ];
        for (name, positive, values, field, fold) in lists {
            if !values.is_empty() {
                let pats = self.list(&child(path, field), values, plain(fold));
                fields.push((name, positive, pats));
            }
        }
        if !o.paths.is_empty() {
            let pats = self.paths(&child(path, "paths"), &o.paths, deny, false);
            fields.push(("paths", true, pats));
        }
        if !o.not_paths.is_empty() {
            let pats = self.paths(&child(path, "notPaths"), &o.not_paths, deny, true);
            fields.push(("paths", false, pats));
        }
        for (positive, ports, field) in
            [(true, &o.ports, "ports"), (false, &o.not_ports, "notPorts")]
        {
            if !ports.is_empty() {
                let text: Vec<String> = ports.iter().map(u16::to_string).collect();
                let pats = self.list(&child(path, field), &text, plain(false));
                fields.push(("ports", positive, pats));
            }
        }
        Fields { fields }
    }

    fn condition(&mut self, path: &str, c: &Condition) -> Option<Cond> {
        let key = parse_when_key(&c.key).ok()?;
        let (key_text, single) = match key {
            WhenKey::Header(name) => (
                format!("request.headers[{}]", name.to_ascii_lowercase()),
                false,
            ),
            _ => (c.key.clone(), true),
        };
        let mut parts: [Option<Vec<Pat>>; 2] = [None, None];
        for (slot, (values, field)) in parts
            .iter_mut()
            .zip([(&c.values, "values"), (&c.not_values, "notValues")])
        {
            if values.is_empty() {
                continue;
            }
            let p = child(path, field);
            *slot = Some(match key {
                WhenKey::SourcePrincipal => self.principals(&p, values),
                WhenKey::ConnectionSni => self.list(&p, values, |v| Pat::plain(v, true)),
                WhenKey::DestinationPort => self.list(&p, values, |v| {
                    let n: u16 = v.trim().parse().ok()?;
                    Pat::plain(&n.to_string(), false)
                }),
                _ => self.list(&p, values, |v| Pat::plain(v, false)),
            });
        }
        let [values, not_values] = parts;
        Some(Cond {
            key: key_text,
            single_valued: single,
            values,
            not_values,
        })
    }

    fn rule(&mut self, path: &str, r: &Rule, deny: bool) -> NRule {
        let from: Vec<Fields> = r
            .from
            .iter()
            .enumerate()
            .map(|(k, f)| self.source(&child(&index(&child(path, "from"), k), "source"), &f.source))
            .collect();
        let to: Vec<Fields> =
            r.to.iter()
                .enumerate()
                .map(|(k, t)| {
                    self.operation(
                        &child(&index(&child(path, "to"), k), "operation"),
                        &t.operation,
                        deny,
                    )
                })
                .collect();
        let when: Vec<Cond> = r
            .when
            .iter()
            .enumerate()
            .filter_map(|(k, c)| self.condition(&index(&child(path, "when"), k), c))
            .collect();
        NRule { from, to, when }
    }

    /// Reports conditions that can never hold; true when the whole rule never matches.
    fn never(&mut self, path: &str, r: &NRule) -> bool {
        let mut dead = false;
        for (list, field, what) in [(&r.from, "from", "source"), (&r.to, "to", "operation")] {
            let reasons: Vec<Option<String>> = list.iter().map(Fields::never).collect();
            let all = !reasons.is_empty() && reasons.iter().all(Option::is_some);
            dead |= all;
            for (k, why) in reasons.into_iter().enumerate() {
                if let Some(why) = why {
                    let (severity, tail) = if all {
                        (Severity::Error, "the rule never matches")
                    } else {
                        (Severity::Warning, "this entry never matches")
                    };
                    self.push(
                        severity,
                        child(&index(&child(path, field), k), what),
                        "never-matches",
                        format!("{why}: {tail}"),
                    );
                }
            }
        }
        for (k, c) in r.when.iter().enumerate() {
            let p = index(&child(path, "when"), k);
            if let (Some(v), Some(n)) = (&c.values, &c.not_values) {
                if all_covered(n, v) {
                    dead = true;
                    self.push(
                        Severity::Error,
                        p.clone(),
                        "never-matches",
                        format!("every value of `{}` is excluded by its notValues: the rule never matches", c.key),
                    );
                    continue;
                }
            }
            // Two conditions on the same single-valued key with disjoint exact values.
            if !c.single_valued {
                continue;
            }
            let Some(mine) = c.values.as_ref().and_then(|v| exacts(v)) else {
                continue;
            };
            for (j, o) in r.when.iter().enumerate().take(k) {
                if o.key != c.key {
                    continue;
                }
                if let Some(theirs) = o.values.as_ref().and_then(|v| exacts(v)) {
                    if !mine.iter().any(|m| theirs.contains(m)) {
                        dead = true;
                        self.push(
                            Severity::Error,
                            p.clone(),
                            "never-matches",
                            format!(
                                "`{}` cannot equal a value of both this condition and {}: the rule never matches",
                                c.key,
                                index(&child(path, "when"), j)
                            ),
                        );
                    }
                }
            }
        }
        dead
    }

    fn network(&mut self, path: &str, r: &Rule, action: Action, dry_run: bool) {
        let http_ops: Vec<usize> =
            r.to.iter()
                .enumerate()
                .filter(|(_, t)| t.operation.uses_http())
                .map(|(k, _)| k)
                .collect();
        let http_when: Vec<usize> = r
            .when
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(parse_when_key(&c.key), Ok(WhenKey::Header(_))))
            .map(|(k, _)| k)
            .collect();
        if http_ops.is_empty() && http_when.is_empty() {
            return;
        }
        let mut fields: Vec<String> = http_ops
            .iter()
            .map(|k| format!("to[{k}].operation"))
            .collect();
        fields.extend(http_when.iter().map(|k| format!("when[{k}]")));
        let fields = fields.join(", ");
        match action {
            Action::Allow => self.push(
                Severity::Warning,
                path.to_owned(),
                "http-in-network-allow",
                format!("needs HTTP attributes ({fields}) a network filter cannot see: this ALLOW rule never matches in network mode"),
            ),
            Action::Deny => {
                let everything = r.from.is_empty()
                    && (r.to.is_empty()
                        || r.to.iter().any(|t| {
                            t.operation.ports.is_empty() && t.operation.not_ports.is_empty()
                        }))
                    && r.when.len() == http_when.len();
                if everything && !dry_run {
                    self.push(
                        Severity::Error,
                        path.to_owned(),
                        "deny-all",
                        format!("in network mode the HTTP conditions ({fields}) are dropped and nothing else is left: this DENY rule matches every connection"),
                    );
                } else {
                    self.push(
                        Severity::Warning,
                        path.to_owned(),
                        "http-in-network-deny",
                        format!("HTTP conditions ({fields}) are dropped in network mode: this DENY rule matches every connection its other conditions match"),
                    );
                }
            }
        }
    }
}

fn exacts(v: &[Pat]) -> Option<Vec<&str>> {
    v.iter().map(Pat::exact).collect()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Why no request path in normal form can match this pattern (`None`: some can).
/// Normal form: no `//`, no `.` or `..` segment, no backslash, no `%2f`/`%5c` and no
/// percent-encoded unreserved character; any other `%` must start a valid escape.
pub(crate) fn unreachable_path(p: Pattern<'_>) -> Option<&'static str> {
    let (text, first_partial, last_partial) = match p {
        Pattern::Any => return None,
        Pattern::Exact(s) => (s, false, false),
        Pattern::Prefix(s) => (s, false, true),
        Pattern::Suffix(s) => (s, true, false),
    };
    if text.contains('\\') {
        return Some("a backslash");
    }
    let b = text.as_bytes();
    for i in 0..b.len() {
        if b[i] != b'%' {
            continue;
        }
        match (
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (Some(h), Some(l)) => {
                let c = h * 16 + l;
                if c == b'/' || c == b'\\' {
                    return Some("an encoded slash or backslash");
                }
                if is_unreserved(c) {
                    return Some("a percent-encoded unreserved character");
                }
            }
            // A prefix may end inside an escape (`/a%2*`): only complete escapes are judged.
            _ if last_partial && i + 3 > b.len() => {}
            _ => return Some("an invalid percent-encoding"),
        }
    }
    let segments: Vec<&str> = text.split('/').collect();
    let n = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        // A pattern's open end may be completed: its outer segment is partial.
        if (i == 0 && first_partial) || (i + 1 == n && last_partial) {
            continue;
        }
        if *seg == "." || *seg == ".." {
            return Some("a '.' or '..' segment");
        }
        if seg.is_empty() && i > 0 && i + 1 < n {
            return Some("an empty segment ('//')");
        }
    }
    None
}

/// Lints a (valid) document. Findings are in document order.
pub fn lint(doc: &PolicyDocument, opts: LintOptions) -> Vec<Finding> {
    let mut class = vec![doc.trust_domain.clone(), CLUSTER_LOCAL.to_owned()];
    class.extend(doc.trust_domain_aliases.iter().cloned());
    let mut l = Linter {
        tds: Tds {
            local: doc.trust_domain.clone(),
            class,
        },
        opts,
        out: Vec::new(),
    };
    // (action, dry_run) -> earlier rules (path, normalized rule, dead).
    type Seen = Vec<(String, NRule)>;
    let mut seen: [[Seen; 2]; 2] = Default::default();
    let mut pairs = 0usize;
    for (i, p) in doc.policies.iter().enumerate() {
        let ppath = index("policies", i);
        let deny = p.action == Action::Deny;
        let dry_run = p.dry_run || doc.mode == Mode::DryRun;
        if !deny && p.rules.is_empty() {
            l.push(
                Severity::Info,
                ppath.clone(),
                "allow-nothing",
                format!("ALLOW policy {:?} has no rules: it allows nothing, so every request no other ALLOW policy allows is denied", p.name),
            );
        }
        for (j, r) in p.rules.iter().enumerate() {
            let rpath = index(&child(&ppath, "rules"), j);
            let nr = l.rule(&rpath, r, deny);
            if l.opts.network {
                l.network(&rpath, r, p.action, dry_run);
            }
            let empty = r.from.is_empty() && r.to.is_empty() && r.when.is_empty();
            if deny && empty && !dry_run {
                l.push(
                    Severity::Error,
                    rpath.clone(),
                    "deny-all",
                    format!(
                        "this DENY rule has no conditions: policy {:?} denies every request",
                        p.name
                    ),
                );
            }
            let dead = l.never(&rpath, &nr);
            let class = &mut seen[usize::from(deny)][usize::from(dry_run)];
            if !dead {
                let action = p.action.as_str();
                let mut finding = None;
                for (earlier, e) in class.iter() {
                    pairs += 1;
                    if pairs > MAX_RULE_PAIRS {
                        break;
                    }
                    if e.covers(&nr) {
                        finding = Some(if nr.covers(e) {
                            (
                                "duplicate-rule",
                                format!("same conditions as {earlier}, an earlier {action} rule: this rule never decides a request"),
                            )
                        } else {
                            (
                                "shadowed-rule",
                                format!("every request this rule matches is matched first by {earlier}, an earlier {action} rule: it never decides a request"),
                            )
                        });
                        break;
                    }
                }
                class.push((rpath.clone(), nr));
                if let Some((code, message)) = finding {
                    l.push(Severity::Warning, rpath, code, message);
                }
            }
        }
    }
    l.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_path_table() {
        let cases: [(&str, bool); 20] = [
            ("/api/x", false),
            ("/api/*", false),
            ("*.css", false),
            ("/a//b", true),
            ("/a/./b", true),
            ("/a/../b", true),
            ("/a/..", true),
            ("/a/.", true),
            ("/a/.*", false),
            ("*./a", false),
            ("/a%2Fb", true),
            ("/a%2fb", true),
            ("/a%5Cb", true),
            ("/%61dmin", true),
            ("/a%2e%2e/b", true),
            ("/a%20b", false),
            ("/a%zz", true),
            ("/a%2*", false),
            ("/a\\b", true),
            ("//*", true),
        ];
        for (p, bad) in cases {
            let got = unreachable_path(Pattern::parse(p).unwrap());
            assert_eq!(got.is_some(), bad, "{p}: {got:?}");
        }
    }

    #[test]
    fn coverage() {
        let p = |s: &str| Pat::plain(s, false).unwrap();
        assert!(p("*").covers(&p("/x")));
        assert!(p("/a/*").covers(&p("/a/b")));
        assert!(p("/a/*").covers(&p("/a/b*")));
        assert!(!p("/a/b*").covers(&p("/a/*")));
        assert!(p("*.css").covers(&p("/x.css")));
        assert!(!p("*.css").covers(&p("/x*")));
        assert!(!p("/x").covers(&p("/x*")));
    }
}
