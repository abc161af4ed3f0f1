//! header-transform in a real Envoy: every operation, template and match,
//! asserted at the echo upstream (request side) and at the client (response side).

use pwf_tests::{EchoUpstream, Envoy, Response};
use serde_json::Value;

const CONFIG: &str = "envoy-configs/header-transform.yaml";

struct Setup {
    envoy: Envoy,
    echo: EchoUpstream,
    v2: EchoUpstream,
}

/// Envoy with the shipped config, the given plugin configuration, and both upstreams.
fn start(plugin_config: &str) -> Setup {
    let echo = EchoUpstream::start("echo");
    let v2 = EchoUpstream::start("v2");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .upstream(18001, &v2)
        .plugin_config(plugin_config)
        .start();
    Setup { envoy, echo, v2 }
}

fn request_ops(ops: &str) -> String {
    format!(r#"{{"request":[{{"operations":[{ops}]}}]}}"#)
}

/// Headers as the upstream received them (lossy UTF-8), from the echo JSON.
fn upstream_header(resp: &Response, name: &str) -> Value {
    resp.json()["headers"][name].clone()
}

fn metric(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(&format!("wasmcustom.header_transform.{name}"))
        .unwrap_or_else(|| panic!("metric {name} not exported"))
}

#[test]
fn header_operations_reach_the_upstream() {
    let s = start(&request_ops(
        r#"{"set":{"header":"x-set","value":"new"}},
           {"set":{"header":"x-overwrite","value":"replaced"}},
           {"add":{"header":"x-multi","value":"second"}},
           {"set_if_absent":{"header":"x-present","value":"ignored"}},
           {"set_if_absent":{"header":"x-absent","value":"filled"}},
           {"remove":{"header":"x-drop"}},
           {"remove":{"header_prefix":"x-internal-"}},
           {"remove":{"header_regex":"x-debug-[0-9]+"}},
           {"rename":{"header":"x-old-name","to":"x-new-name"}},
           {"copy":{"header":"x-src","to":"x-copy"}},
           {"replace":{"header":"x-version","regex":"^v([0-9]+)\\.([0-9]+)$","replacement":"major=$1 minor=$2"}}"#,
    ));
    let resp = s
        .envoy
        .req("GET", "/h")
        .header("x-overwrite", "original")
        .header("x-multi", "first")
        .header("x-present", "kept")
        .header("x-drop", "gone")
        .header("x-internal-a", "1")
        .header("x-internal-b", "2")
        .header("x-debug-42", "3")
        .header("x-debug-keep", "4")
        .header("x-old-name", "moved")
        .header("x-src", "copied")
        .header("x-version", "v3.14")
        .send();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = s.echo.last_request().expect("upstream saw the request");
    assert_eq!(got.header("x-set").as_deref(), Some("new"));
    assert_eq!(got.header("x-overwrite").as_deref(), Some("replaced"));
    let multi: Vec<_> = got
        .headers
        .iter()
        .filter(|(n, _)| n == "x-multi")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(multi, vec![b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(got.header("x-present").as_deref(), Some("kept"));
    assert_eq!(got.header("x-absent").as_deref(), Some("filled"));
    assert_eq!(got.header("x-drop"), None);
    assert_eq!(got.header("x-internal-a"), None);
    assert_eq!(got.header("x-internal-b"), None);
    assert_eq!(got.header("x-debug-42"), None);
    assert_eq!(got.header("x-debug-keep").as_deref(), Some("4"));
    assert_eq!(got.header("x-old-name"), None);
    assert_eq!(got.header("x-new-name").as_deref(), Some("moved"));
    assert_eq!(got.header("x-src").as_deref(), Some("copied"));
    assert_eq!(got.header("x-copy").as_deref(), Some("copied"));
    assert_eq!(got.header("x-version").as_deref(), Some("major=3 minor=14"));
    assert_eq!(metric(&s.envoy, "rules_applied"), 1);
    assert_eq!(metric(&s.envoy, "values_rejected"), 0);
}

#[test]
fn query_operations_rewrite_the_forwarded_path() {
    let s = start(&request_ops(
        r#"{"set":{"query":"page","value":"1"}},
           {"add":{"query":"tag","value":"a b&c"}},
           {"set_if_absent":{"query":"lang","value":"en"}},
           {"remove":{"query":"debug"}},
           {"remove":{"query_prefix":"utm_"}},
           {"remove":{"query_regex":"trace[0-9]"}},
           {"rename":{"query":"uid","to":"user_id"}},
           {"copy":{"query":"user_id","to":"owner"}},
           {"replace":{"query":"q","regex":"colou?r","replacement":"hue"}}"#,
    ));
    let resp = s.envoy.get("/search?q=colour+wheel&page=9&debug=1&utm_source=x&utm_medium=y&trace1=t&trace=keep&uid=42&keep=%7E");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = s.echo.last_request().expect("upstream saw the request");
    assert_eq!(
        got.path,
        "/search?q=hue+wheel&page=1&trace=keep&user_id=42&keep=%7E&tag=a+b%26c&lang=en&owner=42"
    );
}

#[test]
fn path_rewrite_reroutes_to_another_cluster() {
    let s = start(
        r#"{"request":[{"match":{"path":{"prefix":"/legacy/"}},"operations":[
             {"rewrite_path":{"regex":"^/legacy/(.*)$","replacement":"/v2/$1"}}]}]}"#,
    );
    let resp = s.envoy.get("/legacy/orders/7?expand=items");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(
        body["upstream"], "v2",
        "the rewritten path must select the /v2/ route"
    );
    assert_eq!(body["path"], "/v2/orders/7?expand=items");
    assert_eq!(s.v2.request_count(), 1);
    assert_eq!(s.echo.request_count(), 0);

    let resp = s.envoy.get("/other/orders/7");
    assert_eq!(
        resp.json()["upstream"],
        "echo",
        "unmatched paths keep their route"
    );
}

