//! List answers: the current JSON form, or ndjson when the client asks for it, with real
//! pagination when the client asks for a `?limit=`.

use super::error::json;
use super::{ApiError, Req, names};
use crate::state::ListPage;
use axum::body::Body;
use axum::http::{HeaderValue, Response, header};

/// The paging a list request asks for.
#[derive(Debug)]
pub(super) struct ListArgs {
    /// Names must start with this.
    pub prefix: String,
    /// Resume at this name.
    pub start: Option<String>,
    /// At most this many names; `None` means all.
    pub limit: Option<usize>,
}

/// Reads the prefix from the resource and the paging from the query.
pub(super) fn args(req: &Req) -> Result<ListArgs, ApiError> {
    let prefix = names::list_prefix(&req.resource)?;
    let limit = match req.query("limit") {
        None | Some("") => None,
        Some(l) => Some(l.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request(format!("invalid list limit '{l}': use a positive number"))
        })?),
    };
    let start = req
        .query("continue_at")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok(ListArgs {
        prefix,
        start,
        limit,
    })
}

/// Renders a page. `field` is `names` or `identities`; `always_continue` keeps an empty
/// `continue_at` in the JSON, as KES's policy and identity lists do.
pub(super) fn render(
    req: &Req,
    page: ListPage,
    field: &str,
    ndjson_field: &str,
    always_continue: bool,
) -> Response<Body> {
    if req.wants_ndjson() {
        let mut body = String::new();
        for n in &page.names {
            body.push_str(&serde_json::json!({ ndjson_field: n }).to_string());
            body.push('\n');
        }
        let mut resp = Response::new(Body::from(body));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return resp;
    }
    let mut obj = serde_json::Map::new();
    obj.insert(field.to_owned(), serde_json::json!(page.names));
    match page.continue_at {
        Some(c) => {
            obj.insert("continue_at".into(), c.into());
        }
        None if always_continue => {
            obj.insert("continue_at".into(), "".into());
        }
        None => {}
    }
    json(&obj)
}
