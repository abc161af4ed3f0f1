//! The token endpoint: the client-credentials request (RFC 6749 §4.4) built
//! once at configure time, and validation of its responses (§5.1, §5.2).

use crate::config::{ClientAuth, Endpoint};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use pwf_shared::headers::value_problem;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

/// What the token request is made of.
pub struct Params<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub auth: ClientAuth,
    pub scopes: &'a [String],
    pub audience: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub extra: &'a BTreeMap<String, String>,
}

/// A ready token request. It holds the client secret, so its `Debug` shows
/// only header names and the body length.
pub struct TokenRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Non-secret identity of the request (client id and parameters).
    identity: String,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("TokenRequest")
            .field("headers", &names)
            .field(
                "body",
                &format_args!("<redacted {} bytes>", self.body.len()),
            )
            .finish()
    }
}

impl TokenRequest {
    /// A hash of the endpoint and the non-secret parameters.
    pub fn fingerprint(&self, endpoint: &Endpoint) -> u64 {
        // DefaultHasher::new() uses fixed keys: the same config gives the same
        // value in every worker and every Envoy.
        let mut h = DefaultHasher::new();
        endpoint.cluster.hash(&mut h);
        endpoint.path.hash(&mut h);
        endpoint.authority.hash(&mut h);
        self.identity.hash(&mut h);
        h.finish()
    }

    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
}

/// Builds the POST to the token endpoint.
pub fn build_request(endpoint: &Endpoint, p: &Params) -> TokenRequest {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if !p.scopes.is_empty() {
        form.append_pair("scope", &p.scopes.join(" "));
    }
    if let Some(aud) = p.audience {
        form.append_pair("audience", aud);
    }
    if let Some(res) = p.resource {
        form.append_pair("resource", res);
    }
    for (k, v) in p.extra {
        form.append_pair(k, v);
    }
    let params = form.finish();
    let identity = format!("{}\n{params}", p.client_id);
    let mut headers = vec![
        (":method".to_owned(), "POST".to_owned()),
        (":path".to_owned(), endpoint.path.clone()),
        (":authority".to_owned(), endpoint.authority.clone()),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("accept".to_owned(), "application/json".to_owned()),
    ];
    match p.auth {
        ClientAuth::ClientSecretBasic => {
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
            let user = form_component(p.client_id);
            let pass = form_component(p.client_secret);
            let basic = STANDARD.encode(format!("{user}:{pass}"));
            headers.push(("authorization".to_owned(), format!("Basic {basic}")));
        }
        ClientAuth::ClientSecretPost => {}
    }
    let body = match p.auth {
        ClientAuth::ClientSecretBasic => params,
        ClientAuth::ClientSecretPost => form_urlencoded::Serializer::for_suffix(params, 0)
            .append_pair("client_id", p.client_id)
            .append_pair("client_secret", p.client_secret)
            .finish(),
    };
    TokenRequest {
        headers,
        body: body.into_bytes(),
        identity,
    }
}

fn form_component(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A token from a successful response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub access_token: String,
    pub token_type: String,
    /// The lifetime used: the response's `expires_in`, or the default when
    /// it has none, at most [`ExpiresIn::max_s`].
    pub expires_in_s: u64,
    /// Whether the response's `expires_in` was over the maximum.
    pub capped: bool,
}

/// How a response's `expires_in` becomes the token's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiresIn {
    /// Used when the response has no `expires_in`.
    pub default_s: u64,
    /// A longer `expires_in` is cut to this, so a token is fetched again at
    /// least this often.
    pub max_s: u64,
}

/// The error codes of RFC 6749 §5.2; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    Other,
}

impl OAuthCode {
    pub const ALL: [OAuthCode; 7] = [
        OAuthCode::InvalidRequest,
        OAuthCode::InvalidClient,
        OAuthCode::InvalidGrant,
        OAuthCode::UnauthorizedClient,
        OAuthCode::UnsupportedGrantType,
        OAuthCode::InvalidScope,
        OAuthCode::Other,
    ];

    fn parse(code: &str) -> OAuthCode {
        OAuthCode::ALL
            .into_iter()
            .find(|c| c.as_str() == code)
            .unwrap_or(OAuthCode::Other)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OAuthCode::InvalidRequest => "invalid_request",
            OAuthCode::InvalidClient => "invalid_client",
            OAuthCode::InvalidGrant => "invalid_grant",
            OAuthCode::UnauthorizedClient => "unauthorized_client",
            OAuthCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthCode::InvalidScope => "invalid_scope",
            OAuthCode::Other => "other",
        }
    }
}

/// Why a fetch failed. [`FetchError::reason`] is the metric dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The call could not be started (e.g. unknown cluster).
    Dispatch,
    /// No response: timeout, connection failure or reset.
    NoResponse,
    TooLarge {
        size: usize,
        max: usize,
    },
    /// A non-200 response without an RFC 6749 error body.
    HttpStatus(u32),
    /// An RFC 6749 §5.2 error response.
    OAuth {
        status: u32,
        code: OAuthCode,
        /// The `error` string as sent (sanitized, bounded), for logs.
        error: String,
        description: Option<String>,
    },
    InvalidResponse(&'static str),
    UnsupportedTokenType(String),
}

