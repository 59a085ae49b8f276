//! Counting the items of a JSON array without decoding them.
//!
//! A bulk request is refused when it carries too many items; counting first means the refusal
//! costs one pass over the bytes with nothing allocated per item, and it stops at the first
//! item past the limit.

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, SeqAccess, Visitor};
use std::cell::Cell;

/// How many items an array has, as far as it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Count {
    /// At most the limit.
    Within(usize),
    /// More than the limit (counting stopped there).
    TooMany,
    /// Not a JSON array, or broken JSON before the limit was passed.
    Invalid,
}

/// Counts the items of the first JSON value in `body`, which must be an array, up to `max`.
/// Like Go's decoder, bytes after the first value are not looked at.
pub(super) fn count_array(body: &[u8], max: usize) -> Count {
    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    match (CountItems { max, over: &over }).deserialize(&mut de) {
        Ok(n) => Count::Within(n),
        Err(_) if over.get() => Count::TooMany,
        Err(_) => Count::Invalid,
    }
}

struct CountItems<'a> {
    max: usize,
    /// Set when counting stopped because the limit was passed; serde's error type cannot say so.
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for CountItems<'_> {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CountItems<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
            if n > self.max {
                self.over.set(true);
                return Err(A::Error::custom("too many items"));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stop_past_the_limit() {
        assert_eq!(count_array(b"[]", 3), Count::Within(0));
        assert_eq!(
            count_array(b" [{}, {\"a\":[1,2]}, 3] trailing", 3),
            Count::Within(3)
        );
        assert_eq!(
            count_array(b"[1,2,3,4", 3),
            Count::TooMany,
            "stops before the end"
        );
        assert_eq!(count_array(b"[1,2,3,4]", 3), Count::TooMany);
        assert_eq!(count_array(b"{}", 3), Count::Invalid);
        assert_eq!(count_array(b"[1,", 3), Count::Invalid);
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        // serde_json skips an ignored value without recursion: one (deep) item, no overflow.
        assert_eq!(count_array(deep.as_bytes(), 3), Count::Within(1));
    }
}
