//! `policy diff`: requests that two documents decide differently.
//!
//! Exact: every reported request was decided by the real evaluator ([`CompiledPolicy::evaluate`]
//! through the `policy eval` request format), under both documents, with different outcomes.
//!
//! Complete over the documents' own vocabulary, within caps:
//! 1. Candidate values are derived per attribute (peer, method, path, host, port, SNI, each
//!    header read) from the values and patterns of *both* documents: exact values, prefixes and
//!    suffixes completed with filler text, prefix-suffix combinations, the identities those
//!    build under every trust domain either document names, a case variant and a value outside
//!    all of them (and, for the peer, no identity at all).
//! 2. Candidates are pruned to one per class: two values are in the same class when every
//!    field of either document that reads the attribute (each source, each `methods`,
//!    `paths`, ... list, each `when` condition) accepts both or neither; the classes are
//!    computed with the real evaluator on one-field probe documents, so they follow the
//!    engine's semantics exactly. Deciding a request only looks at which fields accept its
//!    values, so one representative per class decides like every other member.
//! 3. The product of the classes of the attributes either document reads is searched.
//!
//! If a cap stops the search (too many candidates for an attribute, or a product larger than
//! [`DiffOptions::max_requests`]), the report says it is inconclusive instead of claiming
//! equivalence. "Decides differently" compares the enforced allow/deny and, when either document
//! has dry-run policies, the dry-run allow/deny (absent = the enforced one); which policy or
//! rule decided is not compared, so reordered and split rules give no difference.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::compile::CLUSTER_LOCAL;
use super::model::{
    Action, Condition, Mode, Operation, Policy, PolicyDocument, Rule, RuleFrom, RuleTo,
};
use super::pattern::{principal_body, Pattern};
use super::request_line::{decide, DecisionOut, RequestLine, RequestSpec};
use super::validate::{parse_when_key, WhenKey};
use super::{CompiledPolicy, EvalMode, Peer, PolicyError, Request};
use crate::spiffe_id::SpiffeId;

/// Search bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffOptions {
    /// Evaluate as the network (TCP) filter.
    pub network: bool,
    /// Most combinations of attribute classes evaluated.
    pub max_requests: u64,
    /// Most candidate values generated per attribute (before pruning).
    pub max_candidates: usize,
    /// Most differing requests reported (the search goes on to count them all).
    pub max_differences: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            network: false,
            max_requests: 2_000_000,
            max_candidates: 1_000_000,
            max_differences: 100,
        }
    }
}

/// One request the documents decide differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// In `svidgate policy eval`'s input format.
    pub request: RequestLine,
    pub old: DecisionOut,
    pub new: DecisionOut,
}

/// The outcome of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    /// Differing requests (at most `max_differences`).
    pub differences: Vec<Difference>,
    /// How many differing class combinations were found in all.
    pub total_differences: u64,
    /// Combinations evaluated.
    pub searched: u64,
    /// Classes per attribute, e.g. `peer: 12`.
    pub classes: BTreeMap<String, usize>,
    /// `None`: the search covered every class combination. `Some(why)`: a cap stopped it and
    /// no difference found does not mean there is none.
    pub inconclusive: Option<String>,
}

impl DiffReport {
    /// No difference and the search was complete.
    pub fn equivalent(&self) -> bool {
        self.total_differences == 0 && self.inconclusive.is_none()
    }
}

/// Collected vocabulary of both documents.
#[derive(Default)]
struct Vocab {
    principals: Vec<String>,
    namespaces: Vec<String>,
    trust_domains: Vec<String>,
    methods: Vec<String>,
    paths: Vec<String>,
    hosts: Vec<String>,
    ports: Vec<u16>,
    snis: Vec<String>,
    /// Lower-case header name -> values.
    headers: BTreeMap<String, Vec<String>>,
}

/// One-field probe documents per attribute: a request value's class is the vector of
/// probe verdicts.
#[derive(Default)]
struct Probes {
    peer: Vec<CompiledPolicy>,
    method: Vec<CompiledPolicy>,
    path: Vec<CompiledPolicy>,
    host: Vec<CompiledPolicy>,
    port: Vec<CompiledPolicy>,
    sni: Vec<CompiledPolicy>,
    headers: BTreeMap<String, Vec<CompiledPolicy>>,
}

