//! `verify`: every algorithm, every denial reason in check order, and the
//! attacks a JWT verifier must resist.

use super::support::*;
use crate::config::{Compiled, KeySource};
use crate::jwks::KeySet;
use crate::verify::{verify, Denial, Reason, Verified};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::rc::Rc;

fn keys(c: &Compiled, provider: usize) -> Rc<KeySet> {
    match &c.providers[provider].keys {
        KeySource::Static(k) => Rc::clone(k),
        KeySource::Remote(_) => panic!("test provider has remote keys"),
    }
}

fn run_on(c: &Compiled, provider: usize, token: &str) -> Result<Verified, Denial> {
    verify(
        token.as_bytes(),
        &c.providers[provider],
        &keys(c, provider),
        NOW,
    )
}

fn run(c: &Compiled, token: &str) -> Result<Verified, Denial> {
    run_on(c, 0, token)
}

fn reason(c: &Compiled, token: &str) -> Reason {
    match run(c, token) {
        Ok(_) => panic!("token unexpectedly verified"),
        Err(d) => {
            assert_eq!(d.provider, Some(0));
            d.reason
        }
    }
}

/// A token with the given header JSON and payload bytes, correctly signed with
/// the test key for `alg`.
fn sign_raw(alg: Algorithm, header: &str, payload: &[u8]) -> String {
    let (key, _) = signing_key(alg);
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap();
    format!("{input}.{sig}")
}

fn ed_claims(claims: &Value) -> String {
    sign(Algorithm::EdDSA, claims)
}

#[test]
fn every_asymmetric_algorithm_verifies() {
    let c = one_provider("");
    for alg in ASYMMETRIC {
        let token = sign(alg, &claims());
        let v = run(&c, &token).unwrap_or_else(|d| panic!("{alg:?}: {d}"));
        assert_eq!(v.provider, 0);
        assert_eq!(v.payload["sub"], "alice", "{alg:?}");
        assert_eq!(v.exp, Some((NOW + 600) as i64));
        assert_eq!(&*v.payload_segment, token.split('.').nth(1).unwrap());
        assert_eq!(v.source, None);
    }
}

#[test]
fn every_hmac_algorithm_verifies() {
    let c = compile(&format!(
        r#"{{"providers":[{}]}}"#,
        secret_provider("hs", "")
    ));
    for alg in HMAC {
        let token = sign(alg, &claims());
        let v = run(&c, &token).unwrap_or_else(|d| panic!("{alg:?}: {d}"));
        assert_eq!(v.payload["sub"], "alice");
    }
    // The secret provider refuses asymmetric algorithms.
    assert_eq!(
        reason(&c, &sign(Algorithm::ES256, &claims())),
        Reason::AlgorithmNotAllowed
    );
}

#[test]
fn keys_without_kid_verify_tokens_that_carry_one() {
    // Many HMAC issuers put a kid in the header; an inline secret has none.
    let c = compile(&format!(
        r#"{{"providers":[{}]}}"#,
        secret_provider("hs", "")
    ));
    let secret = EncodingKey::from_secret(testdata_str("hs.secret").as_bytes());
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("key-2024".into());
    assert!(run(&c, &sign_with(&h, &claims(), &secret)).is_ok());
    let wrong = EncodingKey::from_secret(b"another secret of the same length, or close");
    assert_eq!(
        reason(&c, &sign_with(&h, &claims(), &wrong)),
        Reason::InvalidSignature
    );
    // A JWKS key without kid is tried too, when no key has the token's kid.
    let mut jwks: Value = serde_json::from_str(&testdata_str("ed25519.jwks.json")).unwrap();
    jwks["keys"][0].as_object_mut().unwrap().remove("kid");
    let c = compile(&format!(
        r#"{{"providers":[{{"name":"p","issuer":"{ISS}","audiences":["api"],"jwks":{{"inline":{jwks}}}}}]}}"#
    ));
    let (key, _) = signing_key(Algorithm::EdDSA);
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("rotated".into());
    assert!(run(&c, &sign_with(&h, &claims(), &key)).is_ok());
}

