//! Self-tests of the global rate limit service (`pwf-rls` over a real
//! Redis), called by Envoy's native `envoy.filters.http.ratelimit` filter:
//! the proof that it is a real Envoy RLS. Descriptors are
//! `[{plan: <x-plan>}, {client: <x-client>}]` in domain `plans`.

use std::process::{Command, Stdio};

use pwf_tests::{rls_bin, EchoUpstream, Envoy, HttpClient, RateLimitService, Redis, Response};
use serde_json::{json, Value};

/// Listener 10000 -> echo 18000, with the native rate limit filter calling
/// the RLS at 18081 (HTTP/2). `/bulk` counts 3 hits per request.
fn config(failure_mode_deny: bool) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 10000 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/bulk" }}
                route: {{ cluster: echo }}
                # hits_addend works only in the filter's per-route config.
                typed_per_filter_config:
                  envoy.filters.http.ratelimit:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
                    rate_limits:
                    - actions:
                      - request_headers: {{ header_name: x-plan, descriptor_key: plan }}
                      - request_headers: {{ header_name: x-client, descriptor_key: client }}
                      hits_addend: {{ number: 3 }}
              - match: {{ prefix: "/" }}
                route:
                  cluster: echo
                  rate_limits:
                  - actions:
                    - request_headers: {{ header_name: x-plan, descriptor_key: plan }}
                    - request_headers: {{ header_name: x-client, descriptor_key: client }}
          http_filters:
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: plans
              failure_mode_deny: {failure_mode_deny}
              timeout: 2s
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              rate_limit_service:
                transport_api_version: V3
                grpc_service:
                  envoy_grpc: {{ cluster_name: rls }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 18000 }} }} }}
  - name: rls
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: rls
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 18081 }} }} }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9901 }} }}
"#
    )
}

/// free: 3 per minute per client; pro: 50 per minute per client. Minute
/// windows, so that no counter expires during a test.
fn plans() -> Value {
    json!({"limits": [
        {"name": "free", "domain": "plans", "max_value": 3, "seconds": 60,
         "match": {"plan": "free"}, "per": ["client"]},
        {"name": "pro", "domain": "plans", "max_value": 50, "seconds": 60,
         "match": {"plan": "pro"}, "per": ["client"]},
    ]})
}

fn rls(redis: &Redis) -> RateLimitService {
    RateLimitService::builder()
        .redis(redis)
        .limits(plans())
        .start()
}

fn envoy(echo: &EchoUpstream, rls: &RateLimitService, failure_mode_deny: bool) -> Envoy {
    Envoy::builder_inline(&config(failure_mode_deny))
        .upstream(18000, echo)
        .port(18081, rls.port())
        .start()
}

fn call(envoy: &Envoy, path: &str, plan: &str, client: &str) -> Response {
    envoy
        .req("GET", path)
        .header("x-plan", plan)
        .header("x-client", client)
        .send()
}

fn status(envoy: &Envoy, plan: &str, client: &str) -> u16 {
    call(envoy, "/", plan, client).status
}

