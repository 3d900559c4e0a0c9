//! `make oci` (scripts/oci.py): the OCI image layouts of the filter are read back here,
//! independently of the writer: every descriptor's digest and size is checked, the wasm in the
//! image is byte-identical to the built module, the output is reproducible, and tampering is
//! detected. When `skopeo` is installed it reads the layouts too (an independent OCI
//! implementation: containers/image).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use svidgate_e2e::{filter_wasm, output_text, repo_root, run_ok};

const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAG: &str = "test";

fn python() -> PathBuf {
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn oci_py(args: &[&str], out: &Path) -> Result<String> {
    let wasm = filter_wasm()?;
    let o = run_ok(
        Command::new(python())
            .arg(repo_root().join("scripts/oci.py"))
            .arg("--wasm")
            .arg(&wasm)
            .args(args)
            .arg(out),
        &format!("scripts/oci.py {args:?}"),
    )?;
    Ok(output_text(&o))
}

fn build(out: &Path) -> Result<String> {
    oci_py(&["--tag", TAG, "--out"], out)
}

/// sha256 of a file, by coreutils `sha256sum` (not the writer's hashlib).
fn sha256_file(p: &Path) -> Result<String> {
    let o = Command::new("sha256sum").arg(p).output()?;
    ensure!(o.status.success(), "sha256sum {}", p.display());
    let text = String::from_utf8(o.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Checks a descriptor against its blob; returns the blob's bytes.
fn blob(layout: &Path, desc: &Value) -> Result<Vec<u8>> {
    let digest = desc["digest"]
        .as_str()
        .context("descriptor without digest")?;
    let hex = digest
        .strip_prefix("sha256:")
        .context("digest is not sha256")?;
    ensure!(hex.len() == 64, "digest {digest}");
    let path = layout.join("blobs/sha256").join(hex);
    let data = std::fs::read(&path).with_context(|| format!("blob {digest} missing"))?;
    ensure!(
        sha256_file(&path)? == hex,
        "blob {digest}: content does not hash to its name"
    );
    let size = desc["size"].as_u64().context("descriptor without size")?;
    ensure!(
        data.len() as u64 == size,
        "blob {digest}: {} bytes, descriptor says {size}",
        data.len()
    );
    Ok(data)
}

/// Reads a layout: returns (manifest digest hex, manifest, layer blobs in order).
fn read_layout(layout: &Path) -> Result<(String, Value, Vec<Vec<u8>>)> {
    let oci_layout: Value = serde_json::from_slice(&std::fs::read(layout.join("oci-layout"))?)?;
    ensure!(
        oci_layout["imageLayoutVersion"] == "1.0.0",
        "oci-layout: {oci_layout}"
    );
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let manifests = index["manifests"]
        .as_array()
        .context("index.json without manifests")?;
    ensure!(
        manifests.len() == 1,
        "index.json: {} manifests",
        manifests.len()
    );
    let mdesc = &manifests[0];
    ensure!(
        mdesc["mediaType"] == "application/vnd.oci.image.manifest.v1+json",
        "manifest media type"
    );
    ensure!(
        mdesc["annotations"]["org.opencontainers.image.ref.name"] == TAG,
        "ref name: {mdesc}"
    );
    let manifest: Value = serde_json::from_slice(&blob(layout, mdesc)?)?;
    ensure!(manifest["schemaVersion"] == 2, "schemaVersion");
    blob(layout, &manifest["config"])?;
    let mut layers = Vec::new();
    for d in manifest["layers"]
        .as_array()
        .context("manifest without layers")?
    {
        layers.push(blob(layout, d)?);
    }
    let digest = mdesc["digest"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("sha256:")
        .to_owned();
    Ok((digest, manifest, layers))
}

/// Extracts plugin.wasm from the compat layer (tar+gzip) with the system `tar`.
fn untar_plugin(layer: &[u8], dir: &Path) -> Result<Vec<u8>> {
    let gz = dir.join("layer.tar.gz");
    std::fs::write(&gz, layer)?;
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&gz)
        .arg("-C")
        .arg(dir)
        .arg("plugin.wasm")
        .status()?;
    ensure!(st.success(), "tar -xzf of the compat layer failed");
    Ok(std::fs::read(dir.join("plugin.wasm"))?)
}

fn printed_digest(out: &str, after: &str) -> Option<String> {
    let start = out.find(after)?;
    let rest = &out[start..];
    let line = rest
        .lines()
        .find(|l| l.trim_start().starts_with("manifest:"))?;
    Some(line.split("sha256:").nth(1)?.trim().to_owned())
}

#[test]
fn oci_layouts_read_back_with_identical_wasm() -> Result<()> {
    let wasm = std::fs::read(filter_wasm()?)?;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("oci");
    let printed = build(&out)?;
    println!("{printed}");

    // The Wasm OCI artifact: config + two layers, the wasm raw in the content layer.
    let (a_digest, manifest, layers) = read_layout(&out.join("svidgate-filter"))?;
    ensure!(
        manifest["config"]["mediaType"] == WASM_CONFIG,
        "artifact config: {}",
        manifest["config"]
    );
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["mediaType"].as_str())
        .collect();
    ensure!(
        types == [WASM_CONFIG, WASM_LAYER],
        "artifact layers (Istio wants exactly 2): {types:?}"
    );
    ensure!(
        manifest["layers"][1]["annotations"]["org.opencontainers.image.title"] == "plugin.wasm",
        "title"
    );
    ensure!(
        layers[1] == wasm,
        "the wasm in the artifact differs from the built module"
    );
    let rc: Value = serde_json::from_slice(&layers[0])?;
    ensure!(rc["type"] == "envoy_proxy", "runtime config: {rc}");

    // The compat variant: one tar+gzip layer holding plugin.wasm.
    let (c_digest, manifest, layers) = read_layout(&out.join("svidgate-filter-compat"))?;
    ensure!(
        manifest["annotations"]["module.wasm.image/variant"] == "compat",
        "compat annotation"
    );
    ensure!(
        layers.len() == 1 && manifest["layers"][0]["mediaType"] == OCI_LAYER_GZIP,
        "compat layer"
    );
    let x = tmp.path().join("x");
    std::fs::create_dir(&x)?;
    ensure!(
        untar_plugin(&layers[0], &x)? == wasm,
        "plugin.wasm in the compat layer differs from the built module"
    );

    // What the script prints is what is in the layouts (and what goes into the WasmPlugin).
    ensure!(
        printed_digest(&printed, "OCI artifact:").as_deref() == Some(a_digest.as_str()),
        "printed artifact digest"
    );
    ensure!(
        printed_digest(&printed, "OCI compat:").as_deref() == Some(c_digest.as_str()),
        "printed compat digest"
    );
    ensure!(
        printed.contains(&format!("sha256: {a_digest}")),
        "WasmPlugin sha256 line"
    );
    let wasm_hex = sha256_file(&filter_wasm()?)?;
    ensure!(
        printed.contains(&format!("wasm sha256:   {wasm_hex}")),
        "printed wasm sha256"
    );

    // Each .tar holds the layout; the script's own read-back agrees.
    for name in ["svidgate-filter", "svidgate-filter-compat"] {
        let unpacked = tmp.path().join(format!("untar-{name}"));
        std::fs::create_dir(&unpacked)?;
        let st = Command::new("tar")
            .arg("-xf")
            .arg(out.join(format!("{name}.tar")))
            .arg("-C")
            .arg(&unpacked)
            .status()?;
        ensure!(st.success(), "untar {name}.tar");
        let (d, _, _) = read_layout(&unpacked)?;
        ensure!(
            d == if name == "svidgate-filter" {
                a_digest.clone()
            } else {
                c_digest.clone()
            },
            "{name}.tar digest"
        );
    }
    let verified = oci_py(&["--verify"], &out)?;
    ensure!(
        verified.matches("wasm identical").count() == 2,
        "verify output:\n{verified}"
    );

    // An independent reader, when installed.
    if Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        for (name, digest) in [
            ("svidgate-filter", &a_digest),
            ("svidgate-filter-compat", &c_digest),
        ] {
            let o = run_ok(
                Command::new("skopeo")
                    .args(["inspect", "--raw"])
                    .arg(format!(
                        "oci-archive:{}:{TAG}",
                        out.join(format!("{name}.tar")).display()
                    )),
                &format!("skopeo inspect {name}"),
            )?;
            let raw = tmp.path().join(format!("{name}.manifest"));
            std::fs::write(&raw, &o.stdout)?;
            ensure!(
                &sha256_file(&raw)? == digest,
                "skopeo reads a different manifest for {name}"
            );
        }
    } else {
        eprintln!("note: skopeo not installed; skipped the containers/image read-back");
    }
    Ok(())
}

#[test]
fn oci_output_is_reproducible() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    build(&a)?;
    build(&b)?;
    for f in ["svidgate-filter.tar", "svidgate-filter-compat.tar"] {
        ensure!(
            std::fs::read(a.join(f))? == std::fs::read(b.join(f))?,
            "{f} differs between two runs"
        );
    }
    Ok(())
}

