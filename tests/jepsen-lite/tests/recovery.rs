//! Recovery paths: snapshot save and restore into a fresh cluster, and the runbook for a node
//! whose data directory is lost or damaged.

use jepsen_lite::{Cluster, serial};
use kes_cluster::Method;
use std::time::Duration;

#[tokio::test]
async fn snapshot_save_after_a_rekey_then_restore_into_a_fresh_cluster() {
    let _g = serial().await;
    let a = Cluster::start(3, "").await;
    let mut deks = Vec::new();
    for i in 0..5 {
        let name = format!("saved-{i}");
        let r = a
            .call(1, Method::PUT, &format!("/v1/key/create/{name}"), "")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let dek = a.generate(0, &name).await;
        deks.push((name, dek));
    }
    // A rotated key: the rekey re-seals, and the snapshot and restore carry, both versions.
    let r = a
        .call(2, Method::PUT, "/v1/key/rotate/saved-0", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let dek = a.generate(1, "saved-0").await;
    assert_eq!(dek["version"], 2);
    deks.push(("saved-0".to_owned(), dek));
    let r = a
        .call(
            0,
            Method::POST,
            "/v1/policy/write/app",
            r#"{"allow":["/v1/key/*/*"]}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // After a rekey the snapshot's records are sealed under a second cluster key version,
    // which the new cluster has never had: the restore used to fail on re-signing its
    // membership with it (503 "the cluster key was rekeyed while this request was in flight").
    let r = a
        .call(0, Method::POST, "/v1/cluster/seal/rekey", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let snap = a
        .call(2, Method::GET, "/v1/cluster/snapshot", "")
        .await
        .unwrap();
    assert_eq!(snap.status, 200, "{}", snap.text());
    let file = snap.body.to_vec();
    // Sealed: the plaintext data keys handed out are nowhere in the file.
    for (_, dek) in &deks {
        let pt = dek["plaintext"].as_str().unwrap();
        assert!(!file.windows(pt.len()).any(|w| w == pt.as_bytes()));
    }
    let root = std::fs::read(a.dir.path().join("root.key")).unwrap();
    drop(a);

    // A cluster with a different root key refuses the snapshot before applying anything.
    let other = Cluster::start(1, "").await;
    let r = other
        .admin(0)
        .request(Method::POST, "/v1/cluster/restore", &[], file.clone())
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("root key"), "{}", r.text());
    drop(other);

    let b = Cluster::start_with_root(3, "", Some(&root)).await;
    let r = b
        .admin(1)
        .request(Method::POST, "/v1/cluster/restore", &[], file.clone())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A second restore is refused: the cluster holds keys now.
    let again = b
        .admin(0)
        .request(Method::POST, "/v1/cluster/restore", &[], file.clone())
        .await
        .unwrap();
    assert_eq!(again.status, 400);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        for (name, dek) in &deks {
            let body = serde_json::json!({ "ciphertext": dek["ciphertext"], "context": "Y3R4" })
                .to_string();
            let mut ok = false;
            for _ in 0..40 {
                let r = b
                    .call(i, Method::PUT, &format!("/v1/key/decrypt/{name}"), &body)
                    .await
                    .unwrap();
                if r.status == 200 {
                    let v: serde_json::Value = r.json().unwrap();
                    assert_eq!(v["plaintext"], dek["plaintext"]);
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            assert!(
                ok,
                "node{} cannot decrypt an old ciphertext of {name} after restore:\n{}",
                i + 1,
                b.logs()
            );
        }
    }
    let r = b
        .call(0, Method::GET, "/v1/policy/read/app", "")
        .await
        .unwrap();
    assert_eq!(
        r.status,
        200,
        "policies come back too: {}\n{}",
        r.text(),
        b.logs()
    );
}

#[tokio::test]
async fn runbook_a_node_with_a_damaged_data_dir_rejoins_as_a_new_learner() {
    let _g = serial().await;
    let mut c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    let victim = (leader + 1) % 3;
    for i in 0..10 {
        let r = c
            .call(
                leader,
                Method::PUT,
                &format!("/v1/key/create/before-{i}"),
                "",
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let old_id = c.status(victim).await.unwrap()["id"].as_u64().unwrap();
    c.nodes[victim].stop();
    // Damage the sled directory: the node must refuse to start and point at the runbook.
    let db = c.nodes[victim].dir.join("data/state/db");
    std::fs::write(&db, b"this is not a sled database").unwrap();
    let conf = c.nodes[victim].dir.join("data/state/conf");
    let _ = std::fs::write(&conf, b"garbage");
    c.nodes[victim].start();
    let code = c.nodes[victim].wait_exit(Duration::from_secs(20));
    let log = c.nodes[victim].log();
    assert_eq!(
        code,
        Some(1),
        "a damaged data dir must stop the node:\n{log}"
    );
    assert!(
        log.contains("kes-cluster remove"),
        "the error names the runbook:\n{log}"
    );

    // Runbook: remove the old node id, wipe, new node certificate, start: it joins as new.
    let r = c
        .call(
            leader,
            Method::DELETE,
            &format!("/v1/cluster/remove/{old_id}"),
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    std::fs::remove_dir_all(c.nodes[victim].dir.join("data")).unwrap();
    c.reissue_node_certificate(victim);
    // node1 bootstraps when its data dir is empty (here it would refuse: its peers form a
    // cluster); a wiped member joins instead, through the peers its config already lists.
    let yaml = c.nodes[victim].dir.join("node.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replace("  bootstrap: true\n", "")).unwrap();
    c.nodes[victim].start();
    assert!(
        c.wait_ready(victim, Duration::from_secs(60)).await,
        "{}",
        c.logs()
    );
    let new_id = c.status(victim).await.unwrap()["id"].as_u64().unwrap();
    assert_ne!(new_id, old_id, "the node rejoined under a new id");
    let r = c
        .call(victim, Method::GET, "/v1/key/describe/before-9", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let st: serde_json::Value = c
        .call(leader, Method::GET, "/v1/cluster/status", "")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3, "{st}");
}

/// The founding node's data dir is wiped while the other two still form the cluster. On restart
/// with `bootstrap: true` it used to found a second cluster with its own keys beside the first
/// (ready, and empty). Now it asks the peers its config lists, refuses, and says why; the cluster
/// goes on without it.
#[tokio::test]
async fn a_wiped_founding_node_refuses_to_found_a_second_cluster() {
    let _g = serial().await;
    let mut c = Cluster::start(3, "").await;
    let r = c
        .call(1, Method::PUT, "/v1/key/create/kept", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cluster_id = c.status(1).await.unwrap()["cluster_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!cluster_id.is_empty());
    c.nodes[0].stop();
    std::fs::remove_dir_all(c.nodes[0].dir.join("data")).unwrap();
    c.nodes[0].start();
    let code = c.nodes[0].wait_exit(Duration::from_secs(30));
    let log = c.nodes[0].log();
    assert_eq!(
        code,
        Some(1),
        "node1 must refuse to found a second cluster:\n{log}"
    );
    assert!(
        log.contains("refusing to found a new cluster") && log.contains(&cluster_id),
        "the error says why, naming the cluster:\n{log}"
    );
    let t0 = std::time::Instant::now();
    loop {
        let r = c.call(2, Method::GET, "/v1/key/describe/kept", "").await;
        if r.as_ref().is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the cluster went on without node1: {r:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What node1 asked: answered to a node certificate only, never to a client identity.
    let founded = "/v1/cluster/founded";
    let admin = c.call(2, Method::GET, founded, "").await.unwrap();
    assert_eq!(
        admin.status,
        403,
        "the admin is not a node: {}",
        admin.text()
    );
    let (tenant, _) = c.client_identity("founded-tenant", 2);
    let r = tenant
        .request(Method::GET, founded, &[], String::new())
        .await;
    assert!(
        matches!(&r, Err(kes_cluster::Error::Api { status: 403, .. }))
            || r.as_ref().is_ok_and(|r| r.status == 403),
        "a client identity is not a node: {r:?}"
    );
    let d = &c.nodes[0].dir;
    let node = kes_cluster::Client::new(&kes_cluster::ClientConfig {
        server: c.nodes[2].url.clone(),
        cert: Some(d.join("node.crt")),
        key: Some(d.join("node.key")),
        ca: Some(c.dir.path().join("ca.crt")),
        insecure: false,
    })
    .unwrap();
    let r = node
        .request(Method::GET, founded, &[], String::new())
        .await
        .unwrap();
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["in_cluster"], true, "{v}");
    assert_eq!(v["cluster_id"], cluster_id.as_str(), "{v}");
}

/// Attack: edit a policy inside a backup file (widen it), then restore it. The restore used to
/// re-sign whatever it adopted, laundering the edit. Now every policy, identity, enclave and
/// membership record must verify under the backup's own MAC key first, and one bad record
/// refuses the whole restore with nothing applied.
#[tokio::test]
async fn a_restore_refuses_a_backup_with_an_altered_record_and_applies_nothing() {
    use kes_node::state::{KeyEntry, PolicyEntry};
    let _g = serial().await;
    let a = Cluster::start(1, "").await;
    let narrow = r#"{"allow":["/v1/key/list/*"]}"#;
    for (method, path, body) in [
        (Method::PUT, "/v1/key/create/kept", ""),
        (Method::POST, "/v1/policy/write/app", narrow),
        (Method::PUT, "/v1/key/rotate/kept", ""),
        (Method::PUT, "/v1/key/min-version/kept", r#"{"decrypt":2}"#),
    ] {
        let r = a.call(0, method, path, body).await.unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let snap = a
        .call(0, Method::GET, "/v1/cluster/snapshot", "")
        .await
        .unwrap();
    assert_eq!(snap.status, 200, "{}", snap.text());
    let root = std::fs::read(a.dir.path().join("root.key")).unwrap();
    drop(a);

    // Widen `app` in the file, keeping its signature; lower `kept`'s minimum decrypt version
    // beside its sealed record, to decrypt with the version it refuses.
    let widened = altered(
        &snap.body,
        "policies",
        b"default\0app",
        |p: &mut PolicyEntry| {
            p.policy.allow = vec!["/v1/*/*/*".into()];
        },
    );
    let lowered = altered(&snap.body, "keys", b"default\0kept", |k: &mut KeyEntry| {
        assert_eq!(k.min_decrypt, 2);
        k.min_decrypt = 0;
    });

    let b = Cluster::start_with_root(1, "", Some(&root)).await;
    for (tampered, named) in [
        (widened, "policy record 'default/app'"),
        (
            lowered,
            "key record 'default/kept' fails its check: its sealed record's minimum decrypt version is 2, its entry says 0",
        ),
    ] {
        let r = b
            .admin(0)
            .request(Method::POST, "/v1/cluster/restore", &[], tampered)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains(named), "{}", r.text());
        for path in ["/v1/policy/read/app", "/v1/key/describe/kept"] {
            let r = b.call(0, Method::GET, path, "").await.unwrap();
            assert_eq!(r.status, 404, "nothing was restored: {}", r.text());
        }
    }
    // The untouched file still restores.
    let r = b
        .admin(0)
        .request(Method::POST, "/v1/cluster/restore", &[], snap.body.to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The snapshot file `snapshot` with record `key` of tree `tree` changed by `change`.
fn altered<T: serde::Serialize + serde::de::DeserializeOwned>(
    snapshot: &[u8],
    tree: &str,
    key: &[u8],
    change: impl FnOnce(&mut T),
) -> Vec<u8> {
    use kes_node::state::{State, encode_record};
    let mut backup = kes_node::cluster::Backup::parse(snapshot).unwrap();
    let mut trees = State::parse_dump(&backup.dump).unwrap();
    let (_, items) = trees.iter_mut().find(|(t, _)| t == tree).unwrap();
    let (_, v) = items.iter_mut().find(|(k, _)| k.as_slice() == key).unwrap();
    let mut record: T = kes_node::raft::decode(v).unwrap();
    change(&mut record);
    *v = serde_bytes::ByteBuf::from(encode_record(&record));
    backup.dump = serde_bytes::ByteBuf::from(State::encode_dump(&trees));
    backup.to_file()
}

/// A rotation, retirement or minimum version of a restored key, asked for between a restore's
/// last chunk and its finish, is refused: until the finish adopts the snapshot's cluster key,
/// no handler can open a record sealed under it, so none can re-seal one under this cluster's
/// old key. After the finish the key holds exactly the versions it was saved with, an old
/// ciphertext decrypts at once, it rotates as any key does, a key created the moment the
/// restore answered is sealed with the adopted key (`Node::current_keys`), and a policy
/// written before the finish is signed with it too.
#[tokio::test]
async fn a_key_change_between_a_restores_chunks_and_its_finish_is_refused() {
    let _g = serial().await;
    let a = Cluster::start(1, "").await;
    ok(&a, Method::PUT, "/v1/key/create/kept", "").await;
    let dek = a.generate(0, "kept").await;
    ok(&a, Method::PUT, "/v1/key/rotate/kept", "").await;
    let snap = ok(&a, Method::GET, "/v1/cluster/snapshot", "").await;
    let root = std::fs::read(a.dir.path().join("root.key")).unwrap();
    drop(a);

    let mut b = Cluster::start_with_root(1, "", Some(&root)).await;
    b.restart_with(0, &[("KES_TEST_RESTORE_PAUSE_MS", "4000")])
        .await;
    let admin = b.admin(0);
    let file = snap.body.to_vec();
    let restore = tokio::spawn(async move {
        admin
            .request(Method::POST, "/v1/cluster/restore", &[], file)
            .await
    });
    let t0 = std::time::Instant::now();
    loop {
        let r = b
            .call(0, Method::GET, "/v1/key/describe/kept", "")
            .await
            .unwrap();
        if r.status != 404 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the chunk never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (path, body) in [
        ("/v1/key/rotate/kept", ""),
        ("/v1/key/rotate/kept", r#"{"version":3}"#),
        ("/v1/key/min-version/kept", r#"{"decrypt":2}"#),
        ("/v1/key/retire/kept", r#"{"below":2}"#),
    ] {
        let r = b.call(0, Method::PUT, path, body).await.unwrap();
        assert_ne!(
            r.status,
            200,
            "{path} {body} during the restore: {}",
            r.text()
        );
    }
    // A policy written now is signed with the key the restore replaces, after the restore
    // re-signed this cluster's own records: the finish must be refused and the records signed
    // again, or every node would refuse its data dir once it holds the restored key.
    let narrow = r#"{"allow":["/v1/key/list/*"]}"#;
    ok(&b, Method::POST, "/v1/policy/write/during", narrow).await;
    let r = restore.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // At once, before this node's unseal loop may have unwrapped the adopted key: a key made
    // now must be sealed with it, not with the key this cluster had before the restore.
    ok(&b, Method::PUT, "/v1/key/create/made-after", "").await;
    let d: serde_json::Value = ok(&b, Method::GET, "/v1/key/describe/kept", "")
        .await
        .json()
        .unwrap();
    assert_eq!(d["version"], 2, "{d}");
    assert_eq!(d["versions"].as_array().unwrap().len(), 2, "{d}");
    assert!(d.get("min_decrypt_version").is_none(), "{d}");
    b.assert_decrypts(0, "kept", &dek).await;
    let r = ok(&b, Method::PUT, "/v1/key/rotate/kept", "").await;
    assert_eq!(r.json::<serde_json::Value>().unwrap()["version"], 3);
    b.generate(0, "made-after").await;
    // Every metadata record verifies under the restored key: the node unseals after a restart.
    b.restart_with(0, &[]).await;
    ok(&b, Method::GET, "/v1/policy/read/during", "").await;
}

/// Node 1's answer to `method path body`, which must be 200.
async fn ok(c: &Cluster, method: Method, path: &str, body: &str) -> kes_cluster::Response {
    let r = c.call(0, method, path, body).await.unwrap();
    assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), c.logs());
    r
}
