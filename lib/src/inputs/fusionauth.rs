//! FusionAuth webhooks: `POST /webhooks/fusionauth` with the events that mean "this user must
//! lose access" — `user.deactivate`, `user.delete`, `user.action` (a configured locking action
//! starting) and `jwt.refresh-token.revoke` — fed into the same [`Core`] path.
//!
//! One request reads top to bottom in `receive`: [`FusionAuthReceiver::authenticate`] checks the
//! `X-FusionAuth-Signature-JWT` header alone — signed with an HMAC secret, or with a key one of
//! the tenants' issuers publishes; an `exp` that has not passed; an `iat`, if any, within the
//! freshness window — *before any byte of the body is read*, so an unauthenticated sender cannot
//! make the receiver hold its body; then the (small, bounded) body is read, and
//! [`FusionAuthReceiver::process`] checks that the signature's `request_body_sha256` is its hash,
//! that its tenant is the signer's, skips an event id handled before, and acts. Nothing about an
//! unauthenticated request is logged or echoed beyond the fixed reason it was refused.
//! FusionAuth waits for the answer of transactional events, so the work is the few Redis calls
//! of one revocation.
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

use crate::core::{Core, CoreError, DEFAULT_EVENT_MAX_AGE, MAX_EVENT_MAX_AGE, to_completion};
use crate::index::{RecordStore, SessionIndex, StoreError};
use crate::jose::{Jws, Rules, is_hmac, numeric_date};
use crate::provider::Provider;
use crate::response::{self, Protocol};
use crate::sys::unix_now;

/// The path the receiver serves.
pub const PATH: &str = "/webhooks/fusionauth";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-fusionauth-signature-jwt";
/// The largest body read, in bytes: FusionAuth's user events carry the user, a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Clock skew allowed on `exp` and `iat`, in seconds.
const LEEWAY: u64 = 30;

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
    max_age: Duration,
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

/// Who signed a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signer {
    /// A configured HMAC secret: any tenant's events.
    Hmac,
    /// A key this issuer publishes: its tenant's events only.
    Issuer(String),
}

/// A signature header that verified, waiting for the body it covers.
#[derive(Debug)]
pub struct Authenticated {
    signer: Signer,
    body_sha256: Vec<u8>,
}

