//! Plugin configuration loading.
//!
//! Every filter reads its configuration as JSON, rejects unknown fields, and
//! reports errors as `<json path>: <reason>`, for example
//! `request[2].operations[0].set.value: template refers to unknown variable 'req.hedaer.x'`.

use serde::de::DeserializeOwned;
use std::fmt;

/// A configuration error that names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the field, e.g. `rules[2].set.value`; empty for the document root.
    pub path: String,
    /// Why the value is rejected.
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Builds JSON paths while validating nested config: `FieldPath::root().field("rules").index(2)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        Self(String::new())
    }

    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{}", self.0, name))
        }
    }

    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{}]", self.0, i))
    }

    /// An error located at this path.
    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.0.clone(), reason)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest name accepted by [`check_name`].
pub const MAX_NAME_LEN: usize = 64;

/// Checks a configured name that becomes part of metric names or
/// shared-data keys: 1 to 64 characters of `a-z`, `0-9`, `_` or `-`.
/// `what` names the thing in the error, e.g. `"plan name"`.
pub fn check_name(name: &str, what: &str, path: &FieldPath) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(path.error(format!(
            "{what} '{name}' must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '_' or '-'"
        )))
    }
}

/// Parses plugin configuration bytes. A missing or empty configuration is
/// treated as `{}` so filters whose fields all have defaults load without one.
/// Types should use `#[serde(deny_unknown_fields)]`.
pub fn parse_json<T: DeserializeOwned>(bytes: Option<&[u8]>) -> Result<T, ConfigError> {
    let text = match bytes {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => b"{}".as_slice(),
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        // serde_path_to_error reports "." for the root and "?" for syntax errors.
        let path = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        let message = e.into_inner().to_string();
        // With a path, the position adds nothing (and custom messages, such
        // as the secrets', carry it too).
        let message = if path.is_empty() {
            strip_position(&message)
        } else {
            message
                .rfind(" at line ")
                .and_then(|pos| message.get(..pos))
                .unwrap_or(&message)
                .to_string()
        };
        ConfigError::new(path, message)
    })?;
    de.end()
        .map_err(|e| ConfigError::new("", strip_position(&e.to_string())))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 42"; the JSON path is more useful, but
/// keep the position for syntax errors where there is no path.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(pos)
            if [
                "unknown field",
                "unknown variant",
                "missing field",
                "duplicate field",
                "invalid",
            ]
            .iter()
            .any(|kind| msg.starts_with(kind)) =>
        {
            msg.get(..pos).unwrap_or(msg).to_string()
        }
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        rules: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn unknown_field_names_its_path() {
        let err =
            parse_json::<Outer>(Some(br#"{"rules":[{"name":"a"},{"nmae":"b"}]}"#)).unwrap_err();
        assert_eq!(err.path, "rules[1].nmae");
        assert!(
            err.reason.starts_with("unknown field `nmae`"),
            "{}",
            err.reason
        );
        assert_eq!(err.to_string(), format!("rules[1].nmae: {}", err.reason));
    }

    #[test]
    fn missing_field_names_the_object_without_a_position() {
        let err = parse_json::<Outer>(Some(br#"{"rules":[{}]}"#)).unwrap_err();
        assert_eq!(err.to_string(), "rules[0]: missing field `name`");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err = parse_json::<Outer>(Some(br#"{"rules":[{"name":3}]}"#)).unwrap_err();
        assert_eq!(err.path, "rules[0].name");
        assert!(err.reason.contains("expected a string"), "{}", err.reason);
    }

    #[test]
    fn empty_config_is_an_empty_object() {
        assert!(parse_json::<Outer>(None).unwrap().rules.is_empty());
        assert!(parse_json::<Outer>(Some(b"  ")).unwrap().rules.is_empty());
    }

    #[test]
    fn syntax_error_and_trailing_garbage_are_rejected() {
        assert!(parse_json::<Outer>(Some(b"{")).is_err());
        assert!(parse_json::<Outer>(Some(b"{} x")).is_err());
    }

    #[test]
    fn names_for_metrics_and_keys_are_checked() {
        let p = FieldPath::root().field("name");
        assert!(check_name("free-tier_2", "plan name", &p).is_ok());
        for bad in ["", "Free", "a.b", "a b", &"x".repeat(65)] {
            let err = check_name(bad, "plan name", &p).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "name: plan name '{bad}' must be 1 to 64 characters of a-z, 0-9, '_' or '-'"
                )
            );
        }
    }

    #[test]
    fn field_path_builds_json_paths() {
        let p = FieldPath::root().field("rules").index(2).field("set");
        assert_eq!(p.as_str(), "rules[2].set");
        assert_eq!(p.error("bad").to_string(), "rules[2].set: bad");
    }
}
