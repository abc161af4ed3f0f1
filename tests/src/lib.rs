//! Test support for running the proxy-wasm filters inside a real Envoy.
//!
//! The pieces:
//!
//! - [`EchoUpstream`]: an in-process HTTP/1.1 upstream that answers every
//!   request with a JSON description of what it received.
//! - [`Envoy`] / [`EnvoyBuilder`]: renders one of the `envoy-configs/*.yaml`
//!   files (or an inline YAML string) with free ports, absolute `.wasm` paths
//!   and an optional plugin configuration, starts Envoy and waits until it is
//!   ready. Envoy is killed when the value is dropped.
//! - [`HttpClient`] / [`Response`]: an HTTP client that never treats a status
//!   code as an error, plus [`HttpClient::raw_request`] for bytes that no
//!   well-behaved client would send.
//! - [`validate`] / [`EnvoyBuilder::validate`]: `envoy --mode validate`.
//!
//! ```no_run
//! use pwf_tests::{EchoUpstream, Envoy};
//!
//! let upstream = EchoUpstream::start("echo");
//! let envoy = Envoy::builder("envoy-configs/passthrough.yaml")
//!     .upstream(18000, &upstream)
//!     .start();
//! let resp = envoy.get("/anything?x=1");
//! assert_eq!(resp.status, 200);
//! assert_eq!(resp.json()["query"]["x"], "1");
//! ```
//!
//! Environment variables:
//!
//! - `ENVOY_BIN`: the Envoy binary (default `<repo>/.venv/bin/envoy`, installed
//!   by `make setup`).
//! - `PWF_KEEP_TMP=1`: keep every test's temp dir (rendered config and Envoy
//!   log). They are always kept when the test panics; the path is printed.

mod body_upstream;
mod child;
mod chunked_client;
mod client;
mod config_files;
pub mod dist;
mod echo;
mod envoy;
mod file_server;
mod host_calls;
mod idp;
pub mod jwt;
mod ports;
mod redis;
mod registry;
mod render;
mod rls;
pub mod standalone;
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use body_upstream::{
    gunzip, gzip, split_pieces, BodyRequest, BodyUpstream, Framing, ResponseSpec,
};
pub use chunked_client::{get_streamed, PieceRequest, PieceResponse};
pub use client::{HttpClient, RawResponse, RequestBuilder, Response};
pub use config_files::{
    enable_request_trailers, filter_names, http_filters, load_config_file, plugin_config_of,
    request_with_trailers,
};
pub use echo::{EchoUpstream, EchoUpstreamBuilder, ReceivedRequest};
pub use envoy::{validate, Envoy, EnvoyBuilder, ValidateResult};
pub use file_server::FileServer;
pub use host_calls::trace_one_request;
pub use idp::{jwt_parts, Idp, IdpBuilder};
pub use ports::free_port;
pub use redis::{Redis, Resp};
pub use registry::Registry;
pub use render::{render, RenderOptions, Rendered};
pub use rls::{rls_bin, RateLimitService, RateLimitServiceBuilder};

/// Runs `cmd` and returns its stdout; panics with the command, its status
/// and its output unless it exits 0.
pub fn run_ok(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The workspace root (the directory holding `envoy-configs/`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// The Envoy binary: `$ENVOY_BIN` if set, else `<repo>/.venv/bin/envoy`.
///
/// Panics with a hint to run `make setup` if the file does not exist.
pub fn envoy_bin() -> PathBuf {
    let bin = match std::env::var_os("ENVOY_BIN") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => repo_root().join(".venv/bin/envoy"),
    };
    assert!(
        bin.exists(),
        "Envoy binary {} not found: run `make setup` (or set ENVOY_BIN)",
        bin.display()
    );
    bin
}

/// Polls `cond` every 20 ms until it returns true or `timeout` passes.
/// Returns whether it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of `text`, for failure messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
