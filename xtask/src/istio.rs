//! `xtask istio [--digests <digests.json>] [--out <dir>] [--plugin <name>]...`:
//! writes the Istio `WasmPlugin` manifests of `envoy-configs/istio/plugins.yaml`:
//! `<dir>/<plugin>.yaml` (`oci://` image) and `<dir>/https/<plugin>.yaml`
//! (`https://` release asset). `<dir>` defaults to `envoy-configs/istio`;
//! `make istio` writes both: the committed ones and `dist/istio`.
//!
//! The digests come from `digests.json` of `xtask dist`, or without
//! `--digests` from the release modules `make build` left in
//! `target/wasm32-wasip1/release/`, packaged in memory exactly as `xtask dist`
//! packages them. `--plugin` writes only the named plugins' manifests and
//! leaves the others as they are.
//!
//! `xtask istio --check`: the committed manifests are what a generation
//! writes, every field but the `sha256` values (which change with every
//! build), and none is missing or left over.

mod generate;
mod patch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use generate::{Digests, FilterDigests, GENERATED_MARK, SOURCE};

use crate::dist;
use crate::sha256;
use crate::workspace::Workspace;

const USAGE: &str =
    "usage: xtask istio [--digests <digests.json>] [--out <dir>] [--plugin <name>]... \
                     | xtask istio --check";

/// The committed manifests' directory, relative to the repository root.
pub const DIR: &str = "envoy-configs/istio";

#[derive(Debug, Default, PartialEq)]
struct Args {
    digests: Option<PathBuf>,
    out: Option<PathBuf>,
    plugins: Vec<String>,
    check: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--check" {
            parsed.check = true;
            continue;
        }
        let value = rest.next().ok_or_else(|| USAGE.to_string());
        match arg.as_str() {
            "--digests" => parsed.digests = Some(PathBuf::from(value?)),
            "--out" => parsed.out = Some(PathBuf::from(value?)),
            "--plugin" => parsed.plugins.push(value?.clone()),
            _ => return Err(USAGE.into()),
        }
    }
    let other_options = parsed.digests.is_some() || parsed.out.is_some();
    if parsed.check && (other_options || !parsed.plugins.is_empty()) {
        return Err(USAGE.into());
    }
    Ok(parsed)
}

pub fn run(args: &[String]) -> Result<(), String> {
    let args = parse_args(args)?;
    let root = repo_root();
    if args.check {
        return check(&root);
    }
    let out = args.out.unwrap_or_else(|| root.join(DIR));
    let digests = match &args.digests {
        Some(path) => read_digests(path)?,
        None => digests_of_build(&root, &args.plugins)?,
    };
    write_manifests(&root, &digests, &out, &args.plugins)
}

