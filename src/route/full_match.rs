//! [`FullMatch`]: an RE2-syntax regex that must match the whole value (Envoy `safe_regex`), as
//! route conditions use it. Matching only asks "does it match", so this keeps what that needs:
//! the forward lazy DFA of `regex-automata` (no reverse automaton, no capture engines) and one
//! cache for it, about 1.9 KB per pattern where a `regex::Regex` holds 6.8 KB (its meta engine:
//! forward and reverse NFAs and DFAs, one-pass and backtracking engines, a strategy and a
//! 0.9 KB pool of caches per clone). Clones share one pattern, automaton and cache. A pattern the
//! lazy DFA cannot run (a Unicode `\b`) falls back to `regex::Regex`. A value that does not start
//! with the pattern's literal prefix (`/api/v` of `/api/v[0-9]+/.*`: most route regexes have one)
//! is refused before the automaton is touched, as the `regex` crate's prefilter would.

use std::fmt;
use std::sync::{Arc, Mutex};

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson::{self, pikevm::PikeVM, WhichCaptures};
use regex_automata::{Anchored, Input};
use regex_syntax::hir::{Hir, Look};

/// The compiled program's size limit (the `regex` crate's `size_limit`).
const NFA_SIZE_LIMIT: usize = 1 << 20;

/// An anchored regex: `is_match` is true when the pattern matches all of the value.
#[derive(Clone)]
pub struct FullMatch(Arc<Inner>);

struct Inner {
    /// As written in the config, without the anchoring added here.
    pattern: Box<str>,
    /// What every match starts with (often empty).
    prefix: Box<[u8]>,
    engine: Engine,
}

// The large variant is the common one; one per pattern, behind the `Arc`.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Lazy {
        dfa: DFA,
        /// Made on the first match (states are added as inputs need them, up to 6-7 KB for a
        /// typical path pattern). A match that finds it in use by another thread (two workers
        /// in the same pattern at the same moment) makes a throwaway one instead of waiting.
        cache: Mutex<Option<Box<Cache>>>,
    },
    Meta(regex::Regex),
}

impl FullMatch {
    /// Compiles `pattern` (RE2 syntax, Unicode on, as the `regex` crate reads it) to match whole
    /// values. The error is the reason, one line.
    pub fn new(pattern: &str) -> Result<FullMatch, String> {
        // Parsed once, for the literal prefix and the automaton. `^` is the anchored search's
        // start; `$` (end of text) makes a match reach the end.
        let parsed = regex_syntax::parse(pattern).ok().map(|hir| {
            let prefix = literal_prefix(&hir);
            (prefix, Hir::concat(vec![hir, Hir::look(Look::End)]))
        });
        let lazy = parsed.and_then(|(prefix, full)| {
            let nfa = thompson::Compiler::new()
                .configure(
                    thompson::Config::new()
                        .which_captures(WhichCaptures::None)
                        .nfa_size_limit(Some(NFA_SIZE_LIMIT)),
                )
                .build_from_hir(&full)
                .ok()?;
            let dfa = DFA::builder().build_from_nfa(nfa).ok()?;
            Some((prefix, dfa))
        });
        let (prefix, engine) = match lazy {
            Some((prefix, dfa)) => (
                prefix,
                Engine::Lazy {
                    dfa,
                    cache: Mutex::new(None),
                },
            ),
            // A syntax error, a program over the size limit, or a construct the lazy DFA cannot
            // run (a Unicode word boundary): the meta engine runs the last and words the others.
            None => {
                let meta = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(NFA_SIZE_LIMIT)
                    .build()
                    .map_err(error_reason)?;
                let prefix = regex_syntax::parse(pattern)
                    .map(|hir| literal_prefix(&hir))
                    .unwrap_or_default();
                (prefix, Engine::Meta(meta))
            }
        };
        Ok(FullMatch(Arc::new(Inner {
            pattern: pattern.into(),
            prefix,
            engine,
        })))
    }

    pub fn is_match(&self, value: &str) -> bool {
        if !value.as_bytes().starts_with(&self.0.prefix) {
            return false;
        }
        match &self.0.engine {
            Engine::Meta(r) => r.is_match(value),
            Engine::Lazy { dfa, cache } => {
                let input = Input::new(value).anchored(Anchored::Yes).earliest(true);
                let found = match cache.try_lock() {
                    Ok(mut held) => {
                        let cache = held.get_or_insert_with(|| Box::new(dfa.create_cache()));
                        dfa.try_search_fwd(cache, &input)
                    }
                    Err(_) => dfa.try_search_fwd(&mut dfa.create_cache(), &input),
                };
                match found {
                    Ok(m) => m.is_some(),
                    // The DFA is built without quit bytes or a give-up threshold, so this is not
                    // expected; the NFA simulation gives the same answer, slower.
                    Err(_) => slow_match(dfa.get_nfa(), &input),
                }
            }
        }
    }

    /// The pattern as written (not anchored).
    pub fn as_str(&self) -> &str {
        &self.0.pattern
    }

