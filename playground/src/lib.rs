//! svidgate's policy engine for the browser (the playground) and Node.js (the npm package):
//! `svidgate-core` compiled with wasm-bindgen. Every function takes text and returns JSON
//! text; the decisions are the engine's, in `svidgate policy eval`'s output format.
//!
//! The functions are plain Rust (tested natively); the `#[wasm_bindgen]` exports wrap them.

use serde::Serialize;
use serde_json::{json, Value};
use svidgate_core::policy::diff::{self, DiffOptions};
use svidgate_core::policy::import::{self, ImportOptions};
use svidgate_core::policy::lint::{self, LintOptions};
use svidgate_core::policy::request_line::{
    decide, explain_line, parse_line, DecisionOut, RequestSpec,
};
use svidgate_core::policy::{Action, CompiledPolicy, EvalMode, PolicyDocument, PolicyError, Rule};
use wasm_bindgen::prelude::*;

pub mod locate;

/// Largest policy or input text accepted (bytes): a 100,000-principal allowlist fits.
pub const MAX_TEXT: usize = 16 << 20;
/// Most request lines of one batch.
pub const MAX_LINES: usize = 10_000;

fn mode(network: bool) -> EvalMode {
    if network {
        EvalMode::Network
    } else {
        EvalMode::Http
    }
}

/// JSON when the first non-blank character is `{` (as `svidgate policy` decides for stdin).
fn parse_document(text: &str) -> Result<PolicyDocument, PolicyError> {
    if text.len() > MAX_TEXT {
        return Err(PolicyError::Syntax(format!(
            "document too large: {} bytes, at most {MAX_TEXT}",
            text.len()
        )));
    }
    if text.trim_start().starts_with('{') {
        PolicyDocument::from_json(text)
    } else {
        PolicyDocument::from_yaml(text)
    }
}

/// One problem, located in the text.
#[derive(Debug, Serialize)]
struct LocatedProblem {
    path: String,
    problem: String,
    value: String,
    /// `<path>: <problem> (<value>)`, as `svidgate policy check` prints it.
    message: String,
    line: Option<usize>,
    column: Option<usize>,
}

fn problems(text: &str, err: &PolicyError) -> Vec<LocatedProblem> {
    match err {
        PolicyError::Invalid(list) => list
            .iter()
            .map(|p| {
                let pos = locate::locate(text, &p.path);
                LocatedProblem {
                    path: p.path.clone(),
                    problem: p.problem.clone(),
                    value: p.value.clone(),
                    message: p.to_string(),
                    line: pos.map(|p| p.line),
                    column: pos.map(|p| p.column),
                }
            })
            .collect(),
        other => {
            let message = match other {
                PolicyError::Syntax(m) => m.clone(),
                e => e.to_string(),
            };
            let pos = locate::line_column(&message);
            vec![LocatedProblem {
                path: String::new(),
                problem: message.clone(),
                value: String::new(),
                message,
                line: pos.map(|p| p.line),
                column: pos.map(|p| p.column),
            }]
        }
    }
}

/// A summary of a valid document, as `policy check` reports it, plus the index size.
fn summary(doc: &PolicyDocument) -> Value {
    let deny = doc
        .policies
        .iter()
        .filter(|p| p.action == Action::Deny)
        .count();
    let dry = doc.policies.iter().filter(|p| p.dry_run).count();
    let rules: usize = doc.policies.iter().map(|p| p.rules.len()).sum();
    let values: usize = doc
        .policies
        .iter()
        .flat_map(|p| &p.rules)
        .map(Rule::value_count)
        .sum();
    json!({
        "trustDomain": doc.trust_domain,
        "policies": doc.policies.len(),
        "deny": deny,
        "allow": doc.policies.len() - deny,
        "dryRun": dry,
        "rules": rules,
        "indexEntries": values,
    })
}

/// `check`: `{"ok": true, "summary": {...}}` or `{"ok": false, "problems": [...]}`.
pub fn check_json(text: &str) -> Value {
    match parse_document(text).and_then(|d| CompiledPolicy::compile(&d).map(|_| d)) {
        Ok(doc) => json!({"ok": true, "summary": summary(&doc), "problems": []}),
        Err(e) => json!({"ok": false, "summary": null, "problems": problems(text, &e)}),
    }
}

