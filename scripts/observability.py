#!/usr/bin/env python3
"""svidgate's alerts and Grafana dashboard, from one source (this file).

    observability.py write    regenerate the files under deploy/observability/
    observability.py check    fail if a committed file differs from what this file generates
    observability.py queries  print every dashboard query and every alert's probe as JSON
                              (read by tests/tests/operations_e2e.rs)

Generated files:
    deploy/observability/svidgate.rules.yml        plain Prometheus rules file
    deploy/observability/prometheusrule.yaml       the same groups as a PrometheusRule
    deploy/observability/grafana-dashboard.json    the dashboard (datasource is a variable)

Each alert has a `probe`: the expression without its threshold (or the selector it is built
on), which must return data whenever the metric is scraped. The real-Prometheus test evaluates
every alert `expr` (it must parse and run) and every probe (it must return at least one series):
an alert that is not firing returns nothing, so only the probe shows the alert is wired to a
metric that exists. Python stdlib + PyYAML.
"""
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "observability"
RULES = OUT / "svidgate.rules.yml"
PROMETHEUS_RULE = OUT / "prometheusrule.yaml"
DASHBOARD = OUT / "grafana-dashboard.json"
RUNBOOKS = "docs/operations.md"

# ---------------------------------------------------------------------------------------------
# Metric names

# The filter's counters as Envoy's /stats/prometheus shows them: Envoy exports the Wasm custom
# namespace `wasmcustom.` without its usual `envoy_` prefix and without the namespace
# (tests/tests/operations_e2e.rs checks these names against a real Envoy).
ALLOWED = "svidgate_allowed"
DENIED = "svidgate_denied"
DRY_RUN_ALLOWED = "svidgate_dry_run_allowed"
DRY_RUN_DENIED = "svidgate_dry_run_denied"
NO_IDENTITY = "svidgate_no_identity"
INVALID_IDENTITY = "svidgate_invalid_identity"
CONFIG_ERRORS = "svidgate_config_errors"
# `wasmcustom.svidgate_policy.<name>.<verdict>` with the stats_tags of deploy/envoy/*.yaml.
POLICY = "svidgate_policy"

# Labels that identify one pod; removed to aggregate per workload (the scrape configs in
# deploy/observability/ add `namespace` and `app`, the pod's app label).
POD_LABELS = "instance, pod"


def runbook(alert):
    return f"{RUNBOOKS}#{alert.lower()}"


# ---------------------------------------------------------------------------------------------
# Alerts

