//! When to fetch a remote JWKS, and the records workers share about it.
//!
//! One fetch serves every worker: the JWKS document lives in shared data with
//! the time it was fetched, and a small status record carries the failure
//! count, the backoff deadline and the unknown-`kid` refetch cooldown. A
//! [`Lease`](pwf_shared::shared_data::Lease) elects the worker that fetches.
//! Everything here is pure; the glue reads and writes the records.

/// Timing of one provider's remote JWKS, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long fetched keys are fresh.
    pub cache_duration_ms: u64,
    /// Keys are refreshed once this much of `cache_duration_ms` has passed (per mille).
    pub refresh_at_permille: u64,
    pub timeout_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Minimum time between refetches triggered by an unknown `kid`.
    pub refetch_cooldown_ms: u64,
}

impl Policy {
    /// Time after a fetch when a refresh is due.
    pub fn refresh_due(&self, fetched_at_ms: u64) -> u64 {
        fetched_at_ms.saturating_add(
            self.cache_duration_ms
                .saturating_mul(self.refresh_at_permille)
                / 1000,
        )
    }

    /// Delay before retry number `failures` (1-based): exponential, capped,
    /// with up to 25% jitter taken from `jitter` (any u64).
    pub fn backoff_ms(&self, failures: u32, jitter: u64) -> u64 {
        let exp = failures.saturating_sub(1).min(32);
        let base = self
            .retry_initial_ms
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_ms);
        let spread = base / 4;
        let jittered = if spread == 0 {
            base
        } else {
            base - spread + jitter % (2 * spread + 1)
        };
        jittered.min(self.retry_max_ms).max(1)
    }

    /// How long a fetching worker holds the lease: the request timeout plus a margin.
    pub fn lease_ms(&self) -> u64 {
        self.timeout_ms.saturating_add(1_000)
    }
}

/// The shared status of one provider's fetching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Consecutive failed fetches.
    pub failures: u32,
    /// No fetch before this time (backoff after failures).
    pub next_attempt_ms: u64,
    /// A refetch was requested (unknown `kid`) at this time; 0 if none is pending.
    pub refetch_requested_ms: u64,
    /// The last unknown-`kid` refetch was granted at this time.
    pub last_refetch_ms: u64,
}

const STATUS_LEN: usize = 28;

impl Status {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATUS_LEN);
        out.extend_from_slice(&self.failures.to_le_bytes());
        out.extend_from_slice(&self.next_attempt_ms.to_le_bytes());
        out.extend_from_slice(&self.refetch_requested_ms.to_le_bytes());
        out.extend_from_slice(&self.last_refetch_ms.to_le_bytes());
        out
    }

    /// Decodes a record; anything malformed reads as the default status.
    pub fn decode(bytes: Option<&[u8]>) -> Status {
        let Some(b) = bytes.filter(|b| b.len() == STATUS_LEN) else {
            return Status::default();
        };
        let u64_at = |at: usize| {
            b.get(at..at + 8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        };
        Status {
            failures: b
                .get(0..4)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map(u32::from_le_bytes)
                .unwrap_or(0),
            next_attempt_ms: u64_at(4),
            refetch_requested_ms: u64_at(12),
            last_refetch_ms: u64_at(20),
        }
    }

    /// After a fetch that started at `started_ms` succeeded. A refetch
    /// requested after that stays pending: the response may predate the key
    /// the request was looking for, so another fetch follows at once.
    pub fn after_success(self, started_ms: u64) -> Status {
        Status {
            failures: 0,
            next_attempt_ms: 0,
            refetch_requested_ms: if self.refetch_requested_ms > started_ms {
                self.refetch_requested_ms
            } else {
                0
            },
            last_refetch_ms: self.last_refetch_ms,
        }
    }

    pub fn after_failure(self, policy: &Policy, now_ms: u64, jitter: u64) -> Status {
        let failures = self.failures.saturating_add(1);
        Status {
            failures,
            next_attempt_ms: now_ms.saturating_add(policy.backoff_ms(failures, jitter)),
            // A failed refetch is not retried for the same unknown kid before the cooldown.
            refetch_requested_ms: 0,
            last_refetch_ms: self.last_refetch_ms,
        }
    }

    /// Grants an unknown-`kid` refetch if the cooldown has passed and no
    /// backoff holds fetches back. Returns the new status, or `None` if the
    /// request is refused (the token is then decided at once).
    pub fn request_refetch(self, policy: &Policy, now_ms: u64) -> Option<Status> {
        if now_ms < self.next_attempt_ms {
            return None; // no fetch could start: do not hold requests for one
        }
        if self.refetch_requested_ms != 0 {
            return Some(self); // already pending: join it
        }
        if self.last_refetch_ms != 0
            && now_ms
                < self
                    .last_refetch_ms
                    .saturating_add(policy.refetch_cooldown_ms)
        {
            return None;
        }
        Some(Status {
            refetch_requested_ms: now_ms,
            last_refetch_ms: now_ms,
            ..self
        })
    }
}

/// Why a fetch should start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchReason {
    /// No keys were ever fetched.
    Initial,
    /// The keys are due for refresh.
    Refresh,
    /// A token carried an unknown `kid`.
    UnknownKid,
}

