//! A steerable fake CA — a real tonic server over TLS on 127.0.0.1:0 whose answers each test
//! chooses — against the agent's `--once` path: every bad answer is rejected with its own
//! error and nothing is written; transient failures are retried.

mod common;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{CertificateParams, CertificateSigningRequestParams, DistinguishedName, KeyPair};
use sidecar_host::agent::ca_client::{CaError, RetryPolicy};
use sidecar_host::agent::config::{AgentArgs, AgentConfig};
use sidecar_host::agent::fetch::FetchError;
use sidecar_host::agent::once::{self, OnceError};
use sidecar_host::pb::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use sidecar_host::pb::{IstioCertificateRequest, IstioCertificateResponse};
use svidgate_pki::testing::TestPki;
use svidgate_pki::ChainError;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};

const ID: &str = "spiffe://td.test/ns/web/sa/frontend";

/// What the fake CA answers to the next call.
#[derive(Debug, Clone)]
enum Answer {
    Good,
    OtherId(&'static str),
    OtherKey,
    /// Leaf validity as offsets from now, in seconds.
    Validity(i64, i64),
    Empty,
    Garbage,
    UnknownRoot,
    Slow(Duration),
    Fail(Code),
}

/// The chain a CA answers with: a leaf for `id` and `key` valid from `nb` to `na` seconds
/// from now, the intermediate, the root.
fn leaf(pki: &TestPki, id: &str, key: &impl rcgen::PublicKeyData, nb: i64, na: i64) -> Vec<String> {
    pki.answer(pki.leaf_pem(id, key, nb, na))
}

struct FakeSvc(Arc<FakeCa>);

impl std::ops::Deref for FakeSvc {
    type Target = FakeCa;
    fn deref(&self) -> &FakeCa {
        &self.0
    }
}

struct FakeCa {
    good: TestPki,
    unknown: TestPki,
    answers: Mutex<VecDeque<Answer>>,
    calls: AtomicU32,
}

#[tonic::async_trait]
impl IstioCertificateService for FakeSvc {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // The client sends what Istio's agent sends.
        let md = request.metadata();
        assert_eq!(
            md.get("authorization").unwrap().to_str().unwrap(),
            "Bearer fake-token"
        );
        assert_eq!(
            md.get("clusterid").unwrap().to_str().unwrap(),
            "test-cluster"
        );
        let req = request.into_inner();
        assert_eq!(req.validity_duration, 3600);
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Good);
        let csr = CertificateSigningRequestParams::from_pem(&req.csr).unwrap();
        let key = &csr.public_key;
        let chain = match answer {
            Answer::Good => leaf(&self.good, ID, key, -60, 3600),
            Answer::OtherId(id) => leaf(&self.good, id, key, -60, 3600),
            Answer::OtherKey => leaf(&self.good, ID, &KeyPair::generate().unwrap(), -60, 3600),
            Answer::Validity(nb, na) => leaf(&self.good, ID, key, nb, na),
            Answer::Empty => vec![],
            Answer::Garbage => vec![
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".into(),
            ],
            Answer::UnknownRoot => leaf(&self.unknown, ID, key, -60, 3600),
            Answer::Slow(d) => {
                tokio::time::sleep(d).await;
                leaf(&self.good, ID, key, -60, 3600)
            }
            Answer::Fail(code) => return Err(Status::new(code, "steered failure")),
        };
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: chain,
        }))
    }
}

struct Fixture {
    fake: Arc<FakeCa>,
    config: AgentConfig,
    tmp: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

async fn fixture(answers: Vec<Answer>, timeout: Duration, attempts: u32) -> Fixture {
    let fake = Arc::new(FakeCa {
        good: TestPki::new("good"),
        unknown: TestPki::new("unknown"),
        answers: Mutex::new(answers.into()),
        calls: AtomicU32::new(0),
    });
    // Serving certificate for 127.0.0.1 from the good PKI.
    let server_key = KeyPair::generate().unwrap();
    let mut sp =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    sp.distinguished_name = DistinguishedName::new();
    let server_cert = sp.signed_by(&server_key, &fake.good.inter).unwrap();
    let identity = Identity::from_pem(
        format!("{}{}", server_cert.pem(), fake.good.inter.pem()),
        server_key.serialize_pem(),
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = IstioCertificateServiceServer::new(FakeSvc(fake.clone()));
    let server = tokio::spawn(async move {
        Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });

    let tmp = tempfile::tempdir().unwrap();
    let root = common::write(tmp.path(), "root.pem", &fake.good.root_pem());
    let token = common::write(tmp.path(), "token", "fake-token\n");
    let out = tmp.path().join("out");
    // A previous, valid set of files that a rejected answer must leave untouched.
    std::fs::create_dir_all(&out).unwrap();
    for f in ["cert-chain.pem", "key.pem", "root-cert.pem"] {
        std::fs::write(out.join(f), format!("previous {f}")).unwrap();
    }
    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        agent: AgentArgs,
    }
    let cmd = <Cmd as clap::Parser>::try_parse_from([
        "svidgate".to_string(),
        "--ca-addr".into(),
        format!("https://127.0.0.1:{}", addr.port()),
        "--ca-root".into(),
        root.display().to_string(),
        "--spiffe-id".into(),
        ID.into(),
        "--token-file".into(),
        token.display().to_string(),
        "--cluster-id".into(),
        "test-cluster".into(),
        "--cert-ttl".into(),
        "1h".into(),
        "--ca-timeout".into(),
        format!("{}ms", timeout.as_millis()),
        "--ca-max-attempts".into(),
        attempts.to_string(),
        "--once".into(),
        "--out".into(),
        out.display().to_string(),
    ])
    .unwrap();
    let mut config: AgentConfig = cmd.agent.validate().unwrap();
    config.ca.retry = RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    };
    Fixture {
        fake,
        config,
        tmp,
        _server: server,
    }
}

