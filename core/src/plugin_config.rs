//! The whole plugin configuration (what a WasmPlugin's `pluginConfig` holds): the policy
//! document with the filter's own settings under an optional `filter` key. The filter parses
//! it with [`parse`] (JSON bytes, as Envoy passes them); `svidgate policy check` parses the
//! same text with [`PluginConfig::from_yaml`] (YAML or JSON), so what the CLI accepts is
//! exactly what the filter accepts.
//!
//! ```json
//! {
//!   "trustDomain": "cluster.local",
//!   "policies": [ ... ],
//!   "filter": {
//!     "identityHeader": "x-spiffe-peer-id",
//!     "denyStatus": 403,
//!     "denyBody": "RBAC: access denied",
//!     "strict": true,
//!     "mode": "http",
//!     "repeatedHeaders": "deny",
//!     "limits": {"maxPolicies": 1000, "maxRules": 10000, "maxValues": 100000, "maxHeaderNames": 32}
//!   }
//! }
//! ```
//!
//! The document's size and nesting depth are bounded before it is parsed
//! ([`crate::policy::MAX_DOCUMENT_BYTES`], [`crate::policy::MAX_DEPTH`]); the number of
//! policies, rules, values and distinct `request.headers[..]` names is bounded after parsing
//! and before compiling ([`Limits`]).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use crate::http::RepeatedHeaders;
use crate::policy::{self, CompiledPolicy, DocStr, Json, PolicyDocument, PolicyError, Rule};

/// Default name of the header that carries the verified peer ID to the upstream.
pub const DEFAULT_IDENTITY_HEADER: &str = "x-spiffe-peer-id";
/// Default status of the local reply on deny.
pub const DEFAULT_DENY_STATUS: u32 = 403;
/// Default body of the local reply on deny (Envoy RBAC's wording).
pub const DEFAULT_DENY_BODY: &str = "RBAC: access denied";
/// Longest accepted deny body.
pub const MAX_DENY_BODY: usize = 4096;

/// Everything wrong with a plugin configuration. Messages name the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("plugin configuration is empty: the policy document is required")]
    Empty,
    #[error("plugin configuration is not valid JSON: {0}")]
    Json(String),
    #[error("plugin configuration must be a JSON object (the policy document), got {0}")]
    NotAnObject(&'static str),
    #[error("filter.{field}: {problem} ({value})")]
    Field {
        field: String,
        problem: &'static str,
        value: String,
    },
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("the document has {count} {what}, more than the limit of {max} (filter.limits.{key})")]
    Limit {
        what: &'static str,
        key: &'static str,
        count: usize,
        max: usize,
    },
}

/// How the module learns whether it is an HTTP or a network filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeSetting {
    /// Ask Envoy when each stream is created (see `envoy::detect_mode`).
    Auto,
    Http,
    Network,
}

/// The filter-only settings (the `filter` key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Lower-case header name, or `None` when disabled (configured as `""`).
    pub identity_header: Option<String>,
    pub deny_status: u32,
    pub deny_body: String,
    /// Enforce the X509-SVID leaf rules on the peer certificate.
    pub strict: bool,
    pub mode: ModeSetting,
    /// How a header the policy reads is seen when it is sent more than once.
    pub repeated_headers: RepeatedHeaders,
    pub limits: Limits,
}

/// Caps on what one document may hold, checked before it is compiled. The defaults are far
/// above what a hand-written policy needs and keep compile time and per-request cost small
/// (each distinct header name is one lookup per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Policies in the document (`maxPolicies`, default 1000).
    pub policies: usize,
    /// Rules, summed over all policies (`maxRules`, default 10000).
    pub rules: usize,
    /// Values (principals, namespaces, paths, ports, `when` values, …, each `not*` too),
    /// summed over the document (`maxValues`, default 100000).
    pub values: usize,
    /// Distinct `request.headers[name]` names in `when` conditions (`maxHeaderNames`,
    /// default 32).
    pub header_names: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            policies: 1000,
            rules: 10_000,
            values: 100_000,
            header_names: 32,
        }
    }
}

