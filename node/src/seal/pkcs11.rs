//! The `pkcs11` root key: an AES-256 key that lives inside an HSM token and never leaves it.
//!
//! The cluster key is wrapped by handing it to the token as data: `C_Encrypt` with
//! `CKM_AES_GCM` under the root key, and `C_Decrypt` to get it back. It is never imported as a
//! token object, so nothing about it outlives the call inside the HSM.
//!
//! ```text
//!  wrap(cluster key, aad)                          token (HSM, SoftHSM2)
//!    12 random bytes from the OS ──── IV ────▶ C_Encrypt(CKM_AES_GCM, IV, aad, 128-bit tag)
//!                                                  under `key_label` (sensitive, non-extractable)
//!    1 ‖ IV ‖ ciphertext ‖ tag  ◀─── ct ‖ tag ───┘
//! ```
//!
//! * One library per module path per process: `C_Initialize` is process-wide, so providers on
//!   the same module share it, and it is finalised when the last of them is dropped.
//! * One logged-in session per provider, behind a mutex, re-opened (and logged in again) when
//!   the token drops it. PKCS#11 calls block, so each runs in `spawn_blocking`.
//! * The key is looked up by label on every call, so a key deleted from the token is noticed
//!   at the next re-check and reported as [`ProviderError::Refused`].
//! * A rejected PIN is remembered: the provider never presents it again, because real HSMs
//!   lock the token after a few failures. A corrected PIN takes a new provider (a restart).
//!
//! Non-features: no key generation (`scripts/softhsm-setup.sh` or the HSM's own tools make
//! the key), no PIN in the config or on a prompt (only in the `pin_env` variable).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rand::TryRngCore;
use zeroize::Zeroizing;

use super::provider::{ProviderError, ProviderFuture, RootKeyProvider};
use crate::config::Pkcs11Token;

/// First byte of a wrapped copy, so a later layout can be told apart.
const WRAP_FORMAT: u8 = 1;
/// A 96-bit IV: the size GCM is defined for without hashing it.
const IV_LEN: usize = 12;
/// A full 128-bit GCM tag.
const TAG_LEN: usize = 16;
/// format ‖ IV ‖ 32-byte ciphertext ‖ tag.
const WRAPPED_LEN: usize = 1 + IV_LEN + 32 + TAG_LEN;

/// A root key held in a PKCS#11 token: the `pkcs11` seal provider.
///
/// Wrapped copies are `1 ‖ IV(12) ‖ AES-256-GCM ciphertext(32) ‖ tag(16)`, made and opened by
/// the token. Each call runs on the blocking pool, one at a time per provider.
pub struct Pkcs11RootKey {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pkcs11RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pkcs11RootKey({} via {})",
            self.inner.id(),
            self.inner.module.path.display()
        )
    }
}

impl Pkcs11RootKey {
    /// Prepares the provider: reads the PIN from the environment variable `pin_env`, loads and
    /// initialises the PKCS#11 `module`, and finds `token` in it. It does not log in yet, so a
    /// wrong PIN surfaces as [`ProviderError::Auth`] from the first wrap or unwrap, where the
    /// unseal loop can report it and stay sealed.
    ///
    /// Blocking: call it before serving, or from `spawn_blocking`. Fails with
    /// [`ProviderError::Config`] when the variable is unset or empty, the module cannot be
    /// loaded, or no (or more than one) token matches.
    pub fn open(
        module: &Path,
        token: &Pkcs11Token,
        pin_env: &str,
        key_label: &str,
    ) -> Result<Self, ProviderError> {
        let pin = Zeroizing::new(std::env::var(pin_env).unwrap_or_default());
        if pin.is_empty() {
            return Err(ProviderError::Config(format!(
                "the environment variable {pin_env} holds no PIN for the PKCS#11 token {}; export the token's user PIN in {pin_env} before starting the node",
                describe_token(token)
            )));
        }
        if key_label.is_empty() {
            return Err(ProviderError::Config(
                "the PKCS#11 key label is empty; set key_label to the root key's label, e.g. kes-root".into(),
            ));
        }
        let inner = Inner {
            conn: Mutex::new(Conn::default()),
            module: ModuleUse::acquire(module)?,
            token: token.clone(),
            key_label: key_label.to_owned(),
            pin_env: pin_env.to_owned(),
            pin,
            logins: AtomicU64::new(0),
        };
        // Resolve the token now, so a typo in the label fails at start and not at every unseal.
        match inner.find_slot() {
            Ok(_) => Ok(Pkcs11RootKey {
                inner: Arc::new(inner),
            }),
            Err(SlotError::Missing(why) | SlotError::Ambiguous(why)) => {
                Err(ProviderError::Config(why))
            }
            Err(SlotError::Token(e)) => Err(ProviderError::Config(format!(
                "cannot list the tokens of {}: {}",
                inner.module.path.display(),
                describe(&e)
            ))),
        }
    }
}

impl RootKeyProvider for Pkcs11RootKey {
    fn id(&self) -> String {
        self.inner.id()
    }

