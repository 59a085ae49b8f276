//! The three KES ciphertext formats (raw, MessagePack, JSON) through the parser and the
//! decryption that MinIO's stored ciphertexts reach.
//!
//! Invariants:
//! - a raw parse is exactly `aead_out ‖ iv(16) ‖ nonce(12)` of the input;
//! - a legacy parse re-encoded in its own format parses to the same parts;
//! - what decrypts re-encrypts, with its IV and nonce, to the same raw ciphertext;
//! - the input taken as a plaintext round-trips through all three formats.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kes_node::crypto::{Cipher, SecretKey};
use kes_node::fuzzing::{CiphertextParts, encrypt_with, fixed_key, parse_ciphertext};
use libfuzzer_sys::fuzz_target;

/// The all-zero key of the KES test vectors, so the seeded vectors decrypt.
const MATERIAL: [u8; 32] = [0; 32];
const IV: [u8; 16] = [1; 16];
const NONCE: [u8; 12] = [2; 12];

fuzz_target!(|data: &[u8]| {
    let keys = [
        fixed_key(Cipher::Aes256, true, MATERIAL),
        fixed_key(Cipher::ChaCha20, true, MATERIAL),
        // A legacy `{"bytes":…}` key: decrypts with the algorithm a legacy ciphertext names.
        fixed_key(Cipher::Aes256, false, MATERIAL),
    ];
    check_parse(data);
    for key in &keys {
        check_decrypt(key, data);
        check_round_trip(key, data);
    }
});

fn check_parse(data: &[u8]) {
    let Some(parts) = parse_ciphertext(data) else {
        assert!(
            data.len() <= 28,
            "{} bytes are always at least raw",
            data.len()
        );
        return;
    };
    match parts.named_cipher {
        None => {
            let body = data.len() - 28;
            assert!(body > 0);
            assert_eq!(parts.aead_out, &data[..body]);
            assert_eq!(parts.iv, data[body..body + 16]);
            assert_eq!(parts.nonce, data[body + 16..]);
        }
        Some(cipher) => {
            let reencoded = match data[0] {
                0x95 => msgpack(cipher, &parts),
                b'{' => json(cipher, &parts),
                other => panic!("a legacy parse of an input starting with {other:#x}"),
            };
            assert_eq!(parse_ciphertext(&reencoded).as_ref(), Some(&parts));
        }
    }
}

fn check_decrypt(key: &SecretKey, data: &[u8]) {
    let Ok(plaintext) = key.decrypt(data, b"") else {
        return;
    };
    let parts = parse_ciphertext(data).expect("what decrypts parses");
    let cipher = match parts.named_cipher {
        Some(named) if !key.cipher_is_explicit() => named,
        _ => key.cipher(),
    };
    let same_cipher = fixed_key(cipher, true, MATERIAL);
    let raw = encrypt_with(&same_cipher, &parts.iv, &parts.nonce, &plaintext, b"");
    assert_eq!(raw, raw_bytes(&parts), "decrypt and re-encrypt disagree");
}

fn check_round_trip(key: &SecretKey, plaintext: &[u8]) {
    let context = plaintext.get(..plaintext.len().min(8)).unwrap_or_default();
    let raw = encrypt_with(key, &IV, &NONCE, plaintext, context);
    let parts = CiphertextParts {
        named_cipher: Some(key.cipher()),
        iv: IV,
        nonce: NONCE,
        aead_out: raw[..raw.len() - 28].to_vec(),
    };
    for (format, ciphertext) in [
        ("raw", raw.clone()),
        ("msgpack", msgpack(key.cipher(), &parts)),
        ("json", json(key.cipher(), &parts)),
    ] {
        let opened = key
            .decrypt(&ciphertext, context)
            .unwrap_or_else(|_| panic!("{format} ciphertext of {} bytes", plaintext.len()));
        assert_eq!(opened.as_slice(), plaintext, "{format}");
        let mut tampered = ciphertext;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(
            key.decrypt(&tampered, context).is_err(),
            "{format} tampered"
        );
    }
}

fn raw_bytes(parts: &CiphertextParts) -> Vec<u8> {
    [&parts.aead_out[..], &parts.iv, &parts.nonce].concat()
}

/// The era C/D array: `[algorithm, key id, iv, nonce, aead_out]`.
fn msgpack(cipher: Cipher, parts: &CiphertextParts) -> Vec<u8> {
    let name = match cipher {
        Cipher::Aes256 => "AES256-GCM_SHA256",
        Cipher::ChaCha20 => "XCHACHA20-POLY1305",
    };
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, 5).expect("vec write");
    rmp::encode::write_str(&mut out, name).expect("vec write");
    rmp::encode::write_str(&mut out, "fuzz-key-id").expect("vec write");
    rmp::encode::write_bin(&mut out, &parts.iv).expect("vec write");
    rmp::encode::write_bin(&mut out, &parts.nonce).expect("vec write");
    rmp::encode::write_bin(&mut out, &parts.aead_out).expect("vec write");
    out
}

/// The era A/B object.
fn json(cipher: Cipher, parts: &CiphertextParts) -> Vec<u8> {
    let aead = match cipher {
        Cipher::Aes256 => "AES-256-GCM-HMAC-SHA-256",
        Cipher::ChaCha20 => "ChaCha20Poly1305",
    };
    serde_json::to_vec(&serde_json::json!({
        "aead": aead,
        "id": "fuzz-key-id",
        "iv": STANDARD.encode(parts.iv),
        "nonce": STANDARD.encode(parts.nonce),
        "bytes": STANDARD.encode(&parts.aead_out),
    }))
    .expect("json encodes")
}
