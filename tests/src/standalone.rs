//! Builds outside this workspace: a forked filter (`xtask fork`) or a copy of
//! the repository (`xtask new-filter` tests), each with its own Cargo
//! workspace and a persistent target directory under `<repo>/target/` so
//! reruns reuse the dependencies (a fresh clone builds them once).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::repo_root;

/// `cargo` (the one running the tests, if known) with `args`, run in `dir`,
/// building into `target_dir` (`None`: the directory's own default).
pub fn cargo(dir: &Path, target_dir: Option<&Path>, args: &[&str]) -> Output {
    let bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    match target_dir {
        Some(t) => cmd.env("CARGO_TARGET_DIR", t),
        None => cmd.env_remove("CARGO_TARGET_DIR"),
    };
    cmd.output()
        .unwrap_or_else(|e| panic!("run cargo {args:?} in {}: {e}", dir.display()))
}

/// Like [`cargo`], and panics with the output unless it exits 0. Returns stdout.
pub fn cargo_ok(dir: &Path, target_dir: Option<&Path>, args: &[&str]) -> String {
    let out = cargo(dir, target_dir, args);
    assert!(
        out.status.success(),
        "cargo {} in {} failed ({}):\n{}\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        crate::tail(&String::from_utf8_lossy(&out.stdout), 40),
        crate::tail(&String::from_utf8_lossy(&out.stderr), 60)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `xtask <args>` of this repository with `dir` as the current directory
/// (the tasks work on the repository around it). Returns the output.
pub fn xtask(dir: &Path, args: &[&str]) -> Output {
    let manifest = repo_root().join("xtask").join("Cargo.toml");
    let manifest = manifest.to_string_lossy();
    let mut full = vec!["run", "-q", "--manifest-path", &manifest, "--"];
    full.extend_from_slice(args);
    // The repository's own target dir: xtask is built there anyway.
    cargo(dir, Some(&repo_root().join("target")), &full)
}

/// A persistent cache `<repo>/target/<name>` for builds outside the workspace.
pub fn target_cache(name: &str) -> PathBuf {
    repo_root().join("target").join(name)
}

/// Points every `.wasm` `filename` in an Envoy config at `wasm`, for a
/// builder edit: `Envoy::builder(..).edit(move |c| use_wasm_file(c, &wasm))`.
pub fn use_wasm_file(config: &mut Value, wasm: &Path) {
    match config {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(name) if key == "filename" && name.ends_with(".wasm") => {
                        *name = wasm.to_string_lossy().into_owned();
                    }
                    _ => use_wasm_file(child, wasm),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| use_wasm_file(c, wasm)),
        _ => {}
    }
}
