//! Thin wrappers over proxy-wasm host calls for the glue modules.
//!
//! They use the byte-valued calls (the SDK's `String` getters panic on
//! non-UTF-8 header values, which clients can send) and turn every host error
//! into a logged no-op or an `Option`, so a host refusal never aborts a request.

use crate::headers::{Edit, HeaderList};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::SystemTime;

pub use proxy_wasm::types::MapType as HeaderMapType;

/// Reads a whole header map in one host call.
pub fn headers(map: MapType) -> HeaderList {
    match crate::abi::header_map(map) {
        Ok(entries) => HeaderList::new(entries),
        Err(status) => {
            log::warn!("cannot read {map:?}: {status:?}");
            HeaderList::default()
        }
    }
}

/// The first value of one header, in one host call; `None` if absent. (Envoy
/// returns only the first value of a repeated header; an empty value is
/// `Some` and empty.)
pub fn header(map: MapType, name: &str) -> Option<Vec<u8>> {
    match crate::abi::header_value(map, name) {
        Ok(value) => value,
        Err(status) => {
            log::warn!("cannot read header {name} of {map:?}: {status:?}");
            None
        }
    }
}

/// Replaces a whole header map in one host call.
pub fn replace_headers(map: MapType, headers: &HeaderList) {
    let pairs: Vec<(&str, &[u8])> = headers
        .entries()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    if let Err(status) = crate::abi::set_header_map(map, &pairs) {
        log::warn!("cannot replace {map:?}: {status:?}");
    }
}

/// Above this many single-header calls, replacing the whole map is cheaper:
/// one whole-map replacement cost about six single-header calls in Envoy 1.40
/// (docs/benchmarks.md, "where the CPU goes").
const MAX_SINGLE_EDITS: usize = 6;

/// Writes back what changed in `headers`: one host call per changed header,
/// or one whole-map replacement when many changed and the list holds the
/// whole map.
pub fn write_back(map: MapType, headers: &HeaderList) {
    let edits = headers.edits();
    if edits.len() > MAX_SINGLE_EDITS && headers.is_complete() {
        return replace_headers(map, headers);
    }
    for edit in edits {
        match edit {
            Edit::Remove(name) => remove_header(map, name),
            Edit::Set(name, value) => set_header(map, name, value),
            Edit::Add(name, value) => add_header(map, name, value),
        }
    }
}

/// Applies edits in order, one host call each.
pub fn apply_edits(map: MapType, edits: &[Edit]) {
    for edit in edits {
        match *edit {
            Edit::Remove(name) => remove_header(map, name),
            Edit::Set(name, value) => set_header(map, name, value),
            Edit::Add(name, value) => add_header(map, name, value),
        }
    }
}

// Header writes go through `abi`: the SDK's wrappers panic when Envoy
// refuses a write (e.g. after the headers went on).

pub fn set_header(map: MapType, name: &str, value: &[u8]) {
    if let Err(status) = crate::abi::replace_header(map, name, value) {
        log::warn!("cannot set header {name}: {status:?}");
    }
}

pub fn add_header(map: MapType, name: &str, value: &[u8]) {
    if let Err(status) = crate::abi::add_header(map, name, value) {
        log::warn!("cannot add header {name}: {status:?}");
    }
}

pub fn remove_header(map: MapType, name: &str) {
    if let Err(status) = crate::abi::remove_header(map, name) {
        log::warn!("cannot remove header {name}: {status:?}");
    }
}

/// Up to `max_size` bytes of a buffer (a body, a callout response); empty if
/// the buffer does not exist or cannot be read now.
pub fn buffer(buffer: BufferType, max_size: usize) -> Vec<u8> {
    match crate::abi::buffer(buffer, 0, max_size) {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(status) => {
            log::warn!("cannot read {buffer:?}: {status:?}");
            Vec::new()
        }
    }
}

/// Sets a filter-state property; a refusal is logged.
pub fn set_property(path: &[&str], value: &[u8]) {
    if let Err(status) = crate::abi::set_property(path, value) {
        log::warn!("cannot set property {}: {status:?}", path.join("."));
    }
}

/// An Envoy attribute such as `["source", "address"]`; `None` if absent.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    match crate::abi::property(path) {
        Ok(value) => value,
        Err(status) => {
            log::debug!("cannot read property {}: {status:?}", path.join("."));
            None
        }
    }
}

pub fn now() -> SystemTime {
    hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Host time in milliseconds since the Unix epoch (0 if unavailable).
pub fn unix_ms() -> u64 {
    unix_ns() / 1_000_000
}

/// Host time in nanoseconds since the Unix epoch (0 if unavailable).
pub fn unix_ns() -> u64 {
    now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// 64 random bits from the host (WASI `random_get`), e.g. for ids, jitter or
/// a lease owner. Should the host refuse, a keyed hash of the time (std's
/// `RandomState`, itself seeded once from the host) stands in.
pub fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(unix_ns());
        h.finish()
    })
}

/// The plugin configuration bytes (`configuration` in Envoy, `pluginConfig` in Istio).
pub fn plugin_configuration() -> Option<Vec<u8>> {
    crate::abi::buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

pub fn send_local_reply(status: u32, headers: &[(&str, &str)], body: &[u8]) {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    if let Err(status) = crate::abi::send_local_response(status, &headers, body) {
        log::warn!("cannot send local reply: {status:?}");
    }
}

/// Makes the following host calls act on the stream of `context_id` (a
/// request paused earlier, finished from a tick or a callout response).
/// False if the stream is gone.
pub fn switch_to_stream(context_id: u32) -> bool {
    crate::abi::set_effective_context(context_id).is_ok()
}

/// Resumes the current (or switched-to) request after `Action::Pause`.
pub fn resume_request() {
    if let Err(status) = crate::abi::resume_http_request() {
        log::debug!("cannot resume request: {status:?}");
    }
}

/// The start of every filter's `on_configure`: logs at the host's level, then
/// loads the plugin configuration with `load`. `None` when it is invalid; the
/// error is logged naming `filter`, and `on_configure` must return false so
/// that Envoy (and `envoy --mode validate`) rejects the configuration.
pub fn load_configuration<T, E: std::fmt::Display>(
    filter: &str,
    load: impl FnOnce(Option<&[u8]>) -> Result<T, E>,
) -> Option<T> {
    crate::log::init();
    let config = plugin_configuration();
    match load(config.as_deref()) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            log::error!("{filter}: invalid configuration: {e}");
            None
        }
    }
}
