//! HTTP/2 `:authority` rewriting for gRPC over Unix sockets (client → server bytes only).
//!
//! grpc-core clients (Python, C++, Ruby, so py-spiffe) and grpc-java clients (java-spiffe) send
//! the Unix socket's path, percent-encoded, as the `:authority` of every request. RFC 9113 only
//! allows `host[:port]` there, and the HTTP/2 server under tonic refuses such requests with
//! `RST_STREAM(PROTOCOL_ERROR)`. Go and Rust clients send `localhost`. [`ClientRewriter`] sits
//! between the client's socket and the server and replaces every literal `:authority` value
//! with a valid host name **of the same decoded length** (`localhost…`). The authority of a
//! request on a local socket means nothing, and the server ignores it.
//!
//! The replacement has the same length so that HPACK's dynamic table stays in step. The client
//! encoder and the server decoder must agree on every entry's size (name + value + 32 octets),
//! or later indexed references would point at different entries. Every header block is
//! walked, and a mirror of the table (sizes and "is `:authority`" only, no contents) is kept.
//! Everything else passes through byte for byte.
//!
//! Limits: one header block (HEADERS + CONTINUATION) at most [`MAX_HEADER_BLOCK`] octets;
//! frames at most [`MAX_FRAME_LEN`]; the dynamic table at most [`MAX_TABLE_SIZE`]. Malformed
//! input is an error: the connection is closed. An `:authority` sent as a Huffman-coded
//! *literal name* (no encoder does this; all use static index 1) is not recognised and passes
//! unchanged.

