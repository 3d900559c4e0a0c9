//! The lookup structures of the compiled policy.
//!
//! Cost model (per lookup of a value of length `L`, a field with `N` entries):
//! - exact values: one hash of the value and a short probe of a table at most half full,
//!   O(L), independent of `N` (a short list of at most [`SMALL`] entries is scanned instead:
//!   cheaper than hashing);
//! - prefix patterns: a walk down a compressed (radix) byte trie, O(L) byte compares plus one
//!   binary search among at most 256 children per visited node, independent of `N`;
//! - suffix patterns: the same trie over reversed bytes;
//! - `*`: a flag.
//!
//! Nothing allocates during a lookup.

use std::hash::Hasher;
use std::sync::Arc;

/// A fast, unkeyed hasher for the exact-value sets: FxHash's word-at-a-time mixing with a
/// full 64-bit finaliser (so similar keys spread over the low bits that pick the bucket).
///
/// Unkeyed is fine here: the sets are built from the policy document (trusted); a request
/// only looks one value up and cannot add colliding entries.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

impl FastHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's fmix64.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Up to this many entries a list is scanned linearly rather than hashed or put in a trie.
pub(crate) const SMALL: usize = 8;

/// Builds a compressed byte (radix) trie; [`TrieBuilder::freeze`] turns it into the flat,
/// read-only [`Trie`] used for lookups.
#[derive(Debug, Clone)]
pub(crate) struct TrieBuilder {
    nodes: Vec<Node>,
    /// Keys are stored and inputs walked back to front (a suffix trie).
    reversed: bool,
}

#[derive(Debug, Clone)]
struct Node {
    /// The edge label leading into this node.
    label: Box<[u8]>,
    /// A stored key ends here.
    terminal: bool,
    /// Children sorted by the first byte of their label.
    children: Vec<(u8, u32)>,
}

impl TrieBuilder {
    pub(crate) fn new(reversed: bool) -> Self {
        TrieBuilder {
            nodes: vec![Node {
                label: Box::new([]),
                terminal: false,
                children: Vec::new(),
            }],
            reversed,
        }
    }

    /// Stores a key (given front to back; reversed here for a suffix trie).
    pub(crate) fn insert(&mut self, key: &str) {
        let key: Vec<u8> = if self.reversed {
            key.bytes().rev().collect()
        } else {
            key.bytes().collect()
        };
        let mut node = 0usize;
        let mut i = 0usize;
        loop {
            let Some(&b) = key.get(i) else {
                self.nodes[node].terminal = true;
                return;
            };
            let found = self.nodes[node].children.binary_search_by_key(&b, |c| c.0);
            match found {
                Err(pos) => {
                    let new = self.push(Node {
                        label: key[i..].into(),
                        terminal: true,
                        children: Vec::new(),
                    });
                    self.nodes[node].children.insert(pos, (b, new));
                    return;
                }
                Ok(pos) => {
                    let child = self.nodes[node].children[pos].1 as usize;
                    let label = &self.nodes[child].label;
                    let common = label
                        .iter()
                        .zip(&key[i..])
                        .take_while(|(a, b)| a == b)
                        .count();
                    if common == label.len() {
                        node = child;
                        i += common;
                        continue;
                    }
                    // Split the edge: node -> mid (label[..common]) -> child (label[common..]).
                    let head: Box<[u8]> = label[..common].into();
                    let tail: Box<[u8]> = label[common..].into();
                    let tail_first = tail[0];
                    self.nodes[child].label = tail;
                    let mid = self.push(Node {
                        label: head,
                        terminal: false,
                        children: vec![(tail_first, child as u32)],
                    });
                    self.nodes[node].children[pos].1 = mid;
                    node = mid as usize;
                    i += common;
                }
            }
        }
    }

