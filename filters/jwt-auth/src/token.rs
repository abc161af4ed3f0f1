//! Where a provider's token is found in a request, and removing it again.

use pwf_shared::HeaderList;

/// One configured token location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header whose value starts with `prefix` (compared ASCII case-insensitively,
    /// so `bearer` and `BEARER` match `Bearer `); the rest, trimmed, is the token.
    Header { name: String, prefix: String },
    /// A query parameter of `:path`, percent-decoded.
    Query(String),
    /// A cookie from the `cookie` header(s).
    Cookie(String),
}

/// A token and the index of the [`TokenSource`] it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: Vec<u8>,
    pub source: usize,
}

/// The first token found, trying `sources` in order.
pub fn find(sources: &[TokenSource], headers: &HeaderList) -> Option<Found> {
    sources.iter().enumerate().find_map(|(source, s)| {
        let token = match s {
            TokenSource::Header { name, prefix } => headers
                .get_all(name)
                .find_map(|v| header_token(v, prefix))
                .map(<[u8]>::to_vec),
            TokenSource::Query(name) => query_value(headers, name),
            TokenSource::Cookie(name) => headers
                .get_all("cookie")
                .find_map(|v| cookie_value(v, name))
                .map(<[u8]>::to_vec),
        }?;
        Some(Found { token, source })
    })
}

/// Removes what `source` reads from the request: every value of the header that
/// carries a token after the prefix, every query parameter of that name (rewriting
/// `:path`), every cookie of that name (rewriting the `cookie` header, dropped when
/// empty). Returns whether anything changed.
pub fn strip(source: &TokenSource, headers: &mut HeaderList) -> bool {
    match source {
        TokenSource::Header { name, prefix } => {
            headers.retain(|n, v| n != name || header_token(v, prefix).is_none()) > 0
        }
        TokenSource::Query(name) => {
            let Some(full) = headers.get(":path") else {
                return false;
            };
            let Some(q) = full.iter().position(|&b| b == b'?') else {
                return false;
            };
            let (path, query) = (full.get(..q).unwrap_or_default(), full.get(q + 1..));
            let pairs: Vec<&[u8]> = query
                .unwrap_or_default()
                .split(|&b| b == b'&')
                .filter(|p| !p.is_empty())
                .collect();
            let kept: Vec<&[u8]> = pairs
                .iter()
                .copied()
                .filter(|p| decode(split_pair(p).0) != name.as_bytes())
                .collect();
            if kept.len() == pairs.len() {
                return false;
            }
            let mut rebuilt = path.to_vec();
            for (i, pair) in kept.iter().enumerate() {
                rebuilt.push(if i == 0 { b'?' } else { b'&' });
                rebuilt.extend_from_slice(pair);
            }
            headers.set(":path", rebuilt);
            true
        }
        TokenSource::Cookie(name) => {
            let mut changed = false;
            let values: Vec<Vec<u8>> = headers
                .get_all("cookie")
                .filter_map(|value| {
                    let crumbs: Vec<&[u8]> = value.split(|&b| b == b';').map(trim).collect();
                    let kept: Vec<&[u8]> = crumbs
                        .iter()
                        .copied()
                        .filter(|c| !c.is_empty() && split_pair(c).0 != name.as_bytes())
                        .collect();
                    if kept.len() != crumbs.iter().filter(|c| !c.is_empty()).count() {
                        changed = true;
                    }
                    // An emptied cookie header is dropped.
                    (!kept.is_empty()).then(|| kept.join(b"; ".as_slice()))
                })
                .collect();
            if changed {
                headers.replace_all("cookie", values);
            }
            changed
        }
    }
}

fn header_token<'a>(value: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix.as_bytes()) {
        return None;
    }
    let token = trim(value.get(prefix.len()..)?);
    (!token.is_empty()).then_some(token)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// `name=value` -> (`name`, `value`); `name` -> (`name`, ``).
fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(eq) => (
            pair.get(..eq).unwrap_or_default(),
            pair.get(eq + 1..).unwrap_or_default(),
        ),
        None => (pair, &[]),
    }
}

fn query_value(headers: &HeaderList, name: &str) -> Option<Vec<u8>> {
    let full = headers.get(":path")?;
    let query = full.get(full.iter().position(|&b| b == b'?')? + 1..)?;
    // The first non-empty value: an empty `name=` before it must not hide it.
    query
        .split(|&b| b == b'&')
        .map(split_pair)
        .filter(|(n, _)| decode(n) == name.as_bytes())
        .map(|(_, v)| decode(v))
        .find(|v| !v.is_empty())
}

/// `application/x-www-form-urlencoded` decoding: `%XX` and `+` as space; a
/// malformed escape is kept as is.
fn decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = match raw.get(i + 1..i + 3) {
                    Some(&[hi, lo]) => hex_digit(hi).zip(hex_digit(lo)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header
        .split(|&b| b == b';')
        .map(|c| split_pair(trim(c)))
        .filter(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| {
            // RFC 6265 allows the value in double quotes.
            match v {
                [b'"', inner @ .., b'"'] => inner,
                _ => v,
            }
        })
        .find(|v| !v.is_empty())
}
