//! The three ciphertext formats KES has returned (contract §4.3), reduced to one shape.
//!
//! ```text
//!  raw (era E)   aead_out ‖ iv(16) ‖ nonce(12)
//!  msgpack (C/D) [ "AES256-GCM_SHA256", "<key id>", bin iv, bin nonce, bin aead_out ]
//!  JSON (A/B)    {"aead":"AES-256-GCM-HMAC-SHA-256","id":"…","iv":b64,"nonce":b64,"bytes":b64}
//! ```
//!
//! MinIO keeps KES ciphertexts in object metadata indefinitely, so all three must stay readable.
//! Detection follows current KES: a leading `0x95` or `{` is only a hint, and an input that does
//! not parse as the hinted format is treated as raw, because a raw ciphertext can start with any
//! byte.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use super::cipher::Cipher;
use super::message::{IV_LEN, NONCE_LEN};

/// First byte of a MessagePack fixarray of five items.
const MSGPACK_ARRAY_OF_5: u8 = 0x95;

/// Standard padded base64 as Go's `encoding/json` reads `[]byte` fields.
///
/// Go does not insist that unused trailing bits are zero, while the base64 crate does by
/// default; ciphertexts and keys written by Go must decode here exactly as they did there.
pub(crate) const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// A ciphertext in any format, split into what decryption needs.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    /// The algorithm the ciphertext names; `None` for the raw format, which names none.
    pub(crate) named_cipher: Option<Cipher>,
    pub(crate) iv: [u8; IV_LEN],
    pub(crate) nonce: [u8; NONCE_LEN],
    /// Encrypted bytes followed by the AEAD tag.
    pub(crate) aead_out: Cow<'a, [u8]>,
    /// The key id a legacy format names (hex), if any: a hint of which version to try first,
    /// never a reason to refuse.
    pub(crate) key_id: Option<Cow<'a, [u8]>>,
}

/// Splits `ciphertext` into its parts, or `None` if it is too short to be any format.
pub(crate) fn parse(ciphertext: &[u8]) -> Option<Parts<'_>> {
    let legacy = match ciphertext.first() {
        Some(&MSGPACK_ARRAY_OF_5) => parse_msgpack(ciphertext),
        Some(b'{') => parse_json(ciphertext),
        _ => None,
    };
    legacy.or_else(|| parse_raw(ciphertext))
}

fn parse_raw(ciphertext: &[u8]) -> Option<Parts<'_>> {
    // KES requires strictly more than iv+nonce; an empty AEAD output cannot authenticate anyway.
    let body_len = ciphertext.len().checked_sub(IV_LEN + NONCE_LEN)?;
    if body_len == 0 {
        return None;
    }
    let (aead_out, trailer) = ciphertext.split_at(body_len);
    let (iv, nonce) = trailer.split_at(IV_LEN);
    Some(Parts {
        named_cipher: None,
        iv: iv.try_into().ok()?,
        nonce: nonce.try_into().ok()?,
        aead_out: Cow::Borrowed(aead_out),
        key_id: None,
    })
}

/// Parses the era C/D array: exactly five items, str, str, bin(16), bin(12), bin, nothing after.
fn parse_msgpack(ciphertext: &[u8]) -> Option<Parts<'_>> {
    let mut rest = ciphertext;
    if rmp::decode::read_array_len(&mut rest).ok()? != 5 {
        return None;
    }
    let algorithm = read_str(&mut rest)?;
    // Only a hint (see `Parts::key_id`): decryption with the wrong key fails anyway.
    let key_id = read_str(&mut rest)?;
    let iv = read_bin(&mut rest)?.try_into().ok()?;
    let nonce = read_bin(&mut rest)?.try_into().ok()?;
    let aead_out = read_bin(&mut rest)?;
    if !rest.is_empty() {
        return None;
    }
    let named_cipher = Cipher::parse_import(std::str::from_utf8(algorithm).ok()?)?;
    Some(Parts {
        named_cipher: Some(named_cipher),
        iv,
        nonce,
        aead_out: Cow::Borrowed(aead_out),
        key_id: Some(Cow::Borrowed(key_id)),
    })
}