    fn push(&mut self, n: Node) -> u32 {
        self.nodes.push(n);
        // Node counts are bounded by the total key bytes of a policy document.
        u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX)
    }

    /// Lays the trie out flat, depth first: node records, labels and child tables each in one
    /// contiguous array, labels in the input's orientation so a lookup compares slices.
    pub(crate) fn freeze(&self) -> Trie {
        let mut t = Trie {
            nodes: Vec::with_capacity(self.nodes.len()),
            labels: Vec::new(),
            child_bytes: Vec::new(),
            child_ids: Vec::new(),
            reversed: self.reversed,
        };
        // (builder node, flat index) to lay out the children of.
        let mut stack = vec![(0usize, t.push_node(&self.nodes[0], self.reversed))];
        while let Some((b, flat)) = stack.pop() {
            let children = &self.nodes[b].children;
            let start = t.child_bytes.len();
            for (byte, child) in children {
                let c = *child as usize;
                let f = t.push_node(&self.nodes[c], self.reversed);
                t.child_bytes.push(*byte);
                t.child_ids.push(f);
                stack.push((c, f));
            }
            if let Some(n) = t.nodes.get_mut(flat as usize) {
                n.child_start = to_u32(start);
                n.child_len = to_u32(children.len());
            }
        }
        t
    }
}

