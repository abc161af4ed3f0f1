//! Free TCP ports for Envoys that run in parallel.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports already handed out by this process, so two tests never get the same
/// one even if the OS would offer it twice.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A currently free port on 127.0.0.1, found by binding port 0.
///
/// The port is released before it is returned, so another process could
/// still grab it; [`crate::EnvoyBuilder::start`] retries with new ports when
/// Envoy reports "Address already in use".
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}
