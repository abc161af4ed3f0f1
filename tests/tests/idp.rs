//! Self-tests of the test IdP (`tests/idp/server.mjs` via `pwf_tests::Idp`).
//! Each test starts its own IdP on a free port.

use std::time::{Duration, Instant};

use jsonwebtoken::{jwk::Jwk, Algorithm, DecodingKey, Validation};
use pwf_tests::{jwt_parts, Idp};
use serde_json::{json, Value};

/// Verifies `token` against the IdP's current JWKS (signature, `iss`, `aud`,
/// `exp`) and returns its claims.
fn verify(idp: &Idp, token: &str, alg: Algorithm, aud: &str) -> Value {
    let (header, _) = jwt_parts(token);
    let jwks = idp.jwks();
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in JWKS {jwks}", header["kid"]));
    let jwk: Jwk = serde_json::from_value(jwk.clone()).expect("JWK parses");
    let key = DecodingKey::from_jwk(&jwk).expect("decoding key from JWK");
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_audience(&[aud]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
        .claims
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

#[test]
fn discovery_and_jwks_are_served() {
    let idp = Idp::start();
    assert_eq!(idp.issuer(), format!("http://127.0.0.1:{}", idp.port()));
    let disco = idp.discovery();
    assert_eq!(disco["issuer"], idp.issuer());
    assert_eq!(disco["jwks_uri"], idp.jwks_url());
    assert_eq!(disco["token_endpoint"], idp.token_url());
    assert!(disco["grant_types_supported"]
        .as_array()
        .expect("grant_types_supported")
        .contains(&json!("client_credentials")));

    // Endpoint URLs do not depend on the Host the IdP was reached by.
    let via_name = idp
        .client()
        .req("GET", idp.discovery_path())
        .header("host", "idp.internal")
        .send()
        .json();
    assert_eq!(via_name["jwks_uri"], idp.jwks_url());

    let jwks = idp.jwks();
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0].get("d").is_none(), "private part published: {jwks}");
    assert_eq!(keys[0]["kid"], idp.active_kid());
    assert_eq!(idp.ready_info()["jwks_path"], "/jwks");
}

#[test]
fn client_credentials_tokens_are_signed_jwts_with_custom_claims() {
    let idp = Idp::start();
    let token = idp.token("svc-a", "svc-a-secret");
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    assert!(kids(&idp.jwks()).contains(&header["kid"].as_str().expect("kid").to_owned()));

    let verified = verify(&idp, &token, Algorithm::RS256, "api://default");
    assert_eq!(verified, claims);
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], "api://default");
    assert_eq!(claims["sub"], "svc-a");
    assert_eq!(claims["client_id"], "svc-a");
    assert_eq!(claims["scope"], "api:read api:write");
    assert_eq!(claims["plan"], "pro");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );

    // A narrower scope and another resource (audience) on request.
    let token = idp.token_with(
        "svc-a",
        "svc-a-secret",
        &[
            ("scope", "api:read"),
            ("resource", "https://orders.example/"),
        ],
    );
    let claims = verify(&idp, &token, Algorithm::RS256, "https://orders.example/");
    assert_eq!(claims["scope"], "api:read");

    // Wrong secret.
    let resp = idp.token_response("svc-a", "nope", &[]);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"], "invalid_client");
}

#[test]
fn client_secret_post_client() {
    let idp = Idp::start();
    let claims = verify(
        &idp,
        &idp.token_post("svc-b", "svc-b-secret"),
        Algorithm::RS256,
        "api://default",
    );
    assert_eq!(claims["sub"], "svc-b");
    assert_eq!(claims["plan"], "free");
    assert_eq!(claims["tenant"], "globex");
    assert_eq!(claims["scope"], "api:read");

    // svc-b is registered for client_secret_post only.
    let resp = idp.token_response("svc-b", "svc-b-secret", &[]);
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.json()["error"], "invalid_client");
    // ...and may not ask for more than its scope.
    let resp = idp.token_post_response("svc-b", "svc-b-secret", &[("scope", "api:write")]);
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.json()["error"], "invalid_scope");
}

#[test]
fn es256_short_ttl_and_custom_clients() {
    let idp = Idp::builder()
        .alg("ES256")
        .ttl(2)
        .audience("api://orders")
        .clients(json!([{
            "client_id": "batch", "client_secret": "batch-secret",
            "token_endpoint_auth_method": "client_secret_basic",
            "plan": "enterprise", "tenant": "initech",
        }]))
        .start();
    let jwks = idp.jwks();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");

    let token = idp.token("batch", "batch-secret");
    let (header, _) = jwt_parts(&token);
    assert_eq!(header["alg"], "ES256");
    let claims = verify(&idp, &token, Algorithm::ES256, "api://orders");
    assert_eq!(claims["plan"], "enterprise");
    assert_eq!(claims["tenant"], "initech");
    assert_eq!(claims["scope"], "api:read api:write");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        2
    );

    assert_eq!(idp.token_response("svc-a", "svc-a-secret", &[]).status, 401);
}

