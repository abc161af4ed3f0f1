//! `xtask dist [--out DIR] [--expect-tag vX.Y.Z]`: the release files, from
//! the modules `make build` left in `target/wasm32-wasip1/release/`.
//!
//! ```text
//! DIR/                                  (default: <workspace>/dist)
//!   <filter>-<version>.wasm             the release module
//!   <filter>-<version>.wasm.sha256      `sha256sum` line for it
//!   <filter>-<version>.schema.json      copy of filters/<filter>/config.schema.json
//!   SHA256SUMS                          every .wasm and .schema.json (`sha256sum -c`)
//!   digests.json                        what the Istio manifest generator reads
//!   oci/<filter>/                       OCI image layout, tag <version> (see oci.rs)
//! ```
//!
//! Packaging is a pure function of the modules, the schemas and the crate
//! metadata: running it twice gives byte-identical files.

use crate::oci::{self, ImageMeta};
use crate::sha256;
use crate::workspace::{FilterCrate, Workspace};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: xtask dist [--out DIR] [--expect-tag vX.Y.Z]";
const WASM_MAGIC: &[u8] = b"\0asm";

/// `digests.json`. Field names and shape are read by `xtask istio`.
#[derive(Serialize)]
struct Digests {
    version: String,
    filters: BTreeMap<String, FilterDigests>,
}

#[derive(Serialize)]
struct FilterDigests {
    wasm: String,
    wasm_sha256: String,
    oci_layout: String,
    oci_manifest_digest: String,
    schema: Option<String>,
}

struct Args {
    out: Option<PathBuf>,
    expect_tag: Option<String>,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let args = parse_args(args)?;
    let ws = Workspace::load()?;
    if let Some(tag) = &args.expect_tag {
        check_tag(tag, &ws.version)?;
    }
    let out = args.out.unwrap_or_else(|| ws.root.join("dist"));
    prepare_out_dir(&out)?;

    let mut digests = Digests {
        version: ws.version.clone(),
        filters: BTreeMap::new(),
    };
    let mut sums: BTreeMap<String, String> = BTreeMap::new();
    for filter in &ws.filters {
        let entry = package_filter(&ws, filter, &out, &mut sums)?;
        println!(
            "{:<16} {:>9} bytes  sha256 {}  oci {}",
            filter.name,
            file_len(&out.join(&entry.wasm)),
            entry.wasm_sha256,
            entry.oci_manifest_digest
        );
        digests.filters.insert(filter.name.clone(), entry);
    }

