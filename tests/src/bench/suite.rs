//! Suites: `bench/suites/<suite>.json`, and the checks that each variant
//! does what the suite expects before it is measured.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use pwf_tests::{repo_root, wait_until, EchoUpstream, Envoy, EnvoyBuilder, Idp, ReceivedRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::measure::{bench_envoy, pin, LOAD_CPU};
use crate::tokens::{Pool, Pools, Tokens};

/// Original port of the echo cluster added for `upstream_headers` checks.
const ECHO_PORT: u16 = 18999;

pub fn all_suites() -> Vec<String> {
    let dir = repo_root().join("bench/suites");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `bench/suites/<name>.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Section heading in docs/benchmarks.md.
    pub title: String,
    /// Markdown paragraph under the heading.
    pub description: String,
    /// Variant that throughput and CPU are compared to (no filter at all).
    #[serde(default = "default_baseline")]
    pub baseline: String,
    /// Variant that CPU is also compared to (the empty Wasm filter).
    #[serde(default = "default_floor")]
    pub floor: String,
    /// Request path and headers (`name: value`, as for `wrk -H`) every
    /// variant gets unless it sets its own.
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: Vec<String>,
    /// Bearer tokens the request carries, for every variant that does not
    /// set its own.
    pub tokens: Option<Tokens>,
    /// Checks for every variant that does not set its own `verify`.
    #[serde(default)]
    pub verify: Verify,
    /// The test IdP (`tests/idp/server.mjs`), started before the suite's
    /// Envoys, for filters that fetch tokens from it.
    pub idp: Option<IdpSpec>,
    /// Pairs of variants compared directly, in a table under the main one.
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
    /// Markdown bullet points printed under the tables.
    #[serde(default)]
    pub notes: Vec<String>,
    /// wrk connections (default 64; `--connections` overrides it). Fewer
    /// for large bodies, where a few requests in flight keep Envoy's worker
    /// busy and 64 would make each request wait longer than a run.
    pub connections: Option<u32>,
    /// Histograms read from each variant's admin `/stats` after the runs
    /// (P99 and max across the runs), e.g. a filter's per-stream peak bytes.
    #[serde(default)]
    pub histograms: Vec<String>,
    pub variants: Vec<Variant>,
}

/// `variant` against `against`: medians of the per-round ratios of req/s
/// and CPU per request, and whether the req/s ratio reaches `min_rps_ratio`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub variant: String,
    pub against: String,
    /// What the pair shows (markdown).
    pub what: String,
    /// Goal: `variant`'s req/s at least this multiple of `against`'s.
    pub min_rps_ratio: Option<f64>,
    /// Goal: `variant`'s CPU per request at most this multiple of `against`'s.
    pub max_cpu_ratio: Option<f64>,
    /// Goal (both variants need `net_of`): `variant`'s body throughput (MB/s
    /// of its own CPU) at least this multiple of `against`'s.
    pub min_mb_per_s_ratio: Option<f64>,
}

/// `"idp"` of a suite: the bench starts `node tests/idp/server.mjs` (clients
/// `svc-a`, `svc-b`; see `tests/src/idp.rs`) on a free port, and every socket
/// address with port `port` in the suite's configs points at it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSpec {
    /// The IdP's port in the configs (e.g. 18100 in an `idp` cluster).
    pub port: u16,
    /// Access token lifetime in seconds (the IdP's default is 300).
    pub ttl_s: Option<u64>,
}

pub fn default_baseline() -> String {
    "no-filter".into()
}
pub fn default_floor() -> String {
    "empty-wasm".into()
}
pub fn default_path() -> String {
    "/".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    pub description: String,
    /// Envoy config, relative to the repo root; rendered like the tests do.
    pub config: String,
    pub path: Option<String>,
    pub headers: Option<Vec<String>>,
    pub tokens: Option<Tokens>,
    pub verify: Option<Verify>,
    /// Bytes of the response body every request gets (the fixture's size).
    pub body_bytes: Option<u64>,
    /// The variant without the filter (same body): its CPU per request is
    /// subtracted, per round, to get this filter's own CPU per body, and
    /// MB/s = `body_bytes` / that CPU. Needs `body_bytes`.
    pub net_of: Option<String>,
    /// Goal: at least this many MB/s (10^6 bytes per second of the filter's
    /// own CPU; Envoy runs on one core, so per core).
    pub min_mb_per_s: Option<f64>,
}

/// What one request must produce. A header maps to `null` (absent), a
/// string (exactly one value), an array (all values, in order) or
/// `{"glob": "..."}` (exactly one value, matching the pattern; for values that
/// change from request to request, such as a remaining quota).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Response status (default 200).
    pub status: Option<u16>,
    /// Headers of the response to the bench request.
    #[serde(default)]
    pub response_headers: BTreeMap<String, Option<Values>>,
    /// Request headers as they reach an upstream: checked with a copy of the
    /// config whose `direct_response` routes go to an echo upstream instead.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, Option<Values>>,
    /// With `tokens`: the bench request without its token header must get
    /// this status (e.g. 401), so a filter that lets everything through
    /// cannot pass the checks.
    pub unauthenticated_status: Option<u16>,
    /// With the suite's `idp`: the upstream must get a token that IdP issued.
    pub upstream_token: Option<UpstreamToken>,
    /// Before any check, send the bench request until it gets `status`, for
    /// up to this many seconds (for a filter that answers differently until
    /// it has fetched something, e.g. a token).
    pub ready_timeout_s: Option<u64>,
    /// The response body has exactly this many bytes.
    pub body_bytes: Option<usize>,
    /// Strings the response body must contain.
    #[serde(default)]
    pub body_has: Vec<String>,
    /// Strings the response body must not contain (e.g. values a filter
    /// must redact).
    #[serde(default)]
    pub body_lacks: Vec<String>,
}

/// A token from the suite's IdP in an upstream request header: exactly one
/// `header`, `prefix` followed by a JWT that verifies against the IdP's JWKS,
/// with the IdP as issuer, not expired, and with these `claims`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamToken {
    #[serde(default = "default_token_header")]
    pub header: String,
    #[serde(default = "default_token_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub claims: BTreeMap<String, Value>,
}

fn default_token_header() -> String {
    "authorization".into()
}
fn default_token_prefix() -> String {
    "Bearer ".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Values {
    One(String),
    All(Vec<String>),
    Like(Glob),
}

/// `{"glob": "\"bench-second\";r=*;t=*"}`: `*` matches any run of
/// characters (also none); everything else matches itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Glob {
    pub glob: String,
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text must be the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Reads suite `name` (a name in `bench/suites/` or a path to a `.json`
/// file); returns the key of its docs section and the suite.
pub fn load(name: &str) -> (String, Suite) {
    let (path, key) = suite_file(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read suite {}: {e}", path.display()));
    let suite = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid suite {}: {e}", path.display()));
    (key, suite)
}

/// The suite file and the key of its docs section.
fn suite_file(name: &str) -> (PathBuf, String) {
    let path = if name.ends_with(".json") {
        PathBuf::from(name)
    } else {
        repo_root()
            .join("bench/suites")
            .join(format!("{name}.json"))
    };
    let key = path.file_stem().unwrap().to_string_lossy().into_owned();
    (path, key)
}

/// The request a variant gets.
pub struct Request {
    pub path: String,
    /// Headers of every request (`name: value`), without any token.
    pub headers: Vec<String>,
    /// The bearer tokens, if any.
    pub tokens: Option<Rc<Pool>>,
}

impl Request {
    /// The headers of the first request: `headers` and the first token.
    pub fn first_headers(&self) -> Vec<String> {
        let mut all = self.headers.clone();
        all.extend(self.tokens.as_ref().map(|p| p.first_header()));
        all
    }
}

pub fn request_of(suite: &Suite, v: &Variant, pools: &mut Pools) -> Request {
    Request {
        path: v.path.clone().unwrap_or_else(|| suite.path.clone()),
        headers: v.headers.clone().unwrap_or_else(|| suite.headers.clone()),
        tokens: v
            .tokens
            .as_ref()
            .or(suite.tokens.as_ref())
            .map(|t| pools.get(t)),
    }
}

pub fn split_header(h: &str) -> (&str, &str) {
    let (n, v) = h
        .split_once(':')
        .unwrap_or_else(|| panic!("header {h:?} is not `name: value`"));
    (n.trim(), v.trim())
}

/// What a suite's Envoys use besides themselves: the test IdP, if the suite
/// has `idp`. Start it before the Envoys and drop it after them.
pub struct Services {
    /// The IdP's port in the configs, and the IdP.
    idp: Option<(u16, Idp)>,
}

impl Services {
    pub fn start(suite: &Suite) -> Services {
        let idp = suite.idp.as_ref().map(|spec| {
            let mut builder = Idp::builder();
            if let Some(ttl) = spec.ttl_s {
                builder = builder.ttl(ttl);
            }
            let idp = builder.start();
            // Like wrk and this process: off Envoy's CPU.
            pin(idp.pid(), LOAD_CPU);
            eprintln!(
                "test IdP {} (port {} in the configs)",
                idp.issuer(),
                spec.port
            );
            (spec.port, idp)
        });
        Services { idp }
    }

    pub fn idp(&self) -> Option<&Idp> {
        self.idp.as_ref().map(|(_, idp)| idp)
    }

    /// The Envoy for `config` as the bench runs it, pointed at these services.
    pub fn envoy(&self, config: &str) -> EnvoyBuilder {
        let builder = bench_envoy(config);
        match &self.idp {
            Some((port, idp)) => builder.port(*port, idp.port()),
            None => builder,
        }
    }
}

/// Sends the bench request and checks the variant's expectations; panics
/// with every mismatch.
pub fn verify(suite: &Suite, v: &Variant, request: &Request, envoy: &Envoy, services: &Services) {
    let expect = v.verify.as_ref().unwrap_or(&suite.verify);
    let status = expect.status.unwrap_or(200);
    let send_with = |envoy: &Envoy, headers: &[String]| {
        let mut req = envoy.req("GET", &request.path);
        for h in headers {
            let (n, val) = split_header(h);
            req = req.header(n, val);
        }
        req.send()
    };
    let first = request.first_headers();
    let send = |envoy: &Envoy| send_with(envoy, &first);
    // Until the filter is ready (e.g. has its token), keep sending the
    // bench request.
    let ready = |what: &str, envoy: &Envoy| -> Result<(), String> {
        let Some(secs) = expect.ready_timeout_s else {
            return Ok(());
        };
        let started = Instant::now();
        let mut statuses = Vec::new();
        let ok = wait_until(Duration::from_secs(secs), || {
            let got = send(envoy).status;
            if statuses.last() != Some(&got) {
                statuses.push(got);
            }
            got == status
        });
        if !ok {
            return Err(format!(
                "{what}: no {status} within {secs} s (statuses seen: {statuses:?})"
            ));
        }
        if statuses.len() > 1 {
            eprintln!(
                "{}: {what} ready after {:.1} s (statuses seen: {statuses:?})",
                v.name,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    };
    let mut errors = Vec::new();
    if let Err(e) = ready("response", envoy) {
        errors.push(e);
    }
    if let Some(pool) = &request.tokens {
        // The last token of the pool must pass too (same status).
        let mut last = request.headers.clone();
        last.push(pool.last_header());
        let got = send_with(envoy, &last).status;
        if got != status {
            errors.push(format!("last token of the pool: status {got} != {status}"));
        }
    }
    if let Some(want) = expect.unauthenticated_status {
        if request.tokens.is_none() {
            errors.push("unauthenticated_status needs `tokens`".into());
        }
        let got = send_with(envoy, &request.headers).status;
        if got != want {
            errors.push(format!("request without a token: status {got} != {want}"));
        }
    }
    let mut check_response = |what: &str, envoy: &Envoy| {
        let resp = send(envoy);
        if resp.status != status {
            errors.push(format!("{what}: status {} != {status}", resp.status));
        }
        for (name, want) in &expect.response_headers {
            check(&mut errors, what, name, resp.header_all(name), want);
        }
        check_body(&mut errors, what, &resp.body, expect);
    };
    check_response("response", envoy);
    if !expect.upstream_headers.is_empty() || expect.upstream_token.is_some() {
        let echo = EchoUpstream::start("bench-verify");
        let via_echo = services
            .envoy(&v.config)
            .upstream(ECHO_PORT, &echo)
            .edit(route_to_echo)
            .start();
        let what = "response via echo upstream";
        match ready(what, &via_echo) {
            Ok(()) => check_response(what, &via_echo),
            Err(e) => errors.push(e),
        }
        let got: ReceivedRequest = echo
            .last_request()
            .expect("the echo upstream got the request");
        for (name, want) in &expect.upstream_headers {
            check(
                &mut errors,
                "upstream request",
                name,
                header_values(&got, name),
                want,
            );
        }
        if let Some(want) = &expect.upstream_token {
            match services.idp() {
                Some(idp) => check_token(&mut errors, idp, &got, want),
                None => errors.push("upstream_token needs the suite's `idp`".into()),
            }
        }
    }
    assert!(
        errors.is_empty(),
        "variant {} ({}) does not do what the suite expects:\n  {}",
        v.name,
        v.config,
        errors.join("\n  ")
    );
}

/// `body_bytes`, `body_has` and `body_lacks` of `expect`.
fn check_body(errors: &mut Vec<String>, what: &str, body: &[u8], expect: &Verify) {
    if let Some(want) = expect.body_bytes {
        if body.len() != want {
            errors.push(format!("{what}: body of {} bytes, want {want}", body.len()));
        }
    }
    let text = String::from_utf8_lossy(body);
    for s in &expect.body_has {
        if !text.contains(s.as_str()) {
            errors.push(format!("{what}: body lacks {s:?}"));
        }
    }
    for s in &expect.body_lacks {
        if text.contains(s.as_str()) {
            errors.push(format!("{what}: body contains {s:?}"));
        }
    }
}

fn header_values(got: &ReceivedRequest, name: &str) -> Vec<String> {
    got.headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// `want.header` of the upstream request: one value, `want.prefix` and a
/// token `idp` issued, with `want.claims`.
fn check_token(errors: &mut Vec<String>, idp: &Idp, got: &ReceivedRequest, want: &UpstreamToken) {
    let values = header_values(got, &want.header);
    let token = match values.as_slice() {
        [one] => one.strip_prefix(want.prefix.as_str()),
        _ => None,
    };
    let Some(token) = token else {
        errors.push(format!(
            "upstream request: header {}: got {values:?}, want one `{}<token from the IdP>`",
            want.header, want.prefix
        ));
        return;
    };
    match idp_claims(idp, token) {
        Ok(claims) => {
            for (name, value) in &want.claims {
                if claims.get(name) != Some(value) {
                    errors.push(format!(
                        "upstream token: claim {name}: got {}, want {value}",
                        claims.get(name).unwrap_or(&Value::Null)
                    ));
                }
            }
        }
        Err(e) => errors.push(format!(
            "upstream token is not a valid token of the IdP: {e}"
        )),
    }
}

/// The claims of `token` if it verifies against the IdP's JWKS, has the
/// IdP as issuer and has not expired.
pub fn idp_claims(idp: &Idp, token: &str) -> Result<Value, String> {
    let header = decode_header(token).map_err(|e| format!("not a JWS: {e}"))?;
    let kid = header.kid.as_deref().ok_or("no kid in the JWS header")?;
    let jwks: JwkSet =
        serde_json::from_value(idp.jwks()).map_err(|e| format!("the IdP's JWKS: {e}"))?;
    let jwk = jwks
        .find(kid)
        .ok_or_else(|| format!("kid {kid} is not in the IdP's JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWK {kid}: {e}"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[idp.issuer()]);
    // `claims` can check `aud` exactly.
    validation.validate_aud = false;
    decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

pub fn check<S: AsRef<str>>(
    errors: &mut Vec<String>,
    what: &str,
    name: &str,
    got: Vec<S>,
    want: &Option<Values>,
) {
    let got: Vec<&str> = got.iter().map(AsRef::as_ref).collect();
    let want: Vec<&str> = match want {
        None => Vec::new(),
        Some(Values::One(v)) => vec![v],
        Some(Values::All(vs)) => vs.iter().map(String::as_str).collect(),
        Some(Values::Like(Glob { glob })) => {
            if !matches!(got.as_slice(), [one] if glob_matches(glob, one)) {
                errors.push(format!(
                    "{what}: header {name}: got {got:?}, want one value like {glob:?}"
                ));
            }
            return;
        }
    };
    if got != want {
        errors.push(format!("{what}: header {name}: got {got:?}, want {want:?}"));
    }
}

/// Config edit: every `direct_response` route goes to an echo cluster.
pub fn route_to_echo(config: &mut Value) {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.remove("direct_response").is_some() {
                    map.insert("route".into(), json!({ "cluster": "bench_echo" }));
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(config);
    let address = json!({ "socket_address": { "address": "127.0.0.1", "port_value": ECHO_PORT } });
    let cluster = json!({
        "name": "bench_echo",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "bench_echo",
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": address } }] }]
        }
    });
    config["static_resources"]
        .as_object_mut()
        .expect("static_resources")
        .entry("clusters")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("clusters is a list")
        .push(cluster);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_runs_of_characters() {
        let p = "\"bench-second\";r=*;t=*";
        assert!(glob_matches(p, "\"bench-second\";r=999999;t=1"));
        assert!(glob_matches(p, "\"bench-second\";r=;t="));
        assert!(!glob_matches(p, "\"bench-day\";r=5;t=1"));
        assert!(!glob_matches(p, "\"bench-second\";r=5"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "abbc"));
        assert!(!glob_matches("a*bc", "abc-"));
        assert!(!glob_matches("ab*ba", "aba"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exact!"));
    }

    #[test]
    fn a_glob_wants_exactly_one_matching_value() {
        let want: Option<Values> = serde_json::from_str(r#"{"glob": "r=*"}"#).unwrap();
        let mut errors = Vec::new();
        check(&mut errors, "t", "h", vec!["r=1"], &want);
        assert!(errors.is_empty(), "{errors:?}");
        for got in [vec![], vec!["r=1", "r=2"], vec!["x"]] {
            check(&mut errors, "t", "h", got, &want);
        }
        assert_eq!(errors.len(), 3, "{errors:?}");
        let bad: Result<Values, _> = serde_json::from_str(r#"{"glob": "*", "other": 1}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn every_suite_parses_and_names_its_configs() {
        for name in all_suites() {
            let (_, suite) = load(&name);
            for v in &suite.variants {
                assert!(
                    repo_root().join(&v.config).exists(),
                    "{}: {}",
                    name,
                    v.config
                );
                let tokens = v.tokens.as_ref().or(suite.tokens.as_ref());
                if let Some(t) = tokens {
                    t.check()
                        .unwrap_or_else(|e| panic!("{name}: {}: tokens: {e}", v.name));
                }
                let verify = v.verify.as_ref().unwrap_or(&suite.verify);
                assert!(
                    verify.unauthenticated_status.is_none() || tokens.is_some(),
                    "{name}: {}: unauthenticated_status without tokens",
                    v.name
                );
                assert!(
                    verify.upstream_token.is_none() || suite.idp.is_some(),
                    "{name}: {}: upstream_token without the suite's idp",
                    v.name
                );
            }
            for c in &suite.comparisons {
                for wanted in [&c.variant, &c.against] {
                    let v = suite.variants.iter().find(|v| &v.name == wanted);
                    assert!(v.is_some(), "{name}: comparison names no variant {wanted}");
                    assert!(
                        c.min_mb_per_s_ratio.is_none() || v.is_some_and(|v| v.net_of.is_some()),
                        "{name}: min_mb_per_s_ratio needs net_of in {wanted}"
                    );
                }
            }
            for v in &suite.variants {
                if let Some(of) = &v.net_of {
                    let base = suite.variants.iter().find(|b| &b.name == of);
                    assert!(
                        v.body_bytes.is_some()
                            && base.is_some_and(|b| b.body_bytes == v.body_bytes),
                        "{name}: {}: net_of {of} needs a variant {of} with the same body_bytes",
                        v.name
                    );
                }
                assert!(
                    v.min_mb_per_s.is_none() || v.net_of.is_some(),
                    "{name}: {}: min_mb_per_s needs net_of",
                    v.name
                );
            }
            for wanted in [&suite.baseline, &suite.floor] {
                assert!(
                    suite.variants.iter().any(|v| &v.name == wanted),
                    "{name}: no variant {wanted}"
                );
            }
        }
    }
}