fn to_u32(n: usize) -> u32 {
    // Sizes are bounded by the bytes of a policy document.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The read-only trie answering "is any stored key a prefix (suffix) of this input?" in
/// O(input length), whatever the number of keys.
#[derive(Debug, Clone)]
pub(crate) struct Trie {
    nodes: Vec<FlatNode>,
    labels: Vec<u8>,
    /// The first input byte of each child's label, per node sorted and contiguous.
    child_bytes: Vec<u8>,
    child_ids: Vec<u32>,
    reversed: bool,
}

#[derive(Debug, Clone, Copy)]
struct FlatNode {
    label_start: u32,
    label_len: u32,
    child_start: u32,
    child_len: u32,
    terminal: bool,
}

impl Trie {
    fn push_node(&mut self, n: &Node, reversed: bool) -> u32 {
        let label_start = to_u32(self.labels.len());
        if reversed {
            self.labels.extend(n.label.iter().rev());
        } else {
            self.labels.extend_from_slice(&n.label);
        }
        self.nodes.push(FlatNode {
            label_start,
            label_len: to_u32(n.label.len()),
            child_start: 0,
            child_len: 0,
            terminal: n.terminal,
        });
        to_u32(self.nodes.len() - 1)
    }

    /// Number of nodes (for tests and size estimates).
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Is some stored key a prefix (suffix, for a reversed trie) of `input`?
    #[inline]
    pub(crate) fn matches(&self, input: &str) -> bool {
        let input = input.as_bytes();
        let n = input.len();
        let Some(mut node) = self.nodes.first() else {
            return false;
        };
        // `i` input bytes are matched: input[..i] (forward) or input[n - i..] (reversed).
        let mut i = 0usize;
        loop {
            if node.terminal {
                return true;
            }
            if i >= n {
                return false;
            }
            let next = if self.reversed {
                input[n - 1 - i]
            } else {
                input[i]
            };
            let start = node.child_start as usize;
            let end = start + node.child_len as usize;
            let Some(bytes) = self.child_bytes.get(start..end) else {
                return false;
            };
            let pos = if bytes.len() <= 16 {
                bytes.iter().position(|b| *b == next)
            } else {
                bytes.binary_search(&next).ok()
            };
            let Some(child) = pos
                .and_then(|p| self.child_ids.get(start + p))
                .and_then(|id| self.nodes.get(*id as usize))
            else {
                return false;
            };
            let len = child.label_len as usize;
            if n - i < len {
                return false;
            }
            let ls = child.label_start as usize;
            let label = self.labels.get(ls..ls + len);
            let window = if self.reversed {
                input.get(n - i - len..n - i)
            } else {
                input.get(i..i + len)
            };
            if label.is_none() || label != window {
                return false;
            }
            i += len;
            node = child;
        }
    }
}

/// A set of exact values.
#[derive(Debug, Clone)]
pub(crate) enum ExactSet {
    Small(Vec<Box<str>>),
    Large(ArenaSet),
    /// The values as collected, before [`ExactSet::finish`] (looked up by a scan).
    Pending(ArenaSet),
}

impl ExactSet {
    /// Drops duplicates and indexes the collected values: a short list, or a hashed set.
    fn finish(&mut self) {
        let ExactSet::Pending(set) = self else {
            return;
        };
        let mut set = std::mem::take(set);
        set.finish();
        *self = if set.len() > SMALL {
            ExactSet::Large(set)
        } else {
            let mut values: Vec<Box<str>> = set.iter().map(Box::from).collect();
            values.sort();
            ExactSet::Small(values)
        };
    }

    #[inline]
    fn contains(&self, v: &str) -> bool {
        match self {
            ExactSet::Small(list) => list.iter().any(|e| &**e == v),
            ExactSet::Large(set) => set.contains(v),
            ExactSet::Pending(set) => set.iter().any(|e| e == v),
        }
    }
}

/// A set of distinct strings with an open-addressing hash table (linear probing, at most half
/// full) of their numbers. A value that lies in the configuration text the set was given
/// ([`ArenaSet::new`]) is kept as a span of that text, shared by every set of the policy;
/// any other value (rewritten, lower-cased, unescaped) is copied into one buffer of the
/// set, back to back. Per value: an 8-byte span and 8 to 16 bytes of table beyond the text
/// itself, and three allocations in all instead of one per value.
///
/// Values are collected first ([`ArenaSet::push`]; reserve their sizes first when they are
/// known, so the buffers never grow by copying themselves) and the table is built last
/// ([`ArenaSet::finish`], duplicates dropped): the policy compiler does that once the
/// document the values came from is freed, so a Wasm VM, whose memory never shrinks, never
/// holds the document's lists and the tables at once.
#[derive(Debug, Clone, Default)]
pub(crate) struct ArenaSet {
    /// The configuration text (empty when there is none to share).
    text: Arc<String>,
    /// The values not found in `text`, back to back.
    own: String,
    /// `(start, len)` of each value: `text[start..]` when `start < text.len()`, else
    /// `own[start - text.len()..]`.
    spans: Vec<(u32, u32)>,
    /// Once finished: `0` empty, `i + 1` value `i`; a power of two at least twice
    /// `spans.len()` long. Empty before.
    slots: Vec<u32>,
}

/// The value at `(start, len)` (see [`ArenaSet::spans`]).
#[inline]
fn span_str<'s>(text: &'s str, own: &'s str, (start, len): (u32, u32)) -> &'s str {
    let (start, len) = (start as usize, len as usize);
    let found = match start.checked_sub(text.len()) {
        None => text.get(start..start + len),
        Some(at) => own.get(at..at + len),
    };
    found.unwrap_or_default()
}

impl ArenaSet {
    /// A set whose values may be spans of `text` (see [`ArenaSet::push`]).
    pub(crate) fn new(text: &Arc<String>) -> Self {
        ArenaSet {
            text: Arc::clone(text),
            ..ArenaSet::default()
        }
    }

    /// Makes room for `count` more values, `own_bytes` of which are not in the text (see
    /// [`ArenaSet::own_bytes`]).
    pub(crate) fn reserve_exact(&mut self, count: usize, own_bytes: usize) {
        self.spans.reserve_exact(count);
        self.own.reserve_exact(own_bytes);
    }

    /// Number of values (distinct once finished).
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Where `s` lies in the text, if it is a slice of it.
    fn in_text(&self, s: &str) -> Option<usize> {
        // Only an offset: the bytes there are compared with `s` before the span is used.
        let off = (s.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
        (!s.is_empty() && off < self.text.len() && self.text.get(off..off + s.len()) == Some(s))
            .then_some(off)
    }

    /// The one non-empty part of `parts` when it lies in the text: `(start, len)`.
    fn text_span(&self, parts: &[&str]) -> Option<(usize, usize)> {
        let mut nonempty = parts.iter().filter(|p| !p.is_empty());
        match (nonempty.next(), nonempty.next()) {
            (Some(p), None) => self.in_text(p).map(|off| (off, p.len())),
            _ => None,
        }
    }

    /// The bytes [`ArenaSet::push`] copies for `parts` (none when they are a slice of the
    /// text).
    pub(crate) fn own_bytes(&self, parts: &[&str]) -> usize {
        match self.text_span(parts) {
            Some(_) => 0,
            None => parts.iter().map(|p| p.len()).sum(),
        }
    }

    /// Adds the value written as the concatenation of `parts`: a span of the text when it is
    /// a slice of it, else a copy.
    pub(crate) fn push(&mut self, parts: &[&str]) {
        let span = match self.text_span(parts) {
            Some(span) => span,
            None => {
                let start = self.own.len();
                for p in parts {
                    self.own.push_str(p);
                }
                (self.text.len() + start, self.own.len() - start)
            }
        };
        self.spans.push((to_u32(span.0), to_u32(span.1)));
    }

    /// Adds `v`, lower-cased when `fold_case`.
    fn push_folded(&mut self, v: &str, fold_case: bool) {
        if !fold_case || !v.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.push(&[v]);
        }
        let start = self.own.len();
        self.own.push_str(v);
        self.own[start..].make_ascii_lowercase();
        self.spans
            .push((to_u32(self.text.len() + start), to_u32(v.len())));
    }

    /// Builds the table, dropping repeated values (the first stays).
    pub(crate) fn finish(&mut self) {
        let size = self.spans.len().saturating_mul(2).next_power_of_two();
        self.slots = vec![0; size];
        let mask = size - 1;
        let mut kept = 0;
        for i in 0..self.spans.len() {
            let span = self.spans[i];
            let value = span_str(&self.text, &self.own, span);
            let mut slot = home(value, mask);
            let repeated = loop {
                match self.slots[slot] {
                    0 => break false,
                    n if span_str(&self.text, &self.own, self.spans[n as usize - 1]) == value => {
                        break true
                    }
                    _ => slot = (slot + 1) & mask,
                }
            };
            if !repeated {
                self.spans[kept] = span;
                kept += 1;
                self.slots[slot] = to_u32(kept);
            }
        }
        self.spans.truncate(kept);
        self.spans.shrink_to_fit();
        self.own.shrink_to_fit();
    }

    /// Value `i`.
    #[inline]
    fn get(&self, i: usize) -> &str {
        span_str(&self.text, &self.own, self.spans[i])
    }

    /// Is `v` in the set? (Once finished: before, nothing is.)
    #[inline]
    pub(crate) fn contains(&self, v: &str) -> bool {
        let Some(mask) = self.slots.len().checked_sub(1) else {
            return false;
        };
        let mut slot = home(v, mask);
        loop {
            match self.slots.get(slot) {
                None | Some(0) => return false,
                Some(n) if self.get(*n as usize - 1) == v => return true,
                Some(_) => slot = (slot + 1) & mask,
            }
        }
    }

    /// The values, in the order first added.
    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans
            .iter()
            .map(|span| span_str(&self.text, &self.own, *span))
    }
}

