//! Istio `WasmPlugin` manifests in `envoy-configs/istio/`:
//! - they are what `make istio` generates from `envoy-configs/istio/plugins.yaml`
//!   and the Envoy configs (every field but the sha256 value);
//! - they follow Istio's `WasmPlugin` schema (the CRD's openAPIV3Schema from
//!   Istio 1.30.3 in `tests/fixtures/istio/`, plus strict field names, the
//!   CRD's CEL rules, url schemes and the sha256 format);
//! - phase and priority put the gateway chain in the intended order;
//! - their `pluginConfig` and `vmConfig.env` load in a real Envoy
//!   (`envoy --mode validate` runs the filter's `on_configure`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use pwf_tests::{filter_names, http_filters, load_config_file, repo_root, Envoy};
use serde_json::{json, Value};

// The generator itself, compiled from xtask's sources (the tests crate
// cannot depend on the xtask binary, and running cargo inside a test would
// wait on the build lock). `generate` refers to `super::patch`.
#[allow(dead_code)]
#[path = "../../xtask/src/istio/generate.rs"]
mod generate;
#[allow(dead_code)]
#[path = "../../xtask/src/istio/patch.rs"]
mod patch;

use generate::{Digests, UrlForm};

const SCHEMA: &str = "tests/fixtures/istio/wasmplugin-v1alpha1.schema.json";

fn istio_dir() -> PathBuf {
    repo_root().join("envoy-configs/istio")
}

fn read_repo_file(rel: &str) -> Result<String, String> {
    std::fs::read_to_string(repo_root().join(rel)).map_err(|e| format!("{rel}: {e}"))
}

fn source() -> generate::Source {
    generate::parse_source(&read_repo_file(generate::SOURCE).unwrap()).unwrap()
}

/// Committed manifests by path relative to `envoy-configs/istio/`
/// (`<name>.yaml`, `https/<name>.yaml`), without the source file.
fn committed() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for form in UrlForm::ALL {
        let dir = istio_dir().join(form.subdir());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_file() && name != "plugins.yaml" {
                let text = std::fs::read_to_string(&path).unwrap();
                files.insert(format!("{}{name}", form.subdir()), text);
            }
        }
    }
    assert!(!files.is_empty(), "no WasmPlugin manifests found");
    files
}

