//! Value templates: literal text with `${variable}` or `${variable:-default}`
//! references, parsed once at configure time.
//!
//! `$${` writes a literal `${`. Environment variables (`env.NAME`) are read at
//! configure time and become literal text.

use pwf_shared::headers::{has_control_byte, header_name_problem, CONTROL_CHARACTER};
use pwf_shared::{ConfigError, FieldPath};

/// Which phase a template is evaluated in; decides which variables exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

/// A request value: read live in request rules, captured at request time for response rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestValue {
    Header(String),
    Query(String),
    Path,
    Method,
    Host,
    Authority,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// In request rules.
    Request(RequestValue),
    /// In response rules: index into the values captured when the request passed.
    Captured(usize),
    ResponseHeader(String),
    ResponseStatus,
    /// An Envoy attribute path, e.g. `["source", "address"]`, and how
    /// Envoy encodes its value.
    Attribute(Vec<String>, AttributeKind),
    TimeUnix,
    TimeUnixMs,
    TimeRfc3339,
}

/// How Envoy encodes an attribute's value for `proxy_get_property`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeKind {
    /// Bytes of text.
    Text,
    /// 8 little-endian bytes: sizes, ports, codes, ids, and times and
    /// durations in nanoseconds.
    Integer,
    /// One byte, 0 or 1.
    Boolean,
    /// Not in Envoy's attribute table (metadata, filter state, newer
    /// attributes): guessed from the bytes.
    Unknown,
}

/// Envoy's attributes whose values are not text, from its attribute table
/// (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes>).
const INTEGER_ATTRIBUTES: &[&str] = &[
    "request.time",
    "request.duration",
    "request.size",
    "request.total_size",
    "request.headers_bytes",
    "response.headers_bytes",
    "response.code",
    "response.flags",
    "response.grpc_status",
    "response.size",
    "response.total_size",
    "response.backend_latency",
    "source.port",
    "destination.port",
    "connection.id",
    "upstream.port",
    "upstream.request_attempt_count",
    "upstream.cx_pool_ready_duration",
    "upstream.num_endpoints",
    // Envoy's Wasm-only properties.
    "connection_id",
    "listener_direction",
];
const BOOLEAN_ATTRIBUTES: &[&str] = &["connection.mtls"];
/// The top-level names of Envoy's attributes; an attribute under one of
/// them not listed above is text.
const TEXT_ROOTS: &[&str] = &[
    "request",
    "response",
    "source",
    "destination",
    "connection",
    "upstream",
];
/// Attributes under those roots that are maps (of header values, which
/// are text), not text themselves.
const MAP_ATTRIBUTES: &[&str] = &[
    "request.headers",
    "response.headers",
    "response.trailers",
    "upstream.locality",
];

fn attribute_kind(path: &str) -> AttributeKind {
    let mut segments = path.splitn(3, '.');
    let (root, second, rest) = (segments.next(), segments.next(), segments.next());
    if INTEGER_ATTRIBUTES.contains(&path) {
        AttributeKind::Integer
    } else if BOOLEAN_ATTRIBUTES.contains(&path) {
        AttributeKind::Boolean
    } else {
        match (root, second, rest) {
            // One header's value: `request.headers.x-user`.
            (Some("request"), Some("headers"), Some(_))
            | (Some("response"), Some("headers" | "trailers"), Some(_)) => AttributeKind::Text,
            (Some(root), Some(_), None)
                if TEXT_ROOTS.contains(&root) && !MAP_ATTRIBUTES.contains(&path) =>
            {
                AttributeKind::Text
            }
            _ => AttributeKind::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Vec<u8>),
    Var { var: Var, default: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The text if the template has no variables.
    pub fn as_literal(&self) -> Option<&[u8]> {
        match self.parts.as_slice() {
            [] => Some(b""),
            [Part::Literal(l)] => Some(l),
            _ => None,
        }
    }

    pub fn uses_time(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::Var {
                    var: Var::TimeUnix | Var::TimeUnixMs | Var::TimeRfc3339,
                    ..
                }
            )
        })
    }
}

/// Request values referenced by response templates, each captured once per request.
#[derive(Debug, Clone, Default)]
pub struct Captures {
    pub values: Vec<RequestValue>,
}

impl Captures {
    fn index_of(&mut self, value: RequestValue) -> usize {
        match self.values.iter().position(|v| *v == value) {
            Some(i) => i,
            None => {
                self.values.push(value);
                self.values.len() - 1
            }
        }
    }
}

