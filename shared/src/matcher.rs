//! Request matching shared by every filter's per-route rules.
//!
//! Specs are deserialized from config and compiled once at configure time into
//! matchers that evaluate against a [`HeaderList`] without allocating.

use crate::config::{ConfigError, FieldPath};
use crate::headers::{header_name_problem, HeaderList};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;
use std::borrow::Cow;

/// Upper bound on a compiled regex, so a config cannot blow up memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How to match one string. Exactly one of `exact`, `prefix`, `suffix`,
/// `contains` or `regex` must be set. Regexes are anchored: they must match the whole value.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    /// The whole value equals this.
    pub exact: Option<String>,
    /// The value starts with this.
    pub prefix: Option<String>,
    /// The value ends with this.
    pub suffix: Option<String>,
    /// The value contains this.
    pub contains: Option<String>,
    /// Regex (Rust `regex` syntax) that must match the whole value.
    pub regex: Option<String>,
    /// Compare ASCII letters case-insensitively.
    #[serde(default)]
    pub ignore_case: bool,
}

#[derive(Debug, Clone)]
enum StringMatchKind {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Vec<u8>),
    Regex(Regex),
}

/// A compiled [`StringMatch`].
#[derive(Debug, Clone)]
pub struct StringMatcher {
    kind: StringMatchKind,
    ignore_case: bool,
}

/// Compiles a regex that must match the whole input, with a size limit and a
/// config error that names the field.
pub fn compile_anchored_regex(
    pattern: &str,
    ignore_case: bool,
    path: &FieldPath,
) -> Result<Regex, ConfigError> {
    compile_regex(&format!("^(?:{pattern})$"), ignore_case, path)
}

/// Compiles an unanchored regex with a size limit and a config error that names the field.
pub fn compile_regex(
    pattern: &str,
    ignore_case: bool,
    path: &FieldPath,
) -> Result<Regex, ConfigError> {
    RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| path.error(format!("invalid regex: {}", one_line(&e.to_string()))))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl StringMatch {
    pub fn compile(&self, path: &FieldPath) -> Result<StringMatcher, ConfigError> {
        let folded = |s: &String| {
            if self.ignore_case {
                s.to_ascii_lowercase().into_bytes()
            } else {
                s.clone().into_bytes()
            }
        };
        let mut kinds = Vec::new();
        if let Some(s) = &self.exact {
            kinds.push(StringMatchKind::Exact(folded(s)));
        }
        if let Some(s) = &self.prefix {
            kinds.push(StringMatchKind::Prefix(folded(s)));
        }
        if let Some(s) = &self.suffix {
            kinds.push(StringMatchKind::Suffix(folded(s)));
        }
        if let Some(s) = &self.contains {
            kinds.push(StringMatchKind::Contains(folded(s)));
        }
        if let Some(s) = &self.regex {
            kinds.push(StringMatchKind::Regex(compile_anchored_regex(
                s,
                self.ignore_case,
                &path.field("regex"),
            )?));
        }
        let mut kinds = kinds.into_iter();
        match (kinds.next(), kinds.next()) {
            (Some(kind), None) => Ok(StringMatcher {
                kind,
                ignore_case: self.ignore_case,
            }),
            _ => Err(path.error(
                "exactly one of 'exact', 'prefix', 'suffix', 'contains' or 'regex' is required",
            )),
        }
    }
}

impl StringMatcher {
    pub fn matches(&self, value: &[u8]) -> bool {
        let ic = self.ignore_case;
        match &self.kind {
            StringMatchKind::Exact(s) => eq(value, s, ic),
            StringMatchKind::Prefix(s) => value.get(..s.len()).is_some_and(|v| eq(v, s, ic)),
            StringMatchKind::Suffix(s) => value
                .len()
                .checked_sub(s.len())
                .and_then(|start| value.get(start..))
                .is_some_and(|v| eq(v, s, ic)),
            StringMatchKind::Contains(s) => {
                s.is_empty() || value.windows(s.len()).any(|w| eq(w, s, ic))
            }
            StringMatchKind::Regex(re) => re.is_match(value),
        }
    }
}

fn eq(value: &[u8], folded_pattern: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        value.eq_ignore_ascii_case(folded_pattern)
    } else {
        value == folded_pattern
    }
}

/// Matches one header. With no `value`, the header must be present
/// (or absent when `absent` is true). With a `value`, any of its values must match.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name, lower case.
    pub name: String,
    /// A value of the header must match this; without it, presence is checked.
    pub value: Option<StringMatch>,
    /// The header must be absent (not combined with `value`).
    #[serde(default)]
    pub absent: bool,
}

#[derive(Debug, Clone)]
enum HeaderCondition {
    Present,
    Absent,
    Value(StringMatcher),
}

#[derive(Debug, Clone)]
struct CompiledHeaderMatch {
    name: String,
    condition: HeaderCondition,
}

