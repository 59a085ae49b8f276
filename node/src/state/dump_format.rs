//! The dump format of snapshots, written and read one record at a time.
//!
//! A dump is the MessagePack that rmp-serde makes of `{trees: [(name, [(key, value), ...]),
//! ...]}` with byte strings as `bin`: `[[[name, [[key, value], ...]], ...]]`. Dumps of older
//! versions therefore read here, and dumps written here read anywhere.
//!
//! Both directions stream, because a dump is as large as the state: a million keys made one
//! of 238 MiB, and holding it in memory (with every record decoded, next to sled's page cache)
//! took a node that caught up by snapshot to 2.7 GiB. A count is known only once its tree has
//! been read, so the writer puts 32-bit array headers down and fills their counts in at the
//! end (a reader accepts any width). The reader never sizes an allocation by a count, and
//! refuses names, keys and values longer than anything the state stores.

use super::store::StateError;
use std::io::{Read, Seek, SeekFrom, Write};

/// The longest tree name a dump may carry.
const LONGEST_TREE_NAME: usize = 64;

/// `array 32` in MessagePack: a marker and a big-endian 32-bit count.
const ARRAY32: u8 = 0xdd;

/// Writes a dump: [`DumpWriter::tree`], then that tree's [`DumpWriter::record`]s, for each
/// tree; then [`DumpWriter::finish`].
pub(super) struct DumpWriter<W: Write + Seek> {
    out: W,
    trees_at: u64,
    trees: u32,
    /// Where the open tree's record count goes, and how many records it has so far.
    open_tree: Option<(u64, u32)>,
}

impl<W: Write + Seek> DumpWriter<W> {
    /// Starts a dump at the writer's current position.
    pub(super) fn new(mut out: W) -> std::io::Result<Self> {
        rmp::encode::write_array_len(&mut out, 1).map_err(std::io::Error::from)?;
        let trees_at = placeholder(&mut out)?;
        Ok(DumpWriter {
            out,
            trees_at,
            trees: 0,
            open_tree: None,
        })
    }

    /// Starts the next tree.
    pub(super) fn tree(&mut self, name: &str) -> std::io::Result<()> {
        self.close_tree()?;
        self.trees = count_one_more(self.trees)?;
        rmp::encode::write_array_len(&mut self.out, 2).map_err(std::io::Error::from)?;
        rmp::encode::write_str(&mut self.out, name).map_err(std::io::Error::from)?;
        self.open_tree = Some((placeholder(&mut self.out)?, 0));
        Ok(())
    }

    /// Adds a record to the tree started last.
    pub(super) fn record(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let Some((_, records)) = self.open_tree.as_mut() else {
            return Err(std::io::Error::other("a dump record before any tree"));
        };
        *records = count_one_more(*records)?;
        rmp::encode::write_array_len(&mut self.out, 2).map_err(std::io::Error::from)?;
        rmp::encode::write_bin(&mut self.out, key).map_err(std::io::Error::from)?;
        rmp::encode::write_bin(&mut self.out, value).map_err(std::io::Error::from)
    }

    /// Fills the counts in and returns the writer, positioned at the end of the dump.
    pub(super) fn finish(mut self) -> std::io::Result<W> {
        self.close_tree()?;
        fill_count(&mut self.out, self.trees_at, self.trees)?;
        Ok(self.out)
    }

    fn close_tree(&mut self) -> std::io::Result<()> {
        match self.open_tree.take() {
            Some((at, records)) => fill_count(&mut self.out, at, records),
            None => Ok(()),
        }
    }
}

fn count_one_more(n: u32) -> std::io::Result<u32> {
    n.checked_add(1)
        .ok_or_else(|| std::io::Error::other("more than 2^32 records in one dump tree"))
}

/// Writes an `array 32` header with a count to fill in later; returns where it starts.
fn placeholder(out: &mut (impl Write + Seek)) -> std::io::Result<u64> {
    let at = out.stream_position()?;
    out.write_all(&[ARRAY32, 0, 0, 0, 0])?;
    Ok(at)
}

fn fill_count(out: &mut (impl Write + Seek), at: u64, count: u32) -> std::io::Result<()> {
    let end = out.stream_position()?;
    out.seek(SeekFrom::Start(at + 1))?;
    out.write_all(&count.to_be_bytes())?;
    out.seek(SeekFrom::Start(end))?;
    Ok(())
}

/// One step of reading a dump.
pub(super) enum DumpItem<'a> {
    /// The records that follow, up to the next `Tree`, belong to this tree.
    Tree(&'a str),
    /// A record of the tree named last.
    Record(&'a [u8], &'a [u8]),
}

