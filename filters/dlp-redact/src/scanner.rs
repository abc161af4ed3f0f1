//! One combined automaton over every detector's pattern: a single pass
//! finds the leftmost match of any detector, the match's pattern id names the
//! detector, and its validator decides whether it counts.

use crate::detectors::{Builtin, Validator};
use crate::pivot::PivotSearch;
use crate::redact::Action;
use crate::rewrite::{open_long_ranges, open_ranges, prefixes};
use crate::skipping::SkippingRegex;
use crate::tail::Tail;
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::meta::Regex;
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::{Anchored, Input, MatchKind};
use regex_syntax::hir::{Hir, HirKind};

/// Detector ids are bit positions in a [`DetectorSet`].
pub const MAX_DETECTORS: usize = 64;

/// Longest match a pattern may have; keeps the streaming hold-back bounded.
pub const MAX_PATTERN_LEN: usize = 16 * 1024;

/// Bytes after a match that decide whether it counts.
const LOOK_AHEAD: usize = 2;

/// Upper bound on the compiled automaton, so a config cannot blow up memory.
const NFA_SIZE_LIMIT: usize = 8 << 20;

/// Upper bound on one long value's automaton (see [`Scanner::hold`]).
const VALUE_DFA_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detector {
    pub name: String,
    pub validator: Validator,
    pub action: Action,
    /// Built-in detectors may keep a leading part of their match (the key
    /// name before an AWS secret, `Bearer ` before a token).
    pub builtin: bool,
}

impl Detector {
    pub fn builtin(b: &Builtin, action: Action) -> Self {
        Self {
            name: b.name.to_string(),
            validator: b.validator,
            action,
            builtin: true,
        }
    }

    /// Writes the replacement of `matched` to `out`: the part before the
    /// sensitive value as it is, then the action's output for the value.
    pub fn redact_into(&self, matched: &[u8], hash_key: Option<&[u8]>, out: &mut Vec<u8>) {
        let (kept, value) = self.split_value(matched);
        out.extend_from_slice(kept);
        self.action.apply(&self.name, value, hash_key, out);
    }

    /// Like [`Detector::redact_into`], for the first part of a value whose
    /// end has not arrived: its last characters are not known, so a mask
    /// keeps none, and a hash covers only this part.
    pub fn redact_open_into(&self, matched: &[u8], hash_key: Option<&[u8]>, out: &mut Vec<u8>) {
        let (kept, value) = self.split_value(matched);
        out.extend_from_slice(kept);
        match self.action {
            Action::Mask { mask_char, .. } => Action::Mask {
                keep_last: 0,
                mask_char,
            }
            .apply(&self.name, value, hash_key, out),
            _ => self.action.apply(&self.name, value, hash_key, out),
        }
    }

    /// The part of a match kept as it is (`Bearer `), and the value.
    fn split_value<'m>(&self, matched: &'m [u8]) -> (&'m [u8], &'m [u8]) {
        let value_start = if self.builtin {
            crate::detectors::value_start(&self.name, matched)
        } else {
            0
        };
        matched.split_at(value_start.min(matched.len()))
    }
}

/// A set of detector ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectorSet(u64);

impl DetectorSet {
    pub const EMPTY: Self = Self(0);

    pub fn insert(&mut self, id: usize) {
        if let Some(bit) = 1u64.checked_shl(id as u32) {
            self.0 |= bit;
        }
    }

    pub fn contains(self, id: usize) -> bool {
        1u64.checked_shl(id as u32)
            .is_some_and(|bit| self.0 & bit != 0)
    }

    pub fn ids(self) -> impl Iterator<Item = usize> {
        (0..MAX_DETECTORS).filter(move |&i| self.contains(i))
    }
}

/// An accepted match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Index into [`Catalog::detectors`].
    pub detector: usize,
    pub start: usize,
    pub end: usize,
}

/// Every configured detector (built-in, on or off, then custom) with its
/// pattern. Detector ids index this list; metrics and reports use them.
#[derive(Debug, Default)]
pub struct Catalog {
    detectors: Vec<Detector>,
    patterns: Vec<String>,
}

