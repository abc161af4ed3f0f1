//! Configuration: serde types as users write them, validated and compiled
//! into a [`Policy`] at configure time (one combined automaton over every
//! detector, per-route profiles as detector bit sets, the hash key resolved).

use crate::detectors::{Validator, BUILTINS};
use crate::redact::{Action, Pass};
use crate::scanner::{Catalog, Detector, DetectorSet, Scanner};
use pwf_shared::config::check_name;
use pwf_shared::headers::header_name_problem;
use pwf_shared::matcher::{RequestMatch, RequestMatcher};
use pwf_shared::secret::{EnvLookup, SecretSource};
use pwf_shared::{ConfigError, FieldPath};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Largest `max_buffer_bytes`: Envoy's own buffer limits are far below this.
const MAX_BUFFER_CAP: usize = 64 << 20;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings of built-in detectors by name; every built-in that is not
    /// opt-in is on with `default_action` unless listed here.
    #[serde(default)]
    pub detectors: BTreeMap<String, DetectorConfig>,
    /// The action of built-in detectors that do not set one.
    #[serde(default)]
    pub default_action: Option<ActionConfig>,
    /// Further detectors: a bounded regex, a validator and an action.
    #[serde(default)]
    pub custom_detectors: Vec<CustomDetectorConfig>,
    /// Key of the `hash` action's HMAC. Required when any action is `hash`.
    pub hash_key: Option<SecretSource>,
    /// JSON field mode: values of these keys are redacted wherever they appear in a JSON body.
    pub json_fields: Option<JsonFieldsConfig>,
    /// What is scanned on requests. Default: nothing.
    #[serde(default)]
    pub request: Option<ScopeConfig>,
    /// What is scanned on responses. Default: the body.
    #[serde(default)]
    pub response: Option<ScopeConfig>,
    /// Media types whose bodies are scanned (`type/*` wildcards, `+json` suffix
    /// types with `application/*+json`). Default: JSON, text, form and XML.
    pub content_types: Option<Vec<String>>,
    /// Largest body buffered when a mode needs the whole body (`block`
    /// actions, JSON field mode). Default 1 MiB.
    #[serde(default = "default_max_buffer_bytes")]
    pub max_buffer_bytes: usize,
    /// Past `max_buffer_bytes`.
    #[serde(default)]
    pub on_over_limit: OverLimit,
    /// Bodies with a `content-encoding` other than identity.
    #[serde(default)]
    pub on_unreadable_encoding: Unreadable,
    /// When response bodies are scanned, remove `accept-encoding` from the
    /// request so the upstream answers uncompressed (Envoy's compressor,
    /// placed before dlp-redact, can compress for the client). Default true.
    #[serde(default = "default_true")]
    pub identity_encoding: bool,
    /// A body that JSON field mode cannot parse.
    #[serde(default)]
    pub on_invalid_json: InvalidJson,
    /// Per-route settings; the first rule whose `match` holds decides.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

fn default_true() -> bool {
    true
}

fn default_max_buffer_bytes() -> usize {
    1 << 20
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Default: on, except for opt-in detectors (ipv4, ipv6).
    pub enabled: Option<bool>,
    /// Default: `default_action`.
    pub action: Option<ActionKind>,
    /// `mask` only: letters and digits left visible at the end.
    pub keep_last: Option<usize>,
    /// `mask` only: the ASCII character written over each letter and digit. Default `*`.
    pub mask_char: Option<char>,
}

/// The action of a detector that may leave it to `default_action`.
fn action_or_default(
    action: Option<ActionKind>,
    keep_last: Option<usize>,
    mask_char: Option<char>,
    default: &Action,
    path: &FieldPath,
) -> Result<Action, ConfigError> {
    match action {
        Some(action) => ActionConfig {
            action,
            keep_last,
            mask_char,
        }
        .compile(path),
        None if keep_last.is_some() || mask_char.is_some() => Err(path
            .field("action")
            .error("required with 'keep_last' or 'mask_char'")),
        None => Ok(default.clone()),
    }
}