fn load(text: &str) -> Result<(PolicyDocument, CompiledPolicy), Value> {
    let doc = parse_document(text).map_err(|e| {
        json!({"ok": false, "error": "the policy is not valid", "problems": problems(text, &e)})
    })?;
    let compiled = CompiledPolicy::compile(&doc).map_err(|e| {
        json!({"ok": false, "error": "the policy is not valid", "problems": problems(text, &e)})
    })?;
    Ok((doc, compiled))
}

fn decision_value(d: &DecisionOut) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// `evaluate`: every non-blank line of `lines` (JSON Lines in `policy eval`'s format) decided.
/// Each result has the line number and either `decision` (with `output`, the exact line
/// `policy eval` prints) or `error` (`line N: <problem>`, as `policy eval` reports it).
pub fn evaluate_json(policy: &str, lines: &str, network: bool) -> Value {
    let compiled = match load(policy) {
        Ok((_, c)) => c,
        Err(v) => return v,
    };
    let m = mode(network);
    let mut results = Vec::new();
    for (i, line) in lines.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if results.len() >= MAX_LINES {
            results.push(json!({"line": i + 1, "error": format!("line {}: more than {MAX_LINES} requests in one batch", i + 1)}));
            break;
        }
        match parse_line(line) {
            Ok(req) => {
                let request = serde_json::to_value(&req).unwrap_or(Value::Null);
                let d = decide(&compiled, &RequestSpec::new(req, m), m);
                results.push(json!({
                    "line": i + 1,
                    "request": request,
                    "decision": decision_value(&d),
                    "output": serde_json::to_string(&d).unwrap_or_default(),
                }));
            }
            Err(problem) => {
                results.push(json!({"line": i + 1, "error": format!("line {}: {problem}", i + 1)}))
            }
        }
    }
    json!({"ok": true, "results": results})
}

/// `explain`: the decision and the engine's trace for one request line.
pub fn explain_json(policy: &str, line: &str, network: bool) -> Value {
    let compiled = match load(policy) {
        Ok((_, c)) => c,
        Err(v) => return v,
    };
    explain_with(&compiled, line, network)
}

fn explain_with(compiled: &CompiledPolicy, line: &str, network: bool) -> Value {
    let m = mode(network);
    match parse_line(line.trim()) {
        Ok(req) => {
            let spec = RequestSpec::new(req, m);
            let d = decide(compiled, &spec, m);
            json!({
                "ok": true,
                "decision": decision_value(&d),
                "trace": explain_line(compiled, &spec, m),
            })
        }
        Err(problem) => json!({"ok": false, "error": format!("request: {problem}")}),
    }
}

/// `lint`: `{"ok": true, "findings": [...]}`.
pub fn lint_json(policy: &str, network: bool) -> Value {
    match load(policy) {
        Ok((doc, _)) => {
            let findings = lint::lint(&doc, LintOptions { network });
            let located: Vec<Value> = findings
                .iter()
                .map(|f| {
                    let pos = locate::locate(policy, &f.path);
                    let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
                    v["line"] = json!(pos.map(|p| p.line));
                    v["column"] = json!(pos.map(|p| p.column));
                    v
                })
                .collect();
            json!({"ok": true, "findings": located})
        }
        Err(v) => v,
    }
}

