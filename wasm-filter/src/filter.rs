//! The adapter: from Envoy's view of a request or connection (through [`Host`]) to a
//! [`Request`], a [`Decision`] of the core policy engine, and what Envoy should do with it.

use std::cell::RefCell;

use svidgate_core::policy::{CompiledPolicy, Decision, EvalMode, NoIdentity, Peer, Request};

use crate::config::{self, ConfigError, Settings};
use crate::host::{Host, Level};
use crate::metrics::Metrics;
use crate::peer::{self, SvidCache, SVID_CACHE_CAPACITY};

/// What the Envoy context should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let the request / bytes through.
    Continue,
    /// Stop: a local reply was sent (HTTP) or the connection was closed (network).
    Stop,
}

/// Per-connection state in network mode: the decision is taken once, on the first data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnState {
    #[default]
    Undecided,
    Allowed,
    Denied,
}

/// A configured filter: one per VM (root context), shared by its streams.
#[derive(Debug)]
pub struct Filter {
    pub settings: Settings,
    policy: CompiledPolicy,
    metrics: Metrics,
    cache: RefCell<SvidCache>,
}

/// Why a request is refused before the policy is asked.
const UNREADABLE: &str = "request attributes unreadable";

impl Filter {
    /// Parses and compiles the plugin configuration. On error: logs the problem (field and
    /// value), counts `svidgate_config_errors` and returns the error (→ `on_configure` false).
    pub fn configure(
        host: &dyn Host,
        bytes: &[u8],
        mut metrics: Metrics,
    ) -> Result<Filter, ConfigError> {
        match config::parse(bytes) {
            Ok(cfg) => {
                metrics.define_policies(host, &cfg.policy_names);
                host.log(
                    Level::Info,
                    &format!(
                        "svidgate: configured {} policies (strict={}, identity header={}, mode={:?})",
                        cfg.policy_names.len(),
                        cfg.settings.strict,
                        cfg.settings.identity_header.as_deref().unwrap_or("(disabled)"),
                        cfg.settings.mode,
                    ),
                );
                Ok(Filter {
                    settings: cfg.settings,
                    policy: cfg.policy,
                    metrics,
                    cache: RefCell::new(SvidCache::new(SVID_CACHE_CAPACITY)),
                })
            }
            Err(e) => {
                host.log(
                    Level::Error,
                    &format!("svidgate: rejecting plugin configuration: {e}"),
                );
                Metrics::inc(host, metrics.config_errors);
                Err(e)
            }
        }
    }

    fn peer(&self, host: &dyn Host) -> Peer {
        let peer = match self.cache.try_borrow_mut() {
            Ok(mut cache) => peer::peer(host, self.settings.strict, &mut cache),
            Err(_) => peer::peer(host, self.settings.strict, &mut SvidCache::new(1)),
        };
        match &peer {
            Peer::Identity(_) => {}
            Peer::None(NoIdentity::InvalidSpiffeId | NoIdentity::InvalidSvid) => {
                Metrics::inc(host, self.metrics.invalid_identity)
            }
            Peer::None(_) => Metrics::inc(host, self.metrics.no_identity),
        }
        peer
    }