#[test]
fn query_change_reroutes_through_a_query_matched_route() {
    // A route that matches on a query parameter the filter sets.
    let echo = EchoUpstream::start("echo");
    let v2 = EchoUpstream::start("v2");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .upstream(18001, &v2)
        .plugin_config(&request_ops(r#"{"set":{"query":"backend","value":"${req.header.x-backend}"}}"#))
        .edit(|config| {
            let routes = config.pointer_mut(
                "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes",
            )
            .and_then(Value::as_array_mut)
            .expect("routes in the shipped config");
            routes.insert(
                0,
                serde_json::json!({
                    "match": {"prefix": "/", "query_parameters": [{"name": "backend", "string_match": {"exact": "v2"}}]},
                    "route": {"cluster": "echo_v2"}
                }),
            );
        })
        .start();
    let resp = envoy.req("GET", "/x").header("x-backend", "v2").send();
    assert_eq!(resp.json()["upstream"], "v2");
    assert_eq!(resp.json()["path"], "/x?backend=v2");
    let resp = envoy.req("GET", "/x").header("x-backend", "v1").send();
    assert_eq!(resp.json()["upstream"], "echo");
}

#[test]
fn authority_rewrite_reroutes_by_virtual_host() {
    let echo = EchoUpstream::start("echo");
    let v2 = EchoUpstream::start("v2");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .upstream(18001, &v2)
        .plugin_config(&request_ops(r#"{"set":{"header":"host","value":"internal.${req.host}"}}"#))
        .edit(|config| {
            let vhosts = config
                .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts")
                .and_then(Value::as_array_mut)
                .expect("virtual hosts in the shipped config");
            vhosts.insert(
                0,
                serde_json::json!({
                    "name": "internal", "domains": ["internal.*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo_v2"}}]
                }),
            );
        })
        .start();
    let resp = envoy.req("GET", "/a").header("host", "shop.example").send();
    assert_eq!(resp.json()["upstream"], "v2");
    assert_eq!(resp.json()["headers"]["host"], "internal.shop.example");
}

#[test]
fn templates_read_request_attributes_env_and_time() {
    let s = start(&request_ops(
        r#"{"set":{"header":"x-t-method","value":"${req.method}"}},
           {"set":{"header":"x-t-path","value":"${req.path}"}},
           {"set":{"header":"x-t-host","value":"${req.host}|${req.authority}"}},
           {"set":{"header":"x-t-query","value":"${req.query.name}"}},
           {"set":{"header":"x-t-header","value":"<${req.header.x-in}>"}},
           {"set":{"header":"x-t-attr","value":"${attr.source.address}"}},
           {"set":{"header":"x-t-port","value":"${attr.destination.port}"}},
           {"set":{"header":"x-t-mtls","value":"${attr.connection.mtls}"}},
           {"set":{"header":"x-t-request-time","value":"${attr.request.time}"}},
           {"set":{"header":"x-t-headers-bytes","value":"${attr.request.headers_bytes}"}},
           {"set":{"header":"x-t-tabbed","value":"${attr.request.headers.x-tabbed}"}},
           {"set":{"header":"x-t-env","value":"${env.REGION}/${env.NOT_SET:-none}"}},
           {"set":{"header":"x-t-time","value":"${time.unix}"}},
           {"set":{"header":"x-t-rfc","value":"${time.rfc3339}"}},
           {"set":{"header":"x-t-default","value":"${req.header.missing:-fallback}${attr.no.such.attribute}"}},
           {"set":{"header":"x-t-literal","value":"$${not.a.var}"}}"#,
    ));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let resp = s
        .envoy
        .req("POST", "/t/p?name=J%C3%BCrgen%20K")
        .header("x-in", "in")
        .header("x-tabbed", "ab\tc\tdef")
        .header("host", "api.test:8443")
        .body("x")
        .send();
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let h = |n: &str| {
        upstream_header(&resp, n)
            .as_str()
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert_eq!(h("x-t-method"), "POST");
    assert_eq!(h("x-t-path"), "/t/p");
    assert_eq!(h("x-t-host"), "api.test|api.test:8443");
    assert_eq!(h("x-t-query"), "Jürgen K");
    assert_eq!(h("x-t-header"), "<in>");
    assert!(
        h("x-t-attr").starts_with("127.0.0.1:"),
        "source address: {}",
        h("x-t-attr")
    );
    assert_eq!(
        h("x-t-port"),
        s.envoy.port().to_string(),
        "integer attributes print as text"
    );
    assert_eq!(h("x-t-mtls"), "false", "boolean attributes print as text");
    let request_time_ns: u64 = h("x-t-request-time").parse().expect("nanoseconds");
    assert!(
        (before * 1_000_000_000..=(after + 1) * 1_000_000_000).contains(&request_time_ns),
        "request.time {request_time_ns} ns not within {before}..={after} s"
    );
    let headers_bytes: u64 = h("x-t-headers-bytes").parse().expect("an integer");
    assert!(headers_bytes > 50, "request.headers_bytes {headers_bytes}");
    assert_eq!(
        h("x-t-tabbed"),
        "ab\tc\tdef",
        "a header's value is text, even 8 bytes with tabs"
    );
    assert_eq!(h("x-t-env"), "eu-demo-1/none");
    let t: u64 = h("x-t-time").parse().expect("unix time");
    assert!(
        (before..=after).contains(&t),
        "{t} not in {before}..={after}"
    );
    let rfc = h("x-t-rfc");
    assert!(
        rfc.len() == 20 && rfc.ends_with('Z') && rfc.as_bytes()[10] == b'T',
        "rfc3339: {rfc}"
    );
    assert_eq!(h("x-t-default"), "fallback");
    assert_eq!(h("x-t-literal"), "${not.a.var}");
}

#[test]
fn rule_sets_match_on_host_path_method_and_headers() {
    let s = start(
        r#"{"request":[
            {"name":"by-host","match":{"host":{"suffix":".example.com"}},"operations":[{"add":{"header":"x-hit","value":"host"}}]},
            {"name":"by-path-exact","match":{"path":{"exact":"/exact"}},"operations":[{"add":{"header":"x-hit","value":"exact"}}]},
            {"name":"by-path-prefix","match":{"path":{"prefix":"/api/"}},"operations":[{"add":{"header":"x-hit","value":"prefix"}}]},
            {"name":"by-path-regex","match":{"path":{"regex":"/items/[0-9]+"}},"operations":[{"add":{"header":"x-hit","value":"regex"}}]},
            {"name":"by-method","match":{"methods":["DELETE","PUT"]},"operations":[{"add":{"header":"x-hit","value":"method"}}]},
            {"name":"by-header-present","match":{"headers":[{"name":"x-flag"}]},"operations":[{"add":{"header":"x-hit","value":"present"}}]},
            {"name":"by-header-absent","match":{"headers":[{"name":"x-flag","absent":true}]},"operations":[{"add":{"header":"x-hit","value":"absent"}}]},
            {"name":"by-header-value","match":{"headers":[{"name":"x-flag","value":{"exact":"on"}}]},"operations":[{"add":{"header":"x-hit","value":"value"}}]},
            {"name":"sees-earlier","match":{"headers":[{"name":"x-hit","value":{"exact":"method"}}]},"operations":[{"set":{"header":"x-chained","value":"yes"}}]}
        ]}"#,
    );
    let hits = |resp: &Response| -> Vec<String> {
        match upstream_header(resp, "x-hit") {
            Value::String(s) => vec![s],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            _ => vec![],
        }
    };
    let r = s
        .envoy
        .req("GET", "/exact?x=1")
        .header("host", "a.example.com")
        .send();
    assert_eq!(hits(&r), ["host", "exact", "absent"]);
    let r = s.envoy.req("GET", "/api/v1").header("x-flag", "off").send();
    assert_eq!(hits(&r), ["prefix", "present"]);
    let r = s
        .envoy
        .req("GET", "/items/123")
        .header("x-flag", "on")
        .send();
    assert_eq!(hits(&r), ["regex", "present", "value"]);
    let r = s.envoy.req("GET", "/items/12a").send();
    assert_eq!(hits(&r), ["absent"], "regex is anchored");
    let r = s.envoy.req("DELETE", "/z").send();
    assert_eq!(hits(&r), ["method", "absent"]);
    assert_eq!(
        upstream_header(&r, "x-chained"),
        "yes",
        "any value of a repeated header may match"
    );
    let r = s.envoy.req("PUT", "/z").header("x-flag", "1").send();
    assert_eq!(hits(&r), ["method", "present"]);
    assert_eq!(upstream_header(&r, "x-chained"), "yes");
    let r = s.envoy.req("GET", "/z").header("x-hit", "method").send();
    assert_eq!(
        upstream_header(&r, "x-chained"),
        "yes",
        "a client-sent header matches too"
    );
    // 7 requests applied 17 rule sets in total.
    assert_eq!(metric(&s.envoy, "rules_applied"), 17);
    assert_eq!(metric(&s.envoy, "rule_set.by-method.applied"), 2);
    assert_eq!(metric(&s.envoy, "rule_set.by-header-absent.applied"), 4);
    assert_eq!(metric(&s.envoy, "rule_set.sees-earlier.applied"), 3);
}

#[test]
fn later_rule_sets_see_earlier_changes() {
    let s = start(
        r#"{"request":[
            {"operations":[{"set":{"header":"x-stage","value":"one"}}]},
            {"match":{"headers":[{"name":"x-stage","value":{"exact":"one"}}]},"operations":[{"set":{"header":"x-stage","value":"two"}}]}
        ]}"#,
    );
    let resp = s.envoy.get("/");
    assert_eq!(upstream_header(&resp, "x-stage"), "two");
}

