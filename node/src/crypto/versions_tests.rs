//! Rotation, retirement and decryption across versions, and the record at rest.

use super::*;
use crate::crypto::{Cipher, SecretKey};

fn created() -> StoredKey {
    StoredKey {
        key: SecretKey::generate(Cipher::Aes256),
        created_at: Some(OffsetDateTime::UNIX_EPOCH),
        created_by: "creator".into(),
    }
}

fn rotated(k: &KeyVersions, times: u32) -> KeyVersions {
    let mut k = k.clone();
    for _ in 0..times {
        k = k.rotated(OffsetDateTime::UNIX_EPOCH, "rotator").unwrap();
    }
    k
}

#[test]
fn a_key_never_rotated_is_stored_exactly_as_kes_stores_it() {
    let stored = created();
    let k = KeyVersions::first(stored.clone());
    assert_eq!(*k.encode(), *encode_protobuf(&stored));
    assert_eq!(KeyVersions::decode(&encode_protobuf(&stored)).unwrap(), k);
}

#[test]
fn a_rotated_key_round_trips_with_every_version() {
    let k = rotated(&KeyVersions::first(created()), 3);
    let numbers: Vec<u32> = k.versions().iter().map(|v| v.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    let back = KeyVersions::decode(&k.encode()).unwrap();
    assert_eq!(back, k);
    assert_eq!(back.newest().stored.created_by, "rotator");
}

#[test]
fn encrypt_uses_the_newest_and_decrypt_reads_every_retained_version() {
    let v1 = KeyVersions::first(created());
    let old = v1.encrypt(b"made under v1", b"ctx");
    let k = rotated(&v1, 9);
    let new = k.encrypt(b"made under v10", b"ctx");
    assert_eq!(*k.decrypt(&old, b"ctx", 0).unwrap().0, b"made under v1");
    assert_eq!(k.decrypt(&old, b"ctx", 0).unwrap().1, 1);
    assert_eq!(k.decrypt(&new, b"ctx", 0).unwrap().1, 10);
    assert!(
        v1.decrypt(&new, b"ctx", 0).is_err(),
        "v1 alone cannot read v10's"
    );
    assert!(k.decrypt(&old, b"other ctx", 0).is_err());
    let dek = k.generate_data_key(b"ctx");
    assert_eq!(k.decrypt(&dek.ciphertext, b"ctx", 0).unwrap().1, 10);
}

#[test]
fn a_minimum_version_refuses_the_older_ones_and_can_be_undone() {
    let v1 = KeyVersions::first(created());
    let old = v1.encrypt(b"p", b"");
    let k = rotated(&v1, 2);
    assert!(k.decrypt(&old, b"", 2).is_err());
    assert_eq!(k.decrypt(&old, b"", 1).unwrap().1, 1);
}

#[test]
fn retiring_deletes_the_older_versions_for_good_but_never_the_newest() {
    let v1 = KeyVersions::first(created());
    let old = v1.encrypt(b"p", b"");
    let k = rotated(&v1, 2);
    let mid = k.retired_below(2).unwrap();
    assert_eq!(mid.versions().len(), 2);
    assert!(
        mid.decrypt(&old, b"", 0).is_err(),
        "a retired version cannot decrypt"
    );
    let back = KeyVersions::decode(&mid.encode()).unwrap();
    assert_eq!(
        back.versions()[0].number,
        2,
        "retired versions stay gone at rest"
    );
    assert_eq!(k.retired_below(4), Err(VersionError::RetireNewest(3)));
    assert_eq!(k.retired_below(3).unwrap().versions().len(), 1);
}

#[test]
fn the_hmac_never_changes_across_rotations_and_retirements() {
    let v1 = KeyVersions::first(created());
    let mac = v1.hmac(b"minio").unwrap();
    let k = rotated(&v1, 5).retired_below(6).unwrap();
    assert_eq!(k.hmac(b"minio").unwrap(), mac);
    assert_ne!(
        k.newest().stored.key,
        v1.newest().stored.key,
        "new material"
    );
}

#[test]
fn a_legacy_ciphertext_with_a_foreign_key_id_still_decrypts() {
    // Era C/D msgpack: [algorithm, key id, iv, nonce, aead_out], here with an id of no version.
    let k = rotated(&KeyVersions::first(created()), 3);
    let v2 = &k.versions()[1].stored.key;
    let raw = v2.encrypt(b"legacy", b"");
    let (aead_out, trailer) = raw.split_at(raw.len() - 28);
    let (iv, nonce) = trailer.split_at(16);
    for id in ["0123456789abcdef0123456789abcdef".to_owned(), v2.key_id()] {
        let mut ct = vec![0x95];
        rmp::encode::write_str(&mut ct, "AES256-GCM_SHA256").unwrap();
        rmp::encode::write_str(&mut ct, &id).unwrap();
        rmp::encode::write_bin(&mut ct, iv).unwrap();
        rmp::encode::write_bin(&mut ct, nonce).unwrap();
        rmp::encode::write_bin(&mut ct, aead_out).unwrap();
        let (pt, version) = k
            .decrypt(&ct, b"", 0)
            .expect("decrypts whatever id it names");
        assert_eq!((&pt[..], version), (&b"legacy"[..], 2));
    }
}

#[test]
fn a_damaged_record_is_an_error_not_a_panic() {
    let k = rotated(&KeyVersions::first(created()), 2);
    let record = k.encode();
    for cut in 0..record.len() {
        let _ = KeyVersions::decode(&record[..cut]);
    }
    assert!(KeyVersions::decode(&record_of(MAGIC, &[2, 1], Some(0))).is_err());
    assert!(KeyVersions::decode(&record_of(MAGIC, &[1, 2], Some(0))).is_ok());
}

/// A record made by hand: `magic`, then the versions numbered `numbers` and, if given, the
/// sealed minimum.
fn record_of(magic: &[u8], numbers: &[u64], min_decrypt: Option<u64>) -> Vec<u8> {
    let mut out = magic.to_vec();
    let fields = if min_decrypt.is_some() { 2 } else { 1 };
    rmp::encode::write_array_len(&mut out, fields).unwrap();
    rmp::encode::write_array_len(&mut out, numbers.len() as u32).unwrap();
    for n in numbers {
        rmp::encode::write_array_len(&mut out, 2).unwrap();
        rmp::encode::write_uint(&mut out, *n).unwrap();
        rmp::encode::write_bin(&mut out, &encode_protobuf(&created())).unwrap();
    }
    if let Some(min) = min_decrypt {
        rmp::encode::write_uint(&mut out, min).unwrap();
    }
    out
}

#[test]
fn the_minimum_decrypt_version_is_sealed_with_the_versions() {
    let k = rotated(&KeyVersions::first(created()), 3);
    assert_eq!(k.min_decrypt(), Some(0));
    let restricted = k.with_min_decrypt(3).unwrap();
    let record = restricted.encode();
    assert!(record.starts_with(MAGIC));
    let back = KeyVersions::decode(&record).unwrap();
    assert_eq!(back.min_decrypt(), Some(3));
    assert_eq!(back, restricted);
    // A rotation and a retirement keep it.
    assert_eq!(
        back.rotated(OffsetDateTime::UNIX_EPOCH, "r")
            .unwrap()
            .min_decrypt(),
        Some(3)
    );
    assert_eq!(back.retired_below(2).unwrap().min_decrypt(), Some(3));
    assert_eq!(
        k.with_min_decrypt(5),
        Err(VersionError::MinAboveNewest(4)),
        "a minimum above the newest would leave nothing to decrypt"
    );
}

#[test]
fn a_key_never_rotated_stays_a_kes_record_whatever_its_minimum() {
    let stored = created();
    let k = KeyVersions::first(stored.clone())
        .with_min_decrypt(1)
        .unwrap();
    assert_eq!(*k.encode(), *encode_protobuf(&stored));
    assert_eq!(
        KeyVersions::decode(&k.encode()).unwrap().min_decrypt(),
        Some(0)
    );
}

#[test]
fn a_record_from_before_the_sealed_minimum_has_none_until_it_is_given_one() {
    let legacy = record_of(MAGIC_V1, &[1, 2, 3], None);
    let k = KeyVersions::decode(&legacy).unwrap();
    assert_eq!(k.min_decrypt(), None, "its entry's copy is all there is");
    assert_eq!(k.versions().len(), 3);
    // Written again as it was, so a minimum it never read is never written as 0 ...
    assert!(k.encode().starts_with(MAGIC_V1));
    assert!(
        k.rotated(OffsetDateTime::UNIX_EPOCH, "r")
            .unwrap()
            .encode()
            .starts_with(MAGIC_V1)
    );
    // ... and in the current format once it has one.
    let given = k.with_min_decrypt(2).unwrap();
    assert!(given.encode().starts_with(MAGIC));
    assert_eq!(
        KeyVersions::decode(&given.encode()).unwrap().min_decrypt(),
        Some(2)
    );
}
