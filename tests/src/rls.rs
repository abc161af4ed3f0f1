//! A real global rate limit service for tests: the `pwf-rls` binary
//! (`tests/rls`: Envoy's `envoy.service.ratelimit.v3.RateLimitService` over
//! gRPC, with limitador's Redis storage), on 127.0.0.1 and a free port.
//!
//! ```no_run
//! use pwf_tests::{RateLimitService, Redis};
//! use serde_json::json;
//!
//! let redis = Redis::start();
//! let rls = RateLimitService::builder()
//!     .redis(&redis)
//!     .limits(json!({"limits": [
//!         {"name": "free", "domain": "plans", "max_value": 5, "seconds": 1,
//!          "match": {"plan": "free"}, "per": ["client"]}
//!     ]}))
//!     .start();
//! // Envoy's gRPC cluster for it: `.port(18081, rls.port())`.
//! let calls = rls.calls();     // one JSON object per ShouldRateLimit call
//! ```
//!
//! The binary must be built first: `cargo build -p pwf-rls` (`make test`
//! does); `$PWF_RLS_BIN` overrides its path. The service exits by itself when
//! the test process dies (its stdin closes).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::child::{read_ready_line, ChildProcess, Orphan};
use crate::{repo_root, wait_until};

/// How long `pwf-rls` may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `pwf-rls` binary: `$PWF_RLS_BIN`, else `debug/pwf-rls` in
/// `$CARGO_TARGET_DIR` or `<repo>/target`.
pub fn rls_bin() -> PathBuf {
    if let Some(v) = std::env::var_os("PWF_RLS_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    };
    target.join("debug/pwf-rls")
}

/// Configures and starts a [`RateLimitService`]; see
/// [`RateLimitService::builder`].
#[derive(Debug, Clone, Default)]
pub struct RateLimitServiceBuilder {
    redis_url: Option<String>,
    limits: Option<String>,
    port: u16,
}

impl RateLimitServiceBuilder {
    /// Keep the counters in this Redis (required).
    pub fn redis(mut self, redis: &crate::Redis) -> Self {
        self.redis_url = Some(redis.url());
        self
    }

    /// Keep the counters in the Redis at this URL (`redis://host:port`).
    pub fn redis_url(mut self, url: &str) -> Self {
        self.redis_url = Some(url.to_owned());
        self
    }

    /// The limits (required): a JSON value or a JSON/YAML string, e.g.
    /// `{"limits": [{"name": "free", "domain": "plans", "max_value": 5,
    /// "seconds": 1, "match": {"plan": "free"}, "per": ["client"]}]}`.
    /// Each descriptor is checked on its own; a limit applies to a
    /// descriptor with every `match` entry (that value) and every `per`
    /// entry, and counts per distinct value of the `per` entries. See
    /// `tests/rls/src/limits.rs`.
    pub fn limits(mut self, limits: impl std::fmt::Display) -> Self {
        self.limits = Some(limits.to_string());
        self
    }

    /// Listen on this port (default 0: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Starts the service and waits (up to 20 s) for its ready line. Panics
    /// with the stderr tail if it does not come (e.g. Redis unreachable, a
    /// bad limit), and with the build command if the binary is missing.
    pub fn start(self) -> RateLimitService {
        let redis_url = self
            .redis_url
            .clone()
            .expect("RateLimitService needs .redis(&redis) or .redis_url(url)");
        let limits = self
            .limits
            .clone()
            .expect("RateLimitService needs .limits(..)");
        let mut svc = RateLimitService {
            proc: None,
            port: self.port,
            redis_url,
            limits,
            calls: Arc::new(Mutex::new(Vec::new())),
        };
        svc.spawn();
        svc
    }
}

/// A running `pwf-rls`; killed (SIGKILL, by PID) when dropped.
#[derive(Debug)]
pub struct RateLimitService {
    proc: Option<ChildProcess>,
    port: u16,
    redis_url: String,
    limits: String,
    calls: Arc<Mutex<Vec<Value>>>,
}

impl RateLimitService {
    /// A builder for the Redis, the limits and the port.
    pub fn builder() -> RateLimitServiceBuilder {
        RateLimitServiceBuilder::default()
    }

    /// The port it listens on (127.0.0.1, gRPC over HTTP/2 cleartext). It
    /// stays the same across [`RateLimitService::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(ChildProcess::pid)
    }

    /// Whether the service runs (was not stopped and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(ChildProcess::is_running)
    }

    /// Kills the service (an outage: connections are refused). Does nothing
    /// if it is stopped already.
    pub fn stop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Stops it if running, then starts it again on the same port with the
    /// same Redis and limits (the counters are in Redis, so they survive).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every `ShouldRateLimit` call so far, in order, as the service logged
    /// it: `{"domain", "descriptors": [[{"key": "value"}, ..], ..], "hits":
    /// [n, ..], "overall": "OK"|"OVER_LIMIT", "statuses": [{"code", "limit",
    /// "remaining", "reset_ms"}, ..]}`, or `{"domain", "descriptors",
    /// "error"}` when the storage failed (the call answered UNAVAILABLE).
    pub fn calls(&self) -> Vec<Value> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The number of calls so far.
    pub fn call_count(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or_default()
    }

    /// Waits (up to 10 s) until at least `n` calls were logged; returns the
    /// count. Panics on timeout.
    pub fn wait_for_calls(&self, n: usize) -> usize {
        let ok = wait_until(Duration::from_secs(10), || self.call_count() >= n);
        assert!(
            ok,
            "rate limit service: {} calls, expected at least {n}",
            self.call_count()
        );
        self.call_count()
    }

    /// Forgets the calls logged so far.
    pub fn clear_calls(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }

    /// The last `n` lines of the service's stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        match &self.proc {
            Some(p) => p.output_tail(n),
            None => String::from("(stopped)"),
        }
    }

    fn spawn(&mut self) {
        let bin = rls_bin();
        assert!(
            bin.exists(),
            "{} not found: build it with `cargo build -p pwf-rls` (`make test` does), \
             or set PWF_RLS_BIN",
            bin.display()
        );
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--redis", &self.redis_url])
            .args(["--limits-json", &self.limits])
            .arg("--exit-on-stdin-close");
        let (proc, stdout) = ChildProcess::spawn(&mut cmd, Orphan::ExitsOnStdinClose, false)
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        // stdout: the ready line, then one JSON line per call.
        let calls = Arc::clone(&self.calls);
        let logged = move |line: String| {
            let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if let Ok(mut calls) = calls.lock() {
                calls.push(v);
            }
        };
        match read_ready_line("pwf-rls", &proc, stdout, START_TIMEOUT, logged) {
            Ok((_, port)) => self.port = port,
            Err(e) => panic!("{e}"),
        }
        self.proc = Some(proc);
    }
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        if std::thread::panicking() && self.proc.is_some() {
            eprintln!(
                "---- pwf-rls :{} stderr tail:\n{}\n----",
                self.port,
                self.stderr_tail(20)
            );
        }
        self.stop();
    }
}
