//! Retry as data: exponential backoff with full jitter, driven by the
//! error's kind. Only [`ErrorKind::Transient`](crate::ErrorKind) errors are
//! retried (not those marked [`later`](crate::Error::later)); the last
//! error is returned as it is.

use crate::error::Result;
use std::future::Future;
use std::time::Duration;

/// How to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Delay cap before the first retry.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 5 tries, 200 ms doubling to at most 10 s: long enough to ride out a
    /// serialization conflict or a dropped connection, short enough that a
    /// dead server fails the pass within half a minute.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `n` (1-based): uniform in
    /// `[0, min(max, base * 2^(n-1))]` ("full jitter").
    pub fn delay(&self, n: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max);
        let r = random_unit();
        cap.mul_f64(r)
    }
}

/// xorshift64*: small, fast, deterministic pseudo-random numbers for
/// randomized tests that must be replayable from a printed seed. Not for
/// anything that needs unpredictability.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        // A zero state would stay zero.
        if self.0 == 0 {
            self.0 = 0x9E37_79B9_7F4A_7C15;
        }
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs `op` until it succeeds, fails permanently, or the tries run out.
pub async fn retry<T, F, Fut>(policy: RetryPolicy, what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && !e.only_later() && attempt < policy.attempts => {
                let delay = policy.delay(attempt);
                tracing::warn!(what, attempt, error = %e.chain(), delay_ms = delay.as_millis() as u64, "transient failure; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let got = retry(RetryPolicy::default(), "test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Error::transient("flaky"))
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let err = retry(RetryPolicy::default(), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::permanent("bad data"))
        })
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "bad data");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// A file that changed while it was read is not read again and again
    /// in the same pass: only a later pass, once it settled.
    #[tokio::test(start_paused = true)]
    async fn errors_for_a_later_pass_are_not_retried_now() {
        let calls = AtomicU32::new(0);
        let err = retry(RetryPolicy::default(), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::transient("changed while it was read").later())
        })
        .await
        .unwrap_err();
        assert!(err.is_transient() && err.only_later());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_attempt() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            attempts: 3,
            ..Default::default()
        };
        assert!(
            retry(policy, "test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::transient("down"))
            })
            .await
            .is_err()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn delays_stay_under_their_cap() {
        let p = RetryPolicy::default();
        for n in 1..20 {
            assert!(p.delay(n) <= p.max);
        }
        assert!(p.delay(1) <= p.base);
    }
}
