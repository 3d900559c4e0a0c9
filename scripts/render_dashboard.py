#!/usr/bin/env python3
"""Draws the svidgate Grafana dashboard's panels from real Prometheus data, without Grafana.

    OPS_E2E_DUMP=/tmp/dash.json cargo test -p svidgate-e2e --test operations_e2e prometheus_
    .venv/bin/python scripts/render_dashboard.py /tmp/dash.json docs/operations-dashboard.png

The input is what tests/tests/operations_e2e.rs writes with OPS_E2E_DUMP: for every dashboard
query (scripts/observability.py, the dashboard's own expressions), the range result of the last
20 s from the test's Prometheus, which scraped real agents, a real `svidgate ca` and a real Envoy
with the filter under a short workload. One subplot per panel, laid out row by row as in Grafana.
"""
import json
import math
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def legend_of(fmt, labels):
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:
        a = out.index("{{")
        b = out.index("}}", a) + 2
        out = out[:a] + out[b:]
    return out.strip() or "value"


def main(src, dst):
    data = json.load(open(src))
    panels = OrderedDict()
    for q in data:
        panels.setdefault(q["panel"], []).append(q)
    rows = OrderedDict()
    for title, qs in panels.items():
        row, name = title.split(" / ", 1)
        rows.setdefault(row, []).append((name, qs))
    ncols = 3
    nrows = sum(math.ceil(len(p) / ncols) for p in rows.values())
    fig, axes = plt.subplots(nrows, ncols, figsize=(15, 2.6 * nrows), squeeze=False)
    r = 0
    for row, plist in rows.items():
        for i, (name, qs) in enumerate(plist):
            ax = axes[r + i // ncols][i % ncols]
            ax.set_title(f"{row}: {name}", fontsize=9, loc="left")
            for q in qs:
                for s in q["result"]:
                    t0 = float(q["result"][0]["values"][0][0]) if q["result"][0]["values"] else 0
                    xs = [float(v[0]) - t0 for v in s["values"]]
                    ys = [float(v[1]) for v in s["values"]]
                    ax.plot(xs, ys, label=legend_of(q["legend"], s["metric"]), linewidth=1.2)
            ax.tick_params(labelsize=7)
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            ax.set_xlabel("s", fontsize=7)
            if ax.lines:
                ax.legend(fontsize=6, loc="best")
        for j in range(len(plist), math.ceil(len(plist) / ncols) * ncols):
            axes[r + j // ncols][j % ncols].axis("off")
        r += math.ceil(len(plist) / ncols)
    fig.suptitle("svidgate dashboard (queries of deploy/observability/grafana-dashboard.json, "
                 "data from the operations e2e test's Prometheus)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(dst, dpi=80)
    print(f"wrote {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
