//! Per-identity rate limits (`rate_limits:`): a token bucket per identity, on this node.
//!
//! Each node counts only the requests it answers, so across N nodes an identity that spreads
//! its requests over all of them gets up to N times its rate (README, "Rate limits"). Sharing
//! the count would put a round trip on every request, which is what the limit protects.

use crate::config::{RateLimit, RateLimitsConfig};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Identities whose buckets are tracked at once. A bucket that has refilled is forgotten (a
/// new one starts full, which is the same), so only identities that sent recently count
/// toward this. Should that many still be draining, a new identity is refused until some have
/// refilled: memory stays bounded whatever number of certificates a client holds.
const MAX_TRACKED: usize = 65_536;

/// Why a request was refused: it may be retried after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// The `Retry-After` header's value: whole seconds, rounded up, at least 1.
    pub fn header_seconds(&self) -> u64 {
        self.0.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// The buckets of every identity that sent recently, and the limits that fill them.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitsConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    limit: RateLimit,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(self.limit.rate)).min(f64::from(self.limit.burst));
        self.at = now;
    }

    fn is_full(&self, now: Instant) -> bool {
        let mut b = *self;
        b.refill(now);
        b.tokens >= f64::from(b.limit.burst)
    }
}

impl RateLimiter {
    /// A limiter for `config`, or `None` when it limits nothing (requests skip the limiter).
    pub fn new(config: &RateLimitsConfig) -> Option<Self> {
        config.limits_anything().then(|| RateLimiter {
            config: config.clone(),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The limit of an identity: the admin's own (none unless configured), else that of the
    /// policy it is assigned to in the request's enclave, else the default. `policy` is asked
    /// only when some policy has a limit, as it reads the state.
    pub fn limit_of<E>(
        &self,
        is_admin: bool,
        policy: impl FnOnce() -> Result<Option<String>, E>,
    ) -> Result<Option<RateLimit>, E> {
        if is_admin {
            return Ok(self.config.admin);
        }
        if !self.config.policies.is_empty()
            && let Some(limit) = policy()?.and_then(|p| self.config.policies.get(&p).copied())
        {
            return Ok(Some(limit));
        }
        Ok(self.config.default)
    }

    /// Takes one request from the bucket `key` names, or says how long until it could. The
    /// caller keys buckets by enclave and identity, as the limit depends on the identity's
    /// policy in the enclave: one bucket for both would let a low limit cap a high one.
    pub fn admit(&self, key: &str, limit: RateLimit, now: Instant) -> Result<(), RetryAfter> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) {
            if buckets.len() >= MAX_TRACKED {
                buckets.retain(|_, b| !b.is_full(now));
            }
            if buckets.len() >= MAX_TRACKED {
                return Err(RetryAfter(Duration::from_secs(1)));
            }
            let full = Bucket {
                tokens: f64::from(limit.burst),
                at: now,
                limit,
            };
            buckets.insert(key.to_owned(), full);
        }
        let bucket = buckets
            .get_mut(key)
            .expect("the bucket was just looked up or made");
        // A changed policy assignment changes the limit from the next request on.
        bucket.limit = limit;
        bucket.refill(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / f64::from(limit.rate);
            Err(RetryAfter(Duration::from_secs_f64(wait)))
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(default: Option<RateLimit>) -> RateLimiter {
        let mut config = RateLimitsConfig {
            default,
            ..Default::default()
        };
        config.policies.insert(
            "minio".into(),
            RateLimit {
                rate: 100,
                burst: 100,
            },
        );
        RateLimiter::new(&config).expect("limits something")
    }

    const TEN: RateLimit = RateLimit { rate: 10, burst: 5 };

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let l = limiter(Some(TEN));
        let t0 = Instant::now();
        for _ in 0..5 {
            l.admit("a", TEN, t0).expect("within the burst");
        }
        let refused = l.admit("a", TEN, t0).expect_err("past the burst");
        assert_eq!(refused.0, Duration::from_millis(100));
        assert_eq!(refused.header_seconds(), 1);
        // Another identity has a bucket of its own.
        l.admit("b", TEN, t0).expect("b's own bucket");
        // 100 ms later one more token has come; a second later, the burst again, no more.
        l.admit("a", TEN, t0 + Duration::from_millis(100))
            .expect("refilled one");
        assert!(l.admit("a", TEN, t0 + Duration::from_millis(100)).is_err());
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            l.admit("a", TEN, later).expect("a full bucket");
        }
        assert!(
            l.admit("a", TEN, later).is_err(),
            "the burst caps the refill"
        );
    }

    #[test]
    fn the_limit_is_the_admins_the_policys_or_the_default() {
        let l = limiter(Some(TEN));
        let of = |l: &RateLimiter, admin: bool, policy: Option<&str>| {
            l.limit_of::<()>(admin, || Ok(policy.map(String::from)))
                .unwrap()
        };
        assert_eq!(
            l.limit_of::<()>(true, || panic!("not asked")),
            Ok(None),
            "admin exempt"
        );
        assert_eq!(
            of(&l, false, Some("minio")),
            Some(RateLimit {
                rate: 100,
                burst: 100
            })
        );
        assert_eq!(of(&l, false, Some("other")), Some(TEN));
        assert_eq!(of(&l, false, None), Some(TEN));
        assert_eq!(of(&limiter(None), false, None), None);
        assert!(RateLimiter::new(&RateLimitsConfig::default()).is_none());
    }

    /// However many identities send, the table stays bounded: refilled buckets are forgotten,
    /// and past the bound a new identity waits.
    #[test]
    fn the_table_of_buckets_is_bounded() {
        let l = limiter(Some(TEN));
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED {
            l.admit(&format!("id{i}"), TEN, t0)
                .expect("a first request");
        }
        assert!(l.admit("one-too-many", TEN, t0).is_err());
        assert_eq!(l.tracked(), MAX_TRACKED);
        // Once they have refilled, they make room.
        let later = t0 + Duration::from_secs(1);
        l.admit("one-too-many", TEN, later).expect("room again");
        assert_eq!(l.tracked(), 1);
    }
}
