//! Renders an Envoy YAML config into a JSON config a test can run.
//!
//! Rendering is structural (the YAML is parsed, edited as a
//! [`serde_json::Value`] and written back as JSON, which Envoy accepts):
//!
//! 1. the plugin `configuration.value` of a wasm filter is replaced, if asked;
//! 2. caller edits ([`RenderOptions::edit`]) run;
//! 3. every `port_value` of a `socket_address` is rewritten: ports in the
//!    explicit map are replaced as given; any other port on a local address
//!    (127.0.0.1, localhost, ::1, 0.0.0.0, ::) gets a fresh free port, the
//!    same one for every occurrence of the same original port. So nothing in
//!    a rendered config uses the fixed default ports (10000, 9901, 18000...),
//!    and a rendered config can run next to `make demo` and other tests;
//! 4. every relative `filename` (wasm modules, data sources) is made
//!    absolute, relative to the repo root.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::{free_port, repo_root};

/// `@type` of the Envoy HTTP wasm filter's `typed_config`.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

type Edit = Box<dyn Fn(&mut Value) + Send + Sync>;

/// What to change while rendering; see the module docs for the order.
#[derive(Default)]
pub struct RenderOptions {
    /// Original port -> port to use instead. Ports not listed here that sit
    /// on a local address get a free port.
    pub ports: BTreeMap<u16, u16>,
    /// Plugin configurations to set: (root_id or None for "the only wasm
    /// filter", JSON text).
    pub plugin_configs: Vec<(Option<String>, String)>,
    edits: Vec<Edit>,
}

impl fmt::Debug for RenderOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderOptions")
            .field("ports", &self.ports)
            .field("plugin_configs", &self.plugin_configs)
            .field("edits", &self.edits.len())
            .finish()
    }
}

impl RenderOptions {
    /// Adds a function that edits the parsed config before ports and file
    /// names are rewritten (so ports it adds are mapped too).
    pub fn edit(&mut self, f: impl Fn(&mut Value) + Send + Sync + 'static) {
        self.edits.push(Box::new(f));
    }
}

/// A rendered config and what rendering found out about it.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The rendered config.
    pub config: Value,
    /// Every rewritten port: original -> actual.
    pub ports: BTreeMap<u16, u16>,
    /// Actual ports of the listeners, in config order.
    pub listener_ports: Vec<u16>,
    /// Actual admin port, if the config has an admin address.
    pub admin_port: Option<u16>,
    /// Absolute paths of all referenced `.wasm` files.
    pub wasm_files: Vec<PathBuf>,
}

impl Rendered {
    /// The actual port that replaced `original`. Panics if the config had no
    /// socket address with that port.
    pub fn port(&self, original: u16) -> u16 {
        *self.ports.get(&original).unwrap_or_else(|| {
            panic!(
                "the config has no socket address with port {original}; rewritten ports: {:?}",
                self.ports
            )
        })
    }

    /// Referenced `.wasm` files that do not exist.
    pub fn missing_wasm(&self) -> Vec<&Path> {
        self.wasm_files
            .iter()
            .filter(|p| !p.exists())
            .map(PathBuf::as_path)
            .collect()
    }

    /// Panics with "run `make build` first" if a referenced `.wasm` is
    /// missing.
    pub fn assert_wasm_built(&self) {
        let missing = self.missing_wasm();
        assert!(
            missing.is_empty(),
            "wasm module(s) not found: {}; run `make build` first",
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// Writes the config as pretty JSON to `path`.
    pub fn write(&self, path: &Path) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize rendered config");
        std::fs::write(path, text)
            .unwrap_or_else(|e| panic!("write rendered config {}: {e}", path.display()));
    }
}

/// Renders Envoy `yaml` (see the module docs). Panics on invalid YAML or an
/// unresolvable plugin config selector.
pub fn render(yaml: &str, opts: &RenderOptions) -> Rendered {
    let mut config: Value =
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("invalid Envoy YAML: {e}"));

    for (root_id, json) in &opts.plugin_configs {
        set_plugin_config(&mut config, root_id.as_deref(), json);
    }
    for edit in &opts.edits {
        edit(&mut config);
    }

    let mut ports = opts.ports.clone();
    let mut used = BTreeMap::new();
    rewrite_ports(&mut config, &mut ports, &mut used);

    let root = repo_root();
    let mut wasm_files = Vec::new();
    absolutize_filenames(&mut config, &root, &mut wasm_files);

    let listener_ports = config
        .pointer("/static_resources/listeners")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l.pointer("/address/socket_address/port_value"))
                .filter_map(port_of)
                .collect()
        })
        .unwrap_or_default();
    let admin_port = config
        .pointer("/admin/address/socket_address/port_value")
        .and_then(port_of);

    Rendered {
        config,
        ports: used,
        listener_ports,
        admin_port,
        wasm_files,
    }
}

/// All `config` objects of wasm HTTP filters (`typed_config` with
/// `@type` [`WASM_FILTER_TYPE`]), anywhere in the tree.
fn wasm_filter_configs(v: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    collect_wasm_configs(v, &mut out);
    out
}

fn collect_wasm_configs<'a>(v: &'a mut Value, out: &mut Vec<&'a mut Value>) {
    match v {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                if let Some(cfg) = map.get_mut("config") {
                    out.push(cfg);
                }
                return;
            }
            for child in map.values_mut() {
                collect_wasm_configs(child, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                collect_wasm_configs(child, out);
            }
        }
        _ => {}
    }
}

