#!/usr/bin/env python3
"""Validates everything under deploy/ (run by `cargo test -p svidgate-e2e --test deploy`).

- every YAML file parses;
- every Kubernetes object is validated against its pinned schema: core kinds against the
  Kubernetes JSON schemas in deploy/schemas/kubernetes/<version>.json (strict: unknown fields are
  errors), CRD kinds (WasmPlugin, IstioOperator, cert-manager, prometheus-operator) against the openAPIV3Schema in
  deploy/schemas/crds/ converted to JSON schema the way the API server applies it (unknown fields
  are errors unless x-kubernetes-preserve-unknown-fields), with metadata checked as ObjectMeta;
  an object whose kind has no pinned schema is an error;
- Prometheus files (deploy/observability/*.yml: rules, scrape config) parse and have `groups` or
  `scrape_configs` (promtool checks them in `make test-observability`);
- the Helm values file is validated against deploy/schemas/helm-istiod-values.yaml;
- the `svidgate` injection template is identical in the IstioOperator and Helm files (it is
  rendered and injected by tests/tests/inject.rs, which validates the resulting Pod with
  `--pod FILE`);
- no private key material is committed under deploy/.

The policy documents (deploy/examples, each WasmPlugin pluginConfig) are checked by
`svidgate policy check`, and Envoy configs by `envoy --mode validate`, from tests/tests/deploy.rs.
Python stdlib + PyYAML + jsonschema (both installed by requirements.txt).
"""
import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCHEMAS = DEPLOY / "schemas"
K8S_VERSION = "v1.33.0"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Schemas


def load_k8s():
    doc = json.loads((SCHEMAS / "kubernetes" / f"{K8S_VERSION}.json").read_text())
    return doc["kinds"], doc["$defs"]


def openapi_to_jsonschema(s, top=True):
    """OpenAPI v3 (structural CRD schema) -> JSON schema, strict like `kubectl apply
    --validate=strict`: fields not declared are errors, unless the node preserves unknown fields."""
    out = {}
    preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    if s.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif "type" in s:
        out["type"] = [s["type"], "null"] if s.get("nullable") else s["type"]
    for k in ("enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems",
              "maxItems", "maxProperties", "minProperties", "required"):
        if k in s:
            out[k] = s[k]
    if "properties" in s:
        out["properties"] = {k: openapi_to_jsonschema(v, False) for k, v in s["properties"].items()}
    if "items" in s:
        out["items"] = openapi_to_jsonschema(s["items"], False)
    if isinstance(s.get("additionalProperties"), dict):
        out["additionalProperties"] = openapi_to_jsonschema(s["additionalProperties"], False)
    elif s.get("type") == "object" and not preserve and "additionalProperties" not in s:
        out["additionalProperties"] = False
    return out


def load_crds(k8s_defs):
    crds = {}
    for f in sorted((SCHEMAS / "crds").glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        schema = openapi_to_jsonschema(crd["openAPIV3Schema"])
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"const": crd["apiVersion"]}
        props["kind"] = {"const": crd["kind"]}
        props["metadata"] = {"$ref": f"#/$defs/{OBJECT_META}"}
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
        schema["$defs"] = k8s_defs
        crds[f"{crd['apiVersion']}/{crd['kind']}"] = (schema, f.name)
    return crds


_VALIDATORS = {}


def validator(schema):
    """One (checked) validator per schema object: the schemas share the large Kubernetes $defs."""
    key = id(schema)
    if key not in _VALIDATORS:
        jsonschema.Draft202012Validator.check_schema(schema)
        _VALIDATORS[key] = (schema, jsonschema.Draft202012Validator(schema))
    return _VALIDATORS[key][1]


def errors_of(schema, instance):
    v = validator(schema)
    return sorted(
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}"
        for e in v.iter_errors(instance)
    )


class Schemas:
    def __init__(self):
        self.k8s_kinds, self.k8s_defs = load_k8s()
        self._kind_schemas = {}
        self.crds = load_crds(self.k8s_defs)
        self.helm_values = openapi_to_jsonschema(
            yaml.safe_load((SCHEMAS / "helm-istiod-values.yaml").read_text())["openAPIV3Schema"])

    def for_object(self, obj):
        key = f"{obj.get('apiVersion')}/{obj.get('kind')}"
        if key in self.k8s_kinds:
            if key not in self._kind_schemas:
                schema = dict(self.k8s_kinds[key])
                schema["$defs"] = self.k8s_defs
                # The package's schemas allow a missing metadata; the API server does not.
                schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
                self._kind_schemas[key] = schema
            return self._kind_schemas[key], f"kubernetes/{K8S_VERSION}.json"
        if key in self.crds:
            schema, name = self.crds[key]
            return schema, f"crds/{name}"
        return None, None

    def definition(self, name):
        if name not in self._kind_schemas:
            self._kind_schemas[name] = {"$ref": f"#/$defs/{name}", "$defs": self.k8s_defs}
        return self._kind_schemas[name]


