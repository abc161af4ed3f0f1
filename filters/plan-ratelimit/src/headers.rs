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
    // A burst above `requests` can leave more than the policy's quota; the
    // headers never report more remaining than the quota they name.
    let reported = |s: &WindowState| {
        let window = plan.windows.get(s.window)?;
        Some((window, s.remaining.min(window.requests), s.reset_ns))
    };
    let Some((window, remaining, reset_ns)) = states
        .iter()
        .filter_map(reported)
        .min_by_key(|&(_, remaining, reset_ns)| (remaining, u64::MAX - reset_ns))
    else {
        return out;
    };
    let reset = ceil_secs(reset_ns);
    if cfg.draft {
        out.push(("ratelimit-policy", plan.policy_header.clone()));
        out.push((
            "ratelimit",
            format!("\"{}\";r={remaining};t={reset}", window.policy),
        ));
    }
    if cfg.legacy {
        out.push(("x-ratelimit-limit", window.requests.to_string()));
        out.push(("x-ratelimit-remaining", remaining.to_string()));
        out.push(("x-ratelimit-reset", reset.to_string()));
    }
    out
}
