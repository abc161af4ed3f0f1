//! What the filter decides, without host calls: which requests match and
//! which headers their responses get.

use pwf_shared::headers::HeaderList;
use pwf_shared::matcher::RequestMatcher;

/// The validated configuration, shared by every request of a VM.
#[derive(Debug, Clone)]
pub struct Decorator {
    /// `None`: every request matches, and the glue need not read the request headers.
    matcher: Option<RequestMatcher>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Decorator {
    pub fn new(matcher: Option<RequestMatcher>, headers: Vec<(String, Vec<u8>)>) -> Self {
        Self { matcher, headers }
    }

    /// Whether deciding needs the request headers.
    pub fn reads_request(&self) -> bool {
        self.matcher.is_some()
    }

    /// Whether the response to `request` gets the headers.
    pub fn matches(&self, request: &HeaderList) -> bool {
        self.matcher.as_ref().is_none_or(|m| m.matches(request))
    }

    /// The headers to set on the response of a matching request.
    pub fn response_headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }
}
