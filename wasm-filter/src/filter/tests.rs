//! Adapter tests over the fake host.

use super::*;
use crate::fake::FakeHost;
use crate::metrics;
use crate::metrics::{DENIED, DENIED_HEADER, DENIED_HOST, DENIED_METHOD, DENIED_PATH};

#[test]
fn bad_configuration_is_logged_counted_and_refused() {
    let cases: [(&[u8], &str); 4] = [
        (b"", "plugin configuration is empty"),
        (b"{not json", "not valid JSON"),
        (
            br#"{"filter": {"denyStatus": 99}}"#,
            "filter.denyStatus: must be an HTTP status code from 400 to 599 (99)",
        ),
        (
            br#"{"filter": {"bogus": true}}"#,
            "filter.bogus: unknown key (true)",
        ),
    ];
    for (bytes, want) in cases {
        let host = FakeHost::default();
        let m = Metrics::define(&host);
        let err = Filter::configure(&host, bytes, m).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        assert_eq!(host.count(metrics::CONFIG_ERRORS), 1);
        let logs = host.logs();
        assert!(
            logs.iter()
                .any(|(l, msg)| *l == Level::Error && msg.contains(want)),
            "{logs:?}"
        );
    }
}

#[test]
fn unconfigured_http_denies_with_default_reply() {
    let host = FakeHost::default();
    let m = Metrics::define(&host);
    assert_eq!(deny_unconfigured_http(&host, &m), Outcome::Stop);
    assert_eq!(
        *host.local_reply.borrow(),
        Some((403, b"RBAC: access denied".to_vec()))
    );
    assert_eq!(host.count(metrics::DENIED), 1);
}

#[test]
fn unconfigured_connection_closes_once() {
    let host = FakeHost::default();
    let m = Metrics::define(&host);
    let mut st = ConnState::Undecided;
    assert_eq!(
        deny_unconfigured_connection(&host, &m, &mut st),
        Outcome::Stop
    );
    assert_eq!(
        deny_unconfigured_connection(&host, &m, &mut st),
        Outcome::Stop
    );
    assert!(*host.closed.borrow());
    assert_eq!(st, ConnState::Denied);
    assert_eq!(host.count(metrics::DENIED), 1);
}

#[test]
fn path_query_and_fragment_are_dropped() {
    for (input, want) in [
        ("/a/b", "/a/b"),
        ("/a/b?x=1", "/a/b"),
        ("/a#f", "/a"),
        ("/?", "/"),
        ("", ""),
        ("?q", ""),
    ] {
        assert_eq!(path_without_query(input), want);
    }
}

#[test]
fn peers_are_described_for_logs() {
    let id = svidgate_core::SpiffeId::parse("spiffe://td/ns/a/sa/b").unwrap();
    assert_eq!(describe_peer(&Peer::Identity(id)), "spiffe://td/ns/a/sa/b");
    assert_eq!(
        describe_peer(&Peer::None(NoIdentity::NotMtls)),
        "an unidentified peer (not mTLS)"
    );
}

// ---- With the policy engine --------------------------------------------------------------

const FRONTEND: &str = "spiffe://cluster.local/ns/web/sa/frontend";
const LEGACY: &str = "spiffe://cluster.local/ns/legacy/sa/old";
const OTHER: &str = "spiffe://cluster.local/ns/other/sa/x";

fn policy(filter: serde_json::Value) -> Vec<u8> {
    serde_json::json!({
        "trustDomain": "cluster.local",
        "policies": [
            {"name": "deny-legacy", "action": "DENY",
             "rules": [{"from": [{"source": {"namespaces": ["legacy"]}}]}]},
            {"name": "frontend", "action": "ALLOW",
             "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/web/sa/frontend"]}}],
                        "to": [{"operation": {"paths": ["/api/*"]}}]}]},
            {"name": "tenant", "action": "ALLOW",
             "rules": [{"from": [{"source": {"principals": [FRONTEND]}}],
                        "when": [{"key": "request.headers[x-tenant]", "values": ["blue"]}]}]},
            {"name": "shadow", "action": "DENY", "dryRun": true,
             "rules": [{"to": [{"operation": {"paths": ["/api/admin/*"]}}]}]}
        ],
        "filter": filter
    })
    .to_string()
    .into_bytes()
}

