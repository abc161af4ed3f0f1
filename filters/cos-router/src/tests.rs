//! Native unit tests of the pure logic: config validation, CIDR matching,
//! conditions, hashing and assignment, overrides and cookies.

use crate::cidr::{parse_source_address, Cidr};
use crate::conditions::{Host, Request};
use crate::config::{Compiled, Config};
use crate::cookie;
use crate::experiment;
use crate::router::{decide, Decision, Outcome, OverrideUse};
use pwf_shared::HeaderList;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;

fn load(config: &Value) -> Result<Compiled, String> {
    Config::load(Some(config.to_string().as_bytes())).map_err(|e| e.to_string())
}

fn err(config: &Value) -> String {
    match load(config) {
        Ok(_) => panic!("config should be rejected: {config}"),
        Err(e) => e,
    }
}

/// A request with plain values; counts every host call by name.
#[derive(Clone, Default)]
struct Fake {
    headers: HeaderList,
    claims: Option<Value>,
    address: Option<String>,
    calls: Rc<RefCell<BTreeMap<String, usize>>>,
}

impl Fake {
    fn new(headers: &[(&str, &str)]) -> Self {
        let mut all = vec![
            (":method", "GET"),
            (":path", "/"),
            (":authority", "api.example.com"),
        ];
        for (n, v) in headers {
            all.retain(|(an, _)| an != n);
            all.push((n, v));
        }
        Self {
            headers: HeaderList::from_pairs(all),
            address: Some("192.0.2.10:51000".into()),
            ..Self::default()
        }
    }

    fn claims(mut self, claims: Value) -> Self {
        self.claims = Some(claims);
        self
    }

    fn from(mut self, address: &str) -> Self {
        self.address = Some(address.into());
        self
    }

    fn count(&self, what: &str) {
        *self.calls.borrow_mut().entry(what.into()).or_default() += 1;
    }
}

impl Host for Fake {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.count(name);
        self.headers.get(name).map(<[u8]>::to_vec)
    }

    fn claims(&mut self) -> Option<Vec<u8>> {
        self.count("claims");
        self.claims.as_ref().map(|c| c.to_string().into_bytes())
    }

    fn source_address(&mut self) -> Option<Vec<u8>> {
        self.count("source");
        self.address.as_ref().map(|a| a.as_bytes().to_vec())
    }
}

fn run(compiled: &Compiled, fake: Fake) -> Decision {
    let mut next = 0u64;
    let mut new_id = || {
        next += 1;
        cookie::new_id(0xabc, next)
    };
    let mut req = Request::new(fake, &compiled.slots);
    decide(compiled, &mut req, &mut new_id)
}

fn class_of(compiled: &Compiled, fake: Fake) -> String {
    let d = run(compiled, fake);
    compiled.classes[d.class].name.clone()
}

/// The issue's example: premium plans, a region, and 10% of free users.
fn example() -> Value {
    json!({
        "cluster_header": "x-cos-cluster",
        "classes": [
            {"name": "internal", "match": {"source_cidrs": ["10.0.0.0/8", "fd00::/8"]}, "cluster": "internal"},
            {"name": "pro", "match": {"claims": [{"claim": "plan", "value": {"exact": "pro"}}]},
             "cluster": "premium", "set_headers": [{"name": "x-priority", "value": "high"}]},
            {"name": "eu", "match": {"headers": [{"name": "x-region", "value": {"exact": "eu"}}]},
             "cluster": "eu", "authority": "eu.api.internal"},
            {"name": "beta", "match": {"query": [{"name": "beta", "value": {"exact": "1"}}], "path": {"prefix": "/api/"}, "methods": ["GET"]},
             "cluster": "beta"}
        ],
        "default_class": {"name": "free", "cluster": "standard", "set_headers": [{"name": "x-priority", "value": "low"}]},
        "experiments": [
            {"name": "checkout", "salt": "checkout-2024", "classes": ["free"],
             "key": [{"claim": "sub"}, {"header": "x-user-id"}, {"anonymous_id": true}],
             "variants": [{"name": "control", "weight": 90}, {"name": "b", "weight": 10}],
             "header": "x-exp-checkout"},
            {"name": "search", "salt": "search-2024",
             "key": [{"cookie": "uid"}, {"anonymous_id": true}],
             "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}, {"name": "c", "weight": 1}]}
        ],
        "exposure_header": "x-cos-experiments",
        "anonymous_id": {"cookie": "cos_uid", "header": "x-cos-anonymous-id"},
        "override": {"header": "x-cos-override", "allowed_sources": ["127.0.0.0/8", "::1/128"]}
    })
}

// ---------------------------------------------------------------- config

#[test]
fn the_example_compiles_with_its_defaults() {
    let c = load(&example()).unwrap();
    let names: Vec<&str> = c.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["internal", "pro", "eu", "beta", "free"]);
    assert_eq!(
        c.class_outputs,
        ["x-cos-class", "x-cos-cluster", "x-priority"]
    );
    assert_eq!(
        c.classes[1].outputs,
        [
            Some("pro".into()),
            Some("premium".into()),
            Some("high".into())
        ]
    );
    assert_eq!(
        c.classes[0].outputs,
        [Some("internal".into()), Some("internal".into()), None],
        "a class without x-priority removes it"
    );
    assert_eq!(c.classes[2].authority.as_deref(), Some("eu.api.internal"));
    assert_eq!(c.variants_header, "x-cos-experiments");
    assert_eq!(c.experiments[0].total_weight, 100);
    assert_eq!(c.experiments[0].classes, [4]);
    let anonymous = c.anonymous.as_ref().unwrap();
    assert_eq!(
        anonymous.attributes,
        "; Max-Age=31536000; Path=/; Secure; HttpOnly; SameSite=Lax"
    );
}

