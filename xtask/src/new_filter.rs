//! `xtask new-filter <name>`: scaffolds a new filter from the templates in
//! `xtask/templates/new-filter/`, and adds its crate to the workspace.
//!
//! The template tree mirrors the repository: each file is written to its
//! path below the root with the placeholders replaced, in paths and in
//! content. Placeholders:
//!
//! - `{{name}}`: the filter's name in kebab case (crate, root_id, config file);
//! - `{{snake}}`: the same in snake case (Rust crate name, `.wasm` file,
//!   metric prefix, integration test file).

use std::path::{Path, PathBuf};
use toml_edit::{Array, DocumentMut, Item, Value};

use crate::fork::{read, write};
use crate::workspace::WASM_TARGET;

const USAGE: &str =
    "usage: xtask new-filter <name> [--no-build]   (name in kebab case, e.g. geo-tagger)";
const MAX_NAME_LEN: usize = 40;

/// Rust keywords: a crate whose snake-case name is one cannot be `use`d.
const KEYWORDS: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "core",
    "std",
    "alloc",
    "test",
    "proc_macro",
];

pub fn run(args: &[String]) -> Result<(), String> {
    let (name, build) = match args {
        [name] => (name, true),
        [name, flag] if flag == "--no-build" => (name, false),
        _ => return Err(USAGE.into()),
    };
    let root = repo_root()?;
    let written = scaffold(&root, name)?;
    println!("filter {name}: wrote");
    for path in &written {
        println!("  {}", path.strip_prefix(&root).unwrap_or(path).display());
    }
    println!("  Cargo.toml: added to members and default-members");
    let snake = snake_case(name);
    let then = format!(
        "cargo test -p {name}; cargo test -p pwf-tests --test {snake} (after `make build`)"
    );
    let istio = root.join(ISTIO_SOURCE).is_file();
    if !build {
        println!(
            "next: make schemas; cargo build --release --target wasm32-wasip1 -p {name}{}; {then}",
            if istio { "; make istio" } else { "" }
        );
        return Ok(());
    }
    finish(&root, name, istio).map_err(|e| {
        format!("{e}\n(the files are written; finish with `make schemas` and `make istio`)")
    })?;
    println!("next: {then}");
    Ok(())
}

/// What makes the repository's tests pass with the new filter: its JSON
/// Schema (written by xtask built with the new crate), its release module,
/// and from that module's digests its Istio manifests.
fn finish(root: &Path, name: &str, istio: bool) -> Result<(), String> {
    run_cargo(
        root,
        &["run", "-q", "-p", "xtask", "--", "schemas", name],
        &[],
    )?;
    let remap = format!("--remap-path-prefix={}=/cargo", cargo_home().display());
    let rustflags = std::env::var(WASM_RUSTFLAGS).unwrap_or(remap);
    let build = ["build", "--release", "--target", WASM_TARGET, "-p", name];
    run_cargo(root, &build, &[(WASM_RUSTFLAGS, &rustflags)])?;
    if istio {
        let only = [name.to_owned()];
        let digests = crate::istio::digests_of_build(root, &only)?;
        crate::istio::write_manifests(root, &digests, &root.join(crate::istio::DIR), &only)?;
    }
    Ok(())
}

/// The Makefile builds the modules with this set (see its comment: the
/// module does not depend on where `$CARGO_HOME` is).
const WASM_RUSTFLAGS: &str = "CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS";

fn cargo_home() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
    }
}

fn run_cargo(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("cargo {}", args.join(" "));
    let status = std::process::Command::new(cargo)
        .current_dir(root)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

/// The repository around the current directory (the nearest ancestor with
/// `xtask/templates/`), so the tasks work on a copy of the repository too.
pub fn repo_root() -> Result<PathBuf, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    cwd.ancestors()
        .find(|dir| {
            dir.join("Cargo.toml").is_file() && dir.join("xtask").join("templates").is_dir()
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "{} is not inside the proxy-wasm-filters repository",
                cwd.display()
            )
        })
}

/// The template directory `xtask/templates/<which>`.
pub fn template_dir(root: &Path, which: &str) -> PathBuf {
    root.join("xtask").join("templates").join(which)
}

