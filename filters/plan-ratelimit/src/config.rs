//! Configuration: serde types as users write them, validated and compiled
//! into [`Compiled`] at configure time (quotas built, matchers compiled,
//! claim paths split).

use governor::Quota;
use pwf_shared::headers::header_name_problem;
use pwf_shared::matcher::{RequestMatch, RequestMatcher};
use pwf_shared::{ConfigError, FieldPath};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// Longest time a window may take to refill its whole burst.
const MAX_REFILL: Duration = Duration::from_secs(365 * 86_400);

/// plan-ratelimit: subscription-plan rate limits, exact across Envoy workers.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Plan name -> its limits.
    pub plans: BTreeMap<String, PlanConfig>,
    /// Plan for requests whose plan is missing or not in `plans`.
    pub fallback_plan: String,
    /// Where the plan name comes from, tried in order.
    #[serde(default)]
    pub plan_from: Vec<InputConfig>,
    /// Where the client key comes from, tried in order.
    #[serde(default = "default_client_from")]
    pub client_from: Vec<InputConfig>,
    /// First match wins; a request no rule matches is not limited. Without
    /// rules every request is limited with cost 1.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// `shadow` counts and logs what would be limited and never rejects or adds headers.
    #[serde(default)]
    pub mode: Mode,
    /// When the state cannot be read or written, or the store is full for a client.
    #[serde(default)]
    pub on_store_error: FailureMode,
    /// Rate limit headers on responses.
    #[serde(default)]
    pub response_headers: ResponseHeadersConfig,
    /// Where the limiter state is kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// Also ask an Envoy rate limit service (global limits).
    pub global: Option<GlobalConfig>,
}

/// A plan: its limits, or unlimited.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// At most one limit per `per`; required unless `unlimited`.
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
    /// Never limited (limits must be empty).
    #[serde(default)]
    pub unlimited: bool,
}

/// One window: `requests` per `per`, with bursts up to `burst`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Requests allowed per period, at least 1.
    pub requests: u32,
    /// The period.
    pub per: Per,
    /// Requests allowed at once; defaults to `requests`.
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    pub fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
            Per::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Per::Second => "second",
            Per::Minute => "minute",
            Per::Hour => "hour",
            Per::Day => "day",
        }
    }
}

/// Exactly one of `claim`, `header` or `client_address`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// A claim of a token verified by jwt-auth (filter state `jwt_auth_claims`),
    /// dotted for nested claims.
    pub claim: Option<String>,
    /// With `claim`: only this jwt-auth provider's token; default any.
    pub provider: Option<String>,
    /// The first value of a request header.
    pub header: Option<String>,
    /// The downstream address without its port (`client_from` only).
    #[serde(default)]
    pub client_address: bool,
}

/// The cost of matching requests; the first matching rule wins.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Which requests the rule applies to; absent: every request.
    #[serde(rename = "match", default)]
    pub matches: RequestMatch,
    /// Cells a request takes from every window of its plan.
    #[serde(default = "default_cost")]
    pub cost: u32,
    /// Matching requests are not limited.
    #[serde(default)]
    pub skip: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Reject requests over the limit with 429.
    #[default]
    Enforce,
    /// Count and log what would be limited, never reject.
    Shadow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Fail open.
    #[default]
    Allow,
    /// Fail closed: 503 with a JSON body.
    Deny,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ResponseHeadersConfig {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    #[serde(default = "default_true")]
    pub draft: bool,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    #[serde(default)]
    pub legacy: bool,
}

