//! One test per sentence of the policy semantics (docs/policy.md), each with an allowed and a
//! denied case, plus table tests of validation (each problem kind → exact path and value).

use svidgate_core::policy::{
    Action, CompiledPolicy, EvalMode, NoIdentity, Peer, PolicyDocument, PolicyError, Problem,
    Request,
};
use svidgate_core::SpiffeId;

#[path = "support/reduced.rs"]
mod reduced;

const HTTP: EvalMode = EvalMode::Http;
const NET: EvalMode = EvalMode::Network;

/// A document with `trustDomain: cluster.local` and the given `policies:` body (YAML).
fn compile(policies: &str) -> CompiledPolicy {
    compile_doc(&format!(
        "trustDomain: cluster.local\npolicies:\n{policies}"
    ))
}

fn compile_doc(doc: &str) -> CompiledPolicy {
    let parsed = PolicyDocument::from_yaml(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    let compiled = CompiledPolicy::compile(&parsed).unwrap();
    // Every policy of these tests also checks that the attributes it does not read cannot
    // change a decision (what lets the filter skip reading them).
    reduced::assert_reduction_is_exact(&compiled, doc, 200, doc.len() as u64);
    compiled
}

fn peer(id: &str) -> Peer {
    Peer::Identity(SpiffeId::parse(id).unwrap())
}

fn none() -> Peer {
    Peer::None(NoIdentity::NotMtls)
}

fn get(p: Peer, path: &str) -> Request<'_> {
    Request::http(p, "GET", path)
}

fn allowed(c: &CompiledPolicy, r: &Request<'_>, mode: EvalMode) -> bool {
    c.evaluate(r, mode).enforced.allow
}

/// (operation, method, path, host, port, allowed)
type OperationCase = (String, String, String, Option<String>, Option<u16>, bool);

/// The tables of `fixtures/policy-semantics.yaml` (each described there).
#[derive(serde::Deserialize)]
struct Tables {
    sources: Vec<(String, String, bool)>,
    principal_patterns: Vec<(String, String, bool)>,
    operations: Vec<OperationCase>,
    when: Vec<(String, bool)>,
    validation: Vec<ValidationCase>,
}

/// A document given by exactly one of `doc`, `policies`, `source`, `operation`, `when`.
#[derive(serde::Deserialize)]
struct ValidationCase {
    doc: Option<String>,
    policies: Option<String>,
    source: Option<String>,
    operation: Option<String>,
    when: Option<String>,
    path: String,
    value: String,
    problem: String,
}

impl ValidationCase {
    fn doc(&self) -> String {
        let rule = |r: String| format!("{HEAD}  - name: p\n    rules: [{r}]\n");
        let docs = [
            self.doc.clone(),
            self.policies.as_ref().map(|p| format!("{HEAD}{p}")),
            self.source
                .as_ref()
                .map(|s| rule(format!("{{from: [{{source: {{{s}}}}}]}}"))),
            (self.operation.as_ref()).map(|o| rule(format!("{{to: [{{operation: {{{o}}}}}]}}"))),
            self.when.as_ref().map(|w| rule(format!("{{when: [{w}]}}"))),
        ];
        let mut given = docs.into_iter().flatten();
        let doc = given.next().expect("a case without a document");
        assert!(given.next().is_none(), "a case with two documents: {doc}");
        doc
    }
}

fn tables() -> Tables {
    let t: Tables = serde_yaml::from_str(include_str!("fixtures/policy-semantics.yaml")).unwrap();
    let sizes = [
        t.sources.len(),
        t.principal_patterns.len(),
        t.operations.len(),
        t.when.len(),
        t.validation.len(),
    ];
    assert_eq!(sizes, [15, 9, 28, 14, 38], "cases per table");
    t
}

const WEB: &str = "spiffe://cluster.local/ns/web/sa/frontend";
const BATCH: &str = "spiffe://cluster.local/ns/batch/sa/job";
const LEGACY: &str = "spiffe://cluster.local/ns/legacy/sa/old";

// --- "DENY policies first: any match denies." -----------------------------------------------

