//! Configuration: serde types as users write them, validated and compiled
//! into [`Compiled`] at configure time. The token request (headers and form
//! body, credentials included) is built here once, so a fetch only sends it.

use crate::endpoint::{self, ExpiresIn, TokenRequest};
use crate::schedule::Refresh;
use pwf_shared::backoff::Backoff;
use pwf_shared::headers::{header_name_problem, is_reserved_output, is_unremovable, value_problem};
use pwf_shared::matcher::{RequestMatch, RequestMatcher};
use pwf_shared::secret::{EnvLookup, SecretSource};
use pwf_shared::{ConfigError, FieldPath};
use serde::Deserialize;
use std::collections::BTreeMap;

/// jwt-acquire: OAuth2 client-credentials tokens injected into outgoing requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tried in order; the first whose `match` matches serves the request.
    /// A request no source matches passes unchanged.
    pub sources: Vec<SourceConfig>,
}

/// One client of one authorization server, and the requests that get its token.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// 1 to 64 characters of `a-z 0-9 _ -`, unique; used in metric names and shared-data keys.
    pub name: String,
    /// Which requests get this source's token; absent matches every request.
    #[serde(rename = "match")]
    pub matches: Option<RequestMatch>,
    /// The OAuth2 token endpoint.
    pub token_endpoint: EndpointConfig,
    /// The client id.
    pub client_id: SecretSource,
    /// The client secret; an unset or empty variable is a configuration error.
    pub client_secret: SecretSource,
    /// How the client authenticates to the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Sent as `scope`, space-separated.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Sent as `audience`.
    pub audience: Option<String>,
    /// Sent as `resource` (RFC 8707).
    pub resource: Option<String>,
    /// Further form parameters of the token request.
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
    /// Accepted `token_type` values of the response, compared case-insensitively.
    #[serde(default = "default_token_types")]
    pub token_types: Vec<String>,
    /// Lifetime assumed when the response has no `expires_in`.
    #[serde(default = "default_expires_in_s")]
    pub default_expires_in_s: u64,
    /// Longest lifetime believed, 1 to 31536000: a longer `expires_in` is
    /// cut to this, so the token is fetched again (and a revoked or rotated
    /// one replaced) at least this often.
    #[serde(default = "default_max_expires_in_s")]
    pub max_expires_in_s: u64,
    /// How the token is written into requests.
    #[serde(default)]
    pub inject: InjectConfig,
    /// When the token is refreshed, and retries after failures.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// What happens to a request when no usable token exists.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// How long a request waits for the first token (or a refresh after the
    /// token expired); 0 never holds.
    #[serde(default = "default_hold_timeout_ms")]
    pub hold_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The Envoy cluster of the token endpoint.
    pub cluster: String,
    /// Path of the token endpoint, starting with `/`.
    pub path: String,
    /// `:authority` of the token request; defaults to `cluster`.
    pub authority: Option<String>,
    /// 1 to 60000; no answer in time counts as a failed fetch.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// 256 to 1048576; a larger response is a failed fetch.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InjectConfig {
    /// The header that carries the token.
    #[serde(default = "default_inject_header")]
    pub header: String,
    /// Written before the token; `""` for a bare token.
    #[serde(default = "default_inject_prefix")]
    pub prefix: String,
    /// When the request already has `header`.
    #[serde(default)]
    pub existing: Existing,
    /// Request headers removed before injecting (inbound credentials that
    /// must not reach the upstream).
    #[serde(default)]
    pub strip: Vec<String>,
}

impl Default for InjectConfig {
    fn default() -> Self {
        Self {
            header: default_inject_header(),
            prefix: default_inject_prefix(),
            existing: Existing::default(),
            strip: Vec::new(),
        }
    }
}

