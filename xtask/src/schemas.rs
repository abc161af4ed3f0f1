//! `xtask schemas [--check | <filter>...]`: the JSON Schema of every
//! filter's plugin configuration (or of the named ones), generated from its
//! serde config types, written to `filters/<name>/config.schema.json`. With
//! `--check`, nothing is written and stale or missing files are an error.
//! The filters are listed once, in `schemas/filters.rs`.
//!
//! The schemas describe structure (fields, types, enums, defaults, unknown
//! fields rejected); semantic checks (regexes compile, names unique, values
//! in range) stay in each filter's config validation.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Where the committed schemas are published; `$id` of each is
/// `<BASE>/<name>/config.schema.json`.
const BASE_URL: &str =
    "https://raw.githubusercontent.com/proxy-wasm-filters/proxy-wasm-filters/main/filters";

/// A filter and the root type of its plugin configuration.
pub struct Filter {
    pub name: &'static str,
    schema: fn() -> Schema,
}

macro_rules! filters {
    ($($name:literal => $krate:ident,)*) => {
        pub const FILTERS: &[Filter] = &[
            $(Filter { name: $name, schema: schema_of::<$krate::config::Config> },)*
        ];
    };
}

include!("schemas/filters.rs");

fn schema_of<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
}

impl Filter {
    /// `filters/<name>/config.schema.json` below `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join("filters")
            .join(self.name)
            .join("config.schema.json")
    }

    /// The file's content: pretty JSON with sorted keys and a trailing newline.
    pub fn render(&self) -> Result<String, String> {
        let mut schema = (self.schema)().to_value();
        let Some(root) = schema.as_object_mut() else {
            return Err(format!("{}: the schema is not an object", self.name));
        };
        root.insert(
            "$id".into(),
            format!("{BASE_URL}/{}/config.schema.json", self.name).into(),
        );
        root.insert(
            "title".into(),
            format!("{} plugin configuration", self.name).into(),
        );
        add_integer_maximums(&mut schema);
        let mut text = serde_json::to_string_pretty(&sorted(schema))
            .map_err(|e| format!("{}: {e}", self.name))?;
        text.push('\n');
        Ok(text)
    }
}

/// schemars marks unsigned integers with a `format` and `minimum: 0` only;
/// the deserializer also rejects values above the type's maximum. `usize`
/// (`uint`) is 32 bits in the Wasm module, where the config is parsed.
fn add_integer_maximums(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let max = match map.get("format").and_then(Value::as_str) {
                Some("uint8") => Some(u64::from(u8::MAX)),
                Some("uint16") => Some(u64::from(u16::MAX)),
                Some("uint32" | "uint") => Some(u64::from(u32::MAX)),
                Some("uint64") => Some(u64::MAX),
                _ => None,
            };
            if let Some(max) = max {
                map.entry("maximum").or_insert(max.into());
            }
            map.values_mut().for_each(add_integer_maximums);
        }
        Value::Array(items) => items.iter_mut().for_each(add_integer_maximums),
        _ => {}
    }
}

/// Object keys in sorted order at every level, so the output does not depend
/// on whether some crate in the build enables serde_json's `preserve_order`.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The workspace root (this crate lives in `<root>/xtask`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The filters whose committed schema differs from the generated one.
pub fn stale(root: &Path) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::new();
    for filter in FILTERS {
        let committed = std::fs::read_to_string(filter.path(root)).unwrap_or_default();
        if committed != filter.render()? {
            out.push(filter.name);
        }
    }
    Ok(out)
}

const USAGE: &str = "usage: xtask schemas [--check | <filter>...]";