#[test]
fn deny_policies_first_any_match_denies() {
    let c = compile(
        r#"
  - name: allow-all-web
    action: ALLOW
    rules: [{from: [{source: {namespaces: [web, legacy]}}]}]
  - name: deny-legacy
    action: DENY
    rules: [{from: [{source: {namespaces: [legacy]}}]}]
"#,
    );
    let d = c.evaluate(&get(peer(LEGACY), "/"), HTTP);
    assert!(!d.enforced.allow);
    assert_eq!(d.enforced.policy, Some("deny-legacy"));
    assert_eq!(d.enforced.rule, Some(0));
    assert_eq!(d.enforced.reason, "matched DENY policy");
    let d = c.evaluate(&get(peer(WEB), "/"), HTTP);
    assert!(d.enforced.allow);
    assert_eq!(d.enforced.policy, Some("allow-all-web"));
}

// --- "Then ALLOW: if no ALLOW policy exists, allow; else allow only if one matches." -------

#[test]
fn then_allow_if_no_allow_policy_exists_allow() {
    let c = compile(
        r#"
  - name: deny-legacy
    action: DENY
    rules: [{from: [{source: {namespaces: [legacy]}}]}]
"#,
    );
    let d = c.evaluate(&get(peer(WEB), "/"), HTTP);
    assert!(d.enforced.allow);
    assert_eq!(d.enforced.policy, None);
    assert_eq!(d.enforced.reason, "no ALLOW policy: allowed by default");
    assert!(!allowed(&c, &get(peer(LEGACY), "/"), HTTP));
    // No policies at all: allow.
    let empty = compile_doc("trustDomain: cluster.local\n");
    assert!(allowed(&empty, &get(none(), "/"), HTTP));
}

#[test]
fn else_allow_only_if_one_allow_policy_matches() {
    let c = compile(
        r#"
  - name: web
    rules: [{from: [{source: {principals: ["cluster.local/ns/web/sa/frontend"]}}]}]
  - name: batch
    action: ALLOW
    rules: [{from: [{source: {principals: ["cluster.local/ns/batch/sa/job"]}}]}]
"#,
    );
    let d = c.evaluate(&get(peer(BATCH), "/"), HTTP);
    assert!(d.enforced.allow);
    assert_eq!(d.enforced.policy, Some("batch"));
    let d = c.evaluate(&get(peer(LEGACY), "/"), HTTP);
    assert!(!d.enforced.allow);
    assert_eq!(d.enforced.policy, None);
    assert_eq!(d.enforced.reason, "no ALLOW policy matched");
}

// --- "A policy with no `rules` matches nothing (so an ALLOW with no rules allows nothing)" --

#[test]
fn policy_with_no_rules_matches_nothing() {
    let allow_nothing = compile("  - name: allow-nothing\n    action: ALLOW\n");
    assert!(!allowed(&allow_nothing, &get(peer(WEB), "/"), HTTP));
    let also = compile("  - name: allow-nothing\n    rules: []\n");
    assert!(!allowed(&also, &get(peer(WEB), "/"), HTTP));
    // A DENY with no rules denies nothing.
    let deny_nothing = compile("  - name: deny-nothing\n    action: DENY\n");
    assert!(allowed(&deny_nothing, &get(peer(WEB), "/"), HTTP));
}

// --- "a rule `{}` matches everything." --------------------------------------------------------

#[test]
fn empty_rule_matches_everything() {
    let allow_all = compile("  - name: allow-all\n    rules: [{}]\n");
    assert!(allowed(&allow_all, &get(peer(WEB), "/"), HTTP));
    assert!(allowed(&allow_all, &get(none(), "/"), HTTP));
    let deny_all = compile("  - name: deny-all\n    action: DENY\n    rules: [{}]\n");
    assert!(!allowed(&deny_all, &get(peer(WEB), "/"), HTTP));
}

// --- "A rule matches when at least one `from`, at least one `to` and every `when` match;
//      absent lists match." ----------------------------------------------------------------

#[test]
fn rule_matches_when_one_from_one_to_and_every_when_match() {
    let c = compile(
        r#"
  - name: p
    rules:
      - from:
          - source: {namespaces: [web]}
          - source: {namespaces: [batch]}
        to:
          - operation: {methods: [GET]}
          - operation: {paths: ["/public/*"]}
        when:
          - {key: "request.headers[x-a]", values: ["1"]}
          - {key: "request.headers[x-b]", values: ["2"]}
"#,
    );
    let h = [("x-a", "1"), ("x-b", "2")];
    let mut r = Request::http(peer(BATCH), "POST", "/public/x");
    r.headers = &h;
    assert!(allowed(&c, &r, HTTP), "second from, second to, both whens");
    let h1 = [("x-a", "1")];
    r.headers = &h1;
    assert!(!allowed(&c, &r, HTTP), "one when missing");
    r.headers = &h;
    r.path = Some("/private");
    assert!(!allowed(&c, &r, HTTP), "no to matches");
    let mut r = Request::http(peer(LEGACY), "GET", "/");
    r.headers = &h;
    assert!(!allowed(&c, &r, HTTP), "no from matches");
}

