//! FusionAuth webhooks: `POST /webhooks/fusionauth` with the events that mean "this user must
//! lose access" — `user.deactivate`, `user.delete`, `user.action` (a configured locking action
//! starting) and `jwt.refresh-token.revoke` — fed into the same [`Core`] path.
//!
//! One request reads top to bottom in [`FusionAuthReceiver::process`]: parse the JSON body and
//! find the tenant's issuer, verify the `X-FusionAuth-Signature-JWT` header (signed with an HMAC
//! secret, or with a key the tenant's issuer publishes in its JWKS) and that its
//! `request_body_sha256` is the body's SHA-256, skip an event id handled before, then act. The
//! body is only looked at before the signature to find whose keys verify it; nothing is done
//! until the signature and the body hash match. FusionAuth waits for the answer of transactional
//! events, so the work is the few Redis calls of one revocation.
//!
//! FusionAuth users are the OIDC `sub` of the tenant's issuer (the user's id).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::core::{Core, CoreError};
use crate::index::{RecordStore, SessionIndex, StoreError};
use crate::jose::{Jws, Rules, is_hmac, numeric_date};
use crate::provider::Provider;
use crate::response::{self, Protocol};
use crate::sys::unix_now;

/// The path the receiver serves.
pub const PATH: &str = "/webhooks/fusionauth";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-fusionauth-signature-jwt";
/// The largest body read, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long an event id is remembered.
const REMEMBER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No signature, or it does not verify, or it is not over this body: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Malformed body, unknown tenant, or an event this endpoint does not handle: 400.
    #[error("{0}")]
    Invalid(String),
    /// Redis is unavailable: 503, FusionAuth retries or reports it.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> WebhookError {
    WebhookError::Invalid(message.into())
}

fn unauthenticated(message: impl Into<String>) -> WebhookError {
    WebhookError::Unauthenticated(message.into())
}

/// A FusionAuth tenant whose users are subjects of a configured issuer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Tenant {
    /// FusionAuth's tenant id.
    pub tenant_id: String,
    /// The OIDC issuer of that tenant, as configured in `[[issuers]]`, whose keys also verify
    /// webhooks signed with an RSA or EC key.
    pub provider: Arc<Provider>,
}

impl Tenant {
    /// The tenant `tenant_id`, whose issuer's keys `provider` holds.
    pub fn new(tenant_id: impl Into<String>, provider: Arc<Provider>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            provider,
        }
    }
}

/// What was done with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// The user was revoked, or some of their sessions ended; the ids of the sessions ended.
    Applied(Vec<String>),
    /// An event that asks for nothing here (a user action that does not lock).
    Ignored,
    /// The event id was handled before.
    Duplicate,
}

/// The webhook receiver.
pub struct FusionAuthReceiver<S> {
    core: Core<S>,
    hmac: Vec<DecodingKey>,
    tenants: HashMap<String, Tenant>,
    lock_actions: Vec<String>,
}

impl<S> std::fmt::Debug for FusionAuthReceiver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusionAuthReceiver")
            .field("tenants", &self.tenants.keys())
            .field("lock_actions", &self.lock_actions)
            .finish_non_exhaustive()
    }
}

/// The header rules of the signature JWT: HMAC (with the configured secrets) or the tenant
/// issuer's public keys; `typ` absent or `JWT`.
const RULES: Rules = Rules {
    max_bytes: 16 * 1024,
    types: &["jwt"],
    untyped: true,
    hmac: true,
};

