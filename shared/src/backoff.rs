//! Retry delays: exponential, capped, with jitter so that many workers or
//! many Envoys retrying the same dependency spread out.

/// Retry timing in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial_ms: u64,
    /// No delay is longer than this.
    pub max_ms: u64,
}

impl Backoff {
    /// Delay before retry number `failures` (1-based): `initial_ms * 2^(failures-1)`,
    /// capped at `max_ms`, then moved by up to ±25% using `jitter` (any u64,
    /// e.g. a random number or a hash), and never above `max_ms` or below 1.
    pub fn delay_ms(&self, failures: u32, jitter: u64) -> u64 {
        let exp = failures.saturating_sub(1).min(32);
        let base = self.initial_ms.saturating_mul(1u64 << exp).min(self.max_ms);
        let spread = base / 4;
        let jittered = if spread == 0 {
            base
        } else {
            base - spread + jitter % (2 * spread + 1)
        };
        jittered.min(self.max_ms).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial_ms: 1000,
        max_ms: 30_000,
    };

    #[test]
    fn doubles_until_the_cap() {
        // jitter chosen to land on the unjittered value (spread = base/4; offset = spread).
        let exact = |f: u32| {
            let base = (1000u64 << (f - 1)).min(30_000);
            B.delay_ms(f, base / 4)
        };
        assert_eq!(exact(1), 1000);
        assert_eq!(exact(2), 2000);
        assert_eq!(exact(3), 4000);
        assert_eq!(exact(5), 16_000);
        assert_eq!(exact(6), 30_000);
        assert_eq!(
            B.delay_ms(1000, 0),
            22_500,
            "huge counts stay capped, minus jitter"
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter_and_below_the_cap() {
        for j in 0..2000u64 {
            let d = B.delay_ms(2, j * 7919);
            assert!((1500..=2500).contains(&d), "{d}");
            assert!(B.delay_ms(9, j) <= 30_000);
        }
        assert_eq!(B.delay_ms(2, 0), 1500);
        assert_eq!(B.delay_ms(2, 1000), 2500);
    }

    #[test]
    fn never_zero() {
        let b = Backoff {
            initial_ms: 0,
            max_ms: 0,
        };
        assert_eq!(b.delay_ms(1, 5), 1);
    }
}
