//! The binary seed inputs of the fuzz targets whose formats are MessagePack or protobuf,
//! made from real values so a fuzz run starts from inputs that decode. Regenerate them
//! after a format change with
//! `KES_WRITE_FUZZ_SEEDS=1 cargo test -p kes-node --lib fuzzing::seeds -- --ignored`.

use crate::auth::Policy;
use crate::cluster::{AdminOp, Backup};
use crate::raft::{ApplyResponse, NodeId, NodeInfo, TypeConfig, encode};
use crate::seal::WrappedCopy;
use crate::state::{Command, Op, Outcome, Signature, State};
use kes_cluster_proto as pb;
use openraft::raft::{InstallSnapshotRequest, VoteRequest};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(2, 1), index)
}

fn sig() -> Signature {
    Signature {
        version: 1,
        mac: vec![9; 32],
    }
}

fn copy() -> WrappedCopy {
    WrappedCopy {
        seal_id: "file:/etc/kes/root.key".into(),
        bytes: vec![3; 60],
    }
}

fn ops() -> Vec<(&'static str, Op)> {
    let policy = Policy {
        allow: vec!["/v1/key/*/app-*".into()],
        deny: vec!["/v1/key/delete/*".into()],
    };
    let bytes = |b: &[u8]| serde_bytes::ByteBuf::from(b.to_vec());
    vec![
        (
            "init",
            Op::Init {
                cluster_id: "c1".into(),
                admin: "admin-identity".into(),
                wrapped: vec![copy()],
                default_enclave_sig: sig(),
            },
        ),
        (
            "config-policies",
            Op::SetConfigPolicies {
                policies: vec![("app".into(), policy.clone(), vec!["app-id".into()])],
                sigs: vec![("policies".into(), bytes(b"default\0app"), sig())],
            },
        ),
        (
            "create-key",
            Op::CreateKey {
                rotate_every: 0,
                name: "app-key".into(),
                creation_id: u128::MAX / 3,
                // Record format 1, storage-key version 1, then nonce and ciphertext.
                sealed: [&[1u8, 0, 0, 0, 1][..], &[7; 75]].concat(),
            },
        ),
        ("delete-key", Op::DeleteKey { name: "k".into() }),
        (
            "write-policy",
            Op::WritePolicy {
                name: "app".into(),
                policy,
                sig: sig(),
            },
        ),
        (
            "assign-policy",
            Op::AssignPolicy {
                policy: "app".into(),
                identity: "app-id".into(),
                sig: sig(),
            },
        ),
        ("delete-policy", Op::DeletePolicy { name: "app".into() }),
        (
            "delete-identity",
            Op::DeleteIdentity {
                identity: "app-id".into(),
            },
        ),
        (
            "create-enclave",
            Op::CreateEnclave {
                name: "tenant".into(),
                admin: "tenant-admin-id".into(),
                sig: sig(),
            },
        ),
        (
            "tombstone",
            Op::Tombstone {
                node_id: 3,
                spki: "ab".repeat(32),
            },
        ),
        (
            "restore-chunk",
            Op::RestoreChunk {
                tree: "keys".into(),
                items: vec![(bytes(b"default\0k"), bytes(&[5; 40]))],
            },
        ),
        (
            "restore-finish",
            Op::RestoreFinish {
                wrapped: vec![copy()],
                storage_version: 2,
                metadata: Some(bytes(&[7; 32])),
            },
        ),
        (
            "rekey-begin",
            Op::RekeyBegin {
                wrapped: vec![copy()],
                storage_version: 2,
            },
        ),
        (
            "reseal",
            Op::Reseal {
                items: vec![("default".into(), "k".into(), 7, bytes(&[6; 40]))],
            },
        ),
        (
            "remac",
            Op::Remac {
                tree: "policies".into(),
                items: vec![(bytes(b"default\0app"), bytes(b"old"), bytes(b"new"))],
            },
        ),
        ("rekey-finish", Op::RekeyFinish),
        (
            "sign-membership",
            Op::SignMembership {
                record: vec![0x82, 0xa5],
            },
        ),
        ("seal-add", Op::SealAdd { copy: copy() }),
        (
            "seal-remove",
            Op::SealRemove {
                seal_id: "file:/old".into(),
            },
        ),
        (
            "seal-use",
            Op::SealUse {
                node_id: 1,
                seal_id: "file:/etc/kes/root.key".into(),
            },
        ),
        (
            "delete-enclave",
            Op::DeleteEnclave {
                name: "tenant".into(),
                force: true,
            },
        ),
        (
            "batch",
            Op::Batch {
                commands: vec![
                    command(Op::DeleteKey { name: "k".into() }),
                    command(Op::DeleteIdentity {
                        identity: "ab".repeat(32),
                    }),
                ],
            },
        ),
    ]
}

