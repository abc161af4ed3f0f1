//! Tokens signed with the fixture keys in `filters/jwt-auth/testdata/`
//! (regenerate them with its `generate.sh`).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::repo_root;

/// Issuer of the fixture provider in `envoy-configs/jwt-auth.yaml` and the demo.
pub const DEMO_ISSUER: &str = "https://demo.proxy-wasm-filters.local";

/// A fixture signing key, with the `kid` its JWKS publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKey {
    Rsa,
    Ec256,
    Ec384,
    Ed25519,
    /// The shared secret in `hs.secret`.
    Hmac,
}

impl TestKey {
    pub fn kid(self) -> Option<&'static str> {
        match self {
            TestKey::Rsa => Some("rsa-1"),
            TestKey::Ec256 => Some("ec256-1"),
            TestKey::Ec384 => Some("ec384-1"),
            TestKey::Ed25519 => Some("ed25519-1"),
            TestKey::Hmac => None,
        }
    }

    fn file(self) -> &'static str {
        match self {
            TestKey::Rsa => "rsa.pem",
            TestKey::Ec256 => "ec256.pem",
            TestKey::Ec384 => "ec384.pem",
            TestKey::Ed25519 => "ed25519.pem",
            TestKey::Hmac => "hs.secret",
        }
    }

    /// The encoding key for `alg` (RSA serves RS* and PS*).
    pub fn encoding_key(self) -> EncodingKey {
        let bytes = std::fs::read(testdata(self.file())).expect("fixture key");
        match self {
            TestKey::Rsa => EncodingKey::from_rsa_pem(&bytes),
            TestKey::Ec256 | TestKey::Ec384 => EncodingKey::from_ec_pem(&bytes),
            TestKey::Ed25519 => EncodingKey::from_ed_pem(&bytes),
            TestKey::Hmac => Ok(EncodingKey::from_secret(
                String::from_utf8(bytes).unwrap().trim().as_bytes(),
            )),
        }
        .expect("fixture key parses")
    }
}

/// Path of a fixture in `filters/jwt-auth/testdata/`.
pub fn testdata(name: &str) -> std::path::PathBuf {
    repo_root().join("filters/jwt-auth/testdata").join(name)
}

/// The fixture JWKS with every public key, as a JSON value.
pub fn fixture_jwks() -> Value {
    serde_json::from_slice(&std::fs::read(testdata("jwks.json")).unwrap()).unwrap()
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs `claims` with `key` and `alg`, with the key's `kid`.
pub fn sign(key: TestKey, alg: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = key.kid().map(str::to_string);
    encode(&header, claims, &key.encoding_key()).expect("sign")
}

/// Demo claims: issuer [`DEMO_ISSUER`], audience `api`, valid for an hour, plus `extra`.
pub fn demo_claims(sub: &str, extra: Value) -> Value {
    let now = unix_now();
    let mut claims = json!({
        "iss": DEMO_ISSUER, "aud": "api", "sub": sub, "iat": now, "exp": now + 3600,
    });
    if let (Some(c), Value::Object(e)) = (claims.as_object_mut(), extra) {
        c.extend(e);
    }
    claims
}

/// An RS256 token for the demo provider.
pub fn demo_token(sub: &str, extra: Value) -> String {
    sign(TestKey::Rsa, Algorithm::RS256, &demo_claims(sub, extra))
}
