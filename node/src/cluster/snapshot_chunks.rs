//! A guard on the install-snapshot chunks a follower receives.
//!
//! openraft writes each chunk at its offset into the receiving temp file, so a chunk far past
//! the bytes received so far would make that file grow to the offset before anything checked
//! it. The leader sends chunks in order (and starts over from 0 when it has to), so a chunk
//! may only continue or repeat what has arrived of the same snapshot, and no snapshot may grow
//! past a bound.

use std::sync::Mutex;

/// The largest snapshot a follower takes.
pub(super) const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

/// How much of which snapshot has arrived.
#[derive(Debug, Default)]
pub(super) struct ChunkGuard(Mutex<Option<(String, u64)>>);

impl ChunkGuard {
    /// Admits a chunk of `len` bytes at `offset` of snapshot `snapshot_id`, or says why not.
    pub(super) fn admit(&self, snapshot_id: &str, offset: u64, len: usize) -> Result<(), String> {
        let mut arrived = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let received = match arrived.as_ref() {
            Some((id, n)) if id == snapshot_id => *n,
            _ => 0,
        };
        if offset > received {
            return Err(format!(
                "snapshot chunk at offset {offset} is past the {received} bytes received so far"
            ));
        }
        let end = offset
            .checked_add(len as u64)
            .filter(|end| *end <= MAX_SNAPSHOT_BYTES)
            .ok_or_else(|| format!("snapshot larger than {MAX_SNAPSHOT_BYTES} bytes"))?;
        *arrived = Some((snapshot_id.to_owned(), received.max(end)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{ChunkGuard, MAX_SNAPSHOT_BYTES};

    /// Chunks in order, a repeated chunk and a restart from 0 pass; a gap, an offset far past
    /// the data, or a new snapshot that does not start at 0 do not.
    #[test]
    fn a_chunk_past_the_received_bytes_is_refused() {
        let g = ChunkGuard::default();
        g.admit("s1", 0, 100).unwrap();
        g.admit("s1", 100, 100).unwrap();
        g.admit("s1", 100, 100).expect("a retried chunk");
        assert!(g.admit("s1", 201, 10).is_err(), "a gap");
        assert!(g.admit("s1", u64::MAX - 5, 10).is_err(), "far past the end");
        assert!(
            g.admit("s2", 200, 10).is_err(),
            "another snapshot must start at 0"
        );
        g.admit("s2", 0, 10).unwrap();
        g.admit("s1", 0, 10)
            .expect("the first one again, from the start");
    }

    /// No snapshot grows past the bound, however it is sent.
    #[test]
    fn a_snapshot_stops_at_the_bound() {
        let g = ChunkGuard::default();
        assert!(g.admit("s", 0, usize::MAX).is_err());
        let mut off = 0;
        let chunk = 1 << 30;
        while off + chunk as u64 <= MAX_SNAPSHOT_BYTES {
            g.admit("s", off, chunk).unwrap();
            off += chunk as u64;
        }
        assert!(g.admit("s", off, 1).is_err());
    }
}
