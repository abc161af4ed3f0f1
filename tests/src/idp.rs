//! A real OpenID provider for tests: `tests/idp/server.mjs` (the npm package
//! `oidc-provider` 9) run with `node`, on 127.0.0.1 and a free port.
//!
//! ```no_run
//! use pwf_tests::Idp;
//!
//! let idp = Idp::builder().ttl(5).start();   // or Idp::start()
//! let token = idp.token("svc-a", "svc-a-secret");   // a real client_credentials JWT
//! let (header, claims) = pwf_tests::jwt_parts(&token);
//! assert_eq!(claims["plan"], "pro");
//! assert!(idp.jwks()["keys"][0]["kid"] == header["kid"]);
//! idp.rotate();                                     // new signer, old key still published
//! idp.set_jwks_mode("down");                        // JWKS endpoint answers 503
//! assert_eq!(idp.stats()["jwks_fetches"], 1);
//! ```
//!
//! Default clients (both `client_credentials` only):
//!
//! | client_id | secret         | auth                  | `plan` | `tenant` | scope                |
//! |-----------|----------------|-----------------------|--------|----------|----------------------|
//! | `svc-a`   | `svc-a-secret` | `client_secret_basic` | `pro`  | `acme`   | `api:read api:write` |
//! | `svc-b`   | `svc-b-secret` | `client_secret_post`  | `free` | `globex` | `api:read`           |
//!
//! Access tokens are RS256 (or ES256) JWTs with `typ: at+jwt` and a `kid`;
//! claims `iss` (the issuer), `aud` (`api://default`, or the `resource`
//! parameter), `sub` and `client_id` (the client), `iat`, `exp` (TTL 300 s by
//! default), `jti`, `scope` (the requested scope, or the client's whole scope
//! if none was requested), `plan`, `tenant`. A client must use its registered
//! authentication method: `svc-b` with HTTP Basic gets 401 `invalid_client`.
//!
//! The Node dependencies must be installed first: `npm ci --prefix tests/idp`.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::child::{read_ready_line, ChildProcess, Orphan};
use crate::{repo_root, HttpClient, Response};

/// How long `node` may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Configures and starts an [`Idp`]; see [`Idp::builder`].
#[derive(Debug, Clone, Default)]
pub struct IdpBuilder {
    port: u16,
    ttl: Option<u64>,
    alg: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    clients: Option<Value>,
}

impl IdpBuilder {
    /// Listen on this port (default 0: the IdP picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Access token lifetime in seconds (default 300).
    pub fn ttl(mut self, secs: u64) -> Self {
        self.ttl = Some(secs);
        self
    }

    /// Signing algorithm: `"RS256"` (default) or `"ES256"`; rotated keys use
    /// the same algorithm.
    pub fn alg(mut self, alg: &str) -> Self {
        self.alg = Some(alg.to_owned());
        self
    }

    /// The default audience (`aud`) of access tokens (default `api://default`).
    pub fn audience(mut self, aud: &str) -> Self {
        self.audience = Some(aud.to_owned());
        self
    }

