//! Checks against the KES test vectors (`tests/data/kes-vectors.json`) and failure cases.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::{Rng, RngCore};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::message::derive_subkey;
use super::*;

const VECTORS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kes-vectors.json");

fn vectors() -> Value {
    let text = std::fs::read_to_string(VECTORS_PATH).expect("vectors file is readable");
    serde_json::from_str(&text).expect("vectors file is JSON")
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {field} is a string"))
}

fn b64(v: &Value, field: &str) -> Vec<u8> {
    STANDARD
        .decode(text(v, field))
        .unwrap_or_else(|_| panic!("vector field {field} is base64"))
}

fn hex_field(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(text(v, field)).unwrap_or_else(|_| panic!("vector field {field} is hex"))
}

fn array<'a>(v: &'a Value, field: &str) -> &'a Vec<Value> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("vector field {field} is an array"))
}

fn cipher_of(v: &Value) -> Cipher {
    Cipher::parse_import(text(v, "key_type")).expect("known key type")
}

fn key_of(v: &Value) -> SecretKey {
    SecretKey::import(cipher_of(v), &b64(v, "key_b64")).expect("32-byte key")
}

/// A key as KES stored it before algorithms were recorded: `{"bytes":…}`.
fn legacy_key(material: &[u8]) -> SecretKey {
    let json = format!(r#"{{"bytes":"{}"}}"#, STANDARD.encode(material));
    parse_key_at_rest(json.as_bytes()).expect("legacy key").key
}

#[test]
fn decrypt_vectors() {
    let all = vectors();
    let cases = array(&all, "decrypt_vectors");
    assert!(!cases.is_empty());
    for case in cases {
        let id = text(case, "id");
        let key = key_of(case);
        let plaintext = key
            .decrypt(
                &b64(case, "ciphertext_b64"),
                &b64(case, "associated_data_b64"),
            )
            .unwrap_or_else(|err| panic!("{id}: {err}"));
        assert_eq!(*plaintext, b64(case, "plaintext_b64"), "{id}");
    }
}

#[test]
fn decrypt_negative_vectors() {
    let all = vectors();
    let cases = array(&all, "decrypt_negative_vectors");
    assert!(!cases.is_empty());
    for case in cases {
        let id = text(case, "id");
        let err = key_of(case)
            .decrypt(
                &b64(case, "ciphertext_b64"),
                &b64(case, "associated_data_b64"),
            )
            .expect_err(id);
        assert_eq!(
            err.to_string(),
            "decryption failed: ciphertext is not authentic"
        );
    }
}

#[test]
fn legacy_key_decrypts_with_the_algorithm_the_ciphertext_names() {
    let all = vectors();
    for case in array(&all, "decrypt_vectors") {
        if text(case, "format") == "raw" {
            continue;
        }
        let key = legacy_key(&b64(case, "key_b64"));
        assert_eq!(key.cipher(), Cipher::Aes256);
        assert!(!key.cipher_is_explicit());
        let plaintext = key
            .decrypt(
                &b64(case, "ciphertext_b64"),
                &b64(case, "associated_data_b64"),
            )
            .unwrap_or_else(|err| panic!("{}: {err}", text(case, "id")));
        assert_eq!(*plaintext, b64(case, "plaintext_b64"));
    }
}

#[test]
fn explicit_key_ignores_the_algorithm_the_ciphertext_names() {
    let all = vectors();
    // The ChaCha20 JSON vector, read with an explicitly typed AES256 key of the same material.
    let case = array(&all, "decrypt_vectors")
        .iter()
        .find(|c| text(c, "format") == "json" && text(c, "key_type") == "ChaCha20")
        .expect("a ChaCha20 JSON vector");
    let key = SecretKey::import(Cipher::Aes256, &b64(case, "key_b64")).expect("32 bytes");
    assert!(key.decrypt(&b64(case, "ciphertext_b64"), &[]).is_err());
}

#[test]
fn encrypt_roundtrip_inputs() {
    let all = vectors();
    let cases = array(&all["encrypt_roundtrip_inputs"], "cases");
    assert!(!cases.is_empty());
    for case in cases {
        let key = key_of(case);
        let plaintext = b64(case, "plaintext_b64");
        let context = b64(case, "associated_data_b64");
        let ciphertext = key.encrypt(&plaintext, &context);
        assert_eq!(ciphertext.len(), plaintext.len() + 44);
        assert_eq!(
            *key.decrypt(&ciphertext, &context).expect("round trip"),
            plaintext
        );
    }
}

#[test]
fn computed_deterministic_encrypt_vectors() {
    let all = vectors();
    let cases = array(&all["computed_deterministic_encrypt_vectors"], "cases");
    assert!(!cases.is_empty());
    for case in cases {
        let key = key_of(case);
        let iv: [u8; 16] = hex_field(case, "iv_hex").try_into().expect("16-byte iv");
        let nonce: [u8; 12] = hex_field(case, "nonce_hex")
            .try_into()
            .expect("12-byte nonce");
        let material: [u8; 32] = b64(case, "key_b64").try_into().expect("32-byte key");

        let subkey = derive_subkey(key.cipher(), &material, &iv);
        assert_eq!(subkey.to_vec(), hex_field(case, "derived_subkey_hex"));

        let plaintext = text(case, "plaintext_text").as_bytes();
        let context = text(case, "associated_data_text").as_bytes();
        let ciphertext = key.encrypt_with(&iv, &nonce, plaintext, context);
        assert_eq!(ciphertext, b64(case, "ciphertext_raw_b64"));
        assert_eq!(
            *key.decrypt(&ciphertext, context).expect("decrypts"),
            plaintext
        );
    }
}

#[test]
fn key_id_vectors() {
    let all = vectors();
    let cases = array(&all, "key_id_vectors");
    assert!(!cases.is_empty());
    for case in cases {
        let key = SecretKey::import(Cipher::Aes256, &b64(case, "key_b64")).expect("32 bytes");
        assert_eq!(key.key_id(), text(case, "key_id"));
    }
}

#[test]
fn key_at_rest_vectors() {
    let all = vectors();
    let cases = array(&all, "key_at_rest_vectors");
    assert!(!cases.is_empty());
    for case in cases {
        let id = text(case, "id");
        let expect = &case["expect"];
        let stored = parse_key_at_rest(text(case, "raw").as_bytes())
            .unwrap_or_else(|err| panic!("{id}: {err}"));
        let key = &stored.key;

        assert_eq!(key.cipher(), cipher_of(expect), "{id}");
        assert_eq!(key.material().to_vec(), b64(expect, "key_b64"), "{id}");
        if let Some(key_hex) = expect.get("key_hex") {
            assert_eq!(hex::encode(key.material()), key_hex.as_str().expect("hex"));
        }
        match expect.get("hmac_key_b64") {
            Some(_) => {
                let hmac_key = key.hmac_key().expect("has an HMAC key");
                assert_eq!(hmac_key.to_vec(), b64(expect, "hmac_key_b64"), "{id}");
                assert_eq!(text(expect, "hmac_hash"), "SHA256");
            }
            None => assert!(!key.has_hmac(), "{id}"),
        }
        match expect.get("created_at").and_then(Value::as_str) {
            Some(created_at) => {
                let want = OffsetDateTime::parse(created_at, &Rfc3339).expect("RFC 3339");
                assert_eq!(stored.created_at, Some(want), "{id}");
            }
            None => assert_eq!(stored.created_at, None, "{id}"),
        }
        if let Some(unix) = expect.get("created_at_unix") {
            let at = stored.created_at.expect("has a creation time");
            assert_eq!(Some(at.unix_timestamp()), unix["seconds"].as_i64());
            assert_eq!(Some(i64::from(at.nanosecond())), unix["nanos"].as_i64());
        }
        if let Some(created_by) = expect.get("created_by").and_then(Value::as_str) {
            assert_eq!(stored.created_by, created_by, "{id}");
        }

        // The protobuf vector must re-encode to exactly the bytes KES wrote.
        if let Some(Value::String(protobuf_hex)) = case.get("decoded_protobuf_hex") {
            let protobuf = hex::decode(protobuf_hex).expect("hex");
            assert_eq!(*encode_protobuf(&stored), protobuf, "{id}");
            assert_eq!(parse_protobuf(&protobuf).expect("parses"), stored, "{id}");
        }
    }
}

#[test]
fn computed_hmac_vectors() {
    let all = vectors();
    let cases = array(&all["computed_hmac_vectors"], "cases");
    assert!(!cases.is_empty());
    for case in cases {
        let hmac_key: [u8; 32] = b64(case, "hmac_key_b64").try_into().expect("32 bytes");
        let key = SecretKey::from_parts(
            Cipher::Aes256,
            true,
            zeroize::Zeroizing::new([0; 32]),
            Some(zeroize::Zeroizing::new(hmac_key)),
        );
        let mac = key
            .hmac(text(case, "message_text").as_bytes())
            .expect("has an HMAC key");
        assert_eq!(hex::encode(mac), text(case, "hmac_sha256_hex"));
        assert_eq!(STANDARD.encode(mac), text(case, "api_response_hmac_b64"));
    }
}

#[test]
fn hchacha20_reference_vector() {
    let all = vectors();
    let case = &all["hchacha20_reference_vector"];
    let key: [u8; 32] = hex_field(case, "key_hex").try_into().expect("32 bytes");
    let nonce: [u8; 16] = hex_field(case, "nonce_hex").try_into().expect("16 bytes");
    let out = derive_subkey(Cipher::ChaCha20, &key, &nonce);
    assert_eq!(out.to_vec(), hex_field(case, "output_hex"));
}

#[test]
fn wrong_context_fails() {
    for cipher in [Cipher::Aes256, Cipher::ChaCha20] {
        let key = SecretKey::generate(cipher);
        let ciphertext = key.encrypt(b"secret", b"{\"bucket\":\"bucket/object\"}");
        for context in [&b""[..], b"{}", b"{\"bucket\":\"bucket/other\"}"] {
            assert_eq!(key.decrypt(&ciphertext, context), Err(DecryptError));
        }
    }
}

#[test]
fn tampered_ciphertext_fails() {
    for cipher in [Cipher::Aes256, Cipher::ChaCha20] {
        let key = SecretKey::generate(cipher);
        let ciphertext = key.encrypt(b"some plaintext", b"ctx");
        for i in 0..ciphertext.len() {
            let mut tampered = ciphertext.clone();
            tampered[i] ^= 0x01;
            assert_eq!(
                key.decrypt(&tampered, b"ctx"),
                Err(DecryptError),
                "byte {i}"
            );
        }
    }
}

#[test]
fn other_key_or_other_cipher_fails() {
    let material = [7u8; 32];
    let aes = SecretKey::import(Cipher::Aes256, &material).expect("32 bytes");
    let chacha = SecretKey::import(Cipher::ChaCha20, &material).expect("32 bytes");
    let ciphertext = aes.encrypt(b"x", b"");
    assert!(chacha.decrypt(&ciphertext, b"").is_err());
    assert!(
        SecretKey::generate(Cipher::Aes256)
            .decrypt(&ciphertext, b"")
            .is_err()
    );
}

#[test]
fn decrypt_never_panics() {
    let mut rng = rand::rng();
    let keys = [
        SecretKey::generate(Cipher::Aes256),
        SecretKey::generate(Cipher::ChaCha20),
        legacy_key(&[0; 32]),
    ];
    let all = vectors();
    let mut seeds: Vec<Vec<u8>> = array(&all, "decrypt_vectors")
        .iter()
        .map(|c| b64(c, "ciphertext_b64"))
        .collect();
    seeds.push(keys[0].encrypt(b"hello", b""));

    for key in &keys {
        // Every prefix of every format.
        for seed in &seeds {
            for len in 0..seed.len() {
                assert!(key.decrypt(&seed[..len], b"").is_err());
            }
        }
        // Random bytes, with the first byte steering into each format's parser.
        for _ in 0..2000 {
            let len = rng.random_range(0..200);
            let mut input = vec![0u8; len];
            rng.fill_bytes(&mut input);
            if let Some(first) = input.first_mut() {
                *first = [0x95, b'{', *first][rng.random_range(0..3)];
            }
            assert!(key.decrypt(&input, b"").is_err());
        }
        // Random byte flips in valid legacy ciphertexts.
        for seed in &seeds {
            for _ in 0..200 {
                let mut input = seed.clone();
                let i = rng.random_range(0..input.len());
                input[i] = rng.random();
                let _ = key.decrypt(&input, b"");
            }
        }
    }
    // Hostile lengths: headers claiming far more data than present.
    for input in [
        &[0x95, 0xdb, 0xff, 0xff, 0xff, 0xff][..],
        &[0x95, 0xa0, 0xa0, 0xc6, 0xff, 0xff, 0xff, 0xff],
        br#"{"aead":"ChaCha20Poly1305","iv":"","nonce":"","bytes":""}"#,
        br#"{"aead":null}"#,
        b"{",
    ] {
        assert!(keys[0].decrypt(input, b"").is_err());
    }
}

#[test]
fn import_requires_32_bytes() {
    for len in [0, 16, 31, 33, 64] {
        let err = SecretKey::import(Cipher::Aes256, &vec![1; len]).expect_err("wrong length");
        assert_eq!(err, KeyError::InvalidLength(len));
    }
    let key = SecretKey::import(Cipher::ChaCha20, &[1; 32]).expect("32 bytes");
    assert!(key.has_hmac());
    assert!(key.cipher_is_explicit());
    assert_eq!(key.cipher(), Cipher::ChaCha20);
}

#[test]
fn hmac_needs_an_hmac_key() {
    let err = legacy_key(&[3; 32]).hmac(b"msg").expect_err("legacy key");
    assert_eq!(err.to_string(), "key does not support HMAC");

    let key = SecretKey::generate(Cipher::Aes256);
    assert_eq!(key.hmac(b"a"), key.hmac(b"a"));
    assert_ne!(key.hmac(b"a"), key.hmac(b"b"));
}

#[test]
fn debug_never_shows_material() {
    let key = SecretKey::import(Cipher::Aes256, &[0xab; 32]).expect("32 bytes");
    let stored = StoredKey {
        key: key.clone(),
        created_at: None,
        created_by: String::new(),
    };
    for debug in [format!("{key:?}"), format!("{stored:?}")] {
        assert!(debug.contains(&key.key_id()), "{debug}");
        assert!(!debug.to_lowercase().contains("abab"), "{debug}");
        assert!(!debug.contains("171, 171"), "{debug}");
    }
    let dek = key.generate_data_key(b"");
    let debug = format!("{dek:?}");
    assert!(!debug.contains(&hex::encode(*dek.plaintext)), "{debug}");
}

#[test]
fn cipher_names() {
    for (name, cipher) in [
        ("AES256", Cipher::Aes256),
        ("AES256-GCM_SHA256", Cipher::Aes256),
        ("ChaCha20", Cipher::ChaCha20),
        ("XCHACHA20-POLY1305", Cipher::ChaCha20),
    ] {
        assert_eq!(Cipher::parse_import(name), Some(cipher));
    }
    for name in ["", "aes256", "AES-256-GCM", "ChaCha20Poly1305", "chacha20"] {
        assert_eq!(Cipher::parse_import(name), None, "{name}");
    }
    assert_eq!(Cipher::Aes256.as_str(), "AES256");
    assert_eq!(Cipher::ChaCha20.to_string(), "ChaCha20");
    // Whatever the CPU, the default must be one that works.
    let key = SecretKey::generate(default_cipher());
    assert!(key.decrypt(&key.encrypt(b"x", b""), b"").is_ok());
}

#[test]
fn generate_data_key_round_trips() {
    let key = SecretKey::generate(Cipher::ChaCha20);
    let dek = key.generate_data_key(b"{}");
    assert_eq!(dek.ciphertext.len(), 76);
    assert_eq!(
        *key.decrypt(&dek.ciphertext, b"{}").expect("decrypts"),
        dek.plaintext.to_vec()
    );
}

#[test]
fn protobuf_round_trip() {
    let created_at =
        OffsetDateTime::parse("2024-01-12T11:39:20.886816+01:00", &Rfc3339).expect("RFC 3339");
    let stored_keys = [
        StoredKey {
            key: SecretKey::generate(Cipher::Aes256),
            created_at: Some(created_at),
            created_by: "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22".into(),
        },
        StoredKey {
            key: SecretKey::generate(Cipher::ChaCha20),
            created_at: None,
            created_by: String::new(),
        },
        parse_key_at_rest(br#"{"bytes":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#)
            .expect("legacy key"),
        parse_key_at_rest(
            br#"{"version":"v1","bytes":"9ew6BCae3+13sniOUwttEJ62amg98YXc0OW0WBhNiCY=","algorithm":"XCHACHA20-POLY1305","created_at":"0001-01-01T00:00:00Z","created_by":""}"#,
        )
        .expect("era C key"),
    ];
    for stored in stored_keys {
        let encoded = encode_protobuf(&stored);
        let parsed = parse_protobuf(&encoded).expect("parses its own encoding");
        assert_eq!(parsed, stored);
        assert_eq!(*encode_protobuf(&parsed), *encoded);

        // And in the base64 form a KES key store holds.
        let text = STANDARD.encode(&*encoded);
        assert_eq!(parse_key_at_rest(text.as_bytes()).expect("parses"), stored);
    }
}

#[test]
fn key_at_rest_errors_never_contain_material() {
    let material = "J8qmOyEV2ce2yoAC+5t0Y7CSP/hTMppL7XHpAnyc+0E=";
    let bad: [&[u8]; 6] = [
        br#"{"bytes":"J8qmOyEV2ce2yoAC+5t0Y7CSP/hTMppL7XHpAnyc+0E=","algorithm":"AES-128"}"#,
        br#"{"bytes":"J8qmOyEV2ce2yoAC+5t0Y7CSP/hTMppL7XHpAnyc+0E=","created_at":"yesterday"}"#,
        br#"{"bytes":"J8qmOyEV2ce2yoAC+5t0Y7CSP/hTMppL7XHpAnyc+0E=","created_by":["J8qmOyEV2ce2yoAC+5t0Y7CSP/hTMppL7XHpAnyc+0E="]}"#,
        br#"{"bytes":"J8qmOyEV2ce2yoAC+5t0Y7CSP/hTMppL7XHpAnyc+0E"}"#,
        br#"{"bytes":"AAAA"}"#,
        b"not base64 at all!",
    ];
    for input in bad {
        let err = parse_key_at_rest(input).expect_err("invalid");
        let message = err.to_string();
        assert!(!message.contains(material), "{message}");
        assert!(!message.contains("J8qm"), "{message}");
    }
    assert!(matches!(
        parse_key_at_rest(br#"{"bytes":"AAAA"}"#),
        Err(KeyFormatError::MaterialLength(3))
    ));
}

#[test]
fn protobuf_rejects_bad_fields() {
    let good = parse_key_at_rest(br#"{"bytes":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#)
        .expect("legacy key");
    let encoded = encode_protobuf(&good);
    // Field 1 holds a 34-byte SecretKey message: 0x0a 0x22 0x0a 0x20 <32 bytes>.
    assert_eq!(&encoded[..4], &[0x0a, 0x22, 0x0a, 0x20]);

    let mut unknown_type = encoded.to_vec();
    unknown_type[1] = 0x24;
    unknown_type.splice(36..36, [0x10, 0x07]);
    assert!(matches!(
        parse_protobuf(&unknown_type),
        Err(KeyFormatError::UnknownKeyType(7))
    ));

    assert!(matches!(
        parse_protobuf(&[]),
        Err(KeyFormatError::MissingMaterial)
    ));
    assert!(matches!(
        parse_protobuf(&[0x0a, 0x05]),
        Err(KeyFormatError::MalformedProtobuf(_))
    ));
    // A timestamp with nanos = -1.
    let bad_time = [
        &encoded[..],
        &[
            0x1a, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
    ]
    .concat();
    assert!(matches!(
        parse_protobuf(&bad_time),
        Err(KeyFormatError::InvalidCreatedAt)
    ));
}
