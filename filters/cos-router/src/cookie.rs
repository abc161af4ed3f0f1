//! Cookies: reading one from the `cookie` request header, the anonymous id,
//! and its `Set-Cookie` line.

/// The value of cookie `name` in a `cookie` header (`a=1; b=2`): the first
/// pair with that exact name. Surrounding double quotes are removed
/// (RFC 6265 allows a quoted cookie value).
pub fn find<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (n, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        (trim(n) == name.as_bytes()).then(|| unquote(trim(v)))
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if *first != b' ' && *first != b'\t' {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if *last != b' ' && *last != b'\t' {
            break;
        }
        s = rest;
    }
    s
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// Shortest and longest anonymous id accepted from a client.
pub const MIN_ID_LEN: usize = 16;
pub const MAX_ID_LEN: usize = 64;

/// Whether a client's anonymous id cookie is usable: 16 to 64 characters of
/// `A-Z a-z 0-9 _ -`. Anything else is replaced by a new id.
pub fn valid_id(id: &[u8]) -> bool {
    (MIN_ID_LEN..=MAX_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A new anonymous id: 128 random bits as 32 lower-case hex digits.
pub fn new_id(high: u64, low: u64) -> String {
    format!("{high:016x}{low:016x}")
}

/// `SameSite` attribute of the anonymous id cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// Attributes of the anonymous id cookie; [`SetCookie::line`] renders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub max_age_s: u64,
    pub path: String,
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: Option<SameSite>,
}

impl SetCookie {
    /// Everything after the value, rendered once at configure time:
    /// `; Max-Age=31536000; Path=/; Secure; HttpOnly; SameSite=Lax`.
    pub fn attributes(&self) -> String {
        let mut out = format!("; Max-Age={}; Path={}", self.max_age_s, self.path);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        match self.same_site {
            Some(SameSite::Strict) => out.push_str("; SameSite=Strict"),
            Some(SameSite::Lax) => out.push_str("; SameSite=Lax"),
            Some(SameSite::None) => out.push_str("; SameSite=None"),
            None => {}
        }
        out
    }
}

/// Whether `name` can be a cookie name (an RFC 6265 token).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `value` can be a cookie `Path` or `Domain` attribute value.
pub fn valid_attribute(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b';')
}
