//! The properties the fuzz targets check, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the stable smoke test (`core/tests/fuzz_smoke.rs`), so
//! both check exactly the same thing. Each function panics when a property is broken.

// Each binary uses one or two of these functions.
#![allow(dead_code)]

use svidgate_core::http::{
    check_method, check_path, collect_headers, normalize_host, path_part, RepeatedHeaders,
};
use svidgate_core::plugin_config::{self, PluginConfig};
use svidgate_core::policy::{
    self, CompiledPolicy, EvalMode, NoIdentity, Peer, PolicyDocument, Request, MAX_DEPTH,
};
use svidgate_core::spiffe_id::{validate_path, validate_trust_domain, SpiffeId, TrustDomain};
use svidgate_core::svid::{check_leaf_der, check_leaf_pem, LeafInfo};

/// SpiffeId / TrustDomain parsing never panics; whatever parses round-trips exactly and
/// agrees between the `&str` and the `&[u8]` entry points.
pub fn spiffe_id(data: &[u8]) {
    let from_bytes = SpiffeId::parse_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(from_bytes.is_err(), "non-UTF-8 input accepted");
        return;
    };
    let parsed = SpiffeId::parse(text);
    assert_eq!(parsed, from_bytes, "parse and parse_bytes disagree");
    if let Ok(id) = &parsed {
        assert_eq!(id.to_string(), text, "Display does not round-trip");
        assert_eq!(id.as_str(), text);
        assert!(text.is_ascii());
        assert_eq!(
            format!("spiffe://{}{}", id.trust_domain(), id.path()),
            text,
            "parts do not add up"
        );
        assert_eq!(
            SpiffeId::from_parts(id.trust_domain(), id.path()).as_ref(),
            Ok(id)
        );
        assert_eq!(validate_path(id.path()), Ok(()));
        assert_eq!(validate_trust_domain(id.trust_domain().as_str()), Ok(()));
        assert_eq!(id.principal_str(), &text["spiffe://".len()..]);
        let _ = id.namespace();
    }
    if let Ok(td) = TrustDomain::new(text) {
        assert!(text == td.as_str() || text == td.id_string());
        assert_eq!(TrustDomain::new(td.as_str()).as_ref(), Ok(&td));
        assert_eq!(TrustDomain::new(&td.id_string()).as_ref(), Ok(&td));
    }
    let _ = validate_path(text);
}

/// The X509-SVID leaf checks never panic, and the DER, PEM and LeafInfo entry points agree.
pub fn svid_leaf(data: &[u8]) {
    let der = check_leaf_der(data);
    assert_eq!(
        LeafInfo::from_der(data).map(|info| info.spiffe_id),
        der,
        "LeafInfo::from_der and check_leaf_der disagree"
    );
    let pem = check_leaf_pem(data);
    assert_eq!(
        LeafInfo::from_pem(data).map(|info| info.spiffe_id),
        pem,
        "LeafInfo::from_pem and check_leaf_pem disagree"
    );
}

