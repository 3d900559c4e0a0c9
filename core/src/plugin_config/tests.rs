use super::*;
use crate::http::RepeatedHeaders;
use serde_json::json;

#[test]
fn settings_defaults() {
    let s = parse_settings(&json!({})).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.identity_header.as_deref(), Some("x-spiffe-peer-id"));
    assert_eq!(s.deny_status, 403);
    assert_eq!(s.deny_body, "RBAC: access denied");
    assert!(s.strict);
    assert_eq!(s.mode, ModeSetting::Auto);
}

#[test]
fn settings_all_keys() {
    let s = parse_settings(&json!({
        "identityHeader": "X-Peer",
        "denyStatus": 401,
        "denyBody": "no",
        "strict": false,
        "mode": "network"
    }))
    .unwrap();
    assert_eq!(
        s,
        Settings {
            identity_header: Some("x-peer".into()),
            deny_status: 401,
            deny_body: "no".into(),
            strict: false,
            mode: ModeSetting::Network,
            ..Settings::default()
        }
    );
    assert_eq!(
        parse_settings(&json!({"identityHeader": ""}))
            .unwrap()
            .identity_header,
        None
    );
    assert_eq!(
        parse_settings(&json!({"mode": "http"})).unwrap().mode,
        ModeSetting::Http
    );
    assert_eq!(
        parse_settings(&json!({"mode": "auto"})).unwrap().mode,
        ModeSetting::Auto
    );
}

#[test]
fn settings_errors_name_field_and_value() {
    let cases = [
        (
            json!({"denyStatus": 200}),
            "filter.denyStatus: must be an HTTP status code from 400 to 599 (200)",
        ),
        (
            json!({"denyStatus": 600}),
            "filter.denyStatus: must be an HTTP status code from 400 to 599 (600)",
        ),
        (
            json!({"denyStatus": "403"}),
            "filter.denyStatus: must be an HTTP status code from 400 to 599 (\"403\")",
        ),
        (
            json!({"denyStatus": -1}),
            "filter.denyStatus: must be an HTTP status code from 400 to 599 (-1)",
        ),
        (
            json!({"denyBody": 1}),
            "filter.denyBody: must be a string (1)",
        ),
        (
            json!({"strict": "yes"}),
            "filter.strict: must be true or false (\"yes\")",
        ),
        (
            json!({"mode": "tcp"}),
            "filter.mode: must be \"auto\", \"http\" or \"network\" (\"tcp\")",
        ),
        (
            json!({"identityHeader": ":path"}),
            "filter.identityHeader: is not a valid HTTP header name (\":path\")",
        ),
        (
            json!({"identityHeader": "a b"}),
            "filter.identityHeader: is not a valid HTTP header name (\"a b\")",
        ),
        (
            json!({"identityHeader": "x\n"}),
            "filter.identityHeader: is not a valid HTTP header name (\"x\\n\")",
        ),
        (
            json!({"identityHeader": null}),
            "filter.identityHeader: must be a string (null)",
        ),
        (
            json!({"identity_header": "x"}),
            "filter.identity_header: unknown key (\"x\")",
        ),
        (json!([1]), "filter.: must be an object ([1])"),
    ];
    for (input, want) in cases {
        let err = parse_settings(&input).unwrap_err();
        assert_eq!(err.to_string(), want, "input {input}");
    }
    let long = "x".repeat(MAX_DENY_BODY + 1);
    assert!(parse_settings(&json!({ "denyBody": long })).is_err());
}

#[test]
fn document_shape_errors() {
    assert_eq!(parse(b"").unwrap_err(), ConfigError::Empty);
    assert_eq!(parse(b"  \n").unwrap_err(), ConfigError::Empty);
    assert!(matches!(parse(b"{").unwrap_err(), ConfigError::Json(_)));
    assert_eq!(
        parse(b"[]").unwrap_err(),
        ConfigError::NotAnObject("an array")
    );
    assert_eq!(
        parse(b"\"x\"").unwrap_err(),
        ConfigError::NotAnObject("a string")
    );
    // A bad `filter` section is reported before the policy is looked at.
    let err = parse(br#"{"filter": {"strict": 1}}"#).unwrap_err();
    assert_eq!(err.to_string(), "filter.strict: must be true or false (1)");
}

#[test]
fn policy_names_are_collected() {
    let cfg = PluginConfig::from_json(
        br#"{"trustDomain": "td", "policies": [
            {"name": "a", "action": "DENY", "rules": [{}]},
            {"name": "b", "rules": [{}]}]}"#,
    )
    .unwrap();
    assert_eq!(cfg.policy_names(), vec!["a".to_owned(), "b".to_owned()]);
}

