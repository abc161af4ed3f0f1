//! Istio-side edits of a plugin configuration taken from an Envoy config:
//! JSON Patch operations (RFC 6902: `test`, `add`, `remove`, `replace`) on
//! JSON Pointer paths (RFC 6901), applied to an order-preserving YAML value.
//!
//! Stricter than RFC 6902 so that a changed Envoy config cannot silently
//! change what a patch does: `add` refuses to overwrite an existing member
//! (use `replace`), and `test` lets the source pin what it expects to edit.

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Op {
    /// Fails unless the value at `path` equals `value`.
    Test { path: String, value: Value },
    /// Inserts a new object member or array element (`-` appends).
    Add { path: String, value: Value },
    /// Removes an existing member or element (later elements shift down).
    Remove { path: String },
    /// Replaces an existing member or element.
    Replace { path: String, value: Value },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Test { path, .. }
            | Op::Add { path, .. }
            | Op::Remove { path }
            | Op::Replace { path, .. } => path,
        }
    }
}

/// Applies `ops` in order; the error names the operation's index and path.
pub fn apply(doc: &mut Value, ops: &[Op]) -> Result<(), String> {
    for (i, op) in ops.iter().enumerate() {
        apply_one(doc, op).map_err(|e| format!("patch[{i}] ({}): {e}", op.path()))?;
    }
    Ok(())
}

fn apply_one(doc: &mut Value, op: &Op) -> Result<(), String> {
    match op {
        Op::Test { path, value } => {
            let found = lookup(doc, &tokens(path)?)?;
            if found == value {
                Ok(())
            } else {
                Err(format!(
                    "test failed: found {}, expected {}",
                    brief(found),
                    brief(value)
                ))
            }
        }
        Op::Replace { path, value } => {
            let slot = lookup_mut(doc, &tokens(path)?)?;
            *slot = value.clone();
            Ok(())
        }
        Op::Add { path, value } => {
            let (parent, last) = split_parent(path)?;
            match lookup_mut(doc, &parent)? {
                Value::Mapping(map) => add_member(map, last, value.clone()),
                Value::Sequence(items) => {
                    let at = if last == "-" {
                        items.len()
                    } else {
                        parse_index(&last)?
                    };
                    if at > items.len() {
                        return Err(format!(
                            "index {at} is past the end (length {})",
                            items.len()
                        ));
                    }
                    items.insert(at, value.clone());
                    Ok(())
                }
                other => Err(format!("cannot add to {}", kind(other))),
            }
        }
        Op::Remove { path } => {
            let (parent, last) = split_parent(path)?;
            match lookup_mut(doc, &parent)? {
                Value::Mapping(map) => map
                    .shift_remove(last.as_str())
                    .map(|_| ())
                    .ok_or_else(|| format!("no member `{last}` to remove")),
                Value::Sequence(items) => {
                    let at = index(&last, items.len())?;
                    items.remove(at);
                    Ok(())
                }
                other => Err(format!("cannot remove from {}", kind(other))),
            }
        }
    }
}

fn add_member(map: &mut Mapping, key: String, value: Value) -> Result<(), String> {
    if map.contains_key(key.as_str()) {
        return Err(format!("member `{key}` exists already (use replace)"));
    }
    map.insert(Value::String(key), value);
    Ok(())
}

/// The reference tokens of a JSON Pointer (`~1` is `/`, `~0` is `~`).
fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| "a JSON Pointer starts with `/`".to_string())?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn split_parent(pointer: &str) -> Result<(Vec<String>, String), String> {
    let mut all = tokens(pointer)?;
    let last = all
        .pop()
        .ok_or_else(|| "the whole document cannot be added or removed".to_string())?;
    Ok((all, last))
}

fn lookup<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, String> {
    path.iter().try_fold(doc, |v, token| match v {
        Value::Mapping(map) => map
            .get(token.as_str())
            .ok_or_else(|| format!("no member `{token}`")),
        Value::Sequence(items) => items
            .get(index(token, items.len())?)
            .ok_or_else(|| format!("no element {token}")),
        other => Err(format!("`{token}` goes into {}", kind(other))),
    })
}