fn parse(name: &str, text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn manifests() -> Vec<(String, Value)> {
    committed()
        .into_iter()
        .map(|(name, text)| {
            let m = parse(&name, &text);
            (name, m)
        })
        .collect()
}

/// The digests a fresh generation needs, taken from the committed
/// manifests: the sha256 values change with every build, so they are the
/// one thing the drift check does not compare (their format is checked).
fn digests_of_committed(files: &BTreeMap<String, String>) -> Digests {
    let mut filters = serde_json::Map::new();
    for plugin in source().plugins {
        let load = |path: String| {
            let text = files.get(&path).unwrap_or_else(|| {
                panic!("envoy-configs/istio/{path} is missing: run `make istio`")
            });
            parse(&path, text)
        };
        let oci = load(format!("{}.yaml", plugin.name));
        let https = load(format!("https/{}.yaml", plugin.name));
        let url = https["spec"]["url"].as_str().unwrap_or_default();
        filters.insert(
            plugin.name.clone(),
            json!({
                "wasm": url.rsplit('/').next().unwrap_or_default(),
                "wasm_sha256": https["spec"]["sha256"],
                "oci_manifest_digest": format!("sha256:{}", oci["spec"]["sha256"].as_str().unwrap_or_default()),
            }),
        );
    }
    serde_json::from_value(json!({ "version": env!("CARGO_PKG_VERSION"), "filters": filters }))
        .unwrap()
}

#[test]
fn manifests_are_what_make_istio_generates_from_the_source_and_the_envoy_configs() {
    let files = committed();
    let fresh = generate::generate(&source(), &read_repo_file, &digests_of_committed(&files))
        .unwrap_or_else(|e| panic!("generation fails: {e}"));
    for m in &fresh {
        let committed = files.get(&m.path).unwrap_or_else(|| {
            panic!(
                "envoy-configs/istio/{} is missing: run `make istio`",
                m.path
            )
        });
        if committed != &m.text {
            let (line, (ours, theirs)) = committed
                .lines()
                .zip(m.text.lines())
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .unwrap_or((0, ("(length differs)", "")));
            panic!(
                "envoy-configs/istio/{} differs from a fresh generation at line {}:\n  committed: {ours}\n  generated: {theirs}\nrun `make istio`",
                m.path,
                line + 1
            );
        }
    }
    let generated: Vec<&str> = fresh.iter().map(|m| m.path.as_str()).collect();
    for path in files.keys() {
        assert!(
            generated.contains(&path.as_str()),
            "envoy-configs/istio/{path} is not generated from {}: remove it or add its plugin",
            generate::SOURCE
        );
    }
    assert_eq!(fresh.len(), files.len());
}

// ---- Istio's schema ----

fn schema() -> Value {
    serde_json::from_str(&read_repo_file(SCHEMA).unwrap()).unwrap()
}

/// Every way `m` breaks Istio's WasmPlugin schema, as `path: reason`.
fn schema_violations(schema: &Value, m: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    let mut found: Vec<String> = validator
        .iter_errors(m)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    found.extend(unknown_fields(schema, m));
    found.extend(cel_rule_violations(m));
    found.extend(project_rule_violations(m));
    found
}

/// Kubernetes prunes fields its structural schema does not list (the CRD
/// has no `additionalProperties: false`), so a misspelt field would vanish
/// silently on `kubectl apply`; here it is an error.
fn unknown_fields(schema: &Value, m: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let Some(top) = m.as_object() else {
        return vec!["the manifest is not an object".into()];
    };
    for (key, value) in top {
        match key.as_str() {
            // Every Kubernetes object has these; the CRD schema leaves them out.
            "apiVersion" | "kind" => {}
            "metadata" => {
                for field in value.as_object().map(|o| o.keys()).into_iter().flatten() {
                    if !["name", "namespace", "labels", "annotations"].contains(&field.as_str()) {
                        found.push(format!("/metadata/{field}: not a field a manifest sets"));
                    }
                }
            }
            "spec" => walk_fields(&schema["properties"]["spec"], value, "/spec", &mut found),
            other => found.push(format!("/{other}: unknown field")),
        }
    }
    found
}

fn walk_fields(schema: &Value, v: &Value, path: &str, found: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return; // pluginConfig: any JSON, checked by loading it in Envoy
    }
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                let field_schema = schema["properties"]
                    .get(key)
                    .or_else(|| schema.get("additionalProperties"));
                match field_schema {
                    Some(s) => walk_fields(s, value, &format!("{path}/{key}"), found),
                    None => found.push(format!("{path}/{key}: unknown field")),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_fields(&schema["items"], item, &format!("{path}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// The CRD's `x-kubernetes-validations` (CEL) rules, which a JSON Schema
/// validator ignores, written out.
fn cel_rule_violations(m: &Value) -> Vec<String> {
    let spec = &m["spec"];
    let mut found = Vec::new();
    let targets = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| spec.get(**k).is_some())
        .count();
    if targets > 1 {
        found.push("/spec: only one of targetRefs or selector can be set".into());
    }
    let url = spec["url"].as_str().unwrap_or_default();
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    if !["", "http", "https", "oci", "file"].contains(&scheme) {
        found.push(format!(
            "/spec/url: url must have schema one of [http, https, file, oci]: {url}"
        ));
    }
    for (i, var) in spec["vmConfig"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if var["valueFrom"] == "HOST" && var.get("value").is_some() {
            found.push(format!(
                "/spec/vmConfig/env/{i}: value may only be set when valueFrom is INLINE"
            ));
        }
    }
    if let Some(labels) = spec["selector"]["matchLabels"].as_object() {
        for (k, v) in labels {
            if k.is_empty() || k.contains('*') || v.as_str().unwrap_or_default().contains('*') {
                found.push(format!(
                    "/spec/selector/matchLabels/{k}: wildcard or empty key"
                ));
            }
        }
    }
    found
}

/// What this project's manifests must do beyond Istio's schema: pin the
/// module by digest, fetch it over oci:// or https:// only, and state the
/// fields that decide the chain order and failure behaviour.
fn project_rule_violations(m: &Value) -> Vec<String> {
    let spec = &m["spec"];
    let mut found = Vec::new();
    let url = spec["url"].as_str().unwrap_or_default();
    if !(url.starts_with("oci://") || url.starts_with("https://")) {
        found.push(format!("/spec/url: {url} is neither oci:// nor https://"));
    }
    // Istio compares `sha256` with the hex digest of the OCI image manifest
    // (oci://) or of the downloaded module (https://): no `sha256:` prefix.
    let sha = spec["sha256"].as_str().unwrap_or_default();
    if !generate::is_sha256_hex(sha) {
        found.push(format!(
            "/spec/sha256: {sha:?} is not 64 lowercase hex digits"
        ));
    }
    for field in [
        "phase",
        "priority",
        "failStrategy",
        "imagePullPolicy",
        "pluginConfig",
    ] {
        if spec.get(field).is_none() {
            found.push(format!("/spec/{field}: missing"));
        }
    }
    if spec.get("selector").is_none() && spec.get("targetRefs").is_none() {
        found.push("/spec: needs a selector or targetRefs".into());
    }
    found
}

#[test]
fn every_manifest_follows_istios_wasmplugin_schema() {
    let schema = schema();
    let all = manifests();
    for (name, m) in &all {
        let violations = schema_violations(&schema, m);
        assert!(violations.is_empty(), "{name}:\n{}", violations.join("\n"));
        let url = m["spec"]["url"].as_str().unwrap();
        let expected_scheme = if name.starts_with("https/") {
            "https://"
        } else {
            "oci://"
        };
        assert!(url.starts_with(expected_scheme), "{name}: url {url}");
    }
    assert_eq!(all.len(), 2 * source().plugins.len());
}

#[test]
fn the_schema_check_catches_each_kind_of_mistake() {
    let schema = schema();
    let (_, good) = manifests().into_iter().next().unwrap();
    assert_eq!(schema_violations(&schema, &good), Vec::<String>::new());
    let cases: &[(&str, Value, &str)] = &[
        (
            "/spec/phase",
            json!("AUTHENTICATION"),
            "/spec/phase: \"AUTHENTICATION\" is not one of",
        ),
        (
            "/spec/failStrategy",
            json!("FAIL_CLOSED"),
            "/spec/failStrategy: \"FAIL_CLOSED\" is not one of",
        ),
        (
            "/spec/imagePullPolicy",
            json!("Never"),
            "/spec/imagePullPolicy: \"Never\" is not one of",
        ),
        (
            "/spec/type",
            json!("TCP"),
            "/spec/type: \"TCP\" is not one of",
        ),
        (
            "/spec/match",
            json!([{ "mode": "OUTBOUND" }]),
            "/spec/match/0/mode: \"OUTBOUND\" is not one of",
        ),
        (
            "/spec/priority",
            json!("high"),
            "/spec/priority: \"high\" is not of type \"integer\"",
        ),
        (
            "/spec/sha256",
            json!(format!("sha256:{}", "a".repeat(64))),
            "/spec/sha256: \"sha256:aaaa",
        ),
        (
            "/spec/sha256",
            json!("A".repeat(64)),
            "/spec/sha256: \"AAAA",
        ),
        ("/spec/priorty", json!(10), "/spec/priorty: unknown field"),
        (
            "/spec/vmConfig",
            json!({ "env": [{ "name": "X", "valueFrom": "HOST", "value": "v" }] }),
            "/spec/vmConfig/env/0: value may only be set when valueFrom is INLINE",
        ),
        (
            "/spec/vmConfig",
            json!({ "environment": [] }),
            "/spec/vmConfig/environment: unknown field",
        ),
        (
            "/spec/selector",
            json!({ "matchLabel": { "app": "x" } }),
            "/spec/selector/matchLabel: unknown field",
        ),
        (
            "/spec/targetRefs",
            json!([{ "kind": "Gateway", "name": "gw" }]),
            "/spec: only one of targetRefs or selector can be set",
        ),
        (
            "/spec/url",
            json!("ftp://example.com/x.wasm"),
            "/spec/url: url must have schema one of [http, https, file, oci]",
        ),
        (
            "/spec/url",
            json!("file:///opt/x.wasm"),
            "/spec/url: file:///opt/x.wasm is neither oci:// nor https://",
        ),
        ("/status", json!({}), "/status: unknown field"),
    ];
    for (pointer, value, expected) in cases {
        let mut m = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        m.pointer_mut(if parent.is_empty() { "" } else { parent })
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_string(), value.clone());
        let violations = schema_violations(&schema, &m);
        assert!(
            violations.iter().any(|v| v.starts_with(expected)),
            "{pointer} = {value}: expected a violation starting with {expected:?}, got {violations:#?}"
        );
    }
    let mut no_phase = good.clone();
    no_phase["spec"].as_object_mut().unwrap().remove("phase");
    assert_eq!(
        schema_violations(&schema, &no_phase),
        ["/spec/phase: missing"]
    );
}

// ---- Order ----

/// Istio's order: AUTHN, AUTHZ, STATS, then unspecified (just before the
/// router); within a phase, higher priority first (istio/api
/// extensions/v1alpha1/wasm.proto, `priority`: "applied by priority, in
/// descending order").
fn istio_order_key(m: &Value) -> (u8, i64) {
    let phase = match m["spec"]["phase"].as_str() {
        Some("AUTHN") => 0,
        Some("AUTHZ") => 1,
        Some("STATS") => 2,
        _ => 3,
    };
    (phase, -m["spec"]["priority"].as_i64().unwrap_or(0))
}

/// The request-path order of the plugins on the ingress gateway, as Istio
/// builds it from the oci:// manifests.
fn gateway_chain() -> Vec<(String, (u8, i64))> {
    let mut chain: Vec<(String, (u8, i64))> = manifests()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("https/"))
        .filter(|(_, m)| {
            m["spec"]["selector"]["matchLabels"] == json!({ "istio": "ingressgateway" })
        })
        .map(|(_, m)| {
            (
                m["metadata"]["name"].as_str().unwrap().to_string(),
                istio_order_key(&m),
            )
        })
        .collect();
    chain.sort_by_key(|(_, key)| *key);
    chain
}

#[test]
fn phase_and_priority_put_the_gateway_chain_in_order() {
    // dlp-redact first on requests so that it is the last filter on
    // responses; jwt-auth authenticates before anything uses identity;
    // plan-ratelimit limits by the verified plan; cos-router routes
    // authorized requests; header-transform last.
    const INTENDED: [&str; 5] = [
        "dlp-redact",
        "jwt-auth",
        "plan-ratelimit",
        "cos-router",
        "header-transform",
    ];
    const REQUIRED: [&str; 5] = [
        "dlp-redact",
        "jwt-auth",
        "plan-ratelimit",
        "cos-router",
        "header-transform",
    ];
    let chain = gateway_chain();
    let names: Vec<&str> = chain.iter().map(|(n, _)| n.as_str()).collect();
    for required in REQUIRED {
        assert!(
            names.contains(&required),
            "{required} is not on the gateway: {names:?}"
        );
    }
    let intended: Vec<&str> = INTENDED.into_iter().filter(|n| names.contains(n)).collect();
    assert_eq!(names, intended, "gateway chain order");
    // Equal phase and priority would leave the order to names and creation times.
    for pair in chain.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "{} and {} tie", pair[0].0, pair[1].0);
    }
    assert_eq!(
        chain.iter().find(|(n, _)| n == "jwt-auth").unwrap().1 .0,
        0,
        "jwt-auth is in AUTHN"
    );
}

