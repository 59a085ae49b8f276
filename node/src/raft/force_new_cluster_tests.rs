//! The parts of recovery that need no cluster; `tests/jepsen-lite/tests/force_new_cluster.rs`
//! recovers a real one.

use super::*;

fn create(name: &str) -> Command {
    crate::cluster::system_command(
        "admin-identity",
        &format!("/v1/key/create/{name}"),
        Op::CreateKey {
            rotate_every: 0,
            name: name.into(),
            creation_id: 7,
            sealed: b"SEALED-RECORD-BYTES".to_vec(),
        },
    )
}

#[test]
fn an_entry_is_described_by_what_it_does_never_by_what_it_carries() {
    let entry = Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(4, 1), 12),
        payload: EntryPayload::Normal(crate::cluster::system_command(
            "admin-identity",
            "/v1/batch",
            Op::Batch {
                commands: vec![create("a"), create("b")],
            },
        )),
    };
    let line = describe(&entry);
    assert!(line.starts_with("12 (term 4): 2 writes"), "{line}");
    assert!(
        line.contains("/v1/key/create/a by admin-identity"),
        "{line}"
    );
    assert!(line.contains("/v1/key/create/b"), "{line}");
    assert!(!line.contains("SEALED"), "{line}");
}

#[tokio::test]
async fn a_data_dir_that_never_ran_a_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = plan(dir.path()).await.unwrap_err();
    assert!(err.contains("holds no node id"), "{err}");
    std::fs::write(dir.path().join("node_id"), "42\n").unwrap();
    let err = plan(dir.path()).await.unwrap_err();
    assert!(err.contains("holds no state"), "{err}");
}

#[test]
fn the_membership_is_the_logs_last_past_the_applied_state_or_else_the_applied_one() {
    let of = |ids: &[u64]| {
        Membership::<NodeId, NodeInfo>::new(
            vec![ids.iter().copied().collect()],
            ids.iter()
                .map(|&id| (id, NodeInfo::default()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let at = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let entries = vec![
        Entry::<TypeConfig> {
            log_id: at(5),
            payload: EntryPayload::Membership(of(&[1, 2])),
        },
        Entry::<TypeConfig> {
            log_id: at(6),
            payload: EntryPayload::Blank,
        },
    ];
    let applied = of(&[1, 2, 3]);
    let voters = |m: Membership<NodeId, NodeInfo>| m.voter_ids().collect::<Vec<_>>();
    assert_eq!(voters(membership(Some(at(4)), &applied, &entries)), [1, 2]);
    // A snapshot installed past the log: its membership is newer than any in the log.
    assert_eq!(
        voters(membership(Some(at(9)), &applied, &entries)),
        [1, 2, 3]
    );
}
