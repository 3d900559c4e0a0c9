//! The request format of `svidgate policy eval` (JSON Lines), shared by the CLI, the
//! playground and the npm package so they read and answer requests identically.
//!
//! Input, one request per line (all keys optional; unknown keys make the line malformed):
//! `{"peer": "<URI SAN as Envoy reports it>" | null, "mtls": true, "method": "GET",
//!   "path": "/x", "host": "h", "port": 8080, "headers": {"k": "v"}, "sni": "s"}`
//!
//! Output, one line per request:
//! `{"decision":"allow"|"deny","policy":<name|null>,"rule":<index|null>,"reason":"...",
//!   "dryRun":{...same shape...}}` — `dryRun` only when the policy has dry-run policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CompiledPolicy, EvalMode, NoIdentity, Peer, Request, Verdict};
use crate::spiffe_id::SpiffeId;

/// One request line as written by the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLine {
    /// The peer certificate's first URI SAN, as Envoy's `connection.uri_san_peer_certificate`
    /// reports it; `null`/absent = no URI SAN.
    #[serde(default)]
    pub peer: Option<String>,
    /// `connection.mtls`; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

/// Parses one input line; the error is the problem without serde_json's position suffix
/// (the column is kept, the line is always 1).
pub fn parse_line(line: &str) -> Result<RequestLine, String> {
    if !line.trim_start().starts_with('{') {
        // serde would read a JSON array positionally into the struct: only objects are requests.
        return Err(match serde_json::from_str::<serde_json::Value>(line) {
            Err(e) => json_problem(&e),
            Ok(v) => format!("expected a JSON object, found {}", json_kind(&v)),
        });
    }
    serde_json::from_str(line).map_err(|e| json_problem(&e))
}

fn json_problem(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match msg.strip_suffix(&suffix) {
        Some(base) if e.line() == 1 => format!("{base} (column {})", e.column()),
        _ => msg,
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The peer as the filter derives it from Envoy's connection properties, plus, when there is
/// no valid identity, a human-readable why (`no valid peer identity: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub peer: Peer,
    pub why_none: Option<String>,
}

/// Maps `connection.mtls` and `connection.uri_san_peer_certificate` to a [`Peer`] with
/// [`Peer::from_uri_san`] — the mapping the filter uses — and adds, when there is no
/// identity, why.
pub fn peer_from_envoy(mtls: bool, uri_san: Option<&str>) -> PeerView {
    let peer = Peer::from_uri_san(mtls, uri_san);
    let why_none = match &peer {
        Peer::Identity(_) => None,
        Peer::None(NoIdentity::InvalidSpiffeId) => {
            let san = uri_san.unwrap_or_default();
            let detail = match SpiffeId::parse(san) {
                Err(e) => e.to_string(),
                Ok(_) => NoIdentity::InvalidSpiffeId.describe().to_owned(),
            };
            Some(format!("invalid SPIFFE ID {san:?}: {detail}"))
        }
        Peer::None(kind) => Some(kind.describe().to_owned()),
    };
    PeerView {
        peer,
        why_none: why_none.map(|why| format!("no valid peer identity: {why}")),
    }
}

/// The reason shown for a verdict: the engine's reason, preceded by why the peer has no
/// identity when it has none. The engine's own short note on the missing identity is left
/// out: the prefix says it, with the details.
pub fn verdict_reason(peer: &PeerView, verdict: &Verdict<'_>) -> String {
    match &peer.why_none {
        Some(why) => {
            let base = match verdict.reason.find(" (no peer identity: ") {
                Some(i) if verdict.reason.ends_with(')') => &verdict.reason[..i],
                _ => verdict.reason,
            };
            format!("{why}; {base}")
        }
        None => verdict.reason.to_owned(),
    }
}

/// `allow` / `deny`.
pub fn decision_word(verdict: &Verdict<'_>) -> &'static str {
    if verdict.allow {
        "allow"
    } else {
        "deny"
    }
}

/// The attributes of one request, owned, before borrowing them into a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub peer: PeerView,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub sni: Option<String>,
}

impl RequestSpec {
    /// Builds the request the filter would see. In network mode there is no HTTP: method, path,
    /// host and headers are dropped.
    pub fn new(line: RequestLine, mode: EvalMode) -> Self {
        let peer = peer_from_envoy(line.mtls.unwrap_or(true), line.peer.as_deref());
        let http = mode == EvalMode::Http;
        let headers = if http {
            line.headers
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect()
        } else {
            Vec::new()
        };
        RequestSpec {
            peer,
            method: line.method.filter(|_| http),
            path: line.path.filter(|_| http),
            host: line.host.filter(|_| http),
            port: line.port,
            headers,
            sni: line.sni,
        }
    }

    /// Runs `f` with the borrowed [`Request`].
    pub fn with_request<T>(&self, f: impl FnOnce(&Request<'_>) -> T) -> T {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let req = Request {
            peer: self.peer.peer.clone(),
            method: self.method.as_deref(),
            path: self.path.as_deref(),
            host: self.host.as_deref(),
            port: self.port,
            headers: &headers,
            sni: self.sni.as_deref(),
        };
        f(&req)
    }
}

/// One verdict as written to the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerdictOut {
    pub decision: &'static str,
    pub policy: Option<String>,
    pub rule: Option<usize>,
    pub reason: String,
}

