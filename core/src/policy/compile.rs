//! Compiling a validated document into the lookup index evaluated per request.
//!
//! Trust-domain aliases are handled by canonicalisation instead of by multiplying entries:
//! the local trust domain and its aliases form one class. At compile time a principal (exact
//! or a prefix that spells out the whole trust domain) written with a trust domain of the
//! class, or with `cluster.local`, is rewritten to the local trust domain; per request, a peer
//! whose trust domain is in the class is looked up under the local trust domain. Patterns that
//! do not spell out a whole trust domain (`*suffix`, `clust*`) are matched against the peer's
//! ID as presented. The allowlist thus stays one entry per written value whatever the number
//! of aliases.

use std::sync::Arc;

use crate::spiffe_id::TrustDomain;

use super::index::{PortSet, StrMatcher, StrMatcherBuilder};
use super::model::{Action, Mode, PolicyDocument, Source};
use super::pattern::{principal_body, Pattern};
use super::validate::{parse_when_key, validate, WhenKey};
use super::PolicyError;

/// Istio's name for "the local trust domain", accepted in principals whatever the local one is.
pub(crate) const CLUSTER_LOCAL: &str = "cluster.local";

/// Matches an identity string (principal or trust domain) in its canonical form (exact values
/// and whole-trust-domain prefixes) or in its presented form (other patterns).
#[derive(Debug, Clone)]
pub(crate) struct IdMatcher {
    pub(crate) canonical: StrMatcher,
    pub(crate) presented: StrMatcher,
}

impl IdMatcher {
    fn finish(&mut self) {
        self.canonical.finish();
        self.presented.finish();
    }

