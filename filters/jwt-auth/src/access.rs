//! How the request headers are read and written: the whole map in one host
//! call, or one host call per header the configuration needs.
//!
//! [`plan`] decides once per configuration. With [`Access::Single`], the glue
//! reads only the headers the rules and token locations look at ([`read`]),
//! runs the same rule, token and output logic on that partial list, and writes
//! back with single-header calls ([`edits`]). Output headers are never read:
//! every one the filter does not write is removed, so clients' copies go as
//! they do after [`crate::outputs::scrub`].
//!
//! Repeated header names. Envoy's single-header read returns only the first
//! value of a repeated name (it keeps repeated values of most headers as
//! separate entries; `authorization` is one it joins with `,`). The partial
//! list must hold what the whole map would, so:
//!
//! - pseudo-headers, `host` and headers a rule only tests for presence are
//!   read with the single-header call: their first value is all the logic
//!   looks at ([`HeaderList::get`], [`HeaderList::contains`]);
//! - token locations and headers a rule matches by value (any value may
//!   match) are read through Envoy's `request.headers` attribute, which joins
//!   every value with `,`. A result without a comma is the one and only
//!   value. A comma (several values, or one value containing a comma) or a
//!   host that cannot tell makes the filter read the whole map instead, for
//!   that request: the outcome is always the one the whole map gives.

use crate::token::TokenSource;
use pwf_shared::headers::Edit;
use pwf_shared::matcher::RequestMatch;
use pwf_shared::HeaderList;
use std::fmt;

/// Single-header reading is planned when it makes at most this many host
/// calls that reading the whole map does not: one per header read and one
/// removal per output header. One whole-map replacement costs about six
/// single-header calls (docs/benchmarks.md); a whole-map read is of the same
/// order, and its values are then copied into the Wasm heap one by one.
pub const MAX_SINGLE_CALLS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Read the whole request map; remove clients' output headers from it.
    Map,
    /// Read these headers one by one.
    Single(Reads),
}

/// `as a whole map`, or `one by one: <names>` (for the log).
impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Access::Single(reads) = self else {
            return f.write_str("as a whole map");
        };
        let names: Vec<&str> = reads
            .authority
            .then_some(":authority")
            .into_iter()
            .chain(reads.first.iter().map(String::as_str))
            .chain(reads.all.iter().map(String::as_str))
            .collect();
        match names.as_slice() {
            [] => f.write_str("one by one: none"),
            _ => write!(f, "one by one: {}", names.join(", ")),
        }
    }
}

/// The request headers a configuration looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// `:authority`, or `host` without it (host conditions).
    pub authority: bool,
    /// Headers whose first value is all that is looked at.
    pub first: Vec<String>,
    /// Headers every value of which counts.
    pub all: Vec<String>,
}

impl Reads {
    /// Host calls for a request whose headers are all present and single.
    pub fn calls(&self) -> usize {
        usize::from(self.authority) + self.first.len() + self.all.len()
    }

    fn need_first(&mut self, name: &str) {
        if !self.first.iter().any(|n| n == name) {
            self.first.push(name.to_string());
        }
    }

    fn need_all(&mut self, name: &str) {
        if !self.all.iter().any(|n| n == name) {
            self.all.push(name.to_string());
        }
    }
}

/// How a configuration reads the request, from its rules' matches, the token
/// locations of the providers its rules require, and its output headers.
pub fn plan<'a>(
    matches: impl IntoIterator<Item = &'a RequestMatch>,
    token_sources: impl IntoIterator<Item = &'a TokenSource>,
    output_headers: &[String],
) -> Access {
    let reads = needed(matches, token_sources, output_headers);
    if reads.calls() + output_headers.len() > MAX_SINGLE_CALLS {
        Access::Map
    } else {
        Access::Single(reads)
    }
}

