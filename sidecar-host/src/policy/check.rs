//! `svidgate policy check FILE`: validate a policy document, or a whole WasmPlugin
//! `pluginConfig` (the document plus the filter's `filter` settings), exactly as the filter
//! parses it ([`PluginConfig`]).
//!
//! Valid: `FILE: ok: 3 policies (1 DENY, 2 ALLOW, 1 dry-run), trust domain cluster.local` and
//! exit 0. Invalid: one line `FILE: <field path>: <problem> (<value>)` per problem (or
//! `FILE: <syntax error>`) and exit 1. Everything goes to `out` (stdout), so the output can be
//! piped into other tools.

use std::io::Write;

use serde_json::Value;
use svidgate_core::plugin_config::ConfigError;

use super::{load_plugin_config, policy_error_lines, Input, PolicyCliError, EXIT_INVALID, EXIT_OK};

/// Checks one input; returns the exit code.
pub fn check(input: &Input, out: &mut dyn Write) -> Result<i32, PolicyCliError> {
    match check_plugin_config(input) {
        Ok(()) => {
            writeln!(out, "{}: ok: {}", input.name, summary(input))?;
            Ok(EXIT_OK)
        }
        Err(ConfigError::Policy(e)) => {
            for line in policy_error_lines(&input.name, &e) {
                writeln!(out, "{line}")?;
            }
            Ok(EXIT_INVALID)
        }
        Err(e) => {
            writeln!(out, "{}: {e}", input.name)?;
            Ok(EXIT_INVALID)
        }
    }
}

/// Parses, validates and compiles the input as a `pluginConfig`, as the filter does.
fn check_plugin_config(input: &Input) -> Result<(), ConfigError> {
    load_plugin_config(input)?.compile().map(drop)
}

/// The one-line summary of a document that the engine accepted, e.g.
/// `3 policies (1 DENY, 2 ALLOW, 1 dry-run), trust domain cluster.local`.
///
/// Read from the document's generic form: the engine already validated it, this only counts.
pub fn summary(input: &Input) -> String {
    let value: Option<Value> = if input.is_json() {
        serde_json::from_str(&input.text).ok()
    } else {
        serde_yaml::from_str(&input.text).ok()
    };
    let value = value.unwrap_or(Value::Null);
    let policies = value
        .get("policies")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let action = |p: &Value| {
        p.get("action")
            .and_then(Value::as_str)
            .unwrap_or("ALLOW")
            .to_owned()
    };
    let deny = policies.iter().filter(|p| action(p) == "DENY").count();
    let allow = policies.len() - deny;
    let dry_run = policies
        .iter()
        .filter(|p| p.get("dryRun").and_then(Value::as_bool) == Some(true))
        .count();

    let mut s = format!(
        "{} {}",
        policies.len(),
        if policies.len() == 1 {
            "policy"
        } else {
            "policies"
        }
    );
    if !policies.is_empty() {
        s.push_str(&format!(" ({deny} DENY, {allow} ALLOW"));
        if dry_run > 0 {
            s.push_str(&format!(", {dry_run} dry-run"));
        }
        s.push(')');
    }
    if let Some(td) = value.get("trustDomain").and_then(Value::as_str) {
        s.push_str(&format!(", trust domain {td}"));
    }
    let aliases: Vec<&str> = value
        .get("trustDomainAliases")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !aliases.is_empty() {
        s.push_str(&format!(" (aliases: {})", aliases.join(", ")));
    }
    if let Some(mode) = value.get("mode").and_then(Value::as_str) {
        if mode != "enforce" {
            s.push_str(&format!(", mode {mode}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let cases = [
            (
                "trustDomain: cluster.local\npolicies: []\n",
                "0 policies, trust domain cluster.local",
            ),
            (
                "trustDomain: td\npolicies:\n- name: a\n  action: ALLOW\n",
                "1 policy (0 DENY, 1 ALLOW), trust domain td",
            ),
            (
                "trustDomain: cluster.local\ntrustDomainAliases: [old.example, older]\nmode: dryRun\npolicies:\n- {name: a, action: DENY}\n- {name: b, action: ALLOW, dryRun: true}\n- {name: c}\n",
                "3 policies (1 DENY, 2 ALLOW, 1 dry-run), trust domain cluster.local (aliases: old.example, older), mode dryRun",
            ),
            (
                r#"{"trustDomain": "x.org", "mode": "enforce", "policies": [{"name": "a", "action": "DENY", "dryRun": true}]}"#,
                "1 policy (1 DENY, 0 ALLOW, 1 dry-run), trust domain x.org",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(summary(&Input::from_text("p", text)), want, "{text}");
        }
    }
}