# ---------------------------------------------------------------------------------------------
# The injection template (a Go text/template string)

# The template is rendered, injected and checked by tests/tests/inject.rs (Go text/template
# semantics with Istio's template data and functions); the Pod it produces comes back here through
# `--pod FILE` to be validated against the pinned Kubernetes schema.


def template_checks(templates):
    """templates: {source file: template text}. The IstioOperator and the Helm values must carry
    the same template."""
    if len(set(templates.values())) != 1:
        raise Failure(f"the svidgate template differs between {', '.join(sorted(templates))}")


def validate_pod(path):
    """Validates a Pod (JSON or YAML) against the pinned Kubernetes schema; for the injected pods
    tests/tests/inject.rs renders."""
    schemas = Schemas()
    pod = yaml.safe_load(Path(path).read_text())
    schema, source = schemas.for_object(pod)
    if schema is None or pod.get("kind") != "Pod":
        print(f"{path}: not a v1 Pod", file=sys.stderr)
        return 1
    errs = errors_of(schema, pod)
    for e in errs:
        print(f"FAIL {path}: {e}")
    if not errs:
        print(f"ok   {path}: Pod ({source})")
    return 1 if errs else 0


# ---------------------------------------------------------------------------------------------
# Files


def yaml_docs(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        raise Failure(f"{path.relative_to(ROOT)}: not valid YAML: {e}") from e


def classify(path):
    rel = path.relative_to(DEPLOY).as_posix()
    if rel.startswith("schemas/"):
        return "schema"
    if rel.startswith("examples/"):
        return "policy"
    if rel.startswith("envoy/") or path.name.startswith("envoy"):
        return "envoy"
    if rel == "istio/helm-values.yaml":
        return "helm-values"
    if rel.startswith("observability/") and path.suffix == ".yml":
        return "prometheus"
    return "kubernetes"


def check_file(schemas, path, templates):
    rel = str(path.relative_to(ROOT))
    kind = classify(path)
    docs = yaml_docs(path)
    if not docs:
        raise Failure(f"{rel}: no YAML document")
    lines = []
    if kind == "schema":
        return [f"ok   {rel} (schema file, parses)"]
    if kind == "envoy":
        return [f"ok   {rel} (Envoy config, parses; `envoy --mode validate` runs in tests/tests/deploy.rs)"]
    if kind == "policy":
        for d in docs:
            if not isinstance(d, dict) or "trustDomain" not in d or "policies" not in d:
                raise Failure(f"{rel}: a policy document needs trustDomain and policies")
        return [f"ok   {rel} (policy document, parses; `svidgate policy check` runs in tests/tests/deploy.rs)"]
    if kind == "prometheus":
        (d,) = docs
        if not isinstance(d, dict) or not ({"groups", "scrape_configs"} & set(d)):
            raise Failure(f"{rel}: a Prometheus rules file (groups) or scrape config (scrape_configs)")
        return [f"ok   {rel} (Prometheus file, parses; `promtool` checks it in `make test-observability`)"]
    if kind == "helm-values":
        (d,) = docs
        errs = errors_of(schemas.helm_values, d)
        if errs:
            raise Failure(f"{rel}: istiod Helm values:\n  " + "\n  ".join(errs))
        templates[rel] = d["sidecarInjectorWebhook"]["templates"]["svidgate"]
        return [f"ok   {rel} (istiod Helm values: schemas/helm-istiod-values.yaml)"]
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
            raise Failure(f"{rel}: document {i}: not a Kubernetes object (no apiVersion/kind)")
        schema, source = schemas.for_object(d)
        name = f"{d['kind']} {d.get('metadata', {}).get('namespace', '-')}/{d.get('metadata', {}).get('name')}"
        if schema is None:
            raise Failure(f"{rel}: {name}: no pinned schema for {d['apiVersion']}/{d['kind']} "
                          "(add it to deploy/schemas, see deploy/schemas/README.md)")
        errs = errors_of(schema, d)
        if errs:
            raise Failure(f"{rel}: {name} against {source}:\n  " + "\n  ".join(errs))
        if d["kind"] == "IstioOperator":
            templates[rel] = d["spec"]["values"]["sidecarInjectorWebhook"]["templates"]["svidgate"]
        lines.append(f"ok   {rel}: {name} ({source})")
    return lines


PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def run(schemas, files):
    templates, lines, failures = {}, [], []
    for f in files:
        text = f.read_text()
        if PRIVATE_KEY.search(text):
            failures.append(f"{f.relative_to(ROOT)}: contains a PEM private key; deploy/ must hold placeholders only")
            continue
        try:
            lines += check_file(schemas, f, templates)
        except Failure as e:
            failures.append(str(e))
    if templates:
        try:
            template_checks(templates)
            lines.append(f"ok   svidgate injection template ({', '.join(sorted(templates))}): identical "
                         "(rendered, injected and validated by tests/tests/inject.rs)")
        except Failure as e:
            failures.append(str(e))
    return lines, failures


def self_test(schemas):
    """The validator must reject what the API server (or Istio) would reject."""
    wp = next(d for d in yaml_docs(DEPLOY / "istio/wasmplugin.yaml"))
    dep = next(d for d in yaml_docs(DEPLOY / "ca/svidgate-ca.yaml") if d["kind"] == "Deployment")
    cert = next(d for d in yaml_docs(DEPLOY / "ca/cert-manager.yaml") if d["kind"] == "Certificate")
    cases = []

    def mutate(obj, fn):
        o = copy.deepcopy(obj)
        fn(o)
        return o

    cases.append(("WasmPlugin bad failStrategy", mutate(wp, lambda o: o["spec"].update(failStrategy="CLOSE"))))
    cases.append(("WasmPlugin bad sha256", mutate(wp, lambda o: o["spec"].update(sha256="sha256:abc"))))
    cases.append(("WasmPlugin unknown field", mutate(wp, lambda o: o["spec"].update(failClosed=True))))
    cases.append(("WasmPlugin without url", mutate(wp, lambda o: o["spec"].pop("url"))))
    cases.append(("WasmPlugin bad metadata", mutate(wp, lambda o: o["metadata"].update(labels=["x"]))))
    cases.append(("Deployment unknown container field", mutate(
        dep, lambda o: o["spec"]["template"]["spec"]["containers"][0].update(restartpolicy="Always"))))
    cases.append(("Deployment port as string", mutate(
        dep, lambda o: o["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="15012"))))
    cases.append(("Certificate without secretName", mutate(cert, lambda o: o["spec"].pop("secretName"))))
    cases.append(("Certificate bad usage", mutate(cert, lambda o: o["spec"].update(usages=["signing all"]))))
    cases.append(("unknown kind", {"apiVersion": "v1", "kind": "Frobnicator", "metadata": {"name": "x"}}))
    wrong = []
    for what, obj in cases:
        schema, _ = schemas.for_object(obj)
        if schema is not None and not errors_of(schema, obj):
            wrong.append(what)
    if wrong:
        raise Failure("validator self-test: accepted invalid input: " + ", ".join(wrong))
    return len(cases)


def write_plugin_configs(outdir):
    """Writes each WasmPlugin's whole pluginConfig (the policy document and the `filter`
    settings, all of which `svidgate policy check` reads) to OUTDIR/<namespace>.<name>.json."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted(DEPLOY.rglob("*.yaml")):
        if classify(f) != "kubernetes":
            continue
        for d in yaml_docs(f):
            if isinstance(d, dict) and d.get("kind") == "WasmPlugin":
                cfg = d["spec"]["pluginConfig"]
                meta = d["metadata"]
                (out / f"{meta.get('namespace', 'default')}.{meta['name']}.json").write_text(json.dumps(cfg, indent=2))
                n += 1
    print(f"wrote {n} plugin configs to {out}")
    return 0


def write_ca_command(dest):
    """Writes the svidgate-ca container's args (deploy/ca/svidgate-ca.yaml) to DEST as JSON."""
    dep = next(d for d in yaml_docs(DEPLOY / "ca/svidgate-ca.yaml") if d["kind"] == "Deployment")
    c = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "svidgate-ca")
    Path(dest).write_text(json.dumps({"args": c["args"]}, indent=2))
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--ca-command":
        return write_ca_command(sys.argv[2])
    if len(sys.argv) == 3 and sys.argv[1] == "--plugin-configs":
        return write_plugin_configs(sys.argv[2])
    if len(sys.argv) == 3 and sys.argv[1] == "--pod":
        return validate_pod(sys.argv[2])
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        print("no YAML files under deploy/", file=sys.stderr)
        return 1
    schemas = Schemas()
    lines, failures = run(schemas, files)
    try:
        n = self_test(schemas)
        lines.append(f"ok   validator self-test: {n} invalid inputs rejected")
    except Failure as e:
        failures.append(str(e))
    for line in lines:
        print(line)
    for f in failures:
        print(f"FAIL {f}")
    print(f"deploy validation: {len(lines)} ok, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
