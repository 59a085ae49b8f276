//! The snapshot file `POST /v1/cluster/restore` takes: the header, the backup body, the state
//! dump inside it and every record of the dump, as the restore handler reads them before it
//! asks the seal to open anything.
//!
//! Invariants: no panic and no stack overflow on a tokio worker's stack; a parsed file
//! re-encodes to a file that parses the same; no fuzzed record verifies or opens under the fixed
//! cluster key.
#![no_main]

use kes_node::cluster::Backup;
use kes_node::state::State;
use kes_node_fuzz::{check_dump_records, on_worker_stack};
use libfuzzer_sys::fuzz_target;

const MAGIC: &[u8] = b"KES-CLUSTER-SNAPSHOT v1\n";

fuzz_target!(|data: &[u8]| {
    on_worker_stack(|| {
        let Ok(backup) = Backup::parse(data) else {
            return;
        };
        let file = [MAGIC, &kes_node::raft::encode(&backup)].concat();
        let again = Backup::parse(&file).expect("a re-encoded file parses");
        assert_eq!(
            (&again.cluster_id, again.index, &again.dump),
            (&backup.cluster_id, backup.index, &backup.dump)
        );
        if let Ok(trees) = State::parse_dump(&backup.dump) {
            check_dump_records(&trees);
        }
    });
});
