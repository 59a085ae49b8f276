//! Key-at-rest decoding: every encoding KES ever wrote to a key store (legacy JSON, base64
//! protobuf), the node's own protobuf records, and its records of a rotated key's versions.
//!
//! Invariants: no panic; whatever decodes re-encodes with `encode_protobuf` to a record that
//! decodes to an equal key, both raw and base64-wrapped; a versions record re-encodes to one
//! that decodes to the same versions; errors stay short (they never echo a whole stored
//! value).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kes_node::crypto::{
    KeyVersions, StoredKey, encode_protobuf, parse_key_at_rest, parse_protobuf,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for parsed in [parse_key_at_rest(data), parse_protobuf(data)] {
        match parsed {
            Ok(stored) => check_round_trip(&stored),
            Err(e) => assert!(
                e.to_string().len() < 512,
                "error message of {} bytes",
                e.to_string().len()
            ),
        }
    }
    if let Ok(versions) = KeyVersions::decode(data) {
        let again = KeyVersions::decode(&versions.encode()).expect("encoded versions decode");
        assert_eq!(again, versions, "versions round trip");
    }
});

fn check_round_trip(stored: &StoredKey) {
    let encoded = encode_protobuf(stored);
    let again = parse_protobuf(&encoded).expect("an encoded key decodes");
    assert_eq!(&again, stored, "protobuf round trip");
    let wrapped =
        parse_key_at_rest(STANDARD.encode(&*encoded).as_bytes()).expect("base64 protobuf decodes");
    assert_eq!(&wrapped, stored, "base64 protobuf round trip");
}
