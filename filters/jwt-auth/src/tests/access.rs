//! Reading single headers: the plan per configuration, the reads, the edits,
//! and that a request read one header at a time ends exactly as one read as a
//! whole map (rule, decision, checks, final headers, realm).

use super::support::*;
use crate::access::{
    self, edits, needed, read, realm_headers, values, Access, Reads, Source, Values,
};
use crate::cache::TokenCache;
use crate::config::Compiled;
use crate::outputs::{apply, realm, scrub};
use crate::rules::{Decision, Evaluation};
use jsonwebtoken::Algorithm;
use pwf_shared::headers::Edit;
use pwf_shared::HeaderList;
use serde_json::json;
use std::collections::BTreeMap;

/// A host holding `map`: the single-header read gives the first value, the
/// `request.headers` attribute every value joined with `,` (`None` when absent
/// or empty, as proxy-wasm reports an empty property). Unlike Envoy, it never
/// joins repeated `authorization` headers itself.
struct Host<'a> {
    map: &'a HeaderList,
    calls: Vec<String>,
}

impl<'a> Host<'a> {
    fn new(map: &'a HeaderList) -> Self {
        Self {
            map,
            calls: Vec::new(),
        }
    }
}

impl Source for Host<'_> {
    fn first(&mut self, name: &str) -> Option<Vec<u8>> {
        self.calls.push(format!("first {name}"));
        self.map.get(name).map(<[u8]>::to_vec)
    }

    fn joined(&mut self, name: &str) -> Option<Vec<u8>> {
        self.calls.push(format!("joined {name}"));
        let values: Vec<&[u8]> = self.map.get_all(name).collect();
        let joined = values.join(b",".as_slice());
        (!joined.is_empty()).then_some(joined)
    }
}

fn single(c: &Compiled) -> &Reads {
    match &c.access {
        Access::Single(reads) => reads,
        Access::Map => panic!("expected single-header reads: {c:?}"),
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// One provider "idp" (extra fields appended) and the given rules.
fn with_rules(extra: &str, rules: &str) -> Compiled {
    compile(&format!(
        r#"{{"providers":[{}],"rules":[{rules}]}}"#,
        jwks_provider("idp", extra)
    ))
}

#[test]
fn plan_reads_what_rules_and_token_locations_need() {
    // The bench configuration: a path rule, the Authorization header, one claim header.
    let c = with_rules(
        r#","claims_to_headers":[{"claim":"sub","header":"x-jwt-sub"}]"#,
        r#"{"match":{"path":{"prefix":"/"}},"requires":{"provider":"idp"}}"#,
    );
    assert_eq!(
        single(&c),
        &Reads {
            authority: false,
            first: strings(&[":path"]),
            all: strings(&["authorization"]),
        }
    );

    let c = with_rules(
        r#","from":[{"header":"x-token"},{"query":"t"},{"cookie":"s"}],
            "claims_to_headers":[{"claim":"sub","header":"x-sub"}]"#,
        r#"{"match":{"host":{"exact":"a"},"methods":["GET"],"headers":[
              {"name":"x-env","value":{"exact":"canary"}},
              {"name":"x-flag"},
              {"name":"x-sub"},
              {"name":":scheme","value":{"exact":"https"}}]},
            "requires":{"provider":"idp"}}"#,
    );
    let matches: Vec<_> = serde_json::from_value::<Vec<pwf_shared::RequestMatch>>(json!([
        {"host": {"exact": "a"}, "methods": ["GET"], "headers": [
            {"name": "x-env", "value": {"exact": "canary"}},
            {"name": "x-flag"},
            {"name": "x-sub"},
            {"name": ":scheme", "value": {"exact": "https"}}]}
    ]))
    .unwrap();
    // Presence and pseudo-headers: first value; values and token locations:
    // every value; the output header x-sub is never read (always removed).
    let reads = needed(&matches, &c.providers[0].from, &c.output_headers);
    assert_eq!(
        reads,
        Reads {
            authority: true,
            first: strings(&[":method", "x-flag", ":scheme", ":path"]),
            all: strings(&["x-env", "x-token", "cookie"]),
        }
    );
    assert_eq!(reads.calls(), 8);
    assert_eq!(
        c.access,
        Access::Map,
        "8 reads and 1 output exceed the budget"
    );

    // A header needed both ways is read once, with every value.
    let c = with_rules(
        "",
        r#"{"match":{"headers":[{"name":"authorization"}]},"bypass":true},
           {"match":{},"requires":{"provider":"idp"}}"#,
    );
    assert_eq!(
        single(&c),
        &Reads {
            authority: false,
            first: vec![],
            all: strings(&["authorization"]),
        }
    );
}