    /// HTTP mode, `on_http_request_headers`.
    pub fn on_http_request_headers(&self, host: &dyn Host) -> Outcome {
        let peer = self.peer(host);
        let attrs = match HttpAttrs::read(host, &self.policy, &self.settings, &peer) {
            Ok(a) => a,
            Err(what) => {
                host.log(Level::Warn, &format!("svidgate: {what}; denying"));
                Metrics::inc(host, self.metrics.denied);
                let details = format!("svidgate denied: reason={UNREADABLE}");
                return self.deny_http(host, &details);
            }
        };
        let headers: Vec<(&str, &str)> = attrs
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let sni = peer::string_property(host, peer::PROP_SNI);
        let request = Request {
            peer,
            method: attrs.method.as_deref(),
            path: attrs.path.as_deref().map(path_without_query),
            host: attrs.authority.as_deref(),
            port: peer::destination_port(host),
            headers: &headers,
            sni: sni.as_deref(),
        };
        let decision = self.policy.evaluate(&request, EvalMode::Http);
        let what = || {
            format!(
                "{} {} from {}",
                request.method.unwrap_or("-"),
                request.path.unwrap_or("-"),
                describe_peer(&request.peer)
            )
        };
        self.record(host, &decision, &what);
        if !decision.enforced.allow {
            return self.deny_http(host, &decision_details(&decision));
        }
        if let Some(name) = self.settings.identity_header.as_deref() {
            let set = host
                .remove_request_header(name)
                .and_then(|()| match &request.peer {
                    Peer::Identity(id) => host.set_request_header(name, id.as_str()),
                    Peer::None(_) => Ok(()),
                });
            if let Err(e) = set {
                // The upstream could see a spoofed identity: refuse instead.
                host.log(
                    Level::Warn,
                    &format!("svidgate: {e}; cannot set {name}, denying"),
                );
                return self
                    .deny_http(host, "svidgate denied: reason=identity header not writable");
            }
        }
        Outcome::Continue
    }

    fn deny_http(&self, host: &dyn Host, details: &str) -> Outcome {
        if let Err(e) = host.set_decision_state(details) {
            host.log(Level::Debug, &format!("svidgate: {e}"));
        }
        if let Err(e) = host.send_local_reply(
            self.settings.deny_status,
            self.settings.deny_body.as_bytes(),
        ) {
            host.log(Level::Warn, &format!("svidgate: {e}"));
        }
        Outcome::Stop
    }

    /// Network mode, `on_downstream_data`: decides on the first call (the TLS handshake is
    /// done by then), then repeats that answer for the life of the connection.
    pub fn on_downstream_data(&self, host: &dyn Host, state: &mut ConnState) -> Outcome {
        match *state {
            ConnState::Allowed => return Outcome::Continue,
            ConnState::Denied => return Outcome::Stop,
            ConnState::Undecided => {}
        }
        let peer = self.peer(host);
        let sni = peer::string_property(host, peer::PROP_SNI);
        let request = Request {
            peer,
            method: None,
            path: None,
            host: None,
            port: peer::destination_port(host),
            headers: &[],
            sni: sni.as_deref(),
        };
        let decision = self.policy.evaluate(&request, EvalMode::Network);
        let what = || format!("connection from {}", describe_peer(&request.peer));
        self.record(host, &decision, &what);
        if decision.enforced.allow {
            *state = ConnState::Allowed;
            Outcome::Continue
        } else {
            *state = ConnState::Denied;
            close(host);
            Outcome::Stop
        }
    }

    /// Logs and counts a decision (enforced and dry-run).
    fn record(&self, host: &dyn Host, decision: &Decision<'_>, what: &dyn Fn() -> String) {
        let v = &decision.enforced;
        self.metrics.count_verdict(host, v.allow, v.policy);
        if !v.allow {
            host.log(
                Level::Info,
                &format!("svidgate: denied {}: {}", what(), v.reason),
            );
            host.log(
                Level::Debug,
                &format!("svidgate: {}", decision_details(decision)),
            );
        }
        if let Some(dry) = &decision.dry_run {
            Metrics::inc(
                host,
                if dry.allow {
                    self.metrics.dry_run_allowed
                } else {
                    self.metrics.dry_run_denied
                },
            );
            let level = if dry.allow { Level::Debug } else { Level::Info };
            host.log(
                level,
                &format!(
                    "svidgate: dry-run would {} {}: policy={} rule={} reason={}",
                    if dry.allow { "allow" } else { "deny" },
                    what(),
                    dry.policy.unwrap_or("-"),
                    rule_str(dry.rule),
                    dry.reason
                ),
            );
        }
    }
}

