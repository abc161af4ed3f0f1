//! header-transform: a proxy-wasm HTTP filter that sets, adds, removes,
//! renames, copies and regex-rewrites request and response headers, query
//! parameters and the path, with value templates.
//!
//! - [`config`]: serde types and validation;
//! - [`template`], [`query`], [`transform`]: pure logic, unit-tested natively;
//! - [`glue`]: the proxy-wasm contexts.

pub mod config;
pub mod glue;
pub mod query;
pub mod template;
pub mod transform;

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