    #[inline]
    pub(crate) fn matches(&self, canonical: &str, presented: &str) -> bool {
        self.canonical.matches(canonical) || self.presented.matches(presented)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledSource {
    pub(crate) principals: Option<IdMatcher>,
    pub(crate) not_principals: Option<IdMatcher>,
    pub(crate) namespaces: Option<StrMatcher>,
    pub(crate) not_namespaces: Option<StrMatcher>,
    pub(crate) trust_domains: Option<IdMatcher>,
    pub(crate) not_trust_domains: Option<IdMatcher>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledOperation {
    pub(crate) methods: Option<StrMatcher>,
    pub(crate) not_methods: Option<StrMatcher>,
    pub(crate) paths: Option<StrMatcher>,
    pub(crate) not_paths: Option<StrMatcher>,
    /// Lower-cased patterns; the request host is lower-cased before lookup.
    pub(crate) hosts: Option<StrMatcher>,
    pub(crate) not_hosts: Option<StrMatcher>,
    pub(crate) ports: Option<PortSet>,
    pub(crate) not_ports: Option<PortSet>,
}

/// `values` must match (when given) and `notValues` must not (when given).
#[derive(Debug, Clone)]
pub(crate) struct Cond<M> {
    pub(crate) values: Option<M>,
    pub(crate) not_values: Option<M>,
}

#[derive(Debug, Clone)]
pub(crate) enum CompiledCondition {
    /// Header name lower-cased.
    Header(Box<str>, Cond<StrMatcher>),
    SourcePrincipal(Box<Cond<IdMatcher>>),
    SourceNamespace(Cond<StrMatcher>),
    DestinationPort(Cond<PortSet>),
    /// Lower-cased patterns.
    ConnectionSni(Cond<StrMatcher>),
}

impl CompiledCondition {
    pub(crate) fn is_http(&self) -> bool {
        matches!(self, CompiledCondition::Header(..))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) from: Vec<CompiledSource>,
    pub(crate) to: Vec<CompiledOperation>,
    pub(crate) when: Vec<CompiledCondition>,
    /// The rule uses an HTTP-only field (methods, paths, hosts, request headers).
    pub(crate) needs_http: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicyEntry {
    pub(crate) name: Box<str>,
    pub(crate) action: Action,
    /// Per-policy `dryRun`, or the document is in `mode: dryRun`.
    pub(crate) dry_run: bool,
    pub(crate) rules: Vec<CompiledRule>,
}

/// Everything [`super::CompiledPolicy`] holds.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub(crate) local_td: Box<str>,
    /// Aliases of the local trust domain (without the local one).
    pub(crate) aliases: Vec<Box<str>>,
    /// DENY policies, document order.
    pub(crate) deny: Vec<CompiledPolicyEntry>,
    /// ALLOW policies, document order.
    pub(crate) allow: Vec<CompiledPolicyEntry>,
    pub(crate) has_dry_run: bool,
    pub(crate) has_enforced_allow: bool,
    pub(crate) header_names: Vec<String>,
    /// The request attributes any rule reads (see [`super::Attributes`]).
    pub(crate) attributes: super::Attributes,
}

/// Finishes every matcher present.
fn finish_all<'m>(matchers: impl IntoIterator<Item = &'m mut Option<StrMatcher>>) {
    matchers.into_iter().flatten().for_each(StrMatcher::finish);
}

impl CompiledSource {
    fn finish(&mut self) {
        for m in [
            &mut self.principals,
            &mut self.not_principals,
            &mut self.trust_domains,
            &mut self.not_trust_domains,
        ]
        .into_iter()
        .flatten()
        {
            m.finish();
        }
        finish_all([&mut self.namespaces, &mut self.not_namespaces]);
    }
}

impl<M> Cond<M> {
    fn finish(&mut self, f: fn(&mut M)) {
        self.values
            .iter_mut()
            .chain(&mut self.not_values)
            .for_each(f);
    }
}

impl CompiledOperation {
    fn finish(&mut self) {
        finish_all([
            &mut self.methods,
            &mut self.not_methods,
            &mut self.paths,
            &mut self.not_paths,
            &mut self.hosts,
            &mut self.not_hosts,
        ]);
    }

    fn add_attributes(&self, a: &mut super::Attributes) {
        a.method |= self.methods.is_some() || self.not_methods.is_some();
        a.path |= self.paths.is_some() || self.not_paths.is_some();
        a.host |= self.hosts.is_some() || self.not_hosts.is_some();
        a.port |= self.ports.is_some() || self.not_ports.is_some();
    }
}

impl CompiledCondition {
    fn finish(&mut self) {
        match self {
            CompiledCondition::Header(_, c)
            | CompiledCondition::SourceNamespace(c)
            | CompiledCondition::ConnectionSni(c) => c.finish(StrMatcher::finish),
            CompiledCondition::SourcePrincipal(c) => c.finish(IdMatcher::finish),
            CompiledCondition::DestinationPort(_) => {}
        }
    }

    fn add_attributes(&self, a: &mut super::Attributes) {
        match self {
            CompiledCondition::Header(..) => a.headers = true,
            CompiledCondition::DestinationPort(_) => a.port = true,
            CompiledCondition::ConnectionSni(_) => a.sni = true,
            CompiledCondition::SourcePrincipal(_) | CompiledCondition::SourceNamespace(_) => {}
        }
    }
}

/// Every request attribute a matcher of `policies` reads. Derived from the compiled
/// matchers themselves (the fields [`super::evaluate`] consults), so it cannot drift from
/// what evaluation uses.
fn attributes<'a>(policies: impl Iterator<Item = &'a CompiledPolicyEntry>) -> super::Attributes {
    let mut a = super::Attributes::default();
    for rule in policies.flat_map(|p| &p.rules) {
        for op in &rule.to {
            op.add_attributes(&mut a);
        }
        for cond in &rule.when {
            cond.add_attributes(&mut a);
        }
    }
    a
}

struct Compiler<'d> {
    /// The configuration text the document's strings borrow from (or empty): exact values
    /// found in it are kept as spans of it (see [`super::index::ArenaSet`]).
    text: Arc<String>,
    local: &'d str,
    aliases: Vec<&'d str>,
    header_names: Vec<String>,
}

