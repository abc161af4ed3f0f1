//! Rewrites of parsed patterns (`regex_syntax` HIR) for the automata.

use regex_syntax::hir::{Hir, HirKind, Repetition};

/// Repetitions of more than this many items count in NFA and DFA states: a
/// JWT's `{2,6144}` is 6,144 of them, and a lazy DFA walking through a token
/// makes a new state for every byte of it.
const LONG: u32 = 64;

/// `hir` with its long ranges (`{10,1024}`) open-ended (`{10,}`), for the
/// built-in detectors' scan. It finds the same values up to the old bound
/// (each such range in a built-in pattern ends where its class of bytes
/// ends: a JWT segment at `.`, a bearer token at a space), and the lazy DFA
/// walks through a long token in one state instead of one per byte: on the
/// bench fixture its cache shrinks from about 1 MB to 230 KB. A value over
/// the old bound is now redacted whole instead of in part or not at all.
/// The streaming hold-back stays bounded by the original patterns. Exact
/// counts (`{82}`) keep their meaning.
pub fn open_long_ranges(hir: &Hir) -> Hir {
    open_ranges_over(hir, LONG)
}

/// `hir` with its ranges of more than [`SMALL`] items open-ended (`{0,40}`
/// becomes `{0,}`; `{1,8}`, `={0,2}` and exact counts stay). It matches
/// everything `hir` matches, and its automaton has few states for counting:
/// for following a value whose end has not arrived, where matching a little
/// more than the pattern is the safe side.
pub fn open_ranges(hir: &Hir) -> Hir {
    open_ranges_over(hir, SMALL)
}

/// Ranges up to this many items are cheap to count in a DFA.
const SMALL: u32 = 8;

fn open_ranges_over(hir: &Hir, longer_than: u32) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => hir.clone(),
        HirKind::Repetition(rep) => {
            let open = rep
                .max
                .is_some_and(|max| max > longer_than && max > rep.min);
            Hir::repetition(Repetition {
                min: rep.min,
                max: if open { None } else { rep.max },
                greedy: rep.greedy,
                sub: Box::new(open_ranges_over(&rep.sub, longer_than)),
            })
        }
        HirKind::Capture(cap) => open_ranges_over(&cap.sub, longer_than),
        HirKind::Concat(subs) => Hir::concat(
            subs.iter()
                .map(|s| open_ranges_over(s, longer_than))
                .collect(),
        ),
        HirKind::Alternation(subs) => Hir::alternation(
            subs.iter()
                .map(|s| open_ranges_over(s, longer_than))
                .collect(),
        ),
    }
}

/// The language of every prefix of a string `hir` matches, the empty string
/// and the whole match included. Assertions (`\b`) are kept where a prefix
/// goes past them, and dropped where it ends in front of them, since the
/// bytes that decide them have not arrived yet.
pub fn prefixes(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Hir::empty(),
        HirKind::Literal(lit) => lit.0.iter().rev().fold(Hir::empty(), |rest, &b| {
            optional(Hir::concat(vec![Hir::literal(vec![b]), rest]))
        }),
        HirKind::Class(_) => optional(hir.clone()),
        HirKind::Repetition(rep) => {
            if rep.max == Some(0) {
                return Hir::empty();
            }
            if rep.sub.properties().maximum_len() == Some(1) {
                // A prefix of n single-byte items is up to n of them.
                return repeat(&rep.sub, 0, rep.max);
            }
            // Up to max-1 whole items, then a prefix of one more.
            let whole = repeat(&rep.sub, 0, rep.max.map(|m| m.saturating_sub(1)));
            Hir::concat(vec![whole, prefixes(&rep.sub)])
        }
        HirKind::Capture(cap) => prefixes(&cap.sub),
        HirKind::Concat(subs) => {
            let mut backwards = subs.iter().rev();
            let Some(last) = backwards.next() else {
                return Hir::empty();
            };
            backwards.fold(prefixes(last), |rest, sub| {
                // Either the prefix ends inside `sub`, or `sub` is whole and
                // the prefix goes on into the rest.
                Hir::alternation(vec![prefixes(sub), Hir::concat(vec![sub.clone(), rest])])
            })
        }
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(prefixes).collect()),
    }
}

/// `hir` with every long repetition unbounded and optional (`{0,}`): it
/// matches everything `hir` matches, and more. For the prefix automaton,
/// whose search never looks further back than the longest match.
pub fn loosen(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => hir.clone(),
        HirKind::Repetition(rep) => {
            let sub = loosen(&rep.sub);
            match rep.max {
                Some(max) if max <= LONG => Hir::repetition(Repetition {
                    min: rep.min,
                    max: rep.max,
                    greedy: true,
                    sub: Box::new(sub),
                }),
                _ => repeat(&sub, 0, None),
            }
        }
        HirKind::Capture(cap) => loosen(&cap.sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(loosen).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(loosen).collect()),
    }
}

fn optional(hir: Hir) -> Hir {
    repeat(&hir, 0, Some(1))
}

/// `hir` repeated `min` to `max` times (greedy; `None`: no upper bound).
pub fn repeat(hir: &Hir, min: u32, max: Option<u32>) -> Hir {
    Hir::repetition(Repetition {
        min,
        max,
        greedy: true,
        sub: Box::new(hir.clone()),
    })
}
