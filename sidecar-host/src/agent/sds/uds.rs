//! The SDS Unix socket: created with its parent directory and mode, a stale socket replaced
//! only when it is really a socket and nothing answers on it.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

/// Istio's external-SDS socket path (Istio then does not serve workload certificates itself).
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/secrets/workload-spiffe-uds/socket";

/// Why the SDS socket cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum UdsError {
    #[error("creating the SDS socket directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SDS socket path {path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("SDS socket {path} is in use by another running server")]
    InUse { path: PathBuf },
    #[error("removing the stale SDS socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("binding the SDS socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setting mode {mode:o} on the SDS socket {path}: {source}")]
    Chmod {
        path: PathBuf,
        mode: u32,
        source: std::io::Error,
    },
}

/// Binds the SDS socket at `path` with permissions `mode` (e.g. `0o660`).
pub async fn bind_socket(path: &Path, mode: u32) -> Result<UnixListener, UdsError> {
    let p = || path.to_path_buf();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| UdsError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(UdsError::InUse { path: p() });
            }
            tracing::info!(path = %path.display(), "replacing stale SDS socket");
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(UdsError::RemoveStale { path: p(), source }),
            }
        }
        Ok(_) => return Err(UdsError::NotASocket { path: p() }),
        Err(_) => {}
    }
    // Bind in a private (0700) staging directory beside the final path, set the mode, then
    // rename into place: the socket is never reachable with the default permissions, and the
    // replacement of a stale socket is atomic.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let staging = dir.join(format!(".svidgate-sds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|source| UdsError::CreateDir {
            path: staging.clone(),
            source,
        })?;
    let staged = staging.join("socket");
    let result = (|| {
        let listener =
            UnixListener::bind(&staged).map_err(|source| UdsError::Bind { path: p(), source })?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode)).map_err(
            |source| UdsError::Chmod {
                path: p(),
                mode,
                source,
            },
        )?;
        std::fs::rename(&staged, path).map_err(|source| UdsError::Bind { path: p(), source })?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Removes the socket file at shutdown (only if it is still a socket).
pub fn remove_socket(path: &Path) {
    if std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
    {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_dir_mode_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/socket");
        let l = bind_socket(&path, 0o660).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // The private staging directory is gone: only the socket is left.
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("socket")]);
        // A live server: refused.
        assert!(matches!(
            bind_socket(&path, 0o660).await,
            Err(UdsError::InUse { .. })
        ));
        drop(l);
        // Stale (nobody listening): replaced.
        let _l = bind_socket(&path, 0o600).await.unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A regular file: never touched.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            bind_socket(&file, 0o660).await,
            Err(UdsError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        remove_socket(&path);
        assert!(!path.exists());
    }
}