#[test]
fn a_minimal_config_is_a_default_class() {
    let c = load(&json!({"default_class": {"name": "all"}})).unwrap();
    assert_eq!(c.classes.len(), 1);
    assert_eq!(c.class_outputs, ["x-cos-class"]);
    let d = run(&c, Fake::new(&[]));
    assert_eq!(d.class, 0);
    assert!(d.outcomes.is_empty());
}

#[test]
fn bad_configs_name_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "missing field `default_class`"),
        (json!({"default_class": {"name": "a"}, "clases": []}), "clases: unknown field `clases`"),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s", "key": [{"header": "x-u"}],
                "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 0}]}]}),
            "experiments[0].variants[1].weight: must be positive",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s", "key": [{"header": "x-u"}],
                "variants": [{"name": "a", "weight": -1}]}]}),
            "experiments[0].variants[0].weight: invalid value: integer `-1`, expected u32",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s", "key": [{"header": "x-u"}],
                "variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]}]}),
            "experiments[0].variants[1].name: variant 'a' is defined twice",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s", "key": [{"header": "x-u"}],
                "variants": []}]}),
            "experiments[0].variants: 1 to 32 variants are required",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s", "key": [{"header": "x-u"}],
                "variants": [{"name": "a", "weight": 600000}, {"name": "b", "weight": 600000}]}]}),
            "experiments[0].variants[1].weight: the weights of an experiment add up to at most 1000000",
        ),
        (
            json!({"classes": [{"name": "a"}], "default_class": {"name": "a"}}),
            "default_class.name: class 'a' is defined twice",
        ),
        (
            json!({"classes": [{"name": "Pro"}], "default_class": {"name": "a"}}),
            "classes[0].name: class name 'Pro' must be 1 to 64 characters of a-z, 0-9, '_' or '-'",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [
                {"name": "e", "salt": "s", "key": [{"header": "x-u"}], "variants": [{"name": "a", "weight": 1}]},
                {"name": "e", "salt": "t", "key": [{"header": "x-u"}], "variants": [{"name": "a", "weight": 1}]}]}),
            "experiments[1].name: experiment 'e' is defined twice",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [
                {"name": "e", "salt": "s", "key": [{"header": "x-u"}], "variants": [{"name": "a", "weight": 1}]},
                {"name": "f", "salt": "s", "key": [{"header": "x-u"}], "variants": [{"name": "a", "weight": 1}]}]}),
            "experiments[1].salt: experiment 'e' has the same salt: the two would assign every user to the same buckets",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s", "classes": ["free"],
                "key": [{"header": "x-u"}], "variants": [{"name": "a", "weight": 1}]}]}),
            "experiments[0].classes[0]: 'free' is not a class",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s",
                "key": [{"anonymous_id": true}], "variants": [{"name": "a", "weight": 1}]}]}),
            "experiments[0].key[0].anonymous_id: needs 'anonymous_id' at the top level (the cookie that keeps it)",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s",
                "key": [{"header": "x-u", "cookie": "c"}], "variants": [{"name": "a", "weight": 1}]}]}),
            "experiments[0].key[0]: exactly one of 'claim', 'header', 'cookie' or 'anonymous_id' is required",
        ),
        (
            json!({"default_class": {"name": "a"}, "experiments": [{"name": "e", "salt": "s",
                "key": [], "variants": [{"name": "a", "weight": 1}]}]}),
            "experiments[0].key: at least one key source is required",
        ),
        (
            json!({"default_class": {"name": "a", "cluster": "c"}}),
            "default_class.cluster: needs 'cluster_header' at the top level (the header a route's cluster_header names)",
        ),
        (
            json!({"cluster_header": "x-c", "classes": [{"name": "b", "cluster": "has space"}], "default_class": {"name": "a"}}),
            "classes[0].cluster: 'has space' is not a cluster name (1 to 255 visible ASCII characters, no spaces)",
        ),
        (
            json!({"cluster_header": "X-Cluster", "default_class": {"name": "a"}}),
            "cluster_header: 'X-Cluster': header names must be lower case",
        ),
        (
            json!({"cluster_header": "x-cos-class", "default_class": {"name": "a"}}),
            "cluster_header: 'x-cos-class' is already written by another setting",
        ),
        (
            json!({"class_header": ":path", "default_class": {"name": "a"}}),
            "class_header: ':path' cannot be written here (use a class's 'authority' to rewrite the host)",
        ),
        (
            json!({"default_class": {"name": "a", "set_headers": [{"name": "x-cos-class", "value": "v"}]}}),
            "default_class.set_headers[0].name: 'x-cos-class' is class_header or cluster_header; the filter sets it",
        ),
        (
            json!({"default_class": {"name": "a", "set_headers": [{"name": "x-p", "value": "a\nb"}]}}),
            "default_class.set_headers[0].value: contains a control character (CR, LF, NUL, DEL or another byte below 0x20 but tab)",
        ),
        (
            json!({"default_class": {"name": "a", "authority": "a/b"}}),
            "default_class.authority: 'a/b' is not a host[:port]",
        ),
        (
            json!({"classes": [{"name": "b", "match": {"source_cidrs": ["10.0.0.0/33"]}}], "default_class": {"name": "a"}}),
            "classes[0].match.source_cidrs[0]: '10.0.0.0/33': an IPv4 prefix is at most 32",
        ),
        (
            json!({"classes": [{"name": "b", "match": {"source_cidrs": ["10.0.0.1/8"]}}], "default_class": {"name": "a"}}),
            "classes[0].match.source_cidrs[0]: '10.0.0.1/8' has host bits set; the network is 10.0.0.0/8",
        ),
        (
            json!({"classes": [{"name": "b", "match": {"source_cidrs": ["10.0.0.0/x"]}}], "default_class": {"name": "a"}}),
            "classes[0].match.source_cidrs[0]: '10.0.0.0/x': prefix 'x' is not a number",
        ),
        (
            json!({"classes": [{"name": "b", "match": {"headers": [{"name": "x-a", "value": {"regex": "("}}]}}], "default_class": {"name": "a"}}),
            "classes[0].match.headers[0].value.regex: invalid regex",
        ),
        (
            json!({"classes": [{"name": "b", "match": {"claims": [{"claim": "a..b"}]}}], "default_class": {"name": "a"}}),
            "classes[0].match.claims[0].claim: 'a..b' is not a claim path (e.g. 'plan' or 'org.tier')",
        ),
        (
            json!({"classes": [{"name": "b", "match": {"methods": ["get"]}}], "default_class": {"name": "a"}}),
            "classes[0].match.methods[0]: 'get' is not an upper-case HTTP method",
        ),
        (
            json!({"default_class": {"name": "a"}, "override": {"allowed_sources": []}}),
            "override.allowed_sources: at least one range is required (e.g. \"10.0.0.0/8\")",
        ),
        (
            json!({"default_class": {"name": "a"}, "override": {"header": "x-cos-experiments", "allowed_sources": ["::1"]}}),
            "override.header: 'x-cos-experiments' is a header this filter writes",
        ),
        (
            json!({"default_class": {"name": "a"}, "anonymous_id": {"same_site": "none", "secure": false}}),
            "anonymous_id.same_site: 'none' requires 'secure': browsers drop SameSite=None cookies without Secure",
        ),
        (
            json!({"default_class": {"name": "a"}, "anonymous_id": {"cookie": "a b"}}),
            "anonymous_id.cookie: 'a b' is not a cookie name (an HTTP token)",
        ),
        (
            json!({"default_class": {"name": "a"}, "anonymous_id": {"max_age_s": 0}}),
            "anonymous_id.max_age_s: must be 1 to 34560000 (400 days)",
        ),
        (
            json!({"default_class": {"name": "a"}, "exposure_header": "set-cookie"}),
            "exposure_header: 'set-cookie' cannot be written: it is a pseudo-header, cookie, framing, hop-by-hop or routing header",
        ),
        (
            json!({"classes": [{"name": "b", "match": {"headers": [{"name": "x-cos-class", "value": {"exact": "pro"}}]}}], "default_class": {"name": "a"}}),
            "classes[0].match.headers[0].name: 'x-cos-class' is a header this filter writes; a condition on it would read the client's copy",
        ),
        (
            json!({"experiments": [{"name": "e", "salt": "s", "key": [{"header": "x-cos-experiments"}], "variants": [{"name": "a", "weight": 1}]}], "default_class": {"name": "a"}}),
            "experiments[0].key[0].header: 'x-cos-experiments' is a header this filter writes; a condition on it would read the client's copy",
        ),
        (
            json!({"default_class": {"name": "a"}, "exposure_header": ":status"}),
            "exposure_header: ':status' cannot be written: it is a pseudo-header, cookie, framing, hop-by-hop or routing header",
        ),
        (
            json!({"default_class": {"name": "a", "set_headers": [{"name": "transfer-encoding", "value": "v"}]}}),
            "default_class.set_headers[0].name: 'transfer-encoding' cannot be written: it is a cookie, framing, hop-by-hop or routing header",
        ),
        (
            json!({"default_class": {"name": "a", "set_headers": [{"name": "x-forwarded-proto", "value": "https"}]}}),
            "default_class.set_headers[0].name: 'x-forwarded-proto' cannot be written: it is a cookie, framing, hop-by-hop or routing header",
        ),
        (
            json!({"classes": [{"name": "b", "match": {"source_cidrs": ["10.0.0.0/256"]}}], "default_class": {"name": "a"}}),
            "classes[0].match.source_cidrs[0]: '10.0.0.0/256': an IPv4 prefix is at most 32",
        ),
    ];
    for (config, want) in cases {
        let got = err(&config);
        assert!(
            got.starts_with(want),
            "config {config}\n got: {got}\nwant: {want}"
        );
    }
}

