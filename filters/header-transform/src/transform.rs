//! The transformation engine: applies compiled rule sets to a header list.
//! Pure logic, no host calls; host values come through [`HostValues`].

use crate::config::Limits;
use crate::query::{split_path, Query};
use crate::template::{AttributeKind, Captures, Part, RequestValue, Template, Var};
use pwf_shared::headers::{is_unremovable, value_problem, ValueProblem};
use pwf_shared::{HeaderList, RequestMatcher};
use regex::bytes::Regex;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub enum Target {
    Header(String),
    Query(String),
}

#[derive(Debug, Clone)]
pub enum NameSelector {
    Header(String),
    HeaderPrefix(String),
    HeaderRegex(Regex),
    Query(String),
    QueryPrefix(String),
    QueryRegex(Regex),
}

#[derive(Debug, Clone)]
pub enum Op {
    Set(Target, Template),
    Add(Target, Template),
    SetIfAbsent(Target, Template),
    Remove(NameSelector),
    Rename(Target, Target),
    Copy(Target, Target),
    Replace {
        target: Target,
        regex: Regex,
        replacement: Vec<u8>,
    },
    RewritePath {
        regex: Regex,
        replacement: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    pub name: Option<String>,
    pub matcher: RequestMatcher,
    pub ops: Vec<Op>,
}

/// Values only the host knows. The glue implements it with host calls and
/// caches them for the duration of one phase.
pub trait HostValues {
    fn property(&mut self, path: &[String]) -> Option<Vec<u8>>;
    fn now(&mut self) -> SystemTime;
}

/// A value the engine refused to write. Carries no value, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub target: String,
    pub problem: ValueProblem,
}

/// What one phase did (the header list itself knows what changed).
#[derive(Debug, Default)]
pub struct Report {
    /// Indices of the rule sets that matched and ran.
    pub applied: Vec<usize>,
    pub rejected: Vec<Rejection>,
}

/// What the response phase needs from the request phase.
#[derive(Debug, Clone, Default)]
pub struct ResponsePlan {
    /// Response rule sets whose match held for the request.
    pub matched: Vec<usize>,
    /// Request values referenced by response templates, by capture index.
    pub captured: Vec<Option<Vec<u8>>>,
}

#[derive(Debug)]
pub struct Engine {
    request: Vec<RuleSet>,
    response: Vec<RuleSet>,
    captures: Captures,
    limits: Limits,
    response_reads_headers: bool,
}

/// Where template variables are read from.
enum Source<'a> {
    Request,
    Response { captured: &'a [Option<Vec<u8>>] },
}

impl Engine {
    pub fn new(
        request: Vec<RuleSet>,
        response: Vec<RuleSet>,
        captures: Captures,
        limits: Limits,
    ) -> Self {
        let response_reads_headers = response
            .iter()
            .flat_map(|set| &set.ops)
            .any(op_reads_headers);
        Self {
            request,
            response,
            captures,
            limits,
            response_reads_headers,
        }
    }

    /// Whether response rules need the response headers. If not, the glue
    /// skips reading them and applies the rules to [`HeaderList::unread`].
    pub fn response_reads_headers(&self) -> bool {
        self.response_reads_headers
    }

    pub fn request_sets(&self) -> &[RuleSet] {
        &self.request
    }

    pub fn response_sets(&self) -> &[RuleSet] {
        &self.response
    }