ALERTS = [
    {
        "alert": "SvidgateCertificateExpiringSoon",
        "expr": "svidgate_cert_expiry_seconds < 0.25 * (svidgate_cert_not_after_seconds - svidgate_cert_not_before_seconds)",
        "for": "2m",
        "severity": "critical",
        "summary": "{{ $labels.instance }}: workload certificate has less than a quarter of its lifetime left",
        "description": (
            "The certificate served by svidgate agent {{ $labels.instance }} expires in "
            "{{ $value | humanizeDuration }}. The agent renews at half the lifetime, so renewals have "
            "been failing for a quarter of it. Check the agent's log for the CA error and "
            "svidgate_rotations_total{result=\"failed\"}; check that the CA is reachable and accepts "
            "the workload (token, trust domain, CA certificate validity). When the certificate "
            "expires the pod loses mTLS."
        ),
        "probe": "svidgate_cert_expiry_seconds / (svidgate_cert_not_after_seconds - svidgate_cert_not_before_seconds)",
    },
    {
        "alert": "SvidgateRotationsFailing",
        "expr": (
            'sum without (result) (increase(svidgate_rotations_total{result="failed"}[15m])) > 0\n'
            'unless sum without (result) (increase(svidgate_rotations_total{result="ok"}[15m])) > 0'
        ),
        "for": "5m",
        "severity": "warning",
        "summary": "{{ $labels.instance }}: certificate renewals failing, none succeeded in 15 minutes",
        "description": (
            "svidgate agent {{ $labels.instance }} failed to renew its certificate and has not "
            "succeeded since. The current certificate stays in use while valid. Read the agent's "
            "log (the CA's gRPC status and message are logged), then check the CA: reachable, its "
            "own certificate valid, the caller accepted."
        ),
        "probe": 'svidgate_rotations_total{result="failed"}',
    },
    {
        "alert": "SvidgateAgentNotReady",
        "expr": "svidgate_ready == 0",
        "for": "2m",
        "severity": "critical",
        "summary": "{{ $labels.instance }}: svidgate agent has no valid certificate to serve",
        "description": (
            "/healthz/ready of svidgate agent {{ $labels.instance }} has answered 503 for 2 "
            "minutes: no currently valid certificate. Envoy keeps the last secret, which has expired "
            "or never arrived. Follow the runbook of SvidgateCertificateExpiringSoon; if the agent "
            "never got a first certificate, check the token file and --ca-addr."
        ),
        "probe": "svidgate_ready",
    },
    {
        "alert": "SvidgateSdsNack",
        "expr": "increase(svidgate_sds_nacks_total[10m]) > 0",
        "for": "0m",
        "severity": "warning",
        "summary": "{{ $labels.instance }}: Envoy rejected a secret served by svidgate",
        "description": (
            "Envoy answered an SDS response of agent {{ $labels.instance }} with a NACK. The agent "
            "logs Envoy's error message at WARN. Envoy keeps using the previous secret; a new one "
            "is sent only when the content changes. Usual causes: a key type or certificate Envoy "
            "cannot load, a trust bundle file with something other than CA certificates."
        ),
        "probe": "increase(svidgate_sds_nacks_total[10m])",
    },
    {
        "alert": "SvidgateFilterConfigRejected",
        "expr": f"increase({CONFIG_ERRORS}[10m]) > 0",
        "for": "0m",
        "severity": "critical",
        "summary": "{{ $labels.instance }}: the svidgate filter rejected its configuration",
        "description": (
            "The svidgate Wasm filter in {{ $labels.instance }} refused a policy document "
            "(on_configure failed). Fail-closed: the listener denies traffic (or keeps the previous "
            "filter config when Envoy rejects the update). Envoy's log has the error naming the "
            "field; check the WasmPlugin pluginConfig with `svidgate policy check` and fix it."
        ),
        "probe": f"increase({CONFIG_ERRORS}[10m])",
    },
    {
        "alert": "SvidgateDenialsAboveUsual",
        "expr": (
            f"sum without ({POD_LABELS}) (rate({DENIED}[5m])) > 0.1\n"
            f"and sum without ({POD_LABELS}) (rate({DENIED}[5m]))\n"
            f"  > 3 * sum without ({POD_LABELS}) (rate({DENIED}[1h] offset 5m))"
        ),
        "for": "5m",
        "severity": "warning",
        "summary": "{{ $labels.namespace }}/{{ $labels.app }}: svidgate denials at more than 3x the last hour's rate",
        "description": (
            "Requests denied by the svidgate filter: {{ $value | humanize }}/s over 5 minutes, more "
            "than three times the rate of the hour before (and above 0.1/s). Either a caller lost "
            "its access (a policy change, a new client, a trust-domain change) or someone is "
            "probing. Look at the per-policy panel and the access log's svidgate=[...] decision "
            "(policy, rule, reason) to see who is denied and by what."
        ),
        "probe": f"sum without ({POD_LABELS}) (rate({DENIED}[5m]))",
    },
    {
        "alert": "SvidgateDryRunDenials",
        "expr": f"sum without ({POD_LABELS}) (increase({DRY_RUN_DENIED}[15m])) > 0",
        "for": "0m",
        "severity": "info",
        "summary": "{{ $labels.namespace }}/{{ $labels.app }}: dry-run policies would deny traffic",
        "description": (
            "{{ $value | humanize }} requests in 15 minutes would have been denied if the dry-run "
            "policies were enforced. Do not switch those policies to enforce yet: find the callers "
            "in the access log (svidgate=[...] with dry_run) and either add them to the policy or "
            "confirm they should lose access."
        ),
        "probe": f"sum without ({POD_LABELS}) (increase({DRY_RUN_DENIED}[15m]))",
    },
    {
        "alert": "SvidgateCaCertificateExpiringSoon",
        "expr": "svidgate_ca_cert_not_after_seconds - time() < 7 * 86400",
        "for": "10m",
        "severity": "warning",
        "summary": "{{ $labels.instance }}: svidgate ca's signing certificate expires within 7 days",
        "description": (
            "The CA certificate (ca-cert.pem) of svidgate ca {{ $labels.instance }} expires in "
            "{{ $value | humanizeDuration }}. No workload certificate outlives it, so lifetimes "
            "shrink and then issuance stops. Issue a new intermediate (cert-manager renews the "
            "svidgate-cacerts Secret before expiry; check the Certificate's status) - svidgate ca "
            "reloads the directory by itself."
        ),
        "probe": "svidgate_ca_cert_not_after_seconds - time()",
    },
    {
        "alert": "SvidgateCaErrors",
        "expr": 'sum without (reason) (increase(svidgate_ca_refused_total{reason=~"internal|unavailable"}[10m])) > 0',
        "for": "0m",
        "severity": "warning",
        "summary": "{{ $labels.instance }}: svidgate ca failed requests on its side",
        "description": (
            "svidgate ca {{ $labels.instance }} answered INTERNAL or UNAVAILABLE (signing failed, "
            "CA state unavailable, tokens file unusable): callers did nothing wrong. Its log "
            "names the error; check the cacerts directory (svidgate_ca_reloads_total"
            "{source=\"cacerts\",result=\"failed\"}) and the tokens file "
            "(svidgate_ca_reloads_total{source=\"tokens\",result=\"failed\"})."
        ),
        "probe": 'svidgate_ca_refused_total{reason=~"internal|unavailable"}',
    },
    {
        "alert": "IstioXdsRejected",
        "expr": "sum by (type) (increase(pilot_total_xds_rejects[10m])) > 0",
        "for": "0m",
        "severity": "warning",
        "summary": "istiod: proxies rejected {{ $labels.type }} configuration",
        "description": (
            "Envoy proxies rejected xDS configuration of type {{ $labels.type }} from istiod. For "
            "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig this is usually the "
            "svidgate WasmPlugin: the module could not be fetched or verified, or the filter "
            "rejected its pluginConfig. `istioctl proxy-status` shows the proxies; their istio-proxy "
            "log has the reason."
        ),
        "probe": "sum by (type) (increase(pilot_total_xds_rejects[10m]))",
    },
    {
        "alert": "IstioWasmRemoteFetchFailing",
        "expr": 'sum without (result) (increase(istio_agent_wasm_remote_fetch_count{result!="success"}[10m])) > 0',
        "for": "0m",
        "severity": "critical",
        "summary": "{{ $labels.instance }}: istio-agent cannot fetch the Wasm module",
        "description": (
            "istio-agent in {{ $labels.instance }} failed to fetch a Wasm module (download, "
            "manifest or sha256 mismatch). With failStrategy FAIL_CLOSE the listener denies "
            "traffic until the fetch succeeds. Check the WasmPlugin url and sha256 (the manifest "
            "digest `make oci` prints), the registry's reachability and the pull secret."
        ),
        "probe": "istio_agent_wasm_remote_fetch_count",
    },
]


