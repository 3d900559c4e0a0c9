//! Peak heap and time of configuring the filter with a large allowlist, natively:
//! `cargo run --release -p svidgate-core --example config_memory`.
//!
//! A Wasm VM's linear memory never shrinks, so the heap's high-water mark while the filter
//! parses and compiles its `pluginConfig` is what each VM keeps. This counts every byte the
//! allocator hands out (not the allocator's own overhead, and with 64-bit pointers: a
//! wasm32 VM's structures are smaller) for documents shaped like `make bench-envoy`'s: one
//! ALLOW policy whose only rule lists N exact principals.

use std::time::Instant;

use peak_alloc::PeakAlloc;
use svidgate_core::plugin_config;

/// Counts the bytes handed out; a realloc counts as a new block while the old one lives.
#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// The bench's document (`scripts/bench_envoy.py`): N principals, the client's in the middle.
fn document(n: usize) -> String {
    const TD: &str = "bench.local";
    let mut ids: Vec<String> = (0..n.saturating_sub(1))
        .map(|i| format!("\"{TD}/ns/team-{}/sa/workload-{i}\"", i % 997))
        .collect();
    ids.insert(ids.len() / 2, format!("\"{TD}/ns/web/sa/client\""));
    format!(
        r#"{{"trustDomain": "{TD}", "filter": {{"mode": "http"}}, "policies": [{{"name": "allow-clients", "action": "ALLOW", "rules": [{{"from": [{{"source": {{"principals": [{}]}}}}]}}]}}]}}"#,
        ids.join(", ")
    )
}

fn mib(n: usize) -> String {
    format!("{:.2} MiB", n as f64 / (1024.0 * 1024.0))
}

fn main() {
    println!(
        "{:>8} {:>11} {:>11} {:>7} {:>11} {:>9}",
        "N", "text", "peak", "×text", "retained", "time"
    );
    for n in [1_000, 10_000, 100_000] {
        let text = document(n).into_bytes();
        let size = text.len();
        let mut best = f64::MAX;
        let (mut peak, mut retained) = (0, 0);
        for _ in 0..3 {
            let bytes = text.clone();
            let base = ALLOC.current_usage() - size;
            ALLOC.reset_peak_usage();
            let t0 = Instant::now();
            let cfg = plugin_config::parse_owned(bytes);
            best = best.min(t0.elapsed().as_secs_f64() * 1e3);
            let cfg = match cfg {
                Ok(c) => c,
                Err(e) => panic!("the generated document is rejected: {e}"),
            };
            peak = ALLOC.peak_usage() - base;
            retained = ALLOC.current_usage() - base;
            drop(cfg);
        }
        println!(
            "{n:>8} {:>11} {:>11} {:>7.2} {:>11} {:>6.1} ms",
            mib(size),
            mib(peak),
            peak as f64 / size as f64,
            mib(retained),
            best
        );
    }
}
