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
            ratelimit_value(&window.policy, remaining, reset),
        ));
    }
    if cfg.legacy {
        out.push(("x-ratelimit-limit", decimal(window.requests)));
        out.push(("x-ratelimit-remaining", decimal(remaining)));
        out.push(("x-ratelimit-reset", decimal(reset)));
    }
    out
}

// The headers are rendered on every request: built by hand, not with
// `format!`, whose machinery costs several times more in Wasm.

/// `"<policy>";r=<remaining>;t=<reset>`.
fn ratelimit_value(policy: &str, remaining: u32, reset: u64) -> String {
    let mut r = itoa::Buffer::new();
    let r = r.format(remaining);
    let mut t = itoa::Buffer::new();
    let t = t.format(reset);
    let mut out = String::with_capacity(policy.len() + r.len() + t.len() + 8);
    out.push('"');
    out.push_str(policy);
    out.push_str("\";r=");
    out.push_str(r);
    out.push_str(";t=");
    out.push_str(t);
    out
}

fn decimal(n: impl itoa::Integer) -> String {
    itoa::Buffer::new().format(n).to_owned()
}