#[test]
fn repeated_headers_and_limits_settings() {
    let s = parse_settings(&json!({"repeatedHeaders": "join"})).unwrap();
    assert_eq!(s.repeated_headers, RepeatedHeaders::Join);
    assert_eq!(Settings::default().repeated_headers, RepeatedHeaders::Deny);
    let s = parse_settings(&json!({"limits": {"maxPolicies": 2, "maxRules": 3,
        "maxValues": 4, "maxHeaderNames": 5}}))
    .unwrap();
    assert_eq!(
        s.limits,
        Limits {
            policies: 2,
            rules: 3,
            values: 4,
            header_names: 5
        }
    );
    for (input, want) in [
        (
            json!({"repeatedHeaders": "first"}),
            "filter.repeatedHeaders: must be \"deny\" or \"join\" (\"first\")",
        ),
        (
            json!({"limits": {"maxRules": 0}}),
            "filter.limits.maxRules: must be a whole number from 1 to 10000000 (0)",
        ),
        (
            json!({"limits": {"maxPolicy": 1}}),
            "filter.limits.maxPolicy: unknown key (1)",
        ),
        (json!({"limits": 5}), "filter.limits: must be an object (5)"),
    ] {
        assert_eq!(parse_settings(&input).unwrap_err().to_string(), want);
    }
}

fn doc_with(policies: usize, rules: usize, headers: usize) -> Value {
    let when: Vec<Value> = (0..headers)
        .map(|h| json!({"key": format!("request.headers[X-H{h}]"), "values": ["v"]}))
        .collect();
    let mut rule = json!({"from": [{"source": {"namespaces": ["a", "b"]}}],
                          "to": [{"operation": {"ports": [80]}}]});
    if headers > 0 {
        rule["when"] = Value::Array(when);
    }
    let policies: Vec<Value> = (0..policies)
        .map(|p| json!({"name": format!("p{p}"), "rules": vec![rule.clone(); rules]}))
        .collect();
    json!({"trustDomain": "td", "policies": policies})
}

#[test]
fn limits_are_enforced_with_a_clear_message() {
    let ok = |v: Value| PluginConfig::from_value(v).map(|_| ());
    assert!(ok(doc_with(3, 2, 2)).is_ok());
    // 3 policies, 6 rules, 6 rules × (2 namespaces + 1 port + 2 header values) = 30 values.
    for (limits, want) in [
        (
            json!({"maxPolicies": 2}),
            "the document has 3 policies, more than the limit of 2 (filter.limits.maxPolicies)",
        ),
        (
            json!({"maxRules": 5}),
            "the document has 6 rules, more than the limit of 5 (filter.limits.maxRules)",
        ),
        (
            json!({"maxValues": 29}),
            "the document has 30 values, more than the limit of 29 (filter.limits.maxValues)",
        ),
    ] {
        let mut v = doc_with(3, 2, 2);
        v["filter"] = json!({ "limits": limits });
        assert_eq!(ok(v).unwrap_err().to_string(), want);
    }
    let mut v = doc_with(3, 2, 2);
    v["filter"] = json!({"limits": {"maxValues": 30}});
    assert!(ok(v).is_ok());
    // Header names count once each, case-insensitively.
    assert_eq!(
        ok(doc_with(1, 1, 33)).unwrap_err().to_string(),
        "the document has 33 distinct request header names, more than the limit of 32 \
         (filter.limits.maxHeaderNames)"
    );
    assert!(ok(doc_with(1, 1, 32)).is_ok());
    let mut v = doc_with(1, 1, 33);
    v["filter"] = json!({"limits": {"maxHeaderNames": 40}});
    assert!(ok(v).is_ok());
    // The default cap on policies.
    let err = ok(doc_with(1001, 1, 0)).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Limit {
                key: "maxPolicies",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn yaml_and_json_give_the_same_plugin_config() {
    let json = br#"{"trustDomain": "td", "policies": [{"name": "a", "rules": [{}]}],
                    "filter": {"mode": "http", "strict": false}}"#;
    let yaml = "trustDomain: td\npolicies:\n- name: a\n  rules: [{}]\nfilter:\n  mode: http\n  strict: false\n";
    let a = PluginConfig::from_json(json).unwrap();
    let b = PluginConfig::from_yaml(yaml).unwrap();
    assert_eq!(a.settings, b.settings);
    assert_eq!(a.document, b.document);
    assert_eq!(a.settings.mode, ModeSetting::Http);
    assert!(PluginConfig::from_yaml("  \n").is_err());
    assert_eq!(
        PluginConfig::from_yaml("filter: {bogus: 1}\n")
            .unwrap_err()
            .to_string(),
        "filter.bogus: unknown key (1)"
    );
}

#[test]
fn oversized_and_deeply_nested_input_is_refused_before_parsing() {
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = PluginConfig::from_json(deep_json.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("nested more than 32 levels"),
        "{err}"
    );
    let deep_yaml = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = PluginConfig::from_yaml(&deep_yaml).unwrap_err();
    assert!(
        err.to_string().contains("nested more than 32 levels"),
        "{err}"
    );
    let mut block = String::new();
    for i in 0..2000 {
        block.push_str(&" ".repeat(i));
        block.push_str("a:\n");
    }
    let err = PluginConfig::from_yaml(&block).unwrap_err();
    assert!(
        err.to_string().contains("nested more than 32 levels"),
        "{err}"
    );
    let dashes = format!("{}x\n", "- ".repeat(50_000));
    assert!(PluginConfig::from_yaml(&dashes)
        .unwrap_err()
        .to_string()
        .contains("nested more than 32 levels"));
    let big = format!(
        "{{\"trustDomain\": \"td\", \"x\": \"{}\"}}",
        "a".repeat(crate::policy::MAX_DOCUMENT_BYTES)
    );
    let err = PluginConfig::from_json(big.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "more than the limit of {}",
            crate::policy::MAX_DOCUMENT_BYTES
        )),
        "{err}"
    );
    // Brackets inside strings and comments do not count.
    let quoted = format!(
        "trustDomain: td # {}\npolicies:\n- name: \"{}\"\n  rules: [{{}}]\n",
        "[".repeat(100),
        "{".repeat(100)
    );
    assert!(PluginConfig::from_yaml(&quoted).is_ok());
    let quoted = format!(
        r#"{{"trustDomain": "td", "policies": [{{"name": "{}\"[", "rules": [{{}}]}}]}}"#,
        "[".repeat(100)
    );
    assert!(PluginConfig::from_json(quoted.as_bytes()).is_ok());
}

