//! Per-request identity work in the filter: parsing the peer's SPIFFE ID (non-strict mode)
//! and checking its leaf certificate (strict mode, once per certificate digest).
//! `cargo bench -p svidgate-core --bench identity`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use svidgate_core::svid::check_leaf_pem;
use svidgate_core::SpiffeId;

fn bench(c: &mut Criterion) {
    let id = "spiffe://cluster.local/ns/default/sa/web";
    c.bench_function("SpiffeId::parse istio id", |b| {
        b.iter(|| SpiffeId::parse(black_box(id)))
    });
    let long = format!("spiffe://{}/{}", "a".repeat(255), "b/".repeat(800) + "c");
    c.bench_function("SpiffeId::parse 1.9 KB id", |b| {
        b.iter(|| SpiffeId::parse(black_box(&long)))
    });
    let bad = "spiffe://cluster.local/ns/default/sa/web/";
    c.bench_function("SpiffeId::parse invalid (trailing slash)", |b| {
        b.iter(|| SpiffeId::parse(black_box(bad)))
    });

    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().expect("uri"))];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let pem = params.self_signed(&key).expect("cert").pem();
    c.bench_function("check_leaf_pem", |b| {
        b.iter(|| check_leaf_pem(black_box(pem.as_bytes())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
