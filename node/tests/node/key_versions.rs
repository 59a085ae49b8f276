//! Key versions over real mTLS on a real node: rotate, then old and new ciphertexts, rewrap,
//! min-version, retire, the cap, policies, and a restart.

use crate::support::*;
use kes_cluster::{Client, Method};

/// A data key of `name`: (plaintext, ciphertext, version).
async fn dek(c: &Client, name: &str) -> (Vec<u8>, String, u64) {
    let path = format!("/v1/key/generate/{name}");
    let d = json(&call(c, Method::PUT, &path, r#"{"context":"Y3R4"}"#).await);
    (
        unb64(d["plaintext"].as_str().unwrap()),
        d["ciphertext"].as_str().unwrap().to_owned(),
        d["version"].as_u64().unwrap(),
    )
}

/// The answer to decrypting `ciphertext` with key `name`.
async fn decrypt(c: &Client, name: &str, ciphertext: &str) -> kes_cluster::Response {
    let body = format!(r#"{{"ciphertext":"{ciphertext}","context":"Y3R4"}}"#);
    call(c, Method::PUT, &format!("/v1/key/decrypt/{name}"), &body).await
}

async fn put(c: &Client, path: &str, body: &str) -> kes_cluster::Response {
    call(c, Method::PUT, path, body).await
}

#[tokio::test]
async fn rotate_then_every_version_decrypts_until_restricted_or_retired() {
    let mut n = TestNode::dev_with_config(Some("limits:\n  max_versions: 3\n")).await;
    let c = n.admin();
    assert_eq!(put(&c, "/v1/key/create/k", "").await.status, 200);
    let hmac = json(&put(&c, "/v1/key/hmac/k", r#"{"message":"bWluaW8="}"#).await)["hmac"].clone();
    let (pt1, ct1, v1) = dek(&c, "k").await;
    assert_eq!(v1, 1, "a key never rotated is version 1");

    let r = put(&c, "/v1/key/rotate/k", "").await;
    assert_eq!(json(&r)["version"], 2, "{}", r.text());
    let (pt2, ct2, v2) = dek(&c, "k").await;
    assert_eq!(v2, 2, "generate uses the newest version");
    let enc = json(
        &put(
            &c,
            "/v1/key/encrypt/k",
            r#"{"plaintext":"aGk=","context":"Y3R4"}"#,
        )
        .await,
    );
    assert_eq!(enc["version"], 2);
    for (ct, pt) in [(&ct1, &pt1), (&ct2, &pt2)] {
        let out = json(&decrypt(&c, "k", ct).await);
        assert_eq!(&unb64(out["plaintext"].as_str().unwrap()), pt);
    }
    let same = json(&put(&c, "/v1/key/hmac/k", r#"{"message":"bWluaW8="}"#).await)["hmac"].clone();
    assert_eq!(same, hmac, "a rotation never changes the HMAC");
    let d = json(&call(&c, Method::GET, "/v1/key/describe/k", "").await);
    assert_eq!(d["version"], 2);
    let listed: Vec<u64> = d["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, [1, 2]);

    // Rewrap: the v1 ciphertext under v2, without the plaintext leaving the node.
    let body = format!(r#"{{"ciphertext":"{ct1}","context":"Y3R4"}}"#);
    let w = json(&put(&c, "/v1/key/rewrap/k", &body).await);
    assert_eq!(w["version"], 2);
    assert!(w.get("plaintext").is_none());
    let rewrapped = w["ciphertext"].as_str().unwrap().to_owned();
    assert_ne!(rewrapped, ct1);

    // min-version: v1 refuses, as a wrong key does, and lowering it undoes that.
    assert_eq!(
        json(&put(&c, "/v1/key/min-version/k", r#"{"decrypt":2}"#).await)["decrypt"],
        2
    );
    let refused = decrypt(&c, "k", &ct1).await;
    assert_error(
        &refused,
        400,
        "decryption failed: ciphertext is not authentic",
    );
    assert_eq!(decrypt(&c, "k", &rewrapped).await.status, 200);
    assert_eq!(
        put(&c, "/v1/key/min-version/k", r#"{"decrypt":0}"#)
            .await
            .status,
        200
    );
    assert_eq!(
        decrypt(&c, "k", &ct1).await.status,
        200,
        "min-version undone"
    );
    let r = put(&c, "/v1/key/min-version/k", r#"{"decrypt":3}"#).await;
    assert_eq!(r.status, 400, "no version 3 yet: {}", r.text());

    // Retire: v1 is gone for good, the newest can never go, and a restart keeps all of it.
    let r = put(&c, "/v1/key/retire/k", r#"{"below":3}"#).await;
    assert_error(
        &r,
        400,
        "cannot retire the newest version (2): retire versions below it",
    );
    assert_eq!(
        json(&put(&c, "/v1/key/retire/k", r#"{"below":2}"#).await)["versions"],
        serde_json::json!([2])
    );
    assert_error(
        &decrypt(&c, "k", &ct1).await,
        400,
        "decryption failed: ciphertext is not authentic",
    );
    n.restart().await;
    let c = n.admin();
    assert_error(
        &decrypt(&c, "k", &ct1).await,
        400,
        "decryption failed: ciphertext is not authentic",
    );
    assert_eq!(decrypt(&c, "k", &ct2).await.status, 200);
    assert_eq!(decrypt(&c, "k", &rewrapped).await.status, 200);
    let same = json(&put(&c, "/v1/key/hmac/k", r#"{"message":"bWluaW8="}"#).await)["hmac"].clone();
    assert_eq!(same, hmac, "retiring v1 keeps its HMAC key");

    // The cap: 3 retained versions at most.
    assert_eq!(json(&put(&c, "/v1/key/rotate/k", "").await)["version"], 3);
    assert_eq!(json(&put(&c, "/v1/key/rotate/k", "").await)["version"], 4);
    let r = put(&c, "/v1/key/rotate/k", "").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("max_versions"), "{}", r.text());
}

#[tokio::test]
async fn the_version_routes_are_policy_checked_like_every_route() {
    let n = TestNode::dev().await;
    let admin = n.admin();
    assert_eq!(put(&admin, "/v1/key/create/app-key", "").await.status, 200);
    let (app, id) = n.new_client("app");
    write_policy(
        &admin,
        "crypto-only",
        &["/v1/key/generate/*", "/v1/key/decrypt/*"],
        &[],
    )
    .await;
    assign(&admin, "crypto-only", &id).await;
    let (_, ct, _) = dek(&app, "app-key").await;
    for (path, body) in [
        ("/v1/key/rotate/app-key", ""),
        ("/v1/key/retire/app-key", r#"{"below":1}"#),
        ("/v1/key/min-version/app-key", r#"{"decrypt":1}"#),
        ("/v1/key/rotation/app-key", r#"{"rotate_every":"1h"}"#),
    ] {
        assert_eq!(put(&app, path, body).await.status, 403, "{path}");
    }
    let body = format!(r#"{{"ciphertext":"{ct}","context":"Y3R4"}}"#);
    assert_eq!(put(&app, "/v1/key/rewrap/app-key", &body).await.status, 403);
    let d = json(&call(&admin, Method::GET, "/v1/key/describe/app-key", "").await);
    assert_eq!(d["version"], 1, "a refused rotate changed nothing");
    // Creating a key that the leader will rotate as the admin takes the right to rotate it.
    let (creator, id) = n.new_client("creator");
    write_policy(&admin, "create-only", &["/v1/key/create/*"], &[]).await;
    assign(&admin, "create-only", &id).await;
    let r = put(&creator, "/v1/key/create/storm", r#"{"rotate_every":"1s"}"#).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(put(&creator, "/v1/key/create/plain", "").await.status, 200);
    // So does giving a key a period later; stopping one does not.
    let (scheduler, id) = n.new_client("scheduler");
    write_policy(&admin, "period-only", &["/v1/key/rotation/*"], &[]).await;
    assign(&admin, "period-only", &id).await;
    let path = "/v1/key/rotation/app-key";
    let r = put(&scheduler, path, r#"{"rotate_every":"1s"}"#).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = put(&scheduler, path, r#"{"rotate_every":"off"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn concurrent_rotations_each_add_one_version() {
    let n = TestNode::dev().await;
    let c = n.admin();
    assert_eq!(put(&c, "/v1/key/create/busy", "").await.status, 200);
    let rotations: Vec<_> = (0..6)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { put(&c, "/v1/key/rotate/busy", "").await })
        })
        .collect();
    let mut versions = Vec::new();
    for r in rotations {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        versions.push(json(&r)["version"].as_u64().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, [2, 3, 4, 5, 6, 7], "no rotation lost or doubled");
    let d = json(&call(&c, Method::GET, "/v1/key/describe/busy", "").await);
    assert_eq!(d["versions"].as_array().unwrap().len(), 7);
}

/// `rotate_every`, on create and in the config: the leader rotates the key when it is due,
/// once per period (not once per node), and a bad period is refused.
#[tokio::test]
async fn keys_with_a_period_are_rotated_when_due() {
    let yaml = "keys:\n  - name: from-config\n    rotate_every: 2s\n  - name: never\n";
    let n = TestNode::dev_with_config(Some(yaml)).await;
    let c = n.admin();
    let r = put(&c, "/v1/key/create/on-create", r#"{"rotate_every":"2s"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = put(
        &c,
        "/v1/key/create/bad-period",
        r#"{"rotate_every":"soon"}"#,
    )
    .await;
    assert_error(
        &r,
        400,
        "invalid rotate_every 'soon': give a duration of at least 1s, such as 720h",
    );
    let (_, old, _) = dek(&c, "on-create").await;
    let version = |name: &'static str| {
        let c = c.clone();
        async move {
            let d = json(&call(&c, Method::GET, &format!("/v1/key/describe/{name}"), "").await);
            d["version"].as_u64().unwrap()
        }
    };
    let t0 = std::time::Instant::now();
    while version("on-create").await < 3 || version("from-config").await < 3 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "not rotated in time:\n{}",
            n.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let elapsed = t0.elapsed().as_secs();
    let v = version("on-create").await;
    assert!(
        v <= elapsed / 2 + 3,
        "version {v} after {elapsed} s: rotated more than once per period"
    );
    assert_eq!(version("never").await, 1);
    assert_eq!(
        decrypt(&c, "on-create", &old).await.status,
        200,
        "old versions still decrypt"
    );
}

/// Someone who can write the data dir lowers a key's minimum decrypt version in its entry, to
/// decrypt again with a version the admin refused. The minimum is sealed with the versions, so
/// the node refuses the altered key instead of serving it; other keys are served as before.
#[tokio::test]
async fn a_minimum_decrypt_version_lowered_on_disk_is_refused() {
    let mut n = TestNode::dev().await;
    let c = n.admin();
    for name in ["k", "other"] {
        assert_eq!(
            put(&c, &format!("/v1/key/create/{name}"), "").await.status,
            200
        );
    }
    let (_, ct1, _) = dek(&c, "k").await;
    let (_, other_ct, _) = dek(&c, "other").await;
    assert_eq!(put(&c, "/v1/key/rotate/k", "").await.status, 200);
    let r = put(&c, "/v1/key/min-version/k", r#"{"decrypt":2}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(decrypt(&c, "k", &ct1).await.status, 400, "refused before");
    n.stop();
    let key = kes_node::state::scoped_key("default", "k");
    n.alter_record("keys", &key, |e: &mut kes_node::state::KeyEntry| {
        assert_eq!(e.min_decrypt, 2);
        e.min_decrypt = 0;
    });
    n.start().await;
    let c = n.admin();
    let r = decrypt(&c, "k", &ct1).await;
    assert_error(&r, 500, "failed to read key");
    assert!(
        n.log()
            .contains("its sealed record's minimum decrypt version is 2, its entry says 0"),
        "the log names the alteration:\n{}",
        n.log()
    );
    assert_eq!(decrypt(&c, "other", &other_ct).await.status, 200);
}

/// `{"version": N}` makes N the newest version: it rotates a key at N-1, leaves one at N as
/// it is (a retry of a rotation whose answer was lost), and refuses any other, so a retried
/// rotation never adds a second version.
#[tokio::test]
async fn a_rotation_to_a_version_is_safe_to_retry() {
    let n = TestNode::dev().await;
    let c = n.admin();
    assert_eq!(put(&c, "/v1/key/create/k", "").await.status, 200);
    for _retry in 0..3 {
        let r = put(&c, "/v1/key/rotate/k", r#"{"version":2}"#).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(json(&r)["version"], 2);
    }
    let described = json(&call(&c, Method::GET, "/v1/key/describe/k", "").await);
    assert_eq!(
        described["versions"].as_array().unwrap().len(),
        2,
        "{described}"
    );
    for (body, message) in [
        (
            r#"{"version":4}"#,
            "the key's newest version is 2: it cannot be rotated to version 4",
        ),
        (
            r#"{"version":1}"#,
            "the key's newest version is 2: it cannot be rotated to version 1",
        ),
    ] {
        assert_error(&put(&c, "/v1/key/rotate/k", body).await, 409, message);
    }
    assert_error(
        &put(&c, "/v1/key/rotate/k", r#"{"version":"3"}"#).await,
        400,
        "invalid rotate request body: expected nothing, or {\"version\": N}",
    );
    let r = put(&c, "/v1/key/rotate/k", r#"{"version":3}"#).await;
    assert_eq!(json(&r)["version"], 3, "{}", r.text());
    assert_eq!(json(&put(&c, "/v1/key/rotate/k", "").await)["version"], 4);
}

/// A key's rotation period can be given, shown and stopped after it was created.
#[tokio::test]
async fn a_rotation_period_can_be_set_and_stopped_after_create() {
    let n = TestNode::dev().await;
    let c = n.admin();
    assert_eq!(put(&c, "/v1/key/create/k", "").await.status, 200);
    let describe = || {
        let c = c.clone();
        async move { json(&call(&c, Method::GET, "/v1/key/describe/k", "").await) }
    };
    assert!(describe().await.get("rotate_every").is_none());
    let r = put(&c, "/v1/key/rotation/k", r#"{"rotate_every":"2s"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["rotate_every"], "2s");
    let d = describe().await;
    assert_eq!(d["rotate_every"], "2s", "{d}");
    assert!(
        d["next_rotation"].as_str().unwrap().starts_with("20"),
        "{d}"
    );
    let t0 = std::time::Instant::now();
    while describe().await["version"].as_u64().unwrap() < 2 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "not rotated in time:\n{}",
            n.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let r = put(&c, "/v1/key/rotation/k", r#"{"rotate_every":"off"}"#).await;
    assert_eq!(json(&r)["rotate_every"], "off", "{}", r.text());
    let d = describe().await;
    assert!(d.get("rotate_every").is_none(), "{d}");
    // A rotation already proposed when the period stopped may still land; no more after it.
    let stopped_at = d["version"].as_u64().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let now = describe().await["version"].as_u64().unwrap();
    assert!(now <= stopped_at + 1, "rotated on: {stopped_at} -> {now}");
    assert_error(
        &put(&c, "/v1/key/rotation/k", r#"{"rotate_every":"soon"}"#).await,
        400,
        "invalid rotate_every 'soon': give a duration of at least 1s, such as 720h",
    );
    assert_error(
        &put(&c, "/v1/key/rotation/k", "{}").await,
        400,
        "invalid rotation request body: expected {\"rotate_every\": \"720h\"}, or \"off\" to stop",
    );
    assert_error(
        &put(&c, "/v1/key/rotation/missing", r#"{"rotate_every":"1h"}"#).await,
        404,
        "key does not exist",
    );
}
