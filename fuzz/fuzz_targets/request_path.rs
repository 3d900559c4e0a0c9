//! The `:path` normal-form check (and the method and host checks) never panic; an accepted
//! path is a fixed point of the reference normalizer.
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::request_path(data));