fn configured(filter: serde_json::Value) -> (FakeHost, Filter) {
    let host = FakeHost::default();
    let m = Metrics::define(&host);
    let f = Filter::configure(&host, &policy(filter), m).unwrap();
    (host, f)
}

/// A non-strict HTTP request from `peer` (a URI SAN, or None for no mTLS).
fn request(host: &FakeHost, peer: Option<&str>, method: &str, path: &str) {
    match peer {
        Some(id) => {
            host.set_property(crate::peer::PROP_MTLS, &[1]);
            host.set_property(crate::peer::PROP_URI_SAN, id.as_bytes());
        }
        None => host.set_property(crate::peer::PROP_MTLS, &[0]),
    }
    host.add_header(":method", method);
    host.add_header(":path", path);
    host.add_header(":authority", "svc.test");
}

fn lax() -> serde_json::Value {
    serde_json::json!({"strict": false})
}

#[test]
fn allowed_request_gets_the_verified_identity_header() {
    let (host, f) = configured(lax());
    request(&host, Some(FRONTEND), "GET", "/api/x?debug=1");
    host.add_header(
        "x-spiffe-peer-id",
        "spiffe://cluster.local/ns/admin/sa/root",
    );
    host.add_header("x-spiffe-peer-id", "second copy");
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    assert_eq!(
        host.header_values("x-spiffe-peer-id"),
        vec![FRONTEND.to_owned()]
    );
    assert!(host.local_reply.borrow().is_none());
    assert_eq!(host.count(metrics::ALLOWED), 1);
    assert_eq!(host.count("svidgate_policy.frontend.allowed"), 1);
    assert_eq!(host.count(metrics::DENIED), 0);
}

#[test]
fn denied_request_gets_the_configured_local_reply() {
    let (host, f) = configured(serde_json::json!({
        "strict": false, "denyStatus": 401, "denyBody": "nope"
    }));
    request(&host, Some(LEGACY), "GET", "/api/x");
    host.add_header("x-spiffe-peer-id", FRONTEND);
    assert_eq!(f.on_http_request_headers(&host), Outcome::Stop);
    assert_eq!(*host.local_reply.borrow(), Some((401, b"nope".to_vec())));
    let state = host.decision_state.borrow().clone().unwrap();
    assert!(
        state.starts_with("svidgate denied: policy=deny-legacy rule=0"),
        "{state}"
    );
    assert_eq!(host.count(metrics::DENIED), 1);
    assert_eq!(host.count("svidgate_policy.deny-legacy.denied"), 1);
    let logs = host.logs();
    assert!(
        logs.iter()
            .any(|(l, m)| *l == Level::Info
                && m.contains(&format!("denied GET /api/x from {LEGACY}")))
    );
    assert!(logs
        .iter()
        .any(|(l, m)| *l == Level::Debug && m.contains("policy=deny-legacy")));
}

#[test]
fn http_decision_table() {
    // (peer, method, path, extra header, allowed?)
    type Case<'a> = (
        Option<&'a str>,
        &'a str,
        &'a str,
        Option<(&'a str, &'a str)>,
        bool,
    );
    let cases: &[Case] = &[
        (Some(FRONTEND), "GET", "/api/a", None, true),
        (Some(FRONTEND), "POST", "/api/a?x", None, true),
        (Some(FRONTEND), "GET", "/other", None, false),
        (
            Some(FRONTEND),
            "GET",
            "/other",
            Some(("x-tenant", "blue")),
            true,
        ),
        (
            Some(FRONTEND),
            "GET",
            "/other",
            Some(("x-tenant", "red")),
            false,
        ),
        (Some(LEGACY), "GET", "/api/a", None, false),
        (Some(OTHER), "GET", "/api/a", None, false),
        (
            Some("spiffe://cluster.local/a//b"),
            "GET",
            "/api/a",
            None,
            false,
        ),
        (Some("not a uri"), "GET", "/api/a", None, false),
        (None, "GET", "/api/a", None, false),
    ];
    for &(peer, method, path, extra, allowed) in cases {
        let (host, f) = configured(lax());
        request(&host, peer, method, path);
        if let Some((n, v)) = extra {
            host.add_header(n, v);
        }
        let want = if allowed {
            Outcome::Continue
        } else {
            Outcome::Stop
        };
        assert_eq!(
            f.on_http_request_headers(&host),
            want,
            "{peer:?} {method} {path} {extra:?}"
        );
    }
}