/// What to do when the request already carries the injection header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Existing {
    /// Replace it with the token.
    #[default]
    Overwrite,
    /// Keep it and inject nothing.
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    /// Refresh once this fraction of `expires_in` has passed.
    #[serde(default = "default_at_fraction")]
    pub at_fraction: f64,
    /// Refresh up to this fraction of `expires_in` earlier, at random, so
    /// many Envoys do not refresh at once.
    #[serde(default = "default_jitter_fraction")]
    pub jitter_fraction: f64,
    /// Stop using a token this long before it expires (at most half its lifetime).
    #[serde(default = "default_expiry_margin_s")]
    pub expiry_margin_s: u64,
    /// First retry delay after a failed fetch.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            at_fraction: default_at_fraction(),
            jitter_fraction: default_jitter_fraction(),
            expiry_margin_s: default_expiry_margin_s(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
        }
    }
}

/// When no usable token exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Fail closed: 503 with a JSON body.
    #[default]
    Deny,
    /// Fail open: the request goes on without a token.
    Pass,
}

fn default_token_types() -> Vec<String> {
    vec!["Bearer".to_owned()]
}
fn default_expires_in_s() -> u64 {
    300
}
fn default_max_expires_in_s() -> u64 {
    86_400
}
fn default_hold_timeout_ms() -> u64 {
    5_000
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_response_bytes() -> usize {
    64 * 1024
}
fn default_inject_header() -> String {
    "authorization".to_owned()
}
fn default_inject_prefix() -> String {
    "Bearer ".to_owned()
}
fn default_at_fraction() -> f64 {
    0.8
}
fn default_jitter_fraction() -> f64 {
    0.05
}
fn default_expiry_margin_s() -> u64 {
    5
}
fn default_retry_initial_ms() -> u64 {
    1_000
}
fn default_retry_max_ms() -> u64 {
    30_000
}

const MAX_TIMEOUT_MS: u64 = 60_000;
const MAX_HOLD_TIMEOUT_MS: u64 = 60_000;
/// One year.
const MAX_EXPIRES_IN_S: u64 = 365 * 86_400;
const MIN_RESPONSE_BYTES: usize = 256;
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Form parameters the filter writes itself.
const RESERVED_PARAMS: [&str; 6] = [
    "grant_type",
    "scope",
    "audience",
    "resource",
    "client_id",
    "client_secret",
];

/// The whole configuration, compiled.
#[derive(Debug)]
pub struct Compiled {
    pub sources: Vec<Source>,
}

/// One token source, ready for the request path.
#[derive(Debug)]
pub struct Source {
    pub index: usize,
    pub name: String,
    /// `None` matches every request.
    pub matcher: Option<RequestMatcher>,
    pub endpoint: Endpoint,
    /// Headers and body of the token request, credentials included.
    pub request: TokenRequest,
    /// Lower-case accepted `token_type` values.
    pub token_types: Vec<String>,
    pub expires_in: ExpiresIn,
    pub inject: Inject,
    pub refresh: Refresh,
    pub on_unavailable: OnUnavailable,
    pub hold_timeout_ms: u64,
    /// Identifies what the token was requested with (endpoint, client,
    /// parameters), so two configurations never share a token by name alone.
    pub fingerprint: u64,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Inject {
    pub header: String,
    pub prefix: String,
    pub existing: Existing,
    pub strip: Vec<String>,
}

impl Config {
    pub fn load(bytes: Option<&[u8]>, env: EnvLookup) -> Result<Compiled, ConfigError> {
        pwf_shared::config::parse_json::<Config>(bytes)?.compile(env)
    }

    pub fn compile(&self, env: EnvLookup) -> Result<Compiled, ConfigError> {
        let root = FieldPath::root().field("sources");
        if self.sources.is_empty() {
            return Err(root.error("at least one source is required"));
        }
        let mut sources = Vec::with_capacity(self.sources.len());
        for (i, s) in self.sources.iter().enumerate() {
            let path = root.index(i);
            if self.sources.iter().take(i).any(|o| o.name == s.name) {
                return Err(path
                    .field("name")
                    .error(format!("'{}' is used by an earlier source", s.name)));
            }
            sources.push(compile_source(i, s, env, &path)?);
        }
        Ok(Compiled { sources })
    }
}

impl Compiled {
    /// Whether choosing a source needs the request headers (some source before
    /// the first unconditional one has a `match`).
    pub fn selection_reads_headers(&self) -> bool {
        self.sources.first().is_some_and(|s| s.matcher.is_some())
    }

    /// The first source whose match accepts the request.
    pub fn select(&self, headers: &pwf_shared::HeaderList) -> Option<&Source> {
        self.sources
            .iter()
            .find(|s| s.matcher.as_ref().is_none_or(|m| m.matches(headers)))
    }
}

fn compile_source(
    index: usize,
    s: &SourceConfig,
    env: EnvLookup,
    path: &FieldPath,
) -> Result<Source, ConfigError> {
    pwf_shared::config::check_name(&s.name, "source name", &path.field("name"))?;
    let matcher = match &s.matches {
        Some(m) => Some(m.compile(&path.field("match"))?),
        None => None,
    };
    let endpoint = compile_endpoint(&s.token_endpoint, &path.field("token_endpoint"))?;
    let (client_id, _) = s.client_id.resolve(env, &path.field("client_id"))?;
    let (client_secret, _) = s.client_secret.resolve(env, &path.field("client_secret"))?;
    for (i, scope) in s.scopes.iter().enumerate() {
        if scope.is_empty() || !scope.bytes().all(is_scope_char) {
            return Err(path.field("scopes").index(i).error(format!(
                "'{scope}' is not a scope token (RFC 6749 §3.3: printable ASCII without spaces, '\"' or '\\')"
            )));
        }
    }
    for (field, value) in [("audience", &s.audience), ("resource", &s.resource)] {
        if value.as_deref().is_some_and(str::is_empty) {
            return Err(path.field(field).error("must not be empty"));
        }
    }
    for name in s.extra_params.keys() {
        if name.is_empty() || RESERVED_PARAMS.contains(&name.as_str()) {
            return Err(path.field("extra_params").field(name).error(
                "is empty or a parameter the filter sets itself (grant_type, scope, audience, resource, client_id, client_secret)",
            ));
        }
    }
    if s.token_types.is_empty() || s.token_types.iter().any(String::is_empty) {
        return Err(path
            .field("token_types")
            .error("needs at least one non-empty token type"));
    }
    if !(1..=MAX_EXPIRES_IN_S).contains(&s.max_expires_in_s) {
        return Err(path
            .field("max_expires_in_s")
            .error(format!("must be 1 to {MAX_EXPIRES_IN_S}")));
    }
    if s.default_expires_in_s == 0 || s.default_expires_in_s > s.max_expires_in_s {
        return Err(path
            .field("default_expires_in_s")
            .error("must be at least 1 and at most max_expires_in_s"));
    }
    if s.hold_timeout_ms > MAX_HOLD_TIMEOUT_MS {
        return Err(path
            .field("hold_timeout_ms")
            .error(format!("must be at most {MAX_HOLD_TIMEOUT_MS}")));
    }
    let inject = compile_inject(&s.inject, &path.field("inject"))?;
    let refresh = compile_refresh(&s.refresh, &path.field("refresh"))?;
    let params = endpoint::Params {
        client_id: &client_id,
        client_secret: &client_secret,
        auth: s.client_auth,
        scopes: &s.scopes,
        audience: s.audience.as_deref(),
        resource: s.resource.as_deref(),
        extra: &s.extra_params,
    };
    let request = endpoint::build_request(&endpoint, &params);
    Ok(Source {
        index,
        name: s.name.clone(),
        matcher,
        fingerprint: request.fingerprint(&endpoint),
        endpoint,
        request,
        token_types: s
            .token_types
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect(),
        expires_in: ExpiresIn {
            default_s: s.default_expires_in_s,
            max_s: s.max_expires_in_s,
        },
        inject,
        refresh,
        on_unavailable: s.on_unavailable,
        hold_timeout_ms: s.hold_timeout_ms,
    })
}

fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)
}