#[test]
fn absent_lists_match() {
    let c = compile("  - name: p\n    rules: [{to: [{operation: {methods: [GET]}}]}]\n");
    assert!(allowed(&c, &get(none(), "/"), HTTP), "absent from and when");
    assert!(!allowed(&c, &Request::http(peer(WEB), "PUT", "/"), HTTP));
}

// --- "Fields inside one source/operation are ANDed; values inside a field are ORed;
//      `not*` fields negate." ------------------------------------------------------------

#[test]
fn fields_inside_one_source_or_operation_are_anded() {
    let c = compile(
        r#"
  - name: p
    rules:
      - from: [{source: {namespaces: [web], principals: ["*/sa/frontend"]}}]
        to: [{operation: {methods: [GET], paths: ["/a"]}}]
"#,
    );
    assert!(allowed(&c, &get(peer(WEB), "/a"), HTTP));
    assert!(!allowed(&c, &get(peer(WEB), "/b"), HTTP), "path fails");
    assert!(!allowed(
        &c,
        &get(peer("spiffe://cluster.local/ns/web/sa/other"), "/a"),
        HTTP
    ));
}

#[test]
fn values_inside_a_field_are_ored() {
    let c = compile("  - name: p\n    rules: [{to: [{operation: {methods: [GET, HEAD]}}]}]\n");
    assert!(allowed(&c, &Request::http(peer(WEB), "HEAD", "/"), HTTP));
    assert!(allowed(&c, &Request::http(peer(WEB), "GET", "/"), HTTP));
    assert!(!allowed(&c, &Request::http(peer(WEB), "POST", "/"), HTTP));
}

#[test]
fn not_fields_negate() {
    let c = compile(
        r#"
  - name: p
    rules:
      - from: [{source: {notNamespaces: [legacy]}}]
        to: [{operation: {notPaths: ["/admin/*"]}}]
"#,
    );
    assert!(allowed(&c, &get(peer(WEB), "/x"), HTTP));
    assert!(!allowed(&c, &get(peer(LEGACY), "/x"), HTTP));
    assert!(!allowed(&c, &get(peer(WEB), "/admin/x"), HTTP));
}

// --- "Source fields: principals, notPrincipals, namespaces, notNamespaces, trustDomains,
//      notTrustDomains." ------------------------------------------------------------------

#[test]
fn source_fields_principals_namespaces_trust_domains_and_their_negations() {
    for (source, id, want) in tables().sources {
        let c = compile(&format!(
            "  - name: p\n    rules: [{{from: [{{source: {{{source}}}}}]}}]\n"
        ));
        assert_eq!(
            allowed(&c, &get(peer(&id), "/"), HTTP),
            want,
            "{source} / {id}"
        );
    }
}

// --- "Principals are written `td/ns/x/sa/y` (Istio form) or `spiffe://td/ns/x/sa/y`;
//      both mean the same." --------------------------------------------------------------

#[test]
fn principals_istio_form_and_spiffe_form_mean_the_same() {
    for written in [
        "cluster.local/ns/web/sa/frontend",
        "spiffe://cluster.local/ns/web/sa/frontend",
        "cluster.local/ns/web/*",
        "spiffe://cluster.local/ns/web/*",
    ] {
        let c = compile(&format!(
            "  - name: p\n    rules: [{{from: [{{source: {{principals: [\"{written}\"]}}}}]}}]\n"
        ));
        assert!(allowed(&c, &get(peer(WEB), "/"), HTTP), "{written}");
        assert!(!allowed(&c, &get(peer(BATCH), "/"), HTTP), "{written}");
    }
}

// --- "Patterns: exact, `prefix*`, `*suffix`, and `*` (= any authenticated peer)." ----------