use std::collections::VecDeque;

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest frame payload accepted from the client (the server's default
/// `SETTINGS_MAX_FRAME_SIZE` is 16384; a client must not exceed what the server advertised).
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Largest frame payload sent to the server (HTTP/2's default and minimum maximum).
pub const OUT_FRAME_LEN: usize = 16_384;
/// Largest header block (all its HEADERS and CONTINUATION fragments together).
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Largest HPACK dynamic table the client may announce.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;
/// The dynamic table size both sides start with (RFC 9113 `SETTINGS_HEADER_TABLE_SIZE`).
const DEFAULT_TABLE_SIZE: usize = 4096;

const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Why the client's bytes cannot be rewritten (the connection is then closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H2AuthorityError {
    #[error("HTTP/2 frame of {len} octets exceeds the limit of {MAX_FRAME_LEN}")]
    FrameTooLarge { len: usize },
    #[error("HTTP/2 header block exceeds the limit of {MAX_HEADER_BLOCK} octets")]
    HeaderBlockTooLarge,
    #[error("HTTP/2 frame type {frame_type:#x} in the middle of a header block")]
    InterruptedHeaderBlock { frame_type: u8 },
    #[error("HTTP/2 CONTINUATION frame without a header block to continue")]
    StrayContinuation,
    #[error("HTTP/2 HEADERS frame: {0}")]
    BadHeadersFrame(&'static str),
    #[error("HPACK: {0}")]
    Hpack(&'static str),
}

/// Rewrites the client → server byte stream of one HTTP/2 connection.
#[derive(Debug)]
pub struct ClientRewriter {
    preface_left: usize,
    passthrough_left: usize,
    pending: Vec<u8>,
    block: Option<Block>,
    table: Table,
}

#[derive(Debug)]
struct Block {
    stream_id: [u8; 4],
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

impl Default for ClientRewriter {
    fn default() -> Self {
        ClientRewriter::new()
    }
}

impl ClientRewriter {
    pub fn new() -> ClientRewriter {
        ClientRewriter {
            preface_left: PREFACE.len(),
            passthrough_left: 0,
            pending: Vec::new(),
            block: None,
            table: Table::new(),
        }
    }

    /// Consumes `input` (what the client sent next) and appends what the server should get to
    /// `out`. Bytes of an incomplete frame header or header block are held until more arrive.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), H2AuthorityError> {
        let mut input = input;
        loop {
            if self.preface_left > 0 {
                let n = self.preface_left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.preface_left -= n;
                input = &input[n..];
            }
            if self.passthrough_left > 0 {
                let n = self.passthrough_left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.passthrough_left -= n;
                input = &input[n..];
            }
            if input.is_empty() && self.pending.len() < 9 {
                return Ok(());
            }
            // Gather one frame header (and, for header frames, the payload).
            let want_header = 9usize.saturating_sub(self.pending.len());
            let n = want_header.min(input.len());
            self.pending.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.pending.len() < 9 {
                return Ok(());
            }
            let len = usize::from(self.pending[0]) << 16
                | usize::from(self.pending[1]) << 8
                | usize::from(self.pending[2]);
            let frame_type = self.pending[3];
            if len > MAX_FRAME_LEN {
                return Err(H2AuthorityError::FrameTooLarge { len });
            }
            let is_header_frame = frame_type == FRAME_HEADERS || frame_type == FRAME_CONTINUATION;
            if !is_header_frame {
                if self.block.is_some() {
                    return Err(H2AuthorityError::InterruptedHeaderBlock { frame_type });
                }
                out.extend_from_slice(&self.pending);
                self.pending.clear();
                self.passthrough_left = len;
                continue;
            }
            let want = (9 + len).saturating_sub(self.pending.len());
            let n = want.min(input.len());
            self.pending.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.pending.len() < 9 + len {
                return Ok(());
            }
            let frame = std::mem::take(&mut self.pending);
            self.header_frame(&frame, out)?;
        }
    }

    fn header_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), H2AuthorityError> {
        let frame_type = frame[3];
        let flags = frame[4];
        let mut stream_id = [0u8; 4];
        stream_id.copy_from_slice(&frame[5..9]);
        let payload = &frame[9..];
        let fragment = if frame_type == FRAME_HEADERS {
            if self.block.is_some() {
                return Err(H2AuthorityError::InterruptedHeaderBlock { frame_type });
            }
            let (fragment, priority) = headers_payload(flags, payload)?;
            self.block = Some(Block {
                stream_id,
                flags,
                priority,
                fragment: Vec::new(),
            });
            fragment
        } else {
            match self.block.as_ref() {
                Some(b) if b.stream_id == stream_id => {}
                _ => return Err(H2AuthorityError::StrayContinuation),
            }
            payload
        };
        let Some(block) = self.block.as_mut() else {
            return Err(H2AuthorityError::StrayContinuation);
        };
        if block.fragment.len() + fragment.len() > MAX_HEADER_BLOCK {
            return Err(H2AuthorityError::HeaderBlockTooLarge);
        }
        block.fragment.extend_from_slice(fragment);
        if flags & FLAG_END_HEADERS == 0 {
            return Ok(());
        }
        let Some(block) = self.block.take() else {
            return Err(H2AuthorityError::StrayContinuation);
        };
        let rewritten = self.table.rewrite_block(&block.fragment)?;
        write_header_frames(&block, &rewritten, out);
        Ok(())
    }
}

/// The header block fragment of a HEADERS payload (padding removed) and its priority fields.
fn headers_payload(
    flags: u8,
    payload: &[u8],
) -> Result<(&[u8], Option<[u8; 5]>), H2AuthorityError> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&n, rest) = p
            .split_first()
            .ok_or(H2AuthorityError::BadHeadersFrame("no pad length"))?;
        pad = usize::from(n);
        p = rest;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        if p.len() < 5 {
            return Err(H2AuthorityError::BadHeadersFrame("short priority fields"));
        }
        let mut pr = [0u8; 5];
        pr.copy_from_slice(&p[..5]);
        priority = Some(pr);
        p = &p[5..];
    }
    if pad > p.len() {
        return Err(H2AuthorityError::BadHeadersFrame(
            "padding longer than the payload",
        ));
    }
    Ok((&p[..p.len() - pad], priority))
}

/// One HEADERS frame (plus CONTINUATIONs when the block is larger than [`OUT_FRAME_LEN`]),
/// unpadded, with the original END_STREAM and priority.
fn write_header_frames(block: &Block, rewritten: &[u8], out: &mut Vec<u8>) {
    let prio_len = if block.priority.is_some() { 5 } else { 0 };
    let first_room = OUT_FRAME_LEN - prio_len;
    let (first, mut rest) = rewritten.split_at(rewritten.len().min(first_room));
    let mut flags = block.flags & (FLAG_END_STREAM | FLAG_PRIORITY);
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    push_frame_header(
        out,
        first.len() + prio_len,
        FRAME_HEADERS,
        flags,
        block.stream_id,
    );
    if let Some(p) = block.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(OUT_FRAME_LEN));
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        push_frame_header(out, chunk.len(), FRAME_CONTINUATION, flags, block.stream_id);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

