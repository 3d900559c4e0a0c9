//! `svidgate policy eval --policy FILE [--network]`: decide requests read as JSON Lines.
//!
//! Input, one request per line (all keys optional; unknown keys make the line malformed):
//! `{"peer": "<URI SAN as Envoy reports it>" | null, "mtls": true, "method": "GET",
//!   "path": "/x", "host": "h", "port": 8080, "headers": {"k": "v"}, "sni": "s"}`
//!
//! Output, one line per request, flushed at once:
//! `{"decision":"allow"|"deny","policy":<name|null>,"rule":<index|null>,"reason":"...",
//!   "dryRun":{...same shape...}}` — `dryRun` only when the policy has dry-run policies.
//!
//! A malformed line is reported on `err` as `line N: <problem>`; the rest is still answered
//! and the command exits 1 at the end. Blank lines are skipped.

use std::io::{BufRead, Write};

use svidgate_core::policy::{CompiledPolicy, EvalMode};

use super::{PolicyCliError, EXIT_INVALID, EXIT_OK};

/// The request and decision format, shared with the playground and the npm package.
pub use svidgate_core::policy::request_line::{
    decide, parse_line, DecisionOut, RequestLine, RequestSpec, VerdictOut,
};

/// Reads requests from `input` until EOF, answers each on `out` (flushed per line), reports
/// malformed lines on `err`. Returns the exit code: 0, or 1 if any line was malformed.
pub fn eval(
    policy: &CompiledPolicy,
    mode: EvalMode,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, PolicyCliError> {
    let mut malformed = 0usize;
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| PolicyCliError::Read {
                name: "<stdin>".into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let parsed = match std::str::from_utf8(&buf) {
            Err(_) => Err("not UTF-8 text".to_owned()),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse_line(text.trim_end_matches(['\n', '\r'])),
        };
        match parsed {
            Ok(line) => {
                let answer = decide(policy, &RequestSpec::new(line, mode), mode);
                let json = serde_json::to_string(&answer)
                    .map_err(|e| PolicyCliError::Write(std::io::Error::other(e)))?;
                writeln!(out, "{json}")?;
                out.flush()?;
            }
            Err(problem) => {
                malformed += 1;
                writeln!(err, "line {line_no}: {problem}")?;
                err.flush()?;
            }
        }
    }
    Ok(if malformed > 0 { EXIT_INVALID } else { EXIT_OK })
}

#[cfg(test)]
mod tests {
    use super::super::peer_from_envoy;
    use super::*;
    use svidgate_core::policy::{NoIdentity, Peer, Verdict};

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
        let why = svidgate_core::SpiffeId::parse("nope").unwrap_err();
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
}
