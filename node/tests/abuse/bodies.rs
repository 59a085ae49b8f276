//! Request bodies that are slow, oversized, deeply nested, or bulk requests that are huge.

use crate::raw::{read_head, tls};
use crate::support::*;
use kes_cluster::Method;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A normal client's encrypt succeeds.
async fn served(n: &TestNode) {
    let body = format!(r#"{{"plaintext":"{}"}}"#, b64(b"hello"));
    let r = call(&n.admin(), Method::PUT, "/v1/key/encrypt/k", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

fn assert_invalid_body(what: &str, r: &kes_cluster::Response) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("invalid")),
        "{what}: {}",
        r.text()
    );
}

/// Lets `abuse` run to its end while a normal client keeps working alongside, and once more
/// after it.
async fn alongside(n: &TestNode, abuse: tokio::task::JoinHandle<()>) {
    while !abuse.is_finished() {
        served(n).await;
    }
    abuse.await.unwrap();
    served(n).await;
}

async fn bulk_decrypt(c: &kes_cluster::Client, body: String) -> kes_cluster::Response {
    c.request(Method::POST, "/v1/key/bulk/decrypt/k", &[], body)
        .await
        .expect("bulk decrypt")
}

async fn node_with_key(yaml: Option<&str>) -> TestNode {
    let n = TestNode::dev_with_config(yaml).await;
    assert_eq!(
        call(&n.admin(), Method::PUT, "/v1/key/create/k", "")
            .await
            .status,
        200
    );
    n
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_cut_off_at_the_body_deadline() {
    let _turn = crate::take_turn().await;
    let n = node_with_key(Some("limits:\n  body_timeout: 1s\n")).await;
    let mut slow = Vec::new();
    for _ in 0..10 {
        let s = tls(&n, &[b"http/1.1"]).await;
        let (mut rd, mut wr) = tokio::io::split(s);
        wr.write_all(b"PUT /v1/key/encrypt/k HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n{")
            .await
            .unwrap();
        let writer = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                    return;
                }
            }
        });
        slow.push((
            tokio::spawn(async move {
                let t0 = Instant::now();
                (
                    read_head(&mut rd, Duration::from_secs(8)).await,
                    t0.elapsed(),
                )
            }),
            writer,
        ));
    }
    served(&n).await;
    for (reader, writer) in slow {
        let (head, took) = reader.await.unwrap();
        assert!(head.starts_with("HTTP/1.1 400"), "answer: {head:?}");
        assert!(took < Duration::from_secs(4), "answered after {took:?}");
        writer.abort();
    }
    served(&n).await;
}

#[tokio::test]
async fn oversized_and_deeply_nested_json_get_a_clear_400() {
    let _turn = crate::take_turn().await;
    let n = node_with_key(None).await;
    // 100 000 levels: far past serde_json's 128, and still under the 1 MB body limit, so the
    // nesting is what is refused.
    let deep = |field: &str, open: &str, close: &str| {
        format!(
            r#"{{"{field}":{}{}}}"#,
            open.repeat(100_000),
            close.repeat(100_000)
        )
    };
    let cases = [
        (
            Method::PUT,
            "/v1/key/encrypt/k",
            deep("plaintext", "[", "]"),
        ),
        (
            Method::PUT,
            "/v1/key/encrypt/k",
            deep("plaintext", r#"{"a":"#, "}"),
        ),
        // `allow` may be an object of anything (serde_json::Value): the recursive case.
        (
            Method::PUT,
            "/v1/policy/write/p",
            format!(
                r#"{{"allow":{{"a":{}{}}}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
        ),
        (Method::PUT, "/v1/key/import/i", deep("key", "[", "]")),
        (
            Method::POST,
            "/v1/key/bulk/decrypt/k",
            format!("[{}]", deep("ciphertext", "[", "]")),
        ),
    ];
    let oversized = format!(r#"{{"plaintext":"{}"}}"#, "A".repeat(1_500_000));
    // The abuse runs in a loop while a normal client works alongside.
    let admin = n.admin();
    // The oversized body goes on a client of its own: the node closes that connection, and a
    // client that kept it for its next request would meet the close there instead.
    let oversized_client = n.admin();
    let abuse = tokio::spawn(async move {
        for _ in 0..3 {
            for (method, path, body) in &cases {
                let r = admin
                    .request(method.clone(), path, &[], body.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
                assert_invalid_body(path, &r);
            }
            // Over the 1 MB limit the node answers 400 once it has read a megabyte, and closes
            // the connection; a client still sending the rest may meet the close before it
            // reads the answer. Either way it is turned away at once, never made to wait.
            match oversized_client
                .request(Method::PUT, "/v1/key/encrypt/k", &[], oversized.clone())
                .await
            {
                Ok(r) => assert_invalid_body("oversized", &r),
                Err(e) => assert!(
                    !matches!(e, kes_cluster::Error::Timeout { .. }),
                    "oversized: {e}"
                ),
            }
        }
    });
    alongside(&n, abuse).await;
}

#[tokio::test]
async fn a_huge_bulk_decrypt_is_counted_before_it_is_decoded() {
    let _turn = crate::take_turn().await;
    let n = node_with_key(None).await;
    let admin = n.admin();
    let ct = json(
        &call(
            &admin,
            Method::PUT,
            "/v1/key/encrypt/k",
            &format!(r#"{{"plaintext":"{}"}}"#, b64(b"x")),
        )
        .await,
    )["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let item = format!(r#"{{"ciphertext":"{ct}"}}"#);
    let bulk =
        |items: usize, tail: &str| format!("[{}{tail}", vec![item.as_str(); items].join(","));

    // Exactly the limit works.
    let r = bulk_decrypt(&admin, bulk(1000, "]")).await;
    assert_eq!(json(&r).as_array().map(Vec::len), Some(1000));

    let huge = format!("[{}]", vec!["{}"; 300_000].join(","));
    let abuse_admin = admin.clone();
    let abuse = tokio::spawn(async move {
        for _ in 0..3 {
            let r = bulk_decrypt(&abuse_admin, huge.clone()).await;
            assert_error(&r, 400, "too many ciphertexts");
        }
    });
    alongside(&n, abuse).await;
    // Counting stops at item 1001: what follows is never decoded, so even a body that breaks
    // off there is refused for its size, not for its syntax.
    let r = bulk_decrypt(&admin, bulk(1001, ", {broken")).await;
    assert_error(&r, 400, "too many ciphertexts");
    served(&n).await;
}
