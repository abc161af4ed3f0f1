//! jwt-auth: a proxy-wasm HTTP filter that validates bearer JWTs.
//!
//! - [`config`]: serde types and validation;
//! - [`token`], [`jwks`], [`verify`], [`rules`], [`outputs`], [`cache`], [`access`]: pure logic, unit-tested natively;
//! - [`native_crypto`]: RSA and ECDSA verification through Envoy's `verify_signature` foreign function;
//! - [`glue`]: the proxy-wasm contexts, JWKS fetching and sharing across workers.

pub mod access;
pub mod cache;
pub mod config;
pub mod glue;
pub mod jwks;
pub mod native_crypto;
pub mod outputs;
pub mod remote;
pub mod rules;
pub mod token;
pub mod verify;

// Native tests of the pure modules (src/tests/).
#[cfg(test)]
mod tests;

// Only in the Wasm module: every filter exports `_initialize`, so native
// builds that link several filters (xtask, tests) leave the entry point out.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(crate::glue::Root::default()));
    }}
}
