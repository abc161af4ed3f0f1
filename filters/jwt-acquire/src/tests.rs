//! Native unit tests of the pure modules.

use crate::config::{ClientAuth, Compiled, Config, Existing, OnUnavailable};
use crate::endpoint::{parse_response, ExpiresIn, FetchError, OAuthCode};
use crate::inject;
use crate::schedule::{self, Decision, FetchStatus, TokenRecord};
use base64::Engine as _;
use pwf_shared::shared_data::{Lease, MemoryStore};
use pwf_shared::HeaderList;
use serde_json::{json, Value};

fn env(name: &str) -> Option<String> {
    match name {
        "SVC_SECRET" => Some("s3cr:et&=".to_owned()),
        "SVC_ID" => Some("svc a".to_owned()),
        _ => None,
    }
}

fn minimal() -> Value {
    json!({
        "sources": [{
            "name": "orders",
            "token_endpoint": {"cluster": "idp", "path": "/token"},
            "client_id": {"inline": "svc-a"},
            "client_secret": {"inline": "svc-a-secret"}
        }]
    })
}

fn load(v: &Value) -> Result<Compiled, String> {
    Config::load(Some(v.to_string().as_bytes()), &env).map_err(|e| e.to_string())
}

fn load_err(v: &Value) -> String {
    match load(v) {
        Ok(_) => panic!("config accepted: {v}"),
        Err(e) => e,
    }
}

fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    base.pointer_mut(parent).unwrap()[key] = value;
    base
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn header<'a>(c: &'a Compiled, name: &str) -> Option<&'a str> {
    c.sources[0]
        .request
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

// ---- config -----------------------------------------------------------------

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = load(&minimal()).unwrap();
    let s = &c.sources[0];
    assert_eq!(s.endpoint.authority, "idp");
    assert_eq!(s.endpoint.timeout_ms, 5000);
    assert_eq!(s.endpoint.max_response_bytes, 65536);
    assert_eq!(s.inject.header, "authorization");
    assert_eq!(s.inject.prefix, "Bearer ");
    assert_eq!(s.inject.existing, Existing::Overwrite);
    assert_eq!(s.on_unavailable, OnUnavailable::Deny);
    assert_eq!(s.hold_timeout_ms, 5000);
    assert_eq!(
        s.expires_in,
        ExpiresIn {
            default_s: 300,
            max_s: 86_400
        }
    );
    assert_eq!(s.token_types, vec!["bearer"]);
    assert_eq!(s.refresh.at_permille, 800);
    assert_eq!(s.refresh.jitter_permille, 50);
    assert_eq!(s.refresh.margin_ms, 5000);
    assert_eq!(s.refresh.backoff.initial_ms, 1000);
    assert_eq!(s.refresh.backoff.max_ms, 30000);
    assert!(!c.selection_reads_headers());
}

#[test]
fn basic_auth_form_encodes_id_and_secret() {
    let v = with(minimal(), "/sources/0/client_id", json!({"env": "SVC_ID"}));
    let v = with(v, "/sources/0/client_secret", json!({"env": "SVC_SECRET"}));
    let c = load(&v).unwrap();
    let auth = header(&c, "authorization").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.strip_prefix("Basic ").unwrap())
        .unwrap();
    // RFC 6749 §2.3.1: "svc a" -> "svc+a", "s3cr:et&=" -> "s3cr%3Aet%26%3D".
    assert_eq!(String::from_utf8(decoded).unwrap(), "svc+a:s3cr%3Aet%26%3D");
    assert_eq!(
        form(&c.sources[0].request.body),
        vec![("grant_type".to_owned(), "client_credentials".to_owned())]
    );
    assert_eq!(header(&c, ":method"), Some("POST"));
    assert_eq!(header(&c, ":path"), Some("/token"));
    assert_eq!(
        header(&c, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[test]
fn post_auth_and_parameters_go_in_the_form_body() {
    let mut v = minimal();
    let s = &mut v["sources"][0];
    s["client_auth"] = json!("client_secret_post");
    s["scopes"] = json!(["api:read", "api:write"]);
    s["audience"] = json!("https://api.example.com");
    s["resource"] = json!("api://orders");
    s["extra_params"] = json!({"tenant": "acme & co"});
    let c = load(&v).unwrap();
    assert_eq!(header(&c, "authorization"), None);
    let body = form(&c.sources[0].request.body);
    let pairs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("grant_type", "client_credentials"),
            ("scope", "api:read api:write"),
            ("audience", "https://api.example.com"),
            ("resource", "api://orders"),
            ("tenant", "acme & co"),
            ("client_id", "svc-a"),
            ("client_secret", "svc-a-secret"),
        ]
    );
    assert_eq!(
        c.sources[0].request.body.len(),
        c.sources[0].request.body.len()
    );
    let _ = ClientAuth::ClientSecretPost;
}

