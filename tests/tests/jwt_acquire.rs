//! jwt-acquire in a real Envoy against a real OAuth2 token endpoint
//! (`oidc-provider`): injection, source selection, sharing one fetch between
//! workers, refresh before expiry, outages, rejected credentials, and requests
//! held for the first token.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use pwf_tests::{jwt_parts, wait_until, EchoUpstream, Envoy, HttpClient, Idp, Response};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CONFIG: &str = "envoy-configs/jwt-acquire.yaml";

fn metric(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(&format!("wasmcustom.jwt_acquire.{name}"))
        .unwrap_or(0)
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One source for client svc-a, with these fields added or replaced.
fn one_source(extra: Value) -> String {
    let mut source = json!({
        "name": "default",
        "token_endpoint": {"cluster": "idp", "path": "/token", "timeout_ms": 2000},
        "client_id": {"inline": "svc-a"},
        "client_secret": {"inline": "svc-a-secret"},
        "refresh": {"retry_initial_ms": 200, "retry_max_ms": 500}
    });
    source
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({ "sources": [source] }).to_string()
}

fn start(idp: &Idp, plugin_config: Option<&str>, concurrency: u32) -> (Envoy, EchoUpstream) {
    let echo = EchoUpstream::start("api");
    let mut builder = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .port(18100, idp.port())
        .concurrency(concurrency);
    if let Some(config) = plugin_config {
        builder = builder.plugin_config(config);
    }
    (builder.start(), echo)
}

/// The bearer token the upstream received on its last request.
fn upstream_token(echo: &EchoUpstream) -> Option<String> {
    let auth = echo.last_request()?.header("authorization")?;
    Some(
        auth.strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("not a bearer credential: {auth}"))
            .to_owned(),
    )
}

/// Verifies `token` against the provider's published JWKS, issuer and audience.
fn verify(idp: &Idp, token: &str) -> Value {
    let jwks: JwkSet = serde_json::from_value(idp.jwks()).unwrap();
    let header = decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("the token's kid is published");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_audience(&["api://default"]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
        .claims
}

fn assert_unavailable(resp: &Response) {
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(body["error"], "token_unavailable", "{body}");
    assert_eq!(body["status"], 503);
    let retry_after: u64 = resp
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
}

#[test]
fn the_token_reaches_the_upstream_and_verifies_against_the_providers_jwks() {
    let idp = Idp::start();
    let (envoy, echo) = start(&idp, None, 2);

    // Source "default": svc-a with HTTP Basic; inbound cookies stripped.
    let resp = envoy
        .req("GET", "/orders/1")
        .header("cookie", "session=internal")
        .send();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("cookie"), None, "inbound cookie stripped");
    let claims = verify(&idp, &upstream_token(&echo).unwrap());
    assert_eq!(claims["client_id"], "svc-a");
    assert_eq!(claims["plan"], "pro");
    assert_eq!(claims["scope"], "api:read api:write");
    assert!(claims["exp"].as_u64().unwrap() > unix_now_s());

    // Source "reports": svc-b with client_secret_post and its secret from the VM environment.
    let resp = envoy.get("/reports/q3");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let claims = verify(&idp, &upstream_token(&echo).unwrap());
    assert_eq!(claims["client_id"], "svc-b");
    assert_eq!(claims["scope"], "api:read");

    // The IdP enforces each client's registered auth method, so these counts
    // also prove basic and post were used as configured.
    let by_client = idp.stats()["token_requests_by_client"].clone();
    assert_eq!(by_client, json!({"svc-a": 1, "svc-b": 1}));
    assert_eq!(metric(&envoy, "source.default.fetch_ok"), 1);
    assert_eq!(metric(&envoy, "source.reports.fetch_ok"), 1);
    assert_eq!(metric(&envoy, "source.default.injected"), 1);
    assert_eq!(metric(&envoy, "source.reports.injected"), 1);
    assert!(envoy
        .stats()
        .contains_key("wasmcustom.jwt_acquire.source.default.token_age_s"));
}

