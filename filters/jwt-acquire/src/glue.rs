//! proxy-wasm glue: token fetching shared by every worker, injection, and
//! requests held until a token arrives.
//!
//! Each worker VM has one [`Worker`] shared by its root context and its HTTP
//! contexts. The root context ticks: it picks up the token and fetch status
//! from shared data, starts a fetch when one is due and this worker wins the
//! source's lease, and finishes held requests. HTTP contexts use the worker's
//! copy of the token, so injecting costs one header write and no shared-data
//! read while the token is usable.

use crate::config::{Compiled, Config, OnUnavailable, Source};
use crate::endpoint::{self, FetchError};
use crate::inject;
use crate::schedule::{self, Decision, FetchStatus, TokenRecord};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};
use pwf_shared::held::HeldRequests;
use pwf_shared::host::{self, HeaderMapType};
use pwf_shared::host::{random_u64 as random, unix_ms as now_ms};
use pwf_shared::metrics::{Counter, Gauge, Histogram};
use pwf_shared::shared_data::{self, HostStore, Lease, SharedStore, Update};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

const FILTER: &str = "jwt_acquire";
const TICK: Duration = Duration::from_millis(100);
/// Requests one worker holds at most; more are treated as if no token could come.
const MAX_HELD: usize = 4096;

struct SourceMetrics {
    fetch_ok: Counter,
    fetch_failed: Vec<(&'static str, Counter)>,
    fetch_ms: Histogram,
    injected: Counter,
    kept_existing: Counter,
    held: Counter,
    no_token_denied: Counter,
    no_token_passed: Counter,
    token_age_s: Gauge,
}

impl SourceMetrics {
    fn define(source: &str) -> Self {
        let name = |m: &str| format!("{FILTER}.source.{source}.{m}");
        Self {
            fetch_ok: Counter::define(&name("fetch_ok")),
            fetch_failed: FetchError::REASONS
                .iter()
                .map(|r| (*r, Counter::define(&name(&format!("fetch_failed.{r}")))))
                .collect(),
            fetch_ms: Histogram::define(&name("fetch_duration_ms")),
            injected: Counter::define(&name("injected")),
            kept_existing: Counter::define(&name("kept_existing")),
            held: Counter::define(&name("held")),
            no_token_denied: Counter::define(&name("no_token_denied")),
            no_token_passed: Counter::define(&name("no_token_passed")),
            token_age_s: Gauge::define(&name("token_age_s")),
        }
    }

    fn fetch_failed(&self, reason: &str) {
        if let Some((_, c)) = self.fetch_failed.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}

/// One source as this worker knows it.
struct SourceState {
    token_key: String,
    status_key: String,
    lease_key: String,
    /// The token in use and its header value.
    token: Option<(TokenRecord, Vec<u8>)>,
    /// CAS of the token record last read, to skip re-parsing an unchanged one.
    token_cas: Option<u32>,
    status: FetchStatus,
    /// A fetch this worker started: (call token, time sent).
    in_flight: Option<(u32, u64)>,
    metrics: SourceMetrics,
}

/// What a paused request waits for: its source has a token, or a fetch fails.
struct WaitingFor {
    source: usize,
    failures_when_held: u32,
}

pub struct Worker {
    compiled: Compiled,
    sources: RefCell<Vec<SourceState>>,
    held: RefCell<HeldRequests<WaitingFor>>,
    /// Identifies this VM as a lease owner.
    owner_id: u64,
}

impl Worker {
    fn source(&self, index: usize) -> Option<&Source> {
        self.compiled.sources.get(index)
    }

    /// Reads the shared token and status records into this worker's state.
    fn sync(&self, source: &Source, s: &mut SourceState) {
        s.status = FetchStatus::decode(read(&s.status_key).0.as_deref());
        let (bytes, cas) = read(&s.token_key);
        if cas.is_some() && cas == s.token_cas {
            return;
        }
        if let Some(record) = TokenRecord::decode(bytes.as_deref()) {
            let value = inject::header_value(&source.inject, &record.access_token);
            s.token = Some((record, value));
            s.token_cas = cas;
        }
    }

