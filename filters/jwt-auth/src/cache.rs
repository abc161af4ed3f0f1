//! A bounded cache of verified tokens, one per worker.
//!
//! Keys are the provider index and the token's bytes, compared in full: a
//! lookup only hits an entry for the very same token, so no hash collision can
//! make one token ride on another's verification. The map hashes keys with
//! std's `RandomState` (SipHash-1-3 keyed per VM from WASI `random_get`), so
//! nobody can aim tokens at one bucket; and only verified tokens are inserted.
//! A key is hashed once per map operation, with no SHA-256: a hit costs one
//! SipHash of the token and one comparison. An entry holds the token (at most
//! the provider's `max_token_bytes`) next to its verification.
//!
//! Entries remember the key set they were verified with and stop being used
//! after `exp + skew` (or [`NO_EXP_TTL_S`] for tokens without `exp`). Eviction
//! is FIFO, O(1).

use crate::verify::Verified;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// How long a token without `exp` stays cached.
pub const NO_EXP_TTL_S: i64 = 300;

/// The provider index (8 bytes, little-endian) followed by the token.
type CacheKey = Rc<[u8]>;

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
    map: HashMap<CacheKey, Entry>,
    /// Insertion order; an item is stale when its entry was removed or replaced
    /// (sequence numbers differ).
    order: VecDeque<(CacheKey, u64)>,
    next_seq: u64,
    /// The key of the last lookup, reused so lookups do not allocate.
    scratch: Vec<u8>,
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
        let key = fill_key(&mut self.scratch, provider, token);
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        match self.map.get(key) {
            Some(e) if now <= e.usable_until && e.keys_fingerprint == keys_fingerprint => {
                self.hits += 1;
                Some(e.verified.clone())
            }
            Some(_) => {
                self.map.remove(key);
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
        let fresh: CacheKey = Rc::from(fill_key(&mut self.scratch, provider, token));
        // A replaced entry keeps its key: the map and the order share one copy of the token.
        let key = match self.map.get_key_value(&fresh) {
            Some((existing, _)) => Rc::clone(existing),
            None => {
                while self.map.len() >= self.max_entries {
                    self.evict_oldest();
                }
                fresh
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            Rc::clone(&key),
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

/// Writes the key of (`provider`, `token`) into `scratch` and returns it.
fn fill_key<'a>(scratch: &'a mut Vec<u8>, provider: usize, token: &[u8]) -> &'a [u8] {
    scratch.clear();
    scratch.extend_from_slice(&(provider as u64).to_le_bytes());
    scratch.extend_from_slice(token);
    scratch
}
