//! Building blocks shared by every filter in this workspace.
//!
//! Pure modules (`config`, `headers`, `matcher`, `reply`, `shared_data`, `log`)
//! contain no host calls, so filters unit-test their logic natively. The `host`
//! module holds the few non-panicking wrappers around proxy-wasm host calls.

pub mod abi;
pub mod backoff;
pub mod config;
pub mod headers;
pub mod held;
pub mod host;
pub mod log;
pub mod matcher;
pub mod metrics;
pub mod reply;
pub mod secret;
pub mod shared_data;

pub use config::{ConfigError, FieldPath};
pub use headers::HeaderList;
pub use matcher::{RequestMatch, RequestMatcher, StringMatch, StringMatcher};