#[test]
fn debug_output_never_shows_the_secret() {
    let c = load(&minimal()).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("svc-a-secret"), "{shown}");
    // Basic credentials are base64 of the secret: not shown either.
    let basic = header(&c, "authorization").unwrap();
    assert!(
        !shown.contains(basic.trim_start_matches("Basic ")),
        "{shown}"
    );
    assert!(shown.contains("redacted"));
    // The parsed (not yet compiled) configuration hides it too.
    let parsed: Config = serde_json::from_value(minimal()).unwrap();
    assert!(!format!("{parsed:?}").contains("svc-a-secret"));
    // A secret written as a plain string, or with the wrong type, is refused
    // without being quoted in the error (which Envoy logs).
    for secret in [
        json!("svc-a-secret"),
        json!({"inline": ["svc-a-secret"]}),
        json!({"inline": 987654321}),
    ] {
        let err = load_err(&with(minimal(), "/sources/0/client_secret", secret));
        assert!(err.starts_with("sources[0].client_secret"), "{err}");
        assert!(
            !err.contains("svc-a-secret") && !err.contains("987654321"),
            "{err}"
        );
    }
}

#[test]
fn fingerprint_follows_the_request_but_not_the_secret() {
    let a = load(&minimal()).unwrap().sources[0].fingerprint;
    let again = load(&minimal()).unwrap().sources[0].fingerprint;
    assert_eq!(a, again, "the same config gives the same shared-data keys");
    let new_secret = with(
        minimal(),
        "/sources/0/client_secret",
        json!({"inline": "rotated"}),
    );
    assert_eq!(load(&new_secret).unwrap().sources[0].fingerprint, a);
    let other_scope = with(minimal(), "/sources/0/scopes", json!(["x"]));
    assert_ne!(load(&other_scope).unwrap().sources[0].fingerprint, a);
    let other_client = with(
        minimal(),
        "/sources/0/client_id",
        json!({"inline": "svc-b"}),
    );
    assert_ne!(load(&other_client).unwrap().sources[0].fingerprint, a);
    let other_path = with(
        minimal(),
        "/sources/0/token_endpoint/path",
        json!("/oauth/token"),
    );
    assert_ne!(load(&other_path).unwrap().sources[0].fingerprint, a);
}

