//! RSA and ECDSA signature verification in Envoy (BoringSSL), for `jsonwebtoken`.
//!
//! Pure-Rust RS256 verification inside V8 costs about 2 ms per token; Envoy's
//! `verify_signature` foreign function does it natively in tens of µs. This
//! module is a `jsonwebtoken` [`CryptoProvider`] whose verifiers call that
//! foreign function, so every `jsonwebtoken::decode` / `crypto::verify` in the
//! filter goes native once [`install`] has run.
//!
//! | JWS `alg` | where it is verified |
//! |---|---|
//! | RS256, RS384, RS512 | Envoy (`EVP_DigestVerify`, PKCS#1 v1.5 is BoringSSL's default RSA padding) |
//! | ES256, ES384 | Envoy; the JWS `r‖s` signature is re-encoded as the DER `ECDSA-Sig-Value` BoringSSL expects |
//! | PS256, PS384, PS512 | Wasm (`rust_crypto`): the foreign function has no way to select PSS padding |
//! | EdDSA | Wasm (`rust_crypto`): BoringSSL refuses `EVP_DigestVerifyInit` with a digest for Ed25519 |
//! | HS256, HS384, HS512 | Wasm (`rust_crypto`): HMAC is cheap; never counted as a fallback |
//!
//! The foreign function takes a serialized `VerifySignatureArguments` and
//! answers a `VerifySignatureResult` (Envoy's
//! `source/extensions/common/wasm/ext/verify_signature.proto`). Envoy parses the
//! key as a DER `SubjectPublicKeyInfo` on every call, so the JWK → SPKI DER
//! conversion is done once per key and kept in a small per-VM cache.
//!
//! A verification that Envoy answers (`result` true or false) is final. A
//! host-level failure (unknown function, key refused, unreadable answer) is
//! counted in [`Stats::native_errors`] and that verification is redone with
//! `rust_crypto`, so a host problem costs time, never a wrong answer.
//!
//! State (backend choice, counters, cache) is per thread, which in a proxy-wasm
//! module means per VM; [`install`] runs in every VM's `on_configure`.

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::Result as JwtResult;
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use p256::pkcs8::EncodePublicKey;
use prost::Message;
use rsa::pkcs1::DecodeRsaPublicKey;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::OnceLock;

/// Name of Envoy's foreign function.
pub const FOREIGN_FUNCTION: &str = "verify_signature";

/// Most SPKI DER conversions kept per VM (one per JWKS key in practice).
pub const KEY_CACHE_CAPACITY: usize = 64;

/// Where RSA and ECDSA signatures are verified in this VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In Envoy, through the `verify_signature` foreign function.
    Native,
    /// In Wasm, with `jsonwebtoken`'s `rust_crypto` provider.
    RustCrypto,
}

/// Counters of this VM since it started; export them as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Verifications Envoy answered (valid or invalid).
    pub native_verifications: u64,
    /// RSA/EC/EdDSA verifications done in Wasm: algorithms Envoy cannot do
    /// (PS*, EdDSA), native backend off, key not convertible, or after a
    /// native error. HMAC verifications are not counted.
    pub fallback_verifications: u64,
    /// Host-level failures of the foreign function (each one also counts as a
    /// fallback verification).
    pub native_errors: u64,
    /// JWK → SPKI DER conversions (key cache misses).
    pub key_conversions: u64,
}

/// `envoy.source.extensions.common.wasm.VerifySignatureArguments`.
#[derive(Clone, PartialEq, Message)]
struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    hash_function: String,
    /// DER `SubjectPublicKeyInfo`; exclusive with `public_key_pem`.
    #[prost(bytes = "vec", tag = "2")]
    public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    text: Vec<u8>,
    /// Newer Envoys only; never set here (proto3: empty is not serialized).
    #[prost(string, tag = "5")]
    public_key_pem: String,
}

/// `envoy.source.extensions.common.wasm.VerifySignatureResult`.
#[derive(Clone, PartialEq, Message)]
struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    result: bool,
    #[prost(string, tag = "2")]
    error: String,
}

// ---------------------------------------------------------------------------
// Host call indirection.

/// Calls a foreign function: `Ok(result bytes)` or `Err(proxy-wasm status code)`.
type HostCall = fn(&str, &[u8]) -> Result<Option<Vec<u8>>, u32>;

#[cfg(target_arch = "wasm32")]
const DEFAULT_HOST: HostCall = ffi::call_foreign_function;

/// Outside Wasm there is no host: every call reports `NotFound`.
#[cfg(not(target_arch = "wasm32"))]
const DEFAULT_HOST: HostCall = |_, _| Err(1);

/// The raw `proxy_call_foreign_function` import.
///
/// `proxy_wasm::hostcalls::call_foreign_function` (0.2.5) panics, which
/// aborts the VM, on any status besides Ok, NotFound, BadArgument,
/// SerializationFailure and InternalFailure, and declares the import as
/// returning a Rust enum, so a status outside that enum (InvalidMemoryAccess
/// = 6 or Unimplemented = 12, which other proxy-wasm hosts return for unknown
/// foreign functions) is undefined behaviour. The probe must be harmless on
/// any host, so this declares the import returning a plain `u32`.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod ffi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_call_foreign_function(
            function_name_data: *const u8,
            function_name_size: usize,
            arguments_data: *const u8,
            arguments_size: usize,
            results_data: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
    }

    pub(super) fn call_foreign_function(
        name: &str,
        arguments: &[u8],
    ) -> Result<Option<Vec<u8>>, u32> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the name and argument pointers are valid for their lengths
        // during the call; the host writes only the two out-parameters.
        let status = unsafe {
            proxy_call_foreign_function(
                name.as_ptr(),
                name.len(),
                arguments.as_ptr(),
                arguments.len(),
                &mut data,
                &mut size,
            )
        };
        if status != 0 {
            // Nothing is reclaimed on failure: a host may leave the
            // out-parameters untouched or undefined.
            return Err(status);
        }
        if data.is_null() {
            return Ok(None);
        }
        // SAFETY: on success the host allocated `size` bytes through the
        // module's `proxy_on_memory_allocate` (proxy-wasm's
        // `Vec::with_capacity(size)` + `forget`) and hands ownership to us;
        // this is exactly what `proxy_wasm::hostcalls::call_foreign_function`
        // does.
        Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) }))
    }
}

