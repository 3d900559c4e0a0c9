//! The X509-SVID leaf checks never panic, and the DER, PEM and LeafInfo entry points agree.
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::svid_leaf(data));
