//! Query parameters: the decoded values of selected parameters are scanned;
//! a changed value is re-encoded, every other byte of the path stays as sent.

use crate::redact::{Pass, Report};

/// The `:path` with selected query values redacted, or None when nothing changed.
pub fn redact_query(
    path: &[u8],
    names: &[String],
    pass: &Pass,
    report: &mut Report,
) -> Option<Vec<u8>> {
    if names.is_empty() {
        return None;
    }
    let qmark = path.iter().position(|&b| b == b'?')?;
    let (head, query) = path.split_at(qmark.saturating_add(1));
    let (query, fragment) = match query.iter().position(|&b| b == b'#') {
        Some(i) => query.split_at(i),
        None => (query, &[][..]),
    };

    let mut out = Vec::with_capacity(path.len() + 16);
    out.extend_from_slice(head);
    let mut changed = false;
    for (i, segment) in query.split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        match redact_segment(segment, names, pass, report) {
            Some(replaced) => {
                changed = true;
                out.extend_from_slice(&replaced);
            }
            None => out.extend_from_slice(segment),
        }
    }
    out.extend_from_slice(fragment);
    changed.then_some(out)
}

fn redact_segment(
    segment: &[u8],
    names: &[String],
    pass: &Pass,
    report: &mut Report,
) -> Option<Vec<u8>> {
    let (raw_key, raw_value) = match segment.iter().position(|&b| b == b'=') {
        Some(i) => (segment.get(..i)?, segment.get(i.saturating_add(1)..)?),
        None => return None,
    };
    let key = decode(raw_key);
    if !names.iter().any(|n| n.as_bytes() == key.as_slice()) {
        return None;
    }
    let value = decode(raw_value);
    let redacted = pass.redact_value(&value, report)?;
    let mut out = Vec::with_capacity(segment.len());
    out.extend_from_slice(raw_key);
    out.push(b'=');
    for part in form_urlencoded::byte_serialize(&redacted) {
        out.extend_from_slice(part.as_bytes());
    }
    Some(out)
}

/// Form decoding: `+` is a space, `%XX` a byte (invalid escapes stay as sent).
fn decode(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced).collect()
}