    fn wrap<'a>(&'a self, plaintext: &'a [u8; 32], aad: &'a [u8]) -> ProviderFuture<'a, Vec<u8>> {
        let inner = Arc::clone(&self.inner);
        let plaintext = Zeroizing::new(*plaintext);
        let aad = aad.to_vec();
        Box::pin(blocking(move || inner.wrap(&plaintext, &aad)))
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        aad: &'a [u8],
    ) -> ProviderFuture<'a, Zeroizing<[u8; 32]>> {
        let inner = Arc::clone(&self.inner);
        let wrapped = wrapped.to_vec();
        let aad = aad.to_vec();
        Box::pin(blocking(move || inner.unwrap(&wrapped, &aad)))
    }
}

/// Runs a PKCS#11 call on the blocking pool, so a slow HSM never stalls the runtime.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(call).await.map_err(|e| {
        ProviderError::Unreachable(format!("the PKCS#11 call did not complete: {e}"))
    })?
}

/// What a provider holds. Fields drop in order: the session closes before the module use
/// that may finalise the library.
struct Inner {
    conn: Mutex<Conn>,
    module: ModuleUse,
    token: Pkcs11Token,
    key_label: String,
    pin_env: String,
    pin: Zeroizing<String>,
    /// Login attempts made, so tests can prove that a rejected PIN is not presented again.
    logins: AtomicU64,
}

/// The session state behind the provider's mutex.
#[derive(Default)]
struct Conn {
    /// A logged-in session, or `None` before the first call and after the token dropped it.
    session: Option<Session>,
    /// Why the token rejected our PIN, once it has: every later call fails with it at once.
    auth_failure: Option<String>,
}

/// How one attempt failed: `Lost` means the session may be gone and one fresh try is worth it.
enum Failure {
    Lost(ProviderError),
    Final(ProviderError),
}

enum SlotError {
    Missing(String),
    Ambiguous(String),
    Token(P11Error),
}

impl Inner {
    fn id(&self) -> String {
        let token = match &self.token {
            Pkcs11Token::Label(label) => label.clone(),
            Pkcs11Token::Slot(id) => format!("slot-{id}"),
        };
        format!("pkcs11:{token}/{}", self.key_label)
    }

    fn wrap(&self, plaintext: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let mut iv = [0u8; IV_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut iv)
            .map_err(|e| ProviderError::Unreachable(format!("the OS random source failed: {e}")))?;
        self.with_key(&mut |session, key| {
            // A key planted under our label that can be read out would expose every copy
            // wrapped with it, so wrapping checks the key's protection first.
            self.check_protected(session, key)?;
            let mut used_iv = iv;
            let ciphertext = {
                let params = GcmParams::new(&mut used_iv, aad, (TAG_LEN as u64 * 8).into())
                    .map_err(|e| Failure::Final(self.error(Step::Encrypt, e)))?;
                session
                    .encrypt(&Mechanism::AesGcm(params), key, plaintext)
                    .map_err(|e| self.failure(Step::Encrypt, e))?
            };
            if ciphertext.len() != 32 + TAG_LEN {
                return Err(Failure::Final(ProviderError::Unreachable(format!(
                    "the token returned {} bytes for AES-GCM over 32; expected {}",
                    ciphertext.len(),
                    32 + TAG_LEN
                ))));
            }
            // Read the IV back: a token that must choose IVs itself (FIPS mode) writes it here.
            let mut out = Vec::with_capacity(WRAPPED_LEN);
            out.push(WRAP_FORMAT);
            out.extend_from_slice(&used_iv);
            out.extend_from_slice(&ciphertext);
            Ok(out)
        })
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; 32]>, ProviderError> {
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != WRAP_FORMAT {
            return Err(ProviderError::Refused(format!(
                "the wrapped cluster key for {} is not a format-{WRAP_FORMAT} PKCS#11 copy of {WRAPPED_LEN} bytes; it was altered or made by another provider",
                self.id()
            )));
        }
        let (iv, ciphertext) = wrapped[1..].split_at(IV_LEN);
        self.with_key(&mut |session, key| {
            let mut iv_buf = [0u8; IV_LEN];
            iv_buf.copy_from_slice(iv);
            let params = GcmParams::new(&mut iv_buf, aad, (TAG_LEN as u64 * 8).into())
                .map_err(|e| Failure::Final(self.error(Step::Decrypt, e)))?;
            let plain = Zeroizing::new(
                session
                    .decrypt(&Mechanism::AesGcm(params), key, ciphertext)
                    .map_err(|e| self.decrypt_failure(session, key, e))?,
            );
            let mut out = Zeroizing::new([0u8; 32]);
            if plain.len() != out.len() {
                return Err(Failure::Final(ProviderError::Refused(format!(
                    "the token unwrapped {} bytes instead of a 32-byte cluster key",
                    plain.len()
                ))));
            }
            out.copy_from_slice(&plain);
            Ok(out)
        })
    }