#[test]
fn response_rules_set_remove_and_use_captured_request_values() {
    let s = start(
        r#"{"request":[{"operations":[{"set":{"header":"x-user","value":"rewritten-${req.header.x-user}"}}]}],
            "response":[
              {"name":"all","operations":[
                {"set":{"header":"x-frame-options","value":"DENY"}},
                {"add":{"header":"x-multi","value":"added"}},
                {"set_if_absent":{"header":"cache-control","value":"no-store"}},
                {"remove":{"header":"x-secret-upstream"}},
                {"remove":{"header_prefix":"x-debug-"}},
                {"rename":{"header":"x-old","to":"x-new"}},
                {"copy":{"header":"x-new","to":"x-copy"}},
                {"replace":{"header":"x-version","regex":"([0-9]+)","replacement":"<$1>"}},
                {"set":{"header":"x-request-path","value":"${req.path}?${req.query.q}"}},
                {"set":{"header":"x-request-user","value":"${req.header.x-user}"}},
                {"set":{"header":"x-status","value":"${resp.status}/${resp.header.x-version}"}}]},
              {"name":"only-post","match":{"methods":["POST"]},"operations":[{"set":{"header":"x-post","value":"1"}}]}
            ]}"#,
    );
    let resp = s
        .envoy
        .req("GET", "/r/path?q=search")
        .header("x-user", "alice")
        .header("x-echo-status", "201")
        .header("x-echo-header-x-secret-upstream", "s3cr3t")
        .header("x-echo-header-x-debug-trace", "t")
        .header("x-echo-header-x-old", "o")
        .header("x-echo-header-x-version", "v12")
        .header("x-echo-header-x-multi", "upstream")
        .header("x-echo-header-cache-control", "max-age=5")
        .send();
    assert_eq!(resp.status, 201);
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    assert_eq!(resp.header_all("x-multi"), ["upstream", "added"]);
    assert_eq!(resp.header("cache-control"), Some("max-age=5"));
    assert_eq!(resp.header("x-secret-upstream"), None);
    assert_eq!(resp.header("x-debug-trace"), None);
    assert_eq!(resp.header("x-old"), None);
    assert_eq!(resp.header("x-new"), Some("o"));
    assert_eq!(resp.header("x-copy"), Some("o"));
    assert_eq!(resp.header("x-version"), Some("v<12>"));
    assert_eq!(resp.header("x-request-path"), Some("/r/path?search"));
    assert_eq!(
        resp.header("x-request-user"),
        Some("rewritten-alice"),
        "the request as sent upstream"
    );
    assert_eq!(resp.header("x-status"), Some("201/v<12>"));
    assert_eq!(resp.header("x-post"), None);
    let resp = s.envoy.req("POST", "/r").body("b").send();
    assert_eq!(resp.header("x-post"), Some("1"));
    assert_eq!(metric(&s.envoy, "rule_set.all.applied"), 2);
    assert_eq!(metric(&s.envoy, "rule_set.only-post.applied"), 1);
}

