//! Table tests from RFC 7541 Appendix C (header blocks and Huffman strings) and frame-level
//! tests of the rewriter.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn huffman_lengths_from_rfc_7541_examples() {
    for (encoded, decoded) in [
        ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
        ("a8eb 1064 9cbf", "no-cache"),
        ("25a8 49e9 5ba9 7d7f", "custom-key"),
        ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
        ("6402", "302"),
        ("aec3 771a 4b", "private"),
        (
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
            "Mon, 21 Oct 2013 20:13:21 GMT",
        ),
        (
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            "https://www.example.com",
        ),
        ("", ""),
        // '0' (00000) then three padding ones.
        ("07", "0"),
    ] {
        assert_eq!(
            huffman_decoded_len(&hex(encoded)),
            Ok(decoded.len()),
            "{decoded:?}"
        );
    }
}

#[test]
fn huffman_refuses_eos_and_bad_padding() {
    let eos = Err(H2AuthorityError::Hpack("Huffman EOS in a string"));
    let padding = Err(H2AuthorityError::Hpack("invalid Huffman padding"));
    for (encoded, want) in [
        ("ffff ffff", &eos),
        // '0' then padding 000: not all ones.
        ("00", &padding),
        // 8 one-bits of padding after "302".
        ("6402 ff", &padding),
    ] {
        assert_eq!(&huffman_decoded_len(&hex(encoded)), want, "{encoded}");
    }
}

/// RFC 7541 C.3 / C.4: three requests on one connection, the first with a literal
/// :authority (replaced by `localhostxxxxxx`, plain), the second and third referring to it by
/// index (0xbe, 0xbf): passed through unchanged, and the table keeps the RFC's sizes.
fn rfc_7541_requests(section: &str, [first, second, third]: [&str; 3]) {
    let mut t = Table::new();
    let out = t.rewrite_block(&hex(first)).unwrap();
    let mut want = hex("8286 8441 0f");
    want.extend_from_slice(b"localhostxxxxxx");
    assert_eq!(out, want, "{section}");
    assert_eq!(t.size, 57, "RFC 7541 {section}.1 table size");
    for (block, size, step) in [(second, 110, 2), (third, 164, 3)] {
        let block = hex(block);
        assert_eq!(t.rewrite_block(&block).unwrap(), block, "{section}.{step}");
        assert_eq!(t.size, size, "RFC 7541 {section}.{step} table size");
    }
}

/// RFC 7541 C.3: without Huffman coding.
#[test]
fn rfc_7541_c3_requests_authority_replaced_table_in_step() {
    rfc_7541_requests(
        "C.3",
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
    );
}

/// RFC 7541 C.4: the same requests with Huffman coding; the authority is replaced by a
/// same-length plain value.
#[test]
fn rfc_7541_c4_huffman_authority_replaced_by_same_length_plain_value() {
    rfc_7541_requests(
        "C.4",
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    );
}

#[test]
fn every_literal_authority_form_is_replaced() {
    let grpc_core = b"%2Ftmp%2Fsock";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Without indexing (0000), indexed name 1.
        ([&[0x01, 13][..], grpc_core].concat(), "without indexing"),
        // Never indexed (0001), indexed name 1.
        ([&[0x11, 13][..], grpc_core].concat(), "never indexed"),
        // Incremental indexing with a literal name ":authority".
        (
            [&[0x40, 10][..], b":authority", &[13][..], grpc_core].concat(),
            "literal name",
        ),
    ];
    for (block, what) in cases {
        let mut t = Table::new();
        let out = t.rewrite_block(&block).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("localhostxxxx"), "{what}: {text}");
        assert!(!text.contains("%2F"), "{what}: {text}");
        assert_eq!(out.len(), block.len(), "{what}");
    }
    // A literal field whose name is a dynamic entry that is :authority.
    let mut t = Table::new();
    t.rewrite_block(&[&[0x41, 3][..], b"a%b"].concat()).unwrap();
    let out = t
        .rewrite_block(&[&[0x0f, 0x2f, 3][..], b"c%d"].concat())
        .unwrap();
    assert_eq!(out, [&[0x0f, 0x2f, 3][..], b"loc"].concat());
}

