//! Snapshots as a peer sends them: an `InstallSnapshot` chunk (as the gRPC service decodes its
//! payload), the snapshot file the state machine keeps on disk, and the state dump inside both,
//! down to every record the dump holds. The first byte picks the form.
//!
//! Invariants: no panic and no stack overflow on a tokio worker's stack; every message and
//! record re-encodes to a fixed point; no fuzzed policy, identity, enclave or membership record
//! passes the MAC check, and no fuzzed key record opens, under the fixed cluster key.
#![no_main]

use kes_node::raft::{NodeId, NodeInfo, TypeConfig};
use kes_node::state::State;
use kes_node_fuzz::{check_dump_records, decode_fixed_point, on_worker_stack};
use libfuzzer_sys::fuzz_target;
use openraft::SnapshotMeta;
use openraft::raft::InstallSnapshotRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    on_worker_stack(|| match selector % 3 {
        0 => {
            if let Some(chunk) = decode_fixed_point::<InstallSnapshotRequest<TypeConfig>>(body) {
                check_dump(&chunk.data);
            }
        }
        1 => {
            type OnDisk = (SnapshotMeta<NodeId, NodeInfo>, serde_bytes::ByteBuf);
            if let Some((_, dump)) = decode_fixed_point::<OnDisk>(body) {
                check_dump(&dump);
            }
        }
        _ => check_dump(body),
    });
});

fn check_dump(blob: &[u8]) {
    if let Ok(trees) = State::parse_dump(blob) {
        check_dump_records(&trees);
    }
}
