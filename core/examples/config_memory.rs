//! Peak heap and time of configuring the filter with a large allowlist, natively:
//! `cargo run --release -p svidgate-core --example config_memory`.
//!
//! A Wasm VM's linear memory never shrinks, so the heap's high-water mark while the filter
//! parses and compiles its `pluginConfig` is what each VM keeps. This counts every byte the
//! allocator hands out (not the allocator's own overhead, and with 64-bit pointers: a
//! wasm32 VM's structures are smaller) for documents shaped like `make bench-envoy`'s: one
//! ALLOW policy whose only rule lists N exact principals.
//!
//! Compiled for wasm32-wasip1 and given one N (`config_memory 100000`), it instead reports
//! the instance's linear memory before and after, allocator overhead included: what a VM
//! keeps. Core's dev-dependencies do not build for wasm32 (ring needs a C compiler), so build
//! this file as the `main.rs` of a scratch crate depending on `svidgate-core` and
//! `peak_alloc`, and run it under a WASI runtime, e.g. Node's `node:wasi`.

use std::time::Instant;

use peak_alloc::PeakAlloc;
use svidgate_core::plugin_config;

/// Counts the bytes handed out; a realloc counts as a new block while the old one lives.
#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// The bench's document (`scripts/bench_envoy.py`): N principals, the client's in the middle.
/// Written into one buffer of its final size (so generating it leaves no freed blocks behind
/// for the parse to reuse).
fn document(n: usize) -> Vec<u8> {
    const TD: &str = "bench.local";
    let head = format!(
        r#"{{"trustDomain": "{TD}", "filter": {{"mode": "http"}}, "policies": [{{"name": "allow-clients", "action": "ALLOW", "rules": [{{"from": [{{"source": {{"principals": ["#
    );
    let tail = "]}}]}]}]}";
    let id = |i: usize| format!("\"{TD}/ns/team-{}/sa/workload-{i}\"", i % 997);
    let client = format!("\"{TD}/ns/web/sa/client\"");
    let others = n.saturating_sub(1);
    let ids = (0..others).map(|i| id(i).len() + 2).sum::<usize>() + client.len();
    let mut text = String::with_capacity(head.len() + ids + tail.len());
    text.push_str(&head);
    for i in 0..others {
        if i == others / 2 {
            text.push_str(&client);
            text.push_str(", ");
        }
        text.push_str(&id(i));
        if i + 1 < others {
            text.push_str(", ");
        }
    }
    if others == 0 {
        text.push_str(&client);
    }
    text.push_str(tail);
    text.into_bytes()
}

fn mib(n: usize) -> String {
    format!("{:.2} MiB", n as f64 / (1024.0 * 1024.0))
}

/// The linear memory of the Wasm instance (what a VM keeps), in bytes.
#[cfg(target_arch = "wasm32")]
fn memory() -> usize {
    core::arch::wasm32::memory_size(0) * 65536
}

/// One configuration of `n` principals in a fresh instance (Wasm only: its memory never
/// shrinks, so it is measured once per process): the linear memory before the text, with it,
/// and after parsing and compiling.
#[cfg(target_arch = "wasm32")]
fn wasm_once(n: usize) {
    let start = memory();
    let text = document(n);
    let size = text.len();
    let with_text = memory();
    let cfg = plugin_config::parse_owned(text);
    let after = memory();
    if let Err(e) = cfg {
        panic!("the generated document is rejected: {e}");
    }
    println!(
        "wasm32 N={n}: text {}, linear memory {} at start, {} with the text, {} configured (+{} for the configuration)",
        mib(size),
        mib(start),
        mib(with_text),
        mib(after),
        mib(after - start)
    );
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    if let Some(n) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        return wasm_once(n);
    }
    println!(
        "{:>8} {:>11} {:>11} {:>7} {:>11} {:>9}",
        "N", "text", "peak", "×text", "retained", "time"
    );
    for n in [1_000, 10_000, 100_000] {
        let text = document(n);
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
