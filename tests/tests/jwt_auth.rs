//! jwt-auth in a real Envoy: fixture-key tokens for every algorithm and every
//! rejection reason, rules, outputs, and a real OpenID provider for remote
//! JWKS (fetching, sharing, rotation, outages).

use jsonwebtoken::Algorithm;
use pwf_tests::jwt::{demo_claims, demo_token, fixture_jwks, sign, unix_now, TestKey, DEMO_ISSUER};
use pwf_tests::{EchoUpstream, Envoy, Idp, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const CONFIG: &str = "envoy-configs/jwt-auth.yaml";

fn metric(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(&format!("wasmcustom.jwt_auth.{name}"))
        .unwrap_or(0)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn get_with_token(envoy: &Envoy, path: &str, token: &str) -> Response {
    envoy
        .req("GET", path)
        .header("authorization", bearer(token))
        .send()
}

/// The shipped config (demo provider with inline fixture JWKS; the remote one points nowhere).
fn start_shipped() -> (Envoy, EchoUpstream) {
    let echo = EchoUpstream::start("echo");
    let envoy = Envoy::builder(CONFIG).upstream(18000, &echo).start();
    (envoy, echo)
}

/// A config with one inline provider using the fixture keys and the given extra provider fields.
fn inline_provider(extra: Value) -> String {
    let mut provider = json!({
        "name": "demo", "issuer": DEMO_ISSUER, "audiences": ["api"],
        "jwks": {"inline": fixture_jwks()},
    });
    provider
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({"providers": [provider], "rules": [{"match": {"path": {"prefix": "/"}}, "requires": {"provider": "demo"}}]})
        .to_string()
}

fn start_inline(extra: Value) -> (Envoy, EchoUpstream) {
    let echo = EchoUpstream::start("echo");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .plugin_config(&inline_provider(extra))
        .start();
    (envoy, echo)
}

fn assert_denied(resp: &Response, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let challenge = resp.header("www-authenticate").expect("WWW-Authenticate");
    assert!(challenge.starts_with("Bearer realm=\""), "{challenge}");
    match code {
        "missing" => assert!(
            !challenge.contains("error="),
            "RFC 6750 §3.1: no error code without a token: {challenge}"
        ),
        "claim_mismatch" => assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        ),
        _ => assert!(challenge.contains("error=\"invalid_token\""), "{challenge}"),
    }
}

#[test]
fn valid_token_passes_with_claims_and_the_token_is_stripped() {
    let (envoy, echo) = start_shipped();
    let token = demo_token("alice", json!({"plan": "pro"}));
    let resp = get_with_token(&envoy, "/api/orders", &token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(got.header("x-jwt-plan").as_deref(), Some("pro"));
    assert_eq!(
        got.header("authorization"),
        None,
        "forward: false strips the token"
    );
    let payload_segment = token.split('.').nth(1).unwrap();
    assert_eq!(
        got.header("x-jwt-payload").as_deref(),
        Some(payload_segment)
    );
    assert_eq!(metric(&envoy, "allowed"), 1);
}

#[test]
fn missing_token_gets_401_with_rfc6750_challenge() {
    let (envoy, echo) = start_shipped();
    let resp = envoy.get("/api/orders");
    assert_denied(&resp, 401, "missing");
    assert_eq!(echo.request_count(), 0);
    assert_eq!(metric(&envoy, "denied.missing"), 1);
}

#[test]
fn rules_bypass_allow_missing_and_unprotected_paths() {
    let (envoy, echo) = start_shipped();
    assert_eq!(envoy.get("/health").status, 200);
    // A bypass prefix cannot be walked out of with dot segments.
    for walked in [
        "/health/../api/orders",
        "/health/%2E%2e/api/orders",
        "/health/.//../api/orders",
    ] {
        assert_denied(&envoy.get(walked), 401, "missing");
    }
    assert_eq!(
        envoy.req("OPTIONS", "/api/orders").send().status,
        200,
        "CORS preflight bypasses"
    );
    assert_eq!(envoy.get("/public/page").status, 200, "allow_missing");
    let resp = get_with_token(&envoy, "/public/page", "not.a.jwt");
    assert_denied(&resp, 401, "malformed");
    let resp = get_with_token(&envoy, "/public/page", &demo_token("bob", json!({})));
    assert_eq!(resp.status, 200);
    assert_eq!(
        echo.last_request().unwrap().header("x-jwt-sub").as_deref(),
        Some("bob")
    );
    assert_eq!(envoy.get("/elsewhere").status, 200, "no rule: not checked");
    // Forged identity headers never reach the upstream, even on unchecked paths.
    envoy
        .req("GET", "/elsewhere")
        .header("x-jwt-sub", "mallory")
        .header("x-jwt-payload", "e30")
        .send();
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("x-jwt-sub"), None);
    assert_eq!(got.header("x-jwt-payload"), None);
}

#[test]
fn every_algorithm_verifies() {
    let (envoy, echo) = start_inline(json!({
        "algorithms": ["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","EdDSA"],
        "claims_to_headers": [{"claim": "sub", "header": "x-sub"}]
    }));
    let cases = [
        (TestKey::Rsa, Algorithm::RS256),
        (TestKey::Rsa, Algorithm::RS384),
        (TestKey::Rsa, Algorithm::RS512),
        (TestKey::Rsa, Algorithm::PS256),
        (TestKey::Rsa, Algorithm::PS384),
        (TestKey::Rsa, Algorithm::PS512),
        (TestKey::Ec256, Algorithm::ES256),
        (TestKey::Ec384, Algorithm::ES384),
        (TestKey::Ed25519, Algorithm::EdDSA),
    ];
    for (key, alg) in cases {
        let sub = format!("{alg:?}");
        let resp = get_with_token(&envoy, "/x", &sign(key, alg, &demo_claims(&sub, json!({}))));
        assert_eq!(resp.status, 200, "{alg:?}: {}", resp.text());
        assert_eq!(echo.last_request().unwrap().header("x-sub"), Some(sub));
    }
    // RS* and ES* ran in Envoy's BoringSSL; PS* and EdDSA in Rust.
    assert!(envoy.wait_for_counter("wasmcustom.jwt_auth.verify.native", 5) >= 5);
    assert!(envoy.wait_for_counter("wasmcustom.jwt_auth.verify.fallback", 4) >= 4);
}

#[test]
fn hmac_provider_with_secret_from_env() {
    let echo = EchoUpstream::start("echo");
    let secret = std::fs::read_to_string(pwf_tests::jwt::testdata("hs.secret")).unwrap();
    let config = json!({
        "providers": [{"name": "hs", "issuer": DEMO_ISSUER, "algorithms": ["HS256", "HS384", "HS512"],
                       "secret": {"env": "JWT_SECRET"}}],
        "rules": [{"match": {}, "requires": {"provider": "hs"}}]
    });
    let secret_env = secret.trim().to_string();
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .plugin_config(&config.to_string())
        .edit(move |c| {
            let vm = c
                .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/vm_config")
                .unwrap();
            vm["environment_variables"] = json!({"key_values": {"JWT_SECRET": secret_env}});
        })
        .start();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let resp = get_with_token(
            &envoy,
            "/x",
            &sign(TestKey::Hmac, alg, &demo_claims("h", json!({}))),
        );
        assert_eq!(resp.status, 200, "{alg:?}: {}", resp.text());
    }
    // A kid in the header (many HMAC issuers set one) still finds the secret.
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some("key-2024".into());
    let with_kid = jsonwebtoken::encode(
        &header,
        &demo_claims("h", json!({})),
        &TestKey::Hmac.encoding_key(),
    )
    .unwrap();
    let resp = get_with_token(&envoy, "/x", &with_kid);
    assert_eq!(resp.status, 200, "HS256 with kid: {}", resp.text());
    let rsa = sign(TestKey::Rsa, Algorithm::RS256, &demo_claims("h", json!({})));
    assert_denied(
        &get_with_token(&envoy, "/x", &rsa),
        401,
        "algorithm_not_allowed",
    );
}

