//! Table tests for the SPIFFE ID rules: every rule with a valid and an invalid example,
//! the error variant matched exactly, and a walk of all 256 byte values.

use super::*;
use std::collections::HashSet;
use SpiffeIdError as E;

/// The allowed sets, written out independently of the implementation.
const TD_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789.-_";
const PATH_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_";

fn td_of_len(n: usize) -> String {
    "a".repeat(n)
}

/// `spiffe://td/` followed by segments so that the whole ID is exactly `n` bytes.
fn id_of_len(n: usize) -> String {
    let mut s = String::from("spiffe://td");
    while s.len() < n {
        let room = n - s.len() - 1; // for the '/'
        let seg = room.clamp(1, 100);
        s.push('/');
        s.push_str(&"x".repeat(seg));
    }
    assert_eq!(s.len(), n);
    s
}

#[test]
fn valid_workload_ids() {
    let long_td = format!("spiffe://{}/x", td_of_len(255));
    let max_id = id_of_len(2048);
    let cases: &[(&str, &str, &str)] = &[
        // (input, trust domain, path)
        ("spiffe://example.org/workload", "example.org", "/workload"),
        (
            "spiffe://cluster.local/ns/default/sa/web",
            "cluster.local",
            "/ns/default/sa/web",
        ),
        ("spiffe://a/b", "a", "/b"),
        ("spiffe://0-9._z/A-Z.09_z", "0-9._z", "/A-Z.09_z"),
        // Segments that merely contain dots are fine; only `.` and `..` are dot segments.
        ("spiffe://td/.a/..b/.../a.", "td", "/.a/..b/.../a."),
        // Upper case is allowed in the path (and preserved), not in the trust domain.
        ("spiffe://td/NS/Default", "td", "/NS/Default"),
        (&long_td, &long_td[9..264], "/x"),
        (&max_id, "td", &max_id[11..]),
    ];
    for (input, td, path) in cases {
        let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(id.trust_domain().as_str(), *td, "{input}");
        assert_eq!(id.path(), *path, "{input}");
        assert_eq!(id.to_string(), *input, "round trip {input}");
        assert_eq!(id.as_str(), *input);
        assert_eq!(SpiffeId::parse_bytes(input.as_bytes()).as_ref(), Ok(&id));
        assert_eq!(input.parse::<SpiffeId>().as_ref(), Ok(&id));
    }
}