/// The headers the rules and token locations look at, and how.
pub fn needed<'a>(
    matches: impl IntoIterator<Item = &'a RequestMatch>,
    token_sources: impl IntoIterator<Item = &'a TokenSource>,
    output_headers: &[String],
) -> Reads {
    let mut reads = Reads::default();
    for m in matches {
        reads.authority |= m.host.is_some();
        if m.path.is_some() {
            reads.need_first(":path");
        }
        if !m.methods.is_empty() {
            reads.need_first(":method");
        }
        for h in &m.headers {
            // Output headers are removed before rules run: always absent.
            if output_headers.contains(&h.name) {
                continue;
            }
            if h.value.is_some() && !h.name.starts_with(':') {
                reads.need_all(&h.name);
            } else {
                reads.need_first(&h.name);
            }
        }
    }
    for source in token_sources {
        match source {
            TokenSource::Header { name, .. } => reads.need_all(name),
            TokenSource::Query(_) => reads.need_first(":path"),
            TokenSource::Cookie(_) => reads.need_all("cookie"),
        }
    }
    let all = reads.all.clone();
    reads.first.retain(|n| !all.contains(n));
    reads
}

/// Request headers as the host reports them.
pub trait Source {
    /// The first value of `name` (proxy-wasm's single-header read).
    fn first(&mut self, name: &str) -> Option<Vec<u8>>;
    /// Every value of `name` joined with `,` (Envoy's `request.headers`
    /// attribute); `None` when absent, empty, or not supported by the host.
    fn joined(&mut self, name: &str) -> Option<Vec<u8>>;
}

/// Every value of one header, as far as the host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Values {
    Absent,
    One(Vec<u8>),
    /// Several values, a value with a comma, or a host that cannot tell.
    Unknown,
}

pub fn values(source: &mut impl Source, name: &str) -> Values {
    match source.joined(name) {
        Some(v) if !v.contains(&b',') => Values::One(v),
        Some(_) => Values::Unknown,
        // Absent, or present and empty (or no attribute): the first value tells.
        None => match source.first(name) {
            None => Values::Absent,
            Some(_) => Values::Unknown,
        },
    }
}

/// The headers `reads` names, as a partial list holding what the whole map
/// holds for them; `None` when one of them needs the whole map.
pub fn read(reads: &Reads, source: &mut impl Source) -> Option<HeaderList> {
    fn push(entries: &mut Vec<(String, Vec<u8>)>, name: &str, value: Vec<u8>) {
        if !entries.iter().any(|(n, _)| n == name) {
            entries.push((name.to_string(), value));
        }
    }
    let mut entries = Vec::new();
    if reads.authority {
        match source.first(":authority") {
            Some(v) => push(&mut entries, ":authority", v),
            None => {
                if let Some(v) = source.first("host") {
                    push(&mut entries, "host", v);
                }
            }
        }
    }
    for name in &reads.first {
        if let Some(v) = source.first(name) {
            push(&mut entries, name, v);
        }
    }
    for name in &reads.all {
        match values(source, name) {
            Values::Absent => {}
            Values::One(v) => push(&mut entries, name, v),
            Values::Unknown => return None,
        }
    }
    Some(HeaderList::new(entries))
}

/// What [`crate::outputs::realm`] looks at, read one by one (for a denial).
pub fn realm_headers(source: &mut impl Source) -> HeaderList {
    let mut entries = Vec::with_capacity(3);
    for name in [":scheme", ":authority", ":path"] {
        if let Some(v) = source.first(name) {
            entries.push((name.to_string(), v));
        }
    }
    if !entries.iter().any(|(n, _)| n == ":authority") {
        if let Some(v) = source.first("host") {
            entries.push(("host".to_string(), v));
        }
    }
    HeaderList::new(entries)
}

/// The host calls that apply a partial list's changes: its own edits, then
/// the removal of every output header it did not write (clients' copies,
/// which were never read).
pub fn edits<'a>(output_headers: &'a [String], headers: &'a HeaderList) -> Vec<Edit<'a>> {
    let mut edits = headers.edits();
    let written = |name: &str, edits: &[Edit]| {
        edits.iter().any(|e| match e {
            Edit::Remove(n) | Edit::Set(n, _) | Edit::Add(n, _) => *n == name,
        })
    };
    for name in output_headers {
        if !written(name, &edits) {
            edits.push(Edit::Remove(name));
        }
    }
    edits
}
