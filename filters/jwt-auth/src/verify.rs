//! Verifying one token against one provider: format, header, key selection,
//! signature (through jsonwebtoken and whichever crypto provider is installed),
//! then the registered and required claims.

use crate::config::Provider;
use crate::jwks::{Key, KeySet};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;

/// Why a request was denied. Each has a stable code for bodies and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Missing,
    Malformed,
    InvalidSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    UnknownKid,
    AlgorithmNotAllowed,
    UnsupportedCrit,
    TokenTooLarge,
    LifetimeTooLong,
    ClaimMismatch,
    JwksUnavailable,
}

impl Reason {
    pub const ALL: [Reason; 14] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::InvalidSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::UnknownKid,
        Reason::AlgorithmNotAllowed,
        Reason::UnsupportedCrit,
        Reason::TokenTooLarge,
        Reason::LifetimeTooLong,
        Reason::ClaimMismatch,
        Reason::JwksUnavailable,
    ];

    /// The snake_case code used in JSON bodies and metric names.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::InvalidSignature => "invalid_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::UnknownKid => "unknown_kid",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::UnsupportedCrit => "unsupported_crit",
            Reason::TokenTooLarge => "token_too_large",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::ClaimMismatch => "claim_mismatch",
            Reason::JwksUnavailable => "jwks_unavailable",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            Reason::ClaimMismatch => 403,
            _ => 401,
        }
    }
}

/// A denial: the reason, the provider it concerns (if one), and a short human
/// message. Messages name claims and checks, never token or claim values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    pub provider: Option<usize>,
    message: Cow<'static, str>,
    /// The token's signature verified with the provider's keys: the
    /// failure is about this provider's own token.
    signed: bool,
}

impl Denial {
    pub fn new(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason,
            provider: None,
            message: message.into(),
            signed: false,
        }
    }

    /// Marks a failure found after the signature verified.
    pub fn signed(mut self) -> Self {
        self.signed = true;
        self
    }

    /// How well this failure explains a denial among several providers':
    /// a provider whose keys verified the token and whose issuer matched
    /// it (an expired token, a wrong audience) explains best, then one
    /// whose keys verified it, then the others.
    pub fn relevance(&self) -> u8 {
        match (self.signed, self.reason) {
            (true, Reason::WrongIssuer) => 1,
            (true, _) => 2,
            (false, _) => 0,
        }
    }

    pub fn missing() -> Self {
        Self::new(Reason::Missing, "token is missing")
    }

    pub fn for_provider(mut self, provider: usize) -> Self {
        self.provider = Some(provider);
        self
    }

    pub fn status(&self) -> u32 {
        self.reason.status()
    }

    pub fn code(&self) -> &'static str {
        self.reason.code()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The RFC 6750 `WWW-Authenticate` value. A missing token gets no error
    /// code (§3.1); `realm` is escaped as a quoted-string.
    pub fn www_authenticate(&self, realm: &str) -> String {
        let realm = quoted(realm);
        let error = match self.reason {
            Reason::Missing => return format!("Bearer realm=\"{realm}\""),
            Reason::ClaimMismatch => "insufficient_scope",
            _ => "invalid_token",
        };
        format!(
            "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
            quoted(&self.message)
        )
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.message)
    }
}

/// Quoted-string content: backslash and double quote escaped, control characters dropped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub provider: usize,
    /// The payload, always a JSON object.
    pub payload: Rc<Value>,
    /// The payload segment as sent (base64url), for `payload_header`.
    pub payload_segment: Rc<str>,
    /// The payload as compact JSON, for the claims filter state: set by
    /// [`crate::rules`] when that is on, and kept in the cache with the rest,
    /// so a cache hit does not serialize the payload again.
    pub payload_json: Option<Rc<str>>,
    pub exp: Option<i64>,
    /// Index of the provider's `from` entry the token was read from; set when
    /// the token came from a request (see [`crate::rules`]), `None` from [`verify`].
    pub source: Option<usize>,
}

/// A claim name, possibly a dotted path into nested objects (`realm.roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    name: String,
    segments: Vec<String>,
}

impl ClaimPath {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            segments: name.split('.').map(str::to_string).collect(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The claim's value. A top-level claim whose name contains dots (such as
    /// `https://example.com/roles`) wins over the nested path.
    pub fn lookup<'a>(&self, payload: &'a Value) -> Option<&'a Value> {
        if let Some(v) = payload.get(&self.name) {
            return Some(v);
        }
        self.segments
            .iter()
            .try_fold(payload, |cur, segment| cur.get(segment))
    }
}

