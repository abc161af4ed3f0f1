//! The jwt-acquire bench configs (`bench/configs/acquire-*.yaml`, suite
//! `bench/suites/jwt-acquire.json`) compare jwt-acquire with Envoy's native
//! `credential_injector` and its `oauth2` credential; the comparison is only
//! fair if both do the same work. These tests check that the two are
//! configured alike, that the configs validate, and, in a real Envoy against
//! the real test IdP, that each variant of the suite injects (or not) what
//! the suite says, and what each filter does while it has no token.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use pwf_tests::{
    filter_names, http_filters, load_config_file, tail, wait_until, EchoUpstream, Envoy, Idp,
};
use serde_json::{json, Value};
use std::time::Duration;

const SUITE: &str = "bench/suites/jwt-acquire.json";
const WASM: &str = "bench/configs/acquire-jwt-acquire.yaml";
const NATIVE: &str = "bench/configs/acquire-credential-injector.yaml";
/// The IdP's port in the configs (the suite's `idp.port`).
const IDP_PORT: u16 = 18100;
/// Port of the echo cluster that replaces the `direct_response`.
const ECHO_PORT: u16 = 18999;
const OAUTH2_TYPE: &str =
    "type.googleapis.com/envoy.extensions.http.injected_credentials.oauth2.v3.OAuth2";

/// The `idp` cluster's only endpoint address.
fn idp_address(config: &Value) -> Value {
    let clusters = config["static_resources"]["clusters"]
        .as_array()
        .expect("clusters");
    assert_eq!(clusters.len(), 1, "only the idp cluster");
    let idp = &clusters[0];
    assert_eq!(idp["name"], "idp");
    idp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"]
        .clone()
}

#[test]
fn the_suite_runs_these_configs_against_the_idp() {
    let suite = load_config_file(SUITE);
    assert_eq!(suite["idp"]["port"], IDP_PORT);
    let configs: Vec<(&str, &str)> = suite["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["config"].as_str().unwrap()))
        .collect();
    assert_eq!(
        configs,
        [
            ("no-filter", "bench/configs/no-filter.yaml"),
            ("empty-wasm", "bench/configs/empty-wasm.yaml"),
            ("jwt-acquire", WASM),
            ("native-credential-injector", NATIVE),
        ]
    );
    // The filter variants inherit the suite's verify: a token of the IdP
    // for client svc-b must reach the upstream.
    let verify = &suite["verify"];
    assert_eq!(verify["upstream_token"]["claims"]["client_id"], "svc-b");
    assert_eq!(verify["upstream_token"]["header"], "authorization");
    assert_eq!(verify["upstream_token"]["prefix"], "Bearer ");
    for v in &suite["variants"].as_array().unwrap()[2..] {
        assert!(v.get("verify").is_none(), "{}", v["name"]);
    }
}

#[test]
fn acquire_bench_configs_validate() {
    for path in [WASM, NATIVE] {
        let result = Envoy::builder(path).validate();
        assert!(result.ok, "{path}:\n{}", tail(&result.output, 25));
    }
}

#[test]
fn acquire_bench_pair_is_configured_for_the_same_work() {
    let want_idp = json!({"address": "127.0.0.1", "port_value": IDP_PORT});

    let wasm = load_config_file(WASM);
    assert_eq!(idp_address(&wasm), want_idp, "{WASM}");
    let filters = http_filters(&wasm);
    assert_eq!(
        filter_names(&filters),
        ["jwt-acquire", "envoy.filters.http.router"]
    );
    let config = &filters[0]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "target/wasm32-wasip1/release/jwt_acquire.wasm"
    );
    let plugin: Value = serde_json::from_str(
        config["configuration"]["value"]
            .as_str()
            .expect("configuration.value"),
    )
    .expect("plugin configuration is JSON");
    // One source, no `match`, defaults for everything not listed here
    // (inject: authorization, "Bearer ", existing: overwrite, no strip).
    assert_eq!(
        plugin,
        json!({"sources": [{
            "name": "default",
            "token_endpoint": {"cluster": "idp", "path": "/token", "timeout_ms": 5000},
            "client_id": {"inline": "svc-b"},
            "client_secret": {"inline": "svc-b-secret"},
            "client_auth": "client_secret_post"
        }]})
    );

    let native = load_config_file(NATIVE);
    assert_eq!(idp_address(&native), want_idp, "{NATIVE}");
    let filters = http_filters(&native);
    assert_eq!(
        filter_names(&filters),
        [
            "envoy.filters.http.credential_injector",
            "envoy.filters.http.router"
        ]
    );
    let injector = &filters[0]["typed_config"];
    // overwrite: like jwt-acquire's `existing: overwrite`; no token -> 401.
    assert_eq!(injector["overwrite"], true);
    assert!(injector.get("allow_request_without_credential").is_none());
    let credential = &injector["credential"];
    assert_eq!(credential["name"], "envoy.http.injected_credentials.oauth2");
    let oauth2 = &credential["typed_config"];
    assert_eq!(oauth2["@type"], OAUTH2_TYPE);
    assert_eq!(
        oauth2["token_endpoint"],
        json!({"uri": "http://idp/token", "cluster": "idp", "timeout": "5s"})
    );
    assert!(
        oauth2.get("scopes").is_none(),
        "no scopes, like jwt-acquire"
    );
    let client = &oauth2["client_credentials"];
    assert_eq!(client["client_id"], "svc-b");
    assert_eq!(client["auth_type"], "URL_ENCODED_BODY");
    let secret_name = client["client_secret"]["name"]
        .as_str()
        .expect("client_secret.name");
    assert!(
        client["client_secret"].get("sds_config").is_none(),
        "a static secret"
    );
    let secrets = native["static_resources"]["secrets"]
        .as_array()
        .expect("static_resources.secrets");
    let secret = secrets
        .iter()
        .find(|s| s["name"] == secret_name)
        .expect("the client secret is a static secret");
    assert_eq!(
        secret["generic_secret"]["secret"]["inline_string"],
        "svc-b-secret"
    );
}

