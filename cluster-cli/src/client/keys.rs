//! The key routes: `/v1/key/*`.
//!
//! Writes use POST, as the KES SDK does: every KES era accepts POST on these
//! routes, while PUT only exists from late 2023 on. HMAC is PUT (its route is
//! that recent, and the SDK sends PUT).

use hyper::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::path::segment;
use super::{Client, Dek, KeyInfo, ListPage, b64, unb64};
use crate::error::Result;

impl Client {
    /// Creates a new random key `name`. Fails with 400 `key already exists`.
    pub async fn create_key(&self, name: &str) -> Result<()> {
        self.call(
            Method::POST,
            &format!("/v1/key/create/{}", segment(name)),
            None,
        )
        .await?;
        Ok(())
    }

    /// Imports `key` (32 bytes) as `name`; `cipher` is `AES256` or `ChaCha20`.
    pub async fn import_key(&self, name: &str, key: &[u8], cipher: &str) -> Result<()> {
        let body = json!({ "key": b64(key), "cipher": cipher });
        self.call(
            Method::POST,
            &format!("/v1/key/import/{}", segment(name)),
            Some(body),
        )
        .await?;
        Ok(())
    }

    /// Describes key `name`.
    pub async fn describe_key(&self, name: &str) -> Result<KeyInfo> {
        self.call(
            Method::GET,
            &format!("/v1/key/describe/{}", segment(name)),
            None,
        )
        .await?
        .json()
    }

    /// Deletes key `name`.
    pub async fn delete_key(&self, name: &str) -> Result<()> {
        self.call(
            Method::DELETE,
            &format!("/v1/key/delete/{}", segment(name)),
            None,
        )
        .await?;
        Ok(())
    }

