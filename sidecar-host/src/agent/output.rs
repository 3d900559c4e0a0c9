//! File output of a certificate, as Istio's `OUTPUT_CERTS` lays it out: `cert-chain.pem`
//! (leaf + intermediates), `key.pem` (PKCS#8, mode 0600) and `root-cert.pem`.
//!
//! Every file is written to a temporary file in the same directory, fsynced, then renamed
//! over the target (atomic on POSIX), and the directory is fsynced. All three temporaries are
//! written before the first rename, so a failure leaves the previous set untouched.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use svidgate_pki::WorkloadCert;

pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
pub const KEY_FILE: &str = "key.pem";
pub const ROOT_CERT_FILE: &str = "root-cert.pem";

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct OutputError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `cert` into `dir` (created with mode 0755 if missing). Returns the three paths.
pub fn write_cert(dir: &Path, cert: &WorkloadCert) -> Result<[PathBuf; 3], OutputError> {
    fs::create_dir_all(dir).map_err(err(dir))?;
    let key_pem = cert.key_pem();
    let chain_pem = cert.chain_pem();
    let root_pem = cert.root_pem();
    let files: [(&str, &[u8], u32); 3] = [
        (KEY_FILE, key_pem.as_bytes(), 0o600),
        (CERT_CHAIN_FILE, chain_pem.as_bytes(), 0o644),
        (ROOT_CERT_FILE, root_pem.as_bytes(), 0o644),
    ];
    let mut temps = Vec::with_capacity(3);
    for (name, bytes, mode) in files {
        match write_temp(dir, name, bytes, mode) {
            Ok(t) => temps.push((t, dir.join(name))),
            Err(e) => {
                for (t, _) in &temps {
                    let _ = fs::remove_file(t);
                }
                return Err(e);
            }
        }
    }
    for (tmp, target) in &temps {
        fs::rename(tmp, target).map_err(err(target))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir))?;
    Ok([
        dir.join(CERT_CHAIN_FILE),
        dir.join(KEY_FILE),
        dir.join(ROOT_CERT_FILE),
    ])
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<PathBuf, OutputError> {
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err(&tmp))?;
    let res = f.write_all(bytes).and_then(|_| f.sync_all());
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(err(&tmp)(e));
    }
    Ok(tmp)
}
