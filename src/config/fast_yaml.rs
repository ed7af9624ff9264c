//! A fast reader for the YAML that Istio configs are written in:
//! - block mappings and sequences;
//! - one-line flow collections (`{a: b}`, `[a, b]`);
//! - plain and one-line quoted scalars;
//! - comments, and the `---` / `...` document markers.
//!
//! It yields the same documents as `yaml_serde`: the same values, scalar types and document count.
//! It is two to three times faster: 40-51 ms against 111-128 ms for the 10,000-route benchmark
//! config (2.9 MB).
//!
//! It returns `None` as soon as the text uses anything else:
//! - anchors, aliases, tags, block scalars;
//! - multi-line scalars or flow collections, complex keys;
//! - tabs, non-ASCII, escapes other than the common ones;
//! - duplicate keys;
//! - anything that is an error.
//!
//! On `None` the loader reads the file with `yaml_serde`, so every error message and every rarer
//! construct is still `yaml_serde`'s. The differential fuzz target `yaml` (`fuzz/harness.rs`;
//! `yaml_mutants` in `tests/fuzz_mutate.rs`) holds the two readers to the same result on mutated
//! configs.
//!
//! Why by hand: no maintained Rust YAML crate measured faster than ~20 MB/s here
//! (`benches/RESULTS.md`).

use yaml_serde::{Mapping, Number, Value};

/// Deeper than this, the reader declines (`yaml_serde` stops at 128).
const MAX_DEPTH: usize = 64;
/// libyaml refuses a simple key longer than 1,024 characters.
const MAX_KEY: usize = 1000;

/// The documents of `text`, or `None` when `text` is not in the subset this reader knows (or is
/// not valid YAML).
pub fn parse(text: &str) -> Option<Vec<Value>> {
    let b = text.as_bytes();
    if !b.iter().all(|&c| c == b'\n' || (0x20..0x7f).contains(&c)) {
        return None;
    }
    Reader {
        text,
        b,
        pos: 0,
        line: 0,
        depth: 0,
    }
    .stream()
}

/// For the fuzzers: when [`parse`] reads `text`, `yaml_serde` reads the same documents from it
/// without an error. Panics naming the difference otherwise.
#[doc(hidden)]
pub fn check_against_yaml_serde(text: &str) {
    use serde::Deserialize;
    let Some(fast) = parse(text) else {
        return;
    };
    // One more than the fast reader found: an extra document is a difference too.
    let slow: Vec<Result<Value, String>> = yaml_serde::Deserializer::from_str(text)
        .take(fast.len() + 1)
        .map(|doc| Value::deserialize(doc).map_err(|e| e.to_string()))
        .collect();
    let fast: Vec<Result<Value, String>> = fast.into_iter().map(Ok).collect();
    assert_eq!(
        fast, slow,
        "fast YAML reader differs from yaml_serde on {text:?}"
    );
}

struct Reader<'a> {
    /// `b` as text: all ASCII, so any byte range is a `str` slice.
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Where the line holding `pos` starts.
    line: usize,
    depth: usize,
}

/// What the next content is.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Next {
    Eof,
    /// `---` or `...` at the start of a line.
    Marker,
    /// Content at this column, `pos` on it.
    At(usize),
}

