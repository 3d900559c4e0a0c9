//! A human-readable trace of an evaluation: every policy and rule, whether it matched and,
//! if not, the first field that failed. Not on the request path: it allocates freely.

use super::compile::{
    CompiledCondition, CompiledOperation, CompiledPolicyEntry, CompiledRule, CompiledSource, Cond,
    IdMatcher, Index,
};
use super::evaluate::{
    header_matches, namespace_matches, port_matches, principal_matches, trust_domain_matches, Ctx,
};
use super::index::StrMatcher;
use super::{Decision, EvalMode, Peer, Request, Verdict};

fn peer_text(ctx: &Ctx<'_>, peer: &Peer) -> String {
    match (&ctx.id, peer) {
        (Some(id), _) => format!("peer {:?}", id.presented),
        (None, Peer::None(why)) => format!("no peer identity ({})", why.describe()),
        (None, Peer::Identity(_)) => "peer".into(),
    }
}

fn ns_text(ctx: &Ctx<'_>) -> String {
    match ctx.id {
        None => "no peer identity".into(),
        Some(id) => match id.namespace {
            Some(ns) => format!("namespace {ns:?}"),
            None => format!("peer {:?} has no /ns/<namespace>", id.presented),
        },
    }
}

fn td_text(ctx: &Ctx<'_>) -> String {
    match ctx.id {
        None => "no peer identity".into(),
        Some(id) => format!("trust domain {:?}", id.td),
    }
}

fn opt_text(name: &str, v: Option<&str>) -> String {
    match v {
        Some(v) => format!("{name} {v:?}"),
        None => format!("no {name}"),
    }
}

/// The value a field is checked against, as text (made only to explain a miss).
type Text<'a> = dyn Fn() -> String + 'a;

/// The first failing field of a source, if any.
fn source_miss(s: &CompiledSource, ctx: &Ctx<'_>, peer: &Peer) -> Option<String> {
    let principal = |m: &Option<IdMatcher>| m.as_ref().map(|m| principal_matches(m, ctx));
    let namespace = |m: &Option<StrMatcher>| m.as_ref().map(|m| namespace_matches(m, ctx));
    let trust_domain = |m: &Option<IdMatcher>| m.as_ref().map(|m| trust_domain_matches(m, ctx));
    let (peer, ns, td) = (|| peer_text(ctx, peer), || ns_text(ctx), || td_text(ctx));
    // (field, negated, whether the value is in the field when it is set, the value as text)
    let fields: [(&str, bool, Option<bool>, &Text<'_>); 6] = [
        ("principals", false, principal(&s.principals), &peer),
        ("notPrincipals", true, principal(&s.not_principals), &peer),
        ("namespaces", false, namespace(&s.namespaces), &ns),
        ("notNamespaces", true, namespace(&s.not_namespaces), &ns),
        ("trustDomains", false, trust_domain(&s.trust_domains), &td),
        (
            "notTrustDomains",
            true,
            trust_domain(&s.not_trust_domains),
            &td,
        ),
    ];
    let (field, negated, _, text) = fields
        .into_iter()
        .find(|(_, negated, hit, _)| *hit == Some(*negated))?;
    Some(miss_text(field, negated, &text()))
}

/// A failing field: the value (`text`) matches none of its entries, or, negated, is listed.
fn miss_text(field: &str, negated: bool, text: &str) -> String {
    let verb = if negated { "is listed" } else { "matches none" };
    format!("{field}: {text} {verb}")
}

fn operation_miss(o: &CompiledOperation, ctx: &Ctx<'_>) -> Option<String> {
    if !ctx.network {
        let fields = [
            ("methods", &o.methods, false, ctx.method, "method"),
            ("notMethods", &o.not_methods, true, ctx.method, "method"),
            ("paths", &o.paths, false, ctx.path, "path"),
            ("notPaths", &o.not_paths, true, ctx.path, "path"),
            ("hosts", &o.hosts, false, ctx.host.as_deref(), "host"),
            ("notHosts", &o.not_hosts, true, ctx.host.as_deref(), "host"),
        ];
        for (field, m, negated, value, what) in fields {
            let Some(m) = m else { continue };
            let hit = value.is_some_and(|v| m.matches(v));
            if hit == negated {
                return Some(miss_text(field, negated, &opt_text(what, value)));
            }
        }
    }
    let port = ctx.port.map(|p| p.to_string());
    pair_miss(
        ["ports", "notPorts"],
        [&o.ports, &o.not_ports],
        |p| port_matches(p, ctx),
        || opt_text("port", port.as_deref()),
    )
}

fn cond_miss<M>(c: &Cond<M>, f: impl Fn(&M) -> bool, what: &str) -> Option<String> {
    pair_miss(
        ["values", "notValues"],
        [&c.values, &c.not_values],
        f,
        || what.to_owned(),
    )
}

/// The miss of a field and its negation, each set or not.
fn pair_miss<M>(
    [field, not_field]: [&str; 2],
    [m, not_m]: [&Option<M>; 2],
    matches: impl Fn(&M) -> bool,
    text: impl Fn() -> String,
) -> Option<String> {
    if m.as_ref().is_some_and(|m| !matches(m)) {
        return Some(miss_text(field, false, &text()));
    }
    if not_m.as_ref().is_some_and(matches) {
        return Some(miss_text(not_field, true, &text()));
    }
    None
}

fn condition_miss(c: &CompiledCondition, ctx: &Ctx<'_>, peer: &Peer) -> Option<String> {
    match c {
        CompiledCondition::Header(name, cond) => {
            if ctx.network {
                return None;
            }
            let value = ctx
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v);
            cond_miss(
                cond,
                |m| header_matches(name, m, ctx),
                &opt_text(&format!("header {name}"), value),
            )
        }
        CompiledCondition::SourcePrincipal(cond) => {
            cond_miss(cond, |m| principal_matches(m, ctx), &peer_text(ctx, peer))
        }
        CompiledCondition::SourceNamespace(cond) => {
            cond_miss(cond, |m| namespace_matches(m, ctx), &ns_text(ctx))
        }
        CompiledCondition::DestinationPort(cond) => {
            let port = ctx.port.map(|p| p.to_string());
            cond_miss(
                cond,
                |p| port_matches(p, ctx),
                &opt_text("port", port.as_deref()),
            )
        }
        CompiledCondition::ConnectionSni(cond) => cond_miss(
            cond,
            |m| ctx.sni.as_deref().is_some_and(|v| m.matches(v)),
            &opt_text("SNI", ctx.sni.as_deref()),
        ),
    }
}