impl Catalog {
    /// Adds a detector. The pattern is checked here: it must parse, have a
    /// maximum length of at most [`MAX_PATTERN_LEN`], and not match the empty string.
    pub fn add(&mut self, detector: Detector, pattern: String) -> Result<usize, String> {
        longest_match(&pattern)?;
        if self.detectors.len() >= MAX_DETECTORS {
            return Err(format!("at most {MAX_DETECTORS} detectors in all"));
        }
        self.detectors.push(detector);
        self.patterns.push(pattern);
        Ok(self.detectors.len() - 1)
    }

    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    pub fn detector(&self, id: usize) -> Option<&Detector> {
        self.detectors.get(id)
    }

    pub fn detector_id(&self, name: &str) -> Option<usize> {
        self.detectors.iter().position(|d| d.name == name)
    }

    fn pattern(&self, id: usize) -> &str {
        self.patterns
            .get(id)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// `pattern` parsed as the automata see it: bytes, ASCII classes.
pub(crate) fn parse(pattern: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| format!("invalid regex: {}", one_line(&e.to_string())))
}

/// The longest match `pattern` can have.
fn longest_match(pattern: &str) -> Result<usize, String> {
    bounded_length(&parse(pattern)?)
}

/// The longest match of a parsed pattern, which must be bounded and must not
/// match the empty string.
fn bounded_length(hir: &Hir) -> Result<usize, String> {
    let props = hir.properties();
    if props.minimum_len().unwrap_or(0) == 0 {
        return Err("the pattern can match the empty string".to_string());
    }
    match props.maximum_len() {
        None => Err(
            "the pattern has no maximum length; bound every repetition (e.g. {1,64} instead of + or *)"
                .to_string(),
        ),
        Some(n) if n > MAX_PATTERN_LEN => Err(format!(
            "the pattern can match {n} bytes; at most {MAX_PATTERN_LEN} are allowed"
        )),
        Some(n) => Ok(n),
    }
}

/// Built-in detectors scanned by an automaton of their own. Combined with
/// the others, the e-mail local part (`{1,64}` before `@`) makes the lazy DFA
/// track subsets of start positions on long word runs (base64 values) and
/// thrash its cache: 7 MB/s for 1 MiB of base64. Alone, the engine finds it
/// through its `@` literal at GB/s.
const SCANNED_ALONE: &[&str] = &["email"];

/// A detector id and its parsed pattern.
type Parsed = (usize, Hir);

/// One automaton over some of the active detectors.
#[derive(Debug)]
struct Lane {
    regex: Regex,
    /// The same patterns, searched skipping the bytes where none can begin
    /// (when most bytes cannot): the unanchored searches use it.
    skipping: Option<SkippingRegex>,
    /// For a lane of one pattern shaped `run` + pivot byte + rest (an e-mail
    /// address): the search from each pivot.
    pivot: Option<PivotSearch>,
    /// Pattern index to detector id.
    ids: Vec<usize>,
}

/// The automata over a set of active detectors. Only active detectors are
/// compiled, so an inactive one can neither hide an active one's match nor
/// widen the streaming window.
#[derive(Debug)]
pub struct Scanner {
    lanes: Vec<Lane>,
    /// The most bytes the stream may hold back between chunks: the longest
    /// possible match plus [`LOOK_AHEAD`].
    window: usize,
    /// Finds how much of that a given chunk's end actually needs held.
    tail: Tail,
    /// The tail's pattern index to detector id.
    tail_ids: Vec<usize>,
    /// Per tail pattern: for a built-in detector whose long ranges are
    /// open-ended in the scan (JWT, bearer token, PEM block, Slack and Stripe
    /// tokens), the automata that follow a value too long for the window
    /// through the chunks that carry it.
    values: Vec<Option<ValueAutomata>>,
}

/// Follows one detector's values across chunks.
#[derive(Debug)]
struct ValueAutomata {
    /// The prefixes of a match: alive while the bytes may still be one.
    prefixes: dense::DFA<Vec<u32>>,
    /// For a pattern that ends in fixed text (a PEM block's END line), the
    /// whole match: the value ends with its first complete match, as the
    /// scan's would when nothing like the END line follows. Values of the
    /// other patterns end where their last run of characters does.
    whole: Option<dense::DFA<Vec<u32>>>,
}

/// What the end of the bytes held so far needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Bytes from this offset on may still be needed; those before are final.
    From(usize),
    /// A value that began at `start` is still going on at the end and is
    /// longer than the window: it cannot be held whole, so it is redacted
    /// as it passes, and [`Scanner::continue_value`] follows it into the
    /// next chunks.
    Open { start: usize, value: OpenValue },
}

