//! Retry as data: exponential backoff with full jitter, driven by the
//! error's kind. Only [`ErrorKind::Transient`](crate::ErrorKind) errors are
//! retried (not those marked [`later`](crate::Error::later)); the last
//! error is returned as it is.

use crate::error::Result;
use std::future::Future;
use std::time::Duration;

/// How to retry: how many tries and how long to wait between them. Each
/// kind of work has its named policy, chosen for what usually fails there.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Delay cap before the first retry.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// Connecting to a source: 5 tries, 200 ms doubling to 10 s (~20 s in
    /// all): rides out a server restart or a full session table.
    pub const CONNECT: RetryPolicy = RetryPolicy::new(5, 200, 10_000);
    /// Listing a folder: as [`CONNECT`](Self::CONNECT); a listing that
    /// still fails fails the job's pass, never looks empty.
    pub const LIST: RetryPolicy = RetryPolicy::new(5, 200, 10_000);
    /// Fetching and normalizing one file: 3 tries, 1 s doubling. A read
    /// that drops mid-file is resumed inside the try ([`RESUME`](Self::RESUME));
    /// a file whose resumes ran out, or that changed, is left for a later
    /// pass instead of being read again here, so one file is opened at
    /// most a handful of times per pass.
    pub const FETCH: RetryPolicy = RetryPolicy::new(3, 1_000, 10_000);
    /// Resuming a dropped download at its offset: 5 resumes, 200 ms
    /// doubling to 3.2 s (at least ~3 s in all, enough for a restarted
    /// server to listen again).
    pub const RESUME: RetryPolicy = RetryPolicy::new(6, 200, 3_200);
    /// Uploading a staged part or object: 5 tries, 200 ms doubling to
    /// 10 s; the SDK retries throttling inside each try.
    pub const UPLOAD: RetryPolicy = RetryPolicy::new(5, 200, 10_000);
    /// A load transaction: 5 tries, 200 ms doubling to 10 s: long enough
    /// to ride out a serialization conflict (1023, 40001), a lock timeout
    /// or a dropped connection, short enough that a dead warehouse fails
    /// the pass within half a minute.
    pub const LOAD: RetryPolicy = RetryPolicy::new(5, 200, 10_000);
    /// Polling a Data API statement: 20 ms doubling to 1 s between
    /// `DescribeStatement`s (no limit on tries: the statement timeout ends
    /// the wait).
    pub const POLL: RetryPolicy = RetryPolicy::new(u32::MAX, 20, 1_000);

    /// A policy of `attempts` tries, `base_ms` doubling to `max_ms`.
    pub const fn new(attempts: u32, base_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    /// The delay before retry number `n` (1-based): uniform in
    /// `[cap/2, cap]` with `cap = min(max, base * 2^(n-1))` ("equal
    /// jitter": replicas that failed together spread out, and a wait is
    /// never much shorter than planned).
    pub fn delay(&self, n: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max);
        cap.mul_f64(0.5 + crate::rng::unit() / 2.0)
    }
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
        let got = retry(RetryPolicy::LOAD, "test", || async {
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
        let err = retry(RetryPolicy::LOAD, "test", || async {
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
        let err = retry(RetryPolicy::LOAD, "test", || async {
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
        let policy = RetryPolicy::FETCH;
        assert_eq!(policy.attempts, 3);
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
        let p = RetryPolicy::LOAD;
        for n in 1..20 {
            assert!(p.delay(n) <= p.max);
        }
        assert!(p.delay(1) <= p.base);
    }
}
