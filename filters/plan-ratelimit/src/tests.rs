//! Native unit tests of the pure modules.

use crate::config::{Compiled, Config, Input};
use crate::headers;
use crate::identity::{self, Sources};
use crate::limiter::{Engine, Verdict};
use crate::rls;
use crate::slots::{owner_id, LivePass, Placement, Record, Table, PROBES};
use prost::Message;
use pwf_shared::shared_data::{MemoryStore, SharedStore};
use pwf_shared::HeaderList;
use serde_json::{json, Value};

const SEC: u64 = 1_000_000_000;
/// Some time well after the epoch.
const T0: u64 = 1_800_000_000 * SEC;

fn config(v: Value) -> Compiled {
    Config::load(Some(v.to_string().as_bytes())).unwrap()
}

fn config_err(v: Value) -> String {
    match Config::load(Some(v.to_string().as_bytes())) {
        Ok(_) => panic!("accepted: {v}"),
        Err(e) => e.to_string(),
    }
}

fn plans() -> Value {
    json!({
        "plans": {
            "free": {"limits": [{"requests": 1000, "per": "day"}, {"requests": 5, "per": "second"}]},
            "pro": {"limits": [{"requests": 50, "per": "second", "burst": 10}]},
            "internal": {"unlimited": true}
        },
        "fallback_plan": "free"
    })
}

fn engine(c: &Compiled, slots: u32) -> Engine {
    Engine::new(&c.plans, Table::new("t".into(), slots))
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow(_))
}

// ---- config -----------------------------------------------------------------

#[test]
fn plans_compile_with_windows_sorted_shortest_first() {
    let c = config(plans());
    let free = &c.plans[c.plan(Some(b"free"))];
    let windows: Vec<(&str, u32, u32)> = free
        .windows
        .iter()
        .map(|w| (w.policy.as_str(), w.requests, w.burst))
        .collect();
    assert_eq!(windows, [("free-second", 5, 5), ("free-day", 1000, 1000)]);
    assert!(c.plans[c.plan(Some(b"internal"))].unlimited());
    assert_eq!(
        c.plan(Some(b"gold")),
        c.fallback_plan,
        "unknown plans fall back"
    );
    assert_eq!(c.plan(None), c.fallback_plan, "missing plans fall back");
    assert!(matches!(c.client_from.as_slice(), [Input::ClientAddress]));
    assert_eq!(c.slots, 8192);
}

#[test]
fn bad_configs_name_the_field_and_the_reason() {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = plans();
        f(&mut v);
        v
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"fallback_plan": "x"}), "missing field `plans`"),
        (with(&|v| v["plans"] = json!({})), "plans: at least one plan is required"),
        (with(&|v| v["fallback_plan"] = json!("gold")), "fallback_plan: 'gold' is not a plan in 'plans'"),
        (with(&|v| v["plans"]["Free Tier"] = json!({"unlimited": true})), "plans.Free Tier: plan name 'Free Tier' must be 1 to 64 characters of a-z, 0-9, '_' or '-'"),
        (with(&|v| v["plans"]["x"] = json!({})), "plans.x.limits: at least one limit is required (or set \"unlimited\": true)"),
        (with(&|v| v["plans"]["x"] = json!({"unlimited": true, "limits": [{"requests": 1, "per": "second"}]})), "plans.x: an unlimited plan cannot have limits"),
        (with(&|v| v["plans"]["x"] = json!({"limits": [{"requests": 0, "per": "second"}]})), "plans.x.limits[0].requests: must be at least 1"),
        (with(&|v| v["plans"]["x"] = json!({"limits": [{"requests": 1, "per": "second", "burst": 0}]})), "plans.x.limits[0].burst: must be at least 1"),
        (with(&|v| v["plans"]["x"] = json!({"limits": [{"requests": 1, "per": "day", "burst": 366}]})), "plans.x.limits[0].burst: 366 requests at 1 per day take more than 365 days to refill"),
        (with(&|v| v["plans"]["x"] = json!({"limits": [{"requests": 1, "per": "second"}, {"requests": 2, "per": "second"}]})), "plans.x.limits[1].per: a plan has one limit per 'second'"),
        (with(&|v| v["plans"]["x"] = json!({"limits": [{"requests": 1, "per": "week"}]})), "plans.x.limits[0].per: unknown variant `week`, expected one of `second`, `minute`, `hour`, `day`"),
        (with(&|v| v["plan_from"] = json!([{"client_address": true}])), "plan_from[0].client_address: a plan cannot come from the client address"),
        (with(&|v| v["client_from"] = json!([{"claim": "sub", "header": "x"}])), "client_from[0]: exactly one of 'claim', 'header' or 'client_address' is required"),
        (with(&|v| v["client_from"] = json!([{"claim": "a..b"}])), "client_from[0].claim: 'a..b' is not a claim path (e.g. 'plan' or 'org.tier')"),
        (with(&|v| v["client_from"] = json!([{"header": "x", "provider": "idp"}])), "client_from[0].provider: only applies to 'claim'"),
        (with(&|v| v["rules"] = json!([{"cost": 0}])), "rules[0].cost: must be at least 1"),
        (with(&|v| v["rules"] = json!([{"cost": 6}])), "rules[0].cost: 6 is more than the smallest burst of any plan window (5): such requests could never pass"),
        (with(&|v| v["store"] = json!({"slots": 8})), "store.slots: must be a power of two from 16 to 1048576"),
        (with(&|v| v["global"] = json!({"cluster": "rls", "domain": ""})), "global.domain: must not be empty"),
        (with(&|v| v["global"] = json!({"cluster": "rls", "domain": "d", "timeout_ms": 0})), "global.timeout_ms: must be 1 to 10000"),
        (with(&|v| v["mode"] = json!("dry_run")), "mode: unknown variant `dry_run`, expected `enforce` or `shadow`"),
    ];
    for (v, expected) in cases {
        assert_eq!(config_err(v.clone()), expected, "{v}");
    }
}

