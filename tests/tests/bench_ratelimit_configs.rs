//! The plan-ratelimit bench configs (`bench/configs/ratelimit-*.yaml`, suite
//! `bench/suites/plan-ratelimit.json`) compare plan-ratelimit in local mode
//! with Envoy's native `local_ratelimit`; the comparison is only fair if both
//! enforce the same limit and write rate limit headers. These tests check
//! that the two are configured alike, that the configs validate, and, in a
//! real Envoy, that each variant of the suite answers as the suite says and
//! that each limiter really rejects once a low limit is used up.

use pwf_tests::{
    filter_names, http_filters, load_config_file, tail, trace_one_request, Envoy, Response,
};
use serde_json::{json, Value};

const SUITE: &str = "bench/suites/plan-ratelimit.json";
const WASM: &str = "bench/configs/ratelimit-plan-ratelimit.yaml";
const NATIVE: &str = "bench/configs/ratelimit-local-ratelimit.yaml";
const FLOOR: &str = "bench/configs/ratelimit-floor.yaml";
const ROOT_ID: &str = "plan-ratelimit";
const LOCAL_RATELIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
/// The limit of both: requests per second, and the burst.
const LIMIT: u64 = 1_000_000;
const POLICY: &str = "\"bench-second\";q=1000000;w=1, \"bench-day\";q=1000000000;w=86400";
/// The client key the bench request sends.
const API_KEY: &str = "bench-client";

/// The plan-ratelimit plugin configuration of the Wasm config.
fn wasm_plugin_config() -> Value {
    let filters = http_filters(&load_config_file(WASM));
    assert_eq!(
        filter_names(&filters),
        ["plan-ratelimit", "envoy.filters.http.router"]
    );
    let config = &filters[0]["typed_config"]["config"];
    assert_eq!(config["root_id"], ROOT_ID);
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "target/wasm32-wasip1/release/plan_ratelimit.wasm"
    );
    serde_json::from_str(
        config["configuration"]["value"]
            .as_str()
            .expect("configuration.value"),
    )
    .expect("plugin configuration is JSON")
}

/// The `LocalRateLimit` of the native config.
fn native_config() -> Value {
    let filters = http_filters(&load_config_file(NATIVE));
    assert_eq!(
        filter_names(&filters),
        [
            "envoy.filters.http.local_ratelimit",
            "envoy.filters.http.router"
        ]
    );
    filters[0]["typed_config"].clone()
}