#[test]
fn response_rules_apply_to_envoy_generated_responses() {
    let echo = EchoUpstream::start("echo");
    let v2 = EchoUpstream::start("v2");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .upstream(18001, &v2)
        .plugin_config(r#"{"response":[{"operations":[{"set":{"header":"x-seen","value":"${resp.status}"}}]}]}"#)
        .edit(|config| {
            let routes = config
                .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes")
                .and_then(Value::as_array_mut)
                .expect("routes in the shipped config");
            routes.insert(
                0,
                serde_json::json!({"match": {"prefix": "/local"}, "direct_response": {"status": 418, "body": {"inline_string": "teapot"}}}),
            );
        })
        .start();
    let resp = envoy.get("/local");
    assert_eq!(resp.status, 418);
    assert_eq!(resp.text(), "teapot");
    assert_eq!(resp.header("x-seen"), Some("418"));
    assert_eq!(echo.request_count(), 0);
}

#[test]
fn crlf_injection_through_decoded_query_is_blocked_and_logged_without_value() {
    let s = start(&request_ops(
        r#"{"set":{"header":"x-from-query","value":"${req.query.v}"}},
           {"set":{"header":"x-after","value":"still-runs"}}"#,
    ));
    // CR, LF and NUL would split or cut the header; ESC, BEL and DEL are
    // control characters HTTP/2 peers refuse.
    let payloads = [
        "a%0D%0AX-Injected:%20evil",
        "a%0Ab",
        "a%00b",
        "a%0Db",
        "a%1B%5B31mb",
        "a%07b",
        "a%7Fb",
    ];
    for payload in payloads {
        let resp = s.envoy.get(&format!("/inject?v={payload}"));
        assert_eq!(resp.status, 200, "the request continues: {payload}");
        let got = s.echo.last_request().unwrap();
        assert_eq!(got.header("x-from-query"), None, "{payload}");
        assert_eq!(got.header("x-injected"), None, "{payload}");
        assert_eq!(got.header("x-after").as_deref(), Some("still-runs"));
    }
    assert_eq!(metric(&s.envoy, "values_rejected"), payloads.len() as u64);
    s.envoy
        .wait_for_log("value for 'x-from-query' not written: contains a control character (CR, LF, NUL, DEL or another byte below 0x20 but tab)");
    let log = s.envoy.log();
    assert!(
        !log.contains("evil"),
        "the rejected value must never be logged"
    );
    // A clean value still works, tab included.
    s.envoy.get("/inject?v=clean%09value");
    assert_eq!(
        s.echo
            .last_request()
            .unwrap()
            .header("x-from-query")
            .as_deref(),
        Some("clean\tvalue")
    );
}

#[test]
fn oversized_values_are_not_written() {
    let s = start(
        r#"{"limits":{"max_value_bytes":16},
            "request":[{"operations":[{"set":{"header":"x-copy","value":"${req.header.x-in}"}}]}]}"#,
    );
    s.envoy
        .req("GET", "/")
        .header("x-in", "0123456789abcdef")
        .send();
    assert_eq!(
        s.echo.last_request().unwrap().header("x-copy").as_deref(),
        Some("0123456789abcdef")
    );
    s.envoy
        .req("GET", "/")
        .header("x-in", "0123456789abcdefX")
        .send();
    assert_eq!(s.echo.last_request().unwrap().header("x-copy"), None);
    assert_eq!(metric(&s.envoy, "values_rejected"), 1);
    s.envoy
        .wait_for_log("value for 'x-copy' not written: exceeds the size limit");
}

