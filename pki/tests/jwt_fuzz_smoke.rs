//! Stable-toolchain smoke run of the `jwt` fuzz property (`fuzz/props_jwt.rs`), part of
//! `make test`; coverage-guided fuzzing is `make fuzz`.

#[path = "../../fuzz/props_jwt.rs"]
mod props_jwt;

use svidgate_pki::jwt::mint::{claims, jwks, Signer};
use svidgate_pki::jwt::{verify, Expect, Jwks};

const FUZZ_JWKS: &[u8] = include_bytes!("../../fuzz/fixtures/jwt-jwks.json");
const FUZZ_SEEDS: &[&[u8]] = &[
    include_bytes!("../../fuzz/seeds/jwt/rs256"),
    include_bytes!("../../fuzz/seeds/jwt/es256"),
];

/// The fuzz property on every single-byte edit (8 substitutions, deletion) and every
/// truncation of the seed tokens, plus the JWKS fixture — a deterministic stand-in for
/// `make fuzz`.
#[test]
fn fuzz_property_holds_on_every_single_edit_of_the_seeds() {
    let set = Jwks::parse(FUZZ_JWKS).unwrap();
    let expect = Expect {
        issuer: props_jwt::ISSUER,
        audience: props_jwt::AUDIENCE,
        leeway_secs: 60,
    };
    for seed in FUZZ_SEEDS {
        // The seeds are genuine: they verify.
        verify(
            std::str::from_utf8(seed).unwrap(),
            &set,
            &expect,
            props_jwt::NOW,
        )
        .unwrap();
        props_jwt::jwt(&set, FUZZ_SEEDS, seed);
        for i in 0..seed.len() {
            let mut v = seed.to_vec();
            for b in [b'.', b'A', b'_', b'-', b'=', 0, 0xff, seed[i] ^ 1] {
                v[i] = b;
                props_jwt::jwt(&set, FUZZ_SEEDS, &v);
            }
            v.remove(i);
            props_jwt::jwt(&set, FUZZ_SEEDS, &v);
            props_jwt::jwt(&set, FUZZ_SEEDS, &seed[..i]);
        }
    }
    props_jwt::jwt(&set, FUZZ_SEEDS, FUZZ_JWKS);
}

/// Regenerates the fuzz fixture (a JWKS) and seeds (an RS256 and an ES256 token minted for
/// the fixed clock of `fuzz/props_jwt.rs`).
#[test]
#[ignore = "writes fuzz/fixtures and fuzz/seeds"]
fn write_fuzz_fixtures() {
    let rsa = Signer::rsa("fuzz-rsa");
    let ec = Signer::p256("fuzz-ec");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
    std::fs::write(format!("{root}/fixtures/jwt-jwks.json"), jwks(&[&rsa, &ec])).unwrap();
    let c = claims(
        props_jwt::ISSUER,
        props_jwt::AUDIENCE,
        "web",
        "frontend",
        props_jwt::NOW,
        3600,
    );
    std::fs::write(format!("{root}/seeds/jwt/rs256"), rsa.sign(&c)).unwrap();
    std::fs::write(format!("{root}/seeds/jwt/es256"), ec.sign(&c)).unwrap();
}
