//! `xtask fork <filter> <dest> [--shared=copy|version]`: one filter as a
//! standalone Cargo workspace in `dest`, buildable outside this repository.
//!
//! The fork mirrors this repository's layout, so the filter's README links
//! and its Envoy configs (which name `target/wasm32-wasip1/release/*.wasm`)
//! work unchanged:
//!
//! ```text
//! dest/Cargo.toml            [workspace] + [profile.release] of this repo
//! dest/Cargo.lock            this repo's lock file: the same tested versions
//! dest/filters/<filter>/     the crate, Cargo.toml with concrete values
//! dest/shared/               pwf-shared (only with --shared=copy)
//! dest/envoy-configs/        the filter's Envoy configs and Istio manifest
//! dest/README.md, Makefile, LICENSE, clippy.toml, .gitignore
//! ```
//!
//! Every `.workspace = true` of the crate's manifest is replaced by the
//! value this repository's root manifest gives it (package fields,
//! dependencies with their features, lints). pwf-shared becomes a path
//! dependency on the copy (`--shared=copy`, the default) or a version
//! requirement (`--shared=version`, for when it is on a registry).

use std::path::{Path, PathBuf};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use crate::new_filter::{template_dir, Vars};

const SHARED_CRATE: &str = "pwf-shared";
const DEPENDENCY_TABLES: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDep {
    /// `shared/` copied into the fork, referenced by path (and version).
    Copy,
    /// Referenced by version only, from a registry.
    Version,
}

const USAGE: &str = "usage: xtask fork <filter> <dest-dir> [--shared=copy|version]";

pub fn run(args: &[String]) -> Result<(), String> {
    let mut shared = SharedDep::Copy;
    let mut positional = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--shared=copy" => shared = SharedDep::Copy,
            "--shared=version" => shared = SharedDep::Version,
            a if a.starts_with("--") => return Err(format!("unknown option {a}; {USAGE}")),
            a => positional.push(a),
        }
    }
    let [filter, dest] = positional.as_slice() else {
        return Err(USAGE.into());
    };
    let root = crate::new_filter::repo_root()?;
    fork(&root, filter, Path::new(dest), shared)?;
    println!("forked {filter} into {dest}");
    println!(
        "build it: cd {dest} && make build   (or cargo build --release --target wasm32-wasip1)"
    );
    Ok(())
}

/// Writes the fork of `filter` into `dest`, which must not exist or be empty.
pub fn fork(root: &Path, filter: &str, dest: &Path, shared: SharedDep) -> Result<(), String> {
    let crate_dir = root.join("filters").join(filter);
    if filter.is_empty()
        || filter.contains(['/', '\\', '.'])
        || !crate_dir.join("Cargo.toml").is_file()
    {
        return Err(format!(
            "no filter named '{filter}' (one of: {})",
            existing_filters(root).join(", ")
        ));
    }
    check_empty(dest)?;
    let workspace = Workspace::read(root)?;

    let fork_crate = dest.join("filters").join(filter);
    copy_dir(&crate_dir, &fork_crate)?;
    let manifest = read(&crate_dir.join("Cargo.toml"))?;
    write(
        &fork_crate.join("Cargo.toml"),
        &standalone_manifest(&manifest, &workspace, shared, "../../shared")?,
    )?;

    let mut members = vec![format!("filters/{filter}")];
    if shared == SharedDep::Copy {
        let shared_dir = root.join("shared");
        copy_dir(&shared_dir, &dest.join("shared"))?;
        let manifest = read(&shared_dir.join("Cargo.toml"))?;
        write(
            &dest.join("shared").join("Cargo.toml"),
            &standalone_manifest(&manifest, &workspace, shared, "")?,
        )?;
        members.push("shared".into());
    }

    for config in envoy_configs(root, filter)? {
        let relative = config
            .strip_prefix(root)
            .map_err(|e| format!("{}: {e}", config.display()))?;
        copy_file(&config, &dest.join(relative))?;
    }
    for file in ["LICENSE", "clippy.toml", "Cargo.lock"] {
        let from = root.join(file);
        if from.is_file() {
            copy_file(&from, &dest.join(file))?;
        }
    }
    write(
        &dest.join("Cargo.toml"),
        &workspace.fork_root_manifest(&members),
    )?;
    write(&dest.join(".gitignore"), "/target\n")?;

    let shared_mode = match shared {
        SharedDep::Copy => format!(
            "copied into `shared/` and used by path. To use a published version \
             instead, keep only the version of the dependency in \
             `filters/{filter}/Cargo.toml` and delete `shared/` and its entry in `members`"
        ),
        SharedDep::Version => "used by version from a registry. It is not on crates.io yet: \
             publish it to a registry of your own, or add \
             `[patch.crates-io] pwf-shared = { path = \"...\" }` to `Cargo.toml`, \
             pointing at a checkout of proxy-wasm-filters' `shared/`"
            .to_string(),
    };
    let vars = Vars::for_filter(filter).with("shared_mode", &shared_mode);
    let templates = template_dir(root, "fork");
    for name in ["README.md", "Makefile"] {
        write(
            &dest.join(name),
            &vars.apply(&read(&templates.join(name))?)?,
        )?;
    }
    Ok(())
}

