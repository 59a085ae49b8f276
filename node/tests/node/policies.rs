//! Policies, identities and enclaves, checked with real client identities.

use crate::support::*;
use kes_cluster::{Client, Method};

/// Whether the path is authorised: anything but 403 means the policy let it through.
async fn allowed(c: &Client, method: Method, path: &str) -> bool {
    let r = call(c, method, path, "{}").await;
    r.status != 403
}

#[tokio::test]
async fn seed_policy_tables_row_by_row() {
    let n = TestNode::dev().await;
    let admin = n.admin();
    let (app, id) = n.new_client("app");
    write_policy(
        &admin,
        "my-policy",
        &[
            "/v1/key/create/my-key",
            "/v1/key/generate/my-key",
            "/v1/key/decrypt/my-key",
        ],
        &["/v1/key/*/my-key-internal"],
    )
    .await;
    assign(&admin, "my-policy", &id).await;
    let table1 = [
        (Method::PUT, "/v1/key/create/my-key", true),
        (Method::PUT, "/v1/key/generate/my-key", true),
        (Method::PUT, "/v1/key/create/my-key2", false),
        (Method::DELETE, "/v1/key/delete/my-key", false),
        (Method::PUT, "/v1/policy/write/my-policy", false),
    ];
    for (m, path, want) in table1 {
        assert_eq!(allowed(&app, m, path).await, want, "table 1: {path}");
    }
    // /v0/... is not a route at all; it is never allowed (404 before policy).
    assert_eq!(
        call(&app, Method::PUT, "/v0/key/create/my-key", "")
            .await
            .status,
        404
    );

    // Overwriting the policy keeps the assignment.
    write_policy(
        &admin,
        "my-policy",
        &[
            "/v1/key/create/my-key*",
            "/v1/key/generate/my-key*",
            "/v1/key/decrypt/my-key*",
            "/v1/key/delete/my-key",
        ],
        &["/v1/key/*/my-key-internal"],
    )
    .await;
    let table2 = [
        (Method::PUT, "/v1/key/create/my-key", true),
        (Method::PUT, "/v1/key/generate/my-key", true),
        (Method::PUT, "/v1/key/create/my-key2", true),
        (Method::DELETE, "/v1/key/delete/my-key", true),
        (Method::DELETE, "/v1/key/delete/my-key2", false),
        (Method::PUT, "/v1/key/decrypt/my-key-internal", false),
    ];
    for (m, path, want) in table2 {
        assert_eq!(allowed(&app, m, path).await, want, "table 2: {path}");
    }
}

#[tokio::test]
async fn glob_is_per_segment() {
    let n = TestNode::dev().await;
    let admin = n.admin();
    let (narrow, id1) = n.new_client("narrow");
    let (wide, id2) = n.new_client("wide");
    write_policy(&admin, "narrow", &["/v1/key/*"], &[]).await;
    write_policy(&admin, "wide", &["/v1/key/*/*"], &[]).await;
    assign(&admin, "narrow", &id1).await;
    assign(&admin, "wide", &id2).await;
    assert!(!allowed(&narrow, Method::PUT, "/v1/key/create/k").await);
    assert!(allowed(&wide, Method::PUT, "/v1/key/create/k").await);
    assert!(
        allowed(&wide, Method::GET, "/v1/key/list").await,
        "bare list is /v1/key/list/"
    );
    assert!(!allowed(&wide, Method::GET, "/v1/policy/list/").await);
    let r = call(
        &admin,
        Method::POST,
        "/v1/policy/write/bad",
        r#"{"allow":["/v1/key/[ab]"]}"#,
    )
    .await;
    assert_eq!(r.status, 400, "bracket classes are refused: {}", r.text());
}

