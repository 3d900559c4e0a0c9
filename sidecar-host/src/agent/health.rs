//! `svidgate health`: asks a running agent's admin endpoint whether it is started, ready or live,
//! and answers with the exit code (0 yes, 1 no) — for Kubernetes `exec` probes. Istio rewrites
//! HTTP, TCP and gRPC probes of injected containers to pilot-agent's port (istio/istio
//! pkg/kube/inject/app_probe.go), which the agent must not depend on; exec probes are left alone.
//!
//! A plain HTTP/1.1 GET over a blocking TCP connection with a deadline; the answer is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use super::admin::DEFAULT_ADMIN_ADDR;
use crate::runtime::{duration, Setting};

/// The most of the admin endpoint's answer that is read.
const MAX_RESPONSE: usize = 4096;

/// Which Kubernetes probe is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Probe {
    /// Started: a valid certificate is being served (so istio-proxy may start).
    Startup,
    /// Ready: a valid certificate is being served now.
    Readiness,
    /// Live: the agent answers.
    Liveness,
}

impl Probe {
    /// The admin path that answers this probe (agent/admin.rs).
    pub fn path(self) -> &'static str {
        match self {
            Probe::Startup | Probe::Readiness => "/healthz/ready",
            Probe::Liveness => "/healthz/live",
        }
    }
}

/// Flags of `svidgate health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The probe: startup, readiness or liveness.
    #[arg(long, value_enum, default_value = "readiness")]
    pub probe: Probe,

    /// The agent's admin address (the agent's --admin-addr).
    #[arg(long, env = "SVIDGATE_ADMIN_ADDR", value_name = "ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,

    /// Deadline for the whole check.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = Setting(duration))]
    pub timeout: Duration,
}

/// Why the agent is not healthy (or could not be asked).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("agent admin endpoint {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("agent admin endpoint {addr}: not an HTTP answer: {line:?}")]
    Malformed { addr: SocketAddr, line: String },
    #[error("{probe:?} probe failed: {addr}{path} answered {status}: {body}")]
    Unhealthy {
        probe: Probe,
        addr: SocketAddr,
        path: &'static str,
        status: u16,
        body: String,
    },
}

/// GETs the probe's path; Ok when the agent answers 200.
pub fn check(args: &HealthArgs) -> Result<(), HealthError> {
    let addr = args.admin_addr;
    let io = |source| HealthError::Io { addr, source };
    let deadline = Instant::now() + args.timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()).map_err(io)?;
    stream.set_write_timeout(Some(left())).map_err(io)?;
    let path = args.probe.path();
    // One write: the request reaches the server whole.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: svidgate-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while buf.len() < MAX_RESPONSE {
        stream.set_read_timeout(Some(left())).map_err(io)?;
        match stream.read(&mut chunk).map_err(io)? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n.min(MAX_RESPONSE - buf.len())]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or_default();
    let status = parse_status(status_line).ok_or_else(|| HealthError::Malformed {
        addr,
        line: status_line.chars().take(80).collect(),
    })?;
    if status == 200 {
        return Ok(());
    }
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or_default();
    Err(HealthError::Unhealthy {
        probe: args.probe,
        addr,
        path,
        status,
        body: body.chars().take(200).collect(),
    })
}

/// The status code of an HTTP/1.x status line.
fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Runs `svidgate health`: exit code 0 when healthy, 1 otherwise (the reason on stderr).
pub fn main(args: &HealthArgs) -> i32 {
    match check(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("svidgate health: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_lines() {
        for (line, want) in [
            ("HTTP/1.1 200 OK", Some(200)),
            ("HTTP/1.0 503 Service Unavailable", Some(503)),
            ("HTTP/1.1 200", Some(200)),
            ("HTTP/2 200", None),
            ("HTTP/1.1 20 OK", None),
            ("HTTP/1.1 abc OK", None),
            ("SSH-2.0-OpenSSH", None),
            ("", None),
        ] {
            assert_eq!(parse_status(line), want, "{line:?}");
        }
    }

    fn args(addr: SocketAddr, probe: Probe) -> HealthArgs {
        HealthArgs {
            probe,
            admin_addr: addr,
            timeout: Duration::from_secs(2),
        }
    }

    /// A one-shot server on loopback answering `answer`; returns its address and the request.
    fn serve_once(answer: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request head before answering: closing with unread bytes would
            // reset the connection under the client.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (addr, h)
    }

    #[test]
    fn answers_map_to_health() {
        let (addr, h) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nready\n");
        check(&args(addr, Probe::Startup)).unwrap();
        assert!(h
            .join()
            .unwrap()
            .starts_with("GET /healthz/ready HTTP/1.1\r\n"));

        let (addr, h) = serve_once(b"HTTP/1.1 200 OK\r\n\r\nlive\n");
        check(&args(addr, Probe::Liveness)).unwrap();
        assert!(h.join().unwrap().starts_with("GET /healthz/live "));

        let (addr, _h) = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: no valid certificate is being served\n",
        );
        let e = check(&args(addr, Probe::Readiness))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("503") && e.contains("no valid certificate"),
            "{e}"
        );

        let (addr, _h) = serve_once(b"garbage\r\n\r\n");
        assert!(matches!(
            check(&args(addr, Probe::Readiness)),
            Err(HealthError::Malformed { .. })
        ));
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(matches!(
            check(&args(addr, Probe::Liveness)),
            Err(HealthError::Io { .. })
        ));
        assert_eq!(main(&args(addr, Probe::Liveness)), 1);
    }

    #[test]
    fn a_silent_agent_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = args(l.local_addr().unwrap(), Probe::Readiness);
        a.timeout = Duration::from_millis(200);
        assert!(matches!(check(&a), Err(HealthError::Io { .. })));
        drop(l);
    }
}
