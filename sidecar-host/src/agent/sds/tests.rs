//! SDS protocol tests: a real tonic client over a Unix socket in a tempdir.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use hyper_util::rt::TokioIo;
use prost::Message;
use svidgate_core::{SpiffeId, TrustDomain};
use svidgate_pki::testing::TestPki;
use svidgate_pki::WorkloadCert;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Streaming};

use super::*;
use crate::agent::metrics::Metrics;

const WID: &str = "spiffe://example.org/ns/app/sa/web";
const QUIET: Duration = Duration::from_millis(300);

/// A workload certificate for `id`, valid `secs` from now.
fn test_cert(id: &str, secs: i64) -> Arc<WorkloadCert> {
    Arc::new(TestPki::new("sds").cert(id, secs))
}

fn bundle(pems: &[&str]) -> BTreeMap<TrustDomain, Vec<String>> {
    [(
        TrustDomain::new("example.org").unwrap(),
        pems.iter().map(|s| (*s).to_owned()).collect(),
    )]
    .into()
}

/// A gRPC server on a Unix socket in a tempdir, serving a fresh [`SecretStore`] (shared with the
/// Workload API tests; `M` is the server's metrics handle).
pub(crate) struct Harness<M> {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) store: Arc<SecretStore>,
    pub(crate) metrics: M,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Binds `socket` (below a new tempdir, with `mode`) and spawns `serve(store, metrics, shutdown,
/// listener)` on it.
pub(crate) async fn start_server<M, F, Fut>(
    socket: &str,
    mode: u32,
    metrics: M,
    serve: F,
) -> Harness<M>
where
    M: Clone,
    F: FnOnce(&SecretStore, M, watch::Receiver<bool>, tokio::net::UnixListener) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(socket);
    let store = Arc::new(SecretStore::new());
    let (shutdown, sd_rx) = watch::channel(false);
    let listener = bind_socket(&path, mode).await.unwrap();
    let server = tokio::spawn(serve(&store, metrics.clone(), sd_rx, listener));
    Harness {
        _dir: dir,
        path,
        store,
        metrics,
        shutdown,
        server,
    }
}

async fn start() -> Harness<Arc<Metrics>> {
    start_server(
        "sds/socket",
        0o660,
        Arc::new(Metrics::new()),
        |store, metrics, sd_rx, listener| {
            SdsService::new(
                store.subscribe(),
                SpiffeId::parse(WID).unwrap(),
                BTreeSet::from([TrustDomain::new("fed.example").unwrap()]),
                metrics,
                sd_rx,
            )
            .serve(listener)
        },
    )
    .await
}

/// The gRPC error has this code and its message contains `part`.
pub(crate) fn assert_status(e: &tonic::Status, code: Code, part: &str) {
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().contains(part), "{}", e.message());
}

/// A gRPC channel to the server on the Unix socket at `path` (shared with the Workload API
/// tests).
pub(crate) async fn uds_channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await
        .unwrap()
}

async fn client(path: &Path) -> SecretDiscoveryServiceClient<Channel> {
    SecretDiscoveryServiceClient::new(uds_channel(path).await)
}

struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl Sotw {
    async fn open(path: &Path) -> Sotw {
        let (tx, rx) = mpsc::channel(8);
        let rx = client(path)
            .await
            .stream_secrets(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Sotw { tx, rx }
    }
    async fn send(&self, names: &[&str], version: &str, nonce: &str, error: Option<&str>) {
        let req = DiscoveryRequest {
            version_info: version.into(),
            node: if nonce.is_empty() {
                Some(envoy_types::pb::envoy::config::core::v3::Node {
                    id: "n1".into(),
                    cluster: "c1".into(),
                    ..Default::default()
                })
            } else {
                None
            },
            resource_names: names.iter().map(|s| (*s).to_owned()).collect(),
            type_url: SECRET_TYPE_URL.into(),
            response_nonce: nonce.into(),
            error_detail: error.map(|m| RpcStatus {
                code: 3,
                message: m.into(),
                details: vec![],
            }),
            ..Default::default()
        };
        self.tx.send(req).await.unwrap();
    }
    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(5), self.rx.message())
            .await
            .expect("no response")
            .unwrap()
            .unwrap()
    }
    async fn quiet(&mut self) {
        if let Ok(m) = tokio::time::timeout(QUIET, self.rx.message()).await {
            panic!("expected no response, got {m:?}");
        }
    }
}

