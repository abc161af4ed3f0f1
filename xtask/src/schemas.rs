//! `xtask schemas [--check]`: the JSON Schema of every filter's plugin
//! configuration, generated from its serde config types, written to
//! `filters/<name>/config.schema.json`. With `--check`, nothing is written
//! and stale or missing files are an error.
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

pub const FILTERS: &[Filter] = &[
    Filter {
        name: "header-transform",
        schema: schema_of::<header_transform::config::Config>,
    },
    Filter {
        name: "jwt-auth",
        schema: schema_of::<jwt_auth::config::Config>,
    },
    Filter {
        name: "jwt-acquire",
        schema: schema_of::<jwt_acquire::config::Config>,
    },
    Filter {
        name: "plan-ratelimit",
        schema: schema_of::<plan_ratelimit::config::Config>,
    },
    Filter {
        name: "cos-router",
        schema: schema_of::<cos_router::config::Config>,
    },
];

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

pub fn run(args: &[String]) -> Result<(), String> {
    let root = repo_root();
    match args {
        [] => {
            for filter in FILTERS {
                let path = filter.path(&root);
                std::fs::write(&path, filter.render()?)
                    .map_err(|e| format!("write {}: {e}", path.display()))?;
                println!("{}", path.strip_prefix(&root).unwrap_or(&path).display());
            }
            Ok(())
        }
        [flag] if flag == "--check" => match stale(&root)?.as_slice() {
            [] => Ok(()),
            names => Err(format!(
                "out of date: {} (run `make schemas`)",
                names.join(", ")
            )),
        },
        _ => Err("usage: xtask schemas [--check]".into()),
    }
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
