//! Configuration: defaults, compilation, and errors that name the field.

use super::support::*;
use crate::config::{KeySource, OnJwksUnavailable, RemoteJwks};
use crate::rules::{Requirement, RuleAction};
use crate::token::TokenSource;
use jsonwebtoken::Algorithm;

#[test]
fn defaults() {
    let c = one_provider("");
    let p = &c.providers[0];
    assert_eq!(p.index, 0);
    assert_eq!(p.algorithms, ASYMMETRIC);
    assert_eq!(
        p.from,
        [TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into()
        }]
    );
    assert_eq!(p.clock_skew_s, 60);
    assert_eq!(p.max_lifetime_s, None);
    assert!(p.require_exp);
    assert!(!p.forward);
    assert_eq!(p.max_token_bytes, 8192);
    assert_eq!(p.on_jwks_unavailable, OnJwksUnavailable::Deny);
    assert!(matches!(&p.keys, KeySource::Static(k) if k.len() == 4));
    assert_eq!(c.cache_max_entries, 1024);
    assert!(
        c.claims_filter_state,
        "claims go to filter state unless turned off"
    );
    assert!(c.rules.is_empty() && c.output_headers.is_empty());

    let off = compile(&format!(
        r#"{{"providers":[{}],"claims_filter_state":false}}"#,
        jwks_provider("idp", "")
    ));
    assert!(!off.claims_filter_state);

    let hs = compile(&format!(
        r#"{{"providers":[{}]}}"#,
        secret_provider("hs", "")
    ));
    assert_eq!(hs.providers[0].algorithms, HMAC);

    let empty = compile("");
    assert!(empty.providers.is_empty() && empty.rules.is_empty());
}

#[test]
fn remote_jwks_defaults_and_overrides() {
    let c = compile(
        r#"{"providers":[{"name":"idp","issuer":"i","jwks":{"remote":{"cluster":"idp-cluster","path":"/jwks"}}}]}"#,
    );
    assert_eq!(
        c.providers[0].remote(),
        Some(&RemoteJwks {
            cluster: "idp-cluster".into(),
            authority: "idp-cluster".into(),
            path: "/jwks".into(),
            timeout_ms: 2000,
            cache_duration_s: 300,
            max_bytes: 262_144,
            refetch_cooldown_s: 30,
            retry_initial_ms: 1000,
            retry_max_ms: 60_000,
        })
    );
    let c = compile(
        r#"{"providers":[{"name":"idp","issuer":"i","jwks":{"remote":{"cluster":"idp","authority":"idp.example.com",
            "path":"/.well-known/jwks.json","timeout_ms":500,"cache_duration_s":60,"max_bytes":1024,
            "refetch_cooldown_s":5,"retry_initial_ms":100,"retry_max_ms":100}}}]}"#,
    );
    let r = c.providers[0].remote().unwrap();
    assert_eq!(
        (
            r.authority.as_str(),
            r.timeout_ms,
            r.max_bytes,
            r.retry_max_ms
        ),
        ("idp.example.com", 500, 1024, 100)
    );
}

