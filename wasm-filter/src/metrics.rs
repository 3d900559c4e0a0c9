//! Counters, defined once per VM. Envoy shows them as `wasmcustom.<name>` in `/stats`.

use std::collections::HashMap;

use crate::filter::Form;
use crate::host::Host;

pub const ALLOWED: &str = "svidgate_allowed";
pub const DENIED: &str = "svidgate_denied";
pub const DRY_RUN_ALLOWED: &str = "svidgate_dry_run_allowed";
pub const DRY_RUN_DENIED: &str = "svidgate_dry_run_denied";
pub const NO_IDENTITY: &str = "svidgate_no_identity";
pub const INVALID_IDENTITY: &str = "svidgate_invalid_identity";
pub const CONFIG_ERRORS: &str = "svidgate_config_errors";
/// Requests refused because an attribute the policy reads is ambiguous (also counted in
/// [`DENIED`]): a path not in normal form, a method not an upper-case token, a malformed
/// host, a repeated or underscore-variant header.
pub const DENIED_PATH: &str = "svidgate_denied_path_form";
pub const DENIED_METHOD: &str = "svidgate_denied_method_form";
pub const DENIED_HOST: &str = "svidgate_denied_host_form";
pub const DENIED_HEADER: &str = "svidgate_denied_header_form";
/// At most this many policies get their own counters (bounds the stats a document creates).
pub const MAX_POLICY_COUNTERS: usize = 256;

/// Counter ids. `None` when the host refused to define one (then it is not counted).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub allowed: Option<u32>,
    pub denied: Option<u32>,
    pub dry_run_allowed: Option<u32>,
    pub dry_run_denied: Option<u32>,
    pub no_identity: Option<u32>,
    pub invalid_identity: Option<u32>,
    pub config_errors: Option<u32>,
    pub denied_path: Option<u32>,
    pub denied_method: Option<u32>,
    pub denied_host: Option<u32>,
    pub denied_header: Option<u32>,
    /// Policy name → (allowed, denied) counter ids, for the policy that decided.
    pub per_policy: HashMap<String, (Option<u32>, Option<u32>)>,
}

impl Metrics {
    /// Defines the fixed counters.
    pub fn define(host: &dyn Host) -> Metrics {
        let d = |name: &str| host.define_counter(name).ok();
        Metrics {
            allowed: d(ALLOWED),
            denied: d(DENIED),
            dry_run_allowed: d(DRY_RUN_ALLOWED),
            dry_run_denied: d(DRY_RUN_DENIED),
            no_identity: d(NO_IDENTITY),
            invalid_identity: d(INVALID_IDENTITY),
            config_errors: d(CONFIG_ERRORS),
            denied_path: d(DENIED_PATH),
            denied_method: d(DENIED_METHOD),
            denied_host: d(DENIED_HOST),
            denied_header: d(DENIED_HEADER),
            per_policy: HashMap::new(),
        }
    }

    /// Defines `svidgate_policy.<name>.allowed|denied` for each policy name (first
    /// [`MAX_POLICY_COUNTERS`] distinct names).
    pub fn define_policies(&mut self, host: &dyn Host, names: &[String]) {
        self.per_policy.clear();
        for name in names {
            if self.per_policy.len() >= MAX_POLICY_COUNTERS {
                break;
            }
            if self.per_policy.contains_key(name) {
                continue;
            }
            let stat = stat_segment(name);
            let allowed = host
                .define_counter(&format!("svidgate_policy.{stat}.allowed"))
                .ok();
            let denied = host
                .define_counter(&format!("svidgate_policy.{stat}.denied"))
                .ok();
            self.per_policy.insert(name.clone(), (allowed, denied));
        }
    }

    /// The counter of requests refused for an ambiguous `form`.
    pub fn malformed(&self, form: Form) -> Option<u32> {
        match form {
            Form::Path => self.denied_path,
            Form::Method => self.denied_method,
            Form::Host => self.denied_host,
            Form::Header => self.denied_header,
        }
    }

    pub fn inc(host: &dyn Host, id: Option<u32>) {
        if let Some(id) = id {
            host.increment(id);
        }
    }

    /// Counts an enforced verdict, overall and for the deciding policy.
    pub fn count_verdict(&self, host: &dyn Host, allow: bool, policy: Option<&str>) {
        Self::inc(host, if allow { self.allowed } else { self.denied });
        if let Some((a, d)) = policy.and_then(|p| self.per_policy.get(p)) {
            Self::inc(host, if allow { *a } else { *d });
        }
    }
}

/// Counter increments kept in the VM until they are handed to Envoy in one host call per
/// counter ([`crate::envoy`] drains it on the root context's tick). One entry per counter ever
/// incremented, so bounded by the counters defined.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Vec<(u32, u64)>,
}

impl Tally {
    /// One more for `counter`.
    pub fn add(&mut self, counter: u32) {
        match self.counts.iter_mut().find(|(id, _)| *id == counter) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.counts.push((counter, 1)),
        }
    }

    /// Calls `flush(counter, count)` for every counter with a pending count, then forgets the
    /// counts (the entries stay, so the next round allocates nothing).
    pub fn drain(&mut self, mut flush: impl FnMut(u32, u64)) {
        for (id, n) in self.counts.iter_mut().filter(|(_, n)| *n > 0) {
            flush(*id, *n);
            *n = 0;
        }
    }
}

/// A policy name as one stat-name segment: `[A-Za-z0-9_-]`, anything else becomes `_`.
pub fn stat_segment(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