thread_local! {
    static HOST: Cell<HostCall> = const { Cell::new(DEFAULT_HOST) };
    static NATIVE: Cell<bool> = const { Cell::new(false) };
    static STATS: Cell<Stats> = const {
        Cell::new(Stats {
            native_verifications: 0,
            fallback_verifications: 0,
            native_errors: 0,
            key_conversions: 0,
        })
    };
    static WARNED_HOST_ERROR: Cell<bool> = const { Cell::new(false) };
    static KEY_CACHE: RefCell<KeyCache> = RefCell::new(KeyCache::default());
}

fn bump(f: impl FnOnce(&mut Stats)) {
    STATS.with(|s| {
        let mut v = s.get();
        f(&mut v);
        s.set(v);
    });
}

/// This VM's counters.
pub fn stats() -> Stats {
    STATS.with(Cell::get)
}

/// The backend in use in this VM ([`Backend::RustCrypto`] before [`install`]).
pub fn backend() -> Backend {
    if NATIVE.with(Cell::get) {
        Backend::Native
    } else {
        Backend::RustCrypto
    }
}

// ---------------------------------------------------------------------------
// Installation and probe.

/// Installs the provider as `jsonwebtoken`'s process default and chooses the
/// backend of this VM; call it from the root context's `on_configure`.
///
/// With `probe`, a known-good RS256 signature (and a tampered copy) is first
/// verified through the foreign function; if the function is missing, fails or
/// answers wrongly, RSA/ECDSA stay in Wasm and one warning is logged. Without
/// `probe` the host is trusted (a host error still falls back per
/// verification). Idempotent, never panics, never fails: the worst outcome is
/// [`Backend::RustCrypto`].
pub fn install(probe: bool) -> Backend {
    if !install_provider() {
        log::warn!(
            "jwt-auth: another jsonwebtoken crypto provider was installed first \
             (was a token verified before on_configure?); RSA/ECDSA signatures \
             are verified in Wasm"
        );
        NATIVE.with(|n| n.set(false));
        return Backend::RustCrypto;
    }
    activate(probe)
}

fn provider() -> &'static CryptoProvider {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
        verifier_factory: new_verifier,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    })
}

/// True if our provider is the process default (installed now or before).
///
/// `install_default` fails once any provider is set, including the crate
/// default that the first `decode`/`verify`/`Jwk::thumbprint` locks in, and
/// its error carries the provider we passed, not the installed one; so the
/// outcome of our one attempt is remembered.
fn install_provider() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| provider().install_default().is_ok())
}

fn activate(probe: bool) -> Backend {
    let native = !probe
        || match run_probe() {
            Ok(()) => true,
            Err(reason) => {
                log::warn!(
                    "jwt-auth: Envoy's {FOREIGN_FUNCTION} is not usable ({reason}); \
                     RSA/ECDSA signatures are verified in Wasm (about 2 ms per RS256 token)"
                );
                false
            }
        };
    NATIVE.with(|n| n.set(native));
    backend()
}

// Probe vector, generated once with OpenSSL 3.0:
//   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out probe.key
//   openssl pkey -in probe.key -pubout -outform DER -out probe.spki.der
//   printf '%s' "$PROBE_MESSAGE" > probe.msg
//   openssl dgst -sha256 -sign probe.key -out probe.sig probe.msg
//   base64 -w0 probe.spki.der; base64 -w0 probe.sig
// (the private key was discarded).
const PROBE_MESSAGE: &[u8] = b"proxy-wasm-filters jwt-auth native verify_signature probe";
const PROBE_SPKI_B64: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAl7Gqt+AckkSmB4Aie4/m6LSXY/XCB80U/4/gojTVXaJX3fUlQLSShW+E4hLtpBmuITRKd8LtBye914MMptxCTDDiV8Vp8Mu/5NmAXPb9lxEg2afPrc9+sDgdiMQWbGfofRYajovrh5Qa2b5THPGT1R1kqvLVybi6a/7gCD0TNbZv3ABMklDlGcAyAIpvq8z/6iTscV26GNtG4P/3h1DNijwJiwKw255wcfKBF4T/BgJOvKgqsXNLkIzhJZohiEKEzhvZSmdorCl42jhuUYTFiiN+trAxcAbTaaAaR6jvLngcO6kl7hBouqyVuN4GraC0IS7Xt1g2VLcKyLl6x72e3QIDAQAB";
const PROBE_SIGNATURE_B64: &str = "WnKCZREqUfCG19pMVSSYi5od5B2TKb5e69NN2WkCCk4IqwSDel1g80hhpvBYg8YKmySWuL/gqalVuxx2Dz01pBVSldTpjMT/iaeCDXriu9HHB67yZsxGjTd+E1Xx5KLmDEP6F9wLZ7gNsPspBPRMpxr2B49mtAqEswM7vrph8q3O9Qryae8v0VaRpzSHf2/lX6vEU9CSjVX8xukkDzMzp9vIK5GqdCCsp90xJR/Phg7rzxo41Ff+Fwa5En5J8sML9Jfo+ZQKVb8TLLLbxCf4cn+u0UtLax0y2JcgS/sa8NTFT+/bPemKQeX30vXZ8qT9FRPf5fHKFyQcb18imDXUSw==";

fn run_probe() -> Result<(), String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(PROBE_SPKI_B64)
        .map_err(|e| format!("probe key: {e}"))?;
    let mut sig = b64
        .decode(PROBE_SIGNATURE_B64)
        .map_err(|e| format!("probe signature: {e}"))?;
    match call_native("sha256", &key, &sig, PROBE_MESSAGE) {
        Ok(true) => {}
        Ok(false) => return Err("it rejected a known-good RS256 signature".into()),
        Err(e) => return Err(e.to_string()),
    }
    if let Some(last) = sig.last_mut() {
        *last ^= 0x01;
    }
    match call_native("sha256", &key, &sig, PROBE_MESSAGE) {
        Ok(false) => Ok(()),
        Ok(true) => Err("it accepted a tampered RS256 signature".into()),
        Err(e) => Err(e.to_string()),
    }
}

// ---------------------------------------------------------------------------
// The foreign function call.

/// A host-level failure of the foreign function (not an invalid signature).
#[derive(Debug)]
enum NativeError {
    Status(u32),
    NoResult,
    BadResult(prost::DecodeError),
}

