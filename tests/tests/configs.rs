//! Every ready-made `envoy-configs/*.yaml` must pass `envoy --mode validate`
//! (rendered with free ports and absolute wasm paths, as the tests run it).
//! Validate mode loads the wasm modules and runs the plugins'
//! `on_configure`, so this also checks each config's plugin configuration.

use std::path::PathBuf;

use pwf_tests::{repo_root, validate, Envoy};

fn config_files() -> Vec<PathBuf> {
    let dir = repo_root().join("envoy-configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_envoy_config_validates() {
    let files = config_files();
    assert!(!files.is_empty(), "no envoy-configs/*.yaml found");

    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|file| {
                s.spawn(move || {
                    let name = file
                        .strip_prefix(repo_root())
                        .unwrap_or(file)
                        .display()
                        .to_string();
                    let rendered = Envoy::builder(file).render();
                    let missing = rendered.missing_wasm();
                    if !missing.is_empty() {
                        let list: Vec<String> =
                            missing.iter().map(|p| p.display().to_string()).collect();
                        return Some(format!(
                            "{name}: wasm module(s) not found: {}; run `make build` first",
                            list.join(", ")
                        ));
                    }
                    let dir = tempfile::Builder::new()
                        .prefix("validate-")
                        .tempdir()
                        .expect("temp dir");
                    let path = dir.path().join("config.json");
                    rendered.write(&path);
                    let result = validate(&path);
                    (!result.ok).then(|| {
                        format!(
                            "{name}: invalid (exit {:?}):\n{}",
                            result.exit_code,
                            pwf_tests::tail(&result.output, 25)
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("validation thread panicked"))
            .collect()
    });

    assert!(
        failures.is_empty(),
        "{} of {} envoy-configs failed validation:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
