//! `CompiledPolicy::attributes`: which request attributes a policy reads (a table over every
//! field and `when` key), and the proof that the others cannot change a decision, on the
//! example policies in `deploy/examples` (the semantics tests run the same check on theirs).

#[path = "support/reduced.rs"]
mod reduced;

use svidgate_core::policy::{Attributes, CompiledPolicy, EvalMode};

fn compile(policies: &str) -> CompiledPolicy {
    let doc = format!("trustDomain: cluster.local\npolicies:\n{policies}");
    CompiledPolicy::from_yaml(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

const NONE: Attributes = Attributes {
    method: false,
    path: false,
    host: false,
    port: false,
    sni: false,
    headers: false,
};

#[test]
fn attributes_table() {
    let rule = |r: &str| format!("  - name: p\n    action: DENY\n    rules: [{r}]\n");
    let cases: &[(&str, Attributes)] = &[
        ("{from: [{source: {principals: [\"cluster.local/ns/a/sa/b\"]}}]}", NONE),
        ("{from: [{source: {namespaces: [a], notTrustDomains: [x.td]}}]}", NONE),
        ("{to: [{operation: {methods: [GET]}}]}", Attributes { method: true, ..NONE }),
        ("{to: [{operation: {notMethods: [GET]}}]}", Attributes { method: true, ..NONE }),
        ("{to: [{operation: {paths: [\"/a/*\"]}}]}", Attributes { path: true, ..NONE }),
        ("{to: [{operation: {notPaths: [\"/a\"]}}]}", Attributes { path: true, ..NONE }),
        ("{to: [{operation: {hosts: [a.test]}}]}", Attributes { host: true, ..NONE }),
        ("{to: [{operation: {notHosts: [a.test]}}]}", Attributes { host: true, ..NONE }),
        ("{to: [{operation: {ports: [\"80\"]}}]}", Attributes { port: true, ..NONE }),
        ("{to: [{operation: {notPorts: [\"80\"]}}]}", Attributes { port: true, ..NONE }),
        (
            "{when: [{key: destination.port, values: [\"80\"]}]}",
            Attributes { port: true, ..NONE },
        ),
        (
            "{when: [{key: connection.sni, notValues: [a.test]}]}",
            Attributes { sni: true, ..NONE },
        ),
        (
            "{when: [{key: \"request.headers[x-a]\", values: [b]}]}",
            Attributes { headers: true, ..NONE },
        ),
        (
            "{when: [{key: source.principal, values: [\"cluster.local/ns/a/sa/b\"]}, {key: source.namespace, values: [a]}]}",
            NONE,
        ),
        (
            "{to: [{operation: {methods: [GET], paths: [\"/\"]}}, {operation: {hosts: [h]}}]}",
            Attributes { method: true, path: true, host: true, ..NONE },
        ),
    ];
    for (r, want) in cases {
        let c = compile(&rule(r));
        assert_eq!(c.attributes(), *want, "{r}");
        // The same rule in an ALLOW policy, and in a dry-run one, reads the same.
        let allow = rule(r).replace("DENY", "ALLOW");
        assert_eq!(compile(&allow).attributes(), *want, "ALLOW {r}");
        let dry = rule(r).replace("action: DENY", "action: DENY\n    dryRun: true");
        assert_eq!(compile(&dry).attributes(), *want, "dry-run {r}");
    }
    // Fields are collected across policies and rules.
    let c = compile(
        "  - name: a\n    rules: [{to: [{operation: {methods: [GET]}}]}]\n  - name: d\n    action: DENY\n    rules: [{from: [{source: {namespaces: [x]}}]}, {when: [{key: connection.sni, values: [s]}]}]\n",
    );
    assert_eq!(
        c.attributes(),
        Attributes {
            method: true,
            sni: true,
            ..NONE
        }
    );
    // No policies: nothing.
    let empty = CompiledPolicy::from_yaml("trustDomain: cluster.local\n").unwrap();
    assert_eq!(empty.attributes(), NONE);
}

#[test]
fn network_mode_reads_port_and_sni_only() {
    let all = Attributes {
        method: true,
        path: true,
        host: true,
        port: true,
        sni: true,
        headers: true,
    };
    assert_eq!(all.for_mode(EvalMode::Http), all);
    assert_eq!(
        all.for_mode(EvalMode::Network),
        Attributes {
            port: true,
            sni: true,
            ..NONE
        }
    );
}

#[test]
fn unread_attributes_never_change_a_decision_on_the_examples() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples");
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let policy =
            CompiledPolicy::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        reduced::assert_reduction_is_exact(&policy, &text, 2000, 0x5eed + seen);
        seen += 1;
    }
    assert!(seen >= 5, "examples found: {seen}");
}

#[test]
fn unread_attributes_never_change_a_decision_on_mixed_policies() {
    // One document that uses every field, in DENY, ALLOW and dry-run policies, plus a
    // principals-only one: the reduction keeps exactly what each reads.
    let docs = [
        r#"
  - name: deny-admin
    action: DENY
    rules:
      - to: [{operation: {paths: ["/admin/*"], notMethods: [GET]}}]
      - when: [{key: "request.headers[x-debug]", values: ["1"]}]
  - name: web
    rules:
      - from: [{source: {namespaces: [web]}}]
        to: [{operation: {hosts: ["*.test"], ports: ["8080"]}}]
      - from: [{source: {principals: ["cluster.local/ns/batch/sa/job"]}}]
        when: [{key: connection.sni, values: [db.test]}, {key: destination.port, notValues: ["5432"]}]
  - name: shadow
    action: DENY
    dryRun: true
    rules: [{to: [{operation: {methods: [POST], notPaths: ["/api/*"]}}]}]
"#,
        r#"
  - name: only-principals
    rules: [{from: [{source: {principals: ["cluster.local/ns/web/sa/frontend", "*/sa/job"]}}]}]
  - name: deny-legacy
    action: DENY
    rules: [{from: [{source: {namespaces: [legacy]}}]}]
"#,
    ];
    for (i, d) in docs.iter().enumerate() {
        let doc =
            format!("trustDomain: cluster.local\ntrustDomainAliases: [old.td]\npolicies:\n{d}");
        let policy = CompiledPolicy::from_yaml(&doc).unwrap();
        reduced::assert_reduction_is_exact(&policy, &doc, 5000, 42 + i as u64);
    }
}