#[test]
fn a_rename_the_limits_refuse_keeps_its_source() {
    let s = start(
        r#"{"limits":{"max_value_bytes":16},
            "request":[{"operations":[{"rename":{"header":"x-in","to":"x-out"}}]}]}"#,
    );
    s.envoy.req("GET", "/").header("x-in", "short").send();
    let got = s.echo.last_request().unwrap();
    assert_eq!(got.header("x-out").as_deref(), Some("short"));
    assert_eq!(got.header("x-in"), None);
    s.envoy
        .req("GET", "/")
        .header("x-in", "0123456789abcdefX")
        .send();
    let got = s.echo.last_request().unwrap();
    assert_eq!(got.header("x-out"), None);
    assert_eq!(got.header("x-in").as_deref(), Some("0123456789abcdefX"));
    assert_eq!(metric(&s.envoy, "values_rejected"), 1);
}

#[test]
fn non_utf8_header_values_pass_through_without_crashing() {
    let s = start(&request_ops(
        r#"{"copy":{"header":"x-latin1","to":"x-copy"}},
           {"replace":{"header":"x-latin1","regex":"caf","replacement":"CAF"}}"#,
    ));
    let port = s.envoy.port();
    let raw =
        format!("GET /bytes HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-latin1: caf\u{00e9}\r\n\r\n");
    // Send the header value as Latin-1: "caf" followed by the single byte 0xE9.
    let mut bytes = raw.into_bytes();
    let pos = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    bytes.splice(pos..pos + 2, [0xe9]);
    let resp = s.envoy.raw_request(&bytes);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = s.echo.last_request().unwrap();
    assert_eq!(got.header_bytes("x-copy"), Some(b"caf\xe9".as_slice()));
    assert_eq!(got.header_bytes("x-latin1"), Some(b"CAF\xe9".as_slice()));
    // The VM is still alive: a normal request is still transformed.
    s.envoy
        .req("GET", "/after")
        .header("x-latin1", "cafe")
        .send();
    assert_eq!(
        s.echo.last_request().unwrap().header("x-latin1").as_deref(),
        Some("CAFe")
    );
}

