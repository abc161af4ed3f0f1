//! Self-tests of the harness against a real Envoy with the plain
//! `envoy-configs/passthrough.yaml` (no wasm).

use pwf_tests::{EchoUpstream, Envoy, HttpClient};
use serde_json::json;

const PASSTHROUGH: &str = "envoy-configs/passthrough.yaml";

fn passthrough(upstream: &EchoUpstream) -> Envoy {
    Envoy::builder(PASSTHROUGH)
        .upstream(18000, upstream)
        .start()
}

#[test]
fn echo_round_trips_method_path_query_headers_and_body() {
    let upstream = EchoUpstream::start("echo");
    let envoy = passthrough(&upstream);

    let resp = envoy
        .req("POST", "/some/path?a=1&b=hello%20world&a=2&c=x+y")
        .header("x-one", "1")
        .header("X-Rep", "first")
        .header("x-rep", "second")
        .body("hello body")
        .send();

    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("server"), Some("envoy"));
    let echo = resp.json();
    assert_eq!(echo["upstream"], "echo");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/some/path?a=1&b=hello%20world&a=2&c=x+y");
    assert_eq!(echo["query"]["a"], json!(["1", "2"]));
    assert_eq!(echo["query"]["b"], "hello world");
    assert_eq!(echo["query"]["c"], "x y");
    assert_eq!(echo["headers"]["x-one"], "1");
    assert_eq!(echo["headers"]["x-rep"], json!(["first", "second"]));
    assert_eq!(echo["headers"]["content-length"], "10");
    assert!(echo["headers"]["x-request-id"].is_string(), "{echo}");
    assert_eq!(echo["body"], "hello body");

    let seen = upstream.last_request().expect("upstream saw the request");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, b"hello body");
    assert_eq!(upstream.request_count(), 1);
}

#[test]
fn get_and_request_helpers() {
    let upstream = EchoUpstream::start("echo");
    let envoy = passthrough(&upstream);

    let resp = envoy.get("/anything?x=1");
    assert_eq!(resp.status, 200);
    let echo = resp.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["query"], json!({"x": "1"}));
    assert!(echo["headers"].get("content-length").is_none(), "{echo}");
    assert_eq!(echo["body"], "");

    let resp = envoy.request("PUT", "/put", &[("content-type", "text/plain")], "data");
    assert_eq!(resp.status, 200);
    let echo = resp.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["headers"]["content-type"], "text/plain");
    assert_eq!(echo["body"], "data");

    let resp = envoy.request("HEAD", "/head", &[], "");
    assert_eq!(resp.status, 200);
    assert!(resp.body.is_empty());
}

#[test]
fn echo_status_and_response_headers_are_controllable() {
    let upstream = EchoUpstream::builder("echo")
        .response_header("x-fixed", "always")
        .start();
    let envoy = passthrough(&upstream);

    let resp = envoy
        .req("GET", "/teapot")
        .header("x-echo-status", "418")
        .header("x-echo-header-x-foo", "bar")
        .header("x-echo-header-set-cookie", "a=1")
        .send();
    assert_eq!(resp.status, 418);
    assert_eq!(resp.header("x-foo"), Some("bar"));
    assert_eq!(resp.header("x-fixed"), Some("always"));
    assert_eq!(resp.header("set-cookie"), Some("a=1"));

    // 4xx/5xx are not errors for the client
    let resp = envoy.req("GET", "/").header("x-echo-status", "503").send();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["upstream"], "echo");
}

#[test]
fn repeated_response_headers_are_kept_in_order() {
    let upstream = EchoUpstream::builder("echo")
        .response_header("x-multi", "one")
        .response_header("x-multi", "two")
        .start();
    let envoy = passthrough(&upstream);
    let resp = envoy.get("/");
    assert_eq!(resp.header_all("x-multi"), vec!["one", "two"]);
    assert_eq!(resp.header_map()["x-multi"], vec!["one", "two"]);
    assert_eq!(
        resp.headers.iter().filter(|(n, _)| n == "x-multi").count(),
        2
    );
}

#[test]
fn unmapped_upstream_port_gets_a_free_port_and_503() {
    // No .upstream(): 18000 is mapped to some free port nobody listens on,
    // never to the fixed 18000.
    let envoy = Envoy::builder(PASSTHROUGH).start();
    assert_ne!(envoy.port_of(18000), 18000);
    assert_ne!(envoy.port(), 10000);
    assert_ne!(envoy.admin_port(), 9901);
    let resp = envoy.get("/");
    assert_eq!(resp.status, 503, "{}", resp.text());
}

const TWO_UPSTREAMS: &str = r#"
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: "/b"}, route: {cluster: b}}
              - {match: {prefix: "/"}, route: {cluster: a}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  - name: second
    address: {socket_address: {address: 127.0.0.1, port_value: 10001}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: second_http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, route: {cluster: b}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: a
    load_assignment:
      cluster_name: a
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}}]}]
  - name: b
    load_assignment:
      cluster_name: b
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18001}}}}]}]
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
"#;