/// The slot a value's probe sequence starts at in a table of `mask + 1` slots.
#[inline]
fn home(v: &str, mask: usize) -> usize {
    let mut h = FastHasher::default();
    h.write(v.as_bytes());
    // The table is at most 2^32 slots: the low bits of the hash pick the slot.
    (h.finish() as usize) & mask
}

/// A set of prefixes (or suffixes).
#[derive(Debug, Clone)]
pub(crate) enum AffixSet {
    Small { list: Vec<Box<str>>, suffix: bool },
    Large(Trie),
}

impl AffixSet {
    fn build(mut values: Vec<Box<str>>, suffix: bool) -> Self {
        values.sort();
        values.dedup();
        if values.len() <= SMALL {
            return AffixSet::Small {
                list: values,
                suffix,
            };
        }
        let mut trie = TrieBuilder::new(suffix);
        for v in &values {
            trie.insert(v);
        }
        AffixSet::Large(trie.freeze())
    }

    #[inline]
    fn matches(&self, v: &str) -> bool {
        match self {
            AffixSet::Small {
                list,
                suffix: false,
            } => list.iter().any(|p| v.starts_with(&**p)),
            AffixSet::Small { list, suffix: true } => list.iter().any(|s| v.ends_with(&**s)),
            AffixSet::Large(trie) => trie.matches(v),
        }
    }
}