// ---------------------------------------------------------------- CIDR

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn cidr_edge_cases() {
    let all4 = Cidr::parse("0.0.0.0/0").unwrap();
    assert!(all4.contains(ip("255.255.255.255")));
    assert!(all4.contains(ip("0.0.0.0")));
    assert!(
        !all4.contains(ip("::1")),
        "an IPv4 range never holds an IPv6 address"
    );
    assert!(
        all4.contains(ip("::ffff:203.0.113.9")),
        "mapped addresses are IPv4"
    );

    let all6 = Cidr::parse("::/0").unwrap();
    assert!(all6.contains(ip("2001:db8::1")));
    assert!(!all6.contains(ip("10.0.0.1")));
    assert!(
        !all6.contains(ip("::ffff:10.0.0.1")),
        "a mapped address is IPv4, not in ::/0"
    );

    let host = Cidr::parse("192.0.2.7/32").unwrap();
    assert!(host.contains(ip("192.0.2.7")));
    assert!(!host.contains(ip("192.0.2.6")));
    assert_eq!(
        Cidr::parse("192.0.2.7").unwrap(),
        host,
        "a bare address is /32"
    );

    let host6 = Cidr::parse("2001:db8::7/128").unwrap();
    assert!(host6.contains(ip("2001:db8::7")));
    assert!(!host6.contains(ip("2001:db8::8")));
    assert_eq!(Cidr::parse("2001:db8::7").unwrap(), host6);

    let ten = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(ten.contains(ip("10.255.255.255")));
    assert!(!ten.contains(ip("11.0.0.0")));
    assert!(ten.contains(ip("::ffff:10.1.2.3")));

    let mapped_range = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
    assert_eq!(
        mapped_range, ten,
        "a range in mapped form is the IPv4 range"
    );

    let odd = Cidr::parse("10.0.0.0/9").unwrap();
    assert!(odd.contains(ip("10.127.255.255")));
    assert!(!odd.contains(ip("10.128.0.0")));

    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0.1/8",
        "2001:db8::1/32",
        "10.0.0.0/",
        "/8",
        "10.0.0/8",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "x",
    ] {
        assert!(Cidr::parse(bad).is_err(), "{bad} must be rejected");
    }
}

