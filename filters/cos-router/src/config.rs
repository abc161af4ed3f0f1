//! Configuration: serde types as users write them, validated and compiled
//! into [`Compiled`] at configure time (matchers compiled, CIDRs parsed,
//! header names interned into read slots, cumulative weights summed).

use crate::cidr::Cidr;
use crate::conditions::{ClaimCondition, Conditions, HeaderCondition, NamedCondition, Slots};
use crate::cookie::{self, SameSite, SetCookie};
use pwf_shared::config::check_name;
use pwf_shared::headers::{header_name_problem, is_reserved_output, value_problem};
use pwf_shared::matcher::HeaderMatch;
use pwf_shared::{ConfigError, FieldPath, StringMatch};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Request header set to the class name on every request (Envoy's route
    /// table matches on it; access logs read it with `%REQ(...)%`).
    #[serde(default = "default_class_header")]
    pub class_header: String,
    /// Request header set to the class's `cluster`, for a route with
    /// `cluster_header`. Required when any class names a cluster.
    pub cluster_header: Option<String>,
    /// Tried in order; the first class whose conditions all hold wins.
    #[serde(default)]
    pub classes: Vec<ClassConfig>,
    /// The class of requests no class matches.
    pub default_class: DefaultClassConfig,
    /// Independent experiments; each request may be in several.
    #[serde(default)]
    pub experiments: Vec<ExperimentConfig>,
    /// Request header listing every assigned variant: `checkout=b;search=control`.
    #[serde(default = "default_variants_header")]
    pub variants_header: String,
    /// Response header with the same list, for clients that report exposures.
    pub exposure_header: Option<String>,
    /// An id for requests without any other experiment key, kept in a cookie.
    pub anonymous_id: Option<AnonymousIdConfig>,
    /// A header that lets testers pick variants (`checkout=b,search=control`).
    #[serde(rename = "override")]
    pub override_: Option<OverrideConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    pub name: String,
    /// Conditions that must all hold; an empty match matches every request.
    #[serde(rename = "match", default)]
    pub matches: MatchConfig,
    /// Value of `cluster_header`: the upstream cluster of the class.
    pub cluster: Option<String>,
    /// Rewrites `:authority` (virtual host selection, upstream Host).
    pub authority: Option<String>,
    /// Further request headers: priority or upstream hints. Every header any
    /// class sets is removed from requests of the classes that do not set it.
    #[serde(default)]
    pub set_headers: Vec<SetHeaderConfig>,
}

/// A class without conditions.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DefaultClassConfig {
    pub name: String,
    pub cluster: Option<String>,
    pub authority: Option<String>,
    #[serde(default)]
    pub set_headers: Vec<SetHeaderConfig>,
}

/// What a class does to the request, besides setting `class_header`.
struct Actions<'a> {
    cluster: Option<&'a String>,
    authority: Option<&'a String>,
    set_headers: &'a [SetHeaderConfig],
}

impl ClassConfig {
    fn actions(&self) -> Actions<'_> {
        Actions {
            cluster: self.cluster.as_ref(),
            authority: self.authority.as_ref(),
            set_headers: &self.set_headers,
        }
    }
}

