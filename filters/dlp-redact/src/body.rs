//! How a body is handled, decided from the message's headers before the first
//! chunk arrives, and the JSON errors the filter answers with.

use crate::config::{OverLimit, Policy, Profile, Unreadable};
use crate::scanner::DetectorSet;

/// Which message a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// The body-related headers of a message.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyHeaders<'a> {
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: Option<&'a [u8]>,
    pub content_length: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Not scanned: scope off, no body, or a content type not selected.
    Skip,
    /// Not scanned because of its content-encoding (counted).
    SkipEncoding,
    /// Refused: unreadable content-encoding and `on_unreadable_encoding: block`.
    RejectEncoding,
    /// Refused early: Content-Length over `max_buffer_bytes`, buffering needed, fail closed.
    RejectTooLarge,
    /// Scanned chunk by chunk. `drop_content_length` when redaction may
    /// change the length; `over_limit` when buffering was needed but the
    /// declared length is over the limit (`on_over_limit: stream`).
    Stream {
        drop_content_length: bool,
        over_limit: bool,
    },
    /// Buffered whole (block actions or JSON field mode), then scanned.
    Buffer {
        json: bool,
        drop_content_length: bool,
    },
}

/// Decides what to do with a body. `has_body` is false when the headers ended the stream.
pub fn plan(
    policy: &Policy,
    profile: &Profile,
    direction: Direction,
    has_body: bool,
    headers: BodyHeaders,
) -> BodyPlan {
    let scope = match direction {
        Direction::Request => &profile.request,
        Direction::Response => &profile.response,
    };
    if !scope.body || !has_body {
        return BodyPlan::Skip;
    }
    let content_type = headers.content_type.unwrap_or_default();
    if !policy.scans_content_type(content_type) {
        return BodyPlan::Skip;
    }
    if headers.content_encoding.is_some_and(|e| !is_identity(e)) {
        return match policy.on_unreadable_encoding {
            Unreadable::Skip => BodyPlan::SkipEncoding,
            Unreadable::Block => BodyPlan::RejectEncoding,
        };
    }
    let json = policy.json_fields.is_some() && is_json(content_type);
    let must_buffer = json || scope.buffer || blocks(policy, profile.active);
    if must_buffer {
        let declared = headers
            .content_length
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let over = declared.is_some_and(|n| n > policy.max_buffer_bytes as u64);
        return match (over, policy.on_over_limit) {
            (true, OverLimit::Block) => BodyPlan::RejectTooLarge,
            (true, OverLimit::Stream) => BodyPlan::Stream {
                drop_content_length: !preserves_length(policy, profile.active),
                over_limit: true,
            },
            (false, _) => BodyPlan::Buffer {
                json,
                drop_content_length: json || !preserves_length(policy, profile.active),
            },
        };
    }
    BodyPlan::Stream {
        drop_content_length: !preserves_length(policy, profile.active),
        over_limit: false,
    }
}

fn blocks(policy: &Policy, active: DetectorSet) -> bool {
    active.ids().any(|id| {
        policy
            .catalog
            .detector(id)
            .is_some_and(|d| d.action == crate::redact::Action::Block)
    })
}

/// Whether every active action keeps the body's length (then Content-Length stays valid).
pub fn preserves_length(policy: &Policy, active: DetectorSet) -> bool {
    active.ids().all(|id| {
        policy
            .catalog
            .detector(id)
            .is_none_or(|d| d.action.preserves_length())
    })
}

fn is_identity(encoding: &[u8]) -> bool {
    let trimmed = encoding.trim_ascii();
    trimmed.is_empty() || trimmed.eq_ignore_ascii_case(b"identity")
}

/// `application/json` or a `+json` type, parameters ignored.
pub fn is_json(content_type: &[u8]) -> bool {
    let media = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media.eq_ignore_ascii_case(b"application/json")
        || (media.len() > 5
            && media
                .get(media.len() - 5..)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"+json")))
}

/// A refusal: status, stable error code and message (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u32,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn sensitive(direction: Direction, what: &str) -> Self {
        Self {
            status: status(direction, 403),
            code: "sensitive_data",
            message: format!("{} blocked: contains {what}", direction.as_str()),
        }
    }

    pub fn too_large(direction: Direction, limit: usize) -> Self {
        Self {
            status: status(direction, 413),
            code: "body_too_large",
            message: format!(
                "{} body is larger than the {limit} bytes the data-loss filter can inspect",
                direction.as_str()
            ),
        }
    }

    pub fn encoding(direction: Direction) -> Self {
        Self {
            status: status(direction, 415),
            code: "unsupported_encoding",
            message: format!(
                "{} body has a content-encoding the data-loss filter cannot inspect",
                direction.as_str()
            ),
        }
    }

    pub fn invalid_json(direction: Direction) -> Self {
        Self {
            status: status(direction, 400),
            code: "invalid_json",
            message: format!("{} body is not valid JSON", direction.as_str()),
        }
    }

    pub fn body(&self) -> String {
        pwf_shared::reply::json_error_body(self.status, self.code, &self.message)
    }
}

/// Requests get the given client error; any refused response becomes a 502.
fn status(direction: Direction, request_status: u32) -> u32 {
    match direction {
        Direction::Request => request_status,
        Direction::Response => 502,
    }
}