fn push_frame_header(out: &mut Vec<u8>, len: usize, frame_type: u8, flags: u8, stream: [u8; 4]) {
    // `len` is at most OUT_FRAME_LEN, so it fits in 24 bits.
    let l = len.to_be_bytes();
    out.extend_from_slice(&l[l.len() - 3..]);
    out.push(frame_type);
    out.push(flags);
    out.extend_from_slice(&stream);
}

// ---------------------------------------------------------------------------------------------
// HPACK (RFC 7541): a walker that keeps the dynamic table's sizes in step.

/// Name lengths of the HPACK static table (RFC 7541 Appendix A), index 1..=61. Index 1 is
/// `:authority`.
const STATIC_NAME_LEN: [usize; 61] = [
    10, 7, 7, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, // :authority … :status
    14, 15, 15, 13, 6, 27, 3, 5, 13, 13, // accept-charset … cache-control
    19, 16, 16, 14, 16, 13, 12, 6, 4, 4, // content-disposition … etag
    6, 7, 4, 4, 8, 17, 13, 8, 19, 13, // expect … last-modified
    4, 8, 12, 18, 19, 5, 7, 7, 11, 6, // link … server
    10, 25, 17, 10, 4, 3, 16, // set-cookie … www-authenticate
];
const STATIC_LEN: usize = 61;

#[derive(Debug, Clone, Copy)]
struct Entry {
    authority: bool,
    name_len: usize,
    size: usize,
}

/// The mirror of the client encoder's dynamic table: sizes and names' roles only.
#[derive(Debug)]
struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

/// The name of a header field: its length and whether it is `:authority`.
#[derive(Debug, Clone, Copy)]
struct NameInfo {
    authority: bool,
    len: usize,
}