#[test]
fn shipped_config_works_as_documented() {
    let echo = EchoUpstream::builder("echo")
        .response_header("x-powered-by", "echo")
        .start();
    let v2 = EchoUpstream::start("v2");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .upstream(18001, &v2)
        .start();
    let resp = envoy
        .req("GET", "/legacy/users?uid=7&tenant=acme")
        .header("authorization", "Basic abc")
        .header("x-internal-debug", "1")
        .send();
    assert_eq!(resp.status, 200);
    let body = resp.json();
    assert_eq!(body["upstream"], "v2");
    assert_eq!(body["path"], "/v2/users?user_id=7&tenant=acme");
    assert_eq!(body["headers"]["x-region"], "eu-demo-1");
    assert_eq!(body["headers"]["x-tenant"], "acme");
    assert_eq!(body["headers"]["x-legacy-authorization"], "Basic abc");
    assert!(body["headers"]["x-internal-debug"].is_null());
    assert!(body["headers"]["x-request-start"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert!(body["headers"]["x-client-address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("x-served-path"), Some("/v2/users"));
    assert_eq!(
        resp.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );

    let resp = envoy.get("/plain");
    assert_eq!(resp.json()["upstream"], "echo");
    assert_eq!(resp.json()["headers"]["x-tenant"], "public");
    assert_eq!(resp.header("x-powered-by"), None);
}

/// Runs `envoy --mode validate` with the shipped config and `plugin_config`.
fn validate(plugin_config: &str) -> pwf_tests::ValidateResult {
    Envoy::builder(CONFIG)
        .plugin_config(plugin_config)
        .validate()
}

#[test]
fn bad_configs_fail_envoy_validation_naming_the_field() {
    let cases = [
        (r#"{"request":[],"bogus":true}"#, "invalid configuration: bogus: unknown field `bogus`"),
        (
            r#"{"request":[{"operations":[{"replace":{"header":"x","regex":"([a-z","replacement":""}}]}]}"#,
            "invalid configuration: request[0].operations[0].replace.regex: invalid regex",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"Bad Header","value":"v"}}]}]}"#,
            "invalid configuration: request[0].operations[0].set.header: 'Bad Header'",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"x-a","value":"${req.hedaer.x}"}}]}]}"#,
            "invalid configuration: request[0].operations[0].set.value: template refers to unknown variable 'req.hedaer.x'",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":":method","value":"POST"}}]}]}"#,
            "invalid configuration: request[0].operations[0].set.header: pseudo-header ':method' cannot be changed",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"content-length","value":"0"}}]}]}"#,
            "invalid configuration: request[0].operations[0].set.header: 'content-length' frames the body",
        ),
        (
            r#"{"response":[{"operations":[{"set":{"header":"connection","value":"close"}}]}]}"#,
            "invalid configuration: response[0].operations[0].set.header: 'connection' is managed by Envoy's codec",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"x-a","value":"a\u0007b"}}]}]}"#,
            "invalid configuration: request[0].operations[0].set.value: value contains a control character",
        ),
        ("{not json", "invalid configuration: key must be a string at line 1 column 2"),
    ];
    for (config, expected) in cases {
        let result = validate(config);
        assert!(!result.ok, "config must be rejected: {config}");
        assert!(
            result.output.contains(expected),
            "expected {expected:?} in the validate output for {config}:\n{}",
            result.output
        );
    }
    let ok = validate(&request_ops(
        r#"{"set":{"header":"x-a","value":"${req.header.x-b}"}}"#,
    ));
    assert!(ok.ok, "a good config validates:\n{}", ok.output);
}

