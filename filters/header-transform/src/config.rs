//! Configuration: serde types as users write them, and their compilation into
//! the [`Engine`](crate::transform::Engine) used on the request path.

use crate::template::{self, Captures, Phase, Template};
use crate::transform::{Engine, NameSelector, Op, RuleSet, Target};
use pwf_shared::headers::{
    header_name_problem, CONNECTION_HEADERS, FRAMING_HEADERS, ROUTING_HEADER,
};
use pwf_shared::matcher::{compile_regex, RequestMatch};
use pwf_shared::{ConfigError, FieldPath};
use serde::Deserialize;

/// header-transform: rule sets that set, add, remove, rename, copy and
/// regex-rewrite headers, query parameters and the path.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rule sets applied to requests, in order.
    #[serde(default)]
    pub request: Vec<RuleSetConfig>,
    /// Rule sets applied to responses, in order. Their `match` is evaluated on the request.
    #[serde(default)]
    pub response: Vec<RuleSetConfig>,
    /// Size limits of what the filter writes.
    #[serde(default)]
    pub limits: Limits,
}

/// Operations applied together to the requests (or responses) `match` selects.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSetConfig {
    /// Optional name; a named rule set gets its own `rule_set.<name>.applied` counter.
    pub name: Option<String>,
    /// Which requests the set applies to; absent: every request.
    #[serde(rename = "match", default)]
    pub match_: RequestMatch,
    /// Applied in order; at least one.
    pub operations: Vec<Operation>,
}

/// Size limits; larger values are not written (and counted).
#[derive(Debug, Clone, Copy, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest header or query value the filter writes; larger values are not written.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// Largest `:path` (path and query) the filter writes.
    #[serde(default = "default_max_path_bytes")]
    pub max_path_bytes: usize,
}

fn default_max_value_bytes() -> usize {
    8192
}

fn default_max_path_bytes() -> usize {
    8192
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: default_max_value_bytes(),
            max_path_bytes: default_max_path_bytes(),
        }
    }
}

/// One operation; written as a single-key object such as `{"set": {...}}`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// Replaces every value with one rendered value (appends if absent).
    Set(ValueOp),
    /// Appends a value, keeping existing ones.
    Add(ValueOp),
    /// Sets only if no such header or parameter exists.
    SetIfAbsent(ValueOp),
    /// Removes every matching header or query parameter.
    Remove(RemoveOp),
    /// Moves every value to `to`, replacing the values `to` had.
    Rename(MoveOp),
    /// Like `rename`, keeping the source.
    Copy(MoveOp),
    /// Regex replace on every value, all matches.
    Replace(ReplaceOp),
    /// Regex replace on the path without the query string (request rules only).
    RewritePath(RewritePathOp),
}

/// `set`, `add`, `set_if_absent`: exactly one of `header` or `query`, and a `value` template.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ValueOp {
    /// Header name (lower case; `host` is `:authority`).
    pub header: Option<String>,
    /// Query parameter name (request rules only).
    pub query: Option<String>,
    /// Value template: text with `${...}` variables, e.g. `${req.header.x-id:-none}`.
    pub value: String,
}

/// `remove`: exactly one selector.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RemoveOp {
    /// A header name.
    pub header: Option<String>,
    /// Every header whose name starts with this (never pseudo-headers).
    pub header_prefix: Option<String>,
    /// Every header whose (lower-case) name the regex matches whole (never pseudo-headers).
    pub header_regex: Option<String>,
    /// A query parameter name.
    pub query: Option<String>,
    /// Every query parameter whose name starts with this.
    pub query_prefix: Option<String>,
    /// Every query parameter whose name the regex matches whole.
    pub query_regex: Option<String>,
}

/// `rename` and `copy`: from `header` (or `query`) to `to`, of the same kind.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveOp {
    /// Source header name.
    pub header: Option<String>,
    /// Source query parameter name.
    pub query: Option<String>,
    /// Destination: a header or a query parameter, the same kind as the source.
    pub to: String,
}