impl DefaultClassConfig {
    fn actions(&self) -> Actions<'_> {
        Actions {
            cluster: self.cluster.as_ref(),
            authority: self.authority.as_ref(),
            set_headers: &self.set_headers,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetHeaderConfig {
    pub name: String,
    pub value: String,
}

/// Conditions on the request; all given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Claims of a token jwt-auth verified (its filter state `jwt_auth_claims`).
    #[serde(default)]
    pub claims: Vec<ClaimMatchConfig>,
    /// Request headers (the first value of a repeated header).
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    /// Query parameters, percent-decoded (the first of a repeated name).
    #[serde(default)]
    pub query: Vec<QueryMatchConfig>,
    /// `:path` without the query string.
    pub path: Option<StringMatch>,
    /// `:authority` without the port, case-insensitive.
    pub host: Option<StringMatch>,
    /// Any of these methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The client address (`source.address`) is in any of these ranges.
    #[serde(default)]
    pub source_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimMatchConfig {
    /// Claim name, dotted for nested claims (`org.tier`).
    pub claim: String,
    /// Only this jwt-auth provider's token; default any verified token.
    pub provider: Option<String>,
    /// Without `value` the claim must be present (or absent with `absent`).
    pub value: Option<StringMatch>,
    #[serde(default)]
    pub absent: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct QueryMatchConfig {
    pub name: String,
    pub value: Option<StringMatch>,
    #[serde(default)]
    pub absent: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub name: String,
    /// Mixed into the hash: a new salt reshuffles who gets which variant.
    pub salt: String,
    /// Only requests of these classes are eligible; default every class.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Further eligibility conditions.
    #[serde(rename = "match", default)]
    pub matches: MatchConfig,
    /// Where the assignment key comes from, tried in order.
    pub key: Vec<KeyConfig>,
    pub variants: Vec<VariantConfig>,
    /// Request header set to this experiment's variant (for route matches).
    pub header: Option<String>,
}

/// Exactly one of `claim`, `header`, `cookie` or `anonymous_id`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub claim: Option<String>,
    /// With `claim`: only this jwt-auth provider's token.
    pub provider: Option<String>,
    pub header: Option<String>,
    pub cookie: Option<String>,
    /// The anonymous id (`anonymous_id` at the top level), created if absent.
    #[serde(default)]
    pub anonymous_id: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AnonymousIdConfig {
    #[serde(default = "default_cookie_name")]
    pub cookie: String,
    #[serde(default = "default_max_age_s")]
    pub max_age_s: u64,
    #[serde(default = "default_cookie_path")]
    pub path: String,
    pub domain: Option<String>,
    #[serde(default = "default_true")]
    pub secure: bool,
    #[serde(default = "default_true")]
    pub http_only: bool,
    #[serde(default = "default_same_site")]
    pub same_site: SameSiteConfig,
    /// Request header carrying the id upstream (also on the first request,
    /// before the client has the cookie).
    pub header: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SameSiteConfig {
    Strict,
    Lax,
    None,
    /// No `SameSite` attribute.
    Omit,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    #[serde(default = "default_override_header")]
    pub header: String,
    /// Client addresses allowed to override; from anywhere else the header is ignored.
    pub allowed_sources: Vec<String>,
}

fn default_class_header() -> String {
    "x-cos-class".into()
}
fn default_variants_header() -> String {
    "x-cos-experiments".into()
}
fn default_override_header() -> String {
    "x-cos-override".into()
}
fn default_cookie_name() -> String {
    "cos_uid".into()
}
fn default_cookie_path() -> String {
    "/".into()
}
fn default_max_age_s() -> u64 {
    365 * 86_400
}
fn default_same_site() -> SameSiteConfig {
    SameSiteConfig::Lax
}
fn default_true() -> bool {
    true
}

pub const MAX_CLASSES: usize = 64;
pub const MAX_EXPERIMENTS: usize = 32;
pub const MAX_VARIANTS: usize = 32;
/// Sum of an experiment's weights, so buckets stay exact in a u64 modulo.
pub const MAX_TOTAL_WEIGHT: u64 = 1_000_000;
const MAX_VALUE_BYTES: usize = 4096;

/// The whole configuration, compiled.
#[derive(Debug)]
pub struct Compiled {
    /// Header names read lazily, one host call each at most.
    pub slots: Vec<String>,
    /// The configured classes, then the default class (empty conditions).
    pub classes: Vec<Class>,
    /// Request headers the classes write: set for one class, removed for the others.
    pub class_outputs: Vec<String>,
    pub experiments: Vec<Experiment>,
    pub variants_header: String,
    pub exposure_header: Option<String>,
    pub anonymous: Option<Anonymous>,
    pub override_: Option<Override>,
}

#[derive(Debug)]
pub struct Class {
    pub name: String,
    pub conditions: Conditions,
    /// One value per `class_outputs` name: set it, or remove it (`None`).
    pub outputs: Vec<Option<String>>,
    pub authority: Option<String>,
}

#[derive(Debug)]
pub struct Experiment {
    pub name: String,
    pub salt: String,
    /// Eligible class indexes; empty means every class.
    pub classes: Vec<usize>,
    pub conditions: Conditions,
    pub key: Vec<KeySource>,
    pub variants: Vec<Variant>,
    /// Sum of the weights: buckets are `0..total_weight`.
    pub total_weight: u64,
    pub header: Option<String>,
}

#[derive(Debug)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    /// Buckets below this (and at or above the previous variant's) are this variant's.
    pub upper: u64,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    Claim {
        provider: Option<String>,
        path: Vec<String>,
    },
    /// A header slot.
    Header(usize),
    Cookie(String),
    AnonymousId,
}

#[derive(Debug)]
pub struct Anonymous {
    pub cookie: String,
    /// `; Max-Age=...; Path=/; ...`, appended to `<cookie>=<id>`.
    pub attributes: String,
    pub header: Option<String>,
}

#[derive(Debug)]
pub struct Override {
    pub slot: usize,
    pub allowed_sources: Vec<Cidr>,
}

impl Config {
    pub fn load(bytes: Option<&[u8]>) -> Result<Compiled, ConfigError> {
        pwf_shared::config::parse_json::<Config>(bytes)?.compile()
    }

    pub fn compile(&self) -> Result<Compiled, ConfigError> {
        let root = FieldPath::root();
        let mut slots = Slots::default();
        let mut outputs = OutputNames::default();

        outputs.claim(&self.class_header, &root.field("class_header"))?;
        if let Some(h) = &self.cluster_header {
            outputs.claim(h, &root.field("cluster_header"))?;
        }
        outputs.claim(&self.variants_header, &root.field("variants_header"))?;
        if let Some(h) = &self.exposure_header {
            check_header_name(h, &root.field("exposure_header"))?;
            if is_reserved_output(h) {
                return Err(root.field("exposure_header").error(format!(
                    "'{h}' cannot be written: it is a pseudo-header, cookie, framing, hop-by-hop or routing header"
                )));
            }
        }
        if self.classes.len() > MAX_CLASSES {
            return Err(root
                .field("classes")
                .error(format!("at most {MAX_CLASSES} classes")));
        }

        // Names of headers the class actions may set, across all classes.
        let mut class_outputs: Vec<String> = vec![self.class_header.clone()];
        if let Some(h) = &self.cluster_header {
            class_outputs.push(h.clone());
        }
        let all_actions = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.actions(), root.field("classes").index(i)))
            .chain(std::iter::once((
                self.default_class.actions(),
                root.field("default_class"),
            )));
        for (actions, path) in all_actions {
            for (j, h) in actions.set_headers.iter().enumerate() {
                let hp = path.field("set_headers").index(j);
                if actions.set_headers.iter().take(j).any(|o| o.name == h.name) {
                    return Err(hp.field("name").error(format!("'{}' is set twice", h.name)));
                }
                if !class_outputs.contains(&h.name) {
                    outputs.claim(&h.name, &hp.field("name"))?;
                    class_outputs.push(h.name.clone());
                } else if h.name == self.class_header
                    || Some(&h.name) == self.cluster_header.as_ref()
                {
                    return Err(hp.field("name").error(format!(
                        "'{}' is class_header or cluster_header; the filter sets it",
                        h.name
                    )));
                }
            }
        }

        let mut classes = Vec::with_capacity(self.classes.len() + 1);
        for (i, c) in self.classes.iter().enumerate() {
            let path = root.field("classes").index(i);
            check_class_name(&c.name, &classes, &path.field("name"))?;
            let conditions = compile_match(&c.matches, &path.field("match"), &mut slots)?;
            classes.push(self.compile_class(
                &c.name,
                conditions,
                &c.actions(),
                &class_outputs,
                &path,
            )?);
        }
        let dpath = root.field("default_class");
        check_class_name(&self.default_class.name, &classes, &dpath.field("name"))?;
        classes.push(self.compile_class(
            &self.default_class.name,
            Conditions::default(),
            &self.default_class.actions(),
            &class_outputs,
            &dpath,
        )?);

        let anonymous = match &self.anonymous_id {
            Some(a) => Some(compile_anonymous(
                a,
                &root.field("anonymous_id"),
                &mut outputs,
            )?),
            None => None,
        };

        if self.experiments.len() > MAX_EXPERIMENTS {
            return Err(root
                .field("experiments")
                .error(format!("at most {MAX_EXPERIMENTS} experiments")));
        }
        let mut experiments: Vec<Experiment> = Vec::with_capacity(self.experiments.len());
        for (i, e) in self.experiments.iter().enumerate() {
            let path = root.field("experiments").index(i);
            let compiled = compile_experiment(
                e,
                &path,
                &classes,
                anonymous.is_some(),
                &mut slots,
                &mut outputs,
            )?;
            if experiments.iter().any(|o| o.name == compiled.name) {
                return Err(path
                    .field("name")
                    .error(format!("experiment '{}' is defined twice", e.name)));
            }
            if let Some(other) = experiments.iter().find(|o| o.salt == compiled.salt) {
                return Err(path.field("salt").error(format!(
                    "experiment '{}' has the same salt: the two would assign every user to the same buckets",
                    other.name
                )));
            }
            experiments.push(compiled);
        }

        let override_ = match &self.override_ {
            Some(o) => {
                let path = root.field("override");
                check_header_name(&o.header, &path.field("header"))?;
                if outputs.names.contains(&o.header) {
                    return Err(path
                        .field("header")
                        .error(format!("'{}' is a header this filter writes", o.header)));
                }
                if o.allowed_sources.is_empty() {
                    return Err(path
                        .field("allowed_sources")
                        .error("at least one range is required (e.g. \"10.0.0.0/8\")"));
                }
                Some(Override {
                    slot: slots.slot(&o.header),
                    allowed_sources: compile_cidrs(
                        &o.allowed_sources,
                        &path.field("allowed_sources"),
                    )?,
                })
            }
            None => None,
        };

        self.check_inputs_are_not_outputs(&outputs.names, &root)?;
        Ok(Compiled {
            slots: slots.into_names(),
            classes,
            class_outputs,
            experiments,
            variants_header: self.variants_header.clone(),
            exposure_header: self.exposure_header.clone(),
            anonymous,
            override_,
        })
    }

    /// Conditions and keys read the request before the filter writes it, so
    /// a header it writes would be read as the client sent it: spoofable.
    fn check_inputs_are_not_outputs(
        &self,
        outputs: &[String],
        root: &FieldPath,
    ) -> Result<(), ConfigError> {
        let written = |name: &str, path: FieldPath| {
            if outputs.iter().any(|o| o == name) {
                Err(path.error(format!(
                    "'{name}' is a header this filter writes; a condition on it would read the client's copy"
                )))
            } else {
                Ok(())
            }
        };
        let headers_of = |m: &MatchConfig, path: FieldPath| -> Result<(), ConfigError> {
            for (i, h) in m.headers.iter().enumerate() {
                written(&h.name, path.field("headers").index(i).field("name"))?;
            }
            Ok(())
        };
        for (i, c) in self.classes.iter().enumerate() {
            headers_of(&c.matches, root.field("classes").index(i).field("match"))?;
        }
        for (i, e) in self.experiments.iter().enumerate() {
            let ep = root.field("experiments").index(i);
            headers_of(&e.matches, ep.field("match"))?;
            for (j, k) in e.key.iter().enumerate() {
                if let Some(h) = &k.header {
                    written(h, ep.field("key").index(j).field("header"))?;
                }
            }
        }
        Ok(())
    }

    fn compile_class(
        &self,
        name: &str,
        conditions: Conditions,
        actions: &Actions<'_>,
        class_outputs: &[String],
        path: &FieldPath,
    ) -> Result<Class, ConfigError> {
        let mut values: Vec<Option<String>> = vec![None; class_outputs.len()];
        if let Some(v) = values.first_mut() {
            *v = Some(name.to_owned());
        }
        if let Some(cluster) = actions.cluster {
            let cp = path.field("cluster");
            if self.cluster_header.is_none() {
                return Err(cp.error("needs 'cluster_header' at the top level (the header a route's cluster_header names)"));
            }
            let ok = !cluster.is_empty()
                && cluster.len() <= 255
                && cluster.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(cp.error(format!(
                    "'{cluster}' is not a cluster name (1 to 255 visible ASCII characters, no spaces)"
                )));
            }
            if let Some(v) = values.get_mut(1) {
                *v = Some(cluster.clone());
            }
        }
        for (j, h) in actions.set_headers.iter().enumerate() {
            let vp = path.field("set_headers").index(j).field("value");
            check_value(&h.value, &vp)?;
            if let Some(slot) = class_outputs
                .iter()
                .position(|n| *n == h.name)
                .and_then(|k| values.get_mut(k))
            {
                *slot = Some(h.value.clone());
            }
        }
        let authority = match actions.authority {
            Some(a) => {
                let ap = path.field("authority");
                let ok = !a.is_empty()
                    && a.len() <= 255
                    && a.bytes()
                        .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@'));
                if !ok {
                    return Err(ap.error(format!("'{a}' is not a host[:port]")));
                }
                Some(a.clone())
            }
            None => None,
        };
        Ok(Class {
            name: name.to_owned(),
            conditions,
            outputs: values,
            authority,
        })
    }
}