#[test]
fn secret_from_env_and_base64_encodings() {
    let secret = testdata_str("hs.secret");
    let std_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &secret);
    for source in [
        r#"{"env":"JWT_SECRET"}"#.to_string(),
        format!(r#"{{"inline":"{std_b64}","encoding":"base64"}}"#),
        format!(r#"{{"inline":"{}","encoding":"base64url"}}"#, b64(&secret)),
    ] {
        let c = compile(&format!(
            r#"{{"providers":[{{"name":"hs","issuer":"{ISS}","secret":{source}}}]}}"#
        ));
        assert!(
            run(&c, &sign(Algorithm::HS256, &claims())).is_ok(),
            "{source}"
        );
    }
}

#[test]
fn tokens_without_kid_try_every_compatible_key() {
    let c = one_provider("");
    for alg in [Algorithm::RS256, Algorithm::ES384, Algorithm::EdDSA] {
        let (key, _) = signing_key(alg);
        let token = sign_with(&Header::new(alg), &claims(), &key);
        assert!(run(&c, &token).is_ok(), "{alg:?}");
    }
}

#[test]
fn a_token_without_kid_is_checked_against_at_most_eight_keys() {
    use crate::verify::MAX_KEYS_TRIED;
    let real = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                      "x": "r0W2QyKBfPcZotfmTjnmXA1MuilSgOCBMHewL_GKNwA"});
    let other = |i: u8| json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b64([i; 32])});
    let provider = |keys: Vec<Value>| {
        compile(&format!(
            r#"{{"providers":[{{"name":"idp","issuer":"{ISS}","audiences":["api"],"jwks":{{"inline":{}}}}}]}}"#,
            json!({ "keys": keys })
        ))
    };
    let (key, _) = signing_key(Algorithm::EdDSA);
    let token = sign_with(&Header::new(Algorithm::EdDSA), &claims(), &key);
    let mut keys: Vec<Value> = (1..=MAX_KEYS_TRIED as u8 - 1).map(other).collect();
    keys.push(real.clone());
    assert!(
        run(&provider(keys.clone()), &token).is_ok(),
        "the 8th key is tried"
    );
    keys.insert(0, other(99));
    assert_eq!(
        reason(&provider(keys), &token),
        Reason::InvalidSignature,
        "the 9th is not"
    );
}