fn close(host: &dyn Host) {
    if let Err(e) = host.close_downstream() {
        host.log(Level::Warn, &format!("svidgate: {e}"));
    }
}

/// With no valid configuration (the root never configured), every stream is refused.
pub fn deny_unconfigured_http(host: &dyn Host, metrics: &Metrics) -> Outcome {
    host.log(Level::Warn, "svidgate: no valid configuration; denying");
    Metrics::inc(host, metrics.denied);
    let _ = host.set_decision_state("svidgate denied: reason=not configured");
    if let Err(e) = host.send_local_reply(
        config::DEFAULT_DENY_STATUS,
        config::DEFAULT_DENY_BODY.as_bytes(),
    ) {
        host.log(Level::Warn, &format!("svidgate: {e}"));
    }
    Outcome::Stop
}

/// Network-mode counterpart of [`deny_unconfigured_http`].
pub fn deny_unconfigured_connection(
    host: &dyn Host,
    metrics: &Metrics,
    state: &mut ConnState,
) -> Outcome {
    if *state == ConnState::Undecided {
        host.log(
            Level::Warn,
            "svidgate: no valid configuration; closing the connection",
        );
        Metrics::inc(host, metrics.denied);
        *state = ConnState::Denied;
        close(host);
    }
    Outcome::Stop
}

/// The request attributes the policy may read (owned: host calls return owned bytes).
struct HttpAttrs {
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    headers: Vec<(String, String)>,
}

impl HttpAttrs {
    fn read(
        host: &dyn Host,
        policy: &CompiledPolicy,
        settings: &Settings,
        peer: &Peer,
    ) -> Result<Self, String> {
        let mut headers = Vec::new();
        for name in policy.header_names() {
            // The identity header is what the upstream will see: the verified ID, never a
            // client-supplied copy.
            let value = if settings.identity_header.as_deref() == Some(name.as_str()) {
                match peer {
                    Peer::Identity(id) => Some(id.to_string()),
                    Peer::None(_) => None,
                }
            } else {
                header(host, name)?
            };
            if let Some(v) = value {
                headers.push((name.clone(), v));
            }
        }
        Ok(HttpAttrs {
            method: header(host, ":method")?,
            path: header(host, ":path")?,
            authority: header(host, ":authority")?,
            headers,
        })
    }
}

/// A request header as UTF-8; a host error or non-UTF-8 value is an error (fail closed).
fn header(host: &dyn Host, name: &str) -> Result<Option<String>, String> {
    match host.request_header(name) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("request header {name} is not UTF-8")),
        Err(e) => Err(e.to_string()),
    }
}

/// `:path` without query and fragment (Istio's `paths` match the path only).
pub fn path_without_query(p: &str) -> &str {
    p.split(['?', '#']).next().unwrap_or(p)
}

fn rule_str(rule: Option<usize>) -> String {
    rule.map_or_else(|| "-".to_owned(), |r| r.to_string())
}

/// `svidgate denied: policy=<p> rule=<r> reason=<reason>` — for logs and the access log.
pub fn decision_details(d: &Decision<'_>) -> String {
    let v = &d.enforced;
    format!(
        "svidgate {}: policy={} rule={} reason={}",
        if v.allow { "allowed" } else { "denied" },
        v.policy.unwrap_or("-"),
        rule_str(v.rule),
        v.reason
    )
}

/// The peer for log lines.
pub fn describe_peer(peer: &Peer) -> String {
    match peer {
        Peer::Identity(id) => id.to_string(),
        Peer::None(why) => format!(
            "an unidentified peer ({})",
            match why {
                NoIdentity::NotMtls => "not mTLS",
                NoIdentity::NoUriSan => "no URI SAN",
                NoIdentity::InvalidSpiffeId => "invalid SPIFFE ID",
                NoIdentity::InvalidSvid => "not a valid X509-SVID",
                NoIdentity::Unavailable => "peer properties unavailable",
            }
        ),
    }
}

#[cfg(test)]
mod tests;