#[test]
fn invalid_workload_ids_error_exactly() {
    let td_256 = format!("spiffe://{}/x", td_of_len(256));
    let td_256_upper = format!("spiffe://{}X/x", td_of_len(256));
    let too_long = id_of_len(2049);
    let too_long_scheme = format!("http://{}", "a".repeat(2100));
    let cases: Vec<(&str, SpiffeIdError)> = vec![
        // empty
        ("", E::Empty),
        // scheme: exactly `spiffe://`, lower case, nothing normalised
        ("http://example.org/x", E::WrongScheme),
        ("SPIFFE://example.org/x", E::WrongScheme),
        ("Spiffe://example.org/x", E::WrongScheme),
        ("spiffe:/example.org/x", E::WrongScheme),
        ("spiffe:example.org/x", E::WrongScheme),
        ("spiffe//example.org/x", E::WrongScheme),
        ("example.org/x", E::WrongScheme),
        (" spiffe://example.org/x", E::WrongScheme),
        // trust domain: present
        ("spiffe://", E::MissingTrustDomain),
        ("spiffe:///x", E::MissingTrustDomain),
        ("spiffe:///", E::MissingTrustDomain),
        // trust domain: [a-z0-9._-] only; no port, userinfo, percent-encoding, IP literal
        ("spiffe://Example.org/x", E::BadTrustDomainChar('E')),
        ("spiffe://example.org:8080/x", E::BadTrustDomainChar(':')),
        ("spiffe://example.org:/x", E::BadTrustDomainChar(':')),
        ("spiffe://user@example.org/x", E::BadTrustDomainChar('@')),
        ("spiffe://user:pw@example.org/x", E::BadTrustDomainChar(':')),
        ("spiffe://exa%6Dple.org/x", E::BadTrustDomainChar('%')),
        ("spiffe://[::1]/x", E::BadTrustDomainChar('[')),
        ("spiffe://ex ample/x", E::BadTrustDomainChar(' ')),
        ("spiffe://exämple.org/x", E::BadTrustDomainChar('ä')),
        ("spiffe://example.org?q=1", E::BadTrustDomainChar('?')),
        ("spiffe://example.org#frag", E::BadTrustDomainChar('#')),
        ("spiffe://example.org\\x", E::BadTrustDomainChar('\\')),
        // trust domain: at most 255 bytes (a bad character is reported first)
        (&td_256, E::TrustDomainTooLong(256)),
        (&td_256_upper, E::BadTrustDomainChar('X')),
        // workload IDs have a path
        ("spiffe://example.org", E::MissingPath),
        // path: no trailing slash (`spiffe://td/` included, as in go-spiffe)
        ("spiffe://example.org/", E::TrailingSlash),
        ("spiffe://example.org/a/", E::TrailingSlash),
        // path: no empty segments
        ("spiffe://example.org//", E::EmptySegment),
        ("spiffe://example.org//a", E::EmptySegment),
        ("spiffe://example.org/a//b", E::EmptySegment),
        // path: no dot segments
        ("spiffe://example.org/.", E::DotSegment),
        ("spiffe://example.org/..", E::DotSegment),
        ("spiffe://example.org/a/./b", E::DotSegment),
        ("spiffe://example.org/a/../b", E::DotSegment),
        ("spiffe://example.org/a/..", E::DotSegment),
        ("spiffe://example.org/./", E::DotSegment),
        // path: [a-zA-Z0-9._-] only; no percent-encoding, query, fragment
        ("spiffe://example.org/a%20b", E::BadPathChar('%')),
        ("spiffe://example.org/a%2Fb", E::BadPathChar('%')),
        ("spiffe://example.org/a?x=1", E::BadPathChar('?')),
        ("spiffe://example.org/a?", E::BadPathChar('?')),
        ("spiffe://example.org/a#frag", E::BadPathChar('#')),
        ("spiffe://example.org/pa:th", E::BadPathChar(':')),
        ("spiffe://example.org/pa@th", E::BadPathChar('@')),
        ("spiffe://example.org/a b", E::BadPathChar(' ')),
        ("spiffe://example.org/é", E::BadPathChar('é')),
        ("spiffe://example.org/a*", E::BadPathChar('*')),
        ("spiffe://example.org/a\\b", E::BadPathChar('\\')),
        (
            "spiffe://example.org/spiffe://example.org/x",
            E::BadPathChar(':'),
        ),
        // whole ID: at most 2048 bytes, checked before anything else but emptiness
        (&too_long, E::TooLong(2049)),
        (&too_long_scheme, E::TooLong(too_long_scheme.len())),
        // precedence: left to right, a segment is judged when its closing '/' is reached
        ("spiffe://TD/./", E::BadTrustDomainChar('T')),
        ("spiffe://td:1/.", E::BadTrustDomainChar(':')),
        ("spiffe://example.org/a//b%", E::EmptySegment),
        ("spiffe://example.org/%//", E::BadPathChar('%')),
        ("spiffe://example.org/./%", E::DotSegment),
        ("spiffe://example.org/a%/", E::BadPathChar('%')),
        ("spiffe://example.org/../", E::DotSegment),
        ("spiffe://example.org/a/b//", E::EmptySegment),
    ];
    for (input, want) in cases {
        assert_eq!(SpiffeId::parse(input), Err(want.clone()), "{input:?}");
        assert_eq!(
            SpiffeId::parse_bytes(input.as_bytes()),
            Err(want.clone()),
            "bytes {input:?}"
        );
        assert_eq!(input.parse::<SpiffeId>(), Err(want), "FromStr {input:?}");
    }
}