#[test]
fn oversized_token_is_refused_before_parsing() {
    let c = one_provider(r#","max_token_bytes":64"#);
    assert_eq!(reason(&c, &"x".repeat(65)), Reason::TokenTooLarge);
    assert_eq!(
        reason(&c, &ed_claims(&claims())),
        Reason::TokenTooLarge,
        "a valid token over the limit is refused too"
    );
}

#[test]
fn malformed_structure_and_encoding() {
    let c = one_provider("");
    let good = ed_claims(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        ("empty", String::new()),
        ("one segment", "abc".into()),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("four segments", format!("{good}.x")),
        (
            "JWE compact (5 segments)",
            "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d".into(),
        ),
        (
            "bad base64 header",
            format!("e!J.{}.{}", parts[1], parts[2]),
        ),
        (
            "bad base64 payload",
            format!("{}.%%%.{}", parts[0], parts[2]),
        ),
        (
            "bad base64 signature",
            format!("{}.{}.abc*def", parts[0], parts[1]),
        ),
        (
            "padded base64",
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "standard base64 alphabet",
            format!("{}.{}.{}+/", parts[0], parts[1], parts[2]),
        ),
        (
            "non-UTF-8 bytes",
            format!("{}.{}.{}\u{e9}", parts[0], parts[1], parts[2]),
        ),
        (
            "header not JSON",
            format!("{}.{}.{}", b64("not json"), parts[1], parts[2]),
        ),
        (
            "header JSON array",
            format!("{}.{}.{}", b64("[1,2]"), parts[1], parts[2]),
        ),
        (
            "header JSON string",
            format!("{}.{}.{}", b64("\"alg\""), parts[1], parts[2]),
        ),
        ("empty header", format!(".{}.{}", parts[1], parts[2])),
    ];
    for (what, token) in cases {
        let d = run(&c, &token).unwrap_err();
        assert_eq!(d.reason, Reason::Malformed, "{what}: {d}");
    }
}

#[test]
fn payload_must_be_a_json_object_after_the_signature_checks() {
    let c = one_provider("");
    let header = r#"{"alg":"EdDSA","kid":"ed25519-1"}"#;
    for payload in [
        &b"not json"[..],
        b"[1,2,3]",
        b"\"sub\"",
        b"42",
        b"",
        b"{\"a\":",
    ] {
        let token = sign_raw(Algorithm::EdDSA, header, payload);
        let d = run(&c, &token).unwrap_err();
        assert_eq!(d.reason, Reason::Malformed, "{payload:?}");
        assert_eq!(d.message(), "payload is not a JSON object");
    }
    // With a bad signature, the signature is what fails first.
    let forged = forge(header, "[1]", &b64([0u8; 64]));
    assert_eq!(reason(&c, &forged), Reason::InvalidSignature);
}

#[test]
fn failures_after_the_signature_are_the_most_relevant() {
    let c = one_provider("");
    let expired = sign(Algorithm::EdDSA, &claims_with(json!({"exp": NOW - 3600})));
    let wrong_issuer = sign(
        Algorithm::EdDSA,
        &claims_with(json!({"iss": "https://other"})),
    );
    let forged = forge(
        r#"{"alg":"EdDSA","kid":"ed25519-1"}"#,
        "{}",
        &b64([0u8; 64]),
    );
    let relevance = |token: &str| run(&c, token).unwrap_err().relevance();
    assert_eq!(relevance(&expired), 2);
    assert_eq!(relevance(&wrong_issuer), 1);
    assert_eq!(relevance(&forged), 0);
    assert_eq!(relevance("a.b"), 0);
}

#[test]
fn alg_none_and_missing_or_unknown_alg_are_not_allowed() {
    let c = one_provider("");
    let payload = claims().to_string();
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE","kid":"rsa-1"}"#,
        r#"{"typ":"JWT"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":256}"#,
        r#"{"alg":"rs256"}"#,
        r#"{"alg":"RSA-OAEP"}"#,
    ] {
        for sig in ["", "c2ln"] {
            let token = forge(header, &payload, sig);
            assert_eq!(
                reason(&c, &token),
                Reason::AlgorithmNotAllowed,
                "{header} sig={sig:?}"
            );
        }
    }
    // Without the (empty) signature segment it is not a JWS at all.
    let two = format!("{}.{}", b64(r#"{"alg":"none"}"#), b64(&payload));
    assert_eq!(reason(&c, &two), Reason::Malformed);
}

#[test]
fn algorithm_outside_the_allow_list_is_refused() {
    let c = one_provider(r#","algorithms":["ES256"]"#);
    assert!(run(&c, &sign(Algorithm::ES256, &claims())).is_ok());
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ] {
        let token = if alg == Algorithm::HS256 {
            sign_with(
                &Header::new(alg),
                &claims(),
                &EncodingKey::from_secret(b"k"),
            )
        } else {
            sign(alg, &claims())
        };
        assert_eq!(reason(&c, &token), Reason::AlgorithmNotAllowed, "{alg:?}");
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let c = one_provider("");
    let pem = testdata("rsa.pub.pem");
    let der = {
        let text = String::from_utf8(pem.clone()).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap()
    };
    let jwk_n = {
        let jwks: Value = serde_json::from_slice(&testdata("rsa.jwks.json")).unwrap();
        jwks["keys"][0]["n"].as_str().unwrap().as_bytes().to_vec()
    };
    for secret in [pem, der, jwk_n] {
        for kid in [None, Some("rsa-1")] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = kid.map(str::to_string);
            let token = sign_with(&header, &claims(), &EncodingKey::from_secret(&secret));
            assert_eq!(reason(&c, &token), Reason::AlgorithmNotAllowed);
        }
    }

    // Even a provider forced (bypassing config validation) to allow HS256 with
    // RSA keys has no key an HMAC token can use.
    let mut forced = one_provider("");
    forced.providers[0].algorithms.push(Algorithm::HS256);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let token = sign_with(
        &header,
        &claims(),
        &EncodingKey::from_secret(&testdata("rsa.pub.pem")),
    );
    assert_eq!(reason(&forced, &token), Reason::UnknownKid);
    let token = sign_with(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&testdata("rsa.pub.pem")),
    );
    assert_eq!(reason(&forced, &token), Reason::UnknownKid);
    // And the library refuses an HMAC verification with an RSA key outright.
    let rsa_key = keys(&forced, 0).by_kid("rsa-1").unwrap().decoding.clone();
    let parts: Vec<&str> = token.rsplitn(2, '.').collect();
    assert!(!jsonwebtoken::crypto::verify(
        parts[0],
        parts[1].as_bytes(),
        &rsa_key,
        Algorithm::HS256
    )
    .unwrap_or(false));
}

#[test]
fn crit_header_is_unsupported() {
    let c = one_provider("");
    for crit in [json!(["exp"]), json!([]), json!("b64"), json!(null)] {
        let header = json!({"alg": "EdDSA", "kid": "ed25519-1", "crit": crit}).to_string();
        let token = sign_raw(Algorithm::EdDSA, &header, claims().to_string().as_bytes());
        assert_eq!(reason(&c, &token), Reason::UnsupportedCrit, "{crit}");
    }
    // `b64: false` (RFC 7797) must come with crit; without it, it is ignored
    // and the signature is over the encoded payload as usual.
    let header = r#"{"alg":"EdDSA","kid":"ed25519-1","b64":false}"#;
    let token = sign_raw(Algorithm::EdDSA, header, claims().to_string().as_bytes());
    assert!(run(&c, &token).is_ok());
}

#[test]
fn key_selection_by_kid() {
    let c = one_provider("");
    let claims = claims();
    let with_kid = |alg: Algorithm, kid: &str| {
        let (key, _) = signing_key(alg);
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        sign_with(&h, &claims, &key)
    };
    assert_eq!(
        reason(&c, &with_kid(Algorithm::EdDSA, "nope")),
        Reason::UnknownKid
    );
    // A kid that names a key of another type or curve.
    assert_eq!(
        reason(&c, &with_kid(Algorithm::RS256, "ec256-1")),
        Reason::UnknownKid
    );
    assert_eq!(
        reason(&c, &with_kid(Algorithm::ES384, "ec256-1")),
        Reason::UnknownKid
    );
    assert_eq!(
        reason(&c, &with_kid(Algorithm::ES256, "ed25519-1")),
        Reason::UnknownKid
    );
    // A kid that must be a string.
    let token = sign_raw(
        Algorithm::EdDSA,
        r#"{"alg":"EdDSA","kid":7}"#,
        claims.to_string().as_bytes(),
    );
    assert_eq!(reason(&c, &token), Reason::Malformed);
    // The right kid verifies.
    assert!(run(&c, &with_kid(Algorithm::ES256, "ec256-1")).is_ok());
    // A kid that exists but whose key did not sign is a signature failure.
    let other = p256::SecretKey::random(&mut rand::thread_rng());
    use p256::pkcs8::EncodePrivateKey;
    let pem = other.to_pkcs8_pem(Default::default()).unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec256-1".into());
    let token = sign_with(
        &h,
        &claims,
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    );
    assert_eq!(reason(&c, &token), Reason::InvalidSignature);
}

#[test]
fn a_keys_own_alg_must_match_the_token() {
    let mut jwks: Value = serde_json::from_slice(&testdata("rsa.jwks.json")).unwrap();
    jwks["keys"][0]["alg"] = json!("RS256");
    let c = compile(&format!(
        r#"{{"providers":[{{"name":"idp","issuer":"{ISS}","jwks":{{"inline":{jwks}}}}}]}}"#
    ));
    assert!(run(&c, &sign(Algorithm::RS256, &claims())).is_ok());
    assert_eq!(
        reason(&c, &sign(Algorithm::PS256, &claims())),
        Reason::UnknownKid
    );
    assert_eq!(
        reason(&c, &sign(Algorithm::RS512, &claims())),
        Reason::UnknownKid
    );
}

#[test]
fn tampering_breaks_the_signature() {
    let c = one_provider("");
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let token = sign(alg, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        // Another payload under the original signature.
        let other = b64(claims_with(json!({"sub": "mallory"})).to_string());
        let swapped = format!("{}.{other}.{}", parts[0], parts[2]);
        assert_eq!(
            reason(&c, &swapped),
            Reason::InvalidSignature,
            "{alg:?} payload"
        );
        // A flipped signature bit (first character: it carries no padding bits).
        let mut sig = parts[2].as_bytes().to_vec();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        let flipped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        );
        assert_eq!(
            reason(&c, &flipped),
            Reason::InvalidSignature,
            "{alg:?} signature"
        );
        // Truncated and empty signatures.
        let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..8]);
        assert_eq!(
            reason(&c, &truncated),
            Reason::InvalidSignature,
            "{alg:?} truncated"
        );
        let empty = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(
            reason(&c, &empty),
            Reason::InvalidSignature,
            "{alg:?} empty"
        );
    }
}

