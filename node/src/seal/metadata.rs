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
    use crate::state::{EnclaveEntry, IdentityEntry, PolicyEntry};
    let records = state.metadata_records().map_err(|e| e.to_string())?;
    for (tree, key, raw) in &records {
        let ok = match *tree {
            "policies" => decode::<PolicyEntry>(raw).is_some_and(|e| verify(keys, tree, key, &e)),
            "identities" => {
                decode::<IdentityEntry>(raw).is_some_and(|e| verify(keys, tree, key, &e))
            }
            _ => decode::<EnclaveEntry>(raw).is_some_and(|e| verify(keys, tree, key, &e)),
        };
        if !ok {
            let name = String::from_utf8_lossy(key).replace('\0', "/");
            return Err(format!(
                "the {} record '{name}' fails its metadata MAC: the data dir was altered outside the cluster. Restore the node from a snapshot, or wipe it and rejoin",
                match *tree {
                    "policies" => "policy",
                    "identities" => "identity",
                    _ => "enclave",
                }
            ));
        }
    }
    if let Some(m) = state.signed_membership().map_err(|e| e.to_string())? {
        if !verify(keys, "meta", crate::state::META_MEMBERSHIP, &m) {
            return Err("the membership record fails its metadata MAC: the data dir was altered outside the cluster. Restore the node from a snapshot, or wipe it and rejoin".into());
        }
    }
    Ok(records.len())
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Option<T> {
    rmp_serde::from_slice(raw).ok()
}
