//! The jwt-auth bench configs (`bench/configs/jwt-*.yaml`, suite
//! `bench/suites/jwt-auth.json`) compare jwt-auth with Envoy's native
//! `jwt_authn`; the comparison is only fair if both do the same work. These
//! tests check that the pairs are configured alike and, in a real Envoy, that
//! each one verifies signatures and caches (or not) as the suite says.
//! (`bench_configs.rs` already runs `envoy --mode validate` on all of them.)

use jsonwebtoken::Algorithm;
use pwf_tests::jwt::{demo_claims, fixture_jwks, sign, TestKey, DEMO_ISSUER};
use pwf_tests::{http_filters, load_config_file, Envoy};
use serde_json::{json, Value};

/// (config, cache size: `Some(n)` on, `None` off)
const WASM: [(&str, Option<u64>); 2] = [
    ("bench/configs/jwt-auth-cached.yaml", Some(1024)),
    ("bench/configs/jwt-auth-uncached.yaml", None),
];
const NATIVE: [(&str, Option<u64>); 2] = [
    ("bench/configs/jwt-authn-cached.yaml", Some(1024)),
    ("bench/configs/jwt-authn-uncached.yaml", None),
];

/// The jwt-auth plugin configuration (JSON) of a wasm bench config.
fn wasm_plugin_config(path: &str) -> Value {
    let filters = http_filters(&load_config_file(path));
    let names: Vec<&str> = filters.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["jwt-auth", "envoy.filters.http.router"], "{path}");
    let config = &filters[0]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "target/wasm32-wasip1/release/jwt_auth.wasm",
        "{path}"
    );
    let text = config["configuration"]["value"]
        .as_str()
        .expect("configuration.value");
    serde_json::from_str(text).expect("plugin configuration is JSON")
}

/// The `JwtAuthentication` of a native bench config.
fn native_config(path: &str) -> Value {
    let filters = http_filters(&load_config_file(path));
    let names: Vec<&str> = filters.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(
        names,
        ["envoy.filters.http.jwt_authn", "envoy.filters.http.router"],
        "{path}"
    );
    filters[0]["typed_config"].clone()
}

#[test]
fn jwt_bench_pairs_are_configured_for_the_same_work() {
    for ((wasm, wasm_cache), (native, native_cache)) in WASM.iter().zip(&NATIVE) {
        assert_eq!(wasm_cache, native_cache);

        let w = wasm_plugin_config(wasm);
        let providers = w["providers"].as_array().expect("providers");
        assert_eq!(providers.len(), 1, "{wasm}");
        let p = &providers[0];
        assert_eq!(p["issuer"], DEMO_ISSUER, "{wasm}");
        assert_eq!(p["audiences"], json!(["api"]), "{wasm}");
        assert_eq!(p["jwks"]["inline"], fixture_jwks(), "{wasm}");
        assert_eq!(
            p["claims_to_headers"],
            json!([{"claim": "sub", "header": "x-jwt-sub"}]),
            "{wasm}"
        );
        // Token stripped: `forward` absent (default false) or false.
        assert!(matches!(p.get("forward"), None | Some(Value::Bool(false))));
        assert!(p.get("from").is_none(), "{wasm}: default location");
        assert!(p.get("payload_header").is_none(), "{wasm}");
        assert!(p.get("required_claims").is_none(), "{wasm}");
        assert_eq!(
            w["rules"],
            json!([{"match": {"path": {"prefix": "/"}}, "requires": {"provider": "demo"}}]),
            "{wasm}"
        );
        assert_eq!(
            w["cache"]["max_entries"].as_u64(),
            Some(wasm_cache.unwrap_or(0)),
            "{wasm}"
        );

        let n = native_config(native);
        let providers = n["providers"].as_object().expect("providers");
        assert_eq!(providers.len(), 1, "{native}");
        let p = &providers["demo"];
        assert_eq!(p["issuer"], DEMO_ISSUER, "{native}");
        assert_eq!(p["audiences"], json!(["api"]), "{native}");
        let jwks: Value = serde_json::from_str(
            p["local_jwks"]["inline_string"]
                .as_str()
                .expect("local_jwks.inline_string"),
        )
        .expect("inline JWKS is JSON");
        assert_eq!(jwks, fixture_jwks(), "{native}");
        assert_eq!(
            p["claim_to_headers"],
            json!([{"header_name": "x-jwt-sub", "claim_name": "sub"}]),
            "{native}"
        );
        assert_eq!(p["forward"], false, "{native}");
        assert!(
            p.get("from_headers").is_none(),
            "{native}: default location"
        );
        // jwt-auth hands the payload on (filter state, `claims_filter_state: true`).
        assert_eq!(p["payload_in_metadata"], "jwt_payload", "{native}");
        assert_eq!(
            p.get("jwt_cache_config")
                .map(|c| c["jwt_cache_size"].as_u64()),
            native_cache.map(Some),
            "{native}"
        );
        assert_eq!(
            n["rules"],
            json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "demo"}}]),
            "{native}"
        );
    }
}