#[test]
fn rotate_then_remove_old_keys() {
    let idp = Idp::start();
    let old_kid = idp.active_kid();
    let old_token = idp.token("svc-a", "svc-a-secret");

    let new_kid = idp.rotate();
    assert_ne!(new_kid, old_kid);
    assert_eq!(kids(&idp.jwks()), vec![old_kid.clone(), new_kid.clone()]);
    let new_token = idp.token("svc-a", "svc-a-secret");
    assert_eq!(jwt_parts(&new_token).0["kid"], new_kid.as_str());
    // Both verify while both keys are published.
    verify(&idp, &old_token, Algorithm::RS256, "api://default");
    verify(&idp, &new_token, Algorithm::RS256, "api://default");

    idp.remove_old_keys();
    assert_eq!(kids(&idp.jwks()), vec![new_kid.clone()]);
    assert_eq!(
        jwt_parts(&idp.token("svc-a", "svc-a-secret")).0["kid"],
        new_kid.as_str()
    );
    assert_eq!(idp.stats()["published_kids"], json!([new_kid]));
}

#[test]
fn jwks_modes() {
    let idp = Idp::start();
    let jwks_path = idp.jwks_path().to_owned();
    let get = || idp.client().get(&jwks_path);
    let kid = idp.active_kid();

    idp.set_jwks_mode("down");
    assert_eq!(get().status, 503);

    idp.set_jwks_mode("garbage");
    let resp = get();
    assert_eq!(resp.status, 200);
    assert!(
        serde_json::from_slice::<Value>(&resp.body).is_err(),
        "{}",
        resp.text()
    );

    idp.set_jwks_mode("huge");
    let resp = get();
    assert_eq!(resp.status, 200);
    assert!(
        resp.body.len() > 2_000_000,
        "only {} bytes",
        resp.body.len()
    );
    assert_eq!(resp.json()["keys"][0]["kid"], kid.as_str());

    idp.set_jwks_mode("wrong-types");
    let resp = get();
    assert_eq!(resp.status, 200);
    let keys = resp.json()["keys"].as_array().expect("keys").clone();
    assert!(keys.iter().any(|k| !k.is_object()), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.is_object() && !k["kty"].is_string()),
        "{keys:?}"
    );
    let same_kid: Vec<&Value> = keys.iter().filter(|k| k["kid"] == kid.as_str()).collect();
    assert_eq!(same_kid.len(), 2, "{keys:?}");
    assert_ne!(same_kid[0], same_kid[1]);

    idp.set_jwks_mode("slow:400");
    let t = Instant::now();
    assert_eq!(get().status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );

    idp.set_jwks_mode("ok");
    assert_eq!(kids(&get().json()), vec![kid]);

    assert_eq!(idp.stats()["jwks_fetches"], 6);
    let resp = idp
        .client()
        .request("POST", "/admin/jwks-mode", &[], "sideways");
    assert_eq!(resp.status, 400);
}

#[test]
fn token_modes_and_stats() {
    let idp = Idp::start();
    idp.token("svc-a", "svc-a-secret");
    idp.token_post("svc-b", "svc-b-secret");

    idp.set_token_mode("reject");
    let resp = idp.token_response("svc-a", "svc-a-secret", &[]);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"], "invalid_client");
    let resp = idp.token_post_response("svc-b", "svc-b-secret", &[]);
    assert_eq!(resp.status, 401);

    idp.set_token_mode("down");
    assert_eq!(idp.token_response("svc-a", "svc-a-secret", &[]).status, 503);

    idp.set_token_mode("ok");
    idp.token("svc-a", "svc-a-secret");

    let stats = idp.stats();
    assert_eq!(stats["token_requests"], 6, "{stats}");
    assert_eq!(stats["tokens_issued"], 3, "{stats}");
    assert_eq!(
        stats["token_requests_by_client"],
        json!({"svc-a": 4, "svc-b": 2})
    );
    assert_eq!(stats["jwks_fetches"], 0, "{stats}");
    idp.jwks();
    idp.discovery();
    let stats = idp.stats();
    assert_eq!(stats["jwks_fetches"], 1, "{stats}");
    assert_eq!(stats["discovery_fetches"], 1, "{stats}");

    idp.reset_stats();
    let stats = idp.stats();
    assert_eq!(stats["token_requests"], 0, "{stats}");
    assert_eq!(stats["token_requests_by_client"], json!({}));
}

#[test]
fn dropping_the_idp_kills_node() {
    let idp = Idp::start();
    let pid = idp.pid();
    let port = idp.port();
    drop(idp);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "node {pid} still running"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
