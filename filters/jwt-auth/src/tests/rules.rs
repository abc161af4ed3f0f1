//! Rules: the requirement semantics over a scripted checker (including which
//! providers get verified at all), then `authorize` end to end.

use super::support::*;
use crate::cache::TokenCache;
use crate::config::Compiled;
use crate::jwks::{self, KeySet};
use crate::rules::{CheckResult, Checker, Decision, Outcome, Requirement, Rule, RuleAction};
use crate::verify::{Denial, Reason, Verified};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pwf_shared::{HeaderList, RequestMatcher};
use serde_json::json;
use std::collections::HashMap;
use std::rc::Rc;

fn verified(provider: usize) -> Verified {
    Verified {
        provider,
        payload: Rc::new(json!({"sub": format!("user-{provider}")})),
        payload_segment: Rc::from("e30"),
        payload_json: None,
        exp: None,
        source: Some(0),
    }
}

fn failed(provider: usize, reason: Reason) -> Outcome {
    Outcome::Failed(Denial::new(reason, "test").for_provider(provider))
}

/// Answers from a script and records what was asked.
#[derive(Default)]
struct Script {
    outcomes: HashMap<usize, Outcome>,
    presence_asked: Vec<usize>,
    checked: Vec<usize>,
}

impl Script {
    fn new(outcomes: impl IntoIterator<Item = (usize, Outcome)>) -> Self {
        Self {
            outcomes: outcomes.into_iter().collect(),
            ..Self::default()
        }
    }
}

impl Checker for Script {
    fn has_token(&mut self, provider: usize) -> bool {
        self.presence_asked.push(provider);
        !matches!(self.outcomes.get(&provider), Some(Outcome::Missing) | None)
    }
    fn check(&mut self, provider: usize) -> Outcome {
        self.checked.push(provider);
        self.outcomes
            .get(&provider)
            .cloned()
            .unwrap_or(Outcome::Missing)
    }
}

fn rule(requirement: Requirement, allow_missing: bool, allow_failed: bool) -> Rule {
    Rule {
        matcher: RequestMatcher::any(),
        action: RuleAction::Require {
            requirement,
            allow_missing,
            allow_failed,
        },
    }
}

fn allow(vs: &[usize]) -> Decision {
    Decision::Allow {
        verified: vs.iter().map(|&p| verified(p)).collect(),
    }
}