    /// Starts a fetch if one is due and this worker wins the lease.
    fn maybe_fetch(&self, source: &Source, s: &mut SourceState, now: u64) {
        if let Some((_, sent_at)) = s.in_flight {
            // Envoy answers every call (a timeout is a local 504); this only
            // guards against a callback that never comes.
            if now < sent_at.saturating_add(schedule::lease_ms(source.endpoint.timeout_ms)) {
                return;
            }
            s.in_flight = None;
            self.fetch_failed(source, s, now, &FetchError::NoResponse);
        }
        if !schedule::fetch_due(s.token.as_ref().map(|(t, _)| t), &s.status, now) {
            return;
        }
        let lease_ms = schedule::lease_ms(source.endpoint.timeout_ms);
        if Lease::try_acquire(&HostStore, &s.lease_key, self.owner_id, now, lease_ms) != Ok(true) {
            return;
        }
        // Another worker may have finished a fetch since our last sync.
        self.sync(source, s);
        if !schedule::fetch_due(s.token.as_ref().map(|(t, _)| t), &s.status, now) {
            let _ = Lease::release(&HostStore, &s.lease_key, self.owner_id);
            return;
        }
        let timeout = Duration::from_millis(source.endpoint.timeout_ms);
        match hostcalls::dispatch_http_call(
            &source.endpoint.cluster,
            source.request.header_pairs(),
            Some(&source.request.body),
            vec![],
            timeout,
        ) {
            Ok(call) => {
                log::debug!("{FILTER}: source '{}': requesting a token", source.name);
                s.in_flight = Some((call, now));
            }
            Err(status) => {
                log::warn!(
                    "{FILTER}: source '{}': cannot call cluster '{}': {status:?}",
                    source.name,
                    source.endpoint.cluster
                );
                self.fetch_failed(source, s, now, &FetchError::Dispatch);
            }
        }
    }

    fn fetch_failed(&self, source: &Source, s: &mut SourceState, now: u64, error: &FetchError) {
        s.metrics.fetch_failed(error.reason());
        let backoff = source.refresh.backoff;
        let jitter = random();
        let updated = shared_data::update(&HostStore, &s.status_key, 4, |current| {
            let next =
                FetchStatus::decode(current).after_failure(error.reason(), &backoff, now, jitter);
            Update::Write(next.encode(), next)
        });
        if let Ok(status) = updated {
            s.status = status;
        }
        let _ = Lease::release(&HostStore, &s.lease_key, self.owner_id);
        let serving = match &s.token {
            Some((t, _)) if t.is_usable(now) => format!(
                "using the current token for {} more seconds",
                t.usable_until_ms.saturating_sub(now) / 1000
            ),
            _ => "no usable token".to_owned(),
        };
        log::warn!(
            "{FILTER}: source '{}': token fetch failed ({}): {error}; {serving}; retry in {} ms",
            source.name,
            error.reason(),
            s.status.next_attempt_ms.saturating_sub(now)
        );
    }