/// A value in progress across chunks: its detector and where its automata are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenValue {
    pub detector: usize,
    pattern: usize,
    prefix_state: StateID,
    whole_state: Option<StateID>,
}

/// How the next byte of a value goes.
enum Step {
    /// The byte is part of the value, which may go on.
    Continues,
    /// The byte is the value's last.
    Ends,
    /// The value ended before the byte.
    Ended,
}

impl Scanner {
    /// Compiles the detectors of `set`. An error carries the detector id.
    pub fn build(catalog: &Catalog, set: DetectorSet) -> Result<Self, (usize, String)> {
        let ids: Vec<usize> = set
            .ids()
            .filter(|&id| id < catalog.patterns.len())
            .collect();
        let mut window = 0usize;
        let mut parsed: Vec<Parsed> = Vec::with_capacity(ids.len());
        for &id in &ids {
            let hir = parse(catalog.pattern(id)).map_err(|e| (id, e))?;
            window = window.max(bounded_length(&hir).map_err(|e| (id, e))?);
            parsed.push((id, hir));
        }
        // Without detectors nothing can match, and nothing is held.
        let window = if ids.is_empty() {
            0
        } else {
            window.saturating_add(LOOK_AHEAD)
        };
        let hirs: Vec<&Hir> = parsed.iter().map(|(_, hir)| hir).collect();
        let tail = Tail::build(&hirs, LOOK_AHEAD as u32, NFA_SIZE_LIMIT).map_err(|e| {
            (
                ids.first().copied().unwrap_or(0),
                format!("the detectors' prefix automaton: {}", one_line(&e)),
            )
        })?;
        let mut values = Vec::with_capacity(parsed.len());
        for (id, hir) in &parsed {
            let builtin = catalog.detector(*id).is_some_and(|d| d.builtin);
            let open = open_long_ranges(hir);
            values.push(if builtin && open != *hir {
                Some(
                    ValueAutomata::build(&open).map_err(|e| {
                        (*id, format!("the long-value automaton: {}", one_line(&e)))
                    })?,
                )
            } else {
                None
            });
        }
        let alone = |id: usize| {
            catalog
                .detector(id)
                .is_some_and(|d| d.builtin && SCANNED_ALONE.contains(&d.name.as_str()))
        };
        let (separate, combined): (Vec<&Parsed>, Vec<&Parsed>) =
            parsed.iter().partition(|(id, _)| alone(*id));
        let mut lanes = Vec::with_capacity(separate.len() + 1);
        if !combined.is_empty() {
            lanes.push(Lane::build(catalog, &combined, true)?);
        }
        for detector in separate {
            // Found through a literal (the e-mail's `@`), faster than by skipping.
            lanes.push(Lane::build(catalog, &[detector], false)?);
        }
        Ok(Self {
            lanes,
            window,
            tail,
            tail_ids: ids,
            values,
        })
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// What the end of `hay[from..]` needs when more bytes follow: usually
    /// the first byte a match may still need (every match starting before
    /// it is complete and final), at most [`Scanner::window`] bytes from the
    /// end. A built-in value longer than that (a JWT or bearer token over
    /// the usual bounds, whose long ranges are open-ended in the scan) that
    /// is still going on at the end is [`Hold::Open`]: holding more would
    /// make the stream's memory unbounded, releasing it would let the value
    /// through.
    pub fn hold(&self, hay: &[u8], from: usize) -> Hold {
        let live = self.tail.live(hay, from);
        let bounded = hay.len().saturating_sub(self.window).max(from);
        if live.start >= bounded {
            return Hold::From(live.start);
        }
        let open = live.pattern.and_then(|pattern| {
            let automata = self.values.get(pattern)?.as_ref()?;
            let detector = *self.tail_ids.get(pattern)?;
            automata.open_at(detector, pattern, hay, live.start)
        });
        match open {
            Some(value) => Hold::Open {
                start: live.start,
                value,
            },
            None => Hold::From(bounded),
        }
    }

    /// Follows an open value into `bytes`, the next bytes of the stream:
    /// how many of them belong to it, and whether it may go on after them.
    pub fn continue_value(&self, value: &mut OpenValue, bytes: &[u8]) -> (usize, bool) {
        let Some(Some(automata)) = self.values.get(value.pattern) else {
            return (0, false);
        };
        for (i, &b) in bytes.iter().enumerate() {
            match automata.step(value, b) {
                Step::Continues => {}
                Step::Ends => return (i + 1, false),
                Step::Ended => return (i, false),
            }
        }
        (bytes.len(), true)
    }

    /// The accepted matches starting in `from..start_limit` of `hay`, in
    /// order, not overlapping. Bytes before `from` are look-behind context
    /// only. A match its validator rejects does not hide a match starting
    /// inside it: its shorter matches are tried, then its lane's search
    /// resumes one byte after its start.
    pub fn matches<'a>(
        &'a self,
        catalog: &'a Catalog,
        hay: &'a [u8],
        from: usize,
        start_limit: usize,
    ) -> Matches<'a> {
        Matches {
            scanner: self,
            catalog,
            hay,
            pos: from,
            start_limit,
            pending: vec![Pending::From(0); self.lanes.len()],
        }
    }
}

