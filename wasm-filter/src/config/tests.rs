use super::*;
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
    let doc = json!({"policies": [{"name": "a"}, {"action": "DENY"}, {"name": "b"}]});
    let Value::Object(map) = doc else {
        panic!("not an object")
    };
    assert_eq!(policy_names(&map), vec!["a".to_owned(), "b".to_owned()]);
}
