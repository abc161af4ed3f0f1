//! Every `bench/configs/*.yaml` must pass `envoy --mode validate`, rendered
//! as `make bench` runs it (free ports, absolute wasm paths). Validate mode
//! loads the wasm modules and runs the plugins' `on_configure`, so a bench
//! config with a broken plugin configuration fails here, not mid-benchmark.
//! The response bodies some configs serve are generated first, as the bench
//! does.

#[path = "../src/bench/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::path::PathBuf;

use pwf_tests::{repo_root, tail, Envoy};

fn bench_configs() -> Vec<PathBuf> {
    let dir = repo_root().join("bench/configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_bench_config_validates() {
    let files = bench_configs();
    assert!(!files.is_empty(), "no bench/configs/*.yaml found");
    fixtures::write_dlp_fixtures(&repo_root());
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|file| {
                s.spawn(move || {
                    let result = Envoy::builder(file).validate();
                    (!result.ok).then(|| {
                        format!(
                            "{}: invalid (exit {:?}):\n{}",
                            file.display(),
                            result.exit_code,
                            tail(&result.output, 25)
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("validate thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
