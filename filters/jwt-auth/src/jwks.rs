//! JWKS documents parsed into the verification keys of one provider.
//!
//! Parsing is defensive: the document comes from the network. Its size is
//! bounded, at most [`MAX_KEYS`] keys are looked at (the rest are skipped
//! without being materialized), serde_json's recursion limit stops deeply
//! nested input, and every key that is not a usable signature key (`use: enc`,
//! symmetric `oct`, unknown type or curve, wrong value types, wrong sizes) is
//! skipped and counted rather than failing the whole document.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Keys beyond this many are skipped: real IdPs publish a handful.
pub const MAX_KEYS: usize = 256;
/// Accepted RSA modulus sizes, in bits.
pub const RSA_MIN_BITS: usize = 2048;
pub const RSA_MAX_BITS: usize = 4096;

/// What kind of public (or secret) key, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    Hmac,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg` (the type/curve check of RFC 7518).
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

/// One verification key.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's own `alg`, if it names one; a token must then use exactly it.
    pub alg: Option<Algorithm>,
    pub kind: KeyKind,
    pub decoding: DecodingKey,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// How a document's keys were handled, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseStats {
    pub accepted: usize,
    /// Every key not accepted, including the two kinds below.
    pub skipped: usize,
    /// Keys whose `kid` repeats an earlier accepted key's (the first one wins).
    pub duplicate_kids: usize,
    /// Keys past [`MAX_KEYS`], never parsed.
    pub over_limit: usize,
}

/// The usable keys of one provider.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    pub stats: ParseStats,
    /// Identifies the document the keys came from, so cached verifications
    /// made with other keys are not reused after a rotation.
    pub fingerprint: u64,
}

