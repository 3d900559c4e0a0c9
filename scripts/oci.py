#!/usr/bin/env python3
"""Packages svidgate as OCI images without Docker: the filter for Istio's WasmPlugin, and the
`svidgate` binary as a container image.

    scripts/oci.py [--wasm FILE] [--out DIR] [--tag TAG]      # the filter (what `make oci` runs)
    scripts/oci.py --verify DIR [--wasm FILE]                  # read back and check
    scripts/oci.py --image BINARY [--out DIR] [--tag TAG]      # the svidgate image (`make image`)
    scripts/oci.py --verify DIR --image BINARY                 # read back and check

Writes two OCI image layouts (https://github.com/opencontainers/image-spec/blob/main/image-layout.md),
each as a directory and as a .tar of that directory:

  DIR/svidgate-filter/         the Wasm OCI artifact ("oci" variant of the Wasm image spec):
                               config   application/vnd.module.wasm.config.v1+json (runtime-config.json)
                               layer 0  application/vnd.module.wasm.config.v1+json (runtime-config.json)
                               layer 1  application/vnd.module.wasm.content.layer.v1+wasm (plugin.wasm, raw)
  DIR/svidgate-filter-compat/  the "compat" variant for tools that only know container images:
                               config   application/vnd.oci.image.config.v1+json
                               layer    application/vnd.oci.image.layer.v1.tar+gzip (a tar.gz holding plugin.wasm)
                               manifest annotation module.wasm.image/variant=compat

Why two layers in the artifact: Istio's fetcher (pkg/wasm/imagefetcher.go, extractOCIArtifactImage)
accepts the oci variant only with exactly two layers, one of them the wasm content layer, and reads
that layer raw. A single-layer artifact (as wasm-to-oci or a bare `oras push` writes) is rejected
("number of layers must be 2 but got 1"). The compat variant must have the wasm as `plugin.wasm` in
the last tar+gzip layer.

  DIR/svidgate/                the svidgate container image (`--image`, a static binary):
                               config   application/vnd.oci.image.config.v1+json: entrypoint
                                        /usr/local/bin/svidgate, user 65532:65532, OCI labels
                               layer    application/vnd.oci.image.layer.v1.tar+gzip holding only
                                        usr/local/bin/svidgate (and its directories)

Output is deterministic (fixed tar/gzip metadata, sorted JSON, no creation time), so the digests
depend only on the inputs (module or binary) and the tag. For the WasmPlugin: `url: oci://REGISTRY/REPO:TAG` with `sha256:` = the
manifest digest (hex, no `sha256:` prefix) of the variant you push, or pin it in the URL
(`oci://REGISTRY/REPO@sha256:<digest>`). `wasm sha256` is the module's own digest (for `http(s)://`
or `file://` URLs). Python standard library only.
"""
import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WASM = ROOT / "target/wasm32-wasip1/release/svidgate_filter.wasm"
DEFAULT_OUT = ROOT / "target/oci"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
MT_WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = 0  # mtime of every tar entry and of the gzip header


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, annotations=None):
    d = {"mediaType": media_type, "digest": f"sha256:{sha256(data)}", "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def tar_bytes(files, dirs=(), modes=None):
    """A deterministic POSIX tar of {name: bytes} (after the directories `dirs`): sorted names,
    mtime 0, uid/gid 0, mode 0644 unless `modes` names another (0755 for directories)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mtime = EPOCH
            info.mode = 0o755
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info)
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = EPOCH
            info.mode = (modes or {}).get(name, 0o644)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=EPOCH, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def tar_dir(src, dest):
    """A deterministic tar of directory `src` (its contents at the archive root)."""
    files = {p.relative_to(src).as_posix(): p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()}
    dirs = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_dir()]
    dest.write_bytes(tar_bytes(files, dirs))


def runtime_config():
    return canonical_json({
        "type": "envoy_proxy",
        "abiVersions": ["v0.2.1"],  # proxy-wasm ABI the module exports (proxy_abi_version_0_2_1)
        "config": {},
    })


def image_manifest(config, layer, annotations):
    """The manifest of a container image with one tar+gzip layer."""
    return {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": descriptor(MT_OCI_CONFIG, config),
        "layers": [descriptor(MT_OCI_LAYER_GZIP, layer)],
        "annotations": annotations,
    }


def write_layout(dest, manifest_blobs, manifest, tag):
    """Writes an OCI image layout: oci-layout, index.json, blobs/sha256/*."""
    if dest.exists():
        shutil.rmtree(dest)
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    manifest_bytes = canonical_json(manifest)
    for data in list(manifest_blobs) + [manifest_bytes]:
        (blobs / sha256(data)).write_bytes(data)
    (dest / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [descriptor(MT_MANIFEST, manifest_bytes, {REF_NAME: tag})],
    }
    (dest / "index.json").write_bytes(canonical_json(index))
    tar_dir(dest, dest.with_suffix(".tar"))
    return sha256(manifest_bytes)


def build(wasm, out, tag):
    if wasm[:4] != b"\0asm":
        raise SystemExit("not a wasm module (missing \\0asm magic)")
    rc = runtime_config()
    artifact = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": descriptor(MT_WASM_CONFIG, rc),
        "layers": [
            descriptor(MT_WASM_CONFIG, rc, {TITLE: "runtime-config.json"}),
            descriptor(MT_WASM_LAYER, wasm, {TITLE: "plugin.wasm"}),
        ],
    }
    a_digest = write_layout(out / "svidgate-filter", [rc, wasm], artifact, tag)

    layer_tar = tar_bytes({"plugin.wasm": wasm, "runtime-config.json": rc})
    layer = gzip_bytes(layer_tar)
    image_config = canonical_json({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(layer_tar)}"]},
    })
    compat = image_manifest(image_config, layer, {"module.wasm.image/variant": "compat"})
    c_digest = write_layout(out / "svidgate-filter-compat", [image_config, layer], compat, tag)
    return a_digest, c_digest


# ---------------------------------------------------------------------------------------------
# The svidgate container image

BINARY_PATH = "usr/local/bin/svidgate"  # in the image; the injection template's exec probes call it
IMAGE_USER = "65532:65532"  # numeric, non-root; pods set their own (the template: istio-proxy's)
LICENSE = "Apache-2.0"  # the workspace's `license`


def elf_is_static(binary):
    """True for an x86-64 ELF executable without a program interpreter (PT_INTERP): it runs in an
    image that holds nothing else."""
    if binary[:4] != b"\x7fELF" or binary[4] != 2 or binary[5] != 1:
        return False
    phoff = int.from_bytes(binary[0x20:0x28], "little")
    phentsize = int.from_bytes(binary[0x36:0x38], "little")
    phnum = int.from_bytes(binary[0x38:0x3A], "little")
    for i in range(phnum):
        off = phoff + i * phentsize
        if int.from_bytes(binary[off:off + 4], "little") == 3:  # PT_INTERP
            return False
    return True


def image_labels(tag, source, revision):
    """OCI annotations (image-spec annotations.md), also set as the config's labels. `source` and
    `revision` only when known (`make image` passes the git remote and commit)."""
    labels = {
        "org.opencontainers.image.title": "svidgate",
        "org.opencontainers.image.description":
            "svidgate: SPIFFE identities for Istio/Envoy workloads (agent, CA, policy tools)",
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.licenses": LICENSE,
    }
    if source:
        labels["org.opencontainers.image.source"] = source
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    return labels


def build_image(binary, out, tag, source="", revision=""):
    if not elf_is_static(binary):
        raise SystemExit("not a static x86-64 ELF executable (it has a program interpreter); "
                         "build it for x86_64-unknown-linux-musl (`make image`)")
    layer_tar = tar_bytes({BINARY_PATH: binary}, dirs=["usr", "usr/local", "usr/local/bin"],
                          modes={BINARY_PATH: 0o755})
    layer = gzip_bytes(layer_tar)
    labels = image_labels(tag, source, revision)
    config = canonical_json({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": IMAGE_USER,
            "Entrypoint": ["/" + BINARY_PATH],
            "Env": ["PATH=/usr/local/bin"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(layer_tar)}"]},
    })
    manifest = image_manifest(config, layer, labels)
    return write_layout(out / "svidgate", [config, layer], manifest, tag)


# ---------------------------------------------------------------------------------------------
# Reading back


class Invalid(Exception):
    pass


def read_blob(layout, desc):
    algo, _, hexd = desc["digest"].partition(":")
    if algo != "sha256" or len(hexd) != 64:
        raise Invalid(f"unsupported digest {desc['digest']}")
    path = layout / "blobs" / "sha256" / hexd
    if not path.is_file():
        raise Invalid(f"blob {desc['digest']} missing")
    data = path.read_bytes()
    if sha256(data) != hexd:
        raise Invalid(f"blob {desc['digest']}: content digest is sha256:{sha256(data)}")
    if len(data) != desc["size"]:
        raise Invalid(f"blob {desc['digest']}: size {len(data)} != descriptor size {desc['size']}")
    return data


def read_layout(layout):
    """Checks a layout and returns (manifest digest hex, manifest, {digest: blob})."""
    if json.loads((layout / "oci-layout").read_bytes()) != {"imageLayoutVersion": "1.0.0"}:
        raise Invalid("oci-layout: imageLayoutVersion is not 1.0.0")
    index = json.loads((layout / "index.json").read_bytes())
    if index.get("schemaVersion") != 2 or len(index.get("manifests", [])) != 1:
        raise Invalid("index.json: expected schemaVersion 2 and one manifest")
    mdesc = index["manifests"][0]
    if mdesc["mediaType"] != MT_MANIFEST:
        raise Invalid(f"index.json: manifest media type {mdesc['mediaType']}")
    manifest = json.loads(read_blob(layout, mdesc))
    if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != MT_MANIFEST:
        raise Invalid("manifest: schemaVersion/mediaType")
    blobs = {}
    for d in [manifest["config"]] + manifest["layers"]:
        blobs[d["digest"]] = read_blob(layout, d)
    referenced = {d["digest"].split(":")[1] for d in [mdesc, manifest["config"]] + manifest["layers"]}
    present = {p.name for p in (layout / "blobs" / "sha256").iterdir()}
    if present != referenced:
        raise Invalid(f"blobs not referenced or missing: {sorted(present ^ referenced)}")
    return mdesc["digest"].split(":")[1], manifest, blobs


def extract_wasm(manifest, blobs):
    """Gets the module the way Istio's fetcher does (imagefetcher.go)."""
    layers = manifest["layers"]
    last = layers[-1]
    if last["mediaType"] == MT_OCI_LAYER_GZIP:  # compat variant: plugin.wasm in the last layer
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blobs[last["digest"]]))) as tar:
            for m in tar.getmembers():
                if Path(m.name).name == "plugin.wasm":
                    f = tar.extractfile(m)
                    if f is None:
                        raise Invalid("plugin.wasm is not a regular file")
                    return f.read()
        raise Invalid("compat layer has no plugin.wasm")
    if len(layers) != 2:  # oci variant: exactly two layers, one of them the raw wasm
        raise Invalid(f"oci variant: number of layers must be 2 but got {len(layers)}")
    wasm_layers = [d for d in layers if d["mediaType"] == MT_WASM_LAYER]
    if len(wasm_layers) != 1:
        raise Invalid(f"oci variant: no single layer of type {MT_WASM_LAYER}")
    return blobs[wasm_layers[0]["digest"]]


def verify_tar(layout):
    """The .tar holds exactly the layout directory's files, byte for byte."""
    tar_path = layout.with_suffix(".tar")
    with tarfile.open(tar_path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        if any(m.mtime != EPOCH or m.uid != 0 or m.gid != 0 for m in tar.getmembers()):
            raise Invalid(f"{tar_path.name}: non-deterministic tar metadata")
    files = {p.relative_to(layout).as_posix(): p.read_bytes() for p in layout.rglob("*") if p.is_file()}
    if members != files:
        raise Invalid(f"{tar_path.name}: differs from {layout.name}/")


def verify(out, wasm):
    results = {}
    for name, variant in (("svidgate-filter", "oci"), ("svidgate-filter-compat", "compat")):
        layout = out / name
        try:
            digest, manifest, blobs = read_layout(layout)
            got = extract_wasm(manifest, blobs)
            if got != wasm:
                raise Invalid("the wasm in the image differs from the built module")
            if variant == "oci":
                if manifest["config"]["mediaType"] != MT_WASM_CONFIG:
                    raise Invalid(f"config media type {manifest['config']['mediaType']}")
            elif manifest.get("annotations", {}).get("module.wasm.image/variant") != "compat":
                raise Invalid("compat manifest lacks module.wasm.image/variant=compat")
            verify_tar(layout)
        except (Invalid, KeyError, OSError, ValueError, tarfile.TarError) as e:
            raise SystemExit(f"{layout}: invalid: {e}")
        results[name] = digest
    return results


def verify_image(out, binary):
    layout = out / "svidgate"
    try:
        digest, manifest, blobs = read_layout(layout)
        config = json.loads(blobs[manifest["config"]["digest"]])
        (ldesc,) = manifest["layers"]
        if ldesc["mediaType"] != MT_OCI_LAYER_GZIP:
            raise Invalid(f"layer media type {ldesc['mediaType']}")
        layer_tar = gzip.decompress(blobs[ldesc["digest"]])
        if config["rootfs"]["diff_ids"] != [f"sha256:{sha256(layer_tar)}"]:
            raise Invalid("config rootfs.diff_ids do not match the layer")
        with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tar:
            files = {m.name: m for m in tar.getmembers() if not m.isdir()}
            if set(files) != {BINARY_PATH}:
                raise Invalid(f"layer files {sorted(files)}, expected only {BINARY_PATH}")
            if tar.extractfile(files[BINARY_PATH]).read() != binary:
                raise Invalid("the binary in the image differs from the built one")
        c = config["config"]
        if c.get("Entrypoint") != ["/" + BINARY_PATH] or c.get("User") != IMAGE_USER:
            raise Invalid(f"entrypoint/user: {c}")
        verify_tar(layout)
    except (Invalid, KeyError, OSError, ValueError, tarfile.TarError) as e:
        raise SystemExit(f"{layout}: invalid: {e}")
    return digest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasm", type=Path, default=DEFAULT_WASM)
    ap.add_argument("--image", type=Path, metavar="BINARY",
                    help="write (or with --verify, check) the svidgate image of this static binary")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--source", default="", help="image label: the source repository URL")
    ap.add_argument("--revision", default="", help="image label: the source revision (commit)")
    ap.add_argument("--verify", type=Path, metavar="DIR", help="read back the layouts in DIR")
    args = ap.parse_args()
    rel = lambda p: p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
    if args.image:
        try:
            binary = args.image.read_bytes()
        except OSError as e:
            raise SystemExit(f"{args.image}: {e.strerror} (run `make image`)")
        if args.verify:
            digest = verify_image(args.verify, binary)
            print(f"ok svidgate: manifest sha256:{digest}, every blob's digest and size checked, binary identical")
            return 0
        digest = build_image(binary, args.out, args.tag, args.source, args.revision)
        layout = args.out / "svidgate"
        _, manifest, _ = read_layout(layout)
        print(f"svidgate binary: {rel(args.image)} ({len(binary)} bytes, static)")
        print(f"OCI image:       {rel(layout)}/ and .tar   tag {args.tag}")
        print(f"  manifest:      sha256:{digest}")
        print(f"  config:        {manifest['config']['digest']}")
        print(f"  layer:         {manifest['layers'][0]['digest']} ({manifest['layers'][0]['size']} bytes)")
        print(f"Push (docs/deploy.md): skopeo copy --preserve-digests oci-archive:{rel(layout)}.tar:{args.tag} "
              f"docker://REGISTRY/svidgate:{args.tag}")
        return 0
    try:
        wasm = args.wasm.read_bytes()
    except OSError as e:
        raise SystemExit(f"{args.wasm}: {e.strerror} (run `make wasm`)")
    if args.verify:
        for name, digest in verify(args.verify, wasm).items():
            print(f"ok {name}: manifest sha256:{digest}, every blob's digest and size checked, wasm identical")
        return 0
    a_digest, c_digest = build(wasm, args.out, args.tag)
    print(f"wasm module:   {rel(args.wasm)} ({len(wasm)} bytes)")
    print(f"wasm sha256:   {sha256(wasm)}   (WasmPlugin sha256 for http(s)/file URLs)")
    print(f"OCI artifact:  {rel(args.out / 'svidgate-filter')}/ and .tar   tag {args.tag}")
    print(f"  manifest:    sha256:{a_digest}")
    print(f"OCI compat:    {rel(args.out / 'svidgate-filter-compat')}/ and .tar   tag {args.tag}")
    print(f"  manifest:    sha256:{c_digest}")
    print("WasmPlugin (after pushing the artifact, see docs/deploy.md):")
    print(f"  url: oci://REGISTRY/svidgate-filter:{args.tag}")
    print(f"  sha256: {a_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