fn get(envoy: &Envoy, token: Option<&str>) -> u16 {
    let mut req = envoy.req("GET", "/api/v1/items");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().status
}

/// The token with its signature's first byte changed.
fn tampered(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').expect("JWS compact form");
    let first = if sig.starts_with('A') { 'B' } else { 'A' };
    format!("{head}.{first}{}", &sig[1..])
}

/// Each config: RS256 and ES256 tokens pass, a missing or tampered token is a
/// 401, and a repeated token is a cache hit exactly when the suite says so.
#[test]
fn jwt_bench_configs_verify_and_cache_as_described() {
    let rs = sign(
        TestKey::Rsa,
        Algorithm::RS256,
        &demo_claims("bench-0", json!({})),
    );
    let es = sign(
        TestKey::Ec256,
        Algorithm::ES256,
        &demo_claims("bench-1", json!({})),
    );
    let configs = WASM
        .iter()
        .map(|c| (c, true))
        .chain(NATIVE.iter().map(|c| (c, false)));
    std::thread::scope(|s| {
        for ((path, cache), wasm) in configs {
            let (rs, es) = (&rs, &es);
            s.spawn(move || {
                let envoy = Envoy::builder(path).concurrency(1).start();
                for (what, token, want) in [
                    ("RS256", Some(rs.as_str()), 200),
                    ("RS256 again", Some(rs.as_str()), 200),
                    ("ES256", Some(es.as_str()), 200),
                    ("no token", None, 401),
                    ("tampered RS256", Some(&tampered(rs)), 401),
                    ("tampered ES256", Some(&tampered(es)), 401),
                ] {
                    assert_eq!(get(&envoy, token), want, "{path}: {what}");
                }
                let (hits, misses) = if wasm {
                    (
                        "wasmcustom.jwt_auth.cache.hits",
                        "wasmcustom.jwt_auth.cache.misses",
                    )
                } else {
                    (
                        "http.bench.jwt_authn.jwt_cache_hit",
                        "http.bench.jwt_authn.jwt_cache_miss",
                    )
                };
                let stats = envoy.stats();
                let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
                match cache {
                    Some(_) => {
                        assert_eq!(stat(hits), 1, "{path}: {hits}");
                        assert!(stat(misses) >= 2, "{path}: {misses}");
                    }
                    None => assert_eq!(stat(hits), 0, "{path}: {hits}"),
                }
                if wasm {
                    // Signatures are checked by Envoy's BoringSSL, not in Wasm.
                    assert!(stat("wasmcustom.jwt_auth.verify.native") >= 2, "{path}");
                    assert_eq!(stat("wasmcustom.jwt_auth.verify.fallback"), 0, "{path}");
                }
            });
        }
    });
}
