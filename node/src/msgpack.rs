//! Decoding MessagePack (log entries, peer messages, snapshots, stored records) with a bound on
//! nesting.
//!
//! rmp-serde allows 1,024 levels, and skipping an unknown field of that depth recurses once per
//! level: on a 2 MiB tokio worker stack a debug build overflowed (the `snapshot_chunk` fuzz
//! target died with SIGSEGV in CI). Nothing we encode nests deeper than a dozen levels (a batch
//! entry: entry, command, op, commands, command, op, policy, rules), so peer or disk input that
//! does is refused as malformed instead.

use serde::Deserialize;

/// The deepest nesting of arrays, maps and structs a decode accepts.
pub const MAX_DEPTH: usize = 64;

/// `rmp_serde::from_slice`, refusing input nested deeper than [`MAX_DEPTH`].
pub fn from_slice<'a, T: Deserialize<'a>>(input: &'a [u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(input);
    de.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut de)
}

/// [`from_slice`] from a reader, of which it reads the value's bytes and no more.
pub fn from_read<R: std::io::Read, T: serde::de::DeserializeOwned>(
    input: R,
) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::new(input);
    de.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut de)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Record {
        #[allow(dead_code)]
        name: String,
    }

    /// `{"name": "n", "x": [[[...]]]}`: an unknown field nested `depth` deep.
    fn nested(depth: usize) -> Vec<u8> {
        let mut b = vec![0x82, 0xa4];
        b.extend_from_slice(b"name");
        b.extend_from_slice(&[0xa1, b'n', 0xa1, b'x']);
        b.extend(std::iter::repeat_n(0x91, depth));
        b.push(0xc0);
        b
    }

    #[test]
    fn deep_nesting_is_refused_on_a_worker_sized_stack() {
        let decoded = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                (
                    from_slice::<Record>(&nested(MAX_DEPTH - 4)).is_ok(),
                    from_slice::<Record>(&nested(100_000)).is_err(),
                )
            })
            .unwrap()
            .join()
            .expect("the decode overflowed its stack");
        assert_eq!(decoded, (true, true));
    }
}
