//! The adapter: from Envoy's view of a request or connection (through [`Host`]) to a
//! [`Request`], a [`Decision`] of the core policy engine, and what Envoy should do with it.

use std::cell::RefCell;

use svidgate_core::http::{self as forms, HeaderView};
use svidgate_core::policy::{
    Attributes, CompiledPolicy, Decision, EvalMode, NoIdentity, Peer, Request,
};

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
    /// What the policy reads in HTTP and in network mode: only these are fetched per request.
    http_attrs: Attributes,
    network_attrs: Attributes,
    metrics: Metrics,
    cache: RefCell<SvidCache>,
}

/// Bench-only bisection of the per-request cost (`scripts/bench_envoy.py --bisect`): a module
/// built with `SVIDGATE_BENCH_STOP=<0..3>` in the environment returns `Continue` early from
/// every HTTP request — 0: right away, 1: after reading the peer, 2: after evaluating the
/// policy, 3: after counting — and so allows everything. Never set for a real build: without
/// the variable (every `make` target, every test) the whole path runs.
pub const BENCH_STOP: u8 = match option_env!("SVIDGATE_BENCH_STOP") {
    Some(s) => match s.as_bytes() {
        [d @ b'0'..=b'3'] => *d - b'0',
        _ => u8::MAX,
    },
    None => u8::MAX,
};

/// Why a request is refused before the policy is asked.
const UNREADABLE: &str = "request attributes unreadable";

/// Which request attribute is not in the form the policy compares (each has its counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Path,
    Method,
    Host,
    Header,
}

/// Why the request attributes cannot be handed to the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// A host call failed or a value is not UTF-8.
    Unreadable(String),
    /// An attribute is ambiguous (see [`svidgate_core::http`]).
    Form(Form, String),
}

impl Filter {
    /// Parses and compiles the plugin configuration. On error: logs the problem (field and
    /// value), counts `svidgate_config_errors` and returns the error (→ `on_configure` false).
    pub fn configure(
        host: &dyn Host,
        bytes: &[u8],
        metrics: Metrics,
    ) -> Result<Filter, ConfigError> {
        Self::configure_owned(host, bytes.to_vec(), metrics)
    }