    /// Runs `op` with a logged-in session and the root key's current handle. When the session
    /// turns out to be gone (token reset, HSM restart), it logs in once more and tries again.
    fn with_key<T>(
        &self,
        op: &mut dyn FnMut(&Session, ObjectHandle) -> Result<T, Failure>,
    ) -> Result<T, ProviderError> {
        let mut conn = self.lock_conn();
        let mut last = None;
        for _ in 0..2 {
            if let Some(why) = &conn.auth_failure {
                return Err(ProviderError::Auth(why.clone()));
            }
            let session = match conn.session.take() {
                Some(s) => s,
                None => match self.log_in() {
                    Ok(s) => s,
                    Err(Failure::Final(e)) => {
                        if let ProviderError::Auth(why) = &e {
                            conn.auth_failure = Some(why.clone());
                        }
                        return Err(e);
                    }
                    Err(Failure::Lost(e)) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            match self.find_key(&session).and_then(|key| op(&session, key)) {
                Ok(v) => {
                    conn.session = Some(session);
                    return Ok(v);
                }
                Err(Failure::Final(e)) => {
                    conn.session = Some(session);
                    return Err(e);
                }
                // Dropping the session closes it; the next round opens a fresh one.
                Err(Failure::Lost(e)) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ProviderError::Unreachable(format!("the token of {} is not answering", self.id()))
        }))
    }

    /// A poisoned lock means a call panicked mid-operation; its session may be half-way
    /// through an encryption, so it is dropped rather than reused.
    fn lock_conn(&self) -> MutexGuard<'_, Conn> {
        match self.conn.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.session = None;
                self.conn.clear_poison();
                guard
            }
        }
    }

    fn log_in(&self) -> Result<Session, Failure> {
        let slot = match self.find_slot() {
            Ok(slot) => slot,
            // At start the token was there; now it is not: unplugged, or the HSM is down.
            Err(SlotError::Missing(why)) => {
                return Err(Failure::Final(ProviderError::Unreachable(why)));
            }
            Err(SlotError::Ambiguous(why)) => {
                return Err(Failure::Final(ProviderError::Config(why)));
            }
            Err(SlotError::Token(e)) => return Err(self.failure(Step::Slots, e)),
        };
        let ctx = &self.module.ctx;
        let session = ctx
            .open_ro_session(slot)
            .map_err(|e| self.failure(Step::Open, e))?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        let pin = AuthPin::from(self.pin.as_str());
        match session.login(UserType::User, Some(&pin)) {
            // The login state is per application and token, so another provider on the same
            // token may have logged in already.
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(self.failure(Step::Login, e)),
        }
    }

    fn find_slot(&self) -> Result<Slot, SlotError> {
        let ctx = &self.module.ctx;
        let slots = ctx.get_slots_with_token().map_err(SlotError::Token)?;
        let module = self.module.path.display();
        match &self.token {
            Pkcs11Token::Slot(id) => slots.into_iter().find(|s| s.id() == *id).ok_or_else(|| {
                SlotError::Missing(format!(
                    "the PKCS#11 module {module} has no token in slot {id}; set slot to one that holds a token, or use token_label"
                ))
            }),
            Pkcs11Token::Label(label) => {
                let mut labels = Vec::new();
                let mut found = Vec::new();
                for slot in slots {
                    // A token removed between the two calls is simply not a match.
                    if let Ok(info) = ctx.get_token_info(slot) {
                        if info.label() == label {
                            found.push(slot);
                        }
                        labels.push(format!("'{}'", info.label()));
                    }
                }
                match found.as_slice() {
                    [slot] => Ok(*slot),
                    [] => Err(SlotError::Missing(format!(
                        "the PKCS#11 module {module} has no token labelled '{label}' (tokens: {}); initialise one (scripts/softhsm-setup.sh does for SoftHSM2) or fix token_label",
                        if labels.is_empty() { "none".to_owned() } else { labels.join(", ") }
                    ))),
                    many => Err(SlotError::Ambiguous(format!(
                        "{} tokens of {module} are labelled '{label}'; select one with slot instead",
                        many.len()
                    ))),
                }
            }
        }
    }

    fn find_key(&self, session: &Session) -> Result<ObjectHandle, Failure> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
        ];
        let found = session
            .find_objects(&template)
            .map_err(|e| self.failure(Step::Find, e))?;
        match found.as_slice() {
            [key] => Ok(*key),
            [] => {
                // A private key is invisible to a session that lost its login, which is not
                // the same as the key being gone: check before sealing the node over it.
                let state = session
                    .get_session_info()
                    .map_err(|e| self.failure(Step::Find, e))?
                    .session_state();
                if !matches!(state, SessionState::RoUser | SessionState::RwUser) {
                    return Err(Failure::Lost(ProviderError::Unreachable(format!(
                        "the session with {} lost its login",
                        describe_token(&self.token)
                    ))));
                }
                Err(Failure::Final(ProviderError::Refused(format!(
                    "{} holds no AES key labelled '{}': it was deleted, or never created (scripts/softhsm-setup.sh creates one)",
                    describe_token(&self.token),
                    self.key_label
                ))))
            }
            many => Err(Failure::Final(ProviderError::Config(format!(
                "{} AES keys in {} are labelled '{}'; the label must name exactly one key",
                many.len(),
                describe_token(&self.token),
                self.key_label
            )))),
        }
    }

    /// Refuses a key whose value could be read out of the token.
    fn check_protected(&self, session: &Session, key: ObjectHandle) -> Result<(), Failure> {
        let attrs = session
            .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable])
            .map_err(|e| self.failure(Step::Attributes, e))?;
        let (mut sensitive, mut extractable) = (None, None);
        for attr in attrs {
            match attr {
                Attribute::Sensitive(v) => sensitive = Some(v),
                Attribute::Extractable(v) => extractable = Some(v),
                _ => {}
            }
        }
        if sensitive == Some(true) && extractable == Some(false) {
            return Ok(());
        }
        Err(Failure::Final(ProviderError::Config(format!(
            "the key '{}' in {} is not protected (CKA_SENSITIVE={}, CKA_EXTRACTABLE={}); a root key must be generated inside the token as sensitive and non-extractable, as scripts/softhsm-setup.sh does",
            self.key_label,
            describe_token(&self.token),
            show(sensitive),
            show(extractable)
        ))))
    }

    /// SoftHSM2 answers a GCM tag mismatch with `CKR_GENERAL_ERROR`, and other tokens with
    /// `CKR_FUNCTION_FAILED`; both also mean a sick token. A self-test round trip tells the two
    /// apart, so that a failing device is not taken for a revoked key and does not seal the
    /// node at once.
    fn decrypt_failure(&self, session: &Session, key: ObjectHandle, e: P11Error) -> Failure {
        let ambiguous = matches!(
            &e,
            P11Error::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _)
        );
        if ambiguous && !self.self_test(session, key) {
            return Failure::Final(ProviderError::Unreachable(format!(
                "{} failed to decrypt ({}) and fails a self-test with '{}' too: the token is not working",
                describe_token(&self.token),
                describe(&e),
                self.key_label
            )));
        }
        self.failure(Step::Decrypt, e)
    }

    /// Encrypts and decrypts a fixed block with the root key; true when the token did both.
    fn self_test(&self, session: &Session, key: ObjectHandle) -> bool {
        const PROBE: [u8; 32] = [0; 32];
        const AAD: &[u8] = b"kes-cluster pkcs11 self-test";
        let mut iv = [0u8; IV_LEN];
        if rand::rngs::OsRng.try_fill_bytes(&mut iv).is_err() {
            return false;
        }
        let round_trip = || -> Result<bool, P11Error> {
            let tag_bits = (TAG_LEN as u64 * 8).into();
            let mut enc_iv = iv;
            let params = GcmParams::new(&mut enc_iv, AAD, tag_bits)?;
            let sealed = session.encrypt(&Mechanism::AesGcm(params), key, &PROBE)?;
            let mut dec_iv = enc_iv;
            let params = GcmParams::new(&mut dec_iv, AAD, tag_bits)?;
            Ok(session.decrypt(&Mechanism::AesGcm(params), key, &sealed)? == PROBE)
        };
        round_trip().unwrap_or(false)
    }

    fn failure(&self, step: Step, e: P11Error) -> Failure {
        let lost = matches!(
            &e,
            P11Error::Pkcs11(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::UserNotLoggedIn
                    | RvError::DeviceRemoved
                    | RvError::DeviceError
                    | RvError::TokenNotPresent
                    | RvError::KeyHandleInvalid
                    | RvError::ObjectHandleInvalid,
                _
            )
        );
        let err = self.error(step, e);
        if lost {
            Failure::Lost(err)
        } else {
            Failure::Final(err)
        }
    }

    /// Sorts a PKCS#11 error into what the unseal loop must do about it.
    fn error(&self, step: Step, e: P11Error) -> ProviderError {
        let token = describe_token(&self.token);
        let P11Error::Pkcs11(rv, function) = e else {
            return ProviderError::Config(format!(
                "the PKCS#11 module {} failed during {}: {e}",
                self.module.path.display(),
                step.what()
            ));
        };
        let call = call_name(function, rv);
        match rv {
            RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinLocked
            | RvError::PinExpired
            | RvError::PinTooWeak
            | RvError::UserPinNotInitialized => ProviderError::Auth(format!(
                "{token} rejected the PIN in {} ({call}); it is not tried again, because HSMs lock a token after repeated failures: fix {} and restart the node",
                self.pin_env, self.pin_env
            )),
            RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => {
                ProviderError::Refused(format!(
                    "the key '{}' in {token} disappeared ({call})",
                    self.key_label
                ))
            }
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::FunctionFailed
            | RvError::DataInvalid
            | RvError::DataLenRange
            | RvError::GeneralError
                if step == Step::Decrypt =>
            {
                ProviderError::Refused(format!(
                    "{token} cannot authenticate the wrapped cluster key with '{}' ({call}): a different root key, or the copy was altered",
                    self.key_label
                ))
            }
            RvError::KeyFunctionNotPermitted
            | RvError::KeyTypeInconsistent
            | RvError::KeySizeRange
            | RvError::ActionProhibited => ProviderError::Refused(format!(
                "{token} does not allow '{}' to {} ({call}): the key was disabled or is not a 256-bit AES key with encrypt and decrypt",
                self.key_label,
                step.what()
            )),
            RvError::MechanismInvalid | RvError::MechanismParamInvalid => {
                ProviderError::Config(format!(
                    "{token} does not support AES-GCM with a 12-byte IV and a 16-byte tag ({call})"
                ))
            }
            _ => ProviderError::Unreachable(format!("{token} failed to {} ({call})", step.what())),
        }
    }
}

