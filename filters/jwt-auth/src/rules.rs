//! Rules: which requests need which tokens, and the decision for a request.
//!
//! [`Rule::evaluate`] is the pure requirement logic over a [`Checker`] that
//! verifies providers on demand, so a provider is only verified when the
//! requirement still needs it. [`Compiled::authorize`] plugs in the real
//! checker: token lookup, the verified-token cache, keys, and [`verify`].

use crate::cache::TokenCache;
use crate::config::{Compiled, KeySource, OnJwksUnavailable};
use crate::jwks::KeySet;
use crate::token::{self, Found};
use crate::verify::{verify, Denial, Reason, Verified};
use pwf_shared::{HeaderList, RequestMatcher};
use std::rc::Rc;

#[derive(Debug)]
pub struct Rule {
    pub matcher: RequestMatcher,
    pub action: RuleAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Pass without looking at tokens.
    Bypass,
    Require {
        requirement: Requirement,
        /// No token at all is acceptable (`allow_missing`, implied by `allow_missing_or_failed`).
        allow_missing: bool,
        /// An invalid token is acceptable too (`allow_missing_or_failed`).
        allow_failed: bool,
    },
}

/// Provider indices into `Compiled::providers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Provider(usize),
    AnyOf(Vec<usize>),
    AllOf(Vec<usize>),
}

impl Requirement {
    pub fn providers(&self) -> &[usize] {
        match self {
            Requirement::Provider(p) => std::slice::from_ref(p),
            Requirement::AnyOf(ps) | Requirement::AllOf(ps) => ps,
        }
    }
}

/// The result of checking one provider for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Verified(Verified),
    /// No token in any of the provider's locations.
    Missing,
    Failed(Denial),
    /// A token is present but the provider's remote keys are unavailable and
    /// its `on_jwks_unavailable` is `allow`: passes, without claims.
    Unverified,
}

/// Checks providers for one request, on demand.
pub trait Checker {
    /// Whether the provider's token is present (cheap: no verification).
    fn has_token(&mut self, provider: usize) -> bool;
    fn check(&mut self, provider: usize) -> Outcome;
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Continue; `verified` holds the tokens verified for the rule (possibly none).
    Allow {
        verified: Vec<Verified>,
    },
    Deny(Denial),
}

impl Rule {
    pub fn evaluate(&self, checker: &mut impl Checker) -> Decision {
        let (requirement, allow_missing, allow_failed) = match &self.action {
            RuleAction::Bypass => {
                return Decision::Allow {
                    verified: Vec::new(),
                }
            }
            RuleAction::Require {
                requirement,
                allow_missing,
                allow_failed,
            } => (requirement, *allow_missing, *allow_failed),
        };
        let (verified, denial) = match requirement {
            Requirement::Provider(p) => any_of(std::slice::from_ref(p), checker),
            Requirement::AnyOf(ps) => any_of(ps, checker),
            Requirement::AllOf(ps) => all_of(ps, allow_missing || allow_failed, checker),
        };
        match denial {
            None => Decision::Allow { verified },
            Some(d) if allow_failed || (allow_missing && d.reason == Reason::Missing) => {
                Decision::Allow { verified }
            }
            Some(d) => Decision::Deny(d),
        }
    }
}

/// Stops at the first verified provider. Without one: passes if one was
/// `Unverified`, else "missing" only if every token was missing, else the
/// failure that explains best ([`Denial::relevance`]; the first of equals):
/// a token of provider B sent where A and B both look fails A with an
/// unknown key id, and B with what is really wrong with it.
fn any_of(providers: &[usize], checker: &mut impl Checker) -> (Vec<Verified>, Option<Denial>) {
    let mut best_failure: Option<Denial> = None;
    let mut unverified = false;
    for &p in providers {
        match checker.check(p) {
            Outcome::Verified(v) => return (vec![v], None),
            Outcome::Unverified => unverified = true,
            Outcome::Missing => {}
            Outcome::Failed(d) => {
                if best_failure
                    .as_ref()
                    .is_none_or(|best| d.relevance() > best.relevance())
                {
                    best_failure = Some(d);
                }
            }
        }
    }
    if unverified {
        return (Vec::new(), None);
    }
    let denial = best_failure.unwrap_or_else(|| missing_for(providers));
    (Vec::new(), Some(denial))
}

/// Every provider must verify. A missing token is found before any verification
/// runs; unless missing tokens may be tolerated, that denies straight away.
/// Tolerated, the present tokens are still verified and any failure denies.
fn all_of(
    providers: &[usize],
    tolerate_missing: bool,
    checker: &mut impl Checker,
) -> (Vec<Verified>, Option<Denial>) {
    let absent = providers.iter().copied().find(|&p| !checker.has_token(p));
    if let (Some(p), false) = (absent, tolerate_missing) {
        return (Vec::new(), Some(Denial::missing().for_provider(p)));
    }
    let mut verified = Vec::with_capacity(providers.len());
    let mut missing = None;
    for &p in providers {
        match checker.check(p) {
            Outcome::Verified(v) => verified.push(v),
            Outcome::Unverified => {}
            Outcome::Missing => {
                missing.get_or_insert(p);
            }
            Outcome::Failed(d) => return (verified, Some(d)),
        }
    }
    let denial = missing.map(|p| Denial::missing().for_provider(p));
    (verified, denial)
}

fn missing_for(providers: &[usize]) -> Denial {
    match providers {
        [p] => Denial::missing().for_provider(*p),
        _ => Denial::missing(),
    }
}