#[test]
fn identity_counters() {
    let (host, f) = configured(lax());
    for peer in [None, Some("bad id"), Some(FRONTEND)] {
        request(&host, peer, "GET", "/api/a");
        f.on_http_request_headers(&host);
    }
    assert_eq!(host.count(metrics::NO_IDENTITY), 1);
    assert_eq!(host.count(metrics::INVALID_IDENTITY), 1);
}

#[test]
fn dry_run_never_changes_the_outcome() {
    let (host, f) = configured(lax());
    request(&host, Some(FRONTEND), "GET", "/api/admin/users");
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    assert_eq!(host.count(metrics::DRY_RUN_DENIED), 1);
    assert_eq!(host.count(metrics::ALLOWED), 1);
    assert!(host
        .logs()
        .iter()
        .any(|(l, m)| *l == Level::Info && m.contains("dry-run would deny GET /api/admin/users")));
    let (host, f) = configured(lax());
    request(&host, Some(FRONTEND), "GET", "/api/users");
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    assert_eq!(host.count(metrics::DRY_RUN_ALLOWED), 1);
}

#[test]
fn disabled_identity_header_is_left_alone() {
    let (host, f) = configured(serde_json::json!({"strict": false, "identityHeader": ""}));
    request(&host, Some(FRONTEND), "GET", "/api/a");
    host.add_header("x-spiffe-peer-id", "client value");
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    assert_eq!(
        host.header_values("x-spiffe-peer-id"),
        vec!["client value".to_owned()]
    );
}

#[test]
fn custom_identity_header_is_replaced_and_policy_sees_the_verified_value() {
    // A `when` on the identity header sees what the upstream will see, not the client's copy.
    let host = FakeHost::default();
    let cfg = serde_json::json!({
        "trustDomain": "cluster.local",
        "policies": [{"name": "by-header", "action": "ALLOW", "rules": [{"when": [
            {"key": "request.headers[x-peer]", "values": [FRONTEND]}]}]}],
        "filter": {"strict": false, "identityHeader": "X-Peer"}
    });
    let f = Filter::configure(&host, cfg.to_string().as_bytes(), Metrics::define(&host)).unwrap();
    request(&host, Some(OTHER), "GET", "/");
    host.add_header("x-peer", FRONTEND);
    assert_eq!(
        f.on_http_request_headers(&host),
        Outcome::Stop,
        "spoofed header must not count"
    );
    let host2 = FakeHost::default();
    request(&host2, Some(FRONTEND), "GET", "/");
    assert_eq!(f.on_http_request_headers(&host2), Outcome::Continue);
    assert_eq!(host2.header_values("x-peer"), vec![FRONTEND.to_owned()]);
}

#[test]
fn unidentified_allowed_request_loses_any_incoming_identity_header() {
    // No ALLOW policy: everyone is allowed, but nobody may claim an identity by header.
    let host = FakeHost::default();
    let cfg = br#"{"trustDomain": "cluster.local", "policies": [], "filter": {"strict": false}}"#;
    let f = Filter::configure(&host, cfg, Metrics::define(&host)).unwrap();
    request(&host, None, "GET", "/");
    host.add_header("x-spiffe-peer-id", FRONTEND);
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    assert!(host.header_values("x-spiffe-peer-id").is_empty());
}

