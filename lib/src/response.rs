//! How every endpoint answers, shaped in one place: each protocol's error format, a body limit
//! enforced from `Content-Length` before any byte is read, `Cache-Control: no-store` on every
//! response of every endpoint and `Retry-After` on every 503.
//!
//! Two error formats exist because the protocols define them: OAuth-style
//! `{"error","error_description"}` (Back-Channel Logout §2.8, also used by the admin API and the
//! FusionAuth webhooks) and RFC 8935's `{"err","description"}` for Security Event Tokens.
//! Descriptions are fixed texts or derived from typed errors; they never echo request content.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::limit::{RequestBodyLimitLayer, ResponseBody};
use tower_http::set_header::SetResponseHeaderLayer;

/// Seconds a sender is asked to wait before retrying after a 503.
pub(crate) const RETRY_AFTER_SECS: u64 = 5;

/// The error format of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `{"error": "...", "error_description": "..."}`.
    OAuth,
    /// RFC 8935 §2.3: `{"err": "...", "description": "..."}`.
    #[cfg_attr(not(feature = "shared-signals"), allow(dead_code))]
    SecurityEvent,
}

/// An error response in `protocol`'s format.
pub(crate) fn error(
    protocol: Protocol,
    status: StatusCode,
    code: &str,
    description: &str,
) -> Response {
    let body = match protocol {
        Protocol::OAuth => json!({ "error": code, "error_description": description }),
        Protocol::SecurityEvent => json!({ "err": code, "description": description }),
    };
    let mut response = json(status, &body);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// A JSON response (without axum's `json` feature, which a dependent would compile for this
/// alone).
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `400 invalid_request` in `protocol`'s format.
pub(crate) fn invalid_request(protocol: Protocol, description: &str) -> Response {
    error(
        protocol,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        description,
    )
}

/// `503 temporarily_unavailable`: the session store cannot be written, nothing was done.
pub(crate) fn unavailable(protocol: Protocol, description: &str) -> Response {
    error(
        protocol,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        description,
    )
}

/// Wrap an endpoint's router: bodies above `max_body` bytes are refused (from `Content-Length`
/// before reading, or as soon as a streamed body passes it) with a 400 in `protocol`'s format,
/// and every response gets `Cache-Control: no-store`, and `Retry-After` when it is a 503.
///
/// One `layer` call with the whole stack: axum boxes (and clones per request) each layer added
/// to a router separately.
pub(crate) fn protect(router: Router, max_body: usize, protocol: Protocol) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(retry_after())
            .layer(no_store())
            .layer(MapResponseLayer::new(
                move |response: axum::http::Response<ResponseBody<Body>>| {
                    shape_refusal(protocol, response)
                },
            ))
            .layer(RequestBodyLimitLayer::new(max_body)),
    )
}

/// [`protect`] for the SCIM endpoint: a body above `max_body` is refused with a SCIM error
/// (`413`, RFC 7644 §3.12).
#[cfg(feature = "scim")]
pub(crate) fn protect_scim(router: Router, max_body: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(retry_after())
            .layer(no_store())
            .layer(MapResponseLayer::new(
                |response: axum::http::Response<ResponseBody<Body>>| {
                    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        return crate::inputs::scim::scim_error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            None,
                            "the request body is too large",
                        );
                    }
                    response.map(Body::new)
                },
            ))
            .layer(RequestBodyLimitLayer::new(max_body)),
    )
}

/// `Cache-Control: no-store` on every response.
pub(crate) fn no_store() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

/// `Retry-After` on every 503 that has none.
pub(crate) fn retry_after() -> SetResponseHeaderLayer<fn(&Response) -> Option<HeaderValue>> {
    SetResponseHeaderLayer::if_not_present(header::RETRY_AFTER, |response: &Response| {
        (response.status() == StatusCode::SERVICE_UNAVAILABLE)
            .then(|| HeaderValue::from(RETRY_AFTER_SECS))
    })
}

/// The body limit answers `413` in plain text; the protocols want their own 400.
fn shape_refusal(
    protocol: Protocol,
    response: axum::http::Response<ResponseBody<Body>>,
) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return invalid_request(protocol, "the request body is too large");
    }
    response.map(Body::new)
}