#[test]
fn limits_are_exact() {
    // 255-byte trust domain accepted, 256 rejected (bare and inside an ID).
    assert!(TrustDomain::new(&td_of_len(255)).is_ok());
    assert_eq!(
        TrustDomain::new(&td_of_len(256)),
        Err(E::TrustDomainTooLong(256))
    );
    assert!(SpiffeId::parse(&format!("spiffe://{}/x", td_of_len(255))).is_ok());
    // 2048-byte ID accepted, 2049 rejected.
    assert!(SpiffeId::parse(&id_of_len(2048)).is_ok());
    assert_eq!(SpiffeId::parse(&id_of_len(2049)), Err(E::TooLong(2049)));
    assert_eq!(
        SpiffeId::parse(&id_of_len(5000)),
        Err(E::TooLong(5000)),
        "long input is rejected without scanning"
    );
}

#[test]
fn parse_bytes_reports_invalid_utf8_as_replacement_char() {
    assert_eq!(
        SpiffeId::parse_bytes(b"spiffe://ex\xffample/x"),
        Err(E::BadTrustDomainChar(char::REPLACEMENT_CHARACTER))
    );
    assert_eq!(
        SpiffeId::parse_bytes(b"spiffe://example/a\xc3"),
        Err(E::BadPathChar(char::REPLACEMENT_CHARACTER))
    );
    // A valid multi-byte character is reported as itself.
    assert_eq!(
        SpiffeId::parse_bytes("spiffe://example/\u{1F600}".as_bytes()),
        Err(E::BadPathChar('\u{1F600}'))
    );
    assert_eq!(
        SpiffeId::parse_bytes(b"spiffe://example/a\x00"),
        Err(E::BadPathChar('\0'))
    );
}

