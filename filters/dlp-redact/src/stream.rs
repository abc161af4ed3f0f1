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

use crate::redact::{Pass, Report};

#[derive(Debug, Default)]
pub struct Stream {
    /// `held[..context]` was already emitted (look-behind only); the rest is pending.
    held: Vec<u8>,
    context: usize,
    /// Largest number of bytes held at once, for the `stream_peak_bytes` histogram.
    peak: usize,
    /// Bytes scanned so far.
    scanned: u64,
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
        let nothing_pending = self.pending() == 0;
        self.held.extend_from_slice(chunk);
        self.peak = self.peak.max(self.held.len());
        let len = self.held.len();
        let final_before = if end_of_stream {
            len
        } else {
            pass.scanner.hold_from(&self.held, self.context)
        };

        let emitted_to = pass.redact_matches(&self.held, self.context, final_before, out, report);

        // A match may end past `final_before`: it is complete, and emitted whole.
        let cut = emitted_to.max(final_before);
        out.extend_from_slice(self.held.get(emitted_to..cut).unwrap_or_default());
        let unchanged = nothing_pending && emitted_to == self.context && cut == len;
        if end_of_stream {
            self.held.clear();
            self.context = 0;
        } else if cut > 0 {
            let keep_from = cut - 1;
            self.held.drain(..keep_from);
            self.context = 1;
        }
        unchanged
    }
}
