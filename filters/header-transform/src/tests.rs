//! Native tests of configuration and the engine, end to end through `Config::compile`.

use crate::config::Config;
use crate::transform::{Engine, HostValues, Report, ResponsePlan};
use pwf_shared::headers::ValueProblem;
use pwf_shared::{ConfigError, HeaderList};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct FakeHost;

impl HostValues for FakeHost {
    fn property(&mut self, path: &[String]) -> Option<Vec<u8>> {
        match path.join(".").as_str() {
            "source.address" => Some(b"10.1.2.3:5555".to_vec()),
            "source.port" => Some(5555i64.to_le_bytes().to_vec()),
            "connection.mtls" => Some(vec![1]),
            _ => None,
        }
    }
    fn now(&mut self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
    }
}

fn env(name: &str) -> Option<String> {
    (name == "POD_REGION").then(|| "eu-west-1".to_string())
}

fn engine(json: &str) -> Engine {
    try_engine(json).unwrap_or_else(|e| panic!("config rejected: {e}"))
}

fn try_engine(json: &str) -> Result<Engine, ConfigError> {
    pwf_shared::config::parse_json::<Config>(Some(json.as_bytes()))?.compile(&env)
}

fn request() -> HeaderList {
    HeaderList::from_pairs([
        (":method", "GET"),
        (":path", "/v1/users?id=42&debug=1&name=J%20Doe"),
        (":authority", "api.example.com"),
        (":scheme", "http"),
        ("x-user", "alice"),
        ("x-internal-a", "1"),
        ("x-internal-b", "2"),
        ("accept", "text/html"),
    ])
}

fn run_request(e: &Engine, h: &mut HeaderList) -> (Report, ResponsePlan) {
    let mut report = Report::default();
    let plan = e.on_request(h, &mut FakeHost, &mut report);
    (report, plan)
}

