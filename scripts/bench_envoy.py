#!/usr/bin/env python3
"""`make bench-envoy`: the svidgate filter's per-request cost inside a real Envoy 1.40.

Everything runs on loopback, in a temporary directory, and is stopped at the end (also on
Ctrl-C or an error):

  - `svidgate ca serve --generate` issues two X509-SVIDs through `svidgate agent --once --out`
    (the project's own tools): the server's and the load client's. The CA is stopped afterwards.
  - One server Envoy per variant (`--concurrency 1`, own `--base-id`, free ports), each an mTLS
    listener (client certificate required) whose only route is a `direct_response` 200, so no
    upstream process takes part. The variants differ only in the HTTP filter before the router:
        none                 no authorization filter (baseline: TLS + HTTP + direct response)
        wasm_noop            a no-op proxy-wasm module (scripts/wasm-probe): the Wasm floor
        wasm_noop_<N>        the same module holding svidgate_<N>'s configuration unread
        svidgate_network_1   svidgate as a network filter before the HTTP connection manager
                             (one decision per connection; no identity header, no HTTP rules)
        svidgate_<N>         svidgate, one ALLOW policy with N exact principals
        rbac_<N>             Envoy RBAC, the same N principals as an Istio-style principal list
        rbac_matcher_<N>     Envoy RBAC's unified `matcher`: an exact-match map on the peer's
                             URI SAN (`envoy.matching.inputs.uri_san`), the best native form
    for N in --sizes (default 1, 1k, 10k, 100k; the client's ID in the middle of the list).
    Diagnostics, with --bisect: svidgate_stop0..3 (modules built to return after each step of
    the per-request path), svidgate_noheader (the identity header off: its cost in Envoy) and
    wasm_probe10 (10 `get_property` host calls per request). --compare LABEL=MODULE adds
    svidgate_1@LABEL, the same configuration on another build of the module (A/B in one run).
  - One client Envoy with a plain-HTTP listener per variant that originates mTLS (the client's
    SVID) to that variant's server Envoy over kept-alive connections.
  - `h2load` (HTTP/1.1, a few connections) sends the load to the client Envoy; each run is
    bounded by a request count and by time, whichever comes first.

Measured per run, on the server Envoy only: its own CPU time (utime + stime of the process,
from /proc/<pid>/stat) and the requests it answered (its `downstream_rq_2xx` counter), both read
before and after the run: CPU µs per request and requests/s. Variants are interleaved (the order
rotates every round); the ratios are medians of per-round ratios (paired runs, so a load change
on the shared machine between rounds cancels out). Every request must have been allowed: the
run fails if a server answered anything but 2xx or the filter's allow counter does not match.
Afterwards: RSS with 2 and 4 workers for a few variants, and the policy compile time each
svidgate VM logged.

Writes the table to stdout and everything to target/bench/envoy.json (`--out`).
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from localrun import (HCM_REQUEST_ATTRIBUTE_OPTIONS, ROOT, SVIDGATE, TARGET, WASM, Processes,
                      find_envoy, free_port, http_get, run_main, wait_for, wasm_filter)

TD = "bench.local"
SERVER_ID = f"spiffe://{TD}/ns/api/sa/server"
CLIENT_ID = f"spiffe://{TD}/ns/web/sa/client"
CLK_TCK = os.sysconf("SC_CLK_TCK")

PROBE_DIR = os.path.join(ROOT, "scripts", "wasm-probe")
PROBE_WASM = os.path.join(TARGET, "wasm-probe", "wasm32-wasip1", "release", "wasm_probe.wasm")
BISECT_DIR = os.path.join(TARGET, "wasm-bisect")
BISECT_STEPS = {0: "context + callback only", 1: "+ peer identity", 2: "+ policy evaluation",
                3: "+ counters"}
DEFAULT_SIZES = "1,1000,10000,100000"
# Variants measured again with 2 and 4 workers (RSS only).
WORKER_VARIANTS = ("none", "wasm_noop", "svidgate_1", "svidgate_100k", "rbac_matcher_100k")


_PORTS = set()


def unique_port():
    """A free port not handed out before in this run (free_port's can repeat once closed)."""
    while True:
        p = free_port()
        if p not in _PORTS:
            _PORTS.add(p)
            return p


def size_name(n):
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def log(text=""):
    print(text, file=sys.stderr, flush=True)


# --- certificates: svidgate ca + svidgate agent --once -------------------------------------

def issue_certificates(procs, work):
    ca_dir = os.path.join(work, "cacerts")
    ca = procs.start("ca", [SVIDGATE, "ca", "serve", "--listen", "127.0.0.1:0", "--ca-dir", ca_dir,
                            "--generate", "--trust-domain", TD, "--insecure-trust-csr",
                            "--max-ttl", "2h"], stdout=subprocess.PIPE)
    line = ca.stdout.readline().decode().strip()  # "svidgate ca listening on 127.0.0.1:PORT"
    if "listening on " not in line:
        procs.stop(ca)
        raise RuntimeError(f"svidgate ca did not start: {line!r}\n{procs.log_tail('ca')}")
    addr = line.rsplit(" ", 1)[-1]
    out = {}
    for who, spiffe_id in (("server", SERVER_ID), ("client", CLIENT_ID)):
        d = os.path.join(work, who)
        r = subprocess.run([SVIDGATE, "agent", "--once", "--out", d, "--ca-addr", f"https://{addr}",
                            "--ca-root", os.path.join(ca_dir, "root-cert.pem"),
                            "--spiffe-id", spiffe_id, "--cert-ttl", "2h"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"svidgate agent --once for {who} failed: {r.stderr.strip()}")
        out[who] = {k: os.path.join(d, f) for k, f in
                    (("chain", "cert-chain.pem"), ("key", "key.pem"), ("root", "root-cert.pem"))}
    ca.stdout.close()
    procs.stop(ca)
    return out


# --- Envoy configurations --------------------------------------------------------------------

def istio_form(spiffe_id):
    return spiffe_id[len("spiffe://"):]


def allowlist(n):
    """N exact principals in Istio's form (no `spiffe://`), the client's in the middle."""
    exact = [f"{TD}/ns/team-{i % 997}/sa/workload-{i}" for i in range(n - 1)]
    exact.insert(len(exact) // 2, istio_form(CLIENT_ID))
    return exact


def svidgate_policy(principals):
    return {"trustDomain": TD, "filter": {"mode": "http"},
            "policies": [{"name": "allow-clients", "action": "ALLOW",
                          "rules": [{"from": [{"source": {"principals": principals}}]}]}]}


def rbac_filter(exact):
    principals = [{"authenticated": {"principal_name": {"exact": f"spiffe://{p}"}}}
                  for p in exact]
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW",
                      "policies": {"allow-clients": {"permissions": [{"any": True}],
                                                     "principals": principals}}},
        },
    }