/// Parses `text` for `phase`. `env` looks up `env.NAME` variables.
pub fn parse(
    text: &str,
    phase: Phase,
    captures: &mut Captures,
    env: &dyn Fn(&str) -> Option<String>,
    path: &FieldPath,
) -> Result<Template, ConfigError> {
    if has_control_byte(text.as_bytes()) {
        return Err(path.error(format!("value {CONTROL_CHARACTER}")));
    }
    let mut parts: Vec<Part> = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        let (before, from_dollar) = rest.split_at(pos);
        if let Some(stripped) = before.strip_suffix('$') {
            // `$${` is an escaped `${`.
            literal.push_str(stripped);
            literal.push_str("${");
            rest = from_dollar.get(2..).unwrap_or_default();
            continue;
        }
        literal.push_str(before);
        let body_and_rest = from_dollar.get(2..).unwrap_or_default();
        let end = body_and_rest
            .find('}')
            .ok_or_else(|| path.error("unterminated '${' in template"))?;
        let body = body_and_rest.get(..end).unwrap_or_default();
        rest = body_and_rest.get(end + 1..).unwrap_or_default();
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n.trim(), d),
            None => (body.trim(), ""),
        };
        if let Some(env_name) = name.strip_prefix("env.") {
            if env_name.is_empty() {
                return Err(path.error("template variable 'env.' needs a variable name"));
            }
            // An unset or empty variable takes the default.
            let value = env(env_name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string());
            if has_control_byte(value.as_bytes()) {
                return Err(path.error(format!(
                    "environment variable '{env_name}' {CONTROL_CHARACTER}"
                )));
            }
            literal.push_str(&value);
            continue;
        }
        let var = parse_var(name, phase, captures)
            .map_err(|reason| path.error(format!("template {reason}")))?;
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal).into_bytes()));
        }
        parts.push(Part::Var {
            var,
            default: default.as_bytes().to_vec(),
        });
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal.into_bytes()));
    }
    Ok(Template { parts })
}

fn parse_var(name: &str, phase: Phase, captures: &mut Captures) -> Result<Var, String> {
    let unknown = || format!("refers to unknown variable '{name}'");
    let request_value = if let Some(h) = name.strip_prefix("req.header.") {
        Some(RequestValue::Header(checked_header(h, name)?))
    } else if let Some(q) = name.strip_prefix("req.query.") {
        if q.is_empty() {
            return Err(unknown());
        }
        Some(RequestValue::Query(q.to_string()))
    } else {
        match name {
            "req.path" => Some(RequestValue::Path),
            "req.method" => Some(RequestValue::Method),
            "req.host" => Some(RequestValue::Host),
            "req.authority" => Some(RequestValue::Authority),
            _ => None,
        }
    };
    if let Some(value) = request_value {
        return Ok(match phase {
            Phase::Request => Var::Request(value),
            Phase::Response => Var::Captured(captures.index_of(value)),
        });
    }
    if let Some(h) = name.strip_prefix("resp.header.") {
        if phase == Phase::Request {
            return Err(format!(
                "variable '{name}' is only available in response rules"
            ));
        }
        return Ok(Var::ResponseHeader(checked_header(h, name)?));
    }
    if name == "resp.status" {
        if phase == Phase::Request {
            return Err(format!(
                "variable '{name}' is only available in response rules"
            ));
        }
        return Ok(Var::ResponseStatus);
    }
    if let Some(attr) = name.strip_prefix("attr.") {
        let segments: Vec<String> = attr.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(unknown());
        }
        return Ok(Var::Attribute(segments, attribute_kind(attr)));
    }
    match name {
        "time.unix" => Ok(Var::TimeUnix),
        "time.unix_ms" => Ok(Var::TimeUnixMs),
        "time.rfc3339" => Ok(Var::TimeRfc3339),
        _ => Err(unknown()),
    }
}