/// Waits (up to 5 s) for a condition on server-side state that has no reply to wait for.
async fn wait_for(f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

/// Serves a fresh workload certificate and opens a SotW stream asking for `default`.
async fn default_stream(h: &Harness<Arc<Metrics>>) -> Sotw {
    h.store.set_cert(test_cert(WID, 3600));
    let s = Sotw::open(&h.path).await;
    s.send(&["default"], "", "", None).await;
    s
}

fn secret_of(any: &envoy_types::pb::google::protobuf::Any) -> Secret {
    assert_eq!(any.type_url, SECRET_TYPE_URL);
    Secret::decode(any.value.as_slice()).unwrap()
}

#[tokio::test]
async fn ack_nack_stale_and_push() {
    let h = start().await;
    let mut s = default_stream(&h).await;
    let r1 = s.recv().await;
    assert!(!r1.version_info.is_empty() && !r1.nonce.is_empty());
    let sec = secret_of(&r1.resources[0]);
    assert_eq!(sec.name, "default");
    let Some(secret::Type::TlsCertificate(tls)) = sec.r#type else {
        panic!("not a certificate")
    };
    assert!(tls.private_key.is_some() && tls.certificate_chain.is_some());

    // ACK: nothing more.
    s.send(&["default"], &r1.version_info, &r1.nonce, None)
        .await;
    s.quiet().await;

    // A change is pushed.
    h.store.set_cert(test_cert(WID, 3600));
    let r2 = s.recv().await;
    assert_ne!(r2.version_info, r1.version_info);
    assert_ne!(r2.nonce, r1.nonce);

    // NACK (Envoy repeats it): counted, logged, never answered with a resend.
    for _ in 0..5 {
        s.send(&["default"], &r1.version_info, &r2.nonce, Some("bad key"))
            .await;
    }
    s.quiet().await;
    wait_for(|| h.metrics.nacks() == 5).await;

    // Stale nonce (even one asking for something else): ignored.
    s.send(&["ROOTCA"], &r1.version_info, &r1.nonce, None).await;
    s.quiet().await;

    // Same content republished (e.g. bundles unchanged): no push.
    h.store.set_bundles(BTreeMap::new());
    s.quiet().await;

    // The next real change goes out once.
    h.store.set_cert(test_cert(WID, 3600));
    let r3 = s.recv().await;
    assert_ne!(r3.version_info, r2.version_info);
    s.send(&["default"], &r3.version_info, &r3.nonce, None)
        .await;
    s.quiet().await;
    assert_eq!(h.metrics.streams_open(), 1);
}

#[tokio::test]
async fn reconnect_with_empty_nonce_gets_current_and_waits_for_first_cert() {
    let h = start().await;
    let mut s = Sotw::open(&h.path).await;
    // Known but not available yet: wait (Envoy keeps warming) instead of an error.
    s.send(&[WID], "", "", None).await;
    s.quiet().await;
    h.store.set_cert(test_cert(WID, 3600));
    let r = s.recv().await;
    assert_eq!(secret_of(&r.resources[0]).name, WID);
    // A reconnecting Envoy sends its last version with an empty nonce: answered anyway.
    let mut s2 = Sotw::open(&h.path).await;
    s2.send(&[WID], &r.version_info, "", None).await;
    assert_eq!(s2.recv().await.version_info, r.version_info);
}

