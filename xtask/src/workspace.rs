//! The released filters and their shared version, read from
//! `cargo metadata`.
//!
//! The filter list has one source: the workspace members in `filters/<name>/`
//! with a `cdylib` target (root `Cargo.toml`). The release version is the
//! workspace version (`[workspace.package] version`), which every filter
//! inherits; a filter with another version is an error.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Wasm target the filters are built for (`make build`).
pub const WASM_TARGET: &str = "wasm32-wasip1";

pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    pub version: String,
    pub filters: Vec<FilterCrate>,
}

pub struct FilterCrate {
    /// Package name, also the directory name under `filters/`.
    pub name: String,
    /// The cdylib's name (`header_transform`): the `.wasm` file stem.
    pub lib_name: String,
    pub description: String,
    pub repository: String,
    pub license: String,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    id: String,
    version: String,
    manifest_path: PathBuf,
    description: Option<String>,
    repository: Option<String>,
    license: Option<String>,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

impl Workspace {
    /// Runs `cargo metadata --no-deps` for the workspace around the current
    /// directory.
    pub fn load() -> Result<Self, String> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .map_err(|e| format!("running cargo metadata: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let metadata: Metadata = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("parsing cargo metadata: {e}"))?;
        Self::from_metadata(metadata)
    }

    fn from_metadata(metadata: Metadata) -> Result<Self, String> {
        let filters_dir = metadata.workspace_root.join("filters");
        let mut filters = Vec::new();
        let mut version: Option<String> = None;
        for package in metadata.packages {
            if !metadata.workspace_members.contains(&package.id)
                || package.manifest_path.parent().and_then(Path::parent) != Some(&filters_dir)
            {
                continue;
            }
            let Some(lib) = package
                .targets
                .iter()
                .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))
            else {
                continue;
            };
            match &version {
                None => version = Some(package.version.clone()),
                Some(v) if *v != package.version => {
                    return Err(format!(
                        "{} has version {}, other filters {v}: every filter takes the \
                         workspace version (version.workspace = true)",
                        package.name, package.version
                    ));
                }
                Some(_) => {}
            }
            filters.push(FilterCrate {
                lib_name: lib.name.replace('-', "_"),
                description: package.description.unwrap_or_default(),
                repository: package.repository.unwrap_or_default(),
                license: package.license.unwrap_or_default(),
                name: package.name,
            });
        }
        filters.sort_by(|a, b| a.name.cmp(&b.name));
        let version = version.ok_or("no filter crates (cdylib) under filters/")?;
        Ok(Workspace {
            root: metadata.workspace_root,
            target_dir: metadata.target_directory,
            version,
            filters,
        })
    }

    /// Where `make build` leaves the filter's release module.
    pub fn wasm_path(&self, filter: &FilterCrate) -> PathBuf {
        self.target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", filter.lib_name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn package(name: &str, dir: &str, version: &str, crate_type: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "id": format!("path+file:///ws/{dir}#{version}"),
            "version": version,
            "manifest_path": format!("/ws/{dir}/Cargo.toml"),
            "description": "d",
            "repository": "https://example.com/r",
            "license": "Apache-2.0",
            "targets": [{"name": name.replace('-', "_"), "crate_types": [crate_type]}],
        })
    }

    fn metadata(packages: Vec<serde_json::Value>) -> Metadata {
        let ids: Vec<_> = packages.iter().map(|p| p["id"].clone()).collect();
        serde_json::from_value(serde_json::json!({
            "packages": packages,
            "workspace_members": ids,
            "workspace_root": "/ws",
            "target_directory": "/ws/target",
        }))
        .unwrap()
    }

    #[test]
    fn filters_are_cdylib_members_under_filters_sorted() {
        let ws = Workspace::from_metadata(metadata(vec![
            package("zeta-filter", "filters/zeta-filter", "0.2.0", "cdylib"),
            package("alpha", "filters/alpha", "0.2.0", "cdylib"),
            package("pwf-shared", "shared", "0.2.0", "lib"),
            package("empty-filter", "bench/empty-filter", "0.2.0", "cdylib"),
        ]))
        .unwrap();
        let names: Vec<_> = ws.filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta-filter"]);
        assert_eq!(ws.version, "0.2.0");
        assert_eq!(
            ws.wasm_path(&ws.filters[1]),
            Path::new("/ws/target/wasm32-wasip1/release/zeta_filter.wasm")
        );
    }

    #[test]
    fn a_filter_with_its_own_version_is_an_error() {
        let err = Workspace::from_metadata(metadata(vec![
            package("alpha", "filters/alpha", "0.2.0", "cdylib"),
            package("beta", "filters/beta", "0.3.0", "cdylib"),
        ]))
        .err()
        .unwrap();
        assert!(
            err.starts_with("beta has version 0.3.0, other filters 0.2.0"),
            "{err}"
        );
    }
}
