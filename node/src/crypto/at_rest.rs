//! Key-at-rest codecs: every encoding KES ever stored under a key name (contract §4.6).
//!
//! ```text
//!  stored value ──is valid JSON?──yes──▶ legacy JSON {"bytes","algorithm","created_at","created_by"}
//!                      │
//!                      no──▶ base64 ──▶ protobuf KeyVersion (era E, current KES)
//! ```
//!
//! The node keeps its own records in the protobuf form (without the base64, which only existed
//! because KES key stores hold text). [`encode_protobuf`] and [`parse_protobuf`] are therefore
//! exact inverses: one field extends KES's schema for that, a key `type` of 0, which marks a
//! legacy key that named no algorithm (see [`SecretKey::cipher_is_explicit`]). Such keys also
//! lack an HMAC key, so the HMAC field is omitted for them where KES would refuse to write.

use base64::Engine as _;
use prost::Message as _;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::{Zeroize, Zeroizing};

use super::cipher::Cipher;
use super::ciphertext::GO_STD_BASE64;
use super::key::{KEY_LEN, SecretKey};

/// A key as stored: the key itself plus who created it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key material, cipher and HMAC key.
    pub key: SecretKey,
    /// When the key was created; `None` for era A/B keys, which did not record it.
    pub created_at: Option<OffsetDateTime>,
    /// The identity that created the key; empty if not recorded.
    pub created_by: String,
}

/// A stored key value could not be read. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFormatError {
    /// Neither JSON nor standard base64.
    #[error(
        "stored key is neither legacy JSON nor base64-encoded protobuf; the record is corrupt or was not written by KES"
    )]
    UnknownEncoding,
    /// Valid JSON that does not have the legacy key's shape.
    #[error(
        "stored legacy JSON key is malformed near line {line}, column {column}; expected {{\"bytes\":…,\"algorithm\":…}}"
    )]
    MalformedJson {
        /// Line of the offending value.
        line: usize,
        /// Column of the offending value.
        column: usize,
    },
    /// The legacy `bytes` field is not base64.
    #[error("stored legacy JSON key has a `bytes` field that is not valid base64")]
    MalformedJsonBytes,
    /// The protobuf did not decode.
    #[error("stored key is not a valid protobuf KeyVersion: {0}")]
    MalformedProtobuf(#[from] prost::DecodeError),
    /// No key material at all.
    #[error("stored key has no key material")]
    MissingMaterial,
    /// Key material of the wrong size.
    #[error("stored key material must be 32 bytes, got {0} bytes")]
    MaterialLength(usize),
    /// HMAC key of the wrong size.
    #[error("stored HMAC key must be 32 bytes, got {0} bytes")]
    HmacKeyLength(usize),
    /// A protobuf key type other than 0 (legacy), 1 (AES256) or 2 (ChaCha20).
    #[error("stored key has unknown type {0}; expected 1 (AES256) or 2 (ChaCha20)")]
    UnknownKeyType(u32),
    /// A legacy JSON algorithm name this server does not know.
    #[error(
        "stored key has unknown algorithm {0:?}; expected AES256, AES256-GCM_SHA256, ChaCha20 or XCHACHA20-POLY1305"
    )]
    UnknownAlgorithm(String),
    /// An HMAC hash other than 1 (SHA-256).
    #[error("stored HMAC key uses unknown hash {0}; only 1 (SHA-256) is supported")]
    UnknownHmacHash(u32),
    /// A creation time out of range or not RFC 3339.
    #[error("stored key has an invalid creation time")]
    InvalidCreatedAt,
}

/// Reads a key value in any encoding KES ever wrote to its key store.
///
/// Like KES, anything that is valid JSON is taken as a legacy key and everything else as
/// base64 protobuf.
pub fn parse_key_at_rest(stored: &[u8]) -> Result<StoredKey, KeyFormatError> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(stored).is_ok() {
        return parse_legacy_json(stored);
    }
    // Tolerate a trailing newline from hand-edited files or Vault values; base64 has no spaces.
    let text = stored.trim_ascii();
    let protobuf = Zeroizing::new(
        GO_STD_BASE64
            .decode(text)
            .map_err(|_| KeyFormatError::UnknownEncoding)?,
    );
    parse_protobuf(&protobuf)
}

/// Reads the protobuf `KeyVersion` (already base64-decoded).
pub fn parse_protobuf(bytes: &[u8]) -> Result<StoredKey, KeyFormatError> {
    let version = KeyVersionProto::decode(bytes)?;
    let secret = version
        .key
        .as_ref()
        .ok_or(KeyFormatError::MissingMaterial)?;
    let (cipher, explicit) = match secret.r#type {
        TYPE_LEGACY => (Cipher::Aes256, false),
        TYPE_AES256 => (Cipher::Aes256, true),
        TYPE_CHACHA20 => (Cipher::ChaCha20, true),
        other => return Err(KeyFormatError::UnknownKeyType(other)),
    };
    let material = to_key(&secret.key).ok_or(KeyFormatError::MaterialLength(secret.key.len()))?;
    let hmac_key = match &version.hmac_key {
        None => None,
        Some(hmac) => {
            if hmac.hash != HASH_SHA256 {
                return Err(KeyFormatError::UnknownHmacHash(hmac.hash));
            }
            Some(to_key(&hmac.key).ok_or(KeyFormatError::HmacKeyLength(hmac.key.len()))?)
        }
    };
    let created_at = match &version.created_at {
        None => None,
        Some(ts) => Some(timestamp_to_time(ts).ok_or(KeyFormatError::InvalidCreatedAt)?),
    };
    Ok(StoredKey {
        key: SecretKey::from_parts(cipher, explicit, material, hmac_key),
        created_at,
        created_by: version.created_by.clone(),
    })
}

