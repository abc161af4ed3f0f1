//! A leftmost-first search over a lazy DFA that skips the bytes where no
//! match can begin.
//!
//! The combined detectors' DFA spends most of its time walking bytes that
//! leave it in its start state: the middle of words (nearly every built-in
//! pattern starts at a word boundary), lower-case words that begin no token,
//! punctuation. A walk is one dependent table load per byte; deciding from a
//! small table whether a byte can begin a match at all is cheaper, because
//! one byte's check does not wait for the previous byte's. So whenever the
//! DFA is back in a start state with no match pending, the search skips
//! ahead to the next byte that may begin a match, given the byte before it,
//! and resumes the DFA there. `regex-automata` does the same with literal
//! prefilters, but a digit-led pattern (a card number) has no literal, and
//! a byte-set prefilter cannot see the word boundary.
//!
//! The table is read off the DFA itself at build time: a byte "may begin"
//! after look-behind `x` unless the DFA's start state for `x`, on that byte,
//! goes to the start state for the byte (nothing in progress). The same
//! holds for pairs of bytes, and for a third byte after a pair: where the
//! DFA, from a start state, is back in a start state two or three bytes on,
//! those bytes are skipped together. Equal states have equal futures, so
//! skipping finds exactly the matches of the plain search (`tests` compare
//! the two).

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::nfa::thompson;
use regex_automata::util::pool::Pool;
use regex_automata::util::start;
use regex_automata::{Anchored, HalfMatch, Input, Match, MatchKind};
use regex_syntax::hir::Hir;
use std::panic::{RefUnwindSafe, UnwindSafe};

/// Look-behind kinds: the distinct start states of the DFA by the byte before
/// the search position (word, non-word, and for patterns with line anchors,
/// line ends), and one for the start of the haystack.
const KINDS: usize = 8;
const TEXT: usize = KINDS - 1;

/// The lazy DFAs' cache (the default of `regex-automata`'s meta regex).
pub(crate) const CACHE_CAPACITY: usize = 2 << 20;

/// The cache of the throwaway DFA that the skip tables are read off: room
/// for every state the walk over all byte pairs reaches (a clear would
/// invalidate the ids it compares, so the tables are then not built).
const TABLE_CACHE_CAPACITY: usize = 8 << 20;

/// Skipping pays only when most bytes cannot begin a match: at most this
/// many of the 256 byte values may, after any look-behind. (The default
/// detectors: 47 after a non-word byte, 1 after a word byte.)
const MAX_BEGINNING_BYTES: usize = 64;

type CacheFn = Box<dyn Fn() -> Caches + Send + Sync + UnwindSafe + RefUnwindSafe>;

pub struct Caches {
    forward: Cache,
    reverse: Cache,
}

pub struct SkippingRegex {
    forward: DFA,
    reverse: DFA,
    /// The kind of each look-behind byte.
    kind: [u8; 256],
    /// A byte of each kind (0..kinds), to ask the DFA for its start state.
    kind_bytes: Vec<u8>,
    /// Per look-behind kind, whether a byte may begin a match.
    begins: [[bool; 256]; KINDS],
    /// The DFA's byte classes (bytes of a class move it alike), and how many.
    classes: [u8; 256],
    class_count: usize,
    /// Per look-behind kind (but the haystack's start) and pair of byte
    /// classes, what the DFA is in after the pair: [`PAIR_BEGINS_NONE`] when
    /// no match may begin at either byte (a pair tells more than its first
    /// byte: `st` begins none of the tokens that `s` may begin), else the
    /// index + 1 of its row in `thirds`, or [`PAIR_UNTRACKED`].
    after_pair: Vec<u8>,
    /// Per state after a pair, a bit per third byte: set if a match may still
    /// be in progress after it (a time's `02:` begins nothing that `02` may).
    thirds: Vec<[u64; 4]>,
    /// Per look-behind kind, the bytes that begin no match after it and are
    /// of the same kind: a run of them is skipped without looking further.
    stays: [[bool; 256]; KINDS],
    caches: Pool<Caches, CacheFn>,
}

