//! Configuration: serde types as users write them, and their compilation into
//! the [`Compiled`] form used on the request path (keys parsed, algorithms,
//! claim paths and matchers resolved, header names validated).

use crate::access::{self, Access};
use crate::jwks::{self, KeySet};
use crate::outputs::ClaimHeader;
use crate::rules::{Requirement, Rule, RuleAction};
use crate::token::TokenSource;
use crate::verify::{ClaimPath, ClaimRule};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use pwf_shared::headers::header_name_problem;
use pwf_shared::matcher::RequestMatch;
use pwf_shared::{ConfigError, FieldPath};
use serde::Deserialize;
use serde_json::Value;
use std::rc::Rc;
use std::str::FromStr;

/// jwt-auth: JWT validation with rules per route, claims to headers and filter state.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Token issuers and how their tokens are verified.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// First match wins; a request no rule matches passes unverified.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The per-worker cache of verified tokens.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Store the verified claims as filter state for later filters.
    #[serde(default = "default_true")]
    pub claims_filter_state: bool,
}

/// A token issuer: its keys, where its tokens are, and what they must contain.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `[a-z0-9_-]+`, unique.
    pub name: String,
    /// Exact match of the `iss` claim.
    pub issuer: String,
    /// `aud` must contain one of them; empty: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed `alg` values (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA;
    /// HS256, HS384, HS512 only with `secret`). Default: every asymmetric one.
    pub algorithms: Option<Vec<String>>,
    /// Public keys: exactly one of `inline` or `remote` (or use `secret`).
    pub jwks: Option<JwksConfig>,
    /// HMAC secret for HS* algorithms, at least 32 bytes.
    pub secret: Option<SecretConfig>,
    /// Where the token is, tried in order.
    /// Default: `[{"header": "authorization", "prefix": "Bearer "}]`.
    pub from: Option<Vec<FromConfig>>,
    /// Leeway for `exp` and `nbf`, in seconds (at most 3600).
    #[serde(default = "default_clock_skew_s")]
    pub clock_skew_s: u64,
    /// `exp - iat` (or `exp - now` without `iat`) must not exceed this.
    pub max_lifetime_s: Option<u64>,
    /// A token without `exp` is malformed.
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// Claims the token must have; failing one is a 403.
    #[serde(default)]
    pub required_claims: Vec<ClaimConfig>,
    /// Keep the token in the request after verification; `false` strips it.
    #[serde(default)]
    pub forward: bool,
    /// Verified claims written to request headers.
    #[serde(default)]
    pub claims_to_headers: Vec<ClaimHeaderConfig>,
    /// Request header that gets the verified payload segment (base64url JSON).
    pub payload_header: Option<String>,
    /// Longer tokens are rejected before parsing (at most 65536).
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// A remote provider with no keys at all: `deny` (401) or `allow` (pass unverified).
    #[serde(default)]
    pub on_jwks_unavailable: OnJwksUnavailable,
}

/// Exactly one of `inline` or `remote`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// A JWKS document (`{"keys": [...]}`), parsed at load time.
    pub inline: Option<Value>,
    /// A JWKS fetched from an Envoy cluster, shared by all workers.
    pub remote: Option<RemoteConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Envoy cluster serving the JWKS.
    pub cluster: String,
    /// Defaults to `cluster`.
    pub authority: Option<String>,
    /// Path of the JWKS.
    pub path: String,
    /// Per fetch, at most 60000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Keys are refreshed after 90% of this.
    #[serde(default = "default_cache_duration_s")]
    pub cache_duration_s: u64,
    /// Larger responses are rejected (at most 16 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Minimum time between refetches triggered by an unknown `kid`.
    #[serde(default = "default_refetch_cooldown_s")]
    pub refetch_cooldown_s: u64,
    /// First retry delay after a failed fetch (exponential backoff, jittered).
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
}

