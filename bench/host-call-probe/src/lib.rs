//! Makes `calls` host calls of one `kind` in every request's
//! `on_http_request_headers`, and nothing else. The plugin configuration is
//! `{"kind": "<kind>", "calls": <n>}`, e.g. `{"kind": "header_get", "calls": 8}`:
//!
//! - `time`: `proxy_get_current_time_nanoseconds`;
//! - `metric`: `proxy_increment_metric` on one counter;
//! - `header_get`: `proxy_get_header_map_value` of `x-probe` (the request sends it);
//! - `header_set`: `proxy_replace_header_map_value` of `x-probe-out`;
//! - `property`: `proxy_get_property` of `source.address`.
//!
//! Compared with the empty filter, the CPU per request over `calls` is the
//! cost of one such call as Envoy's V8 runs it (the call, the copies, and the
//! allocation in the module for a returned value).
//!
//! The other shape, `{"request": [step, ...], "response": [step, ...]}`,
//! makes a fixed sequence of host calls in `on_http_request_headers` and
//! `on_http_response_headers`, and nothing else: the host calls a filter
//! cannot do without, to price them apart from the filter's own logic.
//! Steps: `{"header_get": "name"}`, `{"header_set": ["name", "value"]}`
//! (request or response map, by where the step is), `{"shared_cas": "key"}`
//! (read a shared-data value, then write 40 bytes, the size of
//! plan-ratelimit's record, under its CAS token),
//! `{"map_rewrite": [["name", "value"], ...]}` (read the whole header map
//! with one call, set these pairs in it, and write the whole map back with
//! one call), `"metric"` and `"time"`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};

#[derive(Clone, Copy)]
enum Kind {
    Time,
    Metric(u32),
    HeaderGet,
    HeaderSet,
    Property,
}

#[derive(Clone, Copy)]
struct Probe {
    kind: Kind,
    calls: u32,
}

impl Probe {
    fn run(self) {
        for _ in 0..self.calls {
            match self.kind {
                Kind::Time => {
                    let _ = hostcalls::get_current_time();
                }
                Kind::Metric(id) => {
                    let _ = hostcalls::increment_metric(id, 1);
                }
                Kind::HeaderGet => {
                    let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-probe");
                }
                Kind::HeaderSet => {
                    let _ = hostcalls::set_map_value_bytes(
                        MapType::HttpRequestHeaders,
                        "x-probe-out",
                        Some(b"1"),
                    );
                }
                Kind::Property => {
                    let _ = hostcalls::get_property(vec!["source", "address"]);
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Step {
    HeaderGet(String),
    HeaderSet(String, String),
    SharedCas(String),
    MapRewrite(Vec<(String, String)>),
    Metric,
    Time,
}

fn map_rewrite(map: MapType, set: &[(String, String)]) {
    let Ok(mut pairs) = hostcalls::get_map_bytes(map) else {
        return;
    };
    pairs.retain(|(name, _)| !set.iter().any(|(n, _)| n == name));
    pairs.extend(set.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())));
    let pairs: Vec<(&str, &[u8])> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let _ = hostcalls::set_map_bytes(map, pairs);
}

impl Steps {
    fn run(&self, map: MapType, steps: &[Step]) {
        for step in steps {
            self.run_one(map, step);
        }
    }

    fn run_one(&self, map: MapType, step: &Step) {
        match step {
            Step::HeaderGet(name) => {
                let _ = hostcalls::get_map_value_bytes(map, name);
            }
            Step::HeaderSet(name, value) => {
                let _ = hostcalls::set_map_value_bytes(map, name, Some(value.as_bytes()));
            }
            Step::SharedCas(key) => {
                if let Ok((_, cas)) = hostcalls::get_shared_data(key) {
                    let _ = hostcalls::set_shared_data(key, Some(&[7u8; 40]), cas);
                }
            }
            Step::MapRewrite(set) => map_rewrite(map, set),
            Step::Metric => {
                let _ = hostcalls::increment_metric(self.metric, 1);
            }
            Step::Time => {
                let _ = hostcalls::get_current_time();
            }
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    kind: Option<String>,
    calls: Option<u32>,
    #[serde(default)]
    request: Vec<Step>,
    #[serde(default)]
    response: Vec<Step>,
}

/// The fixed sequences of the steps shape, and the counter its `metric`
/// steps bump.
#[derive(Default)]
struct Steps {
    request: Vec<Step>,
    response: Vec<Step>,
    metric: u32,
}

#[derive(Default)]
struct Root {
    probe: Option<Probe>,
    steps: std::rc::Rc<Steps>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Ok(config) = serde_json::from_slice::<Config>(&config) else {
            return false;
        };
        let steps = !config.request.is_empty() || !config.response.is_empty();
        let Some(kind) = config.kind else {
            // Without a kind, only the steps shape, with at least one step.
            if !steps || config.calls.is_some() {
                return false;
            }
            let Ok(metric) = hostcalls::define_metric(MetricType::Counter, "probe.steps") else {
                return false;
            };
            self.probe = Some(Probe {
                kind: Kind::Time,
                calls: 0,
            });
            self.steps = std::rc::Rc::new(Steps {
                request: config.request,
                response: config.response,
                metric,
            });
            return true;
        };
        let Some(calls) = config.calls.filter(|_| !steps) else {
            return false;
        };
        let kind = match kind.as_str() {
            "time" => Kind::Time,
            "metric" => match hostcalls::define_metric(MetricType::Counter, "probe.calls") {
                Ok(id) => Kind::Metric(id),
                Err(_) => return false,
            },
            "header_get" => Kind::HeaderGet,
            "header_set" => Kind::HeaderSet,
            "property" => Kind::Property,
            _ => return false,
        };
        self.probe = Some(Probe { kind, calls });
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            probe: self.probe?,
            steps: std::rc::Rc::clone(&self.steps),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    probe: Probe,
    steps: std::rc::Rc<Steps>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.probe.run();
        self.steps
            .run(MapType::HttpRequestHeaders, &self.steps.request);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.steps
            .run(MapType::HttpResponseHeaders, &self.steps.response);
        Action::Continue
    }
}

#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::<super::Root>::default());
    }}
}
