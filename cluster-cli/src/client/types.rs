//! The KES API's JSON shapes, as the typed client returns them.
//!
//! Decoding is lenient the way Go's `encoding/json` is for KES clients:
//! missing fields take defaults and unknown fields are ignored, so answers of
//! older and newer servers both decode. Times stay RFC 3339 strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// `GET /v1/key/describe/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyInfo {
    /// Key name.
    pub name: String,
    /// `AES256` or `ChaCha20` (older servers: `AES256-GCM_SHA256`, `XCHACHA20-POLY1305`).
    pub algorithm: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Identity that created the key.
    pub created_by: String,
    /// The newest version (kes-cluster; 0 from servers without versions).
    pub version: u32,
    /// The retained versions (kes-cluster; empty from servers without versions).
    pub versions: Vec<KeyVersionInfo>,
}

/// One retained version in [`KeyInfo::versions`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyVersionInfo {
    /// The version number.
    pub version: u32,
    /// When it was made, RFC 3339.
    pub created_at: String,
}

/// A data encryption key from `/v1/key/generate/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dek {
    /// The 32-byte key to use; never store it.
    pub plaintext: Vec<u8>,
    /// The key sealed by the KES key; store this and decrypt it later.
    pub ciphertext: Vec<u8>,
}

/// One page of a listing (`names` or `identities`, plus `continue_at`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage {
    /// Names (keys, policies, enclaves) or identities, sorted.
    #[serde(alias = "identities", deserialize_with = "null_as_empty", default)]
    pub names: Vec<String>,
    /// Where the next page starts; empty on the last page.
    #[serde(default)]
    pub continue_at: String,
}

/// A policy as written: path patterns allowed and denied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Allowed path patterns, e.g. `/v1/key/generate/minio-*`.
    #[serde(deserialize_with = "patterns", default)]
    pub allow: Vec<String>,
    /// Denied path patterns; deny wins over allow.
    #[serde(deserialize_with = "patterns", default)]
    pub deny: Vec<String>,
}

/// `GET /v1/policy/read/<name>`: the policy with its metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyDetails {
    /// Policy name.
    pub name: String,
    /// Allowed path patterns.
    #[serde(deserialize_with = "patterns")]
    pub allow: Vec<String>,
    /// Denied path patterns.
    #[serde(deserialize_with = "patterns")]
    pub deny: Vec<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Identity that created it.
    pub created_by: String,
}

/// `GET /v1/policy/describe/<name>` and `GET /v1/enclave/describe/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyInfo {
    /// Name.
    pub name: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Identity that created it.
    pub created_by: String,
}

/// `GET /v1/enclave/describe/<name>`.
pub type EnclaveInfo = PolicyInfo;

/// `GET /v1/identity/describe/<identity>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityInfo {
    /// The identity (filled in by the client: the server does not echo it).
    pub identity: String,
    /// Whether this is the admin identity.
    pub admin: bool,
    /// Name of the assigned policy; empty for the admin.
    pub policy: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Identity that created it.
    pub created_by: String,
}

/// `GET /v1/identity/self/describe`: who the server thinks we are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SelfIdentity {
    /// Our identity.
    pub identity: String,
    /// Whether we are the admin.
    pub admin: bool,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Identity that created ours.
    pub created_by: String,
    /// Our policy, if one is assigned.
    pub policy: Option<PolicyDetails>,
}

impl<'de> Deserialize<'de> for SelfIdentity {
    /// Reads the server's shape (`"policy": {name, allow, deny, …}`) as well
    /// as the SDK's (`"policy": "<name>"` with top-level `allow`/`deny`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum PolicyField {
            Name(String),
            Details(PolicyDetails),
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Wire {
            identity: String,
            admin: bool,
            created_at: String,
            created_by: String,
            policy: Option<PolicyField>,
            policy_name: String,
            #[serde(deserialize_with = "patterns")]
            allow: Vec<String>,
            #[serde(deserialize_with = "patterns")]
            deny: Vec<String>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let policy = match wire.policy {
            Some(PolicyField::Details(mut details)) => {
                if details.name.is_empty() {
                    details.name = wire.policy_name;
                }
                Some(details)
            }
            Some(PolicyField::Name(name)) => Some(PolicyDetails {
                name,
                allow: wire.allow,
                deny: wire.deny,
                ..PolicyDetails::default()
            }),
            None if !wire.policy_name.is_empty() => Some(PolicyDetails {
                name: wire.policy_name,
                ..PolicyDetails::default()
            }),
            None => None,
        }
        .filter(|p| !(p.name.is_empty() && p.allow.is_empty() && p.deny.is_empty()));
        Ok(SelfIdentity {
            identity: wire.identity,
            admin: wire.admin,
            created_at: wire.created_at,
            created_by: wire.created_by,
            policy,
        })
    }
}