#[test]
fn principal_patterns_exact_prefix_suffix_and_star_any_authenticated_peer() {
    for (pattern, id, want) in tables().principal_patterns {
        let c = compile(&format!(
            "  - name: p\n    rules: [{{from: [{{source: {{principals: [\"{pattern}\"]}}}}]}}]\n"
        ));
        assert_eq!(
            allowed(&c, &get(peer(&id), "/"), HTTP),
            want,
            "{pattern} / {id}"
        );
    }
    let any = compile("  - name: p\n    rules: [{from: [{source: {principals: [\"*\"]}}]}]\n");
    assert!(
        !allowed(&any, &get(none(), "/"), HTTP),
        "`*` needs an authenticated peer"
    );
    assert!(!allowed(
        &any,
        &get(Peer::None(NoIdentity::InvalidSpiffeId), "/"),
        HTTP
    ));
}

// --- "No regex: patterns compile to exact-set lookups and prefix/suffix tries so cost does
//      not grow with the number of entries." ----------------------------------------------

#[test]
fn no_regex_patterns_compile_to_sets_and_tries_large_allowlists() {
    let mut principals = String::new();
    for i in 0..20_000 {
        principals.push_str(&format!("\"cluster.local/ns/n{i}/sa/s{i}\", "));
        principals.push_str(&format!("\"cluster.local/ns/p{i}/*\", "));
        principals.push_str(&format!("\"*/sa/suffix{i}\", "));
    }
    let c = compile(&format!(
        "  - name: big\n    rules: [{{from: [{{source: {{principals: [{principals}]}}}}]}}]\n"
    ));
    for (id, want) in [
        ("spiffe://cluster.local/ns/n0/sa/s0", true),
        ("spiffe://cluster.local/ns/n19999/sa/s19999", true),
        ("spiffe://cluster.local/ns/n19999/sa/s1", false),
        ("spiffe://cluster.local/ns/p12345/sa/any", true),
        ("spiffe://cluster.local/ns/p20000/sa/any", false),
        ("spiffe://x.org/a/sa/suffix19999", true),
        ("spiffe://x.org/a/sa/suffix20000", false),
    ] {
        assert_eq!(allowed(&c, &get(peer(id), "/"), HTTP), want, "{id}");
    }
    // Regex metacharacters are literal.
    let c = compile("  - name: p\n    rules: [{to: [{operation: {paths: [\"/a.c\"]}}]}]\n");
    assert!(allowed(&c, &get(peer(WEB), "/a.c"), HTTP));
    assert!(!allowed(&c, &get(peer(WEB), "/abc"), HTTP));
}

// --- "Operation fields: methods, paths (exact, prefix*, *suffix), hosts (case-insensitive),
//      ports, each with not*." -------------------------------------------------------------

#[test]
fn operation_fields_methods_paths_hosts_ports_each_with_not() {
    for (op, method, path, host, port, want) in tables().operations {
        let c = compile(&format!(
            "  - name: p\n    rules: [{{to: [{{operation: {{{op}}}}}]}}]\n"
        ));
        let mut r = Request::http(peer(WEB), &method, &path);
        r.host = host.as_deref();
        r.port = port;
        assert_eq!(
            allowed(&c, &r, HTTP),
            want,
            "{op} / {method} {path} {host:?} {port:?}"
        );
    }
}

// --- "`when`: request.headers[name], source.principal, source.namespace, destination.port,
//      connection.sni." --------------------------------------------------------------------

#[test]
fn when_keys_headers_principal_namespace_port_sni() {
    let headers = [("x-env", "prod")];
    for (cond, want) in tables().when {
        let c = compile(&format!("  - name: p\n    rules: [{{when: [{cond}]}}]\n"));
        let mut r = get(peer(WEB), "/");
        r.headers = &headers;
        r.port = Some(9090);
        r.sni = Some("API.ns.svc");
        assert_eq!(allowed(&c, &r, HTTP), want, "{cond}");
    }
    let c = compile(
        "  - name: p\n    rules: [{when: [{key: \"request.headers[X-Env]\", values: [prod]}]}]\n",
    );
    assert_eq!(c.header_names(), ["x-env".to_owned()]);
}

// --- "Unknown keys are an error, not silently ignored." --------------------------------------

#[test]
fn unknown_keys_are_an_error_not_silently_ignored() {
    let bad = "trustDomain: cluster.local\npolicies:\n  - name: p\n    rules: [{when: [{key: \"request.auth.claims[iss]\", values: [x]}]}]\n";
    let err = PolicyDocument::from_yaml(bad).unwrap_err();
    let PolicyError::Invalid(problems) = err else {
        panic!("{err}")
    };
    assert_eq!(problems[0].path, "policies[0].rules[0].when[0].key");
    assert_eq!(problems[0].value, "request.auth.claims[iss]");
    // The same condition with a known key is accepted and evaluated.
    let c = compile("  - name: p\n    rules: [{when: [{key: source.namespace, values: [web]}]}]\n");
    assert!(allowed(&c, &get(peer(WEB), "/"), HTTP));
    assert!(!allowed(&c, &get(peer(BATCH), "/"), HTTP));
}

