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

fn run(seed: u64, iterations: usize, seeds: &[&[u8]], tokens: &[&[u8]], prop: fn(&[u8])) {
    let mut rng = Rng(seed);
    for s in seeds {
        prop(s);
    }
    for _ in 0..iterations {
        let base = seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base, tokens);
        prop(&input);
    }
}

macro_rules! seed {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/seeds/",
            $path
        ))
        .as_slice()
    };
}

#[test]
fn spiffe_id_properties_hold_on_mutated_inputs() {
    let seeds: &[&[u8]] = &[
        seed!("spiffe_id/istio"),
        seed!("spiffe_id/td"),
        seed!("spiffe_id/bare-td"),
        seed!("spiffe_id/dot"),
        seed!("spiffe_id/port-query"),
        b"",
    ];
    let tokens: &[&[u8]] = &[
        b"spiffe://",
        b"/",
        b"//",
        b"/.",
        b"/..",
        b"%2F",
        b":",
        b"@",
        b"?",
        b"#",
        b"A",
    ];
    run(0x5eed_0001, 100_000, seeds, tokens, props::spiffe_id);
}

#[test]
fn svid_leaf_properties_hold_on_mutated_inputs() {
    let seeds: &[&[u8]] = &[
        seed!("svid_leaf/leaf.der"),
        seed!("svid_leaf/leaf.pem"),
        seed!("svid_leaf/ca.der"),
        seed!("svid_leaf/chain.pem"),
    ];
    let tokens: &[&[u8]] = &[
        b"-----BEGIN CERTIFICATE-----\n",
        b"-----END CERTIFICATE-----\n",
        b"\r\n",
        b"====",
        b"\x86\x1fspiffe://cluster.local/ns/a/sa/b",
        b"\x06\x03\x55\x1d\x13",
    ];
    run(0x5eed_0002, 20_000, seeds, tokens, props::svid_leaf);
}

#[test]
fn policy_document_properties_hold_on_mutated_inputs() {
    let seeds: &[&[u8]] = &[
        seed!("policy_document/design.yaml"),
        seed!("policy_document/design.json"),
        seed!("policy_document/allowlist.json"),
    ];
    let tokens: &[&[u8]] = &[
        b"\n  - ",
        b": ",
        b"*",
        b"[",
        b"]",
        b"{",
        b"}",
        b"&a ",
        b"*a",
        b"!!",
        b"notPrincipals",
        b"spiffe://",
        b"\"",
        b"ALLOW",
        b"DENY",
    ];
    run(0x5eed_0003, 5_000, seeds, tokens, props::policy_document);
}

#[test]
fn document_shape_properties_hold_on_mutated_inputs() {
    let seeds: &[&[u8]] = &[
        seed!("document_shape/anchors.yaml"),
        seed!("document_shape/nested.json"),
        seed!("document_shape/edge.yaml"),
        seed!("policy_document/design.yaml"),
    ];
    let tokens: &[&[u8]] = &[
        b"[", b"]", b"{", b"}", b"\"", b"'", b"\n ", b"\n- ", b"- ", b": ", b"&a ", b"*a", b"|\n ",
        b">\n ", b"# ", b"? ", b",", b"\\",
    ];
    run(0x5eed_0006, 5_000, seeds, tokens, props::document_shape);
}

#[test]
fn request_path_properties_hold_on_mutated_inputs() {
    let seeds: &[&[u8]] = &[
        seed!("request_path/plain"),
        seed!("request_path/dots"),
        seed!("request_path/escapes"),
        seed!("request_path/host"),
        b"/",
    ];
    let tokens: &[&[u8]] = &[
        b"/", b"//", b"/.", b"/..", b"%2e", b"%2F", b"%5c", b"%25", b"%61", b"%", b"\\", b";",
        b"?", b"#", b":", b"[::1]", b".",
    ];
    run(0x5eed_0004, 100_000, seeds, tokens, props::request_path);
}

#[test]
fn header_view_properties_hold_on_mutated_inputs() {
    let seeds: &[&[u8]] = &[
        seed!("header_view/repeated"),
        seed!("header_view/underscore"),
    ];
    let tokens: &[&[u8]] = &[
        b"\nx-tenant:",
        b"\nX-TENANT:",
        b"\nx_tenant:",
        b"\nx-env:",
        b"\nx_spiffe_peer_id:",
        b",",
        b"_",
        b"-",
        b":",
    ];
    run(0x5eed_0005, 50_000, seeds, tokens, props::header_view);
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
    let seeds: &[&[u8]] = &[
        seed!("h2_authority/rfc7541-c3"),
        seed!("h2_authority/rfc7541-c4-huffman"),
        seed!("h2_authority/continuation-padded"),
        seed!("h2_authority/grpc-core-uds"),
    ];
    let tokens: &[&[u8]] = &[
        b"\x00\x00\x05\x01\x04\x00\x00\x00\x01",
        b"\x00\x00\x03\x09\x04\x00\x00\x00\x01",
        b"\x41\x0f",
        b"\x41\x8c",
        b"\x3f\xe1\x1f",
        b"\xbe",
        b"\x7f\xff\xff",
        b"%2F",
    ];
    run(0x5eed_0006, 50_000, seeds, tokens, props::h2_authority);
}

#[test]
fn seeds_are_what_they_claim() {
    // The HTTP/2 seeds are valid connections whose authority is rewritten.
    for seed in [
        seed!("h2_authority/rfc7541-c3"),
        seed!("h2_authority/rfc7541-c4-huffman"),
        seed!("h2_authority/continuation-padded"),
        seed!("h2_authority/grpc-core-uds"),
    ] {
        let mut out = Vec::new();
        svidgate_core::h2_authority::ClientRewriter::new()
            .feed(seed, &mut out)
            .unwrap();
        assert!(out.windows(9).any(|w| w == b"localhost"));
    }
    // The leaf seeds are valid X509-SVIDs (so mutations start from the accepting path).
    let id = "spiffe://cluster.local/ns/default/sa/web";
    let leaf_der = seed!("svid_leaf/leaf.der");
    let leaf_pem = seed!("svid_leaf/leaf.pem");
    let chain = seed!("svid_leaf/chain.pem");
    assert_eq!(
        svidgate_core::svid::check_leaf_der(leaf_der)
            .unwrap()
            .as_str(),
        id
    );
    for input in [leaf_pem, chain] {
        assert_eq!(
            svidgate_core::svid::check_leaf_pem(input).unwrap().as_str(),
            id
        );
    }
    assert_eq!(
        svidgate_core::svid::check_leaf_der(seed!("svid_leaf/ca.der")),
        Err(svidgate_core::svid::SvidError::NoUriSan)
    );
}

#[test]
fn istio_import_properties_hold_on_mutated_inputs() {
    let seeds: &[&[u8]] = &[seed!("istio_import/fixture.yaml"), b""];
    let tokens: &[&[u8]] = &[
        b"DENY",
        b"ALLOW",
        b"CUSTOM",
        b"ipBlocks: [1.2.3.4]",
        b"serviceAccounts: [a/b]",
        b"paths: ['/{*}']",
        b"---\n",
        b"[",
        b"{",
        b"\n  ",
    ];
    run(0x5eed_0004, 3_000, seeds, tokens, props::istio_import);
}