/// `diff`: the report (`differences`, `totalDifferences`, `inconclusive`, ...).
pub fn diff_json(old: &str, new: &str, network: bool) -> Value {
    let a = match load(old) {
        Ok((d, _)) => d,
        Err(mut v) => {
            v["error"] = json!("the old policy is not valid");
            return v;
        }
    };
    let b = match load(new) {
        Ok((d, _)) => d,
        Err(mut v) => {
            v["error"] = json!("the new policy is not valid");
            return v;
        }
    };
    let opts = DiffOptions {
        network,
        ..DiffOptions::default()
    };
    match diff::diff(&a, &b, opts) {
        Ok(r) => json!({
            "ok": true,
            "equivalent": r.equivalent(),
            "differences": r.differences,
            "totalDifferences": r.total_differences,
            "searched": r.searched,
            "classes": r.classes,
            "inconclusive": r.inconclusive,
        }),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

/// Import options as JSON: `{"trustDomain": "...", "trustDomainAliases": [...],
/// "namespace": "...", "skipUnsupported": false}` (all optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportArgs {
    #[serde(default)]
    trust_domain: Option<String>,
    #[serde(default)]
    trust_domain_aliases: Vec<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    skip_unsupported: bool,
}

/// `import`: Istio AuthorizationPolicy YAML → `{"ok", "yaml", "diagnostics", "failure"}`.
pub fn import_json(text: &str, options: &str) -> Value {
    let args: ImportArgs = if options.trim().is_empty() {
        ImportArgs::default()
    } else {
        match serde_json::from_str(options) {
            Ok(a) => a,
            Err(e) => return json!({"ok": false, "error": format!("options: {e}")}),
        }
    };
    let opts = ImportOptions {
        trust_domain: args.trust_domain.unwrap_or_else(|| "cluster.local".into()),
        trust_domain_aliases: args.trust_domain_aliases,
        namespace: args.namespace.filter(|n| !n.is_empty()),
        skip_unsupported: args.skip_unsupported,
    };
    let imported = match import::convert(text, &opts) {
        Ok(i) => i,
        Err(e) => return json!({"ok": false, "error": e.to_string(), "diagnostics": []}),
    };
    let skip = opts.skip_unsupported;
    let diagnostics: Vec<Value> = imported
        .diagnostics
        .iter()
        .map(|d| json!({"label": d.label(skip), "kind": d.kind, "path": d.path, "resource": d.resource, "text": d.render(skip)}))
        .collect();
    let failure = imported.failure(skip).map(|f| match f {
        import::Failure::Invalid => "invalid input: nothing imported".to_owned(),
        import::Failure::Unsupported => if skip {
            "features that cannot be dropped without widening the policy: nothing imported".to_owned()
        } else {
            "unsupported features: nothing imported (skip them to import the rest, the stricter way)".to_owned()
        },
        import::Failure::Rejected => match imported.check() {
            Err(e) => format!("the imported policy is not valid for svidgate: {e}"),
            Ok(()) => "the imported policy is not valid for svidgate".to_owned(),
        },
    });
    let yaml = failure
        .is_none()
        .then(|| import::render_document(&imported.document, "playground"));
    json!({"ok": failure.is_none(), "yaml": yaml, "diagnostics": diagnostics, "failure": failure})
}

fn out(v: Value) -> String {
    v.to_string()
}

/// Validates a policy document (YAML or JSON); problems carry line, column and field path.
#[wasm_bindgen]
pub fn check(policy: &str) -> String {
    out(check_json(policy))
}

/// Decides JSON Lines requests (`svidgate policy eval`'s input format).
#[wasm_bindgen]
pub fn evaluate(policy: &str, lines: &str, network: bool) -> String {
    out(evaluate_json(policy, lines, network))
}

/// The decision and the full trace for one request.
#[wasm_bindgen]
pub fn explain(policy: &str, line: &str, network: bool) -> String {
    out(explain_json(policy, line, network))
}

/// Lint findings of a policy document.
#[wasm_bindgen]
pub fn lint(policy: &str, network: bool) -> String {
    out(lint_json(policy, network))
}

/// Requests two documents decide differently.
#[wasm_bindgen]
pub fn diff(old: &str, new: &str, network: bool) -> String {
    out(diff_json(old, new, network))
}

/// Istio AuthorizationPolicy YAML to a svidgate policy document.
#[wasm_bindgen(js_name = importIstio)]
pub fn import_istio(text: &str, options: &str) -> String {
    out(import_json(text, options))
}

/// A compiled policy kept between calls, for timing: compile once, decide many times.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Engine {
    policy: CompiledPolicy,
    summary: Value,
}

#[wasm_bindgen]
impl Engine {
    /// Parses, validates and compiles; throws the `check` result when the policy is invalid.
    #[wasm_bindgen(constructor)]
    pub fn new(policy: &str) -> Result<Engine, JsValue> {
        match load(policy) {
            Ok((doc, compiled)) => Ok(Engine {
                policy: compiled,
                summary: summary(&doc),
            }),
            Err(v) => Err(JsValue::from_str(&v.to_string())),
        }
    }