#[test]
fn bad_configs_name_the_field_and_the_reason() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "missing field `sources`"),
        (json!({"sources": []}), "sources: at least one source is required"),
        (
            with(minimal(), "/sources/0/bogus", json!(1)),
            "sources[0].bogus: unknown field `bogus`, expected one of `name`, `match`, `token_endpoint`, `client_id`, `client_secret`, `client_auth`, `scopes`, `audience`, `resource`, `extra_params`, `token_types`, `default_expires_in_s`, `max_expires_in_s`, `inject`, `refresh`, `on_unavailable`, `hold_timeout_ms`",
        ),
        (
            with(minimal(), "/sources/0/name", json!("Orders API")),
            "sources[0].name: source name 'Orders API' must be 1 to 64 characters of a-z, 0-9, '_' or '-'",
        ),
        (
            with(minimal(), "/sources/0/client_secret", json!({"env": "NOPE"})),
            "sources[0].client_secret.env: environment variable 'NOPE' is not set",
        ),
        (
            with(minimal(), "/sources/0/client_id", json!({})),
            "sources[0].client_id: exactly one of 'inline' or 'env' is required",
        ),
        (
            with(minimal(), "/sources/0/client_auth", json!("private_key_jwt")),
            "sources[0].client_auth: unknown variant `private_key_jwt`, expected `client_secret_basic` or `client_secret_post`",
        ),
        (
            with(minimal(), "/sources/0/token_endpoint/path", json!("token")),
            "sources[0].token_endpoint.path: 'token' must be an absolute path starting with '/'",
        ),
        (
            with(minimal(), "/sources/0/token_endpoint/cluster", json!("")),
            "sources[0].token_endpoint.cluster: must not be empty",
        ),
        (
            with(minimal(), "/sources/0/token_endpoint/timeout_ms", json!(0)),
            "sources[0].token_endpoint.timeout_ms: must be 1 to 60000",
        ),
        (
            with(minimal(), "/sources/0/token_endpoint/max_response_bytes", json!(10)),
            "sources[0].token_endpoint.max_response_bytes: must be 256 to 1048576",
        ),
        (
            with(minimal(), "/sources/0/scopes", json!(["ok", "two words"])),
            "sources[0].scopes[1]: 'two words' is not a scope token (RFC 6749 §3.3: printable ASCII without spaces, '\"' or '\\')",
        ),
        (
            with(minimal(), "/sources/0/extra_params", json!({"client_secret": "x"})),
            "sources[0].extra_params.client_secret: is empty or a parameter the filter sets itself (grant_type, scope, audience, resource, client_id, client_secret)",
        ),
        (
            with(minimal(), "/sources/0/audience", json!("")),
            "sources[0].audience: must not be empty",
        ),
        (
            with(minimal(), "/sources/0/token_types", json!([])),
            "sources[0].token_types: needs at least one non-empty token type",
        ),
        (
            with(minimal(), "/sources/0/max_expires_in_s", json!(0)),
            "sources[0].max_expires_in_s: must be 1 to 31536000",
        ),
        (
            with(minimal(), "/sources/0/default_expires_in_s", json!(86_401)),
            "sources[0].default_expires_in_s: must be at least 1 and at most max_expires_in_s",
        ),
        (
            with(minimal(), "/sources/0/default_expires_in_s", json!(0)),
            "sources[0].default_expires_in_s: must be at least 1 and at most max_expires_in_s",
        ),
        (
            with(minimal(), "/sources/0/hold_timeout_ms", json!(60001)),
            "sources[0].hold_timeout_ms: must be at most 60000",
        ),
        (
            with(minimal(), "/sources/0/inject", json!({"header": ":path"})),
            "sources[0].inject.header: ':path' cannot carry a token: it is a pseudo-header, host, cookie, framing, hop-by-hop or routing header",
        ),
        (
            with(minimal(), "/sources/0/inject", json!({"header": "X-Forwarded-Proto"})),
            "sources[0].inject.header: 'X-Forwarded-Proto' cannot carry a token: it is a pseudo-header, host, cookie, framing, hop-by-hop or routing header",
        ),
        (
            with(minimal(), "/sources/0/inject", json!({"header": "transfer-encoding"})),
            "sources[0].inject.header: 'transfer-encoding' cannot carry a token: it is a pseudo-header, host, cookie, framing, hop-by-hop or routing header",
        ),
        (
            with(minimal(), "/sources/0/inject", json!({"strip": ["cookie", "x-forwarded-proto"]})),
            "sources[0].inject.strip[1]: 'x-forwarded-proto' cannot be stripped: pseudo-headers, host, content-length, transfer-encoding and x-forwarded-proto are needed by Envoy",
        ),
        (
            with(minimal(), "/sources/0/inject", json!({"strip": ["content-length"]})),
            "sources[0].inject.strip[0]: 'content-length' cannot be stripped: pseudo-headers, host, content-length, transfer-encoding and x-forwarded-proto are needed by Envoy",
        ),
        (
            with(minimal(), "/sources/0/inject", json!({"header": "bad header"})),
            "sources[0].inject.header: 'bad header': header name contains a character that is not allowed in HTTP header names",
        ),
        (
            with(minimal(), "/sources/0/inject", json!({"prefix": "Bearer\r\n"})),
            "sources[0].inject.prefix: contains a control character (CR, LF, NUL, DEL or another byte below 0x20 but tab)",
        ),
        (
            with(
                minimal(),
                "/sources/0/inject",
                json!({"existing": "keep", "strip": ["Authorization"]}),
            ),
            "sources[0].inject.strip[0]: 'Authorization' is the injection header: with existing 'keep' stripping it first keeps nothing",
        ),
        (
            with(minimal(), "/sources/0/refresh", json!({"at_fraction": 1.5})),
            "sources[0].refresh.at_fraction: must be greater than 0 and at most 1",
        ),
        (
            with(
                minimal(),
                "/sources/0/refresh",
                json!({"at_fraction": 0.5, "jitter_fraction": 0.5}),
            ),
            "sources[0].refresh.jitter_fraction: must be at least 0 and less than at_fraction",
        ),
        (
            with(
                minimal(),
                "/sources/0/refresh",
                json!({"retry_initial_ms": 5000, "retry_max_ms": 1000}),
            ),
            "sources[0].refresh.retry_initial_ms: must be at least 1 and at most retry_max_ms",
        ),
        (
            with(minimal(), "/sources/0/match", json!({"methods": ["get"]})),
            "sources[0].match.methods[0]: 'get' is not an upper-case HTTP method",
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(load_err(&config), expected, "config: {config}");
    }
    let mut two = minimal();
    let copy = two["sources"][0].clone();
    two["sources"].as_array_mut().unwrap().push(copy);
    assert_eq!(
        load_err(&two),
        "sources[1].name: 'orders' is used by an earlier source"
    );
}

