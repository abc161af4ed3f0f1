//! A static file server for tests: answers `GET /<name>` with the bytes of
//! `<dir>/<name>` (404 for anything else), one request per connection, and
//! logs the paths it was asked for. Envoy fetches Wasm modules from it
//! through a `remote` data source, as it would from a release URL.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A running file server; it stops accepting when dropped.
pub struct FileServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FileServer {
    /// Serves the files directly in `dir` on a free loopback port.
    pub fn start(dir: &Path) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind file server");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dir, log, stop_flag) = (dir.to_path_buf(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (dir, log) = (dir.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &dir, &log));
            }
        });
        FileServer {
            port,
            requests,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request paths received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut stream: TcpStream, dir: &Path, log: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let path = loop {
        let Ok(n) = stream.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (req.method == Some("GET")).then(|| req.path.unwrap_or("").to_string());
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => break None,
        }
    };
    if let Some(p) = &path {
        if let Ok(mut l) = log.lock() {
            l.push(p.clone());
        }
    }
    let file = path.as_deref().and_then(|p| file_for(dir, p));
    let (status, body) = match file.and_then(|f| std::fs::read(f).ok()) {
        Some(bytes) => ("200 OK", bytes),
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/octet-stream\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// `/<name>` -> `<dir>/<name>` for a plain file name (no `/`, no `..`).
fn file_for(dir: &Path, request_path: &str) -> Option<PathBuf> {
    let name = request_path.strip_prefix('/')?;
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    Some(dir.join(name))
}