#[test]
fn other_fields_and_long_values_pass_through() {
    let mut t = Table::new();
    // :path (static 4) literal, long value needing a multi-byte length.
    let path = vec![b'/'; 300];
    let mut block = vec![0x04];
    push_int(&mut block, 0x00, 7, path.len());
    block.extend_from_slice(&path);
    assert_eq!(t.rewrite_block(&block).unwrap(), block);
    // A long :authority: the replacement keeps the length (multi-byte length prefix).
    let long = vec![b'%'; 200];
    let mut block = vec![0x41];
    push_int(&mut block, 0x00, 7, long.len());
    block.extend_from_slice(&long);
    let out = t.rewrite_block(&block).unwrap();
    assert_eq!(out.len(), block.len());
    assert!(out.ends_with(b"xxxx") && out[3..12] == *b"localhost");
}

#[test]
fn hpack_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0x80], "index 0"),
        (vec![0xbe], "index beyond the dynamic table"),
        (vec![0x41], "truncated header block"),
        (
            vec![0x41, 0x05, b'a'],
            "string longer than the header block",
        ),
        (
            vec![0x3f, 0xff, 0xff, 0xff, 0xff, 0x7f],
            "integer too large",
        ),
        (
            vec![0x3f, 0xe1, 0xff, 0x04],
            "table size update over the limit",
        ),
    ];
    for (block, want) in cases {
        let mut t = Table::new();
        assert_eq!(
            t.rewrite_block(&block),
            Err(H2AuthorityError::Hpack(want)),
            "{block:02x?}"
        );
    }
}

#[test]
fn table_size_updates_evict_like_the_encoder() {
    let mut t = Table::new();
    // Two entries of 32+10+3 = 45 octets each.
    t.rewrite_block(&[&[0x41, 3][..], b"a.b"].concat()).unwrap();
    t.rewrite_block(&[&[0x41, 3][..], b"c.d"].concat()).unwrap();
    assert_eq!((t.entries.len(), t.size), (2, 90));
    // Shrink to 50: the older entry is evicted; index 63 no longer exists.
    t.rewrite_block(&[0x3f, 0x13]).unwrap();
    assert_eq!((t.entries.len(), t.size), (1, 45));
    assert!(t.rewrite_block(&[0xbf]).is_err());
    assert!(t.rewrite_block(&[0xbe]).is_ok());
    // An entry larger than the table empties it.
    t.rewrite_block(&[&[0x41, 30][..], &[b'x'; 30][..]].concat())
        .unwrap();
    assert_eq!((t.entries.len(), t.size), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Frames

fn frame(frame_type: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    push_frame_header(
        &mut f,
        payload.len(),
        frame_type,
        flags,
        stream.to_be_bytes(),
    );
    f.extend_from_slice(payload);
    f
}

fn connection(headers: &[Vec<u8>]) -> Vec<u8> {
    let mut c = PREFACE.to_vec();
    c.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
    for h in headers {
        c.extend_from_slice(h);
    }
    c.extend(frame(0x0, 0x1, 1, b"\0\0\0\0\0")); // DATA, END_STREAM
    c
}

fn run(input: &[u8], chunk: usize) -> Result<Vec<u8>, H2AuthorityError> {
    let mut r = ClientRewriter::new();
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        r.feed(c, &mut out)?;
    }
    Ok(out)
}

const C31: &str = "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d";

#[test]
fn a_connection_is_rewritten_the_same_whatever_the_chunking() {
    let block = hex(C31);
    let input = connection(&[frame(0x1, 0x4, 1, &block)]);
    let want = {
        let mut rewritten = hex("8286 8441 0f");
        rewritten.extend_from_slice(b"localhostxxxxxx");
        connection(&[frame(0x1, 0x4, 1, &rewritten)])
    };
    for chunk in [1, 2, 3, 7, 9, 10, 64, 4096] {
        assert_eq!(run(&input, chunk).unwrap(), want, "chunk {chunk}");
    }
}

#[test]
fn padding_priority_and_continuation_are_folded_into_one_headers_frame() {
    let block = hex(C31);
    let (a, b) = block.split_at(5);
    // PADDED + PRIORITY + END_STREAM, no END_HEADERS; then a CONTINUATION with END_HEADERS.
    let mut payload = vec![3u8];
    payload.extend_from_slice(&[0x80, 0, 0, 0, 15]);
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0, 0, 0]);
    let input = connection(&[
        frame(0x1, 0x8 | 0x20 | 0x1, 1, &payload),
        frame(0x9, 0x4, 1, b),
    ]);
    let mut rewritten = vec![0x80, 0, 0, 0, 15];
    rewritten.extend(hex("8286 8441 0f"));
    rewritten.extend_from_slice(b"localhostxxxxxx");
    let want = connection(&[frame(0x1, 0x20 | 0x1 | 0x4, 1, &rewritten)]);
    assert_eq!(run(&input, 5).unwrap(), want);
}

