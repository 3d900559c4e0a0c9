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
    use crate::policy::{NoIdentity, Peer};

    #[test]
    fn parse_lines() {
        let ok = parse_line(
            r#"{"peer": "spiffe://td/a", "mtls": false, "method": "GET", "path": "/x", "host": "h", "port": 8080, "headers": {"X-A": "1"}, "sni": "s"}"#,
        )
        .unwrap();
        assert_eq!(ok.peer.as_deref(), Some("spiffe://td/a"));
        assert_eq!(ok.mtls, Some(false));
        assert_eq!(ok.port, Some(8080));
        assert_eq!(parse_line("{}").unwrap(), RequestLine::default());
        assert_eq!(
            parse_line(r#"{"peer": null}"#).unwrap(),
            RequestLine::default()
        );

        let bad = [
            (r#"{"peer": "x", "bogus": 1}"#, "unknown field `bogus`"),
            (r#"{"port": 70000}"#, "invalid value: integer `70000`"),
            (
                r#"{"port": "80"}"#,
                "invalid type: string \"80\", expected u16",
            ),
            (
                r#"{"mtls": "yes"}"#,
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                r#"{"headers": {"a": 1}}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"peer": 5}"#,
                "invalid type: integer `5`, expected a string",
            ),
            (r#"{"peer": "a", "peer": "b"}"#, "duplicate field `peer`"),
            (r#"["x"]"#, "expected a JSON object, found an array"),
            ("null", "expected a JSON object, found null"),
            ("peer", "expected value (column 1)"),
            (r#"{"peer": "#, "EOF while parsing"),
            ("{} x", "trailing characters"),
        ];
        for (line, want) in bad {
            let e = parse_line(line).unwrap_err();
            assert!(e.starts_with(want), "{line}: {e}");
            assert!(!e.contains(" at line "), "{e}");
        }
        assert_eq!(
            parse_line(r#"{"peer": "x", "bogus": 1}"#).unwrap_err(),
            "unknown field `bogus`, expected one of `peer`, `mtls`, `method`, `path`, `host`, `port`, `headers`, `sni` (column 21)"
        );
    }

    #[test]
    fn request_spec_defaults_and_network_mode() {
        let line = parse_line(
            r#"{"peer": "spiffe://td/ns/a/sa/b", "method": "GET", "path": "/x", "host": "h", "port": 81, "headers": {"X-Tenant": "t"}, "sni": "s"}"#,
        )
        .unwrap();
        let http = RequestSpec::new(line.clone(), EvalMode::Http);
        assert!(matches!(http.peer.peer, Peer::Identity(_)));
        assert_eq!(http.method.as_deref(), Some("GET"));
        assert_eq!(http.headers, [("x-tenant".to_owned(), "t".to_owned())]);
        let net = RequestSpec::new(line, EvalMode::Network);
        assert_eq!(
            (net.method, net.path, net.host, net.headers.len()),
            (None, None, None, 0)
        );
        assert_eq!((net.port, net.sni.as_deref()), (Some(81), Some("s")));

        let none = RequestSpec::new(RequestLine::default(), EvalMode::Http);
        assert_eq!(none.peer.peer, Peer::None(NoIdentity::NoUriSan));
        let no_mtls = RequestSpec::new(
            RequestLine {
                mtls: Some(false),
                ..Default::default()
            },
            EvalMode::Http,
        );
        assert_eq!(no_mtls.peer.peer, Peer::None(NoIdentity::NotMtls));
    }

    #[test]
    fn output_shape() {
        let peer = peer_from_envoy(true, Some("nope"));
        let v = Verdict {
            allow: false,
            policy: Some("p"),
            rule: Some(0),
            reason: "matched DENY policy",
        };
        let out = DecisionOut {
            enforced: VerdictOut::new(&peer, &v),
            dry_run: None,
        };
        let why = SpiffeId::parse("nope").unwrap_err();
        let text = serde_json::to_string(&out).unwrap();
        assert!(text.starts_with(r#"{"decision":"deny","policy":"p","rule":0,"reason":"#));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!({
                "decision": "deny",
                "policy": "p",
                "rule": 0,
                "reason": format!("no valid peer identity: invalid SPIFFE ID \"nope\": {why}; matched DENY policy"),
            })
        );
        let ok = peer_from_envoy(true, Some("spiffe://td/x"));
        let allow = Verdict {
            allow: true,
            policy: None,
            rule: None,
            reason: "no ALLOW policy",
        };
        let out = DecisionOut {
            enforced: VerdictOut::new(&ok, &allow),
            dry_run: Some(VerdictOut::new(&ok, &v)),
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"decision":"allow","policy":null,"rule":null,"reason":"no ALLOW policy","dryRun":{"decision":"deny","policy":"p","rule":0,"reason":"matched DENY policy"}}"#
        );
    }

    #[test]
    fn peer_mapping_matches_the_filter() {
        let id = "spiffe://cluster.local/ns/web/sa/frontend";
        let no_san = "no valid peer identity: peer certificate has no URI SAN";
        let mut cases: Vec<(bool, Option<&str>, Peer, Option<String>)> = vec![
            (
                true,
                Some(id),
                Peer::Identity(SpiffeId::parse(id).unwrap()),
                None,
            ),
            // mTLS false wins over whatever URI SAN is given.
            (
                false,
                Some(id),
                Peer::None(NoIdentity::NotMtls),
                Some("no valid peer identity: connection is not mTLS".into()),
            ),
            (
                true,
                None,
                Peer::None(NoIdentity::NoUriSan),
                Some(no_san.into()),
            ),
            (
                true,
                Some(""),
                Peer::None(NoIdentity::NoUriSan),
                Some(no_san.into()),
            ),
        ];
        // Invalid IDs: the reason names the ID and (a prefix of) what is wrong with it.
        for (bad, what) in [
            ("SPIFFE://cluster.local/ns/a/sa/b", ""),
            ("spiffe://cluster.local", "workload SPIFFE ID has no path"),
            (
                "spiffe://cluster.local/ns/a/../b",
                "path has a '.' or '..' segment",
            ),
        ] {
            let why = format!("no valid peer identity: invalid SPIFFE ID \"{bad}\": {what}");
            cases.push((
                true,
                Some(bad),
                Peer::None(NoIdentity::InvalidSpiffeId),
                Some(why),
            ));
        }
        for (mtls, san, peer, why) in cases {
            let view = peer_from_envoy(mtls, san);
            assert_eq!(view.peer, peer, "{mtls} {san:?}");
            match (why, &view.why_none) {
                (None, None) => {}
                (Some(want), Some(got)) => assert!(got.starts_with(&want), "{got} vs {want}"),
                (want, got) => panic!("{san:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn reason_includes_why_the_peer_has_no_identity() {
        let verdict = Verdict {
            allow: false,
            policy: None,
            rule: None,
            reason: "no ALLOW policy matched",
        };
        let none = peer_from_envoy(false, None);
        assert_eq!(
            verdict_reason(&none, &verdict),
            "no valid peer identity: connection is not mTLS; no ALLOW policy matched"
        );
        let some = peer_from_envoy(true, Some("spiffe://td/x"));
        assert_eq!(verdict_reason(&some, &verdict), "no ALLOW policy matched");
        let engine_noted = Verdict {
            reason: "no ALLOW policy matched (no peer identity: connection is not mTLS)",
            ..verdict
        };
        assert_eq!(
            verdict_reason(&none, &engine_noted),
            "no valid peer identity: connection is not mTLS; no ALLOW policy matched"
        );
    }
}