fn read_str<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = rmp::decode::read_str_len(rest).ok()?;
    take(rest, len)
}

fn read_bin<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = rmp::decode::read_bin_len(rest).ok()?;
    take(rest, len)
}

/// Takes `len` bytes off the front, refusing lengths the input cannot back (a header may claim
/// up to 4 GiB).
fn take<'a>(rest: &mut &'a [u8], len: u32) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    if rest.len() < len {
        return None;
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Some(head)
}

/// The era A/B JSON shape. Unknown fields are ignored; the optional key `id` is a hint.
#[derive(Deserialize)]
struct JsonCiphertext {
    #[serde(default)]
    id: Option<serde_json::Value>,
    aead: String,
    iv: String,
    nonce: String,
    bytes: String,
}

fn parse_json(ciphertext: &[u8]) -> Option<Parts<'static>> {
    let json: JsonCiphertext = serde_json::from_slice(ciphertext).ok()?;
    let named_cipher = Cipher::parse_json_aead(&json.aead)?;
    let iv = GO_STD_BASE64.decode(json.iv).ok()?.try_into().ok()?;
    let nonce = GO_STD_BASE64.decode(json.nonce).ok()?.try_into().ok()?;
    let aead_out = GO_STD_BASE64.decode(json.bytes).ok()?;
    Some(Parts {
        named_cipher: Some(named_cipher),
        iv,
        nonce,
        aead_out: Cow::Owned(aead_out),
        key_id: json
            .id
            .as_ref()
            .and_then(|id| id.as_str())
            .map(|id| Cow::Owned(id.as_bytes().to_vec())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_needs_more_than_iv_and_nonce() {
        assert!(parse(&[0u8; 28]).is_none());
        let parts = parse(&[7u8; 29]).expect("29 bytes split as raw");
        assert_eq!(parts.aead_out.len(), 1);
        assert_eq!(parts.named_cipher, None);
    }

    #[test]
    fn msgpack_with_oversized_length_falls_back_to_raw() {
        // Claims a 4 GiB string; must neither allocate nor read past the end.
        let mut input = vec![0x95, 0xdb, 0xff, 0xff, 0xff, 0xff];
        input.resize(40, 0);
        let parts = parse(&input).expect("falls back to raw");
        assert_eq!(parts.named_cipher, None);
        assert_eq!(parts.aead_out.len(), 12);
    }

    #[test]
    fn msgpack_rejects_trailing_bytes() {
        let mut input = vec![0x95];
        input.push(0xa8);
        input.extend_from_slice(b"ChaCha20");
        input.push(0xa0); // empty key id
        input.extend_from_slice(&[0xc4, 16]);
        input.extend_from_slice(&[1; 16]);
        input.extend_from_slice(&[0xc4, 12]);
        input.extend_from_slice(&[2; 12]);
        input.extend_from_slice(&[0xc4, 17]);
        input.extend_from_slice(&[3; 17]);
        let parts = parse(&input).expect("well-formed msgpack");
        assert_eq!(parts.named_cipher, Some(Cipher::ChaCha20));
        assert_eq!(parts.iv, [1; 16]);
        assert_eq!(parts.nonce, [2; 12]);
        assert_eq!(&*parts.aead_out, &[3; 17]);

        input.push(0);
        let parts = parse(&input).expect("falls back to raw");
        assert_eq!(parts.named_cipher, None);
    }

    #[test]
    fn json_with_unknown_aead_falls_back_to_raw() {
        let input = br#"{"aead":"AES-256-GCM","iv":"AAAAAAAAAAAAAAAAAAAAAA==","nonce":"AAAAAAAAAAAAAAAA","bytes":""}"#;
        let parts = parse(input).expect("falls back to raw");
        assert_eq!(parts.named_cipher, None);
    }
}
