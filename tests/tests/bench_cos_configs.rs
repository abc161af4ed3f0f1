//! The cos-router bench configs (`bench/configs/cos-router*.yaml`, suite
//! `bench/suites/cos-router.json`): the suite runs them with the goal, they
//! validate, the Wasm variants carry the same 5 classes and 2 experiments,
//! and in a real Envoy every variant routes each plan, region and user the
//! way the suite says, the native table included.

use pwf_tests::{
    filter_names, http_filters, load_config_file, tail, trace_one_request, EchoUpstream, Envoy,
    Response,
};
use serde_json::{json, Value};

const SUITE: &str = "bench/suites/cos-router.json";
const DIRECT: &str = "bench/configs/cos-router.yaml";
const CLUSTERS: &str = "bench/configs/cos-router-clusters.yaml";
const NATIVE: &str = "bench/configs/cos-router-native.yaml";
const FLOOR: &str = "bench/configs/cos-router-floor.yaml";
const MAP_FLOOR: &str = "bench/configs/cos-router-map-floor.yaml";
const BENCH_USER: &str = "bench-user-1";

fn plugin_config(path: &str) -> Value {
    let filters = http_filters(&load_config_file(path));
    assert_eq!(
        filter_names(&filters),
        ["cos-router", "envoy.filters.http.router"]
    );
    let config = &filters[0]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "target/wasm32-wasip1/release/cos_router.wasm"
    );
    serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap()
}

fn get(envoy: &Envoy, plan: &str, user: &str, region: Option<&str>) -> Response {
    let mut req = envoy
        .req("GET", "/api/v1/items")
        .header("x-jwt-plan", plan)
        .header("x-user-id", user);
    if let Some(r) = region {
        req = req.header("x-region", r);
    }
    let resp = req.send();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-powered-by"), Some("bench"));
    resp
}

#[test]
fn the_suite_runs_these_configs_with_the_goal() {
    let suite = load_config_file(SUITE);
    let configs: Vec<(&str, &str)> = suite["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["config"].as_str().unwrap()))
        .collect();
    assert_eq!(
        configs,
        [
            ("no-filter", "bench/configs/no-filter.yaml"),
            ("empty-wasm", "bench/configs/empty-wasm.yaml"),
            ("cos-router", DIRECT),
            ("cos-router-floor", FLOOR),
            ("cos-router-map-floor", MAP_FLOOR),
            ("cos-router-clusters", CLUSTERS),
            ("cos-router-native", NATIVE),
        ]
    );
    assert_eq!(
        suite["headers"],
        json!(["x-jwt-plan: free", format!("x-user-id: {BENCH_USER}")])
    );
    let goal = &suite["comparisons"][0];
    assert_eq!(
        (&goal["variant"], &goal["against"], &goal["max_cpu_ratio"]),
        (&json!("cos-router"), &json!("empty-wasm"), &json!(1.25))
    );
    let pairs: Vec<(&str, &str)> = suite["comparisons"]
        .as_array()
        .unwrap()
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
            ("cos-router", "empty-wasm"),
            ("cos-router-floor", "empty-wasm"),
            ("cos-router-map-floor", "empty-wasm"),
            ("cos-router", "cos-router-floor"),
            ("cos-router-clusters", "cos-router-native"),
        ]
    );
}