#[test]
fn trust_domain_table() {
    let ok: &[(&str, &str)] = &[
        ("example.org", "example.org"),
        ("spiffe://example.org", "example.org"),
        ("a", "a"),
        ("0-9._z", "0-9._z"),
        ("cluster.local", "cluster.local"),
    ];
    for (input, name) in ok {
        let td = TrustDomain::new(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(td.as_str(), *name);
        assert_eq!(td.to_string(), *name);
        assert_eq!(td.id_string(), format!("spiffe://{name}"));
        assert_eq!(input.parse::<TrustDomain>().as_ref(), Ok(&td));
    }
    let bad: Vec<(&str, SpiffeIdError)> = vec![
        ("", E::MissingTrustDomain),
        ("spiffe://", E::MissingTrustDomain),
        ("Example.org", E::BadTrustDomainChar('E')),
        ("example.org:80", E::BadTrustDomainChar(':')),
        ("user@example.org", E::BadTrustDomainChar('@')),
        ("exa%6dple.org", E::BadTrustDomainChar('%')),
        ("example.org/x", E::BadTrustDomainChar('/')),
        ("spiffe://example.org/x", E::BadTrustDomainChar('/')),
        ("spiffe://example.org/", E::TrailingSlash),
        ("spiffe://Example.org", E::BadTrustDomainChar('E')),
        ("spiffe://example.org:80", E::BadTrustDomainChar(':')),
        ("SPIFFE://example.org", E::WrongScheme),
        ("http://example.org", E::WrongScheme),
        (" example.org", E::BadTrustDomainChar(' ')),
    ];
    for (input, want) in bad {
        assert_eq!(TrustDomain::new(input), Err(want.clone()), "{input:?}");
        if !input.contains(":/") {
            assert_eq!(validate_trust_domain(input), Err(want), "{input:?}");
        }
    }
    let long = td_of_len(256);
    assert_eq!(
        validate_trust_domain(&long),
        Err(E::TrustDomainTooLong(256))
    );
    assert_eq!(validate_trust_domain(&td_of_len(255)), Ok(()));
}

#[test]
fn validate_path_table() {
    let ok = ["", "/a", "/a/b", "/A.b-c_d/0", "/.a/a./..."];
    for p in ok {
        assert_eq!(validate_path(p), Ok(()), "{p:?}");
    }
    let bad: Vec<(&str, SpiffeIdError)> = vec![
        ("a", E::NoLeadingSlash),
        ("a/b", E::NoLeadingSlash),
        ("/", E::TrailingSlash),
        ("/a/", E::TrailingSlash),
        ("//", E::EmptySegment),
        ("/a//b", E::EmptySegment),
        ("/.", E::DotSegment),
        ("/a/..", E::DotSegment),
        ("/a%41", E::BadPathChar('%')),
        ("/a?b", E::BadPathChar('?')),
        ("/a#b", E::BadPathChar('#')),
    ];
    for (p, want) in bad {
        assert_eq!(validate_path(p), Err(want), "{p:?}");
    }
}

#[test]
fn from_parts_table() {
    let td = TrustDomain::new("cluster.local").unwrap();
    let id = SpiffeId::from_parts(&td, "/ns/default/sa/web").unwrap();
    assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/web");
    assert_eq!(id, SpiffeId::parse(id.as_str()).unwrap());
    assert_eq!(id.trust_domain(), &td);
    assert_eq!(id.path(), "/ns/default/sa/web");

    let bad: Vec<(&str, SpiffeIdError)> = vec![
        ("", E::MissingPath),
        // Without the leading '/', concatenation would silently change the trust domain.
        ("ns/default", E::NoLeadingSlash),
        ("/", E::TrailingSlash),
        ("/ns/", E::TrailingSlash),
        ("/a//b", E::EmptySegment),
        ("/a/../b", E::DotSegment),
        ("/a?b", E::BadPathChar('?')),
    ];
    for (p, want) in bad {
        assert_eq!(SpiffeId::from_parts(&td, p), Err(want), "{p:?}");
    }
    // Length: 9 + 13 + path.
    let max_path = format!("/{}", "x".repeat(2048 - 9 - 13 - 1));
    assert!(SpiffeId::from_parts(&td, &max_path).is_ok());
    let long_path = format!("/{}", "x".repeat(2048 - 9 - 13));
    assert_eq!(SpiffeId::from_parts(&td, &long_path), Err(E::TooLong(2049)));
    // A trust domain taken from an ID works the same.
    let other = SpiffeId::parse("spiffe://example.org/a").unwrap();
    let id2 = SpiffeId::from_parts(other.trust_domain(), "/b/c").unwrap();
    assert_eq!(id2.as_str(), "spiffe://example.org/b/c");
}

#[test]
fn accessors() {
    let id = SpiffeId::parse("spiffe://cluster.local/ns/web/sa/frontend").unwrap();
    assert_eq!(id.trust_domain().as_str(), "cluster.local");
    assert_eq!(id.path(), "/ns/web/sa/frontend");
    assert_eq!(id.namespace(), Some("web"));
    assert_eq!(id.principal(), "cluster.local/ns/web/sa/frontend");
    assert_eq!(id.principal_str(), "cluster.local/ns/web/sa/frontend");
    assert_eq!(
        format!("{id:?}"),
        "SpiffeId(\"spiffe://cluster.local/ns/web/sa/frontend\")"
    );
    assert_eq!(
        format!("{:?}", id.trust_domain()),
        "TrustDomain(\"cluster.local\")"
    );

    for (input, ns) in [
        ("spiffe://td/ns/a", Some("a")),
        ("spiffe://td/ns", None),
        ("spiffe://td/sa/x/ns/y", None),
        ("spiffe://td/NS/a", None),
        ("spiffe://td/workload", None),
    ] {
        assert_eq!(SpiffeId::parse(input).unwrap().namespace(), ns, "{input}");
    }
}

#[test]
fn equality_hash_and_clone_follow_the_text() {
    let a = SpiffeId::parse("spiffe://example.org/a").unwrap();
    let b = SpiffeId::from_parts(&TrustDomain::new("example.org").unwrap(), "/a").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.clone(), a);
    assert_ne!(a, SpiffeId::parse("spiffe://example.org/A").unwrap());
    assert_ne!(a, SpiffeId::parse("spiffe://example.or/g/a").unwrap());

    // A trust domain borrowed from an ID equals the bare one, and clones compactly.
    let td = a.trust_domain().clone();
    assert_eq!(td, TrustDomain::new("example.org").unwrap());
    assert_eq!(td.buf.len(), "example.org".len());

    // Borrow<str>: sets can be queried with the text.
    let set: HashSet<SpiffeId> = [a.clone()].into_iter().collect();
    assert!(set.contains("spiffe://example.org/a"));
    let tds: HashSet<TrustDomain> = [a.trust_domain().clone()].into_iter().collect();
    assert!(tds.contains("example.org"));
    assert!(tds.contains(a.trust_domain()));

    let mut ids = [
        SpiffeId::parse("spiffe://b/x").unwrap(),
        SpiffeId::parse("spiffe://a/y").unwrap(),
        SpiffeId::parse("spiffe://a/x").unwrap(),
    ];
    ids.sort();
    let sorted: Vec<&str> = ids.iter().map(SpiffeId::as_str).collect();
    assert_eq!(sorted, ["spiffe://a/x", "spiffe://a/y", "spiffe://b/x"]);
}