#[test]
fn the_first_matching_source_serves_a_request() {
    let mut v = minimal();
    let mut payments = v["sources"][0].clone();
    payments["name"] = json!("payments");
    payments["match"] = json!({"host": {"exact": "payments.example.com"}});
    let mut fallback = v["sources"][0].clone();
    fallback["name"] = json!("fallback");
    v["sources"] = json!([payments, fallback]);
    let c = load(&v).unwrap();
    assert!(c.selection_reads_headers());
    let req = |host: &str| {
        HeaderList::from_pairs([(":authority", host), (":path", "/"), (":method", "GET")])
    };
    assert_eq!(
        c.select(&req("payments.example.com:443")).unwrap().name,
        "payments"
    );
    assert_eq!(
        c.select(&req("other.example.com")).unwrap().name,
        "fallback"
    );

    let mut only = minimal();
    only["sources"][0]["match"] = json!({"path": {"prefix": "/api/"}});
    let c = load(&only).unwrap();
    assert!(
        c.select(&req("x")).is_none(),
        "no source matches: pass unchanged"
    );
}

// ---- token responses --------------------------------------------------------

fn parse(status: Option<u32>, body: &str) -> Result<crate::endpoint::Token, FetchError> {
    parse_response(
        status,
        body.as_bytes(),
        &["bearer".to_owned()],
        ExpiresIn {
            default_s: 300,
            max_s: 86_400,
        },
    )
}

#[test]
fn an_expires_in_over_the_maximum_is_cut_to_it() {
    let t = parse(
        Some(200),
        r#"{"access_token":"t","token_type":"Bearer","expires_in":315360000}"#,
    )
    .unwrap();
    assert_eq!((t.expires_in_s, t.capped), (86_400, true));
    let t = parse(
        Some(200),
        r#"{"access_token":"t","token_type":"Bearer","expires_in":18446744073709551615}"#,
    )
    .unwrap();
    assert_eq!((t.expires_in_s, t.capped), (86_400, true));
    let t = parse(
        Some(200),
        r#"{"access_token":"t","token_type":"Bearer","expires_in":86400}"#,
    )
    .unwrap();
    assert_eq!((t.expires_in_s, t.capped), (86_400, false));
}

