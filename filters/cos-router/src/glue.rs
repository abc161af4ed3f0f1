//! proxy-wasm glue: reads what the conditions ask for, writes the routing
//! headers (which clears Envoy's route cache, so the router picks the route
//! again), and adds the cookie and exposure headers to the response.

use crate::conditions::{Host, Request as Inputs};
use crate::config::{Compiled, Config};
use crate::cookie;
use crate::router::{self, Decision, Outcome, OverrideUse};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use pwf_shared::host::{self, HeaderMapType};
use pwf_shared::metrics::Counter;
use std::rc::Rc;

const FILTER: &str = "cos_router";
/// Filter state where jwt-auth leaves the verified claims.
const CLAIMS_PROPERTY: &str = "jwt_auth_claims";
const REQUEST: HeaderMapType = HeaderMapType::HttpRequestHeaders;

struct ExperimentMetrics {
    variants: Vec<Counter>,
    no_key: Counter,
    overridden: Counter,
}

struct Metrics {
    classes: Vec<Counter>,
    experiments: Vec<ExperimentMetrics>,
    override_refused: Counter,
    anonymous_ids_issued: Counter,
}

impl Metrics {
    fn define(compiled: &Compiled) -> Self {
        let name = |m: &str| format!("{FILTER}.{m}");
        Self {
            classes: compiled
                .classes
                .iter()
                .map(|c| Counter::define(&name(&format!("class.{}", c.name))))
                .collect(),
            experiments: compiled
                .experiments
                .iter()
                .map(|e| ExperimentMetrics {
                    variants: e
                        .variants
                        .iter()
                        .map(|v| {
                            Counter::define(&name(&format!(
                                "experiment.{}.variant.{}",
                                e.name, v.name
                            )))
                        })
                        .collect(),
                    no_key: Counter::define(&name(&format!("experiment.{}.no_key", e.name))),
                    overridden: Counter::define(&name(&format!(
                        "experiment.{}.overridden",
                        e.name
                    ))),
                })
                .collect(),
            override_refused: Counter::define(&name("override_refused")),
            anonymous_ids_issued: Counter::define(&name("anonymous_ids_issued")),
        }
    }

    fn count(&self, d: &Decision) {
        if let Some(c) = self.classes.get(d.class) {
            c.inc();
        }
        for (m, outcome) in self.experiments.iter().zip(&d.outcomes) {
            match *outcome {
                Outcome::Assigned(v) => {
                    if let Some(c) = m.variants.get(v) {
                        c.inc();
                    }
                }
                Outcome::Overridden(v) => {
                    m.overridden.inc();
                    if let Some(c) = m.variants.get(v) {
                        c.inc();
                    }
                }
                Outcome::NoKey => m.no_key.inc(),
                Outcome::NotEligible => {}
            }
        }
        if d.override_use == OverrideUse::Refused {
            self.override_refused.inc();
        }
        if d.anonymous_id_is_new {
            self.anonymous_ids_issued.inc();
        }
    }
}

pub struct Worker {
    compiled: Compiled,
    metrics: Metrics,
}

/// Request inputs through proxy-wasm host calls.
struct HostCalls;

impl Host for HostCalls {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        host::header(REQUEST, name)
    }

    fn claims(&mut self) -> Option<Vec<u8>> {
        host::property(&[CLAIMS_PROPERTY])
    }

    fn source_address(&mut self) -> Option<Vec<u8>> {
        host::property(&["source", "address"])
    }
}

fn new_anonymous_id() -> String {
    cookie::new_id(host::random_u64(), host::random_u64())
}

/// Sets a request header, or removes a client's copy of it.
fn write(name: &str, value: Option<&str>) {
    match value {
        Some(v) => host::set_header(REQUEST, name, v.as_bytes()),
        None => host::remove_header(REQUEST, name),
    }
}

impl Worker {
    /// Decides the request and writes its headers; returns what the
    /// response needs (`Set-Cookie`, exposure header).
    fn route(&self) -> ResponseWork {
        let compiled = &self.compiled;
        let mut inputs = Inputs::new(HostCalls, &compiled.slots);
        let decision = router::decide(compiled, &mut inputs, &mut new_anonymous_id);
        self.metrics.count(&decision);
        if let Some(class) = compiled.classes.get(decision.class) {
            for (name, value) in compiled.class_outputs.iter().zip(&class.outputs) {
                write(name, value.as_deref());
            }
            if let Some(authority) = &class.authority {
                host::set_header(REQUEST, ":authority", authority.as_bytes());
            }
        }
        // Without experiments the variants header is still removed, so a
        // client cannot send its own copy upstream.
        let variants = decision.variants_value(compiled);
        write(&compiled.variants_header, variants.as_deref());
        for (e, outcome) in compiled.experiments.iter().zip(&decision.outcomes) {
            if let Some(header) = &e.header {
                let variant = outcome.variant().and_then(|v| e.variants.get(v));
                write(header, variant.map(|v| v.name.as_str()));
            }
        }
        let mut work = ResponseWork::default();
        if let Some(anonymous) = &compiled.anonymous {
            if let Some(header) = &anonymous.header {
                write(header, decision.anonymous_id.as_deref());
            }
            if decision.anonymous_id_is_new {
                work.set_cookie = decision
                    .anonymous_id
                    .as_ref()
                    .map(|id| format!("{}={id}{}", anonymous.cookie, anonymous.attributes));
            }
        }
        if compiled.exposure_header.is_some() {
            work.exposure = variants;
        }
        work
    }
}

#[derive(Default)]
struct ResponseWork {
    set_cookie: Option<String>,
    exposure: Option<String>,
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
        let metrics = Metrics::define(&compiled);
        log::info!(
            "{FILTER}: {} classes, {} experiments; request headers read: {}",
            compiled.classes.len(),
            compiled.experiments.len(),
            compiled.slots.join(", ")
        );
        self.worker = Some(Rc::new(Worker { compiled, metrics }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = Rc::clone(self.worker.as_ref()?);
        Some(Box::new(Stream {
            worker,
            response: ResponseWork::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    worker: Rc<Worker>,
    response: ResponseWork,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.response = self.worker.route();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let response = HeaderMapType::HttpResponseHeaders;
        if let Some(line) = self.response.set_cookie.take() {
            host::add_header(response, "set-cookie", line.as_bytes());
        }
        if let (Some(name), Some(value)) = (
            &self.worker.compiled.exposure_header,
            self.response.exposure.take(),
        ) {
            host::set_header(response, name, value.as_bytes());
        }
        Action::Continue
    }
}