fn text<'v>(value: &'v Value, name: &str) -> Option<&'v str> {
    value
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl<S: SessionIndex + RecordStore> FusionAuthReceiver<S> {
    /// A receiver acting through `core`, verifying HMAC signatures with `hmac_secrets` (none:
    /// only RSA/EC signatures, with the tenants' issuers' keys), revoking users when a user
    /// action whose id or name is in `lock_actions` starts.
    pub fn new(core: Core<S>, hmac_secrets: &[SecretString], lock_actions: Vec<String>) -> Self {
        Self {
            core,
            hmac: hmac_secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes()))
                .collect(),
            tenants: HashMap::new(),
            lock_actions,
        }
    }

    /// Accept events of `tenant`.
    #[must_use]
    pub fn with_tenant(mut self, tenant: Tenant) -> Self {
        self.tenants.insert(tenant.tenant_id.clone(), tenant);
        self
    }

    /// The axum router serving [`PATH`].
    pub fn into_router(self) -> Router {
        let routes = Router::new()
            .route(PATH, post(receive::<S>))
            .with_state(Arc::new(self));
        response::protect(routes, MAX_BODY_BYTES, Protocol::OAuth)
    }

    /// Verify a webhook (`signature`: the header's value) and act on its event.
    pub async fn process(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Handled, WebhookError> {
        let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
            return Err(invalid("the body is not a JSON object"));
        };
        let event = root
            .get("event")
            .filter(|e| e.is_object())
            .ok_or_else(|| invalid("the body has no event object"))?;
        let tenant_id =
            text(event, "tenantId").ok_or_else(|| invalid("the event has no tenantId"))?;
        let tenant = self
            .tenants
            .get(tenant_id)
            .ok_or_else(|| invalid("the event's tenant is not configured here"))?;
        let signature = signature
            .ok_or_else(|| unauthenticated("the X-FusionAuth-Signature-JWT header is missing"))?;
        self.verify(signature, body, tenant).await?;

        let issuer = tenant.provider.issuer();
        let id = text(event, "id").ok_or_else(|| invalid("the event has no id"))?;
        let kind = text(event, "type").ok_or_else(|| invalid("the event has no type"))?;
        if self.core.event_seen(issuer, id).await.map_err(store)? {
            return Ok(Handled::Duplicate);
        }
        let user_id = || {
            event
                .get("user")
                .and_then(|u| text(u, "id"))
                .or_else(|| text(event, "userId"))
                .ok_or_else(|| invalid(format!("the {kind} event names no user")))
        };
        let result = match kind {
            "user.deactivate" | "user.delete" => self.core.revoke_user(issuer, user_id()?).await,
            "user.action" => {
                let sub = text(event, "actioneeUserId")
                    .ok_or_else(|| invalid("the user.action event has no actioneeUserId"))?;
                let locking = [text(event, "actionId"), text(event, "action")]
                    .into_iter()
                    .flatten()
                    .any(|a| self.lock_actions.iter().any(|l| l == a));
                let starting = text(event, "phase").is_none_or(|p| p == "start");
                if !(locking && starting) {
                    tracing::info!(kind = ?kind, "webhook event asks for nothing here");
                    self.core
                        .remember_event(issuer, id, REMEMBER)
                        .await
                        .map_err(store)?;
                    return Ok(Handled::Ignored);
                }
                self.core.revoke_user(issuer, sub).await
            }
            "jwt.refresh-token.revoke" => {
                let sub = user_id()?;
                match text(event, "applicationId") {
                    // One application's tokens: end that client's sessions.
                    Some(app) => {
                        self.core
                            .end_client_sessions(issuer, sub, &[app.to_owned()])
                            .await
                    }
                    None => self.core.revoke_user(issuer, sub).await,
                }
            }
            _ => {
                return Err(invalid(
                    "the event type is not handled here; subscribe this webhook to \
                     user.deactivate, user.delete, user.action and jwt.refresh-token.revoke",
                ));
            }
        };
        let ended = result.map_err(store)?;
        tracing::info!(kind = ?kind, %issuer, ended = ended.len(), "webhook event applied");
        self.core
            .remember_event(issuer, id, REMEMBER)
            .await
            .map_err(store)?;
        Ok(Handled::Applied(ended))
    }

    /// The signature JWT verifies with an HMAC secret or one of the tenant issuer's keys, and
    /// its `request_body_sha256` is the body's hash.
    async fn verify(&self, jwt: &str, body: &[u8], tenant: &Tenant) -> Result<(), WebhookError> {
        let signed = Jws::parse(jwt, &RULES)
            .map_err(|e| unauthenticated(format!("the signature JWT is refused: {e}")))?;
        let verified = if is_hmac(signed.algorithm()) {
            signed.verify_with(&self.hmac)
        } else {
            tenant.provider.verify(&signed).await
        };
        if verified.is_err() {
            return Err(unauthenticated(
                "the signature does not verify with a configured key",
            ));
        }
        let claims = signed.into_claims();
        if let Ok(Some(exp)) = numeric_date(&claims, "exp")
            && exp < unix_now()
        {
            return Err(unauthenticated("the signature has expired"));
        }
        let claimed = claims
            .get("request_body_sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| unauthenticated("the signature has no request_body_sha256"))?;
        let hash = digest::digest(&digest::SHA256, body);
        let matches = [
            base64::engine::general_purpose::STANDARD.decode(claimed),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claimed),
        ]
        .into_iter()
        .flatten()
        .any(|bytes| bytes == hash.as_ref());
        if !matches {
            return Err(unauthenticated(
                "request_body_sha256 is not the hash of this body",
            ));
        }
        Ok(())
    }
}

/// A core failure as the webhook's: the store's 503, or (for an issuer the core does not
/// know, a configuration mistake) a 400.
fn store(error: CoreError) -> WebhookError {
    match error {
        CoreError::Unavailable(error) => WebhookError::Unavailable(error),
        other => invalid(other.to_string()),
    }
}

async fn receive<S: SessionIndex + RecordStore>(
    State(receiver): State<Arc<FusionAuthReceiver<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return answer(&invalid("the body is too large or could not be read"));
    };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    match receiver.process(signature, &body).await {
        Ok(handled) => {
            let outcome = match handled {
                Handled::Applied(_) => "applied",
                Handled::Ignored => "ignored",
                Handled::Duplicate => "duplicate",
            };
            metrics::counter!(crate::telemetry::WEBHOOKS, "outcome" => outcome).increment(1);
            StatusCode::OK.into_response()
        }
        Err(error) => answer(&error),
    }
}

fn answer(error: &WebhookError) -> Response {
    let (status, code) = match error {
        WebhookError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        WebhookError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        WebhookError::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
    };
    metrics::counter!(crate::telemetry::WEBHOOKS, "outcome" => code).increment(1);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(%error, "webhook not applied: session store unavailable");
    } else {
        tracing::info!(%error, "webhook refused");
    }
    response::error(Protocol::OAuth, status, code, &error.to_string())
}
