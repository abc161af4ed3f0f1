//! A bounded cache of verified tokens, one per worker.
//!
//! Keys are SHA-256 of (provider index, token): a 64-bit hash could be ground
//! for a collision that rides on another token's verification. Entries remember
//! the key set they were verified with and stop being used after `exp + skew`
//! (or [`NO_EXP_TTL_S`] for tokens without `exp`). Eviction is FIFO, O(1).

use crate::verify::Verified;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// How long a token without `exp` stays cached.
pub const NO_EXP_TTL_S: i64 = 300;

type CacheKey = [u8; 32];

#[derive(Debug)]
struct Entry {
    verified: Verified,
    usable_until: i64,
    keys_fingerprint: u64,
    seq: u64,
}

#[derive(Debug, Default)]
pub struct TokenCache {
    max_entries: usize,
    map: HashMap<CacheKey, Entry, BuildHasherDefault<DigestHasher>>,
    /// Insertion order; an item is stale when its entry was removed or replaced
    /// (sequence numbers differ).
    order: VecDeque<(CacheKey, u64)>,
    next_seq: u64,
    pub hits: u64,
    pub misses: u64,
    /// Live entries dropped to make room.
    pub evictions: u64,
    /// Entries found expired (or verified with keys since replaced) on lookup.
    pub expirations: u64,
}

impl TokenCache {
    /// A cache of at most `max_entries`; 0 disables it.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The cached verification of `token` for `provider`, if still usable with
    /// the key set identified by `keys_fingerprint` at `now`.
    pub fn get(
        &mut self,
        provider: usize,
        token: &[u8],
        keys_fingerprint: u64,
        now: u64,
    ) -> Option<Verified> {
        if self.max_entries == 0 {
            return None;
        }
        let key = cache_key(provider, token);
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        match self.map.get(&key) {
            Some(e) if now <= e.usable_until && e.keys_fingerprint == keys_fingerprint => {
                self.hits += 1;
                Some(e.verified.clone())
            }
            Some(_) => {
                self.map.remove(&key);
                self.expirations += 1;
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Caches a verification made at `now` with the provider's clock skew.
    pub fn insert(
        &mut self,
        provider: usize,
        token: &[u8],
        keys_fingerprint: u64,
        verified: &Verified,
        clock_skew_s: u64,
        now: u64,
    ) {
        if self.max_entries == 0 {
            return;
        }
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let skew = i64::try_from(clock_skew_s).unwrap_or(i64::MAX);
        let usable_until = match verified.exp {
            Some(exp) => exp.saturating_add(skew),
            None => now.saturating_add(NO_EXP_TTL_S),
        };
        let key = cache_key(provider, token);
        if !self.map.contains_key(&key) {
            while self.map.len() >= self.max_entries {
                self.evict_oldest();
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            key,
            Entry {
                verified: verified.clone(),
                usable_until,
                keys_fingerprint,
                seq,
            },
        );
        self.order.push_back((key, seq));
        // Stale order items pile up when entries are replaced or expire on
        // lookup; compact once they outnumber the live ones.
        if self.order.len() > 2 * self.max_entries.max(16) {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.map.remove(&key);
                self.evictions += 1;
                return;
            }
        }
        // Unreachable while order covers every live entry; never loop forever.
        self.map.clear();
    }
}

fn cache_key(provider: usize, token: &[u8]) -> CacheKey {
    let mut h = Sha256::new();
    h.update((provider as u64).to_le_bytes());
    h.update(token);
    h.finalize().into()
}

/// Keys are already uniform SHA-256 digests, and only verified tokens are
/// inserted, so their first 8 bytes hash well; this also avoids seeding a
/// random hasher in the Wasm VM.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
}
