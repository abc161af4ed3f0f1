//! HTTP/1.1 client for talking to Envoy in tests.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use ureq::http;

/// How long a single request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A response, with the status and headers exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in received order (repeats kept), names lowercased, values
    /// converted lossily to UTF-8.
    pub headers: Vec<(String, String)>,
    /// Same as `headers`, with the exact value bytes.
    pub raw_headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// First value of header `name` (case-insensitive), as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        self.raw_headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The headers as a multi-map: lowercased name -> values in order.
    pub fn header_map(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, v) in &self.headers {
            map.entry(n.clone()).or_default().push(v.clone());
        }
        map
    }

    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body: {}",
                self.status,
                self.text()
            )
        })
    }
}

/// The outcome of [`HttpClient::raw_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Status code, or 0 if the connection closed (or timed out) before a
    /// complete response head arrived.
    pub status: u16,
    /// Headers in received order, names lowercased, exact value bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked if the response was chunked).
    pub body: Vec<u8>,
    /// Every byte read from the connection.
    pub raw: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive), lossily as UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 client for one `127.0.0.1:<port>`.
///
/// Statuses are never errors, redirects are not followed, and transport
/// errors panic (this is test code). ureq adds `host: 127.0.0.1:<port>`,
/// `user-agent: ureq/..` and `accept: */*` unless the request sets them.
#[derive(Debug, Clone)]
pub struct HttpClient {
    port: u16,
    agent: ureq::Agent,
}

impl HttpClient {
    /// A client for `http://127.0.0.1:<port>`.
    pub fn new(port: u16) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .allow_non_standard_methods(true)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .new_agent();
        HttpClient { port, agent }
    }

    /// The port this client talks to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`; `path` must start with `/`.
    pub fn url(&self, path: &str) -> String {
        assert!(path.starts_with('/'), "path must start with '/': {path:?}");
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.req("GET", path).send()
    }

    /// `method path` with `headers` and `body` (an empty body on GET, HEAD,
    /// DELETE or OPTIONS is not sent at all; on other methods it is sent as
    /// `content-length: 0`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Response {
        let mut r = self.req(method, path).body(body);
        for (n, v) in headers {
            r = r.header(n, v);
        }
        r.send()
    }

    /// A request to build up; see [`RequestBuilder`].
    pub fn req(&self, method: &str, path: &str) -> RequestBuilder<'_> {
        RequestBuilder {
            client: self,
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Sends `bytes` verbatim on a new connection and reads one response.
    ///
    /// The response is framed by `content-length`, chunked encoding or
    /// connection close; 1xx interim responses are skipped. If `bytes` is a
    /// `HEAD` request, no body is read. Only the first response is read.
    pub fn raw_request(&self, bytes: &[u8]) -> RawResponse {
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{}: {e}", self.port));
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .expect("set_read_timeout");
        (&stream)
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write raw request: {e}"));
        let head_only = bytes.starts_with(b"HEAD ");
        let mut reader = BufReader::new(Tee {
            inner: stream,
            seen: Vec::new(),
        });
        let mut out = read_raw_response(&mut reader, head_only);
        out.raw = std::mem::take(&mut reader.get_mut().seen);
        out
    }
}

/// A request being built; finish it with [`RequestBuilder::send`].
#[derive(Debug)]
pub struct RequestBuilder<'a> {
    client: &'a HttpClient,
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl RequestBuilder<'_> {
    /// Adds a header. The value may be any bytes that `http::HeaderValue`
    /// accepts (including obs-text 0x80-0xFF, but not CR, LF or NUL; use
    /// [`HttpClient::raw_request`] for those). Adding a name twice sends it
    /// twice.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(body).expect("serialize JSON body"))
    }

    /// Sends the request; panics on transport errors (not on statuses).
    pub fn send(self) -> Response {
        let what = format!("{} {}", self.method, self.client.url(&self.path));
        self.try_send()
            .unwrap_or_else(|e| panic!("{what} failed: {e}"))
    }

    /// Sends the request; transport errors (connection refused or reset,
    /// timeout...) are returned, statuses are not errors.
    pub fn try_send(self) -> Result<Response, ureq::Error> {
        let url = self.client.url(&self.path);
        let mut builder = http::Request::builder()
            .method(self.method.as_str())
            .uri(&url);
        for (name, value) in &self.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|e| panic!("invalid header name {name:?}: {e}"));
            let value = http::HeaderValue::from_bytes(value).unwrap_or_else(|e| {
                panic!("header value for {name} not sendable by ureq ({e}); use raw_request")
            });
            builder = builder.header(name, value);
        }
        let bodyless = matches!(self.method.as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS");
        let mut resp = if self.body.is_empty() && bodyless {
            self.client
                .agent
                .run(builder.body(()).expect("build request"))?
        } else {
            self.client
                .agent
                .run(builder.body(self.body).expect("build request"))?
        };
        let status = resp.status().as_u16();
        let raw_headers: Vec<(String, Vec<u8>)> = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let headers = raw_headers
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()?;
        Ok(Response {
            status,
            headers,
            raw_headers,
            body,
        })
    }
}

/// Records every byte read through it.
struct Tee {
    inner: TcpStream,
    seen: Vec<u8>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn read_raw_response(reader: &mut BufReader<Tee>, head_only: bool) -> RawResponse {
    let empty = RawResponse {
        status: 0,
        headers: Vec::new(),
        body: Vec::new(),
        raw: Vec::new(),
    };
    loop {
        // Read the head line by line.
        let mut head = Vec::new();
        loop {
            match reader.read_until(b'\n', &mut head) {
                Ok(0) | Err(_) => return empty,
                Ok(_) => {}
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                break;
            }
        }
        let mut slots = [httparse::EMPTY_HEADER; 256];
        let mut parsed = httparse::Response::new(&mut slots);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            other => panic!(
                "unparsable response head ({other:?}): {}",
                String::from_utf8_lossy(&head)
            ),
        }
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, Vec<u8>)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        if (100..200).contains(&status) {
            continue; // interim response
        }
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
        };
        let mut body = Vec::new();
        if head_only || status == 204 || status == 304 {
            // no body
        } else if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
            let _ = chunked_transfer::Decoder::new(&mut *reader).read_to_end(&mut body);
        } else if let Some(len) = value("content-length").and_then(|v| v.parse::<u64>().ok()) {
            let _ = reader.by_ref().take(len).read_to_end(&mut body);
        } else {
            let _ = reader.read_to_end(&mut body);
        }
        return RawResponse {
            status,
            headers,
            body,
            raw: Vec::new(),
        };
    }
}
