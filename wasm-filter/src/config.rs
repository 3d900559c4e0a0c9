//! The plugin configuration: the policy document (JSON, as Istio passes `pluginConfig`) with
//! filter-only settings under an optional `filter` key.
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
//!     "mode": "auto"
//!   }
//! }
//! ```

use serde_json::{Map, Value};
use svidgate_core::policy::{CompiledPolicy, PolicyDocument, PolicyError};

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            identity_header: Some(DEFAULT_IDENTITY_HEADER.to_owned()),
            deny_status: DEFAULT_DENY_STATUS,
            deny_body: DEFAULT_DENY_BODY.to_owned(),
            strict: true,
            mode: ModeSetting::Auto,
        }
    }
}

/// A parsed and compiled configuration.
#[derive(Debug)]
pub struct Config {
    pub settings: Settings,
    pub policy: CompiledPolicy,
    /// The names of the policies in the document (for per-policy counters).
    pub policy_names: Vec<String>,
}

/// Parses the plugin configuration bytes and compiles the policy.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::Empty);
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
    let Value::Object(mut doc) = value else {
        return Err(ConfigError::NotAnObject(json_kind(&value)));
    };
    let settings = match doc.remove("filter") {
        None => Settings::default(),
        Some(v) => parse_settings(&v)?,
    };
    let policy_names = policy_names(&doc);
    let document = PolicyDocument::from_json_value(Value::Object(doc))?;
    let policy = CompiledPolicy::compile(&document)?;
    Ok(Config {
        settings,
        policy,
        policy_names,
    })
}

fn policy_names(doc: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Array(policies)) = doc.get("policies") else {
        return Vec::new();
    };
    policies
        .iter()
        .filter_map(|p| p.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field_err(field: &str, problem: &'static str, value: &Value) -> ConfigError {
    ConfigError::Field {
        field: field.to_owned(),
        problem,
        value: value.to_string(),
    }
}

/// Parses the `filter` object. Unknown keys are errors.
pub fn parse_settings(v: &Value) -> Result<Settings, ConfigError> {
    let Value::Object(map) = v else {
        return Err(ConfigError::Field {
            field: String::new(),
            problem: "must be an object",
            value: v.to_string(),
        });
    };
    let mut s = Settings::default();
    for (key, value) in map {
        match key.as_str() {
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
            _ => return Err(field_err(key, "unknown key", value)),
        }
    }
    Ok(s)
}

fn parse_identity_header(value: &Value) -> Result<Option<String>, ConfigError> {
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