impl KeySet {
    /// The key set of a shared-secret provider: one HMAC key, no kid.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            keys: vec![Key {
                kid: None,
                alg: None,
                kind: KeyKind::Hmac,
                decoding: DecodingKey::from_secret(secret),
            }],
            stats: ParseStats {
                accepted: 1,
                ..ParseStats::default()
            },
            fingerprint: fingerprint(secret),
        }
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key called `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Why a JWKS document was rejected as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    TooLarge {
        size: usize,
        limit: usize,
    },
    /// Not JSON, or not an object with a `keys` array. Carries serde_json's
    /// message, which names a position, not the content.
    Invalid(String),
    /// The document is well-formed but none of its keys can verify signatures.
    NoUsableKeys(ParseStats),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge { size, limit } => {
                write!(f, "JWKS is {size} bytes, over the limit of {limit}")
            }
            JwksError::Invalid(msg) => write!(f, "JWKS is not valid: {msg}"),
            JwksError::NoUsableKeys(s) => write!(
                f,
                "JWKS has no usable signature key ({} skipped, {} over the limit of {MAX_KEYS})",
                s.skipped, s.over_limit
            ),
        }
    }
}

impl std::error::Error for JwksError {}

/// Parses a fetched JWKS document of at most `max_bytes`.
pub fn parse(doc: &[u8], max_bytes: usize) -> Result<KeySet, JwksError> {
    if doc.len() > max_bytes {
        return Err(JwksError::TooLarge {
            size: doc.len(),
            limit: max_bytes,
        });
    }
    let parsed: Document = serde_json::from_slice(doc).map_err(|e| {
        let msg = match e.classify() {
            serde_json::error::Category::Data => {
                format!(
                    "expected an object with a 'keys' array (line {} column {})",
                    e.line(),
                    e.column()
                )
            }
            _ => e.to_string(),
        };
        JwksError::Invalid(msg)
    })?;
    build(parsed.keys, fingerprint(doc))
}

/// Parses a JWKS given inline in the configuration.
pub fn parse_value(doc: &Value) -> Result<KeySet, JwksError> {
    let keys = match doc.get("keys") {
        Some(Value::Array(keys)) => keys,
        _ => {
            return Err(JwksError::Invalid(
                "expected an object with a 'keys' array".into(),
            ))
        }
    };
    let limited = Limited {
        keys: keys.iter().take(MAX_KEYS).cloned().collect(),
        over_limit: keys.len().saturating_sub(MAX_KEYS),
    };
    build(limited, fingerprint(doc.to_string().as_bytes()))
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(first)
}

fn build(limited: Limited, fingerprint: u64) -> Result<KeySet, JwksError> {
    let mut stats = ParseStats {
        over_limit: limited.over_limit,
        skipped: limited.over_limit,
        ..ParseStats::default()
    };
    let mut keys: Vec<Key> = Vec::with_capacity(limited.keys.len());
    for value in &limited.keys {
        match parse_key(value) {
            Some(key) => {
                let duplicate = key
                    .kid
                    .as_deref()
                    .is_some_and(|kid| keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
                if duplicate {
                    stats.duplicate_kids += 1;
                    stats.skipped += 1;
                } else {
                    keys.push(key);
                }
            }
            None => stats.skipped += 1,
        }
    }
    stats.accepted = keys.len();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys(stats));
    }
    Ok(KeySet {
        keys,
        stats,
        fingerprint,
    })
}

/// One JWK, or `None` if it is not a usable signature verification key.
fn parse_key(value: &Value) -> Option<Key> {
    let obj = value.as_object()?;
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return None,
    };
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return None,
    }
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return None;
        }
    }
    let (kind, decoding) = match str_field(obj, "kty")? {
        "RSA" => rsa_key(obj)?,
        "EC" => ec_key(obj)?,
        "OKP" => okp_key(obj)?,
        // Symmetric keys are never taken from a JWKS: that is how HMAC/RSA
        // algorithm confusion starts.
        _ => return None,
    };
    let alg = match obj.get("alg") {
        None => None,
        Some(Value::String(a)) => {
            let alg = Algorithm::from_str(a).ok()?;
            if !kind.fits(alg) {
                return None;
            }
            Some(alg)
        }
        Some(_) => return None,
    };
    Some(Key {
        kid,
        alg,
        kind,
        decoding,
    })
}

fn str_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name)?.as_str()
}

fn b64_field(obj: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(str_field(obj, name)?).ok()
}

fn rsa_key(obj: &Map<String, Value>) -> Option<(KeyKind, DecodingKey)> {
    let n = b64_field(obj, "n")?;
    let e = b64_field(obj, "e")?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = (n.len() * 8).saturating_sub(n.first().map_or(8, |b| b.leading_zeros() as usize));
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) || e.is_empty() || e.len() > 8 {
        return None;
    }
    Some((KeyKind::Rsa, DecodingKey::from_rsa_raw_components(n, e)))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

fn ec_key(obj: &Map<String, Value>) -> Option<(KeyKind, DecodingKey)> {
    let (kind, size) = match str_field(obj, "crv")? {
        "P-256" => (KeyKind::EcP256, 32),
        "P-384" => (KeyKind::EcP384, 48),
        _ => return None,
    };
    let x = b64_field(obj, "x")?;
    let y = b64_field(obj, "y")?;
    if x.len() != size || y.len() != size {
        return None;
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let on_curve = match kind {
        KeyKind::EcP256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
        _ => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
    };
    if !on_curve {
        return None;
    }
    Some((kind, DecodingKey::from_ec_der(&point)))
}

fn okp_key(obj: &Map<String, Value>) -> Option<(KeyKind, DecodingKey)> {
    if str_field(obj, "crv")? != "Ed25519" {
        return None;
    }
    let x = b64_field(obj, "x")?;
    // jsonwebtoken's Ed25519 verifier slices the first 32 bytes: anything
    // shorter must never reach it.
    if x.len() != 32 {
        return None;
    }
    Some((KeyKind::Ed25519, DecodingKey::from_ed_der(&x)))
}

/// The top-level document: only `keys` is read, other members are ignored.
#[derive(Deserialize)]
struct Document {
    keys: Limited,
}

/// The first [`MAX_KEYS`] elements of `keys`; later ones are skipped unparsed.
struct Limited {
    keys: Vec<Value>,
    over_limit: usize,
}

impl<'de> Deserialize<'de> for Limited {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Limited;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of keys")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Limited, A::Error> {
                let mut keys = Vec::new();
                let mut over_limit = 0usize;
                loop {
                    if keys.len() < MAX_KEYS {
                        match seq.next_element::<Value>()? {
                            Some(v) => keys.push(v),
                            None => break,
                        }
                    } else {
                        match seq.next_element::<IgnoredAny>()? {
                            Some(_) => over_limit += 1,
                            None => break,
                        }
                    }
                }
                Ok(Limited { keys, over_limit })
            }
        }
        de.deserialize_seq(V)
    }
}
