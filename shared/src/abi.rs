//! The proxy-wasm host calls that can fail during normal operation, called
//! through the ABI directly.
//!
//! The SDK's wrappers (proxy-wasm 0.2.5 `hostcalls`) return `Result` but
//! panic on every status they do not expect, and a panic kills the VM. Envoy
//! answers BadArgument to any read or write of a header map that is not
//! available at that moment (a header write once the headers have gone on,
//! a read of the request headers from a response callback), to a body write
//! outside a body callback, and to a filter-state value its declared type
//! rejects. Those must be errors, not panics. Every other call the filters
//! make on a request or a callout goes through here too: reading a whole
//! header map or an attribute, a local reply, switching to a stream that may
//! be gone (BadArgument), resuming it, and shared data.
//!
//! Not here: `dispatch_http_call` and `dispatch_grpc_call`, whose wrappers
//! also register the call with the SDK's dispatcher (private to the SDK).
//! Their wrappers turn the statuses Envoy returns into errors, except a gRPC
//! client Envoy cannot create (BadArgument).

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
        pub fn proxy_get_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub fn proxy_set_header_map_pairs(
            map_type: MapType,
            map_data: *const u8,
            map_size: usize,
        ) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer_type: BufferType,
            start: usize,
            max_size: usize,
            return_buffer_data: *mut *mut u8,
            return_buffer_size: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_set_buffer_bytes(
            buffer_type: BufferType,
            start: usize,
            size: usize,
            buffer_data: *const u8,
            buffer_size: usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_continue_stream(stream_type: u32) -> u32;
        pub fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
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

/// proxy-wasm's `NotFound` status.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const NOT_FOUND: u32 = 1;

/// A host-returned byte string: `Ok(None)` for NotFound.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
fn returned_bytes(code: u32, data: *mut u8, size: usize) -> Result<Option<Vec<u8>>, HostStatus> {
    match code {
        0 if data.is_null() => Ok(Some(Vec::new())),
        // SAFETY: the host allocated `size` bytes through the SDK's
        // `proxy_on_memory_allocate` (a `Vec<u8>` of capacity `size`, leaked)
        // and hands over ownership.
        0 => Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) })),
        NOT_FOUND => Ok(None),
        code => Err(HostStatus(code)),
    }
}

/// The ABI's header-map encoding: the count, each name's and value's length
/// (u32 little-endian), then each name and value followed by a NUL.
pub fn encode_header_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| n.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&length(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&length(name.len()));
        out.extend_from_slice(&length(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// A length as the ABI's u32; header maps are far below 4 GiB (Envoy caps
/// them at 96 KiB by default), so saturating never changes a real value.
fn length(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

/// Decodes the ABI's header-map encoding (see [`encode_header_map`]);
/// `None` if the bytes are not a well-formed map. Names that are not UTF-8
/// (Envoy's codecs never let one through) are decoded lossily.
pub fn decode_header_map(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    fn word(bytes: &[u8], at: usize) -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    }
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = word(bytes, 0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    // Each pair takes at least 8 length bytes and 2 NULs.
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 10));
    for i in 0..count {
        let lengths = 4 + i * 8;
        let (name_len, value_len) = (word(bytes, lengths)?, word(bytes, lengths + 4)?);
        let name = bytes.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len)?.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len)?.checked_add(1)?;
        pairs.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    (data <= bytes.len()).then_some(pairs)
}

/// The ABI's property path: the parts joined by NUL.
pub fn encode_property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

/// The first value of a header; `Ok(None)` if absent, an error if the map is
/// not available now.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn header_value(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers of a live slice and of two locals the host writes.
    let code = unsafe {
        imports::proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    returned_bytes(code, data, size)
}

/// Replaces a whole header map.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn set_header_map(map: MapType, pairs: &[(&str, &[u8])]) -> Result<(), HostStatus> {
    let encoded = encode_header_map(pairs);
    // SAFETY: pointer and length of a live buffer; the host copies it.
    status(unsafe { imports::proxy_set_header_map_pairs(map, encoded.as_ptr(), encoded.len()) })
}

/// Up to `max_size` bytes of a buffer from `start`; `Ok(None)` if the buffer
/// does not exist now.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn buffer(
    buffer: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers of two locals the host writes.
    let code =
        unsafe { imports::proxy_get_buffer_bytes(buffer, start, max_size, &mut data, &mut size) };
    returned_bytes(code, data, size)
}

/// Sets a filter-state property (readable by later filters and access logs).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), HostStatus> {
    let encoded = encode_property_path(path);
    // SAFETY: pointers and lengths of live buffers; the host copies them.
    status(unsafe {
        imports::proxy_set_property(encoded.as_ptr(), encoded.len(), value.as_ptr(), value.len())
    })
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

/// A whole header map; an error if it is not available now or cannot be decoded.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn header_map(map: MapType) -> Result<Vec<(String, Vec<u8>)>, HostStatus> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers of two locals the host writes.
    let code = unsafe { imports::proxy_get_header_map_pairs(map, &mut data, &mut size) };
    match returned_bytes(code, data, size)? {
        Some(bytes) => decode_header_map(&bytes).ok_or(HostStatus(SERIALIZATION_FAILURE)),
        None => Ok(Vec::new()),
    }
}

/// An attribute or filter-state value; `Ok(None)` if absent.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
    let encoded = encode_property_path(path);
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: a live buffer, and pointers of two locals the host writes.
    let code = unsafe {
        imports::proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size)
    };
    returned_bytes(code, data, size)
}