impl VerdictOut {
    pub fn new(peer: &PeerView, v: &Verdict<'_>) -> Self {
        VerdictOut {
            decision: decision_word(v),
            policy: v.policy.map(str::to_owned),
            rule: v.rule,
            reason: verdict_reason(peer, v),
        }
    }
}

/// One output line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionOut {
    #[serde(flatten)]
    pub enforced: VerdictOut,
    #[serde(rename = "dryRun", skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<VerdictOut>,
}

/// Evaluates one request.
pub fn decide(policy: &CompiledPolicy, spec: &RequestSpec, mode: EvalMode) -> DecisionOut {
    spec.with_request(|req| {
        let d = policy.evaluate(req, mode);
        DecisionOut {
            enforced: VerdictOut::new(&spec.peer, &d.enforced),
            dry_run: d.dry_run.as_ref().map(|v| VerdictOut::new(&spec.peer, v)),
        }
    })
}

/// The explain trace of one request line.
pub fn explain_line(policy: &CompiledPolicy, spec: &RequestSpec, mode: EvalMode) -> Vec<String> {
    spec.with_request(|req| policy.explain(req, mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_lines() {
        let ok = parse_line(
            r#"{"peer": "spiffe://td/a", "mtls": false, "method": "GET", "path": "/x", "host": "h", "port": 8080, "headers": {"X-A": "1"}, "sni": "s"}"#,
        )
        .unwrap();
        assert_eq!(ok.peer.as_deref(), Some("spiffe://td/a"));
        assert_eq!(ok.mtls, Some(false));
        assert_eq!(parse_line("{}").unwrap(), RequestLine::default());
        for (line, want) in [
            (r#"{"peer": "x", "bogus": 1}"#, "unknown field `bogus`"),
            (r#"{"port": 70000}"#, "invalid value: integer `70000`"),
            (r#"["x"]"#, "expected a JSON object, found an array"),
            ("peer", "expected value (column 1)"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.starts_with(want), "{line}: {e}");
        }
    }

    #[test]
    fn network_mode_drops_http_and_peer_reasons() {
        let line = parse_line(r#"{"peer": "spiffe://td/ns/a/sa/b", "method": "GET", "path": "/x", "port": 81, "headers": {"X-T": "t"}}"#).unwrap();
        let net = RequestSpec::new(line, EvalMode::Network);
        assert_eq!((net.method, net.path, net.headers.len()), (None, None, 0));
        assert_eq!(net.port, Some(81));
        let none = peer_from_envoy(false, None);
        let v = Verdict {
            allow: false,
            policy: None,
            rule: None,
            reason: "no ALLOW policy matched (no peer identity: connection is not mTLS)",
        };
        assert_eq!(
            verdict_reason(&none, &v),
            "no valid peer identity: connection is not mTLS; no ALLOW policy matched"
        );
    }
}
