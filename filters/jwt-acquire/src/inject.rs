//! The header changes that put a token on a request.

use crate::config::{Existing, Inject};

/// What to do to the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Headers to remove first (`inject.strip`).
    pub remove: &'a [String],
    /// The header to set and its value, if a token is injected.
    pub set: Option<(&'a str, &'a [u8])>,
    /// The request's own header was kept (`existing: keep`).
    pub kept_existing: bool,
}

/// Plans the changes. `value` is the full header value (prefix and token),
/// `None` when no token is available; `present` tells whether the request
/// already has the injection header (only read when `existing` is `keep`).
pub fn plan<'a>(inject: &'a Inject, value: Option<&'a [u8]>, present: bool) -> Plan<'a> {
    let keep = inject.existing == Existing::Keep && present;
    Plan {
        remove: &inject.strip,
        set: value.filter(|_| !keep).map(|v| (inject.header.as_str(), v)),
        kept_existing: keep,
    }
}

/// The header value for a token: the prefix, then the token.
pub fn header_value(inject: &Inject, access_token: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(inject.prefix.len() + access_token.len());
    v.extend_from_slice(inject.prefix.as_bytes());
    v.extend_from_slice(access_token.as_bytes());
    v
}
