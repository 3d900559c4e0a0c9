//! Policy evaluation cost against allowlist size (issue 2, item 7).
//!
//! One ALLOW policy whose single source lists N principals (N = 1, 100, 10,000, 100,000),
//! written exact (`cluster.local/ns/nI/sa/sI`) or as prefixes (`cluster.local/ns/nI/*`);
//! the peer matches the first entry, the last entry, or none. Target: the 100,000-entry case
//! within 2x of the 1-entry case and under 1 µs per decision.
//!
//! `make bench-core` (or `cargo bench -p svidgate-core --bench policy_eval`); the timing
//! settings below keep the whole run around a minute and a half.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use svidgate_core::policy::{
    Action, CompiledPolicy, EvalMode, Mode, Peer, Policy, PolicyDocument, Request, Rule, RuleFrom,
    Source,
};

const SIZES: [usize; 4] = [1, 100, 10_000, 100_000];

fn allowlist(n: usize, prefix: bool) -> CompiledPolicy {
    let principals = (0..n)
        .map(|i| {
            if prefix {
                format!("cluster.local/ns/n{i}/*")
            } else {
                format!("cluster.local/ns/n{i}/sa/s{i}")
            }
        })
        .collect();
    let doc = PolicyDocument {
        trust_domain: "cluster.local".into(),
        trust_domain_aliases: vec!["old.example".into()],
        mode: Mode::Enforce,
        policies: vec![Policy {
            name: "allowlist".into(),
            action: Action::Allow,
            dry_run: false,
            rules: vec![Rule {
                from: vec![RuleFrom {
                    source: Source {
                        principals,
                        ..Source::default()
                    },
                }],
                ..Rule::default()
            }],
        }],
    };
    match CompiledPolicy::compile(&doc) {
        Ok(c) => c,
        Err(e) => panic!("benchmark policy does not compile: {e}"),
    }
}

fn peer(uri: &str) -> Peer {
    Peer::from_uri_san(true, Some(uri))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_eval");
    group
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30);
    for prefix in [false, true] {
        let kind = if prefix { "prefix" } else { "exact" };
        for n in SIZES {
            let policy = allowlist(n, prefix);
            let last = n - 1;
            let cases = [
                (
                    "first",
                    "spiffe://cluster.local/ns/n0/sa/s0".to_owned(),
                    true,
                ),
                (
                    "last",
                    format!("spiffe://cluster.local/ns/n{last}/sa/s{last}"),
                    true,
                ),
                (
                    "miss",
                    "spiffe://cluster.local/ns/other/sa/x".to_owned(),
                    false,
                ),
            ];
            for (position, uri, want) in cases {
                let req = Request::http(peer(&uri), "GET", "/api/v1/items");
                assert_eq!(
                    policy.evaluate(&req, EvalMode::Http).allowed(),
                    want,
                    "{uri}"
                );
                group.bench_with_input(
                    BenchmarkId::new(format!("{kind}/{position}"), n),
                    &req,
                    |b, req| b.iter(|| policy.evaluate(black_box(req), EvalMode::Http).allowed()),
                );
            }
        }
    }
    // The filter's whole per-request policy work: parse the URI SAN, then decide; with a
    // peer from a trust-domain alias (the canonical ID is built too).
    let policy = allowlist(100_000, false);
    for (name, uri) in [
        ("local", "spiffe://cluster.local/ns/n99999/sa/s99999"),
        ("alias", "spiffe://old.example/ns/n99999/sa/s99999"),
    ] {
        group.bench_function(format!("parse+evaluate/exact-100000/{name}"), |b| {
            b.iter(|| {
                let req = Request::http(peer(black_box(uri)), "GET", "/api/v1/items");
                policy.evaluate(&req, EvalMode::Http).allowed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
