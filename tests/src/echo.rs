//! An in-process HTTP/1.1 echo upstream.
//!
//! Every request is answered with `200 application/json`:
//!
//! ```json
//! {
//!   "upstream": "<name>",
//!   "method": "POST",
//!   "path": "/a/b?x=1&y=%20",          // full request target, as received
//!   "query": {"x": "1", "y": " "},     // percent-decoded (form rules: '+' is a space);
//!                                      // a repeated key becomes an array of values
//!   "headers": {"x-a": "1", "x-b": ["1", "2"]},  // names lowercased; a repeated
//!                                      // header becomes an array, in received order
//!   "body": "..."                      // UTF-8, lossy
//! }
//! ```
//!
//! Header values and the body are converted lossily to UTF-8 in the JSON;
//! the exact bytes are available from [`EchoUpstream::requests`].
//!
//! Request headers that steer the reply (they are echoed too):
//!
//! - `x-echo-status: <code>`: reply with that status instead of 200;
//! - `x-echo-header-<name>: <value>`: add `<name>: <value>` to the response
//!   (repeatable);
//! - `x-echo-delay-ms: <ms>`: wait that long before replying.
//!
//! Headers set with [`EchoUpstreamBuilder::response_header`] are added to
//! every response.
//!
//! Why not `tiny_http`: Envoy forwards header values containing obs-text
//! (bytes 0x80-0xFF) to the upstream, and tiny_http rejects any non-ASCII
//! header line, so such requests would end in an upstream reset. This server
//! parses requests with `httparse` (which accepts obs-text) and decodes chunked
//! bodies with `chunked_transfer`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// Largest request head accepted, in bytes.
const MAX_HEAD: usize = 1 << 20;
/// Most request headers accepted.
const MAX_HEADERS: usize = 512;

/// A request as the echo upstream received it, with exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// Request method.
    pub method: String,
    /// Request target as received (path and query).
    pub path: String,
    /// Headers in received order, names lowercased, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// First value of header `name` (case-insensitive), lossily as UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// First value of header `name` (case-insensitive), as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Configures an [`EchoUpstream`] before starting it.
#[derive(Debug, Clone)]
pub struct EchoUpstreamBuilder {
    name: String,
    port: u16,
    headers: Vec<(String, String)>,
}

impl EchoUpstreamBuilder {
    /// Listen on this port of 127.0.0.1 (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Add this header to every response.
    pub fn response_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Binds and starts serving in background threads.
    pub fn start(self) -> EchoUpstream {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("echo upstream: bind 127.0.0.1:{}: {e}", self.port));
        let addr = listener
            .local_addr()
            .expect("local_addr of a bound listener");
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            headers: self.headers,
            stop: AtomicBool::new(false),
            received: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("echo-{}", self.name))
                .spawn(move || accept_loop(&listener, &shared))
                .expect("spawn echo upstream thread")
        };
        EchoUpstream {
            addr,
            shared,
            accept: Some(accept),
        }
    }
}

/// An HTTP/1.1 echo server on 127.0.0.1, running until dropped.
/// See the module docs for the reply format.
#[derive(Debug)]
pub struct EchoUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    headers: Vec<(String, String)>,
    stop: AtomicBool,
    received: Mutex<Vec<ReceivedRequest>>,
}

impl EchoUpstream {
    /// Starts an echo upstream named `name` on a free port.
    pub fn start(name: &str) -> Self {
        Self::builder(name).start()
    }

