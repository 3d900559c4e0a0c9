//! The equivalence behind [`CompiledPolicy::attributes`]: a request with only the attributes
//! the policy reads gives the same decision (and the same `explain` trace) as the full request.
//! Requests are drawn at random (a fixed-seed generator, so failures reproduce) from values
//! taken from the policy document itself — every quoted or bare word, with `*` filled in —
//! plus a few of their own, so the rules are hit as well as missed.

use svidgate_core::policy::{CompiledPolicy, EvalMode, NoIdentity, Peer, Request};
use svidgate_core::SpiffeId;

/// xorshift64*: small, deterministic, good enough to pick from lists.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

/// At most this many distinct words of a document are used (evenly spread over it): the
/// semantics tests include documents with very large allowlists.
const MAX_WORDS: usize = 300;

/// Candidate strings from a policy document's text: words between YAML/JSON punctuation,
/// each also with its `*` replaced by something (so prefix/suffix patterns match).
pub fn words(doc: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut all: Vec<&str> = Vec::new();
    for w in doc.split(|c: char| c.is_whitespace() || "[]{},\"':".contains(c)) {
        let w = w.trim();
        if !w.is_empty() && !w.starts_with('#') && seen.insert(w) {
            all.push(w);
        }
    }
    let step = all.len().div_ceil(MAX_WORDS).max(1);
    let mut out: Vec<String> = Vec::new();
    for w in all.into_iter().step_by(step) {
        for v in [w.to_owned(), w.replace('*', "x"), w.replace('*', "")] {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

fn peers(words: &[String]) -> Vec<Peer> {
    let mut out = vec![
        Peer::None(NoIdentity::NotMtls),
        Peer::None(NoIdentity::NoUriSan),
        Peer::None(NoIdentity::InvalidSvid),
        Peer::None(NoIdentity::Unavailable),
    ];
    let mut ids: Vec<String> = vec![
        "spiffe://cluster.local/ns/web/sa/frontend".into(),
        "spiffe://other.td/ns/web/sa/frontend".into(),
        "spiffe://cluster.local/ns/legacy/sa/old".into(),
    ];
    for w in words {
        // Principals (`td/ns/a/sa/b`), trust domains and namespaces as peers.
        ids.push(format!("spiffe://{}", w.trim_start_matches("spiffe://")));
        ids.push(format!("spiffe://cluster.local/ns/{w}/sa/x"));
        ids.push(format!("spiffe://{w}/ns/a/sa/b"));
    }
    for id in ids {
        if let Ok(id) = SpiffeId::parse(&id) {
            out.push(Peer::Identity(id));
        }
    }
    out
}

/// `n` random requests over `doc`'s words: for each, `policy` must decide the full request
/// and its reduction to [`CompiledPolicy::attributes`] (for the mode) the same way.
pub fn assert_reduction_is_exact(policy: &CompiledPolicy, doc: &str, n: usize, seed: u64) {
    let words = words(doc);
    let mut values: Vec<String> = words.clone();
    values.extend(
        [
            "GET",
            "POST",
            "get",
            "/",
            "/api/x?q=1",
            "/api/x#f",
            "",
            "Svc.Test",
            "db.test",
        ]
        .map(String::from),
    );
    let peers = peers(&words);
    let mut ports: Vec<u16> = vec![80, 443, 5432, 8080, 9090];
    ports.extend(words.iter().filter_map(|w| w.parse::<u16>().ok()));
    // Header names: `request.headers[x]` keys of the document, plus one it never names.
    let mut names: Vec<String> = vec!["x-unrelated".into()];
    for w in &words {
        if let Some(rest) = w.strip_prefix("request.headers") {
            let n = rest.trim_matches(|c| c == '[' || c == ']');
            if !n.is_empty() {
                names.push(n.to_owned());
                names.push(n.to_ascii_uppercase());
            }
        }
    }
    // The document's split drops `[`..`]`: also take every word after a `request.headers`.
    for w in doc.split("request.headers[").skip(1) {
        if let Some(n) = w.split(']').next() {
            names.push(n.to_owned());
        }
    }
    let mut rng = Rng::new(seed);
    for mode in [EvalMode::Http, EvalMode::Network] {
        let attrs = policy.attributes().for_mode(mode);
        for i in 0..n {
            let some = |rng: &mut Rng| -> Option<&str> {
                if rng.chance(6) {
                    None
                } else {
                    Some(rng.pick(&values).as_str())
                }
            };
            let peer = rng.pick(&peers).clone();
            let method = some(&mut rng);
            let path = some(&mut rng);
            let host = some(&mut rng);
            let sni = some(&mut rng);
            let port = (!rng.chance(6)).then(|| *rng.pick(&ports));
            let count = (rng.next() % 3) as usize;
            let headers: Vec<(&str, &str)> = (0..count)
                .map(|_| (rng.pick(&names).as_str(), rng.pick(&values).as_str()))
                .collect();
            // Network mode never carries HTTP fields (the filter has none to give).
            let full = match mode {
                EvalMode::Http => Request {
                    peer,
                    method,
                    path,
                    host,
                    port,
                    headers: &headers,
                    sni,
                },
                EvalMode::Network => Request::network(peer, port, sni),
            };
            let reduced = attrs.reduce(&full);
            assert_eq!(
                policy.evaluate(&full, mode),
                policy.evaluate(&reduced, mode),
                "request {i} ({mode:?}) decides differently without the attributes the policy \
                 does not read ({attrs:?}):\nfull: {full:?}\nreduced: {reduced:?}\ndocument:\n{doc}"
            );
            assert_eq!(
                policy.explain(&full, mode),
                policy.explain(&reduced, mode),
                "request {i} ({mode:?}): explain differs; document:\n{doc}"
            );
        }
    }
}
