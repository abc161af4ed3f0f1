//! `xtask istio --digests <digests.json> [--out <dir>]`: writes the Istio
//! `WasmPlugin` manifests of `envoy-configs/istio/plugins.yaml`:
//! `<dir>/<plugin>.yaml` (`oci://` image) and `<dir>/https/<plugin>.yaml`
//! (`https://` release asset). `<dir>` defaults to `envoy-configs/istio`;
//! `make istio` writes both: the committed ones and `dist/istio`.

mod generate;
mod patch;

use std::path::{Path, PathBuf};

use generate::{Digests, GENERATED_MARK, SOURCE};

const USAGE: &str = "usage: xtask istio --digests <digests.json> [--out <dir>]";

pub fn run(args: &[String]) -> Result<(), String> {
    let mut digests = None;
    let mut out = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = rest.next().ok_or_else(|| USAGE.to_string());
        match arg.as_str() {
            "--digests" => digests = Some(PathBuf::from(value?)),
            "--out" => out = Some(PathBuf::from(value?)),
            _ => return Err(USAGE.into()),
        }
    }
    let digests = digests.ok_or_else(|| USAGE.to_string())?;
    let out = out.unwrap_or_else(|| repo_root().join("envoy-configs/istio"));
    write_manifests(&digests, &out)
}

/// Generates every manifest into `out` (and `out/https`), and removes
/// generated manifests there whose plugin left the source.
pub fn write_manifests(digests_path: &Path, out: &Path) -> Result<(), String> {
    let root = repo_root();
    let read =
        |rel: &str| std::fs::read_to_string(root.join(rel)).map_err(|e| format!("{rel}: {e}"));
    let source = generate::parse_source(&read(SOURCE)?)?;
    let digests_text = std::fs::read_to_string(digests_path)
        .map_err(|e| format!("{}: {e}", digests_path.display()))?;
    let digests: Digests = serde_json::from_str(&digests_text)
        .map_err(|e| format!("{}: {e}", digests_path.display()))?;
    let manifests = generate::generate(&source, &read, &digests)?;

    for dir in [out.to_path_buf(), out.join("https")] {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        remove_stale(&dir, out, &manifests)?;
    }
    for m in &manifests {
        let path = out.join(&m.path);
        std::fs::write(&path, &m.text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn remove_stale(dir: &Path, out: &Path, manifests: &[generate::Manifest]) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(out)
            .unwrap_or(&path)
            .to_string_lossy()
            .to_string();
        let generated = std::fs::read_to_string(&path)
            .map(|t| t.starts_with(GENERATED_MARK))
            .unwrap_or(false);
        if generated && !manifests.iter().any(|m| m.path == rel) {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("removed {} (no longer in {SOURCE})", path.display());
        }
    }
    Ok(())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}