/// Exactly one of `inline` or `env`. Configuration errors never show the
/// inline value.
#[derive(Clone)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct SecretConfig {
    /// The secret itself.
    pub inline: Option<String>,
    /// Name of an environment variable (read through the glue's lookup).
    pub env: Option<String>,
    /// How the secret text is decoded into key bytes.
    #[cfg_attr(feature = "schema", serde(default))]
    pub encoding: SecretEncoding,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFields {
    #[serde(default, deserialize_with = "pwf_shared::secret::secret_text")]
    inline: Option<String>,
    env: Option<String>,
    #[serde(default)]
    encoding: SecretEncoding,
}

impl<'de> Deserialize<'de> for SecretConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f: SecretFields = pwf_shared::secret::deserialize_object(d)?;
        Ok(SecretConfig {
            inline: f.inline,
            env: f.env,
            encoding: f.encoding,
        })
    }
}

impl std::fmt::Debug for SecretConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretConfig")
            .field("inline", &self.inline.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env)
            .field("encoding", &self.encoding)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SecretEncoding {
    /// The text itself, as UTF-8 bytes.
    #[default]
    Utf8,
    /// Base64 (RFC 4648 §4).
    Base64,
    /// Base64url (RFC 4648 §5).
    Base64url,
}

/// Exactly one of `header` (with an optional `prefix`), `query` or `cookie`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FromConfig {
    /// A request header.
    pub header: Option<String>,
    /// With `header`: the scheme before the token, compared case-insensitively (e.g. `Bearer `).
    pub prefix: Option<String>,
    /// A query parameter.
    pub query: Option<String>,
    /// A cookie.
    pub cookie: Option<String>,
}

/// A required claim: `exact` or `any_of`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimConfig {
    /// Claim name, or a dotted path (`realm.roles`).
    pub claim: String,
    /// The claim (or, for an array, any element) equals this; a number
    /// claim by value (`"3"` matches `3.0`).
    pub exact: Option<String>,
    /// The claim (or any element) equals one of these.
    pub any_of: Option<Vec<String>>,
    /// Split string claims on spaces first (OAuth `scope`).
    #[serde(default)]
    pub space_delimited: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimHeaderConfig {
    /// Claim name, or a dotted path.
    pub claim: String,
    /// Request header to write.
    pub header: String,
    /// Joins array values; default ",".
    pub separator: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnJwksUnavailable {
    /// 401 `jwks_unavailable`.
    #[default]
    Deny,
    /// The request passes unverified, without claim outputs.
    Allow,
}

/// What a matching request needs; the first matching rule wins.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Which requests the rule applies to; absent: every request.
    #[serde(rename = "match", default)]
    pub match_: RequestMatch,
    /// Pass without looking at tokens (health checks, CORS preflight).
    #[serde(default)]
    pub bypass: bool,
    /// Which providers must verify the token.
    pub requires: Option<RequiresConfig>,
    /// No token is fine; a present token must still be valid.
    #[serde(default)]
    pub allow_missing: bool,
    /// No token or an invalid one is fine; a valid one still produces outputs.
    #[serde(default)]
    pub allow_missing_or_failed: bool,
}