impl Lane {
    /// Compiles parsed patterns, each with its detector id.
    fn build(
        catalog: &Catalog,
        detectors: &[&Parsed],
        skipping: bool,
    ) -> Result<Self, (usize, String)> {
        let ids: Vec<usize> = detectors.iter().map(|(id, _)| *id).collect();
        let hirs: Vec<Hir> = detectors
            .iter()
            .map(|(id, hir)| {
                let builtin = catalog.detector(*id).is_some_and(|d| d.builtin);
                if builtin {
                    open_long_ranges(hir)
                } else {
                    hir.clone()
                }
            })
            .collect();
        let skipping = if skipping {
            SkippingRegex::build(&hirs, NFA_SIZE_LIMIT)
        } else {
            None
        };
        let pivot = match hirs.as_slice() {
            [hir] if skipping.is_none() => PivotSearch::build(hir, NFA_SIZE_LIMIT),
            _ => None,
        };
        let regex = Regex::builder()
            .configure(
                Regex::config()
                    .nfa_size_limit(Some(NFA_SIZE_LIMIT))
                    .utf8_empty(false),
            )
            .build_many_from_hir(&hirs)
            .map_err(|e| {
                let index = e.pattern().map(|p| p.as_usize()).unwrap_or(0);
                let id = ids.get(index).copied().unwrap_or(0);
                (id, format!("invalid regex: {}", one_line(&e.to_string())))
            })?;
        Ok(Self {
            regex,
            skipping,
            pivot,
            ids,
        })
    }

    /// The leftmost-first match in `hay[from..]`.
    /// An error of the faster searches (which they do not produce) falls
    /// back to the meta regex, so that it cannot pass for "nothing found".
    fn find(&self, hay: &[u8], from: usize) -> Option<regex_automata::Match> {
        if let Some(Ok(found)) = self.skipping.as_ref().map(|s| s.find(hay, from)) {
            return found;
        }
        if let Some(Ok(found)) = self.pivot.as_ref().map(|p| p.find(hay, from)) {
            return found;
        }
        self.regex.search(&Input::new(hay).range(from..))
    }
}

/// Shorter matches of a rejected pattern tried at the same start.
const MAX_SHORTER: usize = 4;

/// What a lane knows about its next match.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// Not searched yet: search from this position (or the iterator's, if
    /// that is further on).
    From(usize),
    /// The lane's leftmost match from where it last searched.
    At {
        detector: usize,
        pattern: usize,
        start: usize,
        end: usize,
    },
    /// No match up to the end of the haystack.
    Exhausted,
}

/// Iterator of [`Scanner::matches`]: each lane's next match is remembered,
/// so a lane is scanned again only where another lane's match overlapped it.
pub struct Matches<'a> {
    scanner: &'a Scanner,
    catalog: &'a Catalog,
    hay: &'a [u8],
    pos: usize,
    start_limit: usize,
    pending: Vec<Pending>,
}