#[test]
fn issuer_and_audience() {
    let c = one_provider("");
    let r = |changes: Value| reason(&c, &ed_claims(&claims_with(changes)));
    assert_eq!(
        r(json!({"iss": "https://evil.example.com"})),
        Reason::WrongIssuer
    );
    assert_eq!(
        r(json!({"iss": "https://idp.example.com/"})),
        Reason::WrongIssuer
    );
    assert_eq!(r(json!({"iss": null})), Reason::WrongIssuer);
    assert_eq!(
        r(json!({"iss": ["https://idp.example.com"]})),
        Reason::WrongIssuer
    );
    assert_eq!(r(json!({"aud": "other"})), Reason::WrongAudience);
    assert_eq!(r(json!({"aud": null})), Reason::WrongAudience);
    assert_eq!(r(json!({"aud": ["a", "b"]})), Reason::WrongAudience);
    assert_eq!(r(json!({"aud": 1})), Reason::WrongAudience);
    assert!(run(&c, &ed_claims(&claims_with(json!({"aud": ["x", "api"]})))).is_ok());

    // Without configured audiences, aud is not checked.
    let any = compile(&format!(
        r#"{{"providers":[{{"name":"idp","issuer":"{ISS}","jwks":{{"inline":{}}}}}]}}"#,
        testdata_str("jwks.json")
    ));
    assert!(run(&any, &ed_claims(&claims_with(json!({"aud": "whatever"})))).is_ok());
    assert!(run(&any, &ed_claims(&claims_with(json!({"aud": null})))).is_ok());
}