fn checked_header(h: &str, full: &str) -> Result<String, String> {
    let lower = h.to_ascii_lowercase();
    match header_name_problem(&lower) {
        None => Ok(lower),
        Some(problem) => Err(format!("variable '{full}': {problem}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn p(text: &str, phase: Phase) -> Result<Template, ConfigError> {
        parse(
            text,
            phase,
            &mut Captures::default(),
            &no_env,
            &FieldPath::root().field("v"),
        )
    }

    #[test]
    fn literal_and_variables() {
        let t = p("a-${req.header.X-Id}-${req.query.q:-none}", Phase::Request).unwrap();
        assert_eq!(
            t.parts(),
            &[
                Part::Literal(b"a-".to_vec()),
                Part::Var {
                    var: Var::Request(RequestValue::Header("x-id".into())),
                    default: vec![]
                },
                Part::Literal(b"-".to_vec()),
                Part::Var {
                    var: Var::Request(RequestValue::Query("q".into())),
                    default: b"none".to_vec()
                },
            ]
        );
        assert_eq!(
            p("plain", Phase::Request).unwrap().as_literal(),
            Some(b"plain".as_slice())
        );
    }

    #[test]
    fn escaped_dollar_brace_is_literal() {
        let t = p("cost $${price}", Phase::Request).unwrap();
        assert_eq!(t.as_literal(), Some(b"cost ${price}".as_slice()));
    }

    #[test]
    fn env_is_resolved_at_configure_time() {
        let env = |n: &str| (n == "REGION").then(|| "eu-1".to_string());
        let t = parse(
            "r=${env.REGION} z=${env.NOPE:-dflt}",
            Phase::Request,
            &mut Captures::default(),
            &env,
            &FieldPath::root(),
        )
        .unwrap();
        assert_eq!(t.as_literal(), Some(b"r=eu-1 z=dflt".as_slice()));
        // Set but empty: the default too. A value with CR/LF is refused at
        // load, naming the variable (never its value).
        let env = |n: &str| match n {
            "EMPTY" => Some(String::new()),
            "SPLIT" => Some("a\r\nx-injected: 1".to_string()),
            _ => None,
        };
        let parse_with = |text: &str| {
            parse(
                text,
                Phase::Request,
                &mut Captures::default(),
                &env,
                &FieldPath::root().field("value"),
            )
        };
        assert_eq!(
            parse_with("${env.EMPTY:-dflt}").unwrap().as_literal(),
            Some(b"dflt".as_slice())
        );
        let err = parse_with("${env.SPLIT}").unwrap_err().to_string();
        assert_eq!(
            err,
            "value: environment variable 'SPLIT' contains a control character (CR, LF, NUL, DEL or another byte below 0x20 but tab)"
        );
    }

    #[test]
    fn unknown_variable_is_a_config_error_with_path() {
        let err = p("${req.hedaer.x}", Phase::Request).unwrap_err();
        assert_eq!(
            err.to_string(),
            "v: template refers to unknown variable 'req.hedaer.x'"
        );
        assert!(p("${nope}", Phase::Request).is_err());
        assert!(p("${attr.}", Phase::Request).is_err());
        assert!(p("${req.query.}", Phase::Request).is_err());
        assert!(p("${req.header.bad name}", Phase::Request).is_err());
        assert!(p("${req.path", Phase::Request)
            .unwrap_err()
            .reason
            .contains("unterminated"));
    }

    #[test]
    fn response_variables_only_in_response_rules() {
        assert!(p("${resp.header.server}", Phase::Request).is_err());
        assert!(p("${resp.status}", Phase::Request).is_err());
        assert!(p("${resp.status}", Phase::Response).is_ok());
    }

    #[test]
    fn response_rules_capture_request_values_once() {
        let mut caps = Captures::default();
        let root = FieldPath::root();
        let a = parse("${req.path}", Phase::Response, &mut caps, &no_env, &root).unwrap();
        let b = parse(
            "${req.header.x}/${req.path}",
            Phase::Response,
            &mut caps,
            &no_env,
            &root,
        )
        .unwrap();
        assert_eq!(
            caps.values,
            vec![RequestValue::Path, RequestValue::Header("x".into())]
        );
        assert_eq!(
            a.parts(),
            &[Part::Var {
                var: Var::Captured(0),
                default: vec![]
            }]
        );
        assert!(matches!(
            b.parts()[2],
            Part::Var {
                var: Var::Captured(0),
                ..
            }
        ));
    }

    #[test]
    fn control_characters_in_literals_are_rejected() {
        assert!(p("a\r\nb", Phase::Request).is_err());
    }

    #[test]
    fn attribute_and_time() {
        let t = p("${attr.source.address}@${time.unix}", Phase::Request).unwrap();
        assert!(t.uses_time());
        assert!(
            matches!(&t.parts()[0], Part::Var { var: Var::Attribute(a, AttributeKind::Text), .. } if a == &["source", "address"])
        );
    }
}
