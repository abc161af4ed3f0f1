//! JSON field mode: the values of named keys are redacted wherever they
//! appear, and every other string value goes through pattern detection.
//!
//! The body is parsed into an order-preserving tree (serde_json's own `Value`
//! sorts keys unless a crate-wide feature is on) and written back compactly.

use crate::config::JsonFields;
use crate::redact::{Action, Blocker, Pass, Report};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::fmt;

/// A JSON document with object members in their original order (duplicates kept).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            members.push((k, v));
        }
        Ok(Json::Object(members))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Why a JSON body could not be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidJson;

/// Redacts a JSON body. `Err` when it is not valid JSON (or nests too deep).
pub fn redact_json(
    body: &[u8],
    fields: &JsonFields,
    pass: &Pass,
    report: &mut Report,
    fields_redacted: &mut u64,
) -> Result<Vec<u8>, InvalidJson> {
    let mut doc: Json = serde_json::from_slice(body).map_err(|_| InvalidJson)?;
    walk(&mut doc, fields, pass, report, fields_redacted);
    serde_json::to_vec(&doc).map_err(|_| InvalidJson)
}

fn walk(node: &mut Json, fields: &JsonFields, pass: &Pass, report: &mut Report, n: &mut u64) {
    match node {
        Json::String(s) => {
            if let Some(out) = pass.redact_value(s.as_bytes(), report) {
                *s = String::from_utf8_lossy(&out).into_owned();
            }
        }
        Json::Array(items) => {
            for item in items {
                walk(item, fields, pass, report, n);
            }
        }
        Json::Object(members) => {
            members.retain_mut(|(key, value)| {
                if !fields.keys.iter().any(|k| same_key(k, key)) {
                    walk(value, fields, pass, report, n);
                    return true;
                }
                *n += 1;
                match &fields.action {
                    Action::Remove => false,
                    Action::Alert => true,
                    Action::Block => {
                        report.block.get_or_insert(Blocker::JsonField);
                        true
                    }
                    action => {
                        let text = scalar_text(value);
                        let mut out = Vec::with_capacity(text.len());
                        action.apply(key, text.as_bytes(), pass.hash_key, &mut out);
                        *value = Json::String(String::from_utf8_lossy(&out).into_owned());
                        true
                    }
                }
            });
        }
        Json::Null | Json::Bool(_) | Json::Number(_) => {}
    }
}

/// A value's text for masking or hashing: a string's contents, or any other
/// value's compact JSON.
fn scalar_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// `configured` is lower-cased at configure time.
fn same_key(configured: &str, key: &str) -> bool {
    if key.is_ascii() {
        configured.eq_ignore_ascii_case(key)
    } else {
        configured == key.to_lowercase()
    }
}