#[test]
fn host_failures_fail_closed() {
    // Unwritable identity header: deny rather than forward a spoofable request.
    let (host, f) = configured(lax());
    request(&host, Some(FRONTEND), "GET", "/api/a");
    *host.fail_header_writes.borrow_mut() = true;
    assert_eq!(f.on_http_request_headers(&host), Outcome::Stop);
    assert_eq!(host.local_reply.borrow().as_ref().map(|r| r.0), Some(403));
    // Unreadable request attributes: deny.
    let (host, f) = configured(lax());
    request(&host, Some(FRONTEND), "GET", "/api/a");
    *host.fail_header_reads.borrow_mut() = true;
    assert_eq!(f.on_http_request_headers(&host), Outcome::Stop);
    assert_eq!(host.count(metrics::DENIED), 1);
    // A non-UTF-8 path: deny.
    let (host, f) = configured(lax());
    request(&host, Some(FRONTEND), "GET", "/api/a");
    host.headers.borrow_mut().retain(|(n, _)| n != ":path");
    host.headers
        .borrow_mut()
        .push((":path".into(), b"/api/\xff".to_vec()));
    assert_eq!(f.on_http_request_headers(&host), Outcome::Stop);
    // Peer properties failing: no identity, denied by the ALLOW policies.
    let (host, f) = configured(lax());
    request(&host, Some(FRONTEND), "GET", "/api/a");
    host.fail_property(crate::peer::PROP_URI_SAN);
    assert_eq!(f.on_http_request_headers(&host), Outcome::Stop);
    assert_eq!(host.count(metrics::NO_IDENTITY), 1);
}

#[test]
fn strict_mode_without_certificate_denies() {
    // Strict (the default) needs the certificate; a URI SAN alone is not enough.
    let (host, f) = configured(serde_json::json!({}));
    request(&host, Some(FRONTEND), "GET", "/api/a");
    assert_eq!(f.on_http_request_headers(&host), Outcome::Stop);
}

fn network_policy(host: &FakeHost) -> Filter {
    let doc = serde_json::json!({
        "trustDomain": "cluster.local",
        "policies": [
            {"name": "deny-legacy", "action": "DENY",
             "rules": [{"from": [{"source": {"namespaces": ["legacy"]}}]}]},
            {"name": "clients", "action": "ALLOW",
             "rules": [{"from": [{"source": {"principals": [FRONTEND]}}]}]}
        ],
        "filter": {"strict": false}
    });
    Filter::configure(host, doc.to_string().as_bytes(), Metrics::define(host)).unwrap()
}

/// The connection on `host` is mTLS with the frontend's certificate.
fn frontend_peer(host: &FakeHost) {
    host.set_property(crate::peer::PROP_MTLS, &[1]);
    host.set_property(crate::peer::PROP_URI_SAN, FRONTEND.as_bytes());
}

#[test]
fn network_mode_decides_once_on_first_data() {
    let host = FakeHost::default();
    let f = network_policy(&host);
    frontend_peer(&host);
    let mut st = ConnState::default();
    assert_eq!(f.on_downstream_data(&host, &mut st), Outcome::Continue);
    assert_eq!(st, ConnState::Allowed);
    // Later data is not re-evaluated (and not re-counted).
    host.set_property(crate::peer::PROP_URI_SAN, LEGACY.as_bytes());
    assert_eq!(f.on_downstream_data(&host, &mut st), Outcome::Continue);
    assert_eq!(host.count(metrics::ALLOWED), 1);
    assert!(!*host.closed.borrow());

    let host = FakeHost::default();
    let f = network_policy(&host);
    host.set_property(crate::peer::PROP_MTLS, &[1]);
    host.set_property(crate::peer::PROP_URI_SAN, LEGACY.as_bytes());
    let mut st = ConnState::default();
    assert_eq!(f.on_downstream_data(&host, &mut st), Outcome::Stop);
    assert!(*host.closed.borrow());
    assert_eq!(f.on_downstream_data(&host, &mut st), Outcome::Stop);
    assert_eq!(host.count(metrics::DENIED), 1);
    assert!(
        host.local_reply.borrow().is_none(),
        "no HTTP reply in network mode"
    );
}