/// `replace`: regex replace on every value of `header` (or `query`);
/// `replacement` may use `$1`, `${name}` capture groups.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplaceOp {
    /// Header whose values are rewritten.
    pub header: Option<String>,
    /// Query parameter whose values are rewritten.
    pub query: Option<String>,
    /// Regex (Rust `regex` syntax), unanchored; every match is replaced.
    pub regex: String,
    /// Replacement text; may use `$1`, `${1}`, `${name}`.
    pub replacement: String,
}

/// `rewrite_path`: regex replace on the path (without the query string).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RewritePathOp {
    /// Regex (Rust `regex` syntax) on the path without the query string.
    pub regex: String,
    /// Replacement text; may use `$1`, `${1}`, `${name}`.
    pub replacement: String,
}

/// Reads `vm_config` environment variables for `${env.NAME}`.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    pub fn compile(&self, env: EnvLookup) -> Result<Engine, ConfigError> {
        let root = FieldPath::root();
        if self.limits.max_value_bytes == 0 {
            return Err(root
                .field("limits")
                .field("max_value_bytes")
                .error("must be greater than 0"));
        }
        if self.limits.max_path_bytes == 0 {
            return Err(root
                .field("limits")
                .field("max_path_bytes")
                .error("must be greater than 0"));
        }
        let mut captures = Captures::default();
        let mut names = Vec::new();
        let request = compile_sets(
            &self.request,
            Phase::Request,
            &mut captures,
            env,
            &mut names,
            &root.field("request"),
        )?;
        let response = compile_sets(
            &self.response,
            Phase::Response,
            &mut captures,
            env,
            &mut names,
            &root.field("response"),
        )?;
        Ok(Engine::new(request, response, captures, self.limits))
    }
}

fn compile_sets(
    sets: &[RuleSetConfig],
    phase: Phase,
    captures: &mut Captures,
    env: EnvLookup,
    names: &mut Vec<String>,
    path: &FieldPath,
) -> Result<Vec<RuleSet>, ConfigError> {
    let mut out = Vec::with_capacity(sets.len());
    for (i, set) in sets.iter().enumerate() {
        let sp = path.index(i);
        if let Some(name) = &set.name {
            let valid = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid {
                return Err(sp.field("name").error(format!(
                    "'{name}' must be non-empty lower-case letters, digits, '_' or '-'"
                )));
            }
            if names.contains(name) {
                return Err(sp
                    .field("name")
                    .error(format!("duplicate rule set name '{name}'")));
            }
            names.push(name.clone());
        }
        if set.operations.is_empty() {
            return Err(sp
                .field("operations")
                .error("at least one operation is required"));
        }
        let mut ops = Vec::with_capacity(set.operations.len());
        for (j, op) in set.operations.iter().enumerate() {
            ops.push(compile_op(
                op,
                phase,
                captures,
                env,
                &sp.field("operations").index(j),
            )?);
        }
        out.push(RuleSet {
            name: set.name.clone(),
            matcher: set.match_.compile(&sp.field("match"))?,
            ops,
        });
    }
    Ok(out)
}