fn req_ops(ops: &str) -> Engine {
    engine(&format!(r#"{{"request":[{{"operations":[{ops}]}}]}}"#))
}

/// What the report refused: (target, problem).
fn rejections(report: &Report) -> Vec<(&str, ValueProblem)> {
    report
        .rejected
        .iter()
        .map(|r| (r.target.as_str(), r.problem))
        .collect()
}

fn get(h: &HeaderList, name: &str) -> Option<String> {
    h.get(name).map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn set_add_set_if_absent() {
    let e = req_ops(
        r#"{"set":{"header":"x-user","value":"bob"}},
           {"add":{"header":"accept","value":"application/json"}},
           {"set_if_absent":{"header":"x-user","value":"carol"}},
           {"set_if_absent":{"header":"x-new","value":"dave"}}"#,
    );
    let mut h = request();
    let (report, _) = run_request(&e, &mut h);
    assert!(h.is_changed());
    assert_eq!(report.applied, vec![0]);
    assert_eq!(get(&h, "x-user").as_deref(), Some("bob"));
    assert_eq!(
        h.get_all("accept").collect::<Vec<_>>(),
        vec![b"text/html".as_slice(), b"application/json"]
    );
    assert_eq!(get(&h, "x-new").as_deref(), Some("dave"));
}

#[test]
fn remove_by_name_prefix_and_regex_never_touches_pseudo_headers() {
    let e = req_ops(
        r#"{"remove":{"header":"accept"}},
           {"remove":{"header_prefix":"x-internal-"}},
           {"remove":{"header_regex":".*"}}"#,
    );
    let mut h = request();
    run_request(&e, &mut h);
    let names: Vec<&str> = h.entries().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [":method", ":path", ":authority", ":scheme"]);
}

#[test]
fn prefix_and_regex_removes_pass_over_framing_and_routing_headers() {
    let e = req_ops(
        r#"{"remove":{"header_prefix":"content-"}},
           {"remove":{"header_regex":"transfer-.*|x-.*"}},
           {"remove":{"header":"upgrade"}},
           {"copy":{"header":"content-length","to":"x-declared-length"}}"#,
    );
    let mut h = HeaderList::from_pairs([
        (":method", "POST"),
        (":path", "/"),
        ("content-length", "5"),
        ("content-type", "text/plain"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("x-a", "1"),
        ("x-forwarded-proto", "https"),
    ]);
    run_request(&e, &mut h);
    let names: Vec<&str> = h.entries().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            ":method",
            ":path",
            "content-length",
            "transfer-encoding",
            "x-forwarded-proto",
            "x-declared-length"
        ]
    );
    assert_eq!(get(&h, "x-declared-length").as_deref(), Some("5"));
}

#[test]
fn rename_and_copy() {
    let e = req_ops(
        r#"{"rename":{"header":"x-user","to":"x-principal"}},
           {"copy":{"header":"x-principal","to":"x-audit"}},
           {"copy":{"header":"x-missing","to":"x-never"}}"#,
    );
    let mut h = request();
    run_request(&e, &mut h);
    assert_eq!(get(&h, "x-user"), None);
    assert_eq!(get(&h, "x-principal").as_deref(), Some("alice"));
    assert_eq!(get(&h, "x-audit").as_deref(), Some("alice"));
    assert!(!h.contains("x-never"));
}

#[test]
fn regex_replace_with_capture_groups() {
    let e =
        req_ops(r#"{"replace":{"header":"x-user","regex":"^(a)(.*)$","replacement":"${2}-$1"}}"#);
    let mut h = request();
    run_request(&e, &mut h);
    assert_eq!(get(&h, "x-user").as_deref(), Some("lice-a"));
}

#[test]
fn templates_resolve_request_values_attributes_env_and_time() {
    let e = req_ops(
        r#"{"set":{"header":"x-t","value":"${req.method} ${req.path} ${req.host} q=${req.query.name} h=${req.header.x-user}"}},
           {"set":{"header":"x-src","value":"${attr.source.address}|${attr.source.port}|${attr.connection.mtls}"}},
           {"set":{"header":"x-env","value":"${env.POD_REGION}/${env.UNSET:-none}"}},
           {"set":{"header":"x-time","value":"${time.unix} ${time.unix_ms} ${time.rfc3339}"}},
           {"set":{"header":"x-default","value":"${req.header.absent:-fallback}${attr.nope}"}}"#,
    );
    let mut h = request();
    run_request(&e, &mut h);
    assert_eq!(
        get(&h, "x-t").as_deref(),
        Some("GET /v1/users api.example.com q=J Doe h=alice")
    );
    assert_eq!(get(&h, "x-src").as_deref(), Some("10.1.2.3:5555|5555|true"));
    assert_eq!(get(&h, "x-env").as_deref(), Some("eu-west-1/none"));
    assert_eq!(
        get(&h, "x-time").as_deref(),
        Some("1700000000 1700000000123 2023-11-14T22:13:20Z")
    );
    assert_eq!(get(&h, "x-default").as_deref(), Some("fallback"));
}

#[test]
fn query_operations_rewrite_the_path() {
    let e = req_ops(
        r#"{"set":{"query":"id","value":"${req.header.x-user}"}},
           {"remove":{"query":"debug"}},
           {"add":{"query":"tag","value":"a b&c"}},
           {"rename":{"query":"name","to":"who"}},
           {"set_if_absent":{"query":"id","value":"never"}}"#,
    );
    let mut h = request();
    run_request(&e, &mut h);
    assert_eq!(
        get(&h, ":path").as_deref(),
        Some("/v1/users?id=alice&who=J%20Doe&tag=a+b%26c")
    );
}

#[test]
fn query_copy_replace_and_prefix_regex_removal() {
    let e = req_ops(
        r#"{"copy":{"query":"id","to":"user_id"}},
           {"replace":{"query":"name","regex":"Doe","replacement":"Roe"}},
           {"remove":{"query_prefix":"deb"}},
           {"remove":{"query_regex":"i[d]"}}"#,
    );
    let mut h = request();
    run_request(&e, &mut h);
    assert_eq!(
        get(&h, ":path").as_deref(),
        Some("/v1/users?name=J+Roe&user_id=42")
    );
}

#[test]
fn header_template_from_query_then_header_to_query() {
    let e = req_ops(r#"{"set":{"header":"x-id","value":"${req.query.id}"}}"#);
    let mut h = request();
    run_request(&e, &mut h);
    assert_eq!(get(&h, "x-id").as_deref(), Some("42"));
}

#[test]
fn path_rewrite_keeps_the_query() {
    let e = req_ops(r#"{"rewrite_path":{"regex":"^/v1/(.*)$","replacement":"/api/v2/$1"}}"#);
    let mut h = request();
    run_request(&e, &mut h);
    assert!(h.is_changed());
    assert_eq!(
        get(&h, ":path").as_deref(),
        Some("/api/v2/users?id=42&debug=1&name=J%20Doe")
    );
    let e = req_ops(r#"{"rewrite_path":{"regex":"^/nomatch","replacement":"/x"}}"#);
    let mut h = request();
    run_request(&e, &mut h);
    assert!(
        !h.is_changed(),
        "a rewrite that does not match changes nothing"
    );
}

#[test]
fn an_empty_authority_or_a_relative_path_is_not_written() {
    let e = req_ops(
        r#"{"set":{"header":":authority","value":"${req.header.x-missing}"}},
           {"rewrite_path":{"regex":"^/v1/users$","replacement":""}},
           {"replace":{"header":":path","regex":"^/","replacement":"x"}}"#,
    );
    let mut h = request();
    let (report, _) = run_request(&e, &mut h);
    assert_eq!(get(&h, ":authority").as_deref(), Some("api.example.com"));
    assert_eq!(
        get(&h, ":path").as_deref(),
        Some("/v1/users?id=42&debug=1&name=J%20Doe")
    );
    assert_eq!(
        rejections(&report),
        [
            (":authority", ValueProblem::Empty),
            (":path", ValueProblem::NotAPath),
            (":path", ValueProblem::NotAPath)
        ]
    );
    assert!(!h.is_changed());
}

#[test]
fn authority_can_be_set_through_host_alias() {
    let e = req_ops(r#"{"set":{"header":"host","value":"internal.svc"}}"#);
    let mut h = request();
    run_request(&e, &mut h);
    assert_eq!(get(&h, ":authority").as_deref(), Some("internal.svc"));
    assert!(!h.contains("host"));
}

#[test]
fn crlf_and_nul_from_decoded_query_are_never_written() {
    let e = req_ops(r#"{"set":{"header":"x-echo","value":"v=${req.query.p}"}}"#);
    for payload in ["a%0d%0aX-Injected:%20yes", "a%0aB", "a%00b"] {
        let path = format!("/x?p={payload}");
        let mut h = HeaderList::from_pairs([
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", "a"),
        ]);
        let (report, _) = run_request(&e, &mut h);
        assert!(!h.contains("x-echo"), "{payload} must not be written");
        assert!(!h.is_changed());
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].target, "x-echo");
        assert_eq!(report.rejected[0].problem, ValueProblem::ControlCharacter);
    }
}

#[test]
fn oversized_values_are_not_written() {
    let e = engine(
        r#"{"limits":{"max_value_bytes":8,"max_path_bytes":20},
            "request":[{"operations":[
              {"set":{"header":"x-long","value":"${req.header.x-user}${req.header.x-user}"}},
              {"set":{"header":"x-short","value":"${req.header.x-user}"}},
              {"add":{"query":"pad","value":"12345678"}}]}]}"#,
    );
    let mut h = request();
    let (report, _) = run_request(&e, &mut h);
    assert!(!h.contains("x-long"));
    assert_eq!(get(&h, "x-short").as_deref(), Some("alice"));
    assert_eq!(
        get(&h, ":path").as_deref(),
        Some("/v1/users?id=42&debug=1&name=J%20Doe")
    );
    assert_eq!(
        rejections(&report),
        [
            ("x-long", ValueProblem::TooLong),
            (":path", ValueProblem::TooLong)
        ]
    );
}

#[test]
fn a_rename_or_copy_whose_value_is_refused_loses_nothing() {
    let e = engine(
        r#"{"limits":{"max_value_bytes":10},
            "request":[{"operations":[
              {"rename":{"header":"x-a","to":"x-b"}},
              {"copy":{"header":"x-c","to":"x-d"}}]}]}"#,
    );
    let mut h = HeaderList::from_pairs([
        (":path", "/"),
        ("x-a", "0123456789ABCDEF"),
        ("x-c", "0123456789ABCDEF"),
        ("x-c", "short"),
        ("x-d", "old"),
    ]);
    let (report, _) = run_request(&e, &mut h);
    // The rename could not write its value: the source stays.
    assert_eq!(get(&h, "x-a").as_deref(), Some("0123456789ABCDEF"));
    assert!(!h.contains("x-b"));
    // The first value written still replaces what `to` had.
    assert_eq!(h.get_all("x-d").collect::<Vec<_>>(), [b"short".as_slice()]);
    assert_eq!(report.rejected.len(), 2);
    // A request without a path (CONNECT) gets no invented one.
    let e = engine(r#"{"request":[{"operations":[{"set":{"query":"a","value":"1"}}]}]}"#);
    let mut h = HeaderList::from_pairs([(":method", "CONNECT"), (":authority", "db:5432")]);
    run_request(&e, &mut h);
    assert!(!h.contains(":path"));
}

#[test]
fn rule_sets_match_and_apply_in_order() {
    let e = engine(
        r#"{"request":[
            {"name":"api","match":{"path":{"prefix":"/v1/"},"methods":["GET"]},
             "operations":[{"set":{"header":"x-stage","value":"one"}}]},
            {"name":"needs-stage","match":{"headers":[{"name":"x-stage","value":{"exact":"one"}}]},
             "operations":[{"set":{"header":"x-stage","value":"two"}}]},
            {"match":{"host":{"exact":"other.example.com"}},
             "operations":[{"set":{"header":"x-never","value":"x"}}]}]}"#,
    );
    let mut h = request();
    let (report, _) = run_request(&e, &mut h);
    assert_eq!(report.applied, vec![0, 1]);
    assert_eq!(get(&h, "x-stage").as_deref(), Some("two"));
    assert!(!h.contains("x-never"));
}

#[test]
fn response_rules_use_request_values_captured_at_request_time() {
    let e = engine(
        r#"{"request":[{"operations":[{"set":{"header":"x-user","value":"rewritten"}}]}],
            "response":[
              {"match":{"path":{"prefix":"/v1/"}},"operations":[
                {"set":{"header":"x-request-path","value":"${req.path}"}},
                {"set":{"header":"x-who","value":"${req.header.x-user}"}},
                {"set":{"header":"x-status","value":"status ${resp.status} from ${resp.header.server}"}},
                {"remove":{"header":"server"}}]},
              {"match":{"path":{"prefix":"/nope"}},"operations":[{"set":{"header":"x-never","value":"1"}}]}]}"#,
    );
    let mut h = request();
    let (_, plan) = run_request(&e, &mut h);
    assert_eq!(plan.matched, vec![0]);
    let mut resp = HeaderList::from_pairs([
        (":status", "200"),
        ("server", "upstream"),
        ("x-user", "resp"),
    ]);
    let mut report = Report::default();
    e.on_response(&plan, &mut resp, &mut FakeHost, &mut report);
    assert_eq!(get(&resp, "x-request-path").as_deref(), Some("/v1/users"));
    assert_eq!(get(&resp, "x-who").as_deref(), Some("rewritten"));
    assert_eq!(
        get(&resp, "x-status").as_deref(),
        Some("status 200 from upstream")
    );
    assert!(!resp.contains("server"));
    assert!(!resp.contains("x-never"));
}

#[test]
fn response_rules_that_only_write_do_not_need_the_response_headers() {
    let writes_only = engine(
        r#"{"response":[{"operations":[
            {"set":{"header":"x-a","value":"${req.path}"}},
            {"add":{"header":"x-b","value":"b"}},
            {"remove":{"header":"server"}}]}]}"#,
    );
    assert!(!writes_only.response_reads_headers());
    let (_, plan) = run_request(&writes_only, &mut request());
    let mut blind = HeaderList::unread();
    writes_only.on_response(&plan, &mut blind, &mut FakeHost, &mut Report::default());
    let edits: Vec<String> = blind.edits().iter().map(|e| format!("{e:?}")).collect();
    assert_eq!(
        edits,
        [
            r#"Set("x-a", [47, 118, 49, 47, 117, 115, 101, 114, 115])"#,
            r#"Add("x-b", [98])"#,
            r#"Remove("server")"#
        ]
    );
    for reader in [
        r#"{"set_if_absent":{"header":"x","value":"1"}}"#,
        r#"{"set":{"header":"x","value":"${resp.header.server}"}}"#,
        r#"{"set":{"header":"x","value":"${resp.status}"}}"#,
        r#"{"remove":{"header_prefix":"x-"}}"#,
        r#"{"rename":{"header":"a","to":"b"}}"#,
        r#"{"replace":{"header":"a","regex":"x","replacement":"y"}}"#,
    ] {
        let e = engine(&format!(r#"{{"response":[{{"operations":[{reader}]}}]}}"#));
        assert!(e.response_reads_headers(), "{reader}");
    }
}

#[test]
fn no_matching_response_rules_means_no_response_work() {
    let e = engine(
        r#"{"response":[{"match":{"methods":["POST"]},"operations":[{"set":{"header":"x","value":"1"}}]}]}"#,
    );
    let (_, plan) = run_request(&e, &mut request());
    assert!(plan.matched.is_empty());
    assert!(plan.captured.is_empty());
}

#[test]
fn attribute_text_decodes_envoy_encodings() {
    use crate::template::AttributeKind::{Boolean, Integer, Text, Unknown};
    use crate::transform::attribute_text;
    assert_eq!(
        attribute_text(b"127.0.0.1:80".to_vec(), Text),
        b"127.0.0.1:80"
    );
    assert_eq!(
        attribute_text(443i64.to_le_bytes().to_vec(), Integer),
        b"443"
    );
    assert_eq!(attribute_text(vec![0], Boolean), b"false");
    assert_eq!(attribute_text(vec![1, 0], Boolean), b"");
    assert_eq!(attribute_text(b"443".to_vec(), Integer), b"");
    // Known text of 8 bytes with a control character stays text (the write
    // refuses and counts it); unknown, it would be taken for an integer.
    assert_eq!(
        attribute_text(b"abc\x01defg".to_vec(), Text),
        b"abc\x01defg"
    );
    assert_eq!(attribute_text(b"a\r\nb".to_vec(), Text), b"a\r\nb");
    // Unknown kinds are guessed.
    assert_eq!(attribute_text(b"plain".to_vec(), Unknown), b"plain");
    assert_eq!(
        attribute_text(b"ab\tc\tde\t".to_vec(), Unknown),
        b"ab\tc\tde\t"
    );
    assert_eq!(attribute_text(7i64.to_le_bytes().to_vec(), Unknown), b"7");
    assert_eq!(attribute_text(vec![1], Unknown), b"true");
    assert_eq!(attribute_text(vec![0xff, 0xfe], Unknown), b"");
    assert_eq!(attribute_text(b"a\r\nb".to_vec(), Unknown), b"a\r\nb");
}

#[test]
fn attribute_kinds_follow_envoys_table() {
    use crate::template::{AttributeKind, Part, Var};
    let kind = |name: &str| {
        let t = crate::template::parse(
            &format!("${{attr.{name}}}"),
            crate::template::Phase::Request,
            &mut crate::template::Captures::default(),
            &|_| None,
            &pwf_shared::FieldPath::root(),
        )
        .unwrap();
        match t.parts() {
            [Part::Var {
                var: Var::Attribute(_, kind),
                ..
            }] => *kind,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(kind("source.address"), AttributeKind::Text);
    assert_eq!(kind("request.id"), AttributeKind::Text);
    assert_eq!(kind("destination.port"), AttributeKind::Integer);
    assert_eq!(kind("request.time"), AttributeKind::Integer);
    assert_eq!(kind("connection.mtls"), AttributeKind::Boolean);
    assert_eq!(kind("request.headers_bytes"), AttributeKind::Integer);
    assert_eq!(kind("upstream.num_endpoints"), AttributeKind::Integer);
    assert_eq!(kind("connection_id"), AttributeKind::Integer);
    assert_eq!(kind("request.headers.x-tabbed"), AttributeKind::Text);
    assert_eq!(kind("response.trailers.grpc-status"), AttributeKind::Text);
    assert_eq!(kind("request.headers"), AttributeKind::Unknown);
    assert_eq!(kind("metadata.filter_metadata"), AttributeKind::Unknown);
    assert_eq!(kind("xds.cluster_name"), AttributeKind::Unknown);
}

fn config_error(json: &str) -> String {
    try_engine(json).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn bad_configs_name_the_field_and_reason() {
    let cases = [
        (r#"{"requets":[]}"#, "requets: unknown field `requets`"),
        (
            r#"{"request":[{"operations":[{"rewrite_path":{"regex":"^/old","replacement":"/new?v=2"}}]}]}"#,
            "request[0].operations[0].rewrite_path.replacement: must not contain '?' or '#': the path is rewritten without its query, which is kept (use query operations to change it)",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"x","value":"${req.hedaer.x}"}}]}]}"#,
            "request[0].operations[0].set.value: template refers to unknown variable 'req.hedaer.x'",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"X Bad","value":"v"}}]}]}"#,
            "request[0].operations[0].set.header: 'X Bad': header names must be lower case",
        ),
        (
            r#"{"request":[{"operations":[{"replace":{"header":"x","regex":"(","replacement":""}}]}]}"#,
            "request[0].operations[0].replace.regex: invalid regex",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":":method","value":"POST"}}]}]}"#,
            "request[0].operations[0].set.header: pseudo-header ':method' cannot be changed",
        ),
        (
            r#"{"response":[{"operations":[{"set":{"header":":status","value":"500"}}]}]}"#,
            "response[0].operations[0].set.header: pseudo-header ':status' cannot be changed",
        ),
        (
            r#"{"request":[{"operations":[{"remove":{"header":":path"}}]}]}"#,
            "request[0].operations[0].remove.header: pseudo-header ':path' cannot be removed",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"content-length","value":"0"}}]}]}"#,
            "request[0].operations[0].set.header: 'content-length' frames the body: Envoy's codec writes it, so a rule may read it but not change or remove it",
        ),
        (
            r#"{"response":[{"operations":[{"remove":{"header":"transfer-encoding"}}]}]}"#,
            "response[0].operations[0].remove.header: 'transfer-encoding' frames the body",
        ),
        (
            r#"{"request":[{"operations":[{"rename":{"header":"content-length","to":"x-len"}}]}]}"#,
            "request[0].operations[0].rename.header: 'content-length' frames the body",
        ),
        (
            r#"{"request":[{"operations":[{"copy":{"header":"x-a","to":"transfer-encoding"}}]}]}"#,
            "request[0].operations[0].copy.to: 'transfer-encoding' frames the body",
        ),
        (
            r#"{"request":[{"operations":[{"remove":{"header":"x-forwarded-proto"}}]}]}"#,
            "request[0].operations[0].remove.header: 'x-forwarded-proto' cannot be removed in request rules: Envoy's router matches no route without it (404); it can be set",
        ),
        (
            r#"{"request":[{"operations":[{"rename":{"header":"x-forwarded-proto","to":"x-proto"}}]}]}"#,
            "request[0].operations[0].rename.header: 'x-forwarded-proto' cannot be removed in request rules",
        ),
        (
            r#"{"response":[{"operations":[{"set":{"header":"connection","value":"close"}}]}]}"#,
            "response[0].operations[0].set.header: 'connection' is managed by Envoy's codec and cannot be written (it can be removed)",
        ),
        (
            r#"{"request":[{"operations":[{"add":{"header":"upgrade","value":"websocket"}}]}]}"#,
            "request[0].operations[0].add.header: 'upgrade' is managed by Envoy's codec",
        ),
        (
            r#"{"request":[{"operations":[{"replace":{"header":"te","regex":"x","replacement":"y"}}]}]}"#,
            "request[0].operations[0].replace.header: 'te' is managed by Envoy's codec",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"a","query":"b","value":"v"}}]}]}"#,
            "request[0].operations[0].set: exactly one of 'header' or 'query' is required",
        ),
        (
            r#"{"response":[{"operations":[{"set":{"query":"a","value":"v"}}]}]}"#,
            "response[0].operations[0].set.query: query parameters can only be changed in request rules",
        ),
        (
            r#"{"request":[{"operations":[{"set":{"header":"x","value":"${resp.status}"}}]}]}"#,
            "request[0].operations[0].set.value: template variable 'resp.status' is only available in response rules",
        ),
        (
            r#"{"request":[{"operations":[{"explode":{}}]}]}"#,
            "request[0].operations[0]: unknown variant `explode`",
        ),
        (r#"{"request":[{"operations":[]}]}"#, "request[0].operations: at least one operation is required"),
        (
            r#"{"request":[{"name":"a","operations":[{"remove":{"header":"x"}}]},{"name":"a","operations":[{"remove":{"header":"x"}}]}]}"#,
            "request[1].name: duplicate rule set name 'a'",
        ),
        (
            r#"{"request":[{"match":{"path":{"regex":"["}},"operations":[{"remove":{"header":"x"}}]}]}"#,
            "request[0].match.path.regex: invalid regex",
        ),
        (r#"{"limits":{"max_value_bytes":0}}"#, "limits.max_value_bytes: must be greater than 0"),
        (
            r#"{"request":[{"operations":[{"set":{"header":"x","value":"a\r\nb"}}]}]}"#,
            "request[0].operations[0].set.value: value contains a control character (CR, LF, NUL, DEL or another byte below 0x20 but tab)",
        ),
    ];
    for (json, expected) in cases {
        let err = config_error(json);
        assert!(
            err.starts_with(expected),
            "config {json}\n  expected: {expected}\n  got:      {err}"
        );
    }
}

#[test]
fn empty_config_is_a_valid_noop() {
    assert!(engine("{}").is_noop());
}
