//! proxy-wasm glue: picks the request's profile, redacts selected headers and
//! query parameters, then streams or buffers each body as [`body::plan`]
//! decides. Host calls per message: one header-map read, writes only for
//! what changed, one body read and at most one body write per chunk.

use crate::body::{self, BodyHeaders, BodyPlan, Direction, Refusal};
use crate::config::{Config, InvalidJson, OverLimit, Policy, Profile, Scope};
use crate::json_fields::redact_json;
use crate::query::redact_query;
use crate::redact::{Blocker, Pass, Report};
use crate::stream::Stream;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};
use pwf_shared::host::{self, HeaderMapType};
use pwf_shared::metrics::{Counter, Histogram};
use pwf_shared::HeaderList;
use std::cell::RefCell;
use std::rc::Rc;

const FILTER: &str = "dlp_redact";

struct Metrics {
    detected: Vec<Counter>,
    redacted: Counter,
    blocked: Counter,
    bodies_scanned: Counter,
    bytes_scanned: Counter,
    skipped_encoding: Counter,
    over_limit: Counter,
    invalid_json: Counter,
    json_fields_redacted: Counter,
    trailers_truncated: Counter,
    scan_us: Histogram,
    stream_peak_bytes: Histogram,
}

impl Metrics {
    fn define(policy: &Policy) -> Self {
        let name = |m: &str| format!("{FILTER}.{m}");
        Self {
            detected: policy
                .catalog
                .detectors()
                .iter()
                .map(|d| Counter::define(&name(&format!("detected.{}", d.name))))
                .collect(),
            redacted: Counter::define(&name("redacted")),
            blocked: Counter::define(&name("blocked")),
            bodies_scanned: Counter::define(&name("bodies_scanned")),
            bytes_scanned: Counter::define(&name("bytes_scanned")),
            skipped_encoding: Counter::define(&name("skipped_encoding")),
            over_limit: Counter::define(&name("over_limit")),
            invalid_json: Counter::define(&name("invalid_json")),
            json_fields_redacted: Counter::define(&name("json_fields_redacted")),
            trailers_truncated: Counter::define(&name("trailers_truncated")),
            scan_us: Histogram::define(&name("scan_us")),
            stream_peak_bytes: Histogram::define(&name("stream_peak_bytes")),
        }
    }

    /// Counts what `report` found in one part (`headers`, `body`) of a
    /// message, and logs it by detector name only.
    fn record(&self, policy: &Policy, report: &Report, direction: Direction, part: &str) {
        let direction = direction.as_str();
        for &(id, n) in &report.found {
            if let Some(c) = self.detected.get(id) {
                c.add(n);
            }
            if let Some(d) = policy.catalog.detector(id) {
                if d.action == crate::redact::Action::Alert {
                    log::warn!(
                        "{FILTER}: alert: {} found {n} time(s) in {direction} {part}",
                        d.name
                    );
                } else {
                    log::debug!(
                        "{FILTER}: {} found {n} time(s) in {direction} {part}",
                        d.name
                    );
                }
            }
        }
        self.redacted.add(report.redacted);
    }
}

struct Shared {
    policy: Policy,
    metrics: Metrics,
    /// Where a streamed chunk is redacted into, reused by every chunk of
    /// every stream of this VM (one callback at a time): memory that stays
    /// in the CPU's caches, where a fresh allocation per chunk does not.
    scratch: RefCell<Vec<u8>>,
}