#[test]
fn network_mode_sees_no_http_fields() {
    // An ALLOW rule that needs a path never matches in network mode.
    let host = FakeHost::default();
    frontend_peer(&host);
    let doc = serde_json::json!({
        "trustDomain": "cluster.local",
        "policies": [{"name": "p", "action": "ALLOW", "rules": [{
            "from": [{"source": {"principals": [FRONTEND]}}],
            "to": [{"operation": {"paths": ["/api/*"]}}]}]}],
        "filter": {"strict": false}
    });
    let g = Filter::configure(&host, doc.to_string().as_bytes(), Metrics::define(&host)).unwrap();
    assert_eq!(
        g.on_downstream_data(&host, &mut ConnState::default()),
        Outcome::Stop
    );
}

#[test]
fn network_mode_passes_port_and_sni() {
    let host = FakeHost::default();
    let doc = serde_json::json!({
        "trustDomain": "cluster.local",
        "policies": [{"name": "p", "action": "ALLOW", "rules": [{
            "from": [{"source": {"principals": [FRONTEND]}}],
            "to": [{"operation": {"ports": ["5432"]}}],
            "when": [{"key": "connection.sni", "values": ["db.test"]}]}]}],
        "filter": {"strict": false}
    });
    let f = Filter::configure(&host, doc.to_string().as_bytes(), Metrics::define(&host)).unwrap();
    frontend_peer(&host);
    host.set_property(crate::peer::PROP_DESTINATION_PORT, &5432u64.to_le_bytes());
    host.set_property(crate::peer::PROP_SNI, b"db.test");
    assert_eq!(
        f.on_downstream_data(&host, &mut ConnState::default()),
        Outcome::Continue
    );
    host.set_property(crate::peer::PROP_SNI, b"other.test");
    assert_eq!(
        f.on_downstream_data(&host, &mut ConnState::default()),
        Outcome::Stop
    );
    host.set_property(crate::peer::PROP_SNI, b"db.test");
    host.set_property(crate::peer::PROP_DESTINATION_PORT, &5433u64.to_le_bytes());
    assert_eq!(
        f.on_downstream_data(&host, &mut ConnState::default()),
        Outcome::Stop
    );
}

#[test]
fn configuration_summary_and_policy_counters() {
    let (host, _f) = configured(lax());
    assert!(host
        .logs()
        .iter()
        .any(|(l, m)| *l == Level::Info && m.contains("configured 4 policies")));
    let names = host.defined_counters();
    for p in ["deny-legacy", "frontend", "tenant", "shadow"] {
        assert!(
            names.contains(&format!("svidgate_policy.{p}.allowed")),
            "{names:?}"
        );
    }
}

// ---- Host calls per request (each costs ~1.2-1.5 µs of Envoy CPU: see docs/bench.md) ------

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A strict-mode filter over `policies` whose verdict for [`DIGEST`] (FRONTEND) is cached,
/// as it is after the first request of a connection's certificate.
fn strict_cached(policies: serde_json::Value) -> (FakeHost, Filter) {
    let host = FakeHost::default();
    let doc = serde_json::json!({"trustDomain": "cluster.local", "policies": policies});
    let f = Filter::configure(&host, doc.to_string().as_bytes(), Metrics::define(&host)).unwrap();
    let id = svidgate_core::SpiffeId::parse(FRONTEND).unwrap();
    f.cache.borrow_mut().insert(DIGEST.to_owned(), Ok(id));
    host.set_property(crate::peer::PROP_MTLS, &[1]);
    host.set_property(crate::peer::PROP_PEER_DIGEST, DIGEST.as_bytes());
    host.add_header(":method", "GET");
    host.add_header(":path", "/api/x?q=1");
    host.add_header(":authority", "svc.test");
    host.add_header("x-spiffe-peer-id", "spoofed");
    host.add_header("x-spiffe-peer-id", "spoofed again");
    host.reset_calls();
    (host, f)
}