#[test]
fn rules_pick_the_cost_and_skip() {
    let mut v = plans();
    v["rules"] = json!([
        {"match": {"path": {"prefix": "/health"}}, "skip": true},
        {"match": {"path": {"prefix": "/bulk/"}}, "cost": 5},
        {"match": {"methods": ["GET"]}}
    ]);
    let c = config(v);
    let req = |method: &str, path: &str| {
        HeaderList::from_pairs([(":method", method), (":path", path), (":authority", "a")])
    };
    assert_eq!(c.cost(&req("GET", "/health")), None);
    assert_eq!(c.cost(&req("POST", "/bulk/x")), Some(5));
    assert_eq!(c.cost(&req("GET", "/x")), Some(1));
    assert_eq!(
        c.cost(&req("POST", "/x")),
        None,
        "no rule matches: not limited"
    );
    assert_eq!(
        config(plans()).cost(&req("POST", "/x")),
        Some(1),
        "no rules: every request costs 1"
    );
}

// ---- identity -------------------------------------------------------------------

#[test]
fn inputs_fall_back_in_order_and_are_prefixed() {
    let mut v = plans();
    v["plan_from"] = json!([{"claim": "org.plan", "provider": "idp"}, {"header": "x-plan"}]);
    v["client_from"] = json!([{"claim": "sub"}, {"header": "x-api-key"}, {"client_address": true}]);
    let c = config(v);
    let claims = json!({"demo": {"sub": "alice", "org": {"plan": "demo-plan"}},
                        "idp": {"client_id": "svc", "org": {"plan": "pro"}, "n": 7}});
    let headers = HeaderList::from_pairs([("x-plan", "free"), ("x-api-key", "k1")]);
    let mut src = Sources {
        claims: Some(&claims),
        headers: &headers,
        address: Some(b"10.1.2.3:5555"),
    };
    assert_eq!(identity::first_raw(&c.plan_from, &mut src).unwrap(), b"pro");
    assert_eq!(
        identity::first(&c.client_from, &mut src).unwrap(),
        b"0:alice"
    );
    let mut no_claims = Sources {
        claims: None,
        headers: &headers,
        address: Some(b"10.1.2.3:5555"),
    };
    assert_eq!(
        identity::first_raw(&c.plan_from, &mut no_claims).unwrap(),
        b"free"
    );
    assert_eq!(
        identity::first(&c.client_from, &mut no_claims).unwrap(),
        b"1:k1"
    );
    let empty = HeaderList::default();
    let mut only_address = Sources {
        claims: None,
        headers: &empty,
        address: Some(b"[2001:db8::1]:443"),
    };
    assert_eq!(
        identity::first(&c.client_from, &mut only_address).unwrap(),
        b"2:2001:db8::1"
    );
    let mut nothing = Sources {
        claims: None,
        headers: &empty,
        address: None,
    };
    assert_eq!(identity::first(&c.client_from, &mut nothing), None);
    assert_eq!(identity::claim(&claims, None, &["n".into()]).unwrap(), b"7");
}