#[test]
fn ok_then_over_limit_per_client_with_statuses() {
    let redis = Redis::start();
    let rls = rls(&redis);
    let echo = EchoUpstream::start("api");
    let envoy = envoy(&echo, &rls, false);

    for i in 1..=3 {
        let resp = call(&envoy, "/", "free", "alice");
        assert_eq!(resp.status, 200, "request {i}: {}", resp.text());
        // Envoy's x-ratelimit-* headers come from the descriptor status:
        // current_limit (3 per MINUTE), limit_remaining, duration_until_reset.
        assert_eq!(
            resp.header("x-ratelimit-limit"),
            Some(r#"3, 3;w=60;name="free""#)
        );
        let remaining = (3 - i).to_string();
        assert_eq!(
            resp.header("x-ratelimit-remaining"),
            Some(remaining.as_str())
        );
        let reset: u64 = resp.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "reset {reset}");
    }
    let resp = call(&envoy, "/", "free", "alice");
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert_eq!(resp.header("x-envoy-ratelimited"), Some("true"));
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        echo.request_count(),
        3,
        "the refused request reached the upstream"
    );

    // Per-client counters; other plans have their own limit; a request
    // without the plan header sends no descriptor and is not limited.
    assert_eq!(status(&envoy, "free", "bob"), 200);
    for _ in 0..5 {
        assert_eq!(status(&envoy, "pro", "alice"), 200);
    }
    assert_eq!(envoy.get("/").status, 200);

    // What the service saw and answered.
    let calls = rls.wait_for_calls(10);
    assert_eq!(calls, 10, "{:#?}", rls.calls());
    let calls = rls.calls();
    assert_eq!(
        calls[0],
        json!({
            "domain": "plans",
            "descriptors": [[{"plan": "free"}, {"client": "alice"}]],
            "hits": [1],
            "overall": "OK",
            "statuses": [{"code": "OK", "limit": "free", "remaining": 2,
                          "reset_ms": calls[0]["statuses"][0]["reset_ms"]}],
        })
    );
    assert_eq!(calls[3]["overall"], "OVER_LIMIT");
    assert_eq!(calls[3]["statuses"][0]["code"], "OVER_LIMIT");
    assert_eq!(calls[3]["statuses"][0]["remaining"], 0);
    assert_eq!(calls[4]["statuses"][0]["remaining"], 2, "bob: {}", calls[4]);
    assert_eq!(calls[5]["statuses"][0]["limit"], "pro");
    assert_eq!(calls[5]["statuses"][0]["remaining"], 49);

    // Counters live in Redis: alice/free, bob/free, alice/pro, plus one
    // set of counter keys per limit.
    let counters: Vec<String> = redis
        .keys("*")
        .into_iter()
        .filter(|k| k.contains(",counter:"))
        .collect();
    assert_eq!(counters.len(), 3, "{counters:#?}");
    assert!(counters.iter().all(|k| k.starts_with("namespace:{plans},")));
    assert_eq!(redis.dbsize(), 5, "{:#?}", redis.keys("*"));
}

#[test]
fn hits_addend_counts_several_hits() {
    let redis = Redis::start();
    let rls = rls(&redis);
    let echo = EchoUpstream::start("api");
    let envoy = envoy(&echo, &rls, false);

    // 3 hits per /bulk request against a limit of 3: one fits, the next not.
    assert_eq!(call(&envoy, "/bulk", "free", "alice").status, 200);
    assert_eq!(
        call(&envoy, "/bulk", "free", "alice").status,
        429,
        "{:#?}",
        rls.calls()
    );
    // Nothing left for a single hit either.
    assert_eq!(status(&envoy, "free", "alice"), 429);
    // 2 single hits, then a bulk request that would take bob to 5 of 3.
    assert_eq!(status(&envoy, "free", "bob"), 200);
    assert_eq!(status(&envoy, "free", "bob"), 200);
    let resp = call(&envoy, "/bulk", "free", "bob");
    assert_eq!(resp.status, 429);
    // An over-limit call counts nothing: bob's last hit is still there.
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(status(&envoy, "free", "bob"), 200);
    assert_eq!(status(&envoy, "free", "bob"), 429);

    rls.wait_for_calls(8);
    let hits: Vec<Value> = rls.calls().iter().map(|c| c["hits"][0].clone()).collect();
    assert_eq!(
        hits,
        json!([3, 3, 1, 1, 1, 3, 1, 1]).as_array().unwrap().clone()
    );
}