#[test]
fn plan_is_logged_as_the_names_read() {
    let c = with_rules(
        r#","from":[{"header":"x-token"}]"#,
        r#"{"match":{"host":{"exact":"h"},"methods":["GET"]},"requires":{"provider":"idp"}}"#,
    );
    assert_eq!(
        c.access.to_string(),
        "one by one: :authority, :method, x-token"
    );
    assert_eq!(one_provider("").access.to_string(), "one by one: none");
    assert_eq!(Access::Map.to_string(), "as a whole map");
}

#[test]
fn plan_skips_providers_no_rule_requires() {
    let c = one_provider("");
    assert_eq!(single(&c), &Reads::default(), "no rules: nothing to read");
    let c = with_rules("", r#"{"match":{"path":{"prefix":"/h"}},"bypass":true}"#);
    assert_eq!(
        single(&c),
        &Reads {
            authority: false,
            first: strings(&[":path"]),
            all: vec![],
        }
    );
}

#[test]
fn plan_reads_the_whole_map_beyond_the_budget() {
    assert_eq!(access::MAX_SINGLE_CALLS, 6);
    let outputs = |n: usize| {
        let list: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"claim":"c{i}","header":"x-c{i}"}}"#))
            .collect();
        format!(r#","claims_to_headers":[{}]"#, list.join(","))
    };
    let rule = r#"{"match":{"path":{"prefix":"/"}},"requires":{"provider":"idp"}}"#;
    // Two reads (:path, authorization) and four outputs: six calls.
    assert!(matches!(
        with_rules(&outputs(4), rule).access,
        Access::Single(_)
    ));
    assert_eq!(with_rules(&outputs(5), rule).access, Access::Map);
    // The shipped example (envoy-configs/jwt-auth.yaml): three reads, four outputs.
    let shipped = compile(&format!(
        r#"{{"providers":[{},{}],"rules":[
            {{"match":{{"path":{{"prefix":"/health"}}}},"bypass":true}},
            {{"match":{{"methods":["OPTIONS"]}},"bypass":true}},
            {{"match":{{"path":{{"prefix":"/api/"}}}},"requires":{{"any_of":["demo","idp"]}}}}]}}"#,
        jwks_provider(
            "demo",
            r#","claims_to_headers":[{"claim":"sub","header":"x-jwt-sub"},{"claim":"plan","header":"x-jwt-plan"}],"payload_header":"x-jwt-payload""#
        ),
        jwks_provider(
            "idp",
            r#","claims_to_headers":[{"claim":"client_id","header":"x-jwt-client"},{"claim":"plan","header":"x-jwt-plan"}]"#
        ),
    ));
    assert_eq!(shipped.access, Access::Map);
}