#[test]
fn without_a_provider_the_first_token_in_provider_name_order_counts() {
    let claims: Value =
        serde_json::from_str(r#"{"zeta": {"plan": "z"}, "alpha": {"plan": "a"}, "mid": {}}"#)
            .unwrap();
    assert_eq!(
        identity::claim(&claims, None, &["plan".into()]).unwrap(),
        b"a"
    );
    assert_eq!(
        identity::claim(&claims, Some("zeta"), &["plan".into()]).unwrap(),
        b"z"
    );
}

#[test]
fn ports_are_stripped_from_addresses() {
    assert_eq!(identity::strip_port(b"10.0.0.7:51234"), b"10.0.0.7");
    assert_eq!(identity::strip_port(b"[::1]:80"), b"::1");
    assert_eq!(identity::strip_port(b"::1"), b"::1");
    assert_eq!(identity::strip_port(b"10.0.0.7"), b"10.0.0.7");
}

// ---- slots and limiting -----------------------------------------------------------

#[test]
fn records_round_trip_and_garbage_reads_empty() {
    let r = Record {
        owner: 42,
        tats: [1, 2, 3, 4],
    };
    assert_eq!(Record::decode(Some(&r.encode())), r);
    assert_eq!(Record::decode(Some(b"short")), Record::default());
    assert!(Record::default().is_reusable(0));
    assert!(!r.is_reusable(3));
    assert!(r.is_reusable(4));
}

#[test]
fn a_plan_admits_its_burst_then_replenishes_at_its_rate() {
    let c = config(plans());
    let e = engine(&c, 64);
    let store = MemoryStore::default();
    let free = c.plan(Some(b"free"));
    let results: Vec<bool> = (0..7)
        .map(|_| allowed(&e.check(&store, &c.plans, free, b"a", 1, T0)))
        .collect();
    assert_eq!(results, [true, true, true, true, true, false, false]);
    match e.check(&store, &c.plans, free, b"a", 1, T0) {
        Verdict::Deny {
            window,
            retry_after_ns,
        } => {
            assert_eq!(window.window, 0, "the per-second window denies");
            assert_eq!(retry_after_ns, SEC / 5, "one cell is 200 ms");
        }
        other => panic!("{other:?}"),
    }
    // 200 ms later exactly one more passes.
    assert!(allowed(&e.check(
        &store,
        &c.plans,
        free,
        b"a",
        1,
        T0 + SEC / 5
    )));
    assert!(!allowed(&e.check(
        &store,
        &c.plans,
        free,
        b"a",
        1,
        T0 + SEC / 5
    )));
    // Another client is independent; so is the same client on another plan.
    assert!(allowed(&e.check(&store, &c.plans, free, b"b", 1, T0)));
    let pro = c.plan(Some(b"pro"));
    assert!(allowed(&e.check(&store, &c.plans, pro, b"a", 1, T0)));
}

#[test]
fn remaining_and_reset_are_reported_for_each_window() {
    let c = config(plans());
    let e = engine(&c, 64);
    let store = MemoryStore::default();
    let free = c.plan(Some(b"free"));
    let Verdict::Allow(states) = e.check(&store, &c.plans, free, b"a", 2, T0) else {
        panic!()
    };
    let got: Vec<(usize, u32, u64)> = states
        .iter()
        .map(|s| (s.window, s.remaining, s.reset_ns))
        .collect();
    // cost 2: second window 3 left, full again in 400 ms; day window 998 left, 2 x 86.4 s.
    assert_eq!(got, [(0, 3, 400_000_000), (1, 998, 172_800 * 1_000_000)]);
    let plan = &c.plans[free];
    let h = headers::render(&c.response_headers, plan, &states);
    assert_eq!(
        h,
        vec![
            (
                "ratelimit-policy",
                "\"free-second\";q=5;w=1, \"free-day\";q=1000;w=86400".to_owned()
            ),
            ("ratelimit", "\"free-second\";r=3;t=1".to_owned()),
        ]
    );
    let mut legacy_only = c.response_headers.clone();
    legacy_only.draft = false;
    legacy_only.legacy = true;
    assert_eq!(
        headers::render(&legacy_only, plan, &states),
        vec![
            ("x-ratelimit-limit", "5".to_owned()),
            ("x-ratelimit-remaining", "3".to_owned()),
            ("x-ratelimit-reset", "1".to_owned()),
        ]
    );
    // A burst above the rate: the first request leaves 9 of the burst of 10,
    // but no more than the quota of 5 is reported.
    let bursty = config(json!({
        "plans": {"p": {"limits": [{"requests": 5, "per": "second", "burst": 10}]}},
        "fallback_plan": "p",
        "response_headers": {"draft": true, "legacy": true}
    }));
    let e = engine(&bursty, 64);
    let Verdict::Allow(states) = e.check(&store, &bursty.plans, 0, b"a", 1, T0) else {
        panic!()
    };
    assert_eq!(states[0].remaining, 9);
    let h = headers::render(&bursty.response_headers, &bursty.plans[0], &states);
    assert_eq!(h[1], ("ratelimit", "\"p-second\";r=5;t=1".to_owned()));
    assert_eq!(h[2], ("x-ratelimit-limit", "5".to_owned()));
    assert_eq!(h[3], ("x-ratelimit-remaining", "5".to_owned()));
}

#[test]
fn a_request_denied_by_one_window_takes_nothing_from_the_others() {
    // 3 per second, 4 per minute: the 4th second-window request is denied and
    // must not use up the minute window.
    let c = config(json!({
        "plans": {"p": {"limits": [{"requests": 3, "per": "second"}, {"requests": 4, "per": "minute"}]}},
        "fallback_plan": "p"
    }));
    let e = engine(&c, 64);
    let store = MemoryStore::default();
    let results: Vec<bool> = (0..10)
        .map(|_| allowed(&e.check(&store, &c.plans, 0, b"a", 1, T0)))
        .collect();
    assert_eq!(results.iter().filter(|a| **a).count(), 3);
    // A second later one more fits the minute window (4), then it denies.
    assert!(allowed(&e.check(&store, &c.plans, 0, b"a", 1, T0 + SEC)));
    match e.check(&store, &c.plans, 0, b"a", 1, T0 + 2 * SEC) {
        Verdict::Deny { window, .. } => assert_eq!(window.window, 1, "the minute window denies"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn retry_after_is_the_longest_wait_of_the_denying_windows() {
    // 5 per second and 10 per minute, both used up: the second window alone
    // would say 1 s, but the minute window holds the request for longer.
    let c = config(json!({
        "plans": {"p": {"limits": [{"requests": 5, "per": "second"}, {"requests": 10, "per": "minute"}]}},
        "fallback_plan": "p"
    }));
    let e = engine(&c, 64);
    let store = MemoryStore::default();
    for now in [T0, T0 + SEC] {
        for _ in 0..5 {
            assert!(allowed(&e.check(&store, &c.plans, 0, b"a", 1, now)));
        }
    }
    let now = T0 + SEC;
    let Verdict::Deny {
        window,
        retry_after_ns,
    } = e.check(&store, &c.plans, 0, b"a", 1, now)
    else {
        panic!("the 11th request passed");
    };
    // The minute window's TAT is T0 + 60 s; with its burst of 10 the next
    // request fits at T0 + 6 s, 5 s from now.
    assert_eq!((window.window, retry_after_ns), (1, 5 * SEC));
    let retry_after = headers::ceil_secs(retry_after_ns);
    assert!(!allowed(&e.check(
        &store,
        &c.plans,
        0,
        b"a",
        1,
        now + retry_after * SEC - 1
    )));
    assert!(allowed(&e.check(
        &store,
        &c.plans,
        0,
        b"a",
        1,
        now + retry_after * SEC
    )));
}

#[test]
fn a_clock_stepped_back_costs_at_most_one_burst_not_the_step() {
    let c = config(json!({
        "plans": {"p": {"limits": [{"requests": 5, "per": "second"}, {"requests": 100, "per": "day"}]}},
        "fallback_plan": "p"
    }));
    let e = engine(&c, 64);
    let store = MemoryStore::default();
    assert!(allowed(&e.check(&store, &c.plans, 0, b"a", 1, T0)));
    // The host clock steps back an hour: the stored TATs are an hour ahead.
    let back = T0 - 3600 * SEC;
    match e.check(&store, &c.plans, 0, b"a", 1, back) {
        Verdict::Deny { retry_after_ns, .. } => assert_eq!(retry_after_ns, SEC / 5),
        other => panic!("{other:?}"),
    }
    assert!(allowed(&e.check(
        &store,
        &c.plans,
        0,
        b"a",
        1,
        back + SEC / 5
    )));
}

#[test]
fn workers_sharing_a_store_enforce_one_exact_limit() {
    // Four engines (one per worker) over one store, interleaved: the plan's
    // burst passes in total, not per worker.
    let c = config(plans());
    let workers: Vec<Engine> = (0..4).map(|_| engine(&c, 64)).collect();
    let store = MemoryStore::default();
    let free = c.plan(Some(b"free"));
    let admitted = (0..40)
        .filter(|i| allowed(&workers[i % 4].check(&store, &c.plans, free, b"a", 1, T0)))
        .count();
    assert_eq!(admitted, 5);
    // Each worker with its own store admits the burst on its own: 4 x 5.
    let stores: Vec<MemoryStore> = (0..4).map(|_| MemoryStore::default()).collect();
    let naive = (0..40)
        .filter(|i| allowed(&workers[i % 4].check(&stores[i % 4], &c.plans, free, b"a", 1, T0)))
        .count();
    assert_eq!(naive, 20);
}

/// What another worker does between a check's read and its write: it gets
/// the store, the key and the value about to be written.
type OtherWorker = Box<dyn FnOnce(&MemoryStore, &str, &[u8])>;

/// A store that lets other workers run just before its next writes, one
/// each; a write they make changes the CAS, so ours then fails as it would.
#[derive(Default)]
struct Interleaved {
    inner: MemoryStore,
    hooks: std::cell::RefCell<std::collections::VecDeque<OtherWorker>>,
}

impl Interleaved {
    fn before_write(&self, hook: impl FnOnce(&MemoryStore, &str, &[u8]) + 'static) {
        self.hooks.borrow_mut().push_back(Box::new(hook));
    }
}

impl SharedStore for Interleaved {
    fn get(
        &self,
        key: &str,
    ) -> Result<(Option<Vec<u8>>, Option<u32>), pwf_shared::shared_data::StoreError> {
        self.inner.get(key)
    }
    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), pwf_shared::shared_data::StoreError> {
        let hook = self.hooks.borrow_mut().pop_front();
        if let Some(run) = hook {
            run(&self.inner, key, value);
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn a_cas_mismatch_redoes_the_check_on_the_fresh_record() {
    let c = config(plans());
    let e = engine(&c, 64);
    let table = Table::new("t".into(), 64);
    let store = Interleaved::default();
    table.create(&store.inner).unwrap();
    let free = c.plan(Some(b"free"));
    for _ in 0..3 {
        assert!(allowed(&e.check(&store, &c.plans, free, b"a", 1, T0)));
    }
    // Two concurrent writers take the remaining 2 cells, each just before
    // one of our writes: our CAS fails, and the retry sees them and denies.
    for _ in 0..2 {
        store.before_write(|s, key, value| {
            let (bytes, _) = s.get(key).unwrap();
            let mut r = Record::decode(bytes.as_deref());
            r.tats[0] = r.tats[0].max(T0) + SEC / 5;
            r.owner = Record::decode(Some(value)).owner;
            s.set(key, &r.encode(), None).unwrap();
        });
    }
    assert!(!allowed(&e.check(&store, &c.plans, free, b"a", 1, T0)));
    assert!(store.hooks.borrow().is_empty(), "both writers ran");
}

#[test]
fn clients_probe_neighbouring_slots_and_reuse_expired_ones() {
    let table = Table::new("t".into(), 16);
    let store = MemoryStore::default();
    table.create(&store).unwrap();
    let owner = 3u64; // slot 3
    match table.place(&store, owner, T0).unwrap() {
        Placement::Slot { index, claimed, .. } => assert_eq!((index, claimed), (3, true)),
        Placement::Full => panic!(),
    }
    // Fill slots 3..3+PROBES with other live clients: the store is full for `owner`.
    for i in 0..PROBES {
        let other = Record {
            owner: 100 + u64::from(i),
            tats: [T0 + SEC, 0, 0, 0],
        };
        store.set(&table.key(3 + i), &other.encode(), None).unwrap();
    }
    assert_eq!(table.place(&store, owner, T0).unwrap(), Placement::Full);
    // Once one of them expires its slot is reused.
    match table.place(&store, owner, T0 + SEC).unwrap() {
        Placement::Slot {
            index,
            claimed,
            record,
            ..
        } => {
            assert_eq!((index, claimed, record.owner), (3, true, owner));
        }
        Placement::Full => panic!(),
    }
    // A client finds its own slot even behind a reusable one.
    let own = Record {
        owner,
        tats: [T0 + 5 * SEC, 0, 0, 0],
    };
    store.set(&table.key(5), &own.encode(), None).unwrap();
    store
        .set(&table.key(3), &Record::default().encode(), None)
        .unwrap();
    match table.place(&store, owner, T0).unwrap() {
        Placement::Slot { index, claimed, .. } => assert_eq!((index, claimed), (5, false)),
        Placement::Full => panic!(),
    }
}

#[test]
fn a_hundred_thousand_clients_stay_within_the_slot_table() {
    let c = config(json!({
        "plans": {"free": {"limits": [{"requests": 5, "per": "second"}]}},
        "fallback_plan": "free",
        "store": {"slots": 1024}
    }));
    let e = engine(&c, 1024);
    let store = MemoryStore::default();
    e.table().create(&store).unwrap();
    let keys_before = store.len();
    assert_eq!(keys_before, 1024 + 1, "slots and the ready marker");
    let (mut ok, mut full) = (0, 0);
    for i in 0..100_000u64 {
        // 1000 new clients per second of simulated time.
        let now = T0 + i * SEC / 1000;
        match e.check(
            &store,
            &c.plans,
            0,
            format!("client-{i}").as_bytes(),
            1,
            now,
        ) {
            Verdict::Allow(_) => ok += 1,
            Verdict::Full => full += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(store.len(), keys_before, "no key was added");
    // Each client holds a slot for 200 ms: ~200 live at once, far below 1024.
    assert_eq!((ok, full), (100_000, 0));
    // At the last request (simulated time T0 + 100 s) the clients of its last
    // 200 ms are live: the occupancy count finds them and no more.
    let mut pass = LivePass::default();
    let live = e
        .table()
        .count_live(&store, &mut pass, 1024, T0 + 99_999 * SEC / 1000);
    assert_eq!(live, Some(200));
}

#[test]
fn the_live_slots_are_counted_a_part_of_the_table_at_a_time() {
    let c = config(plans());
    let store = MemoryStore::new();
    let e = engine(&c, 16);
    e.table().create(&store).unwrap();
    for i in 0..3 {
        // Day-long state: live for the whole test.
        assert!(matches!(
            e.check(&store, &c.plans, 0, format!("c{i}").as_bytes(), 1, T0),
            Verdict::Allow(_)
        ));
    }
    let mut pass = LivePass::default();
    let table = e.table();
    let counts: Vec<_> = (0..6)
        .map(|_| table.count_live(&store, &mut pass, 6, T0 + SEC))
        .collect();
    // 16 slots in parts of 6: a pass ends every third call, then starts over.
    assert_eq!(counts, [None, None, Some(3), None, None, Some(3)]);
    // Once every window has refilled, nobody is live.
    let day = 86_400 * SEC;
    assert_eq!(
        table.count_live(&store, &mut pass, 16, T0 + day + SEC),
        Some(0)
    );
}

#[test]
fn owner_ids_are_stable_and_never_zero() {
    assert_eq!(owner_id("free", b"a"), owner_id("free", b"a"));
    assert_ne!(owner_id("free", b"a"), owner_id("pro", b"a"));
    assert_ne!(owner_id("free", b"a"), 0);
}

// ---- rate limit service messages ------------------------------------------------

#[test]
fn rls_request_and_response_round_trip() {
    let bytes = rls::encode_request("plans", "free", b"0:alice", 3);
    let req = rls::RateLimitRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(req.domain, "plans");
    assert_eq!(req.hits_addend, 3);
    let entries: Vec<(&str, &str)> = req.descriptors[0]
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(entries, [("plan", "free"), ("client", "0:alice")]);

    let ok = rls::RateLimitResponse {
        overall_code: 1,
        statuses: vec![],
    }
    .encode_to_vec();
    assert_eq!(rls::decode_response(&ok), Some(rls::Decision::Ok));
    let over = rls::RateLimitResponse {
        overall_code: 2,
        statuses: vec![rls::DescriptorStatus {
            code: 2,
            limit_remaining: 0,
            duration_until_reset: Some(rls::ProtoDuration {
                seconds: 2,
                nanos: 5,
            }),
        }],
    }
    .encode_to_vec();
    assert_eq!(
        rls::decode_response(&over),
        Some(rls::Decision::OverLimit { retry_after_s: 3 })
    );
    let unknown = rls::RateLimitResponse {
        overall_code: 0,
        statuses: vec![],
    }
    .encode_to_vec();
    assert_eq!(rls::decode_response(&unknown), None);
    assert_eq!(rls::decode_response(b"\xff\xff garbage"), None);
}

#[test]
fn distinct_client_keys_stay_distinct_in_descriptors() {
    let values: Vec<String> = [
        &b"1:key-\xff"[..],
        b"1:key-\xfe",
        b"1:key-%FF",
        b"1:key-\xef\xbf\xbd",
        b"1:k\xc3\xa9",
    ]
    .iter()
    .map(|k| rls::descriptor_value(k))
    .collect();
    assert_eq!(
        values,
        [
            "1:key-%FF",
            "1:key-%FE",
            "1:key-%25FF",
            "1:key-\u{fffd}",
            "1:k\u{e9}"
        ]
    );
}

#[test]
fn two_workers_claiming_different_slots_for_one_client_lose_no_request() {
    // Worker 1 (clock T0) sees the client's first probe slot still held by
    // another client until T0 + 10 ns and claims the second; before it
    // writes, worker 2 (clock T0 + 20 ns) finds the first expired and claims
    // it. Both writes succeed; the request in the second slot must not be lost.
    let c = std::rc::Rc::new(config(json!({
        "plans": {"p": {"limits": [{"requests": 5, "per": "second"}]}},
        "fallback_plan": "p", "store": {"slots": 16}
    })));
    let table = Table::new("t".into(), 16);
    let store = Interleaved::default();
    table.create(&store.inner).unwrap();
    let owner = owner_id("p", b"a");
    let other = Record {
        owner: owner ^ 2,
        tats: [T0 + 10, 0, 0, 0],
    };
    let first = u32::try_from(owner % 16).unwrap();
    store
        .inner
        .set(&table.key(first), &other.encode(), None)
        .unwrap();
    let worker1 = engine(&c, 16);
    let worker2 = std::rc::Rc::new(engine(&c, 16));
    let (c2, w2) = (c.clone(), worker2.clone());
    store.before_write(move |s, _, _| {
        assert!(allowed(&w2.check(s, &c2.plans, 0, b"a", 1, T0 + 20)));
    });
    assert!(allowed(&worker1.check(&store, &c.plans, 0, b"a", 1, T0)));
    let more = (0..10)
        .filter(|_| allowed(&worker1.check(&store.inner, &c.plans, 0, b"a", 1, T0 + 30)))
        .count();
    assert_eq!(
        2 + more,
        5,
        "a burst of 5, the two racing requests included"
    );
    let owned = (0..16)
        .filter(|&i| {
            Record::decode(store.inner.get(&table.key(i)).unwrap().0.as_deref()).owner == owner
        })
        .count();
    assert_eq!(owned, 1, "the second slot was freed");
}