#[test]
fn full_example_compiles() {
    let c = compile(&format!(
        r#"{{"providers":[{},{}],
          "rules":[
            {{"match":{{"path":{{"prefix":"/health"}}}},"bypass":true}},
            {{"match":{{"path":{{"prefix":"/api/"}}}},"requires":{{"provider":"idp"}}}},
            {{"match":{{"path":{{"prefix":"/partner/"}}}},"requires":{{"any_of":["idp","partner"]}}}},
            {{"match":{{"path":{{"prefix":"/both/"}}}},"requires":{{"all_of":["partner","idp"]}}}},
            {{"match":{{"path":{{"prefix":"/public/"}}}},"requires":{{"provider":"idp"}},"allow_missing":true}},
            {{"match":{{"path":{{"prefix":"/soft/"}}}},"requires":{{"provider":"idp"}},"allow_missing_or_failed":true}}
          ],
          "cache":{{"max_entries":0}}}}"#,
        jwks_provider(
            "idp",
            r#","algorithms":["RS256","ES256"],
               "from":[{"header":"authorization","prefix":"Bearer "},{"query":"access_token"},{"cookie":"session"}],
               "clock_skew_s":30,"max_lifetime_s":86400,"require_exp":false,
               "required_claims":[{"claim":"scope","any_of":["api:read"],"space_delimited":true},{"claim":"tenant","exact":"acme"}],
               "forward":true,
               "claims_to_headers":[{"claim":"sub","header":"x-jwt-sub"},{"claim":"realm.roles","header":"x-jwt-roles","separator":";"}],
               "payload_header":"x-jwt-payload","max_token_bytes":4096,"on_jwks_unavailable":"allow""#
        ),
        secret_provider(
            "partner",
            r#","claims_to_headers":[{"claim":"sub","header":"x-jwt-sub"}],"from":[{"header":"x-partner"}]"#
        ),
    ));
    let p = &c.providers[0];
    assert_eq!(p.algorithms, [Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(p.from.len(), 3);
    assert_eq!(p.from[2], TokenSource::Cookie("session".into()));
    assert_eq!(p.required_claims[0].accepted, ["api:read"]);
    assert_eq!(p.claims_to_headers[1].separator, ";");
    assert_eq!(p.claims_to_headers[1].claim.name(), "realm.roles");
    assert_eq!(p.on_jwks_unavailable, OnJwksUnavailable::Allow);
    assert_eq!(
        c.output_headers,
        ["x-jwt-sub", "x-jwt-roles", "x-jwt-payload"]
    );
    assert_eq!(c.cache_max_entries, 0);
    assert_eq!(c.rules.len(), 6);
    assert_eq!(c.rules[0].action, RuleAction::Bypass);
    assert_eq!(
        c.rules[3].action,
        RuleAction::Require {
            requirement: Requirement::AllOf(vec![1, 0]),
            allow_missing: false,
            allow_failed: false
        }
    );
    assert_eq!(
        c.rules[5].action,
        RuleAction::Require {
            requirement: Requirement::Provider(0),
            allow_missing: true,
            allow_failed: true
        }
    );
}

#[test]
fn bad_configs_name_the_field_and_reason() {
    let idp = |extra: &str| jwks_provider("idp", extra);
    let one = |extra: &str| format!(r#"{{"providers":[{}]}}"#, idp(extra));
    let remote = |fields: &str| {
        format!(
            r#"{{"providers":[{{"name":"r","issuer":"i","jwks":{{"remote":{{"cluster":"c","path":"/j"{fields}}}}}}}]}}"#
        )
    };
    let with_rules = |rules: &str| {
        format!(
            r#"{{"providers":[{},{}],"rules":[{rules}]}}"#,
            idp(""),
            secret_provider("partner", "")
        )
    };
    let secret =
        |s: &str| format!(r#"{{"providers":[{{"name":"hs","issuer":"i","secret":{s}}}]}}"#);
    let jwks = testdata_str("jwks.json");
    let cases: Vec<(String, &str, &str)> = vec![
        // Structure and types.
        (r#"{"provider":[]}"#.into(), "provider", "unknown field"),
        (one(r#","audience":["x"]"#), "providers[0].audience", "unknown field"),
        (r#"{"providers":[{"name":"a","issuer":"i","jwks":{"inline":{"keys":[]}},"from":[{"header":"x","prefx":"y"}]}]}"#.into(), "providers[0].from[0].prefx", "unknown field"),
        (one(r#","clock_skew_s":-1"#), "providers[0].clock_skew_s", "invalid value"),
        (one(r#","on_jwks_unavailable":"maybe""#), "providers[0].on_jwks_unavailable", "unknown variant"),
        (r#"{"cache":{"max_entries":"many"}}"#.into(), "cache.max_entries", "invalid type"),
        (r#"{"claims_filter_state":"no"}"#.into(), "claims_filter_state", "invalid type"),
        (r#"{"claims_filter_sate":false}"#.into(), "claims_filter_sate", "unknown field"),
        // Provider identity.
        (r#"{"providers":[{"name":"IdP","issuer":"i","secret":{"env":"JWT_SECRET"}}]}"#.into(), "providers[0].name", "lower-case"),
        (r#"{"providers":[{"name":"","issuer":"i","secret":{"env":"JWT_SECRET"}}]}"#.into(), "providers[0].name", "non-empty"),
        (format!(r#"{{"providers":[{},{}]}}"#, idp(""), idp("")), "providers[1].name", "duplicate provider name 'idp'"),
        (r#"{"providers":[{"name":"a","issuer":"","secret":{"env":"JWT_SECRET"}}]}"#.into(), "providers[0].issuer", "must not be empty"),
        (one(r#","audiences":["api",""]"#).replace(r#""audiences":["api"],"#, ""), "providers[0].audiences[1]", "must not be empty"),
        // Key sources.
        (r#"{"providers":[{"name":"a","issuer":"i"}]}"#.into(), "providers[0]", "exactly one of 'jwks' or 'secret'"),
        (format!(r#"{{"providers":[{{"name":"a","issuer":"i","jwks":{{"inline":{jwks}}},"secret":{{"env":"JWT_SECRET"}}}}]}}"#), "providers[0]", "exactly one of 'jwks' or 'secret'"),
        (r#"{"providers":[{"name":"a","issuer":"i","jwks":{}}]}"#.into(), "providers[0].jwks", "exactly one of 'inline' or 'remote'"),
        (r#"{"providers":[{"name":"a","issuer":"i","jwks":{"inline":{"keys":[{"kty":"oct","k":"AAAA"}]}}}]}"#.into(), "providers[0].jwks.inline", "no usable signature key"),
        (r#"{"providers":[{"name":"a","issuer":"i","jwks":{"inline":[1]}}]}"#.into(), "providers[0].jwks.inline", "'keys' array"),
        (format!(r#"{{"providers":[{{"name":"a","issuer":"i","algorithms":["ES384"],"jwks":{{"inline":{}}}}}]}}"#, testdata_str("rsa.jwks.json")), "providers[0].jwks.inline", "no key can verify any of the allowed algorithms"),
        (remote(r#","cluster":"""#).replace(r#""cluster":"c","#, ""), "providers[0].jwks.remote.cluster", "must not be empty"),
        (remote(r#","path":"jwks""#).replace(r#""path":"/j","#, ""), "providers[0].jwks.remote.path", "must start with '/'"),
        (remote(r#","authority":"a b""#), "providers[0].jwks.remote.authority", "without spaces"),
        (remote(r#","timeout_ms":0"#), "providers[0].jwks.remote.timeout_ms", "between 1 and 60000"),
        (remote(r#","cache_duration_s":0"#), "providers[0].jwks.remote.cache_duration_s", "greater than 0"),
        (remote(r#","max_bytes":0"#), "providers[0].jwks.remote.max_bytes", "between 1 and"),
        (remote(r#","refetch_cooldown_s":0"#), "providers[0].jwks.remote.refetch_cooldown_s", "greater than 0"),
        (remote(r#","retry_initial_ms":0"#), "providers[0].jwks.remote.retry_initial_ms", "greater than 0"),
        (remote(r#","retry_initial_ms":5000,"retry_max_ms":1000"#), "providers[0].jwks.remote.retry_max_ms", "not be less than retry_initial_ms"),
        (remote(r#","url":"https://x""#), "providers[0].jwks.remote.url", "unknown field"),
        (secret(r#"{}"#), "providers[0].secret", "exactly one of 'inline' or 'env'"),
        (secret(r#"{"inline":"x","env":"JWT_SECRET"}"#), "providers[0].secret", "exactly one of 'inline' or 'env'"),
        (secret(r#"{"env":"NOT_SET"}"#), "providers[0].secret.env", "environment variable 'NOT_SET' is not set"),
        (secret(r#"{"env":"SHORT_SECRET"}"#), "providers[0].secret.env", "the secret is 9 bytes; at least 32"),
        (secret(r#"{"inline":"short"}"#), "providers[0].secret.inline", "at least 32"),
        (secret(r#"{"inline":"!!!not base64!!!","encoding":"base64"}"#), "providers[0].secret.inline", "not valid for the configured encoding"),
        (secret(r#"{"inline":"a","encoding":"hex"}"#), "providers[0].secret.encoding", "unknown variant"),
        // Algorithms.
        (one(r#","algorithms":[]"#), "providers[0].algorithms", "must not be empty"),
        (one(r#","algorithms":["RS256","none"]"#), "providers[0].algorithms[1]", "'none' is not a supported algorithm"),
        (one(r#","algorithms":["rs256"]"#), "providers[0].algorithms[0]", "not a supported algorithm"),
        (one(r#","algorithms":["RS256","HS256"]"#), "providers[0].algorithms[1]", "'HS256' needs a 'secret' key source"),
        (one(r#","algorithms":["ES256","ES256"]"#), "providers[0].algorithms[1]", "duplicate algorithm"),
        (format!(r#"{{"providers":[{}]}}"#, secret_provider("hs", r#","algorithms":["HS256","RS256"]"#)), "providers[0].algorithms[1]", "'RS256' needs a public key"),
        // Limits.
        (one(r#","clock_skew_s":3601"#), "providers[0].clock_skew_s", "at most 3600"),
        (one(r#","max_lifetime_s":0"#), "providers[0].max_lifetime_s", "greater than 0"),
        (one(r#","max_token_bytes":0"#), "providers[0].max_token_bytes", "between 1 and 65536"),
        (one(r#","max_token_bytes":65537"#), "providers[0].max_token_bytes", "between 1 and 65536"),
        (r#"{"cache":{"max_entries":1000001}}"#.into(), "cache.max_entries", "at most 1000000"),
        // Token locations.
        (one(r#","from":[]"#), "providers[0].from", "must not be empty"),
        (one(r#","from":[{}]"#), "providers[0].from[0]", "exactly one of 'header', 'query' or 'cookie'"),
        (one(r#","from":[{"header":"a","query":"b"}]"#), "providers[0].from[0]", "exactly one of"),
        (one(r#","from":[{"header":"Authorization"}]"#), "providers[0].from[0].header", "lower case"),
        (one(r#","from":[{"header":":path"}]"#), "providers[0].from[0].header", "cannot be read from ':path'"),
        (one(r#","from":[{"header":"cookie"}]"#), "providers[0].from[0].header", "cannot be read from 'cookie'"),
        (one(r#","from":[{"query":"t","prefix":"Bearer "}]"#), "providers[0].from[0].prefix", "only a 'header' location"),
        (one(r#","from":[{"query":""}]"#), "providers[0].from[0].query", "must not be empty"),
        (one(r#","from":[{"cookie":"a;b"}]"#), "providers[0].from[0].cookie", "not a valid cookie name"),
        (one(r#","from":[{"header":"x-t","prefix":"a\nb"}]"#), "providers[0].from[0].prefix", "control characters"),
        (one(r#","from":[{"query":"t"},{"query":"t"}]"#), "providers[0].from[1]", "duplicate token location"),
        // Claims.
        (one(r#","required_claims":[{"claim":"scope"}]"#), "providers[0].required_claims[0]", "exactly one of 'exact' or 'any_of'"),
        (one(r#","required_claims":[{"claim":"a","exact":"x","any_of":["y"]}]"#), "providers[0].required_claims[0]", "exactly one of"),
        (one(r#","required_claims":[{"claim":"scope","any_of":[]}]"#), "providers[0].required_claims[0].any_of", "must not be empty"),
        (one(r#","required_claims":[{"claim":"realm..roles","exact":"x"}]"#), "providers[0].required_claims[0].claim", "without empty segments"),
        (one(r#","required_claims":[{"claim":"","exact":"x"}]"#), "providers[0].required_claims[0].claim", "without empty segments"),
        // Output headers.
        (one(r#","claims_to_headers":[{"claim":"sub","header":"X-Sub"}]"#), "providers[0].claims_to_headers[0].header", "lower case"),
        (one(r#","claims_to_headers":[{"claim":"sub","header":":path"}]"#), "providers[0].claims_to_headers[0].header", "cannot be written"),
        (one(r#","claims_to_headers":[{"claim":"sub","header":"host"}]"#), "providers[0].claims_to_headers[0].header", "cannot be written"),
        (one(r#","claims_to_headers":[{"claim":"sub","header":"authorization"}]"#), "providers[0].claims_to_headers[0].header", "'authorization' is a token location"),
        (format!(r#"{{"providers":[{},{}]}}"#, idp(r#","payload_header":"x-partner""#), secret_provider("p", r#","from":[{"header":"x-partner"}]"#)), "providers[0].payload_header", "'x-partner' is a token location"),
        (one(r#","claims_to_headers":[{"claim":"sub","header":"x-a"},{"claim":"iss","header":"x-a"}]"#), "providers[0].claims_to_headers[1].header", "written twice"),
        (one(r#","claims_to_headers":[{"claim":"sub","header":"x-a"}],"payload_header":"x-a""#), "providers[0].payload_header", "written twice"),
        (one(r#","claims_to_headers":[{"claim":"sub","header":"x-a","separator":"\r\n"}]"#), "providers[0].claims_to_headers[0].separator", "control character"),
        (one(r#","claims_to_headers":[{"claim":"a.","header":"x-a"}]"#), "providers[0].claims_to_headers[0].claim", "without empty segments"),
        (one(r#","payload_header":"bad header""#), "providers[0].payload_header", "not allowed in HTTP header names"),
        // Rules.
        (with_rules(r#"{"match":{}}"#), "rules[0]", "one of 'requires' or 'bypass: true'"),
        (with_rules(r#"{"bypass":true,"requires":{"provider":"idp"}}"#), "rules[0]", "cannot be combined"),
        (with_rules(r#"{"bypass":true,"allow_missing":true}"#), "rules[0]", "need 'requires'"),
        (with_rules(r#"{"requires":{"provider":"idp"},"allow_missing":true,"allow_missing_or_failed":true}"#), "rules[0]", "cannot be combined"),
        (with_rules(r#"{"requires":{}}"#), "rules[0].requires", "exactly one of 'provider', 'any_of' or 'all_of'"),
        (with_rules(r#"{"requires":{"provider":"idp","any_of":["idp"]}}"#), "rules[0].requires", "exactly one of"),
        (with_rules(r#"{"requires":{"provider":"nope"}}"#), "rules[0].requires.provider", "unknown provider 'nope'"),
        (with_rules(r#"{"bypass":true},{"requires":{"any_of":["idp","nope"]}}"#), "rules[1].requires.any_of[1]", "unknown provider 'nope'"),
        (with_rules(r#"{"requires":{"all_of":[]}}"#), "rules[0].requires.all_of", "must not be empty"),
        (with_rules(r#"{"requires":{"all_of":["idp","partner","idp"]}}"#), "rules[0].requires.all_of[2]", "duplicate provider 'idp'"),
        (with_rules(r#"{"match":{"path":{"regex":"("}},"bypass":true}"#), "rules[0].match.path.regex", "invalid regex"),
        (with_rules(r#"{"match":{"methods":["get"]},"bypass":true}"#), "rules[0].match.methods[0]", "upper-case"),
        (with_rules(r#"{"match":{"pth":{}},"bypass":true}"#), "rules[0].match.pth", "unknown field"),
    ];
    for (json, path, reason) in cases {
        let err = match try_compile(&json) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => e,
        };
        assert_eq!(err.path, path, "{json}\n-> {err}");
        assert!(
            err.reason.contains(reason),
            "{json}\n-> {err}\nexpected reason containing {reason:?}"
        );
    }
}

#[test]
fn secret_errors_never_show_the_secret() {
    let secret = "a-secret-that-is-much-too-short";
    let err = try_compile(&format!(
        r#"{{"providers":[{{"name":"hs","issuer":"i","secret":{{"inline":"{secret}"}}}}]}}"#
    ))
    .unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    let err = try_compile(&format!(
        r#"{{"providers":[{{"name":"hs","issuer":"i","secret":{{"inline":"{secret}","encoding":"base64"}}}}]}}"#
    ))
    .unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    // A secret written as a plain string, or of the wrong type, is refused
    // without quoting it.
    for value in [
        format!("\"{secret}\""),
        format!("{{\"inline\":[\"{secret}\"]}}"),
    ] {
        let err = try_compile(&format!(
            r#"{{"providers":[{{"name":"hs","issuer":"i","secret":{value}}}]}}"#
        ))
        .unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(err.to_string().starts_with("providers[0].secret"), "{err}");
    }
    let c: crate::config::Config = serde_json::from_str(&format!(
        r#"{{"providers":[{{"name":"hs","issuer":"i","secret":{{"inline":"{secret}"}}}}]}}"#
    ))
    .unwrap();
    assert!(!format!("{c:?}").contains(secret));
}
