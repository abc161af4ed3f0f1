//! cos-router: a proxy-wasm HTTP filter that puts each request in a class of
//! service and in the variants of sticky experiments, and writes request
//! headers that Envoy's route table routes on.
//!
//! - [`config`]: serde types and validation;
//! - [`conditions`], [`cidr`], [`cookie`], [`experiment`], [`router`]: pure
//!   logic, unit-tested natively;
//! - [`glue`]: the proxy-wasm contexts.

pub mod cidr;
pub mod conditions;
pub mod config;
pub mod cookie;
pub mod experiment;
pub mod glue;
pub mod router;

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