fn assert_untouched(out: &Path) {
    let mut names: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["cert-chain.pem", "key.pem", "root-cert.pem"],
        "no temp files left"
    );
    for f in names {
        assert_eq!(
            std::fs::read_to_string(out.join(&f)).unwrap(),
            format!("previous {f}")
        );
    }
}

async fn rejected(answer: Answer) -> (ChainError, u32) {
    let fx = fixture(vec![answer.clone()], Duration::from_secs(5), 3).await;
    let err = once::run(&fx.config).await.unwrap_err();
    assert_untouched(fx.config.out.as_deref().unwrap());
    let calls = fx.fake.calls.load(Ordering::SeqCst);
    match err {
        OnceError::Fetch(FetchError::Chain(e)) => (e, calls),
        other => panic!("{answer:?}: expected a chain error, got {other}"),
    }
}

#[tokio::test]
async fn a_good_answer_is_written() {
    let fx = fixture(vec![Answer::Good], Duration::from_secs(5), 3).await;
    once::run(&fx.config).await.unwrap();
    let out = fx.config.out.clone().unwrap();
    let chain = std::fs::read_to_string(out.join("cert-chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert_eq!(
        std::fs::read_to_string(out.join("root-cert.pem")).unwrap(),
        fx.fake.good.root_pem()
    );
    assert!(std::fs::read_to_string(out.join("key.pem"))
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let _ = &fx.tmp;
}

#[tokio::test]
async fn a_leaf_for_another_spiffe_id_is_rejected() {
    let (e, _) = rejected(Answer::OtherId("spiffe://td.test/ns/web/sa/admin")).await;
    assert!(matches!(e, ChainError::WrongIdentity { .. }), "{e}");
}

#[tokio::test]
async fn a_leaf_for_another_key_is_rejected() {
    let (e, _) = rejected(Answer::OtherKey).await;
    assert_eq!(e, ChainError::WrongKey);
}

#[tokio::test]
async fn an_expired_leaf_is_rejected() {
    let (e, _) = rejected(Answer::Validity(-7200, -600)).await;
    assert!(matches!(e, ChainError::Expired { position: 0, .. }), "{e}");
}

#[tokio::test]
async fn a_not_yet_valid_leaf_is_rejected() {
    let (e, _) = rejected(Answer::Validity(600, 7200)).await;
    assert!(
        matches!(e, ChainError::NotYetValid { position: 0, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn an_empty_chain_is_rejected() {
    let (e, calls) = rejected(Answer::Empty).await;
    assert_eq!(e, ChainError::EmptyChain);
    assert_eq!(calls, 1, "a bad answer is not retried");
}

#[tokio::test]
async fn garbage_pem_is_rejected() {
    let (e, _) = rejected(Answer::Garbage).await;
    assert!(matches!(e, ChainError::Parse { position: 0, .. }), "{e}");
}

#[tokio::test]
async fn a_chain_to_an_unknown_root_is_rejected() {
    let (e, _) = rejected(Answer::UnknownRoot).await;
    assert!(matches!(e, ChainError::UnknownRoot { .. }), "{e}");
}

#[tokio::test]
async fn a_slow_answer_past_the_deadline_fails_after_the_retries() {
    let fx = fixture(
        vec![
            Answer::Slow(Duration::from_secs(3)),
            Answer::Slow(Duration::from_secs(3)),
        ],
        Duration::from_millis(300),
        2,
    )
    .await;
    let start = std::time::Instant::now();
    let err = once::run(&fx.config).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    match err {
        OnceError::Fetch(FetchError::Ca(CaError::Exhausted { code, attempts, .. })) => {
            assert_eq!(code, Code::DeadlineExceeded);
            assert_eq!(attempts, 2);
        }
        other => panic!("{other}"),
    }
    assert_untouched(fx.config.out.as_deref().unwrap());
}

#[tokio::test]
async fn unavailable_twice_then_success_is_retried_and_accepted() {
    let fx = fixture(
        vec![
            Answer::Fail(Code::Unavailable),
            Answer::Fail(Code::Unavailable),
            Answer::Good,
        ],
        Duration::from_secs(5),
        5,
    )
    .await;
    once::run(&fx.config).await.unwrap();
    assert_eq!(fx.fake.calls.load(Ordering::SeqCst), 3);
    let chain =
        std::fs::read_to_string(fx.config.out.as_deref().unwrap().join("cert-chain.pem")).unwrap();
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn permission_denied_and_invalid_argument_are_not_retried() {
    for code in [
        Code::PermissionDenied,
        Code::InvalidArgument,
        Code::Unauthenticated,
    ] {
        let fx = fixture(vec![Answer::Fail(code)], Duration::from_secs(5), 5).await;
        let err = once::run(&fx.config).await.unwrap_err();
        assert!(
            matches!(&err, OnceError::Fetch(FetchError::Ca(CaError::Rejected { code: c, .. })) if *c == code),
            "{code:?}: {err}"
        );
        assert_eq!(fx.fake.calls.load(Ordering::SeqCst), 1, "{code:?}");
        assert_untouched(fx.config.out.as_deref().unwrap());
    }
}
