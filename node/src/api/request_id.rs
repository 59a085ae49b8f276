//! The ids that deduplicate retried writes (`state/apply/dedup.rs`).

use crate::state::unix_nanos_now;
use rand::RngCore;

/// A request id for deduplication: the time it was made (Unix nanoseconds) in its high 64 bits,
/// then 64 random bits.
///
/// Why the time first: every apply looks the id up in the `requests` tree, inserts it there,
/// and removes it again once it leaves the window, and sled orders that tree by key. Random ids
/// spread those walks over a tree that holds an id for every write of the last 100,000 log
/// entries, as large as the `keys` tree once a cluster has taken that many writes; ids that grow
/// with time are inserted at its right edge and expire from its left, so the walks stay on a
/// few hot pages. The random half keeps ids from two nodes, or one nanosecond, apart. A clock
/// that steps back only puts ids away from the edge: uniqueness never rests on the time.
pub fn new_request_id() -> u128 {
    let made = u64::try_from(unix_nanos_now()).unwrap_or(0);
    (u128::from(made) << 64) | u128::from(rand::rng().next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_sort_in_the_order_they_were_made_and_never_repeat() {
        let before = u64::try_from(unix_nanos_now()).unwrap();
        let ids: Vec<u128> = (0..10_000).map(|_| new_request_id()).collect();
        let after = u64::try_from(unix_nanos_now()).unwrap();
        let made = |id: u128| (id >> 64) as u64;
        assert!(ids.iter().all(|id| (before..=after).contains(&made(*id))));
        assert!(ids.windows(2).all(|w| made(w[0]) <= made(w[1])));
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        // Made in the same nanosecond or not, their random halves differ.
        assert!(ids.windows(2).all(|w| w[0] as u64 != w[1] as u64));
    }
}
