//! The inter-node gRPC messages (`proto/cluster.proto`), decoded with `prost::Message::decode`
//! as tonic does, then what the service (or the client, for replies) decodes from them: the
//! Raft payloads, a pre-vote, a forwarded `Command`, the wrapped key copies of a join challenge, an admin
//! op and its result, an outcome, a peer's status JSON. The first byte picks the message.
//!
//! Invariants: no panic and no stack overflow on a tokio worker's stack; every message
//! re-encodes to an equal message; every inner payload re-encodes to a fixed point.
#![no_main]

use kes_cluster_proto::*;
use kes_node::cluster::AdminOp;
use kes_node::raft::{NodeId, TypeConfig};
use kes_node::seal::WrappedCopy;
use kes_node::state::{Command, Outcome};
use kes_node_fuzz::{decode_fixed_point, on_worker_stack};
use libfuzzer_sys::fuzz_target;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    on_worker_stack(|| match selector % 16 {
        0 => {
            if let Some(m) = decode::<RaftRequest>(body) {
                decode_fixed_point::<AppendEntriesRequest<TypeConfig>>(&m.payload);
                decode_fixed_point::<VoteRequest<NodeId>>(&m.payload);
                decode_fixed_point::<InstallSnapshotRequest<TypeConfig>>(&m.payload);
            }
        }
        1 => {
            if let Some(m) = decode::<RaftReply>(body) {
                decode_fixed_point::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(
                    &m.payload,
                );
                decode_fixed_point::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(&m.payload);
                decode_fixed_point::<
                    Result<
                        InstallSnapshotResponse<NodeId>,
                        RaftError<NodeId, InstallSnapshotError>,
                    >,
                >(&m.payload);
            }
        }
        2 => {
            if let Some(m) = decode::<ForwardRequest>(body) {
                decode_fixed_point::<Command>(&m.command);
            }
        }
        3 => {
            if let Some(m) = decode::<ForwardReply>(body) {
                decode_fixed_point::<Outcome>(&m.outcome);
            }
        }
        4 => {
            decode::<ReadIndexRequest>(body);
        }
        5 => {
            decode::<ReadIndexReply>(body);
        }
        6 => {
            decode::<JoinRequest>(body);
        }
        7 => {
            decode::<JoinReply>(body);
        }
        8 => {
            if let Some(m) = decode::<ChallengeRequest>(body) {
                decode_fixed_point::<Vec<WrappedCopy>>(&m.wrapped_keys);
            }
        }
        9 => {
            decode::<ChallengeReply>(body);
        }
        10 => {
            if let Some(m) = decode::<AdminRequest>(body) {
                decode_fixed_point::<AdminOp>(&m.op);
            }
        }
        11 => {
            decode::<AdminReply>(body);
        }
        12 => {
            decode::<StatusRequest>(body);
        }
        13 => {
            if let Some(m) = decode::<StatusReply>(body) {
                let _ = serde_json::from_slice::<serde_json::Value>(&m.json);
            }
        }
        14 => {
            decode::<PreVoteRequest>(body);
        }
        _ => {
            decode::<PreVoteReply>(body);
        }
    });
});

/// Decodes as tonic's prost codec does; a message that decodes re-encodes to an equal one.
fn decode<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let message = M::decode(bytes).ok()?;
    let again =
        M::decode(message.encode_to_vec().as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again, message);
    Some(message)
}