/// What an event asks the core to do.
enum Action<'a> {
    RevokeUser(&'a str),
    EndClientSessions(&'a str, &'a str),
    Nothing,
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
            max_age: DEFAULT_EVENT_MAX_AGE,
        }
    }

    /// Accept events of `tenant`.
    #[must_use]
    pub fn with_tenant(mut self, tenant: Tenant) -> Self {
        self.tenants.insert(tenant.tenant_id.clone(), tenant);
        self
    }

    /// How old an event may be (its signature's `iat`, its `createInstant`); default
    /// [`DEFAULT_EVENT_MAX_AGE`], at most [`MAX_EVENT_MAX_AGE`].
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.min(MAX_EVENT_MAX_AGE);
        self
    }

    /// The axum router serving [`PATH`].
    pub fn into_router(self) -> Router {
        let routes = Router::new()
            .route(PATH, post(receive::<S>))
            .with_state(Arc::new(self));
        response::protect(routes, MAX_BODY_BYTES, Protocol::OAuth)
    }

    /// Check the signature header (`X-FusionAuth-Signature-JWT`) on its own, at `now`.
    pub async fn authenticate(
        &self,
        signature: Option<&str>,
        now: u64,
    ) -> Result<Authenticated, WebhookError> {
        let signature = signature
            .ok_or_else(|| unauthenticated("the X-FusionAuth-Signature-JWT header is missing"))?;
        let signed = Jws::parse(signature, &RULES)
            .map_err(|e| unauthenticated(format!("the signature JWT is refused: {e}")))?;
        let signer = if is_hmac(signed.algorithm()) {
            signed.verify_with(&self.hmac).ok().map(|()| Signer::Hmac)
        } else {
            let mut signer = None;
            let mut tried = Vec::new();
            for tenant in self.tenants.values() {
                let issuer = tenant.provider.issuer();
                if tried.contains(&issuer) {
                    continue;
                }
                tried.push(issuer);
                if tenant.provider.verify(&signed).await.is_ok() {
                    signer = Some(Signer::Issuer(issuer.to_owned()));
                    break;
                }
            }
            signer
        };
        let signer = signer.ok_or_else(|| {
            unauthenticated("the signature does not verify with a configured key")
        })?;
        let claims = signed.into_claims();
        match numeric_date(&claims, "exp") {
            Ok(Some(exp)) if exp.saturating_add(LEEWAY) > now => {}
            Ok(Some(_)) => return Err(unauthenticated("the signature has expired")),
            _ => return Err(unauthenticated("the signature has no valid exp")),
        }
        match numeric_date(&claims, "iat") {
            Ok(None) => {}
            Ok(Some(iat)) if iat <= now.saturating_add(LEEWAY) => {
                if now.saturating_sub(iat) > self.max_age.as_secs() {
                    return Err(unauthenticated("the signature is older than accepted here"));
                }
            }
            _ => return Err(unauthenticated("the signature has an invalid iat")),
        }
        let claimed = claims
            .get("request_body_sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| unauthenticated("the signature has no request_body_sha256"))?;
        let body_sha256 = base64::engine::general_purpose::STANDARD
            .decode(claimed)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claimed))
            .map_err(|_| unauthenticated("request_body_sha256 is not base64"))?;
        Ok(Authenticated {
            signer,
            body_sha256,
        })
    }

    /// Check the body against its authenticated signature, at `now`, and act on its event.
    pub async fn process(
        &self,
        signed: Authenticated,
        body: &[u8],
        now: u64,
    ) -> Result<Handled, WebhookError> {
        let hash = digest::digest(&digest::SHA256, body);
        if hash.as_ref() != signed.body_sha256.as_slice() {
            return Err(unauthenticated(
                "request_body_sha256 is not the hash of this body",
            ));
        }
        // Authenticated from here on.
        let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
            return Err(invalid("the body is not a JSON object"));
        };
        let event = root
            .get("event")
            .filter(|e| e.is_object())
            .ok_or_else(|| invalid("the body has no event object"))?;
        let tenant = text(event, "tenantId")
            .and_then(|id| self.tenants.get(id))
            .ok_or_else(|| invalid("the event's tenant is not configured here"))?;
        let issuer = tenant.provider.issuer();
        if let Signer::Issuer(signer) = &signed.signer
            && signer != issuer
        {
            return Err(unauthenticated(
                "the event is signed by another tenant's issuer",
            ));
        }
        if let Some(created_ms) = event.get("createInstant").and_then(Value::as_u64)
            && now.saturating_sub(created_ms / 1000) > self.max_age.as_secs()
        {
            return Err(invalid("the event is older than accepted here"));
        }
        let id = text(event, "id").ok_or_else(|| invalid("the event has no id"))?;
        let kind = text(event, "type").ok_or_else(|| invalid("the event has no type"))?;
        let action = self.action(kind, event)?;
        // From here on the event changes state: finish, whatever happens to the request.
        let work = apply(
            self.core.clone(),
            issuer.to_owned(),
            id.to_owned(),
            kind.to_owned(),
            match action {
                Action::RevokeUser(sub) => Owned::RevokeUser(sub.to_owned()),
                Action::EndClientSessions(sub, app) => {
                    Owned::EndClientSessions(sub.to_owned(), app.to_owned())
                }
                Action::Nothing => Owned::Nothing,
            },
        );
        to_completion(work).await.unwrap_or_else(|| {
            Err(WebhookError::Unavailable(StoreError::Unexpected(
                "applying the event failed".into(),
            )))
        })
    }

    /// What the event of type `kind` asks for.
    fn action<'e>(&self, kind: &str, event: &'e Value) -> Result<Action<'e>, WebhookError> {
        let user_id = || {
            event
                .get("user")
                .and_then(|u| text(u, "id"))
                .or_else(|| text(event, "userId"))
                .ok_or_else(|| invalid("the event names no user"))
        };
        Ok(match kind {
            "user.deactivate" | "user.delete" => Action::RevokeUser(user_id()?),
            "user.action" => {
                let sub = text(event, "actioneeUserId")
                    .ok_or_else(|| invalid("the user.action event has no actioneeUserId"))?;
                let locking = [text(event, "actionId"), text(event, "action")]
                    .into_iter()
                    .flatten()
                    .any(|a| self.lock_actions.iter().any(|l| l == a));
                let starting = text(event, "phase").is_none_or(|p| p == "start");
                if locking && starting {
                    Action::RevokeUser(sub)
                } else {
                    Action::Nothing
                }
            }
            "jwt.refresh-token.revoke" => {
                let sub = user_id()?;
                match text(event, "applicationId") {
                    // One application's tokens: end that client's sessions.
                    Some(app) => Action::EndClientSessions(sub, app),
                    None => Action::RevokeUser(sub),
                }
            }
            _ => {
                return Err(invalid(
                    "the event type is not handled here; subscribe this webhook to \
                     user.deactivate, user.delete, user.action and jwt.refresh-token.revoke",
                ));
            }
        })
    }
}

/// An [`Action`] that owns its strings, to run in a task of its own.
enum Owned {
    RevokeUser(String),
    EndClientSessions(String, String),
    Nothing,
}

/// Act on an authenticated event once: skip an id handled before, act, remember the id (after
/// acting, so that a failure leaves it to be retried).
async fn apply<S: SessionIndex + RecordStore>(
    core: Core<S>,
    issuer: String,
    id: String,
    kind: String,
    action: Owned,
) -> Result<Handled, WebhookError> {
    if core.event_seen(&issuer, &id).await.map_err(store)? {
        return Ok(Handled::Duplicate);
    }
    let handled = match &action {
        Owned::Nothing => {
            tracing::info!(kind = ?kind, "webhook event asks for nothing here");
            Handled::Ignored
        }
        Owned::RevokeUser(sub) => {
            Handled::Applied(core.revoke_user(&issuer, sub).await.map_err(store)?)
        }
        Owned::EndClientSessions(sub, app) => Handled::Applied(
            core.end_client_sessions(&issuer, sub, std::slice::from_ref(app))
                .await
                .map_err(store)?,
        ),
    };
    if let Handled::Applied(ended) = &handled {
        tracing::info!(kind = ?kind, %issuer, ended = ended.len(), "webhook event applied");
    }
    core.remember_event(&issuer, &id).await.map_err(store)?;
    Ok(handled)
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
    // The signature first: an unauthenticated sender gets its 401 before its body is read.
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let signed = match receiver.authenticate(signature, unix_now()).await {
        Ok(signed) => signed,
        Err(error) => return answer(&error),
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return answer(&invalid("the body is too large or could not be read"));
    };
    match receiver.process(signed, &body, unix_now()).await {
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
