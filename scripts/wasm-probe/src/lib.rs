//! Diagnostic proxy-wasm module for `scripts/bench_envoy.py` (variants P and Q): the cost of
//! the proxy-wasm plumbing in Envoy, without svidgate. Plugin configuration: a number `n`;
//! each request does `n` `get_property(connection.mtls)` host calls (0: a no-op HTTP filter,
//! i.e. only the per-request context creation and the `on_http_request_headers` call). A
//! longer configuration is ignored (the no-op filter holding a large configuration).
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { n: 0 }) });
}}

struct Root {
    n: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        // A configuration that is not a short number (e.g. a whole svidgate policy, to see
        // what Envoy itself spends on holding it) is not read: a no-op filter.
        if size > 16 {
            self.n = 0;
            return true;
        }
        match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => match String::from_utf8_lossy(&b).trim().parse() {
                Ok(n) => {
                    self.n = n;
                    true
                }
                Err(_) => false,
            },
            _ => true,
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http { n: self.n }))
    }
}

struct Http {
    n: u32,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let mut seen = 0usize;
        for _ in 0..self.n {
            if let Ok(Some(v)) = hostcalls::get_property(vec!["connection", "mtls"]) {
                seen += v.len();
            }
        }
        // Use the result so the calls cannot be optimised away; every request continues.
        if self.n > 0 && seen == 0 {
            hostcalls::log(LogLevel::Warn, "wasm-probe: connection.mtls absent").ok();
        }
        Action::Continue
    }
}
