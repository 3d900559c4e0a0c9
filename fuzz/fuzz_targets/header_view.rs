//! The header view (repeated, list and underscore-variant headers) never panics; joined
//! values are exactly the values in order.
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::header_view(data));