impl<'a> Reader<'a> {
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(b'\n')
    }

    fn cur(&self) -> u8 {
        self.at(self.pos)
    }

    fn eof(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn col(&self) -> usize {
        self.pos - self.line
    }

    /// `start..end` without trailing spaces.
    fn trimmed(&self, start: usize, mut end: usize) -> &'a str {
        while end > start && self.b[end - 1] == b' ' {
            end -= 1;
        }
        &self.text[start..end]
    }

    /// Whether the byte before `i` is a space (a `#` there starts a comment).
    fn after_space(&self, i: usize) -> bool {
        i > 0 && self.b[i - 1] == b' '
    }

    /// A blank (or the end of the line / text) at `i`.
    fn blank(&self, i: usize) -> bool {
        matches!(self.at(i), b' ' | b'\n')
    }

    fn skip_spaces(&mut self) {
        while self.pos < self.b.len() && self.b[self.pos] == b' ' {
            self.pos += 1;
        }
    }

    /// Past the rest of this line, which must be blank or a comment; onto the next line.
    fn finish_line(&mut self) -> Option<()> {
        if !self.rest_empty() {
            return None;
        }
        while !self.eof() && self.b[self.pos] != b'\n' {
            self.pos += 1;
        }
        if !self.eof() {
            self.pos += 1;
            self.line = self.pos;
        }
        Some(())
    }

    /// Whether the rest of this line is blank or a comment (spaces skipped).
    fn rest_empty(&mut self) -> bool {
        self.skip_spaces();
        self.eof()
            || self.b[self.pos] == b'\n'
            || (self.b[self.pos] == b'#' && (self.after_space(self.pos) || self.pos == self.line))
    }

    /// To the next content: skips blanks, and comments and blank lines.
    fn next(&mut self) -> Option<Next> {
        loop {
            if self.pos == self.line && self.marker() {
                return Some(Next::Marker);
            }
            if !self.rest_empty() {
                return Some(Next::At(self.col()));
            }
            if self.eof() {
                return Some(Next::Eof);
            }
            self.finish_line()?;
        }
    }

    /// `---` or `...` at `pos` (a line start) followed by a blank.
    fn marker(&self) -> bool {
        let m = &self.b[self.pos..];
        (m.starts_with(b"---") || m.starts_with(b"...")) && self.blank(self.pos + 3)
    }

    /// A `-` block sequence indicator at `pos`.
    fn dash(&self) -> bool {
        self.cur() == b'-' && self.blank(self.pos + 1)
    }

    fn stream(mut self) -> Option<Vec<Value>> {
        let mut docs = Vec::new();
        loop {
            match self.next()? {
                Next::Eof => break,
                Next::Marker if self.b[self.pos] == b'-' => {
                    self.pos += 3;
                    self.finish_line()?;
                }
                // `...` with no document before it, or content after a `...` with no `---`.
                Next::Marker => return None,
                Next::At(_) if !docs.is_empty() => return None,
                Next::At(_) => {}
            }
            docs.push(self.node(None, false)?);
            if self.next()? == Next::Marker && self.b[self.pos] == b'.' {
                self.pos += 3;
                self.finish_line()?;
            }
        }
        if docs.is_empty() {
            docs.push(Value::Null);
        }
        Some(docs)
    }

    /// A block node whose lines are deeper than `parent` (the indent of the collection holding
    /// it; `None` for a document), or at `parent` for a sequence when `seq_at_parent` (a
    /// mapping's value). Empty (null) when the next content is not.
    fn node(&mut self, parent: Option<usize>, seq_at_parent: bool) -> Option<Value> {
        let col = match self.next()? {
            Next::Eof | Next::Marker => return Some(Value::Null),
            Next::At(col) => col,
        };
        let deeper = parent.is_none_or(|p| col > p);
        if !deeper {
            return Some(if seq_at_parent && Some(col) == parent && self.dash() {
                self.deeper(|r| r.sequence(col))?
            } else {
                Value::Null
            });
        }
        if self.dash() {
            return self.deeper(|r| r.sequence(col));
        }
        let start = self.pos;
        if let Some(key) = self.key()? {
            return self.deeper(|r| r.mapping(col, key));
        }
        self.pos = start;
        self.inline(parent)
    }

    fn deeper(&mut self, f: impl FnOnce(&mut Self) -> Option<Value>) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let v = f(self);
        self.depth -= 1;
        v
    }

    /// A value on the rest of this line (scalar or flow collection); the next content must not
    /// be deeper than `parent` (that would be a multi-line scalar or an error).
    fn inline(&mut self, parent: Option<usize>) -> Option<Value> {
        let value = match self.cur() {
            b'{' | b'[' => self.flow()?,
            b'"' | b'\'' => Value::String(self.quoted()?),
            _ => plain(self.block_plain()?)?,
        };
        self.finish_line()?;
        match self.next()? {
            Next::At(col) if parent.is_none_or(|p| col > p) => None,
            _ => Some(value),
        }
    }

    /// A block mapping at column `col`; `first` is its first key, `pos` past its `:`.
    fn mapping(&mut self, col: usize, first: Value) -> Option<Value> {
        let mut map = Mapping::new();
        let mut key = first;
        loop {
            // A value on the lines below (`node` skips the rest of this one).
            let value = if self.rest_empty() {
                self.node(Some(col), true)?
            } else if self.dash() {
                return None; // `key: - x`
            } else {
                self.inline(Some(col))?
            };
            if map.insert(key, value).is_some() {
                return None; // duplicate key: yaml_serde's error
            }
            match self.next()? {
                Next::At(c) if c == col && !self.dash() => key = self.key()??,
                Next::At(c) if c >= col => return None,
                _ => return Some(Value::Mapping(map)),
            }
        }
    }

    /// A block sequence at column `col`, `pos` on its first `-`.
    fn sequence(&mut self, col: usize) -> Option<Value> {
        let mut items = Vec::new();
        loop {
            self.pos += 1; // the `-`
            items.push(self.node(Some(col), false)?);
            match self.next()? {
                Next::At(c) if c == col && self.dash() => {}
                Next::At(c) if c > col => return None,
                _ => return Some(Value::Sequence(items)),
            }
        }
    }

    /// The key of a block mapping entry at `pos`, `pos` left past its `:`; `Some(None)` when
    /// this line is not a mapping entry (`pos` is then anywhere on it).
    fn key(&mut self) -> Option<Option<Value>> {
        let start = self.pos;
        let key = match self.cur() {
            b'{' | b'[' => return Some(None),
            b'"' | b'\'' => {
                let Some(s) = self.quoted() else {
                    return Some(None);
                };
                self.skip_spaces();
                Value::String(s)
            }
            _ => {
                let mut i = start;
                let end = loop {
                    match self.at(i) {
                        b'\n' => return Some(None),
                        b':' if self.blank(i + 1) => break i,
                        b'#' if self.after_space(i) => return Some(None),
                        _ => i += 1,
                    }
                };
                let text = self.trimmed(start, end);
                if text.is_empty() || !plain_start(self.b, start) {
                    return None;
                }
                self.pos = end;
                plain(text)?
            }
        };
        if self.cur() != b':' || !self.blank(self.pos + 1) || self.pos - start > MAX_KEY {
            return Some(None);
        }
        self.pos += 1;
        Some(Some(key))
    }

    /// A plain scalar in block context, to the end of the line or a comment.
    fn block_plain(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !plain_start(self.b, start) {
            return None;
        }
        loop {
            match self.cur() {
                b'\n' => break,
                b':' if self.blank(self.pos + 1) => return None, // `a: b: c`
                b'#' if self.after_space(self.pos) => break,
                _ => self.pos += 1,
            }
        }
        Some(self.trimmed(start, self.pos.min(self.b.len())))
    }

    /// A quoted scalar on one line; `pos` past its closing quote.
    fn quoted(&mut self) -> Option<String> {
        let q = self.cur();
        let mut out = Vec::new();
        self.pos += 1;
        loop {
            let c = self.cur();
            self.pos += 1;
            match c {
                b'\n' => return None,
                b'\'' if q == b'\'' => {
                    if self.cur() != b'\'' {
                        break;
                    }
                    self.pos += 1;
                    out.push(b'\'');
                }
                b'"' if q == b'"' => break,
                b'\\' if q == b'"' => {
                    out.push(match self.cur() {
                        b'\\' => b'\\',
                        b'"' => b'"',
                        b'/' => b'/',
                        b'n' => b'\n',
                        b't' => b'\t',
                        _ => return None,
                    });
                    self.pos += 1;
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).ok()
    }

    /// A flow collection or scalar on this line.
    fn flow(&mut self) -> Option<Value> {
        self.skip_spaces();
        match self.cur() {
            b'{' => self.deeper(|r| r.flow_collection(b'}')),
            b'[' => self.deeper(|r| r.flow_collection(b']')),
            b'"' | b'\'' => self.quoted().map(Value::String),
            _ => self.flow_plain().and_then(plain),
        }
    }

    /// `{...}` (`close` `}`) or `[...]` (`]`), `pos` on its opening bracket.
    fn flow_collection(&mut self, close: u8) -> Option<Value> {
        self.pos += 1;
        let mut map = Mapping::new();
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            if self.cur() == close {
                self.pos += 1;
                break;
            }
            if close == b'}' && matches!(self.cur(), b'{' | b'[') {
                return None; // a collection as a key
            }
            let entry = self.flow()?;
            self.skip_spaces();
            if close == b'}' {
                if self.cur() != b':' || !self.blank(self.pos + 1) {
                    return None; // `{a}`, `{a:b}`
                }
                self.pos += 1;
                self.skip_spaces();
                if matches!(self.cur(), b',' | b'}' | b'\n') {
                    return None; // `{a: }`
                }
                let value = self.flow()?;
                if map.insert(entry, value).is_some() {
                    return None;
                }
                self.skip_spaces();
            } else {
                items.push(entry);
            }
            match self.cur() {
                b',' => self.pos += 1,
                c if c == close => {
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        Some(if close == b'}' {
            Value::Mapping(map)
        } else {
            Value::Sequence(items)
        })
    }

    /// A plain scalar in flow context: to `,`, a bracket, or `: `.
    fn flow_plain(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !plain_start(self.b, start) {
            return None;
        }
        loop {
            match self.cur() {
                b',' | b'[' | b']' | b'{' | b'}' => break,
                b':' if matches!(
                    self.at(self.pos + 1),
                    b' ' | b',' | b'?' | b'[' | b']' | b'{' | b'}'
                ) =>
                {
                    break
                }
                b'\n' => return None,
                b'#' if self.after_space(self.pos) => return None,
                _ => self.pos += 1,
            }
        }
        let text = self.trimmed(start, self.pos);
        (!text.is_empty()).then_some(text)
    }
}

/// Whether a plain scalar may start at `i` (the conservative subset: no indicator, a `-` only
/// before a letter, digit or `.`).
fn plain_start(b: &[u8], i: usize) -> bool {
    match b.get(i).copied() {
        None => false,
        Some(b'-') => b
            .get(i + 1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.'),
        Some(
            b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|'
            | b'>' | b'\'' | b'"' | b'%' | b'@' | b'`' | b' ' | b'\n',
        ) => false,
        Some(_) => true,
    }
}

/// A plain scalar's value, resolved as `yaml_serde` does (null, bool, integer, float, string);
/// `None` for the rare forms left to it (hex/octal/binary, integers past 64 bits, inf/nan).
fn plain(s: &str) -> Option<Value> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    match unsigned.as_bytes().first() {
        Some(c) if c.is_ascii_digit() || *c == b'.' => {}
        _ => return Some(Value::String(s.to_owned())),
    }
    if ["0x", "0o", "0b"].iter().any(|p| unsigned.starts_with(p))
        || matches!(
            unsigned,
            ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
        )
    {
        return None;
    }
    // Leading zeros before digits: a string (YAML 1.2).
    if unsigned.len() > 1
        && unsigned.starts_with('0')
        && unsigned[1..].bytes().all(|c| c.is_ascii_digit())
    {
        return Some(Value::String(s.to_owned()));
    }
    if unsigned.bytes().all(|c| c.is_ascii_digit()) {
        return if s.starts_with('-') {
            s.parse::<i64>()
                .ok()
                .map(|n| Value::Number(Number::from(n)))
        } else {
            unsigned
                .parse::<u64>()
                .ok()
                .map(|n| Value::Number(Number::from(n)))
        };
    }
    // As yaml_serde's float rule: one `+` dropped, then Rust's grammar; not finite: a string.
    match s.strip_prefix('+').unwrap_or(s).parse::<f64>() {
        Ok(f) if f.is_finite() => Some(Value::Number(Number::from(f))),
        _ => Some(Value::String(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn slow(text: &str) -> Vec<Value> {
        yaml_serde::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect()
    }

    /// Read the same as `yaml_serde` reads them.
    #[test]
    fn the_subset_reads_as_yaml_serde_reads_it() {
        for text in [
            "",
            "# only a comment\n",
            "---\n",
            "---",
            "a: 1\n---\n",
            "---\na: 1\n",
            "--- # c\na: 1",
            "a: 1\n...\n",
            "a: 1\n...\n---\nb: 1\n",
            "---\n---\n",
            "a: 1\n---\n# c\n",
            "a: 1\n...\n# x\n",
            "---\n...\n",
            "a: 1\n---\n...\n",
            "key:\n  value\nb: 2\n",
            "- a\n- b\n",
            "a:\n- 1\n- 2\nb: 3\n",
            "a: {}\nb: []",
            "a: 'x''y'",
            "a: \"x\\ny\\\\z\"",
            "a: b #c\n",
            "a: b#c\n",
            "a: [a, b,]",
            "a: {a: 1,}",
            "a: x:y",
            "a: [x:y]",
            "a: {u: http://x}",
            "a: [ x , y ]",
            "a: { b : c }",
            "a:  x  ",
            "a: 'x' ",
            "- - a\n  - b\n- c",
            "- a: 1\n  b: [2, {c: d}]\n-\n  e: f\n- \n- g\n",
            "top:\n  mid:\n    low: 1\n  other:\n  - x\n  - y: z\n    w: v\nlast: ~\n",
            "a: /v1/[0-9]+\nb: 127.0.0.1\nc: 10s\nd: 0.5s\ne: \"5xx,reset\"\n",
            "n: [0, -0, +0, 00, -00, 7, -7, +7, 1.5, .5, 5., -.5, +.5, 1e3, 1_000, 007.5, +-5, 1e400]\n",
            "n: [18446744073709551615, -9223372036854775808, 0X1F, 1.2.3]\n",
            "b: [true, True, TRUE, false, null, Null, NULL, ~, yes, no, on]\n",
            "80: http\n1.5: x\ntrue: y\n\"q\": z\n'r': w\n",
            "a: -x\nb: -1\nc: a#b\nd: \"#\"\ne: a b  c\n",
            "a:\n\n  # comment\n\n  b: 1   # trailing\n# at column 0\n  c: 2\n",
            "  a: 1\n  b: 2\n",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: b}\nspec:\n  hosts: [\"a.example\"]\n  http:\n  - match: [{uri: {prefix: /}}]\n    route: [{destination: {host: x, subset: v1}, weight: 90}]\n",
        ] {
            let fast = parse(text).unwrap_or_else(|| panic!("declined {text:?}"));
            assert_eq!(fast, slow(text), "{text:?}");
        }
    }

    /// Anything else is left to `yaml_serde` (errors included).
    #[test]
    fn the_rest_is_declined() {
        for text in [
            "...\n",
            "a: 1\n...\nb: 1\n",
            "a: &x 1\nb: *x\n",
            "a: !tag 1",
            "a: |\n  text\n",
            "a: >\n  text\n",
            "a: b\n  c\n",
            "a: [1,\n 2]\n",
            "a: \"x\n y\"\n",
            "? a\n: b\n",
            "a: 1\na: 2\n",
            "a: {x: 1, x: 2}",
            "a: b: c\n",
            "a: - b\n",
            "a: -\n",
            "a: {a}",
            "a: [a: 1]",
            "a: {x:y}",
            "\"a\":1",
            "a :b\nc: d\n",
            "a:\n\tb: 1\n",
            "a: caf\u{e9}\n",
            "a: 0x1F",
            "a: .inf",
            "a: 123456789012345678901234",
            "a: \"\\u00e9\"",
            "[a]: 1",
            "a:\n    b: 1\n  c: 2\n",
            "a:\n  - x\n  b: 1\n",
            "%YAML 1.2\n---\na: 1\n",
            "--- {a: 1}\n",
            "a: 1\r\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    /// Deep nesting is declined before `yaml_serde`'s recursion limit.
    #[test]
    fn deep_nesting_is_declined() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(parse(&deep), None);
        let ok = "[".repeat(20) + &"]".repeat(20);
        assert_eq!(parse(&ok), Some(slow(&ok)));
    }
}