def rbac_action(action):
    return {"action": {"name": "envoy.filters.rbac.action", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.rbac.v3.Action",
        "name": "allow-clients", "action": action}}}


def rbac_matcher_filter(exact):
    """Envoy RBAC with the unified matcher API: the peer's URI SAN looked up in an exact-match
    map (a hash map in Envoy), DENY when absent."""
    allow = rbac_action("ALLOW")
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "matcher": {
                "matcher_tree": {
                    "input": {"name": "envoy.matching.inputs.uri_san", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs."
                                 "ssl.v3.UriSanInput"}},
                    "exact_match_map": {"map": {f"spiffe://{p}": allow for p in exact}},
                },
                "on_no_match": rbac_action("DENY"),
            },
        },
    }


def router():
    return {"name": "envoy.filters.http.router",
            "typed_config": {"@type":
                             "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def tls_context(kind, certs):
    ctx = {"common_tls_context": {
        "tls_certificates": [{"certificate_chain": {"filename": certs["chain"]},
                              "private_key": {"filename": certs["key"]}}],
        "validation_context": {"trusted_ca": {"filename": certs["root"]}},
    }}
    if kind == "Downstream":
        ctx["require_client_certificate"] = True
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets."
                                      f"tls.v3.{kind}TlsContext", **ctx}}


