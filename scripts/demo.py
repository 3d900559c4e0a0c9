#!/usr/bin/env python3
"""`make demo`: the whole of svidgate on loopback, in under a minute.

Starts, in a temporary directory:
  - `svidgate ca serve --generate`       a CA with a fresh root + intermediate
  - three `svidgate agent`s              frontend, backend and a "legacy" intruder identity,
                                         each serving its SVID to Envoy over SDS on a socket
                                         (the frontend's also over the SPIFFE Workload API)
  - a backend Envoy                      mTLS listener (certs from the backend agent) running
                                         the svidgate wasm filter with deploy/examples/demo-backend.yaml,
                                         in front of a tiny echo server
  - a client Envoy                       two plain-HTTP listeners that call the backend over
                                         mTLS, one as `frontend`, one as the `legacy` intruder

then shows an allowed call, a denied call, an application fetching its SVID over the SPIFFE
Workload API (py-spiffe), a dry-run policy being counted and a live certificate rotation, and stops everything it started (also on Ctrl-C).
"""

import http.server
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import yaml

from localrun import (HCM_REQUEST_ATTRIBUTE_OPTIONS, ROOT, SVIDGATE, WASM, Processes, find_envoy,
                      free_port, http_get, port_open, wait_for, wasm_filter)

POLICY = os.path.join(ROOT, "deploy", "examples", "demo-backend.yaml")
TD = "demo.local"
CERT_TTL = "20s"  # short, so a rotation happens while you watch (renewed at half-life)

IDS = {
    "frontend": f"spiffe://{TD}/ns/web/sa/frontend",
    "backend": f"spiffe://{TD}/ns/api/sa/backend",
    "legacy": f"spiffe://{TD}/ns/legacy/sa/batch",
}

BOLD = "\033[1m" if sys.stdout.isatty() else ""
GREEN = "\033[32m" if sys.stdout.isatty() else ""
RED = "\033[31m" if sys.stdout.isatty() else ""
DIM = "\033[2m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""

STEP = [0]


def step(text):
    STEP[0] += 1
    print(f"\n{BOLD}[{STEP[0]}] {text}{RESET}", flush=True)


def say(text=""):
    print(f"    {text}", flush=True)


# ---------------------------------------------------------------- the upstream echo server

class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "path": self.path,
            "x-spiffe-peer-id": self.headers.get("x-spiffe-peer-id"),
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# ---------------------------------------------------------------- Envoy configuration

def sds_cluster(name, socket_path):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket_path}}}}]}],
        },
    }


def sds_ref(secret, cluster):
    return {
        "name": secret,
        "sds_config": {
            "resource_api_version": "V3",
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": cluster}}],
            },
        },
    }


def admin(port):
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def backend_envoy(ports, sock, policy_json):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "backend",
        **HCM_REQUEST_ATTRIBUTE_OPTIONS,  # as the shipped deploy/envoy/http.yaml
        "route_config": {
            "virtual_hosts": [{
                "name": "backend",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}],
            }]
        },
        "http_filters": [
            wasm_filter(policy_json),
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    return {
        "node": {"id": "backend", "cluster": "demo"},
        "admin": admin(ports["backend_admin"]),
        "static_resources": {
            "listeners": [{
                "name": "backend_mtls",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["backend"]}},
                "filter_chains": [{
                    "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "require_client_certificate": True,
                            "common_tls_context": {
                                "tls_certificate_sds_secret_configs": [sds_ref("default", "sds")],
                                "validation_context_sds_secret_config": sds_ref("ROOTCA", "sds"),
                            },
                        },
                    },
                }],
            }],
            "clusters": [
                sds_cluster("sds", sock),
                {
                    "name": "echo",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": "echo", "endpoints": [{"lb_endpoints": [{"endpoint": {
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["echo"]}}}}]}]},
                },
            ],
        },
    }


