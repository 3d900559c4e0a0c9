#!/usr/bin/env python3
"""Regenerates deploy/schemas/kubernetes/<version>.json from the schemas that the PyPI package
`kubernetes-validate` ships (generated from the Kubernetes OpenAPI spec, strict flavour: unknown
fields are errors). Only the kinds the deploy/ manifests use are kept, plus every definition they
reach; descriptions are dropped to keep the pinned file small.

Maintainer tool, not run by the tests (they read the pinned file only):

    .venv/bin/pip download --no-deps -d /tmp/kv kubernetes-validate==1.37.0
    python3 -m zipfile -e /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl /tmp/kv/x
    scripts/pin-k8s-schemas.py /tmp/kv/x/kubernetes_validate/kubernetes-json-schema v1.33.0
"""
import json
import re
import sys
from pathlib import Path

# (apiVersion, kind, file in the package). Add a row when deploy/ starts using a new kind.
KINDS = [
    ("v1", "Namespace", "namespace-v1.json"),
    ("v1", "ServiceAccount", "serviceaccount-v1.json"),
    ("v1", "Secret", "secret-v1.json"),
    ("v1", "ConfigMap", "configmap-v1.json"),
    ("v1", "Service", "service-v1.json"),
    ("v1", "Pod", "pod-v1.json"),
    ("apps/v1", "Deployment", "deployment-apps-v1.json"),
    ("rbac.authorization.k8s.io/v1", "Role", "role-rbac-v1.json"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebinding-rbac-v1.json"),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudget-policy-v1.json"),
]
# Fragments the injection-template test validates on their own.
FRAGMENTS = ["io.k8s.api.core.v1.Container", "io.k8s.api.core.v1.Volume"]

REF = re.compile(r"#/\$defs/([A-Za-z0-9_.\-]+)")


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    if isinstance(node, str) and node.startswith("/api/_definitions.json#/$defs/"):
        return node[len("/api/_definitions.json"):]
    return node


def main():
    root, version = Path(sys.argv[1]), sys.argv[2]
    src = root / f"{version}-local-strict"
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    kinds = {}
    for api_version, kind, fname in KINDS:
        kinds[f"{api_version}/{kind}"] = strip(json.loads((src / fname).read_text()))
    todo = set(FRAGMENTS)
    for k in kinds.values():
        todo |= set(REF.findall(json.dumps(k)))
    keep = {}
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = strip(defs[name])
        todo |= set(REF.findall(json.dumps(keep[name]))) - set(keep)
    out = {
        "$comment": f"Kubernetes {version} strict JSON schemas, trimmed; from PyPI kubernetes-validate "
        "(see deploy/schemas/README.md). Regenerate with scripts/pin-k8s-schemas.py.",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "kinds": kinds,
        "$defs": dict(sorted(keep.items())),
    }
    dest = Path(__file__).resolve().parent.parent / "deploy/schemas/kubernetes" / f"{version}.json"
    dest.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    print(f"{dest}: {len(kinds)} kinds, {len(keep)} definitions")


if __name__ == "__main__":
    main()
