//! Outputs: claim headers, payload header, token stripping, scrubbing of
//! client-supplied output headers, claims JSON and realm.

use super::support::*;
use crate::cache::TokenCache;
use crate::config::Compiled;
use crate::outputs::{apply, claims_json, realm, scrub, Skipped, MAX_CLAIM_HEADER_BYTES};
use crate::rules::Decision;
use crate::verify::Verified;
use jsonwebtoken::Algorithm;
use pwf_shared::headers::ValueProblem;
use pwf_shared::HeaderList;
use serde_json::{json, Value};
use std::rc::Rc;

const OUTPUTS: &str = r#","claims_to_headers":[
    {"claim":"sub","header":"x-jwt-sub"},
    {"claim":"realm.roles","header":"x-jwt-roles"},
    {"claim":"groups","header":"x-jwt-groups","separator":" | "},
    {"claim":"level","header":"x-jwt-level"},
    {"claim":"admin","header":"x-jwt-admin"},
    {"claim":"address","header":"x-jwt-address"},
    {"claim":"nothing","header":"x-jwt-null"},
    {"claim":"absent","header":"x-jwt-absent"}],
  "payload_header":"x-jwt-payload""#;

fn config(extra: &str) -> Compiled {
    compile(&format!(
        r#"{{"providers":[{}],"rules":[{{"requires":{{"provider":"idp"}}}}]}}"#,
        jwks_provider("idp", &format!("{OUTPUTS}{extra}"))
    ))
}

fn verified_with(payload: Value) -> Verified {
    Verified {
        provider: 0,
        payload: Rc::new(payload),
        payload_segment: Rc::from("eyJzdWIiOiJhbGljZSJ9"),
        payload_json: None,
        exp: None,
        source: None,
    }
}

