//! `policy::lint` and `policy::diff` against documents written the way authors write them.

use svidgate_core::policy::diff::{diff, DiffOptions};
use svidgate_core::policy::lint::{lint, LintOptions, Severity, CODES};
use svidgate_core::policy::request_line::{decide, RequestSpec};
use svidgate_core::policy::{CompiledPolicy, EvalMode, PolicyDocument};

fn doc(yaml: &str) -> PolicyDocument {
    PolicyDocument::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn codes(yaml: &str, network: bool) -> Vec<(String, &'static str, Severity)> {
    lint(&doc(yaml), LintOptions { network })
        .into_iter()
        .map(|f| (f.path, f.code, f.severity))
        .collect()
}

const CLEAN: &str = r#"
trustDomain: cluster.local
trustDomainAliases: [old.example]
policies:
  - name: deny-legacy
    action: DENY
    rules:
      - from: [{source: {namespaces: [legacy]}}]
  - name: api
    rules:
      - from: [{source: {principals: ["cluster.local/ns/web/sa/frontend", "spiffe://old.example/ns/batch/*"]}}]
        to: [{operation: {methods: [GET, HEAD], paths: ["/api/*"]}}]
      - from: [{source: {namespaces: [ops]}}]
        to: [{operation: {ports: [9090]}}]
"#;

#[test]
fn a_clean_policy_gives_no_findings() {
    assert_eq!(codes(CLEAN, false), []);
    assert_eq!(
        codes(CLEAN, true),
        [(
            "policies[1].rules[0]".to_owned(),
            "http-in-network-allow",
            Severity::Warning
        )]
    );
    for f in ["deploy/examples"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(f);
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&p).unwrap();
                let d = PolicyDocument::from_yaml(&text).unwrap();
                let found: Vec<_> = lint(&d, LintOptions::default())
                    .into_iter()
                    .filter(|f| f.severity == Severity::Error)
                    .collect();
                assert!(found.is_empty(), "{}: {found:?}", p.display());
            }
        }
    }
}

/// (document, network mode, expected findings as (path, code)).
type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)]);

