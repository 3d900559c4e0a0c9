//! SpiffeId / TrustDomain parsing never panics; whatever parses round-trips exactly and
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::spiffe_id(data));