#[test]
fn two_envoys_share_one_limit() {
    let redis = Redis::start();
    let rls = rls(&redis);
    let echo = EchoUpstream::start("api");
    let a = envoy(&echo, &rls, false);
    let b = envoy(&echo, &rls, false);

    assert_eq!(status(&a, "free", "alice"), 200);
    assert_eq!(status(&b, "free", "alice"), 200);
    assert_eq!(status(&a, "free", "alice"), 200);
    // The limit of 3 is used up across both Envoys.
    assert_eq!(status(&b, "free", "alice"), 429);
    assert_eq!(status(&a, "free", "alice"), 429);
    assert_eq!(echo.request_count(), 3);

    // Concurrent requests through both: still exactly 3 pass.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let port = if i % 2 == 0 { a.port() } else { b.port() };
                s.spawn(move || {
                    HttpClient::new(port)
                        .req("GET", "/")
                        .header("x-plan", "free")
                        .header("x-client", "carol")
                        .send()
                        .status
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let passed = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(passed, 3, "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
}

#[test]
fn two_services_over_one_redis_share_counters() {
    let redis = Redis::start();
    let rls1 = rls(&redis);
    let rls2 = rls(&redis);
    assert_ne!(rls1.port(), rls2.port());
    let echo = EchoUpstream::start("api");
    let a = envoy(&echo, &rls1, false);
    let b = envoy(&echo, &rls2, false);

    assert_eq!(status(&a, "free", "alice"), 200);
    assert_eq!(status(&b, "free", "alice"), 200);
    assert_eq!(status(&b, "free", "alice"), 200);
    assert_eq!(status(&a, "free", "alice"), 429);
    assert_eq!(status(&b, "free", "alice"), 429);
    // Each service answered its own Envoy, from one counter.
    assert_eq!(rls1.wait_for_calls(2), 2);
    assert_eq!(rls2.wait_for_calls(3), 3);
    let counters: Vec<String> = redis
        .keys("*")
        .into_iter()
        .filter(|k| k.contains(",counter:"))
        .collect();
    assert_eq!(counters.len(), 1, "{counters:#?}");
    assert_eq!(
        redis.command(&["GET", &counters[0]]).text().as_deref(),
        Some("3")
    );
}

#[test]
fn outages_apply_the_failure_mode() {
    let mut redis = Redis::start();
    let mut rls = rls(&redis);
    let echo = EchoUpstream::start("api");
    let open = envoy(&echo, &rls, false);
    let closed = envoy(&echo, &rls, true);

    for _ in 0..3 {
        assert_eq!(status(&open, "free", "alice"), 200);
    }
    assert_eq!(status(&open, "free", "alice"), 429);
    assert_eq!(status(&closed, "free", "alice"), 429);

    // Service down: fail open lets the request through, fail closed
    // answers 500.
    rls.stop();
    assert_eq!(status(&open, "free", "alice"), 200);
    assert_eq!(status(&closed, "free", "alice"), 500);
    assert!(open.wait_for_counter("cluster.rls.upstream_cx_connect_fail", 1) >= 1);

    // Back on the same port: the counters survived in Redis.
    rls.restart();
    assert_eq!(status(&open, "free", "alice"), 429);
    assert_eq!(status(&closed, "free", "bob"), 200);

    // Redis down: the service answers UNAVAILABLE, and the failure mode
    // applies again.
    redis.stop();
    assert_eq!(status(&open, "free", "carol"), 200);
    assert_eq!(status(&closed, "free", "carol"), 500);
    let calls = rls.calls();
    let last = calls.last().unwrap();
    assert!(last["error"].is_string(), "{last}");
    assert!(rls.is_running());

    // Redis back (empty): the service reconnects.
    redis.restart();
    assert!(pwf_tests::wait_until(
        std::time::Duration::from_secs(10),
        || status(&closed, "free", "alice") == 200
    ));
    assert!(
        open.counter("cluster.echo.ratelimit.failure_mode_allowed")
            .unwrap_or(0)
            >= 2
    );
    assert!(open.counter("cluster.echo.ratelimit.error").unwrap_or(0) >= 2);
}

#[test]
fn bad_limits_and_unreachable_redis_fail_at_startup() {
    let bin = rls_bin();
    assert!(
        bin.exists(),
        "{}: run `cargo build -p pwf-rls`",
        bin.display()
    );
    let run = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let redis = Redis::start();
    let url = redis.url();

    let (code, err) = run(&["--redis", &url, "--limits-json", r#"[{"domain": "d"}]"#]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("limits: expected"), "{err}");

    let (code, err) = run(&[
        "--redis",
        &url,
        "--limits-json",
        "[{domain: d, max_value: 1, seconds: 0}]",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("seconds must be at least 1"), "{err}");

    let dead = format!("redis://127.0.0.1:{}", pwf_tests::free_port());
    let (code, err) = run(&["--redis", &dead, "--limits-json", "[]"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&dead), "{err}");

    let (code, err) = run(&["--limits-json", "[]"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--redis is required"), "{err}");
}

#[test]
fn limits_file_in_yaml() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.yaml");
    std::fs::write(
        &file,
        "limits:\n  - {name: one, domain: plans, max_value: 1, seconds: 60, match: {plan: free}}\n",
    )
    .unwrap();
    let mut child = Command::new(rls_bin())
        .args(["--port", "0", "--redis", &redis.url(), "--limits"])
        .arg(&file)
        .arg("--exit-on-stdin-close")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["limits"], 1);
    assert!(ready["port"].as_u64().unwrap() > 0);

    // Closing stdin ends it.
    drop(child.stdin.take());
    let exited = pwf_tests::wait_until(std::time::Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(exited, "pwf-rls did not exit when its stdin closed");
}
