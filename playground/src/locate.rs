//! Where a field path (`policies[1].rules[0].from[0].source.principals[2]`) is in the text of
//! a policy document: line and column (1-based) of its key or list item.
//!
//! A small structural reader for what policy documents use — YAML block mappings and
//! sequences, flow collections (so JSON too), plain and quoted scalars, comments. It never
//! fails: for anything it does not understand it reports the deepest position it found, and
//! a path it cannot follow at all has no position. It is for showing problems in an editor;
//! the document itself is parsed by the engine. Input is bounded by the caller.

/// A position in the text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug)]
enum Node {
    Map(Vec<(String, Pos, Node)>),
    Seq(Vec<(Pos, Node)>),
    Scalar,
}

/// Most nesting followed (deeper input is treated as a scalar).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
struct Line {
    no: usize,
    /// Column (0-based) where `text` starts.
    indent: usize,
    text: String,
}

/// Strips a comment (`#` at the start or after a space, outside quotes).
fn strip_comment(s: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && (prev == ' ' || prev == '\t') => return &s[..i],
            _ => {}
        }
        prev = c;
    }
    s
}

fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let body = strip_comment(raw).trim_end();
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed == "---" || trimmed.starts_with("%") {
            continue;
        }
        out.push(Line {
            no: i + 1,
            indent: body.len() - trimmed.len(),
            text: trimmed.to_owned(),
        });
    }
    out
}