fn existing_filters(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("filters"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn check_empty(dest: &Path) -> Result<(), String> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!("{} exists and is not empty", dest.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dest.display())),
    }
}

/// `envoy-configs/<filter>.yaml`, `envoy-configs/<filter>-*.yaml` (variants
/// such as plan-ratelimit-global) and `envoy-configs/istio/<filter>.yaml`.
fn envoy_configs(root: &Path, filter: &str) -> Result<Vec<PathBuf>, String> {
    let dir = root.join("envoy-configs");
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".yaml") else {
            continue;
        };
        if stem == filter || stem.starts_with(&format!("{filter}-")) {
            out.push(entry.path());
        }
    }
    let istio = dir.join("istio").join(format!("{filter}.yaml"));
    if istio.is_file() {
        out.push(istio);
    }
    out.sort();
    Ok(out)
}

/// What the root manifest of this repository defines for its members.
pub struct Workspace {
    package: Table,
    dependencies: Table,
    lints: Table,
    release_profile: Option<Table>,
    resolver: Option<String>,
}

impl Workspace {
    pub fn read(root: &Path) -> Result<Self, String> {
        Self::parse(&read(&root.join("Cargo.toml"))?)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: DocumentMut = text.parse().map_err(|e| format!("root Cargo.toml: {e}"))?;
        let workspace = doc
            .get("workspace")
            .and_then(Item::as_table)
            .ok_or("root Cargo.toml has no [workspace]")?;
        let table = |key: &str| {
            workspace
                .get(key)
                .and_then(Item::as_table)
                .cloned()
                .unwrap_or_default()
        };
        Ok(Self {
            package: table("package"),
            dependencies: table("dependencies"),
            lints: table("lints"),
            release_profile: doc
                .get("profile")
                .and_then(|p| p.get("release"))
                .and_then(Item::as_table)
                .cloned(),
            resolver: workspace
                .get("resolver")
                .and_then(Item::as_str)
                .map(str::to_owned),
        })
    }

    /// The fork's root manifest: its members and this repository's release
    /// profile (profiles count only in a workspace root).
    pub fn fork_root_manifest(&self, members: &[String]) -> String {
        let mut doc = DocumentMut::new();
        let mut workspace = Table::new();
        if let Some(resolver) = &self.resolver {
            workspace.insert("resolver", toml_edit::value(resolver.as_str()));
        }
        workspace.insert(
            "members",
            toml_edit::value(members.iter().map(String::as_str).collect::<Array>()),
        );
        doc.insert("workspace", Item::Table(workspace));
        if let Some(release) = &self.release_profile {
            let mut profile = Table::new();
            profile.set_implicit(true);
            profile.insert("release", Item::Table(fresh_table(release)));
            doc.insert("profile", Item::Table(profile));
        }
        doc.to_string()
    }
}