#[test]
fn error_messages_name_the_problem() {
    let msg = |s: &str| SpiffeId::parse(s).unwrap_err().to_string();
    assert!(
        msg("spiffe://td:80/x").contains("port"),
        "{}",
        msg("spiffe://td:80/x")
    );
    assert!(msg("spiffe://u@td/x").contains("userinfo"));
    assert!(msg("spiffe://TD/x").contains("upper case"));
    assert!(msg("spiffe://td/a%41").contains("percent-encoding"));
    assert!(msg("spiffe://td/a?q").contains("query"));
    assert!(msg("spiffe://td/a#f").contains("fragment"));
    assert!(msg("SPIFFE://td/a").contains("spiffe://"));
    assert!(msg("spiffe://td/").contains("trailing"));
}

fn char_of(b: u8) -> char {
    char::from(b)
}

/// The char a raw byte is reported as by `parse_bytes`: itself if ASCII, else U+FFFD
/// (a lone byte >= 0x80 is not UTF-8).
fn reported_raw(b: u8) -> char {
    if b.is_ascii() {
        char::from(b)
    } else {
        char::REPLACEMENT_CHARACTER
    }
}

/// Walks every byte: `class` (named `name`) must accept exactly the bytes of `chars`, which
/// has `count` of them; `each(b, allowed)` checks the rest for one byte.
fn byte_walk(
    (name, class): (&str, fn(u8) -> bool),
    chars: &str,
    count: usize,
    mut each: impl FnMut(u8, bool),
) {
    let mut accepted = 0;
    for b in 0..=255u8 {
        let allowed = chars.as_bytes().contains(&b);
        assert_eq!(class(b), allowed, "{name}({b:#04x})");
        accepted += usize::from(allowed);
        each(b, allowed);
    }
    assert_eq!(accepted, count);
}

/// `<prefix><b><suffix>` parsed as a SPIFFE ID, as text and as raw bytes: valid when `b` is
/// allowed, else `bad` of the char as reported.
fn id_with_byte(prefix: &str, b: u8, suffix: &str, allowed: bool, bad: fn(char) -> E) {
    let c = char_of(b);
    let id = format!("{prefix}{c}{suffix}");
    let mut raw = prefix.as_bytes().to_vec();
    raw.push(b);
    raw.extend_from_slice(suffix.as_bytes());
    let want = |c| if allowed { Ok(()) } else { Err(bad(c)) };
    assert_eq!(
        SpiffeId::parse(&id).map(|_| ()),
        want(c),
        "id byte {b:#04x}"
    );
    assert_eq!(
        SpiffeId::parse_bytes(&raw).map(|_| ()),
        want(reported_raw(b)),
        "raw id byte {b:#04x}"
    );
}