/// Splits `key: value` (outside quotes and flow brackets); `None` if not a mapping entry.
fn split_key(s: &str) -> Option<(String, &str)> {
    let (mut single, mut double) = (false, false);
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'[' | b'{' if !single && !double => depth += 1,
            b']' | b'}' if !single && !double => depth = depth.saturating_sub(1),
            b':' if !single && !double && depth == 0 => {
                let next = bytes.get(i + 1);
                if next.is_none() || next == Some(&b' ') || next == Some(&b'\t') {
                    let key = unquote(s[..i].trim());
                    return Some((key, s[i + 1..].trim_start()));
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_owned()
    } else {
        s.to_owned()
    }
}

struct Block {
    lines: Vec<Line>,
    at: usize,
    /// The full text lines, for flow collections spanning lines.
    raw: Vec<String>,
}

impl Block {
    fn peek(&self) -> Option<&Line> {
        self.lines.get(self.at)
    }

    fn is_item(text: &str) -> bool {
        text == "-" || text.starts_with("- ")
    }

    fn node(&mut self, min_indent: usize, depth: usize) -> Node {
        let Some(l) = self.peek() else {
            return Node::Scalar;
        };
        if l.indent < min_indent || depth > MAX_DEPTH {
            return Node::Scalar;
        }
        let (ind, text) = (l.indent, l.text.clone());
        if text.starts_with('[') || text.starts_with('{') {
            let (no, col) = (l.no, l.indent);
            self.at += 1;
            return self.flow_from(no, col, depth);
        }
        if Self::is_item(&text) {
            self.seq(ind, depth)
        } else if split_key(&text).is_some() {
            self.map(ind, depth)
        } else {
            self.at += 1;
            Node::Scalar
        }
    }

    fn seq(&mut self, ind: usize, depth: usize) -> Node {
        let mut items = Vec::new();
        while let Some(l) = self.peek() {
            if l.indent != ind || !Self::is_item(&l.text) {
                break;
            }
            let l = l.clone();
            let rest = l.text[1..].trim_start();
            let offset = l.text.len() - rest.len();
            let pos = Pos {
                line: l.no,
                column: ind + 1,
            };
            if rest.is_empty() {
                self.at += 1;
                items.push((pos, self.node(ind + 1, depth + 1)));
            } else {
                // The item's content continues as if it were a line of its own.
                self.lines[self.at] = Line {
                    no: l.no,
                    indent: ind + offset,
                    text: rest.to_owned(),
                };
                items.push((pos, self.node(ind + offset, depth + 1)));
            }
        }
        Node::Seq(items)
    }

    fn map(&mut self, ind: usize, depth: usize) -> Node {
        let mut entries = Vec::new();
        while let Some(l) = self.peek() {
            if l.indent != ind || Self::is_item(&l.text) {
                break;
            }
            let l = l.clone();
            let Some((key, rest)) = split_key(&l.text) else {
                break;
            };
            let pos = Pos {
                line: l.no,
                column: ind + 1,
            };
            self.at += 1;
            let value = if rest.is_empty() {
                match self.peek() {
                    Some(n) if n.indent == ind && Self::is_item(&n.text) => {
                        self.seq(ind, depth + 1)
                    }
                    Some(n) if n.indent > ind => {
                        let i = n.indent;
                        self.node(i, depth + 1)
                    }
                    _ => Node::Scalar,
                }
            } else if rest.starts_with('[') || rest.starts_with('{') {
                let col = l.indent + (l.text.len() - rest.len());
                self.flow_from(l.no, col, depth + 1)
            } else {
                Node::Scalar
            };
            entries.push((key, pos, value));
        }
        Node::Map(entries)
    }

    /// Parses a flow collection starting at line `no` (1-based), column `col` (0-based) of
    /// the raw text; skips the block lines it spans.
    fn flow_from(&mut self, no: usize, col: usize, depth: usize) -> Node {
        let mut chars: Vec<(char, Pos)> = Vec::new();
        for (k, raw) in self.raw.iter().enumerate().skip(no - 1) {
            let start = if k == no - 1 { col } else { 0 };
            for (c_idx, c) in raw.char_indices() {
                if c_idx >= start {
                    chars.push((
                        c,
                        Pos {
                            line: k + 1,
                            column: c_idx + 1,
                        },
                    ));
                }
            }
            chars.push((
                '\n',
                Pos {
                    line: k + 1,
                    column: raw.len() + 1,
                },
            ));
            if chars.len() > 1 << 20 {
                break;
            }
        }
        let mut f = Flow { chars, at: 0 };
        let node = f.value(depth);
        let end_line = f.chars.get(f.at.saturating_sub(1)).map_or(no, |c| c.1.line);
        while self.peek().is_some_and(|l| l.no <= end_line) {
            self.at += 1;
        }
        node
    }
}

struct Flow {
    chars: Vec<(char, Pos)>,
    at: usize,
}

impl Flow {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|c| c.0)
    }

    fn pos(&self) -> Pos {
        self.chars
            .get(self.at)
            .map_or(Pos { line: 1, column: 1 }, |c| c.1)
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.at += 1;
            } else if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.at += 1;
                }
            } else {
                break;
            }
        }
    }

    fn scalar(&mut self) -> String {
        let mut s = String::new();
        match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.at += 1;
                while let Some(c) = self.peek() {
                    self.at += 1;
                    if c == '\\' && q == '"' {
                        if let Some(n) = self.peek() {
                            s.push(n);
                            self.at += 1;
                        }
                        continue;
                    }
                    if c == q {
                        break;
                    }
                    s.push(c);
                }
            }
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, ',' | ']' | '}' | '\n') {
                        break;
                    }
                    if c == ':'
                        && self
                            .chars
                            .get(self.at + 1)
                            .is_none_or(|n| n.0.is_whitespace())
                    {
                        break;
                    }
                    s.push(c);
                    self.at += 1;
                }
            }
        }
        s.trim().to_owned()
    }

    /// The entries of a flow collection (the cursor on its opening bracket) up to `close`;
    /// `entry` reads one entry at the given position.
    fn items(&mut self, close: char, mut entry: impl FnMut(&mut Self, Pos)) {
        self.at += 1;
        loop {
            self.ws();
            match self.peek() {
                None => break,
                Some(c) if c == close => {
                    self.at += 1;
                    break;
                }
                Some(',') => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            let pos = self.pos();
            let start = self.at;
            entry(self, pos);
            // Always make progress, whatever the input.
            if self.at == start {
                self.at += 1;
            }
        }
    }

    fn value(&mut self, depth: usize) -> Node {
        self.ws();
        if depth > MAX_DEPTH {
            return Node::Scalar;
        }
        match self.peek() {
            Some('{') => {
                let mut entries = Vec::new();
                self.items('}', |f, pos| {
                    let key = f.scalar();
                    f.ws();
                    let v = if f.peek() == Some(':') {
                        f.at += 1;
                        f.value(depth + 1)
                    } else {
                        Node::Scalar
                    };
                    entries.push((key, pos, v));
                });
                Node::Map(entries)
            }
            Some('[') => {
                let mut items = Vec::new();
                self.items(']', |f, pos| items.push((pos, f.value(depth + 1))));
                Node::Seq(items)
            }
            _ => {
                self.scalar();
                Node::Scalar
            }
        }
    }
}

