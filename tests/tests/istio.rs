//! Istio `WasmPlugin` manifests in `envoy-configs/istio/`: their fields follow
//! Istio's schema, and their `pluginConfig` and `vmConfig.env` load in a real
//! Envoy (`envoy --mode validate` runs the filter's `on_configure`).

use pwf_tests::{repo_root, Envoy};
use serde_json::Value;
use std::path::PathBuf;

const SPEC_FIELDS: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "verificationKey",
    "pluginConfig",
    "pluginName",
    "phase",
    "priority",
    "failStrategy",
    "vmConfig",
    "match",
    "type",
];

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("envoy-configs/istio"))
        .expect("envoy-configs/istio exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no WasmPlugin manifests found");
    files
}

fn load(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check_schema(name: &str, m: &Value) {
    assert_eq!(m["apiVersion"], "extensions.istio.io/v1alpha1", "{name}");
    assert_eq!(m["kind"], "WasmPlugin", "{name}");
    assert!(m["metadata"]["name"].is_string(), "{name}: metadata.name");
    let spec = m["spec"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: spec"));
    for key in spec.keys() {
        assert!(
            SPEC_FIELDS.contains(&key.as_str()),
            "{name}: unknown WasmPlugin field spec.{key}"
        );
    }
    let url = spec["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: spec.url"));
    assert!(
        ["oci://", "https://", "http://", "file://"]
            .iter()
            .any(|s| url.starts_with(s)),
        "{name}: url scheme of {url}"
    );
    if let Some(sha) = spec.get("sha256") {
        let sha = sha.as_str().unwrap();
        assert!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{name}: sha256"
        );
    }
    let one_of = |field: &str, allowed: &[&str]| {
        if let Some(v) = spec.get(field) {
            assert!(
                allowed.contains(&v.as_str().unwrap_or("")),
                "{name}: spec.{field} = {v}"
            );
        }
    };
    one_of("phase", &["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"]);
    one_of("failStrategy", &["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]);
    one_of(
        "imagePullPolicy",
        &["UNSPECIFIED_POLICY", "IfNotPresent", "Always"],
    );
    one_of("type", &["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"]);
    if let Some(selectors) = spec.get("match") {
        for s in selectors.as_array().expect("spec.match is a list") {
            let mode = s["mode"].as_str().unwrap_or("UNDEFINED");
            assert!(
                ["UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"].contains(&mode),
                "{name}: spec.match[].mode = {mode}"
            );
        }
    }
    if let Some(p) = spec.get("priority") {
        assert!(p.is_i64(), "{name}: priority is an integer");
    }
    assert!(
        spec.get("selector").is_some()
            || spec.get("targetRefs").is_some()
            || spec.get("targetRef").is_some(),
        "{name}: needs a selector or targetRefs"
    );
}

#[test]
fn wasm_plugin_manifests_follow_istio_schema_and_load_in_envoy() {
    for path in manifests() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let m = load(&path);
        check_schema(&name, &m);
        let filter = m["metadata"]["name"].as_str().unwrap().to_string();
        let envoy_config = format!("envoy-configs/{filter}.yaml");
        assert!(
            repo_root().join(&envoy_config).exists(),
            "{name}: no {envoy_config} to load its pluginConfig with"
        );
        let plugin_config = m["spec"]["pluginConfig"].to_string();
        let env: Vec<(String, String)> = m["spec"]["vmConfig"]["env"]
            .as_array()
            .map(|vars| {
                vars.iter()
                    .map(|v| {
                        let name = v["name"].as_str().unwrap().to_string();
                        // `valueFrom: HOST` takes the value from the proxy's
                        // environment; stand in for it with a placeholder.
                        let value = match v["valueFrom"].as_str() {
                            Some("HOST") => format!("value-of-host-env-{name}"),
                            Some(other) => {
                                assert_eq!(other, "INLINE", "{name}: valueFrom");
                                v["value"].as_str().unwrap_or("").to_string()
                            }
                            None => v["value"].as_str().unwrap_or("").to_string(),
                        };
                        (name, value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let result = Envoy::builder(&envoy_config)
            .plugin_config_for(&filter, &plugin_config)
            .edit(move |config| set_env(config, &env))
            .validate();
        assert!(
            result.ok,
            "{name}: pluginConfig does not load:\n{}",
            result.output
        );
    }
}

/// Sets `vm_config.environment_variables.key_values` of every Wasm filter, as Istio does for `vmConfig.env`.
fn set_env(config: &mut Value, env: &[(String, String)]) {
    match config {
        Value::Object(map) => {
            if let Some(vm) = map.get_mut("vm_config") {
                let kv: serde_json::Map<String, Value> = env
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                vm["environment_variables"] = serde_json::json!({ "key_values": kv });
            }
            map.values_mut().for_each(|v| set_env(v, env));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| set_env(v, env)),
        _ => {}
    }
}

#[test]
fn a_broken_plugin_config_in_a_manifest_would_be_caught() {
    // The same check as above with one unknown field: validation must fail.
    let result = Envoy::builder("envoy-configs/header-transform.yaml")
        .plugin_config(r#"{"request":[],"requset":[]}"#)
        .validate();
    assert!(!result.ok);
    assert!(
        result.output.contains("requset: unknown field `requset`"),
        "{}",
        result.output
    );
}
