//! Who a request is: its plan name and client key, from the configured
//! inputs in order (verified claims, headers, the client address).

use crate::config::Input;
use pwf_shared::HeaderList;
use serde_json::Value;

/// The values inputs read. The glue reads each lazily, at most once per
/// request, so inputs after the first one that yields are never read.
pub trait RequestView {
    /// `jwt_auth_claims`: `{"<provider>": {claims}}`, if a token was verified.
    fn claims(&mut self) -> Option<&Value>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// `source.address`, e.g. `10.0.0.7:51234` or `[::1]:51234`.
    fn address(&mut self) -> Option<Vec<u8>>;
}

/// Values given up front (native tests, or a header map already read).
pub struct Sources<'a> {
    pub claims: Option<&'a Value>,
    pub headers: &'a HeaderList,
    pub address: Option<&'a [u8]>,
}

impl RequestView for Sources<'_> {
    fn claims(&mut self) -> Option<&Value> {
        self.claims
    }

    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.headers.get(name).map(<[u8]>::to_vec)
    }

    fn address(&mut self) -> Option<Vec<u8>> {
        self.address.map(<[u8]>::to_vec)
    }
}

/// The first input that yields a non-empty value. Values are prefixed with
/// the input's position, so a header value can never pose as a claim value.
pub fn first(inputs: &[Input], req: &mut impl RequestView) -> Option<Vec<u8>> {
    inputs.iter().enumerate().find_map(|(i, input)| {
        let value = value(input, req)?;
        let mut position = itoa::Buffer::new();
        let position = position.format(i);
        let mut key = Vec::with_capacity(position.len() + 1 + value.len());
        key.extend_from_slice(position.as_bytes());
        key.push(b':');
        key.extend_from_slice(&value);
        Some(key)
    })
}

/// The first input's raw value (for plan names, which are matched as is).
pub fn first_raw(inputs: &[Input], req: &mut impl RequestView) -> Option<Vec<u8>> {
    inputs.iter().find_map(|input| value(input, req))
}

fn value(input: &Input, req: &mut impl RequestView) -> Option<Vec<u8>> {
    let v = match input {
        Input::Claim { provider, path } => claim(req.claims()?, provider.as_deref(), path)?,
        Input::Header(name) => req.header(name)?,
        Input::ClientAddress => strip_port(&req.address()?).to_vec(),
    };
    (!v.is_empty()).then_some(v)
}

/// A claim of the named provider's token, or of the first verified token
/// that has it, in provider-name order (serde_json's map order). Strings as is; numbers and booleans as text.
pub fn claim(claims: &Value, provider: Option<&str>, path: &[String]) -> Option<Vec<u8>> {
    let by_provider = claims.as_object()?;
    let mut payloads: Box<dyn Iterator<Item = &Value>> = match provider {
        Some(name) => Box::new(by_provider.get(name).into_iter()),
        None => Box::new(by_provider.values()),
    };
    payloads.find_map(|payload| {
        let v = path.iter().try_fold(payload, |v, part| v.get(part))?;
        match v {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Number(n) => Some(n.to_string().into_bytes()),
            Value::Bool(b) => Some(b.to_string().into_bytes()),
            _ => None,
        }
    })
}

/// `10.0.0.7:51234` -> `10.0.0.7`; `[::1]:51234` -> `::1`.
pub fn strip_port(address: &[u8]) -> &[u8] {
    if let Some(rest) = address.strip_prefix(b"[") {
        if let Some(end) = rest.iter().position(|&b| b == b']') {
            return rest.get(..end).unwrap_or(rest);
        }
        return address;
    }
    let colons = address.iter().filter(|&&b| b == b':').count();
    match address.iter().rposition(|&b| b == b':') {
        Some(pos) if colons == 1 => address.get(..pos).unwrap_or(address),
        _ => address,
    }
}
