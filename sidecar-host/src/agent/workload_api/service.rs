//! The `SpiffeWorkloadAPI` gRPC service over the watched [`SecretState`].
//!
//! Each `FetchX509SVID` / `FetchX509Bundles` call gets its own task: it sends the current
//! message as soon as there is a valid one, then a new complete message whenever what it would
//! send changes (every stream wakes on the same state change), and ends when the client goes
//! away or the agent shuts down.

use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use sha2::{Digest, Sha256};
use svidgate_core::TrustDomain;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use super::authority::FixAuthority;
use super::content::{x509_bundles_response, x509_svid_response, ContentError};
use super::metrics::{Refusal, WorkloadApiMetrics};
use super::pb::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};
use super::pb::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use crate::agent::sds::SecretState;
use crate::runtime::wait_shutdown;

/// The security header every call must carry (SPIFFE Workload Endpoint, "Transport"): a
/// hardening against server-side request forgery.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";
/// Its only accepted value (case-sensitive).
pub const SECURITY_HEADER_VALUE: &str = "true";
/// Open streams at most; one more is refused with UNAVAILABLE (the spec's load-shedding code).
pub const MAX_STREAMS: usize = 128;
/// Requests are empty messages; anything larger is refused by the gRPC layer.
pub const MAX_REQUEST_BYTES: usize = 4096;

const FETCH_X509_SVID: &str = "FetchX509SVID";
const FETCH_X509_BUNDLES: &str = "FetchX509Bundles";
const JWT_UNSUPPORTED: &str = "svidgate serves X.509-SVIDs only: its CA (the Istio CA API) \
     issues no JWT-SVIDs, so the JWT-SVID profile is not implemented";

/// The Workload API service; cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkloadApiService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: watch::Receiver<SecretState>,
    local: TrustDomain,
    metrics: WorkloadApiMetrics,
    streams: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

impl WorkloadApiService {
    /// `local`: the workload's trust domain (its bundle must exist before bundles are sent).
    /// Streams end cleanly when `shutdown` becomes true.
    pub fn new(
        state: watch::Receiver<SecretState>,
        local: TrustDomain,
        metrics: WorkloadApiMetrics,
        shutdown: watch::Receiver<bool>,
    ) -> WorkloadApiService {
        WorkloadApiService {
            inner: Arc::new(Inner {
                state,
                local,
                metrics,
                streams: Arc::new(Semaphore::new(MAX_STREAMS)),
                shutdown,
            }),
        }
    }

    /// Serves on `listener` until `shutdown` becomes true, then stops accepting, ends every
    /// open stream and returns once the connections are closed.
    pub async fn serve(self, listener: UnixListener) -> Result<(), tonic::transport::Error> {
        let mut sd = self.inner.shutdown.clone();
        tonic::transport::Server::builder()
            .add_service(
                SpiffeWorkloadApiServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .serve_with_incoming_shutdown(incoming(listener), async move {
                wait_shutdown(&mut sd).await;
            })
            .await
    }

    /// The security header check, then a stream slot.
    fn admit<T>(&self, request: &Request<T>) -> Result<OwnedSemaphorePermit, Status> {
        self.check_header(request)?;
        self.inner.streams.clone().try_acquire_owned().map_err(|_| {
            self.inner.metrics.refusals(Refusal::TooManyStreams).inc();
            warn!(
                limit = MAX_STREAMS,
                "Workload API stream refused: too many open streams"
            );
            Status::unavailable(format!(
                "too many open Workload API streams (limit {MAX_STREAMS}); retry later"
            ))
        })
    }

    fn check_header<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if has_security_header(request.metadata()) {
            return Ok(());
        }
        self.inner
            .metrics
            .refusals(Refusal::MissingSecurityHeader)
            .inc();
        debug!("Workload API call without the security header refused");
        Err(Status::invalid_argument(format!(
            "security header missing: every SPIFFE Workload API call must carry the gRPC \
             metadata {SECURITY_HEADER}: {SECURITY_HEADER_VALUE}"
        )))
    }