/// What happens to a detected value.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    pub action: ActionKind,
    /// `mask` only: letters and digits left visible at the end.
    pub keep_last: Option<usize>,
    /// `mask` only: the ASCII character written over each letter and digit. Default `*`.
    pub mask_char: Option<char>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Letters and digits become `mask_char`; separators and the last `keep_last` stay.
    Mask,
    /// `[HASH:<detector>:<16 hex>]`, a keyed HMAC-SHA256 prefix: equal values stay joinable.
    Hash,
    /// The value is deleted.
    Remove,
    /// `[REDACTED:<detector>]`.
    #[default]
    Tag,
    /// The request (403) or response (502) is refused with a JSON error.
    Block,
    /// Counted and logged by detector name; the value is left as is.
    Alert,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorConfig {
    /// Metric and tag name: 1 to 64 of a-z, 0-9, `_`, `-`.
    pub name: String,
    /// Rust regex syntax, matched on bytes, ASCII classes. Must have a maximum
    /// length (bounded repetitions like `{1,64}`) so streaming can hold back enough.
    pub regex: String,
    /// Check run on each match before it counts.
    #[serde(default = "default_validator")]
    pub validator: Validator,
    /// Compare letters case-insensitively.
    #[serde(default)]
    pub ignore_case: bool,
    /// Default: `default_action`.
    pub action: Option<ActionKind>,
    /// `mask` only.
    pub keep_last: Option<usize>,
    /// `mask` only.
    pub mask_char: Option<char>,
}

fn default_validator() -> Validator {
    Validator::None
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JsonFieldsConfig {
    /// Object keys, compared case-insensitively, at any depth.
    pub keys: Vec<String>,
    /// What happens to their values (`remove` deletes the member).
    pub action: ActionKind,
    /// `mask` only.
    pub keep_last: Option<usize>,
    /// `mask` only.
    pub mask_char: Option<char>,
}

/// What is scanned in one direction.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// Scan the body (if its content type is selected).
    #[serde(default)]
    pub body: bool,
    /// Buffer the whole body (up to `max_buffer_bytes`) even when no mode
    /// needs it. Needed when a filter after dlp-redact ends bodies with
    /// trailers, as Envoy's decompressor does: a streamed body cannot be
    /// completed after its trailers.
    #[serde(default)]
    pub buffer: bool,
    /// Header names whose values are scanned.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Request only: query parameter names whose decoded values are scanned.
    #[serde(default)]
    pub query: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// Fail closed: 413 for requests (early, from Content-Length, when it is
    /// known), 502 for responses.
    #[default]
    Block,
    /// Fail open to streaming: keep redacting chunk by chunk; `block`
    /// actions act as `tag` and JSON field mode is not applied.
    Stream,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Unreadable {
    /// Pass the body unscanned (counted in `skipped_encoding`).
    #[default]
    Skip,
    /// 415 for requests, 502 for responses.
    Block,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum InvalidJson {
    /// 400 for requests, 502 for responses.
    #[default]
    Block,
    /// Apply pattern detection to the body as text.
    ScanAsText,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// For logs.
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matches: RequestMatch,
    /// Do nothing for matching requests.
    #[serde(default)]
    pub skip: bool,
    /// Replaces the top-level `request` for matching requests.
    pub request: Option<ScopeConfig>,
    /// Replaces the top-level `response` for matching requests.
    pub response: Option<ScopeConfig>,
    /// Only these detectors (names) are active for matching requests.
    pub detectors: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------
// Compiled form

/// What one direction scans, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub body: bool,
    pub buffer: bool,
    /// Lower-cased header names.
    pub headers: Vec<String>,
    pub query: Vec<String>,
}

/// The settings one request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub request: Scope,
    pub response: Scope,
    pub active: DetectorSet,
    /// Index into [`Policy::scanners`].
    pub scanner: usize,
}

#[derive(Debug)]
pub struct Rule {
    pub name: Option<String>,
    pub matcher: RequestMatcher,
    /// None: skip the filter.
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone)]
pub struct JsonFields {
    /// Lower-cased keys.
    pub keys: Vec<String>,
    pub action: Action,
}

/// A media type selector: `type/subtype`, `type/*`, or `type/*+suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    kind: String,
    subtype: Option<String>,
    suffix: Option<String>,
}

