//! Scaffolding: `xtask new-filter demo-probe`, run in a copy of this
//! repository, writes a filter that builds to Wasm, passes its unit tests
//! and clippy, and works in a real Envoy as its generated integration test
//! expects; bad and taken names are refused without writing anything.
//!
//! The scaffold also registers the filter where the repository's own tests
//! look (the schema list, xtask's and the tests' dependencies), writes its
//! JSON Schema and, from the module it builds, its Istio manifests. In the
//! copy, `cargo test -p xtask` then passes (schemas and Istio manifests
//! current, `xtask schemas --check` / `xtask istio --check`), and from here
//! the new manifests follow Istio's WasmPlugin schema, pin the built module,
//! and every example config of the filter validates against its schema and
//! loads in Envoy.
//!
//! The copy's own pwf-tests build (the generated integration test,
//! tests/tests/schemas.rs and istio.rs with the new filter) takes about five
//! minutes on two cores without a cache; `PWF_SCAFFOLD_FULL=1` runs those
//! three in the copy as well.

use std::path::{Path, PathBuf};
use std::process::Command;

use pwf_tests::dist::sha256sum;
use pwf_tests::standalone::{cargo, cargo_ok, target_cache, use_wasm_file};
use pwf_tests::{envoy_bin, repo_root, EchoUpstream, Envoy};
use serde_json::Value;

const NAME: &str = "demo-probe";
const CACHE: &str = "fork-test";

