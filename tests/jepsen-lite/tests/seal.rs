//! The seal on a live cluster: rekey, a joiner with the wrong root key, migration from `file`
//! to `pkcs11` (a real SoftHSM2 token), and a scan of every data dir for key material.

use base64::Engine;
use jepsen_lite::{Cluster, serial};
use kes_cluster::Method;
use kes_node::seal::{FileRootKey, RecordAad, RootKeyProvider, open_record, wrap_aad};
use std::path::Path;
use std::time::Duration;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The meta and key entries of a snapshot file.
fn snapshot_parts(
    file: &[u8],
) -> (
    kes_node::state::ClusterMeta,
    Vec<(String, String, kes_node::state::KeyEntry)>,
) {
    let backup = kes_node::cluster::Backup::parse(file).expect("snapshot");
    let trees = kes_node::state::State::parse_dump(&backup.dump).expect("dump");
    let mut meta = None;
    let mut keys = Vec::new();
    for (tree, items) in trees {
        for (k, v) in items {
            if tree == "meta" && k.as_slice() == b"cluster" {
                meta = Some(rmp_decode(&v));
            }
            if tree == "keys" {
                let split = k.iter().position(|b| *b == 0).expect("scoped key");
                let enclave = String::from_utf8_lossy(&k[..split]).into_owned();
                let name = String::from_utf8_lossy(&k[split + 1..]).into_owned();
                keys.push((enclave, name, rmp_decode(&v)));
            }
        }
    }
    (meta.expect("cluster record"), keys)
}

fn rmp_decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
    kes_node::raft::decode(b).expect("record")
}

#[tokio::test]
async fn rekey_keeps_old_ciphertexts_and_revokes_the_old_cluster_key() {
    let _g = serial().await;
    let c = Cluster::start(3, "").await;
    let mut deks = Vec::new();
    for i in 0..6 {
        let name = format!("rk-{i}");
        assert_eq!(
            c.call(i % 3, Method::PUT, &format!("/v1/key/create/{name}"), "")
                .await
                .unwrap()
                .status,
            200
        );
        let dek: serde_json::Value = c
            .call(0, Method::PUT, &format!("/v1/key/generate/{name}"), "{}")
            .await
            .unwrap()
            .json()
            .unwrap();
        deks.push((name, dek));
    }
    let before = c
        .call(0, Method::GET, "/v1/cluster/snapshot", "")
        .await
        .unwrap()
        .body
        .to_vec();
    let r = c
        .call(1, Method::POST, "/v1/cluster/seal/rekey", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["storage_version"], 2);
    assert!(v["resealed"].as_u64().unwrap() >= 6);
    for i in 0..3 {
        for (name, dek) in &deks {
            let body = serde_json::json!({ "ciphertext": dek["ciphertext"] }).to_string();
            let r = c
                .call(i, Method::PUT, &format!("/v1/key/decrypt/{name}"), &body)
                .await
                .unwrap();
            assert_eq!(
                r.status,
                200,
                "node{} {name}: {}\n{}",
                i + 1,
                r.text(),
                c.logs()
            );
            assert_eq!(
                r.json::<serde_json::Value>().unwrap()["plaintext"],
                dek["plaintext"]
            );
        }
    }
    let st: serde_json::Value = c
        .call(2, Method::GET, "/v1/cluster/seal/status", "")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["storage_version"], 2);
    assert_eq!(st["rekey_in_progress"], false);
    let after = c
        .call(0, Method::GET, "/v1/cluster/snapshot", "")
        .await
        .unwrap()
        .body
        .to_vec();

    // The old wrapped copy plus the old root key give the old cluster key, which opens the
    // records of the old backup but none of the current state.
    let root = FileRootKey::load(&c.dir.path().join("root.key")).unwrap();
    let (old_meta, old_keys) = snapshot_parts(&before);
    let (new_meta, new_keys) = snapshot_parts(&after);
    let aad = wrap_aad(&old_meta.cluster_id);
    let old_ck = kes_node::seal::ClusterKey::from_bytes(
        root.unwrap(&old_meta.wrapped[0].bytes, &aad).await.unwrap(),
    );
    let new_ck = kes_node::seal::ClusterKey::from_bytes(
        root.unwrap(&new_meta.wrapped[0].bytes, &aad).await.unwrap(),
    );
    let old_keys_v1 = old_ck.derive(1);
    for (e, n, entry) in &old_keys {
        let at = RecordAad {
            enclave: e,
            name: n,
            creation_id: entry.creation_id,
        };
        assert!(
            open_record(&old_keys_v1, at, &entry.sealed).is_ok(),
            "control: the old backup opens"
        );
    }
    let old_as_v2 = old_ck.derive(2);
    let new_v2 = new_ck.derive(2);
    assert!(!new_keys.is_empty());
    for (e, n, entry) in &new_keys {
        let at = RecordAad {
            enclave: e,
            name: n,
            creation_id: entry.creation_id,
        };
        assert!(
            open_record(&old_keys_v1, at, &entry.sealed).is_err(),
            "old key opens {n} after rekey"
        );
        assert!(
            open_record(&old_as_v2, at, &entry.sealed).is_err(),
            "old key opens {n} after rekey"
        );
        assert!(
            open_record(&new_v2, at, &entry.sealed).is_ok(),
            "control: the new key opens {n}"
        );
    }
}