/// Encodes `stored` as protobuf `KeyVersion` bytes, the form KES base64-encodes into its key
/// store. [`parse_protobuf`] reads the result back to an equal [`StoredKey`].
pub fn encode_protobuf(stored: &StoredKey) -> Zeroizing<Vec<u8>> {
    let key = &stored.key;
    let key_type = match (key.cipher_is_explicit(), key.cipher()) {
        (false, _) => TYPE_LEGACY,
        (true, Cipher::Aes256) => TYPE_AES256,
        (true, Cipher::ChaCha20) => TYPE_CHACHA20,
    };
    let version = KeyVersionProto {
        key: Some(SecretKeyProto {
            key: key.material().to_vec(),
            r#type: key_type,
        }),
        hmac_key: key.hmac_key().map(|hmac_key| HmacKeyProto {
            key: hmac_key.to_vec(),
            hash: HASH_SHA256,
        }),
        created_at: stored.created_at.map(time_to_timestamp),
        created_by: stored.created_by.clone(),
    };
    // encode_to_vec sizes the buffer exactly, so no partial copy is left behind by a regrowth.
    Zeroizing::new(version.encode_to_vec())
}

fn to_key(bytes: &[u8]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
    Some(Zeroizing::new(array))
}

fn timestamp_to_time(ts: &TimestampProto) -> Option<OffsetDateTime> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

fn time_to_timestamp(time: OffsetDateTime) -> TimestampProto {
    TimestampProto {
        seconds: time.unix_timestamp(),
        nanos: i32::try_from(time.nanosecond()).expect("nanoseconds are below 10^9"),
    }
}

/// The era B–D JSON shape. Go decoded each field leniently (absent or null ⇒ zero value), and
/// ignored unknown fields such as `"version":"v1"`; serde does the same with these options.
#[derive(Deserialize)]
struct LegacyJsonKey {
    #[serde(default)]
    bytes: Option<String>,
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
}

impl Drop for LegacyJsonKey {
    fn drop(&mut self) {
        // `bytes` is the key material in base64.
        self.bytes.zeroize();
    }
}

fn parse_legacy_json(stored: &[u8]) -> Result<StoredKey, KeyFormatError> {
    // serde_json's messages can quote the offending value, so only its position is kept.
    let json: LegacyJsonKey =
        serde_json::from_slice(stored).map_err(|err| KeyFormatError::MalformedJson {
            line: err.line(),
            column: err.column(),
        })?;
    let material = Zeroizing::new(
        GO_STD_BASE64
            .decode(json.bytes.as_deref().unwrap_or_default())
            .map_err(|_| KeyFormatError::MalformedJsonBytes)?,
    );
    let material = to_key(&material).ok_or(KeyFormatError::MaterialLength(material.len()))?;
    let (cipher, explicit) = match json.algorithm.as_deref().unwrap_or_default() {
        "" => (Cipher::Aes256, false),
        name => match Cipher::parse_import(name) {
            Some(cipher) => (cipher, true),
            None => return Err(KeyFormatError::UnknownAlgorithm(truncated(name))),
        },
    };
    let created_at = match json.created_at.as_deref() {
        None => None,
        Some(text) => Some(
            OffsetDateTime::parse(text, &Rfc3339).map_err(|_| KeyFormatError::InvalidCreatedAt)?,
        ),
    };
    Ok(StoredKey {
        key: SecretKey::from_parts(cipher, explicit, material, None),
        created_at,
        created_by: json.created_by.clone().unwrap_or_default(),
    })
}

/// Keeps error messages short when a corrupt record holds a huge string.
fn truncated(name: &str) -> String {
    name.chars().take(64).collect()
}

const TYPE_LEGACY: u32 = 0;
const TYPE_AES256: u32 = 1;
const TYPE_CHACHA20: u32 = 2;
const HASH_SHA256: u32 = 1;

// Field numbers and types follow KES's `miniohq.kms` KeyVersion .proto. `skip_debug` keeps
// prost from deriving a Debug that would print key material.

#[derive(prost::Message)]
#[prost(skip_debug)]
struct KeyVersionProto {
    #[prost(message, optional, tag = "1")]
    key: Option<SecretKeyProto>,
    #[prost(message, optional, tag = "2")]
    hmac_key: Option<HmacKeyProto>,
    #[prost(message, optional, tag = "3")]
    created_at: Option<TimestampProto>,
    #[prost(string, tag = "4")]
    created_by: String,
}

#[derive(prost::Message)]
#[prost(skip_debug)]
struct SecretKeyProto {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    r#type: u32,
}

impl Drop for SecretKeyProto {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

#[derive(prost::Message)]
#[prost(skip_debug)]
struct HmacKeyProto {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    hash: u32,
}

impl Drop for HmacKeyProto {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// `google.protobuf.Timestamp`.
#[derive(prost::Message)]
#[prost(skip_debug)]
struct TimestampProto {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}