#[test]
fn source_addresses_with_and_without_ports() {
    assert_eq!(
        parse_source_address(b"10.0.0.7:51234"),
        Some(ip("10.0.0.7"))
    );
    assert_eq!(parse_source_address(b"[::1]:51234"), Some(ip("::1")));
    assert_eq!(
        parse_source_address(b"[::ffff:10.0.0.7]:80"),
        Some(ip("::ffff:10.0.0.7"))
    );
    assert_eq!(parse_source_address(b"10.0.0.7"), Some(ip("10.0.0.7")));
    assert_eq!(
        parse_source_address(b"2001:db8::1"),
        Some(ip("2001:db8::1"))
    );
    assert_eq!(
        parse_source_address(b"[fe80::1%eth0]:51234"),
        Some(ip("fe80::1"))
    );
    assert_eq!(parse_source_address(b"fe80::1%2"), Some(ip("fe80::1")));
    assert_eq!(parse_source_address(b"10.0.0.7%eth0"), None);
    assert_eq!(parse_source_address(b"[%eth0]:1"), None);
    assert_eq!(parse_source_address(b"/tmp/envoy.sock"), None);
    assert_eq!(parse_source_address(b"10.0.0.7:port"), None);
    assert_eq!(parse_source_address(b"[::1"), None);
    assert_eq!(parse_source_address(b"\xff"), None);
}