#[test]
fn oci_verify_detects_tampering() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("oci");
    build(&out)?;
    let wasm_hex = sha256_file(&filter_wasm()?)?;
    let blob = out.join("svidgate-filter/blobs/sha256").join(wasm_hex);
    let mut data = std::fs::read(&blob)?;
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&blob, data)?;
    let Err(e) = oci_py(&["--verify"], &out) else {
        bail!("--verify accepted a layout whose wasm blob was modified");
    };
    ensure!(
        e.to_string().contains("content digest"),
        "unexpected error: {e}"
    );
    ensure!(
        read_layout(&out.join("svidgate-filter")).is_err(),
        "the Rust reader accepted the modified blob"
    );
    Ok(())
}

/// GET on 127.0.0.1:port with an Accept header; returns (status, body bytes).
fn get(port: u16, path: &str, accept: &str) -> Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header end")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status")?;
    ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked reply not handled"
    );
    Ok((status, buf[split + 4..].to_vec()))
}

/// Pushes both layouts with skopeo to a real OCI registry (Debian's docker-registry, CNCF
/// distribution) on loopback, then pulls them back over the registry API the way Istio's fetcher
/// does: the manifest digest the registry serves equals the one `make oci` printed, and the
/// module fetched by Istio's rules is byte-identical to the built one.
#[test]
fn oci_push_to_local_registry_keeps_digests() -> Result<()> {
    let have = |c: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {c}"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("skopeo") || !have("docker-registry") {
        eprintln!("SKIP: skopeo or docker-registry not installed (make setup installs skopeo; docker-registry is optional: apt-get install docker-registry)");
        return Ok(());
    }
    let wasm = std::fs::read(filter_wasm()?)?;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("oci");
    build(&out)?;
    let port = svidgate_e2e::free_port()?;
    let config = tmp.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            tmp.path().join("data").display()
        ),
    )?;
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&config);
    let mut registry = svidgate_e2e::Proc::spawn("registry", cmd, tmp.path().join("registry.log"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !matches!(get(port, "/v2/", "*/*"), Ok((200, _))) {
        ensure!(
            !registry.exited(),
            "registry exited:\n{}",
            registry.output()
        );
        ensure!(
            std::time::Instant::now() < deadline,
            "registry not up:\n{}",
            registry.output()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for name in ["svidgate-filter", "svidgate-filter-compat"] {
        let (digest, _, _) = read_layout(&out.join(name))?;
        run_ok(
            Command::new("skopeo")
                .args([
                    "copy",
                    "-q",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                ])
                .arg(format!(
                    "oci-archive:{}:{TAG}",
                    out.join(format!("{name}.tar")).display()
                ))
                .arg(format!("docker://127.0.0.1:{port}/{name}:{TAG}")),
            &format!("skopeo copy {name}"),
        )?;

        // Istio: resolve the tag, check the manifest digest against WasmPlugin.sha256, fetch the module.
        let (status, manifest_bytes) = get(
            port,
            &format!("/v2/{name}/manifests/{TAG}"),
            "application/vnd.oci.image.manifest.v1+json",
        )?;
        ensure!(status == 200, "GET manifest {name}: {status}");
        let served = tmp.path().join(format!("{name}.served"));
        std::fs::write(&served, &manifest_bytes)?;
        ensure!(
            sha256_file(&served)? == digest,
            "{name}: registry serves a manifest with another digest"
        );
        let manifest: Value = serde_json::from_slice(&manifest_bytes)?;
        let layers = manifest["layers"].as_array().context("layers")?;
        let layer = if name == "svidgate-filter" {
            ensure!(layers.len() == 2, "oci variant must have 2 layers");
            layers
                .iter()
                .find(|l| l["mediaType"] == WASM_LAYER)
                .context("no wasm layer")?
        } else {
            layers.last().context("no layer")?
        };
        let digest = layer["digest"].as_str().context("layer digest")?;
        let (status, blob) = get(port, &format!("/v2/{name}/blobs/{digest}"), "*/*")?;
        ensure!(status == 200, "GET blob {name}: {status}");
        let module = if name == "svidgate-filter" {
            blob
        } else {
            let x = tmp.path().join(format!("x-{name}"));
            std::fs::create_dir(&x)?;
            untar_plugin(&blob, &x)?
        };
        ensure!(
            module == wasm,
            "{name}: module pulled from the registry differs from the built one"
        );
    }
    registry.stop();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The svidgate container image (`make image`: scripts/oci.py --image)

/// Where the image puts the binary (scripts/oci.py `BINARY_PATH`, the injection template's probes).
const IMAGE_BINARY: &str = "usr/local/bin/svidgate";
const IMAGE_SOURCE: &str = "https://example.org/svidgate.git";

/// The static `svidgate` `make image` builds.
fn static_svidgate() -> Result<PathBuf> {
    let p = repo_root().join("target/x86_64-unknown-linux-musl/image/svidgate");
    ensure!(p.exists(), "{} not built (run `make image`)", p.display());
    Ok(p)
}

fn build_image(out: &Path) -> Result<String> {
    let o = run_ok(
        Command::new(python())
            .arg(repo_root().join("scripts/oci.py"))
            .arg("--image")
            .arg(static_svidgate()?)
            .args([
                "--tag",
                TAG,
                "--source",
                IMAGE_SOURCE,
                "--revision",
                "0123abc",
            ])
            .arg("--out")
            .arg(out),
        "scripts/oci.py --image",
    )?;
    Ok(output_text(&o))
}

/// The program headers of a 64-bit little-endian ELF file hold no PT_INTERP (no dynamic loader).
fn elf_without_interpreter(elf: &[u8]) -> Result<bool> {
    ensure!(
        elf.len() > 0x40 && &elf[..4] == b"\x7fELF" && elf[4] == 2,
        "not an ELF64 file"
    );
    let u = |at: usize, n: usize| -> Result<usize> {
        let b = elf.get(at..at + n).context("truncated ELF")?;
        Ok(b.iter()
            .rev()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x)))
    };
    let (phoff, phentsize, phnum) = (u(0x20, 8)?, u(0x36, 2)?, u(0x38, 2)?);
    for i in 0..phnum {
        if u(phoff + i * phentsize, 4)? == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The image's layout read back and its layer extracted into `root` (the system `tar`); returns
/// the image config.
fn unpack_image(layout: &Path, root: &Path) -> Result<Value> {
    let (_, manifest, layers) = read_layout(layout)?;
    let config: Value = serde_json::from_slice(&blob(layout, &manifest["config"])?)?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .context("config without rootfs.diff_ids")?;
    ensure!(
        diff_ids.len() == layers.len(),
        "{} diff_ids for {} layers",
        diff_ids.len(),
        layers.len()
    );
    std::fs::create_dir_all(root)?;
    let scratch = tempfile::tempdir()?;
    for (i, (layer, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        ensure!(
            manifest["layers"][i]["mediaType"] == OCI_LAYER_GZIP,
            "layer {i}: {}",
            manifest["layers"][i]["mediaType"]
        );
        let gz = scratch.path().join(format!("layer{i}.tar.gz"));
        std::fs::write(&gz, layer)?;
        let tar = scratch.path().join(format!("layer{i}.tar"));
        let o = Command::new("gzip").arg("-dc").arg(&gz).output()?;
        ensure!(o.status.success(), "gzip -dc layer {i}");
        std::fs::write(&tar, &o.stdout)?;
        ensure!(
            diff_id.as_str() == Some(&format!("sha256:{}", sha256_file(&tar)?)),
            "layer {i}: diff_id {diff_id} is not the digest of the uncompressed layer"
        );
        let st = Command::new("tar")
            .args(["-x", "--numeric-owner", "-f"])
            .arg(&tar)
            .arg("-C")
            .arg(root)
            .status()?;
        ensure!(st.success(), "tar -x layer {i}");
    }
    Ok(config)
}

/// Every regular file under `root`, relative.
fn files_in(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(root)?.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `chroot [--userspec=U:G] root cmd...` with only the image's environment (we are root in tests
/// and CI; chroot needs CAP_SYS_CHROOT).
fn chroot(root: &Path, user: Option<&str>, args: &[&str]) -> Result<std::process::Output> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let chroot = std::env::split_paths(&path)
        .map(|d| d.join("chroot"))
        .find(|p| p.is_file())
        .context("chroot not found in PATH (coreutils)")?;
    let mut c = Command::new(chroot);
    if let Some(u) = user {
        c.arg(format!("--userspec={u}"));
    }
    c.arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin");
    c.output().context("running chroot")
}

#[test]
fn image_reads_back_and_runs_under_chroot() -> Result<()> {
    let binary = std::fs::read(static_svidgate()?)?;
    ensure!(
        elf_without_interpreter(&binary)?,
        "the image binary needs a dynamic loader"
    );
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let printed = build_image(&a)?;
    println!("{printed}");
    build_image(&b)?;
    ensure!(
        std::fs::read(a.join("svidgate.tar"))? == std::fs::read(b.join("svidgate.tar"))?,
        "svidgate.tar differs between two runs"
    );
    let layout = a.join("svidgate");
    let (digest, manifest, _) = read_layout(&layout)?;
    ensure!(
        printed_digest(&printed, "OCI image:").as_deref() == Some(digest.as_str()),
        "printed manifest digest is not the index's sha256:{digest}:\n{printed}"
    );
    run_ok(
        Command::new(python())
            .arg(repo_root().join("scripts/oci.py"))
            .arg("--image")
            .arg(static_svidgate()?)
            .arg("--verify")
            .arg(&a),
        "oci.py --verify --image",
    )?;

    let root = tmp.path().join("root");
    let config = unpack_image(&layout, &root)?;
    ensure!(
        manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json",
        "config media type"
    );
    ensure!(
        config["os"] == "linux" && config["architecture"] == "amd64",
        "platform: {config}"
    );
    let c = &config["config"];
    ensure!(
        c["Entrypoint"] == serde_json::json!([format!("/{IMAGE_BINARY}")]),
        "entrypoint: {c}"
    );
    let user = c["User"].as_str().context("no User")?;
    let ids: Vec<u32> = user
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("User {user} is not numeric uid:gid"))?;
    ensure!(
        ids.len() == 2 && ids.iter().all(|i| *i != 0),
        "User {user}: numeric, non-root"
    );
    let version = env!("CARGO_PKG_VERSION");
    for (label, want) in [
        ("org.opencontainers.image.source", IMAGE_SOURCE),
        ("org.opencontainers.image.version", TAG),
        ("org.opencontainers.image.licenses", "Apache-2.0"),
        ("org.opencontainers.image.revision", "0123abc"),
    ] {
        ensure!(c["Labels"][label] == want, "label {label}: {c}");
        ensure!(
            manifest["annotations"][label] == want,
            "annotation {label}: {}",
            manifest["annotations"]
        );
    }
    // deploy/image/Containerfile (for Docker/Podman users) builds the same entrypoint, user and
    // licence label.
    let containerfile = std::fs::read_to_string(repo_root().join("deploy/image/Containerfile"))?;
    for line in [
        format!("USER {user}"),
        format!("ENTRYPOINT [\"/{IMAGE_BINARY}\"]"),
        format!("COPY --chmod=0755 svidgate /{IMAGE_BINARY}"),
        "org.opencontainers.image.licenses=\"Apache-2.0\"".to_owned(),
    ] {
        ensure!(
            containerfile.contains(&line),
            "deploy/image/Containerfile lacks {line:?}"
        );
    }
    // The binary alone, byte-identical to the build.
    ensure!(
        files_in(&root)? == [IMAGE_BINARY],
        "files in the image: {:?}",
        files_in(&root)?
    );
    ensure!(
        std::fs::read(root.join(IMAGE_BINARY))? == binary,
        "the binary in the image differs from the built one"
    );
    // It runs with nothing else around it, as the image's own non-root user.
    let o = chroot(
        &root,
        Some(user),
        &[&format!("/{IMAGE_BINARY}"), "--version"],
    )?;
    let out = String::from_utf8_lossy(&o.stdout);
    ensure!(
        o.status.success() && out.trim() == format!("svidgate {version}"),
        "svidgate --version under chroot: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // containers/image reads the same manifest and config.
    if Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let src = format!("oci-archive:{}:{TAG}", a.join("svidgate.tar").display());
        let o = run_ok(
            Command::new("skopeo").args(["inspect", "--raw", &src]),
            "skopeo inspect",
        )?;
        let raw = tmp.path().join("manifest");
        std::fs::write(&raw, &o.stdout)?;
        ensure!(
            sha256_file(&raw)? == digest,
            "skopeo reads another manifest"
        );
        let o = Command::new("skopeo")
            .args(["inspect", "--config", &src])
            .output()?;
        let seen: Value = serde_json::from_slice(&o.stdout)?;
        ensure!(seen["config"]["User"] == user, "skopeo config: {seen}");
    } else {
        eprintln!("note: skopeo not installed; skipped the containers/image read-back");
    }
    Ok(())
}

/// The agent from the image, under chroot, gets its certificate from a CA it reaches by name,
/// resolved the way a pod resolves it: Kubernetes mounts /etc/hosts and /etc/resolv.conf into every
/// container, and the static (musl) binary reads them itself; no NSS, nothing else in the image.
/// Without the hosts entry the same run fails to resolve the name (loopback-only resolver).
#[test]
fn image_agent_reaches_the_ca_by_name_under_chroot() -> Result<()> {
    let bin = static_svidgate()?;
    let tmp = tempfile::tempdir()?;
    build_image(&tmp.path().join("oci"))?;
    let root = tmp.path().join("root");
    unpack_image(&tmp.path().join("oci/svidgate"), &root)?;

    let identity = "spiffe://cluster.local/ns/shop/sa/backend";
    let token = "image-test-token-0123456789";
    let ca_name = "svidgate-ca.istio-system.svc";
    let port = svidgate_e2e::free_port()?;
    let mut ca = svidgate_e2e::start_ca(&bin, tmp.path(), port, &[(token, identity)])?;

    // What Kubernetes puts into the container: /etc/hosts, /etc/resolv.conf, the token and the
    // root (here the CA's name maps to loopback and the only nameserver is on loopback).
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )?;
    let work = root.join("work");
    std::fs::create_dir_all(work.join("out"))?;
    std::fs::write(work.join("token"), token)?;
    std::fs::copy(
        tmp.path().join("ca/root-cert.pem"),
        work.join("root-cert.pem"),
    )?;
    let st = Command::new("chown")
        .args(["-R", "1337:1337"])
        .arg(&work)
        .status()?;
    ensure!(st.success(), "chown");
    let agent = |out: &str| -> Result<std::process::Output> {
        chroot(
            &root,
            Some("1337:1337"),
            &[
                &format!("/{IMAGE_BINARY}"),
                "agent",
                "--once",
                "--ca-addr",
                &format!("{ca_name}:{port}"),
                "--ca-root",
                "/work/root-cert.pem",
                "--spiffe-id",
                identity,
                "--token-file",
                "/work/token",
                "--ca-max-attempts",
                "1",
                "--ca-timeout",
                "5s",
                "--out",
                out,
            ],
        )
    };

    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n")?;
    let unresolved = agent("/work/out/unresolved")?;
    std::fs::write(
        etc.join("hosts"),
        format!("127.0.0.1 localhost\n127.0.0.1 {ca_name}\n"),
    )?;
    let o = agent("/work/out/svid")?;
    ca.stop();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    ensure!(
        !unresolved.status.success()
            && text(&unresolved).contains("dns error")
            && text(&unresolved).contains(ca_name),
        "without a hosts entry the agent should fail to resolve {ca_name}:\n{}",
        text(&unresolved)
    );
    ensure!(
        o.status.success(),
        "agent from the image (CA by name):\n{}\nCA:\n{}",
        text(&o),
        ca.output()
    );
    svidgate_e2e::ensure_uri_san(&work.join("out/svid/cert-chain.pem"), identity)?;
    Ok(())
}
