//! Compare-and-swap read-modify-write over proxy-wasm shared data.
//!
//! Shared data is one key-value store per VM id, visible to every worker
//! thread, where each value carries a CAS token. [`update`] reads a key, lets
//! the caller compute the new value, and writes it back only if nobody wrote in
//! between, retrying on a mismatch.
//!
//! Two host facts shape callers:
//! - Keys are never expired or deleted by the host: design key sets that are
//!   bounded (fixed slot tables, one key per configured item).
//! - Creating an absent key is not conditional in Envoy (a CAS token is only
//!   checked against an existing key), so two workers creating the same key at
//!   once can lose one write. Where that matters, create keys at configure time.

use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read.
    CasMismatch,
    /// The host refused the operation.
    Host(String),
}

/// The shared-data operations [`update`] needs; [`HostStore`] in Envoy,
/// [`MemoryStore`] in native tests.
pub trait SharedStore {
    /// The value and its CAS token, or `(None, None)` if the key is absent.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes `value` if `cas` still matches (or unconditionally if `cas` is `None`).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Shared data of the running host.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        match crate::abi::shared_data(key) {
            Ok((value, cas)) => Ok((value, (cas != 0).then_some(cas))),
            Err(s) => Err(StoreError::Host(format!("{s:?}"))),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match crate::abi::set_shared_data(key, value, cas.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(crate::abi::HostStatus(crate::abi::CAS_MISMATCH)) => Err(StoreError::CasMismatch),
            Err(s) => Err(StoreError::Host(format!("{s:?}"))),
        }
    }
}

/// What an [`update`] closure decided.
pub enum Update<T> {
    /// Write these bytes, then return `T`.
    Write(Vec<u8>, T),
    /// Leave the stored value as it is and return `T`.
    Keep(T),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// Every attempt lost the race to another writer.
    Contended {
        attempts: u32,
    },
    Store(StoreError),
}

/// Read-modify-write of `key` with compare-and-swap, up to `max_attempts` tries.
/// `f` sees the current value (or `None`) and may be called more than once.
pub fn update<S: SharedStore, T>(
    store: &S,
    key: &str,
    max_attempts: u32,
    mut f: impl FnMut(Option<&[u8]>) -> Update<T>,
) -> Result<T, UpdateError> {
    for _ in 0..max_attempts {
        let (value, cas) = store.get(key).map_err(UpdateError::Store)?;
        match f(value.as_deref()) {
            Update::Keep(out) => return Ok(out),
            Update::Write(bytes, out) => match store.set(key, &bytes, cas) {
                Ok(()) => return Ok(out),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(UpdateError::Store(e)),
            },
        }
    }
    Err(UpdateError::Contended {
        attempts: max_attempts,
    })
}

/// Creates `key` with `initial` if it does not exist yet.
///
/// Two workers creating the same key at once both write `initial`, so the race
/// is harmless when `initial` is a neutral value; every later [`update`] of the
/// key is then a real compare-and-swap.
pub fn ensure_exists<S: SharedStore>(
    store: &S,
    key: &str,
    initial: &[u8],
) -> Result<(), StoreError> {
    match store.get(key)? {
        (Some(_), _) => Ok(()),
        (None, _) => store.set(key, initial, None),
    }
}

/// A time-limited lease in shared data, electing one worker (VM) of the
/// process to do a job such as fetching a JWKS. An expired lease can be taken
/// over, so a holder that died mid-job never blocks the job for longer than
/// the lease TTL. Create the key with [`Lease::init`] at configure time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub until_ms: u64,
}

impl Lease {
    const FREE: Lease = Lease {
        owner: 0,
        until_ms: 0,
    };

    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.owner.to_le_bytes());
        out.extend_from_slice(&self.until_ms.to_le_bytes());
        out
    }

    fn decode(bytes: Option<&[u8]>) -> Lease {
        let field = |range: std::ops::Range<usize>| {
            bytes
                .and_then(|b| b.get(range))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        };
        Lease {
            owner: field(0..8),
            until_ms: field(8..16),
        }
    }

    /// Creates the lease key, free, if it does not exist.
    pub fn init<S: SharedStore>(store: &S, key: &str) -> Result<(), StoreError> {
        ensure_exists(store, key, &Lease::FREE.encode())
    }

    /// Takes the lease for `owner` until `now_ms + ttl_ms` if it is free,
    /// expired, or already held by `owner`. Returns whether `owner` holds it.
    pub fn try_acquire<S: SharedStore>(
        store: &S,
        key: &str,
        owner: u64,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, UpdateError> {
        update(store, key, 4, |current| {
            let lease = Lease::decode(current);
            if lease.owner == 0 || lease.owner == owner || lease.until_ms <= now_ms {
                let taken = Lease {
                    owner,
                    until_ms: now_ms.saturating_add(ttl_ms),
                };
                Update::Write(taken.encode(), true)
            } else {
                Update::Keep(false)
            }
        })
    }

    /// Frees the lease if `owner` holds it.
    pub fn release<S: SharedStore>(store: &S, key: &str, owner: u64) -> Result<(), UpdateError> {
        update(store, key, 4, |current| {
            if Lease::decode(current).owner == owner {
                Update::Write(Lease::FREE.encode(), ())
            } else {
                Update::Keep(())
            }
        })
    }

    /// The current holder, if any and unexpired.
    pub fn holder<S: SharedStore>(
        store: &S,
        key: &str,
        now_ms: u64,
    ) -> Result<Option<Lease>, StoreError> {
        let lease = Lease::decode(store.get(key)?.0.as_deref());
        Ok((lease.owner != 0 && lease.until_ms > now_ms).then_some(lease))
    }
}