def admin(port):
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def network_wasm_filter(policy):
    """svidgate as a network filter in front of the HTTP connection manager."""
    http = wasm_filter(policy)
    return {"name": "envoy.filters.network.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
        "config": http["typed_config"]["config"]}}


# deploy/envoy/*.yaml's memory_allocator_manager: 32 MiB of free tcmalloc memory released per
# second (without it, the transient copies Envoy makes of a large configuration stay resident).
MEMORY_RELEASE = {"bytes_to_release": str(32 << 20), "memory_release_interval": "1s"}


def server_envoy(variant, ports, certs, filters):
    """`filters`: HTTP filters; a network filter (name `envoy.filters.network.*`) goes in front
    of the HTTP connection manager instead."""
    network = [f for f in filters if f["name"].startswith("envoy.filters.network.")]
    filters = [f for f in filters if f not in network]
    return {
        "node": {"id": f"bench-server-{variant}", "cluster": "bench"},
        "admin": admin(ports["admin"]),
        # As the shipped configs (deploy/envoy/*.yaml): freed heap goes back to the OS.
        "memory_allocator_manager": MEMORY_RELEASE,
        "static_resources": {"listeners": [{
            "name": "ingress",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["listen"]}},
            "filter_chains": [{
                "transport_socket": tls_context("Downstream", certs),
                "filters": network + [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        **HCM_REQUEST_ATTRIBUTE_OPTIONS,  # as the shipped deploy/envoy/http.yaml
                        "route_config": {"virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"},
                                        "direct_response": {"status": 200,
                                                            "body": {"inline_string": "ok\n"}}}],
                        }]},
                        "http_filters": filters + [router()],
                    },
                }],
            }],
        }]},
    }


