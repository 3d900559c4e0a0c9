//! Per-request evaluation. Allocation-free in the common case: the peer's principal is
//! borrowed from the parsed ID; for a peer of a trust-domain alias the canonical principal is
//! assembled once per request in a stack buffer (IDs up to [`INLINE`] bytes); host and SNI are
//! lower-cased only when they contain upper-case letters.

use std::borrow::Cow;

use super::compile::{
    CompiledCondition, CompiledOperation, CompiledPolicyEntry, CompiledRule, CompiledSource, Cond,
    IdMatcher, Index,
};
use super::index::{PortSet, StrMatcher};
use super::{Decision, EvalMode, NoIdentity, Peer, Request, Verdict};

/// Principal strings up to this length are built on the stack.
const INLINE: usize = 256;

/// A principal string (`td/path`) assembled without allocating when short; only needed for
/// a peer of a trust-domain alias (its canonical form). The buffer is not even zeroed unless
/// used.
pub(crate) struct IdBuf {
    inline: Option<[u8; INLINE]>,
    heap: String,
}

impl IdBuf {
    pub(crate) fn new() -> Self {
        IdBuf {
            inline: None,
            heap: String::new(),
        }
    }

    /// `td` + `/`-leading `path`, as one string.
    pub(crate) fn join<'b>(&'b mut self, td: &str, path: &str) -> &'b str {
        let len = td.len() + path.len();
        if len <= INLINE {
            let buf = self.inline.get_or_insert([0; INLINE]);
            buf[..td.len()].copy_from_slice(td.as_bytes());
            buf[td.len()..len].copy_from_slice(path.as_bytes());
            // Both parts are UTF-8 and joined at a char boundary.
            std::str::from_utf8(&buf[..len]).unwrap_or("")
        } else {
            self.heap.clear();
            self.heap.push_str(td);
            self.heap.push_str(path);
            &self.heap
        }
    }
}

/// The peer identity as the matchers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdView<'r> {
    /// `td/path` as presented.
    pub(crate) presented: &'r str,
    /// `local-td/path` when the peer's trust domain is the local one or an alias, else
    /// the presented string.
    pub(crate) canonical: &'r str,
    pub(crate) td: &'r str,
    pub(crate) canonical_td: &'r str,
    pub(crate) namespace: Option<&'r str>,
}

/// The request attributes, prepared once per request.
#[derive(Debug)]
pub(crate) struct Ctx<'r> {
    pub(crate) network: bool,
    pub(crate) id: Option<IdView<'r>>,
    pub(crate) method: Option<&'r str>,
    /// Without query string and fragment.
    pub(crate) path: Option<&'r str>,
    pub(crate) host: Option<Cow<'r, str>>,
    pub(crate) port: Option<u16>,
    pub(crate) sni: Option<Cow<'r, str>>,
    pub(crate) headers: &'r [(&'r str, &'r str)],
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

impl Index {
    pub(crate) fn in_class(&self, td: &str) -> bool {
        *self.local_td == *td || self.aliases.iter().any(|a| **a == *td)
    }

    /// Prepares the per-request context. `buf` holds the canonical principal of an alias peer.
    pub(crate) fn ctx<'r>(
        &'r self,
        req: &'r Request<'r>,
        mode: EvalMode,
        buf: &'r mut IdBuf,
    ) -> Ctx<'r> {
        let id = match &req.peer {
            Peer::Identity(id) => {
                let td = id.trust_domain().as_str();
                let presented = id.principal_str();
                let (canonical, canonical_td) = if td != &*self.local_td && self.in_class(td) {
                    (buf.join(&self.local_td, id.path()), &*self.local_td)
                } else {
                    (presented, td)
                };
                Some(IdView {
                    presented,
                    canonical,
                    td,
                    canonical_td,
                    namespace: id.namespace(),
                })
            }
            Peer::None(_) => None,
        };
        Ctx {
            network: mode == EvalMode::Network,
            id,
            method: req.method,
            path: req.path.map(|p| p.split(['?', '#']).next().unwrap_or(p)),
            host: req
                .host
                .map(|h| crate::http::normalize_host(h).unwrap_or_else(|_| lower(h))),
            port: req.port,
            sni: req.sni.map(lower),
            headers: req.headers,
        }
    }
}

#[inline]
fn opt_matches(m: &StrMatcher, v: Option<&str>) -> bool {
    v.is_some_and(|v| m.matches(v))
}

/// A positive field: absent field passes; present field needs a match.
#[inline]
fn pos<M>(field: &Option<M>, f: impl FnOnce(&M) -> bool) -> bool {
    field.as_ref().is_none_or(f)
}

/// A `not*` field: absent field passes; present field needs no match.
#[inline]
fn neg<M>(field: &Option<M>, f: impl FnOnce(&M) -> bool) -> bool {
    field.as_ref().is_none_or(|m| !f(m))
}

