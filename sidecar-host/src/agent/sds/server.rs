//! The SDS gRPC service: state-of-the-world `StreamSecrets`, incremental `DeltaSecrets` and
//! unary `FetchSecrets`, all answering from the watched [`SecretState`].
//!
//! Protocol rules (xDS):
//! - every response carries a version (content hash of what it holds) and a fresh nonce;
//! - a request whose nonce matches the last response and has no `error_detail` is an ACK:
//!   nothing is sent;
//! - with `error_detail` it is a NACK: Envoy's message is logged and counted, and nothing is
//!   resent until the content changes (no resend loop);
//! - a request with an older nonce is stale and ignored;
//! - a request with an empty nonce (a new or reconnected stream) gets the current secrets;
//! - a state change is pushed to every stream whose resources changed, all at once;
//! - the node is only expected on the first request of a stream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use sha2::{Digest, Sha256};
use svidgate_core::{SpiffeId, TrustDomain};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::resources::{classify, resolve, Resolved, SECRET_TYPE_URL};
use super::state::SecretState;
use crate::agent::metrics::Metrics;
use crate::runtime::{wait_shutdown, Shutdown};

/// The SDS service; cheap to clone.
#[derive(Debug, Clone)]
pub struct SdsService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: watch::Receiver<SecretState>,
    workload: SpiffeId,
    known_tds: BTreeSet<TrustDomain>,
    metrics: Arc<Metrics>,
    nonce: AtomicU64,
    shutdown: Shutdown,
}

impl Inner {
    fn next_nonce(&self) -> String {
        format!("{:x}", self.nonce.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn check_names(&self, names: &[String]) -> Result<(), Status> {
        for n in names {
            classify(n, &self.workload, &self.known_tds).map_err(|e| {
                warn!(resource = %n, "SDS request for an unknown resource");
                Status::not_found(e.to_string())
            })?;
        }
        Ok(())
    }
    fn resolve(&self, state: &SecretState, name: &str) -> Option<Resolved> {
        resolve(state, &self.workload, &self.known_tds, name)
            .ok()
            .flatten()
    }
}

impl SdsService {
    /// `known_tds`: the trust domains that may be asked for as `spiffe://<td>` (the local one is
    /// always known). Streams end cleanly when `shutdown` becomes true.
    pub fn new(
        state: watch::Receiver<SecretState>,
        workload: SpiffeId,
        known_tds: BTreeSet<TrustDomain>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> SdsService {
        SdsService {
            inner: Arc::new(Inner {
                state,
                workload,
                known_tds,
                metrics,
                nonce: AtomicU64::new(0),
                shutdown,
            }),
        }
    }

    /// Serves SDS on `listener` until `shutdown` becomes true, then stops accepting, ends every
    /// open stream and returns once the connections are closed.
    pub async fn serve(self, listener: UnixListener) -> Result<(), tonic::transport::Error> {
        let mut sd = self.inner.shutdown.clone();
        tonic::transport::Server::builder()
            .add_service(SecretDiscoveryServiceServer::new(self))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                wait_shutdown(&mut sd).await;
            })
            .await
    }
}

/// Type alias kept public for callers that build the server themselves.
pub type SdsServer = SecretDiscoveryServiceServer<SdsService>;

fn node_id(node: Option<&envoy_types::pb::envoy::config::core::v3::Node>) -> String {
    node.map(|n| format!("{}/{}", n.cluster, n.id))
        .unwrap_or_default()
}

fn check_type(type_url: &str) -> Result<(), Status> {
    if type_url.is_empty() || type_url == SECRET_TYPE_URL {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "unsupported type_url {type_url:?}: this server serves {SECRET_TYPE_URL}"
        )))
    }
}

fn combined_version(versions: &[String]) -> String {
    match versions {
        [one] => one.clone(),
        many => hex::encode(&Sha256::digest(many.join(",").as_bytes())[..8]),
    }
}

// ---------------------------------------------------------------------------------------------
// State of the world

#[derive(Debug, Default)]
struct Sotw {
    node: String,
    names: Vec<String>,
    /// Per-name versions of the last response (None: nothing sent yet, or must resend).
    sent: Option<Vec<String>>,
    nonce: String,
}

