//! Policy evaluation cost against allowlist size (issue 2, item 7).
//!
//! One ALLOW policy whose single source lists N principals (N = 1, 100, 10,000, 100,000),
//! written exact (`cluster.local/ns/nI/sa/sI`) or as prefixes (`cluster.local/ns/nI/*`);
//! the peer matches the first entry, the last entry, or none. Target: the 100,000-entry case
//! within 2x of the 1-entry case and under 1 µs per decision.
//!
//! `make bench-core` (or `cargo bench -p svidgate-core --bench policy_eval`); the timing
//! settings below keep the whole run around a minute and a half. At the end it prints a
//! min-of-batches table that stays meaningful on a busy machine.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::Criterion;
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

struct Case {
    /// `exact/first/1` etc.
    name: String,
    kind: &'static str,
    position: &'static str,
    n: usize,
    policy: Rc<CompiledPolicy>,
    req: Request<'static>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for prefix in [false, true] {
        let kind = if prefix { "prefix" } else { "exact" };
        for n in SIZES {
            let policy = Rc::new(allowlist(n, prefix));
            let last = n - 1;
            for (position, uri, want) in [
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
            ] {
                let req = Request::http(peer(&uri), "GET", "/api/v1/items");
                assert_eq!(
                    policy.evaluate(&req, EvalMode::Http).allowed(),
                    want,
                    "{uri}"
                );
                out.push(Case {
                    name: format!("policy_eval/{kind}/{position}/{n}"),
                    kind,
                    position,
                    n,
                    policy: Rc::clone(&policy),
                    req,
                });
            }
        }
    }
    out
}

/// Criterion's means suffer on a loaded machine (preemption lands inside samples). This
/// prints, per case, the fastest of many interleaved batches: the cost of a decision when
/// the evaluating thread actually runs, and the ratio of each 100,000-entry case to its
/// 1-entry case.
fn min_of_batches(cases: &[Case]) {
    const ROUNDS: usize = 200;
    const BATCH: u32 = 1000;
    let mut best = vec![Duration::MAX; cases.len()];
    for _ in 0..ROUNDS {
        for (case, best) in cases.iter().zip(best.iter_mut()) {
            let start = Instant::now();
            for _ in 0..BATCH {
                black_box(
                    case.policy
                        .evaluate(black_box(&case.req), EvalMode::Http)
                        .allowed(),
                );
            }
            *best = (*best).min(start.elapsed() / BATCH);
        }
    }
    println!("\nmin of {ROUNDS} interleaved batches of {BATCH} decisions (ns per decision):");
    println!(
        "{:<8} {:<6} {:>10} {:>10} {:>10} {:>10}  100k/1",
        "kind", "pos", 1, 100, 10_000, 100_000
    );
    for kind in ["exact", "prefix"] {
        for position in ["first", "last", "miss"] {
            let row: Vec<f64> = SIZES
                .iter()
                .map(|n| {
                    cases
                        .iter()
                        .zip(&best)
                        .find(|(c, _)| c.kind == kind && c.position == position && c.n == *n)
                        .map_or(f64::NAN, |(_, d)| d.as_secs_f64() * 1e9)
                })
                .collect();
            println!(
                "{kind:<8} {position:<6} {:>10.1} {:>10.1} {:>10.1} {:>10.1}  {:.2}x",
                row[0],
                row[1],
                row[2],
                row[3],
                row[3] / row[0]
            );
        }
    }
}

fn main() {
    let cases = cases();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .configure_from_args();
    for case in &cases {
        c.bench_function(&case.name, |b| {
            b.iter(|| {
                case.policy
                    .evaluate(black_box(&case.req), EvalMode::Http)
                    .allowed()
            })
        });
    }
    // The filter's whole per-request policy work: parse the URI SAN, then decide; with a
    // peer from a trust-domain alias (the canonical ID is built too).
    let policy = allowlist(100_000, false);
    for (name, uri) in [
        ("local", "spiffe://cluster.local/ns/n99999/sa/s99999"),
        ("alias", "spiffe://old.example/ns/n99999/sa/s99999"),
    ] {
        c.bench_function(
            &format!("policy_eval/parse+evaluate/exact/100000/{name}"),
            |b| {
                b.iter(|| {
                    let req = Request::http(peer(black_box(uri)), "GET", "/api/v1/items");
                    policy.evaluate(&req, EvalMode::Http).allowed()
                })
            },
        );
    }
    c.final_summary();
    // Only under `cargo bench` (not `cargo test --all-targets`, which runs each case once).
    let args: Vec<String> = std::env::args().collect();
    let benchmarking =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list");
    if benchmarking {
        min_of_batches(&cases);
    }
}
