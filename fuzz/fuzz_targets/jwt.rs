//! Kubernetes service-account tokens and JWKS documents (`svidgate_pki::jwt`).
#![no_main]

#[path = "../props_jwt.rs"]
mod props_jwt;

use std::sync::OnceLock;

use svidgate_pki::jwt::Jwks;

static JWKS: OnceLock<Jwks> = OnceLock::new();
const SEEDS: &[&[u8]] = &[
    include_bytes!("../seeds/jwt/rs256"),
    include_bytes!("../seeds/jwt/es256"),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let jwks = JWKS.get_or_init(|| {
        Jwks::parse(include_bytes!("../fixtures/jwt-jwks.json")).expect("fixture JWKS")
    });
    props_jwt::jwt(jwks, SEEDS, data)
});
