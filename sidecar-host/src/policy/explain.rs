//! `svidgate policy explain`: a human-readable trace of one decision.
//!
//! ```text
//! input: peer spiffe://cluster.local/ns/web/sa/frontend, GET /api/x, host api (http)
//! request (HTTP): peer "cluster.local/ns/web/sa/frontend"
//! policy "api-readers" (ALLOW):
//!   rule 0: MATCH
//! decision: ALLOW by policy "api-readers" rule 0: matched ALLOW policy
//! ```
//!
//! The first line is the request as given, with why the peer has no identity if it has none
//! (e.g. what is wrong with an invalid SPIFFE ID); the rest is `CompiledPolicy::explain`, the
//! engine's trace: every policy and rule, matched or not and why, then the decision (and the
//! dry-run decision).

use std::io::Write;

use svidgate_core::policy::{CompiledPolicy, EvalMode, Peer, Verdict};

use super::eval::{RequestLine, RequestSpec};
use super::{decision_word, verdict_reason, ExplainArgs, PeerView, PolicyCliError};

/// Builds the request from the command-line flags (the same mapping as an `eval` line).
pub fn request_from_args(
    args: &ExplainArgs,
    mode: EvalMode,
) -> Result<RequestSpec, PolicyCliError> {
    let mut headers = std::collections::BTreeMap::new();
    for h in &args.headers {
        let (name, value) = parse_header(h)?;
        headers.insert(name, value);
    }
    let line = RequestLine {
        peer: args.peer.clone(),
        mtls: Some(!args.no_mtls),
        method: args.method.clone(),
        path: args.path.clone(),
        host: args.host.clone(),
        port: args.port,
        headers: Some(headers).filter(|h| !h.is_empty()),
        sni: args.sni.clone(),
    };
    Ok(RequestSpec::new(line, mode))
}

/// `NAME=VALUE` → (name, value); the value may contain `=`; the name must not be empty.
pub fn parse_header(arg: &str) -> Result<(String, String), PolicyCliError> {
    match arg.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(PolicyCliError::BadHeader(arg.to_owned())),
    }
}

/// Writes the trace for `spec`.
pub fn explain(
    policy: &CompiledPolicy,
    spec: &RequestSpec,
    mode: EvalMode,
    out: &mut dyn Write,
) -> Result<(), PolicyCliError> {
    writeln!(out, "input: {}", describe_request(spec, mode))?;
    let (trace, decision) =
        spec.with_request(|req| (policy.explain(req, mode), policy.evaluate(req, mode)));
    for line in &trace {
        writeln!(out, "{line}")?;
    }
    // The engine's trace ends with the decision; should it ever not, say it here.
    if !trace.iter().any(|l| l.starts_with("decision")) {
        let enforced = verdict_line("decision", &spec.peer, &decision.enforced);
        writeln!(out, "{enforced}")?;
        if let Some(dry) = &decision.dry_run {
            writeln!(out, "{}", verdict_line("dry-run decision", &spec.peer, dry))?;
        }
    }
    Ok(())
}

/// `decision: allow by policy NAME rule N: reason` (or `decision: deny: reason` when no policy
/// decided).
pub fn verdict_line(label: &str, peer: &PeerView, v: &Verdict<'_>) -> String {
    let by = match (v.policy, v.rule) {
        (Some(p), Some(r)) => format!(" by policy {p} rule {r}"),
        (Some(p), None) => format!(" by policy {p}"),
        _ => String::new(),
    };
    format!(
        "{label}: {}{by}: {}",
        decision_word(v),
        verdict_reason(peer, v)
    )
}

/// One line describing the request: peer, HTTP attributes, port, SNI, headers, mode.
pub fn describe_request(spec: &RequestSpec, mode: EvalMode) -> String {
    let mut parts = Vec::new();
    parts.push(match (&spec.peer.peer, &spec.peer.why_none) {
        (Peer::Identity(id), _) => format!("peer {id}"),
        (_, Some(why)) => format!(
            "peer none ({})",
            why.trim_start_matches("no valid peer identity: ")
        ),
        (_, None) => "peer none".to_owned(),
    });
    match (&spec.method, &spec.path) {
        (Some(m), Some(p)) => parts.push(format!("{m} {p}")),
        (Some(m), None) => parts.push(format!("method {m}")),
        (None, Some(p)) => parts.push(format!("path {p}")),
        (None, None) => {}
    }
    if let Some(h) = &spec.host {
        parts.push(format!("host {h}"));
    }
    if let Some(p) = spec.port {
        parts.push(format!("port {p}"));
    }
    if let Some(s) = &spec.sni {
        parts.push(format!("sni {s}"));
    }
    for (k, v) in &spec.headers {
        parts.push(format!("header {k}={v}"));
    }
    let mode = match mode {
        EvalMode::Http => "http",
        EvalMode::Network => "network",
    };
    format!("{} ({mode})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::eval::{parse_line, RequestSpec};
    use super::*;

    #[test]
    fn request_descriptions() {
        let cases = [
            (
                r#"{"peer": "spiffe://td/ns/a/sa/b", "method": "GET", "path": "/x", "host": "h", "port": 80, "sni": "s", "headers": {"X-A": "1"}}"#,
                EvalMode::Http,
                "peer spiffe://td/ns/a/sa/b, GET /x, host h, port 80, sni s, header x-a=1 (http)",
            ),
            (
                r#"{"peer": "spiffe://td/ns/a/sa/b", "method": "GET", "port": 80}"#,
                EvalMode::Network,
                "peer spiffe://td/ns/a/sa/b, port 80 (network)",
            ),
            (
                r#"{"mtls": false}"#,
                EvalMode::Http,
                "peer none (connection is not mTLS) (http)",
            ),
        ];
        for (line, mode, want) in cases {
            let spec = RequestSpec::new(parse_line(line).unwrap(), mode);
            assert_eq!(describe_request(&spec, mode), want);
        }
        let why = svidgate_core::SpiffeId::parse("bad").unwrap_err();
        let spec = RequestSpec::new(parse_line(r#"{"peer": "bad"}"#).unwrap(), EvalMode::Http);
        assert_eq!(
            describe_request(&spec, EvalMode::Http),
            format!("peer none (invalid SPIFFE ID \"bad\": {why}) (http)")
        );
    }

    #[test]
    fn header_args() {
        assert_eq!(
            parse_header("X-A=b=c").unwrap(),
            ("X-A".into(), "b=c".into())
        );
        assert_eq!(parse_header("x=").unwrap(), ("x".into(), String::new()));
        for bad in ["novalue", "=v", ""] {
            assert_eq!(
                parse_header(bad).unwrap_err().to_string(),
                format!("--header {bad:?}: expected NAME=VALUE")
            );
        }
    }

    #[test]
    fn verdict_lines() {
        let peer = super::super::peer_from_envoy(true, Some("spiffe://td/x"));
        let v = |policy, rule, allow| Verdict {
            allow,
            policy,
            rule,
            reason: "r",
        };
        assert_eq!(
            verdict_line("decision", &peer, &v(Some("p"), Some(1), true)),
            "decision: allow by policy p rule 1: r"
        );
        assert_eq!(
            verdict_line("dry-run", &peer, &v(None, None, false)),
            "dry-run: deny: r"
        );
    }
}