    /// The resource server's scopes, space-separated (default
    /// `api:read api:write`).
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }

    /// Replaces the default clients with this JSON array of oidc-provider
    /// client metadata, e.g. `[{"client_id": "c", "client_secret": "s",
    /// "token_endpoint_auth_method": "client_secret_basic", "plan": "pro",
    /// "tenant": "t", "scope": "api:read"}]`. `grant_types` defaults to
    /// `["client_credentials"]`.
    pub fn clients(mut self, clients: Value) -> Self {
        self.clients = Some(clients);
        self
    }

    /// Starts `node tests/idp/server.mjs` and waits (up to 20 s) for its
    /// ready line. Panics with the stderr tail if it does not come.
    pub fn start(self) -> Idp {
        let script = repo_root().join("tests/idp/server.mjs");
        let installed = repo_root().join("tests/idp/node_modules/oidc-provider/package.json");
        assert!(
            installed.exists(),
            "{} not found: run `npm ci --prefix tests/idp` (or `make setup`)",
            installed.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .args(["--port", &self.port.to_string(), "--exit-on-stdin-close"]);
        if let Some(ttl) = self.ttl {
            cmd.args(["--ttl", &ttl.to_string()]);
        }
        for (flag, value) in [
            ("--alg", &self.alg),
            ("--audience", &self.audience),
            ("--scope", &self.scope),
        ] {
            if let Some(v) = value {
                cmd.args([flag, v]);
            }
        }
        if let Some(clients) = &self.clients {
            cmd.args(["--clients", &clients.to_string()]);
        }
        let (proc, stdout) = ChildProcess::spawn(&mut cmd, Orphan::ExitsOnStdinClose, false)
            .unwrap_or_else(|e| {
                panic!("spawn `node {}`: {e} (is node on PATH?)", script.display())
            });
        let (ready, port) = read_ready_line("IdP", &proc, stdout, START_TIMEOUT, |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        let text = |k: &str| {
            ready[k]
                .as_str()
                .unwrap_or_else(|| panic!("IdP ready line lacks {k}: {ready}"))
                .to_owned()
        };
        Idp {
            issuer: text("issuer"),
            jwks_path: text("jwks_path"),
            token_path: text("token_path"),
            discovery_path: text("discovery_path"),
            http: HttpClient::new(port),
            port,
            ready,
            proc,
        }
    }
}

/// A running OpenID provider (`node tests/idp/server.mjs`), killed (SIGKILL,
/// by PID) when dropped. It also exits by itself when the test process dies
/// (its stdin closes).
#[derive(Debug)]
pub struct Idp {
    proc: ChildProcess,
    ready: Value,
    issuer: String,
    port: u16,
    jwks_path: String,
    token_path: String,
    discovery_path: String,
    http: HttpClient,
}

impl Idp {
    /// Starts an IdP with the defaults (RS256, TTL 300 s, clients `svc-a`
    /// and `svc-b`).
    pub fn start() -> Idp {
        IdpBuilder::default().start()
    }

    /// A builder for TTL, algorithm, audience, scopes and clients.
    pub fn builder() -> IdpBuilder {
        IdpBuilder::default()
    }

    /// The issuer, `http://127.0.0.1:<port>` (the `iss` of its tokens).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of `node`.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The JSON line the server printed when ready (`port`, `issuer`,
    /// `jwks_path`, `token_path`, `alg`, `audience`, `ttl`, `active_kid`...).
    pub fn ready_info(&self) -> &Value {
        &self.ready
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        self.http.url(path)
    }

    /// The JWKS path (`/jwks`).
    pub fn jwks_path(&self) -> &str {
        &self.jwks_path
    }

    /// The full JWKS URL.
    pub fn jwks_url(&self) -> String {
        self.url(&self.jwks_path)
    }

    /// The token endpoint path (`/token`).
    pub fn token_path(&self) -> &str {
        &self.token_path
    }

    /// The full token endpoint URL.
    pub fn token_url(&self) -> String {
        self.url(&self.token_path)
    }

    /// The discovery path (`/.well-known/openid-configuration`).
    pub fn discovery_path(&self) -> &str {
        &self.discovery_path
    }

    /// A client for ad-hoc requests to the IdP.
    pub fn client(&self) -> &HttpClient {
        &self.http
    }

    /// `GET` the JWKS (counts as a fetch in [`Idp::stats`]); panics unless
    /// it is a 200 JSON response, so only use it in the `ok` JWKS mode.
    pub fn jwks(&self) -> Value {
        let resp = self.http.get(&self.jwks_path);
        assert_eq!(resp.status, 200, "GET {}: {}", self.jwks_path, resp.text());
        resp.json()
    }

    /// `GET` the discovery document.
    pub fn discovery(&self) -> Value {
        let resp = self.http.get(&self.discovery_path);
        assert_eq!(
            resp.status,
            200,
            "GET {}: {}",
            self.discovery_path,
            resp.text()
        );
        resp.json()
    }

    /// A client_credentials access token for a `client_secret_basic` client
    /// (e.g. `svc-a`); panics unless the token endpoint answers 200.
    pub fn token(&self, client_id: &str, secret: &str) -> String {
        access_token(self.token_response(client_id, secret, &[]))
    }

    /// Like [`Idp::token`], with extra form parameters such as
    /// `("scope", "api:read")` or `("resource", "https://api.example/")`.
    pub fn token_with(&self, client_id: &str, secret: &str, params: &[(&str, &str)]) -> String {
        access_token(self.token_response(client_id, secret, params))
    }

    /// A client_credentials access token for a `client_secret_post` client
    /// (e.g. `svc-b`); panics unless the token endpoint answers 200.
    pub fn token_post(&self, client_id: &str, secret: &str) -> String {
        access_token(self.token_post_response(client_id, secret, &[]))
    }

    /// The raw token endpoint response to a client_credentials request with
    /// HTTP Basic client authentication (`client_secret_basic`) and the extra
    /// form `params`.
    pub fn token_response(
        &self,
        client_id: &str,
        secret: &str,
        params: &[(&str, &str)],
    ) -> Response {
        // RFC 6749 2.3.1: id and secret are form-urlencoded before base64.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(client_id),
            enc(secret)
        ));
        self.token_request(&[], params)
            .header("authorization", format!("Basic {basic}"))
            .send()
    }

    /// The raw token endpoint response to a client_credentials request with
    /// `client_id` and `client_secret` in the form (`client_secret_post`).
    pub fn token_post_response(
        &self,
        client_id: &str,
        secret: &str,
        params: &[(&str, &str)],
    ) -> Response {
        self.token_request(
            &[("client_id", client_id), ("client_secret", secret)],
            params,
        )
        .send()
    }

    fn token_request(
        &self,
        auth: &[(&str, &str)],
        params: &[(&str, &str)],
    ) -> crate::RequestBuilder<'_> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .extend_pairs(auth.iter().chain(params))
            .finish();
        self.http
            .req("POST", &self.token_path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// Adds a new signing key and makes it the signer; the old keys stay in
    /// the JWKS. Returns the new key's `kid`.
    pub fn rotate(&self) -> String {
        let v = self.admin("/admin/rotate", "");
        v["active_kid"].as_str().expect("active_kid").to_owned()
    }

    /// Stops publishing every key but the active one.
    pub fn remove_old_keys(&self) {
        self.admin("/admin/remove-old", "");
    }

    /// The `kid` that signs new tokens.
    pub fn active_kid(&self) -> String {
        self.stats()["active_kid"]
            .as_str()
            .expect("active_kid")
            .to_owned()
    }

    /// How the JWKS endpoint answers from now on: `ok`, `down` (503),
    /// `garbage` (200, not JSON), `huge` (200, the real keys followed by
    /// ~3.7 MB of filler keys), `wrong-types` (200: entries of wrong JSON
    /// types, and each real key followed by a different key with the same
    /// `kid`), `slow:<ms>` (the real JWKS after a delay) or `stale:<ms>` (the
    /// keys published when the request arrived, sent after a delay).
    pub fn set_jwks_mode(&self, mode: &str) {
        self.admin("/admin/jwks-mode", mode);
    }

    /// How the token endpoint answers from now on: `ok`, `down` (503
    /// `{"error":"temporarily_unavailable"}`), `reject` (401
    /// `{"error":"invalid_client"}`) or `slow:<ms>` (a real token after a delay).
    pub fn set_token_mode(&self, mode: &str) {
        self.admin("/admin/token-mode", mode);
    }

    /// Counters and state: `jwks_fetches`, `discovery_fetches`,
    /// `token_requests`, `token_requests_by_client` (`{"svc-a": n}`),
    /// `tokens_issued`, `jwks_mode`, `token_mode`, `active_kid`,
    /// `published_kids`.
    pub fn stats(&self) -> Value {
        let resp = self.http.get("/admin/stats");
        assert_eq!(resp.status, 200, "GET /admin/stats: {}", resp.text());
        resp.json()
    }

    /// Zeroes the counters in [`Idp::stats`].
    pub fn reset_stats(&self) {
        self.admin("/admin/reset-stats", "");
    }

    /// The last `n` lines of the server's stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        self.proc.output_tail(n)
    }

    fn admin(&self, path: &str, body: &str) -> Value {
        let resp = self.http.request("POST", path, &[], body);
        assert_eq!(resp.status, 200, "POST {path} {body:?}: {}", resp.text());
        resp.json()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- IdP {} stderr tail:\n{}\n----",
                self.issuer,
                self.stderr_tail(20)
            );
        }
    }
}

fn access_token(resp: Response) -> String {
    assert_eq!(
        resp.status,
        200,
        "token endpoint: {} {}",
        resp.status,
        resp.text()
    );
    resp.json()["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {}", resp.text()))
        .to_owned()
}

/// Decodes (without verifying) a compact JWS: `(header, payload)` as JSON.
/// Panics if `token` is not three base64url parts with JSON in the first two.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    let decode = |part: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("JWT part is not base64url ({e}): {part}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("JWT part is not JSON ({e}): {part}"))
    };
    (decode(parts[0]), decode(parts[1]))
}