fn deny_reason(d: &Decision) -> (Reason, Option<usize>) {
    match d {
        Decision::Deny(d) => (d.reason, d.provider),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn single_provider() {
    let r = rule(Requirement::Provider(0), false, false);
    let eval = |o: Outcome| r.evaluate(&mut Script::new([(0, o)]));
    assert_eq!(eval(Outcome::Verified(verified(0))), allow(&[0]));
    assert_eq!(
        deny_reason(&eval(Outcome::Missing)),
        (Reason::Missing, Some(0))
    );
    assert_eq!(
        deny_reason(&eval(failed(0, Reason::Expired))),
        (Reason::Expired, Some(0))
    );
    assert_eq!(eval(Outcome::Unverified), allow(&[]));
}

#[test]
fn any_of_stops_at_the_first_verified_provider() {
    let r = rule(Requirement::AnyOf(vec![0, 1, 2]), false, false);
    let mut s = Script::new([
        (0, Outcome::Verified(verified(0))),
        (1, Outcome::Verified(verified(1))),
    ]);
    assert_eq!(r.evaluate(&mut s), allow(&[0]));
    assert_eq!(s.checked, [0], "later providers are not verified");

    let mut s = Script::new([
        (0, failed(0, Reason::InvalidSignature)),
        (1, Outcome::Verified(verified(1))),
    ]);
    assert_eq!(r.evaluate(&mut s), allow(&[1]));
    assert_eq!(s.checked, [0, 1]);
}

#[test]
fn any_of_reports_the_failure_of_the_provider_the_token_is_for() {
    let r = rule(Requirement::AnyOf(vec![0, 1, 2]), false, false);
    let signed = |p: usize, reason: Reason| {
        Outcome::Failed(Denial::new(reason, "t").signed().for_provider(p))
    };
    // Provider 2 issued the token: 0 does not know its key, 1's keys do not
    // verify it, and 2 finds it expired.
    let s = &mut Script::new([
        (0, failed(0, Reason::UnknownKid)),
        (1, failed(1, Reason::InvalidSignature)),
        (2, signed(2, Reason::Expired)),
    ]);
    assert_eq!(deny_reason(&r.evaluate(s)), (Reason::Expired, Some(2)));
    // Keys shared by two issuers: the provider whose issuer matched explains.
    let s = &mut Script::new([
        (0, signed(0, Reason::WrongIssuer)),
        (1, signed(1, Reason::WrongAudience)),
    ]);
    assert_eq!(
        deny_reason(&r.evaluate(s)),
        (Reason::WrongAudience, Some(1))
    );
    let s = &mut Script::new([
        (0, failed(0, Reason::UnknownKid)),
        (1, signed(1, Reason::WrongIssuer)),
    ]);
    assert_eq!(deny_reason(&r.evaluate(s)), (Reason::WrongIssuer, Some(1)));
}

#[test]
fn any_of_reports_missing_only_when_every_token_is_missing() {
    let r = rule(Requirement::AnyOf(vec![0, 1, 2]), false, false);
    let mut s = Script::new([]);
    assert_eq!(deny_reason(&r.evaluate(&mut s)), (Reason::Missing, None));
    assert_eq!(s.checked, [0, 1, 2]);

    let s = &mut Script::new([
        (1, failed(1, Reason::Expired)),
        (2, failed(2, Reason::WrongIssuer)),
    ]);
    assert_eq!(
        deny_reason(&r.evaluate(s)),
        (Reason::Expired, Some(1)),
        "first real failure"
    );

    let s = &mut Script::new([(0, Outcome::Unverified), (1, failed(1, Reason::Expired))]);
    assert_eq!(
        r.evaluate(s),
        allow(&[]),
        "keys unavailable with on_jwks_unavailable: allow"
    );
}

#[test]
fn all_of_needs_every_provider_and_finds_missing_tokens_before_verifying() {
    let r = rule(Requirement::AllOf(vec![0, 1]), false, false);
    let mut s = Script::new([
        (0, Outcome::Verified(verified(0))),
        (1, Outcome::Verified(verified(1))),
    ]);
    assert_eq!(r.evaluate(&mut s), allow(&[0, 1]));

    let mut s = Script::new([(0, Outcome::Verified(verified(0)))]);
    assert_eq!(deny_reason(&r.evaluate(&mut s)), (Reason::Missing, Some(1)));
    assert!(
        s.checked.is_empty(),
        "nothing verified when a token is missing"
    );

    let mut s = Script::new([
        (0, failed(0, Reason::UnknownKid)),
        (1, Outcome::Verified(verified(1))),
    ]);
    assert_eq!(
        deny_reason(&r.evaluate(&mut s)),
        (Reason::UnknownKid, Some(0))
    );
    assert_eq!(s.checked, [0], "stops at the first failure");

    let mut s = Script::new([
        (0, Outcome::Unverified),
        (1, Outcome::Verified(verified(1))),
    ]);
    assert_eq!(r.evaluate(&mut s), allow(&[1]));
}

#[test]
fn allow_missing() {
    let single = rule(Requirement::Provider(0), true, false);
    assert_eq!(single.evaluate(&mut Script::new([])), allow(&[]));
    assert_eq!(
        single.evaluate(&mut Script::new([(0, Outcome::Verified(verified(0)))])),
        allow(&[0])
    );
    assert_eq!(
        deny_reason(&single.evaluate(&mut Script::new([(0, failed(0, Reason::Expired))]))),
        (Reason::Expired, Some(0)),
        "a token that is present must be valid"
    );

    let any = rule(Requirement::AnyOf(vec![0, 1]), true, false);
    assert_eq!(any.evaluate(&mut Script::new([])), allow(&[]));
    assert_eq!(
        deny_reason(&any.evaluate(&mut Script::new([(1, failed(1, Reason::Malformed))]))),
        (Reason::Malformed, Some(1))
    );

    let all = rule(Requirement::AllOf(vec![0, 1]), true, false);
    let mut s = Script::new([(1, Outcome::Verified(verified(1)))]);
    assert_eq!(
        all.evaluate(&mut s),
        allow(&[1]),
        "present tokens are verified and kept"
    );
    assert_eq!(s.checked, [0, 1]);
    assert_eq!(
        deny_reason(&all.evaluate(&mut Script::new([(1, failed(1, Reason::Expired))]))),
        (Reason::Expired, Some(1))
    );
}

#[test]
fn allow_missing_or_failed() {
    let single = rule(Requirement::Provider(0), true, true);
    assert_eq!(single.evaluate(&mut Script::new([])), allow(&[]));
    assert_eq!(
        single.evaluate(&mut Script::new([(0, failed(0, Reason::Expired))])),
        allow(&[])
    );
    assert_eq!(
        single.evaluate(&mut Script::new([(0, Outcome::Verified(verified(0)))])),
        allow(&[0])
    );

    let all = rule(Requirement::AllOf(vec![0, 1]), true, true);
    let mut s = Script::new([
        (0, Outcome::Verified(verified(0))),
        (1, failed(1, Reason::Expired)),
    ]);
    assert_eq!(all.evaluate(&mut s), allow(&[0]));
    let any = rule(Requirement::AnyOf(vec![0, 1]), true, true);
    let mut s = Script::new([
        (0, failed(0, Reason::Expired)),
        (1, failed(1, Reason::Expired)),
    ]);
    assert_eq!(any.evaluate(&mut s), allow(&[]));
}

#[test]
fn bypass_checks_nothing() {
    let r = Rule {
        matcher: RequestMatcher::any(),
        action: RuleAction::Bypass,
    };
    let mut s = Script::new([(0, failed(0, Reason::Expired))]);
    assert_eq!(r.evaluate(&mut s), allow(&[]));
    assert!(s.checked.is_empty() && s.presence_asked.is_empty());
}

// ---- authorize, end to end --------------------------------------------------

const PARTNER_ISS: &str = "https://partner.example.com";

fn config() -> Compiled {
    compile(&config_json())
}

fn config_json() -> String {
    let partner = format!(
        r#"{{"name":"partner","issuer":"{PARTNER_ISS}","secret":{{"env":"JWT_SECRET"}},
            "from":[{{"header":"x-partner-token"}}]}}"#
    );
    let remote = r#"{"name":"remote","issuer":"https://idp.example.com",
        "jwks":{"remote":{"cluster":"idp","path":"/jwks"}},"from":[{"query":"remote_token"}]}"#;
    let remote_soft = r#"{"name":"remote-soft","issuer":"https://idp.example.com",
        "jwks":{"remote":{"cluster":"idp","path":"/jwks"}},"from":[{"query":"soft_token"}],
        "on_jwks_unavailable":"allow"}"#;
    format!(
        r#"{{"providers":[{idp},{partner},{remote},{remote_soft}],
          "rules":[
            {{"match":{{"path":{{"prefix":"/health"}}}},"bypass":true}},
            {{"match":{{"methods":["OPTIONS"]}},"bypass":true}},
            {{"match":{{"path":{{"prefix":"/api/"}}}},"requires":{{"provider":"idp"}}}},
            {{"match":{{"path":{{"prefix":"/partner/"}}}},"requires":{{"any_of":["idp","partner"]}}}},
            {{"match":{{"path":{{"prefix":"/both/"}}}},"requires":{{"all_of":["idp","partner"]}}}},
            {{"match":{{"path":{{"prefix":"/public/"}}}},"requires":{{"provider":"idp"}},"allow_missing":true}},
            {{"match":{{"path":{{"prefix":"/soft/"}}}},"requires":{{"provider":"idp"}},"allow_missing_or_failed":true}},
            {{"match":{{"path":{{"prefix":"/remote/"}}}},"requires":{{"any_of":["remote","remote-soft"]}}}}
          ]}}"#,
        idp = jwks_provider("idp", ""),
    )
}

