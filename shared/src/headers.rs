//! An in-memory header map read from the host in one call.
//!
//! Values are bytes: HTTP allows obs-text (bytes >= 0x80) in header values, and
//! proxy-wasm's `String` getters panic on them. Names are lower-case tokens as
//! Envoy delivers them.

/// Headers of one message, in host order. Repeated names keep one entry each.
///
/// The list remembers which names were changed and how, so the glue can
/// write back only those ([`HeaderList::edits`]) instead of the whole map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    entries: Vec<(String, Vec<u8>)>,
    changes: Vec<(String, Change)>,
    /// False for a list that was not read from the host: it starts empty and
    /// only records writes.
    unread: bool,
}

/// How a name changed since the list was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Every value was replaced (or removed): the final values are the whole truth.
    Replaced,
    /// This many values were appended to whatever the host has.
    Appended(usize),
}

/// One host call that brings the host's header map up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<'a> {
    Remove(&'a str),
    /// Replace every value with this one.
    Set(&'a str, &'a [u8]),
    Add(&'a str, &'a [u8]),
}

impl HeaderList {
    pub fn new(entries: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            entries,
            changes: Vec::new(),
            unread: false,
        }
    }

    /// A list standing for a header map that was not read (to save the host
    /// call): reads see nothing, writes are recorded for [`edits`](Self::edits).
    pub fn unread() -> Self {
        Self {
            unread: true,
            ..Self::default()
        }
    }

    /// Whether the list holds the whole header map as the host sent it.
    pub fn is_complete(&self) -> bool {
        !self.unread
    }

    fn mark(&mut self, name: &str, change: Change) {
        match self.changes.iter_mut().find(|(n, _)| n == name) {
            Some((_, Change::Replaced)) => {}
            Some((_, current)) => {
                *current = match (*current, change) {
                    (Change::Appended(a), Change::Appended(b)) => Change::Appended(a + b),
                    _ => Change::Replaced,
                }
            }
            None => self.changes.push((name.to_string(), change)),
        }
    }

    /// Whether anything changed since the list was read.
    pub fn is_changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The host calls that apply the changes, in order. Correct even when the
    /// list was not read from the host (it started empty): appended values are
    /// added, and only replaced names are set or removed.
    pub fn edits(&self) -> Vec<Edit<'_>> {
        let mut edits = Vec::new();
        for (name, change) in &self.changes {
            let mut values = self.get_all(name);
            match change {
                Change::Replaced => match values.next() {
                    None => edits.push(Edit::Remove(name)),
                    Some(first) => {
                        edits.push(Edit::Set(name, first));
                        edits.extend(values.map(|v| Edit::Add(name, v)));
                    }
                },
                Change::Appended(n) => {
                    let all: Vec<&[u8]> = values.collect();
                    let skip = all.len().saturating_sub(*n);
                    edits.extend(all.into_iter().skip(skip).map(|v| Edit::Add(name, v)));
                }
            }
        }
        edits
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
        self.mark(name, Change::Replaced);
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
        self.mark(name, Change::Appended(1));
        self.entries.push((name.to_string(), value));
    }

    /// Replaces every value of `name` with `values` (in place where possible).
    pub fn replace_all(&mut self, name: &str, values: Vec<Vec<u8>>) {
        self.mark(name, Change::Replaced);
        let mut values = values.into_iter();
        let mut kept = Vec::with_capacity(self.entries.len());
        for (n, v) in self.entries.drain(..) {
            if n != name {
                kept.push((n, v));
            } else if let Some(new) = values.next() {
                kept.push((n, new));
            }
        }
        kept.extend(values.map(|v| (name.to_string(), v)));
        self.entries = kept;
    }

    /// Removes every value of `name`; returns how many were removed. In an
    /// [`unread`](Self::unread) list the removal is recorded even though
    /// nothing was there, so it still happens on the host.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| n != name);
        let removed = before - self.entries.len();
        if removed > 0 || self.unread {
            self.mark(name, Change::Replaced);
        }
        removed
    }

    /// Removes every header whose name satisfies `pred`; returns how many were removed.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&str) -> bool) -> usize {
        self.retain(|n, _| !pred(n))
    }

    /// Keeps only the entries for which `keep(name, value)` holds; returns
    /// how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) -> usize {
        let before = self.entries.len();
        let mut touched: Vec<String> = Vec::new();
        self.entries.retain(|(n, v)| {
            let kept = keep(n, v);
            if !kept && !touched.contains(n) {
                touched.push(n.clone());
            }
            kept
        });
        for name in &touched {
            self.mark(name, Change::Replaced);
        }
        before - self.entries.len()
    }

    /// Removes and returns every value of `name`, in order.
    pub fn take(&mut self, name: &str) -> Vec<Vec<u8>> {
        self.mark(name, Change::Replaced);
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

/// Headers that frame the body. Envoy's codec writes them for the body it
/// sends; a filter that set or removed one could make the framing disagree
/// with the body (request smuggling upstream).
pub const FRAMING_HEADERS: [&str; 2] = ["content-length", "transfer-encoding"];

/// Envoy's router finds no route for a request without this header (it
/// answers 404), so filters must not remove it.
pub const ROUTING_HEADER: &str = "x-forwarded-proto";

/// Whether removing `name` from a request breaks it: pseudo-headers, `host`,
/// framing headers and the routing header.
pub fn is_unremovable(name: &str) -> bool {
    name.starts_with(':')
        || name == "host"
        || FRAMING_HEADERS.contains(&name)
        || name == ROUTING_HEADER
}

/// Headers about the connection, which Envoy's codecs manage (keep-alive,
/// upgrades, trailers).
pub const CONNECTION_HEADERS: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Whether a filter's own outputs may not write header `name`, nor strip
/// it from clients: pseudo-headers, the host, cookies, framing and
/// connection headers, and the routing header.
pub fn is_reserved_output(name: &str) -> bool {
    matches!(name, "host" | "cookie" | "set-cookie")
        || is_unremovable(name)
        || CONNECTION_HEADERS.contains(&name)
}

/// What [`ValueProblem::ControlCharacter`] says, for config errors.
pub const CONTROL_CHARACTER: &str =
    "contains a control character (CR, LF, NUL, DEL or another byte below 0x20 but tab)";

/// Whether `b` may not appear in a header value. RFC 9110 allows visible
/// characters, space, tab and obs-text: CR, LF and NUL would split or
/// truncate headers in HTTP/1, and the other control characters make
/// HTTP/2 peers (nghttp2) and strict HTTP/1 parsers refuse the message.
pub fn is_control_byte(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Whether `bytes` holds a byte [`is_control_byte`] refuses.
pub fn has_control_byte(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| is_control_byte(b))
}

/// Why a header value must not be written, or `None` if it is safe.
/// Control characters ([`is_control_byte`]) are never written.
pub fn value_problem(value: &[u8], max_len: usize) -> Option<ValueProblem> {
    if has_control_byte(value) {
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
    /// A pseudo-header that must have a value (`:authority`) would be empty.
    Empty,
    /// A `:path` would not start with `/`.
    NotAPath,
}

impl ValueProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueProblem::ControlCharacter => CONTROL_CHARACTER,
            ValueProblem::TooLong => "exceeds the size limit",
            ValueProblem::Empty => "is empty",
            ValueProblem::NotAPath => "does not start with '/'",
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

    fn edits_of(h: &HeaderList) -> Vec<(String, String, String)> {
        h.edits()
            .into_iter()
            .map(|e| match e {
                Edit::Remove(n) => ("remove".into(), n.into(), String::new()),
                Edit::Set(n, v) => ("set".into(), n.into(), String::from_utf8_lossy(v).into()),
                Edit::Add(n, v) => ("add".into(), n.into(), String::from_utf8_lossy(v).into()),
            })
            .collect()
    }

    #[test]
    fn edits_are_the_minimal_host_calls() {
        let mut h = list();
        assert!(!h.is_changed());
        assert!(h.edits().is_empty());
        h.set("x-b", b"9".to_vec());
        h.add("x-new", b"n1".to_vec());
        h.add("x-new", b"n2".to_vec());
        h.add("x-a", b"5".to_vec());
        h.remove("x-absent");
        h.remove_where(|n| n == ":method" || n == "x-nothing");
        assert_eq!(h.remove("x-absent-too"), 0);
        h.replace_all("x-a", vec![b"r".to_vec()]);
        let e = |a: &str, n: &str, v: &str| (a.to_string(), n.to_string(), v.to_string());
        assert_eq!(
            edits_of(&h),
            vec![
                e("set", "x-b", "9"),
                e("add", "x-new", "n1"),
                e("add", "x-new", "n2"),
                e("set", "x-a", "r"),
                e("remove", ":method", ""),
            ]
        );
        assert!(h.is_changed());
    }

    #[test]
    fn edits_of_a_list_not_read_from_the_host_only_touch_what_changed() {
        let mut blind = HeaderList::unread();
        assert!(!blind.is_complete());
        blind.add("x-a", b"appended".to_vec());
        blind.set("x-b", b"set".to_vec());
        blind.remove("x-c");
        blind.add("x-b", b"second".to_vec());
        let e = |a: &str, n: &str, v: &str| (a.to_string(), n.to_string(), v.to_string());
        assert_eq!(
            edits_of(&blind),
            vec![
                e("add", "x-a", "appended"),
                e("set", "x-b", "set"),
                e("add", "x-b", "second"),
                e("remove", "x-c", "")
            ]
        );
    }

    #[test]
    fn retain_tracks_partial_removals() {
        let mut h = list();
        assert_eq!(h.retain(|n, v| n != "x-a" || v != b"3"), 1);
        let e = |a: &str, n: &str, v: &str| (a.to_string(), n.to_string(), v.to_string());
        assert_eq!(edits_of(&h), vec![e("set", "x-a", "1")]);
    }

    #[test]
    fn replace_all_keeps_positions() {
        let mut h = list();
        h.replace_all("x-a", vec![b"p".to_vec(), b"q".to_vec(), b"r".to_vec()]);
        let names: Vec<_> = h.entries().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [":method", ":path", ":authority", "x-a", "x-b", "x-a", "x-a"]
        );
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), vec![b"p", b"q", b"r"]);
        h.replace_all("x-a", vec![]);
        assert!(!h.contains("x-a"));
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
        for bad in [&b"a\x01b"[..], b"\x1f", b"a\x7f", b"\x1b[31m"] {
            assert_eq!(value_problem(bad, 10), Some(ValueProblem::ControlCharacter));
        }
        assert_eq!(value_problem(b"a\tb c~", 10), None);
        assert_eq!(value_problem(b"\x80\xff", 10), None);
        assert_eq!(value_problem(b"12345", 4), Some(ValueProblem::TooLong));
        assert_eq!(value_problem("caf\u{e9}".as_bytes(), 10), None);
    }
}