impl std::fmt::Debug for SkippingRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkippingRegex")
            .field("kinds", &self.kind_bytes.len())
            .finish_non_exhaustive()
    }
}

impl SkippingRegex {
    /// The skipping search of `hirs`, or `None` when it would not pay (too
    /// many bytes may begin a match) or cannot be built.
    pub fn build(hirs: &[Hir], nfa_size_limit: usize) -> Option<Self> {
        Self::build_with_cache(hirs, nfa_size_limit, CACHE_CAPACITY)
    }

    fn build_with_cache(hirs: &[Hir], nfa_size_limit: usize, capacity: usize) -> Option<Self> {
        let forward_nfa = compile(hirs, nfa_size_limit, false)?;
        let forward_dfa = |capacity: usize| forward_dfa(forward_nfa.clone(), capacity);
        let Table {
            kind,
            kind_bytes,
            begins,
            classes,
            class_count,
            after_pair,
            thirds,
        } = Table::read(&forward_dfa(TABLE_CACHE_CAPACITY)?).ok()?;
        let forward = forward_dfa(capacity)?;
        // The reverse search finds the start of a match from its end, as
        // `regex-automata`'s own regexes do.
        let reverse = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(capacity),
            )
            .build_from_nfa(compile(hirs, nfa_size_limit, true)?)
            .ok()?;
        let mut stays = [[false; 256]; KINDS];
        for (k, row) in stays.iter_mut().enumerate().take(kind_bytes.len()) {
            for (b, stay) in row.iter_mut().enumerate() {
                let same_kind = kind.get(b).is_some_and(|&kb| usize::from(kb) == k);
                let begins_none = begins.get(k).and_then(|r| r.get(b)).is_some_and(|&x| !x);
                *stay = same_kind && begins_none;
            }
        }
        let (f, r) = (forward.clone(), reverse.clone());
        let create: CacheFn = Box::new(move || Caches {
            forward: f.create_cache(),
            reverse: r.create_cache(),
        });
        Some(Self {
            forward,
            reverse,
            kind,
            kind_bytes,
            begins,
            classes,
            class_count,
            after_pair,
            thirds,
            stays,
            caches: Pool::new(create),
        })
    }

    /// The leftmost-first match in `hay[from..]`, `hay[..from]` being
    /// look-behind only: the same match as an unanchored search of
    /// `regex-automata` over the same patterns, which cannot match the empty
    /// string (the catalog refuses such patterns). [`GaveUp`] where
    /// `regex-automata` reports an error, which these automata do not
    /// produce (a lazy DFA gives up only with a configured clear limit, and
    /// quits only on configured bytes): the caller then searches otherwise,
    /// so that no error passes for "nothing found".
    pub fn find(&self, hay: &[u8], from: usize) -> Result<Option<Match>, GaveUp> {
        self.find_with(&mut self.caches.get(), hay, from)
    }

    fn find_with(
        &self,
        caches: &mut Caches,
        hay: &[u8],
        from: usize,
    ) -> Result<Option<Match>, GaveUp> {
        let Some(end) = self.find_end(&mut caches.forward, hay, from)? else {
            return Ok(None);
        };
        let input = Input::new(hay)
            .range(from..end.offset())
            .anchored(Anchored::Yes);
        let start = self
            .reverse
            .try_search_rev(&mut caches.reverse, &input)
            .map_err(|_| GaveUp)?
            .ok_or(GaveUp)?;
        Ok(Some(Match::new(
            end.pattern(),
            start.offset()..end.offset(),
        )))
    }

    /// The next position at or after `at` where a match may begin, and the
    /// kind of the byte before it.
    fn next_beginning(&self, hay: &[u8], mut at: usize) -> Option<(usize, usize)> {
        let mut kind = at
            .checked_sub(1)
            .and_then(|i| hay.get(i))
            .map_or(TEXT, |&b| self.kind_of(b));
        loop {
            // A run of bytes that begin nothing and keep the kind (most of
            // a word, after a word byte): one load and test per byte.
            if let Some(stays) = self.stays.get(kind) {
                while hay
                    .get(at)
                    .is_some_and(|&b| stays.get(usize::from(b)).is_some_and(|&s| s))
                {
                    at += 1;
                }
            }
            let first = *hay.get(at)?;
            if self.may_begin(kind, first) {
                let Some(&second) = hay.get(at + 1).filter(|_| kind != TEXT) else {
                    return Some((at, kind));
                };
                match self.after_pair(kind, first, second) {
                    PAIR_BEGINS_NONE => {
                        kind = self.kind_of(second);
                        at += 2;
                        continue;
                    }
                    PAIR_UNTRACKED => return Some((at, kind)),
                    row => match hay.get(at + 2) {
                        Some(&third) if !self.third_continues(row, third) => {
                            kind = self.kind_of(third);
                            at += 3;
                            continue;
                        }
                        _ => return Some((at, kind)),
                    },
                }
            }
            kind = self.kind_of(first);
            at += 1;
        }
    }

    fn after_pair(&self, kind: usize, first: u8, second: u8) -> u8 {
        let class = |b: u8| {
            self.classes
                .get(usize::from(b))
                .map_or(0, |&c| usize::from(c))
        };
        let index = (kind * self.class_count + class(first)) * self.class_count + class(second);
        self.after_pair
            .get(index)
            .copied()
            .unwrap_or(PAIR_UNTRACKED)
    }

    /// Whether, in the state after a pair (`row`, from [`Self::after_pair`]),
    /// a match may still be in progress after `third`.
    fn third_continues(&self, row: u8, third: u8) -> bool {
        let bits = usize::from(row)
            .checked_sub(1)
            .and_then(|i| self.thirds.get(i))
            .and_then(|bits| bits.get(usize::from(third >> 6)));
        bits.is_none_or(|&word| word >> (third & 63) & 1 != 0)
    }

    fn kind_of(&self, b: u8) -> usize {
        self.kind
            .get(usize::from(b))
            .map_or(TEXT, |&k| usize::from(k))
    }

    fn may_begin(&self, kind: usize, b: u8) -> bool {
        self.begins
            .get(kind)
            .and_then(|row| row.get(usize::from(b)))
            .is_none_or(|&yes| yes)
    }

    /// The DFA's start state of each kind in `cache`, and the cache's clear
    /// count they are valid for: a clear (which any new state may cause,
    /// including a start state) invalidates every state id taken before it.
    fn start_states(&self, cache: &mut Cache) -> Result<([LazyStateID; KINDS], usize), GaveUp> {
        let config = |b: Option<u8>| start::Config::new().anchored(Anchored::No).look_behind(b);
        // A clear empties the cache, so a second attempt fits.
        for _ in 0..3 {
            let clears = cache.clear_count();
            let mut states = [LazyStateID::default(); KINDS];
            for (k, slot) in states.iter_mut().enumerate() {
                let look = match self.kind_bytes.get(k) {
                    Some(&b) => Some(b),
                    None if k == TEXT => None,
                    None => continue,
                };
                *slot = self
                    .forward
                    .start_state(cache, &config(look))
                    .map_err(|_| GaveUp)?;
            }
            if cache.clear_count() == clears {
                return Ok((states, clears));
            }
        }
        Err(GaveUp)
    }

    /// The end (and pattern) of the leftmost-first match, as the lazy DFA's
    /// own forward search finds it, skipping from start states.
    fn find_end(
        &self,
        cache: &mut Cache,
        hay: &[u8],
        from: usize,
    ) -> Result<Option<HalfMatch>, GaveUp> {
        let dfa = &self.forward;
        let Some((mut at, kind)) = self.next_beginning(hay, from) else {
            return Ok(None);
        };
        let (mut starts, mut clears) = self.start_states(cache)?;
        let mut sid = *starts.get(kind).ok_or(GaveUp)?;
        let mut found = None;
        while let Some(&b) = hay.get(at) {
            sid = if sid.is_tagged() {
                dfa.next_state(cache, sid, b).map_err(|_| GaveUp)?
            } else {
                match dfa.next_state_untagged(cache, sid, b) {
                    next if next.is_unknown() => {
                        dfa.next_state(cache, sid, b).map_err(|_| GaveUp)?
                    }
                    next => next,
                }
            };
            if sid.is_tagged() {
                if sid.is_start() {
                    // Nothing in progress: skip to where a match may begin.
                    // (With a match found, leftmost-first has dropped the
                    // unanchored start, so no start state comes up.) A start
                    // state that a cleared cache re-created through a
                    // transition is not tagged: the search is then only
                    // slower, walking every byte, never different.
                    if found.is_none() {
                        let Some((next, kind)) = self.next_beginning(hay, at + 1) else {
                            return Ok(None);
                        };
                        if cache.clear_count() != clears {
                            (starts, clears) = self.start_states(cache)?;
                        }
                        at = next;
                        sid = *starts.get(kind).ok_or(GaveUp)?;
                        continue;
                    }
                } else if sid.is_match() {
                    // Matches are reported one byte late: the match ends at `at`.
                    found = Some(HalfMatch::new(dfa.match_pattern(cache, sid, 0), at));
                } else if sid.is_dead() {
                    return Ok(found);
                } else if sid.is_quit() {
                    return Err(GaveUp);
                }
            }
            at += 1;
        }
        let eoi = dfa.next_eoi_state(cache, sid).map_err(|_| GaveUp)?;
        if eoi.is_match() {
            found = Some(HalfMatch::new(dfa.match_pattern(cache, eoi, 0), hay.len()));
        }
        Ok(found)
    }
}

