//! {{name}}: a proxy-wasm HTTP filter that sets configured headers on the
//! responses to matching requests and counts the requests it sees.
//!
//! - [`config`]: serde types and validation;
//! - [`logic`]: what the filter decides, pure and unit-tested natively;
//! - [`glue`]: the proxy-wasm contexts.

pub mod config;
pub mod glue;
pub mod logic;

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