/// One `required_claims` entry: the claim must have (or, for arrays, contain)
/// one of `accepted`. Booleans compare by their JSON text, numbers by value
/// where `accepted` holds a plain decimal (`1.0` is `"1"`, see `same_number`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    pub claim: ClaimPath,
    pub accepted: Vec<String>,
    /// Split string values on spaces first, as OAuth `scope` is.
    pub space_delimited: bool,
}

impl ClaimRule {
    pub fn matches(&self, payload: &Value) -> bool {
        match self.claim.lookup(payload) {
            Some(Value::Array(items)) => items.iter().any(|v| self.scalar_matches(v)),
            Some(v) => self.scalar_matches(v),
            None => false,
        }
    }

    fn scalar_matches(&self, v: &Value) -> bool {
        let accepted = |s: &str| self.accepted.iter().any(|a| a == s);
        match v {
            Value::String(s) if self.space_delimited => s.split(' ').any(accepted),
            Value::String(s) => accepted(s),
            Value::Number(n) => {
                accepted(&n.to_string()) || self.accepted.iter().any(|a| same_number(n, a))
            }
            Value::Bool(b) => accepted(if *b { "true" } else { "false" }),
            _ => false,
        }
    }
}

/// Whether `text` is the number `n` (`3` and `3.0`). `text` must be a
/// plain decimal (`-`, digits, an optional fraction; no `+`, no exponent).
/// An integer compares exactly with an integer claim, whatever its size;
/// otherwise both compare as doubles, and only when `text` has at most 15
/// significant digits, so that distinct decimals are distinct doubles
/// (`3.0000000000000001` is not `3`).
fn same_number(n: &serde_json::Number, text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) if !frac.is_empty() => (int, frac),
        Some(_) => return false,
        None => (unsigned, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) {
        return false;
    }
    if frac.is_empty() {
        if let (Ok(wanted), Some(claim)) = (
            text.parse::<i128>(),
            n.as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from)),
        ) {
            return wanted == claim;
        }
    }
    let significant = match int.trim_start_matches('0') {
        "" => frac.trim_start_matches('0').len(),
        int => int.len() + frac.len(),
    };
    match (n.as_f64(), text.parse::<f64>()) {
        (Some(claim), Ok(wanted)) if significant <= 15 => claim == wanted,
        _ => false,
    }
}

fn b64(segment: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// Keys a token without a usable `kid` is checked against, at most (the
/// first ones of the JWKS that fit its algorithm).
pub const MAX_KEYS_TRIED: usize = 8;

/// Verifies `token` for `provider` with `keys` at unix time `now`.
pub fn verify(
    token: &[u8],
    provider: &Provider,
    keys: &KeySet,
    now: u64,
) -> Result<Verified, Denial> {
    let deny = |reason: Reason, message: &'static str| {
        Denial::new(reason, message).for_provider(provider.index)
    };
    let malformed = |message: &'static str| deny(Reason::Malformed, message);

    if token.len() > provider.max_token_bytes {
        return Err(deny(Reason::TokenTooLarge, "token exceeds the size limit"));
    }
    let mut parts = token.split(|&b| b == b'.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("token is not three dot-separated segments"));
    };
    let header = b64(h).ok_or_else(|| malformed("header is not base64url"))?;
    let payload = b64(p).ok_or_else(|| malformed("payload is not base64url"))?;
    if b64(s).is_none() {
        return Err(malformed("signature is not base64url"));
    }
    let header = json_object(&header).ok_or_else(|| malformed("header is not a JSON object"))?;

    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| Algorithm::from_str(a).ok())
        .filter(|a| provider.algorithms.contains(a))
        .ok_or_else(|| deny(Reason::AlgorithmNotAllowed, "algorithm is not allowed"))?;
    if header.contains_key("crit") {
        return Err(deny(
            Reason::UnsupportedCrit,
            "critical header parameters are not supported",
        ));
    }

    let candidates: Vec<&Key> = match header.get("kid") {
        // Bounded: each try is a signature check, and a JWKS may hold
        // hundreds of keys, so a forged token must not cost that many.
        None => keys
            .keys()
            .iter()
            .filter(|k| k.accepts(alg))
            .take(MAX_KEYS_TRIED)
            .collect(),
        // The key with that kid; without one, keys that have no kid (an
        // inline secret, a JWKS entry without `kid`), as jwt_authn does.
        Some(Value::String(kid)) => match keys.by_kid(kid) {
            Some(key) => Some(key).filter(|k| k.accepts(alg)).into_iter().collect(),
            None => keys
                .keys()
                .iter()
                .filter(|k| k.kid.is_none() && k.accepts(alg))
                .take(MAX_KEYS_TRIED)
                .collect(),
        },
        Some(_) => return Err(malformed("kid is not a string")),
    };
    if candidates.is_empty() {
        return Err(deny(
            Reason::UnknownKid,
            "no key matches the token's key id and algorithm",
        ));
    }
    let signing_input = token.get(..h.len() + 1 + p.len()).unwrap_or_default();
    let signature = std::str::from_utf8(s).unwrap_or_default();
    let valid = candidates.iter().any(|key| {
        jsonwebtoken::crypto::verify(signature, signing_input, &key.decoding, alg).unwrap_or(false)
    });
    if !valid {
        return Err(deny(
            Reason::InvalidSignature,
            "signature verification failed",
        ));
    }

    let claims =
        json_object(&payload).ok_or_else(|| malformed("payload is not a JSON object").signed())?;
    let payload = Value::Object(claims);
    check_claims(&payload, provider, now).map_err(Denial::signed)?;
    let exp = numeric(&payload, "exp").ok().flatten();
    Ok(Verified {
        provider: provider.index,
        payload: Rc::new(payload),
        // The segment is base64url, hence ASCII.
        payload_segment: Rc::from(std::str::from_utf8(p).unwrap_or_default()),
        payload_json: None,
        exp,
        source: None,
    })
}

fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// A NumericDate claim: absent, a number (fractions truncated), or an error.
fn numeric(claims: &Value, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            // `as` saturates, which is what an absurd date deserves.
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))),
        Some(_) => Err(()),
    }
}

fn check_claims(claims: &Value, provider: &Provider, now: u64) -> Result<(), Denial> {
    let deny = |reason: Reason, message: Cow<'static, str>| {
        Denial::new(reason, message).for_provider(provider.index)
    };
    let malformed = |name: &str| {
        deny(
            Reason::Malformed,
            format!("claim '{name}' is not a number").into(),
        )
    };

    if claims.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
        return Err(deny(Reason::WrongIssuer, "issuer is not accepted".into()));
    }
    if !provider.audiences.is_empty() {
        let accepted = |v: &Value| {
            v.as_str()
                .is_some_and(|a| provider.audiences.iter().any(|x| x == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(auds)) => auds.iter().any(accepted),
            Some(aud) => accepted(aud),
            None => false,
        };
        if !ok {
            return Err(deny(
                Reason::WrongAudience,
                "audience is not accepted".into(),
            ));
        }
    }

    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let skew = i64::try_from(provider.clock_skew_s).unwrap_or(i64::MAX);
    let exp = numeric(claims, "exp").map_err(|()| malformed("exp"))?;
    let nbf = numeric(claims, "nbf").map_err(|()| malformed("nbf"))?;
    let iat = numeric(claims, "iat").map_err(|()| malformed("iat"))?;
    match exp {
        None if provider.require_exp => {
            return Err(deny(Reason::Malformed, "claim 'exp' is missing".into()));
        }
        Some(exp) if now > exp.saturating_add(skew) => {
            return Err(deny(Reason::Expired, "token has expired".into()));
        }
        _ => {}
    }
    if nbf.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(deny(Reason::NotYetValid, "token is not yet valid".into()));
    }
    if let Some(max) = provider.max_lifetime_s {
        let lifetime = match (exp, iat) {
            (Some(exp), Some(iat)) => exp.saturating_sub(iat),
            (Some(exp), None) => exp.saturating_sub(now),
            (None, _) => i64::MAX,
        };
        if lifetime > i64::try_from(max).unwrap_or(i64::MAX) {
            return Err(deny(
                Reason::LifetimeTooLong,
                "token lifetime exceeds the limit".into(),
            ));
        }
    }
    if let Some(rule) = provider.required_claims.iter().find(|r| !r.matches(claims)) {
        return Err(deny(
            Reason::ClaimMismatch,
            format!(
                "claim '{}' does not match the requirement",
                rule.claim.name()
            )
            .into(),
        ));
    }
    Ok(())
}