/// What happened to one provider during [`Compiled::authorize`], for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    Verified { cached: bool },
    Missing,
    Failed(Reason),
    Unverified,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The matching rule's index; `None` when no rule matched (the request passes).
    pub rule: Option<usize>,
    pub decision: Decision,
    /// Every provider checked, in order.
    pub checks: Vec<(usize, CheckResult)>,
}

impl Evaluation {
    /// Providers whose token named a key the current key set does not have:
    /// candidates for a JWKS refetch (subject to the cooldown) and a retry.
    pub fn unknown_kid_providers(&self) -> impl Iterator<Item = usize> + '_ {
        self.checks
            .iter()
            .filter(|(_, r)| *r == CheckResult::Failed(Reason::UnknownKid))
            .map(|(p, _)| *p)
    }
}

impl Compiled {
    /// The first rule matching the request.
    pub fn rule_for(&self, headers: &HeaderList) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(headers))
    }

    /// Providers with a remote JWKS that the matching rule may verify and whose
    /// token is present: the glue makes sure their keys are fetched (pausing the
    /// request if needed) before calling [`authorize`](Self::authorize).
    pub fn providers_needing_keys(&self, headers: &HeaderList) -> Vec<usize> {
        let Some((_, rule)) = self.rule_for(headers) else {
            return Vec::new();
        };
        let RuleAction::Require { requirement, .. } = &rule.action else {
            return Vec::new();
        };
        requirement
            .providers()
            .iter()
            .copied()
            .filter(|&p| {
                self.providers.get(p).is_some_and(|provider| {
                    provider.remote().is_some() && token::find(&provider.from, headers).is_some()
                })
            })
            .collect()
    }

    /// Decides a request. `remote_keys(p)` returns the current keys of remote
    /// provider `p`, or `None` if it has none (never fetched, or failed without
    /// last-good keys). `now` is unix seconds.
    pub fn authorize(
        &self,
        headers: &HeaderList,
        now: u64,
        remote_keys: &dyn Fn(usize) -> Option<Rc<KeySet>>,
        cache: &mut TokenCache,
    ) -> Evaluation {
        let Some((index, rule)) = self.rule_for(headers) else {
            return Evaluation {
                rule: None,
                decision: Decision::Allow {
                    verified: Vec::new(),
                },
                checks: Vec::new(),
            };
        };
        let mut checker = RequestChecker {
            compiled: self,
            headers,
            now,
            remote_keys,
            cache,
            found: Vec::new(),
            checks: Vec::new(),
        };
        let decision = rule.evaluate(&mut checker);
        Evaluation {
            rule: Some(index),
            decision,
            checks: checker.checks,
        }
    }
}

struct RequestChecker<'a> {
    compiled: &'a Compiled,
    headers: &'a HeaderList,
    now: u64,
    remote_keys: &'a dyn Fn(usize) -> Option<Rc<KeySet>>,
    cache: &'a mut TokenCache,
    /// Tokens already looked up, by provider.
    found: Vec<(usize, Option<Found>)>,
    checks: Vec<(usize, CheckResult)>,
}

impl RequestChecker<'_> {
    fn token(&mut self, provider: usize) -> Option<Found> {
        if let Some((_, f)) = self.found.iter().find(|(p, _)| *p == provider) {
            return f.clone();
        }
        let f = self
            .compiled
            .providers
            .get(provider)
            .and_then(|p| token::find(&p.from, self.headers));
        self.found.push((provider, f.clone()));
        f
    }

    fn outcome(&mut self, provider: usize) -> (Outcome, CheckResult) {
        let Some(p) = self.compiled.providers.get(provider) else {
            return (Outcome::Missing, CheckResult::Missing);
        };
        let Some(found) = self.token(provider) else {
            return (Outcome::Missing, CheckResult::Missing);
        };
        let keys = match &p.keys {
            KeySource::Static(keys) => Some(Rc::clone(keys)),
            KeySource::Remote(_) => (self.remote_keys)(provider),
        };
        let Some(keys) = keys else {
            return match p.on_jwks_unavailable {
                OnJwksUnavailable::Allow => (Outcome::Unverified, CheckResult::Unverified),
                OnJwksUnavailable::Deny => (
                    Outcome::Failed(
                        Denial::new(Reason::JwksUnavailable, "signing keys are unavailable")
                            .for_provider(provider),
                    ),
                    CheckResult::Failed(Reason::JwksUnavailable),
                ),
            };
        };
        let with_source = |mut v: Verified| {
            v.source = Some(found.source);
            v
        };
        if let Some(v) = self
            .cache
            .get(provider, &found.token, keys.fingerprint, self.now)
        {
            return (
                Outcome::Verified(with_source(v)),
                CheckResult::Verified { cached: true },
            );
        }
        match verify(&found.token, p, &keys, self.now) {
            Ok(mut v) => {
                if self.compiled.claims_filter_state {
                    v.payload_json = Some(Rc::from(v.payload.to_string()));
                }
                self.cache.insert(
                    provider,
                    &found.token,
                    keys.fingerprint,
                    &v,
                    p.clock_skew_s,
                    self.now,
                );
                (
                    Outcome::Verified(with_source(v)),
                    CheckResult::Verified { cached: false },
                )
            }
            Err(d) => {
                let reason = d.reason;
                (Outcome::Failed(d), CheckResult::Failed(reason))
            }
        }
    }
}

impl Checker for RequestChecker<'_> {
    fn has_token(&mut self, provider: usize) -> bool {
        self.token(provider).is_some()
    }

    fn check(&mut self, provider: usize) -> Outcome {
        let (outcome, result) = self.outcome(provider);
        self.checks.push((provider, result));
        outcome
    }
}
