//! The `svidgate` injection template (deploy/istio/) rendered the way Istio's sidecar injector
//! renders it, merged into a pod and post-processed the way the injector does, then checked:
//!
//! - rendering: Go `text/template` semantics (the `gtmpl` crate) with Istio's template data
//!   (`SidecarTemplateData` in istio/istio pkg/kube/inject/inject.go: `.ObjectMeta`, `.MeshConfig`,
//!   `.Values`, `.NativeSidecars`, `.ProxyUID`, `.ProxyGID`, ...), Istio's functions the template
//!   uses (pkg/kube/inject/template.go: `annotation`, `isset`, `valueOrDefault`,
//!   `excludeInboundPort`) and sprig's (`default`, `fail`); an unknown function or field fails the
//!   test. `.Values` = the chart defaults (tests/data/istio-injector-values.yaml) with
//!   deploy/istio/helm-values.yaml merged over them;
//! - injection: Istio's own sidecar template output (tests/data/istio-sidecar-overlay.yaml), then
//!   ours, applied as strategic-merge overlays (`applyOverlayYAML`), then the probe rewrite
//!   (`applyRewrite`, pkg/kube/inject/app_probe.go) and `reorderPod` (pkg/kube/inject/webhook.go);
//! - the resulting Pod validates against the pinned Kubernetes v1.33 schema
//!   (scripts/validate-deploy.py --pod), and the startup properties hold: exec probes only, the
//!   socket name told to istio-proxy, the UID/GID from `.ProxyUID`/`.ProxyGID`, CA address,
//!   audience and cluster from Istio's values, the admin port outside inbound capture, svidgate
//!   before the iptables init container, and a refusal whenever istio-proxy would be a native
//!   sidecar;
//! - the agent runs with the rendered arguments and environment (against a real `svidgate ca`);
//! - pilot-agent semantics the template relies on, with a long-running agent: renewal at Istio's
//!   time, and the rendered exec probes following the agent's state.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, ensure, Context, Result};
use gtmpl::{FuncError, Template, Value};
use serde_json::{json, Map, Value as Json};
use svidgate_e2e::{output_text, repo_root, run_ok, svidgate_bin, venv_python};

/// pilot-agent's fixed directory for the workload SDS socket (istio/istio pkg/security/security.go,
/// `WorkloadIdentityPath`); only the file name is configurable (`WORKLOAD_IDENTITY_SOCKET_FILE`).
const WORKLOAD_IDENTITY_PATH: &str = "/var/run/secrets/workload-spiffe-uds";
/// pilot-agent's default socket file name (`DefaultWorkloadIdentitySocketFile`): with it, a missing
/// socket makes pilot-agent serve istiod certificates itself instead of failing.
const ISTIO_DEFAULT_SOCKET_FILE: &str = "socket";
/// Where the image puts the binary (scripts/oci.py `BINARY_PATH`); the exec probes call it.
const IMAGE_BINARY: &str = "/usr/local/bin/svidgate";

// ---------------------------------------------------------------------------------------------
// Istio's template functions (pkg/kube/inject/template.go) and sprig's, with Go's semantics.

fn func_err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

/// Go's `fmt.Sprint` of a template value.
fn go_sprint(v: &Value) -> String {
    match v {
        Value::NoValue | Value::Nil => "<nil>".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// sprig's `empty`: nil, false, 0, "" and empty collections.
fn sprig_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => {
            n.as_i64() == Some(0) || n.as_u64() == Some(0) || n.as_f64() == Some(0.0)
        }
        Value::Array(a) => a.is_empty(),
        Value::Map(m) => m.is_empty(),
        _ => false,
    }
}

/// sprig `default DEFAULT [GIVEN]`.
fn sprig_default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, given] => Ok(if sprig_empty(given) {
            d.clone()
        } else {
            given.clone()
        }),
        _ => Err(FuncError::ExactlyXArgs("default".into(), 2)),
    }
}

/// sprig `fail MSG`: the template execution fails with MSG.
fn sprig_fail(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [Value::String(msg)] => Err(func_err(format!("fail: {msg}"))),
        _ => Err(func_err("fail takes one string")),
    }
}

fn annotations_of(meta: &Value) -> Result<&HashMap<String, Value>, FuncError> {
    match meta {
        Value::Object(o) => match o.get("Annotations") {
            Some(Value::Map(m)) => Ok(m),
            _ => Err(func_err("ObjectMeta without Annotations map")),
        },
        _ => Err(func_err("annotation: first argument is not an ObjectMeta")),
    }
}

/// Istio `annotation META NAME DEFAULT` (`getAnnotation`): the annotation, else fmt.Sprint(DEFAULT).
fn istio_annotation(args: &[Value]) -> Result<Value, FuncError> {
    let [meta, Value::String(name), default] = args else {
        return Err(func_err("annotation takes ObjectMeta, name, default"));
    };
    Ok(match annotations_of(meta)?.get(name) {
        Some(v) => Value::String(go_sprint(v)),
        None => Value::String(go_sprint(default)),
    })
}

/// Istio `isset MAP KEY`.
fn istio_isset(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [Value::Map(m), Value::String(k)] => Ok(Value::Bool(m.contains_key(k))),
        _ => Err(func_err("isset takes a map[string]string and a key")),
    }
}

/// Istio `valueOrDefault VALUE DEFAULT`: DEFAULT when VALUE is "" or nil.
fn istio_value_or_default(args: &[Value]) -> Result<Value, FuncError> {
    let [value, default] = args else {
        return Err(FuncError::ExactlyXArgs("valueOrDefault".into(), 2));
    };
    Ok(match value {
        Value::NoValue | Value::Nil => default.clone(),
        Value::String(s) if s.is_empty() => default.clone(),
        v => v.clone(),
    })
}

/// Istio `excludeInboundPort PORT LIST`: LIST with PORT appended unless already there.
fn istio_exclude_inbound_port(args: &[Value]) -> Result<Value, FuncError> {
    let [port, Value::String(excluded)] = args else {
        return Err(func_err("excludeInboundPort takes a port and a string"));
    };
    let port = go_sprint(port).trim().to_owned();
    if port.is_empty() || port == "0" {
        return Ok(Value::String(excluded.clone()));
    }
    let mut out = Vec::new();
    for p in excluded.split(',') {
        if p == port {
            return Ok(Value::String(excluded.clone()));
        }
        let p = p.trim();
        if !p.is_empty() {
            out.push(p.to_owned());
        }
    }
    out.push(port);
    Ok(Value::String(out.join(",")))
}

