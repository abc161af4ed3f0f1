//! GCRA limiting with `governor`, over the slot table in shared data.
//!
//! governor's [`StateStore`] and [`Clock`] traits are public, so its limiter
//! runs on our state and our clock:
//! - the clock is the host's time, set before each check;
//! - the state store is a per-request transaction over one slot record. Every
//!   window of the plan is checked against the record in memory, and the
//!   record is then written back with one compare-and-swap. On a CAS
//!   mismatch (another worker changed the slot) the whole check is redone on
//!   the fresh record, so a limit is exact across workers, and a request
//!   denied by one window takes nothing from the others.

use crate::config::Plan;
use crate::slots::{owner_id, Placement, Record, Table, MAX_WINDOWS};
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::RateLimiter;
use pwf_shared::shared_data::{SharedStore, StoreError};
use std::cell::{Cell, RefCell};
use std::num::NonZeroU32;
use std::rc::Rc;

/// CAS attempts before a check gives up as a store error.
const MAX_ATTEMPTS: u32 = 16;

/// Host time in nanoseconds since the Unix epoch, set by the caller.
#[derive(Debug, Clone, Default)]
pub struct HostClock(Rc<Cell<u64>>);

impl Clock for HostClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.get())
    }
}

/// The TATs of the slot being checked (0 = no state yet).
#[derive(Debug, Clone, Default)]
pub struct SlotTransaction(Rc<RefCell<[u64; MAX_WINDOWS]>>);

impl StateStore for SlotTransaction {
    type Key = usize;

    fn measure_and_replace<T, F, E>(&self, key: &usize, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let current = self
            .0
            .borrow()
            .get(*key)
            .copied()
            .filter(|&t| t != 0)
            .map(Nanos::from);
        let (out, next) = f(current)?;
        if let Some(tat) = self.0.borrow_mut().get_mut(*key) {
            *tat = next.as_u64();
        }
        Ok(out)
    }
}

type Limiter = RateLimiter<usize, SlotTransaction, HostClock, StateInformationMiddleware>;

/// One window's state after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// Index into the plan's windows.
    pub window: usize,
    /// Requests still allowed now.
    pub remaining: u32,
    /// Nanoseconds until the window is fully replenished (allowed) or until
    /// the request could pass (denied).
    pub reset_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(Vec<WindowState>),
    /// Denied; `window` is the denying window with the longest wait, and
    /// the request can pass after `retry_after_ns`.
    Deny {
        window: WindowState,
        retry_after_ns: u64,
    },
    /// Every probed slot holds another live client.
    Full,
    Store(StoreError),
}

/// The limiters of every plan window, over one slot table.
pub struct Engine {
    clock: HostClock,
    txn: SlotTransaction,
    /// Per plan, per window (shortest first).
    limiters: Vec<Vec<Limiter>>,
    table: Table,
}

