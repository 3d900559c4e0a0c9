use super::*;
use PathFormError as P;

#[test]
fn normal_form_paths_pass() {
    for p in [
        "/",
        "/a",
        "/a/",
        "/a/b/c",
        "/api/v1/items/42",
        "/a/b?x=1",
        "/a?q=..//%2F\\#",  // the query string is not checked
        "/a/b?",            // empty query
        "/a%20b",           // reserved-or-other escapes stay
        "/a%25b",           // an encoded '%'
        "/a%3Ab/%3ab",      // either hex case for other characters
        "/a%3Fb",           // an encoded '?'
        "/a%2Bb",           // an encoded '+'
        "/%C3%A9t%C3%A9",   // UTF-8 percent-encoded
        "/a.b/.c/..d/...",  // dots inside segments, and '...'
        "/~user/_x-y.z",    // unreserved characters written plainly
        "/a:b@c!$&'()*+,=", // RFC 3986 pchar sub-delims, ':' and '@' (no ';')
        "/-._~",            // RFC 3986 section 2.3 unreserved
    ] {
        assert_eq!(check_path(p), Ok(()), "{p}");
    }
}

#[test]
fn paths_not_in_normal_form_are_refused() {
    let cases: &[(&str, PathFormError)] = &[
        // RFC 3986 section 5.2.4 (remove_dot_segments) examples and friends.
        ("/a/b/c/./../../g", P::DotSegment),
        ("/./a", P::DotSegment),
        ("/../a", P::DotSegment),
        ("/a/.", P::DotSegment),
        ("/a/..", P::DotSegment),
        ("/public/../admin/x", P::DotSegment),
        ("/..", P::DotSegment),
        ("/.", P::DotSegment),
        ("/a/./b?x", P::DotSegment),
        // Empty segments.
        ("//admin/x", P::EmptySegment),
        ("/a//b", P::EmptySegment),
        ("/a/b//", P::EmptySegment),
        ("//", P::EmptySegment),
        // RFC 3986 section 6.2.2.2: unreserved characters must be decoded.
        ("/%61dmin/x", P::EncodedUnreserved(b'a')),
        ("/%41", P::EncodedUnreserved(b'A')),
        ("/%7E", P::EncodedUnreserved(b'~')),
        ("/%7e", P::EncodedUnreserved(b'~')),
        ("/%5F", P::EncodedUnreserved(b'_')),
        ("/%2D", P::EncodedUnreserved(b'-')),
        ("/%30", P::EncodedUnreserved(b'0')),
        ("/%2e%2e/admin", P::EncodedUnreserved(b'.')),
        ("/%2E/admin", P::EncodedUnreserved(b'.')),
        ("/public/%2E%2E/admin", P::EncodedUnreserved(b'.')),
        // Encoded slash and backslash, any case.
        ("/admin%2Fx", P::EncodedSlash(b'/')),
        ("/admin%2fx", P::EncodedSlash(b'/')),
        ("/admin%5Cx", P::EncodedSlash(b'\\')),
        ("/admin%5cx", P::EncodedSlash(b'\\')),
        // Double encoding (a server that decodes twice).
        ("/public/%252e%252e/admin", P::DoubleEncoded(b'.')),
        ("/admin%252Fx", P::DoubleEncoded(b'/')),
        ("/admin%252fx", P::DoubleEncoded(b'/')),
        ("/admin%255cx", P::DoubleEncoded(b'\\')),
        ("/%2561dmin", P::DoubleEncoded(b'a')),
        // Backslash, fragment, parameter.
        ("/admin\\x", P::Backslash),
        ("\\admin", P::NotAbsolute),
        ("/public\\..\\admin", P::Backslash),
        ("/admin#x", P::Fragment),
        ("/admin;x=1/y", P::Parameter),
        ("/admin;/x", P::Parameter),
        ("/public/..;/admin", P::Parameter),
        // Malformed escapes.
        ("/a%", P::BadEscape),
        ("/a%2", P::BadEscape),
        ("/a%2?x", P::BadEscape),
        ("/a%zz", P::BadEscape),
        ("/a%%41", P::BadEscape),
        ("/a%-1", P::BadEscape),
        // Not origin form.
        ("", P::NotAbsolute),
        ("admin/x", P::NotAbsolute),
        ("*", P::NotAbsolute),
        ("http://h/admin", P::NotAbsolute),
        ("?x", P::NotAbsolute),
        // Bytes outside printable ASCII.
        ("/a b", P::Byte(b' ')),
        ("/a\tb", P::Byte(b'\t')),
        ("/a\u{7f}", P::Byte(0x7f)),
        ("/a\0", P::Byte(0)),
        ("/é", P::Byte(0xc3)),
    ];
    for (p, want) in cases {
        assert_eq!(check_path(p), Err(*want), "{p:?}");
    }
}

#[test]
fn path_errors_name_the_problem() {
    assert_eq!(
        check_path("/%2f").unwrap_err().to_string(),
        "path has a percent-encoded slash or backslash (%2F)"
    );
    assert_eq!(
        check_path("/%61").unwrap_err().to_string(),
        "path has a percent-encoded unreserved character (%61)"
    );
}

#[test]
fn path_part_stops_at_the_query() {
    assert_eq!(path_part("/a/b?c=d?e"), "/a/b");
    assert_eq!(path_part("/a"), "/a");
    assert_eq!(path_part("?"), "");
}