// ---------------------------------------------------------------- classes

#[test]
fn the_first_matching_class_wins_and_the_default_catches_the_rest() {
    let c = load(&example()).unwrap();
    let pro = json!({"demo": {"sub": "alice", "plan": "pro"}});
    assert_eq!(class_of(&c, Fake::new(&[]).claims(pro.clone())), "pro");
    assert_eq!(
        class_of(&c, Fake::new(&[]).claims(pro).from("10.1.2.3:4000")),
        "internal",
        "internal comes first"
    );
    assert_eq!(class_of(&c, Fake::new(&[("x-region", "eu")])), "eu");
    assert_eq!(class_of(&c, Fake::new(&[("x-region", "us")])), "free");
    assert_eq!(
        class_of(&c, Fake::new(&[(":path", "/api/x?beta=1")])),
        "beta"
    );
    assert_eq!(
        class_of(
            &c,
            Fake::new(&[(":path", "/api/x?beta=1"), (":method", "POST")])
        ),
        "free",
        "every condition must hold"
    );
    assert_eq!(class_of(&c, Fake::new(&[(":path", "/web?beta=1")])), "free");
    assert_eq!(
        class_of(&c, Fake::new(&[(":path", "/api/x?beta=0")])),
        "free"
    );
    assert_eq!(
        class_of(&c, Fake::new(&[(":path", "/api/x?b%65ta=%31")])),
        "beta",
        "percent-decoded"
    );
    assert_eq!(
        class_of(&c, Fake::new(&[]).from("[fd00::5]:80")),
        "internal"
    );
    assert_eq!(
        class_of(&c, Fake::new(&[]).from("[::ffff:10.9.9.9]:80")),
        "internal"
    );
}

#[test]
fn claim_conditions_by_provider_arrays_numbers_and_absence() {
    let c = load(&json!({
        "classes": [
            {"name": "admin", "match": {"claims": [{"claim": "roles", "provider": "idp", "value": {"exact": "admin"}}]}},
            {"name": "tier2", "match": {"claims": [{"claim": "org.tier", "value": {"exact": "2"}}]}},
            {"name": "no-plan", "match": {"claims": [{"claim": "plan", "absent": true}]}}
        ],
        "default_class": {"name": "other"}
    }))
    .unwrap();
    let claims = |v: Value| Fake::new(&[]).claims(v);
    assert_eq!(
        class_of(
            &c,
            claims(json!({"idp": {"roles": ["user", "admin"], "plan": "x"}}))
        ),
        "admin"
    );
    assert_eq!(
        class_of(
            &c,
            claims(json!({"demo": {"roles": ["admin"], "plan": "x"}}))
        ),
        "other",
        "another provider's token does not count"
    );
    assert_eq!(
        class_of(
            &c,
            claims(json!({"demo": {"org": {"tier": 2}, "plan": "x"}}))
        ),
        "tier2"
    );
    assert_eq!(
        class_of(&c, claims(json!({"demo": {"sub": "a"}}))),
        "no-plan"
    );
    assert_eq!(
        class_of(&c, Fake::new(&[])),
        "no-plan",
        "no verified token: no claims"
    );
    assert_eq!(
        class_of(&c, Fake::new(&[]).claims(json!("not an object"))),
        "no-plan"
    );
    // An object or an empty array is present; null is absent, and a provider
    // whose claim is null does not hide another's.
    for (plan, class) in [
        (json!({"tier": "gold"}), "other"),
        (json!([]), "other"),
        (json!(null), "no-plan"),
    ] {
        let fake = claims(json!({"demo": {"plan": plan}}));
        assert_eq!(class_of(&c, fake), class, "plan = {plan}");
    }
    let present = load(&json!({
        "classes": [{"name": "has-org", "match": {"claims": [{"claim": "org"}]}},
                    {"name": "pro", "match": {"claims": [{"claim": "plan", "value": {"exact": "pro"}}]}}],
        "default_class": {"name": "other"}
    }))
    .unwrap();
    assert_eq!(
        class_of(&present, claims(json!({"a": {"org": {"tier": "gold"}}}))),
        "has-org"
    );
    assert_eq!(
        class_of(&present, claims(json!({"a": {"org": null}}))),
        "other"
    );
    assert_eq!(
        class_of(
            &present,
            claims(json!({"a": {"plan": null}, "b": {"plan": "pro"}}))
        ),
        "pro"
    );
}