fn compile_endpoint(e: &EndpointConfig, path: &FieldPath) -> Result<Endpoint, ConfigError> {
    if e.cluster.is_empty() {
        return Err(path.field("cluster").error("must not be empty"));
    }
    if !e.path.starts_with('/') || value_problem(e.path.as_bytes(), 8192).is_some() {
        return Err(path.field("path").error(format!(
            "'{}' must be an absolute path starting with '/'",
            e.path
        )));
    }
    let authority = e.authority.clone().unwrap_or_else(|| e.cluster.clone());
    if authority.is_empty() || value_problem(authority.as_bytes(), 1024).is_some() {
        return Err(path
            .field("authority")
            .error("must be a non-empty header value"));
    }
    if e.timeout_ms == 0 || e.timeout_ms > MAX_TIMEOUT_MS {
        return Err(path
            .field("timeout_ms")
            .error(format!("must be 1 to {MAX_TIMEOUT_MS}")));
    }
    if !(MIN_RESPONSE_BYTES..=MAX_RESPONSE_BYTES).contains(&e.max_response_bytes) {
        return Err(path.field("max_response_bytes").error(format!(
            "must be {MIN_RESPONSE_BYTES} to {MAX_RESPONSE_BYTES}"
        )));
    }
    Ok(Endpoint {
        cluster: e.cluster.clone(),
        path: e.path.clone(),
        authority,
        timeout_ms: e.timeout_ms,
        max_response_bytes: e.max_response_bytes,
    })
}