/// Which part of a call failed, for messages and for errors that mean different things in
/// different places (`CKR_FUNCTION_FAILED` from `C_Decrypt` is a GCM tag mismatch).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Slots,
    Open,
    Login,
    Find,
    Attributes,
    Encrypt,
    Decrypt,
}

impl Step {
    fn what(self) -> &'static str {
        match self {
            Step::Slots => "list its tokens",
            Step::Open => "open a session",
            Step::Login => "log in",
            Step::Find => "find the key",
            Step::Attributes => "read the key's attributes",
            Step::Encrypt => "encrypt",
            Step::Decrypt => "decrypt",
        }
    }
}

fn call_name(function: Function, rv: RvError) -> String {
    format!("C_{function:?} returned {rv:?}")
}

fn describe(e: &P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => call_name(*function, *rv),
        other => other.to_string(),
    }
}

fn describe_token(token: &Pkcs11Token) -> String {
    match token {
        Pkcs11Token::Label(label) => format!("token '{label}'"),
        Pkcs11Token::Slot(id) => format!("the token in slot {id}"),
    }
}

fn show(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "unknown",
    }
}

/// Libraries this process has loaded, by canonical path, with how many providers use each.
/// A library stays loaded once loaded: unloading one (SoftHSM2 is C++ with global state)
/// while anything of it may still run is not worth the memory it frees.
static MODULES: Mutex<BTreeMap<PathBuf, Loaded>> = Mutex::new(BTreeMap::new());

