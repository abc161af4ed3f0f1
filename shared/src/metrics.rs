//! Metrics through proxy-wasm.
//!
//! Naming convention: `<filter>.<metric>` in snake_case, with a dimension as a
//! further segment (`jwt_auth.denied.expired`). Envoy exposes them under the
//! `wasmcustom.` stats prefix, e.g. `wasmcustom.header_transform.rules_applied`.
//!
//! Metrics are defined once per VM (in `on_configure`) and the ids shared with
//! HTTP contexts. A metric the host refuses to define becomes a no-op rather
//! than an error: metrics must never break request handling.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

fn define(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("cannot define metric {name}: {status:?}");
            None
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Counter(Option<u32>);

impl Counter {
    pub fn define(name: &str) -> Self {
        Self(define(MetricType::Counter, name))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`; adding 0 makes no host call.
    pub fn add(&self, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Gauge(Option<u32>);

impl Gauge {
    pub fn define(name: &str) -> Self {
        Self(define(MetricType::Gauge, name))
    }

    pub fn set(&self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Histogram(Option<u32>);

impl Histogram {
    pub fn define(name: &str) -> Self {
        Self(define(MetricType::Histogram, name))
    }

    pub fn record(&self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}
