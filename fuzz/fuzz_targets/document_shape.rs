//! The size, depth and alias caps before parsing are exact: nothing deeper than the cap parses.
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::document_shape(data));
