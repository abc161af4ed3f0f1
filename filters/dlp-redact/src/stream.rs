//! Streaming redaction of a body that arrives in chunks.
//!
//! Each chunk is appended to the bytes held back from the previous one and
//! scanned. Then the scanner finds where the held bytes' end begins to look
//! like the start of a match (see [`crate::tail`]): everything before that
//! is final and is emitted, the rest is held for the next chunk, and only
//! that rest is scanned again. It is usually a few bytes, and never more
//! than the longest possible match plus the validators' look-ahead. A value
//! split across any chunk boundary is therefore seen whole. One byte of
//! emitted text stays in front of the held bytes as look-behind context for
//! `\b`.
//!
//! A built-in value longer than that bound (a JWT or bearer token far over
//! the usual size) cannot be held whole. When one is still going on at the
//! end of the held bytes, it is redacted as it passes: its replacement is
//! written at once, and the stream follows the value into the next chunks
//! and redacts its rest there, until the value ends.

use crate::redact::{Pass, Report};
use crate::scanner::{Hold, OpenValue};

/// Emitted bytes kept in front of the held ones: validators look at most
/// this far back (the `1.` before a decimal fraction's digits).
const LOOK_BEHIND: usize = 2;

#[derive(Debug, Default)]
pub struct Stream {
    /// `held[..context]` was already emitted (look-behind only); the rest is pending.
    held: Vec<u8>,
    context: usize,
    /// Largest number of bytes held at once, for the `stream_peak_bytes` histogram.
    peak: usize,
    /// Bytes scanned so far.
    scanned: u64,
    /// A value too long to hold that the last chunk ended inside of.
    open: Option<OpenValue>,
}

impl Stream {
    pub fn peak(&self) -> usize {
        self.peak
    }

    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Pending bytes not yet emitted.
    pub fn pending(&self) -> usize {
        self.held.len().saturating_sub(self.context)
    }

    /// Scans `chunk` and writes what is final to `out`. With `end_of_stream`
    /// everything pending is emitted. `block` acts as `tag` here: a streamed
    /// body cannot be refused once parts of it went out, and the caller
    /// buffers instead when blocking must be possible.
    ///
    /// Returns whether `out` is exactly `chunk`: nothing was pending before
    /// it, nothing in it was redacted and nothing of it is held. The caller
    /// then leaves the host's buffer alone, without comparing the bytes.
    pub fn push(
        &mut self,
        pass: &Pass,
        chunk: &[u8],
        end_of_stream: bool,
        out: &mut Vec<u8>,
        report: &mut Report,
    ) -> bool {
        self.scanned = self.scanned.saturating_add(chunk.len() as u64);
        let (rest, continued) = self.continue_open_value(pass, chunk, end_of_stream, out);
        if self.open.is_some() {
            // All of the chunk continued the value.
            return false;
        }
        let nothing_pending = !continued && self.pending() == 0;
        self.held.extend_from_slice(rest);
        self.peak = self.peak.max(self.held.len());
        let len = self.held.len();
        let hold = if end_of_stream {
            Hold::From(len)
        } else {
            pass.scanner.hold(&self.held, self.context)
        };
        let (cut, unchanged) = match hold {
            Hold::From(final_before) => {
                let emitted_to =
                    pass.redact_matches(&self.held, self.context, final_before, out, report);
                // A match may end past `final_before`: it is complete, and emitted whole.
                let cut = emitted_to.max(final_before);
                out.extend_from_slice(self.held.get(emitted_to..cut).unwrap_or_default());
                let unchanged = nothing_pending && emitted_to == self.context && cut == len;
                (cut, unchanged)
            }
            Hold::Open { start, value } => {
                let emitted_to = pass.redact_matches(&self.held, self.context, start, out, report);
                let open_from = emitted_to.max(start);
                out.extend_from_slice(self.held.get(emitted_to..open_from).unwrap_or_default());
                let part = self.held.get(open_from..).unwrap_or_default();
                pass.redact_open_value(value.detector, part, out, report);
                self.open = Some(value);
                (len, false)
            }
        };
        self.release(cut, end_of_stream);
        unchanged
    }

    /// Redacts the bytes at the start of `chunk` that continue an open
    /// value, and returns the rest of the chunk and whether any did. The
    /// value stays open while all of the chunk continues it.
    fn continue_open_value<'c>(
        &mut self,
        pass: &Pass,
        chunk: &'c [u8],
        end_of_stream: bool,
        out: &mut Vec<u8>,
    ) -> (&'c [u8], bool) {
        let Some(mut value) = self.open.take() else {
            return (chunk, false);
        };
        let (n, goes_on) = pass.scanner.continue_value(&mut value, chunk);
        let (part, rest) = chunk.split_at(n.min(chunk.len()));
        pass.redact_value_rest(value.detector, part, out);
        if !part.is_empty() {
            // The value's last bytes are the look-behind of what follows.
            let tail = part
                .get(part.len().saturating_sub(LOOK_BEHIND)..)
                .unwrap_or_default();
            self.held.clear();
            self.held.extend_from_slice(tail);
            self.context = tail.len();
        }
        if goes_on && !end_of_stream {
            self.open = Some(value);
        }
        (rest, n > 0)
    }

    /// Drops what was emitted before `cut`, keeping [`LOOK_BEHIND`] bytes.
    fn release(&mut self, cut: usize, end_of_stream: bool) {
        if end_of_stream {
            self.held.clear();
            self.context = 0;
        } else if cut > 0 {
            let keep_from = cut.saturating_sub(LOOK_BEHIND);
            self.held.drain(..keep_from);
            self.context = cut - keep_from;
        }
    }
}
