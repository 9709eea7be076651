//! How every endpoint answers, shaped in one place: the one refusal type of the inputs
//! ([`Refusal`]) rendered in each protocol's error format, a body limit enforced from
//! `Content-Length` before any byte is read, `Cache-Control: no-store` on every response of every
//! endpoint and `Retry-After` on every 503.
//!
//! Three error formats exist because the protocols define them: OAuth-style
//! `{"error","error_description"}` (Back-Channel Logout §2.8, also used by the admin API, the
//! FusionAuth webhooks and Universal Logout), RFC 8935's `{"err","description"}` for Security
//! Event Tokens, and SCIM's error message (RFC 7644 §3.12). Descriptions are fixed texts or
//! derived from typed errors; they never echo request content.

use std::borrow::Cow;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::limit::{RequestBodyLimitLayer, ResponseBody};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::core::CoreError;

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
    /// RFC 7644 §3.12: `{"schemas": [...Error], "status": "400", "scimType": ..., "detail": ...}`.
    #[cfg_attr(not(feature = "scim"), allow(dead_code))]
    Scim,
}

/// Why an input refused a request: a status, the protocol's error code, a description that
/// never echoes the request, and a stable reason for logs and metrics. Every input refuses with
/// it, and it is rendered in one place for the endpoint's protocol; a [`CoreError`]
/// becomes one in one place (`From`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
#[non_exhaustive]
pub struct Refusal {
    status: StatusCode,
    code: Option<&'static str>,
    description: Cow<'static, str>,
    reason: &'static str,
    challenge: bool,
}

impl Refusal {
    /// A refusal with `status`, the protocol's error `code` (a SCIM `scimType`, which may be
    /// absent) and `description`.
    pub(crate) fn new(
        status: StatusCode,
        code: Option<&'static str>,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            reason: code.unwrap_or("refused"),
            challenge: false,
        }
    }

    /// `400 invalid_request`.
    pub(crate) fn invalid(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            description,
        )
    }

    /// `401` with `code`; with `WWW-Authenticate: Bearer` when the endpoint takes bearer tokens.
    #[cfg_attr(
        not(any(
            feature = "admin",
            feature = "scim",
            feature = "fusionauth",
            feature = "universal-logout"
        )),
        allow(dead_code)
    )]
    pub(crate) fn unauthenticated(
        code: Option<&'static str>,
        description: impl Into<Cow<'static, str>>,
        bearer: bool,
    ) -> Self {
        Self {
            challenge: bearer,
            ..Self::new(StatusCode::UNAUTHORIZED, code, description)
        }
    }

    /// `503 temporarily_unavailable`: nothing was done, retry later.
    pub(crate) fn unavailable(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable"),
            description,
        )
    }

    /// The same refusal, counted and logged under `reason`.
    #[must_use]
    pub(crate) fn because(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The protocol's error code, if any.
    pub fn code(&self) -> Option<&'static str> {
        self.code
    }

    /// What the sender is told.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// A stable label of why, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// Whether the sender should retry later (nothing was done).
    pub fn is_retryable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }

    /// The response in `protocol`'s error format.
    pub(crate) fn render(&self, protocol: Protocol) -> Response {
        let body = match protocol {
            Protocol::OAuth => json!({
                "error": self.code.unwrap_or("invalid_request"),
                "error_description": self.description,
            }),
            Protocol::SecurityEvent => json!({
                "err": self.code.unwrap_or("invalid_request"),
                "description": self.description,
            }),
            Protocol::Scim => {
                let mut body = Map::new();
                body.insert(
                    "schemas".into(),
                    Value::from(vec!["urn:ietf:params:scim:api:messages:2.0:Error"]),
                );
                body.insert("status".into(), self.status.as_u16().to_string().into());
                if let Some(scim_type) = self.code.filter(|c| SCIM_TYPES.contains(c)) {
                    body.insert("scimType".into(), scim_type.into());
                }
                body.insert("detail".into(), self.description.as_ref().into());
                Value::Object(body)
            }
        };
        let content_type = match protocol {
            Protocol::Scim => "application/scim+json",
            _ => "application/json",
        };
        // RFC 8935 §2.3: every failure of a SET delivery is a 400, its `err` says which.
        let status = match protocol {
            Protocol::SecurityEvent if self.status.is_client_error() => StatusCode::BAD_REQUEST,
            _ => self.status,
        };
        let mut response = typed_json(status, content_type, &body);
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The `scimType`s of RFC 7644 §3.12.
const SCIM_TYPES: &[&str] = &[
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
];

/// What a core failure tells the sender, decided once for every input.
impl From<CoreError> for Refusal {
    fn from(error: CoreError) -> Self {
        match &error {
            CoreError::UnknownIssuer | CoreError::UserUnknown | CoreError::Invalid(_) => {
                Self::invalid(error.to_string()).because(error.label())
            }
            CoreError::OutOfScope => Self::new(
                StatusCode::FORBIDDEN,
                Some("access_denied"),
                "the request names sessions this sender may not act on",
            )
            .because(error.label()),
            CoreError::Busy => Self::unavailable(error.to_string()).because(error.label()),
            CoreError::Unavailable(store) => {
                tracing::error!(error = %store, "not applied: the session store is unavailable");
                Self::unavailable("the session store is unavailable; retry later")
                    .because(error.label())
            }
        }
    }
}

impl From<crate::index::StoreError> for Refusal {
    fn from(error: crate::index::StoreError) -> Self {
        CoreError::from(error).into()
    }
}

/// A JSON response (without axum's `json` feature, which a dependent would compile for this
/// alone).
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    typed_json(status, "application/json", body)
}