fn req(method: &str, path: &str, extra: &[(&str, &str)]) -> HeaderList {
    let mut pairs = vec![
        (":method", method),
        (":path", path),
        (":authority", "api.example.com"),
    ];
    pairs.extend_from_slice(extra);
    HeaderList::from_pairs(pairs)
}

fn idp_token() -> String {
    sign(Algorithm::ES256, &claims())
}

fn partner_token() -> String {
    sign(
        Algorithm::HS256,
        &claims_with(json!({"iss": PARTNER_ISS, "aud": null})),
    )
}

fn no_remote_keys(_: usize) -> Option<Rc<KeySet>> {
    None
}

fn remote_keys(_: usize) -> Option<Rc<KeySet>> {
    Some(Rc::new(
        jwks::parse(&testdata("jwks.json"), 1 << 20).unwrap(),
    ))
}

#[test]
fn no_rule_and_bypass_rules_pass_without_checks() {
    let c = config();
    let mut cache = TokenCache::new(16);
    let garbage = [("authorization", "Bearer garbage")];
    for (method, path, rule) in [
        ("GET", "/other", None),
        ("GET", "/health/z", Some(0)),
        ("OPTIONS", "/api/x", Some(1)),
    ] {
        let e = c.authorize(
            &req(method, path, &garbage),
            NOW,
            &no_remote_keys,
            &mut cache,
        );
        assert_eq!(e.rule, rule, "{path}");
        assert_eq!(e.decision, Decision::Allow { verified: vec![] });
        assert!(e.checks.is_empty());
    }
}

