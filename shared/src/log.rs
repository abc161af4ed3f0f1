//! Logging through the host, without secrets.
//!
//! Filters log with the `log` macros. Values that may be secret (tokens,
//! header values, claims, body content) are wrapped in [`Redacted`], which
//! prints only their length.

use std::fmt;

/// Forwards the `log` crate to the host at the host's current log level.
pub fn init() {
    let level = proxy_wasm::hostcalls::get_log_level().unwrap_or(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_log_level(level);
}

/// Displays as `<redacted N bytes>`: use it wherever a value might be sensitive.
pub struct Redacted<'a>(pub &'a [u8]);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_never_prints_the_value() {
        let shown = format!(
            "{} {:?}",
            Redacted(b"secret-token"),
            Redacted(b"secret-token")
        );
        assert_eq!(shown, "<redacted 12 bytes> <redacted 12 bytes>");
    }
}
