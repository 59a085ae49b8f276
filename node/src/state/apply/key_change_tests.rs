//! Changes of a key's record: each made from one record and applied only to it (rotations,
//! retirements, sealed minimums), and records made with a cluster key a restore replaced.

use super::*;

/// A change of a key's versions is made from one record and applies only to it: a rotation or
/// a retirement made from the record before a retirement cannot land after it and bring the
/// retired versions back (a retirement keeps the newest version, so the version alone would
/// not tell).
#[test]
fn a_change_made_from_the_record_before_a_retirement_is_refused() {
    let mut log = Log::new(1000);
    let creation_id = log.created_key("k");
    let sealed = || crate::seal::record_shaped_under(1);
    let rotate = |from_version, revision| Op::RotateKey {
        name: "k".into(),
        creation_id,
        from_version,
        revision,
        sealed: sealed(),
    };
    let retire = |below, revision| Op::RetireKeyVersions {
        name: "k".into(),
        creation_id,
        version: 3,
        revision,
        below,
        sealed: sealed(),
    };
    assert_eq!(log.op("default", rotate(1, 0)), Outcome::Done);
    assert_eq!(log.op("default", rotate(2, 1)), Outcome::Done);
    assert_eq!(
        log.op("default", rotate(2, 1)),
        Outcome::KeyChanged,
        "same record twice"
    );
    // Both made from revision 2 (versions 1..=3); the retirement lands first.
    assert_eq!(log.op("default", retire(3, 2)), Outcome::Done);
    assert_eq!(log.op("default", rotate(3, 2)), Outcome::KeyChanged);
    assert_eq!(log.op("default", retire(2, 2)), Outcome::KeyChanged);
    let entry = log.state.key("default", "k").unwrap().unwrap();
    assert_eq!((entry.version, entry.revision), (3, 3));
}

/// A minimum decrypt version is sealed with the record (`crypto/versions.rs`), so setting one
/// is a change of the record like a rotation: made from one revision, refused if another
/// change landed first (which would otherwise have its versions overwritten), and a new
/// revision once applied. A command of a version that kept the minimum only beside the record
/// still applies as it did, when it is replayed from an older log.
#[test]
fn a_minimum_version_is_a_change_of_the_record_made_from_one_revision() {
    let mut log = Log::new(1000);
    let creation_id = log.created_key("k");
    let marked = |byte: u8| {
        let mut r = crate::seal::record_shaped_under(1);
        *r.last_mut().unwrap() = byte;
        r
    };
    let rotate = Op::RotateKey {
        name: "k".into(),
        creation_id,
        from_version: 1,
        revision: 0,
        sealed: marked(1),
    };
    assert_eq!(log.op("default", rotate), Outcome::Done);
    let min = |min_decrypt, version, revision, byte| Op::SealKeyMinVersion {
        name: "k".into(),
        min_decrypt,
        from: crate::state::ResealedFrom {
            creation_id,
            version,
            revision,
            sealed: marked(byte),
        },
    };
    assert_eq!(
        log.op("default", min(2, 1, 0, 2)),
        Outcome::KeyChanged,
        "made from the record before the rotation"
    );
    assert!(matches!(
        log.op("default", min(3, 2, 1, 2)),
        Outcome::BadKeyVersion(_)
    ));
    assert_eq!(log.op("default", min(2, 2, 1, 3)), Outcome::Done);
    let entry = log.state.key("default", "k").unwrap().unwrap();
    assert_eq!(
        (
            entry.min_decrypt,
            entry.revision,
            *entry.sealed.last().unwrap()
        ),
        (2, 2, 3),
        "the minimum, a new revision and the record sealed with it"
    );
    let legacy = Op::SetKeyMinVersion {
        name: "k".into(),
        min_decrypt: 0,
    };
    assert_eq!(log.op("default", legacy), Outcome::Done);
    let entry = log.state.key("default", "k").unwrap().unwrap();
    assert_eq!(
        (
            entry.min_decrypt,
            entry.revision,
            *entry.sealed.last().unwrap()
        ),
        (0, 2, 3)
    );
}

/// A restore's cluster key may carry the storage version of the key before it, so a record
/// sealed or signed with the key from before cannot be told from the record alone. A command
/// made with it names the restores its keys had seen, and is refused once a restore replaced
/// them; a command made with the adopted key, or one that seals nothing, applies.
#[test]
fn a_record_made_with_the_key_from_before_a_restore_is_refused_after_it() {
    let mut log = Log::new(1000);
    let made = |seen| {
        let mut cmd = command("default", create_key("k"));
        cmd.restores_seen = Some(seen);
        cmd
    };
    let before = made(0);
    let finish = Op::RestoreFinish {
        wrapped: vec![],
        storage_version: 1,
        metadata: None,
    };
    assert_eq!(log.op("default", finish), Outcome::Done);
    assert_eq!(log.state.cluster_meta().unwrap().unwrap().restores, 1);
    assert_eq!(log.run(&before), Outcome::StaleClusterKey);
    assert!(log.state.key("default", "k").unwrap().is_none());
    assert_eq!(log.run(&made(1)), Outcome::Done);
    assert_eq!(
        log.op("default", Op::DeleteKey { name: "k".into() }),
        Outcome::Done
    );
}