pub(crate) fn principal_matches(m: &IdMatcher, ctx: &Ctx<'_>) -> bool {
    ctx.id
        .is_some_and(|id| m.matches(id.canonical, id.presented))
}

pub(crate) fn namespace_matches(m: &StrMatcher, ctx: &Ctx<'_>) -> bool {
    opt_matches(m, ctx.id.and_then(|id| id.namespace))
}

pub(crate) fn trust_domain_matches(m: &IdMatcher, ctx: &Ctx<'_>) -> bool {
    ctx.id.is_some_and(|id| m.matches(id.canonical_td, id.td))
}

pub(crate) fn port_matches(p: &PortSet, ctx: &Ctx<'_>) -> bool {
    ctx.port.is_some_and(|port| p.contains(port))
}

pub(crate) fn header_matches(name: &str, m: &StrMatcher, ctx: &Ctx<'_>) -> bool {
    ctx.headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case(name) && m.matches(v))
}

impl CompiledSource {
    pub(crate) fn matches(&self, ctx: &Ctx<'_>) -> bool {
        pos(&self.principals, |m| principal_matches(m, ctx))
            && neg(&self.not_principals, |m| principal_matches(m, ctx))
            && pos(&self.namespaces, |m| namespace_matches(m, ctx))
            && neg(&self.not_namespaces, |m| namespace_matches(m, ctx))
            && pos(&self.trust_domains, |m| trust_domain_matches(m, ctx))
            && neg(&self.not_trust_domains, |m| trust_domain_matches(m, ctx))
    }
}

impl CompiledOperation {
    /// In network mode (only reached for DENY rules) the HTTP fields are dropped.
    pub(crate) fn matches(&self, ctx: &Ctx<'_>) -> bool {
        let http = ctx.network
            || (pos(&self.methods, |m| opt_matches(m, ctx.method))
                && neg(&self.not_methods, |m| opt_matches(m, ctx.method))
                && pos(&self.paths, |m| opt_matches(m, ctx.path))
                && neg(&self.not_paths, |m| opt_matches(m, ctx.path))
                && pos(&self.hosts, |m| opt_matches(m, ctx.host.as_deref()))
                && neg(&self.not_hosts, |m| opt_matches(m, ctx.host.as_deref())));
        http && pos(&self.ports, |p| port_matches(p, ctx))
            && neg(&self.not_ports, |p| port_matches(p, ctx))
    }
}

fn cond<M>(c: &Cond<M>, f: impl Fn(&M) -> bool) -> bool {
    pos(&c.values, &f) && neg(&c.not_values, &f)
}

impl CompiledCondition {
    pub(crate) fn matches(&self, ctx: &Ctx<'_>) -> bool {
        match self {
            CompiledCondition::Header(name, c) => {
                ctx.network || cond(c, |m| header_matches(name, m, ctx))
            }
            CompiledCondition::SourcePrincipal(c) => cond(c, |m| principal_matches(m, ctx)),
            CompiledCondition::SourceNamespace(c) => cond(c, |m| namespace_matches(m, ctx)),
            CompiledCondition::DestinationPort(c) => cond(c, |p| port_matches(p, ctx)),
            CompiledCondition::ConnectionSni(c) => cond(c, |m| opt_matches(m, ctx.sni.as_deref())),
        }
    }
}

impl CompiledRule {
    /// An ALLOW rule that needs HTTP fields never matches in network mode; DENY rules drop
    /// those fields instead (see the operation and condition matchers).
    pub(crate) fn matches(&self, ctx: &Ctx<'_>, allow: bool) -> bool {
        if ctx.network && allow && self.needs_http {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(ctx)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(ctx)))
            && self.when.iter().all(|c| c.matches(ctx))
    }
}

impl CompiledPolicyEntry {
    pub(crate) fn first_match(&self, ctx: &Ctx<'_>, allow: bool) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(ctx, allow))
    }
}

/// First matching policy among `list`: (enforced only, all including dry-run).
type Hit<'p> = Option<(&'p CompiledPolicyEntry, usize)>;

fn scan<'p>(
    list: &'p [CompiledPolicyEntry],
    ctx: &Ctx<'_>,
    allow: bool,
    want_enforced: bool,
    want_all: bool,
) -> (Hit<'p>, Hit<'p>) {
    let mut enforced: Hit<'p> = None;
    let mut all: Hit<'p> = None;
    for p in list {
        let need_enforced = want_enforced && enforced.is_none() && !p.dry_run;
        let need_all = want_all && all.is_none();
        if !need_enforced && !need_all {
            if (!want_enforced || enforced.is_some()) && (!want_all || all.is_some()) {
                break;
            }
            continue;
        }
        if let Some(rule) = p.first_match(ctx, allow) {
            if need_all {
                all = Some((p, rule));
            }
            if need_enforced {
                enforced = Some((p, rule));
            }
        }
    }
    (enforced, all)
}