struct Loaded {
    ctx: Pkcs11,
    users: usize,
}

/// One provider's use of an initialised library. The library is initialised when its first
/// use starts and finalised when its last ends, so a later provider starts from a clean
/// library (SoftHSM2, for one, reads its configuration in `C_Initialize`).
struct ModuleUse {
    path: PathBuf,
    ctx: Pkcs11,
}

impl ModuleUse {
    fn acquire(module: &Path) -> Result<Self, ProviderError> {
        let path = std::fs::canonicalize(module).map_err(|e| {
            ProviderError::Config(format!(
                "the PKCS#11 module {}: {e}; install the HSM's library (SoftHSM2: apt-get install softhsm2) or fix module",
                module.display()
            ))
        })?;
        let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        let loaded = match modules.entry(path.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let ctx = Pkcs11::new(&path).map_err(|err| {
                    ProviderError::Config(format!(
                        "cannot load the PKCS#11 module {}: {err}",
                        path.display()
                    ))
                })?;
                e.insert(Loaded { ctx, users: 0 })
            }
        };
        if loaded.users == 0 {
            // OS locking: the node calls from several blocking threads.
            let args = CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK);
            match loaded.ctx.initialize(args) {
                Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                Err(e) => {
                    return Err(ProviderError::Config(format!(
                        "the PKCS#11 module {} failed to initialise ({}); for SoftHSM2 check the file SOFTHSM2_CONF names",
                        path.display(),
                        describe(&e)
                    )));
                }
            }
        }
        loaded.users += 1;
        Ok(ModuleUse {
            path,
            ctx: loaded.ctx.clone(),
        })
    }
}

