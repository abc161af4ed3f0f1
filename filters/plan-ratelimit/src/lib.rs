//! plan-ratelimit: a proxy-wasm HTTP filter that enforces subscription-plan
//! rate limits, exact across Envoy worker threads.
//!
//! - [`config`]: serde types and validation;
//! - [`slots`], [`limiter`], [`identity`], [`headers`], [`rls`]: pure logic, unit-tested natively;
//! - [`glue`]: the proxy-wasm contexts.

pub mod config;
pub mod glue;
pub mod headers;
pub mod identity;
pub mod limiter;
pub mod rls;
pub mod slots;

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