#[test]
fn host_and_header_presence_conditions() {
    let c = load(&json!({
        "classes": [
            {"name": "h", "match": {"host": {"exact": "API.example.com"}, "headers": [{"name": "x-a"}, {"name": "x-b", "absent": true}]}}
        ],
        "default_class": {"name": "d"}
    }))
    .unwrap();
    assert_eq!(
        class_of(
            &c,
            Fake::new(&[("x-a", ""), (":authority", "api.EXAMPLE.com:8443")])
        ),
        "h"
    );
    assert_eq!(class_of(&c, Fake::new(&[("x-a", "1"), ("x-b", "1")])), "d");
    assert_eq!(class_of(&c, Fake::new(&[])), "d");
}

#[test]
fn each_input_is_read_at_most_once_and_only_when_reached() {
    let c = load(&example()).unwrap();
    let fake =
        Fake::new(&[("x-user-id", "u1")]).claims(json!({"demo": {"plan": "free", "sub": "s1"}}));
    let calls = Rc::clone(&fake.calls);
    let d = run(&c, fake);
    assert_eq!(c.classes[d.class].name, "free");
    let calls = calls.borrow();
    assert!(calls.values().all(|&n| n == 1), "{calls:?}");
    assert_eq!(calls.get("claims"), Some(&1));
    assert_eq!(
        calls.get("x-user-id"),
        None,
        "sub came first, so x-user-id is never read"
    );

    // A matching first class reads nothing the later ones need.
    let c = load(&json!({
        "classes": [{"name": "a", "match": {"headers": [{"name": "x-a"}]}},
                    {"name": "b", "match": {"claims": [{"claim": "plan"}], "source_cidrs": ["10.0.0.0/8"]}}],
        "default_class": {"name": "d"}
    }))
    .unwrap();
    let fake = Fake::new(&[("x-a", "1")]);
    let calls = Rc::clone(&fake.calls);
    run(&c, fake);
    assert_eq!(calls.borrow().keys().collect::<Vec<_>>(), ["x-a"]);
}

// ---------------------------------------------------------------- hashing

#[test]
fn the_hash_is_the_documented_sha256_formula() {
    // Computed independently: int.from_bytes(sha256(b"checkout-2024:alice").digest()[:8], "big")
    assert_eq!(
        experiment::bucket("checkout-2024", b"alice", u64::MAX),
        16331560529478158244 // below u64::MAX, so the modulo keeps it
    );
    assert_eq!(experiment::bucket("checkout-2024", b"alice", 100), 44);
    assert_eq!(
        experiment::bucket("checkout-2024", b"alice", 1_000_003),
        553_415
    );
    assert_eq!(experiment::bucket("s", b"", 100), 20);
}

fn split_config(weights: &[u32]) -> Value {
    let variants: Vec<Value> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"name": format!("v{i}"), "weight": w}))
        .collect();
    json!({
        "default_class": {"name": "all"},
        "experiments": [
            {"name": "one", "salt": "salt-one", "key": [{"header": "x-user-id"}], "variants": variants},
            {"name": "two", "salt": "salt-two", "key": [{"header": "x-user-id"}],
             "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]}
        ]
    })
}

