//! dlp-redact: a proxy-wasm filter that finds card numbers, national IDs,
//! credentials and personal data in request and response bodies, headers and
//! query strings, and masks, hashes, removes, tags or blocks them, streaming:
//! between body chunks it holds back only what may still begin a value.
//!
//! - [`config`]: serde types and validation;
//! - [`detectors`]: the built-in catalog and validators;
//! - [`scanner`], [`skipping`], [`pivot`], [`redact`], [`stream`], [`tail`], [`rewrite`],
//!   [`json_fields`]: pure logic, unit-tested natively;
//! - [`glue`]: the proxy-wasm contexts.

pub mod body;
pub mod config;
pub mod detectors;
pub mod glue;
pub mod json_fields;
pub mod pivot;
pub mod query;
pub mod redact;
pub mod rewrite;
pub mod scanner;
pub mod skipping;
pub mod stream;
pub mod tail;

// Only in the Wasm module: every filter exports `_initialize`, so native
// builds that link several filters (xtask, tests) leave the entry point out.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(crate::glue::Root::default()));
    }}
}

#[cfg(test)]
mod tests;
