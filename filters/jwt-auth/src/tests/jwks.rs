//! JWKS parsing: the fixtures, every kind of unusable key, and hostile documents.

use super::support::*;
use crate::jwks::{parse, parse_value, JwksError, KeyKind, KeySet, ParseStats, MAX_KEYS};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const LIMIT: usize = 256 * 1024;

fn fixture_keys() -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&testdata("jwks.json")).unwrap();
    doc["keys"].as_array().unwrap().clone()
}

fn doc(keys: &[Value]) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}

/// Generous: these run in debug builds next to a CPU benchmark.
fn assert_quick(started: Instant, what: &str) {
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{what} took {:?}",
        started.elapsed()
    );
}

#[test]
fn fixture_jwks_parses_with_kids_kinds_and_algs() {
    let set = parse(&testdata("jwks.json"), LIMIT).unwrap();
    assert_eq!(
        set.stats,
        ParseStats {
            accepted: 4,
            skipped: 0,
            duplicate_kids: 0,
            over_limit: 0
        }
    );
    let summary: Vec<_> = set
        .keys()
        .iter()
        .map(|k| (k.kid.as_deref().unwrap(), k.kind, k.alg))
        .collect();
    assert_eq!(
        summary,
        [
            ("rsa-1", KeyKind::Rsa, None),
            ("ec256-1", KeyKind::EcP256, Some(Algorithm::ES256)),
            ("ec384-1", KeyKind::EcP384, Some(Algorithm::ES384)),
            ("ed25519-1", KeyKind::Ed25519, Some(Algorithm::EdDSA)),
        ]
    );
    assert!(set.by_kid("ec384-1").is_some());
    assert!(set.by_kid("nope").is_none());
    for name in ["rsa", "ec256", "ec384", "ed25519"] {
        let one = parse(&testdata(&format!("{name}.jwks.json")), LIMIT).unwrap();
        assert_eq!(one.len(), 1, "{name}");
    }
    // The same bytes give the same fingerprint; other bytes another.
    assert_eq!(
        set.fingerprint,
        parse(&testdata("jwks.json"), LIMIT).unwrap().fingerprint
    );
    assert_ne!(
        set.fingerprint,
        parse(&testdata("rsa.jwks.json"), LIMIT)
            .unwrap()
            .fingerprint
    );
}

#[test]
fn key_kinds_fit_only_their_algorithms() {
    use Algorithm::*;
    let all = [
        HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ];
    let fits = |kind: KeyKind| {
        all.iter()
            .copied()
            .filter(|&a| kind.fits(a))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fits(KeyKind::Rsa),
        [RS256, RS384, RS512, PS256, PS384, PS512]
    );
    assert_eq!(fits(KeyKind::EcP256), [ES256]);
    assert_eq!(fits(KeyKind::EcP384), [ES384]);
    assert_eq!(fits(KeyKind::Ed25519), [EdDSA]);
    assert_eq!(fits(KeyKind::Hmac), [HS256, HS384, HS512]);
}