/// The skipping search could not run; another engine must search instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp;

/// The Thompson NFA of `hirs` (a pattern each), without captures.
pub(crate) fn compile(hirs: &[Hir], nfa_size_limit: usize, reverse: bool) -> Option<thompson::NFA> {
    thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .which_captures(thompson::WhichCaptures::None)
                .reverse(reverse)
                .nfa_size_limit(Some(nfa_size_limit)),
        )
        .build_many_from_hir(hirs)
        .ok()
}

/// The forward lazy DFA: leftmost-first, start states tagged (the search
/// skips from them).
fn forward_dfa(nfa: thompson::NFA, capacity: usize) -> Option<DFA> {
    DFA::builder()
        .configure(
            DFA::config()
                .match_kind(MatchKind::LeftmostFirst)
                .specialize_start_states(true)
                .cache_capacity(capacity),
        )
        .build_from_nfa(nfa)
        .ok()
}

/// Why there is no skip table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoTable {
    /// Too many bytes may begin a match for skipping to pay.
    WouldNotPay,
    /// More look-behind kinds than the table has, a cache clear while
    /// reading (its ids would no longer compare), or a DFA error.
    Unreadable,
}

/// In `after_pair`: no match may begin at either byte of the pair.
const PAIR_BEGINS_NONE: u8 = 0;
/// In `after_pair`: a match may begin, and the state after the pair has no
/// row in `thirds` (more distinct states than rows).
const PAIR_UNTRACKED: u8 = u8::MAX;