    fn jwt_unsupported<T>(&self, request: &Request<T>) -> Status {
        if let Err(status) = self.check_header(request) {
            return status;
        }
        self.inner.metrics.refusals(Refusal::JwtUnsupported).inc();
        Status::unimplemented(JWT_UNSUPPORTED)
    }

    fn stream<T, F>(
        &self,
        permit: OwnedSemaphorePermit,
        rpc: &'static str,
        build: F,
    ) -> ReceiverStream<Result<T, Status>>
    where
        T: Message + Send + 'static,
        F: Fn(&SecretState, SystemTime) -> Result<Option<T>, ContentError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(drive(self.inner.clone(), permit, rpc, build, tx));
        ReceiverStream::new(rx)
    }
}

/// The accepted connections, each behind [`FixAuthority`].
fn incoming(
    listener: UnixListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<FixAuthority<tokio::net::UnixStream>>> {
    UnixListenerStream::new(listener).map(|conn| conn.map(FixAuthority::new))
}

/// Does the call carry `workload.spiffe.io: true`?
pub fn has_security_header(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata
        .get(SECURITY_HEADER)
        .is_some_and(|v| v.as_bytes() == SECURITY_HEADER_VALUE.as_bytes())
}

/// What one stream has sent: the digest of its last message, so that a state change that does
/// not change this stream's message sends nothing.
#[derive(Debug, Default)]
pub struct LastSent(Option<[u8; 32]>);

impl LastSent {
    /// `Some(msg)` if `msg` differs from the last message sent (and records it as sent).
    pub fn next<T: Message>(&mut self, msg: T) -> Option<T> {
        // The encoding holds the private key: zeroized when dropped.
        let bytes = Zeroizing::new(msg.encode_to_vec());
        let digest: [u8; 32] = Sha256::digest(bytes.as_slice()).into();
        if self.0 == Some(digest) {
            return None;
        }
        self.0 = Some(digest);
        Some(msg)
    }
}

async fn drive<T, F>(
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
    rpc: &'static str,
    build: F,
    tx: mpsc::Sender<Result<T, Status>>,
) where
    T: Message,
    F: Fn(&SecretState, SystemTime) -> Result<Option<T>, ContentError>,
{
    let _guard = inner.metrics.open_stream();
    let mut state = inner.state.clone();
    let mut shutdown = inner.shutdown.clone();
    let mut last = LastSent::default();
    debug!(rpc, "Workload API stream opened");
    loop {
        let msg = {
            let s = state.borrow_and_update();
            build(&s, SystemTime::now())
        };
        match msg {
            Ok(Some(msg)) => {
                if let Some(msg) = last.next(msg) {
                    if tx.send(Ok(msg)).await.is_err() {
                        break;
                    }
                    inner.metrics.pushes(rpc).inc();
                    debug!(rpc, "Workload API message sent");
                }
            }
            Ok(None) => debug!(
                rpc,
                "nothing valid to send yet; waiting for the next change"
            ),
            Err(e) => warn!(rpc, error = %e, "not sending an unusable Workload API message"),
        }
        tokio::select! {
            biased;
            () = wait_shutdown(&mut shutdown) => break,
            () = tx.closed() => break,
            changed = state.changed() => if changed.is_err() { break },
        }
    }
    debug!(rpc, "Workload API stream closed");
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApiService {
    type FetchX509SVIDStream = Stream<X509svidResponse>;
    type FetchX509BundlesStream = Stream<X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let permit = self.admit(&request)?;
        Ok(Response::new(self.stream(
            permit,
            FETCH_X509_SVID,
            x509_svid_response,
        )))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let permit = self.admit(&request)?;
        let local = self.inner.local.clone();
        Ok(Response::new(self.stream(
            permit,
            FETCH_X509_BUNDLES,
            move |s, _| x509_bundles_response(s, &local),
        )))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        Err(self.jwt_unsupported(&request))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(self.jwt_unsupported(&request))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Err(self.jwt_unsupported(&request))
    }
}
