//! A leftmost-first search for a pattern that begins with a run of a byte
//! class followed by a byte outside it, the pivot: `[A-Za-z0-9._%+-]{1,64}@…`
//! (an e-mail address). Any word byte may begin such a pattern, so skipping
//! by beginnings cannot help; its pivot byte is rare instead.
//!
//! Each pivot is found with `memchr`. A match must take the pivot right after
//! its run (the run cannot contain the pivot), so the leftmost start that
//! can use this pivot is where the run before it begins (or as far back as
//! its upper bound allows), and whether a match exists does not depend on
//! which of those starts is taken. One anchored forward search from there
//! gives the match, or shows that no start before this pivot has one. That is
//! what `regex-automata`'s reverse-inner strategy does too, with a general
//! reverse search and more set-up per candidate than this needs.

use crate::skipping::{compile, GaveUp, CACHE_CAPACITY};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, Match, MatchKind, PatternID};
use regex_syntax::hir::{Class, Hir, HirKind};
use std::panic::{RefUnwindSafe, UnwindSafe};

type CacheFn = Box<dyn Fn() -> Cache + Send + Sync + UnwindSafe + RefUnwindSafe>;

pub struct PivotSearch {
    /// Bytes of the run before the pivot.
    run: [bool; 256],
    /// The run's bounds.
    min: usize,
    max: Option<usize>,
    pivot: u8,
    /// The whole pattern, anchored, leftmost-first.
    forward: DFA,
    caches: Pool<Cache, CacheFn>,
}

impl std::fmt::Debug for PivotSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PivotSearch")
            .field("pivot", &self.pivot)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl PivotSearch {
    /// The pivot search of `hir`, or `None` when it does not have that shape
    /// (or cannot be built).
    pub fn build(hir: &Hir, nfa_size_limit: usize) -> Option<Self> {
        let HirKind::Concat(parts) = hir.kind() else {
            return None;
        };
        let (HirKind::Repetition(repetition), HirKind::Literal(literal)) =
            (parts.first()?.kind(), parts.get(1)?.kind())
        else {
            return None;
        };
        let run = byte_set(repetition.sub.kind())?;
        let pivot = *literal.0.first()?;
        let min = usize::try_from(repetition.min).ok()?;
        if min == 0 || run.get(usize::from(pivot)).is_none_or(|&inside| inside) {
            return None;
        }
        let max = match repetition.max {
            Some(max) => Some(usize::try_from(max).ok()?),
            None => None,
        };
        let nfa = compile(std::slice::from_ref(hir), nfa_size_limit, false)?;
        let forward = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::LeftmostFirst)
                    .cache_capacity(CACHE_CAPACITY),
            )
            .build_from_nfa(nfa)
            .ok()?;
        let dfa = forward.clone();
        let create: CacheFn = Box::new(move || dfa.create_cache());
        Some(Self {
            run,
            min,
            max,
            pivot,
            forward,
            caches: Pool::new(create),
        })
    }

    /// The leftmost-first match in `hay[from..]`, `hay[..from]` being
    /// look-behind only: the same match as an unanchored search of
    /// `regex-automata` over the pattern. [`GaveUp`] where the lazy DFA
    /// reports an error (it does not, as configured).
    pub fn find(&self, hay: &[u8], from: usize) -> Result<Option<Match>, GaveUp> {
        let mut cache = self.caches.get();
        let mut next = from;
        while let Some(offset) = hay
            .get(next..)
            .and_then(|rest| memchr::memchr(self.pivot, rest))
        {
            let pivot_at = next + offset;
            next = pivot_at + 1;
            let Some(start) = self.leftmost_start(hay, from, pivot_at) else {
                continue;
            };
            let input = Input::new(hay).range(start..).anchored(Anchored::Yes);
            let found = self
                .forward
                .try_search_fwd(&mut cache, &input)
                .map_err(|_| GaveUp)?;
            if let Some(end) = found {
                return Ok(Some(Match::new(PatternID::ZERO, start..end.offset())));
            }
        }
        Ok(None)
    }

    /// The leftmost start at or after `from` of a run that ends right before
    /// the pivot at `pivot_at` and is long enough; none if too short.
    fn leftmost_start(&self, hay: &[u8], from: usize, pivot_at: usize) -> Option<usize> {
        let lowest = match self.max {
            Some(max) => from.max(pivot_at.saturating_sub(max)),
            None => from,
        };
        let mut start = pivot_at;
        while start > lowest
            && hay
                .get(start - 1)
                .is_some_and(|&b| self.run.get(usize::from(b)).is_some_and(|&yes| yes))
        {
            start -= 1;
        }
        (pivot_at - start >= self.min).then_some(start)
    }
}

