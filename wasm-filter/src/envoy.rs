//! The proxy-wasm glue (wasm32 only): the root context parses the configuration once per VM;
//! HTTP and stream contexts call the adapter in [`crate::filter`] with [`EnvoyHost`].
//!
//! One module serves both filter types. proxy-wasm does not tell a module which filter type
//! a new context is for: the Rust SDK's dispatcher asks the root context's `get_type()` each
//! time a context is created, then calls `create_http_context` or `create_stream_context`.
//! [`Root::get_type`] answers from the `filter.mode` setting, or (`auto`) by asking Envoy:
//! when Envoy creates an HTTP filter's context the stream already has an HTTP protocol
//! (`request.protocol` is set); a network filter's connection has none.
//!
//! Counters are tallied in the VM and handed to Envoy on the root context's tick
//! ([`TALLY_PERIOD`]): an allowed request then makes no counter host call (two fewer proxy-wasm
//! calls, ~1.3 µs each). Envoy's counters lag by at most one period.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::config::ModeSetting;
use crate::filter::{self, ConnState, Filter, Outcome};
use crate::host::{Host, HostError, Level};
use crate::metrics::{Metrics, Tally};

/// [`Host`] over `proxy_wasm::hostcalls` (never the SDK's panicking trait helpers).
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHost;

fn status(call: &'static str) -> impl Fn(Status) -> HostError {
    move |s| HostError {
        call,
        status: format!("{s:?}"),
    }
}

impl Host for EnvoyHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(path.to_vec()).map_err(status("get_property"))
    }
    fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        // The bytes variant: the string variant unwraps non-UTF-8 values.
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .map_err(status("get_http_request_header"))
    }
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
            .map_err(status("get_http_request_headers"))
    }
    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)
            .map_err(status("remove_http_request_header"))
    }
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
            .map_err(status("set_http_request_header"))
    }
    fn set_decision_state(&self, details: &str) -> Result<(), HostError> {
        hostcalls::set_property(vec!["svidgate.decision"], Some(details.as_bytes()))
            .map_err(status("set_property"))
    }
    fn send_local_reply(&self, code: u32, body: &[u8]) -> Result<(), HostError> {
        hostcalls::send_http_response(code, vec![("content-type", "text/plain")], Some(body))
            .map_err(status("send_http_response"))
    }
    fn close_downstream(&self) -> Result<(), HostError> {
        hostcalls::close_downstream().map_err(status("close_downstream"))
    }
    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        hostcalls::define_metric(MetricType::Counter, name).map_err(status("define_metric"))
    }
    fn increment(&self, counter: u32) {
        if !TALLYING.get() || !tally(counter) {
            let _ = hostcalls::increment_metric(counter, 1);
        }
    }
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }
}

/// How often the counts tallied in the VM are added to Envoy's counters.
pub const TALLY_PERIOD: Duration = Duration::from_millis(200);

thread_local! {
    /// Increments not yet handed to Envoy. A VM is single-threaded.
    static TALLY: RefCell<Tally> = RefCell::new(Tally::default());
    /// Whether the tick that flushes [`TALLY`] is set; without it every increment is a host
    /// call.
    static TALLYING: Cell<bool> = const { Cell::new(false) };
}

/// Adds one to `counter`'s pending count; `false` when the tally is busy (re-entered).
fn tally(counter: u32) -> bool {
    TALLY.with(|t| match t.try_borrow_mut() {
        Ok(mut t) => {
            t.add(counter);
            true
        }
        Err(_) => false,
    })
}

/// Hands the pending counts to Envoy (from the root context's tick, and when it is done).
fn flush_tally() {
    TALLY.with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            t.drain(|id, n| {
                let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
            });
        }
    });
}

/// Registers the root context factory (called from `_initialize`).
pub fn start() {
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}

/// One per plugin configuration per VM.
#[derive(Default)]
struct Root {
    /// Shared by every stream context (an `Rc` clone per stream, no copy of the counters).
    metrics: Option<Rc<Metrics>>,
    filter: Option<Rc<Filter>>,
}

impl Root {
    fn metrics(&mut self) -> Metrics {
        self.metrics
            .get_or_insert_with(|| Rc::new(Metrics::define(&EnvoyHost)))
            .as_ref()
            .clone()
    }