def client_envoy(admin_port, variants):
    listeners, clusters = [], []
    for v, ports in variants.items():
        listeners.append({
            "name": f"to_{v}",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["client"]}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": f"to_{v}",
                    "route_config": {"virtual_hosts": [{
                        "name": "all", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"},
                                    "route": {"cluster": f"server_{v}", "timeout": "10s"}}],
                    }]},
                    "http_filters": [router()],
                },
            }]}],
        })
        clusters.append({
            "name": f"server_{v}",
            "type": "STATIC",
            "connect_timeout": "5s",
            "load_assignment": {"cluster_name": f"server_{v}", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": ports["listen"]}}}}]}]},
            "transport_socket": tls_context("Upstream", ports["client_certs"]),
        })
    return {"node": {"id": "bench-client", "cluster": "bench"}, "admin": admin(admin_port),
            "static_resources": {"listeners": listeners, "clusters": clusters}}


# --- measuring --------------------------------------------------------------------------------

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def stats(admin_port, names):
    status, body = http_get(f"http://127.0.0.1:{admin_port}/stats?format=json", timeout=10)
    if status != 200:
        raise RuntimeError(f"admin /stats on port {admin_port}: {status} {body[:200]}")
    values = {s["name"]: s.get("value", 0) for s in json.loads(body).get("stats", [])
              if "name" in s}
    return {n: values.get(n, 0) for n in names}


COUNTERS = ["http.ingress.downstream_rq_2xx", "http.ingress.downstream_rq_4xx",
            "http.ingress.downstream_rq_5xx", "http.ingress.downstream_rq_total",
            "wasmcustom.svidgate_allowed",
            "wasmcustom.svidgate_denied", "http.ingress.rbac.allowed", "http.ingress.rbac.denied"]


# Longer than the filter's counter tally period (wasm-filter/src/envoy.rs, TALLY_PERIOD).
TALLY_WAIT = 0.35


def settle(admin_port, timeout=5.0):
    """Waits until the server has no request in flight (h2load may have been stopped mid-way),
    so that its counters agree with each other."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stats(admin_port, ["http.ingress.downstream_rq_active"])[
                "http.ingress.downstream_rq_active"] == 0:
            return
        time.sleep(0.02)
    raise RuntimeError(f"server with admin port {admin_port}: requests still active after "
                       f"{timeout:g}s")


def load(url, requests, seconds, connections):
    """h2load over plain HTTP/1.1 to the client Envoy, stopped after `seconds` at the latest."""
    argv = ["h2load", "--h1", "-n", str(requests), "-c", str(connections), "-T", "10", url]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=seconds)
        return out.decode(errors="replace"), False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGINT)
        try:
            out, _ = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
        return out.decode(errors="replace"), True


def measure(server, url, requests, seconds, connections):
    pid, admin_port = server["proc"].pid, server["admin"]
    # svidgate tallies its counters in the VM and adds them to Envoy's every 200 ms: before
    # each reading, let the last tick pass (outside the CPU window).
    tally_wait = TALLY_WAIT if (server["check"] or "").startswith("svidgate") else 0
    time.sleep(tally_wait)
    c0, t0, s0 = cpu_seconds(pid), time.monotonic(), stats(admin_port, COUNTERS)
    out, timed_out = load(url, requests, seconds, connections)
    settle(admin_port)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    time.sleep(tally_wait)
    s1 = stats(admin_port, COUNTERS)
    d = {k: s1[k] - s0[k] for k in COUNTERS}
    n = d["http.ingress.downstream_rq_2xx"]
    # Every request the filter saw, answered or not: h2load stopped by its time limit can reset
    # a stream after the filter allowed it and before the response was counted as 2xx.
    seen = d["http.ingress.downstream_rq_total"]
    bad = d["http.ingress.downstream_rq_4xx"] + d["http.ingress.downstream_rq_5xx"]
    name = server["variant"]
    if n == 0 or bad:
        raise RuntimeError(f"variant {name}: {n} 2xx, {bad} 4xx/5xx; h2load said:\n"
                           f"{out[-1500:]}")
    # The filter's allow counter must cover every answered request and no more than were
    # seen: h2load stopped by its time limit can reset a stream before the filter decided.
    def agrees(allowed, denied):
        return denied == 0 and n <= allowed <= seen

    if server["check"] == "svidgate" and not agrees(d["wasmcustom.svidgate_allowed"],
                                                    d["wasmcustom.svidgate_denied"]):
        raise RuntimeError(f"variant {name}: filter allowed "
                           f"{d['wasmcustom.svidgate_allowed']} and denied "
                           f"{d['wasmcustom.svidgate_denied']} of {seen} requests ({n} 2xx)")
    if server["check"] == "svidgate_connections" and d["wasmcustom.svidgate_denied"]:
        raise RuntimeError(f"variant {name}: filter denied {d['wasmcustom.svidgate_denied']} "
                           "connections")
    if server["check"] == "rbac" and not agrees(d["http.ingress.rbac.allowed"],
                                                d["http.ingress.rbac.denied"]):
        raise RuntimeError(f"variant {name}: RBAC allowed {d['http.ingress.rbac.allowed']} "
                           f"and denied {d['http.ingress.rbac.denied']} of {seen} requests "
                           f"({n} 2xx)")
    cpu, wall = c1 - c0, t1 - t0
    return {"requests": n, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "cpu_us_per_request": round(cpu / n * 1e6, 2), "requests_per_s": round(n / wall, 1),
            "stopped_by_time": timed_out}


def envoy_version(envoy):
    out = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=30).stdout
    parts = out.strip().split("version: ")[-1].split("/")
    return parts[1] if len(parts) > 1 else out.strip()


def median(xs):
    return statistics.median(xs) if xs else None


# --- modules and variants ---------------------------------------------------------------------

def cargo_wasm(manifest_args, target_dir, env=None):
    subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1", *manifest_args,
                    "--target-dir", target_dir], check=True, env={**os.environ, **(env or {})})


def build_modules(bisect):
    """The no-op probe module, and with `bisect` the filter stopped after each step."""
    log("bench: building the no-op module scripts/wasm-probe")
    cargo_wasm(["--manifest-path", os.path.join(PROBE_DIR, "Cargo.toml")],
               os.path.join(TARGET, "wasm-probe"))
    modules = {}
    if bisect:
        for stop in BISECT_STEPS:
            log(f"bench: building the bisection module stop {stop} ({BISECT_STEPS[stop]})")
            cargo_wasm(["-p", "svidgate-filter"], BISECT_DIR,
                       {"SVIDGATE_BENCH_STOP": str(stop), "CARGO_PROFILE_RELEASE_OPT_LEVEL": "z"})
            dst = os.path.join(BISECT_DIR, f"svidgate_stop{stop}.wasm")
            shutil.copy(os.path.join(BISECT_DIR, "wasm32-wasip1", "release",
                                     "svidgate_filter.wasm"), dst)
            modules[stop] = dst
    return modules


def variant_specs(sizes, bisect_modules, compare=()):
    """name -> {description, filters (thunk: the lists are built only when used), check}."""
    one = [istio_form(CLIENT_ID)]
    specs = {
        "none": {"description": "no authorization filter (baseline)", "filters": lambda: [],
                 "check": None},
        "wasm_noop": {"description": "no-op proxy-wasm module (the Wasm floor)",
                      "filters": lambda: [wasm_filter("0", PROBE_WASM)], "check": None},
    }
    for n in sizes:
        k = size_name(n)
        specs[f"svidgate_{k}"] = {
            "description": f"svidgate, {n:,} principal{'s' if n > 1 else ''}",
            "filters": lambda n=n: [wasm_filter(svidgate_policy(allowlist(n)))],
            "check": "svidgate", "size": n, "family": "svidgate"}
        specs[f"rbac_{k}"] = {
            "description": f"Envoy RBAC, {n:,}-principal list",
            "filters": lambda n=n: [rbac_filter(allowlist(n))],
            "check": "rbac", "size": n, "family": "rbac"}
        specs[f"rbac_matcher_{k}"] = {
            "description": f"Envoy RBAC matcher, {n:,}-entry URI SAN map",
            "filters": lambda n=n: [rbac_matcher_filter(allowlist(n))],
            "check": "rbac", "size": n, "family": "rbac_matcher"}
    specs["svidgate_network_1"] = {
        "description": "svidgate as a network filter, 1 principal (one decision per connection)",
        "filters": lambda: [network_wasm_filter({**svidgate_policy(one),
                                                 "filter": {"mode": "network"}})],
        "check": "svidgate_connections"}
    big = max(sizes)
    specs[f"wasm_noop_{size_name(big)}"] = {
        "description": f"no-op module holding svidgate_{size_name(big)}'s configuration",
        "filters": lambda: [wasm_filter(svidgate_policy(allowlist(big)), PROBE_WASM)],
        "check": None}
    for stop, module in bisect_modules.items():
        specs[f"svidgate_stop{stop}"] = {
            "description": f"svidgate 1 principal, stops after step {stop}: {BISECT_STEPS[stop]}",
            "filters": lambda m=module: [wasm_filter(svidgate_policy(one), m)],
            "check": "svidgate" if stop >= 3 else None}
    for label, module in compare:
        specs[f"svidgate_1@{label}"] = {
            "description": f"svidgate 1 principal, module {module}",
            "filters": lambda m=module: [wasm_filter(svidgate_policy(one), m)],
            "check": "svidgate"}
    if bisect_modules:
        specs["svidgate_noheader"] = {
            "description": "svidgate 1 principal, identity header off (identityHeader: \"\")",
            "filters": lambda: [wasm_filter({**svidgate_policy(one),
                                             "filter": {"mode": "http", "identityHeader": ""}})],
            "check": "svidgate"}
        specs["wasm_probe10"] = {"description": "proxy-wasm module, 10 get_property calls",
                                 "filters": lambda: [wasm_filter("10", PROBE_WASM)],
                                 "check": None}
    return specs


def start_server(procs, work, envoy, name, spec, certs, base_id, concurrency=1, tag=""):
    ports = {"admin": unique_port(), "listen": unique_port(), "client": unique_port(),
             "client_certs": certs["client"]}
    label = f"{name}{tag}"
    path = os.path.join(work, f"server-{label}.json")
    with open(path, "w") as f:
        json.dump(server_envoy(label, ports, certs["server"], spec["filters"]()), f)
    proc = procs.start(f"envoy-{label}", [envoy, "-c", path, "--concurrency", str(concurrency),
                                          "--base-id", str(base_id), "--disable-hot-restart",
                                          "--log-level", "warn",
                                          "--component-log-level", "wasm:info"])
    return {"variant": name, "label": label, "proc": proc, "check": spec["check"], **ports}


def wait_ready(procs, servers, timeout=300):
    for s in servers.values():
        t = time.monotonic()
        wait_for(f"server Envoy {s['label']} ready", lambda s=s: http_get(
            f"http://127.0.0.1:{s['admin']}/ready")[0] == 200, procs, timeout=timeout)
        log(f"bench: server Envoy {s['label']} ready (waited {time.monotonic() - t:.1f}s, "
            f"RSS {rss_kib(s['proc'].pid) / 1024:.0f} MiB)")


COMPILED = re.compile(r"configuration of (\d+) bytes compiled in ([0-9.]+) ms")


def compile_times(procs, label):
    return [{"bytes": int(b), "ms": float(ms)}
            for b, ms in COMPILED.findall(procs.log_of(f"envoy-{label}"))]


def worker_rss(procs, work, envoy, specs, names, certs, base):
    """RSS of idle Envoys with 1, 2 and 4 workers (started together, measured once ready)."""
    servers = {}
    i = 0
    for name in WORKER_VARIANTS:
        if name not in names:
            continue
        for workers in (1, 2, 4):
            servers[(name, workers)] = start_server(procs, work, envoy, name, specs[name], certs,
                                                    base + i, workers, f"-w{workers}")
            i += 1
    try:
        wait_ready(procs, {f"{k[0]}-w{k[1]}": v for k, v in servers.items()})
        # Two release intervals of MEMORY_RELEASE: idle RSS, not the start-up peak.
        time.sleep(3.0)
        out = {}
        for (name, workers), s in servers.items():
            out.setdefault(name, {})[str(workers)] = rss_kib(s["proc"].pid)
        compiles = {f"{name}-w{w}": compile_times(procs, s["label"])
                    for (name, w), s in servers.items() if name.startswith("svidgate")}
        return out, compiles
    finally:
        for s in servers.values():
            procs.stop(s["proc"])


RATIOS = [("svidgate_1", "wasm_noop"), ("svidgate_1", "none"), ("wasm_noop", "none"),
          ("svidgate_network_1", "none"), ("svidgate_network_1", "svidgate_1"),
          ("svidgate_100k", "svidgate_1"), ("rbac_1", "none"), ("rbac_100k", "rbac_1"),
          ("rbac_matcher_1", "none"), ("rbac_matcher_100k", "rbac_matcher_1"),
          ("svidgate_1", "rbac_1"), ("rbac_100k", "svidgate_100k"),
          ("rbac_matcher_100k", "svidgate_100k"), ("wasm_probe10", "wasm_noop"),
          ("svidgate_noheader", "wasm_noop")] + [
          (f"svidgate_stop{k}", "wasm_noop") for k in BISECT_STEPS]


def add_arguments(ap):
    ap.add_argument("--variants", default="",
                    help="comma-separated variant names (default: all of the size sweep)")
    ap.add_argument("--sizes", default=DEFAULT_SIZES,
                    help=f"allowlist sizes of the sweep (default {DEFAULT_SIZES})")
    ap.add_argument("--bisect", action="store_true",
                    help="add the bisection variants svidgate_stop0..3, svidgate_noheader and wasm_probe10")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=MODULE",
                    help="add variant svidgate_1@LABEL: the 1-principal configuration on another "
                         "build of the module (A/B within one run); repeatable")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=20000, help="max requests per run")
    ap.add_argument("--seconds", type=float, default=2.0, help="max seconds per run")
    ap.add_argument("--warmup", type=int, default=1000, help="requests per variant before round 1")
    ap.add_argument("--warmup-seconds", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=4, help="h2load connections")
    ap.add_argument("--no-workers", action="store_true",
                    help="skip the RSS measurement with 2 and 4 workers")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")


def run(args, procs, work, certs):
    """The filter benchmark; returns its report (see the top of the file)."""
    for path, what in ((WASM, "filter module (make wasm)"),):
        if not os.path.exists(path):
            raise RuntimeError(f"{what} not found at {path}")
    if not shutil.which("h2load"):
        raise RuntimeError("h2load not found: run `make setup` (Debian nghttp2-client)")
    envoy = find_envoy()
    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    compare = []
    for item in args.compare:
        label, sep, module = item.partition("=")
        if not sep or not label or not os.path.isfile(module):
            raise RuntimeError(f"--compare {item}: expected LABEL=PATH to a .wasm file")
        compare.append((label, os.path.abspath(module)))
    specs = variant_specs(sizes, build_modules(args.bisect), compare)
    names = [v.strip() for v in args.variants.split(",") if v.strip()] or list(specs)
    unknown = [v for v in names if v not in specs]
    if unknown or "none" not in names:
        raise RuntimeError(f"variants {unknown} unknown or `none` missing; known: "
                           f"{', '.join(specs)}")
    started = time.monotonic()
    load_before = os.getloadavg()
    base = 20000 + (os.getpid() % 1000) * 32
    servers = {v: start_server(procs, work, envoy, v, specs[v], certs, base + i)
               for i, v in enumerate(names)}
    client_admin = unique_port()
    path = os.path.join(work, "client.json")
    with open(path, "w") as f:
        json.dump(client_envoy(client_admin, servers), f, indent=1)
    procs.start("envoy-client", [envoy, "-c", path, "--concurrency", "1",
                                 "--base-id", str(base + 31), "--disable-hot-restart",
                                 "--log-level", "warn"])
    wait_ready(procs, servers)
    wait_for("client Envoy ready", lambda: http_get(
        f"http://127.0.0.1:{client_admin}/ready")[0] == 200, procs, timeout=60)

    for v, s in servers.items():
        url = f"http://127.0.0.1:{s['client']}/"
        status, body = http_get(url)
        if status != 200 or body != "ok\n":
            raise RuntimeError(f"variant {v}: smoke request got {status}: {body[:300]}\n"
                               f"{procs.log_tail('envoy-' + s['label'])}")
        # Warm-up: connections, V8 tier-up, the filter's certificate cache. Also checks
        # that every request is allowed.
        measure(s, url, args.warmup, args.warmup_seconds, args.connections)
    log(f"bench: {args.rounds} rounds x {len(names)} variants, each run "
        f"{args.requests} requests or {args.seconds:g}s, {args.connections} connections")

    runs = {v: [] for v in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for v in order:
            procs.check_alive()
            m = measure(servers[v], f"http://127.0.0.1:{servers[v]['client']}/",
                        args.requests, args.seconds, args.connections)
            m["round"] = r + 1
            runs[v].append(m)
            log(f"  round {r + 1} {v:22}: {m['cpu_us_per_request']:9.1f} us/req  "
                f"{m['requests_per_s']:7.0f} req/s  ({m['requests']} requests)")
    rss = {v: rss_kib(s["proc"].pid) for v, s in servers.items()}
    compiles = {v: compile_times(procs, s["label"]) for v, s in servers.items()
                if v.startswith("svidgate")}
    for s in servers.values():
        procs.stop(s["proc"])
    workers, worker_compiles = ({}, {}) if args.no_workers else worker_rss(
        procs, work, envoy, specs, names, certs, base + len(names))
    compiles.update(worker_compiles)

    def paired(a, b):
        if a not in runs or b not in runs:
            return None
        return round(median([x["cpu_us_per_request"] / y["cpu_us_per_request"]
                             for x, y in zip(runs[a], runs[b])]), 3)

    filt = {}
    for v in names:
        filt[v] = {
            "description": specs[v]["description"],
            "cpu_us_per_req": round(median([m["cpu_us_per_request"] for m in runs[v]]), 2),
            "requests_per_s": round(median([m["requests_per_s"] for m in runs[v]]), 1),
            "rss_kib": rss[v],
            "runs": runs[v],
        }
    pairs = RATIOS + [(v, "svidgate_1") for v in names if v.startswith("svidgate_1@")] + [
        (v, "wasm_noop") for v in names if v.startswith("svidgate_1@")]
    ratios = {f"{a}/{b}": paired(a, b) for a, b in pairs}
    sweep = {}
    for v in names:
        if "family" in specs[v]:
            sweep.setdefault(specs[v]["family"], {})[str(specs[v]["size"])] = {
                "cpu_us_per_req": filt[v]["cpu_us_per_req"], "rss_kib": rss[v]}
    return {
        "envoy": envoy_version(envoy),
        "settings": {"rounds": args.rounds, "max_requests_per_run": args.requests,
                     "max_seconds_per_run": args.seconds, "warmup_requests": args.warmup,
                     "connections": args.connections, "sizes": sizes, "client_id": CLIENT_ID,
                     "protocol": "HTTP/1.1 over mTLS, kept-alive", "server_concurrency": 1},
        "filter": filt,
        "ratios": {k: x for k, x in ratios.items() if x is not None},
        "allowlist_sweep": sweep,
        "rss_by_workers_kib": workers,
        "compile_ms": compiles,
        "loadavg": {"before": [round(x, 2) for x in load_before],
                    "after": [round(x, 2) for x in os.getloadavg()]},
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def print_filter(report):
    f = report["filter"]
    load = report.get("loadavg") or report["filter_loadavg"]
    print(f"\nserver Envoy {report['envoy']} CPU per request, medians of "
          f"{report['settings']['rounds']} interleaved rounds (load average "
          f"{load['before'][0]:.1f} -> {load['after'][0]:.1f}, "
          f"{os.cpu_count()} CPUs shared): compare the ratios\n")
    print(f"{'variant':22} {'CPU us/req':>10} {'req/s':>8} {'RSS MiB':>8}  description")
    for v, x in f.items():
        print(f"{v:22} {x['cpu_us_per_req']:10.1f} {x['requests_per_s']:8.0f} "
              f"{(x['rss_kib'] or 0) / 1024:8.0f}  {x['description']}")
    print()
    for k, x in report["ratios"].items():
        print(f"{k:40} = {x:8.3f}")
    for v, w in report["rss_by_workers_kib"].items():
        print(f"RSS {v:20} " + "  ".join(f"{n} worker(s): {kib / 1024:.0f} MiB"
                                         for n, kib in w.items()))
    for v, c in report["compile_ms"].items():
        if c:
            print(f"compile {v:18} " + ", ".join(f"{x['ms']:.0f} ms" for x in c))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    ap.add_argument("--out", default=os.path.join(TARGET, "bench", "envoy.json"))
    args = ap.parse_args()
    if not os.path.exists(SVIDGATE):
        sys.exit(f"bench_envoy: svidgate binary not found at {SVIDGATE}")
    work = tempfile.mkdtemp(prefix="svidgate-bench-")
    procs = Processes(work)

    def on_signal(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        log(f"bench: certificates from svidgate ca + svidgate agent --once ({work})")
        certs = issue_certificates(procs, work)
        report = run(args, procs, work, certs)
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["machine"] = machine()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print_filter(report)
    print(f"\nwritten {os.path.relpath(args.out, os.getcwd())}")


def machine():
    return {"cpus": os.cpu_count(), "machine": platform.machine(),
            "loadavg_now": [round(x, 2) for x in os.getloadavg()]}


if __name__ == "__main__":
    run_main(main, "bench_envoy")