impl Drop for ModuleUse {
    fn drop(&mut self) {
        let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(loaded) = modules.get_mut(&self.path) {
            loaded.users = loaded.users.saturating_sub(1);
            if loaded.users == 0 {
                // Nothing to do about a failure here; the next use initialises again anyway.
                let _ = loaded.ctx.clone().finalize();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a real SoftHSM2 token, made by `scripts/softhsm-setup.sh` for each test.
    //!
    //! SoftHSM2 reads `SOFTHSM2_CONF` when the library is initialised, and this crate forbids
    //! the `unsafe` that `set_var` needs. So each test re-runs itself in a child process whose
    //! environment points at a token made for it alone: the parent makes the token and checks
    //! that the child ran and passed. Tokens, logins and environments stay apart that way,
    //! with no lock between the tests.

    use super::*;
    use crate::config::{Config, SealProvider};
    use std::process::Command;
    use std::time::{Duration, Instant};

    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    /// Marks the child process, which runs the test body.
    const CHILD: &str = "KES_PKCS11_TEST_CHILD";
    /// The token's PIN, in the variable the example config and the setup script use.
    const PIN_ENV: &str = "KES_HSM_PIN";
    const PIN: &str = "test-pin-7319";
    /// A PIN the token does not accept.
    const WRONG_PIN_ENV: &str = "KES_TEST_WRONG_HSM_PIN";
    const WRONG_PIN: &str = "wrong-pin-0000";
    const ADMIN: &str = "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn installed(tool: &str) -> bool {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
    }

    /// Runs `body` in a child process against a fresh token (see the module doc).
    fn with_token(test: &str, body: impl FnOnce()) {
        if std::env::var_os(CHILD).is_some() {
            body();
            return;
        }
        assert!(
            Path::new(MODULE).exists() && installed("softhsm2-util") && installed("pkcs11-tool"),
            "SoftHSM2 is not installed: run `KES_HSM_PIN=1234 scripts/softhsm-setup.sh /tmp/hsm` \
             (it installs Debian's softhsm2 and opensc), or scripts/test.sh, which installs them"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let setup = Command::new("bash")
            .arg(repo().join("scripts/softhsm-setup.sh"))
            .arg(dir.path())
            .env(PIN_ENV, PIN)
            .output()
            .expect("run scripts/softhsm-setup.sh");
        let stdout = String::from_utf8_lossy(&setup.stdout);
        assert!(
            setup.status.success(),
            "softhsm-setup.sh failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&setup.stderr)
        );
        let conf = dir.path().join("softhsm2.conf");
        assert_eq!(
            stdout.lines().last(),
            Some(format!("export SOFTHSM2_CONF={}", conf.display()).as_str())
        );
        let (_, in_crate) = module_path!().split_once("::").expect("crate::path");
        let name = format!("{in_crate}::{test}");
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("SOFTHSM2_CONF", &conf)
            .env(PIN_ENV, PIN)
            .env(WRONG_PIN_ENV, WRONG_PIN)
            .env("KES_ADMIN_IDENTITY", ADMIN)
            .output()
            .expect("run the test in a child process");
        let out = String::from_utf8_lossy(&child.stdout);
        let err = String::from_utf8_lossy(&child.stderr);
        assert!(
            child.status.success() && out.contains("1 passed"),
            "{name} failed in its child process:\n{out}\n{err}"
        );
        // Measurements the child printed, for `cargo test -- --nocapture`.
        for line in out.lines().chain(err.lines()) {
            if let Some(at) = line.find("pkcs11 timing") {
                eprintln!("{}", &line[at..]);
            }
        }
    }

    fn open(pin_env: &str) -> Pkcs11RootKey {
        Pkcs11RootKey::open(
            Path::new(MODULE),
            &Pkcs11Token::Label("kes-cluster".into()),
            pin_env,
            "kes-root",
        )
        .expect("open the token made by softhsm-setup.sh")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn delete_root_key() {
        let out = Command::new("pkcs11-tool")
            .args([
                "--module",
                MODULE,
                "--token-label",
                "kes-cluster",
                "--login",
            ])
            .args(["--pin", PIN, "--delete-object", "--type", "secrkey"])
            .args(["--label", "kes-root"])
            .output()
            .expect("run pkcs11-tool");
        assert!(
            out.status.success(),
            "pkcs11-tool --delete-object: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn wraps_and_unwraps_inside_the_token() {
        with_token("wraps_and_unwraps_inside_the_token", || {
            let rt = runtime();
            let cluster_key = [0x5au8; 32];
            let aad = b"cluster 7f3e";
            let started = Instant::now();
            let key = open(PIN_ENV);
            let opened = started.elapsed();
            assert_eq!(key.id(), "pkcs11:kes-cluster/kes-root");
            assert!(!format!("{key:?}").contains(PIN));

            let wrapped = rt.block_on(key.wrap(&cluster_key, aad)).expect("wrap");
            assert_eq!(wrapped.len(), WRAPPED_LEN);
            assert_eq!(wrapped[0], WRAP_FORMAT);
            assert!(!wrapped.windows(32).any(|w| w == cluster_key));
            let again = rt.block_on(key.wrap(&cluster_key, aad)).expect("wrap");
            assert_ne!(
                wrapped[1..1 + IV_LEN],
                again[1..1 + IV_LEN],
                "fresh IV per wrap"
            );
            drop(key);

            // What a node does at start: open the token, then one unwrap (with the login).
            let started = Instant::now();
            let key = open(PIN_ENV);
            let got = rt.block_on(key.unwrap(&wrapped, aad)).expect("unwrap");
            let unseal = started.elapsed();
            assert_eq!(*got, cluster_key);
            let warm = Instant::now();
            for _ in 0..50 {
                rt.block_on(key.unwrap(&again, aad)).expect("unwrap");
            }
            let warm = warm.elapsed() / 50;
            println!(
                "pkcs11 timing: open {opened:?}; unseal (open + login + unwrap) {unseal:?}; warm unwrap {warm:?}"
            );
            assert!(unseal < Duration::from_secs(5), "unseal took {unseal:?}");

            // The same token by slot number opens the same copies, on the shared library.
            let slot = match key.inner.find_slot() {
                Ok(slot) => slot.id(),
                Err(_) => panic!("the token has a slot"),
            };
            let by_slot = Pkcs11RootKey::open(
                Path::new(MODULE),
                &Pkcs11Token::Slot(slot),
                PIN_ENV,
                "kes-root",
            )
            .expect("open by slot");
            assert_eq!(by_slot.id(), format!("pkcs11:slot-{slot}/kes-root"));
            let got = rt
                .block_on(by_slot.unwrap(&wrapped, aad))
                .expect("unwrap by slot");
            assert_eq!(*got, cluster_key);
        });
    }

    #[test]
    fn altered_copies_and_other_aad_are_refused() {
        with_token("altered_copies_and_other_aad_are_refused", || {
            let rt = runtime();
            let key = open(PIN_ENV);
            let wrapped = rt.block_on(key.wrap(&[7u8; 32], b"aad")).expect("wrap");
            let refused = |bytes: &[u8], aad: &[u8]| match rt.block_on(key.unwrap(bytes, aad)) {
                Err(ProviderError::Refused(msg)) => msg,
                other => panic!("expected Refused, got {other:?}"),
            };
            let msg = refused(&wrapped, b"other aad");
            assert!(msg.contains("altered"), "{msg}");
            // Every region: format byte, IV, ciphertext, tag.
            for at in [0, 1, 12, 13, 44, 45, WRAPPED_LEN - 1] {
                let mut bad = wrapped.clone();
                bad[at] ^= 0x01;
                refused(&bad, b"aad");
            }
            refused(&wrapped[..WRAPPED_LEN - 1], b"aad");
            refused(b"", b"aad");
            // A refusal leaves the session usable.
            let got = rt.block_on(key.unwrap(&wrapped, b"aad")).expect("unwrap");
            assert_eq!(*got, [7u8; 32]);
        });
    }

    #[test]
    fn a_wrong_pin_is_an_auth_error_and_is_not_presented_again() {
        with_token(
            "a_wrong_pin_is_an_auth_error_and_is_not_presented_again",
            || {
                let rt = runtime();
                let wrapped = rt
                    .block_on(open(PIN_ENV).wrap(&[1u8; 32], b"aad"))
                    .expect("wrap");
                let key = open(WRONG_PIN_ENV);
                for _ in 0..3 {
                    match rt.block_on(key.unwrap(&wrapped, b"aad")) {
                        Err(ProviderError::Auth(msg)) => {
                            assert!(msg.contains(WRONG_PIN_ENV), "{msg}");
                            assert!(!msg.contains(WRONG_PIN) && !msg.contains(PIN), "{msg}");
                        }
                        other => panic!("expected Auth, got {other:?}"),
                    }
                }
                assert!(matches!(
                    rt.block_on(key.wrap(&[1u8; 32], b"aad")),
                    Err(ProviderError::Auth(_))
                ));
                assert_eq!(
                    key.inner.logins.load(Ordering::Relaxed),
                    1,
                    "a rejected PIN must not be presented again"
                );
                // The token is not locked by it: the right PIN still unseals.
                let got = rt.block_on(open(PIN_ENV).unwrap(&wrapped, b"aad"));
                assert_eq!(*got.expect("unwrap"), [1u8; 32]);
            },
        );
    }

    #[test]
    fn a_key_deleted_from_the_token_is_refused_at_the_next_call() {
        with_token(
            "a_key_deleted_from_the_token_is_refused_at_the_next_call",
            || {
                let rt = runtime();
                let key = open(PIN_ENV);
                let wrapped = rt.block_on(key.wrap(&[2u8; 32], b"aad")).expect("wrap");
                rt.block_on(key.unwrap(&wrapped, b"aad")).expect("unwrap");
                // Deleted by another process, as an operator would, while our session stays open.
                delete_root_key();
                match rt.block_on(key.unwrap(&wrapped, b"aad")) {
                    Err(ProviderError::Refused(msg)) => assert!(msg.contains("kes-root"), "{msg}"),
                    other => panic!("expected Refused, got {other:?}"),
                }
                assert!(matches!(
                    rt.block_on(key.wrap(&[2u8; 32], b"aad")),
                    Err(ProviderError::Refused(_))
                ));
            },
        );
    }

    #[test]
    fn the_root_key_is_sensitive_and_never_extractable() {
        with_token("the_root_key_is_sensitive_and_never_extractable", || {
            let key = open(PIN_ENV);
            let attrs = key
                .inner
                .with_key(&mut |session, handle| {
                    session
                        .get_attributes(
                            handle,
                            &[
                                AttributeType::Token,
                                AttributeType::Private,
                                AttributeType::Sensitive,
                                AttributeType::AlwaysSensitive,
                                AttributeType::Extractable,
                                AttributeType::NeverExtractable,
                                AttributeType::Encrypt,
                                AttributeType::Decrypt,
                                AttributeType::ValueLen,
                                AttributeType::AllowedMechanisms,
                            ],
                        )
                        .map_err(|e| key.inner.failure(Step::Attributes, e))
                })
                .expect("read attributes");
            let flag = |want: AttributeType| {
                attrs.iter().find_map(|a| match (a, want) {
                    (Attribute::Token(v), AttributeType::Token)
                    | (Attribute::Private(v), AttributeType::Private)
                    | (Attribute::Sensitive(v), AttributeType::Sensitive)
                    | (Attribute::AlwaysSensitive(v), AttributeType::AlwaysSensitive)
                    | (Attribute::Extractable(v), AttributeType::Extractable)
                    | (Attribute::NeverExtractable(v), AttributeType::NeverExtractable)
                    | (Attribute::Encrypt(v), AttributeType::Encrypt)
                    | (Attribute::Decrypt(v), AttributeType::Decrypt) => Some(*v),
                    _ => None,
                })
            };
            assert_eq!(flag(AttributeType::Token), Some(true), "{attrs:?}");
            assert_eq!(flag(AttributeType::Private), Some(true), "{attrs:?}");
            assert_eq!(flag(AttributeType::Sensitive), Some(true), "{attrs:?}");
            assert_eq!(
                flag(AttributeType::AlwaysSensitive),
                Some(true),
                "{attrs:?}"
            );
            assert_eq!(flag(AttributeType::Extractable), Some(false), "{attrs:?}");
            assert_eq!(
                flag(AttributeType::NeverExtractable),
                Some(true),
                "{attrs:?}"
            );
            assert_eq!(flag(AttributeType::Encrypt), Some(true), "{attrs:?}");
            assert_eq!(flag(AttributeType::Decrypt), Some(true), "{attrs:?}");
            assert!(attrs.contains(&Attribute::ValueLen(32.into())), "{attrs:?}");
            assert!(
                attrs.contains(&Attribute::AllowedMechanisms(vec![
                    cryptoki::mechanism::MechanismType::AES_GCM
                ])),
                "{attrs:?}"
            );
            // And the token will not hand out the value itself.
            let value = key.inner.with_key(&mut |session, handle| {
                session
                    .get_attributes(handle, &[AttributeType::Value])
                    .map_err(|e| key.inner.failure(Step::Attributes, e))
            });
            match value {
                Ok(attrs) => assert!(
                    !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
                    "the key value was readable"
                ),
                Err(e) => assert!(e.to_string().contains("AttributeSensitive"), "{e}"),
            }
        });
    }

    #[test]
    fn an_unknown_token_or_key_is_reported() {
        with_token("an_unknown_token_or_key_is_reported", || {
            let err = Pkcs11RootKey::open(
                Path::new(MODULE),
                &Pkcs11Token::Label("no-such-token".into()),
                PIN_ENV,
                "kes-root",
            )
            .expect_err("unknown token");
            match err {
                ProviderError::Config(msg) => {
                    assert!(
                        msg.contains("no-such-token") && msg.contains("'kes-cluster'"),
                        "{msg}"
                    )
                }
                other => panic!("expected Config, got {other:?}"),
            }
            assert!(matches!(
                Pkcs11RootKey::open(Path::new(MODULE), &Pkcs11Token::Slot(999_999), PIN_ENV, "k"),
                Err(ProviderError::Config(_))
            ));
            let key = Pkcs11RootKey::open(
                Path::new(MODULE),
                &Pkcs11Token::Label("kes-cluster".into()),
                PIN_ENV,
                "no-such-key",
            )
            .expect("the token exists");
            assert!(matches!(
                runtime().block_on(key.wrap(&[0u8; 32], b"")),
                Err(ProviderError::Refused(_))
            ));
        });
    }

    #[test]
    fn the_example_config_loads_and_unseals_with_the_setup_token() {
        with_token(
            "the_example_config_loads_and_unseals_with_the_setup_token",
            || {
                let loaded = Config::load(repo().join("deploy/examples/pkcs11.yaml"))
                    .expect("deploy/examples/pkcs11.yaml loads");
                assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
                let config = loaded.config;
                assert_eq!(config.admin_identity.as_deref(), Some(ADMIN));
                let [
                    SealProvider::Pkcs11 {
                        module,
                        token,
                        pin_env,
                        key_label,
                    },
                ] = config.seal.providers.as_slice()
                else {
                    panic!("one pkcs11 provider: {:?}", config.seal.providers);
                };
                let key = Pkcs11RootKey::open(module, token, pin_env, key_label).expect("open");
                let rt = runtime();
                let wrapped = rt.block_on(key.wrap(&[3u8; 32], b"aad")).expect("wrap");
                assert_eq!(
                    *rt.block_on(key.unwrap(&wrapped, b"aad")).expect("unwrap"),
                    [3u8; 32]
                );
            },
        );
    }

    #[test]
    fn the_example_config_parses_without_a_token() {
        let text = std::fs::read_to_string(repo().join("deploy/examples/pkcs11.yaml"))
            .expect("read the example");
        let env = |name: &str| (name == "KES_ADMIN_IDENTITY").then(|| ADMIN.to_owned());
        let config = Config::from_yaml(&text, &env).expect("parses").config;
        assert_eq!(
            config.listen_address(),
            "0.0.0.0:7373".parse().expect("address")
        );
        assert_eq!(
            config.seal.providers,
            vec![SealProvider::Pkcs11 {
                module: MODULE.into(),
                token: Pkcs11Token::Label("kes-cluster".into()),
                pin_env: "KES_HSM_PIN".into(),
                key_label: "kes-root".into(),
            }]
        );
        config
            .check_required()
            .expect("a complete production config");
    }

    #[test]
    fn an_unset_pin_variable_or_missing_module_is_a_config_error() {
        let err = Pkcs11RootKey::open(
            Path::new(MODULE),
            &Pkcs11Token::Label("kes-cluster".into()),
            "KES_TEST_PIN_THAT_IS_NEVER_SET",
            "kes-root",
        )
        .expect_err("no PIN");
        match err {
            ProviderError::Config(msg) => {
                assert!(msg.contains("KES_TEST_PIN_THAT_IS_NEVER_SET"), "{msg}")
            }
            other => panic!("expected Config, got {other:?}"),
        }
        // PATH is set in any test environment; it stands in for a PIN here.
        let err = Pkcs11RootKey::open(
            Path::new("/nonexistent/libpkcs11.so"),
            &Pkcs11Token::Label("kes-cluster".into()),
            "PATH",
            "kes-root",
        )
        .expect_err("no module");
        match err {
            ProviderError::Config(msg) => {
                assert!(msg.contains("/nonexistent/libpkcs11.so"), "{msg}")
            }
            other => panic!("expected Config, got {other:?}"),
        }
    }
}
