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

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{repo_root, tail, wait_until};

/// How long `pwf-rls` may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// At most this much of the service's stderr is kept (the tail).
const STDERR_KEEP: usize = 64 * 1024;

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
    proc: Option<RlsProcess>,
    port: u16,
    redis_url: String,
    limits: String,
    calls: Arc<Mutex<Vec<Value>>>,
}

#[derive(Debug)]
struct RlsProcess {
    child: Child,
    /// Held open: the service exits when it closes.
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

impl RlsProcess {
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.stdin.take());
    }
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
        self.proc.as_ref().map(|p| p.child.id())
    }

    /// Whether the service runs (was not stopped and has not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.proc {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
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
            Some(p) => tail(&p.stderr.lock().map(|b| b.clone()).unwrap_or_default(), n),
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
        let mut child = Command::new(&bin)
            .args(["--port", &self.port.to_string()])
            .args(["--redis", &self.redis_url])
            .args(["--limits-json", &self.limits])
            .arg("--exit-on-stdin-close")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

        let stderr_buf = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let buf = Arc::clone(&stderr_buf);
        std::thread::spawn(move || drain(stderr, &buf));

        // stdout: the ready line, then one JSON line per call.
        let stdout = child.stdout.take().expect("piped stdout");
        let calls = Arc::clone(&self.calls);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for line in lines {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if let Ok(mut calls) = calls.lock() {
                    calls.push(v);
                }
            }
        });

        let stdin = child.stdin.take();
        let proc = RlsProcess {
            child,
            stdin,
            stderr: stderr_buf,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                // Let the stderr reader catch up with a process that exited.
                std::thread::sleep(Duration::from_millis(100));
                let err = tail(
                    &proc.stderr.lock().map(|b| b.clone()).unwrap_or_default(),
                    30,
                );
                proc.kill();
                panic!("pwf-rls did not print its ready line ({e}); stderr tail:\n{err}");
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("pwf-rls ready line is not JSON ({e}): {line}"));
        assert_eq!(
            ready["ready"], true,
            "unexpected pwf-rls ready line: {line}"
        );
        self.port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("pwf-rls ready line lacks port: {line}"));
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

fn drain(mut stderr: impl Read, buf: &Mutex<String>) {
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stderr.read(&mut chunk) {
        if n == 0 {
            break;
        }
        let Ok(mut buf) = buf.lock() else { break };
        buf.push_str(&String::from_utf8_lossy(chunk.get(..n).unwrap_or_default()));
        if buf.len() > 2 * STDERR_KEEP {
            let mut cut = buf.len() - STDERR_KEEP;
            while !buf.is_char_boundary(cut) {
                cut += 1;
            }
            buf.drain(..cut);
        }
    }
}