/// The bytes of a class (ASCII ones, for a Unicode class), or `None` for
/// anything else.
fn byte_set(kind: &HirKind) -> Option<[bool; 256]> {
    let HirKind::Class(class) = kind else {
        return None;
    };
    let mut set = [false; 256];
    match class {
        Class::Bytes(bytes) => {
            for range in bytes.ranges() {
                for b in range.start()..=range.end() {
                    *set.get_mut(usize::from(b))? = true;
                }
            }
        }
        Class::Unicode(chars) => {
            for range in chars.ranges() {
                let (start, end) = (
                    u8::try_from(range.start()).ok()?,
                    u8::try_from(range.end()).ok()?,
                );
                if !end.is_ascii() {
                    return None;
                }
                for b in start..=end {
                    *set.get_mut(usize::from(b))? = true;
                }
            }
        }
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::BUILTINS;
    use regex_automata::meta::Regex;

    fn parse(pattern: &str) -> Hir {
        crate::scanner::parse(pattern).unwrap()
    }

    fn email() -> Hir {
        let b = BUILTINS.iter().find(|b| b.name == "email").unwrap();
        parse(b.pattern)
    }

    /// Every match from every start position, by both searches.
    fn assert_same_as_meta(hir: &Hir, hay: &[u8]) {
        let pivot = PivotSearch::build(hir, 8 << 20).expect("pivot shape");
        let meta = Regex::builder().build_from_hir(hir).unwrap();
        for from in 0..=hay.len() {
            let expected = meta.search(&Input::new(hay).range(from..));
            let actual = pivot.find(hay, from).unwrap();
            assert_eq!(
                actual.map(|m| m.range()),
                expected.map(|m| m.range()),
                "from {from} in {:?}",
                String::from_utf8_lossy(hay)
            );
        }
    }

    const PIECES: &[&str] = &[
        "jane.doe@example.com",
        "a@b.co",
        "x@y",
        "@example.com",
        "user@@example.com",
        "first.last+tag@sub.mail.example.org",
        "no-at-sign",
        "trailing@dot.",
        "under_score@example.com",
        "x@exa_mple.com",
        "dash-@-dash.com",
        "\"email\":\"lukas.brown7@shop.example\",",
        " ",
        ",",
        "@",
        ".",
        "-",
        "9",
        "é",
        "\n",
    ];

    fn mixed_text(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        let mut out = Vec::new();
        while out.len() < len {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let piece = PIECES[(x >> 33) as usize % PIECES.len()].as_bytes();
            let cut = (x >> 13) as usize % (piece.len() + 1);
            out.extend_from_slice(if x & 1 == 0 { piece } else { &piece[cut..] });
        }
        out
    }

    #[test]
    fn email_has_the_pivot_shape() {
        let search = PivotSearch::build(&email(), 8 << 20).unwrap();
        assert_eq!(search.pivot, b'@');
        assert_eq!((search.min, search.max), (1, Some(64)));
    }

    #[test]
    fn other_shapes_are_refused() {
        for pattern in [
            r"[a-z]{0,4}@x",   // the run may be empty
            r"[a-z@]{1,4}@x",  // the pivot inside the run
            r"@[a-z]+",        // no run
            r"[a-z]{1,4}|@x",  // not a concatenation
            r"\b[a-z]{1,4}@x", // a look first
        ] {
            assert!(
                PivotSearch::build(&parse(pattern), 8 << 20).is_none(),
                "{pattern}"
            );
        }
    }

    #[test]
    fn same_matches_as_meta_for_email() {
        let hir = email();
        for seed in 0..40 {
            assert_same_as_meta(&hir, &mixed_text(seed, 300));
        }
    }

    #[test]
    fn long_runs_start_at_the_bound() {
        let hir = email();
        let mut hay = vec![b'a'; 100];
        hay.extend_from_slice(b"@example.com and b@c.de");
        assert_same_as_meta(&hir, &hay);
        let found = PivotSearch::build(&hir, 8 << 20)
            .unwrap()
            .find(&hay, 0)
            .unwrap()
            .unwrap();
        assert_eq!(found.range(), 36..112);
    }

    #[test]
    fn unbounded_and_custom_runs() {
        for pattern in [r"[0-9]+#[a-z]{2,3}\b", r"(?i:[a-z]{2,5})=[0-9]{3}"] {
            let hir = parse(pattern);
            for seed in 0..10 {
                let text = mixed_text(seed, 200);
                let mut hay = text.clone();
                hay.extend_from_slice(b" 123#ab 1#abcd ab=123 ABC=1234 x=999 ");
                hay.extend_from_slice(&text);
                assert_same_as_meta(&hir, &hay);
            }
        }
    }
}
