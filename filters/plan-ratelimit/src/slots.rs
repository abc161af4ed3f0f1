//! A bounded table of client slots in shared data.
//!
//! Shared data never expires, so client state lives in a fixed table of
//! `slots` keys, created at configure time. A client hashes to a slot and
//! probes up to [`PROBES`] slots (double hashing): it uses the slot it already owns, or
//! else the first slot that is empty or expired. A slot is expired when every
//! window's theoretical arrival time (GCRA TAT) has passed: its state then
//! equals a fresh one, so handing it to another client changes nobody's
//! limit. If all probed slots hold live clients, the store is full for that
//! client and `on_store_error` applies.

use pwf_shared::shared_data::{SharedStore, StoreError};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Windows per plan (second, minute, hour, day).
pub const MAX_WINDOWS: usize = 4;
/// Slots a client may probe.
pub const PROBES: u32 = 8;
const RECORD_LEN: usize = 8 + 8 * MAX_WINDOWS;

/// One slot: its owner (a hash of plan and client; 0 = empty) and the TAT of
/// each window of the owner's plan, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    pub owner: u64,
    pub tats: [u64; MAX_WINDOWS],
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        let fields = std::iter::once(self.owner).chain(self.tats);
        for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Anything malformed reads as an empty slot.
    pub fn decode(bytes: Option<&[u8]>) -> Record {
        let Some(b) = bytes.filter(|b| b.len() == RECORD_LEN) else {
            return Record::default();
        };
        let mut words = b
            .chunks_exact(8)
            .map(|c| <[u8; 8]>::try_from(c).map_or(0, u64::from_le_bytes));
        let owner = words.next().unwrap_or(0);
        let mut tats = [0u64; MAX_WINDOWS];
        for (t, w) in tats.iter_mut().zip(words) {
            *t = w;
        }
        Record { owner, tats }
    }

    /// Free for any client: empty, or every window fully replenished.
    pub fn is_reusable(&self, now_ns: u64) -> bool {
        self.owner == 0 || self.tats.iter().all(|&t| t <= now_ns)
    }
}

/// The owner id of a client on a plan; never 0.
pub fn owner_id(plan: &str, client: &[u8]) -> u64 {
    // Fixed keys: every worker must compute the same value.
    let mut h = DefaultHasher::new();
    plan.hash(&mut h);
    client.hash(&mut h);
    h.finish().max(1)
}

/// Where a client's state is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The client's own slot, or a free one it may take.
    Slot {
        index: u32,
        record: Record,
        cas: Option<u32>,
        /// The slot was taken over (empty or expired); its record starts fresh.
        claimed: bool,
    },
    /// Every probed slot holds another live client.
    Full,
}

/// How far a count of the live slots has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LivePass {
    next: u32,
    live: u32,
}

/// The table's keys: `<prefix>/<index>`.
#[derive(Debug, Clone)]
pub struct Table {
    prefix: String,
    slots: u32,
}

impl Table {
    pub fn new(prefix: String, slots: u32) -> Self {
        Self {
            prefix,
            slots: slots.max(1),
        }
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// `<prefix>/<index>`: built on every request, so without `format!`.
    pub fn key(&self, index: u32) -> String {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(index);
        let mut key = String::with_capacity(self.prefix.len() + 1 + digits.len());
        key.push_str(&self.prefix);
        key.push('/');
        key.push_str(digits);
        key
    }

    /// Creates every slot key, empty, if missing. Creating a key is not a CAS
    /// operation in Envoy, so keys must exist before requests update them.
    pub fn create<S: SharedStore>(&self, store: &S) -> Result<(), StoreError> {
        let marker = format!("{}/ready", self.prefix);
        if store.get(&marker)?.0.is_some() {
            return Ok(());
        }
        let empty = Record::default().encode();
        for i in 0..self.slots {
            pwf_shared::shared_data::ensure_exists(store, &self.key(i), &empty)?;
        }
        store.set(&marker, b"1", None)
    }

    /// Finds the client's slot: its own if it has one among the probes, else
    /// the first reusable one.
    pub fn place<S: SharedStore>(
        &self,
        store: &S,
        owner: u64,
        now_ns: u64,
    ) -> Result<Placement, StoreError> {
        let slots = u64::from(self.slots);
        // Double hashing: clients that collide on the first slot go different
        // ways, so live clients do not pile up in runs.
        let start = owner % slots;
        // An odd step visits every slot of a power-of-two table.
        let step = ((owner >> 32) % slots) | 1;
        let mut free: Option<(u32, Option<u32>)> = None;
        for i in 0..u64::from(PROBES.min(self.slots)) {
            let index = u32::try_from((start + i * step) % slots).unwrap_or(0);
            let (bytes, cas) = store.get(&self.key(index))?;
            let record = Record::decode(bytes.as_deref());
            if record.owner == owner {
                return Ok(Placement::Slot {
                    index,
                    record,
                    cas,
                    claimed: false,
                });
            }
            if free.is_none() && record.is_reusable(now_ns) {
                free = Some((index, cas));
            }
        }
        Ok(match free {
            Some((index, cas)) => Placement::Slot {
                index,
                record: Record {
                    owner,
                    tats: [0; MAX_WINDOWS],
                },
                cas,
                claimed: true,
            },
            None => Placement::Full,
        })
    }

    /// Counts the next `chunk` slots of a pass over the table (one
    /// shared-data read each); returns the number of slots holding a live
    /// client once the pass has covered the whole table, and starts the next
    /// pass. A part at a time, so a large table never stalls a worker.
    pub fn count_live<S: SharedStore>(
        &self,
        store: &S,
        pass: &mut LivePass,
        chunk: u32,
        now_ns: u64,
    ) -> Option<u32> {
        let start = pass.next.min(self.slots);
        let end = start.saturating_add(chunk.max(1)).min(self.slots);
        pass.live += self.live(store, start..end, now_ns);
        pass.next = end;
        if end < self.slots {
            return None;
        }
        let live = pass.live;
        *pass = LivePass::default();
        Some(live)
    }

    /// Slots of `range` holding a live client at `now_ns`.
    fn live<S: SharedStore>(&self, store: &S, range: std::ops::Range<u32>, now_ns: u64) -> u32 {
        range
            .filter(|&i| {
                store
                    .get(&self.key(i))
                    .is_ok_and(|(b, _)| !Record::decode(b.as_deref()).is_reusable(now_ns))
            })
            .count() as u32
    }
}
