//! The client load of a scenario: the key lifecycle of a few names, run by several clients at
//! once against every node, each operation recorded (invoke, then ok, fail or info) for the
//! checker.
//!
//! - Clients come in groups; a group's clients share its key names, so at most
//!   [`CLIENTS_PER_GROUP`] clients work on a name, and several of them import the same new name
//!   at once (the create races).
//! - An import carries key material the client made, unique in the run: a decrypt of a
//!   ciphertext the harness made itself under material `m` then tells whether the key held `m`
//!   (the register of [`crate::model`]).
//! - Every request goes to a node picked at random, without `Kes-Cluster-Index`: reads must be
//!   linearizable on every node without it.
//! - A generated DEK is kept, to be decrypted on every node once the faults heal.
//! - Some operations rotate the key, restrict or allow version 1 (the imported material) again,
//!   or retire it: the register checks the version numbers and what decrypts after each.

use crate::history::{PendingOp, Recorder};
use crate::model::{KeyInput, KeyOutput, KeyRegister, Material, Model};
use base64::Engine;
use kes_cluster::{Client, Method};
use kes_node::crypto::{Cipher, SecretKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Clients that share one group's key names.
pub const CLIENTS_PER_GROUP: usize = 3;
/// Groups of clients (and of key names).
pub const GROUPS: usize = 3;
/// Key names per group.
pub const NAMES_PER_GROUP: usize = 3;
/// What a client waits for an answer before it calls the outcome unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The plaintext of every ciphertext the harness makes itself.
const PLAINTEXT: &[u8] = b"jepsen-lite";

/// A DEK a generate returned: it must decrypt to `plaintext` on every node after the faults,
/// unless its key was deleted after the generate was invoked.
#[derive(Clone, Debug)]
pub struct Dek {
    /// The key name.
    pub name: String,
    /// When the generate was invoked (run clock; read just before, so never later).
    pub invoked_ns: u64,
    /// The base64 plaintext and ciphertext, as the node answered them.
    pub plaintext: String,
    /// See `plaintext`.
    pub ciphertext: String,
    /// The key version it was made under.
    pub version: u32,
}

/// Material a client imported: its name in the history, and its bytes.
pub type Imported = (Material, Vec<u8>);

/// The run's shared client state: the recorder, and what the clients made.
pub struct Load {
    /// Every operation.
    pub recorder: Recorder<KeyInput, KeyOutput>,
    /// Material per name, in import order (imports of every outcome: an unknown import may
    /// have taken effect).
    pub materials: Mutex<HashMap<String, Vec<Imported>>>,
    /// DEKs answered by generate.
    pub deks: Mutex<Vec<Dek>>,
    /// Set when the clients are to stop.
    pub stop: AtomicBool,
}

/// Every key name of the run.
pub fn key_names() -> Vec<String> {
    (0..GROUPS)
        .flat_map(|g| (0..NAMES_PER_GROUP).map(move |j| format!("k{g}-{j}")))
        .collect()
}

impl Load {
    /// An empty load on `recorder`'s clock.
    pub fn new(recorder: Recorder<KeyInput, KeyOutput>) -> Arc<Load> {
        Arc::new(Load {
            recorder,
            materials: Mutex::new(HashMap::new()),
            deks: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        })
    }

    /// Runs client `process` until [`Load::stop`] is set, against `clients` (one per node).
    pub async fn client(self: Arc<Self>, process: u64, clients: Vec<Client>, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed ^ process.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let group = process as usize % GROUPS;
        while !self.stop.load(Ordering::Relaxed) {
            let name = format!("k{group}-{}", rng.random_range(0..NAMES_PER_GROUP));
            let node = rng.random_range(0..clients.len());
            let input = self.pick_input(&name, &mut rng);
            if !self.run(process, node, &clients[node], &name, input).await {
                // A node that is down answers at once: do not fill the history with that.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// A random operation on `name`: imports, generates, decrypts (of any material ever
    /// imported on the name), rotations, minimum versions, retirements and deletes.
    fn pick_input(&self, name: &str, rng: &mut StdRng) -> KeyInput {
        let known = self
            .materials
            .lock()
            .expect("materials")
            .get(name)
            .cloned()
            .unwrap_or_default();
        match rng.random_range(0..100) {
            0..25 => {
                let bytes: [u8; 32] = rng.random();
                let id = hex_prefix(&bytes);
                self.materials
                    .lock()
                    .expect("materials")
                    .entry(name.to_owned())
                    .or_default()
                    .push((id.clone(), bytes.to_vec()));
                KeyInput::Import(id)
            }
            25..41 => KeyInput::Generate,
            41..75 if !known.is_empty() => {
                KeyInput::Decrypt(known[rng.random_range(0..known.len())].0.clone())
            }
            41..75 => KeyInput::Generate,
            75..81 => KeyInput::Rotate,
            // Version 1 (the imported material) refused, or allowed again.
            81..85 => KeyInput::MinVersion(if rng.random_bool(0.5) { 2 } else { 0 }),
            85..87 => KeyInput::Retire(2),
            _ => KeyInput::Delete,
        }
    }

    /// Sends one operation to `client` (of node `node`) and records it; whether it was `ok`.
    pub async fn run(
        &self,
        process: u64,
        node: usize,
        client: &Client,
        name: &str,
        input: KeyInput,
    ) -> bool {
        let (method, path, body) = self.request(name, &input);
        let invoked_ns = self.recorder.clock().now_ns();
        let op = self.recorder.invoke(process, name, input.clone());
        op.sent_to(node);
        let answer = client.request(method, &path, &[], body).await;
        self.complete(op, name, &input, invoked_ns, answer)
    }

    /// The HTTP request of `input` on `name`.
    fn request(&self, name: &str, input: &KeyInput) -> (Method, String, String) {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match input {
            KeyInput::Import(id) => {
                let bytes = self.material(name, id);
                let body = serde_json::json!({ "key": b64(&bytes), "cipher": "AES256" });
                (
                    Method::PUT,
                    format!("/v1/key/import/{name}"),
                    body.to_string(),
                )
            }
            KeyInput::Generate => (Method::PUT, format!("/v1/key/generate/{name}"), "{}".into()),
            KeyInput::Decrypt(id) => {
                let key = SecretKey::import(Cipher::Aes256, &self.material(name, id))
                    .expect("32 bytes of AES-256 material");
                let body = serde_json::json!({ "ciphertext": b64(&key.encrypt(PLAINTEXT, b"")) });
                (
                    Method::PUT,
                    format!("/v1/key/decrypt/{name}"),
                    body.to_string(),
                )
            }
            KeyInput::Describe => (
                Method::GET,
                format!("/v1/key/describe/{name}"),
                String::new(),
            ),
            KeyInput::Delete => (
                Method::DELETE,
                format!("/v1/key/delete/{name}"),
                String::new(),
            ),
            KeyInput::Rotate => (Method::PUT, format!("/v1/key/rotate/{name}"), String::new()),
            KeyInput::MinVersion(n) => (
                Method::PUT,
                format!("/v1/key/min-version/{name}"),
                serde_json::json!({ "decrypt": n }).to_string(),
            ),
            KeyInput::Retire(below) => (
                Method::PUT,
                format!("/v1/key/retire/{name}"),
                serde_json::json!({ "below": below }).to_string(),
            ),
        }
    }

    fn material(&self, name: &str, id: &str) -> Vec<u8> {
        self.materials.lock().expect("materials")[name]
            .iter()
            .find(|(m, _)| m == id)
            .map(|(_, b)| b.clone())
            .expect("material the harness made")
    }

    /// Records how `op` ended, from the node's answer.
    fn complete(
        &self,
        op: PendingOp<KeyInput, KeyOutput>,
        name: &str,
        input: &KeyInput,
        invoked_ns: u64,
        answer: Result<kes_cluster::Response, kes_cluster::Error>,
    ) -> bool {
        let writes = !KeyRegister.is_read_only(input);
        let r = match answer {
            Ok(r) => r,
            // Never sent: no connection, or no TLS session.
            Err(e @ (kes_cluster::Error::Connect { .. } | kes_cluster::Error::Tls { .. })) => {
                op.fail(e.to_string());
                return false;
            }
            // A read has no effect: it may simply be left out. A write may have been applied.
            Err(e) if writes => {
                op.info(e.to_string());
                return false;
            }
            Err(e) => {
                op.fail(e.to_string());
                return false;
            }
        };
        let text = r.text();
        let output = match (r.status, input) {
            (200, KeyInput::Import(_)) => KeyOutput::Created,
            (200, KeyInput::Generate) => {
                let v: serde_json::Value = r.json().unwrap_or_default();
                self.deks.lock().expect("deks").push(Dek {
                    name: name.to_owned(),
                    invoked_ns,
                    plaintext: v["plaintext"].as_str().unwrap_or_default().to_owned(),
                    ciphertext: v["ciphertext"].as_str().unwrap_or_default().to_owned(),
                    version: v["version"].as_u64().unwrap_or(1) as u32,
                });
                KeyOutput::Done
            }
            (200, KeyInput::Decrypt(_)) => {
                let v: serde_json::Value = r.json().unwrap_or_default();
                let expected = base64::engine::general_purpose::STANDARD.encode(PLAINTEXT);
                if v["plaintext"] != expected.as_str() {
                    // The key opened the ciphertext and gave something else: no register
                    // answers that, so the checker sees a wrong key.
                    KeyOutput::WrongKey
                } else {
                    KeyOutput::Done
                }
            }
            (200, KeyInput::Rotate) => {
                let v: serde_json::Value = r.json().unwrap_or_default();
                KeyOutput::Rotated(v["version"].as_u64().unwrap_or_default() as u32)
            }
            (200, KeyInput::Retire(_)) => {
                let v: serde_json::Value = r.json().unwrap_or_default();
                KeyOutput::Retired(v["versions"][0].as_u64().unwrap_or_default() as u32)
            }
            (200, _) => KeyOutput::Done,
            (404, _) if text.contains("key does not exist") => KeyOutput::NotFound,
            (400, KeyInput::Import(_)) if text.contains("key already exists") => {
                KeyOutput::AlreadyExists
            }
            (400, KeyInput::Decrypt(_)) if text.contains("not authentic") => KeyOutput::WrongKey,
            (400, KeyInput::Rotate | KeyInput::MinVersion(_) | KeyInput::Retire(_)) => {
                KeyOutput::Refused
            }
            // Another version change kept landing first: nothing was written.
            (409, KeyInput::Rotate | KeyInput::MinVersion(_) | KeyInput::Retire(_)) => {
                op.fail(format!("409 {}", text.trim()));
                return false;
            }
            // 503: not applied (no leader, the leader unreachable, sealed).
            (503, _) => {
                op.fail(format!("503 {}", text.trim()));
                return false;
            }
            (status, _) if writes => {
                op.info(format!("{status} {}", text.trim()));
                return false;
            }
            (status, _) => {
                op.fail(format!("{status} {}", text.trim()));
                return false;
            }
        };
        op.ok(output);
        true
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}
