//! proxy-wasm glue: who the request is, the check against the slot table in
//! shared data, the 429 reply, and the rate limit response headers.

use crate::config::{Compiled, Config, FailureMode, Mode, StoreScope};
use crate::headers;
use crate::identity::{self, RequestView};
use crate::limiter::{Engine, Verdict, WindowState};
use crate::rls;
use crate::slots::{LivePass, Table};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use pwf_shared::headers::HeaderList;
use pwf_shared::host::unix_ns as now_ns;
use pwf_shared::host::{self, HeaderMapType};
use pwf_shared::metrics::{Counter, Gauge};
use pwf_shared::shared_data::{HostStore, Lease, MemoryStore, SharedStore, StoreError};
use serde_json::Value;
use std::cell::Cell;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::time::Duration;

const FILTER: &str = "plan_ratelimit";
/// Filter state where jwt-auth leaves the verified claims.
const CLAIMS_PROPERTY: &str = "jwt_auth_claims";
/// How often the worker holding the scan lease counts the next part of the
/// slot table for the occupancy gauge.
const SCAN_TICK: Duration = Duration::from_secs(1);
/// Slots counted per tick, one shared-data read each: a few milliseconds of
/// one worker's time. The default table (8,192 slots) takes 8 ticks; the
/// largest (1,048,576) about 17 minutes.
const SCAN_CHUNK: u32 = 1024;
/// The lease outlives a tick, so its holder keeps it from tick to tick.
const SCAN_LEASE: Duration = Duration::from_secs(3);

struct PlanMetrics {
    allowed: Counter,
    limited: Counter,
    shadow_limited: Counter,
}

struct Metrics {
    plans: Vec<PlanMetrics>,
    store_errors: Counter,
    store_full: Counter,
    live_slots: Gauge,
    slots: Gauge,
    rls_errors: Counter,
}

impl Metrics {
    fn define(compiled: &Compiled) -> Self {
        let name = |m: &str| format!("{FILTER}.{m}");
        Self {
            plans: compiled
                .plans
                .iter()
                .map(|p| PlanMetrics {
                    allowed: Counter::define(&name(&format!("allowed.{}", p.name))),
                    limited: Counter::define(&name(&format!("limited.{}", p.name))),
                    shadow_limited: Counter::define(&name(&format!("shadow_limited.{}", p.name))),
                })
                .collect(),
            store_errors: Counter::define(&name("store_errors")),
            store_full: Counter::define(&name("store_full")),
            live_slots: Gauge::define(&name("store.live_slots")),
            slots: Gauge::define(&name("store.slots")),
            rls_errors: Counter::define(&name("rls_errors")),
        }
    }

    fn plan(&self, plan: usize) -> Option<&PlanMetrics> {
        self.plans.get(plan)
    }
}

/// Shared data (exact across workers), or this worker's own memory
/// (`store.scope: per_worker`, for comparison only).
enum Store {
    Shared(HostStore),
    PerWorker(MemoryStore),
}

impl SharedStore for Store {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        match self {
            Store::Shared(s) => s.get(key),
            Store::PerWorker(s) => s.get(key),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match self {
            Store::Shared(s) => s.set(key, value, cas),
            Store::PerWorker(s) => s.set(key, value, cas),
        }
    }
}

pub struct Worker {
    compiled: Compiled,
    engine: Engine,
    store: Store,
    metrics: Metrics,
    scan_lease: String,
    /// This worker's pass over the table while it holds the scan lease.
    scan: Cell<Option<LivePass>>,
    owner_id: u64,
}