impl Default for ResponseHeadersConfig {
    fn default() -> Self {
        Self {
            draft: true,
            legacy: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Fixed number of client slots in shared data.
    #[serde(default = "default_slots")]
    pub slots: u32,
    #[serde(default)]
    pub scope: StoreScope,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            slots: default_slots(),
            scope: StoreScope::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum StoreScope {
    /// Shared data: one exact limit across all worker threads.
    #[default]
    Shared,
    /// Each worker limits on its own: N workers admit up to N times the
    /// quota. Only for comparison (it is what per-worker Wasm limiters do).
    PerWorker,
}

/// A gRPC rate limit service shared by every Envoy.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// gRPC cluster of a `envoy.service.ratelimit.v3.RateLimitService`.
    pub cluster: String,
    /// The rate limit domain.
    pub domain: String,
    /// 1 to 10000.
    #[serde(default = "default_global_timeout_ms")]
    pub timeout_ms: u64,
    /// The service fails or times out: `allow` (fail open) or `deny` (503).
    #[serde(default)]
    pub on_error: FailureMode,
    /// Deny without a remote call when this Envoy alone is already over the limit.
    #[serde(default = "default_true")]
    pub local_precheck: bool,
}

fn default_true() -> bool {
    true
}
fn default_cost() -> u32 {
    1
}
fn default_slots() -> u32 {
    8192
}
fn default_global_timeout_ms() -> u64 {
    200
}
fn default_client_from() -> Vec<InputConfig> {
    vec![InputConfig {
        client_address: true,
        ..InputConfig::default()
    }]
}

const MAX_WINDOWS: usize = crate::slots::MAX_WINDOWS;
const MAX_SLOTS: u32 = 1 << 20;
const MIN_SLOTS: u32 = 16;

/// The whole configuration, compiled.
#[derive(Debug)]
pub struct Compiled {
    pub plans: Vec<Plan>,
    pub fallback_plan: usize,
    pub plan_from: Vec<Input>,
    pub client_from: Vec<Input>,
    pub rules: Vec<Rule>,
    pub mode: Mode,
    pub on_store_error: FailureMode,
    pub response_headers: ResponseHeadersConfig,
    pub slots: u32,
    pub scope: StoreScope,
    pub global: Option<GlobalConfig>,
    /// Whether any input reads `jwt_auth_claims`.
    pub reads_claims: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// The `RateLimit-Policy` value, built once.
    pub policy_header: String,
    /// Ordered from the shortest window to the longest: a request denied by a
    /// short window takes nothing from the longer ones.
    pub windows: Vec<Window>,
}

impl Plan {
    pub fn unlimited(&self) -> bool {
        self.windows.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Window {
    pub requests: u32,
    pub per: Per,
    pub burst: u32,
    pub quota: Quota,
    /// Nanoseconds to refill the whole burst: no TAT is ever further than
    /// this ahead of the time it was written.
    pub refill_ns: u64,
    /// `<plan>-<per>`, the policy name in `RateLimit` headers.
    pub policy: String,
}

#[derive(Debug, Clone)]
pub enum Input {
    Claim {
        provider: Option<String>,
        path: Vec<String>,
    },
    Header(String),
    ClientAddress,
}

#[derive(Debug)]
pub struct Rule {
    pub matcher: RequestMatcher,
    pub cost: u32,
    pub skip: bool,
}

impl Config {
    pub fn load(bytes: Option<&[u8]>) -> Result<Compiled, ConfigError> {
        pwf_shared::config::parse_json::<Config>(bytes)?.compile()
    }

    pub fn compile(&self) -> Result<Compiled, ConfigError> {
        let root = FieldPath::root();
        if self.plans.is_empty() {
            return Err(root.field("plans").error("at least one plan is required"));
        }
        let mut plans = Vec::with_capacity(self.plans.len());
        for (name, p) in &self.plans {
            plans.push(compile_plan(name, p, &root.field("plans").field(name))?);
        }
        let fallback_plan = plans
            .iter()
            .position(|p| p.name == self.fallback_plan)
            .ok_or_else(|| {
                root.field("fallback_plan")
                    .error(format!("'{}' is not a plan in 'plans'", self.fallback_plan))
            })?;
        let plan_from = compile_inputs(&self.plan_from, &root.field("plan_from"), false)?;
        let client_from = compile_inputs(&self.client_from, &root.field("client_from"), true)?;
        let max_cost = plans
            .iter()
            .flat_map(|p| p.windows.iter().map(|w| w.burst))
            .min()
            .unwrap_or(u32::MAX);
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let path = root.field("rules").index(i);
            if r.cost == 0 {
                return Err(path.field("cost").error("must be at least 1"));
            }
            if r.cost > max_cost {
                return Err(path.field("cost").error(format!(
                    "{} is more than the smallest burst of any plan window ({max_cost}): such requests could never pass",
                    r.cost
                )));
            }
            rules.push(Rule {
                matcher: r.matches.compile(&path.field("match"))?,
                cost: r.cost,
                skip: r.skip,
            });
        }
        let slots = self.store.slots;
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&slots) || !slots.is_power_of_two() {
            return Err(root.field("store").field("slots").error(format!(
                "must be a power of two from {MIN_SLOTS} to {MAX_SLOTS}"
            )));
        }
        if let Some(g) = &self.global {
            let path = root.field("global");
            if g.cluster.is_empty() {
                return Err(path.field("cluster").error("must not be empty"));
            }
            if g.domain.is_empty() {
                return Err(path.field("domain").error("must not be empty"));
            }
            if g.timeout_ms == 0 || g.timeout_ms > 10_000 {
                return Err(path.field("timeout_ms").error("must be 1 to 10000"));
            }
        }
        let reads_claims = plan_from
            .iter()
            .chain(&client_from)
            .any(|i| matches!(i, Input::Claim { .. }));
        Ok(Compiled {
            plans,
            fallback_plan,
            plan_from,
            client_from,
            rules,
            mode: self.mode,
            on_store_error: self.on_store_error,
            response_headers: self.response_headers.clone(),
            slots,
            scope: self.store.scope,
            global: self.global.clone(),
            reads_claims,
        })
    }
}

impl Compiled {
    /// The plan named `name`, or the fallback plan.
    pub fn plan(&self, name: Option<&[u8]>) -> usize {
        name.and_then(|n| self.plans.iter().position(|p| p.name.as_bytes() == n))
            .unwrap_or(self.fallback_plan)
    }

    /// The cost of a request, or `None` if it is not limited.
    pub fn cost(&self, headers: &pwf_shared::HeaderList) -> Option<u32> {
        if self.rules.is_empty() {
            return Some(1);
        }
        let rule = self.rules.iter().find(|r| r.matcher.matches(headers))?;
        (!rule.skip).then_some(rule.cost)
    }
}

fn compile_plan(name: &str, p: &PlanConfig, path: &FieldPath) -> Result<Plan, ConfigError> {
    pwf_shared::config::check_name(name, "plan name", path)?;
    if p.unlimited {
        if !p.limits.is_empty() {
            return Err(path.error("an unlimited plan cannot have limits"));
        }
        return Ok(Plan {
            name: name.to_owned(),
            policy_header: String::new(),
            windows: Vec::new(),
        });
    }
    if p.limits.is_empty() {
        return Err(path
            .field("limits")
            .error("at least one limit is required (or set \"unlimited\": true)"));
    }
    if p.limits.len() > MAX_WINDOWS {
        return Err(path
            .field("limits")
            .error(format!("at most {MAX_WINDOWS} limits per plan")));
    }
    let mut windows = Vec::with_capacity(p.limits.len());
    for (i, l) in p.limits.iter().enumerate() {
        let lp = path.field("limits").index(i);
        if p.limits.iter().take(i).any(|o| o.per == l.per) {
            return Err(lp
                .field("per")
                .error(format!("a plan has one limit per '{}'", l.per.as_str())));
        }
        let requests = NonZeroU32::new(l.requests)
            .ok_or_else(|| lp.field("requests").error("must be at least 1"))?;
        let burst = l.burst.unwrap_or(l.requests);
        let burst_nz =
            NonZeroU32::new(burst).ok_or_else(|| lp.field("burst").error("must be at least 1"))?;
        let period = Duration::from_secs(l.per.seconds()) / requests.get();
        // TATs are absolute host times in u64 nanoseconds; a bounded refill
        // time keeps GCRA's arithmetic far from overflowing.
        let refill_ns = period.as_nanos().saturating_mul(u128::from(burst));
        if refill_ns > MAX_REFILL.as_nanos() {
            return Err(lp.field("burst").error(format!(
                "{burst} requests at {} per {} take more than 365 days to refill",
                l.requests,
                l.per.as_str()
            )));
        }
        let quota = Quota::with_period(period)
            .ok_or_else(|| lp.error("the rate is too high to represent"))?
            .allow_burst(burst_nz);
        windows.push(Window {
            requests: l.requests,
            per: l.per,
            burst,
            quota,
            refill_ns: u64::try_from(refill_ns).unwrap_or(u64::MAX),
            policy: format!("{name}-{}", l.per.as_str()),
        });
    }
    windows.sort_by_key(|w| w.per);
    Ok(Plan {
        name: name.to_owned(),
        policy_header: crate::headers::policy(&windows),
        windows,
    })
}

fn compile_inputs(
    inputs: &[InputConfig],
    path: &FieldPath,
    allow_address: bool,
) -> Result<Vec<Input>, ConfigError> {
    let mut out = Vec::with_capacity(inputs.len());
    for (i, c) in inputs.iter().enumerate() {
        let ip = path.index(i);
        let input = match (&c.claim, &c.header, c.client_address) {
            (Some(claim), None, false) => {
                let parts: Vec<String> = claim.split('.').map(str::to_owned).collect();
                if parts.iter().any(String::is_empty) {
                    return Err(ip.field("claim").error(format!(
                        "'{claim}' is not a claim path (e.g. 'plan' or 'org.tier')"
                    )));
                }
                Input::Claim {
                    provider: c.provider.clone(),
                    path: parts,
                }
            }
            (None, Some(header), false) => {
                let lower = header.to_ascii_lowercase();
                if let Some(problem) = header_name_problem(&lower) {
                    return Err(ip.field("header").error(format!("'{header}': {problem}")));
                }
                if c.provider.is_some() {
                    return Err(ip.field("provider").error("only applies to 'claim'"));
                }
                Input::Header(lower)
            }
            (None, None, true) if allow_address => {
                if c.provider.is_some() {
                    return Err(ip.field("provider").error("only applies to 'claim'"));
                }
                Input::ClientAddress
            }
            (None, None, true) => {
                return Err(ip
                    .field("client_address")
                    .error("a plan cannot come from the client address"))
            }
            _ => {
                return Err(
                    ip.error("exactly one of 'claim', 'header' or 'client_address' is required")
                )
            }
        };
        out.push(input);
    }
    Ok(out)
}