// --- "Network (TCP) mode sees no HTTP: in an ALLOW policy a rule that needs HTTP fields
//      never matches;" ------------------------------------------------------------------

#[test]
fn network_mode_allow_rule_that_needs_http_fields_never_matches() {
    let c = compile(
        r#"
  - name: http-only
    rules: [{from: [{source: {namespaces: [web]}}], to: [{operation: {methods: [GET]}}]}]
  - name: tcp
    rules: [{from: [{source: {namespaces: [batch]}}], to: [{operation: {ports: [5432]}}]}]
"#,
    );
    assert!(!allowed(
        &c,
        &Request::network(peer(WEB), Some(5432), None),
        NET
    ));
    assert!(allowed(
        &c,
        &Request::network(peer(BATCH), Some(5432), None),
        NET
    ));
    // The same ALLOW rule matches in HTTP mode.
    assert!(allowed(&c, &get(peer(WEB), "/"), HTTP));
    let hdr = compile(
        "  - name: p\n    rules: [{when: [{key: \"request.headers[x]\", notValues: [y]}]}]\n",
    );
    assert!(!allowed(
        &hdr,
        &Request::network(peer(WEB), None, None),
        NET
    ));
}

// --- "in a DENY policy the HTTP-only conditions are dropped so the rule matches more, never
//      less." ----------------------------------------------------------------------------

#[test]
fn network_mode_deny_drops_http_only_conditions_matches_more_never_less() {
    let c = compile(
        r#"
  - name: deny-legacy-writes
    action: DENY
    rules:
      - from: [{source: {namespaces: [legacy]}}]
        to: [{operation: {methods: [POST], ports: [5432]}}]
        when: [{key: "request.headers[x-debug]", values: ["1"]}]
"#,
    );
    assert!(!allowed(
        &c,
        &Request::network(peer(LEGACY), Some(5432), None),
        NET
    ));
    // The non-HTTP conditions still apply.
    assert!(allowed(
        &c,
        &Request::network(peer(LEGACY), Some(80), None),
        NET
    ));
    assert!(allowed(
        &c,
        &Request::network(peer(WEB), Some(5432), None),
        NET
    ));
    // In HTTP mode the same GET is not denied.
    let mut r = Request::http(peer(LEGACY), "GET", "/");
    r.port = Some(5432);
    assert!(allowed(&c, &r, HTTP));
}

// --- "Trust-domain aliases: a principal written with the local TD (or `cluster.local`) also
//      matches the same path under each alias." ---------------------------------------------

