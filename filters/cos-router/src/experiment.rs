//! Experiment assignment: a stable hash of (salt, key) picks a bucket, the
//! bucket picks a variant; and the testers' override header.
//!
//! The hash is specified, not an implementation detail, so anyone can
//! recompute an assignment (in SQL, Python, another proxy):
//!
//! ```text
//! digest = SHA-256(salt ++ ":" ++ key)          // UTF-8 / raw bytes
//! bucket = big-endian u64 of digest[0..8]  mod  total weight
//! ```
//!
//! Variants own consecutive bucket ranges in config order: with weights
//! 90 and 10, buckets 0..90 are the first variant and 90..100 the second.
//! Nothing here depends on the platform, the Envoy version or the process,
//! so an assignment survives restarts and upgrades.

use crate::config::Experiment;
use sha2::{Digest, Sha256};

/// The bucket of `key` in an experiment with `salt` and `total_weight`.
pub fn bucket(salt: &str, key: &[u8], total_weight: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(b":");
    hasher.update(key);
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    for (dst, src) in first.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    u64::from_be_bytes(first) % total_weight.max(1)
}

/// The variant index that owns `bucket`.
pub fn variant_of(experiment: &Experiment, bucket: u64) -> usize {
    experiment
        .variants
        .iter()
        .position(|v| bucket < v.upper)
        .unwrap_or(0)
}

/// The variant index of `key`.
pub fn assign(experiment: &Experiment, key: &[u8]) -> usize {
    variant_of(
        experiment,
        bucket(&experiment.salt, key, experiment.total_weight),
    )
}

/// The variant an override header value picks for `experiment`:
/// `checkout=b, search=control` (pairs separated by `,` or `;`, spaces
/// ignored). Unknown experiments and variants are ignored.
pub fn overridden(experiment: &Experiment, header: &[u8]) -> Option<usize> {
    header
        .split(|&b| b == b',' || b == b';')
        .filter_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            Some((trim(pair.get(..eq)?), trim(pair.get(eq + 1..)?)))
        })
        .filter(|(name, _)| *name == experiment.name.as_bytes())
        .find_map(|(_, variant)| {
            experiment
                .variants
                .iter()
                .position(|v| v.name.as_bytes() == variant)
        })
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}