#[test]
fn unusable_keys_are_skipped_and_counted() {
    let keys = fixture_keys();
    let (rsa, ec, ed) = (&keys[0], &keys[1], &keys[3]);
    let with = |base: &Value, changes: Value| {
        let mut k = base.clone();
        for (name, v) in changes.as_object().unwrap() {
            if v.is_null() {
                k.as_object_mut().unwrap().remove(name);
            } else {
                k[name] = v.clone();
            }
        }
        k
    };
    let small_n = b64([0xc5u8; 128]); // 1024 bits
    let huge_n = b64([0xc5u8; 1024]); // 8192 bits
    let bad = [
        ("use enc", with(rsa, json!({"use": "enc", "kid": "a"}))),
        ("use not a string", with(rsa, json!({"use": 1, "kid": "b"}))),
        (
            "key_ops without verify",
            with(rsa, json!({"key_ops": ["encrypt"], "kid": "c"})),
        ),
        (
            "key_ops not an array",
            with(rsa, json!({"key_ops": "verify", "kid": "d"})),
        ),
        (
            "symmetric oct",
            json!({"kty": "oct", "k": b64([7u8; 32]), "kid": "e"}),
        ),
        ("unknown kty", json!({"kty": "XYZ", "kid": "f"})),
        ("kty missing", with(rsa, json!({"kty": null, "kid": "g"}))),
        (
            "kty not a string",
            with(rsa, json!({"kty": ["RSA"], "kid": "h"})),
        ),
        ("kid not a string", with(rsa, json!({"kid": 5}))),
        (
            "RSA n not base64url",
            with(rsa, json!({"n": "###", "kid": "i"})),
        ),
        ("RSA n a number", with(rsa, json!({"n": 12345, "kid": "j"}))),
        ("RSA e missing", with(rsa, json!({"e": null, "kid": "k"}))),
        (
            "RSA 1024 bits",
            with(rsa, json!({"n": small_n, "kid": "l"})),
        ),
        ("RSA 8192 bits", with(rsa, json!({"n": huge_n, "kid": "m"}))),
        (
            "RSA e of zeros",
            with(rsa, json!({"e": "AAAA", "kid": "n"})),
        ),
        ("RSA n of zeros", with(rsa, json!({"n": "AA", "kid": "n0"}))),
        ("RSA n empty", with(rsa, json!({"n": "", "kid": "n1"}))),
        (
            "EC curve P-521",
            with(ec, json!({"crv": "P-521", "alg": null, "kid": "o"})),
        ),
        (
            "EC secp256k1",
            with(ec, json!({"crv": "secp256k1", "alg": null, "kid": "p"})),
        ),
        (
            "EC x too short",
            with(ec, json!({"x": b64([1u8; 31]), "kid": "q"})),
        ),
        (
            "EC point off the curve",
            with(ec, json!({"y": b64([1u8; 32]), "kid": "r"})),
        ),
        ("EC y missing", with(ec, json!({"y": null, "kid": "s"}))),
        ("OKP Ed448", with(ed, json!({"crv": "Ed448", "kid": "t"}))),
        (
            "OKP X25519",
            with(ed, json!({"crv": "X25519", "alg": null, "kid": "u"})),
        ),
        (
            "Ed25519 x of 31 bytes",
            with(ed, json!({"x": b64([1u8; 31]), "kid": "v"})),
        ),
        ("Ed25519 x empty", with(ed, json!({"x": "", "kid": "w"}))),
        (
            "alg for another key type",
            with(rsa, json!({"alg": "ES256", "kid": "x"})),
        ),
        (
            "encryption alg",
            with(rsa, json!({"alg": "RSA-OAEP", "kid": "y"})),
        ),
        ("alg none", with(ec, json!({"alg": "none", "kid": "z"}))),
        (
            "HMAC alg on RSA",
            with(rsa, json!({"alg": "HS256", "kid": "za"})),
        ),
        (
            "alg not a string",
            with(ec, json!({"alg": 256, "kid": "zb"})),
        ),
        ("a string", json!("key")),
        ("a number", json!(42)),
        ("null", Value::Null),
        ("an array", json!([rsa])),
    ];
    for (what, key) in &bad {
        let err = parse(&doc(std::slice::from_ref(key)), LIMIT).unwrap_err();
        assert_eq!(
            err,
            JwksError::NoUsableKeys(ParseStats {
                accepted: 0,
                skipped: 1,
                duplicate_kids: 0,
                over_limit: 0
            }),
            "{what}"
        );
    }
    let mut all: Vec<Value> = bad.iter().map(|(_, k)| k.clone()).collect();
    all.push(ec.clone());
    let set = parse(&doc(&all), LIMIT).unwrap();
    assert_eq!(set.stats.accepted, 1);
    assert_eq!(set.stats.skipped, bad.len());
    assert_eq!(set.keys()[0].kid.as_deref(), Some("ec256-1"));
    // `use: sig`, verify in key_ops, extra members and leading zeros in n are fine.
    let mut padded_n = vec![0u8, 0];
    padded_n.extend(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            rsa["n"].as_str().unwrap(),
        )
        .unwrap(),
    );
    let fine = with(
        rsa,
        json!({"key_ops": ["verify"], "x5t": "abc", "n": b64(padded_n)}),
    );
    assert_eq!(parse(&doc(&[fine]), LIMIT).unwrap().stats.accepted, 1);
}

