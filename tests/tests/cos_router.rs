//! cos-router in a real Envoy, behind jwt-auth: classes from verified tokens
//! routed to distinct upstream clusters (the route is picked again after the
//! filter's header changes), spoofed routing headers, the `:authority`
//! rewrite, 10,000 users split by weight and sticky across restarts,
//! anonymous-id cookies, overrides from allowed and refused sources, CIDR
//! edge cases with the real client address, and bad configs.

use pwf_tests::jwt::demo_token;
use pwf_tests::{plugin_config_of, EchoUpstream, Envoy, HttpClient, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const CONFIG: &str = "envoy-configs/cos-router.yaml";
const ROOT_ID: &str = "cos-router";

struct Setup {
    envoy: Envoy,
    standard: EchoUpstream,
    premium: EchoUpstream,
    canary: EchoUpstream,
}

fn upstreams() -> (EchoUpstream, EchoUpstream, EchoUpstream) {
    (
        EchoUpstream::start("standard"),
        EchoUpstream::start("premium"),
        EchoUpstream::start("canary"),
    )
}

fn envoy_with(
    config: Option<&Value>,
    standard: &EchoUpstream,
    premium: &EchoUpstream,
    canary: &EchoUpstream,
) -> Envoy {
    let mut builder = Envoy::builder(CONFIG)
        .upstream(18000, standard)
        .upstream(18001, premium)
        .upstream(18002, canary);
    if let Some(c) = config {
        builder = builder.plugin_config_for(ROOT_ID, &c.to_string());
    }
    builder.start()
}

fn start(config: Option<&Value>) -> Setup {
    let (standard, premium, canary) = upstreams();
    let envoy = envoy_with(config, &standard, &premium, &canary);
    Setup {
        envoy,
        standard,
        premium,
        canary,
    }
}

fn default_config() -> Value {
    plugin_config_of(CONFIG, ROOT_ID)
}

fn metric(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(&format!("wasmcustom.cos_router.{name}"))
        .unwrap_or(0)
}

fn get(envoy: &Envoy, token: Option<&str>, headers: &[(&str, &str)]) -> Response {
    let mut req = envoy.req("GET", "/orders");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (n, v) in headers {
        req = req.header(n, v);
    }
    let resp = req.send();
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp
}

/// Which echo upstream answered.
fn upstream(resp: &Response) -> String {
    resp.json()["upstream"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A request header as the upstream received it (`None` if absent).
fn seen(resp: &Response, name: &str) -> Option<String> {
    match &resp.json()["headers"][name] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => panic!("{name}: several values: {other}"),
    }
}

/// The checkout variant from `checkout=b;search=a`.
fn variant_of(experiments: &str, name: &str) -> Option<String> {
    experiments.split(';').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name).then(|| v.to_owned())
    })
}