fn principals_only() -> serde_json::Value {
    serde_json::json!([{"name": "frontend", "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [FRONTEND]}}]}]}])
}

#[test]
fn allowed_request_with_a_principals_only_policy_makes_two_host_calls() {
    // The digest and the header; the two increments are tallied in the VM by Envoy's host
    // (added to Envoy's counters on the root's tick, no host call per request). (Plus Envoy's
    // context creation and, with `mode: auto`, the `request.protocol` probe in the glue,
    // outside the adapter.) Before: 11 here (mtls, method, path, authority, SNI, port,
    // remove + set header, two counters, digest), then 4 (with the two counter calls).
    let (host, f) = strict_cached(principals_only());
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    assert_eq!(
        host.calls(),
        vec![
            "property connection.sha256_peer_certificate_digest",
            "increment",
            "increment",
            "set_request_header x-spiffe-peer-id",
        ]
    );
    assert_eq!(
        host.header_values("x-spiffe-peer-id"),
        vec![FRONTEND.to_owned()]
    );
    assert_eq!(host.count(metrics::ALLOWED), 1);
    assert_eq!(host.count("svidgate_policy.frontend.allowed"), 1);
}

#[test]
fn allowed_request_with_a_method_and_path_policy_reads_only_those() {
    let (host, f) = strict_cached(serde_json::json!([{"name": "api", "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [FRONTEND]}}],
                   "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}]}]}]));
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    assert_eq!(
        host.calls(),
        vec![
            "property connection.sha256_peer_certificate_digest",
            "request_header :method",
            "request_header :path",
            "increment",
            "increment",
            "set_request_header x-spiffe-peer-id",
        ]
    );
}

#[test]
fn every_attribute_the_policy_reads_is_read() {
    let (host, f) = strict_cached(serde_json::json!([{"name": "all", "action": "ALLOW",
        "rules": [{"to": [{"operation": {"hosts": ["svc.test"], "ports": ["8443"]}}],
                   "when": [{"key": "connection.sni", "values": ["svc.test"]},
                            {"key": "request.headers[x-tenant]", "values": ["blue"]}]}]}]));
    host.set_property(crate::peer::PROP_DESTINATION_PORT, &8443u64.to_le_bytes());
    host.set_property(crate::peer::PROP_SNI, b"svc.test");
    host.add_header("x-tenant", "blue");
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    let calls = host.calls();
    for want in [
        "request_headers",
        "request_header :authority",
        "property connection.requested_server_name",
        "property destination.port",
    ] {
        assert!(calls.iter().any(|c| c == want), "{want}: {calls:?}");
    }
    assert!(
        !calls.iter().any(|c| c == "request_header :method"),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c == "request_header :path"),
        "{calls:?}"
    );
}

#[test]
fn denial_log_reads_method_and_path_only_on_the_deny_path() {
    // The policy does not read the path; the denial log line still names it.
    let (host, f) = strict_cached(serde_json::json!([{"name": "other", "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [OTHER]}}]}]}]));
    assert_eq!(f.on_http_request_headers(&host), Outcome::Stop);
    assert!(
        host.logs().iter().any(|(l, m)| *l == Level::Info
            && m.contains(&format!(
                "denied GET /api/x from {FRONTEND}: no ALLOW policy matched"
            ))),
        "{:?}",
        host.logs()
    );
    // Nothing is set on a deny (the request does not go upstream).
    let calls = host.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("set_request_header") || c.starts_with("remove_request_header")),
        "{calls:?}"
    );
}

#[test]
fn unidentified_allowed_request_removes_the_header_in_one_call() {
    let host = FakeHost::default();
    let cfg = br#"{"trustDomain": "cluster.local", "policies": []}"#;
    let f = Filter::configure(&host, cfg, Metrics::define(&host)).unwrap();
    host.set_property(crate::peer::PROP_MTLS, &[0]);
    host.add_header("x-spiffe-peer-id", FRONTEND);
    host.add_header("x-spiffe-peer-id", OTHER);
    host.reset_calls();
    assert_eq!(f.on_http_request_headers(&host), Outcome::Continue);
    assert!(host.header_values("x-spiffe-peer-id").is_empty());
    let calls = host.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.contains("request_header x-spiffe-peer-id"))
            .collect::<Vec<_>>(),
        vec!["remove_request_header x-spiffe-peer-id"],
        "{calls:?}"
    );
}

#[test]
fn network_mode_reads_port_and_sni_only_when_the_policy_does() {
    let host = FakeHost::default();
    let f = network_policy(&host);
    frontend_peer(&host);
    host.reset_calls();
    assert_eq!(
        f.on_downstream_data(&host, &mut ConnState::default()),
        Outcome::Continue
    );
    assert_eq!(
        host.calls(),
        vec![
            "property connection.uri_san_peer_certificate",
            "increment",
            "increment",
        ]
    );
}

/// A strict-cached request from FRONTEND with `method`, `path`, `authority` and `extra`
/// headers, against `policies`; returns the outcome and the host.
fn form_case(
    policies: serde_json::Value,
    filter: serde_json::Value,
    method: &str,
    path: &str,
    authority: &str,
    extra: &[(&str, &str)],
) -> (Outcome, FakeHost) {
    let host = FakeHost::default();
    let doc = serde_json::json!({"trustDomain": "cluster.local", "policies": policies,
                                 "filter": filter});
    let f = Filter::configure(&host, doc.to_string().as_bytes(), Metrics::define(&host)).unwrap();
    let id = svidgate_core::SpiffeId::parse(FRONTEND).unwrap();
    f.cache.borrow_mut().insert(DIGEST.to_owned(), Ok(id));
    host.set_property(crate::peer::PROP_MTLS, &[1]);
    host.set_property(crate::peer::PROP_PEER_DIGEST, DIGEST.as_bytes());
    host.add_header(":method", method);
    host.add_header(":path", path);
    host.add_header(":authority", authority);
    for (n, v) in extra {
        host.add_header(n, v);
    }
    host.reset_calls();
    (f.on_http_request_headers(&host), host)
}

fn deny_admin() -> serde_json::Value {
    serde_json::json!([{"name": "no-admin", "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/admin/*"], "methods": ["DELETE"],
                                          "hosts": ["admin.test"]}}]},
                  {"to": [{"operation": {"paths": ["/admin/*"]}}]},
                  {"to": [{"operation": {"methods": ["DELETE"]}}]},
                  {"to": [{"operation": {"hosts": ["admin.test"]}}]},
                  {"when": [{"key": "request.headers[x-tenant]", "values": ["evil"]}]}]}])
}

