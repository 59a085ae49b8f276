//! AWS Signature Version 4 for one request, written from AWS's description of the algorithm.
//!
//! ```text
//!  method, path, query, headers, payload ──▶ canonical request ──SHA-256──┐
//!  "AWS4-HMAC-SHA256" ‖ date-time ‖ scope (date/region/service/aws4_request) ──▶ string to sign
//!  secret ──HMAC chain over date, region, service, "aws4_request"──▶ signing key
//!  HMAC(signing key, string to sign) ──hex──▶ Signature=… in the Authorization header
//! ```
//!
//! Hand-written rather than a crate because the maintained one (`aws-sigv4`) brings the smithy
//! runtime crates with it, about 70 packages, for what is a hundred lines over the `hmac` and
//! `sha2` the workspace already builds. Non-features: query-string (presigned) signing, S3's
//! unsigned payloads, chunked signing and SigV4a: a KMS JSON call needs none of them.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An access key pair, and the session token that temporary credentials come with.
pub(super) struct Credentials {
    /// `AWS_ACCESS_KEY_ID`. Not a secret on its own (it appears in CloudTrail), but kept out
    /// of `Debug` all the same so a log line never pairs it with anything.
    pub(super) access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub(super) secret_access_key: Zeroizing<String>,
    /// `AWS_SESSION_TOKEN`, sent as `X-Amz-Security-Token` and signed.
    pub(super) session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// What the signature covers. Header names may be in any case; values are trimmed.
pub(super) struct Request<'a> {
    pub(super) method: &'a str,
    /// Already URI-encoded, e.g. `/`.
    pub(super) path: &'a str,
    /// Already canonical (sorted, encoded); empty for KMS.
    pub(super) query: &'a str,
    pub(super) headers: &'a [(&'a str, &'a str)],
    pub(super) payload: &'a [u8],
    /// `YYYYMMDDTHHMMSSZ`, the value of `X-Amz-Date`.
    pub(super) amz_date: &'a str,
    pub(super) region: &'a str,
    pub(super) service: &'a str,
}

/// The `Authorization` header value for `req`.
pub(super) fn authorization(creds: &Credentials, req: &Request<'_>) -> String {
    let (canonical, signed_headers) = canonical_request(req);
    let scope = scope(req);
    let to_sign = string_to_sign(req.amz_date, &scope, &canonical);
    let key = signing_key(
        &creds.secret_access_key,
        date(req.amz_date),
        req.region,
        req.service,
    );
    let signature = hex::encode(hmac(key.as_ref(), to_sign.as_bytes()));
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    )
}

/// The canonical request and the `SignedHeaders` list. Every header given is signed.
pub(super) fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), collapse_spaces(value)))
        .collect();
    // Sorted by name; a name given twice keeps its values in order, joined by commas.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        match merged.last_mut() {
            Some((last, values)) if *last == name => {
                values.push(',');
                values.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let canonical_headers: String = merged
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_headers = merged
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method,
        req.path,
        req.query,
        hex::encode(Sha256::digest(req.payload))
    );
    (canonical, signed_headers)
}

/// `AWS4-HMAC-SHA256 ‖ date-time ‖ scope ‖ hex(SHA-256(canonical request))`, newline-separated.
pub(super) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The key that signs requests for one day, region and service.
pub(super) fn signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> Zeroizing<[u8; 32]> {
    let mut first = Zeroizing::new(String::with_capacity(4 + secret.len()));
    first.push_str("AWS4");
    first.push_str(secret);
    let k_date = Zeroizing::new(hmac(first.as_bytes(), date.as_bytes()));
    let k_region = Zeroizing::new(hmac(k_date.as_ref(), region.as_bytes()));
    let k_service = Zeroizing::new(hmac(k_region.as_ref(), service.as_bytes()));
    Zeroizing::new(hmac(k_service.as_ref(), b"aws4_request"))
}

fn scope(req: &Request<'_>) -> String {
    format!(
        "{}/{}/{}/aws4_request",
        date(req.amz_date),
        req.region,
        req.service
    )
}

/// `YYYYMMDD`, the first eight characters of the `X-Amz-Date` value.
fn date(amz_date: &str) -> &str {
    amz_date.get(..8).unwrap_or(amz_date)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail. Qualified: `KeyInit` and `Mac`
    // both provide `new_from_slice`.
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Trims a header value and turns each run of spaces into one, as the canonical form wants.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example credentials and request of AWS's SigV4 test suite (`get-vanilla`):
    // `GET / HTTP/1.1`, `Host:example.amazonaws.com`, `X-Amz-Date:20150830T123600Z`,
    // region us-east-1, service `service`, an empty body.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";

    fn example_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: Zeroizing::new(SECRET.to_owned()),
            session_token: None,
        }
    }

    fn request<'a>(method: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method,
            path: "/",
            query: "",
            headers,
            payload: b"",
            amz_date: DATE,
            region: "us-east-1",
            service: "service",
        }
    }

    #[test]
    fn get_vanilla_from_the_aws_test_suite() {
        let headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)];
        let req = request("GET", &headers);

        let (canonical, signed) = canonical_request(&req);
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signed, "host;x-amz-date");
        assert_eq!(
            string_to_sign(DATE, &scope(&req), &canonical),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            authorization(&example_creds(), &req),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn post_header_key_sort_from_the_aws_test_suite() {
        // Headers given out of order and in mixed case must sort by lowercase name.
        let headers = [
            ("X-Amz-Date", DATE),
            ("My-Header1", "value1"),
            ("Host", "example.amazonaws.com"),
        ];
        let req = request("POST", &headers);
        let (canonical, signed) = canonical_request(&req);
        assert_eq!(signed, "host;my-header1;x-amz-date");
        assert!(
            string_to_sign(DATE, &scope(&req), &canonical)
                .ends_with("\n9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65")
        );
    }

    #[test]
    fn header_values_are_trimmed_and_repeated_names_joined() {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("My-Header1", "  a   b  "),
            ("my-header1", "c"),
        ];
        let (canonical, signed) = canonical_request(&request("GET", &headers));
        assert!(canonical.contains("\nmy-header1:a b,c\n"), "{canonical}");
        assert_eq!(signed, "host;my-header1");
    }

    #[test]
    fn debug_hides_credentials() {
        let shown = format!("{:?}", example_creds());
        assert!(!shown.contains("AKID") && !shown.contains("EXAMPLEKEY"));
    }
}