/// What the rest of the request needs to know after the check.
enum Outcome {
    /// Go on; add these headers to the response.
    Continue(Vec<(&'static str, String)>),
    /// A local reply was sent.
    Replied,
}

impl Worker {
    /// Rules match on the whole request; inputs read single headers.
    fn needs_header_map(&self) -> bool {
        !self.compiled.rules.is_empty()
    }

    /// The cost, plan and client of a request, or `None` if it is not limited.
    fn identify(&self, headers: &HeaderList) -> Option<(u32, usize, Vec<u8>)> {
        let cost = self.compiled.cost(headers)?;
        let mut req = LazyRequest {
            headers,
            claims: None,
        };
        let plan = self
            .compiled
            .plan(identity::first_raw(&self.compiled.plan_from, &mut req).as_deref());
        // Requests without any client input share one anonymous bucket per plan.
        let client = identity::first(&self.compiled.client_from, &mut req).unwrap_or_default();
        Some((cost, plan, client))
    }

    /// Checks the local limit. `final_check` is false for the pre-check of
    /// global mode, whose allowed requests are counted when the service answers.
    fn check(&self, plan: usize, client: &[u8], cost: u32, final_check: bool) -> Outcome {
        let plans = &self.compiled.plans;
        let Some(p) = plans.get(plan) else {
            return Outcome::Continue(Vec::new());
        };
        let metrics = self.metrics.plan(plan);
        if p.unlimited() {
            if let Some(m) = metrics {
                m.allowed.inc();
            }
            return Outcome::Continue(Vec::new());
        }
        let verdict = self
            .engine
            .check(&self.store, plans, plan, client, cost, now_ns());
        match verdict {
            Verdict::Allow(states) => {
                if let Some(m) = metrics.filter(|_| final_check) {
                    m.allowed.inc();
                }
                let out = if self.compiled.mode == Mode::Shadow {
                    Vec::new()
                } else {
                    headers::render(&self.compiled.response_headers, p, &states)
                };
                Outcome::Continue(out)
            }
            Verdict::Deny {
                window,
                retry_after_ns,
            } => self.deny(plan, Some(window), retry_after_ns, final_check),
            Verdict::Full => {
                self.metrics.store_full.inc();
                log::warn!(
                    "{FILTER}: no free slot for a client of plan '{}' (store.slots = {})",
                    p.name,
                    self.compiled.slots
                );
                self.store_failure()
            }
            Verdict::Store(e) => {
                self.metrics.store_errors.inc();
                log::warn!("{FILTER}: shared data error: {e:?}");
                self.store_failure()
            }
        }
    }

    /// Limits a request: `window` is the local window that denied it, or
    /// None when the rate limit service did. In shadow mode the request goes
    /// on, and only a final decision is counted (a local pre-check is
    /// followed by the service's answer).
    fn deny(
        &self,
        plan: usize,
        window: Option<WindowState>,
        retry_after_ns: u64,
        final_check: bool,
    ) -> Outcome {
        let Some(p) = self.compiled.plans.get(plan) else {
            return Outcome::Continue(Vec::new());
        };
        let metrics = self.metrics.plan(plan);
        let limit = match window.and_then(|w| p.windows.get(w.window)) {
            Some(w) => format!("at most {} requests per {}", w.requests, w.per.as_str()),
            None => "over the limit of the rate limit service".to_owned(),
        };
        if self.compiled.mode == Mode::Shadow {
            if let Some(m) = metrics.filter(|_| final_check) {
                m.shadow_limited.inc();
                m.allowed.inc();
            }
            log::info!(
                "{FILTER}: shadow mode: would limit a client of plan '{}' ({limit})",
                p.name
            );
            return Outcome::Continue(Vec::new());
        }
        if let Some(m) = metrics {
            m.limited.inc();
        }
        let retry_after = headers::ceil_secs(retry_after_ns).max(1).to_string();
        let mut extra: Vec<(&str, String)> = vec![("retry-after", retry_after)];
        // The service's limits are its own: no local policy describes them.
        if let Some(window) = window {
            extra.extend(headers::render(
                &self.compiled.response_headers,
                p,
                &[window],
            ));
        }
        let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        pwf_shared::reply::send_json_error(
            429,
            "rate_limited",
            &format!("plan '{}': {limit}", p.name),
            &extra,
        );
        Outcome::Replied
    }

    fn store_failure(&self) -> Outcome {
        match self.compiled.on_store_error {
            FailureMode::Allow => Outcome::Continue(Vec::new()),
            FailureMode::Deny => {
                pwf_shared::reply::send_json_error(
                    503,
                    "ratelimit_unavailable",
                    "the rate limit state cannot be read",
                    &[],
                );
                Outcome::Replied
            }
        }
    }

    /// One worker at a time counts the live slots for the occupancy gauge,
    /// a part of the table per tick. A worker that takes the lease over
    /// starts a pass of its own.
    fn scan(&self) {
        if !matches!(self.store, Store::Shared(_)) {
            return;
        }
        let now = now_ns();
        match Lease::try_acquire(
            &HostStore,
            &self.scan_lease,
            self.owner_id,
            now / 1_000_000,
            SCAN_LEASE.as_millis() as u64,
        ) {
            Ok(true) => {}
            Ok(false) => {
                self.scan.set(None);
                return;
            }
            // Contended or failed: this VM may still hold the lease; its
            // pass goes on at the next tick.
            Err(_) => return,
        }
        let table = self.engine.table();
        let mut pass = self.scan.get().unwrap_or_default();
        if let Some(live) = table.count_live(&self.store, &mut pass, SCAN_CHUNK, now) {
            self.metrics.live_slots.set(u64::from(live));
        }
        self.scan.set(Some(pass));
    }
}

/// Reads what the inputs ask for, each at most once: from the header map if
/// it was read, else with one host call per header.
struct LazyRequest<'a> {
    headers: &'a HeaderList,
    claims: Option<Option<Value>>,
}

impl RequestView for LazyRequest<'_> {
    fn claims(&mut self) -> Option<&Value> {
        self.claims
            .get_or_insert_with(|| {
                host::property(&[CLAIMS_PROPERTY]).and_then(|b| serde_json::from_slice(&b).ok())
            })
            .as_ref()
    }

    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        if self.headers.is_complete() {
            self.headers.get(name).map(<[u8]>::to_vec)
        } else {
            host::header(HeaderMapType::HttpRequestHeaders, name)
        }
    }

    fn address(&mut self) -> Option<Vec<u8>> {
        host::property(&["source", "address"])
    }
}