#[test]
fn every_rule_of_the_table() {
    let cases: &[Case] = &[
        // HTTP conditions in network mode.
        (
            "trustDomain: td\npolicies:\n- name: d\n  action: DENY\n  rules: [{to: [{operation: {paths: [/admin/*]}}]}]\n",
            true,
            &[("policies[0].rules[0]", "deny-all")],
        ),
        (
            "trustDomain: td\npolicies:\n- name: d\n  action: DENY\n  rules: [{from: [{source: {namespaces: [x]}}], when: [{key: 'request.headers[x-a]', values: [b]}]}]\n",
            true,
            &[("policies[0].rules[0]", "http-in-network-deny")],
        ),
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n",
            true,
            &[("policies[0].rules[0]", "http-in-network-allow")],
        ),
        // Shadowed and duplicate rules, across policies of the same action.
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - to: [{operation: {paths: [/api/*]}}]\n  - to: [{operation: {paths: [/api/v1/x], methods: [GET]}}]\n- name: b\n  rules:\n  - to: [{operation: {paths: [/api/*]}}]\n",
            false,
            &[("policies[0].rules[1]", "shadowed-rule"), ("policies[1].rules[0]", "duplicate-rule")],
        ),
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from: [{source: {principals: ['*']}}]\n  - from: [{source: {namespaces: [web]}}]\n",
            false,
            &[("policies[0].rules[1]", "shadowed-rule")],
        ),
        // Different actions never shadow each other; a narrower rule after a wider one does.
        (
            "trustDomain: td\npolicies:\n- name: d\n  action: DENY\n  rules: [{to: [{operation: {paths: [/x]}}]}]\n- name: a\n  rules: [{to: [{operation: {paths: [/x]}}]}, {to: [{operation: {paths: [/y]}}]}]\n",
            false,
            &[],
        ),
        // Conditions that never hold together.
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules: [{from: [{source: {principals: [td/ns/a/sa/b], notPrincipals: [td/ns/a/*]}}]}]\n",
            false,
            &[("policies[0].rules[0].from[0].source", "never-matches")],
        ),
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules: [{from: [{source: {principals: [td/ns/a/sa/b], namespaces: [c]}}]}]\n",
            false,
            &[("policies[0].rules[0].from[0].source", "never-matches")],
        ),
        // A pattern on the presented trust domain is not judged: no finding.
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules: [{from: [{source: {principals: [td/ns/a/sa/b], trustDomains: ['*d']}}]}]\n",
            false,
            &[],
        ),
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules: [{to: [{operation: {methods: [GET], notMethods: ['*']}}]}]\n",
            false,
            &[("policies[0].rules[0].to[0].operation", "never-matches")],
        ),
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules: [{when: [{key: destination.port, values: ['80']}, {key: destination.port, values: ['443']}]}]\n",
            false,
            &[("policies[0].rules[0].when[1]", "never-matches")],
        ),
        // Paths no normalized request has.
        (
            "trustDomain: td\npolicies:\n- name: d\n  action: DENY\n  rules: [{to: [{operation: {paths: ['/public/../admin', '//admin/*', '/%61dmin', '/admin%2Fx', /ok]}}]}]\n",
            false,
            &[
                ("policies[0].rules[0].to[0].operation.paths[0]", "unreachable-path"),
                ("policies[0].rules[0].to[0].operation.paths[1]", "unreachable-path"),
                ("policies[0].rules[0].to[0].operation.paths[2]", "unreachable-path"),
                ("policies[0].rules[0].to[0].operation.paths[3]", "unreachable-path"),
            ],
        ),
        // A trust domain that is neither local nor an alias.
        (
            "trustDomain: td\ntrustDomainAliases: [old.td]\npolicies:\n- name: a\n  rules: [{from: [{source: {principals: [other.org/ns/a/sa/b, old.td/ns/a/sa/c, cluster.local/ns/x/sa/y]}}, {source: {trustDomains: [else.org]}}]}]\n",
            false,
            &[
                ("policies[0].rules[0].from[0].source.principals[0]", "foreign-trust-domain"),
                ("policies[0].rules[0].from[1].source.trustDomains[0]", "foreign-trust-domain"),
            ],
        ),
        // A DENY that matches everything.
        (
            "trustDomain: td\npolicies:\n- name: d\n  action: DENY\n  rules: [{}]\n",
            false,
            &[("policies[0].rules[0]", "deny-all")],
        ),
        // Duplicate and redundant values (spellings of the same principal count as one).
        (
            "trustDomain: td\npolicies:\n- name: a\n  rules: [{from: [{source: {principals: [td/ns/a/sa/b, 'spiffe://td/ns/a/sa/b', 'td/ns/c/*', td/ns/c/sa/d]}}], to: [{operation: {hosts: [A.example, a.example]}}]}]\n",
            false,
            &[
                ("policies[0].rules[0].from[0].source.principals[1]", "duplicate-value"),
                ("policies[0].rules[0].from[0].source.principals[3]", "redundant-value"),
                ("policies[0].rules[0].to[0].operation.hosts[1]", "duplicate-value"),
            ],
        ),
        (
            "trustDomain: td\npolicies:\n- name: a\n",
            false,
            &[("policies[0]", "allow-nothing")],
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (yaml, network, want) in cases {
        let got: Vec<(String, &str)> = codes(yaml, *network)
            .into_iter()
            .map(|(p, c, _)| (p, c))
            .collect();
        let want: Vec<(String, &str)> = want.iter().map(|(p, c)| ((*p).to_owned(), *c)).collect();
        assert_eq!(got, want, "{yaml}");
        seen.extend(want.iter().map(|(_, c)| *c));
    }
    for code in CODES {
        assert!(seen.contains(code), "no test for {code}");
    }
    let deny_all = cases
        .iter()
        .find(|c| c.0.contains("rules: [{}]"))
        .unwrap()
        .0;
    let json = serde_json::to_value(lint(&doc(deny_all), LintOptions::default())).unwrap();
    assert_eq!(json[0]["severity"], "error");
    assert_eq!(json[0]["code"], "deny-all");
    assert_eq!(json[0]["path"], "policies[0].rules[0]");
}

fn check_diff(old: &str, new: &str, network: bool) -> svidgate_core::policy::diff::DiffReport {
    let (a, b) = (doc(old), doc(new));
    let opts = DiffOptions {
        network,
        ..DiffOptions::default()
    };
    let report = diff(&a, &b, opts).unwrap();
    let mode = if network {
        EvalMode::Network
    } else {
        EvalMode::Http
    };
    let (ca, cb) = (
        CompiledPolicy::compile(&a).unwrap(),
        CompiledPolicy::compile(&b).unwrap(),
    );
    // Exact: every reported request really decides differently.
    for d in &report.differences {
        let spec = RequestSpec::new(d.request.clone(), mode);
        assert_ne!(
            decide(&ca, &spec, mode).enforced.decision,
            decide(&cb, &spec, mode).enforced.decision,
            "{d:?}"
        );
    }
    report
}

#[test]
fn rewrites_that_decide_the_same_give_no_difference() {
    let base = "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from: [{source: {principals: [td/ns/a/sa/x, td/ns/b/sa/y]}}]\n    to: [{operation: {methods: [GET, POST], paths: ['/api/*']}}]\n";
    let rewrites = [
        // Values reordered.
        "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from: [{source: {principals: [td/ns/b/sa/y, 'spiffe://td/ns/a/sa/x']}}]\n    to: [{operation: {paths: ['/api/*'], methods: [POST, GET]}}]\n",
        // Split into two rules, and into two policies.
        "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from: [{source: {principals: [td/ns/a/sa/x]}}]\n    to: [{operation: {methods: [GET, POST], paths: ['/api/*']}}]\n- name: b\n  rules:\n  - from: [{source: {principals: [td/ns/b/sa/y]}}]\n    to: [{operation: {methods: [GET], paths: ['/api/*']}}, {operation: {methods: [POST], paths: ['/api/*']}}]\n",
    ];
    for new in rewrites {
        let r = check_diff(base, new, false);
        assert!(r.equivalent(), "{new}: {r:?}");
    }
}

#[test]
fn a_change_is_found_with_a_request_that_shows_it() {
    let old = "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from: [{source: {principals: [td/ns/a/*]}}]\n    to: [{operation: {paths: ['/api/*'], notPaths: ['*.secret']}}]\n";
    let cases = [
        // A narrower prefix.
        "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from: [{source: {principals: [td/ns/a/sa/*]}}]\n    to: [{operation: {paths: ['/api/*'], notPaths: ['*.secret']}}]\n",
        // The exclusion dropped: only /api/<x>.secret tells them apart.
        "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from: [{source: {principals: [td/ns/a/*]}}]\n    to: [{operation: {paths: ['/api/*']}}]\n",
        // A DENY added for one header value.
        "trustDomain: td\npolicies:\n- name: d\n  action: DENY\n  rules: [{when: [{key: 'request.headers[x-tenant]', values: [evil]}]}]\n- name: a\n  rules:\n  - from: [{source: {principals: [td/ns/a/*]}}]\n    to: [{operation: {paths: ['/api/*'], notPaths: ['*.secret']}}]\n",
        // An alias added: peers of old.td now match.
        "trustDomain: td\ntrustDomainAliases: [old.td]\npolicies:\n- name: a\n  rules:\n  - from: [{source: {principals: [td/ns/a/*]}}]\n    to: [{operation: {paths: ['/api/*'], notPaths: ['*.secret']}}]\n",
    ];
    for new in cases {
        let r = check_diff(old, new, false);
        assert!(r.inconclusive.is_none(), "{r:?}");
        assert!(!r.differences.is_empty(), "{new}: {r:?}");
    }
    let r = check_diff(old, cases[1], false);
    assert!(
        r.differences.iter().all(|d| d
            .request
            .path
            .as_deref()
            .is_some_and(|p| p.starts_with("/api/") && p.ends_with(".secret"))),
        "{r:?}"
    );
}

#[test]
fn network_mode_and_caps() {
    let old = "trustDomain: td\npolicies:\n- name: a\n  rules: [{to: [{operation: {paths: [/x]}}]}, {to: [{operation: {ports: [80]}}]}]\n";
    let new =
        "trustDomain: td\npolicies:\n- name: a\n  rules: [{to: [{operation: {ports: [80]}}]}]\n";
    assert!(check_diff(old, new, true).equivalent());
    assert!(!check_diff(old, new, false).equivalent());
    let r = diff(
        &doc(old),
        &doc(new),
        DiffOptions {
            max_requests: 2,
            ..DiffOptions::default()
        },
    )
    .unwrap();
    assert!(r.inconclusive.is_some(), "{r:?}");
    assert!(!r.equivalent());
}