fn suite_headers() -> Vec<String> {
    load_config_file(SUITE)["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

/// The floor variant prices cos-router's host calls without its logic: it
/// must make exactly the calls cos-router makes for the bench request.
#[test]
fn the_floor_makes_the_same_host_calls_as_the_filter() {
    let headers = suite_headers();
    let filter = trace_one_request(DIRECT, "/api/v1/items", &headers);
    let floor = trace_one_request(FLOOR, "/api/v1/items", &headers);
    assert_eq!(floor, filter);
    let out_of_vm = |name: &str| {
        filter
            .iter()
            .filter(|c| *c == &format!("vm->host {name}"))
            .count()
    };
    assert_eq!(
        (
            out_of_vm("proxy_get_header_map_value"),
            out_of_vm("proxy_replace_header_map_value"),
            out_of_vm("proxy_increment_metric"),
        ),
        (3, 3, 3),
        "{filter:?}"
    );
}

/// The map floor does the same work in two header calls: one read and one
/// write of the whole request map.
#[test]
fn the_map_floor_reads_and_writes_the_whole_map_once() {
    let calls = trace_one_request(MAP_FLOOR, "/api/v1/items", &suite_headers());
    let header_calls: Vec<&str> = calls
        .iter()
        .filter(|c| c.starts_with("vm->host") && c.contains("header_map"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        header_calls,
        [
            "vm->host proxy_get_header_map_pairs",
            "vm->host proxy_set_header_map_pairs"
        ]
    );
}

#[test]
fn cos_router_bench_configs_validate() {
    for path in [DIRECT, CLUSTERS, NATIVE] {
        let result = Envoy::builder(path).validate();
        assert!(result.ok, "{path}:\n{}", tail(&result.output, 25));
    }
}

#[test]
fn both_wasm_variants_run_five_classes_and_two_experiments() {
    let config = plugin_config(DIRECT);
    assert_eq!(plugin_config(CLUSTERS), config);
    let classes = config["classes"].as_array().unwrap().len() + 1;
    assert_eq!(classes, 5, "4 classes and the default class");
    assert_eq!(config["experiments"].as_array().unwrap().len(), 2);
}

#[test]
fn every_variant_routes_plans_regions_and_users_as_the_suite_says() {
    let direct = Envoy::builder(DIRECT).start();
    let clusters = Envoy::builder(CLUSTERS).start();
    let native = Envoy::builder(NATIVE).start();
    let bench = get(&direct, "free", BENCH_USER, None);
    assert_eq!(bench.header("x-bench-route"), Some("free-control"));
    let bench = get(&clusters, "free", BENCH_USER, None);
    assert_eq!(bench.header("x-bench-route"), Some("free-control"));
    assert_eq!(bench.header("x-bench-upstream"), Some("control"));
    let bench = get(&native, "free", BENCH_USER, None);
    assert_eq!(bench.header("x-bench-route"), Some("free"));
    assert_eq!(bench.header("x-bench-upstream"), Some("control"));

    for (plan, region, route) in [
        ("enterprise", None, "enterprise"),
        ("pro", Some("eu"), "pro"),
        ("team", None, "team"),
        ("free", Some("eu"), "eu"),
    ] {
        for envoy in [&direct, &clusters, &native] {
            let resp = get(envoy, plan, "someone", region);
            assert_eq!(
                resp.header("x-bench-route"),
                Some(route),
                "{plan} {region:?}"
            );
        }
    }

    // Free users: about 10% in b, each always in the same group, in both
    // clustered variants (the native hash differs, so its groups do too).
    for (envoy, name) in [(&clusters, "cos-router"), (&native, "native")] {
        let mut in_b = 0;
        for u in 0..300 {
            let user = format!("user-{u}");
            let first = get(envoy, "free", &user, None);
            let upstream = first.header("x-bench-upstream").unwrap().to_owned();
            let again = get(envoy, "free", &user, None);
            assert_eq!(
                again.header("x-bench-upstream"),
                Some(upstream.as_str()),
                "{name}: {user} is sticky"
            );
            if upstream == "b" {
                in_b += 1;
                if name == "cos-router" {
                    assert_eq!(first.header("x-bench-route"), Some("free-b"));
                }
            }
        }
        assert!((12..=50).contains(&in_b), "{name}: {in_b} of 300 in b");
    }
}

#[test]
fn cos_router_forwards_the_headers_the_suite_checks() {
    // As the bench's own check does: direct_response routes go to an echo upstream.
    let echo = EchoUpstream::start("bench-echo");
    let envoy = Envoy::builder(DIRECT)
        .edit(|config| {
            let routes = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
            for route in routes.as_array_mut().unwrap() {
                let map = route.as_object_mut().unwrap();
                assert!(map.remove("direct_response").is_some());
                map.insert("route".into(), json!({"cluster": "bench_echo"}));
            }
            config["static_resources"]["clusters"] = json!([{
                "name": "bench_echo", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "bench_echo", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18999}}}}]}]}
            }]);
        })
        .upstream(18999, &echo)
        .start();
    let resp = get(&envoy, "free", BENCH_USER, None);
    assert_eq!(resp.header("x-bench-route"), Some("free-control"));
    let got = echo.last_request().unwrap();
    assert_eq!(got.header("x-cos-class").as_deref(), Some("free"));
    assert_eq!(
        got.header("x-cos-experiments").as_deref(),
        Some("checkout=control;search=b")
    );
    assert_eq!(got.header("x-exp-checkout").as_deref(), Some("control"));
}
