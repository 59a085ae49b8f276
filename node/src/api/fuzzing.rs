//! The JSON request bodies, decoded the way their handlers decode them, for the cargo-fuzz
//! targets in `fuzz/` (re-exported by [`crate::fuzzing`]). Each arm calls the handler's own
//! decoding step and stops where the handler would first touch the node.

use super::key::{CryptoBody, bulk_items, field, import_body};
use super::policy::{assign_body, write_body};
use super::{ApiError, Req, cluster, key};
use crate::auth::Policy;
use crate::crypto::SecretKey;

/// The route whose body is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiBody {
    /// `PUT /v1/key/import/<name>`.
    KeyImport,
    /// `PUT /v1/key/{encrypt,decrypt,hmac}/<name>`.
    KeyCrypto,
    /// `PUT /v1/key/generate/<name>`, whose body may be empty.
    KeyGenerate,
    /// `POST /v1/key/bulk/decrypt/<name>`.
    KeyBulkDecrypt,
    /// `PUT|POST /v1/policy/write/<name>`.
    PolicyWrite,
    /// `POST /v1/policy/assign/<name>`.
    PolicyAssign,
    /// `POST /v1/cluster/join`.
    ClusterJoin,
    /// `POST /v1/cluster/join-request`.
    ClusterJoinRequest,
    /// `PUT|POST /v1/enclave/create/<name>`, whose body may be empty.
    EnclaveCreate,
}

impl ApiBody {
    /// Every body, so a fuzz input can pick one with its first byte.
    pub const ALL: [ApiBody; 9] = [
        ApiBody::KeyImport,
        ApiBody::KeyCrypto,
        ApiBody::KeyGenerate,
        ApiBody::KeyBulkDecrypt,
        ApiBody::PolicyWrite,
        ApiBody::PolicyAssign,
        ApiBody::ClusterJoin,
        ApiBody::ClusterJoinRequest,
        ApiBody::EnclaveCreate,
    ];
}

/// The base64 fields of an encrypt, decrypt, hmac or generate body, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptoFields {
    /// `plaintext`.
    pub plaintext: zeroize::Zeroizing<Vec<u8>>,
    /// `ciphertext`.
    pub ciphertext: zeroize::Zeroizing<Vec<u8>>,
    /// `context`.
    pub context: zeroize::Zeroizing<Vec<u8>>,
    /// `message`.
    pub message: zeroize::Zeroizing<Vec<u8>>,
}

/// What a handler goes on with once its body is decoded.
#[derive(Debug)]
pub enum DecodedBody {
    /// The key to import.
    Key(SecretKey),
    /// One crypto request.
    Crypto(CryptoFields),
    /// The items of a bulk decrypt.
    Bulk(Vec<CryptoFields>),
    /// A policy that passed validation.
    Policy(Policy),
    /// The identity to assign (checked by the handler after this).
    Identity(String),
    /// The member to join through.
    JoinMember(String),
    /// A join request's node id, KES address and gRPC address.
    JoinRequest(u64, String, String),
    /// The admin of a new enclave (empty: none).
    EnclaveAdmin(String),
}

/// Decodes `body` as the handler of `kind` does, up to its first use of the node.
pub fn decode_api_body(kind: ApiBody, body: &[u8]) -> Result<DecodedBody, ApiError> {
    let req = request_with_body(body);
    const BAD: &str = "invalid request body";
    Ok(match kind {
        ApiBody::KeyImport => DecodedBody::Key(import_body(&req)?),
        ApiBody::KeyCrypto => DecodedBody::Crypto(crypto_fields(&req.json(key::BAD_BODY)?)?),
        ApiBody::KeyGenerate => {
            DecodedBody::Crypto(crypto_fields(&req.json_or_default(key::BAD_BODY)?)?)
        }
        ApiBody::KeyBulkDecrypt => DecodedBody::Bulk(
            bulk_items(&req)?
                .iter()
                .map(crypto_fields)
                .collect::<Result<_, _>>()?,
        ),
        ApiBody::PolicyWrite => DecodedBody::Policy(write_body(&req)?),
        ApiBody::PolicyAssign => DecodedBody::Identity(assign_body(&req)?),
        ApiBody::ClusterJoin => DecodedBody::JoinMember(req.json::<cluster::JoinBody>(BAD)?.member),
        ApiBody::EnclaveCreate => DecodedBody::EnclaveAdmin(super::enclave::create_body(&req)?),
        ApiBody::ClusterJoinRequest => {
            let b: cluster::JoinRequestBody = req.json(BAD)?;
            DecodedBody::JoinRequest(b.node_id, b.http, b.grpc)
        }
    })
}

fn crypto_fields(body: &CryptoBody) -> Result<CryptoFields, ApiError> {
    Ok(CryptoFields {
        plaintext: field(&body.plaintext)?,
        ciphertext: field(&body.ciphertext)?,
        context: field(&body.context)?,
        message: field(&body.message)?,
    })
}

fn request_with_body(body: &[u8]) -> Req {
    Req {
        identity: None,
        enclave: crate::state::DEFAULT_ENCLAVE.to_owned(),
        resource: String::new(),
        path: String::new(),
        query: Vec::new(),
        headers: Default::default(),
        body: bytes::Bytes::copy_from_slice(body),
        body_too_large: false,
        chain: Default::default(),
    }
}