    write(&out.join("SHA256SUMS"), sums_file(&sums).as_bytes())?;
    let mut json = serde_json::to_string_pretty(&digests).map_err(|e| e.to_string())?;
    json.push('\n');
    write(&out.join("digests.json"), json.as_bytes())?;
    println!("dist {}: {}", ws.version, out.display());
    Ok(())
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        out: None,
        expect_tag: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or(format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--out" => parsed.out = Some(PathBuf::from(value()?)),
            "--expect-tag" => parsed.expect_tag = Some(value()?),
            _ => return Err(format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    Ok(parsed)
}

/// A release tag must name the workspace version: `v` + version.
fn check_tag(tag: &str, version: &str) -> Result<(), String> {
    if tag.strip_prefix('v') == Some(version) {
        Ok(())
    } else {
        Err(format!(
            "tag {tag} does not match the workspace version {version} (expected v{version}): \
             bump [workspace.package] version in Cargo.toml and CHANGELOG.md first"
        ))
    }
}

/// Starts from an empty directory, so that nothing stale is released. An
/// existing directory is only replaced when it is empty or an earlier dist
/// output (it holds `digests.json`).
fn prepare_out_dir(out: &Path) -> Result<(), String> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map_err(|e| format!("reading {}: {e}", out.display()))?
            .next()
            .is_none();
        if !empty && !out.join("digests.json").exists() {
            return Err(format!(
                "{} exists and is not a dist directory (no digests.json); not replacing it",
                out.display()
            ));
        }
        std::fs::remove_dir_all(out).map_err(|e| format!("removing {}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))
}

fn package_filter(
    ws: &Workspace,
    filter: &FilterCrate,
    out: &Path,
    sums: &mut BTreeMap<String, String>,
) -> Result<FilterDigests, String> {
    let wasm = read_release_module(ws, filter)?;
    let base = format!("{}-{}", filter.name, ws.version);

    let wasm_file = wasm_file_name(ws, filter);
    let wasm_sha256 = sha256::hex(&wasm);
    write(&out.join(&wasm_file), &wasm)?;
    let one_sum = sums_file(&BTreeMap::from([(wasm_file.clone(), wasm_sha256.clone())]));
    write(&out.join(format!("{wasm_file}.sha256")), one_sum.as_bytes())?;
    sums.insert(wasm_file.clone(), wasm_sha256.clone());

    let schema_source = ws
        .root
        .join("filters")
        .join(&filter.name)
        .join("config.schema.json");
    let schema = if schema_source.exists() {
        let bytes = std::fs::read(&schema_source)
            .map_err(|e| format!("reading {}: {e}", schema_source.display()))?;
        let file = format!("{base}.schema.json");
        write(&out.join(&file), &bytes)?;
        sums.insert(file.clone(), sha256::hex(&bytes));
        Some(file)
    } else {
        eprintln!(
            "warning: {}: no {} yet; released without a schema",
            filter.name,
            schema_source.display()
        );
        None
    };

    let layout_dir = format!("oci/{}", filter.name);
    let layout = oci_image(ws, filter, &wasm)?;
    layout.write_to(&out.join(&layout_dir))?;

    Ok(FilterDigests {
        wasm: wasm_file,
        wasm_sha256,
        oci_layout: layout_dir,
        oci_manifest_digest: layout.manifest_digest,
        schema,
    })
}

/// The filter's release module as `make build` leaves it, checked to be Wasm.
pub fn read_release_module(ws: &Workspace, filter: &FilterCrate) -> Result<Vec<u8>, String> {
    let source = ws.wasm_path(filter);
    let wasm = std::fs::read(&source).map_err(|e| {
        format!(
            "{}: reading {}: {e} (run `make build` first)",
            filter.name,
            source.display()
        )
    })?;
    if !wasm.starts_with(WASM_MAGIC) {
        return Err(format!(
            "{}: {} is not a Wasm module",
            filter.name,
            source.display()
        ));
    }
    Ok(wasm)
}

/// The released module's file name: `<filter>-<version>.wasm`.
pub fn wasm_file_name(ws: &Workspace, filter: &FilterCrate) -> String {
    format!("{}-{}.wasm", filter.name, ws.version)
}

/// The filter's OCI image (compat variant) around `wasm`, as released.
pub fn oci_image(ws: &Workspace, filter: &FilterCrate, wasm: &[u8]) -> Result<oci::Layout, String> {
    oci::compat_image(
        wasm,
        &ImageMeta {
            title: &filter.name,
            version: &ws.version,
            description: &filter.description,
            source: &filter.repository,
            licenses: &filter.license,
        },
    )
}

/// `sha256sum` output: `<hex>  <name>` per line (two spaces: text mode),
/// sorted by name.
fn sums_file(sums: &BTreeMap<String, String>) -> String {
    sums.iter()
        .map(|(name, hex)| format!("{hex}  {name}\n"))
        .collect()
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args() {
        let a = parse_args(&strings(&["--out", "/x", "--expect-tag", "v1.0.0"])).unwrap();
        assert_eq!(a.out, Some(PathBuf::from("/x")));
        assert_eq!(a.expect_tag.as_deref(), Some("v1.0.0"));
        assert_eq!(
            parse_args(&strings(&["--out"])).err().unwrap(),
            format!("--out needs a value\n{USAGE}")
        );
        assert!(parse_args(&strings(&["--bogus"]))
            .err()
            .unwrap()
            .starts_with("unknown argument --bogus"));
    }

    #[test]
    fn tag_must_be_v_plus_version() {
        assert_eq!(check_tag("v0.1.0", "0.1.0"), Ok(()));
        for bad in ["0.1.0", "v0.1.1", "v0.1.0-rc1", "release-0.1.0"] {
            let err = check_tag(bad, "0.1.0").err().unwrap();
            assert!(
                err.starts_with(&format!("tag {bad} does not match")),
                "{err}"
            );
        }
    }

    #[test]
    fn sums_file_is_sha256sum_format_sorted() {
        let sums = BTreeMap::from([
            ("b.wasm".to_string(), "22".to_string()),
            ("a.schema.json".to_string(), "11".to_string()),
        ]);
        assert_eq!(sums_file(&sums), "11  a.schema.json\n22  b.wasm\n");
    }

    #[test]
    fn out_dir_is_replaced_only_when_it_is_a_dist_dir() {
        let tmp = std::env::temp_dir().join(format!("xtask-dist-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("precious.txt"), "keep").unwrap();
        assert!(prepare_out_dir(&tmp).is_err());
        assert!(tmp.join("precious.txt").exists());

        std::fs::write(tmp.join("digests.json"), "{}").unwrap();
        prepare_out_dir(&tmp).unwrap();
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