/// `manifest` with every workspace inheritance replaced by its value.
/// `shared_path` is where the copied pwf-shared sits relative to the crate
/// (ignored with [`SharedDep::Version`]).
pub fn standalone_manifest(
    manifest: &str,
    workspace: &Workspace,
    shared: SharedDep,
    shared_path: &str,
) -> Result<String, String> {
    let mut doc: DocumentMut = manifest.parse().map_err(|e| format!("Cargo.toml: {e}"))?;

    if let Some(package) = doc.get_mut("package").and_then(Item::as_table_mut) {
        for (key, item) in package.iter_mut() {
            if inherits(item) {
                let value = workspace
                    .package
                    .get(&key)
                    .and_then(Item::as_value)
                    .ok_or_else(|| format!("package.{key}: not in [workspace.package]"))?;
                *item = Item::Value(fresh(value));
            }
        }
    }

    for table_name in DEPENDENCY_TABLES {
        let Some(deps) = doc.get_mut(table_name).and_then(Item::as_table_like_mut) else {
            continue;
        };
        for (name, item) in deps.iter_mut() {
            if !inherits(item) {
                continue;
            }
            let declared = workspace
                .dependencies
                .get(&name)
                .ok_or_else(|| format!("{table_name}.{name}: not in [workspace.dependencies]"))?;
            let mut dep = dependency_table(declared)
                .ok_or_else(|| format!("workspace.dependencies.{name}: not a version or table"))?;
            if name.get() == SHARED_CRATE {
                dep.remove("path");
                if shared == SharedDep::Copy {
                    dep.insert("path", shared_path.into());
                }
            } else if dep.contains_key("path") {
                return Err(format!(
                    "{table_name}.{name}: a path dependency of this repository other than {SHARED_CRATE}"
                ));
            }
            merge_member_keys(&mut dep, item)?;
            *item = Item::Value(simplest(dep));
        }
    }

    if doc.get("lints").is_some_and(inherits) {
        doc.insert("lints", Item::Table(lints_table(&workspace.lints)));
    }
    Ok(doc.to_string())
}

/// `{ workspace = true, ... }` or `key.workspace = true`.
fn inherits(item: &Item) -> bool {
    item.get("workspace").and_then(Item::as_bool) == Some(true)
}

/// A workspace dependency as an inline table (`"1"` becomes `{ version = "1" }`).
fn dependency_table(item: &Item) -> Option<InlineTable> {
    match item {
        Item::Value(Value::String(version)) => {
            let mut t = InlineTable::new();
            t.insert("version", version.value().as_str().into());
            Some(t)
        }
        Item::Value(Value::InlineTable(t)) => {
            let mut t = t.clone();
            t.decor_mut().clear();
            Some(t)
        }
        Item::Table(t) => Some(fresh_table(t).into_inline_table()),
        _ => None,
    }
}

/// What a member adds to an inherited dependency: `features` extend the
/// workspace's, `optional` and other keys are taken as written.
fn merge_member_keys(dep: &mut InlineTable, member: &Item) -> Result<(), String> {
    let Some(member) = member.as_table_like() else {
        return Ok(());
    };
    for (key, item) in member.iter() {
        if key == "workspace" {
            continue;
        }
        let value = item
            .as_value()
            .ok_or_else(|| format!("dependency key {key}: not a value"))?;
        if key == "features" {
            let mut features = dep
                .get("features")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for feature in value.as_array().into_iter().flatten() {
                if !features.iter().any(|f| f.as_str() == feature.as_str()) {
                    features.push_formatted(fresh(feature));
                }
            }
            features.fmt();
            dep.insert("features", Value::Array(features));
        } else {
            dep.insert(key, fresh(value));
        }
    }
    Ok(())
}

