//! Query-string editing that keeps untouched parameters byte-for-byte.
//!
//! Names and values are compared and templated in decoded form
//! (`application/x-www-form-urlencoded` rules: `%XX` and `+` as space);
//! values written by the filter are encoded the same way.

use std::borrow::Cow;

/// `/a/b?x=1` -> (`/a/b`, Some(`x=1`)).
pub fn split_path(full: &[u8]) -> (&[u8], Option<&[u8]>) {
    match full.iter().position(|&b| b == b'?') {
        Some(q) => (
            full.get(..q).unwrap_or_default(),
            Some(full.get(q + 1..).unwrap_or_default()),
        ),
        None => (full, None),
    }
}

/// The parameters of one query string, each kept as sent (`k=v`, `k`, or `k=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<Vec<u8>>,
}

fn decode(raw: &[u8]) -> (Cow<'_, str>, Cow<'_, str>) {
    form_urlencoded::parse(raw)
        .next()
        .unwrap_or((Cow::Borrowed(""), Cow::Borrowed("")))
}

fn encode_pair(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(name.len() + value.len() + 1);
    out.extend(form_urlencoded::byte_serialize(name.as_bytes()));
    out.push('=');
    out.extend(form_urlencoded::byte_serialize(value));
    out.into_bytes()
}

impl Query {
    pub fn parse(query: Option<&[u8]>) -> Self {
        let pairs = query
            .unwrap_or_default()
            .split(|&b| b == b'&')
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        Self { pairs }
    }

    fn name_of(raw: &[u8]) -> Cow<'_, str> {
        decode(raw).0
    }

    /// Decoded value of the first parameter called `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.pairs.iter().find_map(|raw| {
            let (n, v) = decode(raw);
            (n == name).then(|| v.into_owned())
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|raw| Self::name_of(raw) == name)
    }

    /// Replaces every `name` parameter with one, at the position of the first.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        let encoded = encode_pair(name, value);
        match self.pairs.iter().position(|raw| Self::name_of(raw) == name) {
            Some(first) => {
                let mut i = 0;
                self.pairs.retain(|raw| {
                    let keep = i <= first || Self::name_of(raw) != name;
                    i += 1;
                    keep
                });
                if let Some(slot) = self.pairs.get_mut(first) {
                    *slot = encoded;
                }
            }
            None => self.pairs.push(encoded),
        }
    }

    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.pairs.push(encode_pair(name, value));
    }

    /// Removes every parameter whose decoded name satisfies `pred`.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&str) -> bool) -> usize {
        let before = self.pairs.len();
        self.pairs.retain(|raw| !pred(&Self::name_of(raw)));
        before - self.pairs.len()
    }

    /// Renames every `from` parameter in place, keeping its raw value, after
    /// removing existing `to` parameters. Returns whether anything was renamed.
    pub fn rename(&mut self, from: &str, to: &str) -> bool {
        if from == to || !self.contains(from) {
            return false;
        }
        self.remove_where(|n| n == to);
        let encoded_to: String = form_urlencoded::byte_serialize(to.as_bytes()).collect();
        for raw in &mut self.pairs {
            if Self::name_of(raw) != from {
                continue;
            }
            let value_part = match raw.iter().position(|&b| b == b'=') {
                Some(eq) => raw.get(eq..).unwrap_or_default().to_vec(),
                None => Vec::new(),
            };
            let mut renamed = encoded_to.clone().into_bytes();
            renamed.extend_from_slice(&value_part);
            *raw = renamed;
        }
        true
    }

    /// Decoded values of every `name` parameter.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter_map(|raw| {
                let (n, v) = decode(raw);
                (n == name).then(|| v.into_owned())
            })
            .collect()
    }

    /// Applies `f` to the decoded value of every `name` parameter; a returned
    /// value replaces it (re-encoded), `None` leaves it untouched.
    pub fn map_values(&mut self, name: &str, mut f: impl FnMut(&str) -> Option<Vec<u8>>) -> bool {
        let mut changed = false;
        for raw in &mut self.pairs {
            let (n, v) = decode(raw);
            if n != name {
                continue;
            }
            if let Some(new) = f(&v) {
                *raw = encode_pair(name, &new);
                changed = true;
            }
        }
        changed
    }

    /// `path?query`, or just `path` when no parameter is left.
    pub fn to_path(&self, path: &[u8]) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(path.len() + self.pairs.iter().map(|p| p.len() + 1).sum::<usize>());
        out.extend_from_slice(path);
        for (i, pair) in self.pairs.iter().enumerate() {
            out.push(if i == 0 { b'?' } else { b'&' });
            out.extend_from_slice(pair);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s.as_bytes()))
    }

    #[test]
    fn split_path_and_query() {
        assert_eq!(
            split_path(b"/a?x=1"),
            (b"/a".as_slice(), Some(b"x=1".as_slice()))
        );
        assert_eq!(split_path(b"/a"), (b"/a".as_slice(), None));
        assert_eq!(split_path(b"/a?"), (b"/a".as_slice(), Some(b"".as_slice())));
    }

    #[test]
    fn get_decodes() {
        let query = q("a=1&name=John%20Doe&plus=a+b&flag&a=2");
        assert_eq!(query.get("name").as_deref(), Some("John Doe"));
        assert_eq!(query.get("plus").as_deref(), Some("a b"));
        assert_eq!(query.get("flag").as_deref(), Some(""));
        assert_eq!(query.get("a").as_deref(), Some("1"));
        assert_eq!(query.values("a"), vec!["1", "2"]);
        assert_eq!(query.get("missing"), None);
    }

    #[test]
    fn untouched_parameters_keep_their_bytes() {
        let mut query = q("keep=%7Eodd%2b&x=1");
        query.set("x", b"a b&c");
        assert_eq!(query.to_path(b"/p"), b"/p?keep=%7Eodd%2b&x=a+b%26c");
    }

    #[test]
    fn set_add_remove() {
        let mut query = q("a=1&b=2&a=3");
        query.set("a", b"9");
        assert_eq!(query.to_path(b"/"), b"/?a=9&b=2");
        query.add("c", b"x");
        assert_eq!(query.to_path(b"/"), b"/?a=9&b=2&c=x");
        assert_eq!(query.remove_where(|n| n == "a" || n == "c"), 2);
        assert_eq!(query.to_path(b"/"), b"/?b=2");
        query.remove_where(|_| true);
        assert_eq!(query.to_path(b"/p"), b"/p");
    }

    #[test]
    fn rename_keeps_position_and_raw_value() {
        let mut query = q("a=1&old=J%20Doe&new=gone&old&z=2");
        assert!(query.rename("old", "new"));
        assert_eq!(query.to_path(b"/"), b"/?a=1&new=J%20Doe&new&z=2");
        assert!(!query.rename("missing", "x"));
    }

    #[test]
    fn map_values_reencodes() {
        let mut query = q("t=abc&t=xbz&o=b");
        assert!(query.map_values("t", |v| v
            .contains('b')
            .then(|| v.replace('b', "/").into_bytes())));
        assert_eq!(query.to_path(b""), b"?t=a%2Fc&t=x%2Fz&o=b");
    }
}