// ---------------------------------------------------------------------------------------------
// Template data

/// JSON -> template value. JSON objects become Go maps (a missing key is `<no value>`, as for
/// Istio's `map[string]any` values); structs are built with `Value::Object` below (a missing
/// field is an error, as in Go).
fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Recursive map merge (Helm's values merge; `over` wins).
fn merge_values(base: &mut Json, over: &Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_values(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn read_yaml(path: &Path) -> Result<Json> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// What one injection sees: the pod, the injector's settings and Istio's values.
#[derive(Clone)]
struct Injection {
    /// The pod's annotations (the opt-in annotations are added by `pod()`).
    annotations: Vec<(String, String)>,
    /// The injector's native-sidecar decision (`ENABLE_NATIVE_SIDECARS` / node versions).
    native_sidecars: bool,
    /// `GetProxyIDs`: 1337, or the namespace's OpenShift UID range maximum and supplemental group.
    proxy_uid: i64,
    proxy_gid: i64,
    /// Helm values set on top of the chart defaults and deploy/istio/helm-values.yaml.
    values: Json,
}

impl Default for Injection {
    fn default() -> Self {
        Injection {
            annotations: vec![
                (
                    "inject.istio.io/templates".into(),
                    "sidecar,svidgate".into(),
                ),
                ("sidecar.istio.io/nativeSidecar".into(), "false".into()),
            ],
            native_sidecars: false,
            proxy_uid: 1337,
            proxy_gid: 1337,
            values: json!({}),
        }
    }
}

impl Injection {
    fn annotate(mut self, k: &str, v: &str) -> Self {
        self.annotations.retain(|(key, _)| key != k);
        self.annotations.push((k.into(), v.into()));
        self
    }

    fn without_annotation(mut self, k: &str) -> Self {
        self.annotations.retain(|(key, _)| key != k);
        self
    }

    fn with_values(mut self, v: Json) -> Self {
        merge_values(&mut self.values, &v);
        self
    }

    /// The chart defaults, deploy/istio/helm-values.yaml over them, then this case's values.
    fn merged_values(&self) -> Result<Json> {
        let mut values = read_yaml(&repo_root().join("tests/data/istio-injector-values.yaml"))?;
        let helm = read_yaml(&repo_root().join("deploy/istio/helm-values.yaml"))?;
        merge_values(&mut values, &helm);
        merge_values(&mut values, &self.values);
        Ok(values)
    }

    fn annotation_map(&self) -> Map<String, Json> {
        self.annotations
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect()
    }

    /// Istio's `SidecarTemplateData` for this pod.
    fn data(&self, pod: &Json) -> Result<Value> {
        let values = self.merged_values()?;
        let trust_domain = values["meshConfig"]["trustDomain"]
            .as_str()
            .unwrap_or("cluster.local")
            .to_owned();
        let meta = &pod["metadata"];
        Ok(object(vec![
            (
                "ObjectMeta",
                object(vec![
                    ("Name", to_value(&meta["name"])),
                    ("Namespace", to_value(&meta["namespace"])),
                    ("Labels", to_value(&meta["labels"])),
                    ("Annotations", to_value(&meta["annotations"])),
                ]),
            ),
            (
                "MeshConfig",
                object(vec![("TrustDomain", Value::String(trust_domain))]),
            ),
            ("Values", to_value(&values)),
            (
                "Revision",
                to_value(values.get("revision").unwrap_or(&json!(""))),
            ),
            ("NativeSidecars", Value::Bool(self.native_sidecars)),
            ("ProxyUID", Value::from(self.proxy_uid)),
            ("ProxyGID", Value::from(self.proxy_gid)),
        ]))
    }

    /// The workload pod of deploy/istio/example-workload.yaml with this case's annotations and,
    /// on the app container, an httpGet readiness and a tcpSocket liveness probe (which Istio
    /// must rewrite, unlike svidgate's exec probes).
    fn pod(&self) -> Result<Json> {
        let text = std::fs::read_to_string(repo_root().join("deploy/istio/example-workload.yaml"))?;
        let mut deployment = None;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let d: Json = serde::Deserialize::deserialize(doc)?;
            if d["kind"] == "Deployment" {
                deployment = Some(d);
            }
        }
        let d = deployment.context("example-workload.yaml has no Deployment")?;
        let template = &d["spec"]["template"];
        let mut metadata = template["metadata"].clone();
        metadata["name"] = json!("backend-7d9f8-abcde");
        metadata["namespace"] = d["metadata"]["namespace"].clone();
        metadata["annotations"] = Json::Object(self.annotation_map());
        let mut spec = template["spec"].clone();
        let app = spec["containers"][0]
            .as_object_mut()
            .context("no app container")?;
        app.insert(
            "readinessProbe".into(),
            json!({"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5}),
        );
        app.insert(
            "livenessProbe".into(),
            json!({"tcpSocket": {"port": 8080}, "periodSeconds": 10}),
        );
        Ok(json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}))
    }
}

/// The svidgate template text; it must be the same in the IstioOperator and the Helm values.
fn template_text() -> Result<String> {
    let helm = read_yaml(&repo_root().join("deploy/istio/helm-values.yaml"))?;
    let op = read_yaml(&repo_root().join("deploy/istio/istio-operator.yaml"))?;
    let a = helm["sidecarInjectorWebhook"]["templates"]["svidgate"]
        .as_str()
        .context("helm-values.yaml: no svidgate template")?;
    let b = op["spec"]["values"]["sidecarInjectorWebhook"]["templates"]["svidgate"]
        .as_str()
        .context("istio-operator.yaml: no svidgate template")?;
    ensure!(
        a == b,
        "the svidgate template differs between helm-values.yaml and istio-operator.yaml"
    );
    Ok(a.to_owned())
}

/// Renders the svidgate template (Istio: `runTemplate`); Err carries the template's error.
fn render(case: &Injection, pod: &Json) -> Result<Json> {
    let mut t = Template::default();
    t.add_func("default", sprig_default);
    t.add_func("fail", sprig_fail);
    t.add_func("annotation", istio_annotation);
    t.add_func("isset", istio_isset);
    t.add_func("valueOrDefault", istio_value_or_default);
    t.add_func("excludeInboundPort", istio_exclude_inbound_port);
    t.parse(template_text()?)
        .map_err(|e| anyhow!("template parse: {e}"))?;
    let out = t
        .render(&gtmpl::Context::from(case.data(pod)?))
        .map_err(|e| anyhow!("template execution: {e}"))?;
    serde_yaml::from_str(&out).with_context(|| format!("rendered template is not YAML:\n{out}"))
}

// ---------------------------------------------------------------------------------------------
// The injector's merge and post-processing

/// The strategic-merge key of a Pod list field (k8s.io/api core/v1 `patchMergeKey`); other lists
/// are replaced.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "volumes" | "env" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

/// Istio's `applyOverlayYAML`: a strategic merge patch of the overlay onto the pod.
fn overlay(base: &mut Json, patch: &Json) {
    let (Json::Object(b), Json::Object(p)) = (&mut *base, patch) else {
        *base = patch.clone();
        return;
    };
    for (k, pv) in p {
        if pv.is_null() {
            b.remove(k);
            continue;
        }
        match (b.get_mut(k), merge_key(k), pv) {
            (Some(Json::Array(items)), Some(key), Json::Array(patch_items)) => {
                for pi in patch_items {
                    match items.iter_mut().find(|i| i[key] == pi[key]) {
                        Some(existing) => overlay(existing, pi),
                        None => items.push(pi.clone()),
                    }
                }
            }
            (Some(slot @ Json::Object(_)), _, Json::Object(_)) => overlay(slot, pv),
            _ => {
                b.insert(k.clone(), pv.clone());
            }
        }
    }
}

/// Istio's `modifyContainers` with MoveFirst / MoveLast.
fn move_container(list: &mut Vec<Json>, name: &str, first: bool) {
    if let Some(i) = list.iter().position(|c| c["name"] == name) {
        let c = list.remove(i);
        if first {
            list.insert(0, c);
        } else {
            list.push(c);
        }
    }
}

fn containers_mut<'a>(pod: &'a mut Json, field: &str) -> &'a mut Vec<Json> {
    if !pod["spec"][field].is_array() {
        pod["spec"][field] = json!([]);
    }
    match pod["spec"][field].as_array_mut() {
        Some(v) => v,
        None => unreachable!("just set to an array"),
    }
}