/// Exactly one of `provider`, `any_of` or `all_of`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequiresConfig {
    /// This provider must verify the token.
    pub provider: Option<String>,
    /// One of these providers must verify it.
    pub any_of: Option<Vec<String>>,
    /// Each of these providers must verify it.
    pub all_of: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Verified-token cache entries per worker; 0 disables the cache.
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            rules: Vec::new(),
            cache: CacheConfig::default(),
            claims_filter_state: true,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: default_cache_entries(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_clock_skew_s() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_cache_duration_s() -> u64 {
    300
}
fn default_max_bytes() -> usize {
    256 * 1024
}
fn default_refetch_cooldown_s() -> u64 {
    30
}
fn default_retry_initial_ms() -> u64 {
    1000
}
fn default_retry_max_ms() -> u64 {
    60_000
}
fn default_cache_entries() -> usize {
    1024
}

pub const MAX_CLOCK_SKEW_S: u64 = 3600;
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
pub const MAX_JWKS_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
pub const MAX_CACHE_ENTRIES: usize = 1_000_000;
/// RFC 7518 §3.2: an HMAC key must be at least as long as the hash output; 32
/// bytes is the floor for HS256.
pub const MIN_SECRET_BYTES: usize = 32;

const DEFAULT_ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// Reads environment variables for `secret.env`.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The whole configuration, compiled. The glue holds it in an `Rc`.
#[derive(Debug)]
pub struct Compiled {
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    pub cache_max_entries: usize,
    /// Whether verified claims go to filter state ([`crate::glue::CLAIMS_PROPERTY`]).
    pub claims_filter_state: bool,
    /// Every header any provider writes (claims and payload), removed from
    /// every request so clients cannot forge them.
    pub output_headers: Vec<String>,
    /// How request headers are read and written.
    pub access: Access,
}

/// One compiled provider.
#[derive(Debug)]
pub struct Provider {
    /// Position in `Compiled::providers`.
    pub index: usize,
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySource,
    pub from: Vec<TokenSource>,
    pub clock_skew_s: u64,
    pub max_lifetime_s: Option<u64>,
    pub require_exp: bool,
    pub required_claims: Vec<ClaimRule>,
    pub forward: bool,
    pub claims_to_headers: Vec<ClaimHeader>,
    pub payload_header: Option<String>,
    pub max_token_bytes: usize,
    pub on_jwks_unavailable: OnJwksUnavailable,
}

/// Where a provider's keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// Inline JWKS or shared secret, parsed at configure time.
    Static(Rc<KeySet>),
    /// Fetched by the glue; parse the response with [`jwks::parse`].
    Remote(RemoteJwks),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub cache_duration_s: u64,
    pub max_bytes: usize,
    pub refetch_cooldown_s: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl Provider {
    pub fn remote(&self) -> Option<&RemoteJwks> {
        match &self.keys {
            KeySource::Remote(r) => Some(r),
            KeySource::Static(_) => None,
        }
    }
}

impl Config {
    /// Parses and compiles plugin configuration bytes.
    pub fn load(bytes: Option<&[u8]>, env: EnvLookup) -> Result<Compiled, ConfigError> {
        pwf_shared::config::parse_json::<Config>(bytes)?.compile(env)
    }

    pub fn compile(&self, env: EnvLookup) -> Result<Compiled, ConfigError> {
        let root = FieldPath::root();
        let mut providers: Vec<Provider> = Vec::with_capacity(self.providers.len());
        for (i, p) in self.providers.iter().enumerate() {
            let path = root.field("providers").index(i);
            let provider = compile_provider(i, p, env, &path)?;
            if providers.iter().any(|q| q.name == provider.name) {
                return Err(path
                    .field("name")
                    .error(format!("duplicate provider name '{}'", provider.name)));
            }
            providers.push(provider);
        }
        let output_headers = check_output_headers(&providers, &root.field("providers"))?;
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            rules.push(compile_rule(r, &providers, &root.field("rules").index(i))?);
        }
        if self.cache.max_entries > MAX_CACHE_ENTRIES {
            return Err(root
                .field("cache")
                .field("max_entries")
                .error(format!("must be at most {MAX_CACHE_ENTRIES}")));
        }
        let required: Vec<usize> = rules
            .iter()
            .filter_map(|r| match &r.action {
                RuleAction::Require { requirement, .. } => Some(requirement.providers()),
                RuleAction::Bypass => None,
            })
            .flatten()
            .copied()
            .collect();
        let access = access::plan(
            self.rules.iter().map(|r| &r.match_),
            providers
                .iter()
                .filter(|p| required.contains(&p.index))
                .flat_map(|p| &p.from),
            &output_headers,
        );
        Ok(Compiled {
            access,
            providers,
            rules,
            cache_max_entries: self.cache.max_entries,
            claims_filter_state: self.claims_filter_state,
            output_headers,
        })
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn compile_provider(
    index: usize,
    p: &ProviderConfig,
    env: EnvLookup,
    path: &FieldPath,
) -> Result<Provider, ConfigError> {
    if !is_name(&p.name) {
        return Err(path.field("name").error(format!(
            "'{}' must be non-empty lower-case letters, digits, '_' or '-'",
            p.name
        )));
    }
    if p.issuer.is_empty() {
        return Err(path.field("issuer").error("must not be empty"));
    }
    for (i, aud) in p.audiences.iter().enumerate() {
        if aud.is_empty() {
            return Err(path.field("audiences").index(i).error("must not be empty"));
        }
    }
    let keys = match (&p.jwks, &p.secret) {
        (Some(j), None) => compile_jwks(j, &path.field("jwks"))?,
        (None, Some(s)) => KeySource::Static(Rc::new(KeySet::from_secret(&compile_secret(
            s,
            env,
            &path.field("secret"),
        )?))),
        _ => return Err(path.error("exactly one of 'jwks' or 'secret' is required")),
    };
    let algorithms = compile_algorithms(p, &path.field("algorithms"))?;
    if let KeySource::Static(set) = &keys {
        let usable = set
            .keys()
            .iter()
            .any(|k| algorithms.iter().any(|&a| k.accepts(a)));
        if !usable {
            return Err(path
                .field("jwks")
                .field("inline")
                .error("no key can verify any of the allowed algorithms"));
        }
    }
    if p.clock_skew_s > MAX_CLOCK_SKEW_S {
        return Err(path
            .field("clock_skew_s")
            .error(format!("must be at most {MAX_CLOCK_SKEW_S}")));
    }
    if p.max_lifetime_s == Some(0) {
        return Err(path.field("max_lifetime_s").error("must be greater than 0"));
    }
    if p.max_token_bytes == 0 || p.max_token_bytes > MAX_TOKEN_BYTES {
        return Err(path
            .field("max_token_bytes")
            .error(format!("must be between 1 and {MAX_TOKEN_BYTES}")));
    }
    let mut required_claims = Vec::with_capacity(p.required_claims.len());
    for (i, c) in p.required_claims.iter().enumerate() {
        required_claims.push(compile_claim_rule(
            c,
            &path.field("required_claims").index(i),
        )?);
    }
    let mut claims_to_headers = Vec::with_capacity(p.claims_to_headers.len());
    for (i, c) in p.claims_to_headers.iter().enumerate() {
        let cp = path.field("claims_to_headers").index(i);
        let separator = c.separator.clone().unwrap_or_else(|| ",".into());
        if pwf_shared::headers::has_control_byte(separator.as_bytes()) {
            return Err(cp
                .field("separator")
                .error(pwf_shared::headers::CONTROL_CHARACTER));
        }
        claims_to_headers.push(ClaimHeader {
            claim: claim_path(&c.claim, &cp.field("claim"))?,
            header: c.header.clone(),
            separator,
        });
    }
    Ok(Provider {
        index,
        name: p.name.clone(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        algorithms,
        keys,
        from: compile_from(p.from.as_deref(), &path.field("from"))?,
        clock_skew_s: p.clock_skew_s,
        max_lifetime_s: p.max_lifetime_s,
        require_exp: p.require_exp,
        required_claims,
        forward: p.forward,
        claims_to_headers,
        payload_header: p.payload_header.clone(),
        max_token_bytes: p.max_token_bytes,
        on_jwks_unavailable: p.on_jwks_unavailable,
    })
}

fn compile_algorithms(p: &ProviderConfig, path: &FieldPath) -> Result<Vec<Algorithm>, ConfigError> {
    let secret = p.secret.is_some();
    let Some(names) = &p.algorithms else {
        return Ok(if secret {
            HMAC.to_vec()
        } else {
            DEFAULT_ASYMMETRIC.to_vec()
        });
    };
    if names.is_empty() {
        return Err(path.error("must not be empty (omit it for the default list)"));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let ap = path.index(i);
        let alg = Algorithm::from_str(name)
            .map_err(|_| ap.error(format!("'{name}' is not a supported algorithm")))?;
        let hmac = alg.family() == AlgorithmFamily::Hmac;
        if hmac && !secret {
            return Err(ap.error(format!(
                "'{name}' needs a 'secret' key source: JWKS keys only verify asymmetric algorithms"
            )));
        }
        if !hmac && secret {
            return Err(ap.error(format!(
                "'{name}' needs a public key: a 'secret' provider allows only HS256, HS384 and HS512"
            )));
        }
        if algorithms.contains(&alg) {
            return Err(ap.error(format!("duplicate algorithm '{name}'")));
        }
        algorithms.push(alg);
    }
    Ok(algorithms)
}

fn compile_jwks(j: &JwksConfig, path: &FieldPath) -> Result<KeySource, ConfigError> {
    match (&j.inline, &j.remote) {
        (Some(doc), None) => {
            let set =
                jwks::parse_value(doc).map_err(|e| path.field("inline").error(e.to_string()))?;
            Ok(KeySource::Static(Rc::new(set)))
        }
        (None, Some(r)) => compile_remote(r, &path.field("remote")).map(KeySource::Remote),
        _ => Err(path.error("exactly one of 'inline' or 'remote' is required")),
    }
}

fn compile_remote(r: &RemoteConfig, path: &FieldPath) -> Result<RemoteJwks, ConfigError> {
    let no_ctl = |s: &str| !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    if r.cluster.is_empty() {
        return Err(path.field("cluster").error("must not be empty"));
    }
    let authority = r.authority.clone().unwrap_or_else(|| r.cluster.clone());
    if authority.is_empty() || !no_ctl(&authority) {
        return Err(path
            .field("authority")
            .error("must be a non-empty host without spaces or control characters"));
    }
    if !r.path.starts_with('/') || !no_ctl(&r.path) {
        return Err(path
            .field("path")
            .error("must start with '/' and contain no spaces or control characters"));
    }
    if r.timeout_ms == 0 || r.timeout_ms > MAX_TIMEOUT_MS {
        return Err(path
            .field("timeout_ms")
            .error(format!("must be between 1 and {MAX_TIMEOUT_MS}")));
    }
    if r.cache_duration_s == 0 {
        return Err(path
            .field("cache_duration_s")
            .error("must be greater than 0"));
    }
    if r.max_bytes == 0 || r.max_bytes > MAX_JWKS_BYTES {
        return Err(path
            .field("max_bytes")
            .error(format!("must be between 1 and {MAX_JWKS_BYTES}")));
    }
    if r.refetch_cooldown_s == 0 {
        return Err(path.field("refetch_cooldown_s").error(
            "must be greater than 0 (tokens with unknown kids would trigger a fetch each)",
        ));
    }
    if r.retry_initial_ms == 0 {
        return Err(path
            .field("retry_initial_ms")
            .error("must be greater than 0"));
    }
    if r.retry_max_ms < r.retry_initial_ms {
        return Err(path
            .field("retry_max_ms")
            .error("must not be less than retry_initial_ms"));
    }
    Ok(RemoteJwks {
        cluster: r.cluster.clone(),
        authority,
        path: r.path.clone(),
        timeout_ms: r.timeout_ms,
        cache_duration_s: r.cache_duration_s,
        max_bytes: r.max_bytes,
        refetch_cooldown_s: r.refetch_cooldown_s,
        retry_initial_ms: r.retry_initial_ms,
        retry_max_ms: r.retry_max_ms,
    })
}

fn engine(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// The secret's bytes. Errors never include the secret.
fn compile_secret(
    s: &SecretConfig,
    env: EnvLookup,
    path: &FieldPath,
) -> Result<Vec<u8>, ConfigError> {
    let (text, field) = match (&s.inline, &s.env) {
        (Some(v), None) => (v.clone(), "inline"),
        (None, Some(name)) => {
            let v = env(name).ok_or_else(|| {
                path.field("env")
                    .error(format!("environment variable '{name}' is not set"))
            })?;
            (v, "env")
        }
        _ => return Err(path.error("exactly one of 'inline' or 'env' is required")),
    };
    let bytes = match s.encoding {
        SecretEncoding::Utf8 => Ok(text.into_bytes()),
        SecretEncoding::Base64 => engine(&base64::alphabet::STANDARD).decode(text.trim()),
        SecretEncoding::Base64url => engine(&base64::alphabet::URL_SAFE).decode(text.trim()),
    }
    .map_err(|_| {
        path.field(field)
            .error("is not valid for the configured encoding")
    })?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(path.field(field).error(format!(
            "the secret is {} bytes; at least {MIN_SECRET_BYTES} are required",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn compile_from(
    from: Option<&[FromConfig]>,
    path: &FieldPath,
) -> Result<Vec<TokenSource>, ConfigError> {
    let Some(from) = from else {
        return Ok(vec![TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }]);
    };
    if from.is_empty() {
        return Err(path.error("must not be empty (omit it for the Authorization header)"));
    }
    let mut sources = Vec::with_capacity(from.len());
    for (i, f) in from.iter().enumerate() {
        let fp = path.index(i);
        let source = match (&f.header, &f.query, &f.cookie) {
            (Some(h), None, None) => {
                if let Some(problem) = header_name_problem(h) {
                    return Err(fp.field("header").error(format!("'{h}': {problem}")));
                }
                if h.starts_with(':') || h == "cookie" {
                    return Err(fp
                        .field("header")
                        .error(format!("tokens cannot be read from '{h}'")));
                }
                let prefix = f.prefix.clone().unwrap_or_default();
                if prefix.bytes().any(|b| b.is_ascii_control()) {
                    return Err(fp
                        .field("prefix")
                        .error("must not contain control characters"));
                }
                TokenSource::Header {
                    name: h.clone(),
                    prefix,
                }
            }
            (None, Some(_), None) | (None, None, Some(_)) if f.prefix.is_some() => {
                return Err(fp
                    .field("prefix")
                    .error("only a 'header' location takes a prefix"));
            }
            (None, Some(q), None) => {
                if q.is_empty() {
                    return Err(fp.field("query").error("must not be empty"));
                }
                TokenSource::Query(q.clone())
            }
            (None, None, Some(c)) => {
                let valid = !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
                if !valid {
                    return Err(fp
                        .field("cookie")
                        .error(format!("'{c}' is not a valid cookie name")));
                }
                TokenSource::Cookie(c.clone())
            }
            _ => return Err(fp.error("exactly one of 'header', 'query' or 'cookie' is required")),
        };
        if sources.contains(&source) {
            return Err(fp.error("duplicate token location"));
        }
        sources.push(source);
    }
    Ok(sources)
}

fn claim_path(name: &str, path: &FieldPath) -> Result<ClaimPath, ConfigError> {
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err(path.error(format!(
            "'{name}' must be a claim name or a dotted path without empty segments"
        )));
    }
    Ok(ClaimPath::new(name))
}

fn compile_claim_rule(c: &ClaimConfig, path: &FieldPath) -> Result<ClaimRule, ConfigError> {
    let accepted = match (&c.exact, &c.any_of) {
        (Some(v), None) => vec![v.clone()],
        (None, Some(list)) if list.is_empty() => {
            return Err(path.field("any_of").error("must not be empty"));
        }
        (None, Some(list)) => list.clone(),
        _ => return Err(path.error("exactly one of 'exact' or 'any_of' is required")),
    };
    Ok(ClaimRule {
        claim: claim_path(&c.claim, &path.field("claim"))?,
        accepted,
        space_delimited: c.space_delimited,
    })
}

/// Validates every output header and returns them, deduplicated.
fn check_output_headers(
    providers: &[Provider],
    path: &FieldPath,
) -> Result<Vec<String>, ConfigError> {
    let token_headers: Vec<&str> = providers
        .iter()
        .flat_map(|p| &p.from)
        .filter_map(|s| match s {
            TokenSource::Header { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut all: Vec<String> = Vec::new();
    for p in providers {
        let pp = path.index(p.index);
        let mut own: Vec<&str> = Vec::new();
        let outputs = p
            .claims_to_headers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.header.as_str(),
                    pp.field("claims_to_headers").index(i).field("header"),
                )
            })
            .chain(
                p.payload_header
                    .as_deref()
                    .map(|h| (h, pp.field("payload_header"))),
            );
        for (name, hp) in outputs {
            if let Some(problem) = header_name_problem(name) {
                return Err(hp.error(format!("'{name}': {problem}")));
            }
            if pwf_shared::headers::is_reserved_output(name) {
                return Err(hp.error(format!("'{name}' cannot be written")));
            }
            if token_headers.contains(&name) {
                return Err(hp.error(format!("'{name}' is a token location")));
            }
            if own.contains(&name) {
                return Err(hp.error(format!("'{name}' is written twice by this provider")));
            }
            own.push(name);
            if !all.iter().any(|h| h == name) {
                all.push(name.to_string());
            }
        }
    }
    Ok(all)
}

fn compile_rule(
    r: &RuleConfig,
    providers: &[Provider],
    path: &FieldPath,
) -> Result<Rule, ConfigError> {
    let matcher = r.match_.compile(&path.field("match"))?;
    let action = match (&r.requires, r.bypass) {
        (Some(_), true) => return Err(path.error("'bypass' and 'requires' cannot be combined")),
        (None, false) => return Err(path.error("one of 'requires' or 'bypass: true' is required")),
        (None, true) => {
            if r.allow_missing || r.allow_missing_or_failed {
                return Err(
                    path.error("'allow_missing' and 'allow_missing_or_failed' need 'requires'")
                );
            }
            RuleAction::Bypass
        }
        (Some(req), false) => {
            if r.allow_missing && r.allow_missing_or_failed {
                return Err(path.error(
                    "'allow_missing' and 'allow_missing_or_failed' cannot be combined (the latter includes the former)",
                ));
            }
            RuleAction::Require {
                requirement: compile_requirement(req, providers, &path.field("requires"))?,
                allow_missing: r.allow_missing || r.allow_missing_or_failed,
                allow_failed: r.allow_missing_or_failed,
            }
        }
    };
    Ok(Rule { matcher, action })
}

fn compile_requirement(
    req: &RequiresConfig,
    providers: &[Provider],
    path: &FieldPath,
) -> Result<Requirement, ConfigError> {
    let lookup = |name: &str, p: &FieldPath| {
        providers
            .iter()
            .position(|q| q.name == name)
            .ok_or_else(|| p.error(format!("unknown provider '{name}'")))
    };
    let list = |names: &[String], p: &FieldPath| -> Result<Vec<usize>, ConfigError> {
        if names.is_empty() {
            return Err(p.error("must not be empty"));
        }
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let index = lookup(name, &p.index(i))?;
            if out.contains(&index) {
                return Err(p.index(i).error(format!("duplicate provider '{name}'")));
            }
            out.push(index);
        }
        Ok(out)
    };
    match (&req.provider, &req.any_of, &req.all_of) {
        (Some(name), None, None) => Ok(Requirement::Provider(lookup(
            name,
            &path.field("provider"),
        )?)),
        (None, Some(names), None) => Ok(Requirement::AnyOf(list(names, &path.field("any_of"))?)),
        (None, None, Some(names)) => Ok(Requirement::AllOf(list(names, &path.field("all_of"))?)),
        _ => Err(path.error("exactly one of 'provider', 'any_of' or 'all_of' is required")),
    }
}
