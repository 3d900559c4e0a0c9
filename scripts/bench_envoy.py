#!/usr/bin/env python3
"""`make bench-envoy`: the svidgate filter's per-request cost inside a real Envoy 1.40.

Everything runs on loopback, in a temporary directory, and is stopped at the end (also on
Ctrl-C or an error):

  - `svidgate ca serve --generate` issues two X509-SVIDs through `svidgate agent --once --out`
    (the project's own tools): the server's and the load client's. The CA is stopped afterwards.
  - One server Envoy per variant (`--concurrency 1`, own `--base-id`, free ports), each an mTLS
    listener (client certificate required) whose only route is a `direct_response` 200, so no
    upstream process takes part. The variants differ only in the HTTP filters before the router:
        A  none (baseline: TLS + HTTP + direct response)
        B  svidgate wasm filter, ALLOW policy with 1 principal
        C  svidgate wasm filter, ALLOW policy with N exact principals (default 100,000)
           plus prefix and suffix patterns
        D  Envoy's RBAC filter (`envoy.filters.http.rbac`) with the same 1-principal policy
        E  Envoy's RBAC filter with the same N principals
    Diagnostic variants, only when named in `--variants` (where does the filter's cost go?):
        F  as B with `filter.strict: false` (first URI SAN + SPIFFE ID parse, no cache lookup)
        G  as B with `filter.identityHeader: ""` (no header removal/insertion)
        P  a no-op proxy-wasm module (scripts/wasm-probe): the wasm plumbing alone
        Q  the same module doing 10 `get_property` host calls per request
  - One client Envoy with a plain-HTTP listener per variant that originates mTLS (the client's
    SVID) to that variant's server Envoy over kept-alive connections.
  - `h2load` (HTTP/1.1, a few connections) sends the load to the client Envoy; each run is
    bounded by a request count and by time, whichever comes first.

Measured per run, on the server Envoy only: its own CPU time (utime + stime of the process,
from /proc/<pid>/stat) and the requests it answered (its `downstream_rq_2xx` counter), both read
before and after the run: CPU µs per request and requests/s. Variants are interleaved (the order
rotates every round) and the report gives per-variant medians and the ratios B/A, C/B, D/A (and
E/D), each the median of the per-round ratios (paired runs, so a load change on the shared
machine between rounds cancels out). Every request must have been allowed: the run fails if a
server answered anything but 2xx or the filter's allow counter does not match.

Writes the table to stdout and everything to target/bench/envoy.json (`--out`).
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from localrun import (HCM_REQUEST_ATTRIBUTE_OPTIONS, ROOT, SVIDGATE, TARGET, WASM, Processes,
                      find_envoy, free_port, http_get, wait_for)

TD = "bench.local"
SERVER_ID = f"spiffe://{TD}/ns/api/sa/server"
CLIENT_ID = f"spiffe://{TD}/ns/web/sa/client"
CLK_TCK = os.sysconf("SC_CLK_TCK")

DESCRIPTIONS = {
    "A": "baseline: mTLS listener, no authorization filter",
    "B": "svidgate wasm filter, 1 principal",
    "C": "svidgate wasm filter, {n:,} principals + patterns",
    "D": "Envoy RBAC filter, 1 principal",
    "E": "Envoy RBAC filter, {n:,} principals + patterns",
    "F": "svidgate, 1 principal, strict: false",
    "G": "svidgate, 1 principal, identityHeader off",
    "P": "no-op proxy-wasm module (plumbing only)",
    "Q": "proxy-wasm module, 10 get_property calls",
}
ALL_VARIANTS = "ABCDEFGPQ"
PROBE_DIR = os.path.join(ROOT, "scripts", "wasm-probe")
PROBE_WASM = os.path.join(TARGET, "wasm-probe", "wasm32-wasip1", "release", "wasm_probe.wasm")


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


def big_allowlist(n):
    """N exact principals (the client's in the middle), 100 prefixes and 100 suffixes."""
    exact = [f"{TD}/ns/team-{i % 997}/sa/workload-{i}" for i in range(n - 1)]
    exact.insert(len(exact) // 2, istio_form(CLIENT_ID))
    prefixes = [f"{TD}/ns/batch-{j}/*" for j in range(100)]
    suffixes = [f"*/sa/cron-{j}" for j in range(100)]
    return exact, prefixes, suffixes


def svidgate_policy(principals):
    return {"trustDomain": TD,
            "policies": [{"name": "allow-clients", "action": "ALLOW",
                          "rules": [{"from": [{"source": {"principals": principals}}]}]}]}


def wasm_filter(policy, module=None):
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


def rbac_filter(exact, prefixes=(), suffixes=()):
    def auth(m):
        return {"authenticated": {"principal_name": m}}
    principals = [auth({"exact": f"spiffe://{p}"}) for p in exact]
    principals += [auth({"prefix": f"spiffe://{p[:-1]}"}) for p in prefixes]
    principals += [auth({"suffix": s[1:]}) for s in suffixes]
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW",
                      "policies": {"allow-clients": {"permissions": [{"any": True}],
                                                     "principals": principals}}},
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


def server_envoy(variant, ports, certs, filters):
    return {
        "node": {"id": f"bench-server-{variant}", "cluster": "bench"},
        "admin": admin(ports["admin"]),
        "static_resources": {"listeners": [{
            "name": "ingress",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["listen"]}},
            "filter_chains": [{
                "transport_socket": tls_context("Downstream", certs),
                "filters": [{
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
    c0, t0, s0 = cpu_seconds(pid), time.monotonic(), stats(admin_port, COUNTERS)
    out, timed_out = load(url, requests, seconds, connections)
    settle(admin_port)
    c1, t1, s1 = cpu_seconds(pid), time.monotonic(), stats(admin_port, COUNTERS)
    d = {k: s1[k] - s0[k] for k in COUNTERS}
    n = d["http.ingress.downstream_rq_2xx"]
    # Every request the filter saw, answered or not: h2load stopped by its time limit can reset
    # a stream after the filter allowed it and before the response was counted as 2xx.
    seen = d["http.ingress.downstream_rq_total"]
    bad = d["http.ingress.downstream_rq_4xx"] + d["http.ingress.downstream_rq_5xx"]
    if n == 0 or bad:
        raise RuntimeError(f"variant {server['variant']}: {n} 2xx, {bad} 4xx/5xx; h2load said:\n"
                           f"{out[-1500:]}")
    if server["variant"] in ("B", "C", "F", "G") and (d["wasmcustom.svidgate_allowed"] != seen
                                            or d["wasmcustom.svidgate_denied"]):
        raise RuntimeError(f"variant {server['variant']}: filter allowed "
                           f"{d['wasmcustom.svidgate_allowed']} of {seen} requests")
    if server["variant"] in ("D", "E") and (d["http.ingress.rbac.allowed"] != seen
                                            or d["http.ingress.rbac.denied"]):
        raise RuntimeError(f"variant {server['variant']}: RBAC allowed "
                           f"{d['http.ingress.rbac.allowed']} of {seen} requests")
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="ABCDE",
                    help="subset of ABCDE (default) plus diagnostics FGPQ (see the top of the file)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=20000, help="max requests per run")
    ap.add_argument("--seconds", type=float, default=3.0, help="max seconds per run")
    ap.add_argument("--warmup", type=int, default=1000, help="requests per variant before round 1")
    ap.add_argument("--warmup-seconds", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=4, help="h2load connections")
    ap.add_argument("--principals", type=int, default=100_000,
                    help="exact principals of the large allowlist (C, E)")
    ap.add_argument("--out", default=os.path.join(TARGET, "bench", "envoy.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    variants = [v for v in ALL_VARIANTS if v in args.variants.upper()]
    if "A" not in variants:
        sys.exit("bench_envoy: variant A (the baseline) is required")
    for path, what in ((SVIDGATE, "svidgate binary (cargo build -p sidecar-host)"),
                       (WASM, "filter module (make wasm)")):
        if not os.path.exists(path):
            sys.exit(f"bench_envoy: {what} not found at {path}")
    if not shutil.which("h2load"):
        sys.exit("bench_envoy: h2load not found: run `make setup` (Debian nghttp2-client)")
    envoy = find_envoy()
    if "P" in variants or "Q" in variants:
        log("bench: building the diagnostic module scripts/wasm-probe")
        subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1", "--manifest-path",
                        os.path.join(PROBE_DIR, "Cargo.toml"), "--target-dir",
                        os.path.join(TARGET, "wasm-probe")], check=True)

    started = time.monotonic()
    load_before = os.getloadavg()
    work = tempfile.mkdtemp(prefix="svidgate-bench-")
    procs = Processes(work)

    def on_signal(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        log(f"bench: certificates from svidgate ca + svidgate agent --once ({work})")
        certs = issue_certificates(procs, work)

        exact, prefixes, suffixes = big_allowlist(args.principals)
        one = [istio_form(CLIENT_ID)]
        filters = {
            "A": [],
            "B": [wasm_filter(svidgate_policy(one))],
            "C": [wasm_filter(svidgate_policy(exact + prefixes + suffixes))],
            "D": [rbac_filter(one)],
            "E": [rbac_filter(exact, prefixes, suffixes)],
            "F": [wasm_filter({**svidgate_policy(one), "filter": {"strict": False}})],
            "G": [wasm_filter({**svidgate_policy(one), "filter": {"identityHeader": ""}})],
            "P": [wasm_filter("0", PROBE_WASM)],
            "Q": [wasm_filter("10", PROBE_WASM)],
        }
        servers = {}
        base = 20000 + (os.getpid() % 2000) * 16
        for i, v in enumerate(variants):
            ports = {"admin": free_port(), "listen": free_port(), "client": free_port(),
                     "client_certs": certs["client"]}
            path = os.path.join(work, f"server-{v}.json")
            with open(path, "w") as f:
                json.dump(server_envoy(v, ports, certs["server"], filters[v]), f)
            proc = procs.start(f"envoy-{v}", [envoy, "-c", path, "--concurrency", "1",
                                              "--base-id", str(base + i), "--disable-hot-restart",
                                              "--log-level", "warn"])
            servers[v] = {"variant": v, "proc": proc, **ports}
        client_admin = free_port()
        path = os.path.join(work, "client.json")
        with open(path, "w") as f:
            json.dump(client_envoy(client_admin, servers), f, indent=1)
        procs.start("envoy-client", [envoy, "-c", path, "--concurrency", "1",
                                     "--base-id", str(base + 15), "--disable-hot-restart",
                                     "--log-level", "warn"])
        for v, s in servers.items():
            t = time.monotonic()
            wait_for(f"server Envoy {v} ready", lambda s=s: http_get(
                f"http://127.0.0.1:{s['admin']}/ready")[0] == 200, procs, timeout=120)
            s["ready_after_s"] = round(time.monotonic() - started, 1)
            log(f"bench: server Envoy {v} ready (waited {time.monotonic() - t:.1f}s, "
                f"RSS {rss_kib(s['proc'].pid) / 1024:.0f} MiB)")
        wait_for("client Envoy ready", lambda: http_get(
            f"http://127.0.0.1:{client_admin}/ready")[0] == 200, procs, timeout=60)

        for v, s in servers.items():
            url = f"http://127.0.0.1:{s['client']}/"
            status, body = http_get(url)
            if status != 200 or body != "ok\n":
                raise RuntimeError(f"variant {v}: smoke request got {status}: {body[:300]}\n"
                                   f"{procs.log_tail('envoy-' + v)}")
            # Warm-up: connections, V8 tier-up, the filter's certificate cache. Also checks
            # that every request is allowed.
            measure(s, url, args.warmup, args.warmup_seconds, args.connections)
        log(f"bench: {args.rounds} rounds x {len(variants)} variants, each run "
            f"{args.requests} requests or {args.seconds:g}s, {args.connections} connections")

        runs = {v: [] for v in variants}
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                procs.check_alive()
                m = measure(servers[v], f"http://127.0.0.1:{servers[v]['client']}/",
                            args.requests, args.seconds, args.connections)
                m["round"] = r + 1
                runs[v].append(m)
                log(f"  round {r + 1} {v}: {m['cpu_us_per_request']:8.1f} us/req  "
                    f"{m['requests_per_s']:8.0f} req/s  ({m['requests']} requests, "
                    f"{m['cpu_s']:.2f} s CPU in {m['wall_s']:.1f} s)")
        rss = {v: rss_kib(s["proc"].pid) for v, s in servers.items()}
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def paired(a, b):
        if a not in runs or b not in runs:
            return None
        return round(median([x["cpu_us_per_request"] / y["cpu_us_per_request"]
                             for x, y in zip(runs[a], runs[b])]), 3)

    results = {}
    for v in variants:
        results[v] = {
            "description": DESCRIPTIONS[v].format(n=args.principals),
            "median_cpu_us_per_request": round(median([m["cpu_us_per_request"]
                                                       for m in runs[v]]), 2),
            "median_requests_per_s": round(median([m["requests_per_s"] for m in runs[v]]), 1),
            "rss_kib": rss[v],
            "runs": runs[v],
        }
    ratios = {k: paired(*k.split("/")) for k in ("B/A", "C/B", "D/A", "E/D", "B/D", "F/B", "G/B",
                                                "P/A", "Q/P", "B/P")}
    ratios = {k: x for k, x in ratios.items() if x is not None}
    report = {
        "benchmark": "svidgate filter per-request CPU in Envoy (server Envoy only)",
        "envoy": envoy_version(envoy),
        "machine": {"cpus": os.cpu_count(), "machine": platform.machine(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"rounds": args.rounds, "max_requests_per_run": args.requests,
                     "max_seconds_per_run": args.seconds, "warmup_requests": args.warmup,
                     "connections": args.connections, "large_allowlist": args.principals,
                     "client_id": CLIENT_ID, "protocol": "HTTP/1.1 over mTLS, kept-alive"},
        "variants": results,
        "ratios_cpu_per_request": ratios,
        "filter_cost_us_per_request": {
            k: round(results[k]["median_cpu_us_per_request"]
                     - results["A"]["median_cpu_us_per_request"], 2)
            for k in results if k != "A"},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    print(f"\nsvidgate filter in Envoy {report['envoy']}: server Envoy CPU per request, "
          f"medians of {args.rounds} interleaved rounds")
    print(f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs (shared): compare the ratios, not the absolute values\n")
    print(f"{'':2} {'variant':52} {'CPU us/req':>10} {'req/s':>8} {'RSS MiB':>8}")
    for v in variants:
        x = results[v]
        print(f"{v:2} {x['description']:52} {x['median_cpu_us_per_request']:10.1f} "
              f"{x['median_requests_per_s']:8.0f} {(x['rss_kib'] or 0) / 1024:8.0f}")
    print()
    notes = {"B/A": "filter vs no filter", "C/B": f"{args.principals:,} vs 1 principal",
             "D/A": "Envoy RBAC vs no filter", "E/D": f"RBAC {args.principals:,} vs 1 principal",
             "B/D": "svidgate vs Envoy RBAC", "F/B": "strict: false vs strict",
             "G/B": "no identity header vs header", "P/A": "no-op wasm module vs no filter",
             "Q/P": "10 get_property calls vs none", "B/P": "svidgate vs no-op wasm module"}
    for k, x in ratios.items():
        print(f"{k:4} = {x:6.3f}   ({notes[k]}; median of per-round ratios)")
    print(f"\nwritten {os.path.relpath(args.out, os.getcwd())} ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("bench_envoy: interrupted")
    except (RuntimeError, subprocess.SubprocessError) as e:
        sys.exit(f"bench_envoy: {e}")