/// A rekey while every node creates keys and writes policies, and node3's seal takes 2.5 s to
/// unwrap a cluster key (a remote HSM may). Before, node3 went on sealing and signing under
/// the old cluster key; applied after the rekey dropped that key, such a record was a key
/// nobody could open, or a signature that made every node's integrity check seal it for good.
/// Every acknowledged write must stay usable on every node, and no node may seal.
#[tokio::test]
async fn a_rekey_under_writes_on_every_node_loses_nothing_and_seals_no_node() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let _g = serial().await;
    let mut c = Cluster::start(3, "").await;
    c.nodes[2].stop();
    c.nodes[2]
        .env
        .push(("KES_TEST_SLOW_UNSEAL_MS".into(), "2500".into()));
    c.nodes[2].start();
    let t0 = std::time::Instant::now();
    while !c.ready(2, false).await {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "node3 never came back\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = Arc::new(c);
    let stop = Arc::new(AtomicBool::new(false));
    // Acknowledged creates and policy writes, over every writer.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for i in 0..3 {
        let (c, stop, acked) = (c.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let (mut keys, mut policies) = (Vec::new(), Vec::new());
            let policy = r#"{"allow":["/v1/key/generate/*/*"]}"#;
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("w{i}-{n}");
                let path = format!("/v1/key/create/{key}");
                if c.call(i, Method::PUT, &path, "")
                    .await
                    .is_ok_and(|r| r.status == 200)
                {
                    keys.push(key);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                let name = format!("p{i}-{n}");
                let path = format!("/v1/policy/write/{name}");
                let r = c.call(i, Method::PUT, &path, policy).await;
                if r.is_ok_and(|r| r.status == 200) {
                    policies.push(name);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            (keys, policies)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rekeyed = false;
    for _ in 0..3 {
        let r = c
            .call(1, Method::POST, "/v1/cluster/seal/rekey", "")
            .await
            .unwrap();
        // Under a steady stream of writes from lagging nodes a rekey may need another run,
        // as its answer says; it must never lose what it cannot finish.
        if r.status == 200 {
            rekeyed = true;
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
    }
    assert!(rekeyed, "the rekey never finished");
    // Writes go on after the finish, with node3 still unwrapping the new key, until enough
    // were acknowledged to be worth checking. A debug build on two cores makes a write and a
    // policy per writer in some 100 ms, so this is counted, not timed.
    let after_finish = acked.load(Ordering::Relaxed);
    let t1 = std::time::Instant::now();
    while t1.elapsed() < Duration::from_millis(800)
        || acked.load(Ordering::Relaxed) < (after_finish + 20).max(60)
    {
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "writes stopped being acknowledged after the rekey: {} before it finished, {} now\n{}",
            after_finish,
            acked.load(Ordering::Relaxed),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut keys, mut policies) = (Vec::new(), Vec::new());
    for w in writers {
        let (k, p) = w.await.unwrap();
        keys.extend(k);
        policies.extend(p);
    }
    assert!(
        keys.len() >= 20 && policies.len() >= 20,
        "too few writes: {} keys, {} policies",
        keys.len(),
        policies.len()
    );
    // Every unseal loop has had the time to re-check the state after the finish.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        for key in &keys {
            let r = c
                .call(i, Method::PUT, &format!("/v1/key/generate/{key}"), "{}")
                .await
                .unwrap();
            assert_eq!(
                r.status,
                200,
                "node{} key {key}: {}\n{}",
                i + 1,
                r.text(),
                c.logs()
            );
        }
        for name in &policies {
            let r = c
                .call(i, Method::GET, &format!("/v1/policy/describe/{name}"), "")
                .await
                .unwrap();
            assert_eq!(
                r.status,
                200,
                "node{} policy {name}: {}\n{}",
                i + 1,
                r.text(),
                c.logs()
            );
        }
    }
}

#[tokio::test]
async fn a_joiner_with_the_wrong_root_key_is_refused() {
    let _g = serial().await;
    let mut c = Cluster::start(4, "").await;
    let leader = c.leader().await;
    let four = 3;
    let id4 = c.status(four).await.unwrap()["id"].as_u64().unwrap();
    let r = c
        .call(
            leader,
            Method::DELETE,
            &format!("/v1/cluster/remove/{id4}"),
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    c.nodes[four].stop();
    std::fs::remove_dir_all(c.nodes[four].dir.join("data")).unwrap();
    c.reissue_node_certificate(four);
    let wrong = c.nodes[four].dir.join("other-root.key");
    FileRootKey::create(&wrong).unwrap();
    c.set_seal(
        four,
        &format!("seal:\n  file:\n    path: {}\n", wrong.display()),
    );
    c.nodes[four].start();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        !c.ready(four, false).await,
        "a node with the wrong root key must not join"
    );
    let log = c.nodes[four].log();
    assert!(
        log.contains("cannot unwrap the cluster key"),
        "the refusal says why:\n{log}"
    );
    let st: serde_json::Value = c
        .call(leader, Method::GET, "/v1/cluster/status", "")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3, "{st}");
}

fn scan(dir: &Path, needles: &[(&str, Vec<u8>)]) -> (usize, Vec<String>) {
    let mut files = 0;
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            let data = std::fs::read(&p).unwrap_or_default();
            for (label, n) in needles {
                if data.windows(n.len()).any(|w| w == n.as_slice()) {
                    hits.push(format!("{}:{label}", p.display()));
                }
            }
        }
    }
    (files, hits)
}