#[test]
fn a_valid_response_gives_a_token() {
    let t = parse(
        Some(200),
        r#"{"access_token":"eyJ.a.b","token_type":"Bearer","expires_in":120,"scope":"x"}"#,
    )
    .unwrap();
    assert_eq!(t.access_token, "eyJ.a.b");
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(t.expires_in_s, 120);
    let t = parse(Some(200), r#"{"access_token":"t","token_type":"bearer"}"#).unwrap();
    assert_eq!(t.expires_in_s, 300, "default_expires_in_s applies");
    let t = parse(
        Some(200),
        r#"{"access_token":"t","token_type":"BEARER","expires_in":"60"}"#,
    )
    .unwrap();
    assert_eq!(t.expires_in_s, 60, "a numeric string is accepted");
}

#[test]
fn invalid_responses_are_rejected_with_a_reason() {
    let cases = [
        (None, "", "no_response"),
        (Some(200), "<html>", "invalid_response"),
        (Some(200), "[1]", "invalid_response"),
        (Some(200), r#"{"token_type":"Bearer"}"#, "invalid_response"),
        (
            Some(200),
            r#"{"access_token":"","token_type":"Bearer"}"#,
            "invalid_response",
        ),
        (
            Some(200),
            r#"{"access_token":7,"token_type":"Bearer"}"#,
            "invalid_response",
        ),
        (Some(200), r#"{"access_token":"t"}"#, "invalid_response"),
        (
            Some(200),
            r#"{"access_token":"a b","token_type":"Bearer"}"#,
            "invalid_response",
        ),
        (
            Some(200),
            r#"{"access_token":"a\r\nx: y","token_type":"Bearer"}"#,
            "invalid_response",
        ),
        (
            Some(200),
            r#"{"access_token":"t","token_type":"Bearer","expires_in":-5}"#,
            "invalid_response",
        ),
        (
            Some(200),
            r#"{"access_token":"t","token_type":"Bearer","expires_in":0}"#,
            "invalid_response",
        ),
        (
            Some(200),
            r#"{"access_token":"t","token_type":"Bearer","expires_in":true}"#,
            "invalid_response",
        ),
        (
            Some(200),
            r#"{"access_token":"t","token_type":"DPoP"}"#,
            "unsupported_token_type",
        ),
        (Some(503), "Service Unavailable", "http_status"),
        (
            Some(401),
            r#"{"error":"invalid_client"}"#,
            "oauth_invalid_client",
        ),
        (
            Some(400),
            r#"{"error":"invalid_scope","error_description":"x"}"#,
            "oauth_invalid_scope",
        ),
        (Some(400), r#"{"error":"slow_down"}"#, "oauth_other"),
    ];
    for (status, body, reason) in cases {
        let err = parse(status, body).unwrap_err();
        assert_eq!(err.reason(), reason, "{status:?} {body}");
        assert!(FetchError::REASONS.contains(&err.reason()));
    }
}

#[test]
fn oauth_errors_keep_code_and_a_sanitized_description() {
    let long = "d".repeat(500);
    let body = format!(r#"{{"error":"invalid_client","error_description":"bad\nclient {long}"}}"#);
    let err = parse(Some(401), &body).unwrap_err();
    let FetchError::OAuth {
        status,
        code,
        error,
        description,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (*status, *code, error.as_str()),
        (401, OAuthCode::InvalidClient, "invalid_client")
    );
    let d = description.as_deref().unwrap();
    assert!(d.starts_with("badclient ddd"), "{d}");
    assert_eq!(d.len(), 200);
    assert!(err
        .to_string()
        .starts_with("HTTP status 401, error 'invalid_client': badclient"));
}

// ---- schedule -----------------------------------------------------------------

fn refresh(at: u64, jitter: u64, margin_ms: u64) -> schedule::Refresh {
    schedule::Refresh {
        at_permille: at,
        jitter_permille: jitter,
        margin_ms,
        backoff: pwf_shared::backoff::Backoff {
            initial_ms: 1000,
            max_ms: 8000,
        },
    }
}

#[test]
fn a_token_record_refreshes_early_and_is_used_until_its_margin() {
    let r = TokenRecord::new("t".into(), 100, 1_000_000, &refresh(800, 0, 5000), 12345);
    assert_eq!(r.fetched_at_ms, 1_000_000);
    assert_eq!(r.expires_at_ms, 1_100_000);
    assert_eq!(r.usable_until_ms, 1_095_000);
    assert_eq!(r.refresh_at_ms, 1_080_000);
    assert!(r.is_usable(1_094_999));
    assert!(!r.is_usable(1_095_000));
    assert_eq!(TokenRecord::decode(Some(&r.encode())), Some(r));
    assert_eq!(TokenRecord::decode(Some(b"garbage")), None);
    assert_eq!(TokenRecord::decode(None), None);
}

#[test]
fn jitter_moves_the_refresh_earlier_within_its_window() {
    let mut seen = std::collections::BTreeSet::new();
    for random in 0..500u64 {
        let r = TokenRecord::new("t".into(), 100, 0, &refresh(800, 100, 0), random * 7);
        assert!(
            (70_000..=80_000).contains(&r.refresh_at_ms),
            "{}",
            r.refresh_at_ms
        );
        seen.insert(r.refresh_at_ms);
    }
    assert!(seen.len() > 50, "spread over the window: {}", seen.len());
}

#[test]
fn short_lifetimes_cap_the_margin_at_half() {
    let r = TokenRecord::new("t".into(), 4, 0, &refresh(1000, 0, 5000), 0);
    assert_eq!(r.usable_until_ms, 2000);
    assert_eq!(
        r.refresh_at_ms, 2000,
        "never after the token stops being used"
    );
}

#[test]
fn fetch_is_due_initially_at_refresh_time_and_not_during_backoff() {
    let status = FetchStatus::default();
    assert!(schedule::fetch_due(None, &status, 0));
    let r = TokenRecord::new("t".into(), 100, 0, &refresh(800, 0, 0), 0);
    assert!(!schedule::fetch_due(Some(&r), &status, 79_999));
    assert!(schedule::fetch_due(Some(&r), &status, 80_000));
    let failed = status.after_failure("no_response", &refresh(800, 0, 0).backoff, 80_000, 250);
    assert_eq!(failed.failures, 1);
    assert_eq!(failed.next_attempt_ms, 81_000);
    assert_eq!(failed.last_error.as_deref(), Some("no_response"));
    assert!(!schedule::fetch_due(Some(&r), &failed, 80_999));
    assert!(schedule::fetch_due(Some(&r), &failed, 81_000));
    let twice = failed.after_failure("no_response", &refresh(800, 0, 0).backoff, 81_000, 500);
    assert_eq!(twice.next_attempt_ms, 83_000, "exponential");
    assert_eq!(FetchStatus::decode(Some(&twice.encode())), twice);
    assert_eq!(FetchStatus::decode(Some(b"{")), FetchStatus::default());
}

#[test]
fn requests_inject_hold_or_find_no_token() {
    let r = TokenRecord::new("t".into(), 100, 0, &refresh(800, 0, 5000), 0);
    let ok = FetchStatus::default();
    let failing = ok.after_failure("no_response", &refresh(800, 0, 0).backoff, 0, 0);
    assert_eq!(
        schedule::decide(Some(&r), &failing, 5000, true, 94_999),
        Decision::Inject
    );
    assert_eq!(
        schedule::decide(None, &ok, 5000, true, 10),
        Decision::Hold { deadline_ms: 5010 }
    );
    assert_eq!(
        schedule::decide(None, &ok, 5000, false, 10),
        Decision::Unavailable
    );
    assert_eq!(
        schedule::decide(None, &ok, 0, true, 10),
        Decision::Unavailable
    );
    assert_eq!(
        schedule::decide(None, &failing, 5000, true, 10),
        Decision::Unavailable,
        "no waiting while the endpoint is failing"
    );
    assert_eq!(
        schedule::decide(Some(&r), &failing, 5000, true, 95_000),
        Decision::Unavailable,
        "an expired token is not used"
    );
    assert_eq!(schedule::retry_after_s(&failing, 0), 1);
    let later = FetchStatus {
        next_attempt_ms: 4001,
        ..failing
    };
    assert_eq!(schedule::retry_after_s(&later, 0), 5);
}

#[test]
fn one_worker_wins_the_fetch_lease_and_a_dead_holder_is_taken_over() {
    let store = MemoryStore::default();
    Lease::init(&store, "l").unwrap();
    let ttl = schedule::lease_ms(5000);
    assert_eq!(ttl, 6000);
    assert_eq!(Lease::try_acquire(&store, "l", 1, 0, ttl), Ok(true));
    for worker in 2..6 {
        assert_eq!(Lease::try_acquire(&store, "l", worker, 10, ttl), Ok(false));
    }
    assert_eq!(
        Lease::try_acquire(&store, "l", 2, 6000, ttl),
        Ok(true),
        "expired: taken over"
    );
    assert_eq!(Lease::try_acquire(&store, "l", 1, 6001, ttl), Ok(false));
}

// ---- injection ----------------------------------------------------------------

#[test]
fn injection_overwrites_keeps_and_strips() {
    let mut v = minimal();
    v["sources"][0]["inject"] =
        json!({"header": "X-Token", "prefix": "", "strip": ["X-Api-Key", "cookie"]});
    let c = load(&v).unwrap();
    let inj = &c.sources[0].inject;
    let value = inject::header_value(inj, "tok");
    assert_eq!(value, b"tok");
    let p = inject::plan(inj, Some(&value), true);
    assert_eq!(p.remove, ["x-api-key".to_owned(), "cookie".to_owned()]);
    assert_eq!(p.set, Some(("x-token", b"tok".as_slice())));
    assert!(!p.kept_existing, "overwrite ignores the existing header");
    let none = inject::plan(inj, None, false);
    assert_eq!(none.set, None);
    assert_eq!(
        none.remove.len(),
        2,
        "inbound credentials are stripped even without a token"
    );

    let keep = with(minimal(), "/sources/0/inject", json!({"existing": "keep"}));
    let c = load(&keep).unwrap();
    let inj = &c.sources[0].inject;
    let value = inject::header_value(inj, "tok");
    assert_eq!(value, b"Bearer tok");
    let kept = inject::plan(inj, Some(&value), true);
    assert_eq!(kept.set, None);
    assert!(kept.kept_existing);
    let absent = inject::plan(inj, Some(&value), false);
    assert_eq!(
        absent.set,
        Some(("authorization", b"Bearer tok".as_slice()))
    );
}
