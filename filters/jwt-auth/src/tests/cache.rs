//! The verified-token cache.

use super::support::*;
use crate::cache::{TokenCache, NO_EXP_TTL_S};
use crate::verify::Verified;
use serde_json::json;
use std::rc::Rc;

const SKEW: u64 = 60;

fn verified(exp: Option<i64>) -> Verified {
    Verified {
        provider: 0,
        payload: Rc::new(json!({"sub": "alice"})),
        payload_segment: Rc::from("e30"),
        payload_json: None,
        exp,
        source: None,
    }
}

#[test]
fn hit_and_miss() {
    let mut c = TokenCache::new(8);
    let v = verified(Some(NOW as i64 + 100));
    assert_eq!(c.get(0, b"tok", 1, NOW), None);
    c.insert(0, b"tok", 1, &v, SKEW, NOW);
    assert_eq!(c.get(0, b"tok", 1, NOW), Some(v.clone()));
    assert_eq!(c.get(0, b"other", 1, NOW), None);
    assert_eq!(c.get(1, b"tok", 1, NOW), None, "keyed by provider too");
    assert_eq!((c.hits, c.misses, c.len()), (1, 3, 1));
}

#[test]
fn keys_are_the_whole_token_compared_in_full() {
    let mut c = TokenCache::new(8);
    let v = verified(Some(NOW as i64 + 100));
    c.insert(0, b"header.payload.sig", 1, &v, SKEW, NOW);
    for other in [
        b"header.payload.si".as_slice(),
        b"header.payload.sig.",
        b"header.payload.siG",
        b"Header.payload.sig",
        b"",
    ] {
        assert_eq!(c.get(0, other, 1, NOW), None, "{other:?}");
    }
    // The provider index is a fixed-width prefix: provider 1 with token "t"
    // never meets provider 0 with a token that starts with that index.
    c.insert(1, b"t", 1, &v, SKEW, NOW);
    let mut shifted = 1u64.to_le_bytes().to_vec();
    shifted.extend_from_slice(b"t");
    assert_eq!(c.get(0, &shifted, 1, NOW), None);
    assert_eq!(c.get(1, b"t", 1, NOW), Some(v.clone()));
    assert_eq!(c.get(0, b"header.payload.sig", 1, NOW), Some(v));
    assert_eq!((c.hits, c.misses, c.len()), (2, 6, 2));
}

#[test]
fn reinserting_a_token_replaces_its_entry() {
    let mut c = TokenCache::new(2);
    let old = verified(Some(NOW as i64 + 100));
    let new = verified(Some(NOW as i64 + 200));
    c.insert(0, b"a", 1, &old, SKEW, NOW);
    c.insert(0, b"a", 2, &new, SKEW, NOW);
    c.insert(0, b"b", 2, &old, SKEW, NOW);
    assert_eq!(
        (c.len(), c.evictions),
        (2, 0),
        "a replacement takes no extra room"
    );
    assert_eq!(
        c.get(0, b"a", 1, NOW),
        None,
        "the old key set's entry is gone"
    );
    c.insert(0, b"a", 2, &new, SKEW, NOW);
    assert_eq!(
        c.get(0, b"a", 2, NOW + 250),
        Some(new),
        "usable until the new exp + skew"
    );
}

#[test]
fn entries_expire_with_exp_plus_skew() {
    let mut c = TokenCache::new(8);
    let exp = NOW as i64 + 100;
    c.insert(0, b"tok", 1, &verified(Some(exp)), SKEW, NOW);
    assert!(
        c.get(0, b"tok", 1, NOW + 160).is_some(),
        "usable until exp + skew"
    );
    assert!(c.get(0, b"tok", 1, NOW + 161).is_none());
    assert_eq!(
        (c.expirations, c.len()),
        (1, 0),
        "an expired entry is dropped"
    );
}

#[test]
fn entries_without_exp_use_a_fixed_ttl() {
    let mut c = TokenCache::new(8);
    c.insert(0, b"tok", 1, &verified(None), SKEW, NOW);
    assert!(c.get(0, b"tok", 1, NOW + NO_EXP_TTL_S as u64).is_some());
    assert!(c.get(0, b"tok", 1, NOW + NO_EXP_TTL_S as u64 + 1).is_none());
}

#[test]
fn entries_are_tied_to_the_key_set() {
    let mut c = TokenCache::new(8);
    c.insert(0, b"tok", 1, &verified(None), SKEW, NOW);
    assert!(c.get(0, b"tok", 2, NOW).is_none());
    assert!(
        c.get(0, b"tok", 1, NOW).is_none(),
        "dropped once seen with new keys"
    );
}

#[test]
fn size_stays_bounded_with_fifo_eviction() {
    let max = 32;
    let mut c = TokenCache::new(max);
    let v = verified(Some(NOW as i64 + 1000));
    for i in 0..10 * max {
        c.insert(0, format!("token-{i}").as_bytes(), 1, &v, SKEW, NOW);
        assert!(c.len() <= max);
    }
    assert_eq!(c.len(), max);
    assert_eq!(c.evictions, (9 * max) as u64);
    // The newest entries survive, the oldest were evicted.
    assert!(c
        .get(0, format!("token-{}", 10 * max - 1).as_bytes(), 1, NOW)
        .is_some());
    assert!(c.get(0, b"token-0", 1, NOW).is_none());
}

#[test]
fn reinserting_and_expiring_keep_the_bound_and_the_order_compact() {
    let max = 4;
    let mut c = TokenCache::new(max);
    let v = verified(Some(NOW as i64 + 10));
    for round in 0..1000u64 {
        // The same token again (replacing) and a lookup that expires entries.
        c.insert(0, b"hot", 1, &v, 0, NOW);
        c.insert(0, format!("t{}", round % 7).as_bytes(), 1, &v, 0, NOW);
        let _ = c.get(0, format!("t{}", round % 5).as_bytes(), 1, NOW + 11);
        assert!(c.len() <= max);
    }
    assert!(c.get(0, b"hot", 1, NOW).is_some() || c.evictions > 0);
}

#[test]
fn zero_entries_disables_the_cache() {
    let mut c = TokenCache::new(0);
    c.insert(0, b"tok", 1, &verified(None), SKEW, NOW);
    assert_eq!(c.get(0, b"tok", 1, NOW), None);
    assert_eq!((c.len(), c.hits, c.misses), (0, 0, 0));
}