    pub fn is_noop(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// Applies request rule sets in order (each sees the previous ones' changes),
    /// then decides which response rule sets apply and captures what they need.
    pub fn on_request(
        &self,
        headers: &mut HeaderList,
        host: &mut dyn HostValues,
        report: &mut Report,
    ) -> ResponsePlan {
        for (i, set) in self.request.iter().enumerate() {
            if set.matcher.matches(headers) {
                report.applied.push(i);
                for op in &set.ops {
                    self.apply(op, headers, &Source::Request, host, report);
                }
            }
        }
        let matched: Vec<usize> = self
            .response
            .iter()
            .enumerate()
            .filter(|(_, set)| set.matcher.matches(headers))
            .map(|(i, _)| i)
            .collect();
        let captured = if matched.is_empty() {
            Vec::new()
        } else {
            self.captures
                .values
                .iter()
                .map(|v| request_value(v, headers).map(Cow::into_owned))
                .collect()
        };
        ResponsePlan { matched, captured }
    }

    pub fn on_response(
        &self,
        plan: &ResponsePlan,
        headers: &mut HeaderList,
        host: &mut dyn HostValues,
        report: &mut Report,
    ) {
        let source = Source::Response {
            captured: &plan.captured,
        };
        for &i in &plan.matched {
            if let Some(set) = self.response.get(i) {
                report.applied.push(i);
                for op in &set.ops {
                    self.apply(op, headers, &source, host, report);
                }
            }
        }
    }

    fn apply(
        &self,
        op: &Op,
        headers: &mut HeaderList,
        source: &Source,
        host: &mut dyn HostValues,
        report: &mut Report,
    ) {
        match op {
            Op::Set(target, template) => {
                let value = render(template, headers, source, host);
                self.write(target, value, WriteMode::Set, headers, report);
            }
            Op::Add(target, template) => {
                let value = render(template, headers, source, host);
                self.write(target, value, WriteMode::Add, headers, report);
            }
            Op::SetIfAbsent(target, template) => {
                let present = match target {
                    Target::Header(name) => headers.contains(name),
                    Target::Query(name) => query_of(headers).contains(name),
                };
                if !present {
                    let value = render(template, headers, source, host);
                    self.write(target, value, WriteMode::Set, headers, report);
                }
            }
            Op::Remove(selector) => remove(selector, headers),
            Op::Rename(Target::Query(from), Target::Query(to)) => {
                self.edit_query(headers, report, |q| {
                    q.rename(from, to);
                });
            }
            Op::Rename(from, to) | Op::Copy(from, to) => {
                let values: Vec<Vec<u8>> = match from {
                    Target::Header(name) => headers.get_all(name).map(<[u8]>::to_vec).collect(),
                    Target::Query(name) => query_of(headers)
                        .values(name)
                        .into_iter()
                        .map(String::into_bytes)
                        .collect(),
                };
                if values.is_empty() {
                    return;
                }
                // The first value written replaces what `to` had; a value
                // refused (too long, CR/LF) is skipped, and a rename keeps
                // its source unless every value was written.
                let mut mode = WriteMode::Set;
                let mut all_written = true;
                for value in values {
                    if self.write(to, value, mode, headers, report) {
                        mode = WriteMode::Add;
                    } else {
                        all_written = false;
                    }
                }
                if matches!(op, Op::Rename(..)) && all_written && !same_target(from, to) {
                    remove(&selector_for(from), headers);
                }
            }
            Op::Replace {
                target,
                regex,
                replacement,
            } => self.replace(target, regex, replacement, headers, report),
            Op::RewritePath { regex, replacement } => {
                let full = headers.get(":path").unwrap_or_default();
                let (path, query) = split_path(full);
                let rewritten = regex.replace_all(path, replacement.as_slice());
                if let Cow::Owned(new_path) = rewritten {
                    let mut full_new = new_path;
                    if let Some(q) = query {
                        full_new.push(b'?');
                        full_new.extend_from_slice(q);
                    }
                    self.write(
                        &Target::Header(":path".into()),
                        full_new,
                        WriteMode::Set,
                        headers,
                        report,
                    );
                }
            }
        }
    }

    fn limit_for(&self, name: &str) -> usize {
        if name == ":path" {
            self.limits.max_path_bytes
        } else {
            self.limits.max_value_bytes
        }
    }

    /// Why `value` cannot be written to header `name`: the shared checks,
    /// then the pseudo-headers' own (Envoy would send an empty `:authority`
    /// or a relative `:path` on, and the upstream refuse the request).
    fn header_problem(&self, name: &str, value: &[u8]) -> Option<ValueProblem> {
        value_problem(value, self.limit_for(name)).or(match name {
            ":path" if value.first() != Some(&b'/') => Some(ValueProblem::NotAPath),
            ":authority" if value.is_empty() => Some(ValueProblem::Empty),
            _ => None,
        })
    }

    /// Writes a value after the safety checks; a refused value is reported and not written.
    fn write(
        &self,
        target: &Target,
        value: Vec<u8>,
        mode: WriteMode,
        headers: &mut HeaderList,
        report: &mut Report,
    ) -> bool {
        match target {
            Target::Header(name) => {
                if let Some(problem) = self.header_problem(name, &value) {
                    report.rejected.push(Rejection {
                        target: name.clone(),
                        problem,
                    });
                    return false;
                }
                // Pseudo-headers have exactly one value.
                if mode == WriteMode::Add && !name.starts_with(':') {
                    headers.add(name, value);
                } else {
                    headers.set(name, value);
                }
                true
            }
            Target::Query(name) => {
                if value.len() > self.limits.max_value_bytes {
                    report.rejected.push(Rejection {
                        target: format!("query {name}"),
                        problem: ValueProblem::TooLong,
                    });
                    return false;
                }
                self.edit_query(headers, report, |q| match mode {
                    WriteMode::Set => q.set(name, &value),
                    WriteMode::Add => q.add(name, &value),
                });
                true
            }
        }
    }

    fn replace(
        &self,
        target: &Target,
        regex: &Regex,
        replacement: &[u8],
        headers: &mut HeaderList,
        report: &mut Report,
    ) {
        match target {
            Target::Header(name) => {
                let mut changed = false;
                let values: Vec<Vec<u8>> = headers
                    .get_all(name)
                    .map(|value| match regex.replace_all(value, replacement) {
                        Cow::Owned(new) => match self.header_problem(name, &new) {
                            Some(problem) => {
                                report.rejected.push(Rejection {
                                    target: name.clone(),
                                    problem,
                                });
                                value.to_vec()
                            }
                            None => {
                                changed = true;
                                new
                            }
                        },
                        Cow::Borrowed(_) => value.to_vec(),
                    })
                    .collect();
                if changed {
                    headers.replace_all(name, values);
                }
            }
            Target::Query(name) => {
                let limit = self.limits.max_value_bytes;
                let mut too_long = false;
                self.edit_query(headers, report, |q| {
                    q.map_values(name, |v| {
                        match regex.replace_all(v.as_bytes(), replacement) {
                            Cow::Owned(new) if new.len() <= limit => Some(new),
                            Cow::Owned(_) => {
                                too_long = true;
                                None
                            }
                            Cow::Borrowed(_) => None,
                        }
                    });
                });
                if too_long {
                    report.rejected.push(Rejection {
                        target: format!("query {name}"),
                        problem: ValueProblem::TooLong,
                    });
                }
            }
        }
    }

    /// Parses the query of `:path`, lets `f` edit it, and writes `:path` back if it changed.
    fn edit_query(
        &self,
        headers: &mut HeaderList,
        report: &mut Report,
        f: impl FnOnce(&mut Query),
    ) {
        // A request without a path (CONNECT) has no query to edit.
        let Some(full) = headers.get(":path") else {
            return;
        };
        let (path, raw_query) = split_path(full);
        let mut query = Query::parse(raw_query);
        let before = query.clone();
        f(&mut query);
        if query == before {
            return;
        }
        let new_path = query.to_path(path);
        self.write(
            &Target::Header(":path".into()),
            new_path,
            WriteMode::Set,
            headers,
            report,
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    Set,
    Add,
}

fn selector_for(target: &Target) -> NameSelector {
    match target {
        Target::Header(n) => NameSelector::Header(n.clone()),
        Target::Query(n) => NameSelector::Query(n.clone()),
    }
}

/// Prefix and regex removal pass over the headers removing would break
/// ([`is_unremovable`]: pseudo-headers, framing headers, `x-forwarded-proto`).
fn remove(selector: &NameSelector, headers: &mut HeaderList) {
    match selector {
        NameSelector::Header(name) => {
            headers.remove(name);
        }
        NameSelector::HeaderPrefix(prefix) => {
            headers.remove_where(|n| !is_unremovable(n) && n.starts_with(prefix.as_str()));
        }
        NameSelector::HeaderRegex(re) => {
            headers.remove_where(|n| !is_unremovable(n) && re.is_match(n.as_bytes()));
        }
        NameSelector::Query(_) | NameSelector::QueryPrefix(_) | NameSelector::QueryRegex(_) => {
            let full = headers.get(":path").unwrap_or_default();
            let (path, raw_query) = split_path(full);
            let mut query = Query::parse(raw_query);
            let n = query.remove_where(|name| match selector {
                NameSelector::Query(q) => name == q,
                NameSelector::QueryPrefix(p) => name.starts_with(p.as_str()),
                NameSelector::QueryRegex(re) => re.is_match(name.as_bytes()),
                _ => false,
            });
            if n > 0 {
                // Removing parameters only shortens the path, so no limit check is needed.
                headers.set(":path", query.to_path(path));
            }
        }
    }
}

/// Whether an operation reads the current headers (so it needs the real map).
fn op_reads_headers(op: &Op) -> bool {
    let template_reads = |t: &Template| {
        t.parts().iter().any(|p| {
            matches!(
                p,
                Part::Var {
                    var: Var::ResponseHeader(_) | Var::ResponseStatus | Var::Request(_),
                    ..
                }
            )
        })
    };
    match op {
        Op::Set(Target::Header(_), t) | Op::Add(Target::Header(_), t) => template_reads(t),
        Op::Remove(NameSelector::Header(_)) => false,
        _ => true,
    }
}

fn query_of(headers: &HeaderList) -> Query {
    Query::parse(split_path(headers.get(":path").unwrap_or_default()).1)
}

/// A request value from the current request headers.
fn request_value<'h>(value: &RequestValue, headers: &'h HeaderList) -> Option<Cow<'h, [u8]>> {
    match value {
        RequestValue::Header(name) => headers.get(name).map(Cow::Borrowed),
        RequestValue::Query(name) => query_of(headers)
            .get(name)
            .map(|v| Cow::Owned(v.into_bytes())),
        RequestValue::Path => Some(Cow::Borrowed(headers.path())),
        RequestValue::Method => Some(Cow::Borrowed(headers.method())),
        RequestValue::Host => Some(Cow::Borrowed(headers.host())),
        RequestValue::Authority => Some(Cow::Borrowed(headers.authority())),
    }
}

/// Renders a template. Absent values become the variable's default (often empty).
fn render(
    template: &Template,
    headers: &HeaderList,
    source: &Source,
    host: &mut dyn HostValues,
) -> Vec<u8> {
    if let Some(literal) = template.as_literal() {
        return literal.to_vec();
    }
    let mut out = Vec::new();
    for part in template.parts() {
        match part {
            Part::Literal(text) => out.extend_from_slice(text),
            Part::Var { var, default } => {
                let value: Option<Cow<[u8]>> = match (var, source) {
                    (Var::Request(rv), _) => request_value(rv, headers),
                    (Var::Captured(i), Source::Response { captured }) => captured
                        .get(*i)
                        .and_then(|v| v.as_deref())
                        .map(Cow::Borrowed),
                    (Var::Captured(_), Source::Request) => None,
                    (Var::ResponseHeader(name), _) => headers.get(name).map(Cow::Borrowed),
                    (Var::ResponseStatus, _) => headers.get(":status").map(Cow::Borrowed),
                    (Var::Attribute(path, kind), _) => host
                        .property(path)
                        .map(|v| Cow::Owned(attribute_text(v, *kind))),
                    (Var::TimeUnix, _) => Some(Cow::Owned(
                        unix(host.now()).as_secs().to_string().into_bytes(),
                    )),
                    (Var::TimeUnixMs, _) => Some(Cow::Owned(
                        unix(host.now()).as_millis().to_string().into_bytes(),
                    )),
                    (Var::TimeRfc3339, _) => Some(Cow::Owned(
                        humantime::format_rfc3339_seconds(host.now())
                            .to_string()
                            .into_bytes(),
                    )),
                };
                match value {
                    Some(v) if !v.is_empty() => out.extend_from_slice(&v),
                    _ => out.extend_from_slice(default),
                }
            }
        }
    }
    out
}

fn unix(t: SystemTime) -> std::time::Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// An attribute's value as text. Envoy returns text as it is, integers as
/// 8 little-endian bytes and booleans as one byte; `kind` says which, from
/// Envoy's attribute table. A value of an unknown kind is guessed: printable
/// text is kept, 8 other bytes are an integer, one byte 0/1 a boolean, other
/// UTF-8 is kept. Text with a control character is kept, so the write
/// refuses and counts it. A value that does not fit its kind is empty.
pub fn attribute_text(raw: Vec<u8>, kind: AttributeKind) -> Vec<u8> {
    let integer = |raw: &[u8]| {
        <[u8; 8]>::try_from(raw)
            .ok()
            .map(|bytes| i64::from_le_bytes(bytes).to_string().into_bytes())
    };
    let boolean = |raw: &[u8]| match raw {
        [0] => Some(b"false".to_vec()),
        [1] => Some(b"true".to_vec()),
        _ => None,
    };
    match kind {
        AttributeKind::Text => raw,
        AttributeKind::Integer => integer(&raw).unwrap_or_default(),
        AttributeKind::Boolean => boolean(&raw).unwrap_or_default(),
        AttributeKind::Unknown => {
            let printable = raw
                .iter()
                .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t' || b >= 0x80)
                && std::str::from_utf8(&raw).is_ok();
            if printable {
                return raw;
            }
            integer(&raw).or_else(|| boolean(&raw)).unwrap_or_else(|| {
                if std::str::from_utf8(&raw).is_ok() {
                    raw
                } else {
                    Vec::new()
                }
            })
        }
    }
}

fn same_target(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Header(x), Target::Header(y)) | (Target::Query(x), Target::Query(y)) => x == y,
        _ => false,
    }
}