/// Collects the values of one field before building its [`StrMatcher`].
#[derive(Debug, Default)]
pub(crate) struct StrMatcherBuilder {
    pub(crate) any: bool,
    pub(crate) exact: ArenaSet,
    pub(crate) prefix: Vec<Box<str>>,
    pub(crate) suffix: Vec<Box<str>>,
}

impl StrMatcherBuilder {
    /// A builder whose exact values may be spans of `text` (see [`ArenaSet`]), with room for
    /// `count` of them.
    pub(crate) fn new(text: &Arc<String>, count: usize) -> Self {
        let mut exact = ArenaSet::new(text);
        exact.reserve_exact(count, 0);
        StrMatcherBuilder {
            exact,
            ..StrMatcherBuilder::default()
        }
    }

    pub(crate) fn add(&mut self, p: super::pattern::Pattern<'_>, fold_case: bool) {
        use super::pattern::Pattern;
        let norm = |s: &str| -> Box<str> {
            if fold_case {
                s.to_ascii_lowercase().into()
            } else {
                s.into()
            }
        };
        match p {
            Pattern::Any => self.any = true,
            Pattern::Exact(s) => self.exact.push_folded(s, fold_case),
            Pattern::Prefix(s) => self.prefix.push(norm(s)),
            Pattern::Suffix(s) => self.suffix.push(norm(s)),
        }
    }

    /// The matcher, its exact set still to be finished ([`StrMatcher::finish`]).
    pub(crate) fn build(self) -> StrMatcher {
        StrMatcher {
            any: self.any,
            exact: ExactSet::Pending(self.exact),
            prefix: AffixSet::build(self.prefix, false),
            suffix: AffixSet::build(self.suffix, true),
        }
    }
}

/// Matches one string against a field's values: exact set, prefix trie, suffix trie, `*`.
#[derive(Debug, Clone)]
pub(crate) struct StrMatcher {
    any: bool,
    exact: ExactSet,
    prefix: AffixSet,
    suffix: AffixSet,
}

impl StrMatcher {
    /// Builds a matcher from written patterns (already validated); exact values may be spans
    /// of `text`.
    #[cfg(test)]
    pub(crate) fn from_patterns<'a>(
        values: impl IntoIterator<Item = super::pattern::Pattern<'a>>,
        fold_case: bool,
        text: &Arc<String>,
    ) -> Self {
        let values = values.into_iter();
        let mut b = StrMatcherBuilder::new(text, values.size_hint().0);
        for p in values {
            b.add(p, fold_case);
        }
        let mut m = b.build();
        m.finish();
        m
    }

    /// Indexes the exact values collected (see [`ArenaSet::finish`]).
    pub(crate) fn finish(&mut self) {
        self.exact.finish();
    }

    #[inline]
    pub(crate) fn matches(&self, v: &str) -> bool {
        self.any || self.exact.contains(v) || self.prefix.matches(v) || self.suffix.matches(v)
    }
}

/// A set of ports.
#[derive(Debug, Clone)]
pub(crate) struct PortSet(Vec<u16>);

impl PortSet {
    pub(crate) fn new(mut ports: Vec<u16>) -> Self {
        ports.sort_unstable();
        ports.dedup();
        PortSet(ports)
    }