pub fn run(args: &[String]) -> Result<(), String> {
    let root = repo_root();
    match args {
        [flag] if flag == "--check" => match stale(&root)?.as_slice() {
            [] => Ok(()),
            names => Err(format!(
                "out of date: {} (run `make schemas`)",
                names.join(", ")
            )),
        },
        [flag, ..] if flag.starts_with('-') => Err(USAGE.into()),
        names => {
            let selected = select(names)?;
            for filter in selected {
                let path = filter.path(&root);
                std::fs::write(&path, filter.render()?)
                    .map_err(|e| format!("write {}: {e}", path.display()))?;
                println!("{}", path.strip_prefix(&root).unwrap_or(&path).display());
            }
            Ok(())
        }
    }
}

/// The filters named in `names`, or all of them when none is named.
fn select(names: &[String]) -> Result<Vec<&'static Filter>, String> {
    if names.is_empty() {
        return Ok(FILTERS.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            FILTERS
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| format!("{name}: not in xtask/src/schemas/filters.rs\n{USAGE}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schemas_match_the_config_types() {
        let stale = stale(&repo_root()).unwrap();
        assert!(
            stale.is_empty(),
            "config.schema.json out of date for {stale:?}: run `make schemas` and commit the result"
        );
    }

    /// A filter crate with the `schema` feature is meant to have a schema:
    /// it must be in the list, or `make schemas` silently skips it.
    #[test]
    fn every_filter_with_a_schema_feature_is_listed() {
        let mut with_feature = Vec::new();
        for entry in std::fs::read_dir(repo_root().join("filters")).unwrap() {
            let dir = entry.unwrap().path();
            let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
                continue;
            };
            let doc: toml_edit::DocumentMut = manifest.parse().unwrap();
            if doc.get("features").and_then(|f| f.get("schema")).is_some() {
                with_feature.push(dir.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        with_feature.sort();
        let mut listed: Vec<String> = FILTERS.iter().map(|f| f.name.to_owned()).collect();
        listed.sort();
        assert_eq!(with_feature, listed, "xtask/src/schemas/filters.rs");
    }

    #[test]
    fn filters_are_selected_by_name() {
        assert_eq!(select(&[]).unwrap().len(), FILTERS.len());
        let one = select(&["jwt-auth".to_owned()]).unwrap();
        assert_eq!(one.iter().map(|f| f.name).collect::<Vec<_>>(), ["jwt-auth"]);
        assert_eq!(
            select(&["nope".to_owned()]).err().unwrap(),
            format!("nope: not in xtask/src/schemas/filters.rs\n{USAGE}")
        );
    }

    #[test]
    fn every_schema_names_itself_and_its_draft() {
        for filter in FILTERS {
            let schema: Value = serde_json::from_str(&filter.render().unwrap()).unwrap();
            assert_eq!(
                schema["$id"],
                format!("{BASE_URL}/{}/config.schema.json", filter.name)
            );
            assert_eq!(
                schema["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
            assert_eq!(
                schema["title"],
                format!("{} plugin configuration", filter.name)
            );
            assert_eq!(schema["type"], "object", "{}", filter.name);
        }
    }

    #[test]
    fn unsigned_integers_get_the_maximum_of_their_wasm_type() {
        let mut v = serde_json::json!({"properties": {
            "a": {"type": "integer", "format": "uint32", "minimum": 0},
            "b": {"type": ["integer", "null"], "format": "uint", "minimum": 0},
            "c": {"type": "integer", "format": "uint64", "minimum": 0},
            "d": {"type": "number", "format": "double"}
        }});
        add_integer_maximums(&mut v);
        let p = &v["properties"];
        assert_eq!(p["a"]["maximum"], 4_294_967_295u64);
        assert_eq!(p["b"]["maximum"], 4_294_967_295u64);
        assert_eq!(p["c"]["maximum"], u64::MAX);
        assert!(p["d"].get("maximum").is_none());
    }

    #[test]
    fn rendering_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": [{"z": 1, "a": 2}], "a": {"y": 1, "x": 2}});
        assert_eq!(
            serde_json::to_string(&sorted(v)).unwrap(),
            r#"{"a":{"x":2,"y":1},"b":[{"a":2,"z":1}]}"#
        );
    }
}
