//! SHA-256 digests as lowercase hex, the form used in `SHA256SUMS`, OCI
//! digests (`sha256:<hex>`) and Envoy's / Istio's `sha256` fields.

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The OCI digest of `bytes`: `sha256:<hex>`.
pub fn oci_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            oci_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