fn check_class_name(name: &str, earlier: &[Class], path: &FieldPath) -> Result<(), ConfigError> {
    check_name(name, "class name", path)?;
    if earlier.iter().any(|c| c.name == name) {
        return Err(path.error(format!("class '{name}' is defined twice")));
    }
    Ok(())
}

/// Every request header the filter writes, so no two settings write the same one.
#[derive(Default)]
struct OutputNames {
    names: Vec<String>,
}

impl OutputNames {
    fn claim(&mut self, name: &str, path: &FieldPath) -> Result<(), ConfigError> {
        check_header_name(name, path)?;
        if name.starts_with(':') || name == "host" {
            return Err(path.error(format!(
                "'{name}' cannot be written here (use a class's 'authority' to rewrite the host)"
            )));
        }
        if is_reserved_output(name) {
            return Err(path.error(format!(
                "'{name}' cannot be written: it is a cookie, framing, hop-by-hop or routing header"
            )));
        }
        if self.names.iter().any(|n| n == name) {
            return Err(path.error(format!("'{name}' is already written by another setting")));
        }
        self.names.push(name.to_owned());
        Ok(())
    }
}

fn check_header_name(name: &str, path: &FieldPath) -> Result<(), ConfigError> {
    match header_name_problem(name) {
        Some(problem) => Err(path.error(format!("'{name}': {problem}"))),
        None => Ok(()),
    }
}