#[test]
fn provider_rule_verifies_then_hits_the_cache() {
    let c = config();
    let mut cache = TokenCache::new(16);
    let token = idp_token();
    let auth = bearer(&token);
    let h = req("GET", "/api/items", &[("authorization", &auth)]);
    let e = c.authorize(&h, NOW, &no_remote_keys, &mut cache);
    assert_eq!(e.rule, Some(2));
    let Decision::Allow { verified } = &e.decision else {
        panic!("{e:?}")
    };
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].provider, 0);
    assert_eq!(verified[0].source, Some(0));
    assert_eq!(verified[0].payload["sub"], "alice");
    assert_eq!(e.checks, [(0, CheckResult::Verified { cached: false })]);

    let again = c.authorize(&h, NOW + 1, &no_remote_keys, &mut cache);
    assert_eq!(again.checks, [(0, CheckResult::Verified { cached: true })]);
    assert_eq!(again.decision, e.decision);
    assert_eq!((cache.hits, cache.misses), (1, 1));
}

/// The payload JSON for the filter state is made once, on verification, and
/// comes back from the cache; without the filter state it is never made.
#[test]
fn payload_json_is_made_on_verification_only_with_the_filter_state() {
    let token = idp_token();
    let auth = bearer(&token);
    let h = req("GET", "/api/items", &[("authorization", &auth)]);
    let verified_of = |c: &Compiled, cache: &mut TokenCache| match c
        .authorize(&h, NOW, &no_remote_keys, cache)
        .decision
    {
        Decision::Allow { mut verified } if verified.len() == 1 => verified.remove(0),
        other => panic!("{other:?}"),
    };
    let on = config();
    assert!(on.claims_filter_state);
    let mut cache = TokenCache::new(16);
    let first = verified_of(&on, &mut cache);
    let json = first.payload_json.clone().expect("payload JSON");
    assert_eq!(&*json, first.payload.to_string());
    let hit = verified_of(&on, &mut cache);
    assert_eq!(cache.hits, 1);
    assert!(
        Rc::ptr_eq(hit.payload_json.as_ref().unwrap(), &json),
        "shared, not rebuilt"
    );

    let off =
        compile(&config_json().replacen(r#""rules""#, r#""claims_filter_state":false,"rules""#, 1));
    assert!(!off.claims_filter_state);
    let mut cache = TokenCache::new(16);
    assert_eq!(verified_of(&off, &mut cache).payload_json, None);
    assert_eq!(verified_of(&off, &mut cache).payload_json, None);
    assert_eq!(cache.hits, 1);
}

#[test]
fn provider_rule_denials() {
    let c = config();
    let mut cache = TokenCache::new(16);
    let e = c.authorize(
        &req("GET", "/api/items", &[]),
        NOW,
        &no_remote_keys,
        &mut cache,
    );
    let Decision::Deny(d) = &e.decision else {
        panic!()
    };
    assert_eq!(
        (d.reason, d.provider, d.status()),
        (Reason::Missing, Some(0), 401)
    );
    assert_eq!(d.www_authenticate("r"), r#"Bearer realm="r""#);
    assert_eq!(e.checks, [(0, CheckResult::Missing)]);

    let expired = bearer(&sign(
        Algorithm::ES256,
        &claims_with(json!({"exp": NOW - 3600})),
    ));
    let e = c.authorize(
        &req("GET", "/api/items", &[("authorization", &expired)]),
        NOW,
        &no_remote_keys,
        &mut cache,
    );
    assert_eq!(deny_reason(&e.decision), (Reason::Expired, Some(0)));
    assert_eq!(e.checks, [(0, CheckResult::Failed(Reason::Expired))]);
    assert_eq!(cache.len(), 0, "failures are not cached");
}

#[test]
fn any_of_and_all_of_across_locations() {
    let c = config();
    let mut cache = TokenCache::new(16);
    let idp = bearer(&idp_token());
    let partner = partner_token();
    let decide = |path: &str, extra: &[(&str, &str)], cache: &mut TokenCache| {
        c.authorize(&req("GET", path, extra), NOW, &no_remote_keys, cache)
    };

    let e = decide("/partner/x", &[("x-partner-token", &partner)], &mut cache);
    let Decision::Allow { verified } = &e.decision else {
        panic!("{e:?}")
    };
    assert_eq!(verified.iter().map(|v| v.provider).collect::<Vec<_>>(), [1]);
    assert_eq!(
        e.checks,
        [
            (0, CheckResult::Missing),
            (1, CheckResult::Verified { cached: false })
        ]
    );

    let e = decide(
        "/partner/x",
        &[("authorization", &idp), ("x-partner-token", &partner)],
        &mut cache,
    );
    assert_eq!(
        e.checks,
        [(0, CheckResult::Verified { cached: false })],
        "partner never verified"
    );

    let e = decide("/partner/x", &[], &mut cache);
    assert_eq!(deny_reason(&e.decision), (Reason::Missing, None));

    let e = decide(
        "/both/x",
        &[("authorization", &idp), ("x-partner-token", &partner)],
        &mut cache,
    );
    let Decision::Allow { verified } = &e.decision else {
        panic!("{e:?}")
    };
    assert_eq!(
        verified.iter().map(|v| v.provider).collect::<Vec<_>>(),
        [0, 1]
    );

    let e = decide("/both/x", &[("authorization", &idp)], &mut cache);
    assert_eq!(deny_reason(&e.decision), (Reason::Missing, Some(1)));
    assert!(
        e.checks.is_empty(),
        "no verification when a required token is missing"
    );
}

#[test]
fn allow_missing_and_allow_missing_or_failed_routes() {
    let c = config();
    let mut cache = TokenCache::new(16);
    let bad = [("authorization", "Bearer not.a.token")];
    let decide = |path: &str, extra: &[(&str, &str)], cache: &mut TokenCache| {
        c.authorize(&req("GET", path, extra), NOW, &no_remote_keys, cache)
            .decision
    };
    assert_eq!(decide("/public/x", &[], &mut cache), allow(&[]));
    assert_eq!(
        deny_reason(&decide("/public/x", &bad, &mut cache)).0,
        Reason::Malformed
    );
    assert_eq!(decide("/soft/x", &[], &mut cache), allow(&[]));
    assert_eq!(decide("/soft/x", &bad, &mut cache), allow(&[]));
    let good = bearer(&idp_token());
    let Decision::Allow { verified } = decide("/soft/x", &[("authorization", &good)], &mut cache)
    else {
        panic!()
    };
    assert_eq!(verified.len(), 1);
}

#[test]
fn remote_keys_needed_unavailable_and_present() {
    let c = config();
    let mut cache = TokenCache::new(16);
    let token = sign(Algorithm::EdDSA, &claims());
    let both = req(
        "GET",
        &format!("/remote/x?remote_token={token}&soft_token={token}"),
        &[],
    );
    let one = req("GET", &format!("/remote/x?remote_token={token}"), &[]);
    assert_eq!(c.providers_needing_keys(&both), [2, 3]);
    assert_eq!(c.providers_needing_keys(&one), [2]);
    assert!(c
        .providers_needing_keys(&req("GET", "/remote/x", &[]))
        .is_empty());
    assert!(
        c.providers_needing_keys(&req("GET", "/api/x", &[]))
            .is_empty(),
        "inline keys need no fetch"
    );
    assert!(c
        .providers_needing_keys(&req("GET", &format!("/health?remote_token={token}"), &[]))
        .is_empty());

    let e = c.authorize(&one, NOW, &no_remote_keys, &mut cache);
    let Decision::Deny(d) = &e.decision else {
        panic!("{e:?}")
    };
    assert_eq!(
        (d.reason, d.provider, d.code()),
        (Reason::JwksUnavailable, Some(2), "jwks_unavailable")
    );

    // The soft provider's on_jwks_unavailable: allow lets the request through unverified.
    let e = c.authorize(&both, NOW, &no_remote_keys, &mut cache);
    assert_eq!(e.decision, allow(&[]));
    assert_eq!(
        e.checks,
        [
            (2, CheckResult::Failed(Reason::JwksUnavailable)),
            (3, CheckResult::Unverified)
        ]
    );

    let e = c.authorize(&one, NOW, &remote_keys, &mut cache);
    let Decision::Allow { verified } = &e.decision else {
        panic!("{e:?}")
    };
    assert_eq!(verified[0].provider, 2);
}

#[test]
fn unknown_kid_is_reported_for_refetch_and_key_rotation_invalidates_the_cache() {
    let c = config();
    let mut cache = TokenCache::new(16);
    let (key, _) = signing_key(Algorithm::EdDSA);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("rotated-in".into());
    let unknown = sign_with(&header, &claims(), &key);
    let h = req("GET", &format!("/remote/x?remote_token={unknown}"), &[]);
    let e = c.authorize(&h, NOW, &remote_keys, &mut cache);
    assert_eq!(deny_reason(&e.decision), (Reason::UnknownKid, Some(2)));
    assert_eq!(e.unknown_kid_providers().collect::<Vec<_>>(), [2]);

    // A verified token is cached for the key set it was verified with only.
    let token = sign(Algorithm::EdDSA, &claims());
    let h = req("GET", &format!("/remote/x?remote_token={token}"), &[]);
    assert!(matches!(
        c.authorize(&h, NOW, &remote_keys, &mut cache).decision,
        Decision::Allow { .. }
    ));
    let rotated = |_: usize| {
        Some(Rc::new(
            jwks::parse(&testdata("rsa.jwks.json"), 1 << 20).unwrap(),
        ))
    };
    let e = c.authorize(&h, NOW, &rotated, &mut cache);
    assert_eq!(deny_reason(&e.decision), (Reason::UnknownKid, Some(2)));
    assert_eq!(cache.expirations, 1);
}

#[test]
fn hmac_token_with_the_rsa_public_key_as_secret_fails_end_to_end() {
    let c = config();
    let mut cache = TokenCache::new(16);
    let forged = sign_with(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&testdata("rsa.pub.pem")),
    );
    let auth = bearer(&forged);
    let e = c.authorize(
        &req("GET", "/api/x", &[("authorization", &auth)]),
        NOW,
        &no_remote_keys,
        &mut cache,
    );
    assert_eq!(
        deny_reason(&e.decision),
        (Reason::AlgorithmNotAllowed, Some(0))
    );
}
