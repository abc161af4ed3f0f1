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
