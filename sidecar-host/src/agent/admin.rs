//! The agent's admin endpoint: the shared server ([`crate::admin`]) over the agent's
//! [`Metrics`], on `--admin-addr`.
//!
//! Default address `127.0.0.1:15030`: outside the ports istio-proxy uses (15000 Envoy admin,
//! 15001/15006 capture, 15004, 15008 HBONE, 15009, 15010-15012/15014/15017 istiod, 15020 merged
//! metrics, 15021 health, 15053 DNS, 15090 Envoy Prometheus).

use crate::admin::Exposition;
pub use crate::admin::{bind, serve, AdminError};

use super::metrics::Metrics;

/// Default admin listen address.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:15030";

impl Exposition for Metrics {
    fn ready(&self) -> bool {
        self.is_ready()
    }
    fn not_ready_reason(&self) -> &'static str {
        "not ready: no valid certificate is being served\n"
    }
    fn exposition(&self) -> String {
        self.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::watch;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let code = buf[9..12].parse().unwrap();
        (code, buf.split_once("\r\n\r\n").unwrap().1.to_owned())
    }

    #[tokio::test]
    async fn health_and_metrics() {
        let m = Arc::new(Metrics::new());
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve(l, m.clone(), rx));
        assert_eq!(get(addr, "/healthz/live").await.0, 200);
        assert_eq!(get(addr, "/healthz/ready").await.0, 503);
        m.set_ready(true);
        assert_eq!(get(addr, "/healthz/ready").await.0, 200);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("svidgate_ready 1"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        tx.send(true).unwrap();
        server.await.unwrap().unwrap();
    }
}
