//! Size, depth and alias caps, checked before serde parses a document, so a hostile text is
//! refused in time linear in its length instead of reaching a parser's slow path (serde_yaml
//! took 15–31 s for 200 KB of `{a: {a: …`).
//!
//! JSON is scanned byte by byte: brackets outside strings are the exact nesting. YAML is run
//! through a streaming event parser (saphyr-parser, pure Rust) that stops at the first node
//! deeper than [`MAX_DEPTH`]: the depth is counted on the parser's own structure, so no
//! quoting, block scalar, multi-line flow collection or comment can hide a level. Aliases are
//! expanded in the count (an alias stands for its anchored node, at the alias's depth), their
//! number is capped ([`MAX_ALIASES`]) and so is the number of nodes they add
//! ([`MAX_ALIAS_NODES`]), so a "billion laughs" document is refused before anything expands
//! it. Text the event parser rejects is refused with its message (line and column).

use saphyr_parser::{Event, Parser, ScanError};

use super::{PolicyError, MAX_ALIASES, MAX_ALIAS_NODES, MAX_DEPTH, MAX_DOCUMENT_BYTES};

/// Rejects YAML text larger than [`MAX_DOCUMENT_BYTES`], nested deeper than [`MAX_DEPTH`] or
/// with too many aliases, before any serde parser sees it. One linear pass.
pub(super) fn yaml_shape(text: &str) -> Result<(), PolicyError> {
    check_size(text)?;
    yaml_events(text)
}

/// The same caps for JSON text, from the one scan that also gives what the parser needs: the
/// length of every list ([`list_lengths`]).
pub(super) fn json_lists(text: &str) -> Result<Vec<u32>, PolicyError> {
    check_size(text)?;
    list_lengths(text.as_bytes(), MAX_DEPTH).ok_or_else(too_deep)
}

fn check_size(text: &str) -> Result<(), PolicyError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(PolicyError::TooLarge(format!(
            "{} bytes, more than the limit of {MAX_DOCUMENT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

fn too_deep() -> PolicyError {
    PolicyError::TooLarge(format!("nested more than {MAX_DEPTH} levels deep"))
}

/// Where the JSON string opened by the quote at `open` ends: the index of its closing quote
/// (escaped quotes skipped), or the length of the text if it never closes.
pub(super) fn string_end(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < bytes.len() && bytes[i] != b'"' {
        if bytes[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    i
}

/// The number of elements of every JSON list, in the order the lists open (which is the
/// order a parser reads them in), counted by one scan of the text: the values that start
/// after its `[` or a `,` of its own, set when the list closes. Only a capacity hint, never
/// more than the values the text spells out: a text that is not JSON gets whatever its
/// brackets and commas give and is then refused by the parser. Brackets outside strings are
/// the exact nesting: `None` as soon as it is deeper than `max_depth` (so the stack of open
/// brackets stays that small).
pub(super) fn list_lengths(bytes: &[u8], max_depth: usize) -> Option<Vec<u32>> {
    let mut lengths = Vec::new();
    // Open brackets; for a list: its index in `lengths`, the values so far and whether the
    // next byte that is not a separator starts a value.
    let mut open: Vec<Option<(usize, u32, bool)>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(Some((_, count, expect))) = open.last_mut() {
            match b {
                b',' => *expect = true,
                b']' | b' ' | b'\t' | b'\n' | b'\r' => {}
                _ if *expect => {
                    *expect = false;
                    *count = count.saturating_add(1);
                }
                _ => {}
            }
        }
        match b {
            b'"' => i = string_end(bytes, i),
            b'[' | b'{' => {
                if open.len() >= max_depth {
                    return None;
                }
                if b == b'[' {
                    open.push(Some((lengths.len(), 0, true)));
                    lengths.push(0u32);
                } else {
                    open.push(None);
                }
            }
            b']' | b'}' => {
                if let Some(Some((at, count, _))) = open.pop() {
                    if let Some(slot) = lengths.get_mut(at) {
                        *slot = count;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    Some(lengths)
}

/// A node still open (a mapping or sequence being read).
struct Open {
    anchor: usize,
    /// Levels below it so far (0: only scalars or nothing).
    height: usize,
    /// Nodes in it so far, itself included, aliases expanded.
    nodes: usize,
}

/// What an anchored node weighs when an alias repeats it.
#[derive(Clone, Copy)]
struct Anchored {
    height: usize,
    nodes: usize,
}

/// Walks the YAML event stream: depth of every node (aliases included), alias count and the
/// nodes aliases add.
fn yaml_events(text: &str) -> Result<(), PolicyError> {
    let mut open: Vec<Open> = Vec::new();
    let mut anchors: Vec<Option<Anchored>> = Vec::new();
    let (mut aliases, mut alias_nodes) = (0usize, 0usize);
    for event in Parser::new_from_str(text) {
        let (event, _) = event.map_err(syntax)?;
        // A finished node: (its anchor, its height, its nodes).
        let done = match event {
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if open.len() >= MAX_DEPTH {
                    return Err(too_deep());
                }
                open.push(Open {
                    anchor,
                    height: 0,
                    nodes: 1,
                });
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => match open.pop() {
                Some(o) => (o.anchor, o.height + 1, o.nodes),
                None => continue,
            },
            Event::Scalar(_, _, anchor, _) => (anchor, 0, 1),
            Event::Alias(id) => {
                aliases += 1;
                if aliases > MAX_ALIASES {
                    return Err(PolicyError::TooLarge(format!(
                        "more than {MAX_ALIASES} aliases"
                    )));
                }
                // An anchor still open (an alias inside its own node) is not in the table.
                let Some(a) = anchors.get(id).copied().flatten() else {
                    return Err(PolicyError::Syntax(format!(
                        "alias {aliases} refers to a node that encloses it or is not defined"
                    )));
                };
                if open.len() + a.height > MAX_DEPTH {
                    return Err(too_deep());
                }
                alias_nodes = alias_nodes.saturating_add(a.nodes);
                if alias_nodes > MAX_ALIAS_NODES {
                    return Err(PolicyError::TooLarge(format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes"
                    )));
                }
                (0, a.height, a.nodes)
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => continue,
        };
        let (anchor, height, nodes) = done;
        if anchor > 0 {
            if anchors.len() <= anchor {
                anchors.resize(anchor + 1, None);
            }
            anchors[anchor] = Some(Anchored { height, nodes });
        }
        if let Some(parent) = open.last_mut() {
            parent.height = parent.height.max(height);
            parent.nodes = parent.nodes.saturating_add(nodes);
        }
    }
    Ok(())
}

fn syntax(e: ScanError) -> PolicyError {
    // The scanner's own cap: more than 255 open flow collections, far past ours.
    if e.info() == "recursion limit exceeded" {
        return too_deep();
    }
    let at = e.marker();
    PolicyError::Syntax(format!(
        "{} at line {} column {}",
        e.info(),
        at.line(),
        at.col() + 1
    ))
}

#[cfg(test)]
mod tests;
