//! One combined automaton over every detector's pattern: a single pass
//! finds the leftmost match of any detector, the match's pattern id names the
//! detector, and its validator decides whether it counts.

use crate::detectors::{Builtin, Validator};
use crate::redact::Action;
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::Input;

/// Detector ids are bit positions in a [`DetectorSet`].
pub const MAX_DETECTORS: usize = 64;

/// Longest match a pattern may have; keeps the streaming hold-back bounded.
pub const MAX_PATTERN_LEN: usize = 16 * 1024;

/// Upper bound on the compiled automaton, so a config cannot blow up memory.
const NFA_SIZE_LIMIT: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detector {
    pub name: String,
    pub validator: Validator,
    pub action: Action,
}

impl Detector {
    pub fn builtin(b: &Builtin, action: Action) -> Self {
        Self {
            name: b.name.to_string(),
            validator: b.validator,
            action,
        }
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
    pub detector: usize,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug)]
pub struct Scanner {
    regex: Regex,
    detectors: Vec<Detector>,
    /// Bytes the stream holds back between chunks: the longest possible
    /// match plus one byte of look-ahead (`\b` after the match).
    window: usize,
}

impl Scanner {
    /// Compiles `patterns` (one per detector, same order). An error carries
    /// the index of the offending pattern.
    pub fn new(patterns: &[String], detectors: Vec<Detector>) -> Result<Self, (usize, String)> {
        let mut longest = 0usize;
        let mut parser = regex_syntax::ParserBuilder::new();
        parser.unicode(false).utf8(false);
        for (i, p) in patterns.iter().enumerate() {
            let hir = parser
                .build()
                .parse(p)
                .map_err(|e| (i, format!("invalid regex: {}", one_line(&e.to_string()))))?;
            let props = hir.properties();
            match props.maximum_len() {
                None => {
                    return Err((
                        i,
                        "the pattern has no maximum length; bound every repetition (e.g. {1,64} instead of + or *)".to_string(),
                    ))
                }
                Some(n) if n > MAX_PATTERN_LEN => {
                    return Err((
                        i,
                        format!("the pattern can match {n} bytes; at most {MAX_PATTERN_LEN} are allowed"),
                    ))
                }
                Some(n) => longest = longest.max(n),
            }
            if props.minimum_len().unwrap_or(0) == 0 {
                return Err((i, "the pattern can match the empty string".to_string()));
            }
        }
        let regex = Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(
                Regex::config()
                    .nfa_size_limit(Some(NFA_SIZE_LIMIT))
                    .utf8_empty(false),
            )
            .build_many(patterns)
            .map_err(|e| {
                let index = e.pattern().map(|p| p.as_usize()).unwrap_or(0);
                (
                    index,
                    format!("invalid regex: {}", one_line(&e.to_string())),
                )
            })?;
        Ok(Self {
            regex,
            detectors,
            window: longest.saturating_add(1),
        })
    }

    pub fn window(&self) -> usize {
        self.window
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

    /// The first accepted match of an `active` detector starting in
    /// `from..start_limit` of `hay`. Bytes before `from` are look-behind
    /// context only. A match that is rejected (inactive detector or failed
    /// validator) does not hide a match starting inside it: the search
    /// resumes one byte after its start.
    pub fn find(
        &self,
        hay: &[u8],
        from: usize,
        start_limit: usize,
        active: DetectorSet,
    ) -> Option<Found> {
        let mut pos = from;
        while pos < start_limit && pos <= hay.len() {
            let m = self.regex.search(&Input::new(hay).range(pos..))?;
            if m.start() >= start_limit {
                return None;
            }
            let id = m.pattern().as_usize();
            let accepted = active.contains(id)
                && self.detectors.get(id).is_some_and(|d| {
                    hay.get(m.start()..m.end())
                        .is_some_and(|v| d.validator.accepts(v))
                });
            if accepted {
                return Some(Found {
                    detector: id,
                    start: m.start(),
                    end: m.end(),
                });
            }
            pos = m.start().saturating_add(1);
        }
        None
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