/// Path segments: `a.b[1].c` → `Key(a) Key(b) Index(1) Key(c)`.
enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            if let Ok(i) = r[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &r[end + 1..];
        }
    }
    out
}

/// The position of `path` in `text`: the deepest part of the path found (its key or list
/// item). `None` when not even the first segment is found.
pub fn locate(text: &str, path: &str) -> Option<Pos> {
    let mut b = Block {
        lines: lines(text),
        at: 0,
        raw: text.lines().map(str::to_owned).collect(),
    };
    let root = b.node(0, 0);
    let mut node = &root;
    let mut found = None;
    for seg in segments(path) {
        let next = match (seg, node) {
            (Seg::Key(k), Node::Map(entries)) => entries
                .iter()
                .find(|(key, _, _)| key == k)
                .map(|(_, p, n)| (*p, n)),
            (Seg::Index(i), Node::Seq(items)) => items.get(i).map(|(p, n)| (*p, n)),
            _ => None,
        };
        match next {
            Some((p, n)) => {
                found = Some(p);
                node = n;
            }
            None => break,
        }
    }
    found
}

/// `line N column M` in a parser's message, if there.
pub fn line_column(message: &str) -> Option<Pos> {
    let i = message.rfind("line ")?;
    let rest = &message[i + 5..];
    let line: usize = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let j = rest.find("column ")?;
    let column: usize = rest[j + 7..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(Pos { line, column })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "# policy\ntrustDomain: cluster.local\npolicies:\n  - name: a\n    action: DENY\n    rules:\n      - from:\n          - source:\n              principals: [\"x\", 'y',\n                z]\n      - to: [{operation: {paths: [/a]}}]\n  - name: b\n    rules:\n    - when:\n      - key: k\n        values: [v]\n";

    #[test]
    fn block_and_flow_yaml() {
        let at = |p: &str| locate(YAML, p).map(|p| (p.line, p.column));
        assert_eq!(at("trustDomain"), Some((2, 1)));
        assert_eq!(at("policies[0]"), Some((4, 3)));
        assert_eq!(at("policies[0].name"), Some((4, 5)));
        assert_eq!(at("policies[0].action"), Some((5, 5)));
        assert_eq!(
            at("policies[0].rules[0].from[0].source.principals[1]"),
            Some((9, 33))
        );
        assert_eq!(
            at("policies[0].rules[0].from[0].source.principals[2]"),
            Some((10, 17))
        );
        assert_eq!(
            at("policies[0].rules[1].to[0].operation.paths[0]"),
            Some((11, 35))
        );
        assert_eq!(at("policies[1].name"), Some((12, 5)));
        assert_eq!(at("policies[1].rules[0].when[0].key"), Some((15, 9)));
        assert_eq!(at("policies[1].rules[0].when[0].values[0]"), Some((16, 18)));
        // A missing field: its parent.
        assert_eq!(at("policies[1].dryRun"), Some((12, 3)));
        assert_eq!(at("nope"), None);
    }

    #[test]
    fn json() {
        let text = "{\n  \"trustDomain\": \"td\",\n  \"policies\": [\n    {\"name\": \"a\", \"rules\": [{}]}\n  ]\n}\n";
        let at = |p: &str| locate(text, p).map(|p| (p.line, p.column));
        assert_eq!(at("trustDomain"), Some((2, 3)));
        assert_eq!(at("policies[0].name"), Some((4, 6)));
        assert_eq!(at("policies[0].rules[0]"), Some((4, 29)));
    }

    #[test]
    fn messages() {
        assert_eq!(
            line_column("cannot parse policy document: did not find expected key at line 3 column 5, while parsing"),
            Some(Pos { line: 3, column: 5 })
        );
        assert_eq!(line_column("no position"), None);
    }
}
