use super::*;

fn nest(open: &str, close: &str, n: usize) -> String {
    format!("{}1{}", open.repeat(n), close.repeat(n))
}

/// `n` levels of block mappings, one per line, each indented one more column.
fn block(n: usize) -> String {
    (0..n).map(|i| format!("{}a:\n", " ".repeat(i))).collect()
}

/// The verdict: `Ok`, or the error's message.
fn yaml(text: &str) -> Result<(), String> {
    yaml_shape(text).map_err(|e| e.to_string())
}

const DEEP: &str = "policy document too large: nested more than 32 levels deep";

#[test]
fn yaml_depth_is_the_parsers_own() {
    // (what, text, accepted)
    let cases: Vec<(&str, String, bool)> = vec![
        ("32 flow mappings", nest("{a: ", "}", 32), true),
        ("33 flow mappings", nest("{a: ", "}", 33), false),
        ("32 flow sequences", nest("[", "]", 32), true),
        ("33 flow sequences", nest("[", "]", 33), false),
        ("32 block mappings", block(32), true),
        ("33 block mappings", block(33), false),
        ("32 dashes", format!("{}x\n", "- ".repeat(32)), true),
        ("33 dashes", format!("{}x\n", "- ".repeat(33)), false),
        (
            "a flow collection split over lines",
            format!("x: {}", nest("[\n ", "\n ]", 40)),
            false,
        ),
        // Evasions of a line-by-line scanner: the nesting follows something that looks like
        // an unterminated quote, or sits on lines that look like the inside of a string.
        (
            "after a plain scalar holding a quote",
            format!("{{k: a\", b: {}}}", nest("{a: ", "}", 40)),
            false,
        ),
        (
            "after a plain scalar holding an apostrophe",
            format!("{{k: it's, b: {}}}", nest("[", "]", 40)),
            false,
        ),
        (
            "after a multi-line double-quoted scalar",
            format!("x: \"a\n  \\\" \"\ny: {}\n", nest("[", "]", 40)),
            false,
        ),
        (
            "after a multi-line single-quoted scalar",
            format!("x: 'a\n  '' '\ny: {}\n", nest("{a: ", "}", 40)),
            false,
        ),
        (
            "after a hash inside a plain scalar",
            format!("x: a#b\ny: {}\n", nest("[", "]", 40)),
            false,
        ),
        // Brackets that are text, not structure, cost nothing.
        (
            "brackets in a literal block scalar",
            format!("x: |\n  {}\ny: 1\n", "[{".repeat(500)),
            true,
        ),
        (
            "brackets in a folded block scalar",
            format!("x: >-\n  {}\n  {}\n", "[".repeat(500), "{".repeat(500)),
            true,
        ),
        (
            "brackets in quoted scalars",
            format!("x: \"{}\"\ny: '{}'\n", "[".repeat(500), "{".repeat(500)),
            true,
        ),
        (
            "brackets in a comment",
            format!("# {}\nx: 1 # {}\n", "[".repeat(500), "{".repeat(500)),
            true,
        ),
        (
            "brackets in a plain scalar",
            format!("x: a{}\n", "[{".repeat(500)),
            true,
        ),
    ];
    for (what, text, accepted) in cases {
        let got = yaml(&text);
        if accepted {
            assert_eq!(got, Ok(()), "{what}");
        } else {
            assert_eq!(got, Err(DEEP.to_owned()), "{what}");
        }
    }
}

#[test]
fn aliases_count_at_their_depth_and_are_capped() {
    let anchored = format!("a: &x {}\n", nest("[", "]", 20));
    // (what, text, the error or None)
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("an alias to a scalar", "a: &x 1\nb: *x\n".to_owned(), None),
        (
            "an alias within the depth",
            format!("{anchored}b: {}*x{}\n", "[".repeat(11), "]".repeat(11)),
            None,
        ),
        (
            "an alias that goes past the depth",
            format!("{anchored}b: {}*x{}\n", "[".repeat(12), "]".repeat(12)),
            Some(DEEP),
        ),
        (
            "anchors of anchors",
            format!(
                "a: &x {}\nb: &y [*x]\nc: &z [*y]\nd: {}*z{}\n",
                nest("[", "]", 10),
                "[".repeat(20),
                "]".repeat(20)
            ),
            Some(DEEP),
        ),
        (
            "too many aliases",
            format!("a: &x 1\nb: [{}]\n", vec!["*x"; MAX_ALIASES + 1].join(", ")),
            Some("policy document too large: more than 1000 aliases"),
        ),
        (
            "billion laughs",
            {
                let mut s = "a: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
                for i in 1..10 {
                    let prev = format!("*a{}", i - 1);
                    s.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
                }
                s
            },
            Some("policy document too large: aliases expand to more than 100000 nodes"),
        ),
        (
            "an alias inside its own node",
            "a: &x [1, *x]\n".to_owned(),
            Some("cannot parse policy document: alias 1 refers to a node that encloses it or is not defined"),
        ),
    ];
    for (what, text, want) in cases {
        match want {
            None => assert_eq!(yaml(&text), Ok(()), "{what}"),
            Some(msg) => assert_eq!(yaml(&text), Err(msg.to_owned()), "{what}"),
        }
    }
}

#[test]
fn yaml_syntax_errors_name_line_and_column() {
    let err = yaml("a: [1, 2\nb: 3\n").unwrap_err();
    assert!(err.starts_with("cannot parse policy document: "), "{err}");
    assert!(err.contains(" at line "), "{err}");
    assert!(err.contains(" column "), "{err}");
}

#[test]
fn json_depth_is_exact() {
    let cases = [
        (nest("[", "]", 32), true),
        (nest("[", "]", 33), false),
        (nest("{\"a\": ", "}", 33), false),
        (format!("[\"{}\"]", "[".repeat(100)), true),
        (format!("[\"\\\"{}\"]", "[".repeat(100)), true),
    ];
    for (text, accepted) in cases {
        assert_eq!(json_lists(&text).is_ok(), accepted, "{text:.60}");
    }
}

#[test]
fn size_is_capped_first() {
    let big = "a".repeat(MAX_DOCUMENT_BYTES + 1);
    for checked in [yaml_shape(&big), json_lists(&big).map(drop)] {
        assert_eq!(
            checked.map_err(|e| e.to_string()),
            Err(format!(
                "policy document too large: {} bytes, more than the limit of {MAX_DOCUMENT_BYTES}",
                MAX_DOCUMENT_BYTES + 1
            ))
        );
    }
}

#[test]
fn the_json_check_also_counts_the_lists() {
    assert_eq!(
        json_lists("[[1, 2], [], {\"a\": [3]}]").ok(),
        Some(vec![3, 2, 0, 1])
    );
    // The cap stops the scan: no lengths, an error.
    assert_eq!(list_lengths(nest("[", "]", 33).as_bytes(), MAX_DEPTH), None);
    assert_eq!(
        list_lengths(nest("[", "]", 32).as_bytes(), MAX_DEPTH).map(|l| l.len()),
        Some(32)
    );
}