#[test]
fn pro_and_free_users_from_verified_tokens_reach_different_upstream_clusters() {
    let s = start(None);
    let pro = demo_token("paula", json!({"plan": "pro"}));
    let resp = get(&s.envoy, Some(&pro), &[]);
    assert_eq!(upstream(&resp), "premium");
    assert_eq!(seen(&resp, "x-cos-class").as_deref(), Some("pro"));
    assert_eq!(seen(&resp, "x-cos-cluster").as_deref(), Some("premium"));
    assert_eq!(seen(&resp, "x-priority").as_deref(), Some("high"));
    assert_eq!(
        seen(&resp, "x-exp-checkout"),
        None,
        "checkout is for free users only"
    );
    let experiments = seen(&resp, "x-cos-experiments").expect("search is for everyone");
    assert!(
        experiments == "search=a" || experiments == "search=b",
        "{experiments}"
    );
    assert_eq!(
        resp.header("x-cos-experiments"),
        Some(experiments.as_str()),
        "exposure"
    );

    let enterprise = demo_token("erin", json!({"plan": "enterprise"}));
    assert_eq!(upstream(&get(&s.envoy, Some(&enterprise), &[])), "premium");

    // Free users: the standard cluster, or canary for checkout variant b.
    let mut landed = BTreeMap::<String, usize>::new();
    for i in 0..60 {
        let free = demo_token(&format!("free-{i}"), json!({"plan": "free"}));
        let resp = get(&s.envoy, Some(&free), &[]);
        assert_eq!(seen(&resp, "x-cos-class").as_deref(), Some("free"));
        assert_eq!(seen(&resp, "x-priority").as_deref(), Some("low"));
        let checkout = seen(&resp, "x-exp-checkout").expect("free users are in checkout");
        let experiments = seen(&resp, "x-cos-experiments").unwrap();
        assert_eq!(
            variant_of(&experiments, "checkout").as_deref(),
            Some(checkout.as_str())
        );
        let want = if checkout == "b" {
            "canary"
        } else {
            "standard"
        };
        assert_eq!(upstream(&resp), want, "free-{i}: {experiments}");
        assert_eq!(
            seen(&resp, "x-cos-anonymous-id"),
            None,
            "the sub claim is the key"
        );
        assert_eq!(resp.header("set-cookie"), None);
        *landed.entry(upstream(&resp)).or_default() += 1;
    }
    assert!(landed.get("canary").is_some_and(|&n| n > 0), "{landed:?}");
    assert!(
        landed.get("standard").is_some_and(|&n| n > 30),
        "{landed:?}"
    );
    assert_eq!(s.premium.request_count(), 2);
    assert_eq!(s.standard.request_count() + s.canary.request_count(), 60);
    assert_eq!(metric(&s.envoy, "class.pro"), 2);
    assert_eq!(metric(&s.envoy, "class.free"), 60);
    assert_eq!(
        metric(&s.envoy, "experiment.checkout.variant.b"),
        s.canary.request_count() as u64
    );
    assert_eq!(
        metric(&s.envoy, "experiment.checkout.variant.control")
            + metric(&s.envoy, "experiment.checkout.variant.b"),
        60
    );
    assert_eq!(
        metric(&s.envoy, "experiment.search.variant.a")
            + metric(&s.envoy, "experiment.search.variant.b"),
        62
    );
}

#[test]
fn clients_cannot_pick_a_class_cluster_or_variant_with_their_own_headers() {
    let s = start(None);
    let spoofed = [
        ("x-cos-class", "pro"),
        ("x-cos-cluster", "premium"),
        ("x-priority", "critical"),
        ("x-exp-checkout", "b"),
        ("x-cos-experiments", "checkout=b"),
        ("x-cos-anonymous-id", "forged-forged-forged"),
        ("x-user-id", "user-1"),
    ];
    let free = demo_token("spoofer", json!({"plan": "free"}));
    for token in [None, Some(free.as_str())] {
        let resp = get(&s.envoy, token, &spoofed);
        assert_eq!(seen(&resp, "x-cos-class").as_deref(), Some("free"));
        assert_eq!(seen(&resp, "x-cos-cluster").as_deref(), Some("standard"));
        assert_eq!(seen(&resp, "x-priority").as_deref(), Some("low"));
        let checkout = seen(&resp, "x-exp-checkout").unwrap();
        let want = if checkout == "b" {
            "canary"
        } else {
            "standard"
        };
        assert_eq!(upstream(&resp), want);
        assert_ne!(
            seen(&resp, "x-cos-experiments").as_deref(),
            Some("checkout=b")
        );
        assert_eq!(seen(&resp, "x-cos-anonymous-id"), None);
    }
    // A pro request keeps no client copy of the experiment header it is not in.
    let pro = demo_token("pro-spoofer", json!({"plan": "pro"}));
    let resp = get(&s.envoy, Some(&pro), &[("x-exp-checkout", "b")]);
    assert_eq!(upstream(&resp), "premium");
    assert_eq!(seen(&resp, "x-exp-checkout"), None);
    // A token with a plan claim that does not verify never reaches the router.
    let mut parts: Vec<String> = pro.split('.').map(str::to_owned).collect();
    parts[2] = "AAAA".into();
    let forged = s
        .envoy
        .req("GET", "/orders")
        .header("authorization", format!("Bearer {}", parts.join(".")))
        .send();
    assert_eq!(forged.status, 401);
    assert_eq!(s.premium.request_count(), 1);
}