def alert_rule(a):
    return {
        "alert": a["alert"],
        "expr": a["expr"],
        "for": a["for"],
        "labels": {"severity": a["severity"]},
        "annotations": {
            "summary": a["summary"],
            "description": a["description"],
            "runbook": runbook(a["alert"]),
        },
    }


def rule_groups():
    return [{"name": "svidgate", "rules": [alert_rule(a) for a in ALERTS]}]


# ---------------------------------------------------------------------------------------------
# Dashboard

RI = "$__rate_interval"


def t(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def quantiles(buckets):
    """The median and p99 of a histogram (its `_bucket` series), over the rate interval."""
    return [t(f"histogram_quantile({q}, sum by (le) (rate({buckets}[{RI}])))", legend)
            for q, legend in (("0.5", "p50"), ("0.99", "p99"))]


# (row title, [(panel title, unit, [targets])])
ROWS = [
    ("Certificates", [
        ("Time to certificate expiry", "s", [t("svidgate_cert_expiry_seconds", "{{instance}}")]),
        ("Lifetime left (fraction)", "percentunit", [t(
            "svidgate_cert_expiry_seconds / (svidgate_cert_not_after_seconds - svidgate_cert_not_before_seconds)",
            "{{instance}}")]),
        ("Rotations", "short", [t(f"sum by (result) (increase(svidgate_rotations_total[{RI}]))", "{{result}}")]),
        ("Agents ready / total", "short", [
            t("sum(svidgate_ready)", "ready"), t("count(svidgate_ready)", "agents")]),
        ("Agent → CA latency", "s", quantiles("svidgate_ca_request_duration_seconds_bucket")),
        ("Certificates expired before renewal", "short", [
            t(f"sum(increase(svidgate_cert_expired_total[{RI}]))", "expired")]),
    ]),
    ("Authorization (filter)", [
        ("Decisions", "reqps", [
            t(f"sum(rate({ALLOWED}[{RI}]))", "allowed"),
            t(f"sum(rate({DENIED}[{RI}]))", "denied"),
            t(f"sum(rate({DRY_RUN_ALLOWED}[{RI}]))", "dry-run allowed"),
            t(f"sum(rate({DRY_RUN_DENIED}[{RI}]))", "dry-run denied")]),
        ("Decisions by policy", "reqps", [
            t(f"sum by (policy, verdict) (rate({POLICY}[{RI}]))", "{{policy}} {{verdict}}")]),
        ("No identity / invalid identity", "reqps", [
            t(f"sum(rate({NO_IDENTITY}[{RI}]))", "no identity"),
            t(f"sum(rate({INVALID_IDENTITY}[{RI}]))", "invalid identity")]),
        ("Rejected filter configurations", "short", [
            t(f"sum by (instance) (increase({CONFIG_ERRORS}[{RI}]))", "{{instance}}")]),
    ]),
    ("CA (svidgate ca)", [
        ("Issued by key type", "ops", [
            t(f"sum by (key_type) (rate(svidgate_ca_issued_total[{RI}]))", "{{key_type}}")]),
        ("Refused by reason", "ops", [
            t(f"sum by (reason) (rate(svidgate_ca_refused_total[{RI}]))", "{{reason}}")]),
        ("CreateCertificate latency", "s", quantiles("svidgate_ca_create_certificate_duration_seconds_bucket")),
        ("cacerts and tokens reloads", "short", [
            t(f"sum by (source, result) (increase(svidgate_ca_reloads_total[{RI}]))", "{{source}} {{result}}")]),
        ("CA certificate expiry", "s", [
            t("svidgate_ca_cert_not_after_seconds - time()", "{{instance}}")]),
    ]),
    ("SDS", [
        ("Open SDS streams", "short", [t("sum by (instance) (svidgate_sds_streams_open)", "{{instance}}")]),
        ("SDS pushes", "ops", [t(f"sum(rate(svidgate_sds_pushes_total[{RI}]))", "pushes")]),
        ("SDS NACKs", "short", [t(f"sum by (instance) (increase(svidgate_sds_nacks_total[{RI}]))", "{{instance}}")]),
    ]),
]


def dashboard():
    panels = []
    pid = 1
    y = 0
    for title, row in ROWS:
        panels.append({"type": "row", "id": pid, "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        for i, (ptitle, unit, targets) in enumerate(row):
            panels.append({
                "type": "timeseries",
                "id": pid,
                "title": ptitle,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "none"}},
                "targets": [dict(tg, refId=chr(ord("A") + k),
                                 datasource={"type": "prometheus", "uid": "${datasource}"})
                            for k, tg in enumerate(targets)],
            })
            pid += 1
        y += ((len(row) + 2) // 3) * 8
    return {
        "title": "svidgate",
        "uid": "svidgate-overview",
        "description": "svidgate: workload certificates (agent), authorization (Wasm filter), SDS, CA",
        "tags": ["svidgate", "spiffe", "istio"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [{
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
        }]},
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_queries():
    out = []
    for title, row in ROWS:
        for ptitle, _unit, targets in row:
            for tg in targets:
                out.append({"panel": f"{title} / {ptitle}", "legend": tg["legendFormat"], "expr": tg["expr"]})
    return out


# ---------------------------------------------------------------------------------------------
# Files

HEADER = ("# Generated by scripts/observability.py from its ALERTS list; edit that and run\n"
          "# `scripts/observability.py write` (`make test` fails when this file is stale).\n")


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, s):
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


Dumper.add_representer(str, _str)


def dump(obj):
    return yaml.dump(obj, Dumper=Dumper, sort_keys=False, width=100, allow_unicode=True)


def generated():
    rules = HEADER + "# Load with Prometheus `rule_files:`; unit tests: tests/observability/svidgate.rules.test.yml.\n" + dump(
        {"groups": rule_groups()})
    prom_rule = HEADER + "# For the Prometheus operator (kube-prometheus-stack: match its ruleSelector labels).\n" + dump({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "svidgate", "namespace": "istio-system",
                     "labels": {"app.kubernetes.io/name": "svidgate", "release": "prometheus"}},
        "spec": {"groups": rule_groups()},
    })
    dash = json.dumps(dashboard(), indent=2) + "\n"
    return {RULES: rules, PROMETHEUS_RULE: prom_rule, DASHBOARD: dash}


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "write":
        for path, text in generated().items():
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if cmd == "check":
        stale = [p for p, text in generated().items() if not p.exists() or p.read_text() != text]
        for p in stale:
            print(f"{p.relative_to(ROOT)} is not what scripts/observability.py generates; run "
                  "`scripts/observability.py write`", file=sys.stderr)
        if not stale:
            print(f"ok: {', '.join(str(p.relative_to(ROOT)) for p in generated())} up to date")
        return 1 if stale else 0
    if cmd == "queries":
        alerts = [{"alert": a["alert"], "expr": a["expr"], "probe": a["probe"]} for a in ALERTS]
        print(json.dumps({"dashboard": dashboard_queries(), "alerts": alerts}, indent=1))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