def client_envoy(ports, socks):
    listeners, clusters = [], []
    for who in ("frontend", "legacy"):
        listeners.append({
            "name": f"as_{who}",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports[f"as_{who}"]}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": f"as_{who}",
                    "route_config": {"virtual_hosts": [{
                        "name": "all", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": f"backend_as_{who}"}}],
                    }]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                },
            }]}],
        })
        clusters.append(sds_cluster(f"sds_{who}", socks[who]))
        clusters.append({
            "name": f"backend_as_{who}",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": f"backend_as_{who}", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["backend"]}}}}]}]},
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": {
                        "tls_certificate_sds_secret_configs": [sds_ref("default", f"sds_{who}")],
                        "combined_validation_context": {
                            "default_validation_context": {
                                "match_typed_subject_alt_names": [
                                    {"san_type": "URI", "matcher": {"exact": IDS["backend"]}}]},
                            "validation_context_sds_secret_config": sds_ref("ROOTCA", f"sds_{who}"),
                        },
                    },
                },
            },
        })
    return {
        "node": {"id": "client", "cluster": "demo"},
        "admin": admin(ports["client_admin"]),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def cert_serial(admin_port):
    """Serial number of the certificate the Envoy presents (from its /certs admin endpoint)."""
    _, body = http_get(f"http://127.0.0.1:{admin_port}/certs")
    data = json.loads(body)
    for c in data.get("certificates", []):
        for chain in c.get("cert_chain", []):
            if chain.get("serial_number"):
                return chain["serial_number"]
    return None


def counter(admin_port, name):
    _, body = http_get(f"http://127.0.0.1:{admin_port}/stats?filter={name}")
    for line in body.splitlines():
        k, _, v = line.partition(": ")
        if k.strip() == name:
            return int(v)
    return 0


# ---------------------------------------------------------------- the demo

def main():
    for path, what in ((SVIDGATE, "svidgate binary"), (WASM, "wasm filter")):
        if not os.path.exists(path):
            sys.exit(f"{what} not found at {path}: run `make demo` (it builds them)")
    envoy = find_envoy()
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="svidgate-demo-")
    procs = Processes(work)
    ok = False

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    echo = None
    try:
        ports = {k: free_port() for k in (
            "ca", "backend", "backend_admin", "client_admin", "as_frontend", "as_legacy", "echo",
            "agent_frontend", "agent_backend", "agent_legacy")}

        step(f"Starting `svidgate ca` (fresh root + intermediate for trust domain {TD})")
        ca_dir = os.path.join(work, "cacerts")
        # Each agent authenticates to the CA with its own bearer token (in Kubernetes: the
        # projected service-account token); the CA maps tokens to the one identity each may get.
        tokens, token_files = os.path.join(work, "ca-tokens"), {}
        with open(tokens, "w") as f:
            for who, spiffe_id in IDS.items():
                token = secrets.token_urlsafe(24)
                f.write(f"{token} {spiffe_id}\n")
                token_files[who] = os.path.join(work, f"{who}.token")
                with open(token_files[who], "w") as t:
                    t.write(token)
        procs.start("ca", [SVIDGATE, "ca", "serve", "--listen", f"127.0.0.1:{ports['ca']}",
                           "--ca-dir", ca_dir, "--generate", "--trust-domain", TD,
                           "--tokens", tokens, "--max-ttl", "1h"])
        root = os.path.join(ca_dir, "root-cert.pem")
        wait_for("the CA", lambda: os.path.exists(root) and port_open(ports["ca"]), procs)
        say(f"CA listening on 127.0.0.1:{ports['ca']}, cacerts in {ca_dir}")
        say(f"callers authenticate with bearer tokens: {tokens} maps each token to one SPIFFE ID")

        step(f"Starting three agents (cert TTL {CERT_TTL}, renewed at half-life), each serving SDS on a Unix socket")
        socks = {}
        # The frontend's agent also serves the SPIFFE Workload API, for applications without Envoy.
        wapi_sock = os.path.join(work, "frontend-workload-api.sock")
        for who in ("frontend", "backend", "legacy"):
            socks[who] = os.path.join(work, f"{who}.sock")
            extra = ["--workload-api-socket", wapi_sock] if who == "frontend" else []
            procs.start(f"agent-{who}", [
                SVIDGATE, "agent",
                "--ca-addr", f"https://127.0.0.1:{ports['ca']}", "--ca-root", root,
                "--spiffe-id", IDS[who], "--token-file", token_files[who], "--cert-ttl", CERT_TTL,
                "--sds-socket", socks[who], "--admin-addr", f"127.0.0.1:{ports['agent_' + who]}",
            ] + extra)
        for who in ("frontend", "backend", "legacy"):
            wait_for(f"agent {who} ready", lambda w=who: http_get(
                f"http://127.0.0.1:{ports['agent_' + w]}/healthz/ready")[0] == 200, procs)
            say(f"{who:9} {IDS[who]:42} socket {socks[who]}")

        step("Starting the backend Envoy (mTLS via SDS, svidgate wasm filter) and the client Envoy")
        echo = http.server.ThreadingHTTPServer(("127.0.0.1", ports["echo"]), Echo)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        with open(POLICY) as f:
            policy = yaml.safe_load(f)
        # An HTTP filter, said explicitly (as in every shipped config) rather than detected.
        policy.setdefault("filter", {}).setdefault("mode", "http")
        policy_json = json.dumps(policy)
        for name, cfg in (("envoy-backend", backend_envoy(ports, socks["backend"], policy_json)),
                          ("envoy-client", client_envoy(ports, socks))):
            path = os.path.join(work, f"{name}.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(cfg, f, sort_keys=False)
            base_id = str(40000 + os.getpid() % 1000 * 4 + (0 if name == "envoy-backend" else 1))
            procs.start(name, [envoy, "-c", path, "--concurrency", "1", "--base-id", base_id,
                               "--disable-hot-restart", "--log-level", "info"])
        for port in (ports["backend_admin"], ports["client_admin"]):
            wait_for("Envoy ready", lambda p=port: http_get(f"http://127.0.0.1:{p}/ready")[0] == 200,
                     procs, timeout=30)
        say(f"policy: {os.path.relpath(POLICY, ROOT)}")

        step("Allowed: frontend -> GET /api/hello")
        status, body = http_get(f"http://127.0.0.1:{ports['as_frontend']}/api/hello")
        seen = json.loads(body).get("x-spiffe-peer-id") if status == 200 else None
        say(f"{GREEN if status == 200 else RED}HTTP {status}{RESET}; the backend saw x-spiffe-peer-id: {seen}")
        if status != 200:
            raise RuntimeError(f"expected 200, got {status}: {body}")

        step("Spoofing does not work: frontend sends its own x-spiffe-peer-id header")
        status, body = http_get(f"http://127.0.0.1:{ports['as_frontend']}/api/hello",
                                headers={"x-spiffe-peer-id": "spiffe://demo.local/ns/kube-system/sa/admin"})
        say(f"HTTP {status}; the backend saw: {json.loads(body).get('x-spiffe-peer-id') if status == 200 else '-'}")

        step("Denied: the legacy workload -> GET /api/hello")
        status, body = http_get(f"http://127.0.0.1:{ports['as_legacy']}/api/hello")
        say(f"{RED if status == 403 else ''}HTTP {status}{RESET} {body.strip()!r}")
        if status != 403:
            raise RuntimeError(f"expected 403, got {status}: {body}")
        time.sleep(0.2)
        denial = [line for line in procs.log_of("envoy-backend").splitlines()
                  if "svidgate" in line and "denied" in line.lower() and "dry-run" not in line]
        if denial:
            line = denial[-1].strip()
            say(f"backend Envoy log: {DIM}{line[line.find('wasm log'):] if 'wasm log' in line else line}{RESET}")
        say("the same decision, explained by the policy tool:")
        out = subprocess.run([SVIDGATE, "policy", "explain", "--policy", POLICY, "--peer", IDS["legacy"],
                              "--method", "GET", "--path", "/api/hello"], capture_output=True, text=True)
        for line in (out.stdout or out.stderr).strip().splitlines():
            say(f"  {DIM}{line}{RESET}")

        step("The CA signs only the caller's own identity: frontend's token asking for backend's ID")
        out = subprocess.run([SVIDGATE, "agent", "--once", "--out", os.path.join(work, "stolen"),
                              "--ca-addr", f"https://127.0.0.1:{ports['ca']}", "--ca-root", root,
                              "--spiffe-id", IDS["backend"], "--token-file", token_files["frontend"]],
                             capture_output=True, text=True, timeout=30)
        refusal = [line for line in (out.stderr + out.stdout).splitlines() if line.strip()]
        say(f"svidgate agent --once exited {out.returncode}: {DIM}{refusal[-1] if refusal else ''}{RESET}")
        if out.returncode == 0:
            raise RuntimeError("the CA signed an identity the caller does not own")

        step("Without Envoy: an application fetches its SVID over the SPIFFE Workload API (py-spiffe)")
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "wapi_fetch.py")],
                             env={**os.environ, "SPIFFE_ENDPOINT_SOCKET": f"unix://{wapi_sock}"},
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"Workload API client failed: {out.stderr.strip()}")
        say(f"SPIFFE_ENDPOINT_SOCKET=unix://{wapi_sock} scripts/wapi_fetch.py")
        for line in out.stdout.strip().splitlines():
            say(f"  {line}")

        step("Dry run: frontend -> GET /api/admin/users (a dry-run DENY policy matches, nothing is blocked)")
        before = counter(ports["backend_admin"], "wasmcustom.svidgate_dry_run_denied")
        status, _ = http_get(f"http://127.0.0.1:{ports['as_frontend']}/api/admin/users")
        # The filter adds its counters to Envoy's every 200 ms.
        after = wait_for("the dry-run counter", lambda: (lambda n: n if n != before else None)(
            counter(ports["backend_admin"], "wasmcustom.svidgate_dry_run_denied")),
            procs, timeout=5, interval=0.1)
        say(f"HTTP {status}; wasmcustom.svidgate_dry_run_denied {before} -> {after}")

        step("Live rotation: waiting for the backend agent to renew its certificate (Envoy keeps serving)")
        old = cert_serial(ports["backend_admin"])
        say(f"serial now: {old}")
        t_rot = time.time()
        new = wait_for("a rotation", lambda: (lambda s: s if s and s != old else None)(
            cert_serial(ports["backend_admin"])), procs, timeout=40, interval=0.5)
        say(f"serial now: {new}  (rotated after {time.time() - t_rot:.1f}s, no restart)")
        status, _ = http_get(f"http://127.0.0.1:{ports['as_frontend']}/api/hello")
        say(f"frontend -> GET /api/hello after rotation: HTTP {status}")

        step("Where to look")
        say(f"backend Envoy admin   http://127.0.0.1:{ports['backend_admin']}/stats?filter=wasmcustom  and /certs")
        say(f"client Envoy admin    http://127.0.0.1:{ports['client_admin']}/certs")
        for who in ("frontend", "backend", "legacy"):
            say(f"agent {who:9}       http://127.0.0.1:{ports['agent_' + who]}/metrics  /healthz/ready")
        _, stats = http_get(f"http://127.0.0.1:{ports['backend_admin']}/stats?filter=wasmcustom")
        for line in stats.strip().splitlines():
            say(f"  {DIM}{line}{RESET}")
        _, metrics = http_get(f"http://127.0.0.1:{ports['agent_backend']}/metrics")
        for line in metrics.splitlines():
            if re.match(r"^svidgate_(cert_not_after|cert_expiry|rotations)", line):
                say(f"  {DIM}{line}{RESET}")
        say(f"logs of every process: {work} (removed at exit unless DEMO_KEEP=1 or the demo fails)")
        if os.environ.get("DEMO_HOLD"):
            say("DEMO_HOLD set: everything keeps running; press Ctrl-C to stop")
            while True:
                time.sleep(1)
                procs.check_alive()
        print(f"\n{BOLD}Demo finished in {time.time() - t0:.0f}s.{RESET} Stopping everything it started.")
        ok = True
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything")
        ok = True  # nothing failed: no logs to keep
        return 130
    except Exception as e:  # noqa: BLE001 - show the problem, then clean up
        print(f"\n{RED}demo failed: {e}{RESET}\nlogs are in {work}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        if echo is not None:
            echo.shutdown()
        if ok and not os.environ.get("DEMO_KEEP"):
            shutil.rmtree(work, ignore_errors=True)  # a failed run keeps its logs


if __name__ == "__main__":
    sys.exit(main())
