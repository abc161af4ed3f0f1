//! Prints an RS256 token for the demo provider (fixture key `rsa-1`).
//!
//! ```text
//! mint-token [SUB] [CLAIM=VALUE ...]     e.g.  mint-token alice plan=pro scope="api:read api:write"
//! ```

use serde_json::{Map, Value};

fn main() {
    let mut args = std::env::args().skip(1);
    let sub = args.next().unwrap_or_else(|| "demo-user".to_string());
    let mut extra = Map::new();
    for arg in args {
        let Some((k, v)) = arg.split_once('=') else {
            eprintln!("expected CLAIM=VALUE, got {arg:?}");
            std::process::exit(2);
        };
        extra.insert(k.to_string(), Value::String(v.to_string()));
    }
    println!("{}", pwf_tests::jwt::demo_token(&sub, Value::Object(extra)));
}
