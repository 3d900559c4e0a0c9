#!/usr/bin/env python3
"""Validates everything under deploy/ (run by `cargo test -p svidgate-e2e --test deploy`).

- every YAML file parses;
- every Kubernetes object is validated against its pinned schema: core kinds against the
  Kubernetes JSON schemas in deploy/schemas/kubernetes/<version>.json (strict: unknown fields are
  errors), CRD kinds (WasmPlugin, IstioOperator, cert-manager) against the openAPIV3Schema in
  deploy/schemas/crds/ converted to JSON schema the way the API server applies it (unknown fields
  are errors unless x-kubernetes-preserve-unknown-fields), with metadata checked as ObjectMeta;
  an object whose kind has no pinned schema is an error;
- the Helm values file is validated against deploy/schemas/helm-istiod-values.yaml;
- the `svidgate` injection template is identical in the IstioOperator and Helm files; its Go
  template expressions are rendered with sample values, the result parses as YAML, its containers
  and volumes validate against the Kubernetes Container/Volume schemas, and the properties the
  deployment relies on hold (native sidecar, startup probe, shared socket volume, hardening);
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

# The injection template's socket directory: Istio's external-SDS path.
SOCKET_DIR = "/var/run/secrets/workload-spiffe-uds"


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

# The Go template expressions the template may use are rendered here with sample values. A new
# expression in the template must be added to render_template, so the test keeps rendering what
# Istio renders. Istio's template data (pkg/kube/inject, Istio >= 1.25): .ObjectMeta (the pod's),
# .MeshConfig (mesh config proto), .NativeSidecars (injector's native-sidecar setting); functions:
# Istio's (`annotation`, ...) plus sprig (`default`, `fail`, ...).
SAMPLE_MESH_TRUST_DOMAIN = "cluster.local"

ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
STR = r'(?:`[^`]*`|"(?:[^"\\]|\\.)*")'


def go_string(lit):
    return lit[1:-1] if lit.startswith("`") else json.loads(lit)


def render_template(text, native_sidecars=False, annotations=None):
    """Renders the subset of Go templates the svidgate template uses: comments, `$v := int`,
    `$v := ne (index .ObjectMeta.Annotations KEY | default (printf "%t" .NativeSidecars)) "false"`
    (Istio's own native-sidecar decision), `$v`, `if $v` / `end`, `fail "msg"`,
    `annotation .ObjectMeta KEY DEFAULT`, `.MeshConfig.TrustDomain | default DEFAULT`. Trim markers
    (`{{-`, `-}}`) are honoured. Raises Failure on an expression outside that subset or on `fail`."""
    annotations = annotations or {}
    out, variables, skipping, pos = [], {}, [], 0
    for m in ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if m.group(0).startswith("{{-"):
            chunk = chunk.rstrip()
        if not any(skipping):
            out.append(chunk)
        pos = m.end()
        if m.group(0).endswith("-}}"):
            while pos < len(text) and text[pos].isspace():
                pos += 1
        expr = m.group(1).strip()
        if expr.startswith("/*"):
            continue
        if mm := re.fullmatch(r"if\s+\$(\w+)", expr):
            if mm.group(1) not in variables:
                raise Failure(f"template: undefined variable ${mm.group(1)}")
            skipping.append(not variables[mm.group(1)])
            continue
        if expr == "end":
            if not skipping:
                raise Failure("template: unbalanced {{ end }}")
            skipping.pop()
            continue
        if any(skipping):
            continue
        if mm := re.fullmatch(r"\$(\w+)\s*:=\s*(\d+)", expr):
            variables[mm.group(1)] = mm.group(2)
        elif mm := re.fullmatch(
                rf'\$(\w+)\s*:=\s*ne\s+\(index\s+\.ObjectMeta\.Annotations\s+({STR})\s*\|\s*'
                rf'default\s+\(printf\s+"%t"\s+\.NativeSidecars\)\)\s+"false"', expr):
            value = annotations.get(go_string(mm.group(2)), "") or ("true" if native_sidecars else "false")
            variables[mm.group(1)] = value != "false"
        elif mm := re.fullmatch(r"\$(\w+)", expr):
            if mm.group(1) not in variables:
                raise Failure(f"template: undefined variable ${mm.group(1)}")
            out.append(str(variables[mm.group(1)]))
        elif mm := re.fullmatch(rf"fail\s+({STR})", expr):
            raise Failure(f"template fail: {go_string(mm.group(1))}")
        elif mm := re.fullmatch(rf"annotation\s+\.ObjectMeta\s+({STR})\s+({STR})", expr):
            out.append(annotations.get(go_string(mm.group(1)), go_string(mm.group(2))))
        elif mm := re.fullmatch(rf"\.MeshConfig\.TrustDomain\s*\|\s*default\s+({STR})", expr):
            out.append(SAMPLE_MESH_TRUST_DOMAIN or go_string(mm.group(1)))
        else:
            raise Failure(f"template: expression not covered by the test renderer: {{{{ {expr} }}}}")
    if skipping:
        raise Failure("template: {{ if }} without {{ end }}")
    out.append(text[pos:])
    return "".join(out)


# (injector's NativeSidecars, pod annotations, must the template render?)
NATIVE_SIDECAR_CASES = [
    (False, {}, True),
    (True, {"sidecar.istio.io/nativeSidecar": "false"}, True),
    (True, {}, False),
    (False, {"sidecar.istio.io/nativeSidecar": "true"}, False),
]


def template_checks(schemas, templates):
    """templates: {source file: template text}. Returns the number of objects validated."""
    texts = set(templates.values())
    if len(texts) != 1:
        raise Failure(f"the svidgate template differs between {', '.join(sorted(templates))}")
    text = texts.pop()
    for native, annotations, renders in NATIVE_SIDECAR_CASES:
        try:
            render_template(text, native_sidecars=native, annotations=annotations)
            if not renders:
                raise Failure(f"template: rendered with NativeSidecars={native} {annotations}: "
                              "with istio-proxy as a native sidecar it must fail")
        except Failure as e:
            if renders or "nativeSidecar" not in str(e):
                raise
    rendered = yaml.safe_load(render_template(text))
    spec = rendered.get("spec") if isinstance(rendered, dict) else None
    if not isinstance(spec, dict) or set(rendered) != {"spec"}:
        raise Failure("template: must render to {spec: ...} (a pod overlay)")
    problems, count = [], 0
    for field, definition in (("initContainers", "io.k8s.api.core.v1.Container"),
                              ("containers", "io.k8s.api.core.v1.Container"),
                              ("volumes", "io.k8s.api.core.v1.Volume")):
        for item in spec.get(field, []):
            count += 1
            for e in errors_of(schemas.definition(definition), item):
                problems.append(f"spec.{field}[{item.get('name')}]: {e}")
    extra = set(spec) - {"initContainers", "containers", "volumes"}
    if extra:
        problems.append(f"spec: unexpected keys {sorted(extra)}")
    if problems:
        raise Failure("template:\n  " + "\n  ".join(problems))

    inits = {c["name"]: c for c in spec.get("initContainers", [])}
    c = inits.get("svidgate")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    proxy = {x["name"]: x for x in spec.get("containers", [])}.get("istio-proxy", {})
    must = []
    if c is None:
        raise Failure("template: no init container named svidgate")
    must.append((c.get("restartPolicy") == "Always", "svidgate is a native sidecar (restartPolicy: Always)"))
    probe = (c.get("startupProbe") or {}).get("httpGet") or {}
    must.append((probe.get("path") == "/healthz/ready", "startupProbe GETs /healthz/ready"))
    admin = [a for a in c.get("args", []) if a.startswith("--admin-addr=")]
    must.append((len(admin) == 1 and admin[0].rsplit(":", 1)[-1] == str(probe.get("port")),
                 "startupProbe port equals the --admin-addr port"))
    must.append((f"--sds-socket={SOCKET_DIR}/socket" in c.get("args", []), f"--sds-socket={SOCKET_DIR}/socket"))
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    pmounts = {m["name"]: m for m in proxy.get("volumeMounts", [])}
    must.append(("emptyDir" in vols.get("workload-socket", {}), "volume workload-socket is an emptyDir"))
    must.append((mounts.get("workload-socket", {}).get("mountPath") == SOCKET_DIR
                 and pmounts.get("workload-socket", {}).get("mountPath") == SOCKET_DIR,
                 f"svidgate and istio-proxy both mount workload-socket at {SOCKET_DIR}"))
    env = {e["name"]: e for e in c.get("env", [])}
    must.append((env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
                 "POD_NAMESPACE from the downward API"))
    must.append((env.get("SERVICE_ACCOUNT", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.serviceAccountName",
                 "SERVICE_ACCOUNT from the downward API"))
    must.append((bool(env.get("TRUST_DOMAIN", {}).get("value")) and bool(env.get("CA_ADDR", {}).get("value")),
                 "TRUST_DOMAIN and CA_ADDR set"))
    token = [s.get("serviceAccountToken") for s in vols.get(mounts.get("svidgate-token", {}).get("name", ""), {}).get("projected", {}).get("sources", [])]
    must.append((any(t and t.get("audience") == "istio-ca" for t in token), "projected token with audience istio-ca"))
    sc = c.get("securityContext", {})
    must.append((sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
                 and sc.get("allowPrivilegeEscalation") is False
                 and sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add")
                 and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                 "non-root, read-only root fs, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault"))
    res = c.get("resources", {})
    must.append(("memory" in res.get("requests", {}) and "memory" in res.get("limits", {}), "memory request and limit"))
    bad = [what for ok, what in must if not ok]
    if bad:
        raise Failure("template: required properties missing:\n  " + "\n  ".join(bad))
    return count


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
            n = template_checks(schemas, templates)
            lines.append(f"ok   svidgate injection template ({', '.join(sorted(templates))}): "
                         f"renders, {n} containers/volumes valid, required properties hold")
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
    try:
        render_template("{{ .Values.global.hub }}")
        wrong.append("template renderer accepted an unknown expression")
    except Failure:
        pass
    if wrong:
        raise Failure("validator self-test: accepted invalid input: " + ", ".join(wrong))
    return len(cases) + 1


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


# Sample downward-API values for --agent-command.
SAMPLE_FIELDS = {"metadata.namespace": "shop", "spec.serviceAccountName": "backend"}


def write_agent_command(dest):
    """Writes the svidgate container's args and env, as rendered by the injection template (env
    from the downward API filled with sample values), to DEST as JSON: {"args": [...], "env": {...}}.
    tests/tests/deploy.rs runs the built binary with them to check the flags and variables exist."""
    d = yaml_docs(DEPLOY / "istio/helm-values.yaml")[0]
    text = d["sidecarInjectorWebhook"]["templates"]["svidgate"]
    spec = yaml.safe_load(render_template(text))["spec"]
    c = next(c for c in spec["initContainers"] if c["name"] == "svidgate")
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = SAMPLE_FIELDS[e["valueFrom"]["fieldRef"]["fieldPath"]]
    Path(dest).write_text(json.dumps({"args": c.get("args", []), "env": env}, indent=2))
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
    if len(sys.argv) == 3 and sys.argv[1] == "--agent-command":
        return write_agent_command(sys.argv[2])
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