fn read_digests(path: &Path) -> Result<Digests, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The digests `xtask dist` would write for the plugins of the source (or
/// only `only`), from the release modules of the last build.
pub fn digests_of_build(root: &Path, only: &[String]) -> Result<Digests, String> {
    let ws = Workspace::load()?;
    let source = generate::parse_source(&read_file(root, SOURCE)?)?;
    let mut filters = BTreeMap::new();
    for plugin in source
        .plugins
        .iter()
        .filter(|p| only.is_empty() || only.contains(&p.name))
    {
        let filter = ws
            .filters
            .iter()
            .find(|f| f.name == plugin.name)
            .ok_or_else(|| format!("plugin {}: no filter crate of that name", plugin.name))?;
        let wasm = dist::read_release_module(&ws, filter)?;
        let image = dist::oci_image(&ws, filter, &wasm)?;
        filters.insert(
            plugin.name.clone(),
            FilterDigests {
                wasm: dist::wasm_file_name(&ws, filter),
                wasm_sha256: sha256::hex(&wasm),
                oci_manifest_digest: image.manifest_digest,
            },
        );
    }
    Ok(Digests {
        version: ws.version,
        filters,
    })
}

/// Generates the manifests of every plugin (or only of `only`) into `out`
/// (and `out/https`); with every plugin, also removes the generated
/// manifests there whose plugin left the source.
pub fn write_manifests(
    root: &Path,
    digests: &Digests,
    out: &Path,
    only: &[String],
) -> Result<(), String> {
    let mut source = generate::parse_source(&read_file(root, SOURCE)?)?;
    if let Some(unknown) = only
        .iter()
        .find(|name| !source.plugins.iter().any(|p| &p.name == *name))
    {
        return Err(format!("plugin {unknown} is not in {SOURCE}"));
    }
    if !only.is_empty() {
        source.plugins.retain(|p| only.contains(&p.name));
    }
    let manifests = generate::generate(&source, &|rel| read_file(root, rel), digests)?;

    for dir in [out.to_path_buf(), out.join("https")] {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if only.is_empty() {
            remove_stale(&dir, out, &manifests)?;
        }
    }
    for m in &manifests {
        let path = out.join(&m.path);
        std::fs::write(&path, &m.text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// `--check`: see the module docs.
pub fn check(root: &Path) -> Result<(), String> {
    let source = generate::parse_source(&read_file(root, SOURCE)?)?;
    let committed = generated_files(&root.join(DIR))?;
    let digests = generate::digests_of_manifests(&source, &committed, env!("CARGO_PKG_VERSION"))
        .map_err(|e| format!("{DIR}/{e}"))?;
    let mut problems = Vec::new();
    for (path, text) in &committed {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| format!("{DIR}/{path}: {e}"))?;
        let sha = doc
            .get("spec")
            .and_then(|spec| spec.get("sha256"))
            .and_then(serde_yaml_ng::Value::as_str)
            .unwrap_or_default();
        if !generate::is_sha256_hex(sha) {
            problems.push(format!(
                "{path}: sha256 {sha:?} is not 64 lowercase hex digits"
            ));
        }
    }
    let fresh = generate::generate(&source, &|rel| read_file(root, rel), &digests)?;
    problems.extend(generate::drift(&fresh, &committed));
    if problems.is_empty() {
        println!("{DIR}: {} manifests up to date", committed.len());
        Ok(())
    } else {
        Err(format!(
            "{DIR} is out of date (run `make istio`):\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// The generated manifests in `out` and `out/https`, by path under `out`.
fn generated_files(out: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    for subdir in generate::UrlForm::ALL.map(generate::UrlForm::subdir) {
        let dir = out.join(subdir);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for path in entries.flatten().map(|e| e.path()) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if path.is_file() && text.starts_with(GENERATED_MARK) {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                files.insert(format!("{subdir}{name}"), text);
            }
        }
    }
    Ok(files)
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

fn read_file(root: &Path, rel: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(rel)).map_err(|e| format!("{rel}: {e}"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args() {
        assert_eq!(
            parse_args(&strings(&["--digests", "d.json", "--out", "o"])).unwrap(),
            Args {
                digests: Some("d.json".into()),
                out: Some("o".into()),
                ..Args::default()
            }
        );
        assert_eq!(
            parse_args(&strings(&["--plugin", "a", "--plugin", "b"])).unwrap(),
            Args {
                plugins: strings(&["a", "b"]),
                ..Args::default()
            }
        );
        assert!(parse_args(&strings(&["--check"])).unwrap().check);
        for bad in [
            &["--check", "--plugin", "a"][..],
            &["--out"],
            &["--digest", "d.json"],
        ] {
            assert_eq!(parse_args(&strings(bad)).unwrap_err(), USAGE, "{bad:?}");
        }
    }

    #[test]
    fn committed_manifests_are_current() {
        check(&repo_root()).unwrap();
    }

    #[test]
    fn the_check_reports_a_changed_a_missing_and_a_leftover_manifest() {
        let root = repo_root();
        let source = generate::parse_source(&read_file(&root, SOURCE).unwrap()).unwrap();
        let mut committed = generated_files(&root.join(DIR)).unwrap();
        let digests = generate::digests_of_manifests(&source, &committed, "0.1.0").unwrap();
        let fresh = generate::generate(&source, &|rel| read_file(&root, rel), &digests).unwrap();
        assert_eq!(generate::drift(&fresh, &committed), Vec::<String>::new());

        let changed = committed.get_mut("jwt-auth.yaml").unwrap();
        *changed = changed.replace("priority: 100", "priority: 99");
        committed.remove("https/jwt-auth.yaml");
        committed.insert("gone.yaml".into(), GENERATED_MARK.into());
        let problems = generate::drift(&fresh, &committed);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("jwt-auth.yaml differs at line "));
        assert!(problems[0].ends_with("committed `  priority: 99`, generated `  priority: 100`"));
        assert_eq!(problems[1], "https/jwt-auth.yaml is missing");
        assert_eq!(
            problems[2],
            "gone.yaml is not generated from envoy-configs/istio/plugins.yaml"
        );
    }
}