impl Compiler<'_> {
    /// Is `td` the local trust domain or one of its aliases (as seen on a peer)?
    fn in_class(&self, td: &str) -> bool {
        td == self.local || self.aliases.contains(&td)
    }

    /// A principal body (`<td>/<path>`) in canonical form, as parts to concatenate: the
    /// trust domain of the local class (or `cluster.local`) written as the local one. `None`
    /// when the body has no `/` (it cannot spell out a whole trust domain).
    fn canonical<'s>(&'s self, body: &'s str) -> Option<[&'s str; 3]> {
        let (td, path) = body.split_once('/')?;
        Some(
            if td != self.local && (self.in_class(td) || td == CLUSTER_LOCAL) {
                [self.local, "/", path]
            } else {
                [body, "", ""]
            },
        )
    }

    /// Adds a principal pattern to an [`IdMatcher`] under construction.
    fn principal(
        &self,
        value: &str,
        canonical: &mut StrMatcherBuilder,
        presented: &mut StrMatcherBuilder,
    ) {
        let Ok(pattern) = Pattern::parse(value) else {
            return;
        };
        let joined = |parts: [&str; 3]| -> Box<str> { parts.concat().into() };
        match pattern {
            Pattern::Any => presented.any = true,
            Pattern::Exact(s) => match self.canonical(principal_body(s)) {
                Some(c) => canonical.exact.push(&c),
                None => presented.exact.push(&[principal_body(s)]),
            },
            Pattern::Prefix(s) => match self.canonical(principal_body(s)) {
                Some(c) => canonical.prefix.push(joined(c)),
                None => presented.prefix.push(principal_body(s).into()),
            },
            Pattern::Suffix(s) => presented.suffix.push(s.into()),
        }
    }

    fn principals<S: AsRef<str>>(&self, values: &[S]) -> Option<IdMatcher> {
        if values.is_empty() {
            return None;
        }
        let mut canonical = StrMatcherBuilder::new(&self.text, 0);
        let mut presented = StrMatcherBuilder::new(&self.text, 0);
        // The exact values' sizes first, so their buffers are allocated once at their final
        // size.
        let (mut count, mut bytes) = (0, 0);
        for v in values {
            if let Ok(Pattern::Exact(s)) = Pattern::parse(v.as_ref()) {
                if let Some(parts) = self.canonical(principal_body(s)) {
                    count += 1;
                    bytes += canonical.exact.own_bytes(&parts);
                }
            }
        }
        canonical.exact.reserve_exact(count, bytes);
        for v in values {
            self.principal(v.as_ref(), &mut canonical, &mut presented);
        }
        Some(IdMatcher {
            canonical: canonical.build(),
            presented: presented.build(),
        })
    }

    /// Trust domains: an exact value of the class stands for the whole class (Istio's
    /// `ExpandTrustDomainAliases`); patterns match the presented trust domain.
    fn trust_domains<S: AsRef<str>>(&self, values: &[S]) -> Option<IdMatcher> {
        if values.is_empty() {
            return None;
        }
        let mut canonical = StrMatcherBuilder::new(&self.text, values.len());
        let mut presented = StrMatcherBuilder::new(&self.text, 0);
        for v in values {
            match Pattern::parse(v.as_ref()) {
                Ok(Pattern::Exact(td)) => {
                    let td = if self.in_class(td) { self.local } else { td };
                    canonical.exact.push(&[td]);
                }
                Ok(p) => presented.add(p, false),
                Err(_) => {}
            }
        }
        Some(IdMatcher {
            canonical: canonical.build(),
            presented: presented.build(),
        })
    }

    /// The matcher of a list of patterns; `spell` turns a written value into its pattern text.
    fn matcher<S: AsRef<str>>(
        &self,
        values: &[S],
        spell: fn(&str) -> &str,
        fold_case: bool,
    ) -> Option<StrMatcher> {
        if values.is_empty() {
            return None;
        }
        let mut b = StrMatcherBuilder::new(&self.text, values.len());
        for v in values {
            if let Ok(p) = Pattern::parse(spell(v.as_ref())) {
                b.add(p, fold_case);
            }
        }
        Some(b.build())
    }

    fn strings<S: AsRef<str>>(&self, values: &[S], fold_case: bool) -> Option<StrMatcher> {
        self.matcher(values, |v| v, fold_case)
    }

    fn hosts<S: AsRef<str>>(&self, values: &[S]) -> Option<StrMatcher> {
        self.matcher(values, super::pattern::host_pattern, true)
    }

    fn ports(values: &[u16]) -> Option<PortSet> {
        (!values.is_empty()).then(|| PortSet::new(values.to_vec()))
    }

    fn source<S: AsRef<str>>(&self, s: &Source<S>) -> CompiledSource {
        CompiledSource {
            principals: self.principals(&s.principals),
            not_principals: self.principals(&s.not_principals),
            namespaces: self.strings(&s.namespaces, false),
            not_namespaces: self.strings(&s.not_namespaces, false),
            trust_domains: self.trust_domains(&s.trust_domains),
            not_trust_domains: self.trust_domains(&s.not_trust_domains),
        }
    }

    fn condition<S: AsRef<str>>(
        &mut self,
        key: &str,
        values: &[S],
        not_values: &[S],
    ) -> Option<CompiledCondition> {
        Some(match parse_when_key(key).ok()? {
            WhenKey::Header(name) => {
                let name = name.to_ascii_lowercase();
                if !self.header_names.contains(&name) {
                    self.header_names.push(name.clone());
                }
                CompiledCondition::Header(
                    name.into(),
                    Cond {
                        values: self.strings(values, false),
                        not_values: self.strings(not_values, false),
                    },
                )
            }
            WhenKey::SourcePrincipal => CompiledCondition::SourcePrincipal(Box::new(Cond {
                values: self.principals(values),
                not_values: self.principals(not_values),
            })),
            WhenKey::SourceNamespace => CompiledCondition::SourceNamespace(Cond {
                values: self.strings(values, false),
                not_values: self.strings(not_values, false),
            }),
            WhenKey::DestinationPort => {
                let ports = |v: &[S]| {
                    let p: Vec<u16> = v
                        .iter()
                        .filter_map(|s| super::parse::parse_port(s.as_ref()))
                        .collect();
                    Self::ports(&p)
                };
                CompiledCondition::DestinationPort(Cond {
                    values: ports(values),
                    not_values: ports(not_values),
                })
            }
            WhenKey::ConnectionSni => CompiledCondition::ConnectionSni(Cond {
                values: self.strings(values, true),
                not_values: self.strings(not_values, true),
            }),
        })
    }
}

