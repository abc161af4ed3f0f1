//! plan-ratelimit in global mode: two Envoys share one limit through a real
//! rate limit service (`pwf-rls`: Envoy's RateLimitService over gRPC, with
//! limitador counters in Redis), the local pre-check spares remote calls,
//! and an outage of the service applies `global.on_error`.

use pwf_tests::jwt::demo_token;
use pwf_tests::{EchoUpstream, Envoy, RateLimitService, Redis, Response};
use serde_json::{json, Value};

const CONFIG: &str = "envoy-configs/plan-ratelimit-global.yaml";
const ROOT_ID: &str = "plan-ratelimit";

fn metric(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(&format!("wasmcustom.plan_ratelimit.{name}"))
        .unwrap_or(0)
}

/// The service allows 5 requests per minute per client on plan free, and
/// 1000 per minute on pro.
fn service(redis: &Redis) -> RateLimitService {
    RateLimitService::builder()
        .redis(redis)
        .limits(json!({"limits": [
            {"name": "free", "domain": "plans", "max_value": 5, "seconds": 60,
             "match": {"plan": "free"}, "per": ["client"]},
            {"name": "pro", "domain": "plans", "max_value": 1000, "seconds": 60,
             "match": {"plan": "pro"}, "per": ["client"]}
        ]}))
        .start()
}

fn envoy(echo: &EchoUpstream, rls: &RateLimitService, plugin_config: Option<&Value>) -> Envoy {
    let mut builder = Envoy::builder(CONFIG)
        .upstream(18000, echo)
        .port(18200, rls.port());
    if let Some(c) = plugin_config {
        builder = builder.plugin_config_for(ROOT_ID, &c.to_string());
    }
    builder.start()
}

fn get(envoy: &Envoy, token: &str) -> Response {
    envoy
        .req("GET", "/g")
        .header("authorization", format!("Bearer {token}"))
        .send()
}

#[test]
fn two_envoys_share_one_limit_through_the_rate_limit_service() {
    let redis = Redis::start();
    let rls = service(&redis);
    let echo = EchoUpstream::start("api");
    let a = envoy(&echo, &rls, None);
    let b = envoy(&echo, &rls, None);
    let token = demo_token("frank", json!({"plan": "free"}));
    // 3 through A and 2 through B: each Envoy alone is under its local 5/s.
    for _ in 0..3 {
        assert_eq!(get(&a, &token).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&b, &token).status, 200);
    }
    // The 6th request of the minute is over the shared limit, whichever Envoy gets it.
    let denied = get(&a, &token);
    assert_eq!(denied.status, 429, "{}", denied.text());
    assert_eq!(denied.json()["error"], "rate_limited");
    let retry_after: u64 = denied.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // The service decided: its limit, not a local window, is named.
    assert_eq!(
        denied.json()["message"],
        "plan 'free': over the limit of the rate limit service"
    );
    assert_eq!(denied.header("ratelimit"), None);
    assert_eq!(get(&b, &token).status, 429);
    assert_eq!(rls.call_count(), 7, "every request asked the service");
    assert_eq!(echo.request_count(), 5);
    assert_eq!(metric(&a, "limited.free") + metric(&b, "limited.free"), 2);
    // The descriptor carried the plan and the client.
    let call = &rls.calls()[0];
    let text = call.to_string();
    assert!(
        text.contains("\"plans\"") && text.contains("frank"),
        "{text}"
    );
    // A pro client is unaffected.
    let pro = demo_token("gina", json!({"plan": "pro"}));
    assert_eq!(get(&a, &pro).status, 200);
}

