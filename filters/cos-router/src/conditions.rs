//! Conditions of classes and experiments, evaluated against a request whose
//! inputs are read lazily: each header, the claims and the client address at
//! most once per request, and only when a condition reaches them.

use crate::cidr::{self, Cidr};
use pwf_shared::StringMatcher;
use serde_json::Value;
use std::net::IpAddr;

/// Header names interned at configure time; a condition refers to a slot.
#[derive(Debug, Default)]
pub struct Slots {
    names: Vec<String>,
}

impl Slots {
    pub fn slot(&mut self, name: &str) -> usize {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_owned());
                self.names.len() - 1
            }
        }
    }

    pub fn into_names(self) -> Vec<String> {
        self.names
    }
}

/// Presence, absence, or a value match of a named input.
#[derive(Debug, Clone)]
pub enum NamedCondition {
    Present,
    Absent,
    Value(StringMatcher),
}

impl NamedCondition {
    fn holds<'v>(&self, mut values: impl Iterator<Item = &'v [u8]>) -> bool {
        match self {
            NamedCondition::Present => values.next().is_some(),
            NamedCondition::Absent => values.next().is_none(),
            NamedCondition::Value(m) => values.any(|v| m.matches(v)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeaderCondition {
    pub slot: usize,
    pub condition: NamedCondition,
}

#[derive(Debug, Clone)]
pub struct ClaimCondition {
    pub provider: Option<String>,
    pub path: Vec<String>,
    pub condition: NamedCondition,
}

/// A compiled match. Evaluated cheapest first: pseudo-headers and headers,
/// then the client address, the query string and the claims.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub methods: Vec<Vec<u8>>,
    pub method_slot: Option<usize>,
    pub host: Option<StringMatcher>,
    pub authority_slot: Option<usize>,
    pub path: Option<StringMatcher>,
    pub path_slot: Option<usize>,
    pub headers: Vec<HeaderCondition>,
    pub source: Vec<Cidr>,
    pub query: Vec<(String, NamedCondition)>,
    pub claims: Vec<ClaimCondition>,
}

/// The host calls a [`Request`] makes; the glue implements them with
/// proxy-wasm, the unit tests with plain values.
pub trait Host {
    fn header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// The filter state `jwt_auth_claims` that jwt-auth leaves.
    fn claims(&mut self) -> Option<Vec<u8>>;
    /// `source.address`, e.g. `10.0.0.7:51234`.
    fn source_address(&mut self) -> Option<Vec<u8>>;
}

/// One request's inputs, each read at most once.
pub struct Request<'s, H> {
    host: H,
    slots: &'s [String],
    headers: Vec<Option<Option<Vec<u8>>>>,
    claims: Option<Option<Value>>,
    source: Option<Option<IpAddr>>,
    query: Option<Vec<(String, String)>>,
}

impl<'s, H: Host> Request<'s, H> {
    pub fn new(host: H, slots: &'s [String]) -> Self {
        Self {
            host,
            slots,
            headers: vec![None; slots.len()],
            claims: None,
            source: None,
            query: None,
        }
    }

    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// The first value of the header in `slot`.
    pub fn header(&mut self, slot: usize) -> Option<&[u8]> {
        let cached = self.headers.get_mut(slot)?;
        if cached.is_none() {
            let name = self.slots.get(slot)?;
            *cached = Some(self.host.header(name));
        }
        cached.as_ref()?.as_deref()
    }

    /// The header named `name`, if the configuration interned it.
    pub fn header_named(&mut self, name: &str) -> Option<&[u8]> {
        let slot = self.slots.iter().position(|n| n == name)?;
        self.header(slot)
    }

    pub fn claims(&mut self) -> Option<&Value> {
        let host = &mut self.host;
        self.claims
            .get_or_insert_with(|| host.claims().and_then(|b| serde_json::from_slice(&b).ok()))
            .as_ref()
    }

    pub fn source(&mut self) -> Option<IpAddr> {
        let host = &mut self.host;
        *self.source.get_or_insert_with(|| {
            host.source_address()
                .and_then(|a| cidr::parse_source_address(&a))
        })
    }

    /// Query parameters, percent-decoded, from `:path` in `path_slot`.
    fn query(&mut self, path_slot: usize) -> &[(String, String)] {
        if self.query.is_none() {
            let pairs = self
                .header(path_slot)
                .and_then(|p| {
                    let q = p.iter().position(|&b| b == b'?')?;
                    let query = p.get(q + 1..)?;
                    Some(
                        form_urlencoded::parse(query)
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect(),
                    )
                })
                .unwrap_or_default();
            self.query = Some(pairs);
        }
        self.query.as_deref().unwrap_or_default()
    }
}

/// `:path` without its query string.
fn path_only(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?') {
        Some(q) => path.get(..q).unwrap_or(path),
        None => path,
    }
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
            && self.host.is_none()
            && self.path.is_none()
            && self.headers.is_empty()
            && self.source.is_empty()
            && self.query.is_empty()
            && self.claims.is_empty()
    }

    pub fn holds<H: Host>(&self, req: &mut Request<'_, H>) -> bool {
        if let Some(slot) = self.method_slot {
            let method = req.header(slot).unwrap_or_default();
            if !self.methods.iter().any(|m| m == method) {
                return false;
            }
        }
        if let (Some(m), Some(slot)) = (&self.host, self.authority_slot) {
            let authority = req.header(slot).unwrap_or_default();
            if !m.matches(pwf_shared::headers::strip_port(authority)) {
                return false;
            }
        }
        if let (Some(m), Some(slot)) = (&self.path, self.path_slot) {
            let path = path_only(req.header(slot).unwrap_or_default());
            if !m.matches(&pwf_shared::matcher::resolved_path(path)) {
                return false;
            }
        }
        for h in &self.headers {
            if !h.condition.holds(req.header(h.slot).into_iter()) {
                return false;
            }
        }
        if !self.source.is_empty() {
            match req.source() {
                Some(ip) if cidr::any_contains(&self.source, ip) => {}
                _ => return false,
            }
        }
        if let (false, Some(slot)) = (self.query.is_empty(), self.path_slot) {
            let pairs = req.query(slot);
            for (name, condition) in &self.query {
                let first = pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_bytes());
                if !condition.holds(first.into_iter()) {
                    return false;
                }
            }
        }
        if !self.claims.is_empty() {
            let claims = req.claims();
            for c in &self.claims {
                let found =
                    claims.and_then(|all| claim_values(all, c.provider.as_deref(), &c.path));
                let holds = match (&c.condition, found) {
                    (NamedCondition::Present, found) => found.is_some(),
                    (NamedCondition::Absent, found) => found.is_none(),
                    (NamedCondition::Value(m), Some(values)) => values.iter().any(|v| m.matches(v)),
                    (NamedCondition::Value(_), None) => false,
                };
                if !holds {
                    return false;
                }
            }
        }
        true
    }
}