fn command(op: Op) -> Command {
    Command {
        request_id: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        identity: "admin-identity".into(),
        path: "/v1/key/create/app-key".into(),
        enclave: "default".into(),
        time: 1_700_000_000_000_000_000,
        op,
        restores_seen: None,
    }
}

fn membership() -> Membership<NodeId, NodeInfo> {
    let nodes: BTreeMap<NodeId, NodeInfo> = (1..=3)
        .map(|id| {
            let info = NodeInfo {
                http: format!("https://node{id}:7373"),
                grpc: format!("node{id}:7374"),
                spki: format!("{id:064x}"),
                next_spki: String::new(),
            };
            (id, info)
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

/// A dump with a record in every tree a restore or an install reads.
fn dump(dir: &Path) -> Vec<u8> {
    let state = State::open(dir).expect("open state");
    for (index, (_, op)) in ops().into_iter().enumerate().take(9) {
        state
            .apply(index as u64 + 1, &command(op), &[])
            .expect("apply");
    }
    state.dump().expect("dump")
}

/// A journal record as a run of two creates and a delete writes it: data, deduplication and
/// the applied index, in the layout of `state/apply/journal.rs` (log index, then (tree, key,
/// value or none) per change).
fn journal_run() -> Vec<u8> {
    let b = |v: &[u8]| Some(serde_bytes::ByteBuf::from(v.to_vec()));
    let rows = vec![
        ("keys", b(b"default\0app-key-1"), b(&[1; 48])),
        ("keys", b(b"default\0app-key-2"), b(&[2; 48])),
        ("keys", b(b"default\0old-key"), None),
        ("requests", b(&[7; 16]), b(&[0x91, 0xc0])),
        ("meta", b(b"applied"), b(&12u64.to_be_bytes())),
    ];
    crate::state::encode_record(&(12u64, rows))
}

/// A seed: target, name, bytes.
type Seed = (&'static str, String, Vec<u8>);

fn seed(target: &'static str, name: &str, selector: Option<u8>, body: &[u8]) -> Seed {
    let bytes = selector.map_or_else(|| body.to_vec(), |s| [&[s][..], body].concat());
    (target, name.to_owned(), bytes)
}

/// A `grpc_message` seed: the target's selector for the message type, then the protobuf.
fn grpc(selector: u8, name: &str, message: impl Message) -> Seed {
    seed(
        "grpc_message",
        name,
        Some(selector),
        &message.encode_to_vec(),
    )
}

fn command_seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    for (name, op) in ops() {
        let cmd = command(op);
        let entry = Entry::<TypeConfig> {
            log_id: log_id(7),
            payload: EntryPayload::Normal(cmd.clone()),
        };
        let forward = pb::ForwardRequest {
            cluster_id: "c1".into(),
            command: encode(&cmd),
        };
        out.push(seed(
            "raft_command",
            &format!("command-{name}"),
            Some(0),
            &encode(&cmd),
        ));
        out.push(seed(
            "raft_command",
            &format!("entry-{name}"),
            Some(1),
            &encode(&entry),
        ));
        out.push(grpc(2, &format!("forward-{name}"), forward));
    }
    out
}

fn all_seeds(dir: &Path) -> Vec<Seed> {
    let blank = Entry::<TypeConfig> {
        log_id: log_id(8),
        payload: EntryPayload::Blank,
    };
    let member_entry = Entry::<TypeConfig> {
        log_id: log_id(9),
        payload: EntryPayload::Membership(membership()),
    };
    let vote = Vote::new_committed(2, 1);
    let stored = StoredMembership::new(Some(log_id(9)), membership());
    let response = ApplyResponse {
        outcome: Outcome::ReadOnly("app".into()),
        batch: vec![Outcome::Done, Outcome::KeyExists],
    };
    let admin = AdminOp::Remove { node_id: 3 };
    let dump = dump(dir);
    let meta = SnapshotMeta::<NodeId, NodeInfo> {
        last_log_id: Some(log_id(9)),
        last_membership: stored.clone(),
        snapshot_id: "2-1-9-1".into(),
    };
    let chunk = InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: meta.clone(),
        offset: 0,
        data: dump.clone(),
        done: true,
    };
    let on_disk = (meta, serde_bytes::ByteBuf::from(dump.clone()));
    let backup = Backup {
        cluster_id: "c1".into(),
        index: 9,
        dump: serde_bytes::ByteBuf::from(dump.clone()),
    };
    let backup_file = [&b"KES-CLUSTER-SNAPSHOT v1\n"[..], &encode(&backup)].concat();
    let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(log_id(6)),
        entries: vec![member_entry.clone(), blank.clone()],
        leader_commit: Some(log_id(6)),
    };
    let vote_request = VoteRequest::<NodeId> {
        vote,
        last_log_id: Some(log_id(9)),
    };
    type VoteResult =
        Result<openraft::raft::VoteResponse<NodeId>, openraft::error::RaftError<NodeId>>;
    let vote_reply: VoteResult = Ok(openraft::raft::VoteResponse::new(
        vote,
        Some(log_id(9)),
        true,
    ));
    let raft = |payload| pb::RaftRequest {
        cluster_id: "c1".into(),
        payload,
    };
    let mut out = command_seeds();
    out.extend([
        seed("raft_command", "entry-blank", Some(1), &encode(&blank)),
        seed(
            "raft_command",
            "entry-membership",
            Some(1),
            &encode(&member_entry),
        ),
        seed("raft_command", "vote", Some(2), &encode(&vote)),
        seed("raft_command", "log-id", Some(3), &encode(&Some(log_id(9)))),
        seed("raft_command", "membership", Some(4), &encode(&stored)),
        seed(
            "raft_command",
            "apply-response",
            Some(5),
            &encode(&response),
        ),
        seed("raft_command", "admin-op", Some(6), &encode(&admin)),
        seed(
            "snapshot_chunk",
            "install-snapshot",
            Some(0),
            &encode(&chunk),
        ),
        seed(
            "snapshot_chunk",
            "snapshot-file",
            Some(1),
            &encode(&on_disk),
        ),
        seed("snapshot_chunk", "dump", Some(2), &dump),
        seed("backup_file", "backup", None, &backup_file),
        seed("journal_record", "run", None, &journal_run()),
        grpc(0, "append-entries", raft(encode(&append))),
        grpc(0, "vote", raft(encode(&vote_request))),
        grpc(0, "install-snapshot", raft(encode(&chunk))),
        grpc(
            1,
            "vote-reply",
            pb::RaftReply {
                payload: encode(&vote_reply),
            },
        ),
        grpc(
            3,
            "forward-reply",
            pb::ForwardReply {
                index: 9,
                outcome: encode(&Outcome::Done),
                ..Default::default()
            },
        ),
        grpc(
            5,
            "read-index-reply",
            pb::ReadIndexReply {
                commit_index: 9,
                not_leader: String::new(),
                leader_id: 1,
                lease_remaining_ms: 500,
                read_lease: true,
            },
        ),
        grpc(
            14,
            "pre-vote",
            pb::PreVoteRequest {
                cluster_id: "c1".into(),
                term: 4,
                has_log: true,
                last_log_term: 3,
                last_log_node: 1,
                last_log_index: 9,
            },
        ),
        grpc(
            6,
            "join",
            pb::JoinRequest {
                cluster_id: "c1".into(),
                node_id: 4,
                http_addr: "https://node4:7373".into(),
                grpc_addr: "node4:7374".into(),
                spki: "cd".repeat(32),
                join_nonce: vec![5; 32],
            },
        ),
        grpc(
            8,
            "challenge",
            pb::ChallengeRequest {
                cluster_id: "c1".into(),
                wrapped_keys: encode(&vec![copy()]),
                nonce: vec![4; 32],
                member_spkis: vec!["ab".repeat(32)],
                join_nonce: vec![5; 32],
            },
        ),
        grpc(
            10,
            "admin",
            pb::AdminRequest {
                cluster_id: "c1".into(),
                op: encode(&admin),
            },
        ),
        grpc(
            11,
            "admin-reply",
            pb::AdminReply {
                result: encode(&"ab".repeat(32)),
                ..Default::default()
            },
        ),
        grpc(
            13,
            "status-reply",
            pb::StatusReply {
                json: br#"{"node_id":1,"role":"leader","peers":[]}"#.to_vec(),
            },
        ),
    ]);
    out
}

/// Writes every seed to `fuzz/corpus/<target>/seed-<name>` when `KES_WRITE_FUZZ_SEEDS` is set;
/// without it, only checks that the seeds can still be made from today's types.
#[test]
#[ignore = "writes the fuzz seed corpus; run by hand after a format change"]
fn write_fuzz_seeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = std::env::var_os("KES_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in all_seeds(dir.path()) {
        if write {
            let target_dir = corpus.join(target);
            std::fs::create_dir_all(&target_dir).expect("corpus dir");
            std::fs::write(target_dir.join(format!("seed-{name}")), bytes).expect("write seed");
        }
    }
}
