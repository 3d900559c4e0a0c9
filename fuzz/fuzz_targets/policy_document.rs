//! Policy documents (YAML and JSON) parse, compile and evaluate without panicking.
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::policy_document(data));
