//! Forking: `xtask fork` copies one filter (and pwf-shared) into a directory
//! outside this workspace, where it builds to Wasm on its own and runs in a
//! real Envoy; pwf-shared packages with `cargo package`, and a fork can
//! depend on the packaged crate by version.
//!
//! The fork builds into `target/fork-test` (see `pwf_tests::standalone`):
//! the first run compiles its dependencies for wasm32 (about a minute),
//! reruns only the two path crates.

use std::path::Path;

use pwf_tests::standalone::{cargo_ok, target_cache, use_wasm_file, xtask};
use pwf_tests::{repo_root, EchoUpstream, Envoy};
use serde_json::Value;

const CACHE: &str = "fork-test";

fn fork(filter: &str, dest: &Path, extra: &[&str]) {
    let dest_arg = dest.to_string_lossy();
    let mut args = vec!["fork", filter, &dest_arg];
    args.extend_from_slice(extra);
    let out = xtask(&repo_root(), &args);
    assert!(
        out.status.success(),
        "xtask {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn a_forked_filter_builds_alone_and_runs_in_envoy() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("my-header-transform");
    assert!(!dest.starts_with(repo_root()));
    fork("header-transform", &dest, &[]);

    let manifest = read(&dest.join("filters/header-transform/Cargo.toml"));
    assert!(!manifest.contains("workspace"), "{manifest}");
    assert!(
        manifest.contains(r#"pwf-shared = { version = "0.1.0", path = "../../shared" }"#),
        "{manifest}"
    );
    assert!(!read(&dest.join("shared/Cargo.toml")).contains("workspace"));
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "Makefile",
        "LICENSE",
        "shared/LICENSE",
        "shared/src/lib.rs",
        "filters/header-transform/README.md",
        "envoy-configs/header-transform.yaml",
        "envoy-configs/istio/header-transform.yaml",
    ] {
        assert!(dest.join(file).is_file(), "{file} missing in the fork");
    }

    let target = target_cache(CACHE);
    cargo_ok(
        &dest,
        Some(&target),
        &["build", "--release", "--target", "wasm32-wasip1"],
    );
    let wasm = target.join("wasm32-wasip1/release/header_transform.wasm");
    assert!(wasm.is_file(), "{} not built", wasm.display());

    // The fork's own Envoy config, with the module the fork built.
    let echo = EchoUpstream::start("echo");
    let v2 = EchoUpstream::start("v2");
    let module = wasm.clone();
    let envoy = Envoy::builder(dest.join("envoy-configs/header-transform.yaml"))
        .upstream(18000, &echo)
        .upstream(18001, &v2)
        .edit(move |config| use_wasm_file(config, &module))
        .start();
    assert_eq!(envoy.rendered().wasm_files, vec![wasm]);

    let resp = envoy
        .req("GET", "/legacy/users?uid=7")
        .header("x-internal-secret", "1")
        .send();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["upstream"], "v2", "the rewrite re-routed the request");
    assert_eq!(body["path"], "/v2/users?user_id=7");
    assert_eq!(body["headers"]["x-region"], "eu-demo-1");
    assert_eq!(body["headers"]["x-internal-secret"], Value::Null);
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("x-served-path"), Some("/v2/users"));
}

#[test]
fn pwf_shared_packages_and_a_fork_can_use_it_by_version() {
    let target = target_cache(CACHE);
    // `--allow-dirty`: a working tree with uncommitted changes still packages.
    cargo_ok(
        &repo_root(),
        Some(&target),
        &["package", "-p", "pwf-shared", "--allow-dirty"],
    );
    let packaged = target.join("package/pwf-shared-0.1.0");
    assert!(target.join("package/pwf-shared-0.1.0.crate").is_file());
    for file in ["LICENSE", "README.md", "Cargo.toml", "src/lib.rs"] {
        assert!(packaged.join(file).is_file(), "{file} not in the package");
    }
    let license = read(&packaged.join("LICENSE"));
    assert!(
        license.contains("Apache License"),
        "LICENSE is the text, not a link"
    );

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("by-version");
    fork("header-transform", &dest, &["--shared=version"]);
    assert!(!dest.join("shared").exists());
    let manifest = read(&dest.join("filters/header-transform/Cargo.toml"));
    assert!(
        manifest.contains("\npwf-shared = \"0.1.0\"\n"),
        "{manifest}"
    );
    assert_eq!(
        read(&dest.join("Cargo.toml")).lines().nth(2),
        Some(r#"members = ["filters/header-transform"]"#)
    );

    // pwf-shared is not on crates.io yet: stand in for it with the packaged
    // crate, as a registry would serve it.
    let root_manifest = dest.join("Cargo.toml");
    let patch = format!(
        "{}\n[patch.crates-io]\npwf-shared = {{ path = {:?} }}\n",
        read(&root_manifest),
        packaged.to_string_lossy()
    );
    std::fs::write(&root_manifest, patch).unwrap();
    let metadata: Value = serde_json::from_str(&cargo_ok(
        &dest,
        Some(&target),
        &["metadata", "--format-version", "1"],
    ))
    .unwrap();
    let shared = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pwf-shared")
        .expect("pwf-shared resolved");
    assert_eq!(shared["version"], "0.1.0");
    assert_eq!(
        Path::new(shared["manifest_path"].as_str().unwrap()),
        packaged.join("Cargo.toml")
    );
}

#[test]
fn fork_refuses_an_unknown_filter_and_a_non_empty_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().to_string_lossy().into_owned();
    let out = xtask(&repo_root(), &["fork", "no-such-filter", &dest]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("xtask fork: no filter named 'no-such-filter' (one of: "),
        "{stderr}"
    );

    std::fs::write(tmp.path().join("keep.txt"), "mine").unwrap();
    let out = xtask(&repo_root(), &["fork", "header-transform", &dest]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exists and is not empty"), "{stderr}");
    assert_eq!(read(&tmp.path().join("keep.txt")), "mine");

    let out = xtask(&repo_root(), &["fork"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: xtask fork <filter> <dest-dir>"));
}