fn compile_op(
    op: &Operation,
    phase: Phase,
    captures: &mut Captures,
    env: EnvLookup,
    path: &FieldPath,
) -> Result<Op, ConfigError> {
    let mut value = |text: &str, p: &FieldPath| -> Result<Template, ConfigError> {
        template::parse(text, phase, captures, env, p)
    };
    Ok(match op {
        Operation::Set(v) => {
            let p = path.field("set");
            Op::Set(
                target(&v.header, &v.query, phase, &p)?,
                value(&v.value, &p.field("value"))?,
            )
        }
        Operation::Add(v) => {
            let p = path.field("add");
            Op::Add(
                target(&v.header, &v.query, phase, &p)?,
                value(&v.value, &p.field("value"))?,
            )
        }
        Operation::SetIfAbsent(v) => {
            let p = path.field("set_if_absent");
            Op::SetIfAbsent(
                target(&v.header, &v.query, phase, &p)?,
                value(&v.value, &p.field("value"))?,
            )
        }
        Operation::Remove(r) => Op::Remove(remove_selector(r, phase, &path.field("remove"))?),
        Operation::Rename(m) => {
            let p = path.field("rename");
            let (from, to) = move_targets(m, phase, &p)?;
            if let Target::Header(name) = &from {
                if name.starts_with(':') {
                    return Err(p
                        .field("header")
                        .error(format!("pseudo-header '{name}' cannot be renamed")));
                }
                // Renaming removes the source.
                removable_header(name, phase, &p.field("header"))?;
                keep_routing_header(name, phase, &p.field("header"))?;
            }
            Op::Rename(from, to)
        }
        Operation::Copy(m) => {
            let p = path.field("copy");
            let (from, to) = move_targets(m, phase, &p)?;
            Op::Copy(from, to)
        }
        Operation::Replace(r) => {
            let p = path.field("replace");
            Op::Replace {
                target: target(&r.header, &r.query, phase, &p)?,
                regex: compile_regex(&r.regex, false, &p.field("regex"))?,
                replacement: checked_replacement(&r.replacement, &p.field("replacement"))?,
            }
        }
        Operation::RewritePath(r) => {
            let p = path.field("rewrite_path");
            if phase == Phase::Response {
                return Err(p.error("the path can only be rewritten in request rules"));
            }
            if r.replacement.contains(['?', '#']) {
                return Err(p.field("replacement").error(
                    "must not contain '?' or '#': the path is rewritten without its query, which is kept (use query operations to change it)",
                ));
            }
            Op::RewritePath {
                regex: compile_regex(&r.regex, false, &p.field("regex"))?,
                replacement: checked_replacement(&r.replacement, &p.field("replacement"))?,
            }
        }
    })
}

fn checked_replacement(text: &str, path: &FieldPath) -> Result<Vec<u8>, ConfigError> {
    if pwf_shared::headers::has_control_byte(text.as_bytes()) {
        return Err(path.error(pwf_shared::headers::CONTROL_CHARACTER));
    }
    Ok(text.as_bytes().to_vec())
}

/// Exactly one of `header` / `query`, validated for a write in `phase`.
fn target(
    header: &Option<String>,
    query: &Option<String>,
    phase: Phase,
    path: &FieldPath,
) -> Result<Target, ConfigError> {
    match (header, query) {
        (Some(h), None) => Ok(Target::Header(writable_header(
            h,
            phase,
            &path.field("header"),
        )?)),
        (None, Some(q)) => {
            if phase == Phase::Response {
                return Err(path
                    .field("query")
                    .error("query parameters can only be changed in request rules"));
            }
            if q.is_empty() {
                return Err(path.field("query").error("query parameter name is empty"));
            }
            Ok(Target::Query(q.clone()))
        }
        _ => Err(path.error("exactly one of 'header' or 'query' is required")),
    }
}

/// A header name that may be written: valid, lower case, and not a protected pseudo-header.
/// `host` is an alias of `:authority`.
fn writable_header(name: &str, phase: Phase, path: &FieldPath) -> Result<String, ConfigError> {
    if CONNECTION_HEADERS.contains(&name) {
        return Err(path.error(format!(
            "'{name}' is managed by Envoy's codec and cannot be written (it can be removed)"
        )));
    }
    removable_header(name, phase, path)
}

/// Refuses removing the routing header in request rules.
fn keep_routing_header(name: &str, phase: Phase, path: &FieldPath) -> Result<(), ConfigError> {
    if phase == Phase::Request && name == ROUTING_HEADER {
        return Err(path.error(format!(
            "'{ROUTING_HEADER}' cannot be removed in request rules: Envoy's router matches no route without it (404); it can be set"
        )));
    }
    Ok(())
}