impl Limits {
    /// Checks `doc` against the limits; the error names the count, the limit and the key
    /// that raises it.
    pub fn check<S: AsRef<str>>(&self, doc: &PolicyDocument<S>) -> Result<(), ConfigError> {
        let over = |what, key, count: usize, max: usize| {
            if count > max {
                Err(ConfigError::Limit {
                    what,
                    key,
                    count,
                    max,
                })
            } else {
                Ok(())
            }
        };
        over("policies", "maxPolicies", doc.policies.len(), self.policies)?;
        let rules = || doc.policies.iter().flat_map(|p| &p.rules);
        over("rules", "maxRules", rules().count(), self.rules)?;
        let values: usize = rules().map(Rule::value_count).sum();
        over("values", "maxValues", values, self.values)?;
        let mut headers: Vec<String> = rules()
            .flat_map(|r| &r.when)
            .filter_map(|c| {
                c.key
                    .as_ref()
                    .strip_prefix("request.headers[")
                    .and_then(|k| k.strip_suffix(']'))
                    .map(str::to_ascii_lowercase)
            })
            .collect();
        headers.sort_unstable();
        headers.dedup();
        over(
            "distinct request header names",
            "maxHeaderNames",
            headers.len(),
            self.header_names,
        )
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            identity_header: Some(DEFAULT_IDENTITY_HEADER.to_owned()),
            deny_status: DEFAULT_DENY_STATUS,
            deny_body: DEFAULT_DENY_BODY.to_owned(),
            strict: true,
            mode: ModeSetting::Auto,
            repeated_headers: RepeatedHeaders::Deny,
            limits: Limits::default(),
        }
    }
}

/// A parsed, validated plugin configuration: the document (within its [`Limits`]) and the
/// filter settings. [`PluginConfig::compile`] builds the policy index.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    pub settings: Settings,
    pub document: PolicyDocument,
}

impl PluginConfig {
    /// Parses and validates a `pluginConfig` written as YAML or JSON (the CLI's
    /// `policy check`). Size and depth are bounded before parsing.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Empty);
        }
        Self::from_tree(policy::yaml_json(text)?)
    }

    /// Parses and validates a `pluginConfig` as JSON bytes (what Envoy hands the filter).
    /// Size and depth are bounded before parsing; duplicate keys are rejected.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::from_tree(json_tree(config_text(bytes)?)?)
    }

    /// Validates an already parsed value: the `filter` settings first, then the document,
    /// then the limits.
    pub fn from_value(value: Value) -> Result<Self, ConfigError> {
        Self::from_tree(Json::from(value))
    }

    fn from_tree(value: Json<'_>) -> Result<Self, ConfigError> {
        let (settings, document) = typed(value)?;
        Ok(PluginConfig { settings, document })
    }

    /// Compiles the policy index.
    pub fn compile(&self) -> Result<CompiledPolicy, ConfigError> {
        Ok(CompiledPolicy::compile(&self.document)?)
    }

    /// The names of the policies, in document order (for per-policy counters).
    pub fn policy_names(&self) -> Vec<String> {
        self.document
            .policies
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }
}

/// A parsed and compiled configuration (the filter's view).
#[derive(Debug)]
pub struct Config {
    pub settings: Settings,
    pub policy: CompiledPolicy,
    /// The names of the policies in the document (for per-policy counters).
    pub policy_names: Vec<String>,
}

/// The configuration bytes as text (not empty, UTF-8).
fn config_text(bytes: &[u8]) -> Result<&str, ConfigError> {
    not_blank(bytes)?;
    std::str::from_utf8(bytes).map_err(not_utf8)
}

fn not_blank(bytes: &[u8]) -> Result<(), ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::Empty);
    }
    Ok(())
}

fn not_utf8(e: std::str::Utf8Error) -> ConfigError {
    ConfigError::Json(format!("not UTF-8: {e}"))
}

/// The configuration text as a JSON value whose strings borrow from it (caps checked first).
fn json_tree(text: &str) -> Result<Json<'_>, ConfigError> {
    policy::json_json(text).map_err(|e| match e {
        PolicyError::Syntax(m) => ConfigError::Json(m),
        other => ConfigError::Policy(other),
    })
}

/// The `filter` settings first, then the typed and validated document, then the limits.
fn typed<'a, S: DocStr<'a>>(value: Json<'a>) -> Result<(Settings, PolicyDocument<S>), ConfigError> {
    let Json::Object(mut doc) = value else {
        return Err(ConfigError::NotAnObject(value.kind()));
    };
    let settings = match doc.remove("filter") {
        None => Settings::default(),
        Some(v) => settings(&v)?,
    };
    let document = policy::document_from_json(Json::Object(doc))?;
    settings.limits.check(&document)?;
    Ok((settings, document))
}

/// Parses the plugin configuration bytes (JSON) and compiles the policy.
///
/// The document is typed, validated and compiled with its strings borrowed from `bytes`:
/// a large allowlist is copied once, into the index.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    compile_text(config_text(bytes)?, &Arc::default())
}

/// [`parse`] taking the text, which the index then shares: the exact values of a large
/// allowlist stay where they are in the text instead of being copied (a Wasm VM's memory
/// never shrinks, so its peak during configuration is what the VM keeps). The text is freed
/// once compiled unless the index refers to it.
pub fn parse_owned(bytes: Vec<u8>) -> Result<Config, ConfigError> {
    not_blank(&bytes)?;
    let text = Arc::new(String::from_utf8(bytes).map_err(|e| not_utf8(e.utf8_error()))?);
    compile_text(&text, &text)
}

