//! proxy-wasm glue: request handling, remote JWKS fetching shared by every
//! worker, and requests held until keys arrive.
//!
//! Each worker VM has one [`Worker`] shared by its root context and its HTTP
//! contexts. The root context ticks: it picks up keys another worker fetched
//! (shared data), starts a fetch when one is due and this worker wins the
//! lease, and finishes held requests once their keys arrived, a fetch failed,
//! or their deadline passed.

use crate::access::{self, Access};
use crate::cache::TokenCache;
use crate::config::{Compiled, Config};
use crate::jwks::{self, KeySet};
use crate::outputs;
use crate::remote::{self, Policy, Status};
use crate::rules::{CheckResult, Decision};
use crate::verify::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use pwf_shared::headers::HeaderList;
use pwf_shared::held::HeldRequests;
use pwf_shared::host::unix_ms as now_ms;
use pwf_shared::host::{self, HeaderMapType};
use pwf_shared::metrics::{Counter, Histogram};
use pwf_shared::shared_data::{self, HostStore, Lease, SharedStore, Update};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

const FILTER: &str = "jwt_auth";
const TICK: Duration = Duration::from_millis(200);
/// Requests one worker holds at most for keys; more are decided without waiting.
const MAX_HELD: usize = 4096;
/// Filter state through which later filters read verified claims:
/// `get_property(["jwt_auth_claims"])` from Wasm, `%FILTER_STATE(wasm.jwt_auth_claims:PLAIN)%` in access logs.
pub const CLAIMS_PROPERTY: &str = "jwt_auth_claims";

struct Metrics {
    allowed: Counter,
    denied: Vec<(Reason, Counter)>,
    cache_hits: Counter,
    cache_misses: Counter,
    held: Counter,
    outputs_skipped: Counter,
    jwks_fetch_ok: Counter,
    jwks_fetch_failed: Counter,
    jwks_fetch_ms: Histogram,
    verify_native: Counter,
    verify_fallback: Counter,
    /// Backend counts already exported: (native, fallback).
    exported: Cell<(u64, u64)>,
}

impl Metrics {
    fn define() -> Self {
        let name = |m: &str| format!("{FILTER}.{m}");
        Self {
            allowed: Counter::define(&name("allowed")),
            denied: Reason::ALL
                .iter()
                .map(|r| (*r, Counter::define(&name(&format!("denied.{}", r.code())))))
                .collect(),
            cache_hits: Counter::define(&name("cache.hits")),
            cache_misses: Counter::define(&name("cache.misses")),
            held: Counter::define(&name("held")),
            outputs_skipped: Counter::define(&name("outputs_skipped")),
            jwks_fetch_ok: Counter::define(&name("jwks_fetch.ok")),
            jwks_fetch_failed: Counter::define(&name("jwks_fetch.failed")),
            jwks_fetch_ms: Histogram::define(&name("jwks_fetch.duration_ms")),
            verify_native: Counter::define(&name("verify.native")),
            verify_fallback: Counter::define(&name("verify.fallback")),
            exported: Cell::new((0, 0)),
        }
    }

    /// Exports the signature backend's counts since the last call.
    fn export_backend_stats(&self) {
        let stats = crate::native_crypto::stats();
        let (native, fallback) = self.exported.get();
        self.verify_native
            .add(stats.native_verifications.saturating_sub(native));
        self.verify_fallback
            .add(stats.fallback_verifications.saturating_sub(fallback));
        self.exported
            .set((stats.native_verifications, stats.fallback_verifications));
    }