fn compile_inject(i: &InjectConfig, path: &FieldPath) -> Result<Inject, ConfigError> {
    let header = i.header.to_ascii_lowercase();
    if let Some(problem) = header_name_problem(&header) {
        return Err(path
            .field("header")
            .error(format!("'{}': {problem}", i.header)));
    }
    if is_reserved_output(&header) {
        return Err(path.field("header").error(format!(
            "'{}' cannot carry a token: it is a pseudo-header, host, cookie, framing, hop-by-hop or routing header",
            i.header
        )));
    }
    if let Some(problem) = value_problem(i.prefix.as_bytes(), 1024) {
        return Err(path.field("prefix").error(problem.as_str()));
    }
    let mut strip = Vec::with_capacity(i.strip.len());
    for (n, name) in i.strip.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if let Some(problem) = header_name_problem(&lower) {
            return Err(path
                .field("strip")
                .index(n)
                .error(format!("'{name}': {problem}")));
        }
        if is_unremovable(&lower) {
            return Err(path.field("strip").index(n).error(format!(
                "'{name}' cannot be stripped: pseudo-headers, host, content-length, transfer-encoding and x-forwarded-proto are needed by Envoy"
            )));
        }
        if lower == header && i.existing == Existing::Keep {
            return Err(path.field("strip").index(n).error(format!(
                "'{name}' is the injection header: with existing 'keep' stripping it first keeps nothing"
            )));
        }
        strip.push(lower);
    }
    Ok(Inject {
        header,
        prefix: i.prefix.clone(),
        existing: i.existing,
        strip,
    })
}

fn compile_refresh(r: &RefreshConfig, path: &FieldPath) -> Result<Refresh, ConfigError> {
    if !(r.at_fraction > 0.0 && r.at_fraction <= 1.0) {
        return Err(path
            .field("at_fraction")
            .error("must be greater than 0 and at most 1"));
    }
    if !(r.jitter_fraction >= 0.0 && r.jitter_fraction < r.at_fraction) {
        return Err(path
            .field("jitter_fraction")
            .error("must be at least 0 and less than at_fraction"));
    }
    if r.expiry_margin_s > 3600 {
        return Err(path.field("expiry_margin_s").error("must be at most 3600"));
    }
    if r.retry_initial_ms == 0 || r.retry_initial_ms > r.retry_max_ms {
        return Err(path
            .field("retry_initial_ms")
            .error("must be at least 1 and at most retry_max_ms"));
    }
    // Per mille keeps the request path free of floating point.
    let permille = |f: f64| (f * 1000.0).round() as u64;
    Ok(Refresh {
        at_permille: permille(r.at_fraction).clamp(1, 1000),
        jitter_permille: permille(r.jitter_fraction),
        margin_ms: r.expiry_margin_s.saturating_mul(1000),
        backoff: Backoff {
            initial_ms: r.retry_initial_ms,
            max_ms: r.retry_max_ms,
        },
    })
}