#[test]
fn requests_are_held_during_the_first_fetch() {
    let idp = Idp::start();
    idp.set_token_mode("slow:1500");
    let (envoy, echo) = start(&idp, Some(&one_source(json!({}))), 2);
    let started = Instant::now();
    let resp = envoy.get("/first");
    let waited = started.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.text());
    verify(&idp, &upstream_token(&echo).unwrap());
    assert_eq!(metric(&envoy, "source.default.held"), 1);
    assert_eq!(metric(&envoy, "source.default.injected"), 1);
    assert!(
        waited >= Duration::from_millis(300),
        "the request waited for the token: {waited:?}"
    );
    assert_eq!(idp.stats()["token_requests"], 1);
}

#[test]
fn a_held_request_times_out_with_503() {
    let idp = Idp::start();
    idp.set_token_mode("slow:5000");
    let config = one_source(json!({"hold_timeout_ms": 800}));
    let (envoy, echo) = start(&idp, Some(&config), 1);
    let started = Instant::now();
    let resp = envoy.get("/first");
    assert_unavailable(&resp);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(echo.request_count(), 0);
    assert_eq!(metric(&envoy, "source.default.held"), 1);
    assert_eq!(metric(&envoy, "source.default.no_token_denied"), 1);
}

#[test]
fn tokens_are_refreshed_before_expiry_with_one_fetch_for_four_workers() {
    // 4 s tokens, refreshed at half their lifetime: about one fetch every 2 s.
    let idp = Idp::builder().ttl(4).start();
    let config = one_source(json!({
        "refresh": {"at_fraction": 0.5, "jitter_fraction": 0.0, "expiry_margin_s": 1,
                    "retry_initial_ms": 200, "retry_max_ms": 500}
    }));
    let (envoy, echo) = start(&idp, Some(&config), 4);
    let run = Duration::from_millis(6500);
    let started = Instant::now();
    let mut seen: Vec<(u64, String)> = Vec::new(); // (received at, token)
    while started.elapsed() < run {
        // A new connection per request spreads them over the workers.
        for _ in 0..4 {
            let resp = HttpClient::new(envoy.port()).get("/tick");
            assert_eq!(resp.status, 200, "{}", resp.text());
            let now = unix_now_s();
            seen.push((now, upstream_token(&echo).unwrap()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    for (at, token) in &seen {
        let exp = jwt_parts(token).1["exp"].as_u64().unwrap();
        assert!(
            *at < exp,
            "an expired token was injected (received {at}, exp {exp})"
        );
    }
    let distinct: BTreeSet<&String> = seen.iter().map(|(_, t)| t).collect();
    assert!(
        distinct.len() >= 3,
        "tokens were refreshed: {}",
        distinct.len()
    );
    // Each refresh happened before the token it replaced expired.
    let mut order: Vec<&String> = Vec::new();
    for (_, t) in &seen {
        if order.last() != Some(&t) {
            order.push(t);
        }
    }
    for pair in order.windows(2) {
        let old_exp = jwt_parts(pair[0]).1["exp"].as_u64().unwrap();
        let new_iat = jwt_parts(pair[1]).1["iat"].as_u64().unwrap();
        assert!(
            new_iat < old_exp,
            "refreshed at {new_iat}, old token expired at {old_exp}"
        );
    }
    // One fetch per refresh for the whole process: with a fetch per worker
    // (4 workers and the main thread) this would be about 4x higher.
    let fetches = idp.stats()["token_requests"].as_u64().unwrap();
    let max_fetches = (elapsed_s / 2.0).floor() as u64 + 2;
    assert!(
        fetches <= max_fetches,
        "{fetches} fetches in {elapsed_s:.1} s (at most {max_fetches})"
    );
    assert_eq!(metric(&envoy, "source.default.fetch_ok"), fetches);
    assert_eq!(idp.stats()["tokens_issued"].as_u64().unwrap(), fetches);
}

#[test]
fn max_expires_in_s_caps_a_long_token_lifetime() {
    // The provider says 300 s; the filter believes at most 2 s, refreshing at
    // half of that: a new token about every second.
    let idp = Idp::builder().ttl(300).start();
    let config = one_source(json!({
        "max_expires_in_s": 2,
        "default_expires_in_s": 2,
        "refresh": {"at_fraction": 0.5, "jitter_fraction": 0.0, "expiry_margin_s": 0,
                    "retry_initial_ms": 200, "retry_max_ms": 500}
    }));
    let (envoy, echo) = start(&idp, Some(&config), 1);
    let mut tokens = BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        let resp = envoy.get("/tick");
        assert_eq!(resp.status, 200, "{}", resp.text());
        tokens.insert(upstream_token(&echo).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without the cap, one token for 300 s.
    assert!(tokens.len() >= 3, "tokens seen: {}", tokens.len());
    envoy.wait_for_log("got a token valid for 2 s (its expires_in was longer: max_expires_in_s)");
}

#[test]
fn an_endpoint_outage_keeps_the_current_token_until_expiry_then_fails_closed() {
    let idp = Idp::builder().ttl(4).start();
    let config = one_source(json!({
        "refresh": {"at_fraction": 0.25, "jitter_fraction": 0.0, "expiry_margin_s": 0,
                    "retry_initial_ms": 200, "retry_max_ms": 400}
    }));
    let (envoy, echo) = start(&idp, Some(&config), 2);
    assert_eq!(envoy.get("/a").status, 200);
    let first = upstream_token(&echo).unwrap();
    idp.set_token_mode("down");
    let exp = jwt_parts(&first).1["exp"].as_u64().unwrap();
    // Until it expires, the current token is used although refreshes fail.
    while unix_now_s() + 1 < exp {
        let resp = envoy.get("/b");
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(upstream_token(&echo).as_deref(), Some(first.as_str()));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metric(&envoy, "source.default.fetch_failed.oauth_other") >= 1);
    // After expiry: 503 (fail closed), and the upstream sees nothing.
    let denied = wait_until(Duration::from_secs(4), || envoy.get("/c").status == 503);
    assert!(denied, "requests fail closed once the token expired");
    let before = echo.request_count();
    assert_unavailable(&envoy.get("/c"));
    assert_eq!(echo.request_count(), before);
    assert!(metric(&envoy, "source.default.no_token_denied") >= 1);
    // The endpoint recovers: a new token within the backoff.
    idp.set_token_mode("ok");
    let recovered = wait_until(Duration::from_secs(4), || envoy.get("/d").status == 200);
    assert!(recovered);
    let second = upstream_token(&echo).unwrap();
    assert_ne!(second, first);
    verify(&idp, &second);
}

#[test]
fn fail_open_passes_requests_without_a_token() {
    let idp = Idp::start();
    idp.set_token_mode("down");
    let (envoy, echo) = start(
        &idp,
        Some(&one_source(json!({"on_unavailable": "pass"}))),
        1,
    );
    let resp = envoy.get("/open");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(echo.last_request().unwrap().header("authorization"), None);
    assert_eq!(metric(&envoy, "source.default.no_token_passed"), 1);
    assert_eq!(metric(&envoy, "source.default.injected"), 0);
}

#[test]
fn rejected_credentials_are_reported_clearly_and_never_logged() {
    let idp = Idp::start();
    let secret = "wrong-secret-d41d8cd9";
    let config = one_source(json!({"client_secret": {"inline": secret}}));
    let (envoy, echo) = start(&idp, Some(&config), 1);
    assert_unavailable(&envoy.get("/x"));
    assert_eq!(echo.request_count(), 0);
    assert!(
        envoy.wait_for_counter(
            "wasmcustom.jwt_acquire.source.default.fetch_failed.oauth_invalid_client",
            1
        ) >= 1
    );
    envoy.wait_for_log(
        "token fetch failed (oauth_invalid_client): HTTP status 401, error 'invalid_client'",
    );
    let log = envoy.log();
    assert!(!log.contains(secret), "the secret leaked into the log");
    let basic = base64_basic("svc-a", secret);
    assert!(
        !log.contains(&basic),
        "the Basic credentials leaked into the log"
    );
}

fn base64_basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

#[test]
fn an_invalid_token_response_is_rejected() {
    // The echo upstream as token endpoint: 200 with JSON that has no access_token.
    let idp = Idp::start();
    let config = one_source(json!({
        "token_endpoint": {"cluster": "echo", "path": "/token", "timeout_ms": 2000}
    }));
    let (envoy, echo) = start(&idp, Some(&config), 1);
    assert!(
        envoy.wait_for_counter(
            "wasmcustom.jwt_acquire.source.default.fetch_failed.invalid_response",
            1
        ) >= 1
    );
    envoy.wait_for_log("invalid token response: access_token is missing");
    let before = echo.request_count();
    assert_unavailable(&envoy.get("/x"));
    assert_eq!(
        echo.request_count(),
        before,
        "the request did not reach the upstream"
    );
}

#[test]
fn an_existing_header_is_overwritten_or_kept_as_configured() {
    let idp = Idp::start();
    let (envoy, echo) = start(&idp, Some(&one_source(json!({}))), 1);
    let resp = envoy
        .req("GET", "/o")
        .header("authorization", "Bearer from-the-app")
        .send();
    assert_eq!(resp.status, 200);
    let injected = upstream_token(&echo).unwrap();
    assert_ne!(injected, "from-the-app");
    verify(&idp, &injected);
    drop(envoy);

    let config = one_source(
        json!({"inject": {"existing": "keep", "header": "x-service-token", "prefix": ""}}),
    );
    let (envoy, echo) = start(&idp, Some(&config), 1);
    let resp = envoy
        .req("GET", "/k")
        .header("x-service-token", "app-token")
        .send();
    assert_eq!(resp.status, 200);
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("x-service-token").as_deref(), Some("app-token"));
    assert_eq!(metric(&envoy, "source.default.kept_existing"), 1);
    assert_eq!(envoy.get("/n").status, 200);
    let token = echo
        .last_request()
        .unwrap()
        .header("x-service-token")
        .unwrap();
    verify(&idp, &token);
    assert_eq!(metric(&envoy, "source.default.injected"), 1);
    drop(envoy);

    // With no token to be had (the endpoint hangs), a request that keeps its
    // own header is neither held nor refused; one without it is.
    idp.set_token_mode("slow:5000");
    let config = one_source(json!({
        "hold_timeout_ms": 800,
        "inject": {"existing": "keep", "header": "x-service-token", "prefix": ""}
    }));
    let (envoy, echo) = start(&idp, Some(&config), 1);
    let started = Instant::now();
    let resp = envoy
        .req("GET", "/k")
        .header("x-service-token", "app-token")
        .send();
    assert_eq!(resp.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        echo.last_request()
            .unwrap()
            .header("x-service-token")
            .as_deref(),
        Some("app-token")
    );
    assert_unavailable(&envoy.get("/n"));
    assert_eq!(metric(&envoy, "source.default.held"), 1);
}

#[test]
fn requests_no_source_matches_pass_unchanged() {
    let idp = Idp::start();
    let config = one_source(json!({"match": {"host": {"exact": "partner.example.com"}}}));
    let (envoy, echo) = start(&idp, Some(&config), 1);
    assert_eq!(envoy.get("/other").status, 200);
    assert_eq!(echo.last_request().unwrap().header("authorization"), None);
    let resp = envoy
        .req("GET", "/p")
        .header("host", "partner.example.com")
        .send();
    assert_eq!(resp.status, 200);
    verify(&idp, &upstream_token(&echo).unwrap());
    assert_eq!(metric(&envoy, "source.default.injected"), 1);
}

#[test]
fn bad_configs_fail_envoy_validation_naming_the_field() {
    let cases = [
        (
            one_source(json!({"client_auth": "basic"})),
            "sources[0].client_auth: unknown variant `basic`",
        ),
        (
            one_source(json!({"client_secret": {"env": "NOT_SET_ANYWHERE"}})),
            "sources[0].client_secret.env: environment variable 'NOT_SET_ANYWHERE' is not set",
        ),
        (
            one_source(json!({"refresh": {"at_fraction": 0}})),
            "sources[0].refresh.at_fraction: must be greater than 0 and at most 1",
        ),
        (
            one_source(json!({"inject": {"strip": ["x-forwarded-proto"]}})),
            "sources[0].inject.strip[0]: 'x-forwarded-proto' cannot be stripped",
        ),
        (
            one_source(json!({"max_expires_in_s": 0})),
            "sources[0].max_expires_in_s: must be 1 to 31536000",
        ),
    ];
    for (config, expected) in cases {
        let result = Envoy::builder(CONFIG).plugin_config(&config).validate();
        assert!(!result.ok, "accepted: {config}");
        assert!(
            result.output.contains(expected),
            "{expected}\n{}",
            result.output
        );
    }
    assert!(
        Envoy::builder(CONFIG)
            .plugin_config(&one_source(json!({})))
            .validate()
            .ok
    );
}
