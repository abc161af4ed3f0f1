//! What verified tokens change in the request: claim headers, the payload
//! header, token stripping, and the removal of client-supplied copies of every
//! output header. Also the claims JSON for later filters and the realm.

use crate::config::Compiled;
use crate::token;
use crate::verify::{ClaimPath, Verified};
use pwf_shared::headers::{value_problem, ValueProblem};
use pwf_shared::HeaderList;
use serde_json::Value;

/// Largest claim header value written; larger ones are skipped and reported.
pub const MAX_CLAIM_HEADER_BYTES: usize = 8192;

/// One `claims_to_headers` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub claim: ClaimPath,
    pub header: String,
    pub separator: String,
}

/// A claim value not written. Names the header, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub provider: usize,
    pub header: String,
    pub problem: ValueProblem,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputReport {
    /// Whether the header list changed.
    pub changed: bool,
    pub skipped: Vec<Skipped>,
}

/// Removes every configured output header from a request. Run it on every
/// request, verified or not, before anything else. Returns whether it removed any.
pub fn scrub(compiled: &Compiled, headers: &mut HeaderList) -> bool {
    if compiled.output_headers.is_empty() {
        return false;
    }
    headers.remove_where(|n| compiled.output_headers.iter().any(|h| h == n)) > 0
}

/// Writes the outputs of every verified token: claim headers, the payload
/// header, and (for `forward: false`) removes the token from where it was read.
pub fn apply(compiled: &Compiled, verified: &[Verified], headers: &mut HeaderList) -> OutputReport {
    let mut report = OutputReport::default();
    for v in verified {
        let Some(provider) = compiled.providers.get(v.provider) else {
            continue;
        };
        for ch in &provider.claims_to_headers {
            let Some(value) = ch
                .claim
                .lookup(&v.payload)
                .and_then(|c| header_text(c, &ch.separator))
            else {
                continue;
            };
            match value_problem(value.as_bytes(), MAX_CLAIM_HEADER_BYTES) {
                None => {
                    headers.set(&ch.header, value.into_bytes());
                    report.changed = true;
                }
                Some(problem) => report.skipped.push(Skipped {
                    provider: v.provider,
                    header: ch.header.clone(),
                    problem,
                }),
            }
        }
        if let Some(name) = &provider.payload_header {
            headers.set(name, v.payload_segment.as_bytes().to_vec());
            report.changed = true;
        }
        if !provider.forward {
            if let Some(source) = v.source.and_then(|s| provider.from.get(s)) {
                report.changed |= token::strip(source, headers);
            }
        }
    }
    report
}

/// A claim as header text: strings as they are, numbers and booleans as JSON
/// text, arrays joined by `separator`, objects as compact JSON; `null` and an
/// array with no element but `null` are absent (no header, rather than an
/// empty one).
fn header_text(value: &Value, separator: &str) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Array(items) => {
            let texts: Vec<String> = items
                .iter()
                .filter_map(|item| match item {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect();
            (!texts.is_empty()).then(|| texts.join(separator))
        }
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `{"<provider name>": <payload>, ...}` for every verified token, as compact
/// JSON, for the filters after this one. Names are in sorted order, as a
/// `serde_json` object prints them. A payload already serialized
/// ([`Verified::payload_json`]) is copied, not serialized again.
pub fn claims_json(compiled: &Compiled, verified: &[Verified]) -> String {
    let mut named: Vec<(&str, &Verified)> = verified
        .iter()
        .filter_map(|v| Some((compiled.providers.get(v.provider)?.name.as_str(), v)))
        .collect();
    // Stable: of two tokens for one name, the later one wins (as a map insert would).
    named.sort_by_key(|(name, _)| *name);
    let mut out = String::from("{");
    let mut iter = named.iter().peekable();
    while let Some((name, v)) = iter.next() {
        if iter.peek().is_some_and(|(next, _)| next == name) {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::from(*name).to_string());
        out.push(':');
        match &v.payload_json {
            Some(json) => out.push_str(json),
            None => out.push_str(&v.payload.to_string()),
        }
    }
    out.push('}');
    out
}

/// The realm for `WWW-Authenticate`, as Envoy's jwt_authn builds it:
/// `<scheme>://<authority><path>`, without the query string (which may hold
/// the token).
pub fn realm(headers: &HeaderList) -> String {
    let scheme = headers.get(":scheme").unwrap_or(b"http");
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(scheme);
    out.extend_from_slice(b"://");
    out.extend_from_slice(headers.authority());
    out.extend_from_slice(headers.path());
    String::from_utf8_lossy(&out).into_owned()
}
