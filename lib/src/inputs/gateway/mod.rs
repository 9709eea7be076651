//! The gateway listener (`gateway_listen`): `/v1/check`, the forward-auth check of access
//! tokens that nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth` and Envoy's
//! HTTP `ext_authz` call for each request of an API in any language (docs/any-stack.md).
//!
//! The check reads the bearer token of the original request (the gateway forwards its
//! `Authorization` header), verifies it as a JWT access token of a configured issuer — audiences:
//! the issuer's clients and trusted audiences, and `[check] audiences` — and looks it up in the
//! denylist the receiver writes, from the same pushed view as the in-process
//! [`DenylistLayer`](crate::denylist::DenylistLayer): a revocation applies within a second.
//! `200` carries the identity (`X-Auth-Sub`, `X-Auth-Sid`, `X-Auth-Issuer`); a missing,
//! invalid or revoked token gets `401` with `WWW-Authenticate` (RFC 6750); a view that has been
//! out of sync for longer than `[check] max_unsynced_secs` gets `503` (fail closed). It needs no
//! credential beyond the token it checks, so keep the listener where only the gateway reaches it.
//! It changes nothing, so it is not an input of the core: it reads what the core wrote.

pub mod config;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt as _};

use self::config::CheckMode;
use crate::Algorithm;
use crate::denylist::sync::{self, DenylistSettings};
use crate::denylist::{AccessTokenValidator, DenylistLayer, FailMode, RevocationClaims};
use crate::index::{RecordStore, SessionIndex};
use crate::jose::{Jws, Rules};

/// Where the check answers.
pub const CHECK_PATH: &str = "/v1/check";

/// Access tokens may be signed with any public-key algorithm the issuer's keys allow.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

static SUB: HeaderName = HeaderName::from_static("x-auth-sub");
static SID: HeaderName = HeaderName::from_static("x-auth-sid");
static ISSUER: HeaderName = HeaderName::from_static("x-auth-issuer");

/// `200` with the verified token's identity.
async fn identity(request: Request) -> Response {
    let mut response = StatusCode::OK.into_response();
    if let Some(claims) = request.extensions().get::<RevocationClaims>() {
        let headers = response.headers_mut();
        let mut put = |name: &HeaderName, value: Option<&str>| {
            // A value that is not a visible header value is left out rather than mangled.
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name.clone(), value);
            }
        };
        put(&SUB, claims.sub.as_deref());
        put(&SID, claims.sid.as_deref());
        put(&ISSUER, Some(&claims.issuer));
    }
    response
}

/// `200` only (denylist-only mode: nothing here vouches for the claims).
async fn allowed() -> Response {
    StatusCode::OK.into_response()
}

/// Denylist-only mode: the token's claims as the denylist needs them, unverified, for a token
/// of a configured issuer; the layer refuses a request without them.
async fn unverified_claims(
    axum::extract::State(issuers): axum::extract::State<Arc<Vec<String>>>,
    mut request: Request,
    next: Next,
) -> Response {
    const RULES: Rules = Rules {
        max_bytes: 16 * 1024,
        types: &["jwt", "at+jwt"],
        untyped: true,
        hmac: false,
    };
    let claims = request
        .headers()
        .typed_get::<Authorization<Bearer>>()
        .and_then(|Authorization(bearer)| {
            let jws = Jws::parse(bearer.token().trim(), &RULES).ok()?;
            serde_json::from_value::<RevocationClaims>(serde_json::Value::Object(
                jws.claims().clone(),
            ))
            .ok()
        })
        .filter(|claims| issuers.contains(&claims.issuer));
    if let Some(claims) = claims {
        request.extensions_mut().insert(claims);
    }
    next.run(request).await
}

/// The check on the gateway listener, when `gateway_listen` is set.
pub(crate) async fn mount<S, D>(
    m: &super::Mount<'_, S, D>,
) -> Result<Option<super::Mounted>, super::MountError>
where
    S: SessionIndex + RecordStore,
{
    if m.settings.listeners.gateway.is_none() {
        return Ok(None);
    }
    let Some(redis) = m.settings.redis.clone() else {
        // Settings refuse gateway_listen without Redis; nothing to follow without it.
        return Ok(None);
    };
    let check = &m.settings.inputs.check;
    let issuers: Vec<String> = m
        .issuers
        .iter()
        .map(|(p, _)| p.issuer().to_owned())
        .collect();
    let mut following = DenylistSettings::new("", issuers.clone());
    following.redis = redis;
    following.prefix.clone_from(&m.settings.index.prefix);
    following.fail_mode = FailMode::Closed;
    following.max_unsynced = check.max_unsynced;
    let denylist = sync::start(following)
        .await
        .map_err(super::MountError::Denylist)?;
    let router = match check.mode {
        CheckMode::Verify => {
            let mut validator = AccessTokenValidator::new();
            for (provider, issuer) in m.issuers {
                let mut audiences: Vec<&str> = issuer
                    .policy
                    .clients
                    .iter()
                    .map(|(client, _)| client.as_str())
                    .chain(issuer.policy.trusted_audiences.iter().map(String::as_str))
                    .collect();
                audiences.extend(check.audiences.iter().map(String::as_str));
                validator = validator.with_issuer(provider.clone(), &audiences, ALGORITHMS);
            }
            Router::new()
                .route(CHECK_PATH, any(identity))
                .layer(DenylistLayer::validating(denylist, validator))
        }
        CheckMode::Denylist => Router::new()
            .route(CHECK_PATH, any(allowed))
            .layer(DenylistLayer::after_validation(denylist))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(issuers),
                unverified_claims,
            )),
    };
    tracing::info!(mode = ?check.mode, "forward-auth check under {CHECK_PATH}");
    Ok(Some(super::Mounted {
        router,
        place: super::Place::Gateway,
        health: None,
    }))
}