#[test]
fn the_gateway_order_is_the_order_of_the_chains_the_envoy_tests_run() {
    let chain = gateway_chain();
    // Envoy configs with several of the gateway's filters, and how many each
    // must share with the gateway chain.
    for (path, at_least) in [
        ("envoy-configs/chain.yaml", 3),
        ("envoy-configs/plan-ratelimit.yaml", 2),
        ("envoy-configs/cos-router.yaml", 2),
    ] {
        let tested = load_config_file(path);
        let tested_names: Vec<String> = filter_names(&http_filters(&tested))
            .into_iter()
            .map(str::to_string)
            .collect();
        let istio: Vec<&String> = chain
            .iter()
            .map(|(n, _)| n)
            .filter(|n| tested_names.contains(n))
            .collect();
        let envoy: Vec<&String> = tested_names
            .iter()
            .filter(|n| chain.iter().any(|(c, _)| c == *n))
            .collect();
        assert!(istio.len() >= at_least, "{path}: {istio:?}");
        assert_eq!(istio, envoy, "Istio order vs {path}");
    }
}

#[test]
fn jwt_acquire_runs_on_sidecar_outbound_traffic_only() {
    let m = parse("jwt-acquire.yaml", &committed()["jwt-acquire.yaml"]);
    assert_eq!(m["spec"]["match"], json!([{ "mode": "CLIENT" }]));
    assert!(m["spec"]["selector"]["matchLabels"].get("istio").is_none());
}

