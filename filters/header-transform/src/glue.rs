//! proxy-wasm glue: reads the request headers in one host call, runs the
//! engine, and writes back only what changed. Response headers are read only
//! if a response rule needs them.

use crate::config::Config;
use crate::transform::{Engine, HostValues, Report, ResponsePlan};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use pwf_shared::headers::HeaderList;
use pwf_shared::host::{self, HeaderMapType};
use pwf_shared::metrics::Counter;
use std::rc::Rc;
use std::time::SystemTime;

const FILTER: &str = "header_transform";

struct Metrics {
    rules_applied: Counter,
    values_rejected: Counter,
    /// One per rule set (request sets first, then response sets); default for unnamed sets.
    request_sets: Vec<Counter>,
    response_sets: Vec<Counter>,
}

impl Metrics {
    fn define(engine: &Engine) -> Self {
        let per_set = |sets: &[crate::transform::RuleSet]| {
            sets.iter()
                .map(|s| match &s.name {
                    Some(name) => Counter::define(&format!("{FILTER}.rule_set.{name}.applied")),
                    None => Counter::default(),
                })
                .collect()
        };
        Self {
            rules_applied: Counter::define(&format!("{FILTER}.rules_applied")),
            values_rejected: Counter::define(&format!("{FILTER}.values_rejected")),
            request_sets: per_set(engine.request_sets()),
            response_sets: per_set(engine.response_sets()),
        }
    }

    fn record(&self, report: &Report, per_set: &[Counter], phase: &str) {
        self.rules_applied.add(report.applied.len() as u64);
        for &i in &report.applied {
            if let Some(c) = per_set.get(i) {
                c.inc();
            }
        }
        for r in &report.rejected {
            self.values_rejected.inc();
            // Never log the value itself: it may carry an injection payload or a secret.
            log::warn!(
                "{FILTER}: {phase} value for '{}' not written: {}",
                r.target,
                r.problem.as_str()
            );
        }
    }
}

struct Shared {
    engine: Engine,
    metrics: Metrics,
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let env = |name: &str| std::env::var(name).ok();
        let compiled = host::load_configuration(FILTER, |c| {
            pwf_shared::config::parse_json::<Config>(c).and_then(|c| c.compile(&env))
        });
        match compiled {
            Some(engine) => {
                let metrics = Metrics::define(&engine);
                self.shared = Some(Rc::new(Shared { engine, metrics }));
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Transform {
            shared,
            plan: ResponsePlan::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Transform {
    shared: Rc<Shared>,
    plan: ResponsePlan,
}

impl Context for Transform {}

/// Host values, each fetched at most once per phase.
#[derive(Default)]
struct LazyHost {
    now: Option<SystemTime>,
}

impl HostValues for LazyHost {
    fn property(&mut self, path: &[String]) -> Option<Vec<u8>> {
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        host::property(&parts)
    }

    fn now(&mut self) -> SystemTime {
        *self.now.get_or_insert_with(host::now)
    }
}

impl HttpContext for Transform {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let shared = Rc::clone(&self.shared);
        if shared.engine.is_noop() {
            return Action::Continue;
        }
        let mut headers: HeaderList = host::headers(HeaderMapType::HttpRequestHeaders);
        let mut report = Report::default();
        self.plan = shared
            .engine
            .on_request(&mut headers, &mut LazyHost::default(), &mut report);
        if headers.is_changed() {
            host::write_back(HeaderMapType::HttpRequestHeaders, &headers);
        }
        shared
            .metrics
            .record(&report, &shared.metrics.request_sets, "request");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.plan.matched.is_empty() {
            return Action::Continue;
        }
        let shared = Rc::clone(&self.shared);
        let mut headers = if shared.engine.response_reads_headers() {
            host::headers(HeaderMapType::HttpResponseHeaders)
        } else {
            HeaderList::unread()
        };
        let mut report = Report::default();
        shared.engine.on_response(
            &self.plan,
            &mut headers,
            &mut LazyHost::default(),
            &mut report,
        );
        if headers.is_changed() {
            host::write_back(HeaderMapType::HttpResponseHeaders, &headers);
        }
        shared
            .metrics
            .record(&report, &shared.metrics.response_sets, "response");
        Action::Continue
    }
}