/// An in-process store with Envoy's CAS semantics, for native tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: RefCell<u32>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(match self.entries.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        let mut next = self.next_cas.borrow_mut();
        *next = next.wrapping_add(1).max(1);
        match entries.get_mut(key) {
            Some(entry) => {
                if matches!(cas, Some(c) if c != 0 && c != entry.1) {
                    return Err(StoreError::CasMismatch);
                }
                *entry = (value.to_vec(), *next);
            }
            None => {
                entries.insert(key.to_string(), (value.to_vec(), *next));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn incr(current: Option<&[u8]>) -> Update<u64> {
        let n = current
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
            + 1;
        Update::Write(n.to_le_bytes().to_vec(), n)
    }

    #[test]
    fn update_creates_and_increments() {
        let store = MemoryStore::new();
        assert_eq!(update(&store, "k", 3, incr), Ok(1));
        assert_eq!(update(&store, "k", 3, incr), Ok(2));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn keep_does_not_write() {
        let store = MemoryStore::new();
        assert_eq!(update(&store, "k", 3, |_| Update::Keep(7)), Ok(7));
        assert!(store.is_empty());
    }

    /// A store where another writer slips in before each of our first `races` writes.
    struct RacyStore {
        inner: MemoryStore,
        races: Cell<u32>,
    }

    impl SharedStore for RacyStore {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                let (current, current_cas) = self.inner.get(key)?;
                if let Update::Write(other, _) = incr(current.as_deref()) {
                    self.inner.set(key, &other, current_cas)?;
                }
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn cas_mismatch_retries_and_loses_no_update() {
        let store = RacyStore {
            inner: MemoryStore::new(),
            races: Cell::new(0),
        };
        update(&store, "k", 3, incr).unwrap();
        store.races.set(2);
        // Two racing writers got in first: 1 -> 2 -> 3, then ours makes 4.
        assert_eq!(update(&store, "k", 3, incr), Ok(4));
    }

    #[test]
    fn lease_elects_one_owner_and_expires() {
        let store = MemoryStore::new();
        Lease::init(&store, "lease").unwrap();
        Lease::init(&store, "lease").unwrap();
        assert_eq!(Lease::try_acquire(&store, "lease", 1, 1_000, 500), Ok(true));
        assert_eq!(
            Lease::try_acquire(&store, "lease", 2, 1_200, 500),
            Ok(false),
            "held by 1"
        );
        assert_eq!(
            Lease::try_acquire(&store, "lease", 1, 1_300, 500),
            Ok(true),
            "renewed by its owner"
        );
        assert_eq!(
            Lease::holder(&store, "lease", 1_300),
            Ok(Some(Lease {
                owner: 1,
                until_ms: 1_800
            }))
        );
        assert_eq!(
            Lease::try_acquire(&store, "lease", 2, 1_800, 500),
            Ok(true),
            "expired: taken over"
        );
        Lease::release(&store, "lease", 1).unwrap();
        assert_eq!(
            Lease::holder(&store, "lease", 1_900)
                .unwrap()
                .map(|l| l.owner),
            Some(2),
            "only the owner releases"
        );
        Lease::release(&store, "lease", 2).unwrap();
        assert_eq!(Lease::holder(&store, "lease", 1_900), Ok(None));
        assert_eq!(Lease::try_acquire(&store, "lease", 3, 1_900, 500), Ok(true));
    }

    #[test]
    fn ensure_exists_keeps_an_existing_value() {
        let store = MemoryStore::new();
        ensure_exists(&store, "k", b"first").unwrap();
        ensure_exists(&store, "k", b"second").unwrap();
        assert_eq!(
            store.get("k").unwrap().0.as_deref(),
            Some(b"first".as_slice())
        );
    }

    #[test]
    fn contention_gives_up_after_max_attempts() {
        let store = RacyStore {
            inner: MemoryStore::new(),
            races: Cell::new(0),
        };
        update(&store, "k", 3, incr).unwrap();
        store.races.set(5);
        assert_eq!(
            update(&store, "k", 2, incr),
            Err(UpdateError::Contended { attempts: 2 })
        );
    }
}
