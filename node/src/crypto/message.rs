//! KES per-message encryption (contract §4.2): a fresh sub-key per message, then one AEAD seal.
//!
//! KES never encrypts under the master key directly. Each message draws a 16-byte IV from which a
//! one-time sub-key is derived, so the 12-byte random AEAD nonce would have to repeat *together
//! with* the IV before a nonce is ever reused under one key.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::cipher::Cipher;
use super::key::DecryptError;

/// Length of the per-message IV that the sub-key is derived from.
pub(crate) const IV_LEN: usize = 16;
/// Length of the AEAD nonce (both AES-GCM and ChaCha20-Poly1305 in their IETF form).
pub(crate) const NONCE_LEN: usize = 12;
/// Length of the AEAD tag appended to the encrypted bytes.
pub(crate) const TAG_LEN: usize = 16;

/// Derives the one-time AEAD key for the message with this `iv`.
pub(crate) fn derive_subkey(
    cipher: Cipher,
    master: &[u8; 32],
    iv: &[u8; IV_LEN],
) -> Zeroizing<[u8; 32]> {
    let mut subkey = Zeroizing::new([0u8; 32]);
    match cipher {
        Cipher::Aes256 => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(master)
                .expect("HMAC accepts keys of any length");
            mac.update(iv);
            let mut out = mac.finalize().into_bytes();
            subkey.copy_from_slice(&out);
            out.as_mut_slice().zeroize();
        }
        Cipher::ChaCha20 => {
            let mut out = chacha20::hchacha::<chacha20::R20>(master.into(), iv.into());
            subkey.copy_from_slice(&out);
            out.as_mut_slice().zeroize();
        }
    }
    subkey
}

/// Encrypts `plaintext` and returns the raw format `aead_out || iv || nonce`.
///
/// # Panics
/// If the plaintext exceeds the AEAD's limit (64 GiB for AES-GCM), far beyond any request body
/// the server accepts, so reaching it is a bug in the caller.
pub(crate) fn seal(
    cipher: Cipher,
    master: &[u8; 32],
    iv: &[u8; IV_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    associated_data: &[u8],
) -> Vec<u8> {
    let subkey = derive_subkey(cipher, master, iv);
    // Sized up front so the buffer never reallocates and leaves a plaintext copy behind in
    // freed memory.
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN + IV_LEN + NONCE_LEN);
    out.extend_from_slice(plaintext);
    let sealed = match cipher {
        Cipher::Aes256 => Aes256Gcm::new((&*subkey).into()).encrypt_in_place(
            nonce.into(),
            associated_data,
            &mut out,
        ),
        Cipher::ChaCha20 => ChaCha20Poly1305::new((&*subkey).into()).encrypt_in_place(
            nonce.into(),
            associated_data,
            &mut out,
        ),
    };
    if sealed.is_err() {
        out.zeroize();
        panic!(
            "plaintext of {} bytes exceeds the AEAD limit",
            plaintext.len()
        );
    }
    out.extend_from_slice(iv);
    out.extend_from_slice(nonce);
    out
}

/// Authenticates and decrypts `aead_out` (encrypted bytes followed by the tag).
pub(crate) fn open(
    cipher: Cipher,
    master: &[u8; 32],
    iv: &[u8; IV_LEN],
    nonce: &[u8; NONCE_LEN],
    aead_out: &[u8],
    associated_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    if aead_out.len() < TAG_LEN {
        return Err(DecryptError);
    }
    let subkey = derive_subkey(cipher, master, iv);
    let mut buf = Zeroizing::new(aead_out.to_vec());
    let opened = match cipher {
        Cipher::Aes256 => Aes256Gcm::new((&*subkey).into()).decrypt_in_place(
            nonce.into(),
            associated_data,
            &mut *buf,
        ),
        Cipher::ChaCha20 => ChaCha20Poly1305::new((&*subkey).into()).decrypt_in_place(
            nonce.into(),
            associated_data,
            &mut *buf,
        ),
    };
    opened.map_err(|_| DecryptError)?;
    Ok(buf)
}
