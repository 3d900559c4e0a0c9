//! The property of the `jwt` fuzz target (Kubernetes service-account tokens,
//! `svidgate_pki::jwt`), shared with the stable smoke test in `pki/src/jwt.rs`. Kept apart
//! from `props.rs` because it needs `svidgate-pki`, which `core`'s smoke test cannot use.

use svidgate_pki::jwt::{verify, Expect, Jwks};

/// The fixed clock, issuer and audience the seeds (`fuzz/seeds/jwt/`) were minted for
/// (regenerate them with `cargo test -p svidgate-pki -- --ignored write_fuzz_fixtures`).
pub const NOW: i64 = 1_764_460_800;
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const AUDIENCE: &str = "istio-ca";

/// Neither the JWKS parser nor the verifier panics on any input; a token verifies only if
/// its signed part (`header.payload`) is exactly one of the genuine `seeds`, and what it
/// yields is a service account whose `sub` and names are consistent.
pub fn jwt(jwks: &Jwks, seeds: &[&[u8]], data: &[u8]) {
    let _ = Jwks::parse(data);
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let expect = Expect {
        issuer: ISSUER,
        audience: AUDIENCE,
        leeway_secs: 60,
    };
    let Ok(sa) = verify(token, jwks, &expect, NOW) else {
        return;
    };
    let signed = token.rsplit_once('.').map_or("", |(s, _)| s).as_bytes();
    assert!(
        seeds
            .iter()
            .any(|s| s.len() > signed.len() && s.starts_with(signed) && s[signed.len()] == b'.'),
        "a token whose signed part is not genuine verified"
    );
    for name in [&sa.namespace, &sa.name] {
        assert!(!name.is_empty() && name.len() <= 253);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
    }
}
