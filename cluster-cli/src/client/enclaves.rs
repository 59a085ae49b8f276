//! The enclave routes: `/v1/enclave/*`.

use hyper::Method;
use serde_json::{Map, Value};

use super::path::segment;
use super::{Client, EnclaveInfo};
use crate::error::Result;

impl Client {
    /// Creates enclave `name`, optionally with its own admin identity.
    pub async fn create_enclave(&self, name: &str, admin: Option<&str>) -> Result<()> {
        let mut body = Map::new();
        if let Some(admin) = admin {
            body.insert("admin".into(), Value::String(admin.to_string()));
        }
        self.call(
            Method::POST,
            &format!("/v1/enclave/create/{}", segment(name)),
            Some(Value::Object(body)),
        )
        .await?;
        Ok(())
    }

    /// Enclave `name`'s metadata.
    pub async fn describe_enclave(&self, name: &str) -> Result<EnclaveInfo> {
        let mut info: EnclaveInfo = self
            .call(
                Method::GET,
                &format!("/v1/enclave/describe/{}", segment(name)),
                None,
            )
            .await?
            .json()?;
        if info.name.is_empty() {
            info.name = name.to_string();
        }
        Ok(info)
    }

    /// All enclave names starting with `prefix` (empty or `*`: all).
    pub async fn list_enclaves(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_all("/v1/enclave/list/", prefix).await
    }

    /// Deletes enclave `name`; kes-cluster refuses while it still holds keys.
    pub async fn delete_enclave(&self, name: &str) -> Result<()> {
        let path = format!("/v1/enclave/delete/{}", segment(name));
        self.call(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// Deletes enclave `name` together with its keys, policies and
    /// identities (`?force=true`).
    pub async fn delete_enclave_force(&self, name: &str) -> Result<()> {
        let path = format!("/v1/enclave/delete/{}?force=true", segment(name));
        self.call(Method::DELETE, &path, None).await?;
        Ok(())
    }
}