fn probe_doc(doc: &PolicyDocument, rule: Rule) -> Option<CompiledPolicy> {
    let probe = PolicyDocument {
        trust_domain: doc.trust_domain.clone(),
        trust_domain_aliases: doc.trust_domain_aliases.clone(),
        mode: Mode::Enforce,
        policies: vec![Policy {
            name: "probe".into(),
            action: Action::Allow,
            dry_run: false,
            rules: vec![rule],
        }],
    };
    CompiledPolicy::compile(&probe).ok()
}

fn op_rule(op: Operation) -> Rule {
    Rule {
        to: vec![RuleTo { operation: op }],
        ..Rule::default()
    }
}

fn when_rule(c: &Condition) -> Rule {
    Rule {
        when: vec![c.clone()],
        ..Rule::default()
    }
}

impl Probes {
    fn add(&mut self, doc: &PolicyDocument, v: &mut Vocab) {
        let mut seen: HashSet<String> = HashSet::new();
        let mut push = |list: &mut Vec<CompiledPolicy>, key: String, rule: Rule| {
            if seen.insert(key) {
                if let Some(p) = probe_doc(doc, rule) {
                    list.push(p);
                }
            }
        };
        for rule in doc.policies.iter().flat_map(|p| &p.rules) {
            for f in &rule.from {
                let s = &f.source;
                v.principals.extend(s.principals.iter().cloned());
                v.principals.extend(s.not_principals.iter().cloned());
                v.namespaces.extend(s.namespaces.iter().cloned());
                v.namespaces.extend(s.not_namespaces.iter().cloned());
                v.trust_domains.extend(s.trust_domains.iter().cloned());
                v.trust_domains.extend(s.not_trust_domains.iter().cloned());
                let key = format!("source {s:?}");
                push(
                    &mut self.peer,
                    key,
                    Rule {
                        from: vec![RuleFrom { source: s.clone() }],
                        ..Rule::default()
                    },
                );
            }
            for t in &rule.to {
                let o = &t.operation;
                let lists: [(&[String], u8); 6] = [
                    (&o.methods, 0),
                    (&o.not_methods, 0),
                    (&o.paths, 1),
                    (&o.not_paths, 1),
                    (&o.hosts, 2),
                    (&o.not_hosts, 2),
                ];
                for (values, which) in lists {
                    if values.is_empty() {
                        continue;
                    }
                    let mut op = Operation::default();
                    let (vocab, probes) = match which {
                        0 => {
                            op.methods = values.to_vec();
                            (&mut v.methods, &mut self.method)
                        }
                        1 => {
                            op.paths = values.to_vec();
                            (&mut v.paths, &mut self.path)
                        }
                        _ => {
                            op.hosts = values.to_vec();
                            (&mut v.hosts, &mut self.host)
                        }
                    };
                    vocab.extend(values.iter().cloned());
                    push(probes, format!("{which} {values:?}"), op_rule(op));
                }
                for ports in [&o.ports, &o.not_ports] {
                    if ports.is_empty() {
                        continue;
                    }
                    v.ports.extend(ports.iter().copied());
                    let op = Operation {
                        ports: ports.clone(),
                        ..Operation::default()
                    };
                    push(&mut self.port, format!("ports {ports:?}"), op_rule(op));
                }
            }
            for c in &rule.when {
                let values = c.values.iter().chain(&c.not_values).cloned();
                let key = format!("when {c:?}");
                let Ok(k) = parse_when_key(&c.key) else {
                    continue;
                };
                match k {
                    WhenKey::Header(name) => {
                        let name = name.to_ascii_lowercase();
                        v.headers.entry(name.clone()).or_default().extend(values);
                        let list = self.headers.entry(name).or_default();
                        push(list, key, when_rule(c));
                    }
                    WhenKey::SourcePrincipal => {
                        v.principals.extend(values);
                        push(&mut self.peer, key, when_rule(c));
                    }
                    WhenKey::SourceNamespace => {
                        v.namespaces.extend(values);
                        push(&mut self.peer, key, when_rule(c));
                    }
                    WhenKey::DestinationPort => {
                        v.ports
                            .extend(values.filter_map(|s| s.trim().parse::<u16>().ok()));
                        push(&mut self.port, key, when_rule(c));
                    }
                    WhenKey::ConnectionSni => {
                        v.snis.extend(values);
                        push(&mut self.sni, key, when_rule(c));
                    }
                }
            }
        }
        v.trust_domains.push(doc.trust_domain.clone());
        v.trust_domains
            .extend(doc.trust_domain_aliases.iter().cloned());
        // Accept-anything probes: catch request values the engine refuses whatever the
        // policy (e.g. a path not in normal form), which no list probe would tell apart.
        let any = |f: fn(&mut Operation)| {
            let mut op = Operation::default();
            f(&mut op);
            op_rule(op)
        };
        push(
            &mut self.method,
            "any method".into(),
            any(|o| o.methods = vec!["*".into()]),
        );
        push(
            &mut self.path,
            "any path".into(),
            any(|o| o.paths = vec!["*".into()]),
        );
        push(
            &mut self.host,
            "any host".into(),
            any(|o| o.hosts = vec!["*".into()]),
        );
    }
}