#[test]
fn methods_must_be_upper_case_tokens() {
    for m in ["GET", "DELETE", "PROPFIND", "M-SEARCH", "X_1"] {
        assert_eq!(check_method(m), Ok(()), "{m}");
    }
    for (m, want) in [
        ("delete", MethodFormError::LowerCase),
        ("Delete", MethodFormError::LowerCase),
        ("gEt", MethodFormError::LowerCase),
        ("", MethodFormError::Length),
        ("GET POST", MethodFormError::NotToken),
        ("GET\t", MethodFormError::NotToken),
        ("DEL(ETE)", MethodFormError::NotToken),
        ("DÉLETE", MethodFormError::NotToken),
    ] {
        assert_eq!(check_method(m), Err(want), "{m:?}");
    }
    assert_eq!(
        check_method(&"A".repeat(MAX_METHOD_LEN + 1)),
        Err(MethodFormError::Length)
    );
    assert_eq!(check_method(&"A".repeat(MAX_METHOD_LEN)), Ok(()));
}

#[test]
fn hosts_are_lower_cased_without_port_or_trailing_dot() {
    for (h, want) in [
        ("api.example.com", "api.example.com"),
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("api.example.com:8443", "api.example.com"),
        ("API.example.com.:80", "api.example.com"),
        ("localhost", "localhost"),
        ("10.0.0.1:80", "10.0.0.1"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("[FE80::1]", "[fe80::1]"),
        ("svc_x.ns", "svc_x.ns"),
    ] {
        assert_eq!(normalize_host(h).as_deref(), Ok(want), "{h}");
    }
}

#[test]
fn malformed_hosts_are_refused() {
    use HostFormError as H;
    for (h, want) in [
        ("", H::Empty),
        (".", H::Empty),
        (":80", H::Empty),
        ("a..b", H::EmptyLabel),
        ("a.b..", H::EmptyLabel),
        (".a", H::EmptyLabel),
        ("a.com,b.com", H::Byte(b',')),
        ("a.com, b.com", H::Byte(b',')),
        ("a.com b", H::Byte(b' ')),
        ("user@a.com", H::Byte(b'@')),
        ("a.com:", H::BadPort),
        ("a.com:x", H::BadPort),
        ("a.com:123456", H::BadPort),
        ("a.com:80:80", H::Byte(b':')),
        ("[::1", H::BadLiteral),
        ("[]", H::BadLiteral),
        ("[::1]x", H::BadLiteral),
        ("[::g]", H::BadLiteral),
        ("[::1]:", H::BadPort),
        ("é.com", H::Byte(0xc3)),
        ("a/b", H::Byte(b'/')),
    ] {
        assert_eq!(normalize_host(h), Err(want), "{h:?}");
    }
    assert_eq!(normalize_host(&"a".repeat(300)), Err(H::TooLong));
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn headers_the_policy_reads_are_collected() {
    let p = pairs(&[
        (":path", "/x"),
        ("x-tenant", "good"),
        ("accept", "a"),
        ("accept", "b"),
        ("X-Env", "prod"),
    ]);
    let v = collect_headers(
        &p,
        &names(&["x-tenant", "x-env", "x-absent"]),
        None,
        RepeatedHeaders::Deny,
    )
    .unwrap();
    assert_eq!(v.headers, pairs(&[("x-tenant", "good"), ("x-env", "prod")]));
    assert!(v.identity_variants.is_empty());
}

#[test]
fn repeated_headers_are_refused_or_joined() {
    let p = pairs(&[("x-tenant", "good"), ("x-other", "1"), ("X-Tenant", "evil")]);
    let n = names(&["x-tenant"]);
    assert_eq!(
        collect_headers(&p, &n, None, RepeatedHeaders::Deny),
        Err(HeaderFormError::Repeated("x-tenant".into()))
    );
    let v = collect_headers(&p, &n, None, RepeatedHeaders::Join).unwrap();
    assert_eq!(v.headers, pairs(&[("x-tenant", "good,evil")]));
    // A list value reads the same as a repeated header to the upstream.
    let p = pairs(&[("x-tenant", "good,evil")]);
    assert_eq!(
        collect_headers(&p, &n, None, RepeatedHeaders::Deny),
        Err(HeaderFormError::List("x-tenant".into()))
    );
    let v = collect_headers(&p, &n, None, RepeatedHeaders::Join).unwrap();
    assert_eq!(v.headers, pairs(&[("x-tenant", "good,evil")]));
    // Empty values keep their place.
    let p = pairs(&[("x-tenant", ""), ("x-tenant", "a"), ("x-tenant", "")]);
    let v = collect_headers(&p, &n, None, RepeatedHeaders::Join).unwrap();
    assert_eq!(v.headers, pairs(&[("x-tenant", ",a,")]));
}

#[test]
fn underscore_variants_are_ambiguous_or_removed() {
    let n = names(&["x-tenant"]);
    let p = pairs(&[("x_tenant", "evil"), ("x-tenant", "good")]);
    assert_eq!(
        collect_headers(&p, &n, None, RepeatedHeaders::Join),
        Err(HeaderFormError::Underscore(
            "x-tenant".into(),
            "x_tenant".into()
        ))
    );
    let p = pairs(&[
        ("x_spiffe_peer_id", "spiffe://evil"),
        ("X_Spiffe-Peer_ID", "spiffe://evil"),
        ("x-spiffe-peer-id", "spiffe://evil"),
        ("x_other", "1"),
    ]);
    let v = collect_headers(&p, &n, Some("x-spiffe-peer-id"), RepeatedHeaders::Deny).unwrap();
    assert_eq!(
        v.identity_variants,
        names(&["x_spiffe_peer_id", "X_Spiffe-Peer_ID"])
    );
    assert!(v.headers.is_empty());
}

#[test]
fn join_value_appends_with_a_comma() {
    let mut s = String::from("a");
    join_value(&mut s, "b");
    join_value(&mut s, "");
    assert_eq!(s, "a,b,");
}
