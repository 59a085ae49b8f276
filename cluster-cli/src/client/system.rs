//! The server-wide routes: status, readiness, metrics, version, API list.

use hyper::Method;

use super::{ApiRoute, Client, Status, Version};
use crate::error::Result;

impl Client {
    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status> {
        self.call(Method::GET, "/v1/status", None).await?.json()
    }

    /// `GET /v1/ready`: `Ok` when the server is ready to serve.
    pub async fn ready(&self) -> Result<()> {
        self.call(Method::GET, "/v1/ready", None).await?;
        Ok(())
    }

    /// `GET /v1/metrics`: Prometheus text format.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self.call(Method::GET, "/v1/metrics", None).await?.text())
    }

    /// `GET /version` (needs no authorisation).
    pub async fn version(&self) -> Result<Version> {
        self.call(Method::GET, "/version", None).await?.json()
    }

    /// `GET /v1/api`: the server's routes.
    pub async fn api(&self) -> Result<Vec<ApiRoute>> {
        self.call(Method::GET, "/v1/api", None).await?.json()
    }
}