/// A JSON response with its own content type (`application/scim+json`).
pub(crate) fn typed_json(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}

/// Wrap an endpoint's router: bodies above `max_body` bytes are refused (from `Content-Length`
/// before reading, or as soon as a streamed body passes it) in `protocol`'s format (`400`, or
/// SCIM's `413`), and every response gets `Cache-Control: no-store`, and `Retry-After` when it
/// is a 503.
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

/// The body limit answers `413` in plain text; the protocols want their own.
fn shape_refusal(
    protocol: Protocol,
    response: axum::http::Response<ResponseBody<Body>>,
) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let refusal = match protocol {
            Protocol::Scim => Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                "the request body is too large",
            ),
            _ => Refusal::invalid("the request body is too large"),
        };
        return refusal.because("too_large").render(protocol);
    }
    response.map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    #[tokio::test]
    async fn one_refusal_in_each_protocol() {
        let refusal = Refusal::invalid("the token has expired");
        assert_eq!(
            body(refusal.render(Protocol::OAuth)).await,
            json!({"error": "invalid_request", "error_description": "the token has expired"})
        );
        assert_eq!(
            body(refusal.render(Protocol::SecurityEvent)).await,
            json!({"err": "invalid_request", "description": "the token has expired"})
        );
        let scim = refusal.render(Protocol::Scim);
        assert_eq!(
            scim.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/scim+json"[..])
        );
        assert_eq!(
            body(scim).await,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "400",
                "detail": "the token has expired",
            })
        );
        let taken = Refusal::new(StatusCode::CONFLICT, Some("uniqueness"), "taken");
        assert_eq!(
            body(taken.render(Protocol::Scim)).await["scimType"],
            "uniqueness"
        );
    }

    #[tokio::test]
    async fn core_errors_map_once() {
        let busy = Refusal::from(CoreError::Busy).render(Protocol::OAuth);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(busy.headers().contains_key(header::RETRY_AFTER));
        let scope = Refusal::from(CoreError::OutOfScope);
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        assert_eq!(scope.reason(), "out_of_scope");
        let down = Refusal::from(CoreError::Unavailable(
            crate::index::StoreError::Unavailable("down".into()),
        ));
        assert!(down.is_retryable());
        assert!(
            !down.description().contains("down"),
            "store details stay in the log"
        );
        let challenge = Refusal::unauthenticated(None, "a bearer token is required", true)
            .render(Protocol::Scim);
        assert_eq!(
            challenge
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
    }
}
