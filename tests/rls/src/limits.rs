//! The limits file: YAML or JSON, turned into limitador [`Limit`]s.
//!
//! ```yaml
//! limits:
//!   - name: free                # optional; reported as current_limit.name
//!     domain: plans             # RateLimitRequest.domain (limitador namespace)
//!     max_value: 5
//!     seconds: 1
//!     match: {plan: free}       # entries the descriptor must have, with these values
//!     per: [client]             # one counter per value of these entries
//!   - {name: pro, domain: plans, max_value: 50, seconds: 1, match: {plan: pro}, per: [client]}
//! ```
//!
//! A bare list of limits (without `limits:`) is accepted too.
//!
//! Every descriptor of a request is checked on its own: its entries become
//! limitador's variables (entry key -> value). A limit applies to a
//! descriptor that has every `match` entry with that value and every `per`
//! entry (other entries are ignored), and counts separately for each distinct
//! value of its `per` entries. `match: {k: v}` is the limitador condition
//! `k == "v"`, `per: [k]` the variable `k`. Raw limitador conditions
//! (`k == "v"`, `k != "v"`) can be added with `conditions: [..]`.
//!
//! limitador's condition syntax only allows identifiers (`[A-Za-z0-9._]`,
//! starting with a letter) as variable names, so an entry key that is not
//! `[A-Za-z][A-Za-z0-9_]*` is renamed to `k.` + the hex of its bytes
//! (`x-plan` -> `k.782d706c616e`), in the limits and in the descriptors alike.

use std::collections::HashMap;
use std::fmt::Write as _;

use limitador::limit::{Condition, Limit};
use serde::Deserialize;

/// One limit as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(alias = "namespace")]
    pub domain: String,
    pub max_value: u64,
    pub seconds: u64,
    #[serde(default, rename = "match")]
    pub match_entries: Vec<(String, String)>,
    #[serde(default)]
    pub per: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LimitsFile {
    Wrapped { limits: Vec<LimitSpec> },
    Bare(Vec<LimitSpec>),
}

/// Parses a limits document (YAML or JSON) into limitador limits.
pub fn parse(text: &str) -> Result<Vec<Limit>, String> {
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("limits: {e}"))?;
    let file: LimitsFile = serde_yaml_ng::from_value(pairs_for_match(value)).map_err(|e| {
        format!("limits: expected `limits: [{{domain, max_value, seconds, match, per, ...}}]`: {e}")
    })?;
    let specs = match file {
        LimitsFile::Wrapped { limits } | LimitsFile::Bare(limits) => limits,
    };
    specs.iter().map(to_limit).collect()
}

/// The variables limitador sees for a descriptor's entries (keys renamed as
/// described in the module docs; a repeated key keeps its last value).
pub fn variables<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> HashMap<String, String> {
    entries
        .into_iter()
        .map(|(k, v)| (ident(k), v.to_owned()))
        .collect()
}

/// Rewrites every `match` mapping into a list of `[key, value]` pairs (in
/// file order), with numbers and booleans as strings.
fn pairs_for_match(value: serde_yaml_ng::Value) -> serde_yaml_ng::Value {
    use serde_yaml_ng::Value;
    let stringify = |v: Value| match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        other => other,
    };
    let rewrite = |spec: Value| -> Value {
        let Value::Mapping(mut spec) = spec else {
            return spec;
        };
        if let Some(Value::Mapping(entries)) = spec.get("match").cloned() {
            let pairs = entries
                .into_iter()
                .map(|(k, v)| Value::Sequence(vec![stringify(k), stringify(v)]))
                .collect();
            spec.insert(Value::from("match"), Value::Sequence(pairs));
        }
        Value::Mapping(spec)
    };
    match value {
        Value::Sequence(specs) => Value::Sequence(specs.into_iter().map(rewrite).collect()),
        Value::Mapping(mut file) => {
            if let Some(Value::Sequence(specs)) = file.get("limits").cloned() {
                file.insert(
                    Value::from("limits"),
                    Value::Sequence(specs.into_iter().map(rewrite).collect()),
                );
            }
            Value::Mapping(file)
        }
        other => other,
    }
}

fn to_limit(spec: &LimitSpec) -> Result<Limit, String> {
    let what = spec.name.as_deref().unwrap_or(&spec.domain);
    if spec.domain.is_empty() {
        return Err(format!("limit {what}: empty domain"));
    }
    if spec.seconds == 0 {
        return Err(format!("limit {what}: seconds must be at least 1"));
    }
    let max_value =
        i64::try_from(spec.max_value).map_err(|_| format!("limit {what}: max_value too large"))?;
    let mut conditions = Vec::new();
    for (key, value) in &spec.match_entries {
        let quote = if value.contains('"') { '\'' } else { '"' };
        if value.contains(quote) {
            return Err(format!(
                "limit {what}: match value {value:?} has both quote characters, \
                 which limitador's conditions cannot express"
            ));
        }
        conditions.push(condition(
            what,
            format!("{} == {quote}{value}{quote}", ident(key)),
        )?);
    }
    for source in &spec.conditions {
        conditions.push(condition(what, source.clone())?);
    }
    let variables: Vec<String> = spec.per.iter().map(|k| ident(k)).collect();
    let mut limit = Limit::new(
        spec.domain.as_str(),
        max_value,
        spec.seconds,
        conditions,
        variables,
    );
    limit.set_name(spec.name.clone().unwrap_or_else(|| default_name(spec)));
    Ok(limit)
}