#[test]
fn the_suite_runs_these_configs_with_the_goal() {
    let suite = load_config_file(SUITE);
    let variants = suite["variants"].as_array().expect("variants");
    let configs: Vec<(&str, &str)> = variants
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["config"].as_str().unwrap()))
        .collect();
    assert_eq!(
        configs,
        [
            ("no-filter", "bench/configs/no-filter.yaml"),
            ("empty-wasm", "bench/configs/empty-wasm.yaml"),
            ("plan-ratelimit", WASM),
            ("plan-ratelimit-floor", FLOOR),
            ("native-local-ratelimit", NATIVE),
            (
                "plan-ratelimit-no-headers",
                "bench/configs/ratelimit-plan-ratelimit-no-headers.yaml"
            ),
        ]
    );
    assert_eq!(suite["headers"], json!([format!("x-api-key: {API_KEY}")]));
    let goal = &suite["comparisons"][0];
    assert_eq!(
        (&goal["variant"], &goal["against"], &goal["max_cpu_ratio"]),
        (&json!("plan-ratelimit"), &json!("empty-wasm"), &json!(1.25))
    );
    let pairs: Vec<(&str, &str)> = suite["comparisons"]
        .as_array()
        .expect("comparisons")
        .iter()
        .map(|c| {
            (
                c["variant"].as_str().unwrap(),
                c["against"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("plan-ratelimit", "empty-wasm"),
            ("plan-ratelimit-floor", "empty-wasm"),
            ("plan-ratelimit", "plan-ratelimit-floor"),
            ("plan-ratelimit", "native-local-ratelimit"),
            ("plan-ratelimit-no-headers", "empty-wasm"),
        ]
    );
    // Each limiter's headers are checked before it is measured, the floor's
    // as plan-ratelimit's.
    let wasm = &variants[2]["verify"]["response_headers"];
    assert_eq!(wasm["ratelimit-policy"], POLICY);
    assert_eq!(wasm["ratelimit"]["glob"], "\"bench-second\";r=*;t=*");
    assert_eq!(&variants[3]["verify"], &variants[2]["verify"]);
    let native = &variants[4]["verify"]["response_headers"];
    assert_eq!(native["x-ratelimit-limit"], LIMIT.to_string());
    assert!(native["x-ratelimit-remaining"].is_object());
}

#[test]
fn ratelimit_bench_configs_validate() {
    for path in [
        WASM,
        NATIVE,
        FLOOR,
        "bench/configs/ratelimit-plan-ratelimit-no-headers.yaml",
    ] {
        let result = Envoy::builder(path).validate();
        assert!(result.ok, "{path}:\n{}", tail(&result.output, 25));
    }
}

#[test]
fn ratelimit_bench_pair_enforces_the_same_limit_with_headers() {
    // One plan, the per-second window of the native bucket plus a day
    // window; the client from x-api-key, else the address; no rules;
    // defaults otherwise: enforce, shared store, draft headers on.
    assert_eq!(
        wasm_plugin_config(),
        json!({
            "plans": {"bench": {"limits": [
                {"requests": LIMIT, "per": "second", "burst": LIMIT},
                {"requests": 1_000_000_000u64, "per": "day"}
            ]}},
            "fallback_plan": "bench",
            "client_from": [{"header": "x-api-key"}, {"client_address": true}]
        })
    );

    let native = native_config();
    assert_eq!(native["@type"], LOCAL_RATELIMIT_TYPE);
    assert_eq!(
        native["token_bucket"],
        json!({"max_tokens": LIMIT, "tokens_per_fill": LIMIT, "fill_interval": "1s"})
    );
    let always = json!({"numerator": 100, "denominator": "HUNDRED"});
    assert_eq!(native["filter_enabled"]["default_value"], always);
    assert_eq!(native["filter_enforced"]["default_value"], always);
    assert_eq!(native["local_rate_limit_per_downstream_connection"], false);
    assert_eq!(native["enable_x_ratelimit_headers"], "DRAFT_VERSION_03");
    assert!(native.get("descriptors").is_none(), "one bucket");
}

fn get(envoy: &Envoy, api_key: Option<&str>) -> Response {
    let mut req = envoy.req("GET", "/api/v1/items");
    if let Some(key) = api_key {
        req = req.header("x-api-key", key);
    }
    req.send()
}

/// The rate limit headers of a response (any of either kind).
fn ratelimit_headers(resp: &Response) -> Vec<(String, String)> {
    resp.headers
        .iter()
        .filter(|(n, _)| n.starts_with("ratelimit") || n.starts_with("x-ratelimit"))
        .cloned()
        .collect()
}

fn number(resp: &Response, name: &str) -> u64 {
    let v = resp
        .header(name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", resp.headers));
    v.parse()
        .unwrap_or_else(|_| panic!("{name}: {v:?} is not a number"))
}

/// Each variant of the suite as the bench runs it (one worker): the bench
/// request passes, and only the limiters write rate limit headers, computed
/// from their state; the limiters count every request as allowed.
#[test]
fn each_ratelimit_variant_answers_as_claimed() {
    const REQUESTS: u64 = 20;
    let variants = [
        "bench/configs/no-filter.yaml",
        "bench/configs/empty-wasm.yaml",
        WASM,
        NATIVE,
    ];
    std::thread::scope(|s| {
        for config in variants {
            s.spawn(move || {
                let envoy = Envoy::builder(config).concurrency(1).start();
                for i in 0..REQUESTS {
                    let resp = get(&envoy, Some(API_KEY));
                    assert_eq!(resp.status, 200, "{config}: request {i}");
                    assert_eq!(resp.header("x-powered-by"), Some("bench"), "{config}");
                    let headers = ratelimit_headers(&resp);
                    if config == WASM {
                        assert_eq!(resp.header_all("ratelimit-policy"), [POLICY]);
                        let value = resp.header("ratelimit").expect("ratelimit");
                        let r = value
                            .strip_prefix("\"bench-second\";r=")
                            .and_then(|v| v.strip_suffix(";t=1"))
                            .unwrap_or_else(|| panic!("ratelimit: {value}"));
                        let r: u64 = r.parse().expect("r is a number");
                        // The per-second window has the fewest remaining, and
                        // this request took one of them.
                        assert!(r < LIMIT && r > LIMIT - 1 - REQUESTS, "r={r}");
                        assert_eq!(headers.len(), 2, "{headers:?}");
                    } else if config == NATIVE {
                        assert_eq!(number(&resp, "x-ratelimit-limit"), LIMIT);
                        assert!(number(&resp, "x-ratelimit-remaining") <= LIMIT);
                        assert!(number(&resp, "x-ratelimit-reset") <= 1);
                        assert_eq!(headers.len(), 3, "{headers:?}");
                    } else {
                        assert!(headers.is_empty(), "{config}: {headers:?}");
                    }
                }
                let stats = envoy.stats();
                let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
                if config == WASM {
                    assert_eq!(stat("wasmcustom.plan_ratelimit.allowed.bench"), REQUESTS);
                    assert_eq!(stat("wasmcustom.plan_ratelimit.limited.bench"), 0);
                    assert_eq!(stat("wasmcustom.plan_ratelimit.store_errors"), 0);
                } else if config == NATIVE {
                    let prefix = "bench_ratelimit.http_local_rate_limit";
                    assert_eq!(stat(&format!("{prefix}.enabled")), REQUESTS);
                    assert_eq!(stat(&format!("{prefix}.ok")), REQUESTS);
                    assert_eq!(stat(&format!("{prefix}.rate_limited")), 0);
                }
            });
        }
    });
}

/// The bench configs with a low limit really limit: plan-ratelimit with a
/// day window of 3 rejects the 4th request of a client with 429, Retry-After
/// and its `RateLimit` headers, and counts each client on its own (another
/// `x-api-key`, or none: the client address); `local_ratelimit` with a bucket
/// of 3 (3 more per minute) rejects the 4th request with 429 and its
/// `X-RateLimit-*` headers, whoever sends it (one bucket for everyone).
#[test]
fn low_limit_variants_reject_with_429() {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut plugin = wasm_plugin_config();
            plugin["plans"]["bench"]["limits"][1]["requests"] = json!(3);
            let envoy = Envoy::builder(WASM)
                .concurrency(1)
                .plugin_config_for(ROOT_ID, &plugin.to_string())
                .start();
            for remaining in [2, 1, 0] {
                let resp = get(&envoy, Some(API_KEY));
                assert_eq!(resp.status, 200);
                let value = resp.header("ratelimit").expect("ratelimit");
                let want = format!("\"bench-day\";r={remaining};t=");
                assert!(value.starts_with(&want), "{value}");
            }
            let denied = get(&envoy, Some(API_KEY));
            assert_eq!(denied.status, 429, "{}", denied.text());
            assert_eq!(denied.json()["error"], "rate_limited");
            assert!(number(&denied, "retry-after") > 3600, "the day window");
            let value = denied.header("ratelimit").expect("ratelimit on the 429");
            assert!(value.starts_with("\"bench-day\";r=0;t="), "{value}");
            // Other clients have their own windows.
            assert_eq!(get(&envoy, Some("another-client")).status, 200);
            assert_eq!(get(&envoy, None).status, 200, "by client address");
            let stats = envoy.stats();
            assert_eq!(stats["wasmcustom.plan_ratelimit.limited.bench"], 1);
            assert_eq!(stats["wasmcustom.plan_ratelimit.allowed.bench"], 5);
        });
        s.spawn(|| {
            let envoy = Envoy::builder(NATIVE)
                .concurrency(1)
                .edit(|c| {
                    let filter = &mut c["static_resources"]["listeners"][0]["filter_chains"][0]
                        ["filters"][0]["typed_config"]["http_filters"][0];
                    filter["typed_config"]["token_bucket"] =
                        json!({"max_tokens": 3, "tokens_per_fill": 3, "fill_interval": "60s"});
                })
                .start();
            for remaining in [2, 1, 0] {
                let resp = get(&envoy, Some(API_KEY));
                assert_eq!(resp.status, 200);
                assert_eq!(number(&resp, "x-ratelimit-limit"), 3);
                assert_eq!(number(&resp, "x-ratelimit-remaining"), remaining);
            }
            let denied = get(&envoy, Some(API_KEY));
            assert_eq!(denied.status, 429, "{}", denied.text());
            assert_eq!(number(&denied, "x-ratelimit-remaining"), 0);
            assert!(number(&denied, "x-ratelimit-reset") > 0);
            // One bucket for all clients.
            assert_eq!(get(&envoy, Some("another-client")).status, 429);
            assert_eq!(get(&envoy, None).status, 429);
            let stats = envoy.stats();
            let prefix = "bench_ratelimit.http_local_rate_limit";
            assert_eq!(stats[&format!("{prefix}.rate_limited")], 3);
            assert_eq!(stats[&format!("{prefix}.ok")], 3);
        });
    });
}

/// The floor variant prices plan-ratelimit's host calls without its logic:
/// it must make exactly the calls plan-ratelimit makes for the bench request
/// (a client already in its slot).
#[test]
fn the_floor_makes_the_same_host_calls_as_the_filter() {
    let headers = [format!("x-api-key: {API_KEY}")];
    let filter = trace_one_request(WASM, "/api/v1/items", &headers);
    let floor = trace_one_request(FLOOR, "/api/v1/items", &headers);
    assert_eq!(floor, filter);
    let out_of_vm: Vec<&str> = filter
        .iter()
        .filter_map(|c| c.strip_prefix("vm->host "))
        .collect();
    assert_eq!(
        out_of_vm,
        [
            "proxy_get_header_map_value",
            "proxy_get_current_time_nanoseconds",
            "proxy_get_shared_data",
            "proxy_set_shared_data",
            "proxy_increment_metric",
            "proxy_replace_header_map_value",
            "proxy_replace_header_map_value",
        ]
    );
}