    /// The counters for a stream context: the configured filter's, or the fixed ones.
    fn stream_metrics(&self) -> Rc<Metrics> {
        self.metrics.clone().unwrap_or_default()
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        flush_tally();
        true
    }
}

impl RootContext for Root {
    fn on_tick(&mut self) {
        flush_tally();
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let host = EnvoyHost;
        // Every root context ticks (several plugins can share a VM, and any of them may go).
        if hostcalls::set_tick_period(TALLY_PERIOD).is_ok() {
            TALLYING.set(true);
        }
        let metrics = self.metrics();
        self.filter = None;
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(b) => b.unwrap_or_default(),
            Err(s) => {
                host.log(
                    Level::Error,
                    &format!("svidgate: cannot read the plugin configuration: {s:?}"),
                );
                Metrics::inc(&host, metrics.config_errors);
                return false;
            }
        };
        if filter::BENCH_STOP != u8::MAX {
            host.log(
                Level::Warn,
                &format!(
                    "svidgate: bench bisection build (stop {}): allows every request",
                    filter::BENCH_STOP
                ),
            );
        }
        let started = hostcalls::get_current_time().ok();
        let size = bytes.len();
        // The configuration text is freed once parsed: only the compiled index lives on.
        match Filter::configure_owned(&host, bytes, metrics) {
            Ok(f) => {
                if let (Some(t0), Ok(t1)) = (started, hostcalls::get_current_time()) {
                    // Integer arithmetic: float formatting would add ~25 KB to the module.
                    let us = t1.duration_since(t0).map_or(0, |d| d.as_micros());
                    host.log(
                        Level::Info,
                        &format!(
                            "svidgate: configuration of {size} bytes compiled in {}.{:03} ms",
                            us / 1000,
                            us % 1000
                        ),
                    );
                }
                self.filter = Some(Rc::new(f));
                true
            }
            Err(_) => false,
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        let mode = self
            .filter
            .as_ref()
            .map_or(ModeSetting::Auto, |f| f.settings.mode);
        Some(match mode {
            ModeSetting::Http => ContextType::HttpContext,
            ModeSetting::Network => ContextType::StreamContext,
            ModeSetting::Auto => detect_mode(),
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            filter: self.filter.clone(),
            metrics: self.stream_metrics(),
        }))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Stream {
            filter: self.filter.clone(),
            metrics: self.stream_metrics(),
            state: ConnState::Undecided,
        }))
    }
}

/// Called while Envoy creates the context for a new stream or connection.
fn detect_mode() -> ContextType {
    match hostcalls::get_property(vec!["request", "protocol"]) {
        Ok(Some(p)) if !p.is_empty() => ContextType::HttpContext,
        _ => ContextType::StreamContext,
    }
}

struct Http {
    filter: Option<Rc<Filter>>,
    metrics: Rc<Metrics>,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let outcome = match &self.filter {
            Some(f) => f.on_http_request_headers(&EnvoyHost),
            None => filter::deny_unconfigured_http(&EnvoyHost, &self.metrics),
        };
        action(outcome)
    }
}

struct Stream {
    filter: Option<Rc<Filter>>,
    metrics: Rc<Metrics>,
    state: ConnState,
}

impl Context for Stream {}

impl StreamContext for Stream {
    fn on_new_connection(&mut self) -> Action {
        // The TLS handshake is not done yet: peer properties are absent (and reading them
        // now can leave stale values). Decide on the first data instead.
        Action::Continue
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        let outcome = match &self.filter {
            Some(f) => f.on_downstream_data(&EnvoyHost, &mut self.state),
            None => {
                filter::deny_unconfigured_connection(&EnvoyHost, &self.metrics, &mut self.state)
            }
        };
        action(outcome)
    }

    fn on_upstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        // Nothing flows upstream before an allow; anything else is the upstream's answer.
        match self.state {
            ConnState::Allowed => Action::Continue,
            ConnState::Undecided | ConnState::Denied => Action::Pause,
        }
    }
}

fn action(outcome: Outcome) -> Action {
    match outcome {
        Outcome::Continue => Action::Continue,
        Outcome::Stop => Action::Pause,
    }
}
