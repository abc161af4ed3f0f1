//! Release files for tests: runs `xtask dist` into a temp directory and reads
//! back `digests.json`.
//!
//! `xtask dist` packages the modules that `make build` left in
//! `target/wasm32-wasip1/release/`; the xtask binary is the one `make test`
//! builds (`cargo build --workspace --exclude pwf-tests --bins`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::repo_root;

/// The xtask binary: `$PWF_XTASK_BIN`, else `<target>/debug/xtask`.
pub fn xtask_bin() -> PathBuf {
    if let Some(v) = std::env::var_os("PWF_XTASK_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    };
    target.join("debug/xtask")
}

/// `dist/digests.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Digests {
    pub version: String,
    pub filters: BTreeMap<String, FilterDigests>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterDigests {
    pub wasm: String,
    pub wasm_sha256: String,
    pub oci_layout: String,
    pub oci_manifest_digest: String,
    pub schema: Option<String>,
}

/// A dist directory written by `xtask dist`.
#[derive(Debug)]
pub struct Dist {
    pub dir: PathBuf,
    pub digests: Digests,
    /// xtask's stdout and stderr.
    pub output: String,
}

impl Dist {
    /// Runs `xtask dist --out <dir>` (from the repo root) and parses
    /// `digests.json`. Panics with xtask's output if it fails.
    pub fn build(dir: &Path) -> Dist {
        let bin = xtask_bin();
        assert!(
            bin.exists(),
            "{} not found: build it with `cargo build -p xtask` (`make test` does), \
             or set PWF_XTASK_BIN",
            bin.display()
        );
        let out = Command::new(&bin)
            .current_dir(repo_root())
            .args(["dist", "--out"])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "xtask dist failed ({}); run `make build` first?\n{output}",
            out.status
        );
        let text = std::fs::read_to_string(dir.join("digests.json")).expect("read digests.json");
        let digests = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("digests.json does not have the agreed shape: {e}\n{text}"));
        Dist {
            dir: dir.to_path_buf(),
            digests,
            output,
        }
    }

    /// The entry of `filter`; panics if it is missing.
    pub fn filter(&self, filter: &str) -> &FilterDigests {
        self.digests
            .filters
            .get(filter)
            .unwrap_or_else(|| panic!("no {filter} in digests.json: {:?}", self.digests))
    }

    /// The bytes of a file below the dist directory.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        let path = self.dir.join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

/// Every file below `dir` as (path relative to `dir`, bytes), sorted.
pub fn files_below(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("below root")
                    .to_string_lossy()
                    .into_owned();
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((rel, bytes));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// SHA-256 of `bytes`, lowercase hex, computed by coreutils' `sha256sum`
/// (independent of the code under test).
pub fn sha256sum(bytes: &[u8]) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum output");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}