/// Filler text used to complete prefixes and suffixes.
const FILLERS: [&str; 3] = ["x", "z/y", ""];

/// Completions of a list of (string) patterns: exact values, `prefix+filler`,
/// `filler+suffix`, `prefix+filler+suffix`, case variants and the given outside values.
fn completions(patterns: &[String], fold: bool, outside: &[&str], cap: usize) -> Vec<String> {
    let mut exact = Vec::new();
    let mut prefixes = Vec::new();
    let mut suffixes = Vec::new();
    for p in patterns {
        match Pattern::parse(p) {
            Ok(Pattern::Exact(s)) => exact.push(s.to_owned()),
            Ok(Pattern::Prefix(s)) => prefixes.push(s.to_owned()),
            Ok(Pattern::Suffix(s)) => suffixes.push(s.to_owned()),
            _ => {}
        }
    }
    let mut out: Vec<String> = outside.iter().map(|s| (*s).to_owned()).collect();
    out.extend(exact.iter().cloned());
    for p in &prefixes {
        out.extend(FILLERS.iter().map(|f| format!("{p}{f}")));
    }
    for s in &suffixes {
        out.extend(FILLERS.iter().map(|f| format!("{f}{s}")));
        out.extend(FILLERS.iter().map(|f| format!("/{f}{s}")));
    }
    'combos: for p in &prefixes {
        for s in &suffixes {
            if out.len() > cap {
                break 'combos;
            }
            out.extend(FILLERS.iter().map(|f| format!("{p}{f}{s}")));
            // Overlaps: the prefix's tail is the suffix's head.
            for k in 1..p.len().min(s.len()) {
                if p.is_char_boundary(p.len() - k)
                    && s.is_char_boundary(k)
                    && p[p.len() - k..] == s[..k]
                {
                    out.push(format!("{p}{}", &s[k..]));
                }
            }
        }
    }
    if !fold {
        // Case variants: matching is case-sensitive here, but a request may differ in case.
        let variants: Vec<String> = exact.iter().take(8).map(|e| swap_case(e)).collect();
        out.extend(variants);
    } else {
        let variants: Vec<String> = exact
            .iter()
            .take(8)
            .map(|e| e.to_ascii_uppercase())
            .collect();
        out.extend(variants);
    }
    out.retain(|s| !s.is_empty());
    out
}

