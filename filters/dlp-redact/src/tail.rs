//! Where the bytes that may still become part of a match begin.
//!
//! Between two chunks of a body the stream must hold back every byte that a
//! match could still need, and may release the rest at once. A byte can still
//! be needed only if the text from it to the end of what has arrived is the
//! beginning of some detector's match (plus the bytes a validator looks at
//! after a match). So the automaton here recognises the *prefixes* of every
//! active pattern, and is run backwards, anchored at the end of the held
//! bytes: its leftmost match is the first byte that must be held. Ahead of
//! it, every match is complete, and nothing there can change when more bytes
//! arrive.
//!
//! In prose or JSON that is usually a few bytes (a word, a number), not the
//! longest possible match: the stream releases text as it arrives, and the
//! next chunk scans again only those few bytes.

use crate::rewrite::{loosen, prefixes, repeat};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::{Anchored, Input, MatchKind};
use regex_syntax::hir::{Dot, Hir};
use std::sync::Mutex;

/// The reverse automaton of the prefixes of a set of patterns.
#[derive(Debug)]
pub struct Tail {
    dfa: DFA,
    /// One cache for the VM's single thread; `try_lock` never waits.
    cache: Mutex<Cache>,
}

/// Where the bytes that may still be needed begin, and whose prefix they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub start: usize,
    /// The index of a pattern whose prefix `hay[start..]` is; `None` when
    /// nothing is live (`start` is the end) or the search could not run.
    pub pattern: Option<usize>,
}

