//! Values that may be secret (client secrets, HMAC keys), written inline or
//! read from an environment variable of the Wasm VM.
//!
//! In Envoy the VM's environment comes from
//! `vm_config.environment_variables` (`key_values`, or `host_env_keys` to
//! pass variables of the Envoy process); in Istio from `WasmPlugin.vmConfig.env`.
//! Errors name the field and the variable but never include the value.

use crate::config::{ConfigError, FieldPath};
use serde::de::value::MapAccessDeserializer;
use serde::de::{Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::marker::PhantomData;

/// Exactly one of `inline` or `env`. Configuration errors never show the
/// inline value.
#[derive(Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct SecretSource {
    /// The value itself.
    pub inline: Option<String>,
    /// Name of an environment variable of the Wasm VM.
    pub env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSourceFields {
    #[serde(default, deserialize_with = "secret_text")]
    inline: Option<String>,
    env: Option<String>,
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f: SecretSourceFields = deserialize_object(d)?;
        Ok(SecretSource {
            inline: f.inline,
            env: f.env,
        })
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("inline", &self.inline.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env)
            .finish()
    }
}

/// Deserializes a secret's configuration object `T` (its own field errors
/// keep their paths), refusing anything but an object without quoting it:
/// serde's own message would ("invalid type: string \"s3cret\", expected
/// ..."), and a secret written as a plain string instead of `{"inline": ..}`
/// would end up in Envoy's log.
pub fn deserialize_object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_any(ObjectOnly(PhantomData))
}

/// For a secret's text field: a string, or an error that does not quote the
/// value given instead.
pub fn secret_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Null => Ok(None),
        _ => Err(D::Error::custom(
            "invalid type: expected a string (the value is not shown)",
        )),
    }
}

struct ObjectOnly<T>(PhantomData<T>);

const NOT_AN_OBJECT: &str = "must be an object with 'inline' or 'env' (the value is not shown)";

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with 'inline' or 'env'")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<T, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<T, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<T, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<T, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<T, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<T, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(A::Error::custom(NOT_AN_OBJECT))
    }
}

/// Looks up an environment variable; the glue passes `std::env::var(..).ok()`.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where a resolved value came from, for error paths (`<path>.inline` or `<path>.env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    Inline,
    Env,
}

impl SecretOrigin {
    pub fn field(self) -> &'static str {
        match self {
            SecretOrigin::Inline => "inline",
            SecretOrigin::Env => "env",
        }
    }
}

impl SecretSource {
    /// The value, or an error naming the field (and the variable, if unset or empty).
    pub fn resolve(
        &self,
        env: EnvLookup,
        path: &FieldPath,
    ) -> Result<(String, SecretOrigin), ConfigError> {
        match (&self.inline, &self.env) {
            (Some(v), None) => Ok((v.clone(), SecretOrigin::Inline)),
            (None, Some(name)) => match env(name) {
                Some(v) if !v.is_empty() => Ok((v, SecretOrigin::Env)),
                Some(_) => Err(path
                    .field("env")
                    .error(format!("environment variable '{name}' is empty"))),
                None => Err(path
                    .field("env")
                    .error(format!("environment variable '{name}' is not set"))),
            },
            _ => Err(path.error("exactly one of 'inline' or 'env' is required")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("from-env".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn source(inline: Option<&str>, env: Option<&str>) -> SecretSource {
        SecretSource {
            inline: inline.map(str::to_owned),
            env: env.map(str::to_owned),
        }
    }

    #[test]
    fn inline_and_env_values_resolve() {
        let p = FieldPath::root().field("client_secret");
        assert_eq!(
            source(Some("s3cret"), None).resolve(&env, &p).unwrap(),
            ("s3cret".to_owned(), SecretOrigin::Inline)
        );
        assert_eq!(
            source(None, Some("SET")).resolve(&env, &p).unwrap(),
            ("from-env".to_owned(), SecretOrigin::Env)
        );
    }

    #[test]
    fn deserialize_errors_and_debug_never_show_the_value() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Holder {
            client_secret: SecretSource,
        }
        for (json, want) in [
            (
                r#"{"client_secret": "svc-a-secret"}"#,
                "client_secret: must be an object with 'inline' or 'env' (the value is not shown)",
            ),
            (
                r#"{"client_secret": {"inline": 987654321}}"#,
                "client_secret.inline: invalid type: expected a string (the value is not shown)",
            ),
            (
                r#"{"client_secret": {"inline": ["svc-a-secret"]}}"#,
                "client_secret.inline: invalid type: expected a string (the value is not shown)",
            ),
            (
                r#"{"client_secret": {"inlined": "svc-a-secret"}}"#,
                "client_secret.inlined: unknown field `inlined`, expected `inline` or `env`",
            ),
        ] {
            let err = crate::config::parse_json::<Holder>(Some(json.as_bytes())).unwrap_err();
            assert_eq!(err.to_string(), want, "{json}");
        }
        let ok: Holder =
            crate::config::parse_json(Some(br#"{"client_secret": {"inline": "svc-a-secret"}}"#))
                .unwrap();
        assert_eq!(ok.client_secret.inline.as_deref(), Some("svc-a-secret"));
        assert!(!format!("{ok:?}").contains("svc-a-secret"));
    }

    #[test]
    fn errors_name_the_field_and_variable_never_the_value() {
        let p = FieldPath::root().field("client_secret");
        let err = source(None, Some("MISSING")).resolve(&env, &p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client_secret.env: environment variable 'MISSING' is not set"
        );
        let err = source(None, Some("EMPTY")).resolve(&env, &p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client_secret.env: environment variable 'EMPTY' is empty"
        );
        for s in [source(None, None), source(Some("s3cret"), Some("SET"))] {
            let err = s.resolve(&env, &p).unwrap_err();
            assert_eq!(
                err.to_string(),
                "client_secret: exactly one of 'inline' or 'env' is required"
            );
            assert!(!err.to_string().contains("s3cret"));
        }
    }
}
