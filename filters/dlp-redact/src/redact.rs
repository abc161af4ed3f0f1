//! Actions on detected values, and whole-value redaction (header values,
//! query parameters, JSON strings).

use crate::scanner::{Catalog, Scanner};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Mask { keep_last: usize, mask_char: u8 },
    Hash,
    Remove,
    Tag,
    Block,
    Alert,
}

impl Action {
    /// Whether the output always has the input's length.
    pub fn preserves_length(&self) -> bool {
        matches!(self, Action::Mask { .. } | Action::Alert)
    }

    /// Writes the replacement of `value` (found by `detector`) to `out`.
    /// `Block` writes a tag: the caller refuses the message anyway, or has
    /// downgraded blocking (streaming past the buffer limit).
    pub fn apply(&self, detector: &str, value: &[u8], hash_key: Option<&[u8]>, out: &mut Vec<u8>) {
        match self {
            Action::Mask {
                keep_last,
                mask_char,
            } => mask(value, *keep_last, *mask_char, out),
            Action::Hash => {
                out.extend_from_slice(b"[HASH:");
                out.extend_from_slice(detector.as_bytes());
                out.push(b':');
                hash_prefix(hash_key.unwrap_or_default(), value, out);
                out.push(b']');
            }
            Action::Remove => {}
            Action::Tag | Action::Block => {
                out.extend_from_slice(b"[REDACTED:");
                out.extend_from_slice(detector.as_bytes());
                out.push(b']');
            }
            Action::Alert => out.extend_from_slice(value),
        }
    }

    /// Writes what replaces more bytes of a value whose replacement was
    /// already written ([`crate::scanner::Detector::redact_open_into`]):
    /// mask characters for `mask`, the bytes as they are for `alert`, and
    /// nothing for the others.
    pub fn apply_rest(&self, rest: &[u8], out: &mut Vec<u8>) {
        match self {
            Action::Mask { mask_char, .. } => mask(rest, 0, *mask_char, out),
            Action::Alert => out.extend_from_slice(rest),
            Action::Hash | Action::Remove | Action::Tag | Action::Block => {}
        }
    }
}

/// Letters, digits and non-ASCII bytes become `mask_char`, byte for byte (so
/// the length never changes); the last `keep_last` letters or digits stay.
fn mask(value: &[u8], keep_last: usize, mask_char: u8, out: &mut Vec<u8>) {
    let maskable = |b: u8| b.is_ascii_alphanumeric() || !b.is_ascii();
    let total = value.iter().filter(|&&b| b.is_ascii_alphanumeric()).count();
    let visible_from = total.saturating_sub(keep_last);
    let mut seen = 0usize;
    for &b in value {
        if b.is_ascii_alphanumeric() {
            out.push(if seen >= visible_from { b } else { mask_char });
            seen += 1;
        } else if maskable(b) {
            out.push(mask_char);
        } else {
            out.push(b);
        }
    }
}

/// First 8 bytes of HMAC-SHA256(key, value) as 16 lower-case hex digits.
fn hash_prefix(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return;
    };
    mac.update(value);
    let digest = mac.finalize().into_bytes();
    for b in digest.iter().take(8) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{b:02x}");
    }
}

/// What a scan found, by detector id; never holds values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Accepted matches per detector id.
    pub found: Vec<(usize, u64)>,
    /// Values changed (every action but alert).
    pub redacted: u64,
    /// The first detector (or JSON field) whose action is `block`.
    pub block: Option<Blocker>,
}

/// What made a message blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    Detector(usize),
    JsonField,
}

impl Report {
    pub fn record(&mut self, detector: usize, action: &Action) {
        match self.found.iter_mut().find(|(d, _)| *d == detector) {
            Some((_, n)) => *n += 1,
            None => self.found.push((detector, 1)),
        }
        match action {
            Action::Alert => {}
            Action::Block => {
                self.block.get_or_insert(Blocker::Detector(detector));
                self.redacted += 1;
            }
            _ => self.redacted += 1,
        }
    }

    pub fn merge(&mut self, other: &Report) {
        for &(d, n) in &other.found {
            match self.found.iter_mut().find(|(id, _)| *id == d) {
                Some((_, m)) => *m += n,
                None => self.found.push((d, n)),
            }
        }
        self.redacted += other.redacted;
        if self.block.is_none() {
            self.block = other.block;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

/// Settings of one scan: which detectors, the hash key, and whether `block`
/// still blocks (it acts as `tag` once a body is streamed past the buffer limit).
#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    pub catalog: &'a Catalog,
    pub scanner: &'a Scanner,
    pub hash_key: Option<&'a [u8]>,
}

impl Pass<'_> {
    /// Writes `hay[from..]` to `out` with every match starting before
    /// `start_limit` redacted, up to the end of the last match it changed;
    /// returns where it stopped. Bytes before `from` are look-behind only.
    pub fn redact_matches(
        &self,
        hay: &[u8],
        from: usize,
        start_limit: usize,
        out: &mut Vec<u8>,
        report: &mut Report,
    ) -> usize {
        let mut copied_to = from;
        for found in self.scanner.matches(self.catalog, hay, from, start_limit) {
            let Some(detector) = self.catalog.detector(found.detector) else {
                break;
            };
            report.record(found.detector, &detector.action);
            if detector.action == Action::Alert {
                continue;
            }
            out.extend_from_slice(hay.get(copied_to..found.start).unwrap_or_default());
            detector.redact_into(
                hay.get(found.start..found.end).unwrap_or_default(),
                self.hash_key,
                out,
            );
            copied_to = found.end;
        }
        copied_to
    }

    /// The first part of a value too long to hold (see
    /// [`crate::scanner::Hold::Open`]): counted once, and replaced as a
    /// whole value would be, except that a mask hides every character.
    pub fn redact_open_value(
        &self,
        detector: usize,
        part: &[u8],
        out: &mut Vec<u8>,
        report: &mut Report,
    ) {
        // A detector id always names a detector; without one, nothing passes.
        if let Some(d) = self.catalog.detector(detector) {
            report.record(detector, &d.action);
            d.redact_open_into(part, self.hash_key, out);
        }
    }

    /// More bytes of that value, as they arrive.
    pub fn redact_value_rest(&self, detector: usize, rest: &[u8], out: &mut Vec<u8>) {
        if let Some(d) = self.catalog.detector(detector) {
            d.action.apply_rest(rest, out);
        }
    }

    /// Redacts a whole value. Returns None when nothing changed.
    pub fn redact_value(&self, value: &[u8], report: &mut Report) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let copied_to = self.redact_matches(value, 0, value.len(), &mut out, report);
        if copied_to == 0 && out.is_empty() {
            return None;
        }
        out.extend_from_slice(value.get(copied_to..).unwrap_or_default());
        Some(out)
    }
}
