//! Configuration: serde types as users write them, and their validation into
//! the [`Decorator`] used on the request path.

use crate::logic::Decorator;
use pwf_shared::headers::{header_name_problem, value_problem};
use pwf_shared::matcher::RequestMatch;
use pwf_shared::{ConfigError, FieldPath};
use serde::Deserialize;

/// Largest header value accepted in the configuration.
pub const MAX_VALUE_BYTES: usize = 8192;

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Headers set on the response of every matching request, in order.
    pub response_headers: Vec<HeaderValue>,
    /// Which requests get them; empty (the default) matches every request.
    #[serde(rename = "match", default)]
    pub match_: RequestMatch,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderValue {
    /// Lower-case header name; pseudo-headers (`:status`) are refused.
    pub name: String,
    /// The value, written as is.
    pub value: String,
}

impl Config {
    /// Parses the plugin configuration bytes and validates them.
    pub fn load(bytes: Option<&[u8]>) -> Result<Decorator, ConfigError> {
        pwf_shared::config::parse_json::<Config>(bytes)?.compile()
    }

    /// Validates the configuration; every error names its JSON path.
    pub fn compile(&self) -> Result<Decorator, ConfigError> {
        let root = FieldPath::root();
        let list = root.field("response_headers");
        if self.response_headers.is_empty() {
            return Err(list.error("at least one header is required"));
        }
        let mut headers: Vec<(String, Vec<u8>)> = Vec::with_capacity(self.response_headers.len());
        for (i, header) in self.response_headers.iter().enumerate() {
            let path = list.index(i);
            let name = &header.name;
            if let Some(problem) = header_name_problem(name) {
                return Err(path.field("name").error(format!("'{name}': {problem}")));
            }
            if name.starts_with(':') {
                return Err(path
                    .field("name")
                    .error(format!("pseudo-header '{name}' cannot be set")));
            }
            if headers.iter().any(|(seen, _)| seen == name) {
                return Err(path
                    .field("name")
                    .error(format!("'{name}' is listed twice")));
            }
            if let Some(problem) = value_problem(header.value.as_bytes(), MAX_VALUE_BYTES) {
                return Err(path.field("value").error(problem.as_str()));
            }
            headers.push((name.clone(), header.value.clone().into_bytes()));
        }
        let matcher = if self.match_ == RequestMatch::default() {
            None
        } else {
            Some(self.match_.compile(&root.field("match"))?)
        };
        Ok(Decorator::new(matcher, headers))
    }
}