/// `{ version = "1" }` alone is written as `"1"`.
fn simplest(mut dep: InlineTable) -> Value {
    if dep.len() == 1 {
        if let Some(Value::String(version)) = dep.get("version") {
            return version.value().as_str().into();
        }
    }
    dep.fmt();
    Value::InlineTable(dep)
}

/// `[lints.rust]`, `[lints.clippy]`... from `[workspace.lints.*]`.
fn lints_table(workspace_lints: &Table) -> Table {
    let mut lints = Table::new();
    lints.set_implicit(true);
    for (tool, levels) in workspace_lints.iter() {
        if let Some(levels) = levels.as_table() {
            lints.insert(tool, Item::Table(fresh_table(levels)));
        }
    }
    lints
}

/// A copy of `value` without the whitespace and comments around it.
fn fresh(value: &Value) -> Value {
    let mut value = value.clone();
    value.decor_mut().clear();
    value
}

/// A copy of a table's key/value pairs without positions or decoration from
/// the document it came from.
fn fresh_table(table: &Table) -> Table {
    let mut out = Table::new();
    for (key, item) in table.iter() {
        let item = match item {
            Item::Value(v) => Item::Value(fresh(v)),
            Item::Table(t) => Item::Table(fresh_table(t)),
            other => other.clone(),
        };
        out.insert(key, item);
    }
    out
}

pub fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))
}

pub fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    // fs::copy follows symbolic links, so a linked file arrives as its content.
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))
}

