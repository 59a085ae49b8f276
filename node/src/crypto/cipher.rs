//! The two key types KES knows, their names in every era, and which one a new key gets.

use std::fmt;

/// The AEAD construction a KES key encrypts with.
///
/// KES has used several spellings for the same two algorithms over the years; [`Cipher::as_str`]
/// gives the current one and [`Cipher::parse_import`] accepts the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-256-GCM under a per-message key derived with HMAC-SHA256.
    Aes256,
    /// ChaCha20-Poly1305 under a per-message key derived with HChaCha20.
    ChaCha20,
}

impl Cipher {
    /// The name the current KES API uses (`"AES256"` or `"ChaCha20"`), e.g. in `/v1/key/describe`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::Aes256 => "AES256",
            Cipher::ChaCha20 => "ChaCha20",
        }
    }

    /// Parses a key type as clients send it on import and as older key stores recorded it.
    ///
    /// Accepts the current names (`AES256`, `ChaCha20`) and the era C/D names
    /// (`AES256-GCM_SHA256`, `XCHACHA20-POLY1305`), exactly as spelled: KES compared them
    /// case-sensitively, so a lenient match here would accept keys KES refuses.
    pub fn parse_import(name: &str) -> Option<Cipher> {
        match name {
            "AES256" | "AES256-GCM_SHA256" => Some(Cipher::Aes256),
            "ChaCha20" | "XCHACHA20-POLY1305" => Some(Cipher::ChaCha20),
            _ => None,
        }
    }

    /// Parses the `aead` field of an era A/B JSON ciphertext.
    pub(crate) fn parse_json_aead(name: &str) -> Option<Cipher> {
        match name {
            "AES-256-GCM-HMAC-SHA-256" => Some(Cipher::Aes256),
            "ChaCha20Poly1305" => Some(Cipher::ChaCha20),
            _ => None,
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cipher for newly created keys on this machine.
///
/// AES256 when the CPU has AES and carry-less multiplication instructions, ChaCha20 otherwise,
/// which is KES's rule. The test is whether *our* AES-GCM implementation gets hardware help: it
/// has backends only for x86 (AES-NI + PCLMULQDQ) and aarch64 (AES + PMULL). Elsewhere it falls
/// back to a slow bitsliced software AES, so ChaCha20 is the better choice there even on CPUs
/// where Go's AES would be accelerated (s390x, ppc64le).
pub fn default_cipher() -> Cipher {
    if has_accelerated_aes_gcm() {
        Cipher::Aes256
    } else {
        Cipher::ChaCha20
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn has_accelerated_aes_gcm() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn has_accelerated_aes_gcm() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
fn has_accelerated_aes_gcm() -> bool {
    false
}
