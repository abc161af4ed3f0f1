//! plan-ratelimit in a real Envoy, behind jwt-auth: plans from verified
//! claims, exact limits across 4 workers (and the per-worker limiter that
//! fails the same test), response headers, Retry-After, shadow mode, the
//! bounded slot table, and bad configs.

use pwf_tests::jwt::demo_token;
use pwf_tests::{EchoUpstream, Envoy, HttpClient, Idp, Response};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = "envoy-configs/plan-ratelimit.yaml";
const ROOT_ID: &str = "plan-ratelimit";

fn metric(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(&format!("wasmcustom.plan_ratelimit.{name}"))
        .unwrap_or(0)
}

fn start(config: Option<&Value>, concurrency: u32) -> (Envoy, EchoUpstream) {
    let echo = EchoUpstream::start("api");
    let mut builder = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .concurrency(concurrency);
    if let Some(c) = config {
        builder = builder.plugin_config_for(ROOT_ID, &c.to_string());
    }
    (builder.start(), echo)
}

fn get(envoy: &Envoy, path: &str, token: Option<&str>) -> Response {
    let mut req = envoy.req("GET", path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send()
}

fn assert_limited(resp: &Response, plan: &str, limit: &str) {
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(
        body,
        json!({"error": "rate_limited", "message": format!("plan '{plan}': {limit}"), "status": 429})
    );
}

#[test]
fn a_free_client_is_limited_while_a_pro_client_passes() {
    let (envoy, echo) = start(None, 2);
    let free = demo_token("alice", json!({"plan": "free"}));
    let pro = demo_token("bob", json!({"plan": "pro"}));
    for i in 0..5 {
        assert_eq!(
            get(&envoy, "/a", Some(&free)).status,
            200,
            "free request {i}"
        );
    }
    assert_limited(
        &get(&envoy, "/a", Some(&free)),
        "free",
        "at most 5 requests per second",
    );
    for i in 0..20 {
        assert_eq!(get(&envoy, "/a", Some(&pro)).status, 200, "pro request {i}");
    }
    // Another free client has its own bucket.
    let carol = demo_token("carol", json!({"plan": "free"}));
    assert_eq!(get(&envoy, "/a", Some(&carol)).status, 200);
    assert_eq!(echo.request_count(), 26);
    assert_eq!(metric(&envoy, "allowed.free"), 6);
    assert_eq!(metric(&envoy, "limited.free"), 1);
    assert_eq!(metric(&envoy, "allowed.pro"), 20);
}

#[test]
fn headers_are_exact_and_retry_after_is_honoured() {
    let (envoy, _echo) = start(None, 1);
    let token = demo_token("dave", json!({"plan": "free"}));
    let policy = "\"free-second\";q=5;w=1, \"free-day\";q=1000;w=86400";
    for remaining in (0..5).rev() {
        let resp = get(&envoy, "/h", Some(&token));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("ratelimit-policy"), Some(policy));
        assert_eq!(
            resp.header("ratelimit"),
            Some(format!("\"free-second\";r={remaining};t=1").as_str())
        );
        assert_eq!(resp.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            resp.header("x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
        assert_eq!(resp.header("x-ratelimit-reset"), Some("1"));
    }
    let denied = get(&envoy, "/h", Some(&token));
    assert_limited(&denied, "free", "at most 5 requests per second");
    assert_eq!(denied.header("retry-after"), Some("1"));
    assert_eq!(denied.header("ratelimit-policy"), Some(policy));
    assert_eq!(denied.header("ratelimit"), Some("\"free-second\";r=0;t=1"));
    assert_eq!(denied.header("x-ratelimit-remaining"), Some("0"));
    std::thread::sleep(Duration::from_secs(1));
    let retried = get(&envoy, "/h", Some(&token));
    assert_eq!(retried.status, 200, "a retry after Retry-After passes");
}

#[test]
fn anonymous_clients_get_the_fallback_plan_per_address_and_rules_set_the_cost() {
    let (envoy, _echo) = start(None, 1);
    // /reports/ costs 5: the first uses the whole free burst.
    assert_eq!(get(&envoy, "/reports/q1", None).status, 200);
    assert_limited(
        &get(&envoy, "/x", None),
        "free",
        "at most 5 requests per second",
    );
    // /health is never limited.
    for _ in 0..10 {
        assert_eq!(get(&envoy, "/health", None).status, 200);
    }
    // An API key is a separate client.
    let resp = envoy.req("GET", "/x").header("x-api-key", "k-123").send();
    assert_eq!(resp.status, 200);
    assert_eq!(metric(&envoy, "allowed.free"), 2);
}

#[test]
fn plans_come_from_real_idp_tokens_verified_by_jwt_auth() {
    let idp = Idp::start();
    let echo = EchoUpstream::start("api");
    let jwt_auth = json!({
        "providers": [{"name": "idp", "issuer": idp.issuer(), "audiences": ["api://default"],
                       "jwks": {"remote": {"cluster": "idp", "path": idp.jwks_path()}}}],
        "rules": [{"match": {}, "requires": {"provider": "idp"}}]
    });
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .port(18100, idp.port())
        .plugin_config_for("jwt-auth", &jwt_auth.to_string())
        .start();
    let free = idp.token_post("svc-b", "svc-b-secret"); // plan "free"
    let pro = idp.token("svc-a", "svc-a-secret"); // plan "pro"
    let statuses: Vec<u16> = (0..7)
        .map(|_| get(&envoy, "/r", Some(&free)).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    for _ in 0..20 {
        assert_eq!(get(&envoy, "/r", Some(&pro)).status, 200);
    }
    // Without a token jwt-auth answers 401 before the limiter runs.
    assert_eq!(get(&envoy, "/r", None).status, 401);
    assert_eq!(metric(&envoy, "limited.free"), 2);
    assert_eq!(metric(&envoy, "allowed.pro"), 20);
}

#[test]
fn shadow_mode_counts_but_never_rejects() {
    let mut config = shipped_config();
    config["mode"] = json!("shadow");
    let (envoy, _echo) = start(Some(&config), 1);
    let token = demo_token("erin", json!({"plan": "free"}));
    for _ in 0..8 {
        let resp = get(&envoy, "/s", Some(&token));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("ratelimit"), None, "no headers in shadow mode");
    }
    assert_eq!(metric(&envoy, "shadow_limited.free"), 3);
    assert_eq!(metric(&envoy, "limited.free"), 0);
}

/// One client hammering one plan from many connections for `run`: returns
/// (admitted, expected by the quota, tolerance).
fn hammer(scope: &str) -> (u64, f64, f64) {
    const RATE: u32 = 200;
    const BURST: u32 = 20;
    let config = json!({
        "plans": {"metered": {"limits": [{"requests": RATE, "per": "second", "burst": BURST}]}},
        "fallback_plan": "metered",
        "client_from": [{"header": "x-api-key"}],
        "response_headers": {"draft": false},
        "store": {"scope": scope}
    });
    let (envoy, _echo) = start(Some(&config), 4);
    let admitted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let run = Duration::from_secs(4);
    let started = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (admitted, stop) = (Arc::clone(&admitted), Arc::clone(&stop));
            let client = HttpClient::new(envoy.port());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let resp = client
                        .req("GET", "/m")
                        .header("x-api-key", "one-client")
                        .send();
                    if resp.status == 200 {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = metric(&envoy, "allowed.metered") + metric(&envoy, "limited.metered");
    assert!(
        total as f64 > f64::from(RATE) * 4.0 * elapsed,
        "the load ({total} requests in {elapsed:.1} s) must exceed 4 workers x the rate"
    );
    let expected = f64::from(RATE) * elapsed;
    let tolerance = expected * 0.01 + f64::from(BURST);
    (admitted.load(Ordering::Relaxed), expected, tolerance)
}

#[test]
fn one_limit_is_exact_across_four_workers() {
    let (admitted, expected, tolerance) = hammer("shared");
    assert!(
        (admitted as f64 - expected).abs() <= tolerance,
        "admitted {admitted}, quota over the interval {expected:.0} (± {tolerance:.0})"
    );
}

#[test]
fn a_per_worker_limiter_fails_the_same_exactness_check() {
    let (admitted, expected, tolerance) = hammer("per_worker");
    assert!(
        (admitted as f64 - expected).abs() > tolerance,
        "per-worker limiting should admit far more than the quota: admitted {admitted}, quota {expected:.0} (± {tolerance:.0})"
    );
}

#[test]
fn bad_configs_fail_envoy_validation_naming_the_field() {
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut c = shipped_config();
    c["fallback_plan"] = json!("gold");
    cases.push((c, "fallback_plan: 'gold' is not a plan in 'plans'"));
    let mut c = shipped_config();
    c["plans"]["free"]["limits"][0]["per"] = json!("fortnight");
    cases.push((c, "plans.free.limits[0].per: unknown variant `fortnight`"));
    let mut c = shipped_config();
    c["rules"][1]["cost"] = json!(6);
    cases.push((
        c,
        "rules[1].cost: 6 is more than the smallest burst of any plan window (5): such requests could never pass",
    ));
    let mut c = shipped_config();
    c["store"]["slots"] = json!(1);
    cases.push((c, "store.slots: must be a power of two from 16 to 1048576"));
    for (config, expected) in cases {
        let result = Envoy::builder(CONFIG)
            .plugin_config_for(ROOT_ID, &config.to_string())
            .validate();
        assert!(!result.ok, "accepted: {config}");
        assert!(
            result.output.contains(expected),
            "{expected}\n{}",
            result.output
        );
    }
}

#[test]
fn a_hundred_thousand_distinct_clients_stay_within_the_slot_table() {
    const CLIENTS: u64 = 100_000;
    // A client holds its slot for 200 ms (one request of a 5/s plan): at a
    // few thousand requests per second a few hundred slots are live at once.
    const SLOTS: u64 = 4096;
    let config = json!({
        "plans": {"free": {"limits": [{"requests": 5, "per": "second"}]}},
        "fallback_plan": "free",
        "client_from": [{"header": "x-api-key"}],
        "response_headers": {"draft": false},
        "store": {"slots": SLOTS}
    });
    let (envoy, _echo) = start(Some(&config), 2);
    let next = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let next = Arc::clone(&next);
            let client = HttpClient::new(envoy.port());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= CLIENTS {
                    break;
                }
                let resp = client
                    .req("GET", "/c")
                    .header("x-api-key", format!("client-{i}"))
                    .send();
                assert_eq!(resp.status, 200, "client {i}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 100,000 clients through 4,096 slots, all allowed and none without a
    // slot: expired slots were reused (about 24 times each), so the table
    // never needed to grow. (Natively, tests in the crate check that the
    // store's key count does not change.)
    assert_eq!(metric(&envoy, "allowed.free"), CLIENTS);
    assert_eq!(metric(&envoy, "store_full"), 0);
    // The table keeps its configured size (the occupancy count itself is
    // checked exactly by the next test).
    assert_eq!(metric(&envoy, "store.slots"), SLOTS);
}

#[test]
fn the_occupancy_gauge_counts_the_clients_holding_a_slot() {
    // Day-long state: each client stays live for the whole test. The table
    // (2,048 slots, counted 1,024 per second) takes two ticks per pass.
    let config = json!({
        "plans": {"daily": {"limits": [{"requests": 100, "per": "day"}]}},
        "fallback_plan": "daily",
        "client_from": [{"header": "x-api-key"}],
        "store": {"slots": 2048}
    });
    let (envoy, _echo) = start(Some(&config), 2);
    for i in 0..7 {
        let resp = envoy
            .req("GET", "/o")
            .header("x-api-key", format!("key-{i}"))
            .send();
        assert_eq!(resp.status, 200);
    }
    // A pass that started before the requests may count fewer; the next one
    // counts all seven, and never more.
    let live = envoy.wait_for_counter("wasmcustom.plan_ratelimit.store.live_slots", 7);
    assert_eq!(live, 7);
    assert_eq!(metric(&envoy, "store.slots"), 2048);
}

#[test]
fn counting_a_large_slot_table_never_stalls_envoy() {
    // The largest table. The occupancy count runs on whichever thread's VM
    // holds the scan lease: a worker, or the main thread, which answers the
    // admin interface. Counted whole every 10 s, the table kept that thread
    // busy for about 2 s each time (the admin interface did not answer for
    // 2.2 s); counted 1,024 slots per tick, neither waits for it. (The count
    // itself is checked by the test above.)
    let config = json!({
        "plans": {"free": {"limits": [{"requests": 1000, "per": "second"}]}},
        "fallback_plan": "free",
        "store": {"slots": 1_048_576}
    });
    let (envoy, _echo) = start(Some(&config), 1);
    let until = Instant::now() + Duration::from_secs(12);
    let (mut slowest_request, mut slowest_admin) = (Duration::ZERO, Duration::ZERO);
    while Instant::now() < until {
        let t = Instant::now();
        assert_eq!(envoy.req("GET", "/s").send().status, 200);
        slowest_request = slowest_request.max(t.elapsed());
        let t = Instant::now();
        let _ = metric(&envoy, "store.slots");
        slowest_admin = slowest_admin.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    let limit = Duration::from_millis(500);
    assert!(
        slowest_request < limit,
        "a request waited {slowest_request:?}"
    );
    assert!(
        slowest_admin < limit,
        "the admin interface waited {slowest_admin:?}"
    );
}

/// 40 clients with day-long state through a 16-slot table: most find no
/// free slot, and `on_store_error` decides.
fn store_full_outcome(on_store_error: &str) -> (Vec<u16>, u64) {
    let config = json!({
        "plans": {"daily": {"limits": [{"requests": 100, "per": "day"}]}},
        "fallback_plan": "daily",
        "client_from": [{"header": "x-api-key"}],
        "store": {"slots": 16},
        "on_store_error": on_store_error
    });
    let (envoy, _echo) = start(Some(&config), 1);
    let statuses: Vec<u16> = (0..40)
        .map(|i| {
            envoy
                .req("GET", "/f")
                .header("x-api-key", format!("key-{i}"))
                .send()
                .status
        })
        .collect();
    (statuses, metric(&envoy, "store_full"))
}

#[test]
fn a_full_slot_table_fails_open_or_closed_as_configured() {
    let (open, full) = store_full_outcome("allow");
    assert!(open.iter().all(|s| *s == 200), "{open:?}");
    assert!(
        full >= 24,
        "at most 16 clients got a slot: {full} without one"
    );
    let (closed, full) = store_full_outcome("deny");
    let denied = closed.iter().filter(|s| **s == 503).count() as u64;
    assert_eq!(denied, full, "{closed:?}");
    assert!(full >= 24, "{full}");
    assert_eq!(
        closed.iter().filter(|s| **s == 200).count() as u64,
        40 - full
    );
}

/// The plugin configuration shipped in the config file.
fn shipped_config() -> Value {
    pwf_tests::plugin_config_of(CONFIG, ROOT_ID)
}