// ---- pluginConfig in a real Envoy ----

#[test]
fn every_manifests_plugin_config_and_env_load_in_envoy() {
    let files = committed();
    for plugin in source().plugins {
        let oci = parse("oci", &files[&format!("{}.yaml", plugin.name)]);
        let https = parse("https", &files[&format!("https/{}.yaml", plugin.name)]);
        for field in [
            "pluginConfig",
            "vmConfig",
            "phase",
            "priority",
            "failStrategy",
            "selector",
            "match",
        ] {
            assert_eq!(
                oci["spec"][field], https["spec"][field],
                "{}: {field} of both forms",
                plugin.name
            );
        }
        let from = &plugin.plugin_config;
        let env = istio_env(&oci["spec"]["vmConfig"]["env"]);
        let result = Envoy::builder(&from.envoy_config)
            .plugin_config_for(&from.root_id, &oci["spec"]["pluginConfig"].to_string())
            .edit(move |config| set_env(config, &env))
            .validate();
        assert!(
            result.ok,
            "{}: pluginConfig does not load:\n{}",
            plugin.name, result.output
        );
    }
}

/// `vmConfig.env` as Istio passes it to the VM; `valueFrom: HOST` takes the
/// proxy's own variable, stood in for by a placeholder.
fn istio_env(env: &Value) -> Vec<(String, String)> {
    env.as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_string();
            let value = match v["valueFrom"].as_str() {
                Some("HOST") => format!("value-of-host-env-{name}"),
                _ => v["value"].as_str().unwrap_or_default().to_string(),
            };
            (name, value)
        })
        .collect()
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
                vm["environment_variables"] = json!({ "key_values": kv });
            }
            map.values_mut().for_each(|v| set_env(v, env));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| set_env(v, env)),
        _ => {}
    }
}

#[test]
fn a_missing_host_variable_would_be_caught() {
    // jwt-acquire reads DEFAULT_CLIENT_SECRET from the VM environment: without
    // it in vmConfig.env, the configuration must not load.
    let plugin = source()
        .plugins
        .into_iter()
        .find(|p| p.name == "jwt-acquire")
        .unwrap();
    let m = parse("jwt-acquire", &committed()["jwt-acquire.yaml"]);
    let env: Vec<(String, String)> = istio_env(&m["spec"]["vmConfig"]["env"])
        .into_iter()
        .filter(|(k, _)| k != "DEFAULT_CLIENT_SECRET")
        .collect();
    let result = Envoy::builder(&plugin.plugin_config.envoy_config)
        .plugin_config_for("jwt-acquire", &m["spec"]["pluginConfig"].to_string())
        .edit(move |config| set_env(config, &env))
        .validate();
    assert!(!result.ok);
    assert!(
        result.output.contains("DEFAULT_CLIENT_SECRET"),
        "{}",
        result.output
    );
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