    #[inline]
    pub(crate) fn contains(&self, p: u16) -> bool {
        self.0.binary_search(&p).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::pattern::Pattern;
    use super::*;

    fn trie(keys: &[&str], reversed: bool) -> Trie {
        let mut t = TrieBuilder::new(reversed);
        for k in keys {
            t.insert(k);
        }
        t.freeze()
    }

    #[test]
    fn empty_trie_matches_nothing() {
        let t = trie(&[], false);
        assert!(!t.matches(""));
        assert!(!t.matches("a"));
        let t = trie(&[], true);
        assert!(!t.matches("a"));
    }

    #[test]
    fn empty_prefix_matches_everything() {
        let t = trie(&[""], false);
        assert!(t.matches(""));
        assert!(t.matches("anything"));
        let t = trie(&[""], true);
        assert!(t.matches("anything"));
    }

    #[test]
    fn prefix_equal_to_full_value_matches() {
        let t = trie(&["td/ns/a/sa/b"], false);
        assert!(t.matches("td/ns/a/sa/b"));
        assert!(t.matches("td/ns/a/sa/bc"));
        assert!(!t.matches("td/ns/a/sa/"));
        assert!(!t.matches("td/ns/a/sa/c"));
    }

    #[test]
    fn overlapping_prefixes() {
        let t = trie(&["td/ns/ab", "td/ns/a", "td/ns/abc/x", "td/other/"], false);
        assert!(t.matches("td/ns/a"));
        assert!(t.matches("td/ns/a/sa/x"));
        assert!(t.matches("td/ns/ab"));
        assert!(t.matches("td/ns/abc/y"));
        assert!(t.matches("td/other/z"));
        assert!(!t.matches("td/ns/"));
        assert!(!t.matches("td/n"));
        assert!(!t.matches("td/other"));
        assert!(!t.matches("xd/ns/a"));
        // Inserting a longer key after a shorter one and the reverse give the same answers.
        let u = trie(&["td/ns/a", "td/ns/ab", "td/other/", "td/ns/abc/x"], false);
        for probe in ["td/ns/a", "td/ns/", "td/other", "td/ns/abc/x", "q"] {
            assert_eq!(t.matches(probe), u.matches(probe), "{probe}");
        }
    }

    #[test]
    fn edge_split_keeps_both_branches() {
        let t = trie(&["abcdef", "abcxyz"], false);
        assert!(t.matches("abcdefg"));
        assert!(t.matches("abcxyz"));
        assert!(!t.matches("abc"));
        assert!(!t.matches("abcd"));
        assert!(!t.matches("abcdeX"));
        // root + "abc" + "def" + "xyz"
        assert_eq!(t.node_count(), 4);
        let t = trie(&["abcdef", "abc"], false);
        assert!(t.matches("abc"));
        assert!(t.matches("abcdzz"));
        assert!(!t.matches("ab"));
    }

    #[test]
    fn suffix_trie() {
        let t = trie(&["/sa/admin", "/ns/prod/sa/web", "min"], true);
        assert!(t.matches("td/ns/x/sa/admin"));
        assert!(t.matches("td/ns/prod/sa/web"));
        assert!(t.matches("td/ns/x/sa/jasmin"));
        assert!(!t.matches("td/ns/x/sa/web"));
        assert!(!t.matches("in"));
        assert!(t.matches("min"));
        assert!(!t.matches(""));
    }

    #[test]
    fn trie_agrees_with_reference_on_many_keys() {
        let keys: Vec<String> = (0..300)
            .map(|i| format!("td/ns/n{}/sa/s{}", i % 17, i))
            .collect();
        let mut t = TrieBuilder::new(false);
        let mut s = TrieBuilder::new(true);
        for k in &keys {
            t.insert(&k[..k.len() - 1]);
            s.insert(&k[3..]);
        }
        let (t, s) = (t.freeze(), s.freeze());
        for i in 0..400 {
            let probe = format!("td/ns/n{}/sa/s{}", i % 19, i);
            let want_p = keys.iter().any(|k| probe.starts_with(&k[..k.len() - 1]));
            let want_s = keys.iter().any(|k| probe.ends_with(&k[3..]));
            assert_eq!(t.matches(&probe), want_p, "prefix {probe}");
            assert_eq!(s.matches(&probe), want_s, "suffix {probe}");
        }
    }

    #[test]
    fn nodes_with_many_children_use_the_sorted_table() {
        let alphabet: Vec<char> = ('a'..='z')
            .chain('0'..='9')
            .chain(['.', '-', '_'])
            .collect();
        let keys: Vec<String> = alphabet.iter().map(|c| format!("{c}{c}/")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let t = trie(&refs, false);
        let s = trie(&refs, true);
        for c in &alphabet {
            assert!(t.matches(&format!("{c}{c}/x")), "{c}");
            assert!(!t.matches(&format!("{c}A/")), "{c}");
            assert!(s.matches(&format!("x{c}{c}/")), "{c}");
            assert!(!s.matches(&format!("{c}/")), "{c}");
        }
        assert!(!t.matches("A"));
        assert!(!s.matches("/"));
    }

    #[test]
    fn str_matcher_small_and_large() {
        for n in [1usize, SMALL, SMALL + 1, 100] {
            let exact: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
            let prefix: Vec<String> = (0..n).map(|i| format!("p{i}/")).collect();
            let suffix: Vec<String> = (0..n).map(|i| format!("/s{i}")).collect();
            let mut pats = Vec::new();
            pats.extend(exact.iter().map(|s| Pattern::Exact(s)));
            pats.extend(prefix.iter().map(|s| Pattern::Prefix(s)));
            pats.extend(suffix.iter().map(|s| Pattern::Suffix(s)));
            let m = StrMatcher::from_patterns(pats.iter().copied(), false, &Arc::default());
            let last = n - 1;
            assert!(m.matches(&format!("e{last}")));
            assert!(!m.matches(&format!("e{n}")));
            assert!(m.matches(&format!("p{last}/x")));
            assert!(!m.matches(&format!("p{n}/x")));
            assert!(m.matches(&format!("x/s{last}")));
            assert!(!m.matches(&format!("x/s{n}")));
            assert!(!m.matches(""));
        }
        let any = StrMatcher::from_patterns([Pattern::Any], false, &Arc::default());
        assert!(any.matches(""));
        let folded =
            StrMatcher::from_patterns([Pattern::Exact("Example.COM")], true, &Arc::default());
        assert!(folded.matches("example.com"));
    }

    #[test]
    fn fast_hasher_spreads_similar_keys_over_the_low_bits() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<FastHasher>::default();
        let mut low = std::collections::HashSet::new();
        for i in 0..100_000 {
            let key = format!("cluster.local/ns/n{i}/sa/s{i}");
            low.insert(b.hash_one(key.as_str()) & 0xffff);
        }
        // 100,000 random values over 65,536 buckets fill about 51,000 of them.
        assert!(low.len() > 48_000, "{}", low.len());
        assert_ne!(b.hash_one("ab"), b.hash_one("ab\0"));
    }

    fn arena(values: &[&str]) -> ArenaSet {
        let mut set = ArenaSet::default();
        for v in values {
            set.push(&[v]);
        }
        set
    }

    fn exact_set(values: &[&str]) -> ExactSet {
        let mut set = ExactSet::Pending(arena(values));
        assert!(values.iter().all(|v| set.contains(v)), "pending set misses");
        set.finish();
        set
    }

    #[test]
    fn exact_sets_deduplicate_large_lists_without_sorting() {
        // Twelve entries, five distinct: small once deduplicated.
        let few = ["e", "a", "c", "a", "b", "e", "d", "a", "c", "b", "e", "d"];
        let set = exact_set(&few);
        assert!(matches!(&set, ExactSet::Small(list) if list.len() == 5));
        assert!(few.iter().all(|v| set.contains(v)) && !set.contains("f"));
        // A large list with duplicates: every value found once, nothing else.
        let many: Vec<String> = (0..1000).map(|i| format!("v{}", i % 300)).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let set = exact_set(&refs);
        assert!(matches!(&set, ExactSet::Large(s) if s.len() == 300));
        assert!(refs.iter().all(|v| set.contains(v)) && !set.contains("v300"));
    }

    #[test]
    fn arena_sets_hold_each_distinct_value_once() {
        let values: Vec<String> = (0..5000)
            .map(|i| format!("td/ns/n{}/sa/s{}", i % 3001 % 7, i % 3001))
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        // Reserved: the buffers do not grow.
        let mut set = ArenaSet::default();
        let bytes = values.iter().map(String::len).sum();
        set.reserve_exact(values.len(), bytes);
        let (own, spans) = (set.own.capacity(), set.spans.capacity());
        for v in &values {
            set.push(&[v]);
        }
        assert_eq!((set.own.capacity(), set.spans.capacity()), (own, spans));
        // Nothing is found before the table is built.
        assert!(!set.contains(refs[0]));
        set.finish();
        assert_eq!(set.len(), 3001);
        assert_eq!(
            set.len(),
            arena(&refs)
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
        );
        assert!(values.iter().all(|v| set.contains(v)));
        for probe in ["", "td/ns/n0/sa/s", "td/ns/n0/sa/s3001", "td/ns/n1/sa/s0x"] {
            assert!(!set.contains(probe), "{probe}");
        }
        // The first of repeated values stays, in order.
        assert_eq!(set.iter().take(3).collect::<Vec<_>>(), refs[..3]);
        // Parts are concatenated; the empty string is a value like any other.
        let mut set = ArenaSet::default();
        set.push(&["a", "/", "b"]);
        set.push(&[]);
        set.push(&["a/", "b"]);
        set.finish();
        assert!(set.contains("a/b") && set.contains("") && !set.contains("a"));
        assert_eq!(set.len(), 2);
        // Folded values are stored lower case.
        let mut set = ArenaSet::default();
        set.push_folded("Example.COM", true);
        set.push_folded("Example.COM", false);
        set.finish();
        assert!(set.contains("example.com") && set.contains("Example.COM"));
        assert!(!set.contains("EXAMPLE.COM"));
    }

    #[test]
    fn arena_sets_keep_slices_of_the_text_as_spans() {
        let text = Arc::new(String::from(
            r#"["td/ns/a/sa/x", "td/ns/b/sa/y", "td/ns/a/sa/x"]"#,
        ));
        let (x, y, x2) = (&text[2..14], &text[18..30], &text[34..46]);
        assert_eq!((x, y, x2), ("td/ns/a/sa/x", "td/ns/b/sa/y", "td/ns/a/sa/x"));
        let mut set = ArenaSet::new(&text);
        for v in [x, y, x2] {
            assert_eq!(set.own_bytes(&[v]), 0);
            set.push(&[v]);
        }
        // Equal bytes elsewhere, a concatenation and a folded value are copied.
        let elsewhere = String::from("td/ns/b/sa/y");
        assert_eq!(set.own_bytes(&[&elsewhere]), 12);
        set.push(&[&elsewhere]);
        set.push(&["td/ns/", "c/sa/z"]);
        set.push_folded("TD/ns/d/sa/w", true);
        set.finish();
        assert_eq!(set.own, "td/ns/b/sa/ytd/ns/c/sa/ztd/ns/d/sa/w");
        assert_eq!(set.len(), 4);
        for v in [
            "td/ns/a/sa/x",
            "td/ns/b/sa/y",
            "td/ns/c/sa/z",
            "td/ns/d/sa/w",
        ] {
            assert!(set.contains(v), "{v}");
        }
        assert!(!set.contains("TD/ns/d/sa/w") && !set.contains("td/ns/a/sa/"));
        assert_eq!(set.spans[0], (2, 12));
    }

    #[test]
    fn ports() {
        let p = PortSet::new(vec![443, 80, 8080, 80]);
        assert!(p.contains(80) && p.contains(443) && p.contains(8080));
        assert!(!p.contains(81));
    }
}