    fn denied(&self, reason: Reason) {
        if let Some((_, c)) = self.denied.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}

/// One remote provider's keys as this worker knows them.
struct RemoteKeys {
    provider: usize,
    name: String,
    policy: Policy,
    keys_key: String,
    status_key: String,
    lease_key: String,
    keys: Option<Rc<KeySet>>,
    /// `fetched_at` of `keys`, as recorded in shared data.
    version: Option<u64>,
    /// A fetch this worker started: (call token, start time).
    in_flight: Option<(u32, u64)>,
}

/// What a paused request waits for: its providers' keys change or a fetch fails.
struct WaitingFor {
    headers: HeaderList,
    /// `headers` holds only the headers read one by one ([`Access::Single`]).
    single: bool,
    providers: Vec<Wait>,
}

/// One provider a held request waits on.
struct Wait {
    provider: usize,
    /// Key version (the start time of the fetch that got them) when held.
    version: Option<u64>,
    /// Failed fetches in a row when held.
    failures: u32,
    /// For an unknown-`kid` refetch: the time it was requested. Keys from a
    /// fetch that started before then may predate the key, so they do not
    /// end the wait (another fetch follows, see `Status::after_success`).
    refetch_requested_ms: Option<u64>,
}

pub struct Worker {
    compiled: Compiled,
    remote: RefCell<Vec<RemoteKeys>>,
    cache: RefCell<TokenCache>,
    held: RefCell<HeldRequests<WaitingFor>>,
    metrics: Metrics,
    /// Identifies this VM as a lease owner.
    owner_id: u64,
}

impl Worker {
    fn max_jwks_bytes(&self, provider: usize) -> usize {
        self.compiled
            .providers
            .get(provider)
            .and_then(|p| p.remote())
            .map_or(0, |rj| rj.max_bytes)
    }

    fn keys_of(&self, provider: usize) -> Option<Rc<KeySet>> {
        self.remote
            .borrow()
            .iter()
            .find(|r| r.provider == provider)
            .and_then(|r| r.keys.clone())
    }

    fn remote_policy(&self, provider: usize) -> Option<(Policy, String)> {
        self.remote
            .borrow()
            .iter()
            .find(|r| r.provider == provider)
            .map(|r| (r.policy, r.status_key.clone()))
    }

    /// Loads keys another worker stored, if newer than ours.
    fn sync_keys(&self, r: &mut RemoteKeys) {
        let Ok((Some(record), _)) = HostStore.get(&r.keys_key) else {
            return;
        };
        let Some((fetched_at, body)) = remote::decode_keys(&record) else {
            return;
        };
        if r.version == Some(fetched_at) {
            return;
        }
        let max_bytes = self.max_jwks_bytes(r.provider);
        match jwks::parse(body, max_bytes) {
            Ok(keys) => {
                log::info!(
                    "{FILTER}: provider '{}' now has {} keys",
                    r.name,
                    keys.len()
                );
                r.keys = Some(Rc::new(keys));
                r.version = Some(fetched_at);
            }
            Err(e) => log::warn!("{FILTER}: provider '{}': stored JWKS unusable: {e}", r.name),
        }
    }