#[test]
fn the_local_precheck_denies_without_a_remote_call() {
    let redis = Redis::start();
    let rls = service(&redis);
    let echo = EchoUpstream::start("api");
    // Locally pro allows 5 per minute; the service would allow 1000.
    let mut config = shipped_config();
    config["plans"]["pro"]["limits"] = json!([{"requests": 5, "per": "minute"}]);
    let a = envoy(&echo, &rls, Some(&config));
    let token = demo_token("hana", json!({"plan": "pro"}));
    let statuses: Vec<u16> = (0..8).map(|_| get(&a, &token).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    assert_eq!(
        rls.call_count(),
        5,
        "locally denied requests made no remote call"
    );
    assert_eq!(metric(&a, "limited.pro"), 3);
    assert_eq!(metric(&a, "rls_errors"), 0);
}

#[test]
fn a_service_outage_applies_on_error() {
    let redis = Redis::start();
    let mut rls = service(&redis);
    let echo = EchoUpstream::start("api");
    let open = envoy(&echo, &rls, None);
    let mut closed_config = shipped_config();
    closed_config["global"]["on_error"] = json!("deny");
    let closed = envoy(&echo, &rls, Some(&closed_config));
    let token = demo_token("ivan", json!({"plan": "free"}));
    assert_eq!(get(&open, &token).status, 200);
    rls.stop();
    // Fail open: allowed (the local limit still applies).
    assert_eq!(get(&open, &token).status, 200);
    assert!(open.wait_for_counter("wasmcustom.plan_ratelimit.rls_errors", 1) >= 1);
    // Fail closed: 503.
    let resp = get(&closed, &token);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["error"], "ratelimit_unavailable");
    // The service comes back: decisions come from it again.
    rls.restart();
    let back = pwf_tests::wait_until(std::time::Duration::from_secs(10), || {
        get(&closed, &token).status == 200
    });
    assert!(back, "requests pass again once the service is back");
}

#[test]
fn shadow_mode_counts_each_request_once() {
    // Both the local pre-check and the service would limit the 6th and 7th
    // requests; shadow mode lets them all through and counts each once.
    let redis = Redis::start();
    let rls = service(&redis);
    let echo = EchoUpstream::start("api");
    let mut config = shipped_config();
    config["mode"] = json!("shadow");
    config["plans"]["free"]["limits"] = json!([{"requests": 5, "per": "minute"}]);
    let a = envoy(&echo, &rls, Some(&config));
    let token = demo_token("kim", json!({"plan": "free"}));
    let statuses: Vec<u16> = (0..7).map(|_| get(&a, &token).status).collect();
    assert_eq!(statuses, [200; 7]);
    assert_eq!(rls.call_count(), 7);
    assert_eq!(metric(&a, "allowed.free"), 7);
    assert_eq!(metric(&a, "shadow_limited.free"), 2);
    assert_eq!(metric(&a, "limited.free"), 0);
}

#[test]
fn a_request_with_trailers_waits_for_the_service() {
    // A chunked request with a body and trailers waits for the service's
    // answer: allowed ones reach the upstream whole, the denied one not at
    // all. (Envoy holds body and trailers back while the header phase is
    // paused, so this does not exercise the filter's trailers callback,
    // which guards hosts that deliver them.)
    let redis = Redis::start();
    let rls = service(&redis);
    let echo = EchoUpstream::start("api");
    let mut config = shipped_config();
    config["global"]["local_precheck"] = json!(false);
    let a = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .port(18200, rls.port())
        .plugin_config_for(ROOT_ID, &config.to_string())
        .edit(pwf_tests::enable_request_trailers)
        .start();
    let token = demo_token("jack", json!({"plan": "free"}));
    let bearer = format!("Bearer {token}");
    let request =
        pwf_tests::request_with_trailers("POST", "/g", &[("authorization", bearer.as_str())]);
    let statuses: Vec<u16> = (0..6).map(|_| a.raw_request(&request).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    assert_eq!(rls.call_count(), 6);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        echo.request_count(),
        5,
        "the denied request never went upstream"
    );
    let last = echo.last_request().expect("forwarded");
    assert_eq!(last.body, b"hello");
}

/// The plugin configuration shipped in the config file.
fn shipped_config() -> Value {
    pwf_tests::plugin_config_of(CONFIG, ROOT_ID)
}