/// Which requests a rule applies to. Every condition given must hold; an
/// empty match matches every request.
///
/// - `host`: the `:authority` without its port, compared case-insensitively.
/// - `path`: `:path` without the query string, resolved as an upstream would
///   resolve it ([`resolved_path`]); not otherwise percent-decoded.
/// - `methods`: any of these methods (upper case).
/// - `headers`: every header condition must hold.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// `:authority` without its port, compared case-insensitively.
    pub host: Option<StringMatch>,
    /// `:path` without the query string, with `.` and `..` segments resolved
    /// and repeated slashes merged (not otherwise percent-decoded).
    pub path: Option<StringMatch>,
    /// Any of these methods (upper case); empty: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Every one of these header conditions must hold.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

/// A compiled [`RequestMatch`].
#[derive(Debug, Clone, Default)]
pub struct RequestMatcher {
    host: Option<StringMatcher>,
    path: Option<StringMatcher>,
    methods: Vec<Vec<u8>>,
    headers: Vec<CompiledHeaderMatch>,
}

impl RequestMatch {
    pub fn compile(&self, path: &FieldPath) -> Result<RequestMatcher, ConfigError> {
        let host = match &self.host {
            Some(m) => {
                let mut m = m.clone();
                m.ignore_case = true;
                Some(m.compile(&path.field("host"))?)
            }
            None => None,
        };
        let path_matcher = match &self.path {
            Some(m) => Some(m.compile(&path.field("path"))?),
            None => None,
        };
        let mut methods = Vec::with_capacity(self.methods.len());
        for (i, method) in self.methods.iter().enumerate() {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(path
                    .field("methods")
                    .index(i)
                    .error(format!("'{method}' is not an upper-case HTTP method")));
            }
            methods.push(method.clone().into_bytes());
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (i, h) in self.headers.iter().enumerate() {
            let hp = path.field("headers").index(i);
            if let Some(problem) = header_name_problem(&h.name) {
                return Err(hp.field("name").error(format!("'{}': {problem}", h.name)));
            }
            let condition = match (&h.value, h.absent) {
                (None, false) => HeaderCondition::Present,
                (None, true) => HeaderCondition::Absent,
                (Some(v), false) => HeaderCondition::Value(v.compile(&hp.field("value"))?),
                (Some(_), true) => {
                    return Err(hp.error("'value' and 'absent' cannot be combined"));
                }
            };
            headers.push(CompiledHeaderMatch {
                name: h.name.clone(),
                condition,
            });
        }
        Ok(RequestMatcher {
            host,
            path: path_matcher,
            methods,
            headers,
        })
    }
}

impl RequestMatcher {
    /// A matcher that matches every request.
    pub fn any() -> Self {
        Self::default()
    }

    pub fn matches(&self, req: &HeaderList) -> bool {
        if let Some(m) = &self.host {
            if !m.matches(req.host()) {
                return false;
            }
        }
        if let Some(m) = &self.path {
            if !m.matches(&resolved_path(req.path())) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method()) {
            return false;
        }
        self.headers.iter().all(|h| match &h.condition {
            HeaderCondition::Present => req.contains(&h.name),
            HeaderCondition::Absent => !req.contains(&h.name),
            HeaderCondition::Value(m) => req.get_all(&h.name).any(|v| m.matches(v)),
        })
    }
}

/// `path` as an upstream that resolves it sees it, for matching: `%2E` is a
/// `.`, runs of `/` are one, and `.` and `..` segments are removed (RFC 3986
/// §5.2.4). Otherwise `/health/../admin` would match a rule for `/health`
/// and reach `/admin`. Borrowed when there is nothing to resolve; Envoy's
/// `normalize_path` and `merge_slashes` do the same before any filter.
pub fn resolved_path(path: &[u8]) -> Cow<'_, [u8]> {
    if !path.starts_with(b"/") || !needs_resolving(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_dots(path);
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut ends_in_directory = false;
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        ends_in_directory = true;
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => {
                segments.push(s);
                ends_in_directory = false;
            }
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if ends_in_directory || out.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(out)
}

fn needs_resolving(path: &[u8]) -> bool {
    let mut segments = path.split(|&b| b == b'/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == b"." || segment == b".." {
            return true;
        }
    }
    path.windows(3).any(|w| w.eq_ignore_ascii_case(b"%2e"))
}