/// The decision outcomes; with the peer state they select the reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    DenyMatched,
    AllowMatched,
    NoAllowMatched,
    NoAllowPolicy,
}

macro_rules! reasons {
    ($base:literal) => {
        [
            $base,
            concat!($base, " (no peer identity: connection is not mTLS)"),
            concat!(
                $base,
                " (no peer identity: peer certificate has no URI SAN)"
            ),
            concat!(
                $base,
                " (no peer identity: URI SAN is not a valid SPIFFE ID)"
            ),
            concat!(
                $base,
                " (no peer identity: peer certificate is not a valid X509-SVID)"
            ),
            concat!($base, " (no peer identity: peer identity unavailable)"),
        ]
    };
}

const DENY_MATCHED: [&str; 6] = reasons!("matched DENY policy");
const ALLOW_MATCHED: [&str; 6] = reasons!("matched ALLOW policy");
const NO_ALLOW_MATCHED: [&str; 6] = reasons!("no ALLOW policy matched");
const NO_ALLOW_POLICY: [&str; 6] = reasons!("no ALLOW policy: allowed by default");

pub(crate) fn reason(outcome: Outcome, peer: &Peer) -> &'static str {
    let i = match peer {
        Peer::Identity(_) => 0,
        Peer::None(NoIdentity::NotMtls) => 1,
        Peer::None(NoIdentity::NoUriSan) => 2,
        Peer::None(NoIdentity::InvalidSpiffeId) => 3,
        Peer::None(NoIdentity::InvalidSvid) => 4,
        Peer::None(NoIdentity::Unavailable) => 5,
    };
    let table = match outcome {
        Outcome::DenyMatched => &DENY_MATCHED,
        Outcome::AllowMatched => &ALLOW_MATCHED,
        Outcome::NoAllowMatched => &NO_ALLOW_MATCHED,
        Outcome::NoAllowPolicy => &NO_ALLOW_POLICY,
    };
    table[i]
}

fn verdict<'p>(deny: Hit<'p>, allow: Hit<'p>, has_allow: bool, peer: &Peer) -> Verdict<'p> {
    let (allowed, hit, outcome) = if let Some(h) = deny {
        (false, Some(h), Outcome::DenyMatched)
    } else if !has_allow {
        (true, None, Outcome::NoAllowPolicy)
    } else if let Some(h) = allow {
        (true, Some(h), Outcome::AllowMatched)
    } else {
        (false, None, Outcome::NoAllowMatched)
    };
    Verdict {
        allow: allowed,
        policy: hit.map(|(p, _)| &*p.name),
        rule: hit.map(|(_, r)| r),
        reason: reason(outcome, peer),
    }
}

impl Index {
    pub(crate) fn decide<'p>(&'p self, ctx: &Ctx<'_>, peer: &Peer) -> Decision<'p> {
        let want_all = self.has_dry_run;
        let (deny_enf, deny_all) = scan(&self.deny, ctx, false, true, want_all);
        let (allow_enf, allow_all) = scan(
            &self.allow,
            ctx,
            true,
            deny_enf.is_none() && self.has_enforced_allow,
            want_all && deny_all.is_none(),
        );
        let enforced = verdict(deny_enf, allow_enf, self.has_enforced_allow, peer);
        let dry_run = want_all.then(|| verdict(deny_all, allow_all, !self.allow.is_empty(), peer));
        Decision { enforced, dry_run }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CompiledPolicy, EvalMode, Peer, Request};
    use super::IdBuf;

    #[test]
    fn id_buf_inline_and_heap() {
        let mut b = IdBuf::new();
        assert_eq!(b.join("td", "/a/b"), "td/a/b");
        let long = format!("/{}", "x".repeat(400));
        assert_eq!(b.join("td", &long), format!("td{long}"));
        assert_eq!(b.join("t", "/y"), "t/y");
    }

    #[test]
    fn ids_longer_than_the_inline_buffer_match_too() {
        let seg = "s".repeat(300);
        let doc = format!(
            "trustDomain: new.td\ntrustDomainAliases: [old.td]\npolicies:\n  - name: p\n    rules: [{{from: [{{source: {{principals: [new.td/ns/a/sa/{seg}]}}}}]}}]\n"
        );
        let policy = CompiledPolicy::from_yaml(&doc).unwrap();
        for td in ["new.td", "old.td"] {
            let peer = Peer::from_uri_san(true, Some(&format!("spiffe://{td}/ns/a/sa/{seg}")));
            let req = Request::http(peer, "GET", "/");
            assert!(policy.evaluate(&req, EvalMode::Http).allowed(), "{td}");
        }
        let peer = Peer::from_uri_san(true, Some(&format!("spiffe://new.td/ns/a/sa/{seg}x")));
        assert!(!policy
            .evaluate(&Request::http(peer, "GET", "/"), EvalMode::Http)
            .allowed());
    }
}