    /// Starts a fetch if one is due and this worker wins the lease.
    fn maybe_fetch(&self, r: &mut RemoteKeys, now: u64) {
        if r.in_flight.is_some() {
            return;
        }
        let status = read_status(&r.status_key);
        if remote::fetch_due(&r.policy, r.version, &status, now).is_none() {
            return;
        }
        if Lease::try_acquire(
            &HostStore,
            &r.lease_key,
            self.owner_id,
            now,
            r.policy.lease_ms(),
        ) != Ok(true)
        {
            return;
        }
        // Another worker may have finished a fetch between our status read
        // and winning the lease: check again with fresh records.
        self.sync_keys(r);
        let status = read_status(&r.status_key);
        let Some(reason) = remote::fetch_due(&r.policy, r.version, &status, now) else {
            let _ = Lease::release(&HostStore, &r.lease_key, self.owner_id);
            return;
        };
        let Some(rj) = self
            .compiled
            .providers
            .get(r.provider)
            .and_then(|p| p.remote())
        else {
            return;
        };
        let headers = vec![
            (":method", "GET"),
            (":path", rj.path.as_str()),
            (":authority", rj.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(rj.timeout_ms);
        match hostcalls::dispatch_http_call(&rj.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                log::debug!(
                    "{FILTER}: provider '{}': fetching JWKS ({reason:?})",
                    r.name
                );
                r.in_flight = Some((token, now));
            }
            Err(status) => {
                log::warn!(
                    "{FILTER}: provider '{}': cannot call cluster '{}': {status:?}",
                    r.name,
                    rj.cluster
                );
                self.fetch_failed(r, now, "dispatch failed");
            }
        }
    }

    fn fetch_failed(&self, r: &mut RemoteKeys, now: u64, why: &str) {
        self.metrics.jwks_fetch_failed.inc();
        let policy = r.policy;
        let jitter = self.owner_id ^ now;
        let _ = shared_data::update(&HostStore, &r.status_key, 4, |current| {
            let next = Status::decode(current).after_failure(&policy, now, jitter);
            Update::Write(next.encode(), ())
        });
        let _ = Lease::release(&HostStore, &r.lease_key, self.owner_id);
        let serving = if r.keys.is_some() {
            "serving the last good keys"
        } else {
            "no keys yet"
        };
        log::warn!(
            "{FILTER}: provider '{}': JWKS fetch failed ({why}); {serving}",
            r.name
        );
    }

    fn fetch_done(&self, r: &mut RemoteKeys, now: u64, status: Option<u32>, body_size: usize) {
        let started = r.in_flight.take().map_or(now, |(_, at)| at);
        self.metrics
            .jwks_fetch_ms
            .record(now.saturating_sub(started));
        let max_bytes = self.max_jwks_bytes(r.provider);
        match status {
            Some(200) => {}
            Some(code) => return self.fetch_failed(r, now, &format!("HTTP status {code}")),
            None => {
                return self.fetch_failed(r, now, "no response (timeout or connection failure)")
            }
        }
        if body_size > max_bytes {
            return self.fetch_failed(
                r,
                now,
                &format!("response of {body_size} bytes exceeds max_bytes {max_bytes}"),
            );
        }
        let body = host::buffer(
            proxy_wasm::types::BufferType::HttpCallResponseBody,
            body_size,
        );
        let keys = match jwks::parse(&body, max_bytes) {
            Ok(keys) => keys,
            Err(e) => return self.fetch_failed(r, now, &format!("unusable JWKS: {e}")),
        };
        if HostStore
            .set(&r.keys_key, &remote::encode_keys(started, &body), None)
            .is_err()
        {
            return self.fetch_failed(r, now, "cannot store the keys in shared data");
        }
        let _ = shared_data::update(&HostStore, &r.status_key, 4, |current| {
            Update::Write(Status::decode(current).after_success(started).encode(), ())
        });
        let _ = Lease::release(&HostStore, &r.lease_key, self.owner_id);
        self.metrics.jwks_fetch_ok.inc();
        log::info!(
            "{FILTER}: provider '{}': fetched JWKS with {} keys",
            r.name,
            keys.len()
        );
        r.keys = Some(Rc::new(keys));
        r.version = Some(started);
    }

    /// The request headers this configuration needs, and whether they were
    /// read one by one (else the whole map, with clients' output headers removed).
    fn read_request(&self) -> (HeaderList, bool) {
        if let Access::Single(reads) = &self.compiled.access {
            match access::read(reads, &mut HostHeaders) {
                Some(headers) => return (headers, true),
                None => log::debug!(
                    "{FILTER}: a header has several values or a comma; reading the whole request map"
                ),
            }
        }
        let mut headers = host::headers(HeaderMapType::HttpRequestHeaders);
        outputs::scrub(&self.compiled, &mut headers);
        (headers, false)
    }

    /// Decides a request; `single` says how `headers` were read
    /// ([`read_request`](Self::read_request)); `may_hold` allows pausing it for keys.
    fn handle(
        self: &Rc<Self>,
        context_id: u32,
        mut headers: HeaderList,
        single: bool,
        may_hold: bool,
    ) -> Action {
        let now = now_ms();
        if may_hold {
            if let Some(held) = self.hold_for_initial_keys(context_id, &headers, single, now) {
                return held;
            }
        }
        let compiled = &self.compiled;
        let evaluation = {
            let mut cache = self.cache.borrow_mut();
            compiled.authorize(&headers, now / 1000, &|p| self.keys_of(p), &mut cache)
        };
        // An unknown kid matters only if the request is denied: with `any_of`,
        // another provider may have verified the token already.
        if may_hold && matches!(evaluation.decision, Decision::Deny(_)) {
            let refetch: Vec<(usize, Option<u64>)> = evaluation
                .unknown_kid_providers()
                .filter_map(|p| Some((p, Some(self.request_refetch(p, now)?))))
                .collect();
            // With the held list full, the refetch still runs for later
            // requests, and this one is decided now.
            if !refetch.is_empty() && !self.held.borrow().is_full() {
                return self.hold(context_id, headers, single, &refetch, now);
            }
        }
        for (_, result) in &evaluation.checks {
            match result {
                CheckResult::Verified { cached: true } => self.metrics.cache_hits.inc(),
                CheckResult::Verified { cached: false } => self.metrics.cache_misses.inc(),
                _ => {}
            }
        }
        if evaluation.checks.iter().any(|(_, r)| {
            !matches!(
                r,
                CheckResult::Verified { cached: true } | CheckResult::Missing
            )
        }) {
            self.metrics.export_backend_stats();
        }
        match evaluation.decision {
            Decision::Allow { verified } => {
                let report = outputs::apply(compiled, &verified, &mut headers);
                for skipped in &report.skipped {
                    self.metrics.outputs_skipped.inc();
                    log::warn!(
                        "{FILTER}: claim output '{}' not written: {}",
                        skipped.header,
                        skipped.problem.as_str()
                    );
                }
                if compiled.claims_filter_state && !verified.is_empty() {
                    let claims = outputs::claims_json(compiled, &verified);
                    host::set_property(&[CLAIMS_PROPERTY], claims.as_bytes());
                }
                if single {
                    let edits = access::edits(&compiled.output_headers, &headers);
                    host::apply_edits(HeaderMapType::HttpRequestHeaders, &edits);
                } else if headers.is_changed() {
                    host::write_back(HeaderMapType::HttpRequestHeaders, &headers);
                }
                if evaluation.rule.is_some() {
                    self.metrics.allowed.inc();
                }
                Action::Continue
            }
            Decision::Deny(denial) => {
                self.metrics.denied(denial.reason);
                let provider = denial
                    .provider
                    .and_then(|p| compiled.providers.get(p))
                    .map_or("", |p| p.name.as_str());
                log::info!(
                    "{FILTER}: denied ({}) provider '{provider}': {}",
                    denial.code(),
                    denial.message()
                );
                let realm = if single {
                    outputs::realm(&access::realm_headers(&mut HostHeaders))
                } else {
                    outputs::realm(&headers)
                };
                let challenge = denial.www_authenticate(&realm);
                pwf_shared::reply::send_json_error(
                    denial.status(),
                    denial.code(),
                    denial.message(),
                    &[("www-authenticate", challenge.as_str())],
                );
                Action::Pause
            }
        }
    }

    /// Holds the request if a remote provider it needs has no keys yet and has
    /// not failed to get them.
    fn hold_for_initial_keys(
        self: &Rc<Self>,
        context_id: u32,
        headers: &HeaderList,
        single: bool,
        now: u64,
    ) -> Option<Action> {
        if self.held.borrow().is_full() {
            return None;
        }
        let waiting: Vec<(usize, Option<u64>)> = self
            .compiled
            .providers_needing_keys(headers)
            .into_iter()
            .filter(|&p| {
                self.keys_of(p).is_none()
                    && self
                        .remote_policy(p)
                        .is_some_and(|(_, status_key)| read_status(&status_key).failures == 0)
            })
            .map(|p| (p, None))
            .collect();
        (!waiting.is_empty()).then(|| self.hold(context_id, headers.clone(), single, &waiting, now))
    }

    /// Asks for an unknown-`kid` refetch across workers, or joins the one
    /// pending: the time it was requested. `None` during the cooldown.
    fn request_refetch(&self, provider: usize, now: u64) -> Option<u64> {
        let (policy, status_key) = self.remote_policy(provider)?;
        shared_data::update(
            &HostStore,
            &status_key,
            4,
            |current| match Status::decode(current).request_refetch(&policy, now) {
                Some(next) => Update::Write(next.encode(), Some(next.refetch_requested_ms)),
                None => Update::Keep(None),
            },
        )
        .ok()
        .flatten()
    }

    fn hold(
        self: &Rc<Self>,
        context_id: u32,
        headers: HeaderList,
        single: bool,
        providers: &[(usize, Option<u64>)],
        now: u64,
    ) -> Action {
        let mut deadline_ms = now;
        let mut waiting_on = Vec::with_capacity(providers.len());
        for r in self.remote.borrow().iter() {
            let Some(&(_, refetch_requested_ms)) = providers.iter().find(|(p, _)| *p == r.provider)
            else {
                continue;
            };
            // A refetch may need two fetches: the one in flight, then its own.
            let fetches = if refetch_requested_ms.is_some() { 2 } else { 1 };
            deadline_ms = deadline_ms.max(now.saturating_add(
                (r.policy.lease_ms() + TICK.as_millis() as u64).saturating_mul(fetches),
            ));
            waiting_on.push(Wait {
                provider: r.provider,
                version: r.version,
                failures: read_status(&r.status_key).failures,
                refetch_requested_ms,
            });
        }
        let waiting_for = WaitingFor {
            headers,
            single,
            providers: waiting_on,
        };
        let held = self
            .held
            .borrow_mut()
            .hold(context_id, deadline_ms, waiting_for);
        if !held {
            // Callers check for room first; fail closed if that ever changes.
            pwf_shared::reply::send_json_error(
                503,
                "jwks_unavailable",
                "too many requests are waiting for keys",
                &[],
            );
            return Action::Pause;
        }
        self.metrics.held.inc();
        Action::Pause
    }

    fn is_held(&self, context_id: u32) -> bool {
        self.held.borrow().is_held(context_id)
    }

    fn forget(&self, context_id: u32) {
        self.held.borrow_mut().forget(context_id);
    }

    /// Finishes held requests whose wait is over.
    fn release_held(self: &Rc<Self>, now: u64) {
        let ready = self
            .held
            .borrow_mut()
            .take_ready(now, |w| self.wait_over(w));
        for (context_id, w) in ready {
            if host::switch_to_stream(context_id)
                && self.handle(context_id, w.headers, w.single, false) == Action::Continue
            {
                host::resume_request();
            }
        }
    }

    fn wait_over(&self, waiting: &WaitingFor) -> bool {
        let remote = self.remote.borrow();
        waiting.providers.iter().all(|w| {
            remote
                .iter()
                .find(|r| r.provider == w.provider)
                .is_none_or(|r| {
                    let new_keys = r.version != w.version
                        && w.refetch_requested_ms
                            .is_none_or(|asked| r.version.is_some_and(|v| v >= asked));
                    new_keys || read_status(&r.status_key).failures > w.failures
                })
        })
    }
}

/// The request headers of the current (or effective) context, one by one.
struct HostHeaders;

impl access::Source for HostHeaders {
    fn first(&mut self, name: &str) -> Option<Vec<u8>> {
        host::header(HeaderMapType::HttpRequestHeaders, name)
    }