/// Copies a crate directory, leaving out build output.
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("read {}: {e}", from.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(&name))?;
        } else {
            copy_file(&path, &to.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = r#"
[workspace]
resolver = "2"
members = ["shared", "filters/x"]

[workspace.package]
version = "0.3.1"
edition = "2021"
license = "Apache-2.0"

[workspace.dependencies]
pwf-shared = { path = "shared", version = "0.3.1" }
log = "0.4"
serde = { version = "1", features = ["derive"] }
schemars = { version = "1.2", default-features = false, features = ["std"] }

[workspace.lints.rust]
unsafe_code = "deny"

[workspace.lints.clippy]
unwrap_used = "deny"

[profile.release]
lto = true
panic = "abort"
"#;

    const MEMBER: &str = r#"[package]
name = "x"
version.workspace = true
edition.workspace = true
license = { workspace = true }
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
pwf-shared.workspace = true
log.workspace = true
serde = { workspace = true, features = ["rc", "derive"] }
schemars = { workspace = true, optional = true }
base64 = "0.22"

[features]
schema = ["dep:schemars", "pwf-shared/schema"]

[lints]
workspace = true
"#;

    fn standalone(shared: SharedDep) -> DocumentMut {
        let ws = Workspace::parse(ROOT).unwrap();
        let text = standalone_manifest(MEMBER, &ws, shared, "../../shared").unwrap();
        assert!(!text.contains("workspace"), "{text}");
        text.parse().unwrap()
    }

    #[test]
    fn package_fields_and_dependencies_get_concrete_values() {
        let doc = standalone(SharedDep::Copy);
        assert_eq!(doc["package"]["version"].as_str(), Some("0.3.1"));
        assert_eq!(doc["package"]["edition"].as_str(), Some("2021"));
        assert_eq!(doc["package"]["license"].as_str(), Some("Apache-2.0"));
        assert_eq!(doc["package"]["publish"].as_bool(), Some(false));
        assert_eq!(doc["dependencies"]["log"].as_str(), Some("0.4"));
        assert_eq!(doc["dependencies"]["base64"].as_str(), Some("0.22"));
        let serde = doc["dependencies"]["serde"].as_inline_table().unwrap();
        assert_eq!(
            serde.to_string().trim(),
            r#"{ version = "1", features = ["derive", "rc"] }"#
        );
        let schemars = doc["dependencies"]["schemars"].as_inline_table().unwrap();
        assert_eq!(
            schemars.to_string().trim(),
            r#"{ version = "1.2", default-features = false, features = ["std"], optional = true }"#
        );
        assert_eq!(
            doc["features"]["schema"].to_string().trim(),
            r#"["dep:schemars", "pwf-shared/schema"]"#
        );
    }

    #[test]
    fn shared_by_path_or_by_version() {
        let copy = standalone(SharedDep::Copy);
        assert_eq!(
            copy["dependencies"]["pwf-shared"].to_string().trim(),
            r#"{ version = "0.3.1", path = "../../shared" }"#
        );
        let by_version = standalone(SharedDep::Version);
        assert_eq!(
            by_version["dependencies"]["pwf-shared"].as_str(),
            Some("0.3.1")
        );
    }

    #[test]
    fn lints_are_written_out() {
        let doc = standalone(SharedDep::Copy);
        assert_eq!(doc["lints"]["rust"]["unsafe_code"].as_str(), Some("deny"));
        assert_eq!(doc["lints"]["clippy"]["unwrap_used"].as_str(), Some("deny"));
        let text = doc.to_string();
        assert!(
            text.contains("[lints.rust]\nunsafe_code = \"deny\""),
            "{text}"
        );
    }

    #[test]
    fn unknown_inherited_field_is_an_error() {
        let ws = Workspace::parse(ROOT).unwrap();
        let err = standalone_manifest(
            "[package]\nname = \"x\"\nhomepage.workspace = true\n",
            &ws,
            SharedDep::Copy,
            "",
        )
        .unwrap_err();
        assert_eq!(err, "package.homepage: not in [workspace.package]");
        let err = standalone_manifest(
            "[dependencies]\nrand.workspace = true\n",
            &ws,
            SharedDep::Copy,
            "",
        )
        .unwrap_err();
        assert_eq!(err, "dependencies.rand: not in [workspace.dependencies]");
    }

    #[test]
    fn fork_root_has_members_and_release_profile() {
        let ws = Workspace::parse(ROOT).unwrap();
        let text = ws.fork_root_manifest(&["filters/x".into(), "shared".into()]);
        assert_eq!(
            text,
            "[workspace]\nresolver = \"2\"\nmembers = [\"filters/x\", \"shared\"]\n\n\
             [profile.release]\nlto = true\npanic = \"abort\"\n"
        );
    }

    #[test]
    fn the_real_filters_become_standalone() {
        let root = crate::schemas::repo_root();
        let ws = Workspace::read(&root).unwrap();
        for name in existing_filters(&root) {
            let manifest = read(&root.join("filters").join(&name).join("Cargo.toml")).unwrap();
            let text = standalone_manifest(&manifest, &ws, SharedDep::Copy, "../../shared")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!text.contains(".workspace"), "{name}:\n{text}");
            assert!(!text.contains("workspace ="), "{name}:\n{text}");
        }
    }

    #[test]
    fn refuses_unknown_filter_and_non_empty_dest() {
        let root = crate::schemas::repo_root();
        let tmp = std::env::temp_dir().join(format!("xtask-fork-unit-{}", std::process::id()));
        let err = fork(&root, "no-such-filter", &tmp, SharedDep::Copy).unwrap_err();
        assert!(
            err.starts_with("no filter named 'no-such-filter' (one of: "),
            "{err}"
        );
        assert!(err.contains("header-transform"), "{err}");
        let err = fork(&root, "../shared", &tmp, SharedDep::Copy).unwrap_err();
        assert!(err.starts_with("no filter named '../shared'"), "{err}");
        let err = fork(&root, "header-transform", &root, SharedDep::Copy).unwrap_err();
        assert!(err.ends_with("exists and is not empty"), "{err}");
    }
}
