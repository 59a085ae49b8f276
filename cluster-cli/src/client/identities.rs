//! The identity routes: `/v1/identity/*`.

use hyper::Method;

use super::path::segment;
use super::{Client, IdentityInfo, SelfIdentity};
use crate::error::Result;

impl Client {
    /// What the server knows about `identity`: admin, or its policy.
    pub async fn describe_identity(&self, identity: &str) -> Result<IdentityInfo> {
        let mut info: IdentityInfo = self
            .call(
                Method::GET,
                &format!("/v1/identity/describe/{}", segment(identity)),
                None,
            )
            .await?
            .json()?;
        if info.identity.is_empty() {
            info.identity = identity.to_string();
        }
        Ok(info)
    }

    /// Who this client is to the server, and its policy.
    pub async fn self_describe(&self) -> Result<SelfIdentity> {
        self.call(Method::GET, "/v1/identity/self/describe", None)
            .await?
            .json()
    }

    /// All identities starting with `prefix` (empty or `*`: all), admin included.
    pub async fn list_identities(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_all("/v1/identity/list/", prefix).await
    }

    /// Removes `identity` (its policy assignment).
    pub async fn delete_identity(&self, identity: &str) -> Result<()> {
        self.call(
            Method::DELETE,
            &format!("/v1/identity/delete/{}", segment(identity)),
            None,
        )
        .await?;
        Ok(())
    }
}