#[test]
fn values_are_exact_or_unknown() {
    let map = HeaderList::new(vec![
        ("one".into(), b"v".to_vec()),
        ("two".into(), b"a".to_vec()),
        ("two".into(), b"b".to_vec()),
        ("comma".into(), b"a,b".to_vec()),
        ("empty".into(), Vec::new()),
        ("bytes".into(), vec![0xff, b'x', 0x80]),
    ]);
    let mut host = Host::new(&map);
    assert_eq!(values(&mut host, "one"), Values::One(b"v".to_vec()));
    assert_eq!(
        values(&mut host, "bytes"),
        Values::One(vec![0xff, b'x', 0x80])
    );
    assert_eq!(values(&mut host, "two"), Values::Unknown);
    assert_eq!(values(&mut host, "comma"), Values::Unknown);
    assert_eq!(
        values(&mut host, "empty"),
        Values::Unknown,
        "empty or no attribute"
    );
    assert_eq!(values(&mut host, "absent"), Values::Absent);
    assert_eq!(
        host.calls,
        [
            "joined one",
            "joined bytes",
            "joined two",
            "joined comma",
            "joined empty",
            "first empty",
            "joined absent",
            "first absent"
        ]
    );

    /// A host without the `request.headers` attribute.
    struct NoAttribute<'a>(Host<'a>);
    impl Source for NoAttribute<'_> {
        fn first(&mut self, name: &str) -> Option<Vec<u8>> {
            self.0.first(name)
        }
        fn joined(&mut self, _: &str) -> Option<Vec<u8>> {
            None
        }
    }
    let mut bare = NoAttribute(Host::new(&map));
    assert_eq!(
        values(&mut bare, "one"),
        Values::Unknown,
        "cannot tell: whole map"
    );
    assert_eq!(values(&mut bare, "absent"), Values::Absent);
}

#[test]
fn read_builds_the_partial_list_or_gives_up() {
    let reads = Reads {
        authority: true,
        first: strings(&[":path", "x-flag"]),
        all: strings(&["authorization"]),
    };
    let map = request(&[
        ("x-flag", ""),
        ("authorization", "Bearer t"),
        ("x-other", "o"),
    ]);
    let list = read(&reads, &mut Host::new(&map)).expect("single values");
    assert_eq!(
        list.entries(),
        HeaderList::from_pairs([
            (":authority", "api.example.com"),
            (":path", "/api/items"),
            ("x-flag", ""),
            ("authorization", "Bearer t"),
        ])
        .entries()
    );
    assert!(!list.is_changed());

    let no_authority = HeaderList::from_pairs([("host", "h:1"), (":path", "/")]);
    let list = read(&reads, &mut Host::new(&no_authority)).unwrap();
    assert_eq!(list.host(), b"h");
    assert!(!list.contains("authorization") && !list.contains("x-flag"));

    let twice = request(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
    let mut host = Host::new(&twice);
    assert_eq!(read(&reads, &mut host), None);
}

#[test]
fn realm_headers_are_what_realm_reads() {
    for map in [
        request(&[("authorization", "x")]),
        HeaderList::from_pairs([("host", "h:8080"), (":path", "/p?q=1")]),
        HeaderList::default(),
    ] {
        assert_eq!(realm(&realm_headers(&mut Host::new(&map))), realm(&map));
    }
}

#[test]
fn edits_write_outputs_and_remove_unwritten_ones() {
    let outputs = strings(&["x-a", "x-b", "x-c"]);
    let mut list = HeaderList::from_pairs([(":path", "/"), ("authorization", "Bearer t")]);
    list.set("x-b", b"1".to_vec());
    list.remove("authorization");
    assert_eq!(
        edits(&outputs, &list),
        [
            Edit::Set("x-b", b"1"),
            Edit::Remove("authorization"),
            Edit::Remove("x-a"),
            Edit::Remove("x-c"),
        ]
    );
    let untouched = HeaderList::from_pairs([(":path", "/")]);
    assert_eq!(edits(&[], &untouched), []);
}

// ---- equivalence with the whole map ----------------------------------------

/// What Envoy does with the edits: set replaces every value (the new one goes last).
fn host_applies(map: &mut HeaderList, edits: &[Edit]) {
    for edit in edits {
        match *edit {
            Edit::Remove(name) => {
                map.remove(name);
            }
            Edit::Set(name, value) => {
                map.remove(name);
                map.add(name, value.to_vec());
            }
            Edit::Add(name, value) => map.add(name, value.to_vec()),
        }
    }
}

/// Header values by name, in order per name (the order across names is not
/// significant to HTTP).
fn multimap(h: &HeaderList) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut m: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (n, v) in h.entries() {
        m.entry(n.clone()).or_default().push(v.clone());
    }
    m
}

