//! What a key's retained versions cost a decrypt: a KES ciphertext names no version, so one
//! made by version 1 of a key with 10 versions may be tried against all 10 (newest first).
//! Measured side by side in one run, in-process (the HTTP round trip around it is some
//! 0.5 ms on this machine, README "Key versions").
//!
//! `cargo bench -p kes-node --bench key_versions`

use kes_node::crypto::{Cipher, KeyVersions, SecretKey, StoredKey};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// `k` rotated `times` times.
fn rotated(k: &KeyVersions, times: u32) -> KeyVersions {
    let mut k = k.clone();
    for _ in 0..times {
        k = k
            .rotated(time::OffsetDateTime::now_utc(), "bench")
            .expect("rotates");
    }
    k
}

/// Mean time of one decrypt of `ciphertext` with `k`, over about a second.
fn per_decrypt(k: &KeyVersions, ciphertext: &[u8]) -> Duration {
    let mut n = 0u32;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            black_box(
                k.decrypt(black_box(ciphertext), b"ctx", 0)
                    .expect("decrypts"),
            );
        }
        n += 1000;
    }
    t0.elapsed() / n
}

fn main() {
    let one = KeyVersions::first(StoredKey {
        key: SecretKey::generate(Cipher::Aes256),
        created_at: None,
        created_by: String::new(),
    });
    // The same key after nine rotations: its version 1 is `one`'s.
    let ten = rotated(&one, 9);
    // A data key's ciphertext, as MinIO sends it back: 32 bytes under version 1.
    let v1 = one.generate_data_key(b"ctx").ciphertext;
    let v10 = ten.generate_data_key(b"ctx").ciphertext;
    let base = per_decrypt(&one, &v1);
    let oldest = per_decrypt(&ten, &v1);
    let newest = per_decrypt(&ten, &v10);
    println!("decrypt of a version-1 data key, 1 version retained:   {base:?}");
    println!(
        "decrypt of a version-1 data key, 10 versions retained: {oldest:?} ({:.1}x)",
        oldest.as_secs_f64() / base.as_secs_f64()
    );
    println!(
        "decrypt of a version-10 data key, 10 versions retained: {newest:?} ({:.1}x)",
        newest.as_secs_f64() / base.as_secs_f64()
    );
}