fn decode_dots(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut rest = path;
    while let Some((&b, tail)) = rest.split_first() {
        match tail {
            [x, y, after @ ..] if b == b'%' && *x == b'2' && y.eq_ignore_ascii_case(&b'e') => {
                out.push(b'.');
                rest = after;
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(json: &str) -> StringMatcher {
        serde_json::from_str::<StringMatch>(json)
            .unwrap()
            .compile(&FieldPath::root().field("m"))
            .unwrap()
    }

    fn rm(json: &str) -> Result<RequestMatcher, ConfigError> {
        serde_json::from_str::<RequestMatch>(json)
            .unwrap()
            .compile(&FieldPath::root().field("match"))
    }

    fn req() -> HeaderList {
        HeaderList::from_pairs([
            (":method", "POST"),
            (":path", "/api/v1/users?limit=5"),
            (":authority", "API.example.com:443"),
            ("x-env", "prod"),
            ("x-env", "canary"),
        ])
    }

    #[test]
    fn string_match_kinds() {
        assert!(sm(r#"{"exact":"abc"}"#).matches(b"abc"));
        assert!(!sm(r#"{"exact":"abc"}"#).matches(b"abcd"));
        assert!(sm(r#"{"prefix":"/api"}"#).matches(b"/api/x"));
        assert!(!sm(r#"{"prefix":"/api"}"#).matches(b"/ap"));
        assert!(sm(r#"{"suffix":".json"}"#).matches(b"a.json"));
        assert!(!sm(r#"{"suffix":".json"}"#).matches(b"json"));
        assert!(sm(r#"{"contains":"mid"}"#).matches(b"a-mid-b"));
        assert!(sm(r#"{"regex":"v[0-9]+"}"#).matches(b"v12"));
        assert!(
            !sm(r#"{"regex":"v[0-9]+"}"#).matches(b"xv12"),
            "regex is anchored"
        );
        assert!(sm(r#"{"exact":"ABC","ignore_case":true}"#).matches(b"abc"));
        assert!(sm(r#"{"prefix":"Ab","ignore_case":true}"#).matches(b"aBc"));
    }

    #[test]
    fn string_match_requires_exactly_one_kind() {
        let err = serde_json::from_str::<StringMatch>(r#"{"exact":"a","prefix":"b"}"#)
            .unwrap()
            .compile(&FieldPath::root().field("m"))
            .unwrap_err();
        assert_eq!(err.path, "m");
        let err = StringMatch::default()
            .compile(&FieldPath::root().field("m"))
            .unwrap_err();
        assert!(err.reason.contains("exactly one"));
    }

    #[test]
    fn bad_regex_is_a_config_error_naming_the_field() {
        let err = rm(r#"{"path":{"regex":"("}}"#).unwrap_err();
        assert_eq!(err.path, "match.path.regex");
        assert!(err.reason.starts_with("invalid regex"), "{}", err.reason);
    }

    #[test]
    fn request_match_all_conditions() {
        let r = req();
        assert!(RequestMatcher::any().matches(&r));
        assert!(rm(r#"{"host":{"exact":"api.example.com"}}"#)
            .unwrap()
            .matches(&r));
        assert!(!rm(r#"{"host":{"exact":"example.com"}}"#)
            .unwrap()
            .matches(&r));
        assert!(rm(r#"{"path":{"exact":"/api/v1/users"}}"#)
            .unwrap()
            .matches(&r));
        assert!(rm(r#"{"methods":["GET","POST"]}"#).unwrap().matches(&r));
        assert!(!rm(r#"{"methods":["GET"]}"#).unwrap().matches(&r));
        assert!(rm(r#"{"headers":[{"name":"x-env"}]}"#).unwrap().matches(&r));
        assert!(rm(r#"{"headers":[{"name":"x-no","absent":true}]}"#)
            .unwrap()
            .matches(&r));
        assert!(!rm(r#"{"headers":[{"name":"x-env","absent":true}]}"#)
            .unwrap()
            .matches(&r));
        assert!(
            rm(r#"{"headers":[{"name":"x-env","value":{"exact":"canary"}}]}"#)
                .unwrap()
                .matches(&r),
            "any value of a repeated header may match"
        );
        assert!(!rm(r#"{"path":{"prefix":"/api"},"methods":["GET"]}"#)
            .unwrap()
            .matches(&r));
    }

    #[test]
    fn request_match_validation() {
        assert_eq!(
            rm(r#"{"methods":["get"]}"#).unwrap_err().path,
            "match.methods[0]"
        );
        assert_eq!(
            rm(r#"{"headers":[{"name":"Bad Name"}]}"#).unwrap_err().path,
            "match.headers[0].name"
        );
        assert_eq!(
            rm(r#"{"headers":[{"name":"x","absent":true,"value":{"exact":"v"}}]}"#)
                .unwrap_err()
                .path,
            "match.headers[0]"
        );
    }

    #[test]
    fn paths_are_resolved_before_matching() {
        for (raw, resolved) in [
            ("/api/v1/users", "/api/v1/users"),
            ("/", "/"),
            ("/a/", "/a/"),
            ("/health/../admin", "/admin"),
            ("/health/%2e%2E/admin", "/admin"),
            ("/health/..%2Fadmin", "/health/..%2Fadmin"),
            ("/a/./b/", "/a/b/"),
            ("/a//b", "/a/b"),
            ("//admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/../../x", "/x"),
            ("/..", "/"),
            ("/a.b/c..d/...", "/a.b/c..d/..."),
            ("*", "*"),
        ] {
            assert_eq!(
                String::from_utf8_lossy(&resolved_path(raw.as_bytes())),
                resolved,
                "{raw}"
            );
        }
        assert!(matches!(resolved_path(b"/api/v1/x.json"), Cow::Borrowed(_)));
        let health = rm(r#"{"path":{"prefix":"/health"}}"#).unwrap();
        let at = |p: &str| HeaderList::from_pairs([(":path", p)]);
        assert!(health.matches(&at("/health/live?x=1")));
        assert!(!health.matches(&at("/health/../admin")));
        assert!(!health.matches(&at("/health/%2e%2e/admin")));
        assert!(!health.matches(&at("//health/../../admin")));
    }
}
