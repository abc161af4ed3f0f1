//! proxy-wasm glue: decides on the request headers (read in one host call,
//! and only if a `match` needs them), sets the headers on the response.

use crate::config::Config;
use crate::logic::Decorator;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use pwf_shared::host::{self, HeaderMapType};
use pwf_shared::metrics::Counter;
use std::rc::Rc;

/// Metric prefix: `wasmcustom.{{snake}}.*` in Envoy's stats.
const FILTER: &str = "{{snake}}";

struct Metrics {
    requests: Counter,
    decorated: Counter,
}

impl Metrics {
    fn define() -> Self {
        Self {
            requests: Counter::define(&format!("{FILTER}.requests")),
            decorated: Counter::define(&format!("{FILTER}.decorated")),
        }
    }
}

struct Shared {
    decorator: Decorator,
    metrics: Metrics,
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(decorator) = host::load_configuration(FILTER, Config::load) else {
            return false;
        };
        self.shared = Some(Rc::new(Shared {
            decorator,
            metrics: Metrics::define(),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Request {
            shared,
            matched: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    shared: Rc<Shared>,
    matched: bool,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let shared = &self.shared;
        shared.metrics.requests.inc();
        self.matched = if shared.decorator.reads_request() {
            shared
                .decorator
                .matches(&host::headers(HeaderMapType::HttpRequestHeaders))
        } else {
            true
        };
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.matched {
            return Action::Continue;
        }
        for (name, value) in self.shared.decorator.response_headers() {
            host::set_header(HeaderMapType::HttpResponseHeaders, name, value);
        }
        self.shared.metrics.decorated.inc();
        Action::Continue
    }
}
