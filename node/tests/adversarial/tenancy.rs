//! Attack: a tenant leaves its enclave. Given a policy in enclave `tenant` that lets it manage
//! policies and keys, the tenant rewrote that very policy to reach `/v1/cluster/*`,
//! `/v1/enclave/*` and `/v1/metrics`, then read the whole-cluster snapshot and removed a voter
//! with `Kes-Enclave: tenant`. Whole-cluster routes are now authorised in the default enclave
//! only, admin-only changes are refused before their first step, and nobody but an admin may
//! change the policy that governs itself.

use crate::support::*;
use kes_cluster::{Client, Method, Response};

/// The ways a request names an enclave.
const SELECTORS: [(&str, &str); 2] = [("header", "Kes-Enclave"), ("query", "enclave")];

async fn in_enclave(c: &Client, how: &str, method: Method, path: &str, body: &str) -> Response {
    let result = match how {
        "header" => {
            c.request(method, path, &[("Kes-Enclave", "tenant")], body.to_owned())
                .await
        }
        _ => {
            let sep = if path.contains('?') { '&' } else { '?' };
            let path = format!("{path}{sep}enclave=tenant");
            c.request(method, &path, &[], body.to_owned()).await
        }
    };
    result.unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A dev node with enclave `tenant`, administered by `enclave_admin`, where `tenant` holds
/// the policy `self` (policies and keys) and `enclave_admin` holds nothing.
struct Setup {
    node: TestNode,
    tenant: Client,
    enclave_admin: Client,
}

async fn setup() -> Setup {
    let node = TestNode::dev().await;
    let admin = node.admin();
    let (tenant, tenant_id) = node.new_client("tenant");
    let (enclave_admin, enclave_admin_id) = node.new_client("enclave-admin");
    let body = format!(r#"{{"admin":"{enclave_admin_id}"}}"#);
    let r = call(&admin, Method::POST, "/v1/enclave/create/tenant", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let described = json(&call(&admin, Method::GET, "/v1/enclave/describe/tenant", "").await);
    assert_eq!(described["admin"], enclave_admin_id.as_str());
    let policy = r#"{"allow":["/v1/policy/*/*","/v1/key/*/*"]}"#;
    let r = in_enclave(
        &enclave_admin,
        "header",
        Method::POST,
        "/v1/policy/write/self",
        policy,
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "the enclave admin writes policies in its enclave: {}",
        r.text()
    );
    let assign = format!(r#"{{"identity":"{tenant_id}"}}"#);
    let r = in_enclave(
        &enclave_admin,
        "header",
        Method::POST,
        "/v1/policy/assign/self",
        &assign,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    Setup {
        node,
        tenant,
        enclave_admin,
    }
}

/// Whole-cluster routes a tenant tried, with the method each takes.
fn cluster_routes(node_id: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/v1/cluster/snapshot".into()),
        (Method::GET, "/v1/cluster/status".into()),
        (Method::GET, "/v1/cluster/seal/status".into()),
        (Method::POST, "/v1/cluster/seal/rekey".into()),
        (Method::GET, "/v1/enclave/list/*".into()),
        (Method::GET, "/v1/enclave/describe/tenant".into()),
        (Method::DELETE, "/v1/enclave/delete/tenant".into()),
        (Method::GET, "/v1/metrics".into()),
        (Method::GET, "/v1/status".into()),
        (Method::DELETE, format!("/v1/cluster/remove/{node_id}")),
    ]
}

async fn node_ids(admin: &Client) -> Vec<String> {
    let status = json(&call(admin, Method::GET, "/v1/cluster/status", "").await);
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].to_string())
        .collect()
}

#[tokio::test]
async fn a_tenant_cannot_widen_its_own_policy() {
    let s = setup().await;
    let wider = r#"{"allow":["/v1/policy/*/*","/v1/key/*/*","/v1/cluster/*/*","/v1/enclave/*/*","/v1/metrics"]}"#;
    for (how, _) in SELECTORS {
        let r = in_enclave(&s.tenant, how, Method::POST, "/v1/policy/write/self", wider).await;
        assert_eq!(r.status, 403, "{how}: {}", r.text());
        let r = in_enclave(&s.tenant, how, Method::DELETE, "/v1/policy/delete/self", "").await;
        assert_eq!(r.status, 403, "{how}: {}", r.text());
        let r = in_enclave(
            &s.tenant,
            how,
            Method::POST,
            "/v1/policy/assign/self",
            &format!(r#"{{"identity":"{}"}}"#, "ab".repeat(32)),
        )
        .await;
        assert_eq!(r.status, 403, "{how}: {}", r.text());
    }
    let read = in_enclave(&s.tenant, "header", Method::GET, "/v1/policy/read/self", "").await;
    let policy = json(&read);
    assert!(policy["allow"].get("/v1/cluster/*/*").is_none(), "{policy}");
    // The tenant still manages other policies and keys of its enclave.
    let r = in_enclave(
        &s.tenant,
        "query",
        Method::POST,
        "/v1/policy/write/app",
        r#"{"allow":["/v1/key/list/*"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = in_enclave(&s.tenant, "query", Method::POST, "/v1/key/create/k", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn whole_cluster_routes_ignore_the_enclave_a_request_names() {
    let s = setup().await;
    let admin = s.node.admin();
    let before = node_ids(&admin).await;
    // Even the admin writing the widest policy in the tenant's enclave gives it no reach
    // outside: cluster routes are authorised in the default enclave.
    let widest = r#"{"allow":["/v1/*","/v1/*/*","/v1/*/*/*","/v1/*/*/*/*"]}"#;
    let hdr = [("Kes-Enclave", "tenant")];
    let r = admin
        .request(
            Method::POST,
            "/v1/policy/write/self",
            &hdr,
            widest.to_owned(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    for who in [&s.tenant, &s.enclave_admin] {
        for (how, _) in SELECTORS {
            for (method, path) in cluster_routes(&before[0]) {
                let r = in_enclave(who, how, method.clone(), &path, "").await;
                assert_eq!(r.status, 403, "{how} {method} {path}: {}", r.text());
            }
        }
    }
    assert_eq!(node_ids(&admin).await, before, "no member was removed");
    let r = call(&admin, Method::GET, "/v1/enclave/describe/tenant", "").await;
    assert_eq!(r.status, 200, "the enclave survives");
    // Within its enclave the widened policy works, so the 403s above are the scope rule.
    let r = in_enclave(&s.tenant, "header", Method::GET, "/v1/key/list/*", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn an_enclave_admin_administers_only_its_enclave() {
    let s = setup().await;
    let ea = &s.enclave_admin;
    for (how, _) in SELECTORS {
        let r = in_enclave(
            ea,
            how,
            Method::POST,
            &format!("/v1/key/create/k-{how}"),
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{how}: {}", r.text());
        let r = in_enclave(ea, how, Method::GET, "/v1/identity/list/*", "").await;
        assert_eq!(r.status, 200, "{how}: {}", r.text());
    }
    // Outside its enclave it is nobody.
    for (method, path) in [
        (Method::POST, "/v1/key/create/x"),
        (Method::GET, "/v1/key/list/*"),
        (Method::GET, "/v1/policy/list/*"),
        (Method::POST, "/v1/enclave/create/other"),
    ] {
        let r = call(ea, method.clone(), path, "").await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    // It cannot also hold a policy in its own enclave.
    let me = json(&call(ea, Method::GET, "/v1/identity/self/describe", "").await);
    let assign = format!(r#"{{"identity":{}}}"#, me["identity"]);
    let r = s
        .node
        .admin()
        .request(
            Method::POST,
            "/v1/policy/assign/self",
            &[("Kes-Enclave", "tenant")],
            assign,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test]
async fn a_deny_on_the_canonical_path_also_refuses_its_aliases() {
    let n = TestNode::dev().await;
    let admin = n.admin();
    let (app, app_id) = n.new_client("app");
    assert_eq!(
        call(&admin, Method::POST, "/v1/key/create/secret", "")
            .await
            .status,
        200
    );
    let victim = "cd".repeat(32);
    let r = call(
        &admin,
        Method::POST,
        "/v1/policy/write/victim",
        r#"{"allow":["/v1/key/list/*"]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        &admin,
        Method::POST,
        "/v1/policy/assign/victim",
        &format!(r#"{{"identity":"{victim}"}}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    let policy = r#"{"allow":["/v1/key/*/*","/v1/key/bulk/decrypt/*","/v1/identity/*/*"],
                     "deny":["/v1/key/decrypt/secret","/v1/identity/delete/*"]}"#;
    assert_eq!(
        call(&admin, Method::POST, "/v1/policy/write/app", policy)
            .await
            .status,
        200
    );
    let assign = format!(r#"{{"identity":"{app_id}"}}"#);
    assert_eq!(
        call(&admin, Method::POST, "/v1/policy/assign/app", &assign)
            .await
            .status,
        200
    );

    let r = call(
        &app,
        Method::DELETE,
        &format!("/v1/identity/forget/{victim}"),
        "",
    )
    .await;
    assert_eq!(r.status, 403, "forget is delete: {}", r.text());
    let r = call(
        &app,
        Method::DELETE,
        &format!("/v1/identity/delete/{victim}"),
        "",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let dek = json(&call(&admin, Method::POST, "/v1/key/generate/secret", "{}").await);
    let bulk = format!(r#"[{{"ciphertext":{}}}]"#, dek["ciphertext"]);
    let r = call(&app, Method::POST, "/v1/key/bulk/decrypt/secret", &bulk).await;
    assert_eq!(r.status, 403, "bulk decrypt is decrypt: {}", r.text());
    let r = call(
        &admin,
        Method::GET,
        &format!("/v1/identity/describe/{victim}"),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "the victim keeps its assignment");
}
