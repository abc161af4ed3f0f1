//! An in-process HTTP/1.1 upstream that sends response bodies in pieces.
//!
//! Streaming filters must be tested with bodies that arrive in several
//! `on_http_response_body` callbacks, split at chosen positions. This server
//! writes each piece with its own `write` + flush and a pause between pieces
//! (default 5 ms), which is long enough for Envoy to read and deliver each
//! piece as a separate data frame.
//!
//! What a request gets:
//!
//! - a path registered with [`BodyUpstream::serve`] (matched without the
//!   query string) gets that [`ResponseSpec`];
//! - any other path gets its own request body back verbatim, with the
//!   request's `content-type` (echo mode, for request-direction tests).
//!
//! Request headers that override the reply (so one registered body can be
//! sent split in many ways without registering it again):
//!
//! - `x-split-at: 5,17`: split positions in the (encoded) body;
//! - `x-chunk-delay-ms: 2`: pause between pieces;
//! - `x-framing: chunked | content-length`;
//! - `x-status: 404`: the response status;
//! - `x-echo-header-<name>: <value>`: add `<name>: <value>` to the response.
//!
//! Every request is recorded with its body as the HTTP chunks it came in
//! ([`BodyUpstream::requests`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Largest request head accepted, in bytes.
const MAX_HEAD: usize = 1 << 20;
/// Most request headers accepted.
const MAX_HEADERS: usize = 256;
/// Default pause between two pieces of a body.
pub const DEFAULT_CHUNK_DELAY_MS: u64 = 5;

/// How a message body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `transfer-encoding: chunked`, one HTTP chunk per piece.
    Chunked,
    /// `content-length: <n>`, the pieces written one after another.
    ContentLength,
}

impl Framing {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "chunked" => Some(Framing::Chunked),
            "content-length" => Some(Framing::ContentLength),
            _ => None,
        }
    }
}

/// A response to serve for one path. Build with [`ResponseSpec::new`] and
/// the chained setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSpec {
    /// Status code (default 200).
    pub status: u16,
    /// `content-type` (default `text/plain`); `None` sends none.
    pub content_type: Option<String>,
    /// `content-encoding`; `Some("gzip")` also gzips `body` before splitting.
    pub content_encoding: Option<String>,
    /// The body before encoding.
    pub body: Vec<u8>,
    /// Split positions in the encoded body (out-of-range, duplicate and
    /// zero positions are ignored, so no piece is empty).
    pub chunks: Vec<usize>,
    /// Wire framing (default chunked).
    pub framing: Framing,
    /// Pause between pieces in milliseconds (default 5).
    pub chunk_delay_ms: u64,
    /// Further response headers.
    pub headers: Vec<(String, String)>,
}

impl ResponseSpec {
    /// `200 text/plain`, chunked, not split.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        ResponseSpec {
            status: 200,
            content_type: Some("text/plain".into()),
            content_encoding: None,
            body: body.into(),
            chunks: Vec::new(),
            framing: Framing::Chunked,
            chunk_delay_ms: DEFAULT_CHUNK_DELAY_MS,
            headers: Vec::new(),
        }
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets the content type.
    pub fn content_type(mut self, content_type: &str) -> Self {
        self.content_type = Some(content_type.to_owned());
        self
    }

    /// Sends no content type.
    pub fn no_content_type(mut self) -> Self {
        self.content_type = None;
        self
    }

    /// Sets the content encoding (`gzip` compresses the body).
    pub fn content_encoding(mut self, encoding: &str) -> Self {
        self.content_encoding = Some(encoding.to_owned());
        self
    }

    /// Split positions in the encoded body.
    pub fn split_at(mut self, positions: &[usize]) -> Self {
        self.chunks = positions.to_vec();
        self
    }

    /// Sets the framing.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Sets the pause between pieces.
    pub fn chunk_delay_ms(mut self, ms: u64) -> Self {
        self.chunk_delay_ms = ms;
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The body as sent on the wire (gzipped if the encoding is gzip).
    pub fn encoded_body(&self) -> Vec<u8> {
        match self.content_encoding.as_deref() {
            Some(e) if e.eq_ignore_ascii_case("gzip") => gzip(&self.body),
            _ => self.body.clone(),
        }
    }
}