impl Matches<'_> {
    fn accepts(&self, detector: usize, start: usize, end: usize) -> bool {
        self.catalog.detector(detector).is_some_and(|d| {
            crate::detectors::accepts_match(&d.name, d.validator, self.hay, start, end)
        })
    }

    /// Numbers whose groups a pattern may take too many of: cards (a CVV
    /// after the number) and phone numbers (a date after them). Other rules
    /// rely on seeing the whole run (`1.2.3.4.5` is not an IPv4 address).
    fn retries_shorter(&self, detector: usize) -> bool {
        self.catalog.detector(detector).is_some_and(|d| {
            matches!(d.validator, Validator::Card | Validator::Luhn)
                || (d.builtin && d.name == "phone")
        })
    }

    /// After `pattern`'s match `start..end` was rejected: its shorter
    /// matches at the same start, longest first (a card number followed by a
    /// CVV fails as 19 digits, and passes as the 16 before it).
    fn shorter(&self, lane: &Lane, pattern: usize, start: usize, end: usize) -> Option<usize> {
        let pattern_id = regex_automata::PatternID::new(pattern).ok()?;
        let mut bound = end;
        for _ in 0..MAX_SHORTER {
            let input = Input::new(self.hay)
                .range(start..bound.checked_sub(1)?)
                .anchored(Anchored::Pattern(pattern_id));
            let m = lane.regex.search(&input)?;
            if m.end() >= bound || m.end() <= start {
                return None;
            }
            let detector = lane.ids.get(pattern).copied()?;
            if self.accepts(detector, start, m.end()) {
                return Some(m.end());
            }
            bound = m.end();
        }
        None
    }
}

impl Iterator for Matches<'_> {
    type Item = Found;

    fn next(&mut self) -> Option<Found> {
        while self.pos < self.start_limit && self.pos <= self.hay.len() {
            // (start, detector, pattern, end, lane)
            let mut best: Option<(usize, usize, usize, usize, usize)> = None;
            for (lane_index, lane) in self.scanner.lanes.iter().enumerate() {
                let slot = self.pending.get_mut(lane_index)?;
                let from = match *slot {
                    Pending::From(from) => Some(from.max(self.pos)),
                    Pending::At { start, .. } if start < self.pos => Some(self.pos),
                    Pending::At { .. } | Pending::Exhausted => None,
                };
                if let Some(from) = from {
                    *slot = match self.hay.get(from..).and_then(|_| lane.find(self.hay, from)) {
                        Some(m) => Pending::At {
                            detector: lane.ids.get(m.pattern().as_usize()).copied()?,
                            pattern: m.pattern().as_usize(),
                            start: m.start(),
                            end: m.end(),
                        },
                        None => Pending::Exhausted,
                    };
                }
                if let Pending::At {
                    detector,
                    pattern,
                    start,
                    end,
                } = *slot
                {
                    if best.is_none_or(|(s, d, ..)| (start, detector) < (s, d)) {
                        best = Some((start, detector, pattern, end, lane_index));
                    }
                }
            }
            let (start, detector, pattern, end, lane_index) = best?;
            if start >= self.start_limit {
                return None;
            }
            let lane = self.scanner.lanes.get(lane_index)?;
            let accepted_end = if self.accepts(detector, start, end) {
                Some(end)
            } else if self.retries_shorter(detector) {
                self.shorter(lane, pattern, start, end)
            } else {
                None
            };
            if let Some(end) = accepted_end {
                self.pos = end.max(start.saturating_add(1));
                return Some(Found {
                    detector,
                    start,
                    end,
                });
            }
            // Only this lane moves on: another lane's match at the same
            // start (an e-mail address after a rejected digit run) still counts.
            if let Some(slot) = self.pending.get_mut(lane_index) {
                *slot = Pending::From(start.saturating_add(1));
            }
        }
        None
    }
}

impl ValueAutomata {
    /// For `pattern`, a built-in pattern with open-ended long ranges.
    fn build(pattern: &Hir) -> Result<Self, String> {
        let pattern = open_ranges(pattern);
        Ok(Self {
            prefixes: anchored_dfa(&prefixes(&pattern))?,
            whole: if ends_in_literal(&pattern) {
                Some(anchored_dfa(&pattern)?)
            } else {
                None
            },
        })
    }

    /// The value starting at `hay[start]`, if all of `hay[start..]` is its
    /// beginning (with `hay[..start]` as look-behind) and it may go on.
    fn open_at(
        &self,
        detector: usize,
        pattern: usize,
        hay: &[u8],
        start: usize,
    ) -> Option<OpenValue> {
        let input = Input::new(hay).range(start..).anchored(Anchored::Yes);
        let mut value = OpenValue {
            detector,
            pattern,
            prefix_state: self.prefixes.start_state_forward(&input).ok()?,
            whole_state: match &self.whole {
                Some(dfa) => Some(dfa.start_state_forward(&input).ok()?),
                None => None,
            },
        };
        for &b in hay.get(start..)? {
            match self.step(&mut value, b) {
                Step::Continues => {}
                Step::Ends | Step::Ended => return None,
            }
        }
        Some(value)
    }