impl fmt::Display for NativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // proxy-wasm `WasmResult` codes.
            Self::Status(code) => {
                let name = match code {
                    1 => "NotFound",
                    2 => "BadArgument",
                    3 => "SerializationFailure",
                    4 => "ParseFailure",
                    6 => "InvalidMemoryAccess",
                    10 => "InternalFailure",
                    12 => "Unimplemented",
                    _ => "status",
                };
                write!(f, "{FOREIGN_FUNCTION} failed: {name} ({code})")
            }
            Self::NoResult => write!(f, "{FOREIGN_FUNCTION} returned no result"),
            Self::BadResult(e) => {
                write!(f, "{FOREIGN_FUNCTION} returned an unreadable result: {e}")
            }
        }
    }
}

/// Envoy's verdict on `signature` over `text`, or why Envoy gave none.
fn call_native(
    hash_function: &str,
    spki_der: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Result<bool, NativeError> {
    let arguments = VerifySignatureArguments {
        hash_function: hash_function.to_owned(),
        public_key: spki_der.to_vec(),
        signature: signature.to_vec(),
        text: text.to_vec(),
        public_key_pem: String::new(),
    }
    .encode_to_vec();
    let host = HOST.with(Cell::get);
    let answer = host(FOREIGN_FUNCTION, &arguments)
        .map_err(NativeError::Status)?
        .ok_or(NativeError::NoResult)?;
    let result =
        VerifySignatureResult::decode(answer.as_slice()).map_err(NativeError::BadResult)?;
    Ok(result.result)
}

// ---------------------------------------------------------------------------
// Algorithms and keys.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Rsa,
    P256,
    P384,
}

/// How Envoy verifies a JWS algorithm, if it can.
fn native_spec(alg: Algorithm) -> Option<(&'static str, KeyType)> {
    match alg {
        Algorithm::RS256 => Some(("sha256", KeyType::Rsa)),
        Algorithm::RS384 => Some(("sha384", KeyType::Rsa)),
        Algorithm::RS512 => Some(("sha512", KeyType::Rsa)),
        Algorithm::ES256 => Some(("sha256", KeyType::P256)),
        Algorithm::ES384 => Some(("sha384", KeyType::P384)),
        _ => None,
    }
}

impl KeyType {
    fn family(self) -> AlgorithmFamily {
        match self {
            Self::Rsa => AlgorithmFamily::Rsa,
            Self::P256 | Self::P384 => AlgorithmFamily::Ec,
        }
    }
}

/// SPKI DER of a decoding key, with the same parsing `rust_crypto` applies
/// (PKCS#1 DER or (n, e) for RSA; a SEC1 point for EC), so a key is native
/// exactly when `rust_crypto` would accept it.
fn encode_spki(key_type: KeyType, kind: &DecodingKeyKind) -> Option<Vec<u8>> {
    let document = match (key_type, kind) {
        (KeyType::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(n),
            rsa::BigUint::from_bytes_be(e),
        )
        .ok()?
        .to_public_key_der(),
        (KeyType::Rsa, DecodingKeyKind::SecretOrDer(der)) => rsa::RsaPublicKey::from_pkcs1_der(der)
            .ok()?
            .to_public_key_der(),
        (KeyType::P256, DecodingKeyKind::SecretOrDer(point)) => {
            p256::PublicKey::from_sec1_bytes(point)
                .ok()?
                .to_public_key_der()
        }
        (KeyType::P384, DecodingKeyKind::SecretOrDer(point)) => {
            p384::PublicKey::from_sec1_bytes(point)
                .ok()?
                .to_public_key_der()
        }
        (KeyType::P256 | KeyType::P384, DecodingKeyKind::RsaModulusExponent { .. }) => return None,
    };
    document.ok().map(|d| d.into_vec())
}

/// Cache identity of a key: its type and all of its material.
fn cache_key(key_type: KeyType, kind: &DecodingKeyKind) -> Vec<u8> {
    let tag = match key_type {
        KeyType::Rsa => b'R',
        KeyType::P256 => b'2',
        KeyType::P384 => b'3',
    };
    match kind {
        DecodingKeyKind::SecretOrDer(bytes) => {
            let mut k = Vec::with_capacity(bytes.len().saturating_add(2));
            k.extend_from_slice(&[tag, b'd']);
            k.extend_from_slice(bytes);
            k
        }
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            let n_len = u32::try_from(n.len()).unwrap_or(u32::MAX);
            let mut k = Vec::with_capacity(n.len().saturating_add(e.len()).saturating_add(6));
            k.extend_from_slice(&[tag, b'c']);
            k.extend_from_slice(&n_len.to_be_bytes());
            k.extend_from_slice(n);
            k.extend_from_slice(e);
            k
        }
    }
}

/// Bounded map key material → SPKI DER; evicts the least recently used entry.
#[derive(Default)]
struct KeyCache {
    entries: HashMap<Vec<u8>, (Rc<[u8]>, u64)>,
    clock: u64,
}

impl KeyCache {
    fn get_or_convert(
        &mut self,
        key: Vec<u8>,
        convert: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<Rc<[u8]>> {
        self.clock = self.clock.wrapping_add(1);
        let now = self.clock;
        if let Some((der, used)) = self.entries.get_mut(&key) {
            *used = now;
            return Some(Rc::clone(der));
        }
        let der: Rc<[u8]> = convert()?.into();
        if self.entries.len() >= KEY_CACHE_CAPACITY {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (Rc::clone(&der), now));
        Some(der)
    }
}

fn spki_der(key_type: KeyType, key: &DecodingKey) -> Option<Rc<[u8]>> {
    let kind = key.kind();
    KEY_CACHE.with(|cache| {
        cache
            .borrow_mut()
            .get_or_convert(cache_key(key_type, kind), || {
                bump(|s| s.key_conversions = s.key_conversions.saturating_add(1));
                encode_spki(key_type, kind)
            })
    })
}

// ---------------------------------------------------------------------------
// Verifiers.

/// The provider's verifier factory.
fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    let rust = rust_crypto::DEFAULT_PROVIDER.verifier_factory;
    if alg.family() == AlgorithmFamily::Hmac {
        return rust(alg, key);
    }
    let native = match native_spec(*alg) {
        Some((hash, key_type)) if NATIVE.with(Cell::get) && key.family() == key_type.family() => {
            spki_der(key_type, key).map(|der| (hash, key_type, der))
        }
        _ => None,
    };
    match native {
        Some((hash_function, key_type, spki)) => Ok(Box::new(NativeVerifier {
            alg: *alg,
            hash_function,
            key_type,
            spki,
            key: key.clone(),
        })),
        // rust_crypto decides, including the error for a key of the wrong
        // family or an unparsable key.
        None => Ok(Box::new(Fallback(rust(alg, key)?))),
    }
}