fn condition_key(c: &CompiledCondition) -> String {
    match c {
        CompiledCondition::Header(name, _) => format!("request.headers[{name}]"),
        CompiledCondition::SourcePrincipal(_) => "source.principal".into(),
        CompiledCondition::SourceNamespace(_) => "source.namespace".into(),
        CompiledCondition::DestinationPort(_) => "destination.port".into(),
        CompiledCondition::ConnectionSni(_) => "connection.sni".into(),
    }
}

/// Why none of a non-empty `from` / `to` list matches: each entry's miss, as
/// `from[k].source.<miss>`, joined by "; " (`None` when the list is empty or an entry matches).
fn list_miss<T>(
    items: &[T],
    [list, item]: [&str; 2],
    matches: impl Fn(&T) -> bool,
    miss: impl Fn(&T) -> Option<String>,
) -> Option<String> {
    if items.is_empty() || items.iter().any(matches) {
        return None;
    }
    let why: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let miss = miss(t).unwrap_or_else(|| "?".into());
            format!("{list}[{k}].{item}.{miss}")
        })
        .collect();
    Some(why.join("; "))
}

/// Why a rule does not match (`None`: it matches).
fn rule_miss(rule: &CompiledRule, ctx: &Ctx<'_>, peer: &Peer, allow: bool) -> Option<String> {
    if ctx.network && allow && rule.needs_http {
        return Some(
            "needs HTTP fields (methods, paths, hosts or request headers), never matches in network mode"
                .into(),
        );
    }
    let from = list_miss(
        &rule.from,
        ["from", "source"],
        |s| s.matches(ctx),
        |s| source_miss(s, ctx, peer),
    );
    if from.is_some() {
        return from;
    }
    let to = list_miss(
        &rule.to,
        ["to", "operation"],
        |o| o.matches(ctx),
        |o| operation_miss(o, ctx),
    );
    if to.is_some() {
        return to;
    }
    for (k, c) in rule.when.iter().enumerate() {
        if !c.matches(ctx) {
            let miss = condition_miss(c, ctx, peer).unwrap_or_else(|| "?".into());
            return Some(format!("when[{k}] ({}): {miss}", condition_key(c)));
        }
    }
    None
}

fn policy_lines(out: &mut Vec<String>, p: &CompiledPolicyEntry, ctx: &Ctx<'_>, peer: &Peer) {
    let allow = p.action == super::Action::Allow;
    let dry = if p.dry_run { ", dry-run" } else { "" };
    out.push(format!("policy {:?} ({}{dry}):", p.name, p.action.as_str()));
    if p.rules.is_empty() {
        out.push("  no rules: matches nothing".into());
    }
    for (i, r) in p.rules.iter().enumerate() {
        match rule_miss(r, ctx, peer, allow) {
            None => {
                let note = if ctx.network && !allow && r.needs_http {
                    " (HTTP-only conditions dropped in network mode)"
                } else {
                    ""
                };
                out.push(format!("  rule {i}: MATCH{note}"));
            }
            Some(why) => out.push(format!("  rule {i}: no match: {why}")),
        }
    }
}

fn verdict_line(label: &str, v: &Verdict<'_>) -> String {
    let what = if v.allow { "ALLOW" } else { "DENY" };
    match (v.policy, v.rule) {
        (Some(p), Some(r)) => format!("{label}: {what} by policy {p:?} rule {r}: {}", v.reason),
        _ => format!("{label}: {what}: {}", v.reason),
    }
}

pub(crate) fn explain(index: &Index, req: &Request<'_>, mode: EvalMode) -> Vec<String> {
    let mut buf = super::evaluate::IdBuf::new();
    let ctx = index.ctx(req, mode, &mut buf);
    let mut out = Vec::new();
    let mode_text = match mode {
        EvalMode::Http => "HTTP",
        EvalMode::Network => "network",
    };
    let mut head = format!("request ({mode_text}): {}", peer_text(&ctx, &req.peer));
    if let Some(id) = ctx.id {
        if id.canonical != id.presented {
            head.push_str(&format!(
                " (trust domain alias of {:?}: also matched as {:?})",
                &*index.local_td, id.canonical
            ));
        }
    }
    out.push(head);
    if index.deny.is_empty() && index.allow.is_empty() {
        out.push("no policies".into());
    }
    for p in index.deny.iter().chain(&index.allow) {
        policy_lines(&mut out, p, &ctx, &req.peer);
    }
    let Decision { enforced, dry_run } = index.decide(&ctx, &req.peer);
    out.push(verdict_line("decision", &enforced));
    if let Some(d) = dry_run {
        out.push(verdict_line("dry-run decision", &d));
    }
    out
}
