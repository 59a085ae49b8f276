//! Raft log entries and state commands as the node decodes them (`kes_node::raft::decode`):
//! a `Command` forwarded by a peer or replayed from the log, a log `Entry`, the vote, log ids
//! and the membership mark the state machine keeps, outcomes and admin ops. The first byte
//! picks the type, the rest is the MessagePack.
//!
//! Invariants: no panic and no stack overflow on a tokio worker's stack; whatever decodes
//! re-encodes to a fixed point; a command that fits the entry limit still fits after the
//! re-encoding a replica does.
#![no_main]

use kes_node::cluster::AdminOp;
use kes_node::raft::{ApplyResponse, LogId, MAX_ENTRY_BYTES, NodeId, NodeInfo, TypeConfig};
use kes_node::state::{Command, Outcome};
use kes_node_fuzz::{decode_fixed_point, on_worker_stack};
use libfuzzer_sys::fuzz_target;
use openraft::{Entry, EntryPayload, StoredMembership, Vote};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    on_worker_stack(|| match selector % 7 {
        0 => check_command(body),
        1 => {
            if let Some(Entry {
                payload: EntryPayload::Normal(cmd),
                ..
            }) = decode_fixed_point::<Entry<TypeConfig>>(body)
            {
                check_command(&kes_node::raft::encode(&cmd));
            }
        }
        2 => {
            decode_fixed_point::<Vote<NodeId>>(body);
        }
        3 => {
            decode_fixed_point::<Option<LogId>>(body);
        }
        4 => {
            decode_fixed_point::<StoredMembership<NodeId, NodeInfo>>(body);
        }
        5 => {
            decode_fixed_point::<ApplyResponse>(body);
            decode_fixed_point::<Outcome>(body);
        }
        _ => {
            decode_fixed_point::<AdminOp>(body);
        }
    });
});

/// As `Forward` takes a command: decode, then refuse it if its encoding is over the limit.
fn check_command(bytes: &[u8]) {
    let Some(cmd) = decode_fixed_point::<Command>(bytes) else {
        return;
    };
    let encoded = kes_node::raft::encode(&cmd);
    let again: Command = kes_node::raft::decode(&encoded).expect("re-decodes");
    assert_eq!(again, cmd);
    if encoded.len() <= MAX_ENTRY_BYTES {
        assert!(kes_node::raft::encode(&again).len() <= MAX_ENTRY_BYTES);
    }
}