/// A request through the whole-map path: evaluation, the final headers
/// (allowed) or the realm (denied).
fn whole_map(c: &Compiled, request: &HeaderList) -> (Evaluation, Result<HeaderList, String>) {
    let mut h = request.clone();
    scrub(c, &mut h);
    let e = c.authorize(&h, NOW, &|_| None, &mut TokenCache::new(16));
    let end = match &e.decision {
        Decision::Allow { verified } => {
            apply(c, verified, &mut h);
            Ok(h)
        }
        Decision::Deny(_) => Err(realm(&h)),
    };
    (e, end)
}

/// The same request read one header at a time; `None` when the reads gave
/// up (the glue then takes the whole-map path).
fn one_by_one(
    c: &Compiled,
    request: &HeaderList,
) -> Option<(Evaluation, Result<HeaderList, String>)> {
    let mut host = Host::new(request);
    let mut partial = read(single(c), &mut host)?;
    let e = c.authorize(&partial, NOW, &|_| None, &mut TokenCache::new(16));
    let end = match &e.decision {
        Decision::Allow { verified } => {
            apply(c, verified, &mut partial);
            let mut on_host = request.clone();
            host_applies(&mut on_host, &edits(&c.output_headers, &partial));
            Ok(on_host)
        }
        Decision::Deny(_) => Err(realm(&realm_headers(&mut Host::new(request)))),
    };
    Some((e, end))
}

/// Whether a read of `name` must give up: several values, a comma, or an
/// empty value the attribute cannot tell from absence.
fn ambiguous(request: &HeaderList, name: &str) -> bool {
    let values: Vec<&[u8]> = request.get_all(name).collect();
    values.len() > 1 || values.iter().any(|v| v.is_empty() || v.contains(&b','))
}

