//! jwt-acquire: a proxy-wasm HTTP filter that obtains OAuth2 access tokens
//! with the client-credentials grant and injects them into requests.
//!
//! - [`config`]: serde types and validation; builds the token request once;
//! - [`endpoint`], [`schedule`], [`inject`]: pure logic, unit-tested natively;
//! - [`glue`]: the proxy-wasm contexts, fetching shared across workers, held requests.

pub mod config;
pub mod endpoint;
pub mod glue;
pub mod inject;
pub mod schedule;

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