#[test]
fn without_experiments_client_copies_of_the_variant_headers_are_still_removed() {
    let mut config = default_config();
    config["experiments"] = json!([]);
    let s = start(Some(&config));
    let resp = get(
        &s.envoy,
        None,
        &[
            ("x-cos-experiments", "checkout=b"),
            ("x-cos-anonymous-id", "forged-forged-forged"),
        ],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(seen(&resp, "x-cos-class").as_deref(), Some("free"));
    assert_eq!(seen(&resp, "x-cos-experiments"), None);
    assert_eq!(seen(&resp, "x-cos-anonymous-id"), None);
}

#[test]
fn a_header_class_rewrites_the_authority() {
    let s = start(None);
    let resp = get(&s.envoy, None, &[("x-region", "eu"), ("x-user-id", "u-eu")]);
    assert_eq!(upstream(&resp), "standard");
    assert_eq!(seen(&resp, "x-cos-class").as_deref(), Some("eu"));
    assert_eq!(seen(&resp, "host").as_deref(), Some("eu.api.internal"));
    assert_eq!(seen(&resp, "x-priority"), None, "eu sets no priority");
    assert_eq!(
        seen(&resp, "x-exp-checkout"),
        None,
        "checkout is for the free class only"
    );
    assert_eq!(metric(&s.envoy, "class.eu"), 1);
}

/// `user -> x-cos-experiments` for `users`, from the exposure header.
fn assignments(envoy: &Envoy, users: std::ops::Range<u32>) -> BTreeMap<u32, String> {
    let threads = 4;
    let chunk = (users.end - users.start).div_ceil(threads);
    let port = envoy.port();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let from = users.start + t * chunk;
                let to = (from + chunk).min(users.end);
                scope.spawn(move || {
                    let client = HttpClient::new(port);
                    (from..to)
                        .map(|u| {
                            let resp = client
                                .req("GET", "/orders")
                                .header("x-user-id", format!("user-{u}"))
                                .send();
                            assert_eq!(resp.status, 200);
                            let got = resp.header("x-cos-experiments").unwrap().to_owned();
                            let checkout = variant_of(&got, "checkout").unwrap();
                            let want = if checkout == "b" {
                                "canary"
                            } else {
                                "standard"
                            };
                            assert_eq!(upstream(&resp), want);
                            (u, got)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    })
}

#[test]
fn ten_thousand_users_split_within_two_percent_and_keep_their_variants_across_restarts() {
    let (standard, premium, canary) = upstreams();
    let envoy = envoy_with(None, &standard, &premium, &canary);
    let first = assignments(&envoy, 0..10_000);
    let share = |experiment: &str, variant: &str| {
        let n = first
            .values()
            .filter(|v| variant_of(v, experiment).as_deref() == Some(variant))
            .count();
        n as f64 / first.len() as f64
    };
    for (experiment, variant, weight) in [
        ("checkout", "control", 0.9),
        ("checkout", "b", 0.1),
        ("search", "a", 0.5),
        ("search", "b", 0.5),
    ] {
        let got = share(experiment, variant);
        assert!(
            (got - weight).abs() <= 0.02,
            "{experiment}={variant}: {got}, want {weight} ± 0.02"
        );
    }
    let in_b = first
        .values()
        .filter(|v| v.starts_with("checkout=b;"))
        .count();
    assert_eq!(canary.request_count(), in_b, "variant b went to canary");
    assert_eq!(standard.request_count(), 10_000 - in_b);
    assert_eq!(metric(&envoy, "experiment.checkout.variant.b"), in_b as u64);
    assert_eq!(
        metric(&envoy, "experiment.checkout.variant.control"),
        10_000 - in_b as u64
    );

    // The same user gets the same variants on a second request...
    let again = assignments(&envoy, 0..500);
    for (user, variants) in &again {
        assert_eq!(
            first.get(user),
            Some(variants),
            "user-{user} on a second request"
        );
    }
    // ...and from a new Envoy process.
    drop(envoy);
    let restarted = envoy_with(None, &standard, &premium, &canary);
    let after = assignments(&restarted, 0..2_000);
    for (user, variants) in &after {
        assert_eq!(
            first.get(user),
            Some(variants),
            "user-{user} after a restart"
        );
    }
}

#[test]
fn anonymous_users_get_a_cookie_and_keep_their_variants() {
    let s = start(None);
    let first = get(&s.envoy, None, &[]);
    let cookie = first
        .header("set-cookie")
        .expect("a new anonymous id")
        .to_owned();
    let (pair, attributes) = cookie.split_once(';').unwrap();
    let id = pair
        .strip_prefix("cos_uid=")
        .expect("cookie name")
        .to_owned();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{id}"
    );
    assert_eq!(
        attributes,
        " Max-Age=31536000; Path=/; Secure; HttpOnly; SameSite=Lax"
    );
    assert_eq!(first.header_all("set-cookie").len(), 1);
    assert_eq!(
        seen(&first, "x-cos-anonymous-id").as_deref(),
        Some(id.as_str()),
        "used on the first request already"
    );
    let variants = first.header("x-cos-experiments").unwrap().to_owned();
    assert_eq!(
        seen(&first, "x-cos-experiments").as_deref(),
        Some(variants.as_str())
    );

    for _ in 0..3 {
        let next = get(
            &s.envoy,
            None,
            &[("cookie", &format!("theme=dark; cos_uid={id}"))],
        );
        assert_eq!(
            next.header("set-cookie"),
            None,
            "the cookie is kept, not renewed"
        );
        assert_eq!(next.header("x-cos-experiments"), Some(variants.as_str()));
        assert_eq!(
            seen(&next, "x-cos-anonymous-id").as_deref(),
            Some(id.as_str())
        );
    }
    // Another anonymous user gets another id.
    let other = get(&s.envoy, None, &[]);
    let other_cookie = other.header("set-cookie").unwrap();
    assert!(!other_cookie.contains(&id));
    // An id that is not one of ours is replaced.
    let bad = get(&s.envoy, None, &[("cookie", "cos_uid=x")]);
    assert!(bad.header("set-cookie").unwrap().starts_with("cos_uid="));
    assert_eq!(metric(&s.envoy, "anonymous_ids_issued"), 3);
    // A user with a key does not need a cookie.
    let keyed = get(&s.envoy, None, &[("x-user-id", "known")]);
    assert_eq!(keyed.header("set-cookie"), None);
    assert_eq!(seen(&keyed, "x-cos-anonymous-id"), None);
}

#[test]
fn overrides_from_allowed_sources_are_honoured() {
    let s = start(None);
    // Tests connect from 127.0.0.1, inside the config's allowed 127.0.0.0/8.
    let resp = get(
        &s.envoy,
        None,
        &[
            ("x-user-id", "tester"),
            ("x-cos-override", "checkout=b, search=a"),
        ],
    );
    assert_eq!(upstream(&resp), "canary");
    assert_eq!(
        resp.header("x-cos-experiments"),
        Some("checkout=b;search=a")
    );
    let resp = get(
        &s.envoy,
        None,
        &[
            ("x-user-id", "tester"),
            ("x-cos-override", "checkout=control"),
        ],
    );
    assert_eq!(upstream(&resp), "standard");
    assert_eq!(
        variant_of(resp.header("x-cos-experiments").unwrap(), "checkout").as_deref(),
        Some("control")
    );
    // An override puts a pro user into checkout too (testers pick what they test).
    let pro = demo_token("pro-tester", json!({"plan": "pro"}));
    let resp = get(&s.envoy, Some(&pro), &[("x-cos-override", "checkout=b")]);
    assert_eq!(upstream(&resp), "canary");
    assert_eq!(seen(&resp, "x-cos-class").as_deref(), Some("pro"));
    assert_eq!(metric(&s.envoy, "experiment.checkout.overridden"), 3);
    assert_eq!(metric(&s.envoy, "experiment.search.overridden"), 1);
    assert_eq!(metric(&s.envoy, "override_refused"), 0);
}

#[test]
fn overrides_from_other_sources_are_refused() {
    let mut config = default_config();
    config["override"]["allowed_sources"] = json!(["192.0.2.0/24", "2001:db8::/32"]);
    let s = start(Some(&config));
    // Find users whose own variant is control, then ask for b.
    let mut refused = 0;
    for u in 0..20 {
        let user = format!("user-{u}");
        let own = get(&s.envoy, None, &[("x-user-id", &user)]);
        let own_variants = own.header("x-cos-experiments").unwrap().to_owned();
        let resp = get(
            &s.envoy,
            None,
            &[
                ("x-user-id", &user),
                ("x-cos-override", "checkout=b;search=b"),
            ],
        );
        assert_eq!(
            resp.header("x-cos-experiments"),
            Some(own_variants.as_str()),
            "{user}"
        );
        assert_eq!(upstream(&resp), upstream(&own));
        refused += 1;
    }
    assert_eq!(metric(&s.envoy, "override_refused"), refused);
    assert_eq!(metric(&s.envoy, "experiment.checkout.overridden"), 0);
    assert!(s.standard.request_count() > 0);
}

#[test]
fn cidr_edge_cases_against_the_real_client_address() {
    // Each class needs its own x-case value and a source range; the client is 127.0.0.1.
    let ranges = [
        ("v6-all", "::/0"),
        ("other-host", "127.0.0.2/32"),
        ("mapped-host", "::ffff:127.0.0.1/128"),
        ("bare-address", "127.0.0.1"),
        ("host-32", "127.0.0.1/32"),
        ("v4-all", "0.0.0.0/0"),
        ("pair-31", "127.0.0.0/31"),
        ("next-pair-31", "127.0.0.2/31"),
        ("loopback-8", "127.0.0.0/8"),
        ("ten-8", "10.0.0.0/8"),
    ];
    let classes: Vec<Value> = ranges
        .iter()
        .map(|(name, range)| {
            json!({"name": name, "cluster": "premium",
                   "match": {"headers": [{"name": "x-case", "value": {"exact": name}}], "source_cidrs": [range]}})
        })
        .collect();
    let config = json!({
        "cluster_header": "x-cos-cluster",
        "classes": classes,
        "default_class": {"name": "outside", "cluster": "standard"}
    });
    let s = start(Some(&config));
    let expect_inside = [
        "mapped-host",
        "bare-address",
        "host-32",
        "v4-all",
        "pair-31",
        "loopback-8",
    ];
    for (name, range) in ranges {
        let resp = get(&s.envoy, None, &[("x-case", name)]);
        let inside = expect_inside.contains(&name);
        let want = if inside { name } else { "outside" };
        assert_eq!(
            seen(&resp, "x-cos-class").as_deref(),
            Some(want),
            "127.0.0.1 in {range}"
        );
        assert_eq!(upstream(&resp), if inside { "premium" } else { "standard" });
    }
}

#[test]
fn bad_configs_fail_envoy_validation_naming_the_field() {
    let base = default_config();
    let with = |path: &[&str], value: Value| {
        let mut c = base.clone();
        let mut target = &mut c;
        for p in path {
            target = match p.parse::<usize>() {
                Ok(i) => &mut target[i],
                Err(_) => &mut target[*p],
            };
        }
        *target = value;
        c
    };
    let cases = [
        (
            with(&["experiments", "0", "variants", "1", "weight"], json!(0)),
            "experiments[0].variants[1].weight: must be positive",
        ),
        (
            with(&["experiments", "1", "name"], json!("checkout")),
            "experiments[1].name: experiment 'checkout' is defined twice",
        ),
        (
            with(&["classes", "1", "name"], json!("pro")),
            "classes[1].name: class 'pro' is defined twice",
        ),
        (
            with(&["experiments", "0", "classes"], json!(["gold"])),
            "experiments[0].classes[0]: 'gold' is not a class",
        ),
        (
            with(&["cluster_header"], Value::Null),
            "classes[0].cluster: needs 'cluster_header' at the top level",
        ),
        (
            with(&["classes", "0", "cluster"], json!("")),
            "classes[0].cluster: '' is not a cluster name",
        ),
        (
            with(&["experiments", "0", "header"], json!("X-Exp")),
            "experiments[0].header: 'X-Exp': header names must be lower case",
        ),
        (
            with(&["override", "allowed_sources"], json!(["10.0.0.0/40"])),
            "override.allowed_sources[0]: '10.0.0.0/40': an IPv4 prefix is at most 32",
        ),
        (
            with(&["experiments", "1", "salt"], json!("checkout-2024-06")),
            "experiments[1].salt: experiment 'checkout' has the same salt",
        ),
        (
            with(&["classes", "0", "priority"], json!(1)),
            "classes[0].priority: unknown field `priority`",
        ),
    ];
    for (config, expected) in cases {
        let result = Envoy::builder(CONFIG)
            .plugin_config_for(ROOT_ID, &config.to_string())
            .validate();
        assert!(!result.ok, "accepted: {config}");
        assert!(
            result.output.contains(expected),
            "{expected}\n{}",
            pwf_tests::tail(&result.output, 20)
        );
    }
}