#[test]
fn claims_become_headers() {
    let c = config("");
    let mut h = request(&[]);
    let v = verified_with(json!({
        "sub": "alice",
        "realm": {"roles": ["admin", "user"]},
        "groups": ["a", 7, true, {"k": "v"}, null],
        "level": 3.5,
        "admin": false,
        "address": {"city": "Lyon", "zip": "69001"},
        "nothing": null,
    }));
    let report = apply(&c, &[v], &mut h);
    assert!(report.changed);
    assert!(report.skipped.is_empty());
    assert_eq!(get(&h, "x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(get(&h, "x-jwt-roles").as_deref(), Some("admin,user"));
    assert_eq!(
        get(&h, "x-jwt-groups").as_deref(),
        Some(r#"a | 7 | true | {"k":"v"}"#)
    );
    assert_eq!(get(&h, "x-jwt-level").as_deref(), Some("3.5"));
    assert_eq!(get(&h, "x-jwt-admin").as_deref(), Some("false"));
    assert_eq!(
        get(&h, "x-jwt-address").as_deref(),
        Some(r#"{"city":"Lyon","zip":"69001"}"#)
    );
    assert!(!h.contains("x-jwt-null"));
    assert!(!h.contains("x-jwt-absent"));
    assert_eq!(
        get(&h, "x-jwt-payload").as_deref(),
        Some("eyJzdWIiOiJhbGljZSJ9")
    );
}

#[test]
fn an_empty_claim_array_writes_no_header() {
    let c = config("");
    for roles in [json!([]), json!([null])] {
        let mut h = request(&[]);
        let v = verified_with(json!({"sub": "alice", "realm": {"roles": roles}}));
        apply(&c, &[v], &mut h);
        assert!(!h.contains("x-jwt-roles"), "{roles}");
        assert_eq!(get(&h, "x-jwt-sub").as_deref(), Some("alice"));
    }
}

#[test]
fn unsafe_or_oversized_values_are_skipped_and_reported() {
    let c = config("");
    let mut h = request(&[]);
    let v = verified_with(json!({
        "sub": "alice\r\nx-injected: yes",
        "realm": {"roles": ["ok", "bad\nrole"]},
        "groups": "nul\u{0}byte",
        "level": "x".repeat(MAX_CLAIM_HEADER_BYTES + 1),
        "admin": "y".repeat(MAX_CLAIM_HEADER_BYTES),
    }));
    let report = apply(&c, &[v], &mut h);
    let skipped: Vec<_> = report
        .skipped
        .iter()
        .map(|s| (s.header.as_str(), s.problem))
        .collect();
    assert_eq!(
        skipped,
        [
            ("x-jwt-sub", ValueProblem::ControlCharacter),
            ("x-jwt-roles", ValueProblem::ControlCharacter),
            ("x-jwt-groups", ValueProblem::ControlCharacter),
            ("x-jwt-level", ValueProblem::TooLong),
        ]
    );
    assert_eq!(
        report.skipped[0],
        Skipped {
            provider: 0,
            header: "x-jwt-sub".into(),
            problem: ValueProblem::ControlCharacter
        }
    );
    for name in [
        "x-jwt-sub",
        "x-jwt-roles",
        "x-jwt-groups",
        "x-jwt-level",
        "x-injected",
    ] {
        assert!(!h.contains(name), "{name}");
    }
    assert_eq!(
        h.get("x-jwt-admin").map(<[u8]>::len),
        Some(MAX_CLAIM_HEADER_BYTES)
    );
}

#[test]
fn client_supplied_output_headers_are_removed_from_every_request() {
    let c = config("");
    let mut h = request(&[
        ("x-jwt-sub", "forged"),
        ("x-jwt-payload", "forged"),
        ("x-jwt-absent", "forged"),
        ("x-jwt-sub", "forged-again"),
        ("x-keep", "1"),
    ]);
    assert!(scrub(&c, &mut h));
    let names: Vec<&str> = h.entries().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [":method", ":path", ":authority", ":scheme", "x-keep"]
    );
    assert!(!scrub(&c, &mut h), "nothing left");

    // A verified token whose claim is absent leaves no forged value behind.
    let mut h = request(&[("x-jwt-absent", "forged")]);
    scrub(&c, &mut h);
    apply(&c, &[verified_with(json!({"sub": "alice"}))], &mut h);
    assert!(!h.contains("x-jwt-absent"));
    assert_eq!(get(&h, "x-jwt-sub").as_deref(), Some("alice"));

    let none = one_provider("");
    let mut h = request(&[("x-jwt-sub", "kept: not an output here")]);
    assert!(!scrub(&none, &mut h));
    assert!(h.contains("x-jwt-sub"));
}

fn authorize_and_apply(c: &Compiled, mut h: HeaderList) -> HeaderList {
    let mut cache = TokenCache::new(0);
    scrub(c, &mut h);
    let e = c.authorize(&h, NOW, &|_| None, &mut cache);
    let Decision::Allow { verified } = e.decision else {
        panic!("{e:?}")
    };
    assert_eq!(verified.len(), 1);
    apply(c, &verified, &mut h);
    h
}

#[test]
fn token_is_stripped_unless_forwarded() {
    let token = sign(Algorithm::ES256, &claims());
    let locations = r#","from":[{"header":"authorization","prefix":"Bearer "},{"query":"access_token"},{"cookie":"session"}]"#;
    let stripping = config(locations);
    let forwarding = config(&format!(r#"{locations},"forward":true"#));

    let auth = bearer(&token);
    let h = authorize_and_apply(
        &stripping,
        request(&[("authorization", &auth), ("authorization", "Basic other")]),
    );
    assert_eq!(
        h.get_all("authorization").collect::<Vec<_>>(),
        [b"Basic other"]
    );
    assert_eq!(get(&h, "x-jwt-sub").as_deref(), Some("alice"));
    let h = authorize_and_apply(&forwarding, request(&[("authorization", &auth)]));
    assert_eq!(get(&h, "authorization"), Some(auth.clone()));

    let path = format!("/api/items?a=1&access_token={token}&b=2");
    let mut with_query = request(&[]);
    with_query.set(":path", path.clone().into_bytes());
    let h = authorize_and_apply(&stripping, with_query.clone());
    assert_eq!(get(&h, ":path").as_deref(), Some("/api/items?a=1&b=2"));
    let h = authorize_and_apply(&forwarding, with_query);
    assert_eq!(get(&h, ":path"), Some(path));

    let cookie = format!("theme=dark; session={token}; lang=fr");
    let h = authorize_and_apply(&stripping, request(&[("cookie", &cookie)]));
    assert_eq!(get(&h, "cookie").as_deref(), Some("theme=dark; lang=fr"));
    let h = authorize_and_apply(&forwarding, request(&[("cookie", &cookie)]));
    assert_eq!(get(&h, "cookie"), Some(cookie));
}

#[test]
fn claims_json_keys_payloads_by_provider_name() {
    let c = compile(&format!(
        r#"{{"providers":[{},{}]}}"#,
        jwks_provider("idp", ""),
        secret_provider("partner", "")
    ));
    let a = verified_with(json!({"sub": "alice", "n": 1}));
    let mut b = verified_with(json!({"sub": "svc", "scope": ["x"]}));
    b.provider = 1;
    assert_eq!(
        claims_json(&c, &[a, b]),
        r#"{"idp":{"n":1,"sub":"alice"},"partner":{"scope":["x"],"sub":"svc"}}"#
    );
    assert_eq!(claims_json(&c, &[]), "{}");
}

/// What `claims_json` printed before it reused serialized payloads: a
/// `serde_json` map of provider name to payload.
fn claims_json_reference(c: &Compiled, verified: &[Verified]) -> String {
    let mut map = serde_json::Map::new();
    for v in verified {
        map.insert(c.providers[v.provider].name.clone(), (*v.payload).clone());
    }
    Value::Object(map).to_string()
}

#[test]
fn claims_json_from_kept_payload_json_is_what_serializing_prints() {
    let c = compile(&format!(
        r#"{{"providers":[{},{},{}]}}"#,
        jwks_provider("zeta", ""),
        secret_provider("alpha", ""),
        jwks_provider("mid-1", "")
    ));
    let payloads = [
        json!({"sub": "z\"q\u{e9}\n", "aud": ["a", "b"], "n": 1.5, "nested": {"b": 1, "a": [null, true]}}),
        json!({"sub": "svc", "scope": "x y"}),
        json!({}),
    ];
    let with_json = |provider: usize, keep: bool| {
        let mut v = verified_with(payloads[provider].clone());
        v.provider = provider;
        if keep {
            v.payload_json = Some(Rc::from(v.payload.to_string()));
        }
        v
    };
    for keep in [false, true] {
        let cases: Vec<Vec<Verified>> = vec![
            vec![with_json(0, keep)],
            vec![with_json(0, keep), with_json(1, keep)],
            vec![with_json(2, keep), with_json(0, !keep), with_json(1, keep)],
            // Two tokens for one provider: the later one wins, as in a map.
            vec![with_json(1, keep), {
                let mut later = with_json(0, keep);
                later.provider = 1;
                later
            }],
        ];
        for verified in cases {
            assert_eq!(
                claims_json(&c, &verified),
                claims_json_reference(&c, &verified),
                "keep {keep}: {verified:?}"
            );
        }
    }
    let both = claims_json(&c, &[with_json(0, true), with_json(1, true)]);
    assert!(
        both.starts_with(r#"{"alpha":{"scope":"x y","sub":"svc"},"zeta":{"#),
        "{both}"
    );
}

#[test]
fn realm_is_the_url_without_the_query() {
    let h = HeaderList::from_pairs([
        (":scheme", "https"),
        (":authority", "api.example.com:8443"),
        (":path", "/v1/x?access_token=secret"),
    ]);
    assert_eq!(realm(&h), "https://api.example.com:8443/v1/x");
    let h = HeaderList::from_pairs([("host", "h"), (":path", "/")]);
    assert_eq!(realm(&h), "http://h/");
}