#[test]
fn time_claims_with_clock_skew() {
    let c = one_provider("");
    let now = NOW as i64;
    let ok = |changes: Value| run(&c, &ed_claims(&claims_with(changes)));
    assert!(ok(json!({"exp": now - 60})).is_ok(), "within the 60 s skew");
    assert_eq!(
        ok(json!({"exp": now - 61})).unwrap_err().reason,
        Reason::Expired
    );
    assert!(
        ok(json!({"exp": (now as f64) + 0.5})).is_ok(),
        "fractional NumericDate"
    );
    assert_eq!(
        ok(json!({"exp": null})).unwrap_err().reason,
        Reason::Malformed
    );
    assert_eq!(
        ok(json!({"exp": null})).unwrap_err().message(),
        "claim 'exp' is missing"
    );
    assert_eq!(
        ok(json!({"exp": "soon"})).unwrap_err().reason,
        Reason::Malformed
    );
    assert!(ok(json!({"nbf": now + 60})).is_ok());
    assert_eq!(
        ok(json!({"nbf": now + 61})).unwrap_err().reason,
        Reason::NotYetValid
    );
    assert_eq!(
        ok(json!({"nbf": "later"})).unwrap_err().reason,
        Reason::Malformed
    );
    assert_eq!(
        ok(json!({"iat": {}})).unwrap_err().reason,
        Reason::Malformed
    );
    assert!(ok(json!({"exp": u64::MAX})).is_ok(), "huge exp saturates");
    assert_eq!(
        ok(json!({"exp": -1e300})).unwrap_err().reason,
        Reason::Expired
    );

    let strict = one_provider(r#","clock_skew_s":0"#);
    assert_eq!(
        run(&strict, &ed_claims(&claims_with(json!({"exp": now - 1}))))
            .unwrap_err()
            .reason,
        Reason::Expired
    );
    assert!(run(&strict, &ed_claims(&claims_with(json!({"exp": now})))).is_ok());

    let lax = one_provider(r#","require_exp":false"#);
    let v = run(&lax, &ed_claims(&claims_with(json!({"exp": null})))).unwrap();
    assert_eq!(v.exp, None);
}

#[test]
fn lifetime_limit() {
    let c = one_provider(r#","max_lifetime_s":3600"#);
    let now = NOW as i64;
    let r = |changes: Value| run(&c, &ed_claims(&claims_with(changes)));
    assert!(r(json!({"iat": now, "exp": now + 3600})).is_ok());
    assert_eq!(
        r(json!({"iat": now - 100, "exp": now + 3600}))
            .unwrap_err()
            .reason,
        Reason::LifetimeTooLong
    );
    // Without iat, the remaining lifetime counts.
    assert!(r(json!({"iat": null, "exp": now + 3000})).is_ok());
    assert_eq!(
        r(json!({"iat": null, "exp": now + 4000}))
            .unwrap_err()
            .reason,
        Reason::LifetimeTooLong
    );
    // Without exp (allowed here), the lifetime is unbounded.
    let no_exp = one_provider(r#","max_lifetime_s":3600,"require_exp":false"#);
    assert_eq!(
        run(&no_exp, &ed_claims(&claims_with(json!({"exp": null}))))
            .unwrap_err()
            .reason,
        Reason::LifetimeTooLong
    );
}

#[test]
fn required_claims() {
    let c = one_provider(
        r#","required_claims":[
            {"claim":"scope","any_of":["api:read","api:write"],"space_delimited":true},
            {"claim":"tenant","exact":"acme"},
            {"claim":"realm.roles","any_of":["admin"]},
            {"claim":"https://example.com/level","exact":"3"},
            {"claim":"email_verified","exact":"true"}]"#,
    );
    let good = json!({
        "scope": "openid api:read profile",
        "tenant": "acme",
        "realm": {"roles": ["user", "admin"]},
        "https://example.com/level": 3,
        "email_verified": true,
    });
    let token = ed_claims(&claims_with(good.clone()));
    assert!(run(&c, &token).is_ok());

    let mismatch = |change: Value| {
        let mut claims = good.clone();
        for (k, v) in change.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let d = run(&c, &ed_claims(&claims_with(claims))).unwrap_err();
        assert_eq!(d.reason, Reason::ClaimMismatch, "{change}");
        d
    };
    let d = mismatch(json!({"scope": "openid api:readonly"}));
    assert_eq!(d.message(), "claim 'scope' does not match the requirement");
    assert!(!d.message().contains("readonly"));
    assert_eq!(d.status(), 403);
    mismatch(json!({"scope": ["api:readwrite", "api"]}));
    mismatch(json!({"tenant": "acme-evil"}));
    mismatch(json!({"tenant": ["other"]}));
    mismatch(json!({"realm": {"roles": "user"}}));
    mismatch(json!({"realm": {"roles": []}}));
    mismatch(json!({"realm": ["admin"]}));
    mismatch(json!({"https://example.com/level": 2}));
    mismatch(json!({"https://example.com/level": 3.5}));
    mismatch(json!({"https://example.com/level": 30}));
    mismatch(json!({"email_verified": "yes"}));
    let d = mismatch(json!({"tenant": null}));
    assert_eq!(d.message(), "claim 'tenant' does not match the requirement");

    // Arrays match if any element matches, including arrays of scopes.
    let token = ed_claims(&claims_with(json!({
        "scope": ["x", "api:write"], "tenant": ["other", "acme"],
        "realm": {"roles": "admin"}, "https://example.com/level": "3", "email_verified": "true",
    })));
    assert!(run(&c, &token).is_ok());

    // Numbers compare by value: 3.0 and 3e0 are 3.
    for level in [json!(3.0), json!(3e0), json!([1, 3.0])] {
        let token = ed_claims(&claims_with(json!({
            "scope": "api:read", "tenant": "acme", "realm": {"roles": ["admin"]},
            "https://example.com/level": level, "email_verified": true,
        })));
        assert!(run(&c, &token).is_ok(), "level {level}");
    }
}

#[test]
fn only_plain_decimals_compare_as_numbers() {
    let accepted = |exact: &str, claim: Value| {
        let c = one_provider(&format!(
            r#","required_claims":[{{"claim":"n","exact":"{exact}"}}]"#
        ));
        run(&c, &ed_claims(&claims_with(json!({ "n": claim })))).is_ok()
    };
    assert!(accepted("3", json!(3.0)));
    assert!(accepted("3.0", json!(3)));
    assert!(accepted("-2.50", json!(-2.5)));
    assert!(accepted("0.1", json!(0.1)));
    assert!(accepted("007", json!(7)));
    assert!(!accepted("3.0000000000000001", json!(3)));
    assert!(!accepted("+3", json!(3)));
    assert!(!accepted("1e-400", json!(0)));
    assert!(!accepted("3e0", json!(3)));
    assert!(!accepted("3.", json!(3)));
    assert!(!accepted(".5", json!(0.5)));
    assert!(!accepted("inf", json!(1e308)));
}

#[test]
fn numbers_beyond_doubles_compare_by_text() {
    let c = one_provider(r#","required_claims":[{"claim":"id","exact":"9007199254740993"}]"#);
    let claims = |id: Value| ed_claims(&claims_with(json!({ "id": id })));
    assert!(run(&c, &claims(json!(9_007_199_254_740_993u64))).is_ok());
    assert_eq!(
        reason(&c, &claims(json!(9_007_199_254_740_992u64))),
        Reason::ClaimMismatch
    );
}

#[test]
fn checks_run_in_the_documented_order() {
    // A token wrong in every way reports the earliest check.
    let c = one_provider(
        r#","required_claims":[{"claim":"tenant","exact":"acme"}],"max_lifetime_s":10"#,
    );
    let everything_wrong = claims_with(json!({
        "iss": "other", "aud": "other", "exp": 1, "nbf": NOW + 1000,
    }));
    assert_eq!(
        reason(&c, &ed_claims(&everything_wrong)),
        Reason::WrongIssuer
    );
    let c2 = claims_with(json!({"aud": "other", "exp": 1}));
    assert_eq!(reason(&c, &ed_claims(&c2)), Reason::WrongAudience);
    let c3 = claims_with(json!({"exp": 1, "nbf": NOW + 1000}));
    assert_eq!(reason(&c, &ed_claims(&c3)), Reason::Expired);
    let c4 = claims_with(json!({"nbf": NOW + 1000}));
    assert_eq!(reason(&c, &ed_claims(&c4)), Reason::NotYetValid);
    assert_eq!(reason(&c, &ed_claims(&claims())), Reason::LifetimeTooLong);
    let c5 = claims_with(json!({"iat": NOW, "exp": NOW + 5}));
    assert_eq!(reason(&c, &ed_claims(&c5)), Reason::ClaimMismatch);
    // crit is checked after alg, and kid after crit.
    let token = forge(r#"{"alg":"none","crit":["x"]}"#, "{}", "");
    assert_eq!(reason(&c, &token), Reason::AlgorithmNotAllowed);
    let token = forge(r#"{"alg":"EdDSA","crit":["x"],"kid":"nope"}"#, "{}", "");
    assert_eq!(reason(&c, &token), Reason::UnsupportedCrit);
}

#[test]
fn denial_presentation() {
    let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(
        codes,
        [
            "missing",
            "malformed",
            "invalid_signature",
            "expired",
            "not_yet_valid",
            "wrong_issuer",
            "wrong_audience",
            "unknown_kid",
            "algorithm_not_allowed",
            "unsupported_crit",
            "token_too_large",
            "lifetime_too_long",
            "claim_mismatch",
            "jwks_unavailable",
        ]
    );
    for r in Reason::ALL {
        assert_eq!(
            r.status(),
            if r == Reason::ClaimMismatch { 403 } else { 401 }
        );
    }
    assert_eq!(
        Denial::missing().www_authenticate("https://api.example.com/x"),
        r#"Bearer realm="https://api.example.com/x""#
    );
    assert_eq!(
        Denial::new(Reason::Expired, "token has expired").www_authenticate("r"),
        r#"Bearer realm="r", error="invalid_token", error_description="token has expired""#
    );
    assert_eq!(
        Denial::new(
            Reason::ClaimMismatch,
            "claim 'scope' does not match the requirement"
        )
        .www_authenticate("r"),
        r#"Bearer realm="r", error="insufficient_scope", error_description="claim 'scope' does not match the requirement""#
    );
    assert_eq!(
        Denial::missing().www_authenticate("a\"b\\c\r\nd"),
        r#"Bearer realm="a\"b\\cd""#
    );
}

#[test]
fn denial_messages_never_contain_the_token_or_claim_values() {
    let c = one_provider(r#","required_claims":[{"claim":"tenant","exact":"acme"}]"#);
    let secretish = "s3cr3t-VALUE";
    let tokens = [
        ed_claims(&claims_with(json!({"iss": secretish, "tenant": "acme"}))),
        ed_claims(&claims_with(json!({"aud": secretish, "tenant": "acme"}))),
        ed_claims(&claims_with(json!({"tenant": secretish}))),
        ed_claims(&claims_with(json!({"exp": secretish, "tenant": "acme"}))),
        forge(&format!(r#"{{"alg":"{secretish}"}}"#), "{}", ""),
        forge(
            &format!(r#"{{"alg":"EdDSA","kid":"{secretish}"}}"#),
            "{}",
            "",
        ),
        format!("{secretish}.x"),
    ];
    for token in tokens {
        let d = run(&c, &token).unwrap_err();
        let shown = format!("{d} {} {}", d.message(), d.www_authenticate("realm"));
        assert!(!shown.contains(secretish), "{shown}");
        assert!(!shown.contains(&token), "{shown}");
    }
}