fn swap_case(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

/// Candidate peer identities (URI SANs).
fn peer_candidates(v: &Vocab, cap: usize) -> Vec<Option<String>> {
    // Trust domains: every one named, completions of td patterns, and one outside.
    let mut tds: Vec<String> = Vec::new();
    let mut td_patterns = Vec::new();
    for t in &v.trust_domains {
        match Pattern::parse(t) {
            Ok(Pattern::Exact(s)) => tds.push(s.to_owned()),
            Ok(_) => td_patterns.push(t.clone()),
            Err(_) => {}
        }
    }
    tds.push(CLUSTER_LOCAL.into());
    tds.push("svidgate-outside.example".into());
    for t in completions(&td_patterns, false, &[], cap) {
        tds.push(t);
    }
    let mut principal_paths: Vec<String> = Vec::new();
    let mut bodies: Vec<String> = Vec::new();
    for p in &v.principals {
        let body = principal_body(p);
        match Pattern::parse(body) {
            Ok(Pattern::Exact(s)) | Ok(Pattern::Prefix(s)) => {
                if let Some((td, path)) = s.split_once('/') {
                    tds.push(td.to_owned());
                    principal_paths.push(format!("/{path}"));
                    if matches!(Pattern::parse(body), Ok(Pattern::Prefix(_))) {
                        for f in FILLERS {
                            principal_paths.push(format!("/{path}{f}"));
                            bodies.push(format!("{s}{f}"));
                        }
                    } else {
                        bodies.push(s.to_owned());
                    }
                } else {
                    // `clus*`: a trust domain prefix.
                    for f in ["x", "ter.local"] {
                        tds.push(format!("{s}{f}"));
                    }
                }
            }
            Ok(Pattern::Suffix(s)) => {
                for f in ["ns/default/sa/x", "ns/default/sa/", "ns/default", "x"] {
                    principal_paths.push(format!("/{f}{s}"));
                }
                bodies.push(format!("x{s}"));
            }
            _ => {}
        }
    }
    tds.sort();
    tds.dedup();
    tds.retain(|t| crate::spiffe_id::TrustDomain::new(t).is_ok());
    let namespaces = completions(&v.namespaces, false, &["svidgate-outside"], cap);
    for ns in &namespaces {
        principal_paths.push(format!("/ns/{ns}/sa/default"));
    }
    principal_paths.push("/svidgate-outside".into());
    principal_paths.sort();
    principal_paths.dedup();
    let mut out: Vec<Option<String>> = vec![None];
    let mut seen = HashSet::new();
    let mut add = |id: String, out: &mut Vec<Option<String>>| {
        if seen.insert(id.clone()) && SpiffeId::parse(&id).is_ok() {
            out.push(Some(id));
        }
    };
    for b in &bodies {
        add(format!("spiffe://{b}"), &mut out);
    }
    'all: for td in &tds {
        for p in &principal_paths {
            if out.len() > cap {
                break 'all;
            }
            add(format!("spiffe://{td}{p}"), &mut out);
        }
    }
    out
}

/// Keeps one candidate per class (vector of probe verdicts).
fn classes<T: Clone>(
    candidates: Vec<T>,
    probes: &[CompiledPolicy],
    accepts: impl Fn(&CompiledPolicy, &T) -> bool,
) -> Vec<T> {
    let mut seen: HashSet<Vec<bool>> = HashSet::new();
    let mut out = Vec::new();
    for c in candidates {
        let sig: Vec<bool> = probes.iter().map(|p| accepts(p, &c)).collect();
        if seen.insert(sig) {
            out.push(c);
        }
    }
    out
}

fn allowed(p: &CompiledPolicy, req: &Request<'_>) -> bool {
    p.evaluate(req, EvalMode::Http).allowed()
}

fn anon() -> Peer {
    Peer::from_uri_san(false, None)
}