#[test]
fn trust_domain_aliases_local_or_cluster_local_principal_matches_under_each_alias() {
    let doc = r#"
trustDomain: new.example
trustDomainAliases: [old.example, older.example]
policies:
  - name: p
    rules:
      - from:
          - source:
              principals:
                - new.example/ns/a/sa/x
                - cluster.local/ns/b/sa/y
                - old.example/ns/c/*
                - spiffe://older.example/ns/d/sa/z
"#;
    let c = compile_doc(doc);
    for td in ["new.example", "old.example", "older.example"] {
        for path in ["/ns/a/sa/x", "/ns/b/sa/y", "/ns/c/sa/any", "/ns/d/sa/z"] {
            let id = format!("spiffe://{td}{path}");
            assert!(allowed(&c, &get(peer(&id), "/"), HTTP), "{id}");
        }
        let id = format!("spiffe://{td}/ns/a/sa/other");
        assert!(!allowed(&c, &get(peer(&id), "/"), HTTP), "{id}");
    }
    // trustDomains: the local trust domain stands for its aliases too.
    let c = compile_doc(
        "trustDomain: new.example\ntrustDomainAliases: [old.example]\npolicies:\n  - name: p\n    rules: [{from: [{source: {trustDomains: [new.example]}}]}]\n",
    );
    assert!(allowed(&c, &get(peer("spiffe://old.example/x"), "/"), HTTP));
    assert!(!allowed(
        &c,
        &get(peer("spiffe://third.example/x"), "/"),
        HTTP
    ));
}

// --- "Identities in other trust domains stay distinct." --------------------------------------

#[test]
fn identities_in_other_trust_domains_stay_distinct() {
    let doc = r#"
trustDomain: new.example
trustDomainAliases: [old.example]
policies:
  - name: p
    rules:
      - from: [{source: {principals: [new.example/ns/a/sa/x, partner.org/ns/a/sa/x]}}]
"#;
    let c = compile_doc(doc);
    assert!(allowed(
        &c,
        &get(peer("spiffe://partner.org/ns/a/sa/x"), "/"),
        HTTP
    ));
    assert!(!allowed(
        &c,
        &get(peer("spiffe://evil.org/ns/a/sa/x"), "/"),
        HTTP
    ));
    // `cluster.local` is not an alias here: a peer really from cluster.local is foreign.
    assert!(!allowed(
        &c,
        &get(peer("spiffe://cluster.local/ns/a/sa/x"), "/"),
        HTTP
    ));
    // A principal of a foreign trust domain does not match the local one.
    let c = compile_doc(
        "trustDomain: new.example\npolicies:\n  - name: p\n    rules: [{from: [{source: {principals: [partner.org/ns/a/sa/x]}}]}]\n",
    );
    assert!(!allowed(
        &c,
        &get(peer("spiffe://new.example/ns/a/sa/x"), "/"),
        HTTP
    ));
}

// --- "No peer identity: principals/namespaces never match and notPrincipals does; with any
//      ALLOW policy present that means deny." ------------------------------------------------

#[test]
fn no_peer_identity_principals_namespaces_never_match_not_principals_does() {
    let c = compile(
        r#"
  - name: deny-anonymous
    action: DENY
    rules: [{from: [{source: {notPrincipals: ["*"]}}]}]
"#,
    );
    let d = c.evaluate(&get(none(), "/"), HTTP);
    assert!(!d.enforced.allow);
    assert_eq!(d.enforced.policy, Some("deny-anonymous"));
    assert_eq!(
        d.enforced.reason,
        "matched DENY policy (no peer identity: connection is not mTLS)"
    );
    assert!(allowed(&c, &get(peer(WEB), "/"), HTTP));

    for src in [
        "principals: [\"*\"]",
        "namespaces: [\"*\"]",
        "trustDomains: [\"*\"]",
    ] {
        let c = compile(&format!(
            "  - name: p\n    rules: [{{from: [{{source: {{{src}}}}}]}}]\n"
        ));
        assert!(!allowed(&c, &get(none(), "/"), HTTP), "{src}");
        assert!(allowed(&c, &get(peer(WEB), "/"), HTTP), "{src}");
    }
}

#[test]
fn no_peer_identity_with_any_allow_policy_present_means_deny() {
    let c = compile("  - name: p\n    rules: [{to: [{operation: {paths: [\"/never\"]}}]}]\n");
    for why in [
        NoIdentity::NotMtls,
        NoIdentity::NoUriSan,
        NoIdentity::InvalidSpiffeId,
        NoIdentity::InvalidSvid,
        NoIdentity::Unavailable,
    ] {
        let d = c.evaluate(&get(Peer::None(why), "/"), HTTP);
        assert!(!d.enforced.allow);
        assert!(d
            .enforced
            .reason
            .starts_with("no ALLOW policy matched (no peer identity: "));
    }
    assert_eq!(
        Peer::from_uri_san(true, Some("spiffe://X/y")),
        Peer::None(NoIdentity::InvalidSpiffeId)
    );
    assert_eq!(
        Peer::from_uri_san(false, Some(WEB)),
        Peer::None(NoIdentity::NotMtls)
    );
    assert_eq!(
        Peer::from_uri_san(true, None),
        Peer::None(NoIdentity::NoUriSan)
    );
    assert_eq!(Peer::from_uri_san(true, Some(WEB)), peer(WEB));
    // Without any ALLOW policy the anonymous peer is allowed.
    let c = compile(
        "  - name: d\n    action: DENY\n    rules: [{from: [{source: {namespaces: [x]}}]}]\n",
    );
    assert!(allowed(&c, &get(none(), "/"), HTTP));
}

// --- "Every decision carries the deciding policy and rule (`explain`)" -----------------------

#[test]
fn every_decision_carries_the_deciding_policy_and_rule() {
    let c = compile(
        r#"
  - name: deny-legacy
    action: DENY
    rules:
      - from: [{source: {namespaces: [nobody]}}]
      - from: [{source: {namespaces: [legacy]}}]
  - name: api
    rules:
      - to: [{operation: {paths: ["/x"]}}]
      - from: [{source: {principals: ["cluster.local/ns/web/*"]}}]
"#,
    );
    let d = c.evaluate(&get(peer(WEB), "/api"), HTTP);
    assert!(d.enforced.allow);
    assert_eq!((d.enforced.policy, d.enforced.rule), (Some("api"), Some(1)));
    let d = c.evaluate(&get(peer(LEGACY), "/api"), HTTP);
    assert_eq!(
        (d.enforced.policy, d.enforced.rule),
        (Some("deny-legacy"), Some(1))
    );
    let lines = c.explain(&get(peer(LEGACY), "/api"), HTTP);
    let text = lines.join("\n");
    assert!(text.contains("policy \"deny-legacy\" (DENY):"), "{text}");
    assert!(
        text.contains(
            "rule 0: no match: from[0].source.namespaces: namespace \"legacy\" matches none"
        ),
        "{text}"
    );
    assert!(text.contains("rule 1: MATCH"), "{text}");
    assert!(
        text.contains("to[0].operation.paths: path \"/api\" matches none"),
        "{text}"
    );
    assert!(
        text.ends_with("decision: DENY by policy \"deny-legacy\" rule 1: matched DENY policy"),
        "{text}"
    );
    let names: Vec<_> = c.policies().map(|(n, a, _)| (n, a)).collect();
    assert_eq!(
        names,
        [("deny-legacy", Action::Deny), ("api", Action::Allow)]
    );
}

// --- Dry run: "mode: dryRun — evaluate, log and count, never deny"; per-policy `dryRun`. ----

#[test]
fn dry_run_mode_never_denies_and_reports_the_would_be_verdict() {
    let c = compile_doc(
        r#"
trustDomain: cluster.local
mode: dryRun
policies:
  - name: web-only
    rules: [{from: [{source: {namespaces: [web]}}]}]
"#,
    );
    let d = c.evaluate(&get(peer(BATCH), "/"), HTTP);
    assert!(d.enforced.allow);
    let dry = d.dry_run.unwrap();
    assert!(!dry.allow);
    assert_eq!(dry.reason, "no ALLOW policy matched");
    let d = c.evaluate(&get(peer(WEB), "/"), HTTP);
    assert!(d.enforced.allow);
    assert_eq!(d.dry_run.unwrap().policy, Some("web-only"));
}

#[test]
fn dry_run_policy_never_changes_the_enforced_outcome() {
    let c = compile(
        r#"
  - name: deny-batch-shadow
    action: DENY
    dryRun: true
    rules: [{from: [{source: {namespaces: [batch]}}]}]
  - name: allow-web-batch
    rules: [{from: [{source: {namespaces: [web, batch]}}]}]
"#,
    );
    let d = c.evaluate(&get(peer(BATCH), "/"), HTTP);
    assert!(d.enforced.allow);
    assert_eq!(d.enforced.policy, Some("allow-web-batch"));
    let dry = d.dry_run.unwrap();
    assert!(!dry.allow);
    assert_eq!(dry.policy, Some("deny-batch-shadow"));
    let d = c.evaluate(&get(peer(LEGACY), "/"), HTTP);
    assert!(!d.enforced.allow);
    assert!(!d.dry_run.unwrap().allow);
    // Without dry-run policies there is no dry-run verdict.
    let c = compile("  - name: p\n    rules: [{}]\n");
    assert_eq!(c.evaluate(&get(peer(WEB), "/"), HTTP).dry_run, None);
}

// --- Bad input: "rejected with a message naming the field and value." ------------------------

fn problems(doc: &str) -> Vec<Problem> {
    match PolicyDocument::from_yaml(doc) {
        Err(PolicyError::Invalid(p)) => p,
        other => panic!("expected Invalid, got {other:?}\n{doc}"),
    }
}

const HEAD: &str = "trustDomain: cluster.local\npolicies:\n";

#[test]
fn validation_table_each_problem_kind_names_path_and_value() {
    for case in tables().validation {
        let doc = case.doc();
        let ValidationCase {
            path,
            value,
            problem,
            ..
        } = case;
        let found = problems(&doc);
        let hit = found.iter().find(|p| p.path == path);
        let Some(hit) = hit else {
            panic!("no problem at {path} for\n{doc}\ngot {found:#?}");
        };
        assert_eq!(hit.value, value, "{doc}");
        assert!(
            hit.problem.contains(problem.as_str()),
            "{:?} lacks {problem:?}",
            hit.problem
        );
        assert_eq!(
            found.len(),
            1,
            "exactly one problem expected for\n{doc}\ngot {found:#?}"
        );
    }
}

#[test]
fn validation_reports_all_problems_of_a_document() {
    let doc = r#"
trustDomain: cluster.local
mode: sometimes
policies:
  - name: a
    action: AUDIT
    rules:
      - from:
          - source:
              principals: ["cluster.local/ns/web/sa/ok", "bad/*/x", 7.5]
              requestPrincipals: ["*"]
        when:
          - key: request.auth.claims[iss]
            values: [x]
  - name: a
"#;
    let found = problems(doc);
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    let want = [
        "mode: invalid mode: expected enforce or dryRun (sometimes)",
        "policies[0].action: action AUDIT is not supported by svidgate: use ALLOW or DENY (AUDIT)",
        "policies[0].rules[0].from[0].source.requestPrincipals: not supported by svidgate: JWT request principals are not available to the filter (requestPrincipals)",
        "policies[0].rules[0].from[0].source.principals[2]: expected a string (7.5)",
        "policies[1].name: duplicate policy name, first used at policies[0] (a)",
        "policies[0].rules[0].from[0].source.principals[1]: wildcard '*' is only allowed at the start or the end of a value (bad/*/x)",
    ];
    for w in want {
        assert!(shown.iter().any(|s| s == w), "missing {w:?} in {shown:#?}");
    }
    assert!(
        shown.iter().any(
            |s| s.starts_with("policies[0].rules[0].when[0].key: unknown when key: JWT claims")
        ),
        "{shown:#?}"
    );
    assert_eq!(found.len(), 7, "{shown:#?}");
}