/// `GET /v1/status`: the KES fields, plus whatever else the server adds
/// (kes-cluster nodes add a `cluster` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Server version.
    pub version: String,
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Seconds since the server started.
    #[serde(deserialize_with = "lenient_u64")]
    pub uptime: u64,
    /// Logical CPUs.
    pub num_cpu: u64,
    /// CPUs the server may use.
    pub num_cpu_used: u64,
    /// Heap memory in use, bytes.
    pub mem_heap_used: u64,
    /// Stack memory in use, bytes.
    pub mem_stack_used: u64,
    /// Latency of the last keystore probe (milliseconds), if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keystore_latency: Option<u64>,
    /// The keystore cannot be reached.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keystore_unreachable: bool,
    /// The keystore is unavailable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keystore_unavailable: bool,
    /// kes-cluster's replication view (node, role, term, leader, indexes, peers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `GET /version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Version {
    /// Release name.
    pub version: String,
    /// Source commit.
    pub commit: String,
}

/// One entry of `GET /v1/api`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiRoute {
    /// HTTP method.
    pub method: String,
    /// Path (prefix) of the route.
    pub path: String,
    /// Largest request body, bytes.
    pub max_body: u64,
    /// Route timeout, seconds.
    pub timeout: u64,
}

/// `null` (Go's nil slice) decodes as an empty list.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Policy patterns arrive as a list (older servers) or as an object whose
/// keys are the patterns (current KES: `{"<pattern>":{}}`); `null` is empty.
fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Patterns {
        List(Vec<String>),
        Map(BTreeMap<String, serde::de::IgnoredAny>),
    }
    Ok(match Option::<Patterns>::deserialize(d)? {
        None => Vec::new(),
        Some(Patterns::List(list)) => list,
        Some(Patterns::Map(map)) => map.into_keys().collect(),
    })
}

/// An unsigned number that may come as a float (seconds with fractions).
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    Ok(n.as_u64()
        .or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_policies_in_every_shape() {
        let page: ListPage = serde_json::from_str(r#"{"names":null}"#).unwrap();
        assert!(page.names.is_empty() && page.continue_at.is_empty());
        let page: ListPage =
            serde_json::from_str(r#"{"identities":["a","b"],"continue_at":""}"#).unwrap();
        assert_eq!(page.names, ["a", "b"]);
        let p: PolicyDetails =
            serde_json::from_str(r#"{"name":"p","allow":{"/v1/key/*":{}},"created_at":"t"}"#)
                .unwrap();
        assert_eq!((p.allow, p.deny), (vec!["/v1/key/*".to_string()], vec![]));
        let p: PolicyDetails = serde_json::from_str(r#"{"allow":["a"],"deny":null}"#).unwrap();
        assert_eq!(p.allow, ["a"]);
    }

    #[test]
    fn self_describe_shapes() {
        let admin: SelfIdentity =
            serde_json::from_str(r#"{"identity":"ab","admin":true,"created_at":"t"}"#).unwrap();
        assert!(admin.admin && admin.policy.is_none());
        let server: SelfIdentity =
            serde_json::from_str(r#"{"identity":"ab","policy":{"name":"p","allow":{"/x":{}}}}"#)
                .unwrap();
        assert_eq!(
            server.policy.map(|p| (p.name, p.allow)),
            Some(("p".into(), vec!["/x".into()]))
        );
        let sdk: SelfIdentity =
            serde_json::from_str(r#"{"identity":"ab","policy":"p","deny":{"/y":{}}}"#).unwrap();
        assert_eq!(
            sdk.policy.map(|p| (p.name, p.deny)),
            Some(("p".into(), vec!["/y".into()]))
        );
        let none: SelfIdentity = serde_json::from_str(r#"{"identity":"ab","policy":{}}"#).unwrap();
        assert!(none.policy.is_none());
    }

    #[test]
    fn status_keeps_unknown_fields() {
        let s: Status = serde_json::from_str(
            r#"{"version":"v","uptime":12.7,"num_cpu":2,"cluster":{"role":"leader"},"extra":1}"#,
        )
        .unwrap();
        assert_eq!((s.uptime, s.num_cpu), (12, 2));
        assert_eq!(s.cluster.unwrap()["role"], "leader");
        assert_eq!(s.other["extra"], 1);
    }
}
