//! Stable-toolchain smoke run of the fuzz properties (`fuzz/props.rs`), part of `make test`.
//!
//! Coverage-guided fuzzing with cargo-fuzz needs nightly and time (`make fuzz`, see
//! docs/fuzzing.md). This test drives the same property functions with a deterministic
//! pseudo-random mutator over the fuzz seeds for a bounded number of iterations, so every
//! `make test` re-checks "never panics, round-trips" on some tens of thousands of inputs.

#[path = "../../fuzz/props.rs"]
mod props;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = b"/.%:@?#\0\xff\x80-_aZ09 \n\r=+-0\x30\x82\x06\x86\x01";

/// Applies one to five random mutations: flip, set, insert, delete, duplicate, splice a
/// token, truncate.
fn mutate(rng: &mut Rng, input: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let chunk = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            5 if !tokens.is_empty() => {
                let t = tokens[rng.below(tokens.len())];
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
            _ => v.truncate(rng.below(len + 1)),
        }
    }
    v
}

fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The seed files `fuzz/seeds/<target>/<name>`, in the order given.
fn seeds(target: &str, names: &[&str]) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("seeds").join(target);
    let read = |n: &&str| std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("seed {n}: {e}"));
    names.iter().map(read).collect()
}

/// The tokens of `fuzz/dict/<target>.dict`, the dictionary `make fuzz` gives libFuzzer: one
/// `"value"` a line (`#` comments), with the escapes `\\`, `\"` and `\xNN`.
fn dict(target: &str) -> Vec<Vec<u8>> {
    let path = fuzz_dir().join("dict").join(format!("{target}.dict"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut tokens = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let value = line
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{path:?}: not a quoted value: {line}"));
        let (b, mut token, mut i) = (value.as_bytes(), Vec::new(), 0);
        while i < b.len() {
            match (b[i], b.get(i + 1)) {
                (b'\\', Some(b'x')) => {
                    token.push(u8::from_str_radix(&value[i + 2..i + 4], 16).unwrap());
                    i += 4;
                }
                (b'\\', Some(&c)) => {
                    token.push(c);
                    i += 2;
                }
                (c, _) => {
                    token.push(c);
                    i += 1;
                }
            }
        }
        tokens.push(token);
    }
    assert!(!tokens.is_empty(), "{path:?}: no tokens");
    tokens
}

/// Checks `prop` on the seeds (files of `fuzz/seeds/<target>/`, then `extra`), then on
/// `iterations` mutations of them with the target's dictionary tokens spliced in.
fn run(
    target: &str,
    names: &[&str],
    extra: &[&[u8]],
    rng_seed: u64,
    iterations: usize,
    prop: fn(&[u8]),
) {
    let mut seeds = seeds(target, names);
    seeds.extend(extra.iter().map(|s| s.to_vec()));
    let tokens = dict(target);
    let tokens: Vec<&[u8]> = tokens.iter().map(Vec::as_slice).collect();
    let mut rng = Rng(rng_seed);
    for s in &seeds {
        prop(s);
    }
    for _ in 0..iterations {
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base, &tokens);
        prop(&input);
    }
}

#[test]
fn spiffe_id_properties_hold_on_mutated_inputs() {
    run(
        "spiffe_id",
        &["istio", "td", "bare-td", "dot", "port-query"],
        &[b""],
        0x5eed_0001,
        100_000,
        props::spiffe_id,
    );
}

#[test]
fn svid_leaf_properties_hold_on_mutated_inputs() {
    run(
        "svid_leaf",
        &["leaf.der", "leaf.pem", "ca.der", "chain.pem"],
        &[],
        0x5eed_0002,
        20_000,
        props::svid_leaf,
    );
}

#[test]
fn policy_document_properties_hold_on_mutated_inputs() {
    run(
        "policy_document",
        &["design.yaml", "design.json", "allowlist.json"],
        &[],
        0x5eed_0003,
        5_000,
        props::policy_document,
    );
}

#[test]
fn document_shape_properties_hold_on_mutated_inputs() {
    run(
        "document_shape",
        &[
            "anchors.yaml",
            "nested.json",
            "edge.yaml",
            "../policy_document/design.yaml",
        ],
        &[],
        0x5eed_0006,
        5_000,
        props::document_shape,
    );
}

#[test]
fn request_path_properties_hold_on_mutated_inputs() {
    run(
        "request_path",
        &["plain", "dots", "escapes", "host"],
        &[b"/"],
        0x5eed_0004,
        100_000,
        props::request_path,
    );
}

#[test]
fn header_view_properties_hold_on_mutated_inputs() {
    run(
        "header_view",
        &["repeated", "underscore"],
        &[],
        0x5eed_0005,
        50_000,
        props::header_view,
    );
}

#[test]
fn reference_normalizer_agrees_with_the_rfc_3986_examples() {
    // RFC 3986 section 5.4 (normal examples, path part) and section 6.2.2.
    for (input, want) in [
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/b/c/../../../g", "/g"),
        ("/./g", "/g"),
        ("/b/c/g/", "/b/c/g/"),
        ("/b/c/.", "/b/c/"),
        ("/b/c/..", "/b/"),
        ("/%7Euser/%41", "/~user/A"),
        ("//a%2fb%5Cc", "/a/b/c"),
    ] {
        assert_eq!(props::reference_normalize(input), want, "{input}");
    }
}

#[test]
fn h2_authority_properties_hold_on_mutated_inputs() {
    run(
        "h2_authority",
        &[
            "rfc7541-c3",
            "rfc7541-c4-huffman",
            "continuation-padded",
            "grpc-core-uds",
        ],
        &[],
        0x5eed_0006,
        50_000,
        props::h2_authority,
    );
}

#[test]
fn seeds_are_what_they_claim() {
    // The HTTP/2 seeds are valid connections whose authority is rewritten.
    let h2 = [
        "rfc7541-c3",
        "rfc7541-c4-huffman",
        "continuation-padded",
        "grpc-core-uds",
    ];
    for seed in seeds("h2_authority", &h2) {
        let mut out = Vec::new();
        svidgate_core::h2_authority::ClientRewriter::new()
            .feed(&seed, &mut out)
            .unwrap();
        assert!(out.windows(9).any(|w| w == b"localhost"));
    }
    // The leaf seeds are valid X509-SVIDs (so mutations start from the accepting path).
    let id = "spiffe://cluster.local/ns/default/sa/web";
    let [leaf_der, leaf_pem, chain, ca_der] = <[Vec<u8>; 4]>::try_from(seeds(
        "svid_leaf",
        &["leaf.der", "leaf.pem", "chain.pem", "ca.der"],
    ))
    .unwrap();
    assert_eq!(
        svidgate_core::svid::check_leaf_der(&leaf_der)
            .unwrap()
            .as_str(),
        id
    );
    for input in [leaf_pem, chain] {
        assert_eq!(
            svidgate_core::svid::check_leaf_pem(&input)
                .unwrap()
                .as_str(),
            id
        );
    }
    assert_eq!(
        svidgate_core::svid::check_leaf_der(&ca_der),
        Err(svidgate_core::svid::SvidError::NoUriSan)
    );
}

#[test]
fn istio_import_properties_hold_on_mutated_inputs() {
    run(
        "istio_import",
        &["fixture.yaml"],
        &[b""],
        0x5eed_0004,
        3_000,
        props::istio_import,
    );
}
