//! When to fetch, how long a token is used, and the records workers share.
//!
//! Each source has three shared-data keys (one per source, so the key set is
//! bounded): the current token record, a fetch status record, and a lease
//! that elects the worker doing the fetch. Everything here is pure; the glue
//! reads and writes the records.

use pwf_shared::backoff::Backoff;
use serde::{Deserialize, Serialize};

/// Refresh timing of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    /// Refresh after this much of the lifetime (per mille).
    pub at_permille: u64,
    /// ... minus up to this much more, at random (per mille).
    pub jitter_permille: u64,
    /// Stop using a token this long before it expires (capped at half the lifetime).
    pub margin_ms: u64,
    pub backoff: Backoff,
}

/// A token as every worker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub access_token: String,
    /// When the request that got it was sent.
    pub fetched_at_ms: u64,
    /// `fetched_at_ms + expires_in`.
    pub expires_at_ms: u64,
    /// Used until then (the expiry minus the margin).
    pub usable_until_ms: u64,
    /// A refresh is due from then on.
    pub refresh_at_ms: u64,
}

impl TokenRecord {
    /// The record for a token obtained by a request sent at `sent_at_ms`.
    /// `random` is any u64; it places the refresh within the jitter window.
    pub fn new(
        access_token: String,
        expires_in_s: u64,
        sent_at_ms: u64,
        refresh: &Refresh,
        random: u64,
    ) -> Self {
        let lifetime = expires_in_s.saturating_mul(1000);
        let margin = refresh.margin_ms.min(lifetime / 2);
        let usable_until_ms = sent_at_ms.saturating_add(lifetime - margin);
        let jitter = refresh.jitter_permille.saturating_add(1);
        let at_permille = refresh.at_permille.saturating_sub(random % jitter).max(1);
        let refresh_at_ms = sent_at_ms
            .saturating_add(lifetime.saturating_mul(at_permille) / 1000)
            .min(usable_until_ms);
        TokenRecord {
            access_token,
            fetched_at_ms: sent_at_ms,
            expires_at_ms: sent_at_ms.saturating_add(lifetime),
            usable_until_ms,
            refresh_at_ms,
        }
    }

    pub fn is_usable(&self, now_ms: u64) -> bool {
        now_ms < self.usable_until_ms
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for an absent or unreadable record.
    pub fn decode(bytes: Option<&[u8]>) -> Option<TokenRecord> {
        serde_json::from_slice(bytes?).ok()
    }
}

/// The shared status of one source's fetching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchStatus {
    /// Failed fetches since the last success.
    pub failures: u32,
    /// No fetch before this time (backoff).
    pub next_attempt_ms: u64,
    /// The reason of the last failure (a metric dimension, never a secret).
    pub last_error: Option<String>,
}

impl FetchStatus {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Anything unreadable reads as the default status.
    pub fn decode(bytes: Option<&[u8]>) -> FetchStatus {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }

    pub fn after_success() -> FetchStatus {
        FetchStatus::default()
    }

    pub fn after_failure(
        &self,
        reason: &str,
        backoff: &Backoff,
        now_ms: u64,
        random: u64,
    ) -> FetchStatus {
        let failures = self.failures.saturating_add(1);
        FetchStatus {
            failures,
            next_attempt_ms: now_ms.saturating_add(backoff.delay_ms(failures, random)),
            last_error: Some(reason.to_owned()),
        }
    }
}

/// Whether a fetch should start now, given the shared records.
pub fn fetch_due(token: Option<&TokenRecord>, status: &FetchStatus, now_ms: u64) -> bool {
    if now_ms < status.next_attempt_ms {
        return false;
    }
    token.is_none_or(|t| now_ms >= t.refresh_at_ms)
}

/// How long the fetching worker holds the lease: the request timeout plus a
/// margin. A worker that dies mid-fetch blocks others no longer than this.
pub fn lease_ms(timeout_ms: u64) -> u64 {
    timeout_ms.saturating_add(1_000)
}

/// What to do with a request of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A usable token exists.
    Inject,
    /// Wait for a token until this time.
    Hold { deadline_ms: u64 },
    /// No token, and no reason to wait: apply `on_unavailable`.
    Unavailable,
}

/// Decides a request from the worker's view of the records. A request is
/// held only while no fetch has failed since the last success: once the
/// endpoint is known to be failing, waiting would only add latency.
pub fn decide(
    token: Option<&TokenRecord>,
    status: &FetchStatus,
    hold_timeout_ms: u64,
    may_hold: bool,
    now_ms: u64,
) -> Decision {
    if token.is_some_and(|t| t.is_usable(now_ms)) {
        return Decision::Inject;
    }
    if may_hold && hold_timeout_ms > 0 && status.failures == 0 {
        return Decision::Hold {
            deadline_ms: now_ms.saturating_add(hold_timeout_ms),
        };
    }
    Decision::Unavailable
}

/// Seconds a client should wait before retrying, for `Retry-After`.
pub fn retry_after_s(status: &FetchStatus, now_ms: u64) -> u64 {
    status
        .next_attempt_ms
        .saturating_sub(now_ms)
        .div_ceil(1000)
        .max(1)
}