    fn step(&self, value: &mut OpenValue, b: u8) -> Step {
        let next = self.prefixes.next_state(value.prefix_state, b);
        if !ends_a_match(&self.prefixes, next) {
            return Step::Ended;
        }
        value.prefix_state = next;
        if let (Some(dfa), Some(state)) = (&self.whole, value.whole_state) {
            let next = dfa.next_state(state, b);
            value.whole_state = Some(next);
            if ends_a_match(dfa, next) {
                return Step::Ends;
            }
        }
        Step::Continues
    }
}

/// An anchored DFA of `hir` that reports every match (so that a shorter
/// alternative never cuts a longer one off).
fn anchored_dfa(hir: &Hir) -> Result<dense::DFA<Vec<u32>>, String> {
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .which_captures(thompson::WhichCaptures::None)
                .nfa_size_limit(Some(NFA_SIZE_LIMIT)),
        )
        .build_from_hir(hir)
        .map_err(|e| e.to_string())?;
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(VALUE_DFA_SIZE_LIMIT))
                .determinize_size_limit(Some(VALUE_DFA_SIZE_LIMIT)),
        )
        .build_from_nfa(&nfa)
        .map_err(|e| e.to_string())
}

/// Whether a match ends with the last byte read into `state`. Matches are
/// reported one byte late, so the end-of-input transition tells.
fn ends_a_match(dfa: &dense::DFA<Vec<u32>>, state: StateID) -> bool {
    dfa.is_match_state(dfa.next_eoi_state(state))
}

/// Whether every match of `hir` ends with fixed text (assertions aside).
fn ends_in_literal(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Literal(_) => true,
        HirKind::Capture(cap) => ends_in_literal(&cap.sub),
        HirKind::Concat(subs) => subs
            .iter()
            .rev()
            .find(|sub| !matches!(sub.kind(), HirKind::Look(_)))
            .is_some_and(ends_in_literal),
        HirKind::Alternation(subs) => subs.iter().all(ends_in_literal),
        _ => false,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::BUILTINS;

    /// Every built-in detector with open-ended long ranges gets small
    /// automata for values too long to hold; the others need none. Only the
    /// PEM block ends in fixed text.
    #[test]
    fn long_value_automata_are_small() {
        let mut built = Vec::new();
        for b in BUILTINS {
            let hir = parse(b.pattern).unwrap();
            let open = open_long_ranges(&hir);
            if open != hir {
                let automata = ValueAutomata::build(&open).unwrap();
                let size = automata.prefixes.memory_usage()
                    + automata.whole.as_ref().map_or(0, |d| d.memory_usage());
                assert!(size < 48 * 1024, "{}: {size}", b.name);
                built.push((b.name, automata.whole.is_some()));
            }
        }
        assert_eq!(
            built,
            [
                ("pem_private_key", true),
                ("jwt", false),
                ("bearer_token", false),
                ("slack_token", false),
                ("stripe_key", false)
            ]
        );
    }

    /// The default set's faster searches are in place: the combined lane
    /// skips, and e-mail (its patterns as the lanes compile them, long
    /// ranges opened) is found from its `@`.
    #[test]
    fn default_lanes_use_the_faster_searches() {
        let env = |_: &str| None;
        let policy = crate::config::Config::load(Some(b"{}"), &env).unwrap();
        let scanner = policy.pass(&policy.defaults).unwrap().scanner;
        let lanes: Vec<(Vec<&str>, bool, bool)> = scanner
            .lanes
            .iter()
            .map(|lane| {
                let names = lane
                    .ids
                    .iter()
                    .map(|&id| policy.catalog.detector(id).unwrap().name.as_str())
                    .collect();
                (names, lane.skipping.is_some(), lane.pivot.is_some())
            })
            .collect();
        assert_eq!(lanes.len(), 2);
        assert!(lanes[0].1 && !lanes[0].2, "{lanes:?}");
        assert!(!lanes[0].0.contains(&"email"));
        assert_eq!(lanes[1], (vec!["email"], false, true));
    }
}
