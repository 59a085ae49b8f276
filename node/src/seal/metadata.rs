//! The metadata MAC: policies, identities and enclaves are authenticated with a key derived
//! from the cluster key, so a record altered on disk is detected.
//!
//! The handler that builds a command signs the record it will store (it holds the keys);
//! `apply` stores the signature as it is. A node verifies every metadata record when it
//! unseals, and refuses to serve from a data dir whose metadata was altered.

use super::Unsealed;
use crate::state::{Signature, Signed};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

fn mac(key: &[u8; 32], tree: &str, record_key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m =
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [
        b"kes-cluster metadata v1".as_slice(),
        tree.as_bytes(),
        record_key,
        body,
    ] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m.finalize().into_bytes().to_vec()
}

/// The signature of `entry`, stored under `record_key` in `tree`, with the current MAC key.
pub fn sign<T: Signed>(keys: &Unsealed, tree: &str, record_key: &[u8], entry: &T) -> Signature {
    Signature {
        version: keys.storage_version,
        mac: mac(&keys.mac_key, tree, record_key, &entry.signed_bytes()),
    }
}

/// Whether `entry`'s signature is valid (compared in constant time).
pub fn verify<T: Signed>(keys: &Unsealed, tree: &str, record_key: &[u8], entry: &T) -> bool {
    let sig = entry.signature();
    let Some(key) = keys.mac_key_for(sig.version) else {
        return false;
    };
    let want = mac(key, tree, record_key, &entry.signed_bytes());
    want.len() == sig.mac.len() && bool::from(want.ct_eq(&sig.mac))
}

/// Checks every metadata record of the state; the error names the first bad one.
pub fn verify_all(keys: &Unsealed, state: &crate::state::State) -> Result<usize, String> {
    const ALTERED: &str = "the data dir was altered outside the cluster. Restore the node from a snapshot, or wipe it and rejoin";
    let records = state.metadata_records().map_err(|e| e.to_string())?;
    for (tree, key, raw) in &records {
        verify_record(keys, tree, key, raw).map_err(|bad| format!("{bad}: {ALTERED}"))?;
    }
    if let Some(m) = state.signed_membership().map_err(|e| e.to_string())? {
        if !verify(keys, "meta", crate::state::META_MEMBERSHIP, &m) {
            return Err(format!(
                "the membership record fails its metadata MAC: {ALTERED}"
            ));
        }
    }
    Ok(records.len())
}

/// Checks every key, policy, identity, enclave and membership record of a snapshot dump
/// against the snapshot's own keys, before a restore adopts any of it. A restore re-signs
/// what it adopts, so without this check it would launder a record altered in the backup
/// file; a key whose entry disagrees with its sealed record would be refused at its first use.
pub fn verify_dump(keys: &Unsealed, trees: &[crate::state::DumpTree]) -> Result<usize, String> {
    const ALTERED: &str = "the snapshot file was altered after it was saved; nothing was restored";
    let mut checked = 0;
    for (tree, items) in trees {
        for (key, raw) in items {
            let bad = match tree.as_str() {
                "keys" => verify_key_entry(keys, key, raw).err(),
                "policies" | "identities" | "enclaves" => verify_record(keys, tree, key, raw).err(),
                "meta" if key.as_slice() == crate::state::META_MEMBERSHIP => {
                    let ok = decode::<crate::state::SignedMembership>(raw)
                        .is_some_and(|m| verify(keys, "meta", key, &m));
                    (!ok).then(|| "the membership record fails its metadata MAC".to_owned())
                }
                _ => continue,
            };
            if let Some(bad) = bad {
                return Err(format!("{bad}: {ALTERED}"));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// Checks one stored metadata record; the error names it.
fn verify_record(keys: &Unsealed, tree: &str, key: &[u8], raw: &[u8]) -> Result<(), String> {
    use crate::state::{EnclaveEntry, IdentityEntry, PolicyEntry};
    let (ok, kind) = match tree {
        "policies" => (
            decode::<PolicyEntry>(raw).is_some_and(|e| verify(keys, tree, key, &e)),
            "policy",
        ),
        "identities" => (
            decode::<IdentityEntry>(raw).is_some_and(|e| verify(keys, tree, key, &e)),
            "identity",
        ),
        _ => (
            decode::<EnclaveEntry>(raw).is_some_and(|e| verify(keys, tree, key, &e)),
            "enclave",
        ),
    };
    if ok {
        return Ok(());
    }
    let name = String::from_utf8_lossy(key).replace('\0', "/");
    Err(format!("the {kind} record '{name}' fails its metadata MAC"))
}

/// Checks one stored key entry against its sealed record; the error names it.
fn verify_key_entry(keys: &Unsealed, key: &[u8], raw: &[u8]) -> Result<(), String> {
    let name = String::from_utf8_lossy(key).replace('\0', "/");
    let bad = |why: String| format!("the key record '{name}' {why}");
    let entry =
        decode::<crate::state::KeyEntry>(raw).ok_or_else(|| bad("does not decode".into()))?;
    let scoped = std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.split_once('\0'));
    let (enclave, name_only) = scoped.ok_or_else(|| bad("has no enclave".into()))?;
    super::open_key_entry(keys, enclave, name_only, &entry)
        .map(drop)
        .map_err(|why| bad(format!("fails its check: {why}")))
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Option<T> {
    crate::msgpack::from_slice(raw).ok()
}
