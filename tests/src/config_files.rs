//! Reading the repository's config files in tests: YAML/JSON files, the HTTP
//! filters of a config, and a Wasm filter's plugin configuration.

use serde_json::Value;

use crate::{repo_root, Envoy};

/// A YAML (or JSON) file of the repository, e.g. `bench/configs/empty-wasm.yaml`.
pub fn load_config_file(path: &str) -> Value {
    let full = repo_root().join(path);
    let text =
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// The `http_filters` of the first listener's HTTP connection manager.
pub fn http_filters(config: &Value) -> Vec<Value> {
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
    hcm["typed_config"]["http_filters"]
        .as_array()
        .expect("http_filters")
        .clone()
}

/// The names of `filters`, in order.
pub fn filter_names(filters: &[Value]) -> Vec<&str> {
    filters.iter().filter_map(|f| f["name"].as_str()).collect()
}

/// The plugin configuration (parsed JSON) of the Wasm filter with `root_id`
/// in the config file `path`, as rendered for a test.
pub fn plugin_config_of(path: &str, root_id: &str) -> Value {
    let rendered = Envoy::builder(path).render();
    let text = find_plugin_config(&rendered.config, root_id)
        .unwrap_or_else(|| panic!("{path}: no Wasm filter with root_id {root_id}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {root_id}: {e}"))
}

fn find_plugin_config(v: &Value, root_id: &str) -> Option<String> {
    match v {
        Value::Object(map) => {
            if map.get("root_id").and_then(Value::as_str) == Some(root_id) {
                return map["configuration"]["value"].as_str().map(str::to_owned);
            }
            map.values().find_map(|v| find_plugin_config(v, root_id))
        }
        Value::Array(items) => items.iter().find_map(|v| find_plugin_config(v, root_id)),
        _ => None,
    }
}

/// Lets every listener's HTTP/1 connection manager accept request trailers
/// (`http_protocol_options.enable_trailers`; Envoy drops them otherwise).
pub fn enable_request_trailers(config: &mut Value) {
    let Some(listeners) = config["static_resources"]["listeners"].as_array_mut() else {
        return;
    };
    for listener in listeners {
        let Some(chains) = listener["filter_chains"].as_array_mut() else {
            continue;
        };
        for chain in chains {
            let Some(filters) = chain["filters"].as_array_mut() else {
                continue;
            };
            for f in filters {
                if f["name"] == "envoy.filters.network.http_connection_manager" {
                    f["typed_config"]["http_protocol_options"]["enable_trailers"] =
                        Value::Bool(true);
                }
            }
        }
    }
}

/// A chunked HTTP/1.1 request for `path` with a short body and one trailer,
/// closing the connection after the response.
pub fn request_with_trailers(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    out.push_str("5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n");
    out.into_bytes()
}
