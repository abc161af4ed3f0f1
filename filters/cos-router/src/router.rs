//! The decision for one request: its class, then each experiment's variant.

use crate::cidr;
use crate::conditions::{claim_values, Host, Request};
use crate::config::{Compiled, KeySource};
use crate::cookie;
use crate::experiment;

/// What happened in one experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request's class or conditions do not qualify.
    NotEligible,
    /// Eligible, but no key source had a value.
    NoKey,
    /// The hash of the key picked this variant.
    Assigned(usize),
    /// The override header picked this variant.
    Overridden(usize),
}

impl Outcome {
    pub fn variant(self) -> Option<usize> {
        match self {
            Outcome::Assigned(v) | Outcome::Overridden(v) => Some(v),
            Outcome::NotEligible | Outcome::NoKey => None,
        }
    }
}

/// Whether the override header was present, and what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverrideUse {
    #[default]
    Absent,
    Honoured,
    /// Sent from an address outside `allowed_sources`: ignored.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub class: usize,
    /// One per experiment, in config order.
    pub outcomes: Vec<Outcome>,
    /// The anonymous id an experiment used, if any.
    pub anonymous_id: Option<String>,
    /// Whether that id is new (the response sets the cookie).
    pub anonymous_id_is_new: bool,
    pub override_use: OverrideUse,
}

impl Decision {
    /// `checkout=b;search=control`: every assigned experiment, in config
    /// order; `None` when there is none.
    pub fn variants_value(&self, compiled: &Compiled) -> Option<String> {
        let mut out = String::new();
        for (e, outcome) in compiled.experiments.iter().zip(&self.outcomes) {
            if let Some(v) = outcome.variant().and_then(|v| e.variants.get(v)) {
                if !out.is_empty() {
                    out.push(';');
                }
                out.push_str(&e.name);
                out.push('=');
                out.push_str(&v.name);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Decides a request. `new_id` makes a fresh anonymous id when one is needed.
pub fn decide<H: Host>(
    compiled: &Compiled,
    req: &mut Request<'_, H>,
    new_id: &mut impl FnMut() -> String,
) -> Decision {
    let class = compiled
        .classes
        .iter()
        .position(|c| c.conditions.holds(req))
        .unwrap_or(compiled.classes.len().saturating_sub(1));
    let mut decision = Decision {
        class,
        outcomes: Vec::with_capacity(compiled.experiments.len()),
        anonymous_id: None,
        anonymous_id_is_new: false,
        override_use: OverrideUse::Absent,
    };
    if compiled.experiments.is_empty() {
        return decision;
    }
    let overrides = read_override(compiled, req);
    decision.override_use = match &overrides {
        Some(Ok(_)) => OverrideUse::Honoured,
        Some(Err(())) => OverrideUse::Refused,
        None => OverrideUse::Absent,
    };
    for e in &compiled.experiments {
        if let Some(Ok(header)) = &overrides {
            if let Some(v) = experiment::overridden(e, header) {
                decision.outcomes.push(Outcome::Overridden(v));
                continue;
            }
        }
        let eligible =
            (e.classes.is_empty() || e.classes.contains(&class)) && e.conditions.holds(req);
        if !eligible {
            decision.outcomes.push(Outcome::NotEligible);
            continue;
        }
        let outcome = match key(compiled, &e.key, req, &mut decision, new_id) {
            Some(k) => Outcome::Assigned(experiment::assign(e, &k)),
            None => Outcome::NoKey,
        };
        decision.outcomes.push(outcome);
    }
    decision
}

/// The override header's value if honoured (`Ok`), `Err` if it was sent
/// from a disallowed address, `None` if not configured or absent.
fn read_override<H: Host>(
    compiled: &Compiled,
    req: &mut Request<'_, H>,
) -> Option<Result<Vec<u8>, ()>> {
    let o = compiled.override_.as_ref()?;
    let value = req.header(o.slot)?.to_vec();
    match req.source() {
        Some(ip) if cidr::any_contains(&o.allowed_sources, ip) => Some(Ok(value)),
        _ => Some(Err(())),
    }
}

/// The first key source with a non-empty value.
fn key<H: Host>(
    compiled: &Compiled,
    sources: &[KeySource],
    req: &mut Request<'_, H>,
    decision: &mut Decision,
    new_id: &mut impl FnMut() -> String,
) -> Option<Vec<u8>> {
    sources.iter().find_map(|source| {
        let value = match source {
            KeySource::Claim { provider, path } => {
                claim_values(req.claims()?, provider.as_deref(), path)?
                    .into_iter()
                    .next()?
            }
            KeySource::Header(slot) => req.header(*slot)?.to_vec(),
            KeySource::Cookie(name) => cookie::find(req.header_named("cookie")?, name)?.to_vec(),
            KeySource::AnonymousId => anonymous_id(compiled, req, decision, new_id)?.into_bytes(),
        };
        (!value.is_empty()).then_some(value)
    })
}

/// The request's anonymous id: from its cookie if valid, else a new one
/// (the same for every experiment of the request).
fn anonymous_id<H: Host>(
    compiled: &Compiled,
    req: &mut Request<'_, H>,
    decision: &mut Decision,
    new_id: &mut impl FnMut() -> String,
) -> Option<String> {
    if let Some(id) = &decision.anonymous_id {
        return Some(id.clone());
    }
    let anonymous = compiled.anonymous.as_ref()?;
    let existing = req
        .header_named("cookie")
        .and_then(|c| cookie::find(c, &anonymous.cookie))
        .filter(|id| cookie::valid_id(id))
        .and_then(|id| std::str::from_utf8(id).ok())
        .map(str::to_owned);
    let id = match existing {
        Some(id) => id,
        None => {
            decision.anonymous_id_is_new = true;
            new_id()
        }
    };
    decision.anonymous_id = Some(id.clone());
    Some(id)
}
