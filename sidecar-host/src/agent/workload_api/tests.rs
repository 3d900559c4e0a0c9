//! Workload API tests: the pure content functions, and the stream state with a real tonic
//! client over a Unix socket in a tempdir (push on change, several streams, client going away,
//! refusals, shutdown). Independent clients (rust-spiffe) are in the e2e tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use svidgate_core::TrustDomain;
use svidgate_pki::testing::TestPki;
use svidgate_pki::WorkloadCert;
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

use super::pb::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use super::pb::{
    JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest, X509BundlesRequest,
    X509BundlesResponse, X509svidRequest, X509svidResponse,
};
use super::*;
use crate::agent::sds::tests::{assert_status, start_server, uds_channel, Harness};
use crate::agent::sds::SecretState;

const WID: &str = "spiffe://example.org/ns/app/sa/web";
const LOCAL: &str = "spiffe://example.org";
const FED: &str = "spiffe://fed.example";

/// A CA (root + intermediate) for one trust domain.
struct TestCa(TestPki);

impl TestCa {
    fn new(name: &str) -> TestCa {
        TestCa(TestPki::new(name))
    }
    fn pem(&self) -> String {
        self.0.root_pem()
    }
    fn der(&self) -> Vec<u8> {
        self.0.root_der().to_vec()
    }
    /// A certificate for `id` expiring `secs` from now (negative: already expired).
    fn cert(&self, id: &str, secs: i64) -> Arc<WorkloadCert> {
        Arc::new(self.0.cert_with(id, secs.min(0) - 60, secs))
    }
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

fn bundles(local: &[&TestCa], fed: &[&TestCa]) -> BTreeMap<TrustDomain, Vec<String>> {
    let mut m = BTreeMap::new();
    if !local.is_empty() {
        m.insert(td("example.org"), local.iter().map(|c| c.pem()).collect());
    }
    if !fed.is_empty() {
        m.insert(td("fed.example"), fed.iter().map(|c| c.pem()).collect());
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Pure content

#[test]
fn pkcs8_der_accepts_only_unencrypted_pkcs8() {
    let key = rcgen::KeyPair::generate().unwrap();
    assert_eq!(
        pkcs8_der(&key.serialize_pem()).unwrap().as_slice(),
        key.serialize_der().as_slice()
    );
    let block = |tag: &str, der: Vec<u8>| svidgate_pki::pem::encode(tag, &der);
    let none = "no unencrypted PKCS#8 PRIVATE KEY PEM block";
    for (input, want_err) in [
        (String::new(), none),
        ("garbage".to_owned(), none),
        (block("EC PRIVATE KEY", vec![1, 2, 3]), none),
        (block("ENCRYPTED PRIVATE KEY", vec![1, 2, 3]), none),
        (block("CERTIFICATE", vec![1, 2, 3]), none),
        (block("PRIVATE KEY", Vec::new()), "empty key"),
    ] {
        assert_eq!(pkcs8_der(&input).unwrap_err(), want_err, "input {input:?}");
    }
}

#[test]
fn x509_svid_response_fields() {
    let ca = TestCa::new("root");
    let fed = TestCa::new("fed");
    let cert = ca.cert(WID, 3600);
    let state = SecretState {
        cert: Some(cert.clone()),
        bundles: bundles(&[&ca], &[&fed]),
        version: 1,
    };
    let r = x509_svid_response(&state, SystemTime::now())
        .unwrap()
        .unwrap();
    assert_eq!(r.svids.len(), 1);
    let s = &r.svids[0];
    assert_eq!(s.spiffe_id, WID);
    // Leaf then intermediate, as DER back to back.
    assert_eq!(
        s.x509_svid,
        [cert.chain()[0].to_vec(), cert.chain()[1].to_vec()].concat()
    );
    assert_eq!(cert.chain().len(), 2);
    assert_eq!(
        svidgate_pki::pem::encode("PRIVATE KEY", &s.x509_svid_key),
        cert.key_pem()
    );
    assert_eq!(s.bundle, ca.der());
    assert!(s.hint.is_empty() && r.crl.is_empty());
    // Only foreign trust domains are federated bundles.
    assert_eq!(
        r.federated_bundles,
        BTreeMap::from([(FED.to_owned(), fed.der())])
    );
}

#[test]
fn nothing_is_sent_rather_than_something_incomplete() {
    let ca = TestCa::new("root");
    let fed = TestCa::new("fed");
    let valid = ca.cert(WID, 3600);
    let expired = ca.cert(WID, -1);
    let now = SystemTime::now();
    let cases = [
        ("no certificate yet", None, bundles(&[&ca], &[])),
        ("expired certificate", Some(expired), bundles(&[&ca], &[])),
        ("no local roots", Some(valid.clone()), bundles(&[], &[&fed])),
    ];
    for (what, cert, b) in cases {
        let state = SecretState {
            cert,
            bundles: b,
            version: 1,
        };
        assert_eq!(x509_svid_response(&state, now), Ok(None), "{what}");
    }
    // Bundles: only once the local trust domain has roots.
    let state = SecretState {
        cert: None,
        bundles: bundles(&[], &[&fed]),
        version: 1,
    };
    assert_eq!(x509_bundles_response(&state, &td("example.org")), Ok(None));
    let state = SecretState {
        cert: None,
        bundles: bundles(&[&ca], &[&fed]),
        version: 1,
    };
    let r = x509_bundles_response(&state, &td("example.org"))
        .unwrap()
        .unwrap();
    assert_eq!(
        r.bundles,
        BTreeMap::from([(FED.to_owned(), fed.der()), (LOCAL.to_owned(), ca.der()),])
    );
}

#[test]
fn a_bad_published_bundle_is_an_error_not_a_message() {
    let ca = TestCa::new("root");
    let cert = ca.cert(WID, 3600);
    let mut b = bundles(&[&ca], &[]);
    b.insert(td("fed.example"), vec!["junk".into()]);
    let state = SecretState {
        cert: Some(cert),
        bundles: b,
        version: 1,
    };
    let want = ContentError::Bundle {
        trust_domain: "fed.example".into(),
        reason: "no PEM certificate".into(),
    };
    assert_eq!(
        x509_svid_response(&state, SystemTime::now()),
        Err(want.clone())
    );
    assert_eq!(x509_bundles_response(&state, &td("example.org")), Err(want));
}

#[test]
fn last_sent_suppresses_repeats_only() {
    let mut last = LastSent::default();
    let a = X509BundlesResponse {
        crl: vec![],
        bundles: BTreeMap::from([(LOCAL.to_owned(), vec![1])]),
    };
    let b = X509BundlesResponse {
        crl: vec![],
        bundles: BTreeMap::from([(LOCAL.to_owned(), vec![2])]),
    };
    assert!(last.next(a.clone()).is_some());
    assert!(last.next(a.clone()).is_none());
    assert!(last.next(b.clone()).is_some());
    assert!(last.next(a).is_some());
}

#[test]
fn security_header_must_be_exactly_true() {
    let mut ok = tonic::metadata::MetadataMap::new();
    ok.insert(SECURITY_HEADER, "true".parse().unwrap());
    assert!(has_security_header(&ok));
    for value in ["True", "TRUE", "1", "yes", "", "true "] {
        let mut m = tonic::metadata::MetadataMap::new();
        if let Ok(v) = value.parse() {
            m.insert(SECURITY_HEADER, v);
        }
        assert!(!has_security_header(&m), "value {value:?}");
    }
    assert!(!has_security_header(&tonic::metadata::MetadataMap::new()));
}

// ---------------------------------------------------------------------------------------------
// The service over a real Unix socket

async fn start() -> Harness<WorkloadApiMetrics> {
    let metrics = WorkloadApiMetrics::default();
    start_server(
        "wapi/socket",
        0o600,
        metrics,
        |store, metrics, sd_rx, listener| {
            WorkloadApiService::new(store.subscribe(), td("example.org"), metrics, sd_rx)
                .serve(listener)
        },
    )
    .await
}

async fn client(path: &Path) -> SpiffeWorkloadApiClient<Channel> {
    SpiffeWorkloadApiClient::new(uds_channel(path).await)
}

fn with_header<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(SECURITY_HEADER, "true".parse().unwrap());
    r
}

async fn svid_stream(c: &mut SpiffeWorkloadApiClient<Channel>) -> Streaming<X509svidResponse> {
    c.fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn bundle_stream(c: &mut SpiffeWorkloadApiClient<Channel>) -> Streaming<X509BundlesResponse> {
    c.fetch_x509_bundles(with_header(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn next<T>(s: &mut Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("no message within 10 s")
        .unwrap()
        .expect("stream ended")
}

/// Waits (up to 5 s) for a condition on server-side state that has no reply to wait for.
async fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not reached in 5 s");
}

/// Is `r` the message for `cert` (its leaf first in the chain)?
fn carries(r: &X509svidResponse, cert: &WorkloadCert) -> bool {
    r.svids[0].x509_svid.starts_with(cert.leaf())
}

/// Messages sent so far on the SVID and the bundle streams.
fn assert_pushes(h: &Harness<WorkloadApiMetrics>, svids: u64, bundles: u64) {
    assert_eq!(
        [
            h.metrics.pushes("FetchX509SVID").get(),
            h.metrics.pushes("FetchX509Bundles").get()
        ],
        [svids, bundles]
    );
}

/// A new certificate from `ca` is served: the stream sends it.
async fn new_cert_arrives(
    h: &Harness<WorkloadApiMetrics>,
    ca: &TestCa,
    s: &mut Streaming<X509svidResponse>,
) {
    let cert = ca.cert(WID, 3600);
    h.store.set_cert(cert.clone());
    assert!(carries(&next(s).await, &cert));
}

#[tokio::test]
async fn waits_for_the_first_certificate_then_sends_it() {
    let h = start().await;
    let ca = TestCa::new("root");
    let mut c = client(&h.path).await;
    let mut svids = svid_stream(&mut c).await;
    // Bundles alone: FetchX509Bundles answers, FetchX509SVID keeps waiting.
    h.store.set_bundles(bundles(&[&ca], &[]));
    let mut bs = bundle_stream(&mut c).await;
    let b = next(&mut bs).await;
    assert_eq!(b.bundles[LOCAL], ca.der());
    wait_for("both streams open", || h.metrics.streams_open() == 2).await;

    let cert = ca.cert(WID, 3600);
    h.store.set_cert(cert.clone());
    let r = next(&mut svids).await;
    assert_eq!(r.svids[0].spiffe_id, WID);
    assert!(carries(&r, &cert));
    assert_pushes(&h, 1, 1);
}

#[tokio::test]
async fn every_open_stream_gets_each_change_once() {
    let h = start().await;
    let ca = TestCa::new("root");
    let fed = TestCa::new("fed");
    let first = ca.cert(WID, 3600);
    h.store
        .set_cert_and_bundles(first.clone(), bundles(&[&ca], &[]));
    let mut c1 = client(&h.path).await;
    let mut c2 = client(&h.path).await;
    let mut s1 = svid_stream(&mut c1).await;
    let mut s2 = svid_stream(&mut c2).await;
    let mut b1 = bundle_stream(&mut c2).await;
    for s in [&mut s1, &mut s2] {
        assert!(carries(&next(s).await, &first));
    }
    assert_eq!(next(&mut b1).await.bundles.len(), 1);

    // A new version with the same content is no change: nothing is sent, so the next message
    // on every stream is the real change that follows.
    h.store
        .set_cert_and_bundles(first.clone(), bundles(&[&ca], &[]));
    // Rotation: both SVID streams get the new certificate; the bundle stream nothing.
    let second = ca.cert(WID, 3600);
    h.store.set_cert(second.clone());
    for s in [&mut s1, &mut s2] {
        assert!(carries(&next(s).await, &second));
    }
    // A federated bundle appears: every stream gets it.
    h.store.set_bundles(bundles(&[&ca], &[&fed]));
    for s in [&mut s1, &mut s2] {
        let r = next(s).await;
        assert!(carries(&r, &second));
        assert_eq!(r.federated_bundles[FED], fed.der());
    }
    let b = next(&mut b1).await;
    assert_eq!(b.bundles[FED], fed.der());
    assert_pushes(&h, 6, 2);
}

#[tokio::test]
async fn an_expired_certificate_is_never_sent() {
    let h = start().await;
    let ca = TestCa::new("root");
    let expired = ca.cert(WID, -1);
    h.store.set_cert_and_bundles(expired, bundles(&[&ca], &[]));
    let mut c = client(&h.path).await;
    let mut s = svid_stream(&mut c).await;
    wait_for("stream open", || h.metrics.streams_open() == 1).await;
    new_cert_arrives(&h, &ca, &mut s).await;
}

#[tokio::test]
async fn a_client_going_away_closes_its_stream_only() {
    let h = start().await;
    let ca = TestCa::new("root");
    let cert = ca.cert(WID, 3600);
    h.store.set_cert_and_bundles(cert, bundles(&[&ca], &[]));
    let mut c1 = client(&h.path).await;
    let mut c2 = client(&h.path).await;
    let mut s1 = svid_stream(&mut c1).await;
    let mut s2 = svid_stream(&mut c2).await;
    next(&mut s1).await;
    next(&mut s2).await;
    assert_eq!(h.metrics.streams_open(), 2);
    drop(s1);
    drop(c1);
    wait_for("one stream left", || h.metrics.streams_open() == 1).await;
    // The other stream still gets changes.
    new_cert_arrives(&h, &ca, &mut s2).await;
}

#[tokio::test]
async fn refusals_missing_header_and_jwt() {
    let h = start().await;
    let mut c = client(&h.path).await;
    let e = c.fetch_x509svid(X509svidRequest {}).await.unwrap_err();
    assert_status(&e, Code::InvalidArgument, "workload.spiffe.io");
    let mut wrong = Request::new(X509BundlesRequest {});
    wrong
        .metadata_mut()
        .insert(SECURITY_HEADER, "True".parse().unwrap());
    let e = c.fetch_x509_bundles(wrong).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // JWT calls: the header is checked first, then UNIMPLEMENTED.
    let e = c
        .fetch_jwtsvid(JwtsvidRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(h.metrics.refusals(Refusal::MissingSecurityHeader).get(), 3);

    let e = c
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["x".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_status(&e, Code::Unimplemented, "JWT-SVID");
    let e = c
        .fetch_jwt_bundles(with_header(JwtBundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let e = c
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert_eq!(h.metrics.refusals(Refusal::JwtUnsupported).get(), 3);
    assert_eq!(h.metrics.streams_open(), 0);
}

#[tokio::test]
async fn the_stream_limit_refuses_with_unavailable() {
    let h = start().await;
    let mut c = client(&h.path).await;
    let mut open = Vec::new();
    for _ in 0..MAX_STREAMS {
        open.push(svid_stream(&mut c).await);
    }
    let e = c
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(h.metrics.refusals(Refusal::TooManyStreams).get(), 1);
    // A slot frees up when a client goes away.
    drop(open.pop());
    wait_for("a free slot", || {
        h.metrics.streams_open() == i64::try_from(MAX_STREAMS).unwrap() - 1
    })
    .await;
    open.push(svid_stream(&mut c).await);
}

#[tokio::test]
async fn shutdown_ends_every_stream() {
    let h = start().await;
    let ca = TestCa::new("root");
    let mut c = client(&h.path).await;
    // One stream with something sent, one still waiting for its first message.
    h.store.set_bundles(bundles(&[&ca], &[]));
    let mut b = bundle_stream(&mut c).await;
    next(&mut b).await;
    let mut s = svid_stream(&mut c).await;
    wait_for("both streams open", || h.metrics.streams_open() == 2).await;
    h.shutdown.send(true).unwrap();
    for end in [
        s.message().await.map(|m| m.is_none()),
        b.message().await.map(|m| m.is_none()),
    ] {
        assert!(matches!(end, Ok(true)), "{end:?}");
    }
    drop((s, b, c));
    h.server.await.unwrap().unwrap();
    assert_eq!(h.metrics.streams_open(), 0);
}