fn root_id_of(cfg: &Value) -> &str {
    cfg.get("root_id").and_then(Value::as_str).unwrap_or("")
}

/// Sets `configuration` of the wasm filter(s) with `root_id` (or, with
/// `None`, of every wasm filter when they all share one root_id).
fn set_plugin_config(config: &mut Value, root_id: Option<&str>, json: &str) {
    let mut filters = wasm_filter_configs(config);
    let all_ids: Vec<String> = filters.iter().map(|c| root_id_of(c).to_owned()).collect();
    let wanted = match root_id {
        Some(id) => id.to_owned(),
        None => {
            let mut distinct = all_ids.clone();
            distinct.sort();
            distinct.dedup();
            assert!(
                distinct.len() == 1,
                "plugin_config without a root_id needs exactly one wasm filter (root_id), \
                 found root_ids {all_ids:?}; use plugin_config_for(root_id, ..)"
            );
            distinct.remove(0)
        }
    };
    let mut hits = 0;
    for cfg in filters.iter_mut().filter(|c| root_id_of(c) == wanted) {
        cfg["configuration"] = json!({ "@type": STRING_VALUE_TYPE, "value": json });
        hits += 1;
    }
    assert!(
        hits > 0,
        "no wasm filter with root_id {wanted:?}; the config has {all_ids:?}"
    );
}

fn port_of(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn is_local(address: &str) -> bool {
    matches!(
        address,
        "127.0.0.1" | "localhost" | "::1" | "0.0.0.0" | "::" | "[::1]" | "[::]"
    )
}

/// Rewrites `socket_address.port_value`s. `map` holds the explicit mapping
/// and grows with the free ports chosen; `used` records what was rewritten.
fn rewrite_ports(v: &mut Value, map: &mut BTreeMap<u16, u16>, used: &mut BTreeMap<u16, u16>) {
    match v {
        Value::Object(obj) => {
            if let Some(Value::Object(sa)) = obj.get_mut("socket_address") {
                let local = sa
                    .get("address")
                    .and_then(Value::as_str)
                    .is_some_and(is_local);
                if let Some(orig) = sa.get("port_value").and_then(port_of) {
                    let new = match map.get(&orig) {
                        Some(p) => Some(*p),
                        None if local => {
                            let p = free_port();
                            map.insert(orig, p);
                            Some(p)
                        }
                        None => None,
                    };
                    if let Some(new) = new {
                        sa.insert("port_value".into(), Value::from(new));
                        used.insert(orig, new);
                    }
                }
            }
            for child in obj.values_mut() {
                rewrite_ports(child, map, used);
            }
        }
        Value::Array(items) => {
            for child in items {
                rewrite_ports(child, map, used);
            }
        }
        _ => {}
    }
}

/// Makes relative `filename` strings absolute (relative to `root`) and
/// collects the `.wasm` ones.
fn absolutize_filenames(v: &mut Value, root: &Path, wasm: &mut Vec<PathBuf>) {
    match v {
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                if key == "filename" {
                    if let Value::String(name) = child {
                        let path = root.join(&*name); // join keeps absolute paths as they are
                        if name.ends_with(".wasm") && !wasm.contains(&path) {
                            wasm.push(path.clone());
                        }
                        *name = path.to_string_lossy().into_owned();
                        continue;
                    }
                }
                absolutize_filenames(child, root, wasm);
            }
        }
        Value::Array(items) => {
            for child in items {
                absolutize_filenames(child, root, wasm);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
static_resources:
  listeners:
  - address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filters:
      - typed_config:
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: header_transform
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
                    {"old": true}
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {local: {filename: target/wasm32-wasip1/release/header_transform.wasm}}
  clusters:
  - load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}
        - endpoint: {address: {socket_address: {address: 10.1.2.3, port_value: 18001}}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
"#;

    #[test]
    fn maps_ports_paths_and_plugin_config() {
        let mut opts = RenderOptions::default();
        opts.ports.insert(18000, 4242);
        opts.plugin_configs.push((None, r#"{"new": 1}"#.into()));
        let r = render(YAML, &opts);
        let c = &r.config;
        let endpoints = &c["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"];
        assert_eq!(
            endpoints[0]["endpoint"]["address"]["socket_address"]["port_value"],
            4242
        );
        assert_eq!(
            endpoints[1]["endpoint"]["address"]["socket_address"]["port_value"],
            4242
        );
        // not local, not mapped: untouched
        assert_eq!(
            endpoints[2]["endpoint"]["address"]["socket_address"]["port_value"],
            18001
        );
        let listener = r.port(10000);
        let admin = r.port(9901);
        assert!(listener != 10000 && admin != 9901 && listener != admin);
        assert_eq!(r.listener_ports, vec![listener]);
        assert_eq!(r.admin_port, Some(admin));
        assert_eq!(r.port(18000), 4242);

        let wasm = &c["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"];
        assert_eq!(wasm["configuration"]["value"], r#"{"new": 1}"#);
        let file = wasm["vm_config"]["code"]["local"]["filename"]
            .as_str()
            .unwrap();
        assert!(Path::new(file).is_absolute());
        assert!(file.ends_with("/target/wasm32-wasip1/release/header_transform.wasm"));
        assert_eq!(r.wasm_files, vec![PathBuf::from(file)]);
    }

    #[test]
    #[should_panic(expected = "no wasm filter with root_id")]
    fn unknown_root_id_panics() {
        let mut opts = RenderOptions::default();
        opts.plugin_configs.push((Some("nope".into()), "{}".into()));
        render(YAML, &opts);
    }
}