impl Tail {
    /// `patterns` are the parsed active patterns; `look_ahead` is how many
    /// bytes after a match its validator reads.
    pub fn build(
        patterns: &[&Hir],
        look_ahead: u32,
        nfa_size_limit: usize,
    ) -> Result<Self, String> {
        let after = repeat(&Hir::dot(Dot::AnyByte), 0, Some(look_ahead));
        let languages: Vec<Hir> = patterns
            .iter()
            .map(|p| {
                let p = loosen(p);
                Hir::alternation(vec![prefixes(&p), Hir::concat(vec![p, after.clone()])])
            })
            .collect();
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .reverse(true)
                    .which_captures(thompson::WhichCaptures::None)
                    .nfa_size_limit(Some(nfa_size_limit)),
            )
            .build_many_from_hir(&languages)
            .map_err(|e| e.to_string())?;
        let dfa = DFA::builder()
            .configure(DFA::config().match_kind(MatchKind::All))
            .build_from_nfa(nfa)
            .map_err(|e| e.to_string())?;
        let cache = Mutex::new(dfa.create_cache());
        Ok(Self { dfa, cache })
    }

    /// The first byte of `hay[from..]` that a match may still need when more
    /// bytes follow `hay`, never before `from`. Bytes before it can be
    /// released. The search runs backwards from the end and stops where no
    /// prefix can reach: in text and JSON within a word or a number. Only a
    /// run of bytes that all fit a long prefix (a token's characters) makes
    /// it go further; the caller bounds what it holds. When the search cannot
    /// run, everything from `from` is live.
    pub fn live(&self, hay: &[u8], from: usize) -> Live {
        let len = hay.len();
        let from = from.min(len);
        let Ok(mut cache) = self.cache.try_lock() else {
            return Live {
                start: from,
                pattern: None,
            };
        };
        let input = Input::new(hay).range(from..len).anchored(Anchored::Yes);
        match self.dfa.try_search_rev(&mut cache, &input) {
            Ok(Some(m)) => Live {
                start: m.offset(),
                pattern: (m.offset() < len).then(|| m.pattern().as_usize()),
            },
            // The empty prefix always matches; no match means no patterns.
            Ok(None) if self.dfa.pattern_len() == 0 => Live {
                start: len,
                pattern: None,
            },
            Ok(None) | Err(_) => Live {
                start: from,
                pattern: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{loosen, prefixes};
    use regex_automata::meta::Regex;

    fn hir(pattern: &str) -> Hir {
        regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(pattern)
            .unwrap()
    }

    /// Whether all of `text` is in the prefix language of `pattern`.
    fn is_prefix(pattern: &str, text: &str) -> bool {
        let whole = Hir::concat(vec![
            Hir::look(regex_syntax::hir::Look::Start),
            prefixes(&loosen(&hir(pattern))),
            Hir::look(regex_syntax::hir::Look::End),
        ]);
        Regex::builder()
            .build_from_hir(&whole)
            .unwrap()
            .is_match(text)
    }

    #[test]
    fn every_prefix_of_a_match_is_in_the_prefix_language() {
        let cases: &[(&str, &[&str])] = &[
            (r"\bAB[0-9]{2}\b", &["AB12"]),
            (
                r"\b(?:[0-9]{4}(?: [0-9]{4}){3}|[0-9]{13,19})\b",
                &["4111 1111 1111 1111", "4111111111111111"],
            ),
            (
                r"-----BEGIN [A-Z ]{0,40}KEY-----[A-Za-z0-9+/=\n]{1,8192}-----END",
                &["-----BEGIN RSA KEY-----MIIB\nAAA=-----END"],
            ),
            (
                r"[a-z]{1,8}@(?:[a-z](?:[a-z-]{0,6}[a-z])?\.){1,3}[a-z]{2,4}",
                &["ann@mail.example.org"],
            ),
            (
                r"\b(?i:bearer)[ ]{1,8}[A-Za-z0-9.]{16,4096}",
                &["Bearer  abcdefghijklmnop.qrs"],
            ),
        ];
        for (pattern, matches) in cases {
            for m in *matches {
                assert!(
                    Regex::new(pattern).unwrap().is_match(m),
                    "{pattern} matches {m}"
                );
                for end in 0..=m.len() {
                    assert!(is_prefix(pattern, &m[..end]), "{pattern}: {:?}", &m[..end]);
                }
            }
        }
    }

    #[test]
    fn text_that_cannot_begin_a_match_is_not_in_the_prefix_language() {
        assert!(!is_prefix(r"\bAB[0-9]{2}\b", "AC"));
        assert!(!is_prefix(r"\bAB[0-9]{2}\b", "AB1x"));
        assert!(!is_prefix(r"\bAB[0-9]{2}\b", "AB123"));
        assert!(!is_prefix(r"\b[0-9]{4}(?: [0-9]{4}){3}\b", "4111  1111"));
        assert!(!is_prefix(
            r"-----BEGIN [A-Z ]{0,40}KEY-----",
            "-----BEGIN rsa"
        ));
        assert!(!is_prefix(
            r"\b(?i:bearer)[ ]{1,8}[A-Za-z0-9.]{16,4096}",
            "Bearer x y"
        ));
    }

    #[test]
    fn the_hold_starts_at_the_earliest_live_prefix() {
        let patterns = [hir(r"\bAB[0-9]{2}\b"), hir(r"\b[0-9]{3}-[0-9]{4}\b")];
        let tail = Tail::build(&[&patterns[0], &patterns[1]], 2, 1 << 20).unwrap();
        let at = |text: &str| tail.live(text.as_bytes(), 0).start;
        assert_eq!(at("nothing here. "), 14);
        assert_eq!(at("call 555-12"), 5, "a phone number in progress");
        assert_eq!(at("code AB1"), 5);
        assert_eq!(
            at("code AB12"),
            5,
            "complete, but the next byte decides \\b"
        );
        assert_eq!(
            at("code AB12, "),
            5,
            "complete, within the validators' look-ahead"
        );
        assert_eq!(at("code AB12, ok"), 13, "complete and past the look-ahead");
        assert_eq!(at("xAB1"), 4, "\\b fails before A: not a start");
        assert_eq!(at("555-1 AB"), 6, "the earlier candidate died at the space");
    }

    #[test]
    fn no_patterns_hold_nothing() {
        let tail = Tail::build(&[], 2, 1 << 20).unwrap();
        assert_eq!(
            tail.live(b"anything", 0),
            Live {
                start: 8,
                pattern: None
            }
        );
    }
}