#[tokio::test]
async fn no_key_material_in_any_data_dir_log_or_snapshot() {
    let _g = serial().await;
    let mut c = Cluster::start(3, "  snapshot_every: 20\n").await;
    let secret: Vec<u8> = (101u8..133).collect();
    let r = c
        .call(
            1,
            Method::PUT,
            "/v1/key/import/scan",
            &format!(r#"{{"key":"{}"}}"#, b64(&secret)),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mut plaintexts = Vec::new();
    for i in 0..30 {
        let dek: serde_json::Value = c
            .call(i % 3, Method::PUT, "/v1/key/generate/scan", "{}")
            .await
            .unwrap()
            .json()
            .unwrap();
        plaintexts.push(dek["plaintext"].as_str().unwrap().to_owned());
    }
    c.nodes[2].stop();
    c.nodes[2].start();
    c.wait_all_ready(Duration::from_secs(60)).await;
    let snap = c
        .call(2, Method::GET, "/v1/cluster/snapshot", "")
        .await
        .unwrap()
        .body
        .to_vec();
    std::fs::write(c.dir.path().join("saved.snapshot"), &snap).unwrap();
    for n in &mut c.nodes {
        n.stop();
    }
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret);
    let needles = vec![
        ("raw", secret.clone()),
        ("b64", b64(&secret).into_bytes()),
        ("hex", hex.into_bytes()),
        ("b64url", url.into_bytes()),
    ];
    let mut total = 0;
    for n in &c.nodes {
        let (files, hits) = scan(&n.dir, &needles);
        total += files;
        assert!(hits.is_empty(), "key material on disk: {hits:?}");
    }
    let (_, hits) = scan(
        &c.dir
            .path()
            .join("saved.snapshot")
            .parent()
            .unwrap()
            .join("node1"),
        &needles,
    );
    assert!(hits.is_empty());
    assert!(
        !snap.windows(secret.len()).any(|w| w == secret.as_slice()),
        "snapshot holds the key"
    );
    for pt in &plaintexts {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(pt)
            .unwrap();
        for n in &c.nodes {
            assert!(
                scan(&n.dir, &[("dek", raw.clone())]).1.is_empty(),
                "a data key reached the disk"
            );
        }
    }
    eprintln!("scanned {total} files under 3 node dirs (data, logs, snapshots): no key material");
}

/// Makes a SoftHSM2 token with the project's setup script; returns (SOFTHSM2_CONF, PIN).
fn softhsm_token(dir: &Path) -> (String, String) {
    let pin = "4711-kes".to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/softhsm-setup.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .env("KES_HSM_PIN", &pin)
        .output()
        .expect("run scripts/softhsm-setup.sh");
    assert!(
        out.status.success(),
        "scripts/softhsm-setup.sh failed (it installs softhsm2; scripts/test.sh runs it too):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("softhsm2.conf").display().to_string(), pin)
}

const PKCS11: &str = "  pkcs11:\n    module: /usr/lib/softhsm/libsofthsm2.so\n    token_label: kes-cluster\n    pin_env: KES_HSM_PIN\n    key_label: kes-root\n";

#[tokio::test]
async fn migrate_a_live_cluster_from_file_to_pkcs11() {
    let _g = serial().await;
    let mut c = Cluster::start(3, "").await;
    let (conf, pin) = softhsm_token(&c.dir.path().join("hsm"));
    assert_eq!(
        c.call(0, Method::PUT, "/v1/key/create/before", "")
            .await
            .unwrap()
            .status,
        200
    );
    let dek: serde_json::Value = c
        .call(0, Method::PUT, "/v1/key/generate/before", "{}")
        .await
        .unwrap()
        .json()
        .unwrap();
    let root = c.dir.path().join("root.key");
    // 1. Every node gets both seals, one at a time: the cluster keeps serving.
    for i in 0..3 {
        c.nodes[i].stop();
        c.nodes[i].env = vec![
            ("SOFTHSM2_CONF".into(), conf.clone()),
            ("KES_HSM_PIN".into(), pin.clone()),
        ];
        c.set_seal(
            i,
            &format!("seal:\n  file:\n    path: {}\n{PKCS11}", root.display()),
        );
        c.nodes[i].start();
        assert!(
            c.wait_ready(i, Duration::from_secs(60)).await,
            "{}",
            c.logs()
        );
    }
    // 2. Wrap the cluster key under the HSM as well.
    let r = c
        .call(1, Method::POST, "/v1/cluster/seal/add", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let st: serde_json::Value = c
        .call(0, Method::GET, "/v1/cluster/seal/status", "")
        .await
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<String> = st["seals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let file_id = ids
        .iter()
        .find(|i| i.starts_with("file:"))
        .cloned()
        .expect("file seal");
    assert!(ids.iter().any(|i| i.starts_with("pkcs11:")), "{st}");
    // The file seal is in use: removing it now is refused.
    let r = c
        .call(
            0,
            Method::DELETE,
            &format!("/v1/cluster/seal/remove/{file_id}"),
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    // 3. Every node drops the file seal and unseals from the HSM.
    for i in 0..3 {
        c.nodes[i].stop();
        c.set_seal(i, &format!("seal:\n{PKCS11}"));
        c.nodes[i].start();
        assert!(
            c.wait_ready(i, Duration::from_secs(60)).await,
            "{}",
            c.logs()
        );
        let w = c
            .call(i, Method::PUT, &format!("/v1/key/create/during-{i}"), "")
            .await
            .unwrap();
        assert_eq!(
            w.status,
            200,
            "writes keep working during the migration: {}",
            w.text()
        );
    }
    // 4. Once no member relies on it, the file seal goes.
    let mut removed = false;
    for _ in 0..40 {
        let r = c
            .call(
                0,
                Method::DELETE,
                &format!("/v1/cluster/seal/remove/{file_id}"),
                "",
            )
            .await
            .unwrap();
        if r.status == 200 {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        removed,
        "the file seal could not be removed after the migration"
    );
    for i in 0..3 {
        let body = serde_json::json!({ "ciphertext": dek["ciphertext"] }).to_string();
        let r = c
            .call(i, Method::PUT, "/v1/key/decrypt/before", &body)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A restarted node now unseals from the HSM alone.
    c.nodes[2].stop();
    c.nodes[2].start();
    assert!(
        c.wait_ready(2, Duration::from_secs(60)).await,
        "{}",
        c.logs()
    );
}