    /// Whether `other` is this very compiled regex (not another compile of the same pattern).
    pub fn same(&self, other: &FullMatch) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The bytes every match of `hir` starts with: the longest common prefix of its prefix literals
/// (empty when it has none, or when they share nothing, as with `(?i)`).
fn literal_prefix(hir: &Hir) -> Box<[u8]> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    seq.longest_common_prefix().unwrap_or_default().into()
}

fn slow_match(nfa: &thompson::NFA, input: &Input<'_>) -> bool {
    match PikeVM::new_from_nfa(nfa.clone()) {
        Ok(vm) => vm.is_match(&mut vm.create_cache(), input.clone()),
        Err(_) => false,
    }
}

/// A `regex` crate error as one line: its syntax errors span several (the pattern, a caret, the
/// reason), and the reason is the last.
pub fn error_reason(e: regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .last()
            .unwrap_or("syntax error")
            .trim()
            .trim_start_matches("error: ")
            .to_owned(),
        other => other.to_string(),
    }
}

impl fmt::Debug for FullMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FullMatch").field(&self.as_str()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_values_only() {
        let r = FullMatch::new("/svc-1/v1/items/[0-9]+").unwrap();
        assert!(r.is_match("/svc-1/v1/items/123"));
        assert!(!r.is_match("/svc-1/v1/items/12a"));
        assert!(!r.is_match("x/svc-1/v1/items/1"));
        assert!(!r.is_match("/svc-1/v1/items/1/"));
        assert!(!r.is_match(""));
        assert_eq!(r.as_str(), "/svc-1/v1/items/[0-9]+");
    }

    #[test]
    fn alternation_and_anchors_inside_the_pattern() {
        // Anchoring wraps the whole alternation, not its last branch.
        let r = FullMatch::new("a|b").unwrap();
        assert!(r.is_match("a") && r.is_match("b"));
        assert!(!r.is_match("ab") && !r.is_match("ba"));
        let r = FullMatch::new("^/x$").unwrap();
        assert!(r.is_match("/x") && !r.is_match("/xy"));
        let r = FullMatch::new(".*").unwrap();
        assert!(r.is_match("") && r.is_match("anything/at/all"));
        let r = FullMatch::new("(?i)abc").unwrap();
        assert!(r.is_match("ABC") && !r.is_match("ABCD"));
        let r = FullMatch::new("x*").unwrap();
        assert!(r.is_match("") && r.is_match("xxx") && !r.is_match("xy"));
    }

    #[test]
    fn the_literal_prefix_is_what_every_match_starts_with() {
        let prefix = |p: &str| {
            let hir = regex_syntax::parse(p).unwrap();
            String::from_utf8(literal_prefix(&hir).into()).unwrap()
        };
        assert_eq!(prefix("/svc-1/v1/items/[0-9]+"), "/svc-1/v1/items/");
        assert_eq!(prefix("/api/(v1|v2)/x"), "/api/v");
        assert_eq!(prefix("^/x"), "/x");
        assert_eq!(prefix("a|b"), "");
        assert_eq!(prefix("(?i)/abc"), "/");
        assert_eq!(prefix("x*y"), "");
        assert_eq!(prefix(".*"), "");
        assert_eq!(prefix("é+"), "é");
        let r = FullMatch::new("/api/(v1|v2)/x").unwrap();
        assert!(r.is_match("/api/v2/x") && !r.is_match("/api/v3/x") && !r.is_match("/ap"));
        let r = FullMatch::new("(?i)/ABC").unwrap();
        assert!(r.is_match("/abc") && r.is_match("/aBc") && !r.is_match("abc"));
    }

    #[test]
    fn unicode_values_and_classes() {
        let r = FullMatch::new(r"\w+-é.").unwrap();
        assert!(r.is_match("naïve-éü"));
        assert!(!r.is_match("naïve-e!"));
    }

    #[test]
    fn a_word_boundary_falls_back_and_still_matches_whole_values() {
        let r = FullMatch::new(r"\bfoo\b.*").unwrap();
        assert!(matches!(r.0.engine, Engine::Meta(_)));
        assert!(r.is_match("foo bar"));
        assert!(!r.is_match("xfoo bar"));
        assert!(!r.is_match("a foo"));
    }

    #[test]
    fn errors_name_the_reason_in_one_line() {
        assert_eq!(
            FullMatch::new("a(b").unwrap_err(),
            "unclosed group",
            "syntax errors keep only the reason"
        );
        assert_eq!(
            FullMatch::new("a{2,1}").unwrap_err(),
            "invalid repetition count range, the start must be <= the end"
        );
        let big = FullMatch::new(r"\w{1000}\w{1000}").unwrap_err();
        assert!(big.contains("exceeds size limit"), "{big}");
    }

    #[test]
    fn clones_share_one_program_and_cache() {
        let a = FullMatch::new("[a-z]+").unwrap();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        // Used from several threads at once: one holds the cache, the others make their own.
        std::thread::scope(|s| {
            for i in 0..4 {
                let b = b.clone();
                s.spawn(move || {
                    for _ in 0..1000 {
                        assert!(b.is_match("abc"));
                        assert!(!b.is_match(&format!("abc{i}")));
                    }
                });
            }
        });
    }
}
