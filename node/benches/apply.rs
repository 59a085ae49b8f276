//! What the state machine's apply costs a replicated create as the store grows: every node
//! applies every create, so this is paid three times on a 3-node cluster, and it is the part of
//! a create's cost that grows with the number of keys (docs/bench/analysis.md, "Why creates
//! slow down as the cluster grows").
//!
//! In-process, on a real sled store in a temporary directory: entries of `BENCH_APPLY_BATCH`
//! (16) creates, as group commit makes them, under random 20-character names, with time-ordered
//! request ids as the API makes them. The sealing is done before the clock starts. Prints the
//! mean wall time of one create's apply over each slice of `BENCH_APPLY_SLICE` (50,000) keys,
//! up to `BENCH_APPLY_KEYS` (500,000) keys. Compare two builds by running both in turns.
//!
//! `cargo bench -p kes-node --bench apply`

use kes_node::api::new_request_id;
use kes_node::crypto::{Cipher, KeyVersions, SecretKey, StoredKey};
use kes_node::seal::{RecordAad, Unsealed, seal_record};
use kes_node::state::{Command, DEFAULT_ENCLAVE, Op, Outcome, State};
use rand::Rng;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const ADMIN: &str = "admin";

/// The node's allocator (`src/main.rs`): sled copies a page on every insert, so the allocator
/// is a large part of what an apply costs.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} is not a number"))
        })
        .unwrap_or(default)
}

fn command(op: Op) -> Command {
    Command {
        request_id: new_request_id(),
        identity: ADMIN.into(),
        path: "/v1/key/create/".into(),
        enclave: DEFAULT_ENCLAVE.into(),
        time: 1,
        op,
        restores_seen: None,
    }
}

/// A create of a new key under a random name, sealed as the API seals it.
fn create(keys: &Unsealed, rng: &mut impl Rng) -> Command {
    let name: String = (0..20)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect();
    let creation_id = rng.random();
    let stored = StoredKey {
        key: SecretKey::generate(Cipher::Aes256),
        created_at: None,
        created_by: ADMIN.into(),
    };
    let aad = RecordAad {
        enclave: DEFAULT_ENCLAVE,
        name: &name,
        creation_id,
    };
    let sealed = seal_record(keys, aad, &KeyVersions::first(stored).encode());
    command(Op::CreateKey {
        name,
        creation_id,
        sealed,
        rotate_every: 0,
    })
}

fn main() {
    let total = setting("BENCH_APPLY_KEYS", 500_000);
    let slice = setting("BENCH_APPLY_SLICE", 50_000).max(1);
    let batch = setting("BENCH_APPLY_BATCH", 16).max(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = State::open(dir.path()).expect("opens the store");
    let keys = Unsealed {
        storage_version: 1,
        storage_key: Zeroizing::new([7; 32]),
        mac_key: Zeroizing::new([8; 32]),
        join_key: Zeroizing::new([9; 32]),
        previous: None,
    };
    let init = command(Op::Init {
        cluster_id: "bench".into(),
        admin: ADMIN.into(),
        wrapped: vec![],
        default_enclave_sig: Default::default(),
    });
    assert_eq!(state.apply(1, &init, &[]).expect("applies"), Outcome::Done);
    let mut index = 1;
    let mut rng = rand::rng();
    let mut made = 0;
    println!("keys before | µs per create's apply (mean over the slice)");
    while made < total {
        let mut spent = Duration::ZERO;
        let mut in_slice = 0;
        while in_slice < slice && made < total {
            let n = batch.min(slice - in_slice).min(total - made);
            let entry: Vec<Command> = (0..n).map(|_| create(&keys, &mut rng)).collect();
            index += 1;
            let t0 = Instant::now();
            let outcomes = state.apply_batch(index, &entry, &[]).expect("applies");
            spent += t0.elapsed();
            assert!(outcomes.iter().all(|o| *o == Outcome::Done), "{outcomes:?}");
            in_slice += n;
            made += n;
        }
        let per = spent.as_secs_f64() * 1e6 / in_slice as f64;
        println!("{:>11} | {per:.1}", made - in_slice);
    }
}
