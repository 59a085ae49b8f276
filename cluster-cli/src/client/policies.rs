//! The policy routes: `/v1/policy/*`.

use hyper::Method;
use serde_json::json;

use super::path::segment;
use super::{Client, Policy, PolicyDetails, PolicyInfo};
use crate::error::{Error, Result};

impl Client {
    /// Creates or replaces policy `name`. Replacing keeps its assignments.
    pub async fn write_policy(&self, name: &str, policy: &Policy) -> Result<()> {
        let body = serde_json::to_value(policy).map_err(|e| Error::Protocol(e.to_string()))?;
        self.call(
            Method::POST,
            &format!("/v1/policy/write/{}", segment(name)),
            Some(body),
        )
        .await?;
        Ok(())
    }

    /// Policy `name` with its patterns.
    pub async fn read_policy(&self, name: &str) -> Result<PolicyDetails> {
        let mut details: PolicyDetails = self
            .call(
                Method::GET,
                &format!("/v1/policy/read/{}", segment(name)),
                None,
            )
            .await?
            .json()?;
        if details.name.is_empty() {
            details.name = name.to_string();
        }
        Ok(details)
    }

    /// Policy `name`'s metadata.
    pub async fn describe_policy(&self, name: &str) -> Result<PolicyInfo> {
        let mut info: PolicyInfo = self
            .call(
                Method::GET,
                &format!("/v1/policy/describe/{}", segment(name)),
                None,
            )
            .await?
            .json()?;
        if info.name.is_empty() {
            info.name = name.to_string();
        }
        Ok(info)
    }

    /// All policy names starting with `prefix` (empty or `*`: all).
    pub async fn list_policies(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_all("/v1/policy/list/", prefix).await
    }

    /// Assigns `policy` to `identity` (an identity has at most one policy).
    pub async fn assign_policy(&self, policy: &str, identity: &str) -> Result<()> {
        let body = json!({ "identity": identity });
        self.call(
            Method::POST,
            &format!("/v1/policy/assign/{}", segment(policy)),
            Some(body),
        )
        .await?;
        Ok(())
    }

    /// Deletes policy `name` and its assignments.
    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        self.call(
            Method::DELETE,
            &format!("/v1/policy/delete/{}", segment(name)),
            None,
        )
        .await?;
        Ok(())
    }
}