#[test]
fn duplicate_kids_keep_the_first() {
    let keys = fixture_keys();
    let mut impostor = keys[1].clone(); // the P-256 key under the RSA key's kid
    impostor["kid"] = json!("rsa-1");
    let mut no_kid_a = keys[2].clone();
    no_kid_a.as_object_mut().unwrap().remove("kid");
    let mut no_kid_b = keys[3].clone();
    no_kid_b.as_object_mut().unwrap().remove("kid");
    let set = parse(
        &doc(&[
            keys[0].clone(),
            impostor,
            keys[0].clone(),
            no_kid_a,
            no_kid_b,
        ]),
        LIMIT,
    )
    .unwrap();
    assert_eq!(
        set.stats,
        ParseStats {
            accepted: 3,
            skipped: 2,
            duplicate_kids: 2,
            over_limit: 0
        }
    );
    assert_eq!(set.by_kid("rsa-1").unwrap().kind, KeyKind::Rsa);
    assert_eq!(set.keys().iter().filter(|k| k.kid.is_none()).count(), 2);
}

#[test]
fn only_the_first_max_keys_are_looked_at() {
    let keys = fixture_keys();
    let mut many: Vec<Value> = (0..MAX_KEYS + 44)
        .map(|i| {
            let mut k = keys[3].clone();
            k["kid"] = json!(format!("k{i}"));
            k
        })
        .collect();
    many.push(keys[0].clone()); // past the limit: never seen
    let set = parse(&doc(&many), 4 * 1024 * 1024).unwrap();
    assert_eq!(
        set.stats,
        ParseStats {
            accepted: MAX_KEYS,
            skipped: 45,
            duplicate_kids: 0,
            over_limit: 45
        }
    );
    assert!(set.by_kid("rsa-1").is_none());
}

