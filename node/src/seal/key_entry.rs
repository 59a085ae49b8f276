//! Opening a key's entry: its sealed record, checked against the plain copies stored beside
//! it. The entry's newest version and minimum decrypt version are copies that the state
//! machine reads without keys; the sealed record decides. An entry that disagrees with its
//! record was altered outside the cluster (a minimum lowered to decrypt with a refused
//! version, say), on disk or in a backup, and is refused rather than served or restored.

use super::{RecordAad, Unsealed, open_record};
use crate::crypto::KeyVersions;
use crate::state::KeyEntry;

/// The versions of key `name` of `enclave` stored as `entry`. A record in the format that did
/// not seal the minimum takes its entry's, and carries it sealed from its next change on. The
/// error says what is wrong, never with key material.
pub fn open_key_entry(
    keys: &Unsealed,
    enclave: &str,
    name: &str,
    entry: &KeyEntry,
) -> Result<KeyVersions, String> {
    let aad = RecordAad {
        enclave,
        name,
        creation_id: entry.creation_id,
    };
    let record = open_record(keys, aad, &entry.sealed).map_err(|e| e.to_string())?;
    let versions = KeyVersions::decode(&record).map_err(|e| e.to_string())?;
    let newest = versions.newest().number;
    if newest != entry.version {
        return Err(format!(
            "its sealed record's newest version is {newest}, its entry says {}",
            entry.version
        ));
    }
    // 0 and 1 both let every version decrypt.
    match versions.min_decrypt() {
        Some(sealed) if sealed.max(1) != entry.min_decrypt.max(1) => Err(format!(
            "its sealed record's minimum decrypt version is {sealed}, its entry says {}",
            entry.min_decrypt
        )),
        Some(_) => Ok(versions),
        None => versions
            .with_min_decrypt(entry.min_decrypt)
            .map_err(|e| format!("its entry's minimum decrypt version: {e}")),
    }
}
