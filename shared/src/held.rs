//! Requests a filter paused (returned `Action::Pause` for) until what they
//! wait for arrives or their deadline passes.
//!
//! Pure bookkeeping: the glue decides when a wait is over, and finishes each
//! request [`HeldRequests::take_ready`] returns after
//! [`host::switch_to_stream`](crate::host::switch_to_stream).

/// Paused requests of one worker, at most `capacity` of them.
pub struct HeldRequests<T> {
    held: Vec<Held<T>>,
    capacity: usize,
}

struct Held<T> {
    context_id: u32,
    deadline_ms: u64,
    waiting_for: T,
}

impl<T> HeldRequests<T> {
    /// Holds at most `capacity` requests; further ones are refused, so a
    /// long outage under load cannot grow a worker's memory without bound.
    pub fn new(capacity: usize) -> Self {
        Self {
            held: Vec::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.held.len() >= self.capacity
    }

    /// Records a paused request; false (nothing recorded) when full.
    #[must_use = "a request that was not held must not be paused"]
    pub fn hold(&mut self, context_id: u32, deadline_ms: u64, waiting_for: T) -> bool {
        if self.is_full() {
            return false;
        }
        self.held.push(Held {
            context_id,
            deadline_ms,
            waiting_for,
        });
        true
    }

    pub fn is_held(&self, context_id: u32) -> bool {
        self.held.iter().any(|h| h.context_id == context_id)
    }

    /// Drops a request that ended while held (e.g. the client went away).
    pub fn forget(&mut self, context_id: u32) {
        self.held.retain(|h| h.context_id != context_id);
    }

    /// Removes and returns the requests whose deadline has passed at `now_ms`
    /// or whose wait `is_over`, oldest first.
    pub fn take_ready(
        &mut self,
        now_ms: u64,
        mut is_over: impl FnMut(&T) -> bool,
    ) -> Vec<(u32, T)> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .held
            .drain(..)
            .partition(|h| now_ms >= h.deadline_ms || is_over(&h.waiting_for));
        self.held = waiting;
        ready
            .into_iter()
            .map(|h| (h.context_id, h.waiting_for))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::HeldRequests;

    #[test]
    fn refuses_beyond_capacity() {
        let mut held = HeldRequests::new(2);
        assert!(held.hold(1, 100, ()));
        assert!(held.hold(2, 100, ()));
        assert!(held.is_full());
        assert!(!held.hold(3, 100, ()));
        assert_eq!(held.len(), 2);
        assert!(!held.is_held(3));
    }

    #[test]
    fn releases_on_deadline_or_when_the_wait_is_over() {
        let mut held = HeldRequests::new(8);
        let _ = held.hold(1, 100, "keys");
        let _ = held.hold(2, 500, "token");
        let _ = held.hold(3, 500, "keys");
        assert!(held.take_ready(50, |_| false).is_empty());
        assert_eq!(held.take_ready(100, |_| false), vec![(1, "keys")]);
        assert_eq!(held.take_ready(200, |w| *w == "keys"), vec![(3, "keys")]);
        assert!(held.is_held(2));
        assert_eq!(held.take_ready(500, |_| false), vec![(2, "token")]);
        assert!(held.is_empty());
    }

    #[test]
    fn forget_drops_only_that_request() {
        let mut held = HeldRequests::new(8);
        let _ = held.hold(1, 100, ());
        let _ = held.hold(2, 100, ());
        held.forget(1);
        assert!(!held.is_held(1));
        assert!(held.is_held(2));
    }
}
