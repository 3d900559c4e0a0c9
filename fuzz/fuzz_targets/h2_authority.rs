//! The HTTP/2 `:authority` rewriter of the agent's Workload API socket (client bytes in).
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::h2_authority(data));