/// Reads a whole dump, handing each tree and record to `visit` in order. Fails, and stops, at
/// the first thing that is not a well-formed dump, including bytes after its end.
pub(super) fn read_dump(
    input: impl Read,
    mut visit: impl FnMut(DumpItem<'_>) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let mut input = input;
    let (mut key, mut value, mut name) = (Vec::new(), Vec::new(), Vec::new());
    expect_array(&mut input, 1, "the dump")?;
    let trees = rmp::decode::read_array_len(&mut input).map_err(malformed)?;
    for _ in 0..trees {
        expect_array(&mut input, 2, "a tree")?;
        read_bytes(&mut input, &mut name, LONGEST_TREE_NAME, "a tree name")?;
        let name = std::str::from_utf8(&name).map_err(|_| corrupt("a tree name is not UTF-8"))?;
        visit(DumpItem::Tree(name))?;
        let records = rmp::decode::read_array_len(&mut input).map_err(malformed)?;
        for _ in 0..records {
            expect_array(&mut input, 2, "a record")?;
            read_bytes(&mut input, &mut key, super::store::LARGEST_KEY, "a key")?;
            read_bytes(
                &mut input,
                &mut value,
                super::store::LARGEST_VALUE,
                "a value",
            )?;
            visit(DumpItem::Record(&key, &value))?;
        }
    }
    match input.read(&mut [0]) {
        Ok(0) => Ok(()),
        Ok(_) => Err(corrupt("bytes after the end of the dump")),
        Err(e) => Err(malformed(e)),
    }
}

fn expect_array(input: &mut impl Read, len: u32, what: &str) -> Result<(), StateError> {
    match rmp::decode::read_array_len(input).map_err(malformed)? {
        n if n == len => Ok(()),
        n => Err(corrupt(&format!("{what} is an array of {n}, not {len}"))),
    }
}

/// Reads a `bin` or `str` of at most `longest` bytes into `buf`.
fn read_bytes(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    longest: usize,
    what: &str,
) -> Result<(), StateError> {
    use rmp::Marker;
    let len = match rmp::decode::read_marker(input).map_err(|e| malformed(e.0))? {
        Marker::FixStr(n) => u32::from(n),
        Marker::Bin8 | Marker::Str8 => u32::from(read_be::<1>(input)?[0]),
        Marker::Bin16 | Marker::Str16 => u32::from(u16::from_be_bytes(read_be(input)?)),
        Marker::Bin32 | Marker::Str32 => u32::from_be_bytes(read_be(input)?),
        other => return Err(corrupt(&format!("{what} is {other:?}, not bytes"))),
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > longest {
        return Err(corrupt(&format!(
            "{what} of {len} bytes is longer than the {longest} allowed"
        )));
    }
    buf.resize(len, 0);
    input.read_exact(buf).map_err(malformed)
}

fn read_be<const N: usize>(input: &mut impl Read) -> Result<[u8; N], StateError> {
    let mut b = [0; N];
    input.read_exact(&mut b).map_err(malformed)?;
    Ok(b)
}

fn corrupt(reason: &str) -> StateError {
    StateError::Corrupt {
        tree: "snapshot",
        reason: reason.to_owned(),
    }
}

fn malformed(e: impl std::fmt::Display) -> StateError {
    corrupt(&format!("malformed dump: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Dump {
        trees: Vec<(String, Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>)>,
    }

    type Trees = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

    fn read_all(blob: &[u8]) -> Result<Trees, StateError> {
        let mut trees: Trees = Vec::new();
        read_dump(blob, |item| {
            match item {
                DumpItem::Tree(name) => trees.push((name.to_owned(), Vec::new())),
                DumpItem::Record(k, v) => {
                    let tree = trees.last_mut().expect("a tree first");
                    tree.1.push((k.to_vec(), v.to_vec()));
                }
            }
            Ok(())
        })?;
        Ok(trees)
    }

    fn written(trees: &Trees) -> Vec<u8> {
        let mut w = DumpWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
        for (name, records) in trees {
            w.tree(name).unwrap();
            for (k, v) in records {
                w.record(k, v).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    fn sample() -> Trees {
        vec![
            (
                "keys".into(),
                vec![(b"a".to_vec(), vec![1; 300]), (vec![], vec![])],
            ),
            ("empty".into(), vec![]),
            ("meta".into(), vec![(vec![9; 40], vec![7; 66_000])]),
        ]
    }

    /// What rmp-serde made of the same trees (the format of every dump so far) reads the same,
    /// and what the writer makes reads back whole.
    #[test]
    fn streamed_dumps_and_rmp_serde_dumps_read_alike() {
        let trees = sample();
        let by_serde = rmp_serde::to_vec(&Dump {
            trees: trees
                .iter()
                .map(|(n, r)| {
                    let r = r.iter().map(|(k, v)| (k.clone().into(), v.clone().into()));
                    (n.clone(), r.collect())
                })
                .collect(),
        })
        .unwrap();
        assert_eq!(read_all(&by_serde).unwrap(), trees);
        assert_eq!(read_all(&written(&trees)).unwrap(), trees);
        assert_eq!(read_all(&written(&vec![])).unwrap(), vec![]);
    }

    /// Every cut of a dump, a byte after it, a count that lies, and a value past the bound are
    /// refused as corrupt.
    #[test]
    fn damaged_dumps_are_refused() {
        let blob = written(&sample());
        for cut in 0..blob.len() {
            assert!(read_all(&blob[..cut]).is_err(), "cut at {cut} read");
        }
        let mut longer = blob.clone();
        longer.push(0xc0);
        assert!(read_all(&longer).is_err(), "a trailing byte read");
        // The first tree's record count, raised from 2 to 3.
        let at = 1 + 5 + 1 + 5;
        assert_eq!(blob[at..at + 5], [ARRAY32, 0, 0, 0, 2]);
        let mut lying = blob.clone();
        lying[at + 4] = 3;
        assert!(read_all(&lying).is_err(), "a count past the records read");
        let mut huge = Vec::new();
        rmp::encode::write_array_len(&mut huge, 1).unwrap();
        rmp::encode::write_array_len(&mut huge, 1).unwrap();
        rmp::encode::write_array_len(&mut huge, 2).unwrap();
        rmp::encode::write_str(&mut huge, "keys").unwrap();
        rmp::encode::write_array_len(&mut huge, 1).unwrap();
        rmp::encode::write_array_len(&mut huge, 2).unwrap();
        rmp::encode::write_bin(&mut huge, b"k").unwrap();
        rmp::encode::write_bin_len(&mut huge, u32::MAX).unwrap();
        let refused = read_all(&huge).unwrap_err().to_string();
        assert!(refused.contains("longer than"), "{refused}");
    }
}
