//! What several fuzz targets share: peer input decoded on a worker-sized stack, the MessagePack
//! fixed-point check, and the checks of the state records a snapshot or a restore carries.

use kes_node::seal::{ClusterKey, RecordAad, Unsealed, open_record, record_version, seal_record};
use kes_node::state::{
    ClusterMeta, DumpTree, EnclaveEntry, IdentityEntry, KeyEntry, META_MEMBERSHIP, Outcome,
    PolicyEntry, Signed, SignedMembership,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// tokio's default worker stack. Peer messages are decoded on tokio workers, so a message that
/// nests deep enough to overflow this stack would take the node down.
const WORKER_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a thread with a tokio worker's stack, as the node decodes peer input.
pub fn on_worker_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn_scoped(s, f)
            .expect("spawn a worker-sized thread")
            .join()
            .expect("the worker thread does not panic")
    })
}

/// Decodes `bytes` as the node decodes Raft and state messages ([`kes_node::raft::decode`]).
/// A value that decodes must re-encode to bytes that decode to the same encoding: encoding is
/// a fixed point, so a replica that re-encodes a message cannot change what it means.
pub fn decode_fixed_point<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let value: T = kes_node::raft::decode(bytes).ok()?;
    let encoded = kes_node::raft::encode(&value);
    let again: T = kes_node::raft::decode(&encoded)
        .unwrap_or_else(|e| panic!("a re-encoded {} does not decode: {e}", type_name::<T>()));
    assert_eq!(
        kes_node::raft::encode(&again),
        encoded,
        "{} does not re-encode to the same bytes",
        type_name::<T>()
    );
    Some(value)
}

fn type_name<T>() -> &'static str {
    std::any::type_name::<T>()
}

/// The fixed keys records are checked with; a fuzzed record never verifies under them unless
/// the target signed it itself.
pub fn fixed_unsealed() -> Unsealed {
    ClusterKey::from_bytes([7u8; 32].into()).derive(1)
}

/// Decodes every record of a dump as the tree it sits in holds it, the way a node that installs
/// the snapshot (or restores it) reads them, and checks what must hold for each.
pub fn check_dump_records(trees: &[DumpTree]) {
    let keys = fixed_unsealed();
    for (tree, items) in trees {
        for (record_key, value) in items {
            check_record(&keys, tree, record_key, value);
        }
    }
}

fn check_record(keys: &Unsealed, tree: &str, record_key: &[u8], value: &[u8]) {
    match tree {
        "keys" => {
            if let Some(entry) = decode_fixed_point::<KeyEntry>(value) {
                check_sealed_key(keys, record_key, &entry);
            }
        }
        "policies" => check_signed::<PolicyEntry>(keys, tree, record_key, value),
        "identities" => check_signed::<IdentityEntry>(keys, tree, record_key, value),
        "enclaves" => check_signed::<EnclaveEntry>(keys, tree, record_key, value),
        "meta" if record_key == META_MEMBERSHIP => {
            check_signed::<SignedMembership>(keys, tree, record_key, value)
        }
        "meta" if record_key == b"cluster" => {
            decode_fixed_point::<ClusterMeta>(value);
        }
        "requests" => {
            decode_fixed_point::<(u64, Outcome)>(value);
        }
        _ => {}
    }
}

/// A fuzzed signature never verifies under the fixed keys (it would be a forged MAC), and the
/// record signed with them always does: decoding keeps every byte the MAC covers.
fn check_signed<T: Signed + DeserializeOwned>(
    keys: &Unsealed,
    tree: &str,
    record_key: &[u8],
    value: &[u8],
) {
    let Some(mut entry) = decode_fixed_point::<T>(value) else {
        return;
    };
    assert!(
        !kes_node::seal::verify(keys, tree, record_key, &entry),
        "a fuzzed {tree} record verified under the fixed MAC key"
    );
    entry.set_signature(kes_node::seal::sign(keys, tree, record_key, &entry));
    assert!(
        kes_node::seal::verify(keys, tree, record_key, &entry),
        "a {tree} record signed with the fixed MAC key does not verify"
    );
}

/// A fuzzed sealed record never opens under the fixed keys, and resealing its bytes in the
/// record's place opens back to the same bytes.
fn check_sealed_key(keys: &Unsealed, record_key: &[u8], entry: &KeyEntry) {
    let (enclave, name) = split_scoped(record_key);
    let aad = RecordAad {
        enclave: &enclave,
        name: &name,
        creation_id: entry.creation_id,
    };
    let version = record_version(&entry.sealed);
    let opened = open_record(keys, aad, &entry.sealed);
    assert!(
        opened.is_err(),
        "a fuzzed sealed record (version {version:?}) opened under the fixed storage key"
    );
    let resealed = seal_record(keys, aad, &entry.sealed);
    assert_eq!(record_version(&resealed), Some(keys.storage_version));
    let reopened = open_record(keys, aad, &resealed).expect("a record sealed here opens here");
    assert_eq!(reopened.as_slice(), entry.sealed.as_slice());
}

/// `<enclave>\0<name>`, as the state keys records; anything else is taken as the name alone.
fn split_scoped(record_key: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(record_key);
    match text.split_once('\0') {
        Some((enclave, name)) => (enclave.to_owned(), name.to_owned()),
        None => (String::new(), text.into_owned()),
    }
}
