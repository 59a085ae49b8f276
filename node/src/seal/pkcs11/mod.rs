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
mod tests;