    fn fetch_done(&self, source: &Source, s: &mut SourceState, now: u64, body_size: usize) {
        let sent_at = s.in_flight.take().map_or(now, |(_, at)| at);
        s.metrics.fetch_ms.record(now.saturating_sub(sent_at));
        let status = host::header(MapType::HttpCallResponseHeaders, ":status")
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u32>().ok());
        let max = source.endpoint.max_response_bytes;
        if status.is_some() && body_size > max {
            let error = FetchError::TooLarge {
                size: body_size,
                max,
            };
            return self.fetch_failed(source, s, now, &error);
        }
        let body = host::buffer(BufferType::HttpCallResponseBody, body_size);
        let token =
            match endpoint::parse_response(status, &body, &source.token_types, source.expires_in) {
                Ok(token) => token,
                Err(e) => return self.fetch_failed(source, s, now, &e),
            };
        let record = TokenRecord::new(
            token.access_token,
            token.expires_in_s,
            sent_at,
            &source.refresh,
            random(),
        );
        if HostStore.set(&s.token_key, &record.encode(), None).is_err() {
            let error = FetchError::InvalidResponse("cannot store the token in shared data");
            return self.fetch_failed(source, s, now, &error);
        }
        let _ = shared_data::update(&HostStore, &s.status_key, 4, |_| {
            Update::Write(FetchStatus::after_success().encode(), ())
        });
        let _ = Lease::release(&HostStore, &s.lease_key, self.owner_id);
        s.metrics.fetch_ok.inc();
        log::info!(
            "{FILTER}: source '{}': got a token valid for {} s{}; refresh in {} s",
            source.name,
            token.expires_in_s,
            if token.capped {
                " (its expires_in was longer: max_expires_in_s)"
            } else {
                ""
            },
            record.refresh_at_ms.saturating_sub(now) / 1000
        );
        s.status = FetchStatus::after_success();
        s.token_cas = None; // re-read (and so learn the CAS) at the next sync
        let value = inject::header_value(&source.inject, &record.access_token);
        s.token = Some((record, value));
    }

    /// Decides a request of `source`; `may_hold` allows pausing it.
    fn handle(&self, context_id: u32, source: &Source, may_hold: bool) -> Action {
        let now = now_ms();
        let mut sources = self.sources.borrow_mut();
        let Some(s) = sources.get_mut(source.index) else {
            return Action::Continue;
        };
        // A request that keeps its own header needs no token: it is neither
        // held nor refused while none is available.
        if source.inject.existing == crate::config::Existing::Keep
            && host::header(HeaderMapType::HttpRequestHeaders, &source.inject.header).is_some()
        {
            apply(source, None, true);
            s.metrics.kept_existing.inc();
            return Action::Continue;
        }
        if !s.token.as_ref().is_some_and(|(t, _)| t.is_usable(now)) {
            // Another worker may have refreshed since our last tick.
            self.sync(source, s);
        }
        let may_hold = may_hold && !self.held.borrow().is_full();
        let decision = schedule::decide(
            s.token.as_ref().map(|(t, _)| t),
            &s.status,
            source.hold_timeout_ms,
            may_hold,
            now,
        );
        match decision {
            Decision::Inject => {
                let value = s.token.as_ref().map(|(_, v)| v.as_slice());
                apply(source, value, false);
                s.metrics.injected.inc();
                Action::Continue
            }
            // `may_hold` left out a full list, so the hold succeeds; if it
            // ever did not, the request is decided as unavailable.
            Decision::Hold { deadline_ms }
                if self.held.borrow_mut().hold(
                    context_id,
                    deadline_ms,
                    WaitingFor {
                        source: source.index,
                        failures_when_held: s.status.failures,
                    },
                ) =>
            {
                s.metrics.held.inc();
                Action::Pause
            }
            Decision::Hold { .. } | Decision::Unavailable => {
                apply(source, None, false);
                match source.on_unavailable {
                    OnUnavailable::Pass => {
                        s.metrics.no_token_passed.inc();
                        Action::Continue
                    }
                    OnUnavailable::Deny => {
                        s.metrics.no_token_denied.inc();
                        let retry_after = schedule::retry_after_s(&s.status, now).to_string();
                        let why = s.status.last_error.as_deref().unwrap_or("not fetched yet");
                        log::info!(
                            "{FILTER}: source '{}': no token ({why}); request denied",
                            source.name
                        );
                        pwf_shared::reply::send_json_error(
                            503,
                            "token_unavailable",
                            &format!("no access token is available for source '{}'", source.name),
                            &[("retry-after", retry_after.as_str())],
                        );
                        Action::Pause
                    }
                }
            }
        }
    }

    fn is_held(&self, context_id: u32) -> bool {
        self.held.borrow().is_held(context_id)
    }