#[test]
fn byte_walk_trust_domain() {
    let class = (
        "is_trust_domain_byte",
        is_trust_domain_byte as fn(u8) -> bool,
    );
    byte_walk(class, TD_CHARS, 26 + 10 + 3, |b, allowed| {
        // Bare trust domain, as text (bytes >= 0x80 as the char U+0080..U+00FF).
        let c = char_of(b);
        let name = format!("a{c}b");
        let want = if allowed {
            Ok(())
        } else {
            Err(E::BadTrustDomainChar(c))
        };
        assert_eq!(
            validate_trust_domain(&name),
            want,
            "validate_trust_domain byte {b:#04x}"
        );
        assert_eq!(
            TrustDomain::new(&name).map(|_| ()),
            want,
            "TrustDomain::new byte {b:#04x}"
        );

        // The byte alone as a trust domain.
        let alone = c.to_string();
        assert_eq!(
            validate_trust_domain(&alone).is_ok(),
            allowed,
            "single byte {b:#04x}"
        );

        // Inside a SPIFFE ID, as text and as a raw byte.
        if b == b'/' {
            // The slash ends the trust domain: `spiffe://a/b/x`.
            let id = format!("spiffe://a{c}b/x");
            assert_eq!(SpiffeId::parse(&id).unwrap().trust_domain().as_str(), "a");
            assert_eq!(SpiffeId::parse_bytes(id.as_bytes()).unwrap().path(), "/b/x");
            return;
        }
        id_with_byte("spiffe://a", b, "b/x", allowed, E::BadTrustDomainChar);
    });
}

#[test]
fn byte_walk_path_segment() {
    let class = (
        "is_path_segment_byte",
        is_path_segment_byte as fn(u8) -> bool,
    );
    byte_walk(class, PATH_CHARS, 26 + 26 + 10 + 3, |b, allowed| {
        let c = char_of(b);

        // Inside a segment.
        let path = format!("/a{c}b");
        if b == b'/' {
            // A separator: two segments.
            assert_eq!(validate_path(&path), Ok(()));
            let raw = format!("spiffe://td{path}");
            assert_eq!(
                SpiffeId::parse_bytes(raw.as_bytes()).unwrap().path(),
                "/a/b"
            );
            return;
        }
        let want = if allowed {
            Ok(())
        } else {
            Err(E::BadPathChar(c))
        };
        assert_eq!(validate_path(&path), want, "validate_path byte {b:#04x}");
        id_with_byte("spiffe://td/a", b, "b", allowed, E::BadPathChar);

        // The byte as a whole segment: `.` alone is a dot segment.
        let single = format!("/{c}");
        let want_single = match b {
            b'.' => Err(E::DotSegment),
            _ if allowed => Ok(()),
            _ => Err(E::BadPathChar(c)),
        };
        assert_eq!(validate_path(&single), want_single, "segment {b:#04x}");
    });
}

#[test]
fn byte_walk_first_byte_of_path() {
    // A path that does not start with '/' cannot come out of an ID (the trust domain ends
    // at the first '/'), but `validate_path` and `from_parts` see it.
    let td = TrustDomain::new("td").unwrap();
    for b in 0..=255u8 {
        let c = char_of(b);
        let path = format!("{c}a");
        let want = if b == b'/' {
            Ok(())
        } else {
            Err(E::NoLeadingSlash)
        };
        assert_eq!(validate_path(&path), want, "{b:#04x}");
        assert_eq!(
            SpiffeId::from_parts(&td, &path).map(|_| ()),
            want,
            "{b:#04x}"
        );
    }
}
