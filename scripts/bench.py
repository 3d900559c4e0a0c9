#!/usr/bin/env python3
"""`make bench`: every benchmark of svidgate in one bounded run, one report, charts.

  1. The filter inside a real Envoy 1.40 (`bench_envoy.py`: variants none, wasm_noop,
     svidgate_N, rbac_N, rbac_matcher_N for the allowlist sizes, RSS by worker count, the
     policy compile time per VM).
  2. The agent (`svidgate agent`, release build) against a local `svidgate ca`: time from
     process start to the first secret served (`/healthz/ready`, polled every 5 ms; several
     starts), and its RSS at idle with an Envoy's two SDS streams (`default`, `ROOTCA`) open.
  3. The CA (`svidgate ca`, release build, bearer tokens): the `ca_storm` load client (a bench
     binary of the e2e crate) releases --agents workloads at once, each with its own key, CSR,
     token and TLS connection (p50/p99/max to a verified certificate), then signs back to back
     with --ca-concurrency workers for --ca-seconds (P-256 signatures per second).

Everything on loopback, in a temporary directory, stopped at the end. The run fails if any
request was answered wrongly (a non-2xx, a counter that disagrees, a CA error or a wrong
certificate). Writes target/bench/report.json, target/bench/*.png and copies the charts to
docs/bench/ (--no-docs to skip).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import bench_envoy
from localrun import ROOT, TARGET, Processes, find_envoy, http_get, run_main, wait_for

RELEASE = os.path.join(TARGET, "release")
SVIDGATE_RELEASE = os.environ.get("SVIDGATE_RELEASE_BIN", os.path.join(RELEASE, "svidgate"))
CA_STORM = os.environ.get("CA_STORM_BIN", os.path.join(RELEASE, "ca_storm"))
TD = bench_envoy.TD
log = bench_envoy.log


# --- CA ------------------------------------------------------------------------------------

def start_ca(procs, work, tokens, name="ca"):
    """`svidgate ca serve` (release) with a generated CA and a tokens file; returns (proc, url,
    root)."""
    ca_dir = os.path.join(work, f"{name}-dir")
    tokens_file = os.path.join(work, f"{name}-tokens")
    with open(tokens_file, "w") as f:
        f.writelines(f"{token} {spiffe_id}\n" for token, spiffe_id in tokens)
    ca = procs.start(name, [SVIDGATE_RELEASE, "ca", "serve", "--listen", "127.0.0.1:0",
                            "--ca-dir", ca_dir, "--generate", "--trust-domain", TD,
                            "--tokens", tokens_file, "--max-ttl", "2h"],
                     stdout=subprocess.PIPE)
    line = ca.stdout.readline().decode().strip()  # "svidgate ca listening on 127.0.0.1:PORT"
    if "listening on " not in line:
        raise RuntimeError(f"svidgate ca did not start: {line!r}\n{procs.log_tail(name)}")
    return ca, "https://" + line.rsplit(" ", 1)[-1], os.path.join(ca_dir, "root-cert.pem")


def storm_id(i):
    return f"spiffe://{TD}/ns/storm/sa/agent-{i}"


def bench_ca(procs, work, args):
    d = os.path.join(work, "storm")
    os.makedirs(d)
    tokens = [(f"storm-token-{i:05d}-{os.urandom(8).hex()}", storm_id(i))
              for i in range(args.agents)]
    for i, (token, _) in enumerate(tokens):
        with open(os.path.join(d, f"token-{i}"), "w") as f:
            f.write(token)
    ca, url, root = start_ca(procs, work, tokens, "ca-storm")
    try:
        log(f"bench: CA storm: {args.agents} agents at once, then {args.ca_concurrency} "
            f"workers for {args.ca_seconds:g}s")
        cpu0 = bench_envoy.cpu_seconds(ca.pid)
        r = subprocess.run([CA_STORM, "--addr", url, "--root", root, "--dir", d,
                            "--trust-domain", TD, "--agents", str(args.agents),
                            "--concurrency", str(args.ca_concurrency),
                            "--seconds", str(args.ca_seconds)],
                           capture_output=True, text=True, timeout=args.ca_seconds + 180)
        try:
            out = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"ca_storm failed ({r.returncode}): {r.stderr[-1500:]}")
        if r.returncode != 0 or out.get("errors"):
            raise RuntimeError(f"ca_storm: {out.get('errors')} errors, e.g. "
                               f"{out.get('error_sample')}\n{r.stderr[-800:]}")
        out[f"burst_{args.agents}_p99_ms"] = out["burst_p99_ms"]
        # The CA's own CPU per certificate (storm + sustained): what bounds signs/s here.
        signed = out["burst_ok"] + out["sustained_signed"]
        out["ca_cpu_ms_per_sign"] = round((bench_envoy.cpu_seconds(ca.pid) - cpu0) / signed * 1e3,
                                          3)
        out["ca_rss_kib"] = bench_envoy.rss_kib(ca.pid)
        return out
    finally:
        ca.stdout.close()
        procs.stop(ca)


# --- agent ---------------------------------------------------------------------------------

AGENT_ID = f"spiffe://{TD}/ns/bench/sa/agent"


def agent_argv(url, root, token_file, socket, admin_port):
    return [SVIDGATE_RELEASE, "agent", "--ca-addr", url, "--ca-root", root,
            "--spiffe-id", AGENT_ID, "--token-file", token_file, "--cert-ttl", "1h",
            "--sds-socket", socket, "--admin-addr", f"127.0.0.1:{admin_port}"]


def metric(admin_port, name):
    status, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
    if status != 200:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def sds_envoy(admin_port, listen_port, socket):
    def sds(name):
        return {"name": name, "sds_config": {"resource_api_version": "V3", "api_config_source": {
            "api_type": "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "sds"}}]}}}
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                 "DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {"tls_certificate_sds_secret_configs": [sds("default")],
                               "validation_context_sds_secret_config": sds("ROOTCA")}}}
    return {
        "node": {"id": "bench-sds", "cluster": "bench"},
        "admin": bench_envoy.admin(admin_port),
        "static_resources": {
            "listeners": [{"name": "mtls", "address": {"socket_address": {
                "address": "127.0.0.1", "port_value": listen_port}},
                "filter_chains": [{"transport_socket": tls, "filters": [{
                    "name": "envoy.filters.network.tcp_proxy", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "mtls", "cluster": "sds"}}]}]}],
            "clusters": [{"name": "sds", "type": "STATIC", "connect_timeout": "1s",
                          "typed_extension_protocol_options": {
                              "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                  "@type": "type.googleapis.com/envoy.extensions.upstreams."
                                           "http.v3.HttpProtocolOptions",
                                  "explicit_http_config": {"http2_protocol_options": {}}}},
                          "load_assignment": {"cluster_name": "sds", "endpoints": [{
                              "lb_endpoints": [{"endpoint": {"address": {
                                  "pipe": {"path": socket}}}}]}]}}]},
    }


def bench_agent(procs, work, args):
    token = f"agent-token-{os.urandom(8).hex()}"
    token_file = os.path.join(work, "agent-token")
    with open(token_file, "w") as f:
        f.write(token)
    ca, url, root = start_ca(procs, work, [(token, AGENT_ID)], "ca-agent")
    try:
        first = []
        for i in range(args.agent_starts):
            socket = os.path.join(work, f"agent-{i}.sock")
            admin_port = bench_envoy.unique_port()
            t0 = time.monotonic()
            agent = procs.start(f"agent-{i}", agent_argv(url, root, token_file, socket,
                                                         admin_port))
            wait_for("agent ready", lambda: http_get(
                f"http://127.0.0.1:{admin_port}/healthz/ready", timeout=1)[0] == 200,
                procs, timeout=30, interval=0.005)
            first.append(round((time.monotonic() - t0) * 1e3, 1))
            if i < args.agent_starts - 1:
                procs.stop(agent)
        # The last agent stays: an Envoy opens its two SDS streams, then it idles.
        envoy_admin = bench_envoy.unique_port()
        path = os.path.join(work, "sds-envoy.json")
        with open(path, "w") as f:
            json.dump(sds_envoy(envoy_admin, bench_envoy.unique_port(), socket), f)
        procs.start("envoy-sds", [find_envoy(), "-c", path, "--concurrency", "1",
                                  "--base-id", str(19000 + os.getpid() % 500),
                                  "--disable-hot-restart", "--log-level", "warn"])
        wait_for("the agent's two SDS streams", lambda: metric(
            admin_port, "svidgate_sds_streams_open") == 2, procs, timeout=60)
        wait_for("Envoy's listener with the agent's secrets", lambda: bench_envoy.stats(
            envoy_admin, ["listener_manager.total_listeners_active"])[
            "listener_manager.total_listeners_active"] == 1, procs, timeout=60)
        time.sleep(args.agent_idle)
        rss = bench_envoy.rss_kib(agent.pid)
        streams = metric(admin_port, "svidgate_sds_streams_open")
        threads = len(os.listdir(f"/proc/{agent.pid}/task"))
        return {"rss_kib": rss, "first_secret_ms": sorted(first)[len(first) // 2],
                "first_secret_runs_ms": first, "sds_streams_open": streams,
                "threads": threads, "idle_s": args.agent_idle}
    finally:
        ca.stdout.close()
        procs.stop(ca)


# --- charts --------------------------------------------------------------------------------

MAIN_VARIANTS = ["none", "wasm_noop", "svidgate_1", "svidgate_network_1", "svidgate_100k",
                 "rbac_1", "rbac_100k", "rbac_matcher_1", "rbac_matcher_100k", "wasm_noop_100k"]
FAMILY_LABELS = {"svidgate": "svidgate (Wasm)", "rbac": "Envoy RBAC principal list",
                 "rbac_matcher": "Envoy RBAC matcher (URI SAN map)"}


def charts(report, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = report["filter"]
    load = report["filter_loadavg"]
    note = (f"Envoy {report['envoy']}, --concurrency 1, {report['machine']['cpus']} shared CPUs, "
            f"load {load['before'][0]:.0f}→{load['after'][0]:.0f}")
    files = []

    def save(fig, name):
        fig.text(0.01, 0.01, note, fontsize=7, color="gray")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)

    names = [v for v in MAIN_VARIANTS if v in f] + sorted(
        v for v in f if v.startswith("svidgate_stop") or v == "wasm_probe10")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    vals = [f[v]["cpu_us_per_req"] for v in names]
    bars = ax.bar(names, vals, color=["#888" if v in ("none", "wasm_noop", "wasm_noop_100k")
                                      else "#3a7" if v.startswith("svidgate") else "#c73"
                                      for v in names])
    ax.set_yscale("log")
    ax.set_ylabel("server Envoy CPU µs per request (log)")
    ax.set_title("CPU per request by variant (median of interleaved rounds)")
    ax.bar_label(bars, labels=[f"{x:.0f}" for x in vals], fontsize=7)
    ax.tick_params(axis="x", rotation=35, labelsize=8)
    save(fig, "cpu_by_variant.png")

    rss_names = [v for v in MAIN_VARIANTS if v in f]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    vals = [(f[v]["rss_kib"] or 0) / 1024 for v in rss_names]
    bars = ax.bar(rss_names, vals, color="#57a")
    ax.set_ylabel("server Envoy RSS, MiB")
    ax.set_title("RSS by variant (1 worker, after the runs)")
    ax.bar_label(bars, labels=[f"{x:.0f}" for x in vals], fontsize=7)
    ax.tick_params(axis="x", rotation=35, labelsize=8)
    save(fig, "rss_by_variant.png")

    workers = report["rss_by_workers_kib"]
    if workers:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for v, w in workers.items():
            xs = sorted(int(k) for k in w)
            ax.plot(xs, [w[str(x)] / 1024 for x in xs], marker="o", label=v)
        ax.set_xticks([1, 2, 4])
        ax.set_xlabel("Envoy worker threads (--concurrency)")
        ax.set_ylabel("RSS, MiB (idle, after start)")
        ax.set_title("RSS by worker count")
        ax.legend(fontsize=8)
        save(fig, "rss_by_workers.png")

    sweep = report["allowlist_sweep"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for fam, pts in sweep.items():
        xs = sorted(int(k) for k in pts)
        ax1.plot(xs, [pts[str(x)]["cpu_us_per_req"] for x in xs], marker="o",
                 label=FAMILY_LABELS.get(fam, fam))
        ax2.plot(xs, [(pts[str(x)]["rss_kib"] or 0) / 1024 for x in xs], marker="o",
                 label=FAMILY_LABELS.get(fam, fam))
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("principals in the allowlist (log)")
        ax.legend(fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("CPU µs per request (log)")
    ax1.set_title("Cost vs allowlist size")
    ax2.set_ylabel("RSS, MiB")
    ax2.set_title("Memory vs allowlist size")
    save(fig, "cost_vs_allowlist.png")
    return files


# --- main ----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    bench_envoy.add_arguments(ap)
    ap.add_argument("--agents", type=int, default=1000, help="CA storm: agents at once")
    ap.add_argument("--ca-concurrency", type=int, default=32, help="CA sustained: workers")
    ap.add_argument("--ca-seconds", type=float, default=5.0, help="CA sustained: duration")
    ap.add_argument("--agent-starts", type=int, default=5, help="agent starts timed")
    ap.add_argument("--agent-idle", type=float, default=3.0,
                    help="seconds the agent idles with two SDS streams before its RSS is read")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: filter,agent,ca")
    ap.add_argument("--out", default=os.path.join(TARGET, "bench", "report.json"))
    ap.add_argument("--no-docs", action="store_true", help="do not copy the charts to docs/")
    ap.add_argument("--charts-only", action="store_true",
                    help="redraw the charts (and the table) from an existing --out report")
    args = ap.parse_args()
    if args.charts_only:
        with open(args.out) as f:
            report = json.load(f)
        finish(report, args)
        return
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    for path, what in ((SVIDGATE_RELEASE, "svidgate release binary"),
                       (CA_STORM, "ca_storm release binary")):
        if not os.path.exists(path):
            sys.exit(f"bench: {what} not found at {path} (make bench builds it)")

    started = time.monotonic()
    load_before = os.getloadavg()
    work = tempfile.mkdtemp(prefix="svidgate-bench-")
    procs = Processes(work)

    def on_signal(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    report = {}
    try:
        if "filter" not in skip:
            log(f"bench: certificates from svidgate ca + svidgate agent --once ({work})")
            certs = bench_envoy.issue_certificates(procs, work)
            fr = bench_envoy.run(args, procs, work, certs)
            report.update({"filter": fr.pop("filter"), "ratios": fr.pop("ratios"),
                           "envoy": fr.pop("envoy"), "filter_loadavg": fr.pop("loadavg"),
                           **fr})
        if "agent" not in skip:
            report["agent"] = bench_agent(procs, work, args)
            log(f"bench: agent {report['agent']}")
        if "ca" not in skip:
            report["ca"] = bench_ca(procs, work, args)
            log(f"bench: CA {report['ca']}")
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["machine"] = {**bench_envoy.machine(),
                         "loadavg_before": [round(x, 2) for x in load_before],
                         "note": "2 cores shared with other builds: compare ratios within "
                                 "this run, not absolute values across runs"}
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    finish(report, args)


def finish(report, args):
    """Prints the summary and draws the charts next to the report (and into docs/bench/)."""
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if "filter" in report:
        bench_envoy.print_filter(report)
        pngs = charts(report, out_dir)
        if not args.no_docs:
            docs = os.path.join(ROOT, "docs", "bench")
            os.makedirs(docs, exist_ok=True)
            for p in pngs:
                shutil.copy(p, docs)
        print("\ncharts: " + ", ".join(os.path.relpath(p, os.getcwd()) for p in pngs))
    for part in ("agent", "ca"):
        if part in report:
            print(f"{part}: " + json.dumps({k: v for k, v in report[part].items()
                                            if not isinstance(v, list)}))
    print(f"\n{os.path.relpath(args.out, os.getcwd())} ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    run_main(main, "bench")