/// A `rust_crypto` verifier counted in [`Stats::fallback_verifications`].
struct Fallback(Box<dyn JwtVerifier>);

impl Verifier<Vec<u8>> for Fallback {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        bump(|s| s.fallback_verifications = s.fallback_verifications.saturating_add(1));
        self.0.verify(msg, signature)
    }
}

impl JwtVerifier for Fallback {
    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// Verifies through Envoy; redoes the verification in Wasm on a host error.
struct NativeVerifier {
    alg: Algorithm,
    hash_function: &'static str,
    key_type: KeyType,
    spki: Rc<[u8]>,
    key: DecodingKey,
}

/// JWS ECDSA signatures are `r‖s` (RFC 7518 §3.4); BoringSSL wants DER.
fn ecdsa_signature_der(key_type: KeyType, raw: &[u8]) -> Result<Vec<u8>, signature::Error> {
    Ok(match key_type {
        KeyType::P256 => p256::ecdsa::Signature::from_slice(raw)?
            .to_der()
            .as_bytes()
            .to_vec(),
        KeyType::P384 => p384::ecdsa::Signature::from_slice(raw)?
            .to_der()
            .as_bytes()
            .to_vec(),
        KeyType::Rsa => raw.to_vec(),
    })
}

impl Verifier<Vec<u8>> for NativeVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        // A malformed r‖s is rejected here exactly as rust_crypto would.
        let wire: Cow<'_, [u8]> = match self.key_type {
            KeyType::Rsa => Cow::Borrowed(signature.as_slice()),
            ec => Cow::Owned(ecdsa_signature_der(ec, signature)?),
        };
        match call_native(self.hash_function, &self.spki, &wire, msg) {
            Ok(valid) => {
                bump(|s| s.native_verifications = s.native_verifications.saturating_add(1));
                if valid {
                    Ok(())
                } else {
                    Err(signature::Error::new())
                }
            }
            Err(e) => {
                bump(|s| s.native_errors = s.native_errors.saturating_add(1));
                if WARNED_HOST_ERROR.with(|w| w.replace(true)) {
                    log::debug!("jwt-auth: {e}; verifying {:?} in Wasm", self.alg);
                } else {
                    log::warn!(
                        "jwt-auth: {e}; verifying {:?} in Wasm (further errors at debug level)",
                        self.alg
                    );
                }
                let rust = (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(&self.alg, &self.key)
                    .map_err(signature::Error::from_source)?;
                Fallback(rust).verify(msg, signature)
            }
        }
    }
}