    /// [`Filter::configure`] taking the text, which is freed once parsed (lower peak memory).
    pub fn configure_owned(
        host: &dyn Host,
        bytes: Vec<u8>,
        mut metrics: Metrics,
    ) -> Result<Filter, ConfigError> {
        match config::parse_owned(bytes) {
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
                let attrs = cfg.policy.attributes();
                Ok(Filter {
                    settings: cfg.settings,
                    http_attrs: attrs.for_mode(EvalMode::Http),
                    network_attrs: attrs.for_mode(EvalMode::Network),
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

    /// HTTP mode, `on_http_request_headers`. Host calls on the allow path: the peer (one
    /// property read in strict mode once the certificate is cached), the request attributes
    /// the policy reads ([`Attributes`]: none for a principals-only policy), the counters, and
    /// one header replacement.
    pub fn on_http_request_headers(&self, host: &dyn Host) -> Outcome {
        if BENCH_STOP == 0 {
            return Outcome::Continue;
        }
        let peer = self.peer(host);
        if BENCH_STOP == 1 {
            return Outcome::Continue;
        }
        let a = self.http_attrs;
        let attrs = match HttpAttrs::read(host, a, &self.policy, &self.settings, &peer) {
            Ok(attrs) => attrs,
            Err(Refusal::Unreadable(what)) => {
                host.log(Level::Warn, &format!("svidgate: {what}; denying"));
                Metrics::inc(host, self.metrics.denied);
                let details = format!("svidgate denied: reason={UNREADABLE}");
                return self.deny_http(host, &details);
            }
            Err(Refusal::Form(form, why)) => return self.deny_form(host, form, &why, &peer),
        };
        let headers: Vec<(&str, &str)> = attrs
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let sni = if a.sni {
            peer::string_property(host, peer::PROP_SNI)
        } else {
            None
        };
        let request = Request {
            peer,
            method: attrs.method.as_deref(),
            path: attrs.path.as_deref().map(forms::path_part),
            host: attrs.authority.as_deref(),
            port: if a.port {
                peer::destination_port(host)
            } else {
                None
            },
            headers: &headers,
            sni: sni.as_deref(),
        };
        let decision = self.policy.evaluate(&request, EvalMode::Http);
        if BENCH_STOP == 2 {
            return Outcome::Continue;
        }
        // For log lines only (denials and dry-run results): the method and path, read now
        // if the policy did not need them. Never on the allow path without dry-run.
        let what = |fetch: bool| {
            let method = request
                .method
                .map(str::to_owned)
                .or_else(|| fetch.then(|| log_header(host, ":method")).flatten());
            let path = request.path.map(str::to_owned).or_else(|| {
                fetch
                    .then(|| log_header(host, ":path"))
                    .flatten()
                    .map(|p| path_without_query(&p).to_owned())
            });
            format!(
                "{} {} from {}",
                method.as_deref().unwrap_or("-"),
                path.as_deref().unwrap_or("-"),
                describe_peer(&request.peer)
            )
        };
        self.record(host, &decision, &what);
        if BENCH_STOP == 3 {
            return Outcome::Continue;
        }
        if !decision.enforced.allow {
            return self.deny_http(host, &decision_details(&decision));
        }
        if let Some(name) = self.settings.identity_header.as_deref() {
            // One host call either way. Replacing is Envoy's `setCopy`, which removes every
            // copy of the header before adding the one value (since Envoy 1.16; the
            // end-to-end test sends several spoofed copies and checks the upstream sees one).
            let set = match &request.peer {
                Peer::Identity(id) => host.set_request_header(name, id.as_str()),
                Peer::None(_) => host.remove_request_header(name),
            };
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

    /// Refuses a request whose attribute is ambiguous: counted as denied and under its own
    /// counter, logged with the method, path and peer. Enforced even when the policies run in
    /// dry-run: the policy cannot say what it would decide.
    fn deny_form(&self, host: &dyn Host, form: Form, why: &str, peer: &Peer) -> Outcome {
        Metrics::inc(host, self.metrics.denied);
        Metrics::inc(host, self.metrics.malformed(form));
        let reason = match form {
            Form::Path => "path not in normal form",
            Form::Method => "method not an upper-case token",
            Form::Host => "malformed host",
            Form::Header => "ambiguous header",
        };
        host.log(
            Level::Info,
            &format!(
                "svidgate: denied {} {} from {}: {reason}: {why}",
                log_header(host, ":method").as_deref().unwrap_or("-"),
                log_header(host, ":path").as_deref().unwrap_or("-"),
                describe_peer(peer)
            ),
        );
        self.deny_http(host, &format!("svidgate denied: reason={reason} ({why})"))
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
        let a = self.network_attrs;
        let sni = if a.sni {
            peer::string_property(host, peer::PROP_SNI)
        } else {
            None
        };
        let port = if a.port {
            peer::destination_port(host)
        } else {
            None
        };
        let request = Request::network(peer, port, sni.as_deref());
        let decision = self.policy.evaluate(&request, EvalMode::Network);
        let what = |_fetch: bool| format!("connection from {}", describe_peer(&request.peer));
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

    /// Logs and counts a decision (enforced and dry-run). `what(fetch)` describes the request
    /// for a log line; with `fetch` it may read attributes the policy did not need (denials
    /// and dry-run denials are rare; a dry-run allow is logged at debug with what was read).
    fn record(&self, host: &dyn Host, decision: &Decision<'_>, what: &dyn Fn(bool) -> String) {
        let v = &decision.enforced;
        self.metrics.count_verdict(host, v.allow, v.policy);
        if !v.allow {
            host.log(
                Level::Info,
                &format!("svidgate: denied {}: {}", what(true), v.reason),
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
                    what(!dry.allow),
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

/// The request attributes the policy reads (owned: host calls return owned bytes), each
/// checked for the form the policy compares ([`svidgate_core::http`]). Those the policy does
/// not read ([`Attributes`]) are neither fetched nor checked: they cannot change the decision.
struct HttpAttrs {
    method: Option<String>,
    path: Option<String>,
    /// As sent (well-formed: [`forms::normalize_host`] accepts it).
    authority: Option<String>,
    headers: Vec<(String, String)>,
}

impl HttpAttrs {
    fn read(
        host: &dyn Host,
        a: Attributes,
        policy: &CompiledPolicy,
        settings: &Settings,
        peer: &Peer,
    ) -> Result<Self, Refusal> {
        let headers = if policy.header_names().is_empty() {
            Vec::new()
        } else {
            read_headers(host, policy.header_names(), settings, peer)?
        };
        let read = |on: bool, name: &str| {
            if on {
                header(host, name).map_err(Refusal::Unreadable)
            } else {
                Ok(None)
            }
        };
        let method = read(a.method, ":method")?;
        if let Some(m) = &method {
            forms::check_method(m).map_err(|e| Refusal::Form(Form::Method, e.to_string()))?;
        }
        let path = read(a.path, ":path")?;
        if let Some(p) = &path {
            forms::check_path(p).map_err(|e| Refusal::Form(Form::Path, e.to_string()))?;
        }
        // Checked here (a malformed host is refused); the policy normalizes it itself.
        let authority = read(a.host, ":authority")?;
        if let Some(h) = &authority {
            forms::normalize_host(h).map_err(|e| Refusal::Form(Form::Host, e.to_string()))?;
        }
        Ok(HttpAttrs {
            method,
            path,
            authority,
            headers,
        })
    }
}

/// The headers a `when` condition reads, from all the request's headers in one host call:
/// a repeated one is refused or joined (`filter.repeatedHeaders`), one also sent with `_` for
/// `-` is refused, and the `_` variants of the identity header are removed. The identity
/// header itself reads as the verified ID (what the upstream will see), never the client's.
fn read_headers(
    host: &dyn Host,
    names: &[String],
    settings: &Settings,
    peer: &Peer,
) -> Result<Vec<(String, String)>, Refusal> {
    let identity = settings.identity_header.as_deref();
    let raw = host
        .request_headers()
        .map_err(|e| Refusal::Unreadable(e.to_string()))?;
    let pairs: Vec<(String, String)> = raw
        .into_iter()
        .map(|(n, v)| match String::from_utf8(v) {
            Ok(v) => Ok((n, v)),
            Err(_) if relevant(&n, names, identity) => Err(Refusal::Unreadable(format!(
                "request header {n} is not UTF-8"
            ))),
            Err(_) => Ok((n, String::new())),
        })
        .collect::<Result<_, _>>()?;
    let wanted: Vec<String> = names
        .iter()
        .filter(|n| Some(n.as_str()) != identity)
        .cloned()
        .collect();
    let HeaderView {
        mut headers,
        identity_variants,
    } = forms::collect_headers(&pairs, &wanted, identity, settings.repeated_headers)
        .map_err(|e| Refusal::Form(Form::Header, e.to_string()))?;
    for variant in &identity_variants {
        host.remove_request_header(variant)
            .map_err(|e| Refusal::Unreadable(e.to_string()))?;
    }
    if let (Some(id_name), Peer::Identity(id)) = (identity, peer) {
        if names.iter().any(|n| n == id_name) {
            headers.push((id_name.to_owned(), id.to_string()));
        }
    }
    Ok(headers)
}

/// Is header `name` one the policy reads or the identity header, in any spelling?
fn relevant(name: &str, names: &[String], identity: Option<&str>) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    names.contains(&n) || identity == Some(n.as_str())
}

/// A request header for a log line: `None` when absent, unreadable or not UTF-8.
fn log_header(host: &dyn Host, name: &str) -> Option<String> {
    header(host, name).ok().flatten()
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

/// `:path` without query and fragment (for log lines).
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
