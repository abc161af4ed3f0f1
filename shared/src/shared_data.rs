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
        proxy_wasm::hostcalls::get_shared_data(key).map_err(|s| StoreError::Host(format!("{s:?}")))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match proxy_wasm::hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(proxy_wasm::types::Status::CasMismatch) => Err(StoreError::CasMismatch),
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