#[test]
fn ten_thousand_users_split_within_two_percent_of_the_weights() {
    for weights in [
        vec![90, 10],
        vec![50, 50],
        vec![1, 1, 1],
        vec![70, 20, 5, 5],
    ] {
        let c = load(&split_config(&weights)).unwrap();
        let e = &c.experiments[0];
        let mut counts = vec![0usize; weights.len()];
        for user in 0..10_000 {
            counts[experiment::assign(e, format!("user-{user}").as_bytes())] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (i, (&n, &w)) in counts.iter().zip(&weights).enumerate() {
            let got = n as f64 / 10_000.0;
            let want = f64::from(w) / f64::from(total);
            assert!(
                (got - want).abs() <= 0.02,
                "weights {weights:?}: variant {i} got {got}, want {want}"
            );
        }
    }
}

#[test]
fn experiments_with_different_salts_are_independent() {
    let c = load(&split_config(&[50, 50])).unwrap();
    let mut joint = [[0usize; 2]; 2];
    for user in 0..10_000 {
        let d = run(&c, Fake::new(&[("x-user-id", &format!("user-{user}"))]));
        let (Outcome::Assigned(a), Outcome::Assigned(b)) = (d.outcomes[0], d.outcomes[1]) else {
            panic!("both assigned: {d:?}");
        };
        joint[a][b] += 1;
    }
    for row in joint {
        for n in row {
            assert!(
                (2_300..=2_700).contains(&n),
                "each quarter holds about 25%: {joint:?}"
            );
        }
    }
}

#[test]
fn assignment_is_sticky_and_the_same_after_recompiling() {
    let first = load(&example()).unwrap();
    let again = load(&example()).unwrap();
    for user in 0..200 {
        let key = format!("sticky-{user}");
        let a = experiment::assign(&first.experiments[0], key.as_bytes());
        let b = experiment::assign(&first.experiments[0], key.as_bytes());
        let c = experiment::assign(&again.experiments[0], key.as_bytes());
        assert_eq!((a, a), (b, c));
    }
}

// ---------------------------------------------------------------- experiments

#[test]
fn eligibility_key_order_and_the_variants_value() {
    let c = load(&example()).unwrap();
    // A free user with a sub: both experiments; checkout from sub, search from the uid cookie.
    let d = run(
        &c,
        Fake::new(&[("cookie", "a=1; uid=cookie-user")])
            .claims(json!({"demo": {"sub": "alice", "plan": "free"}})),
    );
    let checkout = experiment::assign(&c.experiments[0], b"alice");
    let search = experiment::assign(&c.experiments[1], b"cookie-user");
    assert_eq!(
        d.outcomes,
        [Outcome::Assigned(checkout), Outcome::Assigned(search)]
    );
    let names = |e: usize, v: usize| c.experiments[e].variants[v].name.clone();
    assert_eq!(
        d.variants_value(&c).unwrap(),
        format!(
            "checkout={};search={}",
            names(0, checkout),
            names(1, search)
        )
    );
    assert_eq!(
        d.anonymous_id, None,
        "no experiment needed the anonymous id"
    );

    // A pro user is not eligible for checkout (free only).
    let d = run(
        &c,
        Fake::new(&[("cookie", "uid=u")]).claims(json!({"demo": {"sub": "bob", "plan": "pro"}})),
    );
    assert_eq!(d.outcomes[0], Outcome::NotEligible);
    assert!(d.variants_value(&c).unwrap().starts_with("search="));

    // The header key when there is no sub.
    let d = run(
        &c,
        Fake::new(&[("x-user-id", "carol"), ("cookie", "uid=u")]),
    );
    assert_eq!(
        d.outcomes[0],
        Outcome::Assigned(experiment::assign(&c.experiments[0], b"carol"))
    );
}

#[test]
fn no_key_means_no_variant() {
    let c = load(&json!({
        "default_class": {"name": "all"},
        "experiments": [{"name": "e", "salt": "s", "key": [{"header": "x-user-id"}, {"cookie": "uid"}],
                         "variants": [{"name": "a", "weight": 1}]}]
    }))
    .unwrap();
    let d = run(&c, Fake::new(&[("x-user-id", ""), ("cookie", "other=1")]));
    assert_eq!(d.outcomes, [Outcome::NoKey]);
    assert_eq!(d.variants_value(&c), None);
}

#[test]
fn anonymous_users_get_one_new_id_or_keep_a_valid_one() {
    let c = load(&example()).unwrap();
    // No cookie: one new id, used by both experiments.
    let d = run(&c, Fake::new(&[]));
    let id = cookie::new_id(0xabc, 1);
    assert_eq!(d.anonymous_id.as_deref(), Some(id.as_str()));
    assert!(d.anonymous_id_is_new);
    assert_eq!(
        d.outcomes,
        [
            Outcome::Assigned(experiment::assign(&c.experiments[0], id.as_bytes())),
            Outcome::Assigned(experiment::assign(&c.experiments[1], id.as_bytes()))
        ]
    );
    // The cookie brings it back: the same variants, no new id.
    let again = run(&c, Fake::new(&[("cookie", &format!("x=1; cos_uid={id}"))]));
    assert_eq!(again.anonymous_id.as_deref(), Some(id.as_str()));
    assert!(!again.anonymous_id_is_new);
    assert_eq!(again.outcomes, d.outcomes);
    // An invalid id is replaced.
    for bad in [
        "short",
        "has space in it 0123",
        "\"quoted-but-far-too-long-01234567890123456789012345678901234567890\"",
    ] {
        let d = run(&c, Fake::new(&[("cookie", &format!("cos_uid={bad}"))]));
        assert!(d.anonymous_id_is_new, "{bad}");
    }
}

#[test]
fn overrides_are_honoured_only_from_allowed_sources() {
    let c = load(&example()).unwrap();
    let user = |from: &str, value: &str| {
        Fake::new(&[("x-cos-override", value), ("x-user-id", "dave")]).from(from)
    };
    let d = run(&c, user("127.0.0.1:5000", "checkout=b, search = c"));
    assert_eq!(d.override_use, OverrideUse::Honoured);
    assert_eq!(d.outcomes, [Outcome::Overridden(1), Outcome::Overridden(2)]);
    assert_eq!(d.variants_value(&c).as_deref(), Some("checkout=b;search=c"));

    let d = run(&c, user("[::1]:5000", "checkout=nope;search=a"));
    assert_eq!(
        d.outcomes,
        [
            Outcome::Assigned(experiment::assign(&c.experiments[0], b"dave")),
            Outcome::Overridden(0)
        ],
        "an unknown variant is ignored"
    );

    let refused = run(&c, user("192.0.2.1:5000", "checkout=b;search=c"));
    assert_eq!(refused.override_use, OverrideUse::Refused);
    assert!(matches!(refused.outcomes[0], Outcome::Assigned(_)));
    assert_eq!(
        refused.outcomes[0],
        run(&c, Fake::new(&[("x-user-id", "dave")])).outcomes[0]
    );

    // Without `override` in the config the header means nothing.
    let mut plain = example();
    plain.as_object_mut().unwrap().remove("override");
    let c = load(&plain).unwrap();
    let d = run(&c, user("127.0.0.1:5000", "checkout=b"));
    assert_eq!(d.override_use, OverrideUse::Absent);
    assert!(matches!(d.outcomes[0], Outcome::Assigned(_)));
}

#[test]
fn an_override_applies_even_when_the_class_is_not_eligible() {
    let c = load(&example()).unwrap();
    let d = run(
        &c,
        Fake::new(&[("x-cos-override", "checkout=b")])
            .claims(json!({"demo": {"plan": "pro", "sub": "p"}}))
            .from("127.0.0.1:1"),
    );
    assert_eq!(c.classes[d.class].name, "pro");
    assert_eq!(d.outcomes[0], Outcome::Overridden(1));
}

// ---------------------------------------------------------------- cookies

#[test]
fn cookies_are_found_by_exact_name() {
    assert_eq!(cookie::find(b"a=1; b=2", "b"), Some(&b"2"[..]));
    assert_eq!(cookie::find(b"a=1;b=2 ", "b"), Some(&b"2"[..]));
    assert_eq!(cookie::find(b"ab=1; b=\"q\"", "b"), Some(&b"q"[..]));
    assert_eq!(cookie::find(b"ab=1", "b"), None);
    assert_eq!(cookie::find(b"b", "b"), None);
    assert_eq!(
        cookie::find(b"b=1; b=2", "b"),
        Some(&b"1"[..]),
        "the first one"
    );
    assert_eq!(cookie::find(b"", "b"), None);
}

#[test]
fn set_cookie_attributes() {
    let mut sc = cookie::SetCookie {
        name: "id".into(),
        max_age_s: 60,
        path: "/app".into(),
        domain: Some("example.com".into()),
        secure: false,
        http_only: false,
        same_site: Some(cookie::SameSite::Strict),
    };
    assert_eq!(
        sc.attributes(),
        "; Max-Age=60; Path=/app; Domain=example.com; SameSite=Strict"
    );
    sc.same_site = None;
    sc.domain = None;
    sc.secure = true;
    assert_eq!(sc.attributes(), "; Max-Age=60; Path=/app; Secure");
    assert_eq!(cookie::new_id(1, 0xff), "000000000000000100000000000000ff");
    assert!(cookie::valid_id(cookie::new_id(u64::MAX, 7).as_bytes()));
}

#[test]
fn every_json_example_in_the_readme_loads() {
    let readme = include_str!("../README.md");
    let mut blocks = 0;
    let mut rest = readme;
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").unwrap();
        let config: Value = serde_json::from_str(&body[..end]).unwrap();
        load(&config).unwrap_or_else(|e| panic!("README example {blocks}: {e}"));
        blocks += 1;
        rest = &body[end..];
    }
    assert_eq!(blocks, 1);
}

#[test]
fn without_a_provider_the_first_token_in_provider_name_order_counts() {
    let claims: Value =
        serde_json::from_str(r#"{"zeta": {"plan": "z"}, "alpha": {"plan": "a"}, "mid": {}}"#)
            .unwrap();
    let plan = ["plan".to_string()];
    assert_eq!(
        crate::conditions::claim_values(&claims, None, &plan),
        Some(vec![b"a".to_vec()])
    );
    assert_eq!(
        crate::conditions::claim_values(&claims, Some("zeta"), &plan),
        Some(vec![b"z".to_vec()])
    );
}
