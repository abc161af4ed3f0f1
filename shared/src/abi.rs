//! The few proxy-wasm host calls that can fail during normal operation,
//! called through the ABI directly.
//!
//! The SDK's wrappers (proxy-wasm 0.2.5 `hostcalls`) return `Result` but
//! panic on every status except `Ok`, and a panic kills the VM. Envoy
//! refuses a header write once the headers have gone on (BadArgument), and a
//! body write outside a body callback; those must be errors, not panics.

use proxy_wasm::types::{BufferType, MapType};

/// A host status other than Ok, as the raw ABI value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod imports {
    use proxy_wasm::types::{BufferType, MapType};

    // Declared with a `u32` result, not the SDK's `Status` enum: a status
    // the enum does not know would be undefined behaviour.
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_replace_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_add_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        pub fn proxy_set_buffer_bytes(
            buffer_type: BufferType,
            start: usize,
            size: usize,
            buffer_data: *const u8,
            buffer_size: usize,
        ) -> u32;
    }
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn status(code: u32) -> Result<(), HostStatus> {
    if code == 0 {
        Ok(())
    } else {
        Err(HostStatus(code))
    }
}

/// Replaces every value of a header (adds it if absent).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn replace_header(map: MapType, name: &str, value: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: pointers and lengths of live slices; the host copies them.
    status(unsafe {
        imports::proxy_replace_header_map_value(
            map,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Adds a value to a header.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: as above.
    status(unsafe {
        imports::proxy_add_header_map_value(
            map,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Removes every value of a header.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn remove_header(map: MapType, name: &str) -> Result<(), HostStatus> {
    // SAFETY: as above.
    status(unsafe { imports::proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// Replaces `size` bytes at `start` of a buffer with `value`.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn set_buffer(
    buffer: BufferType,
    start: usize,
    size: usize,
    value: &[u8],
) -> Result<(), HostStatus> {
    // SAFETY: as above.
    status(unsafe {
        imports::proxy_set_buffer_bytes(buffer, start, size, value.as_ptr(), value.len())
    })
}

// Native builds (unit tests, xtask) link the glue but never run it: there is
// no host to call.
#[cfg(not(target_arch = "wasm32"))]
pub fn replace_header(_map: MapType, _name: &str, _value: &[u8]) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn add_header(_map: MapType, _name: &str, _value: &[u8]) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn remove_header(_map: MapType, _name: &str) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn set_buffer(
    _buffer: BufferType,
    _start: usize,
    _size: usize,
    _value: &[u8],
) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

/// proxy-wasm's `Unimplemented` status.
#[cfg(not(target_arch = "wasm32"))]
const NO_HOST: u32 = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ok_is_success() {
        assert_eq!(status(0), Ok(()));
        assert_eq!(status(2), Err(HostStatus(2)));
    }
}