impl FetchError {
    /// Every reason, for defining metrics up front.
    pub const REASONS: [&'static str; 13] = [
        "dispatch_failed",
        "no_response",
        "too_large",
        "http_status",
        "invalid_response",
        "unsupported_token_type",
        "oauth_invalid_request",
        "oauth_invalid_client",
        "oauth_invalid_grant",
        "oauth_unauthorized_client",
        "oauth_unsupported_grant_type",
        "oauth_invalid_scope",
        "oauth_other",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Dispatch => "dispatch_failed",
            FetchError::NoResponse => "no_response",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::HttpStatus(_) => "http_status",
            FetchError::InvalidResponse(_) => "invalid_response",
            FetchError::UnsupportedTokenType(_) => "unsupported_token_type",
            FetchError::OAuth { code, .. } => match code {
                OAuthCode::InvalidRequest => "oauth_invalid_request",
                OAuthCode::InvalidClient => "oauth_invalid_client",
                OAuthCode::InvalidGrant => "oauth_invalid_grant",
                OAuthCode::UnauthorizedClient => "oauth_unauthorized_client",
                OAuthCode::UnsupportedGrantType => "oauth_unsupported_grant_type",
                OAuthCode::InvalidScope => "oauth_invalid_scope",
                OAuthCode::Other => "oauth_other",
            },
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Dispatch => write!(f, "cannot call the token endpoint's cluster"),
            FetchError::NoResponse => {
                write!(f, "no response (timeout, connection failure or reset)")
            }
            FetchError::TooLarge { size, max } => {
                write!(
                    f,
                    "response of {size} bytes exceeds max_response_bytes {max}"
                )
            }
            FetchError::HttpStatus(s) => write!(f, "HTTP status {s} without an OAuth error"),
            FetchError::OAuth {
                status,
                error,
                description,
                ..
            } => {
                write!(f, "HTTP status {status}, error '{error}'")?;
                if let Some(d) = description {
                    write!(f, ": {d}")?;
                }
                Ok(())
            }
            FetchError::InvalidResponse(why) => write!(f, "invalid token response: {why}"),
            FetchError::UnsupportedTokenType(t) => {
                write!(f, "token_type '{t}' is not one of token_types")
            }
        }
    }
}

/// Longest `error`/`error_description` kept for logs.
const MAX_LOGGED_TEXT: usize = 200;

/// Keeps printable ASCII only and bounds the length: these strings come from
/// the network and go to logs.
fn loggable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_LOGGED_TEXT)
        .collect()
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    error_description: Option<String>,
}

/// Validates a token endpoint response. `accepted_types` are lower-case.
pub fn parse_response(
    status: Option<u32>,
    body: &[u8],
    accepted_types: &[String],
    expires_in: ExpiresIn,
) -> Result<Token, FetchError> {
    let status = status.ok_or(FetchError::NoResponse)?;
    if status != 200 {
        return Err(match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => FetchError::OAuth {
                status,
                code: OAuthCode::parse(&e.error),
                error: loggable(&e.error),
                description: e.error_description.as_deref().map(loggable),
            },
            Err(_) => FetchError::HttpStatus(status),
        });
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| FetchError::InvalidResponse("the body is not JSON"))?;
    let obj = value
        .as_object()
        .ok_or(FetchError::InvalidResponse("the body is not a JSON object"))?;
    let access_token = match obj.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(_) => {
            return Err(FetchError::InvalidResponse(
                "access_token is not a non-empty string",
            ))
        }
        None => return Err(FetchError::InvalidResponse("access_token is missing")),
    };
    // The token goes into a header as is: no CR/LF/NUL, no controls or spaces.
    if value_problem(access_token.as_bytes(), usize::MAX).is_some()
        || !access_token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(FetchError::InvalidResponse(
            "access_token has characters a header value cannot carry",
        ));
    }
    let token_type = match obj.get("token_type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(FetchError::InvalidResponse("token_type is not a string")),
        None => return Err(FetchError::InvalidResponse("token_type is missing")),
    };
    if !accepted_types.contains(&token_type.to_ascii_lowercase()) {
        return Err(FetchError::UnsupportedTokenType(loggable(&token_type)));
    }
    let expires_in_s = match obj.get("expires_in") {
        None | Some(Value::Null) => expires_in.default_s,
        Some(Value::Number(n)) => n.as_u64().ok_or(FetchError::InvalidResponse(
            "expires_in is not a non-negative integer",
        ))?,
        // Some servers send it as a string.
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| FetchError::InvalidResponse("expires_in is not a non-negative integer"))?,
        Some(_) => {
            return Err(FetchError::InvalidResponse(
                "expires_in is not a non-negative integer",
            ))
        }
    };
    if expires_in_s == 0 {
        return Err(FetchError::InvalidResponse("expires_in is 0"));
    }
    Ok(Token {
        access_token,
        token_type,
        expires_in_s: expires_in_s.min(expires_in.max_s),
        capped: expires_in_s > expires_in.max_s,
    })
}
