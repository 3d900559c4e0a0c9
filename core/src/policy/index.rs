//! The lookup structures of the compiled policy.
//!
//! Cost model (per lookup of a value of length `L`, a field with `N` entries):
//! - exact values: one hash of the value and one probe, O(L), independent of `N`
//!   (a short list of at most [`SMALL`] entries is scanned instead: cheaper than hashing);
//! - prefix patterns: a walk down a compressed (radix) byte trie, O(L) byte compares plus one
//!   binary search among at most 256 children per visited node, independent of `N`;
//! - suffix patterns: the same trie over reversed bytes;
//! - `*`: a flag.
//!
//! Nothing allocates during a lookup.

use std::collections::HashSet;

/// Up to this many entries a list is scanned linearly rather than hashed or put in a trie.
pub(crate) const SMALL: usize = 8;

/// A compressed byte trie answering "is any stored key a prefix of this input?".
#[derive(Debug, Clone)]
pub(crate) struct Trie {
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

impl Trie {
    pub(crate) fn new(reversed: bool) -> Self {
        Trie {
            nodes: vec![Node {
                label: Box::new([]),
                terminal: false,
                children: Vec::new(),
            }],
            reversed,
        }
    }

    /// Number of nodes (for tests and size estimates).
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
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

    /// Is some stored key a prefix (suffix, for a reversed trie) of `input`?
    pub(crate) fn matches(&self, input: &str) -> bool {
        let bytes = input.as_bytes();
        let n = bytes.len();
        if self.reversed {
            self.walk(n, |i| bytes.get(n.wrapping_sub(1).wrapping_sub(i)).copied())
        } else {
            self.walk(n, |i| bytes.get(i).copied())
        }
    }

    #[inline]
    fn walk(&self, n: usize, at: impl Fn(usize) -> Option<u8>) -> bool {
        let mut node = match self.nodes.first() {
            Some(root) => root,
            None => return false,
        };
        let mut i = 0usize;
        loop {
            if node.terminal {
                return true;
            }
            let Some(b) = at(i) else {
                return false;
            };
            let Ok(pos) = node.children.binary_search_by_key(&b, |c| c.0) else {
                return false;
            };
            let Some(child) = node
                .children
                .get(pos)
                .and_then(|c| self.nodes.get(c.1 as usize))
            else {
                return false;
            };
            if n - i < child.label.len() {
                return false;
            }
            for (k, lb) in child.label.iter().enumerate() {
                if at(i + k) != Some(*lb) {
                    return false;
                }
            }
            i += child.label.len();
            node = child;
        }
    }
}

/// A set of exact values.
#[derive(Debug, Clone)]
pub(crate) enum ExactSet {
    Small(Vec<Box<str>>),
    Large(HashSet<Box<str>>),
}

impl ExactSet {
    fn build(mut values: Vec<Box<str>>) -> Self {
        values.sort();
        values.dedup();
        if values.len() <= SMALL {
            ExactSet::Small(values)
        } else {
            ExactSet::Large(values.into_iter().collect())
        }
    }

    #[inline]
    fn contains(&self, v: &str) -> bool {
        match self {
            ExactSet::Small(list) => list.iter().any(|e| &**e == v),
            ExactSet::Large(set) => set.contains(v),
        }
    }
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
        let mut trie = Trie::new(suffix);
        for v in &values {
            trie.insert(v);
        }
        AffixSet::Large(trie)
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
    pub(crate) exact: Vec<Box<str>>,
    pub(crate) prefix: Vec<Box<str>>,
    pub(crate) suffix: Vec<Box<str>>,
}

impl StrMatcherBuilder {
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
            Pattern::Exact(s) => self.exact.push(norm(s)),
            Pattern::Prefix(s) => self.prefix.push(norm(s)),
            Pattern::Suffix(s) => self.suffix.push(norm(s)),
        }
    }

    pub(crate) fn build(self) -> StrMatcher {
        StrMatcher {
            any: self.any,
            exact: ExactSet::build(self.exact),
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
    /// Builds a matcher from written patterns (already validated).
    pub(crate) fn from_patterns<'a>(
        values: impl IntoIterator<Item = super::pattern::Pattern<'a>>,
        fold_case: bool,
    ) -> Self {
        let mut b = StrMatcherBuilder::default();
        for p in values {
            b.add(p, fold_case);
        }
        b.build()
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
        let mut t = Trie::new(reversed);
        for k in keys {
            t.insert(k);
        }
        t
    }

    #[test]
    fn empty_trie_matches_nothing() {
        let t = Trie::new(false);
        assert!(!t.matches(""));
        assert!(!t.matches("a"));
        let t = Trie::new(true);
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
        let mut t = Trie::new(false);
        let mut s = Trie::new(true);
        for k in &keys {
            t.insert(&k[..k.len() - 1]);
            s.insert(&k[3..]);
        }
        for i in 0..400 {
            let probe = format!("td/ns/n{}/sa/s{}", i % 19, i);
            let want_p = keys.iter().any(|k| probe.starts_with(&k[..k.len() - 1]));
            let want_s = keys.iter().any(|k| probe.ends_with(&k[3..]));
            assert_eq!(t.matches(&probe), want_p, "prefix {probe}");
            assert_eq!(s.matches(&probe), want_s, "suffix {probe}");
        }
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
            let m = StrMatcher::from_patterns(pats.iter().copied(), false);
            let last = n - 1;
            assert!(m.matches(&format!("e{last}")));
            assert!(!m.matches(&format!("e{n}")));
            assert!(m.matches(&format!("p{last}/x")));
            assert!(!m.matches(&format!("p{n}/x")));
            assert!(m.matches(&format!("x/s{last}")));
            assert!(!m.matches(&format!("x/s{n}")));
            assert!(!m.matches(""));
        }
        let any = StrMatcher::from_patterns([Pattern::Any], false);
        assert!(any.matches(""));
        let folded = StrMatcher::from_patterns([Pattern::Exact("Example.COM")], true);
        assert!(folded.matches("example.com"));
    }

    #[test]
    fn ports() {
        let p = PortSet::new(vec![443, 80, 8080, 80]);
        assert!(p.contains(80) && p.contains(443) && p.contains(8080));
        assert!(!p.contains(81));
    }
}
