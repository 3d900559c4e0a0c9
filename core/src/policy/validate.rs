//! Semantic validation of a typed document: every value of every field, names, `when` keys.
//! Reports all problems, each with its field path.

use std::collections::HashMap;

use crate::spiffe_id::TrustDomain;

use super::model::{Condition, Operation, PolicyDocument, Source};
use super::parse::{child, index, parse_port, shorten};
use super::pattern::{
    check_header_value, check_host, check_method, check_namespace, check_path, check_principal,
    check_trust_domain_pattern, is_tchar,
};
use super::Problem;

/// A parsed `when` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenKey<'a> {
    /// `request.headers[<name>]`, holding the name as written.
    Header(&'a str),
    SourcePrincipal,
    SourceNamespace,
    DestinationPort,
    ConnectionSni,
}

const WHEN_KEYS: &str =
    "request.headers[<name>], source.principal, source.namespace, destination.port, connection.sni";

/// Parses a `when` key; the error explains what is wrong.
pub(crate) fn parse_when_key(key: &str) -> Result<WhenKey<'_>, String> {
    match key {
        "source.principal" => return Ok(WhenKey::SourcePrincipal),
        "source.namespace" => return Ok(WhenKey::SourceNamespace),
        "destination.port" => return Ok(WhenKey::DestinationPort),
        "connection.sni" => return Ok(WhenKey::ConnectionSni),
        _ => {}
    }
    if let Some(rest) = key.strip_prefix("request.headers[") {
        let Some(name) = rest.strip_suffix(']') else {
            return Err("invalid when key: expected request.headers[<name>]".into());
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err("invalid header name in when key: expected an HTTP token".into());
        }
        return Ok(WhenKey::Header(name));
    }
    if key.starts_with("request.auth.") {
        return Err(
            "unknown when key: JWT claims (request.auth.*) are not supported by svidgate".into(),
        );
    }
    if matches!(key, "source.ip" | "remote.ip" | "destination.ip") {
        return Err("unknown when key: IP conditions are not supported by svidgate".into());
    }
    Err(format!("unknown when key, expected one of: {WHEN_KEYS}"))
}

/// Checks one value of a field (the problem text on error).
type Check = fn(&str) -> Result<(), String>;

struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, path: String, problem: impl Into<String>, value: &str) {
        self.problems.push(Problem {
            path,
            problem: problem.into(),
            value: shorten(value),
        });
    }

    fn values<S: AsRef<str>>(&mut self, path: &str, values: &[S], check: Check) {
        for (i, v) in values.iter().enumerate() {
            let v = v.as_ref();
            if let Err(e) = check(v) {
                self.problem(index(path, i), e, v);
            }
        }
    }

    fn ports(&mut self, path: &str, ports: &[u16]) {
        for (i, p) in ports.iter().enumerate() {
            if *p == 0 {
                self.problem(
                    index(path, i),
                    "invalid port: expected a number from 1 to 65535",
                    "0",
                );
            }
        }
    }

    fn source<S: AsRef<str>>(&mut self, path: &str, s: &Source<S>) {
        self.non_empty(
            path,
            s.is_empty(),
            "empty source: set at least one field (an absent `from` matches every source)",
        );
        let fields: [(&str, &[S], Check); 6] = [
            ("principals", &s.principals, check_principal),
            ("notPrincipals", &s.not_principals, check_principal),
            ("namespaces", &s.namespaces, check_namespace),
            ("notNamespaces", &s.not_namespaces, check_namespace),
            ("trustDomains", &s.trust_domains, check_trust_domain_pattern),
            (
                "notTrustDomains",
                &s.not_trust_domains,
                check_trust_domain_pattern,
            ),
        ];
        for (field, values, check) in fields {
            self.values(&child(path, field), values, check);
        }
    }

    /// A source or operation with no field set is a problem (`problem` says which).
    fn non_empty(&mut self, path: &str, empty: bool, problem: &str) {
        if empty {
            self.problem(path.to_owned(), problem, "{}");
        }
    }

    fn operation<S: AsRef<str>>(&mut self, path: &str, o: &Operation<S>) {
        self.non_empty(
            path,
            o.is_empty(),
            "empty operation: set at least one field (an absent `to` matches every operation)",
        );
        self.values(&child(path, "methods"), &o.methods, check_method);
        self.values(&child(path, "notMethods"), &o.not_methods, check_method);
        self.values(&child(path, "paths"), &o.paths, check_path);
        self.values(&child(path, "notPaths"), &o.not_paths, check_path);
        self.values(&child(path, "hosts"), &o.hosts, check_host);
        self.values(&child(path, "notHosts"), &o.not_hosts, check_host);
        self.ports(&child(path, "ports"), &o.ports);
        self.ports(&child(path, "notPorts"), &o.not_ports);
    }

    fn condition<S: AsRef<str>>(&mut self, path: &str, c: &Condition<S>) {
        let key = c.key.as_ref();
        if c.values.is_empty() && c.not_values.is_empty() {
            self.problem(
                path.to_owned(),
                "condition needs `values` or `notValues`",
                key,
            );
        }
        let key = match parse_when_key(key) {
            Ok(k) => k,
            Err(e) => {
                self.problem(child(path, "key"), e, key);
                return;
            }
        };
        let check: fn(&str) -> Result<(), String> = match key {
            WhenKey::Header(_) => check_header_value,
            WhenKey::SourcePrincipal => check_principal,
            WhenKey::SourceNamespace => check_namespace,
            WhenKey::DestinationPort => |v| match parse_port(v) {
                Some(_) => Ok(()),
                None => Err("invalid port: expected a number from 1 to 65535".into()),
            },
            WhenKey::ConnectionSni => check_host,
        };
        self.values(&child(path, "values"), &c.values, check);
        self.values(&child(path, "notValues"), &c.not_values, check);
    }
}

/// Validates the values of a typed document; empty when it is valid.
pub(crate) fn validate<S: AsRef<str>>(doc: &PolicyDocument<S>) -> Vec<Problem> {
    let mut v = Validator {
        problems: Vec::new(),
    };
    let td = doc.trust_domain.as_ref();
    if let Err(e) = TrustDomain::new(td) {
        v.problem(
            "trustDomain".into(),
            format!("invalid trust domain: {e}"),
            td,
        );
    }
    for (i, alias) in doc.trust_domain_aliases.iter().enumerate() {
        let alias = alias.as_ref();
        if let Err(e) = TrustDomain::new(alias) {
            v.problem(
                index("trustDomainAliases", i),
                format!("invalid trust domain: {e}"),
                alias,
            );
        }
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, p) in doc.policies.iter().enumerate() {
        let ppath = index("policies", i);
        let name = p.name.as_ref();
        if name.trim().is_empty() {
            v.problem(child(&ppath, "name"), "empty policy name", name);
        } else if let Some(first) = names.get(name) {
            v.problem(
                child(&ppath, "name"),
                format!("duplicate policy name, first used at policies[{first}]"),
                name,
            );
        } else {
            names.insert(name, i);
        }
        for (j, rule) in p.rules.iter().enumerate() {
            let rpath = index(&child(&ppath, "rules"), j);
            for (k, f) in rule.from.iter().enumerate() {
                v.source(
                    &child(&index(&child(&rpath, "from"), k), "source"),
                    &f.source,
                );
            }
            for (k, t) in rule.to.iter().enumerate() {
                v.operation(
                    &child(&index(&child(&rpath, "to"), k), "operation"),
                    &t.operation,
                );
            }
            for (k, c) in rule.when.iter().enumerate() {
                v.condition(&index(&child(&rpath, "when"), k), c);
            }
        }
    }
    v.problems
}