/// The skip tables, read off the forward DFA.
struct Table {
    kind: [u8; 256],
    kind_bytes: Vec<u8>,
    begins: [[bool; 256]; KINDS],
    classes: [u8; 256],
    class_count: usize,
    after_pair: Vec<u8>,
    thirds: Vec<[u64; 4]>,
}

impl Table {
    /// The kind of each look-behind byte, a byte of each kind, which bytes
    /// and pairs may begin a match after each kind, and which third bytes
    /// keep a match in progress after a pair.
    fn read(dfa: &DFA) -> Result<Self, NoTable> {
        Self::try_read(dfa).unwrap_or(Err(NoTable::Unreadable))
    }

    /// [`Table::read`], with `None` for [`NoTable::Unreadable`].
    fn try_read(dfa: &DFA) -> Option<Result<Self, NoTable>> {
        let mut cache = dfa.create_cache();
        let config = |b: Option<u8>| start::Config::new().anchored(Anchored::No).look_behind(b);
        let mut states: Vec<LazyStateID> = Vec::new();
        let mut kind_bytes = Vec::new();
        let mut kind = [0u8; 256];
        for b in 0..=255u8 {
            let state = dfa.start_state(&mut cache, &config(Some(b))).ok()?;
            let k = match states.iter().position(|&s| s == state) {
                Some(k) => k,
                None => {
                    states.push(state);
                    kind_bytes.push(b);
                    states.len() - 1
                }
            };
            if k >= TEXT {
                return None;
            }
            *kind.get_mut(usize::from(b))? = u8::try_from(k).ok()?;
        }
        let text = dfa.start_state(&mut cache, &config(None)).ok()?;
        if cache.clear_count() != 0 {
            return None;
        }
        // After `b`, nothing in progress: the start state of b's kind.
        let restart = |b: u8| {
            kind.get(usize::from(b))
                .and_then(|&k| states.get(usize::from(k)))
                .copied()
        };
        let rows: Vec<(usize, LazyStateID)> = states
            .iter()
            .copied()
            .enumerate()
            .chain([(TEXT, text)])
            .collect();
        let mut begins = [[true; 256]; KINDS];
        let mut after_first = Vec::with_capacity(rows.len() * 256);
        for &(k, state) in &rows {
            for first in 0..=255u8 {
                let next = dfa.next_state(&mut cache, state, first).ok()?;
                if cache.clear_count() != 0 {
                    return None;
                }
                *begins.get_mut(k)?.get_mut(usize::from(first))? = next != restart(first)?;
                if k != TEXT {
                    after_first.push((k, first, next));
                }
            }
        }
        let most_beginning = rows
            .iter()
            .filter_map(|&(k, _)| begins.get(k))
            .map(|row| row.iter().filter(|&&b| b).count())
            .max()
            .unwrap_or(0);
        if most_beginning > MAX_BEGINNING_BYTES {
            return Some(Err(NoTable::WouldNotPay));
        }
        let byte_classes = dfa.byte_classes();
        let mut classes = [0u8; 256];
        for (b, class) in (0..=255u8).zip(classes.iter_mut()) {
            *class = byte_classes.get(b);
        }
        let class_count = byte_classes.alphabet_len();
        // A pair's entry stands for every byte of its classes, so a class
        // must not mix look-behind kinds (the restart state differs by kind).
        let mut class_kind = vec![None; class_count];
        for (&class, &k) in classes.iter().zip(kind.iter()) {
            match class_kind.get_mut(usize::from(class))? {
                slot @ None => *slot = Some(k),
                Some(seen) if *seen == k => {}
                Some(_) => return None,
            }
        }
        // Bytes of a class lead to the same states: one byte per class pair.
        let mut after_pair = vec![PAIR_UNTRACKED; states.len() * class_count * class_count];
        let mut after_pair_states: Vec<LazyStateID> = Vec::new();
        for (k, first, next) in after_first {
            if !*begins.get(k)?.get(usize::from(first))? {
                continue;
            }
            for second in 0..=255u8 {
                let class = |b: u8| classes.get(usize::from(b)).map(|&c| usize::from(c));
                let index = (k * class_count + class(first)?) * class_count + class(second)?;
                let slot = after_pair.get_mut(index)?;
                if *slot != PAIR_UNTRACKED {
                    continue;
                }
                let after = dfa.next_state(&mut cache, next, second).ok()?;
                if cache.clear_count() != 0 {
                    return None;
                }
                *slot = if after == restart(second)? {
                    PAIR_BEGINS_NONE
                } else {
                    let row = match after_pair_states.iter().position(|&s| s == after) {
                        Some(row) => row,
                        None => {
                            after_pair_states.push(after);
                            after_pair_states.len() - 1
                        }
                    };
                    u8::try_from(row + 1)
                        .ok()
                        .filter(|&r| r != PAIR_UNTRACKED)
                        .unwrap_or(PAIR_UNTRACKED)
                };
            }
        }
        let mut thirds = Vec::new();
        for &state in after_pair_states
            .iter()
            .take(usize::from(PAIR_UNTRACKED - 1))
        {
            let mut bits = [0u64; 4];
            for third in 0..=255u8 {
                let after = dfa.next_state(&mut cache, state, third).ok()?;
                if cache.clear_count() != 0 {
                    return None;
                }
                if after != restart(third)? {
                    *bits.get_mut(usize::from(third >> 6))? |= 1 << (third & 63);
                }
            }
            thirds.push(bits);
        }
        Some(Ok(Self {
            kind,
            kind_bytes,
            begins,
            classes,
            class_count,
            after_pair,
            thirds,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::BUILTINS;
    use crate::rewrite::open_long_ranges;
    use regex_automata::meta::Regex;

    fn hirs(patterns: &[&str]) -> Vec<Hir> {
        patterns
            .iter()
            .map(|p| {
                let hir = regex_syntax::ParserBuilder::new()
                    .unicode(false)
                    .utf8(false)
                    .build()
                    .parse(p)
                    .unwrap();
                open_long_ranges(&hir)
            })
            .collect()
    }

    /// The scanner's combined lane: the default detectors but e-mail.
    fn default_lane() -> Vec<Hir> {
        let patterns: Vec<&str> = BUILTINS
            .iter()
            .filter(|b| !b.opt_in && b.name != "email")
            .map(|b| b.pattern)
            .collect();
        hirs(&patterns)
    }

    /// Every match from every start position, as (pattern, start, end).
    fn all_matches(
        mut find: impl FnMut(usize) -> Option<Match>,
        len: usize,
    ) -> Vec<(usize, usize, usize)> {
        (0..=len)
            .filter_map(|from| find(from).map(|m| (m.pattern().as_usize(), m.start(), m.end())))
            .collect()
    }

    fn assert_same_as_meta(hirs: &[Hir], hay: &[u8]) {
        let skipping = SkippingRegex::build(hirs, 8 << 20).unwrap();
        let meta = Regex::builder().build_many_from_hir(hirs).unwrap();
        let expected = all_matches(
            |from| meta.search(&Input::new(hay).range(from..)),
            hay.len(),
        );
        let actual = all_matches(|from| skipping.find(hay, from).unwrap(), hay.len());
        assert_eq!(actual, expected, "{}", String::from_utf8_lossy(hay));
    }

    /// Text made of the detectors' values, near misses and filler, cut and
    /// glued at pseudo-random places so values meet words, digits and each
    /// other at every kind of boundary.
    fn mixed_text(seed: u64, len: usize) -> Vec<u8> {
        mixed_text_of(PIECES, seed, len)
    }

    const PIECES: &[&str] = &[
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "378282246310005",
        "123-45-6789",
        "078-05-1120",
        "+1-415-555-2671",
        "(415) 555-2671",
        "415.555.2671",
        "020 7946 0958",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-1234567890-abcdefghij",
        "sk_live_abcdefghij0123456789",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-part_1",
        "Bearer abcdefghijklmnop.qrstu",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----",
        "2024-10-17T12:56:36.412Z",
        "fd1af7d5-d9f1-49ee-b8a9-974abc78f649",
        "v1.2.3",
        "ord_0326394389",
        "SKU-258249",
        "secret",
        "bearer",
        "AKIA",
        "ghp_",
        "-----",
        "+",
        "(",
        "status",
        "pending",
        "12345",
        " ",
        "\"",
        ":",
        ",",
        "\n",
        "x",
        "_",
        "-",
        ".",
    ];

    fn mixed_text_of(pieces: &[&str], seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        let mut out = Vec::with_capacity(len + 128);
        while out.len() < len {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let piece = pieces[(x >> 33) as usize % pieces.len()].as_bytes();
            // Sometimes only a part of a piece.
            let cut = if (x >> 20) % 4 == 0 {
                (x >> 40) as usize % (piece.len() + 1)
            } else {
                piece.len()
            };
            out.extend_from_slice(&piece[..cut]);
        }
        out
    }

    #[test]
    fn finds_what_the_plain_search_finds() {
        let lane = default_lane();
        for seed in 0..40 {
            assert_same_as_meta(&lane, &mixed_text(seed, 600));
        }
        for hay in [
            &b""[..],
            b"4111 1111 1111 1111",
            b"x4111 1111 1111 1111",
            b"card:4111111111111111,",
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
            b"call +44 20 7946 0958 now",
        ] {
            assert_same_as_meta(&lane, hay);
        }
    }

    #[test]
    fn honours_line_anchors_and_word_boundaries_of_custom_patterns() {
        let lane = hirs(&[
            r"(?m)^ID-[0-9]{4}$",
            r"\bZQ[0-9]{2}\b",
            r"\B#[0-9]{3}",
            r"(?R)^R[0-9]$",
            r"\AA[0-9]",
        ]);
        let pieces = [
            "ID-1234", "ZQ12", "#456", "R7", "A1", "\n", "\r\n", "\r", " ", "x", "9", "-",
        ];
        for seed in 0..40 {
            assert_same_as_meta(&lane, &mixed_text_of(&pieces, seed, 200));
        }
        assert_same_as_meta(
            &lane,
            b"A1 ID-1234\nxID-1234\n ZQ12 aZQ12 a#123 #456\r\nR7\r\n",
        );
    }

    /// With a cache so small that the lazy DFA clears it again and again,
    /// state ids go stale: the search must notice, and find the same.
    #[test]
    fn finds_the_same_when_the_cache_is_cleared() {
        let lane = default_lane();
        let mut capacity = 1024;
        let skipping = loop {
            if let Some(s) = SkippingRegex::build_with_cache(&lane, 8 << 20, capacity) {
                break s;
            }
            capacity *= 2;
            assert!(capacity < CACHE_CAPACITY, "no small cache fits");
        };
        let meta = Regex::builder().build_many_from_hir(&lane).unwrap();
        let mut caches = Caches {
            forward: skipping.forward.create_cache(),
            reverse: skipping.reverse.create_cache(),
        };
        for seed in 0..10 {
            let hay = mixed_text(seed, 2000);
            let expected = all_matches(
                |from| meta.search(&Input::new(&hay).range(from..)),
                hay.len(),
            );
            let actual = all_matches(
                |from| skipping.find_with(&mut caches, &hay, from).unwrap(),
                hay.len(),
            );
            assert_eq!(actual, expected);
        }
        assert!(
            caches.forward.clear_count() > 10,
            "{}",
            caches.forward.clear_count()
        );
    }

    #[test]
    fn is_not_used_where_most_bytes_may_begin_a_match() {
        // E-mail: any word byte may begin the local part.
        let email = BUILTINS.iter().find(|b| b.name == "email").unwrap();
        let nfa = compile(&hirs(&[email.pattern]), 8 << 20, false).unwrap();
        let dfa = forward_dfa(nfa, TABLE_CACHE_CAPACITY).unwrap();
        assert_eq!(Table::read(&dfa).err(), Some(NoTable::WouldNotPay));
        assert!(SkippingRegex::build(&hirs(&[email.pattern]), 8 << 20).is_none());
        let lane = SkippingRegex::build(&default_lane(), 8 << 20).unwrap();
        // After a word byte only a PEM block's `-` may begin a match.
        let after_word = lane.kind_of(b'a');
        let row = lane.begins.get(after_word).unwrap();
        let beginning: Vec<u8> = (0..=255u8).filter(|&b| row[usize::from(b)]).collect();
        assert_eq!(beginning, b"-");
    }

    #[test]
    fn skips_by_pairs_and_thirds() {
        let lane = SkippingRegex::build(&default_lane(), 8 << 20).unwrap();
        let after_quote = lane.kind_of(b'"');
        // `st` begins nothing that `s` may (an `sk_live_` key).
        assert_ne!(lane.after_pair(after_quote, b's', b'k'), PAIR_BEGINS_NONE);
        assert_eq!(lane.after_pair(after_quote, b's', b't'), PAIR_BEGINS_NONE);
        // A time's `02:` begins nothing that `02` may (a card, a phone number).
        let row = lane.after_pair(after_quote, b'0', b'2');
        assert!(row != PAIR_BEGINS_NONE && row != PAIR_UNTRACKED);
        assert!(!lane.third_continues(row, b':'));
        assert!(lane.third_continues(row, b'3'));
        // Every state after a pair of the built-ins has its row.
        assert!(lane.thirds.len() < usize::from(PAIR_UNTRACKED - 1));
        assert_eq!(
            lane.next_beginning(b"\"02:15\" \"4111", 0),
            Some((9, after_quote))
        );
    }
}