/// The filter's path keeps large exact sets as spans of the configuration text: values as
/// written, rewritten (alias and `cluster.local` to the local trust domain), unescaped and
/// duplicated all decide as the owned path does.
#[test]
fn parse_owned_decides_like_the_owned_path_on_a_large_allowlist() {
    use crate::policy::{EvalMode, Peer, Request};
    use crate::spiffe_id::SpiffeId;
    let text = include_str!("../../../fuzz/seeds/policy_document/allowlist.json");
    let owned = PluginConfig::from_json(text.as_bytes())
        .and_then(|c| c.compile())
        .unwrap();
    let filter = parse_owned(text.as_bytes().to_vec()).unwrap();
    let allowed = |policy: &CompiledPolicy, id: &str, path: &str| {
        let peer = Peer::Identity(SpiffeId::parse(id).unwrap());
        let mut req = Request::http(peer, "GET", path);
        req.host = Some("example.org");
        policy.evaluate(&req, EvalMode::Http).allowed()
    };
    for (id, want) in [
        ("spiffe://prod.example/ns/team-3/sa/w3", true),
        ("spiffe://cluster.local/ns/team-3/sa/w3", true),
        ("spiffe://prod.example/ns/web/sa/frontend", true),
        ("spiffe://cluster.local/ns/web/sa/frontend", true),
        ("spiffe://prod.example/ns/test/sa/a", true),
        ("spiffe://prod.example/ns/prefix/sa/any", true),
        ("spiffe://prod.example/ns/web/sa/suffix", true),
        // Listed, but not in the namespaces the rule also requires.
        ("spiffe://other.td/ns/x/sa/y", false),
        ("spiffe://prod.example/ns/team-3/sa/w4", false),
        ("spiffe://prod.example/ns/team-10/sa/w10", false),
    ] {
        for policy in [&owned, &filter.policy] {
            assert_eq!(allowed(policy, id, "/api"), want, "{id}");
        }
    }
    // The DENY policy's notPrincipals leaves listed peers alone on /admin.
    let peer = "spiffe://prod.example/ns/team-1/sa/w1";
    assert!(allowed(&owned, peer, "/admin/x") && allowed(&filter.policy, peer, "/admin/x"));
    let stranger = "spiffe://prod.example/ns/web/sa/stranger";
    assert!(!allowed(&owned, stranger, "/admin/x"));
    assert!(!allowed(&filter.policy, stranger, "/admin/x"));
    // The same errors too.
    for bad in [
        &b""[..],
        b"  ",
        b"\xff",
        b"[]",
        b"{\"trustDomain\": 1}",
        b"{\"a\": 1, \"a\": 2}",
    ] {
        let owned = PluginConfig::from_json(bad).and_then(|c| c.compile()).err();
        assert_eq!(parse_owned(bad.to_vec()).err(), owned);
        assert!(owned.is_some());
    }
}