#[test]
fn every_rejection_reason() {
    let (envoy, echo) = start_inline(json!({
        "algorithms": ["RS256", "ES256"],
        "max_lifetime_s": 7200,
        "max_token_bytes": 4096,
        "required_claims": [{"claim": "scope", "any_of": ["api:read"], "space_delimited": true}]
    }));
    let now = unix_now();
    let good = |extra: Value| {
        demo_claims("u", {
            let mut e = json!({"scope": "api:read api:write"});
            e.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            e
        })
    };
    let rs = |claims: &Value| sign(TestKey::Rsa, Algorithm::RS256, claims);
    assert_eq!(
        get_with_token(&envoy, "/x", &rs(&good(json!({})))).status,
        200
    );

    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let valid = rs(&good(json!({})));
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&good(json!({"sub": "admin"}))),
        parts[2]
    );
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    // Correctly signed tokens with an arbitrary header and payload segment.
    let signed_raw = |header: &Value, payload_segment: &str| {
        let signing_input = format!("{}.{payload_segment}", b64(header));
        let sig = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &TestKey::Rsa.encoding_key(),
            Algorithm::RS256,
        )
        .unwrap();
        format!("{signing_input}.{sig}")
    };
    let rs_header = json!({"alg": "RS256", "kid": "rsa-1"});
    let crit_token = signed_raw(
        &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp-ext"], "exp-ext": 1}),
        parts[1],
    );
    // Algorithm confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let confusion = {
        let public_pem = std::fs::read(pwf_tests::jwt::testdata("rsa.pub.pem")).unwrap();
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        jsonwebtoken::encode(
            &h,
            &good(json!({})),
            &jsonwebtoken::EncodingKey::from_secret(&public_pem),
        )
        .unwrap()
    };
    let mut unknown_kid_header = jsonwebtoken::Header::new(Algorithm::RS256);
    unknown_kid_header.kid = Some("nope-9".into());
    let unknown_kid = jsonwebtoken::encode(
        &unknown_kid_header,
        &good(json!({})),
        &TestKey::Rsa.encoding_key(),
    )
    .unwrap();

    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("bad signature", tampered, 401, "invalid_signature"),
        (
            "expired",
            rs(&good(json!({"iat": now - 7000, "exp": now - 120}))),
            401,
            "expired",
        ),
        (
            "not yet valid",
            rs(&good(json!({"nbf": now + 600}))),
            401,
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            rs(&good(json!({"iss": "https://evil.example"}))),
            401,
            "wrong_issuer",
        ),
        (
            "wrong audience",
            rs(&good(json!({"aud": "other"}))),
            401,
            "wrong_audience",
        ),
        ("unknown kid", unknown_kid, 401, "unknown_kid"),
        ("alg none", none_token, 401, "algorithm_not_allowed"),
        (
            "alg not allowed",
            sign(TestKey::Rsa, Algorithm::PS256, &good(json!({}))),
            401,
            "algorithm_not_allowed",
        ),
        ("alg confusion", confusion, 401, "algorithm_not_allowed"),
        ("crit", crit_token, 401, "unsupported_crit"),
        (
            "oversized",
            rs(&good(json!({"pad": "x".repeat(5000)}))),
            401,
            "token_too_large",
        ),
        (
            "lifetime",
            rs(&good(json!({"iat": now, "exp": now + 86_400}))),
            401,
            "lifetime_too_long",
        ),
        (
            "bad base64 header",
            format!("%%%.{}.{}", parts[1], parts[2]),
            401,
            "malformed",
        ),
        (
            "bad base64 payload",
            signed_raw(&rs_header, "%%%"),
            401,
            "malformed",
        ),
        (
            "non-JSON payload",
            signed_raw(&rs_header, "bm90IGpzb24"),
            401,
            "malformed",
        ),
        (
            "array payload",
            signed_raw(&rs_header, &b64(&json!([1, 2]))),
            401,
            "malformed",
        ),
        (
            "two segments",
            format!("{}.{}", parts[0], parts[1]),
            401,
            "malformed",
        ),
        ("JWE shape", "a.b.c.d.e".to_string(), 401, "malformed"),
        (
            "claim mismatch",
            rs(&good(json!({"scope": "api:write"}))),
            403,
            "claim_mismatch",
        ),
    ];
    for (name, token, status, code) in &cases {
        let resp = get_with_token(&envoy, "/x", token);
        assert_eq!(resp.status, *status, "{name}: {}", resp.text());
        assert_denied(&resp, *status, code);
    }
    assert_eq!(
        echo.request_count(),
        1,
        "only the valid token reached the upstream"
    );
    assert_eq!(metric(&envoy, "denied.malformed"), 6);
    assert_eq!(metric(&envoy, "denied.algorithm_not_allowed"), 3);
    // Tokens and claim values never reach the log.
    let log = envoy.log();
    assert!(!log.contains(parts[2]), "a signature leaked into the log");
    assert!(
        !log.contains("api:read api:write"),
        "a claim value leaked into the log"
    );
}