#[test]
fn a_block_larger_than_a_frame_is_split_into_continuations() {
    // :path literal of 20000 octets.
    let mut block = vec![0x04];
    push_int(&mut block, 0x00, 7, 20_000);
    block.extend(std::iter::repeat_n(b'/', 20_000));
    let (a, b) = block.split_at(10_000);
    let input = connection(&[frame(0x1, 0, 3, a), frame(0x9, 0x4, 3, b)]);
    let out = run(&input, 4096).unwrap();
    let (first, rest) = block.split_at(OUT_FRAME_LEN);
    let want = connection(&[frame(0x1, 0, 3, first), frame(0x9, 0x4, 3, rest)]);
    assert_eq!(out, want);
}

#[test]
fn frame_errors_close_the_connection() {
    let block = hex(C31);
    let cases: Vec<(Vec<u8>, H2AuthorityError)> = vec![
        (
            connection(&[frame(0x1, 0, 1, &block[..4]), frame(0x0, 0, 1, b"x")]),
            H2AuthorityError::InterruptedHeaderBlock { frame_type: 0 },
        ),
        (
            connection(&[frame(0x9, 0x4, 1, &block)]),
            H2AuthorityError::StrayContinuation,
        ),
        (
            connection(&[
                frame(0x1, 0, 1, &block[..4]),
                frame(0x9, 0x4, 3, &block[4..]),
            ]),
            H2AuthorityError::StrayContinuation,
        ),
        (
            connection(&[frame(0x1, 0x8, 1, &[9, 0x82])]),
            H2AuthorityError::BadHeadersFrame("padding longer than the payload"),
        ),
        (
            connection(&[frame(0x1, 0x20 | 0x4, 1, &[0, 0])]),
            H2AuthorityError::BadHeadersFrame("short priority fields"),
        ),
        (
            {
                let mut c = PREFACE.to_vec();
                c.extend_from_slice(&[0x20, 0, 0, 0x0, 0, 0, 0, 0, 1]);
                c
            },
            H2AuthorityError::FrameTooLarge { len: 0x20_0000 },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(run(&input, 3), Err(want.clone()), "{want}");
    }
    // A header block over the limit.
    let mut c = PREFACE.to_vec();
    c.extend(frame(0x1, 0, 1, &vec![0x82; OUT_FRAME_LEN]));
    for _ in 0..4 {
        c.extend(frame(0x9, 0, 1, &vec![0x82; OUT_FRAME_LEN]));
    }
    assert_eq!(run(&c, 4096), Err(H2AuthorityError::HeaderBlockTooLarge));
}