/// Parses `text`, typing, validating and compiling the document with its strings borrowed
/// from it; `shared` is `text` when the index may keep spans of it, else empty.
fn compile_text(text: &str, shared: &Arc<String>) -> Result<Config, ConfigError> {
    let (settings, document) = typed::<Cow<'_, str>>(json_tree(text)?)?;
    let policy = CompiledPolicy::compile_parsed(&document, shared)?;
    let policy_names = document
        .policies
        .iter()
        .map(|p| p.name.clone().into_owned())
        .collect();
    // The document's lists go before the index's hash tables come.
    drop(document);
    Ok(Config {
        policy: policy.finish(),
        policy_names,
        settings,
    })
}

fn field_err(field: &str, problem: &'static str, value: &Json<'_>) -> ConfigError {
    ConfigError::Field {
        field: field.to_owned(),
        problem,
        value: value.to_json_string(),
    }
}

/// Parses the `filter` object. Unknown keys are errors.
pub fn parse_settings(v: &Value) -> Result<Settings, ConfigError> {
    settings(&Json::from(v.clone()))
}

fn settings(v: &Json<'_>) -> Result<Settings, ConfigError> {
    let Json::Object(map) = v else {
        return Err(ConfigError::Field {
            field: String::new(),
            problem: "must be an object",
            value: v.to_json_string(),
        });
    };
    let mut s = Settings::default();
    for (key, value) in map {
        let key: &str = key;
        match key {
            "identityHeader" => s.identity_header = parse_identity_header(value)?,
            "denyStatus" => {
                s.deny_status = value
                    .as_u64()
                    .filter(|c| (400..=599).contains(c))
                    .and_then(|c| u32::try_from(c).ok())
                    .ok_or_else(|| {
                        field_err(key, "must be an HTTP status code from 400 to 599", value)
                    })?;
            }
            "denyBody" => {
                let body = value
                    .as_str()
                    .ok_or_else(|| field_err(key, "must be a string", value))?;
                if body.len() > MAX_DENY_BODY {
                    return Err(field_err(key, "is longer than 4096 bytes", value));
                }
                s.deny_body = body.to_owned();
            }
            "strict" => {
                s.strict = value
                    .as_bool()
                    .ok_or_else(|| field_err(key, "must be true or false", value))?;
            }
            "mode" => {
                s.mode = match value.as_str() {
                    Some("auto") => ModeSetting::Auto,
                    Some("http") => ModeSetting::Http,
                    Some("network") => ModeSetting::Network,
                    _ => {
                        return Err(field_err(
                            key,
                            "must be \"auto\", \"http\" or \"network\"",
                            value,
                        ))
                    }
                };
            }
            "repeatedHeaders" => {
                s.repeated_headers = match value.as_str() {
                    Some("deny") => RepeatedHeaders::Deny,
                    Some("join") => RepeatedHeaders::Join,
                    _ => return Err(field_err(key, "must be \"deny\" or \"join\"", value)),
                };
            }
            "limits" => s.limits = parse_limits(value)?,
            _ => return Err(field_err(key, "unknown key", value)),
        }
    }
    Ok(s)
}

fn parse_limits(value: &Json<'_>) -> Result<Limits, ConfigError> {
    let Json::Object(map) = value else {
        return Err(field_err("limits", "must be an object", value));
    };
    let mut l = Limits::default();
    for (key, v) in map {
        let key: &str = key;
        let slot = match key {
            "maxPolicies" => &mut l.policies,
            "maxRules" => &mut l.rules,
            "maxValues" => &mut l.values,
            "maxHeaderNames" => &mut l.header_names,
            _ => return Err(field_err(&format!("limits.{key}"), "unknown key", v)),
        };
        *slot = v
            .as_u64()
            .filter(|n| (1..=10_000_000).contains(n))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                field_err(
                    &format!("limits.{key}"),
                    "must be a whole number from 1 to 10000000",
                    v,
                )
            })?;
    }
    Ok(l)
}

fn parse_identity_header(value: &Json<'_>) -> Result<Option<String>, ConfigError> {
    const FIELD: &str = "identityHeader";
    let name = value
        .as_str()
        .ok_or_else(|| field_err(FIELD, "must be a string", value))?;
    if name.is_empty() {
        return Ok(None);
    }
    // An HTTP header name is an RFC 9110 token; pseudo-headers (`:path`) are not allowed.
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(is_tchar) {
        return Err(field_err(FIELD, "is not a valid HTTP header name", value));
    }
    Ok(Some(name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests;