fn lookup_mut<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, String> {
    path.iter().try_fold(doc, |v, token| match v {
        Value::Mapping(map) => map
            .get_mut(token.as_str())
            .ok_or_else(|| format!("no member `{token}`")),
        Value::Sequence(items) => {
            let at = index(token, items.len())?;
            items
                .get_mut(at)
                .ok_or_else(|| format!("no element {token}"))
        }
        other => Err(format!("`{token}` goes into {}", kind(other))),
    })
}

/// An array index in the canonical form (digits, no leading zero).
fn parse_index(token: &str) -> Result<usize, String> {
    let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
    token
        .parse()
        .ok()
        .filter(|_| canonical && token.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("`{token}` is not an array index"))
}

/// The index of an existing element of an array of `len` elements.
fn index(token: &str, len: usize) -> Result<usize, String> {
    let at = parse_index(token)?;
    if at < len {
        Ok(at)
    } else {
        Err(format!("index {at} is out of range (length {len})"))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "an array",
        Value::Mapping(_) => "an object",
        Value::Tagged(_) => "a tagged value",
    }
}

fn brief(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_else(|_| kind(v).to_string());
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", text.get(..cut).unwrap_or_default()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        serde_yaml_ng::from_str(r#"{"a": {"b": 1, "c/d": 2}, "list": [10, 20, 30]}"#).unwrap()
    }

    fn ops(yaml: &str) -> Vec<Op> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn to_json(v: &Value) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn applies_operations_in_order_and_keeps_member_order() {
        let mut d = doc();
        apply(
            &mut d,
            &ops(r#"
            - { op: test, path: /a/b, value: 1 }
            - { op: replace, path: /a/b, value: x }
            - { op: add, path: /a/e, value: [1] }
            - { op: remove, path: /a/c~1d }
            - { op: remove, path: /list/0 }
            - { op: add, path: /list/-, value: 40 }
            - { op: add, path: /list/0, value: 5 }
            "#),
        )
        .unwrap();
        assert_eq!(
            to_json(&d),
            r#"{"a":{"b":"x","e":[1]},"list":[5,20,30,40]}"#
        );
    }

    #[test]
    fn every_failure_names_the_operation_and_the_reason() {
        let cases = [
            (
                "[{op: test, path: /a/b, value: 2}]",
                "patch[0] (/a/b): test failed: found 1, expected 2",
            ),
            (
                "[{op: replace, path: /a/x, value: 2}]",
                "patch[0] (/a/x): no member `x`",
            ),
            (
                "[{op: add, path: /a/b, value: 2}]",
                "patch[0] (/a/b): member `b` exists already (use replace)",
            ),
            (
                "[{op: remove, path: /list/3}]",
                "patch[0] (/list/3): index 3 is out of range (length 3)",
            ),
            (
                "[{op: remove, path: /list/01}]",
                "patch[0] (/list/01): `01` is not an array index",
            ),
            (
                "[{op: add, path: /list/4, value: 1}]",
                "patch[0] (/list/4): index 4 is past the end (length 3)",
            ),
            (
                "[{op: replace, path: /a/b/c, value: 1}]",
                "patch[0] (/a/b/c): `c` goes into a number",
            ),
            (
                "[{op: remove, path: a}]",
                "patch[0] (a): a JSON Pointer starts with `/`",
            ),
            (
                "[{op: test, path: /a/b, value: 1}, {op: remove, path: ''}]",
                "patch[1] (): the whole document cannot be added or removed",
            ),
        ];
        for (patch, expected) in cases {
            let mut d = doc();
            assert_eq!(apply(&mut d, &ops(patch)).unwrap_err(), expected, "{patch}");
        }
    }

    #[test]
    fn unknown_operations_and_fields_are_rejected() {
        assert!(serde_yaml_ng::from_str::<Vec<Op>>("[{op: move, path: /a, from: /b}]").is_err());
        assert!(serde_yaml_ng::from_str::<Vec<Op>>("[{op: remove, path: /a, value: 1}]").is_err());
    }
}