#[test]
fn one_header_at_a_time_ends_like_the_whole_map() {
    let good = sign(Algorithm::ES256, &claims());
    let other = sign(Algorithm::ES256, &claims_with(json!({"sub": "bob"})));
    let partner = sign(Algorithm::HS256, &claims_with(json!({"sub": "svc"})));
    let bearer_good = bearer(&good);
    let bearer_other = bearer(&other);

    let configs = [
        // Bearer header, path rules, a claim header and the payload header.
        with_rules(
            r#","claims_to_headers":[{"claim":"sub","header":"x-jwt-sub"}],"payload_header":"x-jwt-payload""#,
            r#"{"match":{"path":{"prefix":"/health"}},"bypass":true},
               {"match":{"path":{"prefix":"/api/"}},"requires":{"provider":"idp"}}"#,
        ),
        // A custom header without prefix, a query parameter and a cookie;
        // rules on a header value, a header's presence and an output header.
        with_rules(
            r#","from":[{"header":"x-token"},{"query":"access_token"},{"cookie":"session"}],
                "claims_to_headers":[{"claim":"sub","header":"x-sub"}]"#,
            r#"{"match":{"headers":[{"name":"x-sub"}]},"bypass":true},
               {"match":{"headers":[{"name":"x-flag"}]},"requires":{"provider":"idp"},"allow_missing":true},
               {"match":{"headers":[{"name":"x-env","value":{"exact":"canary"}}]},"requires":{"provider":"idp"}}"#,
        ),
        // Two providers, all required, on a host; the bearer one forwarded.
        compile(&format!(
            r#"{{"providers":[{},{}],"rules":[
                {{"match":{{"host":{{"exact":"api.example.com"}}}},"requires":{{"all_of":["idp","partner"]}},"allow_missing":true}}]}}"#,
            jwks_provider(
                "idp",
                r#","forward":true,"claims_to_headers":[{"claim":"sub","header":"x-idp"}]"#
            ),
            secret_provider(
                "partner",
                r#","from":[{"header":"x-partner-token","prefix":"Token "}]"#
            ),
        )),
    ];
    let cookie_good = format!("theme=dark; session={good}; lang=en");
    let query_good = format!("/api/items?a=1&access_token={good}&b=2");
    let partner_good = format!("Token {partner}");
    let pairs: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("authorization", &bearer_good)],
        vec![
            ("authorization", "Basic eDp5"),
            ("authorization", &bearer_good),
        ],
        vec![
            ("authorization", &bearer_good),
            ("authorization", "Basic eDp5"),
        ],
        vec![
            ("authorization", "Bearer not.a.jwt"),
            ("authorization", &bearer_good),
        ],
        vec![
            ("authorization", &bearer_other),
            ("authorization", &bearer_good),
        ],
        vec![("authorization", "Bearer not.a.jwt")],
        vec![("x-token", &good)],
        vec![("x-token", &good), ("x-token", "other")],
        vec![("x-token", ""), ("x-token", &good)],
        vec![("x-token", &good), ("x-env", "prod"), ("x-env", "canary")],
        vec![("x-token", &good), ("x-env", "canary"), ("x-env", "prod")],
        vec![("x-token", &good), ("x-env", "prod,canary")],
        vec![("x-token", &good), ("x-env", "prod")],
        vec![("x-env", "canary"), ("cookie", &cookie_good)],
        vec![
            ("x-env", "canary"),
            ("cookie", "a=1"),
            ("cookie", &cookie_good),
        ],
        vec![("x-env", "canary"), (":path", &query_good)],
        vec![("x-flag", ""), ("x-env", "canary")],
        vec![("x-flag", "1"), ("x-token", "garbage")],
        vec![("x-sub", "forged"), ("x-token", "garbage")],
        vec![
            ("authorization", &bearer_good),
            ("x-jwt-sub", "mallory"),
            ("x-jwt-sub", "eve"),
            ("x-jwt-payload", "e30"),
            ("x-idp", "forged"),
        ],
        vec![
            ("authorization", &bearer_good),
            ("x-partner-token", &partner_good),
        ],
        vec![
            ("authorization", &bearer_good),
            ("x-partner-token", &partner_good),
            (":authority", "API.example.com:8443"),
        ],
        vec![
            ("x-partner-token", &partner_good),
            ("x-partner-token", "Token x"),
        ],
        vec![
            ("x-partner-token", "Token x"),
            ("x-partner-token", &partner_good),
        ],
    ];
    let paths = ["/api/items", "/health", "/other"];
    let mut compared = 0;
    let mut gave_up = 0;
    for (i, c) in configs.iter().enumerate() {
        for extra in &pairs {
            for path in paths {
                let mut entries = request(&[]).into_entries();
                for (n, v) in std::iter::once(&(":path", path)).chain(extra) {
                    match entries
                        .iter_mut()
                        .find(|(e, _)| n.starts_with(':') && e == n)
                    {
                        Some(pseudo) => pseudo.1 = v.as_bytes().to_vec(),
                        None => entries.push((n.to_string(), v.as_bytes().to_vec())),
                    }
                }
                // Non-UTF-8 bytes in a header nobody reads ride along.
                entries.push(("x-bytes".into(), vec![0xff, 0x80]));
                let request = HeaderList::new(entries);

                let expected = whole_map(c, &request);
                let should_give_up = single(c).all.iter().any(|n| ambiguous(&request, n));
                match one_by_one(c, &request) {
                    Some(got) => {
                        assert!(!should_give_up, "config {i}, {extra:?} {path}");
                        assert_eq!(got.0, expected.0, "config {i}, {extra:?} {path}");
                        match (&got.1, &expected.1) {
                            (Ok(a), Ok(b)) => {
                                assert_eq!(multimap(a), multimap(b), "config {i}, {extra:?} {path}")
                            }
                            (a, b) => assert_eq!(a, b, "config {i}, {extra:?} {path}"),
                        }
                        compared += 1;
                    }
                    None => {
                        assert!(should_give_up, "config {i}, {extra:?} {path}");
                        gave_up += 1;
                    }
                }
            }
        }
    }
    assert_eq!(
        compared + gave_up,
        configs.len() * pairs.len() * paths.len()
    );
    assert!(
        compared > 150 && gave_up > 20,
        "{compared} compared, {gave_up} gave up"
    );
}
