//! One JSON error format for every filter's local replies:
//! `{"error":"<code>","message":"<text>","status":<http status>}` with
//! `content-type: application/json`.

use crate::host;

/// The body of a local reply. `code` is a stable machine-readable string such as
/// `missing_token`; `message` is for humans and must never contain secrets.
pub fn json_error_body(status: u32, code: &str, message: &str) -> String {
    serde_json::json!({ "error": code, "message": message, "status": status }).to_string()
}

/// Sends a JSON error as a local reply. `extra_headers` are added after content-type.
pub fn send_json_error(status: u32, code: &str, message: &str, extra_headers: &[(&str, &str)]) {
    let body = json_error_body(status, code, message);
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra_headers.len() + 1);
    headers.push(("content-type", "application/json"));
    headers.extend_from_slice(extra_headers);
    host::send_local_reply(status, &headers, body.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_escaping() {
        let body = json_error_body(401, "missing_token", "no \"token\"");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "missing_token");
        assert_eq!(v["message"], "no \"token\"");
        assert_eq!(v["status"], 401);
    }
}
