//! Istio AuthorizationPolicy import: mapping tables, the never-widen rules of
//! `skip_unsupported`, trust-domain aliases, namespaces, and decisions of the imported
//! documents compared with what the Istio policy means.

use svidgate_core::policy::import::{
    convert, render_document, Failure, ImportOptions, Imported, Kind,
};
use svidgate_core::policy::request_line::{decide, parse_line, RequestSpec};
use svidgate_core::policy::{CompiledPolicy, EvalMode};

fn opts(skip: bool) -> ImportOptions {
    ImportOptions {
        trust_domain: "cluster.local".into(),
        skip_unsupported: skip,
        ..ImportOptions::default()
    }
}

fn import(text: &str, o: &ImportOptions) -> Imported {
    convert(text, o).unwrap_or_else(|e| panic!("{e}"))
}

fn rendered(imp: &Imported, skip: bool) -> Vec<String> {
    imp.diagnostics.iter().map(|d| d.render(skip)).collect()
}

fn decision(imp: &Imported, line: &str) -> String {
    let policy = CompiledPolicy::compile(&imp.document).unwrap();
    let spec = RequestSpec::new(parse_line(line).unwrap(), EvalMode::Http);
    decide(&policy, &spec, EvalMode::Http)
        .enforced
        .decision
        .to_owned()
}

const AP: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n";

#[test]
fn maps_sources_operations_conditions_and_dry_run() {
    let text = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: api
  namespace: shop
  annotations:
    istio.io/dry-run: "true"
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/web/sa/frontend"]
        notNamespaces: [legacy]
        trustDomains: [cluster.local]
    to:
    - operation:
        methods: [GET, HEAD]
        paths: ["/api/*"]
        ports: ["8080", 9090]
        notHosts: [admin.example]
    when:
    - key: request.headers[x-tenant]
      values: [a]
    - key: source.namespace
      notValues: [kube-system]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all}
spec:
  action: DENY
  rules: [{}]