#[tokio::test]
async fn unknown_resource_is_a_clear_error() {
    let h = start().await;
    let mut s = Sotw::open(&h.path).await;
    s.send(&["spiffe://other.example"], "", "", None).await;
    let err = tokio::time::timeout(Duration::from_secs(5), s.rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_status(&err, Code::NotFound, "\"spiffe://other.example\"");

    let mut c = client(&h.path).await;
    let err = c
        .fetch_secrets(DiscoveryRequest {
            resource_names: vec!["nope".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "\"nope\"");
}

#[tokio::test]
async fn fetch_secrets() {
    let h = start().await;
    let mut c = client(&h.path).await;
    let req = DiscoveryRequest {
        resource_names: vec!["ROOTCA".into()],
        ..Default::default()
    };
    assert_eq!(
        c.fetch_secrets(req.clone()).await.unwrap_err().code(),
        Code::Unavailable
    );
    h.store.set_bundles(bundle(&["ROOT-A"]));
    let r = c.fetch_secrets(req).await.unwrap().into_inner();
    assert!(!r.nonce.is_empty() && !r.version_info.is_empty());
    let Some(secret::Type::ValidationContext(vc)) = secret_of(&r.resources[0]).r#type else {
        panic!()
    };
    assert!(vc.trusted_ca.is_some());
}

#[tokio::test]
async fn two_streams_both_receive_a_push() {
    let h = start().await;
    h.store.set_cert(test_cert(WID, 3600));
    h.store.set_bundles(bundle(&["ROOT-A"]));
    let mut a = Sotw::open(&h.path).await;
    let mut b = Sotw::open(&h.path).await;
    a.send(&["default"], "", "", None).await;
    b.send(&["ROOTCA"], "", "", None).await;
    let (ra, rb) = (a.recv().await, b.recv().await);
    a.send(&["default"], &ra.version_info, &ra.nonce, None)
        .await;
    b.send(&["ROOTCA"], &rb.version_info, &rb.nonce, None).await;
    // A certificate change reaches only the certificate stream...
    h.store.set_cert(test_cert(WID, 3600));
    assert_ne!(a.recv().await.version_info, ra.version_info);
    b.quiet().await;
    // ...a bundle change only the bundle stream; two streams on the same name both get it.
    let mut c = Sotw::open(&h.path).await;
    c.send(&["ROOTCA"], "", "", None).await;
    let _ = c.recv().await;
    h.store.set_bundles(bundle(&["ROOT-A", "ROOT-B"]));
    let (rb2, rc2) = (b.recv().await, c.recv().await);
    assert_eq!(rb2.version_info, rc2.version_info);
    assert_ne!(rb2.version_info, rb.version_info);
    assert_eq!(h.metrics.streams_open(), 3);
}

#[tokio::test]
async fn delta_subscribe_unsubscribe() {
    let h = start().await;
    h.store.set_cert(test_cert(WID, 3600));
    h.store.set_bundles(bundle(&["ROOT-A"]));
    let (tx, rx) = mpsc::channel(8);
    let mut stream = client(&h.path)
        .await
        .delta_secrets(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    async fn recv(stream: &mut Streaming<DeltaDiscoveryResponse>) -> DeltaDiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("no delta response")
            .unwrap()
            .unwrap()
    }
    let req = |sub: &[&str], unsub: &[&str], nonce: &str| DeltaDiscoveryRequest {
        type_url: SECRET_TYPE_URL.into(),
        resource_names_subscribe: sub.iter().map(|s| (*s).to_owned()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|s| (*s).to_owned()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    tx.send(req(&["default"], &[], "")).await.unwrap();
    let r1 = recv(&mut stream).await;
    assert_eq!(r1.resources.len(), 1);
    assert_eq!(r1.resources[0].name, "default");
    assert!(!r1.resources[0].version.is_empty());
    // ACK + subscribe ROOTCA: only ROOTCA is sent.
    tx.send(req(&["ROOTCA"], &[], &r1.nonce)).await.unwrap();
    let r2 = recv(&mut stream).await;
    let names: Vec<_> = r2.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ROOTCA"]);
    // Unsubscribe default: a new certificate is not sent any more.
    tx.send(req(&[], &["default"], &r2.nonce)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // let the server read it (no reply to wait for)
    h.store.set_cert(test_cert(WID, 3600));
    // A bundle change is.
    h.store.set_bundles(bundle(&["ROOT-B"]));
    let r3 = recv(&mut stream).await;
    let names: Vec<_> = r3.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ROOTCA"]);
    // NACK: counted, not resent.
    let mut nack = req(&[], &[], &r3.nonce);
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "nope".into(),
        details: vec![],
    });
    tx.send(nack).await.unwrap();
    assert!(tokio::time::timeout(QUIET, stream.message()).await.is_err());
    wait_for(|| h.metrics.nacks() == 1).await;
    // Unknown name in a subscription: error naming it.
    tx.send(req(&["bogus"], &[], "")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_status(&err, Code::NotFound, "bogus");
}

#[tokio::test]
async fn shutdown_ends_streams_and_server() {
    let h = start().await;
    let mut s = default_stream(&h).await;
    let _ = s.recv().await;
    h.shutdown.send(true).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), s.rx.message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "stream must end cleanly: {end:?}");
    tokio::time::timeout(Duration::from_secs(5), h.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    remove_socket(&h.path);
    assert!(!h.path.exists());
    assert_eq!(h.metrics.streams_open(), 0);
}