/// Whether a fetch is due. `fetched_at_ms` is the time of the keys in shared
/// data, if any.
pub fn fetch_due(
    policy: &Policy,
    fetched_at_ms: Option<u64>,
    status: &Status,
    now_ms: u64,
) -> Option<FetchReason> {
    let reason = match fetched_at_ms {
        None => FetchReason::Initial,
        Some(_) if status.refetch_requested_ms != 0 => FetchReason::UnknownKid,
        Some(at) if now_ms >= policy.refresh_due(at) => FetchReason::Refresh,
        Some(_) => return None,
    };
    // Backoff applies to every reason, so a failing endpoint is not hammered.
    (now_ms >= status.next_attempt_ms).then_some(reason)
}

/// The JWKS document as shared between workers: fetch time, then the body.
pub fn encode_keys(fetched_at_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&fetched_at_ms.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// `(fetched_at_ms, body)`, or `None` for a malformed record.
pub fn decode_keys(record: &[u8]) -> Option<(u64, &[u8])> {
    let at = record
        .get(..8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)?;
    Some((at, record.get(8..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            cache_duration_ms: 300_000,
            refresh_at_permille: 900,
            timeout_ms: 2_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            refetch_cooldown_ms: 30_000,
        }
    }

    #[test]
    fn initial_fetch_then_refresh_before_expiry() {
        let p = policy();
        let s = Status::default();
        assert_eq!(fetch_due(&p, None, &s, 5), Some(FetchReason::Initial));
        assert_eq!(fetch_due(&p, Some(1_000), &s, 1_000 + 269_999), None);
        assert_eq!(
            fetch_due(&p, Some(1_000), &s, 1_000 + 270_000),
            Some(FetchReason::Refresh)
        );
    }

    #[test]
    fn failures_back_off_exponentially_with_a_cap_and_jitter() {
        let p = policy();
        assert_eq!(p.backoff_ms(1, 250), 1_000, "jitter centred on the base");
        assert_eq!(p.backoff_ms(2, 500), 2_000);
        assert_eq!(p.backoff_ms(3, 1_000), 4_000);
        assert_eq!(p.backoff_ms(30, 30_000), 60_000, "capped");
        for jitter in [0, 1, 77, 249, 250, 499, 500, u64::MAX] {
            let d = p.backoff_ms(1, jitter);
            assert!((750..=1_250).contains(&d), "{d}");
        }
        let s = Status::default().after_failure(&p, 10_000, 250);
        assert_eq!(s.failures, 1);
        assert_eq!(s.next_attempt_ms, 11_000);
        assert_eq!(fetch_due(&p, None, &s, 10_999), None, "backing off");
        assert_eq!(fetch_due(&p, None, &s, 11_000), Some(FetchReason::Initial));
        assert_eq!(s.after_success(10_000), Status::default());
    }

    #[test]
    fn unknown_kid_refetch_has_a_cooldown() {
        let p = policy();
        let s = Status::default().request_refetch(&p, 100_000).unwrap();
        assert_eq!(
            fetch_due(&p, Some(99_000), &s, 100_000),
            Some(FetchReason::UnknownKid)
        );
        assert_eq!(
            s.request_refetch(&p, 100_500),
            Some(s),
            "joins the pending refetch"
        );
        let done = s.after_success(100_000);
        assert_eq!(done.refetch_requested_ms, 0);
        assert_eq!(done.request_refetch(&p, 129_999), None, "cooldown");
        assert!(done.request_refetch(&p, 130_000).is_some());
    }

    #[test]
    fn a_refetch_requested_during_a_fetch_outlives_it() {
        let p = policy();
        // A refresh started at 100_000; a token with a new kid arrived at 100_200.
        let s = Status::default().request_refetch(&p, 100_200).unwrap();
        let done = s.after_success(100_000);
        assert_eq!(done.refetch_requested_ms, 100_200, "still pending");
        assert_eq!(
            fetch_due(&p, Some(100_400), &done, 100_400),
            Some(FetchReason::UnknownKid),
            "another fetch follows at once"
        );
        let second = done.after_success(100_400);
        assert_eq!(second.refetch_requested_ms, 0);
        assert_eq!(second.request_refetch(&p, 100_500), None, "cooldown");
    }

    #[test]
    fn no_refetch_is_granted_or_joined_while_fetches_back_off() {
        let p = policy();
        // The endpoint failed: no fetch before 111_000.
        let failed = Status::default().after_failure(&p, 110_000, 250);
        assert_eq!(failed.request_refetch(&p, 110_500), None);
        // A refetch pending when a backoff starts is not joined either.
        let pending = Status {
            next_attempt_ms: 111_000,
            refetch_requested_ms: 109_000,
            last_refetch_ms: 109_000,
            ..Status::default()
        };
        assert_eq!(pending.request_refetch(&p, 110_500), None);
        assert_eq!(pending.request_refetch(&p, 111_000), Some(pending));
        let later = failed.request_refetch(&p, 111_000).unwrap();
        assert_eq!(
            fetch_due(&p, Some(0), &later, 111_000),
            Some(FetchReason::UnknownKid)
        );
    }

    #[test]
    fn records_round_trip_and_malformed_ones_are_safe() {
        let s = Status {
            failures: 3,
            next_attempt_ms: 9,
            refetch_requested_ms: 7,
            last_refetch_ms: 5,
        };
        assert_eq!(Status::decode(Some(&s.encode())), s);
        assert_eq!(Status::decode(Some(b"short")), Status::default());
        assert_eq!(Status::decode(None), Status::default());
        let rec = encode_keys(42, b"{\"keys\":[]}");
        assert_eq!(decode_keys(&rec), Some((42, b"{\"keys\":[]}".as_slice())));
        assert_eq!(decode_keys(b"1234"), None);
    }
}