    /// A builder for an echo upstream named `name` (reported as `"upstream"`
    /// in every reply).
    pub fn builder(name: &str) -> EchoUpstreamBuilder {
        EchoUpstreamBuilder {
            name: name.to_owned(),
            port: 0,
            headers: Vec::new(),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// All requests received so far, in order of completion.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The most recent request received, if any.
    pub fn last_request(&self) -> Option<ReceivedRequest> {
        self.requests().pop()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Serves until the process ends (for the `echo-upstream` binary).
    pub fn join(mut self) {
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        let _ = std::thread::Builder::new()
            .name(format!("echo-{}-conn", shared.name))
            .spawn(move || serve_connection(stream, &shared));
    }
}

/// Serves keep-alive requests on one connection until it closes, fails, or
/// the upstream is stopped.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let (req, close) = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let body = format!("echo upstream: bad request: {e}\n");
                let _ = write!(
                    writer,
                    "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                return;
            }
        };
        let reply = build_reply(&req, shared);
        shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req);
        if writer.write_all(&reply).is_err() || close {
            return;
        }
    }
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Reads one request. `Ok(None)` on a clean EOF before a request starts.
/// Also returns whether the client asked to close the connection.
fn read_request(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<(ReceivedRequest, bool)>> {
    let mut head = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut head)?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(invalid("EOF inside the request head"));
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") || head == b"\r\n" {
            if head == b"\r\n" {
                head.clear(); // stray CRLF between requests
                continue;
            }
            break;
        }
        if head.len() > MAX_HEAD {
            return Err(invalid("request head too large"));
        }
    }

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(invalid("incomplete request head")),
        Err(e) => return Err(invalid(e.to_string())),
    }
    let method = parsed.method.unwrap_or_default().to_owned();
    let path = parsed.path.unwrap_or_default().to_owned();
    let http10 = parsed.version == Some(0);
    let headers: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();

    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
    };
    let chunked = value("transfer-encoding").is_some_and(|v| v.ends_with("chunked"));
    let mut body = Vec::new();
    if chunked {
        chunked_transfer::Decoder::new(&mut *reader).read_to_end(&mut body)?;
    } else if let Some(len) = value("content-length") {
        let len: u64 = len
            .parse()
            .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
        reader.by_ref().take(len).read_to_end(&mut body)?;
        if body.len() as u64 != len {
            return Err(invalid("EOF inside the request body"));
        }
    }
    let close = match value("connection") {
        Some(c) if c.contains("close") => true,
        Some(c) if c.contains("keep-alive") => false,
        _ => http10,
    };
    Ok(Some((
        ReceivedRequest {
            method,
            path,
            headers,
            body,
        },
        close,
    )))
}

/// Inserts `value` under `key`, turning repeated keys into arrays.
fn insert_multi(map: &mut Map<String, Value>, key: String, value: String) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, Value::String(value));
        }
        Some(Value::Array(items)) => items.push(Value::String(value)),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, Value::String(value)]);
        }
    }
}

/// The JSON document describing `req` (see the module docs).
fn echo_json(req: &ReceivedRequest, upstream: &str) -> Value {
    let mut query = Map::new();
    if let Some((_, q)) = req.path.split_once('?') {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            insert_multi(&mut query, k.into_owned(), v.into_owned());
        }
    }
    let mut headers = Map::new();
    for (name, value) in &req.headers {
        insert_multi(
            &mut headers,
            name.clone(),
            String::from_utf8_lossy(value).into_owned(),
        );
    }
    json!({
        "upstream": upstream,
        "method": req.method,
        "path": req.path,
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&req.body),
    })
}

/// The full HTTP/1.1 response bytes for `req`.
fn build_reply(req: &ReceivedRequest, shared: &Shared) -> Vec<u8> {
    let mut status = 200u16;
    let mut extra: Vec<(String, Vec<u8>)> = shared
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
        .collect();
    for (name, value) in &req.headers {
        if name == "x-echo-status" {
            if let Some(s) = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
                .filter(|s| (200..=599).contains(s))
            {
                status = s;
            }
        } else if name == "x-echo-delay-ms" {
            if let Some(ms) = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                std::thread::sleep(Duration::from_millis(ms));
            }
        } else if let Some(h) = name.strip_prefix("x-echo-header-") {
            if !h.is_empty() {
                extra.push((h.to_owned(), value.clone()));
            }
        }
    }

    let body = serde_json::to_vec(&echo_json(req, &shared.name)).expect("serialize echo JSON");
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out =
        format!("HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n").into_bytes();
    for (name, value) in &extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let no_body = req.method == "HEAD" || status == 204 || status == 304;
    if status != 204 {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !no_body {
        out.extend_from_slice(&body);
    }
    out
}
