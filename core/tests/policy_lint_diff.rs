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

/// One case of `fixtures/lint-cases.yaml`: a document, network mode or not, and the findings
/// expected as (path, code).
#[derive(serde::Deserialize)]
struct Case {
    doc: String,
    network: bool,
    findings: Vec<(String, String)>,
}

#[test]
fn every_rule_of_the_table() {
    let cases: Vec<Case> = serde_yaml::from_str(include_str!("fixtures/lint-cases.yaml")).unwrap();
    assert_eq!(cases.len(), 16);
    let mut seen = std::collections::BTreeSet::new();
    for Case {
        doc: yaml,
        network,
        findings: want,
    } in &cases
    {
        let got: Vec<(String, String)> = codes(yaml, *network)
            .into_iter()
            .map(|(p, c, _)| (p, c.to_owned()))
            .collect();
        assert_eq!(&got, want, "{yaml}");
        seen.extend(want.iter().map(|(_, c)| c.as_str()));
    }
    for code in CODES {
        assert!(seen.contains(code), "no test for {code}");
    }
    let deny_all = &cases
        .iter()
        .find(|c| c.doc.contains("rules: [{}]"))
        .unwrap()
        .doc;
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