/// Writes the new filter's files and registers its crate. Nothing is
/// written if the name is refused or any target file exists.
pub fn scaffold(root: &Path, name: &str) -> Result<Vec<PathBuf>, String> {
    check_name(root, name)?;
    let vars = Vars::for_filter(name);
    let templates = template_dir(root, "new-filter");
    let mut files = Vec::new();
    collect_files(&templates, &mut files)?;
    files.sort();

    let istio_source = root.join(ISTIO_SOURCE);
    let generated_istio = istio_source.is_file();
    let mut planned = Vec::with_capacity(files.len() + 1);
    for template in files {
        let relative = template
            .strip_prefix(&templates)
            .map_err(|e| format!("{}: {e}", template.display()))?;
        if generated_istio && relative.starts_with("envoy-configs/istio") {
            continue; // `make istio` writes the manifest from the entry added below
        }
        let target = root.join(vars.apply(&relative.to_string_lossy())?);
        if target.exists() {
            return Err(format!("{} already exists", target.display()));
        }
        let text = vars.apply(&read(&template)?)?;
        planned.push((target, text));
    }

    if generated_istio {
        let entry = vars.apply(&read(&template_dir(root, "istio-plugin-entry.yaml"))?)?;
        planned.push((
            istio_source.clone(),
            add_istio_plugin(&read(&istio_source)?, &entry)?,
        ));
    }

    let snake = snake_case(name);
    let schema_list = root.join(SCHEMA_LIST);
    planned.push((
        schema_list.clone(),
        add_schema_entry(&read(&schema_list)?, name, &snake)?,
    ));
    let path = format!("../filters/{name}");
    for (manifest, table, features) in [
        ("xtask/Cargo.toml", "dependencies", &["schema"][..]),
        ("tests/Cargo.toml", "dev-dependencies", &[]),
    ] {
        let target = root.join(manifest);
        let text = add_path_dependency(&read(&target)?, table, name, &path, features)
            .map_err(|e| format!("{manifest}: {e}"))?;
        planned.push((target, text));
    }

    let manifest_path = root.join("Cargo.toml");
    let manifest = add_member(&read(&manifest_path)?, &format!("filters/{name}"))?;
    for (target, text) in &planned {
        write(target, text)?;
    }
    write(&manifest_path, &manifest)?;
    let written: Vec<PathBuf> = planned.into_iter().map(|(target, _)| target).collect();
    format_rust(&written);
    Ok(written)
}

/// The one list of filters with a schema (`xtask schemas`, tests/tests/schemas.rs).
const SCHEMA_LIST: &str = "xtask/src/schemas/filters.rs";
const SCHEMA_LIST_MARKER: &str = "// new-filter: entries above this line";

/// `list` with `"<name>" => <snake>,` above the marker line.
fn add_schema_entry(list: &str, name: &str, snake: &str) -> Result<String, String> {
    let marker = list
        .lines()
        .find(|l| l.trim() == SCHEMA_LIST_MARKER)
        .ok_or_else(|| format!("{SCHEMA_LIST}: no line `{SCHEMA_LIST_MARKER}`"))?;
    let indent = marker.strip_suffix(marker.trim_start()).unwrap_or_default();
    let entry = format!("{indent}\"{name}\" => {snake},\n{marker}");
    Ok(list.replacen(marker, &entry, 1))
}

/// The manifest with `name = { path = "<path>", features = [...] }` in
/// `[<table>]`, after the last dependency on a filter, the rest unchanged.
fn add_path_dependency(
    manifest: &str,
    table: &str,
    name: &str,
    path: &str,
    features: &[&str],
) -> Result<String, String> {
    let mut doc = parse(manifest)?;
    let deps = doc
        .get_mut(table)
        .and_then(Item::as_table_mut)
        .ok_or_else(|| format!("no [{table}]"))?;
    let mut dep = toml_edit::InlineTable::new();
    dep.insert("path", path.into());
    if !features.is_empty() {
        dep.insert(
            "features",
            Array::from_iter(features.iter().copied()).into(),
        );
    }
    deps.insert(name, Item::Value(Value::InlineTable(dep)));
    let on_filter = |item: &Item| {
        item.get("path")
            .and_then(Item::as_str)
            .is_some_and(|p| p.starts_with("../filters/"))
    };
    let keys: Vec<(String, bool)> = deps
        .iter()
        .filter(|(k, _)| *k != name)
        .map(|(k, item)| (k.to_owned(), on_filter(item)))
        .collect();
    // Right after the last filter (at the end without one); the sort is
    // stable and keeps the order of the rest.
    let slot = keys
        .iter()
        .rposition(|(_, filter)| *filter)
        .unwrap_or(keys.len());
    let rank = |key: &str| match keys.iter().position(|(k, _)| k == key) {
        Some(i) => (i, 0),
        None => (slot, 1),
    };
    deps.sort_values_by(|a, _, b, _| rank(a.get()).cmp(&rank(b.get())));
    Ok(doc.to_string())
}