/// This repository's files (tracked, and untracked but not ignored) as they
/// are in the working tree, copied to `dest`.
fn copy_repo(dest: &Path) {
    let out = Command::new("git")
        .current_dir(repo_root())
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .expect("run git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    for name in out.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let relative = PathBuf::from(String::from_utf8_lossy(name).into_owned());
        let from = repo_root().join(&relative);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = dest.join(&relative);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// The copy's own xtask, built in the test cache: the scaffold builds the
/// new crate and xtask with it there too, not in this repository's target.
fn new_filter(repo: &Path, name: &str) -> (bool, String, String) {
    let target = target_cache(CACHE);
    let out = cargo(
        repo,
        Some(&target),
        &["run", "-q", "-p", "xtask", "--", "new-filter", name],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn a_new_filter_builds_passes_its_tests_and_runs_in_envoy() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    copy_repo(&repo);

    let (ok, stdout, stderr) = new_filter(&repo, NAME);
    assert!(ok, "new-filter failed:\n{stderr}");
    let created = [
        "envoy-configs/demo-probe.yaml",
        "filters/demo-probe/Cargo.toml",
        "filters/demo-probe/README.md",
        "filters/demo-probe/src/config.rs",
        "filters/demo-probe/src/glue.rs",
        "filters/demo-probe/src/lib.rs",
        "filters/demo-probe/src/logic.rs",
        "filters/demo-probe/src/tests.rs",
        "tests/tests/demo_probe.rs",
    ];
    for file in created {
        assert!(repo.join(file).is_file(), "{file} not written");
        assert!(
            stdout.contains(&format!("  {file}\n")),
            "{file} not listed:\n{stdout}"
        );
        let text = read(&repo.join(file));
        assert!(
            !text.contains("{{name}}") && !text.contains("{{snake}}"),
            "{file} has a placeholder left"
        );
    }
    // The Istio entry in the generator's source, and the manifests made from it.
    let source = read(&repo.join("envoy-configs/istio/plugins.yaml"));
    let original = read(&repo_root().join("envoy-configs/istio/plugins.yaml"));
    assert_eq!(
        source
            .strip_prefix(original.trim_end())
            .and_then(|s| s.lines().nth(2)),
        Some("- name: demo-probe"),
        "entry appended:\n{source}"
    );
    assert!(source
        .contains("\n    envoy_config: envoy-configs/demo-probe.yaml\n    root_id: demo-probe\n"));
    for file in [
        "envoy-configs/istio/plugins.yaml",
        "xtask/src/schemas/filters.rs",
        "xtask/Cargo.toml",
        "tests/Cargo.toml",
    ] {
        assert!(stdout.contains(&format!("  {file}\n")), "{file}: {stdout}");
    }
    // Registered for the schema tests and xtask schemas.
    let marker = "    // new-filter: entries above this line\n";
    assert_eq!(
        read(&repo.join("xtask/src/schemas/filters.rs")),
        read(&repo_root().join("xtask/src/schemas/filters.rs")).replace(
            marker,
            &format!("    \"demo-probe\" => demo_probe,\n{marker}")
        )
    );
    assert!(read(&repo.join("xtask/Cargo.toml")).contains(
        "\ndemo-probe = { path = \"../filters/demo-probe\", features = [\"schema\"] }\n"
    ));
    assert!(read(&repo.join("tests/Cargo.toml"))
        .ends_with("\ndemo-probe = { path = \"../filters/demo-probe\" }\n"));

    let manifest = read(&repo.join("Cargo.toml"));
    let original = read(&repo_root().join("Cargo.toml"));
    assert_eq!(
        manifest.lines().count(),
        original.lines().count(),
        "only the member lists change"
    );
    for key in ["members = [", "default-members = ["] {
        let line = manifest.lines().find(|l| l.starts_with(key)).unwrap();
        assert!(
            line.contains(r#""filters/demo-probe""#),
            "{key} has no demo-probe: {line}"
        );
    }

    // Refusals write nothing.
    for (name, expected) in [
        (NAME, "xtask new-filter: a filter named 'demo-probe' already exists (filters/demo-probe)"),
        ("jwt-auth", "xtask new-filter: a filter named 'jwt-auth' already exists (filters/jwt-auth)"),
        ("Demo_Probe", "xtask new-filter: 'Demo_Probe' is not a valid filter name: use 2 to 40 characters of a-z, 0-9 and single '-' between words, starting with a letter (e.g. geo-tagger)"),
        ("pwf-tests", "xtask new-filter: a package named 'pwf-tests' already exists in this workspace"),
    ] {
        let (ok, _, stderr) = new_filter(&repo, name);
        assert!(!ok, "{name} must be refused");
        assert_eq!(stderr.trim(), expected);
    }
    assert_eq!(read(&repo.join("Cargo.toml")), manifest);

    let target = target_cache(CACHE);
    cargo_ok(&repo, Some(&target), &["fmt", "-p", NAME, "--", "--check"]);
    let unit = cargo_ok(&repo, Some(&target), &["test", "-p", NAME]);
    assert!(
        unit.contains("test result: ok. 5 passed; 0 failed"),
        "unit tests:\n{unit}"
    );
    cargo_ok(
        &repo,
        Some(&target),
        &[
            "clippy",
            "-p",
            NAME,
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    );

    let wasm32_lint = "clippy --release --target wasm32-wasip1 -p demo-probe -- -D warnings";
    cargo_ok(
        &repo,
        Some(&target),
        &wasm32_lint.split(' ').collect::<Vec<_>>(),
    );

    // The schema and the Istio manifests are current: what failed before the
    // scaffold wrote them.
    let xtask_tests = cargo_ok(&repo, Some(&target), &["test", "-q", "-p", "xtask"]);
    assert!(
        xtask_tests.contains("test result: ok."),
        "cargo test -p xtask:\n{xtask_tests}"
    );
    for check in ["schemas --check", "istio --check"] {
        let mut args = vec!["run", "-q", "-p", "xtask", "--"];
        args.extend(check.split(' '));
        cargo_ok(&repo, Some(&target), &args);
    }

    // The module the scaffold built (with the Makefile's flags) is the one
    // the https manifest pins.
    let wasm = target.join("wasm32-wasip1/release/demo_probe.wasm");
    let manifests = check_istio_manifests(&repo, &wasm);
    check_examples_against_the_schema(&repo, &manifests);
    check_in_envoy(&repo, &wasm, &manifests);

    if std::env::var_os("PWF_SCAFFOLD_FULL").is_some_and(|v| v == "1") {
        let release = repo.join("target/wasm32-wasip1/release");
        std::fs::create_dir_all(&release).unwrap();
        // tests/istio.rs loads every manifest's pluginConfig with its module.
        let built = repo_root().join("target/wasm32-wasip1/release");
        for entry in std::fs::read_dir(&built).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wasm") {
                std::fs::copy(&path, release.join(path.file_name().unwrap())).unwrap();
            }
        }
        std::fs::copy(&wasm, release.join("demo_probe.wasm")).unwrap();
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&repo)
            .env("CARGO_TARGET_DIR", target_cache("scaffold-test"))
            .env("ENVOY_BIN", envoy_bin())
            .args(["test", "-p", "pwf-tests"])
            .args([
                "--test",
                "demo_probe",
                "--test",
                "schemas",
                "--test",
                "istio",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("test result: ok. 3 passed; 0 failed"),
            "the generated integration test, schemas and istio:\n{stdout}\n{}",
            pwf_tests::tail(&String::from_utf8_lossy(&out.stderr), 40)
        );
    }
}

/// The scaffold's two WasmPlugin manifests (oci:// and https://), parsed:
/// they follow Istio's schema (the CRD fixture of tests/istio.rs), and the
/// https one pins the sha256 of `wasm`.
fn check_istio_manifests(repo: &Path, wasm: &Path) -> Vec<Value> {
    let crd: Value = serde_json::from_str(&read(
        &repo.join("tests/fixtures/istio/wasmplugin-v1alpha1.schema.json"),
    ))
    .unwrap();
    let validator = jsonschema::validator_for(&crd).unwrap();
    let mut out = Vec::new();
    for (file, scheme) in [
        ("demo-probe.yaml", "oci://"),
        ("https/demo-probe.yaml", "https://"),
    ] {
        let path = repo.join("envoy-configs/istio").join(file);
        let m: Value = serde_yaml_ng::from_str(&read(&path)).unwrap();
        let errors: Vec<String> = validator.iter_errors(&m).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
        let spec = &m["spec"];
        assert!(
            spec["url"].as_str().unwrap().starts_with(scheme),
            "{file}: {spec}"
        );
        assert_eq!(spec["pluginName"], NAME);
        let sha = spec["sha256"].as_str().unwrap();
        assert!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{file}: sha256 {sha}"
        );
        out.push(m);
    }
    let module = std::fs::read(wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
    assert_eq!(out[1]["spec"]["sha256"], sha256sum(&module));
    assert_ne!(
        out[0]["spec"]["sha256"], out[1]["spec"]["sha256"],
        "oci:// pins the image manifest"
    );
    out
}

/// Every example config of the new filter (its Envoy config, its README,
/// the manifests' pluginConfig) against the schema the scaffold generated,
/// which rejects a config with an unknown field.
fn check_examples_against_the_schema(repo: &Path, manifests: &[Value]) {
    let schema: Value =
        serde_json::from_str(&read(&repo.join("filters/demo-probe/config.schema.json"))).unwrap();
    assert_eq!(schema["title"], "demo-probe plugin configuration");
    let validator = jsonschema::draft202012::new(&schema).unwrap();

    let envoy: Value =
        serde_yaml_ng::from_str(&read(&repo.join("envoy-configs/demo-probe.yaml"))).unwrap();
    let envoy_example: Value = serde_json::from_str(
        configuration_value(&envoy).expect("a Wasm filter configuration in the Envoy config"),
    )
    .unwrap();
    let readme = read(&repo.join("filters/demo-probe/README.md"));
    let readme_example: Value = serde_json::from_str(
        readme
            .split("```json\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap(),
    )
    .unwrap();
    let mut examples = vec![envoy_example, readme_example];
    examples.extend(manifests.iter().map(|m| m["spec"]["pluginConfig"].clone()));
    for example in &examples {
        let errors: Vec<String> = validator
            .iter_errors(example)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{example}: {errors:?}");
    }
    let mut unknown = examples[0].clone();
    unknown["colour"] = "red".into();
    assert!(!validator.is_valid(&unknown));
}

/// The first Wasm plugin `configuration.value` in an Envoy config.
fn configuration_value(v: &Value) -> Option<&str> {
    match v {
        Value::Object(map) => map
            .get("configuration")
            .and_then(|c| c["value"].as_str())
            .or_else(|| map.values().find_map(configuration_value)),
        Value::Array(items) => items.iter().find_map(configuration_value),
        _ => None,
    }
}

/// What the generated `tests/tests/demo_probe.rs` checks, run from here with
/// the copy's Envoy config and module; and the manifests' pluginConfig loads.
fn check_in_envoy(repo: &Path, wasm: &Path, manifests: &[Value]) {
    let config = repo.join("envoy-configs/demo-probe.yaml");
    let echo = EchoUpstream::start("echo");
    let module = wasm.to_path_buf();
    let envoy = Envoy::builder(&config)
        .upstream(18000, &echo)
        .edit(move |c| use_wasm_file(c, &module))
        .start();
    assert_eq!(envoy.rendered().wasm_files, vec![wasm.to_path_buf()]);

    let api = envoy.get("/api/users");
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(api.header("x-demo-probe"), Some("on"));
    assert_eq!(api.header("cache-control"), Some("no-store"));
    let other = envoy.get("/web/index.html");
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(other.header("x-demo-probe"), None);
    assert_eq!(other.header("cache-control"), None);
    assert_eq!(envoy.counter("wasmcustom.demo_probe.requests"), Some(2));
    assert_eq!(envoy.counter("wasmcustom.demo_probe.decorated"), Some(1));

    let module = wasm.to_path_buf();
    let result = Envoy::builder(&config)
        .plugin_config(r#"{"response_headers":[{"name":"X-Upper","value":"1"}]}"#)
        .edit(move |c| use_wasm_file(c, &module))
        .validate();
    assert!(
        !result.ok,
        "the config must be rejected:\n{}",
        result.output
    );
    let expected = "demo_probe: invalid configuration: response_headers[0].name: 'X-Upper': header names must be lower case";
    assert!(
        result.output.contains(expected),
        "expected {expected:?} in:\n{}",
        result.output
    );

    for m in manifests {
        let module = wasm.to_path_buf();
        let result = Envoy::builder(&config)
            .plugin_config(&m["spec"]["pluginConfig"].to_string())
            .edit(move |c| use_wasm_file(c, &module))
            .validate();
        assert!(result.ok, "{}:\n{}", m["spec"]["url"], result.output);
    }
}
