//! Values that may be secret (client secrets, HMAC keys), written inline or
//! read from an environment variable of the Wasm VM.
//!
//! In Envoy the VM's environment comes from
//! `vm_config.environment_variables` (`key_values`, or `host_env_keys` to
//! pass variables of the Envoy process); in Istio from `WasmPlugin.vmConfig.env`.
//! Errors name the field and the variable but never include the value.

use crate::config::{ConfigError, FieldPath};
use serde::Deserialize;

/// Exactly one of `inline` or `env`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The value itself.
    pub inline: Option<String>,
    /// Name of an environment variable of the Wasm VM.
    pub env: Option<String>,
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
