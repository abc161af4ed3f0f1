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
#[serde(deny_unknown_fields)]
struct Config {
    kind: String,
    calls: u32,
}

#[derive(Default)]
struct Root {
    probe: Option<Probe>,
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
        let kind = match config.kind.as_str() {
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
        self.probe = Some(Probe {
            kind,
            calls: config.calls,
        });
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { probe: self.probe? }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    probe: Probe,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.probe.run();
        Action::Continue
    }
}

#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::<super::Root>::default());
    }}
}