/// Istio's `reorderPod` for a pod where istio-proxy is a regular container (the only case the
/// template renders): istio-validation first, istio-init last (iptables after every init
/// container, so none of them is blackholed).
fn reorder_pod(pod: &mut Json) {
    let inits = containers_mut(pod, "initContainers");
    move_container(inits, "istio-validation", true);
    move_container(inits, "istio-init", false);
    let containers = containers_mut(pod, "containers");
    move_container(containers, "istio-proxy", false);
}

/// Istio's `patchRewriteProbe` (app_probe.go): every httpGet, tcpSocket or grpc probe of every
/// container but istio-proxy becomes an httpGet on pilot-agent's status port.
fn rewrite_probes(pod: &mut Json, status_port: u16) {
    for field in ["containers", "initContainers"] {
        for c in containers_mut(pod, field) {
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            if name == "istio-proxy" {
                continue;
            }
            for (probe, kind) in [
                ("readinessProbe", "readyz"),
                ("livenessProbe", "livez"),
                ("startupProbe", "startupz"),
            ] {
                let Some(p) = c.get_mut(probe).and_then(Json::as_object_mut) else {
                    continue;
                };
                if ["httpGet", "tcpSocket", "grpc"]
                    .iter()
                    .any(|k| p.contains_key(*k))
                {
                    p.remove("tcpSocket");
                    p.remove("grpc");
                    p.insert(
                        "httpGet".into(),
                        json!({"path": format!("/app-health/{name}/{kind}"), "port": status_port}),
                    );
                }
            }
        }
    }
}

