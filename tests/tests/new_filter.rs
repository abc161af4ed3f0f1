//! Scaffolding: `xtask new-filter demo-probe`, run in a copy of this
//! repository, writes a filter that builds to Wasm, passes its unit tests
//! and clippy, and works in a real Envoy as its generated integration test
//! expects; bad and taken names are refused without writing anything.
//!
//! The generated integration test (`tests/tests/demo_probe.rs` of the copy)
//! needs the copy's own pwf-tests build, about five minutes on two cores
//! without a cache. By default this test runs the same checks from here
//! against the copy's `.wasm` and Envoy config; `PWF_SCAFFOLD_FULL=1` also
//! runs the generated test itself in the copy.

use std::path::{Path, PathBuf};
use std::process::Command;

use pwf_tests::standalone::{cargo_ok, target_cache, use_wasm_file, xtask};
use pwf_tests::{envoy_bin, repo_root, EchoUpstream, Envoy};

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

fn new_filter(repo: &Path, name: &str) -> (bool, String, String) {
    let out = xtask(repo, &["new-filter", name]);
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
    // With a manifest generator (`make istio`), an entry in its source;
    // without, the manifest itself.
    let istio_source = repo.join("envoy-configs/istio/plugins.yaml");
    if istio_source.is_file() {
        let source = read(&istio_source);
        let original = read(&repo_root().join("envoy-configs/istio/plugins.yaml"));
        assert_eq!(
            source
                .strip_prefix(original.trim_end())
                .and_then(|s| s.lines().nth(2)),
            Some("- name: demo-probe"),
            "entry appended:\n{source}"
        );
        assert!(source.contains(
            "\n    envoy_config: envoy-configs/demo-probe.yaml\n    root_id: demo-probe\n"
        ));
        assert!(
            stdout.contains("  envoy-configs/istio/plugins.yaml\n"),
            "{stdout}"
        );
        assert!(!repo.join("envoy-configs/istio/demo-probe.yaml").exists());
    } else {
        assert!(repo.join("envoy-configs/istio/demo-probe.yaml").is_file());
    }

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
    cargo_ok(
        &repo,
        Some(&target),
        &[
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            NAME,
        ],
    );
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

    let wasm = target.join("wasm32-wasip1/release/demo_probe.wasm");
    check_in_envoy(&repo, &wasm);

    if std::env::var_os("PWF_SCAFFOLD_FULL").is_some_and(|v| v == "1") {
        let release = repo.join("target/wasm32-wasip1/release");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::copy(&wasm, release.join("demo_probe.wasm")).unwrap();
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&repo)
            .env("CARGO_TARGET_DIR", target_cache("scaffold-test"))
            .env("ENVOY_BIN", envoy_bin())
            .args(["test", "-p", "pwf-tests", "--test", "demo_probe"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("test result: ok. 3 passed; 0 failed"),
            "the generated integration test:\n{stdout}\n{}",
            pwf_tests::tail(&String::from_utf8_lossy(&out.stderr), 40)
        );
    }
}

/// What the generated `tests/tests/demo_probe.rs` checks, run from here with
/// the copy's Envoy config and module.
fn check_in_envoy(repo: &Path, wasm: &Path) {
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
}