#[test]
fn token_from_query_parameter_and_cookie() {
    let (envoy, echo) = start_inline(json!({
        "from": [{"query": "access_token"}, {"cookie": "session"}],
        "claims_to_headers": [{"claim": "sub", "header": "x-sub"}]
    }));
    let token = demo_token("q", json!({}));
    let resp = envoy.get(&format!("/x?a=1&access_token={token}&b=2"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("x-sub").as_deref(), Some("q"));
    assert_eq!(
        got.path, "/x?a=1&b=2",
        "the token is stripped from the query"
    );
    // An empty value before the token does not hide it, and is stripped too.
    let resp = envoy.get(&format!("/x?access_token=&access_token={token}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(echo.last_request().unwrap().path, "/x");
    let resp = envoy.get("/x?access_token=&access_token=not.a.token");
    assert_denied(&resp, 401, "malformed");
    let token = demo_token("c", json!({}));
    let resp = envoy
        .req("GET", "/y")
        .header("cookie", format!("theme=dark; session={token}; lang=en"))
        .send();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("x-sub").as_deref(), Some("c"));
    assert_eq!(got.header("cookie").as_deref(), Some("theme=dark; lang=en"));
    let resp = envoy
        .req("GET", "/z")
        .header("authorization", bearer(&token))
        .send();
    assert_denied(&resp, 401, "missing");
}

/// Puts header-transform after jwt-auth, copying the claims filter state
/// (read like any Envoy attribute) to `x-claims`, or `none` without it.
fn add_claims_reader(c: &mut Value) {
    let filters = c
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(Value::as_array_mut)
        .unwrap();
    let mut transform = filters[0].clone();
    transform["name"] = json!("header-transform");
    let config = &mut transform["typed_config"]["config"];
    config["name"] = json!("header-transform");
    config["root_id"] = json!("header-transform");
    config["vm_config"]["vm_id"] = json!("header-transform");
    config["vm_config"]["code"]["local"]["filename"] =
        json!("target/wasm32-wasip1/release/header_transform.wasm");
    config["configuration"]["value"] = json!(
        r#"{"request":[{"operations":[{"set":{"header":"x-claims","value":"${attr.jwt_auth_claims:-none}"}}]}]}"#
    );
    filters.insert(1, transform);
}

#[test]
fn verified_claims_reach_later_filters_through_filter_state() {
    // jwt-auth then header-transform, which reads the claims property like any Envoy attribute.
    let echo = EchoUpstream::start("echo");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .edit(add_claims_reader)
        .start();
    let resp = get_with_token(
        &envoy,
        "/api/x",
        &demo_token("carol", json!({"plan": "free"})),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let claims: Value =
        serde_json::from_str(&echo.last_request().unwrap().header("x-claims").unwrap()).unwrap();
    assert_eq!(claims["demo"]["sub"], "carol");
    assert_eq!(claims["demo"]["plan"], "free");
    envoy.get("/elsewhere");
    assert_eq!(
        echo.last_request().unwrap().header("x-claims").as_deref(),
        Some("none")
    );
}

#[test]
fn claims_filter_state_is_on_by_default_and_can_be_turned_off() {
    let token = demo_token("carol", json!({"plan": "free"}));
    for setting in [None, Some(true), Some(false)] {
        let mut config: Value = serde_json::from_str(&inline_provider(json!({
            "claims_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]
        })))
        .unwrap();
        if let Some(on) = setting {
            config["claims_filter_state"] = json!(on);
        }
        let echo = EchoUpstream::start("echo");
        let envoy = Envoy::builder(CONFIG)
            .upstream(18000, &echo)
            .plugin_config(&config.to_string())
            .edit(add_claims_reader)
            .start();
        // The second request is a cache hit: its claims come from the cache entry.
        for _ in 0..2 {
            let resp = get_with_token(&envoy, "/api/x", &token);
            assert_eq!(resp.status, 200, "{setting:?}: {}", resp.text());
            let got = echo.last_request().unwrap();
            assert_eq!(
                got.header("x-jwt-sub").as_deref(),
                Some("carol"),
                "{setting:?}: claim headers either way"
            );
            assert_eq!(got.header("authorization"), None);
            let claims = got.header("x-claims").unwrap();
            if setting == Some(false) {
                assert_eq!(claims, "none", "no filter state");
            } else {
                let claims: Value = serde_json::from_str(&claims).unwrap();
                let expected = pwf_tests::jwt_parts(&token).1;
                assert_eq!(claims, json!({"demo": expected}), "{setting:?}");
            }
        }
        assert_eq!(metric(&envoy, "cache.hits"), 1, "{setting:?}");
        assert!(envoy
            .log()
            .contains("jwt_auth: request headers read one by one: :path, authorization"));
    }
}

/// What a request did: status, the `error` code of a denial, and the headers
/// the upstream got (values by name; the ones every request gets left out).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: u16,
    error: Option<String>,
    upstream: Option<BTreeMap<String, Vec<Vec<u8>>>>,
}

/// Request headers, names given twice sent twice.
type Headers = Vec<(&'static str, Vec<u8>)>;

fn outcome(envoy: &Envoy, echo: &EchoUpstream, headers: &Headers) -> Outcome {
    let before = echo.request_count();
    let mut req = envoy.req("GET", "/api/x");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let resp = req.send();
    let error = (resp.status != 200).then(|| resp.json()["error"].as_str().unwrap().to_string());
    let upstream = (echo.request_count() > before).then(|| {
        let mut map: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (n, v) in echo.last_request().unwrap().headers {
            let every_request = [
                "host",
                "user-agent",
                "accept",
                "x-forwarded-proto",
                "x-request-id",
                "x-envoy-expected-rq-timeout-ms",
            ];
            if !every_request.contains(&n.as_str()) {
                map.entry(n).or_default().push(v);
            }
        }
        map
    });
    Outcome {
        status: resp.status,
        error,
        upstream,
    }
}

/// Token headers given twice and rules on a repeated header: read one header
/// at a time, the filter decides and rewrites exactly as it does when it
/// reads the whole map. The same configuration, with two unused output
/// headers added (beyond the single-read budget), reads the whole map.
#[test]
fn repeated_headers_decide_as_with_the_whole_map() {
    let provider = |outputs: Value| {
        json!({
            "providers": [{
                "name": "demo", "issuer": DEMO_ISSUER, "audiences": ["api"],
                "jwks": {"inline": fixture_jwks()},
                "from": [{"header": "x-token", "prefix": "Token "},
                         {"header": "authorization", "prefix": "Bearer "},
                         {"cookie": "session"}],
                "claims_to_headers": outputs
            }],
            "rules": [
                {"match": {"headers": [{"name": "x-env", "value": {"exact": "canary"}}]}, "bypass": true},
                {"match": {"path": {"prefix": "/"}}, "requires": {"provider": "demo"}}
            ]
        })
        .to_string()
    };
    let sub = json!([{"claim": "sub", "header": "x-jwt-sub"}]);
    let padded = json!([{"claim": "sub", "header": "x-jwt-sub"},
                        {"claim": "pad1", "header": "x-pad-1"},
                        {"claim": "pad2", "header": "x-pad-2"}]);
    let start = |config: String| {
        let echo = EchoUpstream::start("echo");
        let envoy = Envoy::builder(CONFIG)
            .upstream(18000, &echo)
            .plugin_config(&config)
            .start();
        (envoy, echo)
    };
    let (single, single_echo) = start(provider(sub));
    let (map, map_echo) = start(provider(padded));
    assert!(single.log().contains(
        "jwt_auth: request headers read one by one: :path, x-env, x-token, authorization, cookie"
    ));
    assert!(map
        .log()
        .contains("jwt_auth: request headers read as a whole map"));

    let good = demo_token("alice", json!({}));
    let other = demo_token("bob", json!({}));
    let h = |name: &'static str, value: &str| (name, value.as_bytes().to_vec());
    let passed = |upstream: &[(&str, &[u8])]| {
        let mut map: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (n, v) in upstream {
            map.entry(n.to_string()).or_default().push(v.to_vec());
        }
        Outcome {
            status: 200,
            error: None,
            upstream: Some(map),
        }
    };
    let denied = |code: &str| Outcome {
        status: 401,
        error: Some(code.to_string()),
        upstream: None,
    };
    let cases: Vec<(&str, Headers, Outcome)> = vec![
        (
            "one bearer token",
            vec![h("authorization", &bearer(&good))],
            passed(&[("x-jwt-sub", b"alice")]),
        ),
        (
            // Envoy joins repeated authorization headers into one value.
            "basic, then bearer",
            vec![
                h("authorization", "Basic eDp5"),
                h("authorization", &bearer(&good)),
            ],
            denied("missing"),
        ),
        (
            "bearer, then basic",
            vec![
                h("authorization", &bearer(&good)),
                h("authorization", "Basic eDp5"),
            ],
            denied("malformed"),
        ),
        (
            "token header, then another value: the other value stays",
            vec![
                h("x-token", &format!("Token {good}")),
                h("x-token", "other"),
            ],
            passed(&[("x-token", b"other"), ("x-jwt-sub", b"alice")]),
        ),
        (
            "another value, then the token header",
            vec![
                h("x-token", "other"),
                h("x-token", &format!("Token {other}")),
            ],
            passed(&[("x-token", b"other"), ("x-jwt-sub", b"bob")]),
        ),
        (
            "two tokens: the first one counts",
            vec![
                h("x-token", "Token not.a.jwt"),
                h("x-token", &format!("Token {good}")),
            ],
            denied("malformed"),
        ),
        (
            "two good tokens: the first one counts, both are stripped",
            vec![
                h("x-token", &format!("Token {other}")),
                h("x-token", &format!("Token {good}")),
            ],
            passed(&[("x-jwt-sub", b"bob")]),
        ),
        (
            "any value of a repeated header matches a rule",
            vec![h("x-env", "prod"), h("x-env", "canary")],
            passed(&[("x-env", b"prod"), ("x-env", b"canary")]),
        ),
        (
            "the matching value first",
            vec![h("x-env", "canary"), h("x-env", "prod")],
            passed(&[("x-env", b"canary"), ("x-env", b"prod")]),
        ),
        (
            "one value with a comma is one value",
            vec![h("x-env", "prod,canary")],
            denied("missing"),
        ),
        ("no match", vec![h("x-env", "prod")], denied("missing")),
        (
            "cookie header twice",
            vec![
                h("cookie", "a=1"),
                h("cookie", &format!("session={good}; lang=en")),
            ],
            passed(&[
                ("cookie", b"a=1"),
                ("cookie", b"lang=en"),
                ("x-jwt-sub", b"alice"),
            ]),
        ),
        (
            "forged output headers, twice, and bytes that are not UTF-8",
            vec![
                h("authorization", &bearer(&good)),
                h("x-jwt-sub", "mallory"),
                h("x-jwt-sub", "eve"),
                ("x-bytes", vec![0xff, b'a', 0x80]),
            ],
            passed(&[("x-bytes", &[0xff, b'a', 0x80]), ("x-jwt-sub", b"alice")]),
        ),
    ];
    for (what, headers, expected) in &cases {
        let got = outcome(&single, &single_echo, headers);
        assert_eq!(&got, expected, "read one by one: {what}");
        let got = outcome(&map, &map_echo, headers);
        assert_eq!(&got, expected, "whole map: {what}");
    }
    // The repeated and comma-holding values made the single-read filter read the whole map.
    assert!(single.log().contains("reading the whole request map"));
}

#[test]
fn verified_tokens_are_cached() {
    let (envoy, _echo) = start_shipped();
    let token = demo_token("cache", json!({}));
    for _ in 0..5 {
        assert_eq!(get_with_token(&envoy, "/api/x", &token).status, 200);
    }
    // One worker connection: one verification, then hits (the client reuses its connection).
    let hits = metric(&envoy, "cache.hits");
    let misses = metric(&envoy, "cache.misses");
    assert_eq!(hits + misses, 5);
    assert!(misses <= 2 && hits >= 3, "hits {hits} misses {misses}");
}

/// jwt-auth with the "idp" provider pointing at a real OpenID provider.
/// Envoy with the plugin configuration `config`, its `idp` cluster pointing at `idp`.
fn start_with_idp_config(idp: &Idp, config: &Value, concurrency: u32) -> (Envoy, EchoUpstream) {
    let echo = EchoUpstream::start("echo");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .port(18100, idp.port())
        .plugin_config(&config.to_string())
        .concurrency(concurrency)
        .start();
    (envoy, echo)
}

fn start_with_idp(idp: &Idp, concurrency: u32) -> (Envoy, EchoUpstream) {
    let config = json!({
        "providers": [{
            "name": "idp", "issuer": idp.issuer(), "audiences": ["api://default"],
            "jwks": {"remote": {"cluster": "idp", "path": idp.jwks_path(), "timeout_ms": 1000,
                                 "cache_duration_s": 2, "refetch_cooldown_s": 1,
                                 "retry_initial_ms": 200, "retry_max_ms": 1000}},
            "claims_to_headers": [{"claim": "client_id", "header": "x-client"}, {"claim": "plan", "header": "x-plan"}]
        }],
        "rules": [{"match": {}, "requires": {"provider": "idp"}}]
    });
    start_with_idp_config(idp, &config, concurrency)
}

#[test]
fn real_idp_token_passes_and_one_fetch_serves_all_workers() {
    let idp = Idp::start();
    let (envoy, echo) = start_with_idp(&idp, 4);
    let token = idp.token("svc-a", "svc-a-secret");
    let resp = get_with_token(&envoy, "/orders", &token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("x-client").as_deref(), Some("svc-a"));
    assert_eq!(got.header("x-plan").as_deref(), Some("pro"));
    // Requests on several connections land on several workers.
    for _ in 0..8 {
        let client = pwf_tests::HttpClient::new(envoy.port());
        assert_eq!(
            client
                .req("GET", "/o")
                .header("authorization", bearer(&token))
                .send()
                .status,
            200
        );
    }
    let fetches = idp.stats()["jwks_fetches"].as_u64().unwrap();
    assert_eq!(fetches, 1, "one JWKS fetch for 4 workers");
    assert_eq!(metric(&envoy, "jwks_fetch.ok"), 1);
}

#[test]
fn key_rotation_is_picked_up_and_removed_keys_stop_verifying() {
    let idp = Idp::start();
    let (envoy, _echo) = start_with_idp(&idp, 2);
    let old_token = idp.token("svc-a", "svc-a-secret");
    assert_eq!(get_with_token(&envoy, "/a", &old_token).status, 200);
    idp.rotate();
    let new_token = idp.token("svc-a", "svc-a-secret");
    assert_ne!(
        pwf_tests::jwt_parts(&new_token).0["kid"],
        pwf_tests::jwt_parts(&old_token).0["kid"]
    );
    // Unknown kid: the request is held while the JWKS is refetched, then passes.
    let resp = get_with_token(&envoy, "/b", &new_token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(metric(&envoy, "held") >= 1);
    idp.remove_old_keys();
    // After the next refresh (cache_duration_s 2) the old key is gone.
    let denied = pwf_tests::wait_until(Duration::from_secs(10), || {
        get_with_token(&envoy, "/c", &old_token).status == 401
    });
    assert!(denied, "old tokens must fail once their key is removed");
    assert_denied(
        &get_with_token(&envoy, "/c", &old_token),
        401,
        "unknown_kid",
    );
    assert_eq!(get_with_token(&envoy, "/d", &new_token).status, 200);
}

#[test]
fn jwks_outage_keeps_the_last_good_keys_and_garbage_is_rejected() {
    let idp = Idp::start();
    let (envoy, _echo) = start_with_idp(&idp, 2);
    let token = idp.token("svc-a", "svc-a-secret");
    assert_eq!(get_with_token(&envoy, "/a", &token).status, 200);
    for mode in ["down", "garbage", "huge"] {
        idp.set_jwks_mode(mode);
        let failed_before = metric(&envoy, "jwks_fetch.failed");
        // Refreshes happen every ~1.8 s and fail; the last good keys keep serving.
        assert!(
            pwf_tests::wait_until(Duration::from_secs(10), || metric(
                &envoy,
                "jwks_fetch.failed"
            ) > failed_before),
            "mode {mode}: a refresh must fail"
        );
        let client = pwf_tests::HttpClient::new(envoy.port());
        let resp = client
            .req("GET", "/b")
            .header("authorization", bearer(&token))
            .send();
        assert_eq!(resp.status, 200, "mode {mode}: {}", resp.text());
    }
    // Wrong-typed entries and a second key under the real kid: the bad entries are
    // skipped, the first key with that kid is kept, and tokens still verify.
    idp.set_jwks_mode("wrong-types");
    let ok_before = metric(&envoy, "jwks_fetch.ok");
    assert!(pwf_tests::wait_until(Duration::from_secs(10), || metric(
        &envoy,
        "jwks_fetch.ok"
    )
        > ok_before));
    let client = pwf_tests::HttpClient::new(envoy.port());
    let resp = client
        .req("GET", "/c")
        .header("authorization", bearer(&token))
        .send();
    assert_eq!(resp.status, 200, "wrong-types: {}", resp.text());
    idp.set_jwks_mode("ok");
    let ok_before = metric(&envoy, "jwks_fetch.ok");
    assert!(pwf_tests::wait_until(Duration::from_secs(10), || metric(
        &envoy,
        "jwks_fetch.ok"
    )
        > ok_before));
    assert!(envoy.log().contains("JWKS fetch failed"));
}

#[test]
fn jwks_never_available_fails_closed_or_open_as_configured() {
    let idp = Idp::start();
    idp.set_jwks_mode("down");
    let (envoy, echo) = start_with_idp(&idp, 1);
    let token = idp.token("svc-a", "svc-a-secret");
    assert_denied(
        &get_with_token(&envoy, "/a", &token),
        401,
        "jwks_unavailable",
    );
    assert_eq!(echo.request_count(), 0);
    drop(envoy);

    let echo = EchoUpstream::start("echo");
    let config = json!({
        "providers": [{"name": "idp", "issuer": idp.issuer(), "on_jwks_unavailable": "allow",
                       "jwks": {"remote": {"cluster": "idp", "path": idp.jwks_path(), "timeout_ms": 500}}}],
        "rules": [{"match": {}, "requires": {"provider": "idp"}}]
    });
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .port(18100, idp.port())
        .plugin_config(&config.to_string())
        .start();
    assert_eq!(
        get_with_token(&envoy, "/a", &token).status,
        200,
        "fail open"
    );
    assert_eq!(echo.request_count(), 1);
}

/// A request held for keys whose client goes away: Envoy ends the stream,
/// the filter forgets it, and the keys arriving later resume nothing. The
/// next request is verified by the same VM.
#[test]
fn a_client_that_leaves_while_held_does_not_disturb_later_requests() {
    use std::io::Write;
    let idp = Idp::start();
    idp.set_jwks_mode("slow:3000");
    let config = json!({
        "providers": [{"name": "idp", "issuer": idp.issuer(),
                       "jwks": {"remote": {"cluster": "idp", "path": idp.jwks_path(), "timeout_ms": 8000}}}],
        "rules": [{"match": {}, "requires": {"provider": "idp"}}]
    });
    let (envoy, echo) = start_with_idp_config(&idp, &config, 2);
    let token = idp.token("svc-a", "svc-a-secret");

    let mut client = std::net::TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    write!(
        client,
        "GET /leaving HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    assert!(
        pwf_tests::wait_until(Duration::from_secs(5), || metric(&envoy, "held") == 1),
        "the request is held while the keys are fetched"
    );
    drop(client);
    assert!(
        pwf_tests::wait_until(Duration::from_secs(10), || metric(&envoy, "jwks_fetch.ok")
            == 1),
        "the keys arrive after the client left"
    );

    let resp = get_with_token(&envoy, "/after", &token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        echo.request_count(),
        1,
        "the abandoned request never went upstream"
    );
    assert_eq!(echo.last_request().unwrap().path, "/after");
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}

#[test]
fn bad_configs_fail_envoy_validation_naming_the_field() {
    let cases = [
        (
            r#"{"providers":[],"bogus":1}"#,
            "bogus: unknown field `bogus`",
        ),
        (
            r#"{"providers":[{"name":"a","issuer":"x","jwks":{"remote":{"cluster":"","path":"/j"}}}]}"#,
            "providers[0].jwks.remote.cluster",
        ),
        (
            r#"{"providers":[{"name":"a","issuer":"x","jwks":{"inline":{"keys":[]}}}]}"#,
            "providers[0].jwks.inline: JWKS has no usable signature key",
        ),
        (
            r#"{"providers":[{"name":"a","issuer":"x","secret":{"inline":"0123456789abcdef0123456789abcdef"},"algorithms":["HS256"]}],"rules":[{"match":{},"requires":{"provider":"b"}}]}"#,
            "rules[0].requires.provider",
        ),
        (
            r#"{"providers":[{"name":"a","issuer":"x","jwks":{"remote":{"cluster":"c","path":"/j"}},"algorithms":["HS256"]}]}"#,
            "providers[0].algorithms",
        ),
    ];
    for (config, expected) in cases {
        let result = Envoy::builder(CONFIG).plugin_config(config).validate();
        assert!(!result.ok, "{config}");
        assert!(
            result.output.contains("jwt_auth: invalid configuration: ")
                && result.output.contains(expected),
            "{expected}:\n{}",
            result.output
        );
    }
}

#[test]
fn metric_dimensions_become_prometheus_tags_with_stats_tags() {
    // The documented recipe: Envoy's tag extraction turns `jwt_auth.denied.<reason>` into a tag.
    let echo = EchoUpstream::start("echo");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .edit(|c| {
            c["stats_config"] = json!({"stats_tags": [
                {"tag_name": "reason", "regex": "^wasmcustom\\.jwt_auth\\.denied(\\.(\\w+))$"}
            ]});
        })
        .start();
    assert_eq!(envoy.get("/api/x").status, 401);
    let prometheus = envoy.admin_get("/stats/prometheus").text();
    assert!(
        prometheus.contains("jwt_auth_denied{reason=\"missing\"} 1"),
        "{}",
        prometheus
            .lines()
            .filter(|l| l.contains("jwt_auth_denied"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn an_unknown_kid_refetches_only_when_no_other_provider_verified_the_token() {
    // any_of [demo, idp]: a demo token has a kid the IdP's JWKS lacks, but
    // the demo provider verifies it, so the IdP's JWKS is not refetched.
    let idp = Idp::start();
    let config = json!({
        "providers": [
            {"name": "demo", "issuer": DEMO_ISSUER, "audiences": ["api"], "jwks": {"inline": fixture_jwks()}},
            {"name": "idp", "issuer": idp.issuer(), "audiences": ["api://default"],
             "jwks": {"remote": {"cluster": "idp", "path": idp.jwks_path(), "refetch_cooldown_s": 1}}}
        ],
        "rules": [{"match": {}, "requires": {"any_of": ["demo", "idp"]}}]
    });
    let (envoy, _echo) = start_with_idp_config(&idp, &config, 2);
    // The first request may wait for the IdP's initial keys.
    let demo = demo_token("alice", json!({}));
    for _ in 0..3 {
        assert_eq!(get_with_token(&envoy, "/a", &demo).status, 200);
        std::thread::sleep(Duration::from_millis(1100)); // past the refetch cooldown
    }
    assert_eq!(idp.stats()["jwks_fetches"], 1, "only the initial fetch");
    // A token no provider verifies (signed by a key nobody publishes, with an
    // unknown kid) does trigger a refetch before it is denied.
    let mut forged = demo_claims("mallory", json!({}));
    forged["iss"] = json!(idp.issuer());
    forged["aud"] = json!("api://default");
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("not-published".into());
    let token = jsonwebtoken::encode(&header, &forged, &TestKey::Rsa.encoding_key()).unwrap();
    assert_eq!(get_with_token(&envoy, "/b", &token).status, 401);
    assert_eq!(
        idp.stats()["jwks_fetches"],
        2,
        "one refetch for the unknown kid"
    );
}

#[test]
fn any_of_reports_the_failure_of_the_provider_the_token_is_for() {
    // any_of [partner, demo] on the same header: an expired demo token fails
    // partner (HMAC only: algorithm not allowed) and demo (expired). The
    // client is told what is wrong with its token: expired.
    let echo = EchoUpstream::start("echo");
    let config = json!({
        "providers": [
            {"name": "partner", "issuer": "https://partner.example", "algorithms": ["HS256"],
             "secret": {"inline": "0123456789abcdef0123456789abcdef"}},
            {"name": "demo", "issuer": DEMO_ISSUER, "audiences": ["api"], "jwks": {"inline": fixture_jwks()}}
        ],
        "rules": [{"match": {}, "requires": {"any_of": ["partner", "demo"]}}]
    });
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .plugin_config(&config.to_string())
        .start();
    let now = pwf_tests::jwt::unix_now();
    let expired = demo_token("alice", json!({"iat": now - 7200, "exp": now - 3600}));
    let resp = get_with_token(&envoy, "/a", &expired);
    assert_denied(&resp, 401, "expired");
    assert_eq!(metric(&envoy, "denied.expired"), 1);
    // A token neither provider can verify reports the first failure.
    let resp = get_with_token(&envoy, "/a", "not.a.token");
    assert_denied(&resp, 401, "malformed");
    assert_eq!(echo.request_count(), 0);
}

#[test]
fn required_numeric_claims_compare_by_value() {
    let (envoy, echo) =
        start_inline(json!({"required_claims": [{"claim": "level", "exact": "3"}]}));
    for level in [json!(3), json!(3.0), json!([1, 3.0])] {
        let token = demo_token("alice", json!({ "level": level }));
        assert_eq!(
            get_with_token(&envoy, "/a", &token).status,
            200,
            "level {level}"
        );
    }
    let token = demo_token("alice", json!({"level": 3.5}));
    assert_denied(&get_with_token(&envoy, "/a", &token), 403, "claim_mismatch");
    assert_eq!(echo.request_count(), 3);
}

#[test]
fn an_empty_claim_array_writes_no_header() {
    let (envoy, echo) =
        start_inline(json!({"claims_to_headers": [{"claim": "roles", "header": "x-jwt-roles"}]}));
    let token = demo_token("alice", json!({"roles": ["a", "b"]}));
    assert_eq!(get_with_token(&envoy, "/a", &token).status, 200);
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("x-jwt-roles").as_deref(), Some("a,b"));
    let token = demo_token("alice", json!({"roles": []}));
    let resp = envoy
        .req("GET", "/a")
        .header("authorization", bearer(&token))
        .header("x-jwt-roles", "forged")
        .send();
    assert_eq!(resp.status, 200);
    let got = echo.last_request().unwrap();
    assert_eq!(
        got.header("x-jwt-roles"),
        None,
        "neither empty nor the client's copy"
    );
}

#[test]
fn a_new_kid_seen_during_a_refresh_waits_for_a_fetch_that_started_after_it() {
    // Keys are refreshed every ~1.8 s, and each fetch answers with the keys
    // published when it arrived, 1.5 s later. A key published while a refresh
    // is in flight is not in that refresh's answer: the request carrying it
    // must wait for the next fetch, not be decided with the stale answer.
    let idp = Idp::start();
    let config = json!({
        "providers": [{
            "name": "idp", "issuer": idp.issuer(), "audiences": ["api://default"],
            "jwks": {"remote": {"cluster": "idp", "path": idp.jwks_path(), "timeout_ms": 3000,
                                 "cache_duration_s": 2, "refetch_cooldown_s": 60}}
        }],
        "rules": [{"match": {}, "requires": {"provider": "idp"}}]
    });
    let (envoy, _echo) = start_with_idp_config(&idp, &config, 2);
    let old_token = idp.token("svc-a", "svc-a-secret");
    assert_eq!(get_with_token(&envoy, "/a", &old_token).status, 200);
    idp.set_jwks_mode("stale:1500");
    // Wait for a refresh to reach the IdP, then publish a key it will miss.
    let fetches = idp.stats()["jwks_fetches"].as_u64().unwrap();
    let started = pwf_tests::wait_until(Duration::from_secs(5), || {
        idp.stats()["jwks_fetches"].as_u64().unwrap() > fetches
    });
    assert!(started, "a refresh reached the IdP");
    idp.rotate();
    let new_token = idp.token("svc-a", "svc-a-secret");
    let resp = get_with_token(&envoy, "/b", &new_token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        idp.stats()["jwks_fetches"].as_u64().unwrap() >= fetches + 2,
        "the refresh in flight, then a fetch for the new key"
    );
}

#[test]
fn a_token_without_kid_is_checked_against_at_most_eight_keys() {
    let ed25519 = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                         "x": "r0W2QyKBfPcZotfmTjnmXA1MuilSgOCBMHewL_GKNwA"});
    let decoy = |i: u8| {
        let x = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [i; 32]);
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": x})
    };
    let claims = demo_claims("alice", json!({}));
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.kid = None;
    let token = jsonwebtoken::encode(&header, &claims, &TestKey::Ed25519.encoding_key()).unwrap();
    for (decoys, status) in [(7u8, 200), (8, 401)] {
        let mut keys: Vec<Value> = (1..=decoys).map(decoy).collect();
        keys.push(ed25519.clone());
        let (envoy, _echo) = start_inline(json!({"jwks": {"inline": {"keys": keys}},
                                                 "algorithms": ["EdDSA"]}));
        let resp = get_with_token(&envoy, "/a", &token);
        assert_eq!(
            resp.status,
            status,
            "{decoys} keys before the right one: {}",
            resp.text()
        );
        if status == 401 {
            assert_denied(&resp, 401, "invalid_signature");
        }
    }
}