/// The config with its `direct_response` routed to an echo upstream on
/// [`ECHO_PORT`], and the IdP's port mapped.
fn envoy_via_echo(config: &str, idp: &Idp, echo: &EchoUpstream) -> Envoy {
    Envoy::builder(config)
        .concurrency(1)
        .port(IDP_PORT, idp.port())
        .upstream(ECHO_PORT, echo)
        .edit(|c| {
            let route = &mut c["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                [0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0];
            let map = route.as_object_mut().expect("route");
            assert!(map.remove("direct_response").is_some());
            map.insert("route".into(), json!({"cluster": "bench_echo"}));
            let cluster = json!({
                "name": "bench_echo",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "bench_echo",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": ECHO_PORT}
                    }}}]}]
                }
            });
            let clusters = c["static_resources"]
                .as_object_mut()
                .expect("static_resources")
                .entry("clusters")
                .or_insert_with(|| json!([]));
            clusters.as_array_mut().expect("clusters").push(cluster);
        })
        .start()
}

/// Sends the bench request (optionally with the application's own
/// `authorization`) until it gets 200, for up to 20 s; returns every
/// `authorization` value the upstream got with it.
fn upstream_authorization(envoy: &Envoy, echo: &EchoUpstream, own: Option<&str>) -> Vec<String> {
    let mut last = 0;
    let ok = wait_until(Duration::from_secs(20), || {
        let mut req = envoy.req("GET", "/api/v1/items");
        if let Some(own) = own {
            req = req.header("authorization", own);
        }
        last = req.send().status;
        last == 200
    });
    assert!(ok, "no 200 within 20 s (last status {last})");
    let got = echo.last_request().expect("the upstream got the request");
    got.headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The claims of an access token the IdP issued, verified against its JWKS.
fn idp_claims(idp: &Idp, token: &str) -> Value {
    let header = decode_header(token).expect("a JWS");
    let jwks: JwkSet = serde_json::from_value(idp.jwks()).expect("the IdP's JWKS");
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("the token's kid is published");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_audience(&["api://default"]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
        .claims
}

/// Each variant of the suite, as the bench verifies it and more: the filters
/// deliver exactly one bearer token of the IdP for svc-b, also in place of
/// the application's own `authorization`, fetched once per Envoy; the
/// baselines deliver none and leave the application's header alone.
#[test]
fn each_acquire_variant_injects_as_claimed() {
    let idp = Idp::builder().ttl(3600).start();
    let variants = [
        ("bench/configs/no-filter.yaml", None),
        ("bench/configs/empty-wasm.yaml", None),
        (WASM, Some("wasmcustom.jwt_acquire.source.default")),
        (NATIVE, Some("http.bench.credential_injector")),
    ];
    std::thread::scope(|s| {
        for (config, stats) in variants {
            let idp = &idp;
            s.spawn(move || {
                let echo = EchoUpstream::start("api");
                let envoy = envoy_via_echo(config, idp, &echo);
                let plain = upstream_authorization(&envoy, &echo, None);
                let own = upstream_authorization(&envoy, &echo, Some("Bearer app-token"));
                let Some(stats) = stats else {
                    assert!(plain.is_empty(), "{config}: {plain:?}");
                    assert_eq!(own, ["Bearer app-token"], "{config}");
                    return;
                };
                assert_eq!(plain.len(), 1, "{config}: {plain:?}");
                let token = plain[0]
                    .strip_prefix("Bearer ")
                    .unwrap_or_else(|| panic!("{config}: not a bearer token: {}", plain[0]));
                let claims = idp_claims(idp, token);
                assert_eq!(claims["client_id"], "svc-b", "{config}");
                assert_eq!(claims["scope"], "api:read", "{config}");
                // The application's own header is replaced by the same token.
                assert_eq!(own, plain, "{config}: overwritten");

                let counters = envoy.stats();
                let stat = |name: &str| {
                    counters
                        .get(&format!("{stats}.{name}"))
                        .copied()
                        .unwrap_or(0)
                };
                assert!(stat("injected") >= 2, "{config}: {stats}.injected");
                let fetched = if config == WASM {
                    "fetch_ok"
                } else {
                    "oauth2.token_fetched"
                };
                assert_eq!(stat(fetched), 1, "{config}: {stats}.{fetched}");
            });
        }
    });
    // One token request per filter Envoy, with the form-body client.
    assert_eq!(idp.stats()["token_requests_by_client"], json!({"svc-b": 2}));
}

/// Without a token, `credential_injector` answers 401 at once and
/// `jwt-acquire` (after holding the request until the fetch fails) 503 with
/// `token_unavailable`; once the token endpoint answers, both inject again
/// without a restart (the bench's `ready_timeout_s` relies on this).
#[test]
fn without_a_token_native_answers_401_and_jwt_acquire_503() {
    let idp = Idp::builder().ttl(3600).start();
    idp.set_token_mode("down");
    let direct = |config: &str| {
        Envoy::builder(config)
            .concurrency(1)
            .port(IDP_PORT, idp.port())
            .start()
    };
    let (wasm, native) = (direct(WASM), direct(NATIVE));
    let native_resp = native.get("/api/v1/items");
    assert_eq!(native_resp.status, 401, "{}", native_resp.text());
    assert_eq!(native_resp.text(), "Failed to inject credential.");
    let wasm_resp = wasm.get("/api/v1/items");
    assert_eq!(wasm_resp.status, 503, "{}", wasm_resp.text());
    assert_eq!(wasm_resp.json()["error"], "token_unavailable");

    idp.set_token_mode("ok");
    for (what, envoy) in [("jwt-acquire", &wasm), ("credential_injector", &native)] {
        // jwt-acquire retries after 1 s (doubling), credential_injector every 2 s.
        let ok = wait_until(Duration::from_secs(15), || {
            envoy.get("/api/v1/items").status == 200
        });
        assert!(ok, "{what} got no token after the endpoint recovered");
    }
}
