//! Bearer tokens for the bench request: minted with the fixture keys of
//! `filters/jwt-auth/testdata/` before a suite runs, and a generated wrk Lua
//! script that sends a different one with every request.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::time::Instant;

use jsonwebtoken::{encode, Algorithm, Header};
use pwf_tests::jwt::{demo_claims, TestKey};
use serde::Deserialize;
use serde_json::json;

/// `"tokens"` of a suite or variant: the bench request carries a bearer
/// token, one of `count` distinct ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// JWS algorithm: RS256/384/512 and PS256/384/512 (key `rsa-1`), ES256
    /// (`ec256-1`), ES384 (`ec384-1`), EdDSA (`ed25519-1`), HS256/384/512
    /// (`hs.secret`).
    pub alg: String,
    /// Distinct tokens. One is sent as a plain header; more are rotated, one
    /// per request, by a generated wrk Lua script.
    #[serde(default = "one")]
    pub count: usize,
    /// Request header carrying the token, and the text before it.
    #[serde(default = "default_header")]
    pub header: String,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn key_for(alg: Algorithm) -> Option<TestKey> {
    use Algorithm::*;
    Some(match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => TestKey::Rsa,
        ES256 => TestKey::Ec256,
        ES384 => TestKey::Ec384,
        EdDSA => TestKey::Ed25519,
        HS256 | HS384 | HS512 => TestKey::Hmac,
        _ => return None,
    })
}

fn one() -> usize {
    1
}
fn default_header() -> String {
    "authorization".into()
}
fn default_prefix() -> String {
    "Bearer ".into()
}

impl Tokens {
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::from_str(&self.alg)
            .unwrap_or_else(|_| panic!("tokens: unknown alg {:?}", self.alg))
    }

    /// The fixture key that signs `alg`.
    pub fn key(&self) -> TestKey {
        key_for(self.algorithm())
            .unwrap_or_else(|| panic!("tokens: no fixture key for alg {:?}", self.alg))
    }

    /// Checks the spec without minting anything.
    pub fn check(&self) -> Result<(), String> {
        let alg =
            Algorithm::from_str(&self.alg).map_err(|_| format!("unknown alg {:?}", self.alg))?;
        key_for(alg).ok_or_else(|| format!("no fixture key for alg {:?}", self.alg))?;
        if self.count == 0 {
            return Err("count must be at least 1".into());
        }
        if self.header.is_empty() || self.header.contains([':', ' ', '\r', '\n']) {
            return Err(format!("invalid header name {:?}", self.header));
        }
        Ok(())
    }

    /// The `name: value` request header carrying `token`.
    pub fn header_line(&self, token: &str) -> String {
        format!("{}: {}{token}", self.header, self.prefix)
    }
}

/// Token `i` of a pool: subject `bench-<i>`, issuer
/// `https://demo.proxy-wasm-filters.local`, audience `api`, valid for an hour.
pub fn subject(i: usize) -> String {
    format!("bench-{i}")
}

/// The minted pools of a suite (each distinct spec is minted once, so two
/// variants with the same spec get the same tokens) and their wrk scripts.
pub struct Pools {
    dir: tempfile::TempDir,
    pools: HashMap<Tokens, Rc<Pool>>,
}

/// `count` tokens, and the wrk script rotating them (when there are several).
pub struct Pool {
    pub spec: Tokens,
    pub tokens: Vec<String>,
    pub script: Option<PathBuf>,
}

impl Pool {
    /// The first token's request header (verification uses it).
    pub fn first_header(&self) -> String {
        self.spec.header_line(&self.tokens[0])
    }

    pub fn last_header(&self) -> String {
        self.spec.header_line(self.tokens.last().unwrap())
    }
}

impl Pools {
    pub fn new() -> Pools {
        Pools {
            dir: tempfile::Builder::new()
                .prefix("pwf-bench-tokens-")
                .tempdir()
                .expect("temp dir for wrk scripts"),
            pools: HashMap::new(),
        }
    }