impl JwtVerifier for NativeVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use jsonwebtoken::EncodingKey;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::DecodePublicKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    use sha2::Digest;

    // ---- a fake Envoy: rust_crypto behind the same protobuf/DER interface --

    thread_local! {
        static CALLS: RefCell<Vec<VerifySignatureArguments>> = const { RefCell::new(Vec::new()) };
    }

    fn digest(hash: &str, text: &[u8]) -> Option<Vec<u8>> {
        Some(match hash {
            "sha256" => sha2::Sha256::digest(text).to_vec(),
            "sha384" => sha2::Sha384::digest(text).to_vec(),
            "sha512" => sha2::Sha512::digest(text).to_vec(),
            _ => return None,
        })
    }

    /// What BoringSSL's EVP_parse_public_key + EVP_DigestVerify do, or None
    /// where Envoy would answer BadArgument (key not importable).
    fn envoy_verify(a: &VerifySignatureArguments) -> Option<(bool, &'static str)> {
        let Some(hashed) = digest(&a.hash_function, &a.text) else {
            return Some((false, "hash is not supported."));
        };
        let ok = if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(&a.public_key) {
            let scheme = match a.hash_function.as_str() {
                "sha256" => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                "sha384" => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                _ => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            };
            k.verify(scheme, &hashed, &a.signature).is_ok()
        } else if let Ok(k) = p256::PublicKey::from_public_key_der(&a.public_key) {
            p256::ecdsa::Signature::from_der(&a.signature).is_ok_and(|sig| {
                p256::ecdsa::VerifyingKey::from(k)
                    .verify_prehash(&hashed, &sig)
                    .is_ok()
            })
        } else if let Ok(k) = p384::PublicKey::from_public_key_der(&a.public_key) {
            p384::ecdsa::Signature::from_der(&a.signature).is_ok_and(|sig| {
                p384::ecdsa::VerifyingKey::from(k)
                    .verify_prehash(&hashed, &sig)
                    .is_ok()
            })
        } else {
            return None;
        };
        Some((
            ok,
            if ok {
                ""
            } else {
                "Failed to verify digest. Error code: 0"
            },
        ))
    }

    fn fake_envoy(name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, u32> {
        assert_eq!(name, "verify_signature");
        let a = VerifySignatureArguments::decode(args).map_err(|_| 2u32)?;
        assert!(a.public_key_pem.is_empty());
        CALLS.with(|c| c.borrow_mut().push(a.clone()));
        let (result, error) = envoy_verify(&a).ok_or(2u32)?;
        Ok(Some(
            VerifySignatureResult {
                result,
                error: error.into(),
            }
            .encode_to_vec(),
        ))
    }

    fn with_host(host: HostCall, native: bool) {
        HOST.with(|h| h.set(host));
        NATIVE.with(|n| n.set(native));
        CALLS.with(|c| c.borrow_mut().clear());
    }

    fn host_calls() -> Vec<VerifySignatureArguments> {
        CALLS.with(|c| c.borrow().clone())
    }

    fn delta(before: Stats) -> Stats {
        let now = stats();
        Stats {
            native_verifications: now.native_verifications - before.native_verifications,
            fallback_verifications: now.fallback_verifications - before.fallback_verifications,
            native_errors: now.native_errors - before.native_errors,
            key_conversions: now.key_conversions - before.key_conversions,
        }
    }

    fn verify(alg: Algorithm, key: &DecodingKey, msg: &[u8], sig: &[u8]) -> bool {
        new_verifier(&alg, key)
            .unwrap()
            .verify(msg, &sig.to_vec())
            .is_ok()
    }

    fn tampered(sig: &[u8]) -> Vec<u8> {
        let mut s = sig.to_vec();
        s[10] ^= 0x40;
        s
    }

    // ---- keys -------------------------------------------------------------

    // TEST-ONLY RSA-2048 key (PKCS#1 DER, base64), made for these tests with
    // `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` and used
    // nowhere else; generating one in a debug build takes seconds.
    const TEST_RSA_PKCS1_B64: &str = concat!(
        "MIIEpAIBAAKCAQEAqW88LDLLjIOd8RvdZnv/STO9U6oEA6b/l9KMY06jVjtVKti6tbfOY6nOHeH4OmiH11Ey4RlR4FyJzPI4",
        "5r6jY8zKWjoJZD1HM9a6hCe1FyZtKaRurxj8vy9i8HwdPdeKYL0QXH8P1RF4OUi6V2XsQRksjFbsyK0hC46dOmVDJnvfK+GL",
        "N+aB/Dgk/ORjlJX67w1bhJ7zCa0Xr4OTWL+P9L5jxemQJ28y3KlNlybYIbHjgx7Tz4FFPdGUqrMcU/DvmLJH37w1EieUJgHq",
        "E9W2+6igllBEUu+flpznLl1TpCP7DIxBcgmEYrs9I1LhbL4cu1k/HDX7bLc7Q68DccYkwQIDAQABAoIBADTsREDP+ulggRh7",
        "KiwlRgeg7B2yaL+VTZeoEebA/N7l+IPCH4u8JnDV7MZDu2vPE8MrHzfVV1A7x2UnMaPNXy7AnGITZ7SSOWfVRfwahQN+orFT",
        "paj2ppe3HvHb6qxS42u1EmO54oGci89kyqOa9/EbgmExk5NZFI3OFYlUcOWXYELYylfLkjDjPXbBrSm8FprHRxlL9Ms5cPdx",
        "VBkENwKFrZdTqAXbokzXXWM/T5s89QECsZgTdf2ldMVwJIaXApoCCwavYUhy7TcbxbSpxUeV9Vl6MptDa1LB5CKg9pNCpoSD",
        "34tp7Qr3wv2wE2Psspv9IkmiP2+DVrKuXt6XpKMCgYEA264NR7CpohHsRNUeR15rNRAuTBav0a0aswfBJX2UYh3KrEXDJk6C",
        "eKadH/g8Qy6s77FxtqJHOc3TW0ea7kTnNdrLTRLvVFS50/pV0CmeZpLG7RGHdMt9E8JF/L3oQCpSRhoBCzIDnvLKrXPvAxTa",
        "58HIHJvMRzDclzWq9zpk/OsCgYEAxXKMW/t3wI0aoS604mxjm4irmbYd7QdhH8snSbQr8qWQc1mkP6ve4A9r3Qz9atqp221I",
        "j00dp9o5aK3ZVRyIA1Nh3hV1zoCcQffF+mHgzLgaWNo5NJuTQQlK6vVBVK2ligNQwLeMLx9uBrdJZIyflm++Y8qCY75C2Vqu",
        "iEyiCgMCgYAy95XDLTyeCnR7n8pvmntbC08Cfjz6c6P/J2xra1BS10CfaWwWZh6lKVrJAQnSOHENB2kvi0TlJ1jDE8DhSQEv",
        "oHyMfDkkoqeeg7UHH7DNcX5PoEKCGXgCbo9YTSMmR+tgskXNuCPY69GUHpK0b1E+ddocsRTa634yYtQwmc62UwKBgQC7yd16",
        "4mmb5dgs8poxO3tlAxCKSi6eMEWMkpBURhsCVbtUKi7QK+v22FPzUpZ3mW6xdnfrayHIcgHl8GriyxcFarmLGogIFkQHbduK",
        "7qp6qqLMXQjJYyojUe5CF27CVcE6yTp1gFzAuLjRhGM2UZS65J6ElKd8rAkyZk/W7GO09wKBgQCSW4G3Pl530j2W+7Ho8hCp",
        "Y0rx+Ph3zfIOTp6Tn0xAvuu9FOT4xyPCwXf7t133p3Y7QKSCwy2nNrxKC4zrah8Y0k9wUIy+ND4wLdqFrqi5gMx+3USmNAyF",
        "iHyVoQu8huTloEtyov0g9ascGBCnGq+u+61jPT0OLP+GQJPEWtAPlg==",
    );

    struct Rsa {
        private_pkcs1: Vec<u8>,
        public: rsa::RsaPublicKey,
    }

    fn rsa_key() -> &'static Rsa {
        static KEY: OnceLock<Rsa> = OnceLock::new();
        KEY.get_or_init(|| {
            let private_pkcs1 = STANDARD.decode(TEST_RSA_PKCS1_B64).unwrap();
            let private = rsa::RsaPrivateKey::from_pkcs1_der(&private_pkcs1).unwrap();
            Rsa {
                private_pkcs1,
                public: private.to_public_key(),
            }
        })
    }

    fn rsa_jwk() -> DecodingKey {
        let public = &rsa_key().public;
        DecodingKey::from_rsa_raw_components(&public.n().to_bytes_be(), &public.e().to_bytes_be())
    }

    /// Signs with jsonwebtoken's own rust_crypto signer (without touching the
    /// process-default provider).
    fn jwt_sign(alg: Algorithm, key: &EncodingKey, msg: &[u8]) -> Vec<u8> {
        (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&alg, key)
            .unwrap()
            .try_sign(msg)
            .unwrap()
    }

    fn rsa_sign(alg: Algorithm, msg: &[u8]) -> Vec<u8> {
        jwt_sign(
            alg,
            &EncodingKey::from_rsa_der(&rsa_key().private_pkcs1),
            msg,
        )
    }

    fn ec_jwk(point: &[u8], coordinate_len: usize) -> DecodingKey {
        let x = &point[1..1 + coordinate_len];
        let y = &point[1 + coordinate_len..];
        DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))
            .unwrap()
    }

    fn p256_key() -> (p256::ecdsa::SigningKey, DecodingKey) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let point = sk.verifying_key().to_encoded_point(false);
        let jwk = ec_jwk(point.as_bytes(), 32);
        (sk, jwk)
    }

    fn p384_key() -> (p384::ecdsa::SigningKey, DecodingKey) {
        let sk = p384::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let point = sk.verifying_key().to_encoded_point(false);
        let jwk = ec_jwk(point.as_bytes(), 48);
        (sk, jwk)
    }

    // Ed25519 test key (openssl genpkey -algorithm ED25519 -outform DER).
    const ED25519_PKCS8_B64: &str =
        "MC4CAQAwBQYDK2VwBCIEIBnHth/9DBYwM4pvvptyJ7iQDC7Q7uWCbKhy3fkNbAMY";
    const ED25519_X_B64URL: &str = "ci1MkQ-MTOtZqc2hkFj667IqmhD9PrYes3EIYeSuOW4";

    const MSG: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0";

    // ---- protobuf ---------------------------------------------------------

    #[test]
    fn protobuf_round_trip_and_field_numbers() {
        let args = VerifySignatureArguments {
            hash_function: "sha256".into(),
            public_key: vec![0x30, 0x82],
            signature: vec![0xAA],
            text: b"t".to_vec(),
            public_key_pem: String::new(),
        };
        let bytes = args.encode_to_vec();
        // Field 1 string, 2 bytes, 3 bytes, 4 bytes; field 5 empty → absent.
        let mut expected = vec![0x0a, 6];
        expected.extend_from_slice(b"sha256");
        expected.extend_from_slice(&[0x12, 2, 0x30, 0x82, 0x1a, 1, 0xAA, 0x22, 1, b't']);
        assert_eq!(bytes, expected);
        assert_eq!(
            VerifySignatureArguments::decode(bytes.as_slice()).unwrap(),
            args
        );

        let pem = VerifySignatureArguments {
            public_key_pem: "P".into(),
            ..Default::default()
        };
        assert_eq!(pem.encode_to_vec(), vec![0x2a, 1, b'P']);

        // Envoy's answers: {result: true, error: ""} and a failure.
        assert_eq!(
            VerifySignatureResult {
                result: true,
                error: String::new()
            }
            .encode_to_vec(),
            vec![0x08, 1]
        );
        let failure = [0x12, 3, b'b', b'a', b'd'];
        let decoded = VerifySignatureResult::decode(failure.as_slice()).unwrap();
        assert_eq!(
            decoded,
            VerifySignatureResult {
                result: false,
                error: "bad".into()
            }
        );
        let round = VerifySignatureResult {
            result: true,
            error: "x".into(),
        };
        assert_eq!(
            VerifySignatureResult::decode(round.encode_to_vec().as_slice()).unwrap(),
            round
        );
    }

    // ---- key conversion ---------------------------------------------------

    #[test]
    fn probe_key_round_trips_to_openssls_exact_spki() {
        let der = STANDARD.decode(PROBE_SPKI_B64).unwrap();
        let public = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
        let jwk = DecodingKeyKind::RsaModulusExponent {
            n: public.n().to_bytes_be(),
            e: public.e().to_bytes_be(),
        };
        assert_eq!(encode_spki(KeyType::Rsa, &jwk).unwrap(), der);
    }

    #[test]
    fn rsa_jwk_and_pkcs1_to_spki() {
        let public = &rsa_key().public;
        let from_jwk = encode_spki(KeyType::Rsa, rsa_jwk().kind()).unwrap();
        assert_eq!(
            &rsa::RsaPublicKey::from_public_key_der(&from_jwk).unwrap(),
            public
        );

        use rsa::pkcs1::EncodeRsaPublicKey;
        let pkcs1 = public.to_pkcs1_der().unwrap();
        let from_der = encode_spki(
            KeyType::Rsa,
            DecodingKey::from_rsa_der(pkcs1.as_bytes()).kind(),
        )
        .unwrap();
        assert_eq!(from_der, from_jwk);

        // Not RSA material, or the wrong curve: no conversion.
        assert!(encode_spki(KeyType::Rsa, &DecodingKeyKind::SecretOrDer(vec![1, 2, 3])).is_none());
        assert!(encode_spki(KeyType::P256, rsa_jwk().kind()).is_none());
    }

    #[test]
    fn ec_jwk_to_spki() {
        let (sk, jwk) = p256_key();
        let der = encode_spki(KeyType::P256, jwk.kind()).unwrap();
        let parsed = p256::PublicKey::from_public_key_der(&der).unwrap();
        assert_eq!(&p256::ecdsa::VerifyingKey::from(parsed), sk.verifying_key());
        assert_eq!(der.len(), 91); // 26-byte SPKI header + 65-byte uncompressed point
        assert!(encode_spki(KeyType::P384, jwk.kind()).is_none());

        let (sk, jwk) = p384_key();
        let der = encode_spki(KeyType::P384, jwk.kind()).unwrap();
        let parsed = p384::PublicKey::from_public_key_der(&der).unwrap();
        assert_eq!(&p384::ecdsa::VerifyingKey::from(parsed), sk.verifying_key());
        assert_eq!(der.len(), 120);
        assert!(encode_spki(KeyType::P256, jwk.kind()).is_none());
    }

    #[test]
    fn raw_ecdsa_signatures_to_der() {
        let (sk, _) = p256_key();
        let sig: p256::ecdsa::Signature = sk.sign(MSG);
        let raw = sig.to_bytes();
        assert_eq!(raw.len(), 64);
        let der = ecdsa_signature_der(KeyType::P256, &raw).unwrap();
        assert_eq!(der[0], 0x30);
        let parsed = p256::ecdsa::Signature::from_der(&der).unwrap();
        assert!(p256::ecdsa::signature::Verifier::verify(sk.verifying_key(), MSG, &parsed).is_ok());

        let (sk, _) = p384_key();
        let sig: p384::ecdsa::Signature = sk.sign(MSG);
        let raw = sig.to_bytes();
        assert_eq!(raw.len(), 96);
        let der = ecdsa_signature_der(KeyType::P384, &raw).unwrap();
        let parsed = p384::ecdsa::Signature::from_der(&der).unwrap();
        assert!(p384::ecdsa::signature::Verifier::verify(sk.verifying_key(), MSG, &parsed).is_ok());

        // Wrong length or a zero scalar: rejected like rust_crypto does.
        assert!(ecdsa_signature_der(KeyType::P256, &raw).is_err());
        assert!(ecdsa_signature_der(KeyType::P256, &[0u8; 64]).is_err());
    }

    // ---- dispatch ---------------------------------------------------------

    #[test]
    fn rsa_pkcs1_algorithms_go_native() {
        with_host(fake_envoy, true);
        let key = rsa_jwk();
        for (alg, hash) in [
            (Algorithm::RS256, "sha256"),
            (Algorithm::RS384, "sha384"),
            (Algorithm::RS512, "sha512"),
        ] {
            let sig = rsa_sign(alg, MSG);
            let before = stats();
            CALLS.with(|c| c.borrow_mut().clear());
            assert!(verify(alg, &key, MSG, &sig), "{alg:?}");
            assert!(!verify(alg, &key, MSG, &tampered(&sig)), "{alg:?}");
            assert!(!verify(alg, &key, b"other", &sig), "{alg:?}");
            let d = delta(before);
            assert_eq!(
                (
                    d.native_verifications,
                    d.fallback_verifications,
                    d.native_errors
                ),
                (3, 0, 0)
            );
            let calls = host_calls();
            assert_eq!(calls.len(), 3);
            assert_eq!(calls[0].hash_function, hash);
            assert_eq!(calls[0].text, MSG);
            assert_eq!(calls[0].signature, sig);
            assert_eq!(
                rsa::RsaPublicKey::from_public_key_der(&calls[0].public_key).unwrap(),
                rsa_key().public
            );
        }
    }

    #[test]
    fn ecdsa_algorithms_go_native_with_der_signatures() {
        with_host(fake_envoy, true);
        let (sk, key) = p256_key();
        let sig: p256::ecdsa::Signature = sk.sign(MSG);
        let raw = sig.to_bytes().to_vec();
        let before = stats();
        assert!(verify(Algorithm::ES256, &key, MSG, &raw));
        assert!(!verify(Algorithm::ES256, &key, MSG, &tampered(&raw)));
        assert!(!verify(Algorithm::ES256, &key, MSG, &raw[..63])); // malformed: no host call
        let d = delta(before);
        assert_eq!((d.native_verifications, d.fallback_verifications), (2, 0));
        let calls = host_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].hash_function, "sha256");
        assert_eq!(calls[0].signature, sig.to_der().as_bytes());

        let (sk, key) = p384_key();
        let sig: p384::ecdsa::Signature = sk.sign(MSG);
        let raw = sig.to_bytes().to_vec();
        CALLS.with(|c| c.borrow_mut().clear());
        assert!(verify(Algorithm::ES384, &key, MSG, &raw));
        assert!(!verify(Algorithm::ES384, &key, MSG, &tampered(&raw)));
        let calls = host_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].hash_function, "sha384");
        assert_eq!(calls[0].signature, sig.to_der().as_bytes());
        // ES256 with a P-384 key: rust_crypto's error, no host call.
        assert!(new_verifier(&Algorithm::ES256, &key).is_err());
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn pss_eddsa_and_hmac_stay_in_wasm() {
        with_host(fake_envoy, true);
        let key = rsa_jwk();
        let before = stats();
        for alg in [Algorithm::PS256, Algorithm::PS384, Algorithm::PS512] {
            let sig = rsa_sign(alg, MSG);
            assert!(verify(alg, &key, MSG, &sig), "{alg:?}");
            assert!(!verify(alg, &key, MSG, &tampered(&sig)), "{alg:?}");
        }

        let ed_private = EncodingKey::from_ed_der(&STANDARD.decode(ED25519_PKCS8_B64).unwrap());
        let ed_public = DecodingKey::from_ed_components(ED25519_X_B64URL).unwrap();
        let sig = jwt_sign(Algorithm::EdDSA, &ed_private, MSG);
        assert!(verify(Algorithm::EdDSA, &ed_public, MSG, &sig));
        assert!(!verify(Algorithm::EdDSA, &ed_public, MSG, &tampered(&sig)));
        assert_eq!(delta(before).fallback_verifications, 8);

        let secret = b"0123456789abcdef0123456789abcdef";
        let hs = jwt_sign(Algorithm::HS256, &EncodingKey::from_secret(secret), MSG);
        assert!(verify(
            Algorithm::HS256,
            &DecodingKey::from_secret(secret),
            MSG,
            &hs
        ));
        assert!(!verify(
            Algorithm::HS256,
            &DecodingKey::from_secret(b"other"),
            MSG,
            &hs
        ));

        let d = delta(before);
        assert_eq!(
            (
                d.native_verifications,
                d.fallback_verifications,
                d.native_errors
            ),
            (0, 8, 0)
        );
        assert!(host_calls().is_empty());
    }

    #[test]
    fn wrong_key_family_fails_like_rust_crypto() {
        with_host(fake_envoy, true);
        let (_, ec) = p256_key();
        assert!(new_verifier(&Algorithm::RS256, &ec).is_err());
        assert!(new_verifier(&Algorithm::ES256, &rsa_jwk()).is_err());
        assert!(new_verifier(&Algorithm::RS256, &DecodingKey::from_secret(b"s")).is_err());
        assert!(host_calls().is_empty());
    }

    #[test]
    fn backend_off_keeps_everything_in_wasm() {
        with_host(fake_envoy, false);
        let sig = rsa_sign(Algorithm::RS256, MSG);
        let before = stats();
        assert!(verify(Algorithm::RS256, &rsa_jwk(), MSG, &sig));
        assert!(!verify(Algorithm::RS256, &rsa_jwk(), MSG, &tampered(&sig)));
        let d = delta(before);
        assert_eq!((d.native_verifications, d.fallback_verifications), (0, 2));
        assert!(host_calls().is_empty());
    }

    // ---- host errors ------------------------------------------------------

    #[test]
    fn host_errors_fall_back_and_are_counted() {
        fn not_found(_: &str, _: &[u8]) -> Result<Option<Vec<u8>>, u32> {
            Err(1)
        }
        fn unimplemented(_: &str, _: &[u8]) -> Result<Option<Vec<u8>>, u32> {
            Err(12)
        }
        fn garbage(_: &str, _: &[u8]) -> Result<Option<Vec<u8>>, u32> {
            Ok(Some(vec![0xff, 0xff, 0xff]))
        }
        fn nothing(_: &str, _: &[u8]) -> Result<Option<Vec<u8>>, u32> {
            Ok(None)
        }
        let sig = rsa_sign(Algorithm::RS256, MSG);
        let (sk, ec) = p256_key();
        let ec_sig = <p256::ecdsa::SigningKey as p256::ecdsa::signature::Signer<
            p256::ecdsa::Signature,
        >>::sign(&sk, MSG)
        .to_bytes()
        .to_vec();
        for host in [not_found as HostCall, unimplemented, garbage, nothing] {
            with_host(host, true);
            let before = stats();
            assert!(verify(Algorithm::RS256, &rsa_jwk(), MSG, &sig));
            assert!(!verify(Algorithm::RS256, &rsa_jwk(), MSG, &tampered(&sig)));
            assert!(verify(Algorithm::ES256, &ec, MSG, &ec_sig));
            assert!(!verify(Algorithm::ES256, &ec, MSG, &tampered(&ec_sig)));
            let d = delta(before);
            assert_eq!(
                (
                    d.native_verifications,
                    d.fallback_verifications,
                    d.native_errors
                ),
                (0, 4, 4)
            );
        }
    }

    #[test]
    fn key_envoy_refuses_falls_back() {
        // A host that answers BadArgument (Envoy: key not importable).
        fn bad_argument(_: &str, _: &[u8]) -> Result<Option<Vec<u8>>, u32> {
            Err(2)
        }
        with_host(bad_argument, true);
        let sig = rsa_sign(Algorithm::RS512, MSG);
        let before = stats();
        assert!(verify(Algorithm::RS512, &rsa_jwk(), MSG, &sig));
        assert_eq!(delta(before).native_errors, 1);
    }

    // ---- probe ------------------------------------------------------------

    #[test]
    fn probe_accepts_a_working_host_only() {
        fn always_true(_: &str, _: &[u8]) -> Result<Option<Vec<u8>>, u32> {
            Ok(Some(
                VerifySignatureResult {
                    result: true,
                    error: String::new(),
                }
                .encode_to_vec(),
            ))
        }
        fn always_false(_: &str, _: &[u8]) -> Result<Option<Vec<u8>>, u32> {
            Ok(Some(
                VerifySignatureResult {
                    result: false,
                    error: "no".into(),
                }
                .encode_to_vec(),
            ))
        }
        fn missing(_: &str, _: &[u8]) -> Result<Option<Vec<u8>>, u32> {
            Err(1)
        }
        let before = stats();
        with_host(fake_envoy, false);
        assert_eq!(activate(true), Backend::Native);
        assert_eq!(backend(), Backend::Native);
        let probes = host_calls();
        assert_eq!(probes.len(), 2);
        assert_eq!(probes[0].hash_function, "sha256");
        assert_eq!(probes[0].text, PROBE_MESSAGE);
        // Probe calls are not counted as verifications.
        assert_eq!(delta(before), Stats::default());

        for host in [always_true as HostCall, always_false, missing] {
            with_host(host, true);
            assert_eq!(activate(true), Backend::RustCrypto);
            assert_eq!(backend(), Backend::RustCrypto);
        }
        // Without probing the host is trusted.
        with_host(missing, false);
        assert_eq!(activate(false), Backend::Native);
        assert!(host_calls().is_empty());
    }

    #[test]
    fn probe_vector_is_valid() {
        let der = STANDARD.decode(PROBE_SPKI_B64).unwrap();
        let sig = STANDARD.decode(PROBE_SIGNATURE_B64).unwrap();
        let key = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
        let hashed = sha2::Sha256::digest(PROBE_MESSAGE);
        assert!(key
            .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hashed, &sig)
            .is_ok());
    }

    #[test]
    fn install_is_idempotent_and_verifies_through_jsonwebtoken() {
        with_host(fake_envoy, false);
        let first = install(true);
        let second = install(true);
        assert_eq!(first, second);
        if !install_provider() {
            // Another test of this binary used jsonwebtoken's default provider
            // before any install; nothing more to check here.
            assert_eq!(first, Backend::RustCrypto);
            return;
        }
        assert_eq!(first, Backend::Native);
        let sig = URL_SAFE_NO_PAD.encode(rsa_sign(Algorithm::RS256, MSG));
        let before = stats();
        CALLS.with(|c| c.borrow_mut().clear());
        assert!(jsonwebtoken::crypto::verify(&sig, MSG, &rsa_jwk(), Algorithm::RS256).unwrap());
        assert!(!jsonwebtoken::crypto::verify(&sig, b"x.y", &rsa_jwk(), Algorithm::RS256).unwrap());
        assert_eq!(delta(before).native_verifications, 2);
        assert_eq!(host_calls().len(), 2);
    }

    // ---- cache ------------------------------------------------------------

    #[test]
    fn key_cache_reuses_conversions_and_is_bounded() {
        with_host(fake_envoy, true);
        let key = rsa_jwk();
        let sig = rsa_sign(Algorithm::RS256, MSG);
        let before = stats();
        for _ in 0..5 {
            assert!(verify(Algorithm::RS256, &key, MSG, &sig));
        }
        assert_eq!(delta(before).key_conversions, 1);

        // The same material as PKCS#1 DER is a different cache entry.
        use rsa::pkcs1::EncodeRsaPublicKey;
        let pkcs1 = rsa_key().public.to_pkcs1_der().unwrap();
        assert!(verify(
            Algorithm::RS256,
            &DecodingKey::from_rsa_der(pkcs1.as_bytes()),
            MSG,
            &sig
        ));
        assert_eq!(delta(before).key_conversions, 2);

        // Many EC keys: the cache never exceeds its capacity.
        let keys: Vec<DecodingKey> = (0..KEY_CACHE_CAPACITY + 20).map(|_| p256_key().1).collect();
        for k in &keys {
            assert!(new_verifier(&Algorithm::ES256, k).is_ok());
            assert!(KEY_CACHE.with(|c| c.borrow().entries.len()) <= KEY_CACHE_CAPACITY);
        }
        assert_eq!(
            KEY_CACHE.with(|c| c.borrow().entries.len()),
            KEY_CACHE_CAPACITY
        );
        // The most recent keys are still cached; the oldest were evicted.
        let mid = stats();
        assert!(new_verifier(&Algorithm::ES256, keys.last().unwrap()).is_ok());
        assert_eq!(delta(mid).key_conversions, 0);
        assert!(new_verifier(&Algorithm::ES256, &keys[0]).is_ok());
        assert_eq!(delta(mid).key_conversions, 1);
    }

    #[test]
    fn key_cache_evicts_least_recently_used() {
        let mut cache = KeyCache::default();
        let mut converted = 0;
        let mut get = |cache: &mut KeyCache, i: usize| {
            cache.get_or_convert(vec![i as u8], || {
                converted += 1;
                Some(vec![i as u8])
            })
        };
        for i in 0..KEY_CACHE_CAPACITY {
            get(&mut cache, i);
        }
        get(&mut cache, 0); // refresh entry 0
        get(&mut cache, 200); // evicts entry 1, the least recently used
        assert_eq!(cache.entries.len(), KEY_CACHE_CAPACITY);
        assert!(cache.entries.contains_key(&vec![0]));
        assert!(!cache.entries.contains_key(&vec![1]));
        // Failed conversions are not cached.
        assert!(cache.get_or_convert(vec![250], || None).is_none());
        assert!(!cache.entries.contains_key(&vec![250]));
    }
}