fn check_value(value: &str, path: &FieldPath) -> Result<(), ConfigError> {
    match value_problem(value.as_bytes(), MAX_VALUE_BYTES) {
        Some(problem) => Err(path.error(problem.as_str())),
        None => Ok(()),
    }
}

fn compile_cidrs(ranges: &[String], path: &FieldPath) -> Result<Vec<Cidr>, ConfigError> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, r)| Cidr::parse(r).map_err(|e| path.index(i).error(e)))
        .collect()
}

fn claim_path(claim: &str, path: &FieldPath) -> Result<Vec<String>, ConfigError> {
    let parts: Vec<String> = claim.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return Err(path.error(format!(
            "'{claim}' is not a claim path (e.g. 'plan' or 'org.tier')"
        )));
    }
    Ok(parts)
}

pub fn compile_match(
    m: &MatchConfig,
    path: &FieldPath,
    slots: &mut Slots,
) -> Result<Conditions, ConfigError> {
    let mut c = Conditions::default();
    for (i, claim) in m.claims.iter().enumerate() {
        let cp = path.field("claims").index(i);
        let condition = named_condition(&claim.value, claim.absent, &cp)?;
        c.claims.push(ClaimCondition {
            provider: claim.provider.clone(),
            path: claim_path(&claim.claim, &cp.field("claim"))?,
            condition,
        });
    }
    for (i, h) in m.headers.iter().enumerate() {
        let hp = path.field("headers").index(i);
        check_header_name(&h.name, &hp.field("name"))?;
        let condition = named_condition(&h.value, h.absent, &hp)?;
        c.headers.push(HeaderCondition {
            slot: slots.slot(&h.name),
            condition,
        });
    }
    for (i, q) in m.query.iter().enumerate() {
        let qp = path.field("query").index(i);
        if q.name.is_empty() {
            return Err(qp.field("name").error("must not be empty"));
        }
        let condition = named_condition(&q.value, q.absent, &qp)?;
        c.query.push((q.name.clone(), condition));
    }
    if let Some(p) = &m.path {
        c.path = Some(p.compile(&path.field("path"))?);
    }
    if let Some(h) = &m.host {
        let mut h = h.clone();
        h.ignore_case = true;
        c.host = Some(h.compile(&path.field("host"))?);
    }
    for (i, method) in m.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(path
                .field("methods")
                .index(i)
                .error(format!("'{method}' is not an upper-case HTTP method")));
        }
        c.methods.push(method.clone().into_bytes());
    }
    c.source = compile_cidrs(&m.source_cidrs, &path.field("source_cidrs"))?;
    if !m.query.is_empty() || c.path.is_some() {
        c.path_slot = Some(slots.slot(":path"));
    }
    if c.host.is_some() {
        c.authority_slot = Some(slots.slot(":authority"));
    }
    if !c.methods.is_empty() {
        c.method_slot = Some(slots.slot(":method"));
    }
    Ok(c)
}

