//! A raw HTTP/1.1 client that sends a request body in pieces, with a pause
//! after each, so Envoy delivers them as separate `on_http_request_body`
//! callbacks; and that reports a response cut short instead of failing.
//!
//! ```no_run
//! use pwf_tests::PieceRequest;
//! # let port = 10000;
//! let resp = PieceRequest::new("POST", "/upload")
//!     .header("content-type", "text/plain")
//!     .pieces(["card 4111 11", "11 1111 1111 done"])
//!     .send(port);
//! assert_eq!(resp.status, 200);
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::body_upstream::{read_chunked, Framing, DEFAULT_CHUNK_DELAY_MS};

/// How long to wait for the response.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A request whose body is sent in pieces. Build, then [`PieceRequest::send`].
#[derive(Debug, Clone)]
pub struct PieceRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    pieces: Vec<Vec<u8>>,
    framing: Framing,
    delay: Duration,
}

impl PieceRequest {
    /// `method path`, no body yet, chunked framing, 5 ms between pieces.
    pub fn new(method: &str, path: &str) -> Self {
        PieceRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            pieces: Vec::new(),
            framing: Framing::Chunked,
            delay: Duration::from_millis(DEFAULT_CHUNK_DELAY_MS),
        }
    }

    /// Adds a header (`host` is added unless given).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The body pieces, sent in order (empty pieces are skipped: an empty
    /// HTTP chunk would end the body).
    pub fn pieces<I, P>(mut self, pieces: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.pieces = pieces
            .into_iter()
            .map(|p| p.as_ref().to_vec())
            .filter(|p| !p.is_empty())
            .collect();
        self
    }

    /// `body` cut at `positions` (see [`crate::split_pieces`]).
    pub fn body_split(self, body: &[u8], positions: &[usize]) -> Self {
        let pieces = crate::body_upstream::split_pieces(body, positions);
        self.pieces(pieces)
    }

    /// Framing: chunked (default, one HTTP chunk per piece) or
    /// `content-length` (the total, pieces written one after another).
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Pause after each piece (default 5 ms).
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay = Duration::from_millis(ms);
        self
    }

    /// Sends on a new connection to `127.0.0.1:port` and reads one response.
    /// Write errors (Envoy answered early and closed) are ignored: the
    /// response is read anyway.
    pub fn send(&self, port: u16) -> PieceResponse {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set_read_timeout");
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            head.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
        }
        for (n, v) in &self.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        let has_body = !self.pieces.is_empty() || !matches!(self.method.as_str(), "GET" | "HEAD");
        if has_body {
            match self.framing {
                Framing::Chunked => head.push_str("transfer-encoding: chunked\r\n"),
                Framing::ContentLength => {
                    let total: usize = self.pieces.iter().map(Vec::len).sum();
                    head.push_str(&format!("content-length: {total}\r\n"));
                }
            }
        }
        head.push_str("\r\n");
        let mut w = &stream;
        let mut ok = w.write_all(head.as_bytes()).is_ok();
        let last = self.pieces.len().saturating_sub(1);
        for (i, piece) in self.pieces.iter().enumerate() {
            if !ok {
                break;
            }
            std::thread::sleep(self.delay);
            let mut out = Vec::with_capacity(piece.len() + 16);
            match self.framing {
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
            ok = w.write_all(&out).is_ok();
        }
        if ok && has_body && self.pieces.is_empty() && self.framing == Framing::Chunked {
            let _ = w.write_all(b"0\r\n\r\n");
        }
        read_response(&mut BufReader::new(stream), self.method == "HEAD")
    }
}

/// A response read by [`PieceRequest::send`] or [`get_streamed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceResponse {
    /// Status code; 0 if the connection ended before a complete head.
    pub status: u16,
    /// Headers in received order, names lowercased, values lossily UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body bytes received (de-chunked), complete or not.
    pub body: Vec<u8>,
    /// Whether the body ended as its framing says (false when Envoy reset
    /// or closed the connection inside it).
    pub complete: bool,
}

impl PieceResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}); status {}: {}",
                self.status,
                self.text()
            )
        })
    }
}

/// `GET path` with `headers` on a new connection; the response may be cut
/// short (see [`PieceResponse::complete`]).
pub fn get_streamed(port: u16, path: &str, headers: &[(&str, &str)]) -> PieceResponse {
    let mut req = PieceRequest::new("GET", path);
    for (n, v) in headers {
        req = req.header(n, v);
    }
    req.send(port)
}

fn read_response(reader: &mut BufReader<TcpStream>, head_only: bool) -> PieceResponse {
    let mut out = PieceResponse {
        status: 0,
        headers: Vec::new(),
        body: Vec::new(),
        complete: false,
    };
    loop {
        let mut head = Vec::new();
        loop {
            match reader.read_until(b'\n', &mut head) {
                Ok(0) | Err(_) => return out,
                Ok(_) => {}
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                break;
            }
        }
        let mut slots = [httparse::EMPTY_HEADER; 256];
        let mut parsed = httparse::Response::new(&mut slots);
        if !matches!(parsed.parse(&head), Ok(httparse::Status::Complete(_))) {
            return out;
        }
        let status = parsed.code.unwrap_or(0);
        if (100..200).contains(&status) {
            continue;
        }
        out.status = status;
        out.headers = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        break;
    }
    if head_only || out.status == 204 || out.status == 304 {
        out.complete = true;
        return out;
    }
    let chunked = out
        .header("transfer-encoding")
        .is_some_and(|v| v.trim().to_ascii_lowercase().ends_with("chunked"));
    let length = out
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    if chunked {
        let mut chunks = Vec::new();
        out.complete = read_chunked(reader, &mut chunks).is_ok();
        out.body = chunks.concat();
    } else if let Some(len) = length {
        let _ = reader.by_ref().take(len as u64).read_to_end(&mut out.body);
        out.complete = out.body.len() == len;
    } else {
        out.complete = reader.read_to_end(&mut out.body).is_ok();
    }
    out
}