"#;
    let imp = import(text, &opts(false));
    assert_eq!(rendered(&imp, false), Vec::<String>::new());
    assert_eq!(imp.failure(false), None);
    assert_eq!(
        imp.document.to_yaml(),
        r#"trustDomain: cluster.local
mode: enforce
policies:
- name: shop.api
  action: ALLOW
  dryRun: true
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/web/sa/frontend
        notNamespaces:
        - legacy
        trustDomains:
        - cluster.local
    to:
    - operation:
        methods:
        - GET
        - HEAD
        paths:
        - /api/*
        notHosts:
        - admin.example
        ports:
        - 8080
        - 9090
    when:
    - key: request.headers[x-tenant]
      values:
      - a
    - key: source.namespace
      notValues:
      - kube-system
- name: deny-all
  action: DENY
  rules:
  - {}
"#
    );
}

#[test]
fn fixture_imports_with_skip_only_without_the_custom_policy() {
    let fixture = include_str!("fixtures/istio-authorization-policies.yaml");
    // CUSTOM cannot be dropped: refused with and without skip.
    for skip in [false, true] {
        let imp = import(fixture, &opts(skip));
        assert_eq!(imp.failure(skip), Some(Failure::Unsupported));
        assert!(rendered(&imp, skip).iter().any(|l| l.starts_with(
            "error: AuthorizationPolicy shop/ext-authz (document 4): spec.action: CUSTOM action (provider \"opa\") is not supported"
        )), "{:?}", rendered(&imp, skip));
    }
    let without_custom = &fixture[..fixture.rfind("---").unwrap()];
    let imp = import(without_custom, &opts(false));
    assert_eq!(imp.failure(false), Some(Failure::Unsupported));
    let imp = import(without_custom, &opts(true));
    assert_eq!(imp.failure(true), None);
    assert_eq!(
        rendered(&imp, true),
        [
            r#"warning: AuthorizationPolicy shop/api-readers (document 2): spec.selector: dropped: a svidgate policy applies to every workload whose filter loads it ({"matchLabels":{"app":"api"}}); load policy shop.api-readers only in the filters of the workloads it selected"#,
            r#"warning: AuthorizationPolicy shop/api-readers (document 2): spec.rules[1].from[0].source.ipBlocks: IP blocks are not supported: svidgate authorizes by SPIFFE identity, not address (["10.0.0.0/8"]); rule 1 dropped: an ALLOW rule svidgate cannot fully check allows nothing"#,
        ]
    );
    assert_eq!(imp.document.policies.len(), 3);
    assert!(render_document(&imp.document, "istio.yaml")
        .starts_with("# svidgate policy imported from Istio AuthorizationPolicy resources (istio.yaml).\ntrustDomain: cluster.local\n"));
    // Decides like Istio: the frontend may GET the API with the tenant header.
    let ok = r#"{"peer": "spiffe://cluster.local/ns/web/sa/frontend", "method": "GET", "path": "/api/x", "port": 8080, "headers": {"x-tenant": "acme"}}"#;
    assert_eq!(decision(&imp, ok), "allow");
    let legacy = r#"{"peer": "spiffe://cluster.local/ns/legacy/sa/frontend", "method": "GET", "path": "/api/x", "port": 8080, "headers": {"x-tenant": "acme"}}"#;
    assert_eq!(decision(&imp, legacy), "deny");
}

/// What `skip_unsupported` may and may not drop, one row per case:
/// (input spec, import succeeds with skip, expected diagnostic prefix).
#[test]
fn skip_unsupported_only_ever_makes_the_result_stricter() {
    let cases: &[(&str, bool, &str)] = &[
        // A DENY rule loses the condition: it denies more.
        ("{action: DENY, rules: [{from: [{source: {namespaces: [a], ipBlocks: [1.2.3.4]}}]}]}", true, "warning: AuthorizationPolicy n/p (document 1): spec.rules[0].from[0].source.ipBlocks: IP blocks"),
        // An ALLOW rule is dropped whole: it allows less.
        ("{rules: [{from: [{source: {namespaces: [a], requestPrincipals: ['*']}}]}, {to: [{operation: {methods: [GET]}}]}]}", true, "warning: AuthorizationPolicy n/p (document 1): spec.rules[0].from[0].source.requestPrincipals"),
        // CUSTOM, AUDIT and an unknown field of a DENY policy are refused.
        ("{action: CUSTOM, provider: {name: x}, rules: [{}]}", false, "error: AuthorizationPolicy n/p (document 1): spec.action: CUSTOM action"),
        ("{action: AUDIT, rules: [{}]}", false, "error: AuthorizationPolicy n/p (document 1): spec.action: AUDIT action is not supported"),
        ("{action: DENY, future: 1, rules: [{}]}", false, "error: AuthorizationPolicy n/p (document 1): spec.future: field not supported by svidgate (1); cannot be skipped"),
        // Path templates have their own message.
        ("{rules: [{to: [{operation: {paths: ['/api/{*}/x']}}]}]}", true, "warning: AuthorizationPolicy n/p (document 1): spec.rules[0].to[0].operation.paths: path templates ({*}, {**}) are not supported"),
        ("{action: DENY, rules: [{to: [{operation: {paths: ['/admin/{**}']}}]}]}", true, "warning: AuthorizationPolicy n/p (document 1): spec.rules[0].to[0].operation.paths: path templates"),
        // JWT and IP `when` keys.
        ("{action: DENY, rules: [{from: [{source: {namespaces: [a]}}], when: [{key: 'request.auth.claims[iss]', values: [x]}]}]}", true, "warning: AuthorizationPolicy n/p (document 1): spec.rules[0].when[0].key: JWT claims"),
    ];
    for (spec, ok, want) in cases {
        let text = format!("{AP}metadata: {{name: p, namespace: n}}\nspec: {spec}\n");
        let imp = import(&text, &opts(true));
        let lines = rendered(&imp, true);
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{spec}: {lines:?}"
        );
        assert_eq!(imp.failure(true).is_none(), *ok, "{spec}: {lines:?}");
        // Without skip, every one of them fails.
        assert!(
            import(&text, &opts(false)).failure(false).is_some(),
            "{spec}"
        );
    }
    // What the dropped parts leave, by request method: the DENY whose only condition was
    // dropped now denies every request (stricter); the ALLOW policy whose only rule was dropped
    // allows nothing.
    let stricter: [(&str, &[(&str, &str)]); 2] = [
        ("{action: DENY, rules: [{from: [{source: {ipBlocks: [1.2.3.4]}}], to: [{operation: {methods: [POST]}}]}]}", &[("POST", "deny"), ("GET", "allow")]),
        ("{rules: [{from: [{source: {ipBlocks: [1.2.3.4]}}]}]}", &[("GET", "deny")]),
    ];
    for (spec, decisions) in stricter {
        let text = format!("{AP}metadata: {{name: p, namespace: n}}\nspec: {spec}\n");
        let imp = import(&text, &opts(true));
        for (method, want) in decisions {
            let line = format!(
                r#"{{"peer": "spiffe://cluster.local/ns/x/sa/y", "method": "{method}", "path": "/"}}"#
            );
            assert_eq!(decision(&imp, &line), *want, "{spec}: {method}");
        }
    }
}

#[test]
fn service_accounts_map_to_the_stricter_principal() {
    let text = format!(
        "{AP}metadata: {{name: a, namespace: n}}\nspec:\n  rules: [{{from: [{{source: {{serviceAccounts: [web/frontend], notServiceAccounts: [web/old]}}}}]}}]\n---\n{AP}metadata: {{name: d, namespace: n}}\nspec:\n  action: DENY\n  rules: [{{from: [{{source: {{serviceAccounts: [evil/x]}}}}], when: [{{key: source.serviceAccount, notValues: [evil/ok]}}]}}]\n"
    );
    let imp = import(&text, &opts(false));
    assert_eq!(imp.failure(false), None, "{:?}", rendered(&imp, false));
    let a = &imp.document.policies[0].rules[0].from[0].source;
    assert_eq!(a.principals, ["cluster.local/ns/web/sa/frontend"]);
    assert_eq!(a.not_principals, ["*/ns/web/sa/old"]);
    let d = &imp.document.policies[1].rules[0];
    assert_eq!(d.from[0].source.principals, ["*/ns/evil/sa/x"]);
    assert_eq!(d.when[0].key, "source.principal");
    assert_eq!(d.when[0].not_values, ["cluster.local/ns/evil/sa/ok"]);
    // The DENY catches the account in any trust domain; the ALLOW admits only the local one.
    assert_eq!(
        decision(&imp, r#"{"peer": "spiffe://other.org/ns/evil/sa/x"}"#),
        "deny"
    );
    assert_eq!(
        decision(&imp, r#"{"peer": "spiffe://other.org/ns/web/sa/frontend"}"#),
        "deny"
    );
    assert_eq!(
        decision(
            &imp,
            r#"{"peer": "spiffe://cluster.local/ns/web/sa/frontend"}"#
        ),
        "allow"
    );
    let bad = format!("{AP}metadata: {{name: a}}\nspec: {{rules: [{{from: [{{source: {{serviceAccounts: [frontend]}}}}]}}]}}\n");
    let imp = import(&bad, &opts(false));
    assert_eq!(
        rendered(&imp, false),
        [
            r#"error: AuthorizationPolicy a (document 1): spec.rules[0].from[0].source.serviceAccounts[0]: expected <namespace>/<service account> ("frontend")"#
        ]
    );
}

#[test]
fn trust_domain_aliases_make_a_deny_catch_every_alias() {
    let text = format!("{AP}metadata: {{name: d, namespace: n}}\nspec: {{action: DENY, rules: [{{from: [{{source: {{principals: [old.example/ns/a/sa/bad]}}}}]}}]}}\n");
    let o = ImportOptions {
        trust_domain: "new.example".into(),
        trust_domain_aliases: vec!["old.example".into()],
        ..opts(false)
    };
    let imp = import(&text, &o);
    assert_eq!(imp.document.trust_domain_aliases, ["old.example"]);
    // Without the alias the new trust domain's peer is not caught (what the option fixes).
    let without_alias = import(
        &text,
        &ImportOptions {
            trust_domain: "new.example".into(),
            ..opts(false)
        },
    );
    let cases = [
        (&imp, "new.example", "deny"),
        (&imp, "old.example", "deny"),
        (&imp, "other.example", "allow"),
        (&without_alias, "new.example", "allow"),
    ];
    for (imp, td, want) in cases {
        let line = format!(r#"{{"peer": "spiffe://{td}/ns/a/sa/bad"}}"#);
        assert_eq!(decision(imp, &line), want, "{td}");
    }
    let bad = convert(
        &text,
        &ImportOptions {
            trust_domain_aliases: vec!["Bad".into()],
            ..opts(false)
        },
    );
    assert!(bad
        .unwrap_err()
        .to_string()
        .starts_with("--trust-domain-alias \"Bad\": "));
}

#[test]
fn several_namespaces_warn_and_one_namespace_can_be_chosen() {
    let text = format!(
        "{AP}metadata: {{name: a, namespace: shop}}\nspec: {{}}\n---\n{AP}metadata: {{name: b, namespace: web}}\nspec: {{}}\n---\n{AP}metadata: {{name: mesh, namespace: istio-system}}\nspec: {{action: DENY, rules: [{{from: [{{source: {{namespaces: [legacy]}}}}]}}]}}\n"
    );
    let imp = import(&text, &opts(false));
    assert_eq!(
        rendered(&imp, false),
        ["warning: input: policies of 2 namespaces (shop, web) imported into one document: in Istio a policy applies only to the workloads of its own namespace, in svidgate to every workload whose filter loads the document; import one namespace at a time (--namespace) and load each document only in that namespace's filters"]
    );
    let imp = import(
        &text,
        &ImportOptions {
            namespace: Some("web".into()),
            ..opts(false)
        },
    );
    let names: Vec<&str> = imp
        .document
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["web.b", "istio-system.mesh"]);
    assert_eq!(
        rendered(&imp, false),
        [
            r#"note: AuthorizationPolicy shop/a (document 1): skipped: namespace "shop" is not the one imported ("web")"#
        ]
    );
}

#[test]
fn invalid_input_is_reported() {
    let cases = [
        ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: x}\n", "error: AuthorizationPolicy (document 1): metadata.name: missing or empty (null)"),
        ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: PERMIT}\n", r#"error: AuthorizationPolicy a (document 1): spec.action: unknown action: expected ALLOW, DENY, AUDIT or CUSTOM ("PERMIT")"#),
        ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{to: [{operation: {ports: [\"http\"]}}]}]}\n", r#"error: AuthorizationPolicy a (document 1): spec.rules[0].to[0].operation.ports[0]: not a port number (1-65535) ("http")"#),
        ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, annotations: {istio.io/dry-run: \"yes\"}}\n", r#"error: AuthorizationPolicy a (document 1): metadata.annotations[istio.io/dry-run]: must be "true" or "false" ("yes")"#),
        ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{from: [{source: {principals: a}}]}]}\n", r#"error: AuthorizationPolicy a (document 1): spec.rules[0].from[0].source.principals: must be a list of strings ("a")"#),
        ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{when: [{key: source.namespace}]}]}\n", r#"error: AuthorizationPolicy a (document 1): spec.rules[0].when[0]: a condition needs values or notValues ({"key":"source.namespace"})"#),
        ("just a string\n", "error: document 1: not a Kubernetes resource (no `kind`)"),
    ];
    for (text, want) in cases {
        let imp = import(text, &opts(true));
        assert_eq!(rendered(&imp, true), [want], "{text}");
        assert_eq!(imp.failure(true), Some(Failure::Invalid));
        assert_eq!(imp.count(Kind::Invalid), 1);
    }
    assert!(convert("a: [", &opts(false))
        .unwrap_err()
        .to_string()
        .starts_with("document 1: "));
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(convert(&deep, &opts(false))
        .unwrap_err()
        .to_string()
        .starts_with("input too large"));
    // Output the engine rejects.
    let text = format!("{AP}metadata: {{name: a, namespace: n}}\nspec: {{rules: [{{from: [{{source: {{principals: [\"cluster.local/ns/*/sa/x\"]}}}}]}}]}}\n");
    let imp = import(&text, &opts(false));
    assert_eq!(imp.failure(false), Some(Failure::Rejected));
    assert!(imp
        .check()
        .unwrap_err()
        .to_string()
        .contains("wildcard '*' is only allowed at the start or the end"));
}

#[test]
fn lists_and_other_resources() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: security.istio.io/v1\n  kind: AuthorizationPolicy\n  metadata: {name: a, namespace: n}\n  spec: {action: DENY, rules: [{from: [{source: {principals: ['*']}}]}]}\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {name: vs}\n";
    let imp = import(text, &opts(false));
    assert_eq!(
        rendered(&imp, false),
        ["note: document 1, items[1]: skipped VirtualService (networking.istio.io/v1): not an Istio AuthorizationPolicy"]
    );
    assert_eq!(imp.document.policies.len(), 1);
    assert_eq!(imp.document.policies[0].name, "n.a");
}

#[test]
fn when_keys() {
    use svidgate_core::policy::import::unsupported_when_key;
    for ok in [
        "request.headers[x-a]",
        "source.principal",
        "source.namespace",
        "source.serviceAccount",
        "destination.port",
        "connection.sni",
    ] {
        assert_eq!(unsupported_when_key(ok), None, "{ok}");
    }
    for bad in [
        "request.headers[]",
        "request.headers",
        "request.auth.principal",
        "request.auth.claims[groups]",
        "source.ip",
        "remote.ip",
        "destination.ip",
        "experimental.envoy.filters.network.mysql_proxy[db.table]",
    ] {
        assert!(unsupported_when_key(bad).is_some(), "{bad}");
    }
}
