//! {{name}} in a real Envoy: matching requests get the configured response
//! headers, the others do not, both are counted, and a bad configuration is
//! refused at load naming the field.

use pwf_tests::{EchoUpstream, Envoy};

const CONFIG: &str = "envoy-configs/{{name}}.yaml";

fn metric(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(&format!("wasmcustom.{{snake}}.{name}"))
        .unwrap_or_else(|| panic!("metric {name} not exported"))
}

#[test]
fn matching_requests_get_the_headers_and_every_request_is_counted() {
    let echo = EchoUpstream::start("echo");
    let envoy = Envoy::builder(CONFIG).upstream(18000, &echo).start();

    let api = envoy.get("/api/users");
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(api.json()["path"], "/api/users");
    assert_eq!(api.header("x-{{name}}"), Some("on"));
    assert_eq!(api.header("cache-control"), Some("no-store"));

    let other = envoy.get("/web/index.html");
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(other.header("x-{{name}}"), None);
    assert_eq!(other.header("cache-control"), None);

    assert_eq!(metric(&envoy, "requests"), 2);
    assert_eq!(metric(&envoy, "decorated"), 1);
}

#[test]
fn a_configured_header_replaces_the_upstream_one() {
    let echo = EchoUpstream::start("echo");
    let envoy = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .plugin_config(
            r#"{"response_headers":[{"name":"content-type","value":"text/x-{{name}}"}]}"#,
        )
        .start();
    let resp = envoy.get("/anything");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header_all("content-type"), vec!["text/x-{{name}}"]);
}

#[test]
fn a_bad_configuration_fails_validation_naming_the_field() {
    let result = Envoy::builder(CONFIG)
        .plugin_config(r#"{"response_headers":[{"name":"X-Upper","value":"1"}]}"#)
        .validate();
    assert!(
        !result.ok,
        "the config must be rejected:\n{}",
        result.output
    );
    let expected = "invalid configuration: response_headers[0].name: 'X-Upper': header names must be lower case";
    assert!(
        result.output.contains(expected),
        "expected {expected:?} in:\n{}",
        result.output
    );
}
