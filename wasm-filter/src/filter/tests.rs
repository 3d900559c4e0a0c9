//! Adapter tests over the fake host.

use super::*;
use crate::fake::FakeHost;
use crate::metrics;

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
