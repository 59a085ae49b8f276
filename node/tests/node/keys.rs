//! The key API and its error cases.

use crate::support::*;
use kes_cluster::Method;

#[tokio::test]
async fn create_generate_decrypt_and_describe() {
    let n = TestNode::dev().await;
    let c = n.admin();
    let r = call(&c, Method::PUT, "/v1/key/create/my-key", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    assert!(r.header("kes-cluster-index").is_some());
    // POST is accepted on every PUT route, as the Go SDK sends it.
    let dek = json(
        &call(
            &c,
            Method::POST,
            "/v1/key/generate/my-key",
            r#"{"context":"e30="}"#,
        )
        .await,
    );
    let pt = unb64(dek["plaintext"].as_str().unwrap());
    let ct = unb64(dek["ciphertext"].as_str().unwrap());
    assert_eq!(pt.len(), 32);
    assert_eq!(ct.len(), 76, "raw format: 32 + 16 tag + 16 iv + 12 nonce");
    let body = format!(r#"{{"ciphertext":"{}","context":"e30="}}"#, b64(&ct));
    let out = json(&call(&c, Method::PUT, "/v1/key/decrypt/my-key", &body).await);
    assert_eq!(unb64(out["plaintext"].as_str().unwrap()), pt);
    // Wrong context: not authentic.
    let body = format!(r#"{{"ciphertext":"{}","context":"e2Zvb30="}}"#, b64(&ct));
    let r = call(&c, Method::PUT, "/v1/key/decrypt/my-key", &body).await;
    assert_error(&r, 400, "decryption failed: ciphertext is not authentic");
    // Generate without a body works (MinIO sends {} but older clients send nothing).
    json(&call(&c, Method::PUT, "/v1/key/generate/my-key", "").await);
    let d = json(&call(&c, Method::GET, "/v1/key/describe/my-key", "").await);
    assert_eq!(d["name"], "my-key");
    assert!(d["algorithm"] == "AES256" || d["algorithm"] == "ChaCha20");
    assert_eq!(d["created_by"].as_str().unwrap().len(), 64);
    assert!(d["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn create_errors_match_kes() {
    let n = TestNode::dev().await;
    let c = n.admin();
    assert_eq!(
        call(&c, Method::PUT, "/v1/key/create/k1", "").await.status,
        200
    );
    assert_error(
        &call(&c, Method::PUT, "/v1/key/create/k1", "").await,
        400,
        "key already exists",
    );
    assert_error(
        &call(&c, Method::PUT, "/v1/key/create/-bad", "").await,
        400,
        "key name '-bad' is empty, too long or contains invalid characters",
    );
    let long = "a".repeat(81);
    let r = call(&c, Method::PUT, &format!("/v1/key/create/{long}"), "").await;
    assert_eq!(r.status, 400);
    assert_error(
        &call(&c, Method::PUT, "/v1/key/generate/missing", "{}").await,
        404,
        "key does not exist",
    );
    assert_error(
        &call(&c, Method::GET, "/v1/key/describe/missing", "").await,
        404,
        "key does not exist",
    );
    assert_error(
        &call(&c, Method::DELETE, "/v1/key/delete/missing", "").await,
        404,
        "key does not exist",
    );
    // Wrong method: 405 with KES's message and an Accept header naming the method.
    let r = call(&c, Method::GET, "/v1/key/create/k1", "").await;
    assert_error(&r, 405, "received method 'GET' expected 'PUT'");
    assert_eq!(r.header("accept"), Some("PUT"));
    // Unknown path: Go's text 404.
    let r = call(&c, Method::GET, "/v1/nope", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "404 page not found\n");
}

#[tokio::test]
async fn import_accepts_every_body_form_and_refuses_bad_ones() {
    let n = TestNode::dev().await;
    let c = n.admin();
    let key = b64(&[7u8; 32]);
    for (name, body) in [
        ("a", format!(r#"{{"key":"{key}","cipher":"AES256"}}"#)),
        ("b", format!(r#"{{"key":"{key}","cipher":"ChaCha20"}}"#)),
        ("c", format!(r#"{{"bytes":"{key}"}}"#)),
        (
            "d",
            format!(r#"{{"bytes":"{key}","algorithm":"XCHACHA20-POLY1305"}}"#),
        ),
        ("e", format!(r#"{{"key":"{key}"}}"#)),
    ] {
        let r = call(&c, Method::PUT, &format!("/v1/key/import/{name}"), &body).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
    }
    let d = json(&call(&c, Method::GET, "/v1/key/describe/b", "").await);
    assert_eq!(d["algorithm"], "ChaCha20");
    // Imported keys really use the given material: two imports of the same bytes decrypt each other.
    let ct = json(
        &call(
            &c,
            Method::PUT,
            "/v1/key/encrypt/a",
            r#"{"plaintext":"aGVsbG8="}"#,
        )
        .await,
    );
    let body = format!(
        r#"{{"ciphertext":"{}"}}"#,
        ct["ciphertext"].as_str().unwrap()
    );
    let pt = json(&call(&c, Method::PUT, "/v1/key/decrypt/c", &body).await);
    assert_eq!(pt["plaintext"], "aGVsbG8=");
    assert_error(
        &call(&c, Method::PUT, "/v1/key/import/x", r#"{"key":"@@"}"#).await,
        400,
        "invalid import key request body",
    );
    assert_error(
        &call(&c, Method::PUT, "/v1/key/import/x", "not json").await,
        400,
        "invalid import key request body",
    );
    assert_error(
        &call(
            &c,
            Method::PUT,
            "/v1/key/import/x",
            &format!(r#"{{"key":"{key}","cipher":"DES"}}"#),
        )
        .await,
        406,
        "algorithm 'DES' is not supported",
    );
    assert_error(
        &call(
            &c,
            Method::PUT,
            "/v1/key/import/x",
            r#"{"key":"AAAA","cipher":"AES256"}"#,
        )
        .await,
        406,
        "invalid key size for 'AES256'",
    );
    // A body over 1 MB is refused, not read to the end.
    let big = format!(r#"{{"key":"{}"}}"#, "A".repeat(1_100_000));
    assert_error(
        &call(&c, Method::PUT, "/v1/key/import/x", &big).await,
        400,
        "invalid import key request body",
    );
    assert_error(
        &call(
            &c,
            Method::PUT,
            "/v1/key/import/a",
            &format!(r#"{{"key":"{key}"}}"#),
        )
        .await,
        400,
        "key already exists",
    );
}

#[tokio::test]
async fn encrypt_hmac_bulk_and_bad_bodies() {
    let n = TestNode::dev().await;
    let c = n.admin();
    call(&c, Method::PUT, "/v1/key/create/k", "").await;
    let ct = json(
        &call(
            &c,
            Method::PUT,
            "/v1/key/encrypt/k",
            r#"{"plaintext":"c2VjcmV0","context":"Y3R4"}"#,
        )
        .await,
    );
    let ct = ct["ciphertext"].as_str().unwrap().to_owned();
    assert_eq!(unb64(&ct).len(), 6 + 44);
    let h1 = json(
        &call(
            &c,
            Method::PUT,
            "/v1/key/hmac/k",
            r#"{"message":"cm9vdA=="}"#,
        )
        .await,
    );
    let h2 = json(
        &call(
            &c,
            Method::PUT,
            "/v1/key/hmac/k",
            r#"{"message":"cm9vdA=="}"#,
        )
        .await,
    );
    assert_eq!(h1, h2, "HMAC is deterministic");
    assert_eq!(unb64(h1["hmac"].as_str().unwrap()).len(), 32);
    let bulk = format!(
        r#"[{{"ciphertext":"{ct}","context":"Y3R4"}},{{"ciphertext":"{ct}","context":"Y3R4"}}]"#
    );
    let out = json(&call(&c, Method::POST, "/v1/key/bulk/decrypt/k", &bulk).await);
    assert_eq!(out[0]["plaintext"], "c2VjcmV0");
    assert_eq!(out[1]["plaintext"], "c2VjcmV0");
    let bad = format!(r#"[{{"ciphertext":"{ct}"}}]"#);
    assert_error(
        &call(&c, Method::POST, "/v1/key/bulk/decrypt/k", &bad).await,
        400,
        "decryption failed: ciphertext is not authentic",
    );
    for body in ["{", r#"{"plaintext":"%%%"}"#, r#"{"plaintext":5}"#] {
        assert_error(
            &call(&c, Method::PUT, "/v1/key/encrypt/k", body).await,
            400,
            "invalid request body",
        );
    }
    assert_error(
        &call(
            &c,
            Method::PUT,
            "/v1/key/decrypt/k",
            r#"{"ciphertext":"AAAA"}"#,
        )
        .await,
        400,
        "decryption failed: ciphertext is not authentic",
    );
}

#[tokio::test]
async fn list_strips_star_paginates_and_speaks_ndjson() {
    let n = TestNode::dev().await;
    let c = n.admin();
    for k in ["app-1", "app-2", "app-3", "other"] {
        assert_eq!(
            call(&c, Method::PUT, &format!("/v1/key/create/{k}"), "")
                .await
                .status,
            200
        );
    }
    let all = json(&call(&c, Method::GET, "/v1/key/list/*", "").await);
    assert_eq!(
        all["names"],
        serde_json::json!(["app-1", "app-2", "app-3", "other"])
    );
    assert!(all.get("continue_at").is_none());
    let bare = json(&call(&c, Method::GET, "/v1/key/list", "").await);
    assert_eq!(
        bare["names"], all["names"],
        "the bare path is the empty prefix"
    );
    let apps = json(&call(&c, Method::GET, "/v1/key/list/app*", "").await);
    assert_eq!(
        apps["names"],
        serde_json::json!(["app-1", "app-2", "app-3"])
    );
    let p1 = json(&call(&c, Method::GET, "/v1/key/list/app*?limit=2", "").await);
    assert_eq!(p1["names"], serde_json::json!(["app-1", "app-2"]));
    assert_eq!(p1["continue_at"], "app-3");
    let p2 = json(
        &call(
            &c,
            Method::GET,
            "/v1/key/list/app*?limit=2&continue_at=app-3",
            "",
        )
        .await,
    );
    assert_eq!(p2["names"], serde_json::json!(["app-3"]));
    assert!(p2.get("continue_at").is_none());
    let r = c
        .request(
            Method::GET,
            "/v1/key/list/app",
            &[("accept", "application/x-ndjson")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.content_type(), Some("application/x-ndjson"));
    assert_eq!(
        r.text(),
        "{\"name\":\"app-1\"}\n{\"name\":\"app-2\"}\n{\"name\":\"app-3\"}\n"
    );
    assert_error(
        &call(&c, Method::GET, "/v1/key/list/a*b*", "").await,
        400,
        "listing pattern 'a*b*' is empty, too long or is invalid",
    );
}

#[tokio::test]
async fn delete_then_recreate_never_serves_old_material() {
    let n = TestNode::dev().await;
    let c = n.admin();
    call(&c, Method::PUT, "/v1/key/create/k", "").await;
    let dek = json(&call(&c, Method::PUT, "/v1/key/generate/k", "{}").await);
    let body = format!(
        r#"{{"ciphertext":"{}"}}"#,
        dek["ciphertext"].as_str().unwrap()
    );
    json(&call(&c, Method::PUT, "/v1/key/decrypt/k", &body).await); // now cached
    assert_eq!(
        call(&c, Method::DELETE, "/v1/key/delete/k", "")
            .await
            .status,
        200
    );
    assert_error(
        &call(&c, Method::PUT, "/v1/key/decrypt/k", &body).await,
        404,
        "key does not exist",
    );
    call(&c, Method::PUT, "/v1/key/create/k", "").await;
    assert_error(
        &call(&c, Method::PUT, "/v1/key/decrypt/k", &body).await,
        400,
        "decryption failed: ciphertext is not authentic",
    );
}