#[test]
fn ambiguous_attributes_are_refused_with_their_own_counter() {
    let none = serde_json::json!({});
    /// (method, path, authority, extra headers, counter)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("GET", "//admin/x", "svc.test", &[], DENIED_PATH),
        ("GET", "/public/../admin/x", "svc.test", &[], DENIED_PATH),
        ("GET", "/%61dmin/x", "svc.test", &[], DENIED_PATH),
        ("GET", "/admin%2Fx", "svc.test", &[], DENIED_PATH),
        ("GET", "/admin%2fx", "svc.test", &[], DENIED_PATH),
        ("GET", "/admin\\x", "svc.test", &[], DENIED_PATH),
        ("GET", "/admin;x/y", "svc.test", &[], DENIED_PATH),
        ("delete", "/x", "svc.test", &[], DENIED_METHOD),
        ("Delete", "/x", "svc.test", &[], DENIED_METHOD),
        ("GET", "/x", "svc.test,admin.test", &[], DENIED_HOST),
        ("GET", "/x", "admin..test", &[], DENIED_HOST),
        (
            "GET",
            "/x",
            "svc.test",
            &[("x-tenant", "good"), ("x-tenant", "evil")],
            DENIED_HEADER,
        ),
        (
            "GET",
            "/x",
            "svc.test",
            &[("x_tenant", "evil")],
            DENIED_HEADER,
        ),
    ];
    for (method, path, authority, extra, counter) in cases {
        let (outcome, host) = form_case(deny_admin(), none.clone(), method, path, authority, extra);
        assert_eq!(
            outcome,
            Outcome::Stop,
            "{method} {path} {authority} {extra:?}"
        );
        assert_eq!(host.count(counter), 1, "{path}: {:?}", host.counts());
        assert_eq!(host.count(DENIED), 1);
        assert_eq!(host.local_reply.borrow().as_ref().map(|r| r.0), Some(403));
    }
}