impl Sotw {
    fn on_request(&mut self, inner: &Inner, req: DiscoveryRequest) -> Result<(), Status> {
        if let Some(n) = req.node.as_ref() {
            if self.node.is_empty() {
                self.node = node_id(Some(n));
            }
        }
        check_type(&req.type_url)?;
        if !req.response_nonce.is_empty() && req.response_nonce != self.nonce {
            debug!(node = %self.node, nonce = %req.response_nonce, "ignoring SDS request with a stale nonce");
            return Ok(());
        }
        if let Some(err) = req.error_detail.as_ref() {
            if !req.response_nonce.is_empty() {
                inner.metrics.nacked();
                warn!(
                    node = %self.node, resources = ?self.names, version = %req.version_info,
                    code = err.code, error = %err.message,
                    "Envoy rejected SDS secrets (NACK); keeping them until the next change"
                );
            }
            return Ok(());
        }
        inner.check_names(&req.resource_names)?;
        if req.response_nonce.is_empty() || req.resource_names != self.names {
            debug!(node = %self.node, resources = ?req.resource_names, "SDS subscription");
            self.names = req.resource_names;
            self.sent = None;
        }
        Ok(())
    }

    fn pending_push(&mut self, inner: &Inner, state: &SecretState) -> Option<DiscoveryResponse> {
        if self.names.is_empty() {
            return None;
        }
        let mut resolved = Vec::with_capacity(self.names.len());
        for n in &self.names {
            resolved.push(inner.resolve(state, n)?);
        }
        let versions: Vec<String> = resolved.iter().map(|r| r.version.clone()).collect();
        if self.sent.as_ref() == Some(&versions) {
            return None;
        }
        let nonce = inner.next_nonce();
        let version_info = combined_version(&versions);
        debug!(node = %self.node, resources = ?self.names, version = %version_info, "pushing secrets");
        self.sent = Some(versions);
        self.nonce = nonce.clone();
        Some(DiscoveryResponse {
            version_info,
            resources: resolved.into_iter().map(|r| r.any).collect(),
            type_url: SECRET_TYPE_URL.to_owned(),
            nonce,
            ..Default::default()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Incremental (delta)

#[derive(Debug, Default)]
struct Delta {
    started: bool,
    node: String,
    subscribed: BTreeSet<String>,
    /// What we believe the client has: name → version.
    client: HashMap<String, String>,
    nonce: String,
}

impl Delta {
    fn on_request(&mut self, inner: &Inner, req: DeltaDiscoveryRequest) -> Result<(), Status> {
        if !self.started {
            self.started = true;
            self.client = req.initial_resource_versions.clone();
        }
        if let Some(n) = req.node.as_ref() {
            if self.node.is_empty() {
                self.node = node_id(Some(n));
            }
        }
        check_type(&req.type_url)?;
        let current = !req.response_nonce.is_empty() && req.response_nonce == self.nonce;
        if !req.response_nonce.is_empty() && !current {
            debug!(node = %self.node, nonce = %req.response_nonce, "stale nonce in delta SDS request");
        } else if let (true, Some(err)) = (current, req.error_detail.as_ref()) {
            inner.metrics.nacked();
            warn!(
                node = %self.node, code = err.code, error = %err.message,
                "Envoy rejected delta SDS secrets (NACK); keeping them until the next change"
            );
        }
        inner.check_names(&req.resource_names_subscribe)?;
        for n in &req.resource_names_unsubscribe {
            self.subscribed.remove(n);
            self.client.remove(n);
        }
        for n in req.resource_names_subscribe {
            debug!(node = %self.node, resource = %n, "delta SDS subscribe");
            self.subscribed.insert(n);
        }
        Ok(())
    }

    fn pending_push(
        &mut self,
        inner: &Inner,
        state: &SecretState,
    ) -> Option<DeltaDiscoveryResponse> {
        let mut resources = Vec::new();
        let mut removed = Vec::new();
        let mut sent: BTreeMap<String, Option<String>> = BTreeMap::new();
        for n in &self.subscribed {
            match inner.resolve(state, n) {
                Some(r) => {
                    if self.client.get(n) != Some(&r.version) {
                        sent.insert(n.clone(), Some(r.version.clone()));
                        resources.push(Resource {
                            name: n.clone(),
                            version: r.version,
                            resource: Some(r.any),
                            ..Default::default()
                        });
                    }
                }
                None => {
                    if self.client.contains_key(n) {
                        sent.insert(n.clone(), None);
                        removed.push(n.clone());
                    }
                }
            }
        }
        if resources.is_empty() && removed.is_empty() {
            return None;
        }
        for (n, v) in sent {
            match v {
                Some(v) => self.client.insert(n, v),
                None => self.client.remove(&n),
            };
        }
        let nonce = inner.next_nonce();
        self.nonce = nonce.clone();
        Some(DeltaDiscoveryResponse {
            system_version_info: state.version.to_string(),
            resources,
            type_url: SECRET_TYPE_URL.to_owned(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The stream driver shared by both flavours.

trait StreamProto: Default + Send + 'static {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    fn on_request(&mut self, inner: &Inner, req: Self::Req) -> Result<(), Status>;
    fn pending_push(&mut self, inner: &Inner, state: &SecretState) -> Option<Self::Resp>;
}

impl StreamProto for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    fn on_request(&mut self, inner: &Inner, req: DiscoveryRequest) -> Result<(), Status> {
        Sotw::on_request(self, inner, req)
    }
    fn pending_push(&mut self, inner: &Inner, state: &SecretState) -> Option<DiscoveryResponse> {
        Sotw::pending_push(self, inner, state)
    }
}

impl StreamProto for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    fn on_request(&mut self, inner: &Inner, req: DeltaDiscoveryRequest) -> Result<(), Status> {
        Delta::on_request(self, inner, req)
    }
    fn pending_push(
        &mut self,
        inner: &Inner,
        state: &SecretState,
    ) -> Option<DeltaDiscoveryResponse> {
        Delta::pending_push(self, inner, state)
    }
}

async fn drive<P: StreamProto>(
    inner: Arc<Inner>,
    mut inbound: Streaming<P::Req>,
    tx: mpsc::Sender<Result<P::Resp, Status>>,
) where
    P::Req: prost::Message + Default,
{
    let _guard = inner.metrics.open_stream();
    let mut state_rx = inner.state.clone();
    let mut shutdown = inner.shutdown.clone();
    let mut proto = P::default();
    loop {
        tokio::select! {
            biased;
            () = wait_shutdown(&mut shutdown) => break,
            () = tx.closed() => break,
            msg = inbound.message() => match msg {
                Ok(Some(req)) => {
                    if let Err(status) = proto.on_request(&inner, req) {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    debug!(%status, "SDS stream ended by the client");
                    break;
                }
            },
            changed = state_rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        let resp = {
            let state = state_rx.borrow_and_update();
            proto.pending_push(&inner, &state)
        };
        if let Some(resp) = resp {
            if tx.send(Ok(resp)).await.is_err() {
                break;
            }
            inner.metrics.pushed();
        }
    }
}

/// Spawns the driver of one SDS stream of protocol `P`; the response streams what it sends.
fn open_stream<P: StreamProto>(
    inner: &Arc<Inner>,
    request: Request<Streaming<P::Req>>,
) -> Response<ReceiverStream<Result<P::Resp, Status>>>
where
    P::Req: prost::Message + Default,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(drive::<P>(inner.clone(), request.into_inner(), tx));
    Response::new(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type DeltaSecretsStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamSecretsStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        Ok(open_stream::<Sotw>(&self.inner, request))
    }

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Ok(open_stream::<Delta>(&self.inner, request))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let req = request.into_inner();
        check_type(&req.type_url)?;
        if req.resource_names.is_empty() {
            return Err(Status::invalid_argument(
                "FetchSecrets needs at least one resource name",
            ));
        }
        self.inner.check_names(&req.resource_names)?;
        let state = self.inner.state.borrow().clone();
        let mut resolved = Vec::new();
        for n in &req.resource_names {
            match self.inner.resolve(&state, n) {
                Some(r) => resolved.push(r),
                None => {
                    return Err(Status::unavailable(format!(
                        "SDS resource {n:?} is not available yet"
                    )))
                }
            }
        }
        let versions: Vec<String> = resolved.iter().map(|r| r.version.clone()).collect();
        info!(node = %node_id(req.node.as_ref()), resources = ?req.resource_names, "FetchSecrets");
        Ok(Response::new(DiscoveryResponse {
            version_info: combined_version(&versions),
            resources: resolved.into_iter().map(|r| r.any).collect(),
            type_url: SECRET_TYPE_URL.to_owned(),
            nonce: self.inner.next_nonce(),
            ..Default::default()
        }))
    }
}
