//! What the real-Envoy tests share on the network side: a test PKI for Envoy's mTLS listeners
//! (a CA, Envoy's server certificate, client leaves with chosen URI SANs, a rustls client that
//! presents them) and a threaded upstream server on loopback, stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// The DNS name of Envoy's server certificate (and the client's SNI).
pub const SERVER_NAME: &str = "svc.test";
/// Read and write timeout of the test clients' sockets.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A client certificate and its PKCS#8 key (not shown by `Debug`).
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// A test CA and Envoy's server certificate, written as `server.pem`, `server.key` and
/// `ca.pem` (the listeners' trusted CA) into a directory.
pub struct EnvoyPki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for EnvoyPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvoyPki").finish_non_exhaustive()
    }
}

impl EnvoyPki {
    /// A CA named `ca_name` plus the server certificate (DNS [`SERVER_NAME`]), written to `dir`.
    pub fn new(dir: &Path, ca_name: &str) -> Result<EnvoyPki> {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, ca_name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate()?)?;
        let mut p = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca)?;
        std::fs::write(dir.join("server.pem"), cert.pem())?;
        std::fs::write(dir.join("server.key"), key.serialize_pem())?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        Ok(EnvoyPki { ca })
    }

    /// A client leaf with the given URI SANs (in order), optionally CA:true.
    pub fn leaf(&self, uris: &[&str], is_ca: bool) -> Result<Leaf> {
        let mut p = CertificateParams::default();
        p.subject_alt_names = uris
            .iter()
            .map(|u| Ok(SanType::URI((*u).try_into()?)))
            .collect::<Result<_>>()?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if is_ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.ca)?;
        Ok(Leaf {
            cert: cert.der().clone(),
            key: key.serialize_der(),
        })
    }

    /// A rustls client trusting the CA and presenting `leaf`.
    pub fn client_config(&self, leaf: &Leaf) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![leaf.cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone())),
            )?;
        Ok(Arc::new(cfg))
    }

    /// A TLS connection to 127.0.0.1:`port` presenting `leaf` (see [`connect`]).
    pub fn connect(
        &self,
        port: u16,
        leaf: &Leaf,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        connect(self.client_config(leaf)?, port)
    }
}

/// A TLS connection to 127.0.0.1:`port` with `client` (SNI [`SERVER_NAME`], [`IO_TIMEOUT`]).
pub fn connect(
    client: Arc<rustls::ClientConfig>,
    port: u16,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let conn = rustls::ClientConnection::new(client, ServerName::try_from(SERVER_NAME)?)?;
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// A server on 127.0.0.1 (free port) that hands every accepted connection to `handle` on a
/// thread of its own; stops accepting when dropped.
#[derive(Debug)]
pub struct ThreadServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ThreadServer {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Result<ThreadServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = Arc::new(handle);
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let h = handle.clone();
                        std::thread::spawn(move || h(sock));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(ThreadServer {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves HTTP/1.1 on an accepted upstream connection until the peer closes it: reads each
/// request head (at most 64 KiB; no bodies) and answers 200 `text/plain` with the body
/// `respond` makes of the head.
pub fn serve_http(
    mut sock: TcpStream,
    mut respond: impl FnMut(&[u8]) -> Vec<u8>,
) -> std::io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if sock.read(&mut byte)? == 0 || head.len() > 64 * 1024 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let body = respond(&head);
        let mut out = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        sock.write_all(&out)?;
    }
}