#[test]
fn documents_that_are_not_a_jwks() {
    for (what, text) in [
        ("empty", ""),
        ("not JSON", "<html>"),
        ("truncated", r#"{"keys":[{"kty":"RSA""#),
        ("array", "[]"),
        ("keys missing", r#"{"key":[]}"#),
        ("keys an object", r#"{"keys":{}}"#),
        ("keys a string", r#"{"keys":"x"}"#),
        ("keys null", r#"{"keys":null}"#),
        ("trailing garbage", r#"{"keys":[]} x"#),
    ] {
        let err = parse(text.as_bytes(), LIMIT).unwrap_err();
        assert!(matches!(err, JwksError::Invalid(_)), "{what}: {err:?}");
    }
    assert_eq!(
        parse(br#"{"keys":[]}"#, LIMIT).unwrap_err(),
        JwksError::NoUsableKeys(ParseStats::default())
    );
    // Other members are ignored.
    let keys = fixture_keys();
    let text = json!({"issuer": "x", "keys": [keys[0]], "extra": {"deep": [1, 2]}}).to_string();
    assert_eq!(parse(text.as_bytes(), LIMIT).unwrap().len(), 1);
}

#[test]
fn oversized_document_is_refused_without_parsing() {
    let big = vec![b' '; 10 * 1024 * 1024];
    let started = Instant::now();
    assert_eq!(
        parse(&big, LIMIT).unwrap_err(),
        JwksError::TooLarge {
            size: big.len(),
            limit: LIMIT
        }
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(parse(&big, LIMIT)
        .unwrap_err()
        .to_string()
        .contains("over the limit"));
}

#[test]
fn ten_megabytes_of_junk_keys_parse_in_bounded_time() {
    // 100k keys of every wrong shape inside a 10 MB document.
    let mut text = String::from(r#"{"keys":["#);
    let shapes = [
        r#"{"kty":"RSA","n":1,"e":[]}"#,
        r#"{"kty":"EC","crv":"P-256","x":"AAAA","y":{"a":[1,2,3]}}"#,
        r#""string""#,
        r#"[[[1]]]"#,
        r#"{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
    ];
    let mut n = 0;
    while text.len() < 10 * 1024 * 1024 - 100 {
        if n > 0 {
            text.push(',');
        }
        text.push_str(shapes[n % shapes.len()]);
        n += 1;
    }
    text.push_str("]}");
    assert!(n > 100_000, "{n} keys");
    let started = Instant::now();
    let err = parse(text.as_bytes(), 16 * 1024 * 1024).unwrap_err();
    assert_quick(started, "10 MB JWKS");
    let JwksError::NoUsableKeys(stats) = err else {
        panic!("{err:?}")
    };
    assert_eq!(stats.skipped, n);
    assert_eq!(stats.over_limit, n - MAX_KEYS);
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let nested = |open: &str, close: &str| format!("{}{}", open.repeat(depth), close.repeat(depth));
    let valid = fixture_keys()[0].to_string();
    let timed = |text: String| {
        let started = Instant::now();
        let result = parse(text.as_bytes(), 16 * 1024 * 1024);
        assert_quick(started, "nested JSON");
        result
    };
    // Parsed parts hit serde_json's recursion limit.
    for text in [
        format!(r#"{{"keys":[{}]}}"#, nested("[", "]")),
        format!(r#"{{"keys":[{}]}}"#, nested(r#"{"a":"#, "}")),
        format!(
            r#"{{"keys":[{valid},{{"kty":"RSA","n":{}}}]}}"#,
            nested("[", "]")
        ),
        nested("[", "]"),
    ] {
        assert!(matches!(timed(text), Err(JwksError::Invalid(_))));
    }
    // Skipped parts (unknown members, keys past the limit) are skipped
    // iteratively: no recursion, and the rest of the document still counts.
    let set = timed(format!(r#"{{"x":{},"keys":[{valid}]}}"#, nested("[", "]"))).unwrap();
    assert_eq!(set.len(), 1);
    let set = timed(format!(
        r#"{{"keys":[{}{}]}}"#,
        format!("{valid},").repeat(MAX_KEYS),
        nested("[", "]")
    ))
    .unwrap();
    assert_eq!(set.stats.over_limit, 1);
}

#[test]
fn inline_documents_use_the_same_rules() {
    let keys = fixture_keys();
    let value = json!({"keys": [keys[0], {"kty": "oct", "k": "AAAA"}, keys[0]]});
    let set = parse_value(&value).unwrap();
    assert_eq!(
        set.stats,
        ParseStats {
            accepted: 1,
            skipped: 2,
            duplicate_kids: 1,
            over_limit: 0
        }
    );
    assert!(matches!(
        parse_value(&json!({"keys": 1})),
        Err(JwksError::Invalid(_))
    ));
    assert!(matches!(
        parse_value(&json!([])),
        Err(JwksError::Invalid(_))
    ));
    let many: Vec<Value> = (0..MAX_KEYS + 3).map(|_| json!({"kty": "none"})).collect();
    let err = parse_value(&json!({"keys": many})).unwrap_err();
    assert_eq!(
        err,
        JwksError::NoUsableKeys(ParseStats {
            accepted: 0,
            skipped: MAX_KEYS + 3,
            duplicate_kids: 0,
            over_limit: 3
        })
    );
}

#[test]
fn secret_key_set() {
    let set = KeySet::from_secret(b"0123456789abcdef0123456789abcdef");
    assert_eq!(set.len(), 1);
    assert_eq!(set.keys()[0].kind, KeyKind::Hmac);
    assert!(set.keys()[0].accepts(Algorithm::HS512));
    assert!(!set.keys()[0].accepts(Algorithm::RS256));
    assert!(!format!("{:?}", set).contains("0123456789"));
}