    /// The summary (policies, rules, index entries) as JSON.
    pub fn summary(&self) -> String {
        self.summary.to_string()
    }

    /// Decides one request line; the `policy eval` output line.
    pub fn decide(&self, line: &str, network: bool) -> Result<String, JsValue> {
        let req = parse_line(line.trim()).map_err(|e| JsValue::from_str(&e))?;
        let m = mode(network);
        Ok(
            serde_json::to_string(&decide(&self.policy, &RequestSpec::new(req, m), m))
                .unwrap_or_default(),
        )
    }

    /// Like [`explain`], with this compiled policy.
    pub fn explain(&self, line: &str, network: bool) -> String {
        out(explain_with(&self.policy, line, network))
    }

    /// Decides one request `iterations` times (the timing loop stays inside the module);
    /// returns how many were allowed.
    pub fn bench(&self, line: &str, network: bool, iterations: u32) -> Result<u32, JsValue> {
        let req = parse_line(line.trim()).map_err(|e| JsValue::from_str(&e))?;
        let m = mode(network);
        let spec = RequestSpec::new(req, m);
        Ok(spec.with_request(|r| {
            (0..iterations)
                .filter(|_| self.policy.evaluate(r, m).allowed())
                .count() as u32
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "trustDomain: td\npolicies:\n  - name: api\n    rules:\n      - from:\n          - source:\n              principals: [td/ns/web/sa/frontend]\n        to:\n          - operation:\n              methods: [GET]\n";

    #[test]
    fn check_locates_problems() {
        assert_eq!(check_json(POLICY)["ok"], true);
        let bad = POLICY.replace("methods: [GET]", "methods: [GET, \"G T\"]");
        let v = check_json(&bad);
        assert_eq!(v["ok"], false);
        let p = &v["problems"][0];
        assert_eq!(p["path"], "policies[0].rules[0].to[0].operation.methods[1]");
        assert_eq!(
            (p["line"].as_u64(), p["column"].as_u64()),
            (Some(10), Some(30))
        );
        let syntax = check_json("trustDomain: td\npolicies:\n  - name: [\n");
        assert_eq!(syntax["ok"], false);
        assert!(syntax["problems"][0]["line"].as_u64().is_some(), "{syntax}");
    }

    #[test]
    fn evaluate_matches_the_cli_format() {
        let v = evaluate_json(
            POLICY,
            "{\"peer\": \"spiffe://td/ns/web/sa/frontend\", \"method\": \"GET\", \"path\": \"/\"}\n\n{\"bogus\": 1}\n{\"mtls\": false}\n",
            false,
        );
        let r = v["results"].as_array().unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0]["output"], "{\"decision\":\"allow\",\"policy\":\"api\",\"rule\":0,\"reason\":\"matched ALLOW policy\"}");
        assert!(r[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 3: unknown field `bogus`"));
        assert_eq!(r[2]["decision"]["decision"], "deny");
        assert_eq!(
            r[2]["decision"]["reason"],
            "no valid peer identity: connection is not mTLS; no ALLOW policy matched"
        );
    }

    #[test]
    fn explain_lint_diff_import() {
        let e = explain_json(POLICY, "{\"peer\": \"spiffe://td/ns/x/sa/y\"}", false);
        assert_eq!(e["decision"]["decision"], "deny");
        assert!(e["trace"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("principals")));
        assert_eq!(lint_json(POLICY, false)["findings"], json!([]));
        let d = diff_json(POLICY, &POLICY.replace("[GET]", "[GET, POST]"), false);
        assert_eq!(d["equivalent"], false);
        assert_eq!(d["differences"][0]["request"]["method"], "POST", "{d}");
        let i = import_json("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: n}\nspec: {action: DENY, rules: [{from: [{source: {namespaces: [x]}}]}]}\n", "{\"trustDomain\": \"td\"}");
        assert_eq!(i["ok"], true, "{i}");
        assert_eq!(check_json(i["yaml"].as_str().unwrap())["ok"], true);
    }
}
