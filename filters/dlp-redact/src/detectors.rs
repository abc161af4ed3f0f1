//! The built-in detector catalog and the validators that keep random numbers
//! from being redacted.
//!
//! Every pattern is written for `regex-automata` in byte mode without
//! Unicode (`(?-u)`), is bounded (its maximum match length is finite, so the
//! streaming scanner knows how much to hold back between chunks), and starts
//! and ends at a word boundary where a partial match would be wrong.

use serde::Deserialize;

/// A check run on a pattern's match before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// No check: every match counts.
    None,
    /// Luhn checksum over the digits (separators ignored).
    Luhn,
    /// Luhn, 13-19 digits, and a known issuer prefix.
    Card,
    /// US SSN: area not 000, 666 or 900-999; group not 00; serial not 0000.
    UsSsn,
    /// IBAN: a known country length and the ISO 13616 mod-97 check.
    Iban,
}

/// One built-in detector.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Config name (`detectors.<name>`), metric and tag segment.
    pub name: &'static str,
    /// What it finds, for docs and the schema.
    pub description: &'static str,
    pub pattern: &'static str,
    pub validator: Validator,
    /// Off unless enabled in config (IP addresses).
    pub opt_in: bool,
}

/// In priority order: where two patterns match at the same position, the
/// earlier one wins.
pub const BUILTINS: &[Builtin] = &[];

impl Validator {
    /// Whether `matched` (the exact bytes the pattern matched) counts.
    pub fn accepts(self, matched: &[u8]) -> bool {
        match self {
            Validator::None => true,
            _ => {
                let _ = matched;
                false
            }
        }
    }
}