/// Policy documents (YAML and JSON) parse, compile and evaluate without panicking, and the
/// filter's path (`parse_owned`: strings borrowed from the text, the index sharing it)
/// agrees with the owned one (`PluginConfig::from_json` then `compile`): the same error or
/// the same decisions.
pub fn policy_document(data: &[u8]) {
    let owned = PluginConfig::from_json(data).and_then(|cfg| cfg.compile());
    match (owned, plugin_config::parse_owned(data.to_vec())) {
        (Ok(policy), Ok(cfg)) => assert_eq!(
            decisions(&policy),
            decisions(&cfg.policy),
            "parse_owned decides differently"
        ),
        (Err(a), Err(b)) => assert_eq!(a, b, "parse_owned fails differently"),
        (a, b) => panic!(
            "from_json: {:?}, parse_owned: {:?}",
            a.map(|_| ()),
            b.map(|_| ())
        ),
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = PluginConfig::from_yaml(text);
    for doc in [
        PolicyDocument::from_yaml(text),
        PolicyDocument::from_json(text),
    ] {
        let Ok(doc) = doc else { continue };
        if let Ok(policy) = CompiledPolicy::compile(&doc) {
            decisions(&policy);
        }
    }
}

/// The decisions of `policy` on a few requests, HTTP and network, printed.
fn decisions(policy: &CompiledPolicy) -> Vec<String> {
    let peers = [
        "spiffe://cluster.local/ns/web/sa/frontend",
        "spiffe://prod.example/ns/team-3/sa/w3",
        "spiffe://cluster.local/ns/test/sa/a",
        "spiffe://other.td/ns/x/sa/y",
    ]
    .map(|id| SpiffeId::parse(id).map(Peer::Identity));
    let headers = [("x-test", "1")];
    let mut out = Vec::new();
    for peer in peers
        .into_iter()
        .flatten()
        .chain([Peer::None(NoIdentity::NotMtls)])
    {
        for (path, host) in [("/api/x", "example.org"), ("/admin/x", "A.Example.org")] {
            let req = Request {
                peer: peer.clone(),
                method: Some("GET"),
                path: Some(path),
                host: Some(host),
                port: Some(8080),
                headers: &headers,
                sni: Some("example.org"),
            };
            for mode in [EvalMode::Http, EvalMode::Network] {
                out.push(format!("{:?}", policy.evaluate(&req, mode)));
            }
        }
    }
    out
}

/// The size and depth caps are exact: whatever YAML or JSON text gets past them parses into a
/// value no deeper than [`MAX_DEPTH`] (aliases expanded), and never panics.
pub fn document_shape(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for value in [policy::yaml_value(text), policy::json_value(text)]
        .into_iter()
        .flatten()
    {
        let depth = value_depth(&value);
        assert!(
            depth <= MAX_DEPTH,
            "accepted a document {depth} levels deep"
        );
    }
}

/// Levels of arrays and objects in a parsed value (a scalar is 0).
pub fn value_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(value_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A reference normalizer (RFC 3986 sections 6.2.2.2 and 5.2.4, plus merged slashes and the
/// percent-encoded slash and backslash decoded): what Envoy's `normalize_path`,
/// `merge_slashes` and `path_with_escaped_slashes_action` together aim at.
pub fn reference_normalize(path: &str) -> String {
    let b = path.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = (h * 16 + l) as u8;
                if c.is_ascii_alphanumeric() || b"-._~/\\".contains(&c) {
                    decoded.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        decoded.push(b[i]);
        i += 1;
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let trailing = text.ends_with('/') || text.ends_with("/.") || text.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut p = format!("/{}", out.join("/"));
    if trailing && p != "/" {
        p.push('/');
    }
    p
}

/// The normal-form check never panics, and a path part it accepts is what the reference
/// normalizer leaves unchanged, with none of the characters the check refuses. The method
/// and host checks never panic; host normalization is idempotent.
pub fn request_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if check_path(text).is_ok() {
        let part = path_part(text);
        assert_eq!(reference_normalize(part), part, "accepted but not normal");
        assert!(part.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert!(!part.contains(['\\', ';', '#']));
        let upper = part.to_ascii_uppercase();
        assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%2E"));
    }
    if check_method(text).is_ok() {
        assert!(!text.is_empty() && !text.bytes().any(|b| b.is_ascii_lowercase()));
    }
    if let Ok(h) = normalize_host(text) {
        assert!(!h.is_empty() && !h.ends_with('.') && !h.bytes().any(|b| b.is_ascii_uppercase()));
        assert_eq!(normalize_host(&h).as_deref(), Ok(&*h), "not idempotent");
    }
}

/// The header view never panics. Input: `name:value` lines. Joined values are every value of
/// the name in order, joined with `,`; the deny view accepts only names sent once without `,`.
pub fn header_view(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pairs: Vec<(String, String)> = text
        .lines()
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect();
    let names = vec!["x-tenant".to_owned(), "x-env".to_owned()];
    let identity = Some("x-spiffe-peer-id");
    let values = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    if let Ok(view) = collect_headers(&pairs, &names, identity, RepeatedHeaders::Join) {
        for (name, joined) in &view.headers {
            assert_eq!(*joined, values(name).join(","), "join of {name}");
        }
        for name in &names {
            assert_eq!(
                view.headers.iter().any(|(n, _)| n == name),
                !values(name).is_empty()
            );
        }
        for v in &view.identity_variants {
            assert!(v.contains('_'));
            assert_eq!(v.to_ascii_lowercase().replace('_', "-"), "x-spiffe-peer-id");
        }
    }
    if let Ok(view) = collect_headers(&pairs, &names, identity, RepeatedHeaders::Deny) {
        for (name, value) in &view.headers {
            assert_eq!(values(name), vec![value.as_str()]);
            assert!(!value.contains(','));
        }
    }
}

/// Istio AuthorizationPolicy import never panics; what it accepts the engine compiles, and a
/// DENY it imports is never turned into an ALLOW (or dropped) by skipping unsupported items.
pub fn istio_import(data: &[u8]) {
    use svidgate_core::policy::import::{convert, ImportOptions};
    use svidgate_core::policy::Action;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for skip in [false, true] {
        let opts = ImportOptions {
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: vec!["old.example".into()],
            skip_unsupported: skip,
            ..ImportOptions::default()
        };
        let Ok(imported) = convert(text, &opts) else {
            continue;
        };
        if imported.failure(skip).is_none() {
            assert!(
                CompiledPolicy::compile(&imported.document).is_ok(),
                "an import without failure compiles"
            );
        }
        // Skipping never drops a DENY policy: every DENY resource imported is still there.
        if skip && imported.failure(true).is_none() {
            let strict = convert(
                text,
                &ImportOptions {
                    skip_unsupported: false,
                    ..opts.clone()
                },
            );
            if let Ok(strict) = strict {
                let count = |d: &svidgate_core::policy::PolicyDocument| {
                    d.policies
                        .iter()
                        .filter(|p| p.action == Action::Deny)
                        .count()
                };
                assert_eq!(count(&strict.document), count(&imported.document));
            }
        }
    }
}

/// The HTTP/2 `:authority` rewriter never panics, gives the same bytes (or the same error)
/// however the input is split into reads, and never grows the stream by more than the
/// Huffman-to-plain expansion of the authority values allows.
pub fn h2_authority(data: &[u8]) {
    use svidgate_core::h2_authority::ClientRewriter;
    let run = |chunk: usize| {
        let mut r = ClientRewriter::new();
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            r.feed(c, &mut out)?;
        }
        Ok::<_, svidgate_core::h2_authority::H2AuthorityError>(out)
    };
    let whole = run(data.len().max(1));
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0) % 17);
    assert_eq!(
        run(chunk),
        whole,
        "result depends on how the input is split"
    );
    if let Ok(out) = whole {
        assert!(out.len() <= 2 * data.len() + 64, "output grew too much");
    }
}
