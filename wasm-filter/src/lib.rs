//! svidgate-filter: a proxy-wasm module that authorizes requests and connections by the
//! SPIFFE ID of the mTLS peer, using the policy engine of `svidgate-core`.