/// Validates and compiles a document.
pub(crate) fn compile<S: AsRef<str>>(doc: &PolicyDocument<S>) -> Result<Index, PolicyError> {
    let problems = validate(doc);
    if !problems.is_empty() {
        return Err(PolicyError::Invalid(problems));
    }
    compile_validated(doc, &Arc::default()).map(Unfinished::finish)
}

/// An index whose exact sets hold their values but no hash tables yet: the caller frees the
/// document first, then calls [`Unfinished::finish`], so the document's lists and the
/// tables are never in memory at once.
#[derive(Debug)]
pub(crate) struct Unfinished(Index);

impl Unfinished {
    pub(crate) fn finish(mut self) -> Index {
        for p in self.0.deny.iter_mut().chain(&mut self.0.allow) {
            for r in &mut p.rules {
                r.from.iter_mut().for_each(CompiledSource::finish);
                r.to.iter_mut().for_each(CompiledOperation::finish);
                r.when.iter_mut().for_each(CompiledCondition::finish);
            }
        }
        self.0
    }
}

/// Compiles a document [`validate`] found no problem in.
///
/// `text` is the configuration text the document's strings borrow from, if any (else
/// empty): large exact sets keep the values found in it as spans of it, so the index holds
/// the text instead of a copy of the allowlist.
pub(crate) fn compile_validated<S: AsRef<str>>(
    doc: &PolicyDocument<S>,
    text: &Arc<String>,
) -> Result<Unfinished, PolicyError> {
    // Validated: these parse. Normalise `spiffe://td` spellings to the bare name.
    let local = TrustDomain::new(doc.trust_domain.as_ref())
        .map_err(|e| PolicyError::Syntax(e.to_string()))?;
    let mut aliases: Vec<TrustDomain> = Vec::new();
    for a in &doc.trust_domain_aliases {
        let td = TrustDomain::new(a.as_ref()).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        if td != local && !aliases.contains(&td) {
            aliases.push(td);
        }
    }
    let mut c = Compiler {
        text: Arc::clone(text),
        local: local.as_str(),
        aliases: aliases.iter().map(TrustDomain::as_str).collect(),
        header_names: Vec::new(),
    };
    let mut deny = Vec::new();
    let mut allow = Vec::new();
    for p in &doc.policies {
        let mut rules = Vec::with_capacity(p.rules.len());
        for r in &p.rules {
            let from = r.from.iter().map(|f| c.source(&f.source)).collect();
            let to: Vec<CompiledOperation> =
                r.to.iter()
                    .map(|t| {
                        let o = &t.operation;
                        CompiledOperation {
                            methods: c.strings(&o.methods, false),
                            not_methods: c.strings(&o.not_methods, false),
                            paths: c.strings(&o.paths, false),
                            not_paths: c.strings(&o.not_paths, false),
                            hosts: c.hosts(&o.hosts),
                            not_hosts: c.hosts(&o.not_hosts),
                            ports: Compiler::ports(&o.ports),
                            not_ports: Compiler::ports(&o.not_ports),
                        }
                    })
                    .collect();
            let when: Vec<CompiledCondition> = r
                .when
                .iter()
                .filter_map(|w| c.condition(w.key.as_ref(), &w.values, &w.not_values))
                .collect();
            let needs_http = r.to.iter().any(|t| t.operation.uses_http())
                || when.iter().any(CompiledCondition::is_http);
            rules.push(CompiledRule {
                from,
                to,
                when,
                needs_http,
            });
        }
        let entry = CompiledPolicyEntry {
            name: p.name.as_ref().into(),
            action: p.action,
            dry_run: p.dry_run || doc.mode == Mode::DryRun,
            rules,
        };
        match p.action {
            Action::Deny => deny.push(entry),
            Action::Allow => allow.push(entry),
        }
    }
    let has_dry_run = deny.iter().chain(&allow).any(|p| p.dry_run);
    let has_enforced_allow = allow.iter().any(|p| !p.dry_run);
    let attributes = attributes(deny.iter().chain(&allow));
    Ok(Unfinished(Index {
        local_td: local.as_str().into(),
        aliases: aliases.iter().map(|a| a.as_str().into()).collect(),
        deny,
        allow,
        has_dry_run,
        has_enforced_allow,
        header_names: c.header_names,
        attributes,
    }))
}