fn named_condition(
    value: &Option<StringMatch>,
    absent: bool,
    path: &FieldPath,
) -> Result<NamedCondition, ConfigError> {
    Ok(match (value, absent) {
        (None, false) => NamedCondition::Present,
        (None, true) => NamedCondition::Absent,
        (Some(v), false) => NamedCondition::Value(v.compile(&path.field("value"))?),
        (Some(_), true) => return Err(path.error("'value' and 'absent' cannot be combined")),
    })
}

fn compile_anonymous(
    a: &AnonymousIdConfig,
    path: &FieldPath,
    outputs: &mut OutputNames,
) -> Result<Anonymous, ConfigError> {
    if !cookie::valid_name(&a.cookie) {
        return Err(path.field("cookie").error(format!(
            "'{}' is not a cookie name (an HTTP token)",
            a.cookie
        )));
    }
    if a.max_age_s == 0 || a.max_age_s > 400 * 86_400 {
        // RFC 6265bis caps Max-Age at 400 days; browsers clamp longer values.
        return Err(path
            .field("max_age_s")
            .error("must be 1 to 34560000 (400 days)"));
    }
    if !cookie::valid_attribute(&a.path) || !a.path.starts_with('/') {
        return Err(path
            .field("path")
            .error(format!("'{}' is not a cookie path", a.path)));
    }
    if let Some(d) = &a.domain {
        if !cookie::valid_attribute(d) {
            return Err(path
                .field("domain")
                .error(format!("'{d}' is not a cookie domain")));
        }
    }
    let same_site = match a.same_site {
        SameSiteConfig::Strict => Some(SameSite::Strict),
        SameSiteConfig::Lax => Some(SameSite::Lax),
        SameSiteConfig::None => Some(SameSite::None),
        SameSiteConfig::Omit => None,
    };
    if same_site == Some(SameSite::None) && !a.secure {
        return Err(path.field("same_site").error(
            "'none' requires 'secure': browsers drop SameSite=None cookies without Secure",
        ));
    }
    if let Some(h) = &a.header {
        outputs.claim(h, &path.field("header"))?;
    }
    let set_cookie = SetCookie {
        name: a.cookie.clone(),
        max_age_s: a.max_age_s,
        path: a.path.clone(),
        domain: a.domain.clone(),
        secure: a.secure,
        http_only: a.http_only,
        same_site,
    };
    Ok(Anonymous {
        cookie: a.cookie.clone(),
        attributes: set_cookie.attributes(),
        header: a.header.clone(),
    })
}