#[derive(Default)]
pub struct Root {
    worker: Option<Rc<Worker>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(compiled) = host::load_configuration(FILTER, Config::load) else {
            return false;
        };
        // Slots of one configuration; a change of plans or slots gets new keys.
        let mut h = DefaultHasher::new();
        compiled.slots.hash(&mut h);
        for p in &compiled.plans {
            p.name.hash(&mut h);
            for w in &p.windows {
                (w.requests, w.per.seconds(), w.burst).hash(&mut h);
            }
        }
        let prefix = format!("{FILTER}/{:016x}", h.finish());
        let table = Table::new(format!("{prefix}/slot"), compiled.slots);
        let store = match compiled.scope {
            StoreScope::Shared => {
                if let Err(e) = table.create(&HostStore) {
                    log::error!("{FILTER}: cannot create the slot table in shared data: {e:?}");
                    return false;
                }
                Store::Shared(HostStore)
            }
            StoreScope::PerWorker => Store::PerWorker(MemoryStore::default()),
        };
        let scan_lease = format!("{prefix}/scan");
        let _ = Lease::init(&HostStore, &scan_lease);
        let engine = Engine::new(&compiled.plans, table);
        let metrics = Metrics::define(&compiled);
        if compiled.scope == StoreScope::Shared {
            metrics.slots.set(u64::from(compiled.slots));
        }
        self.set_tick_period(SCAN_TICK);
        self.worker = Some(Rc::new(Worker {
            compiled,
            engine,
            store,
            metrics,
            scan_lease,
            scan: Cell::new(None),
            owner_id: host::random_u64().max(1),
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            worker.scan();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(Request {
            worker,
            response_headers: Vec::new(),
            pending: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A global check waiting for the rate limit service.
struct Pending {
    call: u32,
    plan: usize,
    local_headers: Vec<(&'static str, String)>,
}

struct Request {
    worker: Rc<Worker>,
    response_headers: Vec<(&'static str, String)>,
    pending: Option<Pending>,
}

impl Request {
    /// Asks the rate limit service; pauses the request until it answers.
    fn call_rls(
        &mut self,
        plan: usize,
        client: &[u8],
        cost: u32,
        local: Vec<(&'static str, String)>,
    ) -> Action {
        let compiled = &self.worker.compiled;
        let (Some(global), Some(p)) = (&compiled.global, compiled.plans.get(plan)) else {
            return Action::Continue;
        };
        let message = rls::encode_request(&global.domain, &p.name, client, cost);
        let timeout = Duration::from_millis(global.timeout_ms);
        match hostcalls::dispatch_grpc_call(
            &global.cluster,
            rls::SERVICE,
            rls::METHOD,
            vec![],
            Some(&message),
            timeout,
        ) {
            Ok(call) => {
                self.pending = Some(Pending {
                    call,
                    plan,
                    local_headers: local,
                });
                Action::Pause
            }
            Err(status) => {
                log::warn!(
                    "{FILTER}: cannot call the rate limit service on cluster '{}': {status:?}",
                    global.cluster
                );
                self.rls_failed(plan, local)
            }
        }
    }

    /// The service failed or did not answer: `global.on_error` decides.
    fn rls_failed(&mut self, plan: usize, local: Vec<(&'static str, String)>) -> Action {
        self.worker.metrics.rls_errors.inc();
        let on_error = self
            .worker
            .compiled
            .global
            .as_ref()
            .map_or(FailureMode::Allow, |g| g.on_error);
        match on_error {
            FailureMode::Allow => {
                if let Some(m) = self.worker.metrics.plan(plan) {
                    m.allowed.inc();
                }
                self.response_headers = local;
                Action::Continue
            }
            FailureMode::Deny => {
                pwf_shared::reply::send_json_error(
                    503,
                    "ratelimit_unavailable",
                    "the rate limit service is unavailable",
                    &[],
                );
                Action::Pause
            }
        }
    }
}

impl Context for Request {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(pending) = self.pending.take_if(|p| p.call == token_id) else {
            return;
        };
        let body = if status_code == 0 {
            Some(host::buffer(
                proxy_wasm::types::BufferType::GrpcReceiveBuffer,
                response_size,
            ))
        } else {
            None
        };
        let decision = body.as_deref().and_then(rls::decode_response);
        let worker = Rc::clone(&self.worker);
        match decision {
            Some(rls::Decision::Ok) => {
                if let Some(m) = worker.metrics.plan(pending.plan) {
                    m.allowed.inc();
                }
                self.response_headers = pending.local_headers;
                host::resume_request();
            }
            Some(rls::Decision::OverLimit { retry_after_s }) => {
                let retry_after_ns = retry_after_s.saturating_mul(1_000_000_000);
                if let Outcome::Continue(h) = worker.deny(pending.plan, None, retry_after_ns, true)
                {
                    self.response_headers = h;
                    host::resume_request();
                }
            }
            None => {
                log::warn!(
                    "{FILTER}: rate limit service error (gRPC status {status_code}, {response_size} bytes)"
                );
                if self.rls_failed(pending.plan, pending.local_headers) == Action::Continue {
                    host::resume_request();
                }
            }
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let worker = Rc::clone(&self.worker);
        let headers = if worker.needs_header_map() {
            host::headers(HeaderMapType::HttpRequestHeaders)
        } else {
            HeaderList::unread()
        };
        let Some((cost, plan, client)) = worker.identify(&headers) else {
            return Action::Continue;
        };
        let global = worker.compiled.global.as_ref();
        let unlimited = worker
            .compiled
            .plans
            .get(plan)
            .is_none_or(|p| p.unlimited());
        if let Some(g) = global.filter(|_| !unlimited) {
            // The local check alone is a pre-check: this Envoy's own traffic
            // already over the limit means the global count is too.
            let local = if g.local_precheck {
                match worker.check(plan, &client, cost, false) {
                    Outcome::Replied => return Action::Pause,
                    Outcome::Continue(h) => h,
                }
            } else {
                Vec::new()
            };
            return self.call_rls(plan, &client, cost, local);
        }
        match worker.check(plan, &client, cost, true) {
            Outcome::Continue(h) => {
                self.response_headers = h;
                Action::Continue
            }
            Outcome::Replied => Action::Pause,
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.pending.is_some() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Envoy delivers neither body nor trailers while the header phase is
        // paused (it stops all iteration); a host that does must not let the
        // trailers resume the request either.
        if self.pending.is_some() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.response_headers.drain(..) {
            host::set_header(HeaderMapType::HttpResponseHeaders, name, value.as_bytes());
        }
        Action::Continue
    }
}
