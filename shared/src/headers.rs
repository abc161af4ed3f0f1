//! An in-memory header map read from the host in one call.
//!
//! Values are bytes: HTTP allows obs-text (bytes >= 0x80) in header values, and
//! proxy-wasm's `String` getters panic on them. Names are lower-case tokens as
//! Envoy delivers them.

/// Headers of one message, in host order. Repeated names keep one entry each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    entries: Vec<(String, Vec<u8>)>,
}

impl HeaderList {
    pub fn new(entries: Vec<(String, Vec<u8>)>) -> Self {
        Self { entries }
    }

    /// Convenience constructor for tests and examples.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(
            pairs
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    pub fn entries(&self) -> &[(String, Vec<u8>)] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<(String, Vec<u8>)> {
        self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// First value of `name` (names are compared case-sensitively; pass lower case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// Replaces every value of `name` with one value, keeping the position of the first.
    pub fn set(&mut self, name: &str, value: Vec<u8>) {
        match self.entries.iter().position(|(n, _)| n == name) {
            Some(first) => {
                let mut i = 0;
                self.entries.retain(|(n, _)| {
                    let keep = i <= first || n != name;
                    i += 1;
                    keep
                });
                if let Some(entry) = self.entries.get_mut(first) {
                    entry.1 = value;
                }
            }
            None => self.entries.push((name.to_string(), value)),
        }
    }

    pub fn add(&mut self, name: &str, value: Vec<u8>) {
        self.entries.push((name.to_string(), value));
    }

    /// Mutable access to every value of `name`, in order.
    pub fn values_mut<'a>(
        &'a mut self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a mut Vec<u8>> + 'a {
        self.entries
            .iter_mut()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Removes every value of `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        self.remove_where(|n| n == name)
    }

    /// Removes every header whose name satisfies `pred`; returns how many were removed.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&str) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| !pred(n));
        before - self.entries.len()
    }

    /// Removes and returns every value of `name`, in order.
    pub fn take(&mut self, name: &str) -> Vec<Vec<u8>> {
        let mut taken = Vec::new();
        let mut kept = Vec::with_capacity(self.entries.len());
        for (n, v) in self.entries.drain(..) {
            if n == name {
                taken.push(v);
            } else {
                kept.push((n, v));
            }
        }
        self.entries = kept;
        taken
    }

    /// `:path` without the query string.
    pub fn path(&self) -> &[u8] {
        let full = self.get(":path").unwrap_or_default();
        match full.iter().position(|&b| b == b'?') {
            Some(q) => full.get(..q).unwrap_or(full),
            None => full,
        }
    }

    pub fn method(&self) -> &[u8] {
        self.get(":method").unwrap_or_default()
    }

    /// `:authority` (or `host`) as sent.
    pub fn authority(&self) -> &[u8] {
        self.get(":authority")
            .or_else(|| self.get("host"))
            .unwrap_or_default()
    }

    /// The authority without a `:port` suffix (IPv6 literals keep their brackets).
    pub fn host(&self) -> &[u8] {
        strip_port(self.authority())
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
pub fn strip_port(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|&b| b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => authority.get(..colon).unwrap_or(authority),
        None => authority,
    }
}

/// RFC 9110 token characters, lower case only (HTTP/2 and Envoy use lower-case names).
fn is_token_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*'
        | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// Why a header name is not acceptable, or `None` if it is. Accepts pseudo-headers.
pub fn header_name_problem(name: &str) -> Option<&'static str> {
    let bare = name.strip_prefix(':').unwrap_or(name);
    if bare.is_empty() {
        return Some("header name is empty");
    }
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("header names must be lower case");
    }
    if !bare.bytes().all(is_token_char) {
        return Some("header name contains a character that is not allowed in HTTP header names");
    }
    None
}

/// Why a header value must not be written, or `None` if it is safe.
/// CR, LF and NUL would split or truncate headers in HTTP/1 and are never written.
pub fn value_problem(value: &[u8], max_len: usize) -> Option<ValueProblem> {
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        Some(ValueProblem::ControlCharacter)
    } else if value.len() > max_len {
        Some(ValueProblem::TooLong)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    ControlCharacter,
    TooLong,
}

impl ValueProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueProblem::ControlCharacter => "contains CR, LF or NUL",
            ValueProblem::TooLong => "exceeds the size limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> HeaderList {
        HeaderList::from_pairs([
            (":method", "GET"),
            (":path", "/a/b?x=1"),
            (":authority", "Example.com:8080"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-a", "3"),
        ])
    }

    #[test]
    fn get_and_get_all() {
        let h = list();
        assert_eq!(h.get("x-a"), Some(b"1".as_slice()));
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), vec![b"1", b"3"]);
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn set_collapses_repeated_values_in_place() {
        let mut h = list();
        h.set("x-a", b"9".to_vec());
        let names: Vec<_> = h.entries().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [":method", ":path", ":authority", "x-a", "x-b"]);
        assert_eq!(h.get("x-a"), Some(b"9".as_slice()));
        h.set("x-new", b"n".to_vec());
        assert_eq!(h.entries().last().unwrap().0, "x-new");
    }

    #[test]
    fn remove_take_and_remove_where() {
        let mut h = list();
        assert_eq!(h.take("x-a"), vec![b"1".to_vec(), b"3".to_vec()]);
        assert!(!h.contains("x-a"));
        assert_eq!(h.remove_where(|n| n.starts_with("x-")), 1);
        assert_eq!(h.remove("nothing"), 0);
    }

    #[test]
    fn pseudo_header_views() {
        let h = list();
        assert_eq!(h.path(), b"/a/b");
        assert_eq!(h.method(), b"GET");
        assert_eq!(h.host(), b"Example.com");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(strip_port(b"host"), b"host");
    }

    #[test]
    fn header_names_are_validated() {
        assert_eq!(header_name_problem("x-ok_1.a"), None);
        assert_eq!(header_name_problem(":path"), None);
        assert!(header_name_problem("").is_some());
        assert!(header_name_problem("X-Upper").is_some());
        assert!(header_name_problem("x a").is_some());
        assert!(header_name_problem("x:a").is_some());
        assert!(header_name_problem("x\r\n").is_some());
    }

    #[test]
    fn values_with_control_characters_are_refused() {
        assert_eq!(value_problem(b"ok", 10), None);
        assert_eq!(
            value_problem(b"a\r\nb", 10),
            Some(ValueProblem::ControlCharacter)
        );
        assert_eq!(
            value_problem(b"a\0", 10),
            Some(ValueProblem::ControlCharacter)
        );
        assert_eq!(value_problem(b"12345", 4), Some(ValueProblem::TooLong));
        assert_eq!(value_problem("caf\u{e9}".as_bytes(), 10), None);
    }
}