/// Istio's own sidecar template output for this case (tests/data/istio-sidecar-overlay.yaml):
/// istio-validation instead of istio-init with istio-cni, the UID and excluded ports filled in.
fn sidecar_overlay(case: &Injection) -> Result<Json> {
    let values = case.merged_values()?;
    let mut o = read_yaml(&repo_root().join("tests/data/istio-sidecar-overlay.yaml"))?;
    let cni = values["pilot"]["cni"]["enabled"] == true;
    let ann: HashMap<String, String> = case.annotations.iter().cloned().collect();
    let status = ann
        .get("status.sidecar.istio.io/port")
        .cloned()
        .unwrap_or_else(|| values["global"]["proxy"]["statusPort"].to_string());
    let user = ann
        .get("traffic.sidecar.istio.io/excludeInboundPorts")
        .cloned()
        .unwrap_or_else(|| {
            values["global"]["proxy"]["excludeInboundPorts"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
    let excluded = match istio_exclude_inbound_port(&[Value::String(status), Value::String(user)]) {
        Ok(Value::String(s)) => s,
        other => bail!("excludeInboundPort: {other:?}"),
    };
    let init = &mut o["spec"]["initContainers"][0];
    if cni {
        init["name"] = json!("istio-validation");
    }
    let args = init["args"].as_array_mut().context("istio-init args")?;
    for a in args.iter_mut() {
        if a == "UID" {
            *a = json!(case.proxy_uid.to_string());
        } else if a == "EXCLUDED" {
            *a = json!(format!("15090,15021,{excluded}"));
        }
    }
    let sc = &mut o["spec"]["containers"][0]["securityContext"];
    sc["runAsUser"] = json!(case.proxy_uid);
    sc["runAsGroup"] = json!(case.proxy_gid);
    Ok(o)
}

/// The injected pod and our template's own output, as `RunTemplate` + `postProcessPod` give them.
struct Injected {
    overlay: Json,
    pod: Json,
}

fn inject(case: &Injection) -> Result<Injected> {
    let original = case.pod()?;
    let ours = render(case, &original)?;
    let mut pod = original;
    overlay(&mut pod, &sidecar_overlay(case)?);
    overlay(&mut pod, &ours);
    let values = case.merged_values()?;
    // sidecarInjectorWebhook.rewriteAppHTTPProbe defaults to true in the chart.
    if values["sidecarInjectorWebhook"]["rewriteAppHTTPProbe"] != false {
        let port = values["global"]["proxy"]["statusPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("global.proxy.statusPort")?;
        rewrite_probes(&mut pod, port);
    }
    reorder_pod(&mut pod);
    Ok(Injected { overlay: ours, pod })
}

// ---------------------------------------------------------------------------------------------
// Checks

fn by_name<'a>(list: &'a Json, name: &str) -> Option<&'a Json> {
    list.as_array()?.iter().find(|c| c["name"] == name)
}

fn names(list: &Json) -> Vec<String> {
    list.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn env_value<'a>(c: &'a Json, name: &str) -> Option<&'a str> {
    by_name(&c["env"], name)?["value"].as_str()
}

fn svidgate(pod: &Json) -> Result<&Json> {
    by_name(&pod["spec"]["initContainers"], "svidgate")
        .context("no init container svidgate in the injected pod")
}

/// Paths of every `httpGet`, `tcpSocket` or `grpc` key under `v`.
fn network_probes(v: &Json, path: &str, out: &mut Vec<String>) {
    match v {
        Json::Object(o) => {
            for (k, x) in o {
                let p = format!("{path}.{k}");
                if ["httpGet", "tcpSocket", "grpc"].contains(&k.as_str()) {
                    out.push(p.clone());
                }
                network_probes(x, &p, out);
            }
        }
        Json::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                network_probes(x, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The Pod validates against the pinned Kubernetes schema (scripts/validate-deploy.py --pod).
fn validate_pod(pod: &Json, dir: &Path, name: &str) -> Result<()> {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(pod)?)?;
    run_ok(
        Command::new(venv_python()?)
            .arg(repo_root().join("scripts/validate-deploy.py"))
            .arg("--pod")
            .arg(&file),
        &format!("{name}: the injected Pod does not validate"),
    )?;
    Ok(())
}

/// The startup properties every injected pod must have.
fn check_startup(case: &Injection, injected: &Injected) -> Result<()> {
    let pod = &injected.pod;
    let values = case.merged_values()?;
    let c = svidgate(pod)?;

    // exec probes only: nothing Istio would rewrite to pilot-agent's port.
    let mut net = Vec::new();
    network_probes(&injected.overlay, "template", &mut net);
    ensure!(net.is_empty(), "the template has network probes: {net:?}");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let cmd = c[probe]["exec"]["command"]
            .as_array()
            .with_context(|| format!("svidgate {probe} is not an exec probe"))?;
        ensure!(
            cmd.first().and_then(Json::as_str) == Some(IMAGE_BINARY)
                && cmd.get(1).and_then(Json::as_str) == Some("health"),
            "svidgate {probe}: {cmd:?}"
        );
        ensure!(
            c[probe].get("httpGet").is_none(),
            "svidgate {probe} was rewritten by the injector"
        );
    }
    // The app's probes were rewritten: the rewrite really ran.
    let app = by_name(&pod["spec"]["containers"], "backend").context("app container")?;
    ensure!(
        app["readinessProbe"]["httpGet"]["path"] == "/app-health/backend/readyz"
            && app["livenessProbe"]["httpGet"]["path"] == "/app-health/backend/livez",
        "the app's probes were not rewritten: {app}"
    );

    // Native sidecar, before the iptables init container (istio-init runs last; with istio-cni,
    // istio-validation runs first).
    ensure!(
        c["restartPolicy"] == "Always",
        "svidgate is not a native sidecar"
    );
    let inits = names(&pod["spec"]["initContainers"]);
    let cni = values["pilot"]["cni"]["enabled"] == true;
    let want: Vec<&str> = if cni {
        vec!["istio-validation", "svidgate"]
    } else {
        vec!["svidgate", "istio-init"]
    };
    ensure!(inits == want, "init containers {inits:?}, want {want:?}");
    ensure!(
        by_name(&pod["spec"]["containers"], "istio-proxy").is_some(),
        "istio-proxy is not a regular container"
    );

    // The socket: our own name, in pilot-agent's fixed directory, told to istio-proxy.
    let args: Vec<&str> = c["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(Json::as_str)
        .collect();
    let socket = args
        .iter()
        .find_map(|a| a.strip_prefix("--sds-socket="))
        .context("no --sds-socket")?;
    let (dir, file) = socket.rsplit_once('/').context("socket path")?;
    ensure!(dir == WORKLOAD_IDENTITY_PATH, "socket directory {dir}");
    ensure!(
        file != ISTIO_DEFAULT_SOCKET_FILE,
        "the socket uses Istio's default name: a missing agent would go unnoticed"
    );
    let proxy = by_name(&pod["spec"]["containers"], "istio-proxy").context("istio-proxy")?;
    ensure!(
        env_value(proxy, "WORKLOAD_IDENTITY_SOCKET_FILE") == Some(file),
        "istio-proxy's WORKLOAD_IDENTITY_SOCKET_FILE is not {file}: {proxy}"
    );
    for container in [c, proxy] {
        let m = container["volumeMounts"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["mountPath"] == dir))
            .with_context(|| format!("{} does not mount {dir}", container["name"]))?;
        ensure!(m["name"] == "workload-socket", "socket mount {m}");
    }
    ensure!(
        by_name(&pod["spec"]["volumes"], "workload-socket")
            .is_some_and(|v| v.get("emptyDir").is_some()),
        "workload-socket is not an emptyDir"
    );

    // UID/GID: istio-proxy's.
    let sc = &c["securityContext"];
    ensure!(
        sc["runAsUser"] == case.proxy_uid && sc["runAsGroup"] == case.proxy_gid,
        "svidgate runs as {}/{}, istio-proxy as {}/{}",
        sc["runAsUser"],
        sc["runAsGroup"],
        case.proxy_uid,
        case.proxy_gid
    );
    ensure!(
        sc["runAsNonRoot"] == true
            && sc["readOnlyRootFilesystem"] == true
            && sc["allowPrivilegeEscalation"] == false
            && sc["capabilities"]["drop"] == json!(["ALL"])
            && sc["capabilities"].get("add").is_none()
            && sc["seccompProfile"]["type"] == "RuntimeDefault",
        "svidgate hardening: {sc}"
    );

    // Admin port outside inbound capture: with istio-cni through the pod annotation (what
    // istio-cni reads), else through istio-init's -d argument (from global.proxy.excludeInboundPorts
    // or the pod's annotation).
    let admin_port = args
        .iter()
        .find_map(|a| a.strip_prefix("--admin-addr="))
        .and_then(|a| a.rsplit_once(':'))
        .map(|(_, p)| p.to_owned())
        .context("no --admin-addr")?;
    let excluded: Vec<String> = if cni {
        pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect()
    } else {
        let init = by_name(&pod["spec"]["initContainers"], "istio-init").context("istio-init")?;
        let a = init["args"].as_array().context("istio-init args")?;
        let i = a.iter().position(|x| x == "-d").context("istio-init -d")?;
        a[i + 1]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    let status_port = values["global"]["proxy"]["statusPort"].to_string();
    ensure!(
        excluded.contains(&admin_port) && excluded.contains(&status_port),
        "inbound ports excluded from capture {excluded:?}: need {admin_port} and {status_port}"
    );
    Ok(())
}

#[test]
fn template_functions_follow_istio_and_sprig() {
    let s = |x: &str| Value::String(x.into());
    let ex = |p: Value, l: &str| match istio_exclude_inbound_port(&[p, s(l)]) {
        Ok(Value::String(v)) => v,
        other => panic!("{other:?}"),
    };
    // pkg/kube/inject/template.go excludeInboundPort.
    assert_eq!(ex(Value::from(15020i64), ""), "15020");
    assert_eq!(ex(s("15020"), "8080, 9090"), "8080,9090,15020");
    assert_eq!(ex(s("15020"), "15020,8080"), "15020,8080");
    assert_eq!(ex(s("0"), "8080"), "8080");
    assert_eq!(ex(s(""), "8080"), "8080");
    // valueOrDefault: "" and nil take the default, anything else stays.
    let vod = |v: Value| istio_value_or_default(&[v, s("Kubernetes")]).ok();
    assert_eq!(vod(s("")), Some(s("Kubernetes")));
    assert_eq!(vod(Value::NoValue), Some(s("Kubernetes")));
    assert_eq!(vod(s("east")), Some(s("east")));
    // sprig default: 0, "", false, nil are empty.
    let d = |v: Value| sprig_default(&[s("1337"), v]).ok();
    assert_eq!(d(Value::from(0i64)), Some(s("1337")));
    assert_eq!(
        d(Value::from(1000650000i64)),
        Some(Value::from(1000650000i64))
    );
    assert_eq!(d(Value::Bool(false)), Some(s("1337")));
    assert_eq!(d(s("")), Some(s("1337")));
    assert!(sprig_fail(&[s("no")]).is_err());
}

#[test]
fn injected_pod_validates_and_starts_in_every_istio_setup() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let openshift = 1_000_650_000;
    let cases: Vec<(&str, Injection)> = vec![
        ("defaults", Injection::default()),
        (
            "istio-cni, OpenShift UID range, revision, multi-cluster, own audience",
            Injection {
                proxy_uid: openshift,
                proxy_gid: openshift,
                ..Injection::default()
            }
            .annotate("traffic.sidecar.istio.io/excludeInboundPorts", "9000")
            .with_values(json!({
                "pilot": {"cni": {"enabled": true}},
                "revision": "canary",
                "global": {"multiCluster": {"clusterName": "east"}, "sds": {"token": {"aud": "mesh-ca"}}}
            })),
        ),
        (
            "istio-csr as the mesh CA (global.caAddress)",
            Injection::default().with_values(json!({
                "global": {"caAddress": "cert-manager-istio-csr.cert-manager.svc:443"}
            })),
        ),
        (
            "per-pod CA annotation, native sidecars on but refused per pod",
            Injection {
                native_sidecars: true,
                ..Injection::default()
            }
            .annotate("svidgate.io/ca-addr", "svidgate-ca.istio-system.svc:15012")
            .with_values(json!({"global": {"caAddress": "cert-manager-istio-csr.cert-manager.svc:443"}})),
        ),
    ];
    let mut seen = Vec::new();
    for (name, case) in &cases {
        let injected = inject(case).with_context(|| format!("case {name}"))?;
        validate_pod(&injected.pod, tmp.path(), &format!("pod-{}", seen.len()))
            .with_context(|| format!("case {name}"))?;
        check_startup(case, &injected).with_context(|| format!("case {name}"))?;
        let c = svidgate(&injected.pod)?;
        let token = by_name(&injected.pod["spec"]["volumes"], "svidgate-token")
            .context("svidgate-token volume")?;
        seen.push((
            env_value(c, "CA_ADDR").unwrap_or_default().to_owned(),
            env_value(c, "ISTIO_META_CLUSTER_ID")
                .unwrap_or_default()
                .to_owned(),
            token["projected"]["sources"][0]["serviceAccountToken"]["audience"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    let row = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        seen,
        vec![
            // Istio's fallbacks: istiod in the Istio namespace, cluster "Kubernetes", istio-ca.
            row("istiod.istio-system.svc:15012", "Kubernetes", "istio-ca"),
            row("istiod-canary.istio-system.svc:15012", "east", "mesh-ca"),
            row(
                "cert-manager-istio-csr.cert-manager.svc:443",
                "Kubernetes",
                "istio-ca"
            ),
            row(
                "svidgate-ca.istio-system.svc:15012",
                "Kubernetes",
                "istio-ca"
            ),
        ]
    );
    Ok(())
}

#[test]
fn injection_is_refused_when_istio_proxy_would_be_a_native_sidecar() -> Result<()> {
    // (injector's native-sidecar decision, the pod's sidecar.istio.io/nativeSidecar, renders?)
    let cases = [
        (false, None, true),
        (true, Some("false"), true),
        (true, None, false),
        (false, Some("true"), false),
        (true, Some("true"), false),
    ];
    for (native, annotation, renders) in cases {
        let mut case = Injection {
            native_sidecars: native,
            ..Injection::default()
        }
        .without_annotation("sidecar.istio.io/nativeSidecar");
        if let Some(a) = annotation {
            case = case.annotate("sidecar.istio.io/nativeSidecar", a);
        }
        match (inject(&case), renders) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                let e = format!("{e:#}");
                assert!(
                    e.contains("sidecar.istio.io/nativeSidecar") && e.contains("svidgate"),
                    "refusal does not say what to do: {e}"
                );
            }
            (Ok(_), false) => panic!(
                "rendered with NativeSidecars={native}, annotation {annotation:?}: istio-proxy would start first"
            ),
            (Err(e), true) => panic!("NativeSidecars={native}, annotation {annotation:?}: {e:#}"),
        }
    }
    Ok(())
}

/// The renderer is strict like Go's: an unknown function is a parse error, a missing struct
/// field an execution error, so the test cannot silently render something Istio would refuse.
#[test]
fn renderer_rejects_what_istio_would_reject() -> Result<()> {
    let case = Injection::default();
    let pod = case.pod()?;
    let data = case.data(&pod)?;
    for bad in [
        "{{ toYaml .Values }}",
        "{{ .ProxyConfig.InterceptionMode }}",
        "{{ fail \"x\" }}",
    ] {
        let mut t = Template::default();
        t.add_func("fail", sprig_fail);
        let rendered = t.parse(bad).map_err(|e| e.to_string()).and_then(|_| {
            t.render(&gtmpl::Context::from(data.clone()))
                .map_err(|e| e.to_string())
        });
        assert!(rendered.is_err(), "{bad} rendered: {rendered:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The agent with the rendered arguments

/// A container's command line: args, and env as (name, value) pairs.
type CommandLine = (Vec<String>, Vec<(String, String)>);

/// The svidgate container's args and env (downward-API values filled with sample values).
fn agent_command() -> Result<CommandLine> {
    let injected = inject(&Injection::default())?;
    let c = svidgate(&injected.pod)?;
    let args = c["args"]
        .as_array()
        .context("args")?
        .iter()
        .map(|a| a.as_str().map(str::to_owned).context("arg"))
        .collect::<Result<Vec<_>>>()?;
    let mut env = Vec::new();
    for e in c["env"].as_array().context("env")? {
        let name = e["name"].as_str().context("env name")?.to_owned();
        let value = match (
            e["value"].as_str(),
            e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Some(v), _) => v.to_owned(),
            (None, Some("metadata.namespace")) => "shop".to_owned(),
            (None, Some("spec.serviceAccountName")) => "backend".to_owned(),
            _ => bail!("env {name}: {e}"),
        };
        env.push((name, value));
    }
    Ok((args, env))
}

/// The injection template's args and env are real `svidgate agent` flags and variables: the
/// built binary is run with them (paths moved to a temp dir, the CA address pointed at a closed
/// loopback port, `--once`) and must get past argument parsing to the CA call.
#[test]
fn injection_template_args_are_accepted_by_the_agent() -> Result<()> {
    let bin = svidgate_bin()?;
    let (args, env) = agent_command()?;
    let tmp = tempfile::tempdir()?;
    // In-pod paths -> files in the temp dir; never bind anything but loopback here.
    let local = |v: &str| -> Result<String> {
        Ok(match v.strip_prefix("/var/run/") {
            Some(rest) => {
                let p = tmp.path().join(rest);
                std::fs::create_dir_all(p.parent().context("path without parent")?)?;
                std::fs::write(&p, "placeholder\n")?;
                p.to_string_lossy().into_owned()
            }
            None => v.to_owned(),
        })
    };
    let closed = svidgate_e2e::free_port()?;
    let mut cmd = Command::new(&bin);
    cmd.env_clear();
    for a in &args {
        let arg = match a.split_once('=') {
            Some(("--admin-addr", _)) => {
                format!("--admin-addr=127.0.0.1:{}", svidgate_e2e::free_port()?)
            }
            Some((flag, v)) => format!("{flag}={}", local(v)?),
            None => a.clone(),
        };
        cmd.arg(arg);
    }
    for (k, v) in &env {
        let v = if k == "CA_ADDR" {
            format!("127.0.0.1:{closed}")
        } else {
            local(v)?
        };
        cmd.env(k, v);
    }
    cmd.args([
        "--once",
        "--ca-max-attempts",
        "1",
        "--ca-timeout",
        "2s",
        "--out",
    ])
    .arg(tmp.path().join("out"));
    let out = cmd.output()?;
    let text = output_text(&out);
    for usage_error in [
        "unexpected argument",
        "invalid value",
        "Usage:",
        "required arguments",
    ] {
        assert!(
            !text.contains(usage_error),
            "the agent rejected the template's arguments:\n{text}"
        );
    }
    assert!(
        !out.status.success(),
        "the agent got a certificate from a closed port?\n{text}"
    );
    Ok(())
}

/// A JWKS with one ES256 public key, for the Deployment's `--kube-jwks`.
const DEPLOY_TEST_JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "deploy-test", "x": "oQO6CDfG6TwUdHrU_GFLK23_yQWpZVhzmMw9rKOjo1g", "y": "kQHyG_jndUsztirMbtkCR7BOteCUnsAJrK-W6ByX7tQ"}]}"#;

/// The manifests work together: `svidgate ca` started with the Deployment's arguments
/// (deploy/ca/svidgate-ca.yaml; listen address moved to loopback, paths to a temp dir, plus
/// `--generate` to create the cacerts files cert-manager would provide) issues a certificate to
/// `svidgate agent` started with the injection template's arguments and environment. The agent
/// authenticates with a bearer token from a tokens file (`--tokens`, added here): minting
/// projected service-account tokens for `--kube-jwks` is the CA's own tests' business.
#[test]
fn deployed_agent_gets_its_svid_from_the_deployed_ca() -> Result<()> {
    let bin = svidgate_bin()?;
    let tmp = tempfile::tempdir()?;
    let ca_spec = tmp.path().join("ca.json");
    run_ok(
        Command::new(venv_python()?)
            .arg(repo_root().join("scripts/validate-deploy.py"))
            .arg("--ca-command")
            .arg(&ca_spec),
        "validate-deploy.py --ca-command",
    )?;
    let ca_spec: Json = serde_json::from_slice(&std::fs::read(&ca_spec)?)?;
    // In-cluster paths -> the temp dir (same relative layout).
    let local = |v: &str| tmp.path().join(v.trim_start_matches('/'));
    let identity = "spiffe://cluster.local/ns/shop/sa/backend";
    let token = "deploy-test-token-0123456789";

    // The CA, as deployed.
    let port = svidgate_e2e::free_port()?;
    let mut cmd = Command::new(&bin);
    cmd.env_clear();
    let mut ca_dir = None;
    let mut ca_admin = None;
    for a in ca_spec["args"].as_array().context("ca args")? {
        let a = a.as_str().context("arg")?;
        let arg = match a.split_once('=') {
            Some(("--kube-jwks", v)) => {
                let f = local(v);
                std::fs::create_dir_all(f.parent().context("jwks dir")?)?;
                // A real P-256 public key (its private half was thrown away): the CA refuses
                // a JWKS without a usable signing key, and this test's agent uses a token
                // from the tokens file instead.
                std::fs::write(&f, DEPLOY_TEST_JWKS)?;
                format!("--kube-jwks={}", f.display())
            }
            Some(("--listen", _)) => format!("--listen=127.0.0.1:{port}"),
            Some(("--admin-addr", _)) => {
                let p = svidgate_e2e::free_port()?;
                ca_admin = Some(p);
                format!("--admin-addr=127.0.0.1:{p}")
            }
            Some(("--ca-dir", v)) => {
                let d = local(v);
                std::fs::create_dir_all(&d)?;
                ca_dir = Some(d.clone());
                format!("--ca-dir={}", d.display())
            }
            _ => a.to_owned(),
        };
        cmd.arg(arg);
    }
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, format!("{token} {identity}\n"))?;
    cmd.arg("--tokens").arg(&tokens).arg("--generate");
    let ca_dir = ca_dir.context("the Deployment passes no --ca-dir")?;
    let mut ca = svidgate_e2e::Proc::spawn("svidgate-ca", cmd, tmp.path().join("ca.log"))?;
    svidgate_e2e::wait_listening(&mut ca, port, Duration::from_secs(20))
        .context("svidgate ca with the Deployment's arguments")?;

    // The agent, as injected.
    let (args, env) = agent_command()?;
    let mut cmd = Command::new(&bin);
    cmd.env_clear();
    let token_file = tmp.path().join("istio-token");
    std::fs::write(&token_file, token)?;
    let root = ca_dir.join("root-cert.pem");
    for a in &args {
        let arg = match a.split_once('=') {
            Some(("--admin-addr", _)) => {
                format!("--admin-addr=127.0.0.1:{}", svidgate_e2e::free_port()?)
            }
            Some(("--token-file", _)) => format!("--token-file={}", token_file.display()),
            Some(("--ca-root", _)) => format!("--ca-root={}", root.display()),
            Some(("--sds-socket", _)) => {
                format!("--sds-socket={}", tmp.path().join("sds.sock").display())
            }
            _ => a.clone(),
        };
        cmd.arg(arg);
    }
    for (k, v) in &env {
        let v = match k.as_str() {
            "CA_ADDR" => format!("127.0.0.1:{port}"),
            "CA_ROOT_CERT" => root.display().to_string(),
            _ => v.clone(),
        };
        cmd.env(k, v);
    }
    let out_dir = tmp.path().join("out");
    cmd.args(["--once", "--out"]).arg(&out_dir);
    let out = cmd.output()?;
    let text = output_text(&out);
    // The CA's admin port (what the ServiceMonitor scrapes) counts the issued certificate.
    let ca_admin = ca_admin.context("the Deployment passes no --admin-addr")?;
    let metrics = svidgate_e2e::http_get(ca_admin, "/metrics").unwrap_or_default();
    ca.stop();
    assert!(
        out.status.success(),
        "the agent (template args) got no certificate:\n{text}\nCA:\n{}",
        ca.output()
    );
    assert!(
        metrics.contains("svidgate_ca_issued_total{key_type=\"ecdsa-p256\"} 1"),
        "CA metrics on the Deployment's --admin-addr:\n{metrics}"
    );
    svidgate_e2e::ensure_uri_san(&out_dir.join("cert-chain.pem"), identity)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// pilot-agent semantics the template relies on, with a long-running agent (real processes on
// loopback): renewal at Istio's time (`not_after − SECRET_GRACE_PERIOD_RATIO × lifetime`,
// istio/istio security/pkg/nodeagent/cache/secretcache.go `rotateTime`), read from the agent's
// own log and then observed as the next certificate request; and the rendered exec probes
// (`svidgate health`) following a live agent.

const IDENTITY: &str = "spiffe://cluster.local/ns/shop/sa/backend";
const TOKEN: &str = "istio-agent-test-token-0123456789";

/// `svidgate ca` on 127.0.0.1:`port` that knows TOKEN as IDENTITY.
fn start_tokens_ca(bin: &Path, dir: &Path, port: u16) -> Result<svidgate_e2e::Proc> {
    svidgate_e2e::start_ca(bin, dir, port, &[(TOKEN, IDENTITY)])
}

/// The long-running agent with Istio's environment (`env`), JSON logs, admin on `admin`.
fn start_agent(
    bin: &Path,
    dir: &Path,
    ca_port: u16,
    root: &Path,
    admin: u16,
    env: &[(&str, &str)],
) -> Result<svidgate_e2e::Proc> {
    std::fs::write(dir.join("token"), TOKEN)?;
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("CA_ADDR", format!("127.0.0.1:{ca_port}"))
        .env("CA_ROOT_CERT", root)
        .env("TRUST_DOMAIN", "cluster.local")
        .env("POD_NAMESPACE", "shop")
        .env("SERVICE_ACCOUNT", "backend")
        .envs(env.iter().copied())
        .args(["agent", "--log-format", "json", "--token-file"])
        .arg(dir.join("token"))
        .arg("--sds-socket")
        .arg(dir.join("svidgate.sock"))
        .arg(format!("--admin-addr=127.0.0.1:{admin}"));
    svidgate_e2e::Proc::spawn("agent", cmd, dir.join("agent.log"))
}

/// The agent's "certificate issued and served" log events: (issued, not_after, refresh_at).
fn issued_events(log: &str) -> Result<Vec<(SystemTime, SystemTime, SystemTime)>> {
    let t = |v: &Json, k: &str| -> Result<SystemTime> {
        let s = v[k].as_str().with_context(|| format!("no {k} in {v}"))?;
        humantime::parse_rfc3339(s).with_context(|| format!("{k}: {s}"))
    };
    let mut out = Vec::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Json>(line) else {
            continue;
        };
        let f = &v["fields"];
        if f["message"] == "certificate issued and served" {
            out.push((t(f, "issued")?, t(f, "not_after")?, t(f, "refresh_at")?));
        }
    }
    Ok(out)
}

fn secs(d: Result<Duration, std::time::SystemTimeError>) -> f64 {
    match d {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// SECRET_GRACE_PERIOD_RATIO=0.3 on a 20 s certificate: Istio renews 6 s before expiry, at 14 s
/// (the old `not_before + ratio × lifetime` reading would renew at 6 s).
#[test]
fn long_running_agent_renews_at_istios_time() -> Result<()> {
    let bin = svidgate_bin()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let ca_port = svidgate_e2e::free_port()?;
    let mut ca = start_tokens_ca(&bin, dir, ca_port)?;
    let root = dir.join("ca/root-cert.pem");
    let mut agent = start_agent(
        &bin,
        dir,
        ca_port,
        &root,
        svidgate_e2e::free_port()?,
        &[
            ("SECRET_TTL", "20s"),
            ("SECRET_GRACE_PERIOD_RATIO", "0.3"),
            ("SECRET_GRACE_PERIOD_RATIO_JITTER", "0"),
        ],
    )?;
    // Two certificates: the first, and its renewal (a hang guard, not a speed requirement).
    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let ev = issued_events(&agent.output())?;
        if ev.len() >= 2 {
            break ev;
        }
        if agent.exited() || Instant::now() > deadline {
            bail!("no renewal seen:\n{}\nCA:\n{}", agent.output(), ca.output());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    agent.stop();
    ca.stop();
    let (issued, not_after, refresh_at) = events[0];
    let lifetime = secs(not_after.duration_since(issued));
    ensure!(
        (19.0..=21.0).contains(&lifetime),
        "lifetime {lifetime}s from the request"
    );
    // The scheduled time is Istio's: the grace period 0.3 × lifetime before not_after (the log
    // has whole seconds, hence the tolerance).
    let grace = secs(not_after.duration_since(refresh_at));
    ensure!(
        (grace - 0.3 * lifetime).abs() <= 1.5,
        "renewal scheduled {grace}s before expiry, Istio's formula says {}s",
        0.3 * lifetime
    );
    // And the renewal was not asked for before that time.
    let (second_issued, _, _) = events[1];
    ensure!(
        secs(second_issued.duration_since(refresh_at)) >= -1.0,
        "renewed at {second_issued:?}, before the scheduled {refresh_at:?}"
    );
    Ok(())
}

/// The exec probes of the injected svidgate container: (probe name, command).
fn probe_commands() -> Result<Vec<(String, Vec<String>)>> {
    let injected = inject(&Injection::default())?;
    let c = svidgate(&injected.pod)?;
    let mut out = Vec::new();
    for (name, field) in [
        ("startup", "startupProbe"),
        ("readiness", "readinessProbe"),
        ("liveness", "livenessProbe"),
    ] {
        let cmd = c[field]["exec"]["command"]
            .as_array()
            .with_context(|| format!("{field} is not an exec probe"))?
            .iter()
            .map(|a| a.as_str().map(str::to_owned).context("probe argument"))
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            cmd.iter().any(|a| a == &format!("--probe={name}")),
            "{field}: {cmd:?}"
        );
        out.push((name.to_owned(), cmd));
    }
    Ok(out)
}

fn run_probe(bin: &Path, args: &[String], admin: u16) -> Result<bool> {
    let mut cmd = Command::new(bin);
    for a in &args[1..] {
        if a.starts_with("--admin-addr=") {
            cmd.arg(format!("--admin-addr=127.0.0.1:{admin}"));
        } else {
            cmd.arg(a);
        }
    }
    let st = cmd.env_clear().status()?;
    match st.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        other => bail!("svidgate health {args:?} exited {other:?}"),
    }
}

#[test]
fn rendered_exec_probes_follow_the_agent() -> Result<()> {
    let bin = svidgate_bin()?;
    let probes = probe_commands()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let ca_port = svidgate_e2e::free_port()?;
    let admin = svidgate_e2e::free_port()?;
    // The root must exist before the agent starts: generate the CA files, stop the CA.
    let mut ca = start_tokens_ca(&bin, dir, ca_port)?;
    ca.stop();
    let root = dir.join("ca/root-cert.pem");
    let mut agent = start_agent(&bin, dir, ca_port, &root, admin, &[])?;
    let probe = |name: &str| -> Result<bool> {
        let (_, args) = probes
            .iter()
            .find(|(p, _)| p == name)
            .with_context(|| format!("no {name} probe"))?;
        run_probe(&bin, args, admin)
    };
    // No CA: live (once the admin port is up), but neither started nor ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe("liveness")? {
        ensure!(
            !agent.exited() && Instant::now() < deadline,
            "agent never live:\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(!probe("startup")?, "started without a certificate");
    ensure!(!probe("readiness")?, "ready without a certificate");
    // The CA comes up: the agent's retry gets a certificate, and the probes follow.
    let mut ca = start_tokens_ca(&bin, dir, ca_port)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !probe("startup")? {
        ensure!(
            !agent.exited() && Instant::now() < deadline,
            "agent never started:\n{}\nCA:\n{}",
            agent.output(),
            ca.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(probe("readiness")?, "started but not ready");
    ensure!(probe("liveness")?, "not live");
    agent.stop();
    ca.stop();
    ensure!(!probe("liveness")?, "live after the agent stopped");
    Ok(())
}