#[test]
fn prefix_and_regex_removes_keep_the_body_framed() {
    let s = start(&request_ops(
        r#"{"remove":{"header_prefix":"content-"}},
           {"remove":{"header_regex":"transfer-.*|x-.*"}},
           {"copy":{"header":"content-length","to":"x-declared-length"}}"#,
    ));
    let resp = s
        .envoy
        .req("POST", "/upload")
        .header("content-type", "text/plain")
        .header("x-trace", "1")
        .body("hello")
        .send();
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), s.envoy.log());
    let got = s.echo.last_request().expect("upstream saw the request");
    assert_eq!(got.body, b"hello");
    assert_eq!(got.header("content-length").as_deref(), Some("5"));
    assert_eq!(got.header("content-type"), None);
    assert_eq!(got.header("x-trace"), None);
    assert_eq!(got.header("x-declared-length").as_deref(), Some("5"));
}

#[test]
fn an_empty_authority_or_a_relative_path_is_not_written() {
    let s = start(&request_ops(
        r#"{"set":{"header":":authority","value":"${req.header.x-new-host}"}},
           {"rewrite_path":{"regex":"^/to-nothing$","replacement":""}}"#,
    ));
    let resp = s.envoy.get("/to-nothing?a=1");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = s.echo.last_request().expect("upstream saw the request");
    assert_eq!(got.path, "/to-nothing?a=1");
    assert!(
        got.header("host")
            .is_some_and(|h| h.starts_with("127.0.0.1:")),
        "{:?}",
        got.header("host")
    );
    assert_eq!(metric(&s.envoy, "values_rejected"), 2);
    s.envoy
        .wait_for_log("value for ':authority' not written: is empty");
    s.envoy
        .wait_for_log("value for ':path' not written: does not start with '/'");
    // With a value, the same rule writes it.
    s.envoy
        .req("GET", "/elsewhere")
        .header("x-new-host", "api.example.com")
        .send();
    let got = s.echo.last_request().unwrap();
    assert_eq!(got.header("host").as_deref(), Some("api.example.com"));
}