fn condition(what: &str, source: String) -> Result<Condition, String> {
    Condition::try_from(source).map_err(|e| format!("limit {what}: {e}"))
}

/// `plans: 5 per 1s where plan=free per client`, for limits without a name.
fn default_name(spec: &LimitSpec) -> String {
    let mut name = format!("{}: {} per {}s", spec.domain, spec.max_value, spec.seconds);
    for (i, (k, v)) in spec.match_entries.iter().enumerate() {
        let _ = write!(name, "{}{k}={v}", if i == 0 { " where " } else { "," });
    }
    for c in &spec.conditions {
        let _ = write!(name, " if {c}");
    }
    if !spec.per.is_empty() {
        let _ = write!(name, " per {}", spec.per.join(","));
    }
    name
}

/// A descriptor entry key as a limitador variable name: unchanged if it is
/// `[A-Za-z][A-Za-z0-9_]*`, else `k.` + hex of its bytes (never equal to an
/// unchanged key, which has no `.`).
fn ident(key: &str) -> String {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        return key.to_owned();
    }
    let mut out = String::from("k.");
    for b in key.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(entries: &[(&str, &str)]) -> HashMap<String, String> {
        variables(entries.iter().copied())
    }

    #[test]
    fn match_and_per_select_descriptors() {
        let limits = parse(
            "limits:\n\
             - {name: free, domain: plans, max_value: 5, seconds: 1, match: {plan: free}, per: [client]}\n\
             - {name: pro, domain: plans, max_value: 50, seconds: 1, match: {plan: pro}, per: [client]}\n\
             - {domain: tiers, max_value: 1, seconds: 60, match: {tier: 1, beta: true}}\n",
        )
        .unwrap();
        assert_eq!(limits.len(), 3);
        let free = &limits[0];
        assert_eq!(free.name(), Some("free"));
        assert_eq!(free.namespace().as_ref(), "plans");
        assert_eq!((free.max_value(), free.seconds()), (5, 1));
        assert_eq!(free.variables().into_iter().collect::<Vec<_>>(), ["client"]);

        let alice = vars(&[("plan", "free"), ("client", "alice")]);
        assert!(free.applies(&alice));
        assert!(!limits[1].applies(&alice));
        // Missing `per` entry, other plan, no plan: not counted.
        assert!(!free.applies(&vars(&[("plan", "free")])));
        assert!(!free.applies(&vars(&[("plan", "pro"), ("client", "alice")])));
        assert!(!free.applies(&vars(&[("client", "alice")])));
        // Extra entries are ignored.
        assert!(free.applies(&vars(&[
            ("plan", "free"),
            ("client", "alice"),
            ("path", "/x")
        ])));

        let tiers = &limits[2];
        assert_eq!(
            tiers.name(),
            Some("tiers: 1 per 60s where tier=1,beta=true")
        );
        assert!(tiers.applies(&vars(&[("tier", "1"), ("beta", "true")])));
        assert!(!tiers.applies(&vars(&[("tier", "1")])));
    }

    #[test]
    fn odd_keys_and_values() {
        let limits = parse(
            r#"[{"domain": "d", "max_value": 1, "seconds": 60,
                 "match": {"x-plan": "it's \\ odd\n", "generic_key": "a \"b\""},
                 "per": ["remote.address", "9"]}]"#,
        )
        .unwrap();
        let limit = &limits[0];
        let mut v = limit.variables().into_iter().collect::<Vec<_>>();
        v.sort();
        assert_eq!(v, ["k.39", "k.72656d6f74652e61646472657373"]);
        let ok = [
            ("x-plan", "it's \\ odd\n"),
            ("generic_key", "a \"b\""),
            ("remote.address", "10.0.0.1"),
            ("9", "nine"),
        ];
        assert!(limit.applies(&vars(&ok)));
        let mut other = ok;
        other[0].1 = "its";
        assert!(!limit.applies(&vars(&other)));
        // A renamed key does not match the plain key it was renamed to.
        assert!(!limit.applies(&vars(&[
            ("k.782d706c616e", "it's \\ odd\n"),
            ("generic_key", "a \"b\""),
            ("remote.address", "10.0.0.1"),
            ("9", "nine"),
        ])));

        let err =
            parse(r#"[{"domain": "d", "max_value": 1, "seconds": 1, "match": {"k": "'\""}}]"#)
                .unwrap_err();
        assert!(err.contains("both quote characters"), "{err}");
    }

    #[test]
    fn raw_conditions() {
        let limits = parse(
            "- domain: d\n  max_value: 2\n  seconds: 10\n  \
             conditions: ['method != \"GET\"']\n  per: [user]\n",
        )
        .unwrap();
        assert_eq!(
            limits[0].name(),
            Some("d: 2 per 10s if method != \"GET\" per user")
        );
        assert!(limits[0].applies(&vars(&[("method", "POST"), ("user", "u")])));
        assert!(!limits[0].applies(&vars(&[("method", "GET"), ("user", "u")])));
    }

    #[test]
    fn errors_name_the_problem() {
        let err = parse("limits: [{domain: d, max_value: 1, seconds: 0}]").unwrap_err();
        assert!(err.contains("seconds must be at least 1"), "{err}");
        let err = parse("limits: [{domain: d, max_value: 1}]").unwrap_err();
        assert!(err.contains("expected"), "{err}");
        let err = parse("limits: [{domain: d, max_value: 1, seconds: 1, conditions: ['a ==']}]")
            .unwrap_err();
        assert!(err.contains("limit d"), "{err}");
        assert!(parse("{{").is_err());
    }
}