#[test]
fn json_and_yaml_get_the_same_treatment() {
    let json = r#"{"trustDomain": "cluster.local", "policies": [{"name": "p", "rules": [{"from": [{"source": {"principal": ["x"]}}]}]}]}"#;
    let Err(PolicyError::Invalid(p)) = PolicyDocument::from_json(json) else {
        panic!()
    };
    assert_eq!(p[0].path, "policies[0].rules[0].from[0].source.principal");
    let dup = r#"{"trustDomain": "cluster.local", "trustDomain": "evil.org"}"#;
    assert!(matches!(
        PolicyDocument::from_json(dup),
        Err(PolicyError::Syntax(_))
    ));
    let dup = "trustDomain: cluster.local\ntrustDomain: evil.org\n";
    assert!(matches!(
        PolicyDocument::from_yaml(dup),
        Err(PolicyError::Syntax(_))
    ));
    assert!(matches!(
        PolicyDocument::from_yaml("a: [b"),
        Err(PolicyError::Syntax(_))
    ));
    let Err(PolicyError::Invalid(p)) = PolicyDocument::from_yaml("- a\n") else {
        panic!()
    };
    assert_eq!(p[0].path, "(document)");
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn documents_print_back_and_reparse_to_the_same_document() {
    let doc = PolicyDocument::from_yaml(
        r#"
trustDomain: cluster.local
trustDomainAliases: [old.example]
mode: enforce
policies:
  - name: deny-legacy
    action: DENY
    rules:
      - from: [{source: {namespaces: [legacy]}}]
  - name: api-readers
    action: ALLOW
    dryRun: true
    rules:
      - from:
          - source:
              principals: ["cluster.local/ns/web/sa/frontend", "spiffe://cluster.local/ns/batch/*"]
        to:
          - operation: {methods: [GET, HEAD], paths: ["/api/*"], ports: ["8080"]}
        when:
          - {key: "request.headers[x-env]", notValues: [dev]}
"#,
    )
    .unwrap();
    let yaml = doc.to_yaml();
    assert_eq!(PolicyDocument::from_yaml(&yaml).unwrap(), doc, "{yaml}");
    let json = doc.to_json();
    assert_eq!(PolicyDocument::from_json(&json).unwrap(), doc, "{json}");
    // A document built in code is validated by compile.
    let mut bad = doc.clone();
    bad.policies[1].rules[0].from[0].source.principals[0] = "x/*/y".into();
    let Err(PolicyError::Invalid(p)) = CompiledPolicy::compile(&bad) else {
        panic!()
    };
    assert_eq!(
        p[0].path,
        "policies[1].rules[0].from[0].source.principals[0]"
    );
    assert!(bad.validate().is_err());
}