/// Answers the current stream from the proxy.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn send_local_response(
    status_code: u32,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Result<(), HostStatus> {
    let encoded = encode_header_map(headers);
    // SAFETY: pointers and lengths of live buffers; the host copies them.
    // No details string; -1: not a gRPC status.
    status(unsafe {
        imports::proxy_send_local_response(
            status_code,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            encoded.as_ptr(),
            encoded.len(),
            -1,
        )
    })
}

/// Makes later calls act on stream `context_id`; BadArgument if it is gone.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn set_effective_context(context_id: u32) -> Result<(), HostStatus> {
    // SAFETY: plain value argument.
    status(unsafe { imports::proxy_set_effective_context(context_id) })
}

/// Resumes the current request after a pause.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn resume_http_request() -> Result<(), HostStatus> {
    // SAFETY: plain value argument (0: the HTTP request stream).
    status(unsafe { imports::proxy_continue_stream(0) })
}

/// A shared-data value and its CAS token; `Ok((None, 0))` if absent. An
/// empty value reads as `None` with its token, as in the SDK (Envoy hands
/// it over as a null pointer).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, u32), HostStatus> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: a live slice, and pointers of three locals the host writes.
    let code = unsafe {
        imports::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    };
    match returned_bytes(code, data, size)? {
        Some(value) => Ok(((!value.is_empty()).then_some(value), cas)),
        None => Ok((None, 0)),
    }
}

/// Writes a shared-data value if `cas` still matches (0: unconditionally);
/// [`CAS_MISMATCH`] if another writer came first.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostStatus> {
    // SAFETY: pointers and lengths of live slices; the host copies them.
    status(unsafe {
        imports::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// proxy-wasm's `SerializationFailure` status.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const SERIALIZATION_FAILURE: u32 = 3;

/// proxy-wasm's `CasMismatch` status.
pub const CAS_MISMATCH: u32 = 8;

// Native builds (unit tests, xtask) link the glue but never run it: there is
// no host to call.
#[cfg(not(target_arch = "wasm32"))]
pub fn header_map(_map: MapType) -> Result<Vec<(String, Vec<u8>)>, HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn property(_path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn send_local_response(
    _status_code: u32,
    _headers: &[(&str, &[u8])],
    _body: &[u8],
) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn set_effective_context(_context_id: u32) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn resume_http_request() -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn shared_data(_key: &str) -> Result<(Option<Vec<u8>>, u32), HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn set_shared_data(_key: &str, _value: &[u8], _cas: u32) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
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

#[cfg(not(target_arch = "wasm32"))]
pub fn header_value(_map: MapType, _name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn set_header_map(_map: MapType, _pairs: &[(&str, &[u8])]) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn buffer(
    _buffer: BufferType,
    _start: usize,
    _max_size: usize,
) -> Result<Option<Vec<u8>>, HostStatus> {
    Err(HostStatus(NO_HOST))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn set_property(_path: &[&str], _value: &[u8]) -> Result<(), HostStatus> {
    Err(HostStatus(NO_HOST))
}

/// proxy-wasm's `Unimplemented` status.
#[cfg(not(target_arch = "wasm32"))]
const NO_HOST: u32 = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_are_encoded_as_the_abi_expects() {
        let encoded = encode_header_map(&[(":status", b"200"), ("x-a", b"")]);
        let mut expected = vec![2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b":status\0");
        expected.extend_from_slice(b"200\0x-a\0\0");
        assert_eq!(encoded, expected);
        assert_eq!(encode_header_map(&[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn header_maps_decode_what_they_encode() {
        let pairs: &[(&str, &[u8])] = &[
            (":path", b"/a?b"),
            ("x-empty", b""),
            ("x-bin", b"\xff\x00z"),
        ];
        let decoded = decode_header_map(&encode_header_map(pairs)).unwrap();
        let expected: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        assert_eq!(decoded, expected);
        assert_eq!(decode_header_map(&[]), Some(Vec::new()));
        assert_eq!(decode_header_map(&[0, 0, 0, 0]), Some(Vec::new()));
    }

    #[test]
    fn malformed_header_maps_are_refused_not_panicked_on() {
        let good = encode_header_map(&[("a", b"bc"), ("d", b"e")]);
        // Every truncation, and every count or length too large.
        for cut in 1..good.len() {
            assert_eq!(decode_header_map(&good[..cut]), None, "cut at {cut}");
        }
        for at in [0usize, 4, 8, 12, 16] {
            for huge in [3u32, 255, u32::MAX] {
                let mut bad = good.clone();
                bad[at..at + 4].copy_from_slice(&huge.to_le_bytes());
                assert_eq!(decode_header_map(&bad), None, "word {at} = {huge}");
            }
        }
        // A name that is not UTF-8 is decoded lossily.
        let mut odd = encode_header_map(&[("a", b"v")]);
        let name_at = odd.len() - 4;
        odd[name_at] = 0xff;
        assert_eq!(
            decode_header_map(&odd),
            Some(vec![("\u{fffd}".to_string(), b"v".to_vec())])
        );
    }

    #[test]
    fn property_paths_are_nul_joined() {
        assert_eq!(encode_property_path(&["a", "bc"]), b"a\0bc".to_vec());
        assert_eq!(encode_property_path(&["x"]), b"x".to_vec());
        assert!(encode_property_path(&[]).is_empty());
    }

    #[test]
    fn only_ok_is_success() {
        assert_eq!(status(0), Ok(()));
        assert_eq!(status(2), Err(HostStatus(2)));
    }
}