    /// All key names starting with `prefix` (empty or `*`: all), following
    /// `continue_at` across pages.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_all("/v1/key/list/", prefix).await
    }

    /// One page of key names: from `continue_at` (empty: the start), at most
    /// `limit` names when given.
    pub async fn list_keys_page(
        &self,
        prefix: &str,
        continue_at: &str,
        limit: Option<usize>,
    ) -> Result<ListPage> {
        self.list_page("/v1/key/list/", prefix, continue_at, limit)
            .await
    }

    /// Encrypts `plaintext` with key `name`; `context` is bound as associated
    /// data and must be given again to decrypt.
    pub async fn encrypt(
        &self,
        name: &str,
        plaintext: &[u8],
        context: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        self.to_ciphertext("encrypt", name, ("plaintext", plaintext), context)
            .await
    }

    /// Calls `/v1/key/<route>/<name>` with `input` (a field name and its bytes, base64) and
    /// `context`, for the ciphertext it answers.
    async fn to_ciphertext(
        &self,
        route: &str,
        name: &str,
        input: (&str, &[u8]),
        context: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        #[derive(Deserialize)]
        struct Answer {
            ciphertext: String,
        }
        let mut body = Map::new();
        body.insert(input.0.into(), Value::String(b64(input.1)));
        insert_context(&mut body, context);
        let answer: Answer = self
            .call(
                Method::POST,
                &format!("/v1/key/{route}/{}", segment(name)),
                Some(Value::Object(body)),
            )
            .await?
            .json()?;
        unb64("ciphertext", &answer.ciphertext)
    }

    /// Generates a data encryption key sealed by key `name`.
    pub async fn generate(&self, name: &str, context: Option<&[u8]>) -> Result<Dek> {
        #[derive(Deserialize)]
        struct Answer {
            plaintext: String,
            ciphertext: String,
        }
        let mut body = Map::new();
        insert_context(&mut body, context);
        let answer: Answer = self
            .call(
                Method::POST,
                &format!("/v1/key/generate/{}", segment(name)),
                Some(Value::Object(body)),
            )
            .await?
            .json()?;
        Ok(Dek {
            plaintext: unb64("plaintext", &answer.plaintext)?,
            ciphertext: unb64("ciphertext", &answer.ciphertext)?,
        })
    }

    /// Decrypts `ciphertext` with key `name` and the context it was sealed with.
    pub async fn decrypt(
        &self,
        name: &str,
        ciphertext: &[u8],
        context: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        #[derive(Deserialize)]
        struct Answer {
            plaintext: String,
        }
        let mut body = Map::new();
        body.insert("ciphertext".into(), Value::String(b64(ciphertext)));
        insert_context(&mut body, context);
        let answer: Answer = self
            .call(
                Method::POST,
                &format!("/v1/key/decrypt/{}", segment(name)),
                Some(Value::Object(body)),
            )
            .await?
            .json()?;
        unb64("plaintext", &answer.plaintext)
    }

    /// Adds a version to key `name` (kes-cluster); answers its number. With `to`, only to
    /// make version `to` the newest: a key already there is left as it is, so a retry is safe.
    pub async fn rotate_key(&self, name: &str, to: Option<u32>) -> Result<u32> {
        #[derive(Deserialize)]
        struct Answer {
            version: u32,
        }
        let path = format!("/v1/key/rotate/{}", segment(name));
        let body = to.map(|version| json!({ "version": version }));
        let answer: Answer = self.call(Method::PUT, &path, body).await?.json()?;
        Ok(answer.version)
    }

    /// Has key `name` rotated automatically every `every` ("720h"; "off" stops it), from now
    /// on (kes-cluster); answers the period as the server shows it.
    pub async fn set_key_rotation(&self, name: &str, every: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Answer {
            rotate_every: String,
        }
        let path = format!("/v1/key/rotation/{}", segment(name));
        let body = json!({ "rotate_every": every });
        let answer: Answer = self.call(Method::PUT, &path, Some(body)).await?.json()?;
        Ok(answer.rotate_every)
    }

    /// Deletes key `name`'s versions below `below` for good (kes-cluster); answers the kept.
    pub async fn retire_key_versions(&self, name: &str, below: u32) -> Result<Vec<u32>> {
        #[derive(Deserialize)]
        struct Answer {
            versions: Vec<u32>,
        }
        let path = format!("/v1/key/retire/{}", segment(name));
        let body = json!({ "below": below });
        let answer: Answer = self.call(Method::PUT, &path, Some(body)).await?.json()?;
        Ok(answer.versions)
    }

    /// Makes key `name`'s versions below `min` refuse to decrypt (kes-cluster; 0: none).
    pub async fn set_key_min_version(&self, name: &str, min: u32) -> Result<()> {
        let path = format!("/v1/key/min-version/{}", segment(name));
        self.call(Method::PUT, &path, Some(json!({ "decrypt": min })))
            .await?;
        Ok(())
    }

    /// `ciphertext` of key `name` re-encrypted under its newest version (kes-cluster).
    pub async fn rewrap(
        &self,
        name: &str,
        ciphertext: &[u8],
        context: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        self.to_ciphertext("rewrap", name, ("ciphertext", ciphertext), context)
            .await
    }

    /// HMAC-SHA256 of `message` under key `name`'s HMAC key.
    pub async fn hmac(&self, name: &str, message: &[u8]) -> Result<Vec<u8>> {
        #[derive(Deserialize)]
        struct Answer {
            hmac: String,
        }
        let body = json!({ "message": b64(message) });
        let answer: Answer = self
            .call(
                Method::PUT,
                &format!("/v1/key/hmac/{}", segment(name)),
                Some(body),
            )
            .await?
            .json()?;
        unb64("hmac", &answer.hmac)
    }

    /// Every name of a listing route, page after page.
    pub(crate) async fn list_all(&self, route: &str, prefix: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut continue_at = String::new();
        loop {
            let page = self.list_page(route, prefix, &continue_at, None).await?;
            // A server that ignores `continue_at` would repeat the page forever.
            if !continue_at.is_empty() && page.continue_at == continue_at {
                break;
            }
            names.extend(page.names);
            if page.continue_at.is_empty() {
                break;
            }
            continue_at = page.continue_at;
        }
        Ok(names)
    }

    /// One page of a listing route (`route` ends with `/`).
    pub(crate) async fn list_page(
        &self,
        route: &str,
        prefix: &str,
        continue_at: &str,
        limit: Option<usize>,
    ) -> Result<ListPage> {
        let mut path = format!("{route}{}", segment(prefix));
        let mut query = Vec::new();
        if !continue_at.is_empty() {
            query.push(format!("continue_at={}", segment(continue_at)));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        self.call(Method::GET, &path, None).await?.json()
    }
}

/// Adds `context` unless it is absent or empty (as the SDK does).
fn insert_context(body: &mut Map<String, Value>, context: Option<&[u8]>) {
    if let Some(context) = context.filter(|c| !c.is_empty()) {
        body.insert("context".into(), Value::String(b64(context)));
    }
}