    fn joined(&mut self, name: &str) -> Option<Vec<u8>> {
        host::property(&["request", "headers", name])
    }
}

fn read_status(key: &str) -> Status {
    Status::decode(HostStore.get(key).ok().and_then(|(v, _)| v).as_deref())
}

#[derive(Default)]
pub struct Root {
    worker: Option<Rc<Worker>>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let now = now_ms();
        let status = host::header(HeaderMapType::HttpCallResponseHeaders, ":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u32>().ok());
        {
            let mut remote = worker.remote.borrow_mut();
            let Some(r) = remote
                .iter_mut()
                .find(|r| r.in_flight.is_some_and(|(t, _)| t == token_id))
            else {
                return;
            };
            worker.fetch_done(r, now, status, body_size);
        }
        worker.release_held(now);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Before the configuration: its keys are parsed with the crypto backend.
        pwf_shared::log::init();
        let backend = crate::native_crypto::install(true);
        let env = |name: &str| std::env::var(name).ok();
        let Some(compiled) = host::load_configuration(FILTER, |c| Config::load(c, &env)) else {
            return false;
        };
        log::debug!("{FILTER}: signature backend {backend:?}");
        log::info!("{FILTER}: request headers read {}", compiled.access);
        let remote: Vec<RemoteKeys> = compiled
            .providers
            .iter()
            .filter_map(|p| {
                let rj = p.remote()?;
                let base = format!("{FILTER}/{}/{}{}", p.name, rj.cluster, rj.path);
                let policy = Policy {
                    cache_duration_ms: rj.cache_duration_s.saturating_mul(1000),
                    refresh_at_permille: 900,
                    timeout_ms: rj.timeout_ms,
                    retry_initial_ms: rj.retry_initial_ms,
                    retry_max_ms: rj.retry_max_ms,
                    refetch_cooldown_ms: rj.refetch_cooldown_s.saturating_mul(1000),
                };
                Some(RemoteKeys {
                    provider: p.index,
                    name: p.name.clone(),
                    policy,
                    keys_key: format!("{base}/keys"),
                    status_key: format!("{base}/status"),
                    lease_key: format!("{base}/lease"),
                    keys: None,
                    version: None,
                    in_flight: None,
                })
            })
            .collect();
        for r in &remote {
            let _ = Lease::init(&HostStore, &r.lease_key);
            let _ =
                shared_data::ensure_exists(&HostStore, &r.status_key, &Status::default().encode());
        }
        if !remote.is_empty() {
            self.set_tick_period(TICK);
        }
        let cache = TokenCache::new(compiled.cache_max_entries);
        // Random per VM (WASI random_get seeds RandomState), so every worker is a distinct lease owner.
        let owner_id = host::random_u64() ^ now_ms();
        self.worker = Some(Rc::new(Worker {
            compiled,
            remote: RefCell::new(remote),
            cache: RefCell::new(cache),
            held: RefCell::new(HeldRequests::new(MAX_HELD)),
            metrics: Metrics::define(),
            owner_id: owner_id.max(1),
        }));
        true
    }

    fn on_tick(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let now = now_ms();
        {
            let mut remote = worker.remote.borrow_mut();
            for r in remote.iter_mut() {
                worker.sync_keys(r);
                worker.maybe_fetch(r, now);
            }
        }
        worker.release_held(now);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(Request { context_id, worker }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    context_id: u32,
    worker: Rc<Worker>,
}

impl Context for Request {
    fn on_done(&mut self) -> bool {
        self.worker.forget(self.context_id);
        true
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (headers, single) = self.worker.read_request();
        self.worker.handle(self.context_id, headers, single, true)
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        // While held, the body must wait too: `Continue` here would let the request through.
        if self.worker.is_held(self.context_id) {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Envoy delivers neither body nor trailers while the header phase is
        // paused (it stops all iteration); a host that does must not let the
        // trailers resume the request either.
        if self.worker.is_held(self.context_id) {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}
