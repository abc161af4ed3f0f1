//! Rate limit response headers: `RateLimit-Policy` and `RateLimit` from
//! draft-ietf-httpapi-ratelimit-headers (structured fields), and optionally
//! the legacy `X-RateLimit-*` trio.

use crate::config::{Plan, ResponseHeadersConfig, Window};
use crate::limiter::WindowState;

/// Whole seconds, rounded up: a client waiting this long is never early.
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// `"free-second";q=5;w=1, "free-day";q=1000;w=86400` (built once per plan).
pub fn policy(windows: &[Window]) -> String {
    let mut out = String::new();
    for (i, w) in windows.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!(
            "\"{}\";q={};w={}",
            w.policy,
            w.requests,
            w.per.seconds()
        ));
    }
    out
}

/// The headers for a decision: `states` are the windows checked, and the one
/// with the fewest remaining requests is reported.
pub fn render(
    cfg: &ResponseHeadersConfig,
    plan: &Plan,
    states: &[WindowState],
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let Some(state) = states
        .iter()
        .min_by_key(|s| (s.remaining, u64::MAX - s.reset_ns))
    else {
        return out;
    };
    let Some(window) = plan.windows.get(state.window) else {
        return out;
    };
    let reset = ceil_secs(state.reset_ns);
    if cfg.draft {
        out.push(("ratelimit-policy", plan.policy_header.clone()));
        out.push((
            "ratelimit",
            format!("\"{}\";r={};t={reset}", window.policy, state.remaining),
        ));
    }
    if cfg.legacy {
        out.push(("x-ratelimit-limit", window.requests.to_string()));
        out.push(("x-ratelimit-remaining", state.remaining.to_string()));
        out.push(("x-ratelimit-reset", reset.to_string()));
    }
    out
}
