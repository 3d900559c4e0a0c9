//! `svidgate policy ...` run as a real process on files in a temporary directory: exit codes
//! and exact output lines.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn err_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs `svidgate <args>` in `dir` with `stdin`.
fn svidgate(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_svidgate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn svidgate");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.as_bytes()).expect("write stdin");
    drop(pipe);
    let out = child.wait_with_output().expect("wait svidgate");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf8 stderr"),
    }
}

fn tempdir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write fixture");
    }
    dir
}

const ISTIO_UNSUPPORTED: &str = r#"# Istio policies svidgate cannot express fully.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext-authz
  namespace: shop
spec:
  action: CUSTOM
  provider:
    name: opa
  rules:
  - to:
    - operation:
        paths: ["/admin/*"]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: office-only
  namespace: shop
spec:
  selector:
    matchLabels:
      app: api
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/8"]
  - from:
    - source:
        principals: ["cluster.local/ns/web/sa/frontend"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://issuer.example"]
  - to:
    - operation:
        methods: ["GET"]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: unrelated
"#;

#[test]
fn unreadable_files_exit_2() {
    let dir = tempdir_with(&[]);
    let cases: [&[&str]; 4] = [
        &["policy", "check", "missing.yaml"],
        &["policy", "eval", "--policy", "missing.yaml"],
        &[
            "policy",
            "explain",
            "--policy",
            "missing.yaml",
            "--peer",
            "spiffe://td/x",
        ],
        &["policy", "import", "missing.yaml"],
    ];
    for args in cases {
        let run = svidgate(dir.path(), args, "");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(
            run.err_lines(),
            ["svidgate: cannot read missing.yaml: No such file or directory (os error 2)"],
            "{args:?}"
        );
        assert_eq!(run.stdout, "", "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempdir_with(&[("p.yaml", "trustDomain: td\npolicies: []\n")]);
    let run = svidgate(
        dir.path(),
        &[
            "policy", "explain", "--policy", "p.yaml", "--header", "novalue",
        ],
        "",
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("--header \"novalue\": expected NAME=VALUE")
            || run.stderr.starts_with("p.yaml"),
        "{}",
        run.stderr
    );

    let run = svidgate(
        dir.path(),
        &["policy", "import", "--trust-domain", "Bad.Example", "-"],
        "",
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with(
            "svidgate: --trust-domain \"Bad.Example\": trust domain has an invalid character 'B'"
        ),
        "{}",
        run.stderr
    );

    let run = svidgate(dir.path(), &["policy", "check"], "");
    assert_eq!(run.code, 2, "clap usage error");
    let run = svidgate(
        dir.path(),
        &["policy", "explain", "--policy", "p.yaml", "--port", "70000"],
        "",
    );
    assert_eq!(run.code, 2, "clap value error");
}

#[test]
fn import_reports_unsupported_features_and_exits_3() {
    let dir = tempdir_with(&[("istio.yaml", ISTIO_UNSUPPORTED)]);
    let run = svidgate(dir.path(), &["policy", "import", "istio.yaml"], "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(
        run.stdout, "",
        "nothing is written when features are unsupported"
    );
    assert_eq!(
        run.err_lines(),
        [
            r#"istio.yaml: error: AuthorizationPolicy shop/ext-authz (document 1): spec.action: CUSTOM action (provider "opa") is not supported: svidgate has no external authorizer ("CUSTOM")"#,
            r#"istio.yaml: warning: AuthorizationPolicy shop/office-only (document 2): spec.selector: dropped: a svidgate policy applies to every workload whose filter loads it ({"matchLabels":{"app":"api"}}); load policy shop.office-only only in the filters of the workloads it selected"#,
            r#"istio.yaml: error: AuthorizationPolicy shop/office-only (document 2): spec.rules[0].from[0].source.ipBlocks: IP blocks are not supported: svidgate authorizes by SPIFFE identity, not address (["10.0.0.0/8"])"#,
            r#"istio.yaml: error: AuthorizationPolicy shop/office-only (document 2): spec.rules[1].when[0].key: JWT claims (request.auth.*) are not supported: svidgate authorizes the mTLS peer identity ("request.auth.claims[iss]")"#,
            r#"istio.yaml: note: document 3: skipped ConfigMap (v1): not an Istio AuthorizationPolicy"#,
            r#"istio.yaml: 3 unsupported feature(s); nothing written (--skip-unsupported imports the rest, dropping them the fail-closed way)"#,
        ]
    );
}

#[test]
fn import_rejects_invalid_resources_with_exit_1() {
    let cases = [
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: PERMIT}\n",
            vec![
                r#"in.yaml: error: AuthorizationPolicy a (document 1): spec.action: unknown action: expected ALLOW, DENY, AUDIT or CUSTOM ("PERMIT")"#,
                "in.yaml: 1 error(s) in the input; nothing written",
            ],
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules: [\n",
            vec!["in.yaml: error: document 1: did not find expected node content at line 6 column 1, while parsing a flow node"],
        ),
    ];
    for (text, want) in cases {
        let dir = tempdir_with(&[("in.yaml", text)]);
        let run = svidgate(dir.path(), &["policy", "import", "in.yaml"], "");
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(run.stdout, "");
        assert_eq!(run.err_lines(), want);
    }
}