/// The values of a claim in `{"<provider>": {claims}}`: of the named
/// provider's token, or of the first verified token that has the claim
/// (serde_json's map keeps providers in name order).
/// `None` when the claim is missing or `null`. Strings as is, numbers and
/// booleans as text; an array gives each of its scalar elements (so `roles`
/// matches if any role does); an object or an empty array is present with
/// no values.
pub fn claim_values(all: &Value, provider: Option<&str>, path: &[String]) -> Option<Vec<Vec<u8>>> {
    let by_provider = all.as_object()?;
    fn lookup<'v>(payload: &'v Value, path: &[String]) -> Option<&'v Value> {
        path.iter()
            .try_fold(payload, |v, part| v.get(part))
            .filter(|v| !v.is_null())
    }
    let found = match provider {
        Some(name) => by_provider.get(name).and_then(|p| lookup(p, path)),
        None => by_provider.values().find_map(|p| lookup(p, path)),
    }?;
    Some(match found {
        Value::Array(items) => items.iter().filter_map(scalar_text).collect(),
        v => scalar_text(v).into_iter().collect(),
    })
}

fn scalar_text(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Number(n) => Some(n.to_string().into_bytes()),
        Value::Bool(b) => Some(b.to_string().into_bytes()),
        _ => None,
    }
}
