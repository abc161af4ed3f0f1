//! Fixtures, token signing and configuration helpers shared by the tests.

use crate::config::{Compiled, Config};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use pwf_shared::{ConfigError, HeaderList};
use serde_json::{json, Value};

/// The fixed "current time" of every test.
pub const NOW: u64 = 1_700_000_000;
pub const ISS: &str = "https://idp.example.com";

pub fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn testdata_str(name: &str) -> String {
    String::from_utf8(testdata(name)).unwrap()
}

pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
pub const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// The private key and kid in `testdata/` for `alg`.
pub fn signing_key(alg: Algorithm) -> (EncodingKey, Option<&'static str>) {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => (
            EncodingKey::from_rsa_pem(&testdata("rsa.pem")).unwrap(),
            Some("rsa-1"),
        ),
        ES256 => (
            EncodingKey::from_ec_pem(&testdata("ec256.pem")).unwrap(),
            Some("ec256-1"),
        ),
        ES384 => (
            EncodingKey::from_ec_pem(&testdata("ec384.pem")).unwrap(),
            Some("ec384-1"),
        ),
        EdDSA => (
            EncodingKey::from_ed_pem(&testdata("ed25519.pem")).unwrap(),
            Some("ed25519-1"),
        ),
        HS256 | HS384 | HS512 => (EncodingKey::from_secret(&testdata("hs.secret")), None),
        other => panic!("no test key for {other:?}"),
    }
}

/// Claims that pass the default test provider at [`NOW`].
pub fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": "api",
        "sub": "alice",
        "iat": NOW - 10,
        "exp": NOW + 600,
    })
}

/// `claims()` with `changes` merged in (a `null` removes a claim).
pub fn claims_with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A token signed with the test key for `alg`, with its kid.
pub fn sign(alg: Algorithm, claims: &Value) -> String {
    let (key, kid) = signing_key(alg);
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &key).unwrap()
}

pub fn sign_with(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    encode(header, claims, key).unwrap()
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token from raw JSON header and payload text and a raw signature segment.
pub fn forge(header: &str, payload: &str, signature: &str) -> String {
    format!("{}.{}.{signature}", b64(header), b64(payload))
}

/// A provider using every public key in `testdata/jwks.json` inline; `extra`
/// is appended to its JSON object (start it with a comma).
pub fn jwks_provider(name: &str, extra: &str) -> String {
    format!(
        r#"{{"name":"{name}","issuer":"{ISS}","audiences":["api"],"jwks":{{"inline":{}}}{extra}}}"#,
        testdata_str("jwks.json").trim()
    )
}

/// A provider using `testdata/hs.secret`.
pub fn secret_provider(name: &str, extra: &str) -> String {
    format!(
        r#"{{"name":"{name}","issuer":"{ISS}","audiences":["api"],"secret":{{"inline":"{}"}}{extra}}}"#,
        testdata_str("hs.secret")
    )
}

pub fn env(name: &str) -> Option<String> {
    match name {
        "JWT_SECRET" => Some(testdata_str("hs.secret")),
        "SHORT_SECRET" => Some("too-short".into()),
        _ => None,
    }
}

pub fn try_compile(json: &str) -> Result<Compiled, ConfigError> {
    Config::load(Some(json.as_bytes()), &env)
}

pub fn compile(json: &str) -> Compiled {
    try_compile(json).unwrap_or_else(|e| panic!("config rejected: {e}"))
}

/// A configuration with one inline-JWKS provider "idp" and no rules.
pub fn one_provider(extra: &str) -> Compiled {
    compile(&format!(
        r#"{{"providers":[{}]}}"#,
        jwks_provider("idp", extra)
    ))
}

pub fn request(extra: &[(&str, &str)]) -> HeaderList {
    let mut pairs = vec![
        (":method", "GET"),
        (":path", "/api/items"),
        (":authority", "api.example.com"),
        (":scheme", "https"),
    ];
    pairs.extend_from_slice(extra);
    HeaderList::from_pairs(pairs)
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn get(h: &HeaderList, name: &str) -> Option<String> {
    h.get(name).map(|v| String::from_utf8_lossy(v).into_owned())
}