/// Compares two documents. Both must be valid.
pub fn diff(
    old: &PolicyDocument,
    new: &PolicyDocument,
    opts: DiffOptions,
) -> Result<DiffReport, PolicyError> {
    let mode = if opts.network {
        EvalMode::Network
    } else {
        EvalMode::Http
    };
    let a = CompiledPolicy::compile(old)?;
    let b = CompiledPolicy::compile(new)?;
    let attrs = {
        let (x, y) = (a.attributes().for_mode(mode), b.attributes().for_mode(mode));
        super::Attributes {
            method: x.method || y.method,
            path: x.path || y.path,
            host: x.host || y.host,
            port: x.port || y.port,
            sni: x.sni || y.sni,
            headers: x.headers || y.headers,
        }
    };
    let mut vocab = Vocab::default();
    let mut probes = Probes::default();
    probes.add(old, &mut vocab);
    probes.add(new, &mut vocab);
    let cap = opts.max_candidates;
    let mut inconclusive: Option<String> = None;
    let mut capped = |name: &str, n: usize| {
        if n > cap && inconclusive.is_none() {
            inconclusive = Some(format!(
                "more than {cap} candidate values for the {name}: only the first {cap} were tried"
            ));
        }
    };

    // Peer classes.
    let peers = peer_candidates(&vocab, cap);
    capped("peer", peers.len());
    let peers: Vec<Option<String>> = peers.into_iter().take(cap).collect();
    let peers = classes(peers, &probes.peer, |p, id| {
        let peer = match id {
            Some(id) => Peer::from_uri_san(true, Some(id)),
            None => anon(),
        };
        allowed(p, &Request::new(peer))
    });

    let strings = [
        StringAttr {
            name: "method",
            read: attrs.method,
            values: &vocab.methods,
            fold: false,
            outside: &["SVIDGATE-OUTSIDE", "GET", "get"],
            probes: &probes.method,
            set: |req, v| req.method = Some(v),
        },
        StringAttr {
            name: "path",
            read: attrs.path,
            values: &vocab.paths,
            fold: false,
            outside: &["/svidgate-outside", "/x/../y"],
            probes: &probes.path,
            set: |req, v| req.path = Some(v),
        },
        StringAttr {
            name: "host",
            read: attrs.host,
            values: &vocab.hosts,
            fold: true,
            outside: &["svidgate-outside.example"],
            probes: &probes.host,
            set: |req, v| req.host = Some(v),
        },
        StringAttr {
            name: "SNI",
            read: attrs.sni,
            values: &vocab.snis,
            fold: true,
            outside: &["svidgate-outside.example"],
            probes: &probes.sni,
            set: |req, v| req.sni = Some(v),
        },
    ];
    let [methods, paths, hosts, snis] = strings.map(|attr| {
        let (list, n) = string_classes(&attr, cap);
        capped(attr.name, n);
        list
    });
    let snis: Vec<Option<String>> = if attrs.sni {
        std::iter::once(None).chain(snis).collect()
    } else {
        snis
    };
    let ports: Vec<Option<u16>> = if attrs.port {
        let mut c: Vec<u16> = vocab.ports.clone();
        c.sort_unstable();
        c.dedup();
        let outside = (1..=u16::MAX).find(|p| !c.contains(p)).unwrap_or(1);
        c.insert(0, outside);
        classes(c, &probes.port, |p, port| {
            let mut req = Request::new(anon());
            req.port = Some(*port);
            allowed(p, &req)
        })
        .into_iter()
        .map(Some)
        .collect()
    } else {
        vec![None]
    };
    // Headers: each name read is its own attribute (absent or one of its classes).
    let mut headers: Vec<(String, Vec<Option<String>>)> = Vec::new();
    if attrs.headers {
        for (name, values) in &vocab.headers {
            let probes = probes.headers.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let c = completions(values, false, &["svidgate-outside"], cap);
            capped(&format!("header {name}"), c.len());
            let c: Vec<String> = c.into_iter().take(cap).collect();
            let kept = classes(c, probes, |p, v| {
                let h = [(name.as_str(), v.as_str())];
                let mut req = Request::new(anon());
                req.headers = &h;
                allowed(p, &req)
            });
            let mut list: Vec<Option<String>> = vec![None];
            list.extend(kept.into_iter().map(Some));
            headers.push((name.clone(), list));
        }
    }

    let mut class_counts = BTreeMap::new();
    class_counts.insert("peer".to_owned(), peers.len());
    let dims: Vec<(&str, usize)> = vec![
        ("method", methods.len()),
        ("path", paths.len()),
        ("host", hosts.len()),
        ("port", ports.len()),
        ("sni", snis.len()),
    ];
    for (k, n) in &dims {
        if *n > 1 {
            class_counts.insert((*k).to_owned(), *n);
        }
    }
    for (name, l) in &headers {
        class_counts.insert(format!("header {name}"), l.len());
    }
    // The dimensions of the search: peer, method, path, host, port, SNI, then each header.
    let mut sizes: Vec<usize> = vec![
        peers.len(),
        methods.len(),
        paths.len(),
        hosts.len(),
        ports.len(),
        snis.len(),
    ];
    sizes.extend(headers.iter().map(|(_, l)| l.len()));
    let space: u128 = sizes.iter().map(|n| *n as u128).product();
    if space > u128::from(opts.max_requests) && inconclusive.is_none() {
        inconclusive = Some(format!(
            "{space} combinations of value classes exceed the cap of {}: only the first {} were evaluated",
            opts.max_requests, opts.max_requests
        ));
    }

    // Odometer over all dimensions.
    if sizes.contains(&0) {
        return Ok(DiffReport {
            differences: Vec::new(),
            total_differences: 0,
            searched: 0,
            classes: class_counts,
            inconclusive,
        });
    }
    let mut idx = vec![0usize; sizes.len()];
    let mut report = DiffReport {
        differences: Vec::new(),
        total_differences: 0,
        searched: 0,
        classes: class_counts,
        inconclusive,
    };
    let peer_objs: Vec<Peer> = peers
        .iter()
        .map(|id| match id {
            Some(id) => Peer::from_uri_san(true, Some(id)),
            None => Peer::from_uri_san(true, None),
        })
        .collect();
    let mut hbuf: Vec<(&str, &str)> = Vec::with_capacity(headers.len());
    loop {
        if report.searched >= opts.max_requests {
            break;
        }
        report.searched += 1;
        hbuf.clear();
        for (k, (name, list)) in headers.iter().enumerate() {
            if let Some(v) = &list[idx[6 + k]] {
                hbuf.push((name.as_str(), v.as_str()));
            }
        }
        let req = Request {
            peer: peer_objs[idx[0]].clone(),
            method: methods[idx[1]].as_deref(),
            path: paths[idx[2]].as_deref(),
            host: hosts[idx[3]].as_deref(),
            port: ports[idx[4]],
            headers: &hbuf,
            sni: snis[idx[5]].as_deref(),
        };
        let (da, db) = (a.evaluate(&req, mode), b.evaluate(&req, mode));
        if outcome(&da) != outcome(&db) {
            report.total_differences += 1;
            if report.differences.len() < opts.max_differences {
                let line = RequestLine {
                    peer: peers[idx[0]].clone(),
                    mtls: None,
                    method: methods[idx[1]].clone(),
                    path: paths[idx[2]].clone(),
                    host: hosts[idx[3]].clone(),
                    port: ports[idx[4]],
                    headers: (!hbuf.is_empty()).then(|| {
                        hbuf.iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect()
                    }),
                    sni: snis[idx[5]].clone(),
                };
                // Re-decide through the `eval` request format: what is printed is what
                // `policy eval` answers.
                let spec = RequestSpec::new(line.clone(), mode);
                let (oa, ob) = (decide(&a, &spec, mode), decide(&b, &spec, mode));
                if outcome_out(&oa) != outcome_out(&ob) {
                    report.differences.push(Difference {
                        request: line,
                        old: oa,
                        new: ob,
                    });
                }
            }
        }
        // Next combination.
        let mut d = 0;
        loop {
            if d == sizes.len() {
                return Ok(report);
            }
            idx[d] += 1;
            if idx[d] < sizes[d] {
                break;
            }
            idx[d] = 0;
            d += 1;
        }
    }
    Ok(report)
}