/// rustfmt on the written Rust files: line breaks depend on the name's
/// length, so `cargo fmt --check` passes for any name. Without rustfmt
/// (`rustup component add rustfmt`) the files stay as the templates are.
fn format_rust(files: &[PathBuf]) {
    let rust: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .collect();
    let status = std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .args(&rust)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("note: rustfmt did not run; format the new files with `cargo fmt`");
    }
}

/// The source of the generated Istio manifests (`make istio`), when present.
const ISTIO_SOURCE: &str = "envoy-configs/istio/plugins.yaml";

/// `source` with `entry` appended to its `plugins:` list, which must be the
/// file's last top-level key.
fn add_istio_plugin(source: &str, entry: &str) -> Result<String, String> {
    let last_key = source
        .lines()
        .rfind(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or_default();
    if last_key.trim_end() != "plugins:" {
        return Err(format!(
            "{ISTIO_SOURCE}: `plugins:` is not the last top-level key; add the entry by hand"
        ));
    }
    let mut out = source.trim_end().to_string();
    out.push('\n');
    out.push_str(entry);
    Ok(out)
}

/// Kebab case, 2 to 40 characters, not a Rust keyword, and neither a filter
/// nor a package that exists.
pub fn check_name(root: &Path, name: &str) -> Result<(), String> {
    let kebab = name.len() >= 2
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !kebab {
        return Err(format!(
            "'{name}' is not a valid filter name: use 2 to {MAX_NAME_LEN} characters of a-z, 0-9 \
             and single '-' between words, starting with a letter (e.g. geo-tagger)"
        ));
    }
    if KEYWORDS.contains(&snake_case(name).as_str()) {
        return Err(format!(
            "'{name}' is a Rust keyword or reserved crate name; choose another name"
        ));
    }
    if root.join("filters").join(name).exists() {
        return Err(format!(
            "a filter named '{name}' already exists (filters/{name})"
        ));
    }
    if workspace_packages(root)?.iter().any(|p| p == name) {
        return Err(format!(
            "a package named '{name}' already exists in this workspace"
        ));
    }
    Ok(())
}

pub fn snake_case(name: &str) -> String {
    name.replace('-', "_")
}

/// Package names of the workspace members.
fn workspace_packages(root: &Path) -> Result<Vec<String>, String> {
    let doc = parse(&read(&root.join("Cargo.toml"))?)?;
    let members = doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(Item::as_array)
        .ok_or("root Cargo.toml: no workspace.members")?;
    let mut names = Vec::new();
    for member in members.iter().filter_map(Value::as_str) {
        let Ok(text) = std::fs::read_to_string(root.join(member).join("Cargo.toml")) else {
            continue;
        };
        if let Some(name) = parse(&text)
            .ok()
            .and_then(|d| d.get("package")?.get("name")?.as_str().map(str::to_owned))
        {
            names.push(name);
        }
    }
    Ok(names)
}

fn parse(text: &str) -> Result<DocumentMut, String> {
    text.parse().map_err(|e| format!("Cargo.toml: {e}"))
}

/// The root manifest with `member` in `workspace.members` and
/// `workspace.default-members` (when present), after the last filter, the
/// rest of the file unchanged.
pub fn add_member(manifest: &str, member: &str) -> Result<String, String> {
    let mut doc = parse(manifest)?;
    let workspace = doc
        .get_mut("workspace")
        .and_then(Item::as_table_mut)
        .ok_or("root Cargo.toml: no [workspace]")?;
    for key in ["members", "default-members"] {
        let Some(list) = workspace.get_mut(key).and_then(Item::as_array_mut) else {
            if key == "members" {
                return Err("root Cargo.toml: no workspace.members".into());
            }
            continue;
        };
        insert_after_filters(list, member);
    }
    Ok(doc.to_string())
}

fn insert_after_filters(list: &mut Array, member: &str) {
    if list.iter().any(|v| v.as_str() == Some(member)) {
        return;
    }
    let last_filter = list
        .iter()
        .enumerate()
        .filter(|(_, v)| v.as_str().is_some_and(|s| s.starts_with("filters/")))
        .map(|(i, _)| i)
        .last();
    let position = last_filter.map_or(list.len(), |i| i + 1);
    list.insert(position, member);
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("read {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Template placeholders and their values.
pub struct Vars(Vec<(String, String)>);

impl Vars {
    /// `{{name}}` and `{{snake}}` for the filter `name`.
    pub fn for_filter(name: &str) -> Self {
        Self(vec![
            ("name".into(), name.into()),
            ("snake".into(), snake_case(name)),
        ])
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.0.push((key.into(), value.into()));
        self
    }

    /// `text` with every `{{key}}` replaced; a placeholder left over (a typo
    /// in a template) is an error.
    pub fn apply(&self, text: &str) -> Result<String, String> {
        let mut out = text.to_string();
        for (key, value) in &self.0 {
            out = out.replace(&format!("{{{{{key}}}}}"), value);
        }
        match unknown_placeholder(&out) {
            Some(p) => Err(format!("unknown template placeholder {p}")),
            None => Ok(out),
        }
    }
}

/// The first `{{word}}` in `text` (lower-case letters and `_`).
fn unknown_placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = rest.get(start + 2..)?;
        let word_len = after
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
            .count();
        if word_len > 0 && after.get(word_len..)?.starts_with("}}") {
            return rest.get(start..start + 4 + word_len);
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_unknown_ones_refused() {
        let vars = Vars::for_filter("geo-tagger");
        assert_eq!(
            vars.apply("{{name}} {{snake}}.wasm main! {{ x }} {{\"a\"")
                .unwrap(),
            "geo-tagger geo_tagger.wasm main! {{ x }} {{\"a\""
        );
        assert_eq!(
            vars.apply("a {{nmae}} b").unwrap_err(),
            "unknown template placeholder {{nmae}}"
        );
        assert_eq!(vars.with("x", "1").apply("{{x}}").unwrap(), "1");
    }

    #[test]
    fn names_are_checked() {
        let root = crate::schemas::repo_root();
        for bad in [
            "",
            "a",
            "Geo",
            "geo_tagger",
            "-geo",
            "geo-",
            "geo--tagger",
            "1geo",
            "geo.x",
        ] {
            let err = check_name(&root, bad).unwrap_err();
            assert!(
                err.starts_with(&format!("'{bad}' is not a valid filter name")),
                "{err}"
            );
        }
        assert_eq!(
            check_name(&root, "type").unwrap_err(),
            "'type' is a Rust keyword or reserved crate name; choose another name"
        );
        assert_eq!(
            check_name(&root, "jwt-auth").unwrap_err(),
            "a filter named 'jwt-auth' already exists (filters/jwt-auth)"
        );
        assert_eq!(
            check_name(&root, "xtask").unwrap_err(),
            "a package named 'xtask' already exists in this workspace"
        );
        check_name(&root, "geo-tagger2").unwrap();
    }

    #[test]
    fn member_is_added_after_the_last_filter_keeping_the_rest() {
        let manifest = "# top\n[workspace]\nresolver = \"2\"\n\
            members = [\"shared\", \"filters/a\", \"filters/b\", \"tests\"]\n\
            default-members = [\"shared\", \"filters/a\"]\n\n[profile.release]\nlto = true # keep\n";
        let out = add_member(manifest, "filters/new-one").unwrap();
        assert_eq!(
            out,
            "# top\n[workspace]\nresolver = \"2\"\n\
             members = [\"shared\", \"filters/a\", \"filters/b\", \"filters/new-one\", \"tests\"]\n\
             default-members = [\"shared\", \"filters/a\", \"filters/new-one\"]\n\n\
             [profile.release]\nlto = true # keep\n"
        );
        assert_eq!(add_member(&out, "filters/new-one").unwrap(), out);
    }

    #[test]
    fn the_filter_is_added_to_the_schema_list_above_the_marker() {
        let list = "filters! {\n    \"a\" => a,\n    // new-filter: entries above this line\n}\n";
        assert_eq!(
            add_schema_entry(list, "geo-tagger", "geo_tagger").unwrap(),
            "filters! {\n    \"a\" => a,\n    \"geo-tagger\" => geo_tagger,\n    // new-filter: entries above this line\n}\n"
        );
        assert_eq!(
            add_schema_entry("filters! {}\n", "x", "x").unwrap_err(),
            "xtask/src/schemas/filters.rs: no line `// new-filter: entries above this line`"
        );
        let real = read(&crate::schemas::repo_root().join(SCHEMA_LIST)).unwrap();
        assert!(add_schema_entry(&real, "geo-tagger", "geo_tagger")
            .unwrap()
            .contains(
                "    \"geo-tagger\" => geo_tagger,\n    // new-filter: entries above this line\n"
            ));
    }

    #[test]
    fn the_dependency_goes_after_the_last_filter() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nserde = \"1\"\n\
            # Filters.\na = { path = \"../filters/a\", features = [\"schema\"] }\n\
            # Digests.\nsha2 = \"0.10\"\n\n[lints]\nworkspace = true\n";
        let out = add_path_dependency(
            manifest,
            "dependencies",
            "geo-tagger",
            "../filters/geo-tagger",
            &["schema"],
        )
        .unwrap();
        assert_eq!(
            out,
            "[package]\nname = \"x\"\n\n[dependencies]\nserde = \"1\"\n\
             # Filters.\na = { path = \"../filters/a\", features = [\"schema\"] }\n\
             geo-tagger = { path = \"../filters/geo-tagger\", features = [\"schema\"] }\n\
             # Digests.\nsha2 = \"0.10\"\n\n[lints]\nworkspace = true\n"
        );
        let plain = add_path_dependency(
            "[dev-dependencies]\nz = \"1\"\n",
            "dev-dependencies",
            "b",
            "../filters/b",
            &[],
        )
        .unwrap();
        assert_eq!(
            plain,
            "[dev-dependencies]\nz = \"1\"\nb = { path = \"../filters/b\" }\n"
        );
        assert_eq!(
            add_path_dependency("[package]\n", "dev-dependencies", "b", "p", &[]).unwrap_err(),
            "no [dev-dependencies]"
        );
    }

    #[test]
    fn istio_entry_is_appended_to_the_plugin_list() {
        let source = "# c\nregistry: r\nplugins:\n\n- name: a\n  spec: {}\n\n";
        assert_eq!(
            add_istio_plugin(source, "\n- name: b\n").unwrap(),
            "# c\nregistry: r\nplugins:\n\n- name: a\n  spec: {}\n\n- name: b\n"
        );
        assert_eq!(
            add_istio_plugin("plugins:\n- name: a\nregistry: r\n", "x").unwrap_err(),
            "envoy-configs/istio/plugins.yaml: `plugins:` is not the last top-level key; add the entry by hand"
        );
    }

    #[test]
    fn every_template_renders() {
        let root = crate::schemas::repo_root();
        let mut files = Vec::new();
        collect_files(&template_dir(&root, "new-filter"), &mut files).unwrap();
        collect_files(&template_dir(&root, "fork"), &mut files).unwrap();
        files.push(template_dir(&root, "istio-plugin-entry.yaml"));
        assert!(files.len() >= 10, "{files:?}");
        let vars = Vars::for_filter("geo-tagger").with("shared_mode", "copied");
        for file in files {
            vars.apply(&file.to_string_lossy()).unwrap();
            let text = vars.apply(&read(&file).unwrap()).unwrap();
            assert!(!text.contains("{{snake}}") && !text.contains("{{name}}"));
        }
    }
}