fn compile_experiment(
    e: &ExperimentConfig,
    path: &FieldPath,
    classes: &[Class],
    has_anonymous: bool,
    slots: &mut Slots,
    outputs: &mut OutputNames,
) -> Result<Experiment, ConfigError> {
    check_name(&e.name, "experiment name", &path.field("name"))?;
    if e.salt.is_empty() {
        return Err(path.field("salt").error("must not be empty"));
    }
    let mut class_ids = Vec::with_capacity(e.classes.len());
    for (i, name) in e.classes.iter().enumerate() {
        let id = classes
            .iter()
            .position(|c| c.name == *name)
            .ok_or_else(|| {
                path.field("classes")
                    .index(i)
                    .error(format!("'{name}' is not a class"))
            })?;
        if class_ids.contains(&id) {
            return Err(path
                .field("classes")
                .index(i)
                .error(format!("'{name}' is listed twice")));
        }
        class_ids.push(id);
    }
    let conditions = compile_match(&e.matches, &path.field("match"), slots)?;
    if e.key.is_empty() {
        return Err(path
            .field("key")
            .error("at least one key source is required"));
    }
    let mut key = Vec::with_capacity(e.key.len());
    for (i, k) in e.key.iter().enumerate() {
        let kp = path.field("key").index(i);
        let source = match (&k.claim, &k.header, &k.cookie, k.anonymous_id) {
            (Some(claim), None, None, false) => KeySource::Claim {
                provider: k.provider.clone(),
                path: claim_path(claim, &kp.field("claim"))?,
            },
            (None, Some(header), None, false) => {
                check_header_name(header, &kp.field("header"))?;
                KeySource::Header(slots.slot(header))
            }
            (None, None, Some(name), false) => {
                if !cookie::valid_name(name) {
                    return Err(kp
                        .field("cookie")
                        .error(format!("'{name}' is not a cookie name")));
                }
                slots.slot("cookie");
                KeySource::Cookie(name.clone())
            }
            (None, None, None, true) => {
                if !has_anonymous {
                    return Err(kp.field("anonymous_id").error(
                        "needs 'anonymous_id' at the top level (the cookie that keeps it)",
                    ));
                }
                slots.slot("cookie");
                KeySource::AnonymousId
            }
            _ => {
                return Err(kp.error(
                    "exactly one of 'claim', 'header', 'cookie' or 'anonymous_id' is required",
                ))
            }
        };
        if k.provider.is_some() && k.claim.is_none() {
            return Err(kp.field("provider").error("only applies to 'claim'"));
        }
        key.push(source);
    }
    if e.variants.is_empty() || e.variants.len() > MAX_VARIANTS {
        return Err(path
            .field("variants")
            .error(format!("1 to {MAX_VARIANTS} variants are required")));
    }
    let mut variants: Vec<Variant> = Vec::with_capacity(e.variants.len());
    let mut total: u64 = 0;
    for (i, v) in e.variants.iter().enumerate() {
        let vp = path.field("variants").index(i);
        check_name(&v.name, "variant name", &vp.field("name"))?;
        if variants.iter().any(|o| o.name == v.name) {
            return Err(vp
                .field("name")
                .error(format!("variant '{}' is defined twice", v.name)));
        }
        if v.weight == 0 {
            return Err(vp.field("weight").error("must be positive"));
        }
        total += u64::from(v.weight);
        if total > MAX_TOTAL_WEIGHT {
            return Err(vp.field("weight").error(format!(
                "the weights of an experiment add up to at most {MAX_TOTAL_WEIGHT}"
            )));
        }
        variants.push(Variant {
            name: v.name.clone(),
            weight: v.weight,
            upper: total,
        });
    }
    if let Some(h) = &e.header {
        outputs.claim(h, &path.field("header"))?;
    }
    Ok(Experiment {
        name: e.name.clone(),
        salt: e.salt.clone(),
        classes: class_ids,
        conditions,
        key,
        variants,
        total_weight: total,
        header: e.header.clone(),
    })
}