    pub fn get(&mut self, spec: &Tokens) -> Rc<Pool> {
        if let Some(p) = self.pools.get(spec) {
            return p.clone();
        }
        if let Err(e) = spec.check() {
            panic!("tokens {spec:?}: {e}");
        }
        let started = Instant::now();
        let tokens = mint(spec);
        let script = (tokens.len() > 1).then(|| {
            let path = self
                .dir
                .path()
                .join(format!("tokens-{}.lua", self.pools.len()));
            write_script(&path, spec, &tokens);
            path
        });
        eprintln!(
            "minted {} {} token(s) in {:.1} s",
            tokens.len(),
            spec.alg,
            started.elapsed().as_secs_f64()
        );
        let pool = Rc::new(Pool {
            spec: spec.clone(),
            tokens,
            script,
        });
        self.pools.insert(spec.clone(), pool.clone());
        pool
    }
}

/// Signs `spec.count` tokens; token `i` has subject [`subject`]`(i)`.
pub fn mint(spec: &Tokens) -> Vec<String> {
    let key = spec.key();
    let encoding_key = key.encoding_key();
    let mut header = Header::new(spec.algorithm());
    header.kid = key.kid().map(str::to_string);
    (0..spec.count)
        .map(|i| {
            let claims = demo_claims(&subject(i), json!({}));
            encode(&header, &claims, &encoding_key).expect("sign a bench token")
        })
        .collect()
}

/// A Lua string literal.
pub fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => write!(out, "\\{b:03}").unwrap(),
        }
    }
    out.push('"');
    out
}

/// The wrk script: `init` builds one request per token (wrk's own path and
/// `-H` headers plus the token header), `request` returns the next one, so
/// consecutive requests carry different tokens and wrk does no per-request
/// formatting.
pub fn script(spec: &Tokens, tokens: &[String]) -> String {
    let mut s = String::from(
        "-- Generated by the bench binary (tests/src/bench/tokens.rs): rotates bearer tokens.\n",
    );
    writeln!(s, "local header = {}", lua_string(&spec.header)).unwrap();
    writeln!(s, "local prefix = {}", lua_string(&spec.prefix)).unwrap();
    s += "local tokens = {\n";
    for t in tokens {
        writeln!(s, "  {},", lua_string(t)).unwrap();
    }
    s += "}\n";
    s += r#"local requests = {}
local i = 0

function init(args)
  for k, token in ipairs(tokens) do
    local headers = {}
    for name, value in pairs(wrk.headers) do
      headers[name] = value
    end
    headers[header] = prefix .. token
    requests[k] = wrk.format(nil, wrk.path, headers)
  end
end

function request()
  i = i % #requests + 1
  return requests[i]
end
"#;
    s
}

fn write_script(path: &Path, spec: &Tokens, tokens: &[String]) {
    std::fs::write(path, script(spec, tokens))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(alg: &str, count: usize) -> Tokens {
        Tokens {
            alg: alg.into(),
            count,
            header: default_header(),
            prefix: default_prefix(),
        }
    }

    #[test]
    fn lua_strings_are_escaped() {
        assert_eq!(lua_string("a.b-c_d"), "\"a.b-c_d\"");
        assert_eq!(lua_string("q\"\\\n"), "\"q\\\"\\\\\\010\"");
    }

    #[test]
    fn tokens_are_distinct_and_use_the_fixture_key() {
        for alg in ["RS256", "ES256"] {
            let tokens = mint(&spec(alg, 3));
            assert_eq!(tokens.len(), 3);
            assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2]);
            let header = jsonwebtoken::decode_header(&tokens[2]).unwrap();
            assert_eq!(format!("{:?}", header.alg), alg);
            assert_eq!(header.kid.as_deref(), spec(alg, 1).key().kid());
        }
    }

    #[test]
    fn script_lists_every_token_once() {
        let s = script(&spec("RS256", 2), &["t1".into(), "t2".into()]);
        assert!(s.contains("  \"t1\",\n  \"t2\",\n}"));
        assert!(s.contains("local header = \"authorization\""));
        assert!(s.contains("local prefix = \"Bearer \""));
        assert!(s.contains("function request()"));
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(spec("RS256", 1).check().is_ok());
        assert!(spec("none", 1).check().is_err());
        assert!(spec("RS256", 0).check().is_err());
        let mut s = spec("RS256", 1);
        s.header = "a b".into();
        assert!(s.check().is_err());
    }
}