fn outcome(d: &super::Decision<'_>) -> (bool, bool) {
    let e = d.enforced.allow;
    (e, d.dry_run.as_ref().map_or(e, |v| v.allow))
}

fn outcome_out(d: &DecisionOut) -> (bool, bool) {
    let e = d.enforced.decision == "allow";
    (e, d.dry_run.as_ref().map_or(e, |v| v.decision == "allow"))
}

/// A string attribute of the request: where its candidates come from and how a request
/// carries it.
struct StringAttr<'a> {
    name: &'static str,
    /// Some document reads it.
    read: bool,
    values: &'a [String],
    /// Compared case-insensitively.
    fold: bool,
    outside: &'static [&'static str],
    probes: &'a [CompiledPolicy],
    set: for<'r> fn(&mut Request<'r>, &'r str),
}

/// The classes of a string attribute: `[None]` when no document reads it; and how many
/// candidates there were before the cap.
fn string_classes(attr: &StringAttr<'_>, cap: usize) -> (Vec<Option<String>>, usize) {
    if !attr.read {
        return (vec![None], 0);
    }
    let c = completions(attr.values, attr.fold, attr.outside, cap);
    let n = c.len();
    let c: Vec<String> = c.into_iter().take(cap).collect();
    let kept = classes(c, attr.probes, |p, v| {
        let mut req = Request::new(anon());
        (attr.set)(&mut req, v);
        allowed(p, &req)
    });
    (kept.into_iter().map(Some).collect(), n)
}