#[test]
fn inline_config_with_two_upstreams_and_two_listeners() {
    let a = EchoUpstream::start("a");
    let b = EchoUpstream::start("b");
    let envoy = Envoy::builder_inline(TWO_UPSTREAMS)
        .upstream(18000, &a)
        .upstream(18001, &b)
        .concurrency(1)
        .start();

    assert_eq!(envoy.get("/x").json()["upstream"], "a");
    assert_eq!(envoy.get("/b/x").json()["upstream"], "b");
    let second = envoy.client_for(10001);
    assert_eq!(second.get("/x").json()["upstream"], "b");
    assert_eq!(envoy.rendered().listener_ports.len(), 2);
    assert_eq!(a.request_count(), 1);
    assert_eq!(b.request_count(), 2);
}

#[test]
fn stats_and_log_helpers() {
    let upstream = EchoUpstream::start("echo");
    let envoy = passthrough(&upstream);
    for _ in 0..3 {
        assert_eq!(envoy.get("/").status, 200);
    }
    assert_eq!(envoy.wait_for_counter("cluster.echo.upstream_rq_200", 3), 3);
    let stats = envoy.stats();
    assert_eq!(stats.get("server.live"), Some(&1), "gauges are included");
    assert!(stats["http.ingress_http.downstream_rq_total"] >= 3);
    assert_eq!(envoy.counter("no.such.stat"), None);

    assert!(
        envoy.log().contains("starting main dispatch loop"),
        "{}",
        envoy.log()
    );
    envoy.wait_for_log("all clusters initialized");

    let resp = envoy.admin_get("/ready");
    assert_eq!((resp.status, resp.text().trim()), (200, "LIVE"));
}

#[test]
fn non_utf8_header_values_reach_the_upstream() {
    let upstream = EchoUpstream::start("echo");
    let envoy = passthrough(&upstream);

    // through ureq
    let resp = envoy.req("GET", "/").header("x-obs", b"caf\xe9").send();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["headers"]["x-obs"], "caf\u{fffd}");
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header_bytes("x-obs"), Some(&b"caf\xe9"[..]));

    // raw bytes, and a non-UTF-8 response header back
    let raw = envoy.raw_request(
        b"GET /raw?q=1 HTTP/1.1\r\nHost: example\r\nX-Obs: \xe9t\xe9\r\n\
          X-Echo-Header-X-Back: \xff\r\n\r\n",
    );
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.raw));
    assert_eq!(
        raw.header("content-type").as_deref(),
        Some("application/json")
    );
    let back = raw.headers.iter().find(|(n, _)| n == "x-back").unwrap();
    assert_eq!(back.1, b"\xff");
    let echo: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(echo["path"], "/raw?q=1");
    assert_eq!(echo["headers"]["host"], "example");
    assert!(raw.raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(
        upstream.last_request().unwrap().header_bytes("x-obs"),
        Some(&b"\xe9t\xe9"[..])
    );

    // Envoy itself rejects a non-ASCII request target
    let raw = envoy.raw_request(b"GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.status, 400);
}

#[test]
fn echo_upstream_decodes_chunked_bodies() {
    let upstream = EchoUpstream::start("direct");
    let client = HttpClient::new(upstream.port());
    let raw = client.raw_request(
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(raw.status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(echo["body"], "hello world");
    assert_eq!(echo["upstream"], "direct");

    // and through Envoy (which forwards chunked to the upstream as chunked)
    let envoy = passthrough(&upstream);
    let raw = envoy.raw_request(
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
    );
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.raw));
    let echo: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(echo["body"], "abcdef");
}

#[test]
fn validate_passes_good_and_fails_broken_configs() {
    let good = Envoy::builder(PASSTHROUGH).validate();
    assert!(
        good.ok,
        "passthrough.yaml should be valid:\n{}",
        good.output
    );
    assert_eq!(good.exit_code, Some(0));

    let broken = Envoy::builder(PASSTHROUGH)
        .edit(|c| c["static_resources"]["clusters"][0]["no_such_field"] = json!(1))
        .validate();
    assert!(!broken.ok, "unknown field must fail:\n{}", broken.output);
    assert_eq!(broken.exit_code, Some(1));
    assert!(broken.output.contains("no_such_field"), "{}", broken.output);

    let yaml = std::fs::read_to_string(pwf_tests::repo_root().join(PASSTHROUGH)).unwrap();
    let broken =
        Envoy::builder_inline(&yaml.replace("cluster: echo", "cluster: nowhere")).validate();
    assert!(
        !broken.ok,
        "route to unknown cluster must fail:\n{}",
        broken.output
    );
    assert!(broken.output.contains("nowhere"), "{}", broken.output);
}

#[test]
#[should_panic(expected = "Envoy exited during startup")]
fn start_fails_fast_when_envoy_exits() {
    let yaml = std::fs::read_to_string(pwf_tests::repo_root().join(PASSTHROUGH)).unwrap();
    let _envoy = Envoy::builder_inline(&yaml.replace("stat_prefix", "stat_prefx")).start();
}

#[test]
#[should_panic(expected = "could not bind its ports")]
fn start_reports_a_taken_port() {
    // Explicitly mapped ports are kept on retry, so this fails every attempt.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let _envoy = Envoy::builder(PASSTHROUGH).port(10000, port).start();
}