/// Gzips `data` (default compression).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("gzip into a Vec");
    enc.finish().expect("gzip into a Vec")
}

/// Gunzips `data`; panics if it is not gzip.
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("not gzip ({e}): {} bytes", data.len()));
    out
}

/// Cuts `body` at `positions` into non-empty pieces (positions outside
/// `1..body.len()` and repeats are ignored).
pub fn split_pieces(body: &[u8], positions: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = positions
        .iter()
        .copied()
        .filter(|&p| p > 0 && p < body.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(body[start..cut].to_vec());
        start = cut;
    }
    if start < body.len() {
        pieces.push(body[start..].to_vec());
    }
    pieces
}

/// A request as the body upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRequest {
    /// Request method.
    pub method: String,
    /// Request target as received.
    pub path: String,
    /// Headers in received order, names lowercased, values lossily UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body as the HTTP chunks it arrived in (chunked framing), or as
    /// one piece (content-length framing; empty bodies give no piece).
    pub chunks: Vec<Vec<u8>>,
    /// Whether the body arrived complete (false if the connection was
    /// reset or closed inside it, e.g. when Envoy aborted the request).
    pub complete: bool,
}

impl BodyRequest {
    /// The whole body.
    pub fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    /// The whole body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body()).into_owned()
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    specs: Mutex<HashMap<String, ResponseSpec>>,
    received: Mutex<Vec<BodyRequest>>,
}

/// The upstream; serves until dropped. See the module docs.
#[derive(Debug)]
pub struct BodyUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl BodyUpstream {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .unwrap_or_else(|e| panic!("body upstream: bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .expect("local_addr of a bound listener");
        let shared = Arc::new(Shared::default());
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("body-upstream".into())
                .spawn(move || accept_loop(&listener, &shared))
                .expect("spawn body upstream thread")
        };
        BodyUpstream {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves `spec` for requests to `path` (without query), replacing any
    /// earlier spec for it.
    pub fn serve(&self, path: &str, spec: ResponseSpec) {
        lock(&self.shared.specs).insert(path.to_owned(), spec);
    }

    /// All requests received so far, in order of completion.
    pub fn requests(&self) -> Vec<BodyRequest> {
        lock(&self.shared.received).clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<BodyRequest> {
        lock(&self.shared.received).last().cloned()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.received).len()
    }
}

impl Drop for BodyUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        let _ = std::thread::Builder::new()
            .name("body-upstream-conn".into())
            .spawn(move || serve_connection(stream, &shared));
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        let complete = req.complete;
        let close = req
            .header("connection")
            .is_some_and(|c| c.to_ascii_lowercase().contains("close"));
        let reply = reply_for(&req, shared);
        lock(&shared.received).push(req);
        if !complete {
            return;
        }
        if write_reply(&mut writer, &reply).is_err() || close {
            return;
        }
    }
}

/// Reads one request; `None` on EOF or an unparsable head. A body cut short
/// is returned with `complete: false`.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<BodyRequest> {
    let mut head = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut head).ok()?;
        if n == 0 {
            return None;
        }
        if head == b"\r\n" {
            head.clear();
            continue;
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    if !matches!(parsed.parse(&head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let mut req = BodyRequest {
        method: parsed.method.unwrap_or_default().to_owned(),
        path: parsed.path.unwrap_or_default().to_owned(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        chunks: Vec::new(),
        complete: true,
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.trim().to_ascii_lowercase().ends_with("chunked"));
    if chunked {
        req.complete = read_chunked(reader, &mut req.chunks).is_ok();
    } else if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        let mut body = Vec::new();
        let got = reader.by_ref().take(len).read_to_end(&mut body);
        req.complete = got.is_ok() && body.len() as u64 == len;
        if !body.is_empty() {
            req.chunks.push(body);
        }
    }
    Some(req)
}

/// Decodes a chunked body, keeping each HTTP chunk apart. A chunk cut short
/// by EOF or an error is kept as far as it arrived, and the error returned.
pub(crate) fn read_chunked<R: BufRead>(
    reader: &mut R,
    chunks: &mut Vec<Vec<u8>>,
) -> std::io::Result<()> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("EOF before a chunk size"));
        }
        let size_text = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // trailers until an empty line
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let mut data = Vec::with_capacity(size);
        let got = reader.by_ref().take(size as u64).read_to_end(&mut data);
        let short = data.len() < size;
        if !data.is_empty() {
            chunks.push(data);
        }
        got?;
        if short {
            return Err(bad("EOF inside a chunk"));
        }
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// What to send back: status, headers, pieces, framing, delay.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    pieces: Vec<Vec<u8>>,
    framing: Framing,
    delay: Duration,
    head_only: bool,
}