impl MediaRange {
    fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let (kind, sub) = lower.split_once('/')?;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        if !token(kind) {
            return None;
        }
        if sub == "*" {
            return Some(Self {
                kind: kind.to_string(),
                subtype: None,
                suffix: None,
            });
        }
        if let Some(suffix) = sub.strip_prefix("*+") {
            return token(suffix).then(|| Self {
                kind: kind.to_string(),
                subtype: None,
                suffix: Some(suffix.to_string()),
            });
        }
        token(sub).then(|| Self {
            kind: kind.to_string(),
            subtype: Some(sub.to_string()),
            suffix: None,
        })
    }

    /// `media_type` is already lower-cased and stripped of parameters.
    pub fn matches(&self, media_type: &str) -> bool {
        let Some((kind, sub)) = media_type.split_once('/') else {
            return false;
        };
        if kind != self.kind {
            return false;
        }
        match (&self.subtype, &self.suffix) {
            (Some(s), _) => s == sub,
            (None, Some(suffix)) => sub.rsplit_once('+').is_some_and(|(_, got)| got == suffix),
            (None, None) => true,
        }
    }
}

const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/*+json",
    "text/*",
    "application/x-www-form-urlencoded",
    "application/xml",
];

/// Everything the filter needs, compiled at configure time.
#[derive(Debug)]
pub struct Policy {
    pub catalog: Catalog,
    /// One automaton per distinct set of active detectors; profiles index it.
    pub scanners: Vec<Scanner>,
    pub defaults: Profile,
    pub rules: Vec<Rule>,
    pub json_fields: Option<JsonFields>,
    pub hash_key: Option<Vec<u8>>,
    pub content_types: Vec<MediaRange>,
    pub max_buffer_bytes: usize,
    pub on_over_limit: OverLimit,
    pub on_unreadable_encoding: Unreadable,
    pub on_invalid_json: InvalidJson,
    pub identity_encoding: bool,
}

impl Config {
    /// Parses and compiles plugin configuration bytes.
    pub fn load(bytes: Option<&[u8]>, env: EnvLookup) -> Result<Policy, ConfigError> {
        pwf_shared::config::parse_json::<Config>(bytes)?.compile(env)
    }

    pub fn compile(&self, env: EnvLookup) -> Result<Policy, ConfigError> {
        let root = FieldPath::root();
        let default_action = match &self.default_action {
            Some(a) => a.compile(&root.field("default_action"))?,
            None => Action::Tag,
        };

        for name in self.detectors.keys() {
            if !BUILTINS.iter().any(|b| b.name == name) {
                return Err(root.field("detectors").field(name).error(format!(
                    "unknown detector '{name}'; built-in detectors are {}",
                    builtin_names()
                )));
            }
        }

        let mut catalog = Catalog::default();
        let mut enabled = DetectorSet::EMPTY;
        for builtin in BUILTINS {
            let path = root.field("detectors").field(builtin.name);
            let cfg = self
                .detectors
                .get(builtin.name)
                .cloned()
                .unwrap_or_default();
            let action = action_or_default(
                cfg.action,
                cfg.keep_last,
                cfg.mask_char,
                &default_action,
                &path,
            )?;
            let id = catalog
                .add(
                    Detector::builtin(builtin, action),
                    builtin.pattern.to_string(),
                )
                .map_err(|reason| path.error(reason))?;
            if cfg.enabled.unwrap_or(!builtin.opt_in) {
                enabled.insert(id);
            }
        }

        for (i, custom) in self.custom_detectors.iter().enumerate() {
            let path = root.field("custom_detectors").index(i);
            check_name(&custom.name, "detector name", &path.field("name"))?;
            if catalog.detector_id(&custom.name).is_some() {
                return Err(path
                    .field("name")
                    .error(format!("detector name '{}' is already used", custom.name)));
            }
            let action = action_or_default(
                custom.action,
                custom.keep_last,
                custom.mask_char,
                &default_action,
                &path,
            )?;
            let detector = Detector {
                name: custom.name.clone(),
                validator: custom.validator,
                action,
                builtin: false,
            };
            let pattern = if custom.ignore_case {
                format!("(?i:{})", custom.regex)
            } else {
                custom.regex.clone()
            };
            let id = catalog.add(detector, pattern).map_err(|reason| {
                if reason.starts_with("at most") {
                    root.field("custom_detectors").error(reason)
                } else {
                    path.field("regex").error(reason)
                }
            })?;
            enabled.insert(id);
        }

        let json_fields = match &self.json_fields {
            Some(j) => Some(j.compile(&root.field("json_fields"))?),
            None => None,
        };

        let needs_hash = catalog.detectors().iter().any(|d| d.action == Action::Hash)
            || json_fields
                .as_ref()
                .is_some_and(|j| j.action == Action::Hash);
        let hash_key = match &self.hash_key {
            Some(src) => {
                let (key, _) = src.resolve(env, &root.field("hash_key"))?;
                if key.len() < 16 {
                    return Err(root
                        .field("hash_key")
                        .error("the key must be at least 16 bytes long"));
                }
                Some(key.into_bytes())
            }
            None if needs_hash => {
                return Err(root
                    .field("hash_key")
                    .error("required: an action is 'hash'"));
            }
            None => None,
        };

        let mut scanners = Scanners::default();
        let default_scanner = scanners.for_set(&catalog, enabled, &root)?;
        let defaults = Profile {
            request: compile_scope(
                self.request.as_ref(),
                &ScopeConfig::default(),
                &root.field("request"),
                true,
            )?,
            response: compile_scope(
                self.response.as_ref(),
                &ScopeConfig {
                    body: true,
                    ..ScopeConfig::default()
                },
                &root.field("response"),
                false,
            )?,
            active: enabled,
            scanner: default_scanner,
        };

        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let path = root.field("rules").index(i);
            rules.push(rule.compile(&path, &defaults, &catalog, &mut scanners)?);
        }

        let content_types = match &self.content_types {
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, text) in list.iter().enumerate() {
                    out.push(MediaRange::parse(text).ok_or_else(|| {
                        root.field("content_types").index(i).error(format!(
                            "'{text}' is not a media type like 'application/json', 'text/*' or 'application/*+json'"
                        ))
                    })?);
                }
                out
            }
            None => DEFAULT_CONTENT_TYPES
                .iter()
                .filter_map(|t| MediaRange::parse(t))
                .collect(),
        };

        if self.max_buffer_bytes == 0 || self.max_buffer_bytes > MAX_BUFFER_CAP {
            return Err(root
                .field("max_buffer_bytes")
                .error(format!("must be between 1 and {MAX_BUFFER_CAP} bytes")));
        }

        Ok(Policy {
            catalog,
            scanners: scanners.list,
            defaults,
            rules,
            json_fields,
            hash_key,
            content_types,
            max_buffer_bytes: self.max_buffer_bytes,
            on_over_limit: self.on_over_limit,
            on_unreadable_encoding: self.on_unreadable_encoding,
            on_invalid_json: self.on_invalid_json,
            identity_encoding: self.identity_encoding,
        })
    }
}

fn builtin_names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The automata of the distinct detector sets of the profiles.
#[derive(Default)]
struct Scanners {
    list: Vec<Scanner>,
    sets: Vec<DetectorSet>,
}

impl Scanners {
    /// The index of the scanner for `set`, compiled on first use.
    fn for_set(
        &mut self,
        catalog: &Catalog,
        set: DetectorSet,
        path: &FieldPath,
    ) -> Result<usize, ConfigError> {
        if let Some(i) = self.sets.iter().position(|s| *s == set) {
            return Ok(i);
        }
        let scanner = Scanner::build(catalog, set).map_err(|(id, reason)| {
            let name = catalog.detector(id).map(|d| d.name.as_str()).unwrap_or("?");
            path.error(format!("detector '{name}': {reason}"))
        })?;
        self.list.push(scanner);
        self.sets.push(set);
        Ok(self.list.len() - 1)
    }
}

impl ActionConfig {
    pub fn compile(&self, path: &FieldPath) -> Result<Action, ConfigError> {
        if self.action != ActionKind::Mask {
            if self.keep_last.is_some() {
                return Err(path
                    .field("keep_last")
                    .error("only allowed with action 'mask'"));
            }
            if self.mask_char.is_some() {
                return Err(path
                    .field("mask_char")
                    .error("only allowed with action 'mask'"));
            }
        }
        Ok(match self.action {
            ActionKind::Mask => {
                let mask_char = self.mask_char.unwrap_or('*');
                if !mask_char.is_ascii_graphic() {
                    return Err(path
                        .field("mask_char")
                        .error("must be a visible ASCII character"));
                }
                let keep_last = self.keep_last.unwrap_or(0);
                if keep_last > 64 {
                    return Err(path.field("keep_last").error("must be at most 64"));
                }
                Action::Mask {
                    keep_last,
                    mask_char: mask_char as u8,
                }
            }
            ActionKind::Hash => Action::Hash,
            ActionKind::Remove => Action::Remove,
            ActionKind::Tag => Action::Tag,
            ActionKind::Block => Action::Block,
            ActionKind::Alert => Action::Alert,
        })
    }
}

impl JsonFieldsConfig {
    fn compile(&self, path: &FieldPath) -> Result<JsonFields, ConfigError> {
        if self.keys.is_empty() {
            return Err(path.field("keys").error("must name at least one key"));
        }
        let mut keys = Vec::with_capacity(self.keys.len());
        for (i, key) in self.keys.iter().enumerate() {
            if key.is_empty() {
                return Err(path.field("keys").index(i).error("must not be empty"));
            }
            keys.push(key.to_lowercase());
        }
        let action = ActionConfig {
            action: self.action,
            keep_last: self.keep_last,
            mask_char: self.mask_char,
        }
        .compile(path)?;
        Ok(JsonFields { keys, action })
    }
}

fn compile_scope(
    given: Option<&ScopeConfig>,
    default: &ScopeConfig,
    path: &FieldPath,
    is_request: bool,
) -> Result<Scope, ConfigError> {
    let cfg = given.unwrap_or(default);
    let mut headers = Vec::with_capacity(cfg.headers.len());
    for (i, name) in cfg.headers.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if let Some(problem) = header_name_problem(&lower) {
            return Err(path
                .field("headers")
                .index(i)
                .error(format!("'{name}': {problem}")));
        }
        if lower.starts_with(':') {
            return Err(path
                .field("headers")
                .index(i)
                .error(format!("'{name}': pseudo-headers cannot be scanned")));
        }
        headers.push(lower);
    }
    if !is_request && !cfg.query.is_empty() {
        return Err(path
            .field("query")
            .error("query parameters exist on requests only"));
    }
    for (i, name) in cfg.query.iter().enumerate() {
        if name.is_empty() {
            return Err(path.field("query").index(i).error("must not be empty"));
        }
    }
    Ok(Scope {
        body: cfg.body,
        buffer: cfg.buffer,
        headers,
        query: cfg.query.clone(),
    })
}

impl RuleConfig {
    fn compile(
        &self,
        path: &FieldPath,
        defaults: &Profile,
        catalog: &Catalog,
        scanners: &mut Scanners,
    ) -> Result<Rule, ConfigError> {
        let matcher = self.matches.compile(&path.field("match"))?;
        let profile = if self.skip {
            if self.request.is_some() || self.response.is_some() || self.detectors.is_some() {
                return Err(path.error(
                    "a rule with 'skip' cannot also set 'request', 'response' or 'detectors'",
                ));
            }
            None
        } else {
            let request = match &self.request {
                Some(s) => compile_scope(Some(s), s, &path.field("request"), true)?,
                None => defaults.request.clone(),
            };
            let response = match &self.response {
                Some(s) => compile_scope(Some(s), s, &path.field("response"), false)?,
                None => defaults.response.clone(),
            };
            let active = match &self.detectors {
                Some(names) => {
                    let mut set = DetectorSet::EMPTY;
                    for (i, name) in names.iter().enumerate() {
                        let id = catalog.detector_id(name).ok_or_else(|| {
                            path.field("detectors")
                                .index(i)
                                .error(format!("unknown detector '{name}'"))
                        })?;
                        set.insert(id);
                    }
                    set
                }
                None => defaults.active,
            };
            let scanner = scanners.for_set(catalog, active, &path.field("detectors"))?;
            Some(Profile {
                request,
                response,
                active,
                scanner,
            })
        };
        Ok(Rule {
            name: self.name.clone(),
            matcher,
            profile,
        })
    }
}

impl Policy {
    /// The scan settings of a profile.
    pub fn pass(&self, profile: &Profile) -> Option<Pass<'_>> {
        Some(Pass {
            catalog: &self.catalog,
            scanner: self.scanners.get(profile.scanner)?,
            hash_key: self.hash_key.as_deref(),
        })
    }

    /// The profile of a request: the first matching rule's, or the defaults;
    /// None when a `skip` rule matches.
    pub fn profile_for(&self, request: &pwf_shared::HeaderList) -> Option<&Profile> {
        for rule in &self.rules {
            if rule.matcher.matches(request) {
                return rule.profile.as_ref();
            }
        }
        Some(&self.defaults)
    }

    /// Whether a body of this `content-type` value is scanned.
    pub fn scans_content_type(&self, content_type: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(content_type) else {
            return false;
        };
        let media = text
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.content_types.iter().any(|r| r.matches(&media))
    }
}
