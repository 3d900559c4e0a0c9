//! The plugin configuration. Parsing and validation live in core
//! ([`svidgate_core::plugin_config`]) so that `svidgate policy check` accepts exactly what the
//! filter accepts; this module re-exports them for the adapter.

pub use svidgate_core::plugin_config::{
    parse, parse_owned, Config, ConfigError, Limits, ModeSetting, Settings, DEFAULT_DENY_BODY,
    DEFAULT_DENY_STATUS, DEFAULT_IDENTITY_HEADER, MAX_DENY_BODY,
};