fn reply_for(req: &BodyRequest, shared: &Shared) -> Reply {
    let path = req.path.split('?').next().unwrap_or_default();
    let spec = lock(&shared.specs).get(path).cloned().unwrap_or_else(|| {
        // echo mode
        let mut spec = ResponseSpec::new(req.body()).framing(Framing::ContentLength);
        spec.content_type = req.header("content-type").map(str::to_owned);
        spec
    });
    let mut headers = Vec::new();
    if let Some(ct) = &spec.content_type {
        headers.push(("content-type".to_owned(), ct.clone()));
    }
    if let Some(ce) = &spec.content_encoding {
        headers.push(("content-encoding".to_owned(), ce.clone()));
    }
    headers.extend(spec.headers.iter().cloned());
    let mut status = spec.status;
    let mut splits = spec.chunks.clone();
    let mut framing = spec.framing;
    let mut delay_ms = spec.chunk_delay_ms;
    for (name, value) in &req.headers {
        match name.as_str() {
            "x-split-at" => {
                splits = value
                    .split(',')
                    .filter_map(|p| p.trim().parse().ok())
                    .collect();
            }
            "x-chunk-delay-ms" => delay_ms = value.trim().parse().unwrap_or(delay_ms),
            "x-framing" => framing = Framing::parse(value).unwrap_or(framing),
            "x-status" => status = value.trim().parse().unwrap_or(status),
            _ => {
                if let Some(h) = name.strip_prefix("x-echo-header-") {
                    headers.push((h.to_owned(), value.clone()));
                }
            }
        }
    }
    Reply {
        status,
        headers,
        pieces: split_pieces(&spec.encoded_body(), &splits),
        framing,
        delay: Duration::from_millis(delay_ms),
        head_only: req.method == "HEAD",
    }
}

fn write_reply(w: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    let reason = ureq::http::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    let total: usize = reply.pieces.iter().map(Vec::len).sum();
    match reply.framing {
        Framing::Chunked => head.push_str("transfer-encoding: chunked\r\n"),
        Framing::ContentLength => head.push_str(&format!("content-length: {total}\r\n")),
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.flush()?;
    if reply.head_only {
        return Ok(());
    }
    let last = reply.pieces.len().saturating_sub(1);
    for (i, piece) in reply.pieces.iter().enumerate() {
        std::thread::sleep(reply.delay);
        let mut out = Vec::with_capacity(piece.len() + 16);
        match reply.framing {
            Framing::Chunked => {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
                if i == last {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
            Framing::ContentLength => out.extend_from_slice(piece),
        }
        w.write_all(&out)?;
        w.flush()?;
    }
    if reply.pieces.is_empty() && reply.framing == Framing::Chunked {
        w.write_all(b"0\r\n\r\n")?;
        w.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_pieces_ignores_bad_positions() {
        let pieces = split_pieces(b"abcdef", &[4, 0, 2, 2, 6, 9]);
        assert_eq!(pieces, vec![b"ab".to_vec(), b"cd".to_vec(), b"ef".to_vec()]);
        assert_eq!(split_pieces(b"", &[1]), Vec::<Vec<u8>>::new());
        assert_eq!(split_pieces(b"abc", &[]), vec![b"abc".to_vec()]);
    }

    #[test]
    fn gzip_round_trips() {
        let data = b"hello hello hello".to_vec();
        let spec = ResponseSpec::new(data.clone()).content_encoding("gzip");
        assert_ne!(spec.encoded_body(), data);
        assert_eq!(gunzip(&spec.encoded_body()), data);
    }
}