    fn forget(&self, context_id: u32) {
        self.held.borrow_mut().forget(context_id);
    }

    /// Finishes held requests whose wait is over.
    fn release_held(&self, now: u64) {
        let ready = {
            let sources = self.sources.borrow();
            self.held.borrow_mut().take_ready(now, |w| {
                sources.get(w.source).is_none_or(|s| {
                    s.token.as_ref().is_some_and(|(t, _)| t.is_usable(now))
                        || s.status.failures > w.failures_when_held
                })
            })
        };
        for (context_id, w) in ready {
            let Some(source) = self.source(w.source) else {
                continue;
            };
            if host::switch_to_stream(context_id)
                && self.handle(context_id, source, false) == Action::Continue
            {
                host::resume_request();
            }
        }
    }

    fn tick(&self) {
        let now = now_ms();
        {
            let mut sources = self.sources.borrow_mut();
            for (source, s) in self.compiled.sources.iter().zip(sources.iter_mut()) {
                self.sync(source, s);
                self.maybe_fetch(source, s, now);
                if let Some((t, _)) = &s.token {
                    s.metrics
                        .token_age_s
                        .set(now.saturating_sub(t.fetched_at_ms) / 1000);
                }
            }
        }
        self.release_held(now);
    }

    fn call_response(&self, call: u32, body_size: usize) {
        let now = now_ms();
        {
            let mut sources = self.sources.borrow_mut();
            let found = self
                .compiled
                .sources
                .iter()
                .zip(sources.iter_mut())
                .find(|(_, s)| s.in_flight.is_some_and(|(c, _)| c == call));
            let Some((source, s)) = found else {
                return;
            };
            self.fetch_done(source, s, now, body_size);
        }
        self.release_held(now);
    }
}

/// Applies the injection plan for `value` to the current request; `present`:
/// the request has `inject.header` and `existing: keep` keeps it (the caller
/// read it).
fn apply(source: &Source, value: Option<&[u8]>, present: bool) {
    let plan = inject::plan(&source.inject, value, present);
    for name in plan.remove {
        host::remove_header(HeaderMapType::HttpRequestHeaders, name);
    }
    if let Some((name, value)) = plan.set {
        host::set_header(HeaderMapType::HttpRequestHeaders, name, value);
    }
}

fn read(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    HostStore.get(key).unwrap_or((None, None))
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
        if let Some(worker) = &self.worker {
            worker.call_response(token_id, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let env = |name: &str| std::env::var(name).ok();
        let Some(compiled) = host::load_configuration(FILTER, |c| Config::load(c, &env)) else {
            return false;
        };
        let sources = compiled
            .sources
            .iter()
            .map(|source| {
                let base = format!("{FILTER}/{}/{:016x}", source.name, source.fingerprint);
                let s = SourceState {
                    token_key: format!("{base}/token"),
                    status_key: format!("{base}/status"),
                    lease_key: format!("{base}/lease"),
                    token: None,
                    token_cas: None,
                    status: FetchStatus::default(),
                    in_flight: None,
                    metrics: SourceMetrics::define(&source.name),
                };
                let _ = Lease::init(&HostStore, &s.lease_key);
                let _ = shared_data::ensure_exists(
                    &HostStore,
                    &s.status_key,
                    &FetchStatus::default().encode(),
                );
                s
            })
            .collect();
        self.set_tick_period(TICK);
        self.worker = Some(Rc::new(Worker {
            compiled,
            sources: RefCell::new(sources),
            held: RefCell::new(HeldRequests::new(MAX_HELD)),
            owner_id: (random() ^ now_ms()).max(1),
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            worker.tick();
        }
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
        let compiled = &self.worker.compiled;
        let source = if compiled.selection_reads_headers() {
            compiled.select(&host::headers(HeaderMapType::HttpRequestHeaders))
        } else {
            compiled.sources.first()
        };
        match source {
            Some(source) => self.worker.handle(self.context_id, source, true),
            None => Action::Continue,
        }
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
