//! Every JSON request body the KES API decodes, through the handlers' own decoding steps: key
//! import, encrypt/decrypt/hmac, generate, bulk decrypt, policy write and assign, cluster join
//! and join request. The first byte picks the route, the rest is the body.
//!
//! Invariants: no panic; decoding is deterministic; what the handler would go on with is sound:
//! an imported key encrypts and decrypts, decoded fields decrypt without panicking and
//! round-trip through encryption, a bulk body holds at most 1000 items, a written policy holds
//! only valid patterns and survives the MessagePack encoding its log entry uses.
#![no_main]

use kes_node::auth::{Policy, validate};
use kes_node::crypto::{Cipher, SecretKey};
use kes_node::fuzzing::{ApiBody, CryptoFields, DecodedBody, decode_api_body, fixed_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = ApiBody::ALL[usize::from(selector) % ApiBody::ALL.len()];
    let Ok(decoded) = decode_api_body(kind, body) else {
        return;
    };
    let again = decode_api_body(kind, body).expect("decoding is deterministic");
    assert_eq!(format!("{again:?}"), format!("{decoded:?}"));
    match decoded {
        DecodedBody::Key(key) => check_key(&key, body),
        DecodedBody::Crypto(fields) => check_crypto(&fields),
        DecodedBody::Bulk(items) => {
            assert!(items.len() <= 1000, "{} bulk items", items.len());
            items.iter().for_each(check_crypto);
        }
        DecodedBody::Policy(policy) => check_policy(&policy),
        DecodedBody::Identity(_)
        | DecodedBody::JoinMember(_)
        | DecodedBody::JoinRequest(..)
        | DecodedBody::EnclaveAdmin(_) => {}
    }
});

fn check_key(key: &SecretKey, body: &[u8]) {
    let ciphertext = key.encrypt(body, b"ctx");
    assert_eq!(
        key.decrypt(&ciphertext, b"ctx")
            .expect("own ciphertext")
            .as_slice(),
        body
    );
    assert!(key.has_hmac(), "an imported key gets an HMAC key");
}

fn check_crypto(fields: &CryptoFields) {
    for key in [
        fixed_key(Cipher::Aes256, true, [0; 32]),
        fixed_key(Cipher::ChaCha20, false, [0; 32]),
    ] {
        let _ = key.decrypt(&fields.ciphertext, &fields.context);
        let ciphertext = key.encrypt(&fields.plaintext, &fields.context);
        let opened = key
            .decrypt(&ciphertext, &fields.context)
            .expect("own ciphertext");
        assert_eq!(opened.as_slice(), fields.plaintext.as_slice());
        assert_eq!(key.hmac(&fields.message), key.hmac(&fields.message));
    }
}

fn check_policy(policy: &Policy) {
    for pattern in policy.allow.iter().chain(&policy.deny) {
        validate(pattern).expect("a written policy holds valid patterns");
    }
    let encoded = kes_node::raft::encode(policy);
    let decoded: Policy = kes_node::raft::decode(&encoded).expect("policy decodes");
    assert_eq!(&decoded, policy);
}