#[tokio::test]
async fn policy_and_identity_endpoints() {
    let n = TestNode::dev().await;
    let admin = n.admin();
    let (app, id) = n.new_client("app");
    // Without a policy: 403 on everything but self/describe, which answers 200.
    assert_error(
        &call(&app, Method::GET, "/v1/key/list/*", "").await,
        403,
        "not authorized: insufficient permissions",
    );
    let me = json(&call(&app, Method::GET, "/v1/identity/self/describe", "").await);
    assert_eq!(me["identity"], id.as_str());
    assert!(me.get("policy").is_none());

    write_policy(
        &admin,
        "reader",
        &["/v1/key/list/*", "/v1/identity/self/describe"],
        &["/v1/key/delete/*"],
    )
    .await;
    assign(&admin, "reader", &id).await;
    let me = json(&call(&app, Method::GET, "/v1/identity/self/describe", "").await);
    assert_eq!(me["policy"]["name"], "reader");
    assert_eq!(
        me["policy"]["allow"]["/v1/key/list/*"],
        serde_json::json!({})
    );

    let p = json(&call(&admin, Method::GET, "/v1/policy/read/reader", "").await);
    assert_eq!(p["name"], "reader");
    assert_eq!(p["deny"], serde_json::json!({"/v1/key/delete/*": {}}));
    let d = json(&call(&admin, Method::GET, "/v1/policy/describe/reader", "").await);
    assert_eq!(d["name"], "reader");
    assert!(d["created_by"].as_str().unwrap().len() == 64);
    let l = json(&call(&admin, Method::GET, "/v1/policy/list/*", "").await);
    assert_eq!(l["names"], serde_json::json!(["reader"]));
    assert_eq!(l["continue_at"], "");
    assert_error(
        &call(&admin, Method::GET, "/v1/policy/read/none", "").await,
        404,
        "policy does not exist",
    );

    let i = json(
        &call(
            &admin,
            Method::GET,
            &format!("/v1/identity/describe/{id}"),
            "",
        )
        .await,
    );
    assert_eq!(i["policy"], "reader");
    let admin_id =
        json(&call(&admin, Method::GET, "/v1/identity/self/describe", "").await)["identity"]
            .as_str()
            .unwrap()
            .to_owned();
    let ai = json(
        &call(
            &admin,
            Method::GET,
            &format!("/v1/identity/describe/{admin_id}"),
            "",
        )
        .await,
    );
    assert_eq!(ai["admin"], true);
    let ids = json(&call(&admin, Method::GET, "/v1/identity/list/*", "").await);
    let ids: Vec<String> = serde_json::from_value(ids["identities"].clone()).unwrap();
    assert!(ids.contains(&id) && ids.contains(&admin_id), "{ids:?}");

    // Assign rules: not to the admin, not to oneself.
    let body = serde_json::json!({ "identity": admin_id }).to_string();
    assert_error(
        &call(&admin, Method::POST, "/v1/policy/assign/reader", &body).await,
        400,
        "cannot assign policy to system admin",
    );
    assert_error(
        &call(
            &admin,
            Method::POST,
            "/v1/policy/assign/none",
            &serde_json::json!({"identity": "abc"}).to_string(),
        )
        .await,
        404,
        "policy does not exist",
    );
    // The older spelling assigns too.
    let (_, id2) = n.new_client("two");
    let r = call(
        &admin,
        Method::POST,
        &format!("/v1/identity/assign/reader/{id2}"),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Identity delete revokes at once.
    assert_eq!(
        call(
            &admin,
            Method::DELETE,
            &format!("/v1/identity/delete/{id}"),
            ""
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(&app, Method::GET, "/v1/key/list/*", "").await.status,
        403
    );
    assert_error(
        &call(
            &admin,
            Method::DELETE,
            &format!("/v1/identity/forget/{id}"),
            "",
        )
        .await,
        404,
        "identity does not exist",
    );

    // Deleting a policy removes its assignments.
    assert_eq!(
        call(&admin, Method::DELETE, "/v1/policy/delete/reader", "")
            .await
            .status,
        200
    );
    assert_error(
        &call(
            &admin,
            Method::GET,
            &format!("/v1/identity/describe/{id2}"),
            "",
        )
        .await,
        404,
        "identity does not exist",
    );
}

#[tokio::test]
async fn enclaves_scope_everything() {
    let n = TestNode::dev().await;
    let admin = n.admin();
    let (app, id) = n.new_client("app");
    write_policy(&admin, "all-keys", &["/v1/key/*/*"], &[]).await;
    assign(&admin, "all-keys", &id).await;
    assert_eq!(
        call(&app, Method::PUT, "/v1/key/create/k", "").await.status,
        200
    );

    // Only the admin makes enclaves.
    assert_eq!(
        call(&app, Method::PUT, "/v1/enclave/create/tenant", "")
            .await
            .status,
        403
    );
    assert_eq!(
        call(&admin, Method::POST, "/v1/enclave/create/tenant", "")
            .await
            .status,
        200
    );
    assert_error(
        &call(&admin, Method::POST, "/v1/enclave/create/tenant", "").await,
        400,
        "enclave already exists",
    );
    let d = json(&call(&admin, Method::GET, "/v1/enclave/describe/tenant", "").await);
    assert_eq!(d["name"], "tenant");
    let l = json(&call(&admin, Method::GET, "/v1/enclave/list/*", "").await);
    assert_eq!(l["names"], serde_json::json!(["default", "tenant"]));

    // The app's policy lives in `default`; in `tenant` it has none.
    let tenant_app = app.with_enclave("tenant").unwrap();
    assert_eq!(
        call(&tenant_app, Method::PUT, "/v1/key/create/k", "")
            .await
            .status,
        403
    );
    let q = call(&app, Method::PUT, "/v1/key/create/k2?enclave=tenant", "").await;
    assert_eq!(q.status, 403, "the query selects the enclave too");
    let tenant_admin = admin.with_enclave("tenant").unwrap();
    assert_eq!(
        call(&tenant_admin, Method::PUT, "/v1/key/create/k", "")
            .await
            .status,
        200,
        "names are per enclave"
    );
    assert_eq!(
        json(&call(&tenant_admin, Method::GET, "/v1/key/list/*", "").await)["names"],
        serde_json::json!(["k"])
    );
    // An enclave that holds keys needs force.
    let r = call(&admin, Method::DELETE, "/v1/enclave/delete/tenant", "").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        call(
            &admin,
            Method::DELETE,
            "/v1/enclave/delete/tenant?force=true",
            ""
        )
        .await
        .status,
        200
    );
    assert_error(
        &call(&tenant_admin, Method::GET, "/v1/key/describe/k", "").await,
        404,
        "enclave does not exist",
    );
    assert_error(
        &call(&admin, Method::GET, "/v1/enclave/describe/tenant", "").await,
        404,
        "enclave does not exist",
    );
    // The default enclave still has its key.
    assert_eq!(
        call(&admin, Method::GET, "/v1/key/describe/k", "")
            .await
            .status,
        200
    );
}