impl Table {
    fn new() -> Table {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE_SIZE,
        }
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
    }

    fn insert(&mut self, e: Entry) {
        if e.size > self.max {
            // RFC 7541 §4.4: an entry larger than the table empties it and is not added.
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - e.size);
        self.size += e.size;
        self.entries.push_front(e);
    }

    fn name(&self, index: usize) -> Result<NameInfo, H2AuthorityError> {
        match index {
            0 => Err(H2AuthorityError::Hpack("index 0")),
            1..=STATIC_LEN => Ok(NameInfo {
                authority: index == 1,
                len: STATIC_NAME_LEN[index - 1],
            }),
            _ => self
                .entries
                .get(index - STATIC_LEN - 1)
                .map(|e| NameInfo {
                    authority: e.authority,
                    len: e.name_len,
                })
                .ok_or(H2AuthorityError::Hpack("index beyond the dynamic table")),
        }
    }

    /// Walks one complete header block, updating the table, and returns it with every
    /// `:authority` value replaced.
    fn rewrite_block(&mut self, block: &[u8]) -> Result<Vec<u8>, H2AuthorityError> {
        let mut out = Vec::with_capacity(block.len() + 16);
        let mut r = Reader { buf: block, pos: 0 };
        while !r.done() {
            let start = r.pos;
            let first = r.peek()?;
            if first & 0x80 != 0 {
                // Indexed field: only checks that the index exists.
                let index = r.int(7)?;
                self.name(index)?;
                out.extend_from_slice(&block[start..r.pos]);
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update.
                let max = r.int(5)?;
                if max > MAX_TABLE_SIZE {
                    return Err(H2AuthorityError::Hpack("table size update over the limit"));
                }
                self.max = max;
                self.evict_to(max);
                out.extend_from_slice(&block[start..r.pos]);
            } else {
                // Literal field: with incremental indexing (01), without (0000), never (0001).
                let indexing = first & 0xc0 == 0x40;
                let index = r.int(if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    let s = r.string()?;
                    NameInfo {
                        authority: !s.huffman && s.raw == b":authority",
                        len: s.decoded_len()?,
                    }
                } else {
                    self.name(index)?
                };
                let value_start = r.pos;
                let value = r.string()?;
                let value_len = value.decoded_len()?;
                out.extend_from_slice(&block[start..value_start]);
                if name.authority {
                    push_plain_string(&mut out, &replacement(value_len));
                } else {
                    out.extend_from_slice(&block[value_start..r.pos]);
                }
                if indexing {
                    self.insert(Entry {
                        authority: name.authority,
                        name_len: name.len,
                        size: name.len + value_len + 32,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A valid host name of exactly `len` octets: `localhost`, cut or padded with `x`.
fn replacement(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = b"localhost".iter().copied().take(len).collect();
    v.resize(len, b'x');
    v
}

/// An HPACK string literal without Huffman coding.
fn push_plain_string(out: &mut Vec<u8>, s: &[u8]) {
    push_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix; `high` holds the bits above the prefix.
fn push_int(out: &mut Vec<u8>, high: u8, n: u32, mut value: usize) {
    let limit = (1usize << n) - 1;
    if value < limit {
        // Fits in the prefix (< 2^n ≤ 128).
        out.push(high | value as u8);
        return;
    }
    out.push(high | limit as u8);
    value -= limit;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

struct Str<'a> {
    huffman: bool,
    raw: &'a [u8],
}

impl Str<'_> {
    fn decoded_len(&self) -> Result<usize, H2AuthorityError> {
        if self.huffman {
            huffman_decoded_len(self.raw)
        } else {
            Ok(self.raw.len())
        }
    }
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn peek(&self) -> Result<u8, H2AuthorityError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(H2AuthorityError::Hpack("truncated header block"))
    }
    fn byte(&mut self) -> Result<u8, H2AuthorityError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }
    /// RFC 7541 §5.1, values up to 2^28.
    fn int(&mut self, n: u32) -> Result<usize, H2AuthorityError> {
        let limit = (1usize << n) - 1;
        let mut value = usize::from(self.byte()?) & limit;
        if value < limit {
            return Ok(value);
        }
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value += (usize::from(b) & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 21 {
                return Err(H2AuthorityError::Hpack("integer too large"));
            }
        }
    }
    fn string(&mut self) -> Result<Str<'a>, H2AuthorityError> {
        let huffman = self.peek()? & 0x80 != 0;
        let len = self.int(7)?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or(H2AuthorityError::Hpack(
                "string longer than the header block",
            ))?;
        let raw = &self.buf[self.pos..end];
        self.pos = end;
        Ok(Str { huffman, raw })
    }
}

/// How many codes of each length (1..=30 bits) the HPACK Huffman code has (RFC 7541
/// Appendix B). The code is canonical: within a length, codes count up by symbol, and each
/// length starts right after the previous one. That is enough to count the decoded symbols
/// without the symbol table.
const HUFFMAN_CODES_PER_LEN: [u16; 31] = [
    0, 0, 0, 0, 0, 10, 26, 32, 6, 0, 5, 3, 2, 6, 2, 3, 0, 0, 0, 3, 8, 13, 26, 29, 12, 4, 15, 19,
    29, 0, 4,
];

/// The number of octets a Huffman-coded HPACK string decodes to. Refuses the EOS symbol and
/// padding that is longer than 7 bits or not all ones (RFC 7541 §5.2).
fn huffman_decoded_len(raw: &[u8]) -> Result<usize, H2AuthorityError> {
    let mut count = 0usize;
    // Canonical decoding state of the symbol being read.
    let (mut code, mut first, mut index, mut len) = (0u32, 0u32, 0u32, 0usize);
    let mut all_ones = true;
    for byte in raw {
        for bit in (0..8).rev() {
            let b = u32::from((byte >> bit) & 1);
            code = (code << 1) | b;
            all_ones &= b == 1;
            len += 1;
            let n = u32::from(HUFFMAN_CODES_PER_LEN[len]);
            if code.wrapping_sub(first) < n {
                if index + (code - first) == 256 {
                    return Err(H2AuthorityError::Hpack("Huffman EOS in a string"));
                }
                count += 1;
                (code, first, index, len) = (0, 0, 0, 0);
                all_ones = true;
                continue;
            }
            index += n;
            first = (first + n) << 1;
            if len == 30 {
                return Err(H2AuthorityError::Hpack("invalid Huffman code"));
            }
        }
    }
    if len > 7 || !all_ones {
        return Err(H2AuthorityError::Hpack("invalid Huffman padding"));
    }
    Ok(count)
}

#[cfg(test)]
mod tests;