impl Engine {
    pub fn new(plans: &[Plan], table: Table) -> Self {
        // The clock reads 0 while the limiters are built: governor keeps TATs
        // relative to its start time, and a start of 0 makes them absolute,
        // the same in every worker.
        let clock = HostClock::default();
        let txn = SlotTransaction::default();
        let limiters = plans
            .iter()
            .map(|p| {
                p.windows
                    .iter()
                    .map(|w| Limiter::new(w.quota, txn.clone(), clock.clone()))
                    .collect()
            })
            .collect();
        Self {
            clock,
            txn,
            limiters,
            table,
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Checks and, if allowed, records `cost` requests of `client` on plan
    /// `plan` (an index into the plans given to [`Engine::new`]).
    pub fn check<S: SharedStore>(
        &self,
        store: &S,
        plans: &[Plan],
        plan: usize,
        client: &[u8],
        cost: u32,
        now_ns: u64,
    ) -> Verdict {
        let (Some(p), Some(limiters)) = (plans.get(plan), self.limiters.get(plan)) else {
            return Verdict::Allow(Vec::new());
        };
        if limiters.is_empty() {
            return Verdict::Allow(Vec::new());
        }
        let cost = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        let owner = owner_id(&p.name, client);
        self.clock.0.set(now_ns);
        for _ in 0..MAX_ATTEMPTS {
            let (index, record, cas, claimed) = match self.table.place(store, owner, now_ns) {
                Ok(Placement::Slot {
                    index,
                    record,
                    cas,
                    claimed,
                }) => (index, record, cas, claimed),
                Ok(Placement::Full) => return Verdict::Full,
                Err(e) => return Verdict::Store(e),
            };
            // After the host clock steps back, a TAT can lie further ahead
            // than any request could have put it; it then counts as a used-up
            // burst (and is stored so, even if this request is denied), not as
            // a lockout for the length of the step.
            let mut tats = record.tats;
            let mut clamped = false;
            for (tat, w) in tats.iter_mut().zip(&p.windows) {
                let most = now_ns.saturating_add(w.refill_ns);
                if *tat > most {
                    *tat = most;
                    clamped = true;
                }
            }
            *self.txn.0.borrow_mut() = tats;
            let mut states = Vec::with_capacity(limiters.len());
            // A denied request may be denied by several windows: it can pass
            // only when all of them allow it, so the longest wait is reported.
            let mut denied: Option<WindowState> = None;
            for (window, limiter) in limiters.iter().enumerate() {
                let wait_ns = match limiter.check_key_n(&window, cost) {
                    Ok(Ok(snapshot)) => {
                        let tat = self.txn.0.borrow().get(window).copied().unwrap_or(0);
                        states.push(WindowState {
                            window,
                            remaining: snapshot.remaining_burst_capacity(),
                            reset_ns: tat.saturating_sub(now_ns),
                        });
                        continue;
                    }
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(Nanos::from(now_ns));
                        u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)
                    }
                    // Configuration keeps cost <= burst; deny if it ever is not.
                    Err(_) => 0,
                };
                if denied.is_none_or(|d| wait_ns > d.reset_ns) {
                    denied = Some(WindowState {
                        window,
                        remaining: 0,
                        reset_ns: wait_ns,
                    });
                }
            }
            if let Some(window) = denied {
                if clamped {
                    // Best effort: a CAS mismatch means another worker wrote.
                    let _ = store.set(
                        &self.table.key(index),
                        &Record { owner, tats }.encode(),
                        cas,
                    );
                }
                return Verdict::Deny {
                    window,
                    retry_after_ns: window.reset_ns,
                };
            }
            let updated = Record {
                owner,
                tats: *self.txn.0.borrow(),
            };
            match store.set(&self.table.key(index), &updated.encode(), cas) {
                Ok(()) => {
                    if claimed {
                        self.fold_duplicate(store, owner, index, now_ns);
                    }
                    return Verdict::Allow(states);
                }
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Verdict::Store(e),
            }
        }
        Verdict::Store(StoreError::Host(format!(
            "slot still contended after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// After claiming slot `mine`: two workers can claim different slots for
    /// one new client when a slot expires between their clocks. The client's
    /// first slot in probe order is the one every later check finds, so a
    /// claim behind it moves its requests there (the GCRA backlog of each
    /// window adds up) and frees itself; otherwise they would be forgotten.
    fn fold_duplicate<S: SharedStore>(&self, store: &S, owner: u64, mine: u32, now_ns: u64) {
        let first = match self.table.place(store, owner, now_ns) {
            Ok(Placement::Slot { index, .. }) if index != mine => index,
            _ => return,
        };
        let Some(taken) = self.take_slot(store, owner, mine) else {
            return;
        };
        let key = self.table.key(first);
        for _ in 0..MAX_ATTEMPTS {
            let Ok((bytes, cas)) = store.get(&key) else {
                return;
            };
            let mut target = Record::decode(bytes.as_deref());
            if target.owner != owner {
                return;
            }
            for (tat, extra) in target.tats.iter_mut().zip(taken.tats) {
                let backlog = extra.saturating_sub(now_ns);
                if backlog > 0 {
                    *tat = (*tat).max(now_ns).saturating_add(backlog);
                }
            }
            if store.set(&key, &target.encode(), cas).is_ok() {
                return;
            }
        }
    }

    /// Empties slot `index` if `owner` still holds it; returns what it held.
    fn take_slot<S: SharedStore>(&self, store: &S, owner: u64, index: u32) -> Option<Record> {
        let key = self.table.key(index);
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = store.get(&key).ok()?;
            let record = Record::decode(bytes.as_deref());
            if record.owner != owner {
                return None;
            }
            if store.set(&key, &Record::default().encode(), cas).is_ok() {
                return Some(record);
            }
        }
        None
    }
}
