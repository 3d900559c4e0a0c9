//! Istio AuthorizationPolicy import (Kubernetes YAML) never panics; accepted output compiles.
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::istio_import(data));