/// A larger scratch buffer (after an unusually large chunk) is given back.
const SCRATCH_KEPT: usize = 256 * 1024;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let env = |name: &str| std::env::var(name).ok();
        let policy = host::load_configuration(FILTER, |c| Config::load(c, &env));
        match policy {
            Some(policy) => {
                let metrics = Metrics::define(&policy);
                self.shared = Some(Rc::new(Shared {
                    policy,
                    metrics,
                    scratch: RefCell::default(),
                }));
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Redact {
            shared,
            profile: None,
            request: Body::Off,
            response: Body::Off,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Which profile a request got.
#[derive(Debug, Clone, Copy)]
enum ProfileRef {
    Defaults,
    Rule(usize),
}

/// The state of one body.
enum Body {
    Off,
    Stream {
        stream: Stream,
        report: Report,
        scan_ns: u64,
    },
    /// Whole body buffered in Envoy until end of stream.
    Buffer {
        json: bool,
    },
    /// The message was replaced by an error: the first chunk becomes the
    /// error body, the rest is dropped.
    Replace {
        error: Option<Vec<u8>>,
    },
}

struct Redact {
    shared: Rc<Shared>,
    profile: Option<ProfileRef>,
    request: Body,
    response: Body,
}

impl Context for Redact {}

fn header_map(direction: Direction) -> HeaderMapType {
    match direction {
        Direction::Request => HeaderMapType::HttpRequestHeaders,
        Direction::Response => HeaderMapType::HttpResponseHeaders,
    }
}

fn body_buffer(direction: Direction) -> BufferType {
    match direction {
        Direction::Request => BufferType::HttpRequestBody,
        Direction::Response => BufferType::HttpResponseBody,
    }
}

/// Reads "everything" from a buffer whose size the callback did not give.
const BUFFERED_MAX: usize = u32::MAX as usize;

fn read_body(direction: Direction, size: usize) -> Vec<u8> {
    host::buffer(body_buffer(direction), size)
}

fn write_body(direction: Direction, size: usize, value: &[u8]) {
    if let Err(status) = pwf_shared::abi::set_buffer(body_buffer(direction), 0, size, value) {
        log::warn!(
            "{FILTER}: cannot write {} body: {status:?}",
            direction.as_str()
        );
    }
}

/// The profile a request got; None when a `skip` rule matched or the
/// request headers never reached the filter.
fn profile_of(shared: &Shared, profile: Option<ProfileRef>) -> Option<&Profile> {
    match profile? {
        ProfileRef::Defaults => Some(&shared.policy.defaults),
        ProfileRef::Rule(i) => shared.policy.rules.get(i)?.profile.as_ref(),
    }
}

impl Redact {
    fn body_mut(&mut self, direction: Direction) -> &mut Body {
        match direction {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    /// Redacts the scope's headers (and query, on requests) in `headers`.
    fn redact_headers(pass: &Pass, scope: &Scope, headers: &mut HeaderList, report: &mut Report) {
        for name in &scope.headers {
            let values: Vec<Vec<u8>> = headers.get_all(name).map(<[u8]>::to_vec).collect();
            let mut changed = false;
            let redacted: Vec<Vec<u8>> = values
                .into_iter()
                .map(|v| match pass.redact_value(&v, report) {
                    Some(new) => {
                        changed = true;
                        new
                    }
                    None => v,
                })
                .collect();
            if changed {
                headers.replace_all(name, redacted);
            }
        }
        let path = headers.get(":path").unwrap_or_default();
        if let Some(new_path) = redact_query(path, &scope.query, pass, report) {
            headers.set(":path", new_path);
        }
    }

    /// Headers of one direction: redaction, then the body plan. Returns the action.
    fn on_headers(&mut self, direction: Direction, end_of_stream: bool) -> Action {
        let shared = Rc::clone(&self.shared);
        let policy = &shared.policy;
        let map = header_map(direction);
        let mut headers = host::headers(map);
        if direction == Direction::Request {
            self.profile = match policy
                .rules
                .iter()
                .position(|r| r.matcher.matches(&headers))
            {
                Some(i) => Some(ProfileRef::Rule(i)),
                None => Some(ProfileRef::Defaults),
            };
        }
        let Some(profile) = profile_of(&shared, self.profile) else {
            return Action::Continue;
        };
        let Some(pass) = shared.policy.pass(profile) else {
            return Action::Continue;
        };
        let scope = match direction {
            Direction::Request => &profile.request,
            Direction::Response => &profile.response,
        };

        if direction == Direction::Request
            && profile.response.body
            && policy.identity_encoding
            && headers.contains("accept-encoding")
        {
            // A compressed response could not be scanned.
            headers.remove("accept-encoding");
        }
        let mut report = Report::default();
        Self::redact_headers(&pass, scope, &mut headers, &mut report);
        shared.metrics.record(policy, &report, direction, "headers");
        if let Some(blocker) = report.block {
            // A refused response still sends its headers: redacted ones only.
            if headers.is_changed() {
                host::write_back(map, &headers);
            }
            return self.refuse(
                direction,
                &Refusal::sensitive(direction, &self.blocker_name(blocker)),
                !end_of_stream,
            );
        }

        let plan = body::plan(
            policy,
            profile,
            direction,
            !end_of_stream,
            BodyHeaders {
                content_type: headers.get("content-type"),
                content_encoding: headers.get("content-encoding"),
                content_length: headers.get("content-length"),
            },
        );
        match plan {
            BodyPlan::Skip => {}
            BodyPlan::SkipEncoding => shared.metrics.skipped_encoding.inc(),
            BodyPlan::RejectEncoding => {
                host::write_back(map, &headers);
                return self.refuse(direction, &Refusal::encoding(direction), true);
            }
            BodyPlan::RejectTooLarge => {
                shared.metrics.over_limit.inc();
                host::write_back(map, &headers);
                return self.refuse(
                    direction,
                    &Refusal::too_large(direction, policy.max_buffer_bytes),
                    true,
                );
            }
            BodyPlan::Stream {
                drop_content_length,
                over_limit,
            } => {
                if over_limit {
                    shared.metrics.over_limit.inc();
                }
                if drop_content_length {
                    headers.remove("content-length");
                }
                *self.body_mut(direction) = Body::Stream {
                    stream: Stream::default(),
                    report: Report::default(),
                    scan_ns: 0,
                };
            }
            BodyPlan::Buffer {
                json,
                drop_content_length,
            } => {
                // The headers go on now: in proxy-wasm a paused header phase
                // also stops body delivery to the filter (the host turns it
                // into StopAllIteration), so a body cannot be read while its
                // headers are held. The body itself is held until it is whole.
                if drop_content_length {
                    headers.remove("content-length");
                }
                *self.body_mut(direction) = Body::Buffer { json };
            }
        }
        if headers.is_changed() {
            host::write_back(map, &headers);
        }
        Action::Continue
    }

    fn blocker_name(&self, blocker: Blocker) -> String {
        match blocker {
            Blocker::Detector(id) => self
                .shared
                .policy
                .catalog
                .detector(id)
                .map(|d| d.name.clone())
                .unwrap_or_default(),
            Blocker::JsonField => "a blocked JSON field".to_string(),
        }
    }

    /// Refuses the message. A request gets a local reply. A response is
    /// rewritten in place (its headers are still held): status, content
    /// headers, and the body from the next chunk on.
    fn refuse(&mut self, direction: Direction, refusal: &Refusal, body_follows: bool) -> Action {
        self.shared.metrics.blocked.inc();
        let body = refusal.body();
        match direction {
            Direction::Request => {
                pwf_shared::reply::send_json_error(
                    refusal.status,
                    refusal.code,
                    &refusal.message,
                    &[],
                );
                Action::Pause
            }
            Direction::Response => {
                let map = HeaderMapType::HttpResponseHeaders;
                host::set_header(map, ":status", refusal.status.to_string().as_bytes());
                host::set_header(map, "content-type", b"application/json");
                host::remove_header(map, "content-encoding");
                // Without a body to replace, the error text cannot be sent: status only.
                let error = if body_follows {
                    body.into_bytes()
                } else {
                    Vec::new()
                };
                host::set_header(map, "content-length", error.len().to_string().as_bytes());
                self.response = Body::Replace { error: Some(error) };
                Action::Continue
            }
        }
    }

    fn on_body(&mut self, direction: Direction, size: usize, end_of_stream: bool) -> Action {
        log::trace!(
            "{FILTER}: {} body chunk: {size} bytes, end_of_stream={end_of_stream}",
            direction.as_str()
        );
        let shared = Rc::clone(&self.shared);
        let policy = &shared.policy;
        let Some(profile) = profile_of(&shared, self.profile) else {
            return Action::Continue;
        };
        let Some(pass) = shared.policy.pass(profile) else {
            return Action::Continue;
        };
        match std::mem::replace(self.body_mut(direction), Body::Off) {
            Body::Off => Action::Continue,
            Body::Replace { error } => {
                write_body(direction, size, &error.unwrap_or_default());
                *self.body_mut(direction) = Body::Replace { error: None };
                Action::Continue
            }
            Body::Stream {
                mut stream,
                mut report,
                mut scan_ns,
            } => {
                let chunk = read_body(direction, size);
                let started = host::unix_ns();
                let mut scratch = shared.scratch.try_borrow_mut().ok();
                let mut fresh = Vec::new();
                let out = match scratch.as_deref_mut() {
                    Some(buffer) => buffer,
                    None => &mut fresh,
                };
                out.clear();
                let unchanged = stream.push(&pass, &chunk, end_of_stream, out, &mut report);
                scan_ns = scan_ns.saturating_add(host::unix_ns().saturating_sub(started));
                if !unchanged {
                    write_body(direction, size, out);
                }
                out.clear();
                out.shrink_to(SCRATCH_KEPT);
                drop(scratch);
                if end_of_stream {
                    self.finish(direction, &report, stream.scanned(), stream.peak(), scan_ns);
                } else {
                    *self.body_mut(direction) = Body::Stream {
                        stream,
                        report,
                        scan_ns,
                    };
                }
                Action::Continue
            }
            Body::Buffer { json } => {
                if size > policy.max_buffer_bytes {
                    shared.metrics.over_limit.inc();
                    return match policy.on_over_limit {
                        OverLimit::Block => self.refuse_buffered(
                            direction,
                            size,
                            &Refusal::too_large(direction, policy.max_buffer_bytes),
                        ),
                        OverLimit::Stream => self.switch_to_stream(direction, size, end_of_stream),
                    };
                }
                if !end_of_stream {
                    *self.body_mut(direction) = Body::Buffer { json };
                    return Action::Pause;
                }
                self.finish_buffered(&pass, direction, size, json)
            }
        }
    }

    /// The whole body is in: redact it, or refuse the message.
    fn finish_buffered(
        &mut self,
        pass: &Pass,
        direction: Direction,
        size: usize,
        json: bool,
    ) -> Action {
        let shared = Rc::clone(&self.shared);
        let policy = &shared.policy;
        let body = read_body(direction, size);
        let started = host::unix_ns();
        let mut report = Report::default();
        let mut fields = 0u64;
        let (redacted, unchanged) = match (json, &policy.json_fields) {
            (true, Some(fields_cfg)) => {
                match redact_json(&body, fields_cfg, pass, &mut report, &mut fields) {
                    Ok(out) => {
                        let unchanged = out == body;
                        (out, unchanged)
                    }
                    Err(_) => {
                        shared.metrics.invalid_json.inc();
                        match policy.on_invalid_json {
                            InvalidJson::Block => {
                                return self.refuse_buffered(
                                    direction,
                                    size,
                                    &Refusal::invalid_json(direction),
                                )
                            }
                            InvalidJson::ScanAsText => scan_whole(pass, &body, &mut report),
                        }
                    }
                }
            }
            _ => scan_whole(pass, &body, &mut report),
        };
        let ns = host::unix_ns().saturating_sub(started);
        shared.metrics.json_fields_redacted.add(fields);
        self.finish(direction, &report, body.len() as u64, body.len(), ns);
        if let Some(blocker) = report.block {
            let refusal = Refusal::sensitive(direction, &self.blocker_name(blocker));
            return self.refuse_buffered(direction, size, &refusal);
        }
        if !unchanged {
            write_body(direction, size, &redacted);
        }
        Action::Continue
    }

    /// Refuses a message whose body is buffered. Its headers already went
    /// on, so for a response Envoy cannot send a new status: the local reply
    /// makes it abort the stream. No byte of the buffered body is sent.
    fn refuse_buffered(&mut self, direction: Direction, size: usize, refusal: &Refusal) -> Action {
        self.shared.metrics.blocked.inc();
        write_body(direction, size, b"");
        pwf_shared::reply::send_json_error(refusal.status, refusal.code, &refusal.message, &[]);
        Action::Pause
    }

    /// Over the buffer limit with `on_over_limit: stream`: the buffered bytes
    /// are the stream's first chunk; blocking now acts as tagging.
    fn switch_to_stream(
        &mut self,
        direction: Direction,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        // Content-Length was already dropped with the headers if the length may change.
        *self.body_mut(direction) = Body::Stream {
            stream: Stream::default(),
            report: Report::default(),
            scan_ns: 0,
        };
        self.on_body(direction, size, end_of_stream)
    }

    fn finish(&self, direction: Direction, report: &Report, scanned: u64, peak: usize, ns: u64) {
        let m = &self.shared.metrics;
        m.bodies_scanned.inc();
        m.bytes_scanned.add(scanned);
        m.scan_us.record(ns / 1000);
        m.stream_peak_bytes.record(peak as u64);
        m.record(&self.shared.policy, report, direction, "body");
    }

    /// Trailers end the stream without a final body chunk. A buffered body
    /// is still in Envoy's buffer and is finished here; bytes a stream holds
    /// back cannot be sent any more (the host offers no way to add body
    /// bytes at trailers), hence the `buffer` scope option.
    fn on_trailers(&mut self, direction: Direction) -> Action {
        let held = match std::mem::replace(self.body_mut(direction), Body::Off) {
            Body::Buffer { json } => {
                let shared = Rc::clone(&self.shared);
                let Some(pass) =
                    profile_of(&shared, self.profile).and_then(|p| shared.policy.pass(p))
                else {
                    return Action::Continue;
                };
                let size = read_body(direction, BUFFERED_MAX).len();
                return self.finish_buffered(&pass, direction, size, json);
            }
            Body::Stream { stream, .. } => stream.pending(),
            _ => 0,
        };
        if held > 0 {
            self.shared.metrics.trailers_truncated.inc();
            log::warn!(
                "{FILTER}: {} body ended with trailers; {held} held-back bytes dropped",
                direction.as_str()
            );
        }
        Action::Continue
    }
}

/// The redacted body, and whether it is the body unchanged.
fn scan_whole(pass: &Pass, body: &[u8], report: &mut Report) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(body.len());
    let unchanged = Stream::default().push(pass, body, true, &mut out, report);
    (out, unchanged)
}

impl HttpContext for Redact {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.on_headers(Direction::Request, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Request)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.on_headers(Direction::Response, end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Response)
    }
}
