//! The long-running agent's rotation loop against `svidgate ca` (library server on
//! 127.0.0.1:0, real TLS): the first certificate comes with a bearer token; once the token is
//! gone (revoked in the CA's tokens file, then deleted on the agent's side) renewals keep
//! working over mTLS with the current SVID.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sidecar_host::agent::bundle::TrustBundles;
use sidecar_host::agent::metrics::Metrics;
use sidecar_host::agent::rotation::{RotationConfig, Rotator};
use sidecar_host::agent::sds::SecretStore;
use sidecar_host::agent::serve::CaSource;
use svidgate_pki::chain::DEFAULT_SKEW;
use svidgate_pki::KeyType;
use tokio::sync::watch;

fn serial(store: &SecretStore) -> Option<String> {
    store.current().cert.map(|s| s.serial().to_owned())
}

/// Waits until the served serial differs from `old` (or any serial when `old` is None).
async fn next_serial(store: &SecretStore, old: Option<&str>, within: Duration) -> String {
    let until = Instant::now() + within;
    loop {
        if let Some(s) = serial(store) {
            if old != Some(s.as_str()) {
                return s;
            }
        }
        assert!(
            Instant::now() < until,
            "no new certificate within {within:?} (serving {old:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn renewal_continues_over_mtls_after_the_token_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, root) = start_with_tokens(tmp.path(), &format!("web-token {WEB}\n")).await;
    let token = write(tmp.path(), "token", "web-token\n");

    let source = CaSource {
        client: client(ca.addr, &root, Some(&token)),
        spiffe_id: id(WEB),
        key_type: KeyType::EcdsaP256,
        ttl: Duration::from_secs(6),
        anchors: root.clone(),
        skew: DEFAULT_SKEW,
    };
    assert!(!source.client.has_client_identity());
    let store = Arc::new(SecretStore::new());
    let metrics = Arc::new(Metrics::new());
    let bundles = Arc::new(Mutex::new(TrustBundles::new(
        id(WEB).trust_domain().clone(),
        Duration::from_secs(60),
    )));
    let rotator = Rotator::new(
        source,
        store.clone(),
        bundles,
        metrics.clone(),
        RotationConfig {
            ratio: 0.5,
            jitter: 0.0,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
        },
    );
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(rotator.run(shutdown));

    // 1. First issuance: token only (no certificate yet).
    let first = next_serial(&store, None, Duration::from_secs(5)).await;

    // 2. The CA revokes the token; the agent still sends it, together with its SVID.
    write(tmp.path(), "tokens", "# no tokens\n");
    let second = next_serial(&store, Some(&first), Duration::from_secs(6)).await;

    // 3. The agent's token file is gone too: the SVID alone renews.
    std::fs::remove_file(&token).unwrap();
    let third = next_serial(&store, Some(&second), Duration::from_secs(6)).await;

    assert_ne!(first, third);
    assert_eq!(metrics.rotations(false), 0, "no renewal failed");
    assert!(metrics.rotations(true) >= 3);
    let served = store.current().cert.unwrap();
    assert_eq!(served.spiffe_id(), &id(WEB));

    let _ = stop.send(true);
    let _ = task.await;
    ca.shutdown().await;
}
