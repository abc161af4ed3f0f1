//! Native unit tests: configuration errors and the matching logic.

use crate::config::Config;
use crate::logic::Decorator;
use pwf_shared::headers::HeaderList;

fn load(json: &str) -> Result<Decorator, String> {
    Config::load(Some(json.as_bytes())).map_err(|e| e.to_string())
}

fn request(path: &str, extra: &[(&str, &str)]) -> HeaderList {
    let mut pairs = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "example.com"),
    ];
    pairs.extend_from_slice(extra);
    HeaderList::from_pairs(pairs)
}

#[test]
fn headers_are_kept_in_order() {
    let d = load(r#"{"response_headers":[{"name":"x-b","value":"2"},{"name":"x-a","value":"1"}]}"#)
        .unwrap();
    assert_eq!(
        d.response_headers(),
        &[
            ("x-b".to_string(), b"2".to_vec()),
            ("x-a".to_string(), b"1".to_vec())
        ]
    );
}

#[test]
fn without_match_every_request_matches_and_headers_are_not_read() {
    let d = load(r#"{"response_headers":[{"name":"x-a","value":"1"}]}"#).unwrap();
    assert!(!d.reads_request());
    assert!(d.matches(&request("/anything", &[])));
}

#[test]
fn match_selects_requests() {
    let d = load(
        r#"{"response_headers":[{"name":"x-a","value":"1"}],
            "match":{"path":{"prefix":"/api/"},"headers":[{"name":"x-debug","absent":true}]}}"#,
    )
    .unwrap();
    assert!(d.reads_request());
    assert!(d.matches(&request("/api/users?x=1", &[])));
    assert!(!d.matches(&request("/web/", &[])));
    assert!(!d.matches(&request("/api/users", &[("x-debug", "1")])));
}

#[test]
fn bad_configs_are_rejected_naming_the_field() {
    let cases = [
        ("{}", "missing field `response_headers`"),
        (
            r#"{"response_headers":[]}"#,
            "response_headers: at least one header is required",
        ),
        (
            r#"{"response_headers":[{"name":"x-a","value":"1"}],"bogus":1}"#,
            "bogus: unknown field `bogus`, expected `response_headers` or `match`",
        ),
        (
            r#"{"response_headers":[{"name":"X-Upper","value":"1"}]}"#,
            "response_headers[0].name: 'X-Upper': header names must be lower case",
        ),
        (
            r#"{"response_headers":[{"name":":status","value":"200"}]}"#,
            "response_headers[0].name: pseudo-header ':status' cannot be set",
        ),
        (
            r#"{"response_headers":[{"name":"x-a","value":"1"},{"name":"x-a","value":"2"}]}"#,
            "response_headers[1].name: 'x-a' is listed twice",
        ),
        (
            r#"{"response_headers":[{"name":"x-a","value":"a\r\nx-injected: 1"}]}"#,
            "response_headers[0].value: contains a control character (CR, LF, NUL, DEL or another byte below 0x20 but tab)",
        ),
        (
            r#"{"response_headers":[{"name":"x-a","value":"1"}],"match":{"methods":["get"]}}"#,
            "match.methods[0]: 'get' is not an upper-case HTTP method",
        ),
    ];
    for (json, expected) in cases {
        assert_eq!(load(json).unwrap_err(), expected, "for {json}");
    }
}

#[test]
fn an_oversized_value_is_rejected() {
    let value = "v".repeat(crate::config::MAX_VALUE_BYTES + 1);
    let json = format!(r#"{{"response_headers":[{{"name":"x-a","value":"{value}"}}]}}"#);
    assert_eq!(
        load(&json).unwrap_err(),
        "response_headers[0].value: exceeds the size limit"
    );
}