#[test]
fn normalized_hosts_and_joined_headers_reach_the_policy() {
    let none = serde_json::json!({});
    // A trailing dot, a port or upper case do not get around a DENY on hosts.
    for authority in [
        "admin.test.",
        "admin.test:8080",
        "ADMIN.Test",
        "Admin.TEST.:1",
    ] {
        let (outcome, host) = form_case(deny_admin(), none.clone(), "GET", "/x", authority, &[]);
        assert_eq!(outcome, Outcome::Stop, "{authority}");
        assert_eq!(host.count(DENIED_HOST), 0, "{authority}");
    }
    let (outcome, _) = form_case(deny_admin(), none.clone(), "GET", "/x", "svc.test:443", &[]);
    assert_eq!(outcome, Outcome::Continue);
    // With repeatedHeaders: join, the policy sees "good,evil" (Istio's view).
    let join = serde_json::json!({"repeatedHeaders": "join"});
    let suffix = serde_json::json!([{"name": "no-evil", "action": "DENY",
        "rules": [{"when": [{"key": "request.headers[x-tenant]", "values": ["*evil"]}]}]}]);
    let two = [("x-tenant", "good"), ("x-tenant", "evil")];
    let (outcome, host) = form_case(suffix.clone(), join.clone(), "GET", "/x", "h", &two);
    assert_eq!(outcome, Outcome::Stop);
    assert_eq!(host.count(DENIED_HEADER), 0);
    let (outcome, _) = form_case(suffix, join, "GET", "/x", "h", &[("x-tenant", "good")]);
    assert_eq!(outcome, Outcome::Continue);
    // Normal-form paths, upper-case methods and the query string pass.
    let path = "/public/a%20b/?next=//admin/../x";
    let good = [("x-tenant", "good")];
    let (outcome, host) = form_case(deny_admin(), none, "GET", path, "svc.test", &good);
    assert_eq!(outcome, Outcome::Continue, "{:?}", host.logs());
}

#[test]
fn identity_header_underscore_variants_are_removed_when_headers_are_read() {
    let none = serde_json::json!({});
    let spoof = "spiffe://cluster.local/ns/x/sa/spoof";
    let spoofs = [("x_spiffe_peer_id", spoof), ("x_spiffe-peer_id", spoof)];
    let (outcome, host) = form_case(deny_admin(), none, "GET", "/x", "svc.test", &spoofs);
    assert_eq!(outcome, Outcome::Continue);
    let left: Vec<String> = host
        .headers
        .borrow()
        .iter()
        .filter(|(n, _)| n.replace('_', "-") == "x-spiffe-peer-id")
        .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
        .collect();
    assert_eq!(left, vec![format!("x-spiffe-peer-id={FRONTEND}")]);
}

#[test]
fn attributes_the_policy_does_not_read_are_not_checked() {
    // A principals-only policy reads neither path nor method: no form check, no extra call.
    let none = serde_json::json!({});
    let ab = [("x-tenant", "a"), ("x-tenant", "b")];
    let (outcome, host) = form_case(
        principals_only(),
        none,
        "delete",
        "//admin/../x",
        "a,b",
        &ab,
    );
    assert_eq!(outcome, Outcome::Continue);
    assert!(!host.calls().iter().any(|c| c.starts_with("request_header")));
}