/// A header name that may be written, or removed except
/// [`ROUTING_HEADER`]: valid, and neither a protected pseudo-header nor a framing header.
fn removable_header(name: &str, phase: Phase, path: &FieldPath) -> Result<String, ConfigError> {
    if let Some(problem) = header_name_problem(name) {
        return Err(path.error(format!("'{name}': {problem}")));
    }
    if FRAMING_HEADERS.contains(&name) {
        return Err(path.error(format!(
            "'{name}' frames the body: Envoy's codec writes it, so a rule may read it but not change or remove it"
        )));
    }
    let name = if name == "host" { ":authority" } else { name };
    if name.starts_with(':') {
        let allowed = phase == Phase::Request && (name == ":path" || name == ":authority");
        if !allowed {
            return Err(path.error(format!(
                "pseudo-header '{name}' cannot be changed (only ':path' and ':authority', in request rules)"
            )));
        }
    }
    Ok(name.to_string())
}

fn readable_header(name: &str, path: &FieldPath) -> Result<String, ConfigError> {
    if let Some(problem) = header_name_problem(name) {
        return Err(path.error(format!("'{name}': {problem}")));
    }
    Ok(if name == "host" {
        ":authority".into()
    } else {
        name.into()
    })
}

fn move_targets(
    m: &MoveOp,
    phase: Phase,
    path: &FieldPath,
) -> Result<(Target, Target), ConfigError> {
    match (&m.header, &m.query) {
        (Some(h), None) => Ok((
            Target::Header(readable_header(h, &path.field("header"))?),
            Target::Header(writable_header(&m.to, phase, &path.field("to"))?),
        )),
        (None, Some(q)) => {
            let from = target(&None, &Some(q.clone()), phase, path)?;
            let to = target(&None, &Some(m.to.clone()), phase, &path.field("to"))?;
            Ok((from, to))
        }
        _ => Err(path.error("exactly one of 'header' or 'query' is required")),
    }
}

fn remove_selector(
    r: &RemoveOp,
    phase: Phase,
    path: &FieldPath,
) -> Result<NameSelector, ConfigError> {
    let mut chosen = Vec::new();
    if let Some(h) = &r.header {
        let name = removable_header(h, phase, &path.field("header"))?;
        keep_routing_header(&name, phase, &path.field("header"))?;
        chosen.push(NameSelector::Header(name));
    }
    if let Some(p) = &r.header_prefix {
        if p.is_empty() {
            return Err(path.field("header_prefix").error("prefix is empty"));
        }
        chosen.push(NameSelector::HeaderPrefix(p.to_ascii_lowercase()));
    }
    if let Some(re) = &r.header_regex {
        chosen.push(NameSelector::HeaderRegex(
            pwf_shared::matcher::compile_anchored_regex(re, false, &path.field("header_regex"))?,
        ));
    }
    for (value, field) in [
        (&r.query, "query"),
        (&r.query_prefix, "query_prefix"),
        (&r.query_regex, "query_regex"),
    ] {
        if value.is_some() && phase == Phase::Response {
            return Err(path
                .field(field)
                .error("query parameters can only be changed in request rules"));
        }
    }
    if let Some(q) = &r.query {
        chosen.push(NameSelector::Query(q.clone()));
    }
    if let Some(p) = &r.query_prefix {
        chosen.push(NameSelector::QueryPrefix(p.clone()));
    }
    if let Some(re) = &r.query_regex {
        chosen.push(NameSelector::QueryRegex(
            pwf_shared::matcher::compile_anchored_regex(re, false, &path.field("query_regex"))?,
        ));
    }
    if let Some(NameSelector::Header(name)) = chosen.first() {
        if name.starts_with(':') {
            return Err(path
                .field("header")
                .error(format!("pseudo-header '{name}' cannot be removed")));
        }
    }
    let mut chosen = chosen.into_iter();
    match (chosen.next(), chosen.next()) {
        (Some(sel), None) => Ok(sel),
        _ => Err(path.error(
            "exactly one of 'header', 'header_prefix', 'header_regex', 'query', 'query_prefix' or 'query_regex' is required",
        )),
    }
}
