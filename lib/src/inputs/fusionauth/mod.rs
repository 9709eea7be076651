//! FusionAuth webhooks: `POST /webhooks/fusionauth` with the events that mean "this user must
//! lose access" — `user.deactivate`, `user.delete`, `user.action` (a configured locking action
//! starting) and `jwt.refresh-token.revoke` — fed into the same [`Core`] path.
//!
//! One request reads top to bottom in `receive`: [`FusionAuthReceiver::authenticate`] checks the
//! `X-FusionAuth-Signature-JWT` header alone — signed with an HMAC secret, or with a key one of
//! the tenants' issuers publishes; an `exp` that has not passed; an `iat`, if any, within the
//! freshness window — *before any byte of the body is read*, so an unauthenticated sender cannot
//! make the receiver hold its body; then the (small, bounded) body is read, and
//! [`FusionAuthReceiver::process`] checks that the signature's `request_body_sha256` is its hash
//! and that its tenant is the signer's, and hands the core the event: the tenant is the sender
//! (scoped to its issuer and, when configured, customer), the event's id is applied once.
//! Nothing about an unauthenticated request is echoed, and its refusal is only counted (and
//! logged as a sum per interval).
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

use crate::core::{
    Action, Core, DEFAULT_EVENT_MAX_AGE, Event, MAX_EVENT_MAX_AGE, Outcome, Scope, Sender,
};
use crate::index::{RecordStore, SessionIndex};
use crate::jose::{Jws, Rules, is_hmac, numeric_date};
use crate::provider::Provider;
use crate::response::{self, Protocol, Refusal};
use crate::sys::unix_now;

#[cfg(feature = "server")]
#[doc(hidden)]
pub mod config;

/// The path the receiver serves.
#[doc(hidden)]
pub const PATH: &str = "/webhooks/fusionauth";
/// The header carrying the signature.
#[doc(hidden)]
pub const SIGNATURE_HEADER: &str = "x-fusionauth-signature-jwt";
/// The largest body read, in bytes: FusionAuth's user events carry the user, a few KiB.
#[doc(hidden)]
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Clock skew allowed on `exp` and `iat`, in seconds.
const LEEWAY: u64 = 30;

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> Refusal {
    Refusal::invalid(message)
}

/// A 401: the request is not (or no longer) authenticated; `reason` labels it in the counts.
fn unauthenticated(reason: &'static str, message: &'static str) -> Refusal {
    Refusal::unauthenticated(Some("unauthenticated"), message, false).because(reason)
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
    /// Only the users of this customer, when set.
    pub customer: Option<String>,
}

impl Tenant {
    /// The tenant `tenant_id`, whose issuer's keys `provider` holds.
    pub fn new(tenant_id: impl Into<String>, provider: Arc<Provider>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            provider,
            customer: None,
        }
    }

    /// Act only on the users of `customer` (as the applications' logins recorded it).
    #[must_use]
    pub fn with_customer(mut self, customer: Option<String>) -> Self {
        self.customer = customer;
        self
    }
}

/// What was done with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[doc(hidden)]
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
#[doc(hidden)]
pub struct Authenticated {
    signer: Signer,
    body_sha256: Vec<u8>,
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
    ) -> Result<Authenticated, Refusal> {
        let signature = signature.ok_or_else(|| {
            unauthenticated(
                "no_signature",
                "the X-FusionAuth-Signature-JWT header is missing",
            )
        })?;
        let signed = Jws::parse(signature, &RULES)
            .map_err(|_| unauthenticated("malformed_signature", "the signature JWT is refused"))?;
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
            unauthenticated(
                "bad_signature",
                "the signature does not verify with a configured key",
            )
        })?;
        let claims = signed.into_claims();
        match numeric_date(&claims, "exp") {
            Ok(Some(exp)) if exp.saturating_add(LEEWAY) > now => {}
            Ok(Some(_)) => return Err(unauthenticated("expired", "the signature has expired")),
            _ => return Err(unauthenticated("no_exp", "the signature has no valid exp")),
        }
        match numeric_date(&claims, "iat") {
            Ok(None) => {}
            Ok(Some(iat)) if iat <= now.saturating_add(LEEWAY) => {
                if now.saturating_sub(iat) > self.max_age.as_secs() {
                    return Err(unauthenticated(
                        "too_old",
                        "the signature is older than accepted here",
                    ));
                }
            }
            _ => {
                return Err(unauthenticated(
                    "bad_iat",
                    "the signature has an invalid iat",
                ));
            }
        }
        let claimed = claims
            .get("request_body_sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                unauthenticated("no_body_hash", "the signature has no request_body_sha256")
            })?;
        let body_sha256 = base64::engine::general_purpose::STANDARD
            .decode(claimed)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claimed))
            .map_err(|_| unauthenticated("bad_body_hash", "request_body_sha256 is not base64"))?;
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
    ) -> Result<Handled, Refusal> {
        let hash = digest::digest(&digest::SHA256, body);
        if hash.as_ref() != signed.body_sha256.as_slice() {
            return Err(unauthenticated(
                "body_hash_mismatch",
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
                "other_tenant",
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
        let actions = self.actions(issuer, kind, event)?;
        let sender = Sender::new(
            "fusionauth",
            tenant.tenant_id.clone(),
            Scope::issuer(issuer).with_customer(tenant.customer.clone()),
        );
        let asks_nothing = actions.is_empty();
        if asks_nothing {
            tracing::info!(kind = ?kind, "webhook event asks for nothing here");
        }
        match self
            .core
            .apply(Event::new(sender, actions).with_id(id))
            .await?
        {
            Outcome::Duplicate => Ok(Handled::Duplicate),
            _ if asks_nothing => Ok(Handled::Ignored),
            outcome => Ok(Handled::Applied(outcome.ended_ids())),
        }
    }

    /// What the event of type `kind` asks for, on `issuer`'s users.
    fn actions(&self, issuer: &str, kind: &str, event: &Value) -> Result<Vec<Action>, Refusal> {
        let user_id = || {
            event
                .get("user")
                .and_then(|u| text(u, "id"))
                .or_else(|| text(event, "userId"))
                .ok_or_else(|| invalid("the event names no user"))
        };
        let revoke = |sub: &str| {
            vec![Action::RevokeUser {
                issuer: issuer.to_owned(),
                sub: sub.to_owned(),
            }]
        };
        Ok(match kind {
            "user.deactivate" | "user.delete" => revoke(user_id()?),
            "user.action" => {
                let sub = text(event, "actioneeUserId")
                    .ok_or_else(|| invalid("the user.action event has no actioneeUserId"))?;
                let locking = [text(event, "actionId"), text(event, "action")]
                    .into_iter()
                    .flatten()
                    .any(|a| self.lock_actions.iter().any(|l| l == a));
                let starting = text(event, "phase").is_none_or(|p| p == "start");
                if locking && starting {
                    revoke(sub)
                } else {
                    Vec::new()
                }
            }
            "jwt.refresh-token.revoke" => {
                let sub = user_id()?;
                match text(event, "applicationId") {
                    // One application's tokens: end that client's sessions.
                    Some(app) => vec![Action::EndUserSessions {
                        issuer: issuer.to_owned(),
                        sub: sub.to_owned(),
                        clients: Some(vec![app.to_owned()]),
                    }],
                    None => revoke(sub),
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

fn answer(refusal: &Refusal) -> Response {
    let code = refusal.code().unwrap_or("invalid_request");
    metrics::counter!(crate::telemetry::WEBHOOKS, "outcome" => code).increment(1);
    if refusal.status() == StatusCode::UNAUTHORIZED {
        crate::telemetry::refused_unauthenticated("fusionauth", refusal.reason());
    } else if !refusal.is_retryable() {
        tracing::info!(
            reason = refusal.reason(),
            description = refusal.description(),
            "webhook refused"
        );
    }
    refusal.render(Protocol::OAuth)
}

/// The FusionAuth webhooks of the library server: off without a `[fusionauth]` table.
#[cfg(feature = "server")]
pub(crate) fn mount<S, D>(m: &super::Mount<'_, S, D>) -> Option<super::Mounted>
where
    S: SessionIndex + RecordStore,
{
    let fa = m.settings.inputs.fusionauth.as_ref()?;
    let mut webhooks =
        FusionAuthReceiver::new(m.core.clone(), &fa.hmac_secrets, fa.lock_actions.clone())
            .with_max_age(fa.max_event_age);
    for tenant in &fa.tenants {
        // Validated: every tenant's issuer is a configured one.
        if let Some(provider) = m.provider(&tenant.issuer) {
            webhooks = webhooks.with_tenant(
                Tenant::new(&tenant.tenant_id, Arc::clone(provider))
                    .with_customer(tenant.customer.clone()),
            );
        }
    }
    Some(super::Mounted::main(webhooks.into_router()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexSettings, MemoryIndex, SessionRecord, SessionState};
    use serde_json::json;

    const ISS: &str = "https://auth.example";
    const SECRET: &str = "a-webhook-hmac-secret-of-32-bytes!!";
    const NOW: u64 = 1_800_000_000;

    fn receiver(index: MemoryIndex) -> FusionAuthReceiver<MemoryIndex> {
        let provider = Provider::from_jwks(ISS, &json!({"keys": []})).expect("provider");
        let core = Core::builder(index).issuer(ISS).build();
        FusionAuthReceiver::new(core, &[SECRET.to_owned().into()], vec!["lock".into()])
            .with_tenant(Tenant::new("t1", provider))
    }

    fn signature(body: &str, secret: &str, exp: u64) -> String {
        let hash = digest::digest(&digest::SHA256, body.as_bytes());
        let claims = json!({
            "request_body_sha256": base64::engine::general_purpose::STANDARD.encode(hash),
            "iat": NOW, "exp": exp,
        });
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap_or_default()
    }

    fn event(kind: &str, id: &str, fields: Value) -> String {
        let mut event =
            json!({"type": kind, "id": id, "tenantId": "t1", "createInstant": NOW * 1000});
        if let (Some(map), Value::Object(extra)) = (event.as_object_mut(), fields) {
            map.extend(extra);
        }
        json!({ "event": event }).to_string()
    }

    async fn send(
        r: &FusionAuthReceiver<MemoryIndex>,
        body: &str,
        signature: &str,
    ) -> Result<Handled, Refusal> {
        let signed = r.authenticate(Some(signature), NOW).await?;
        r.process(signed, body.as_bytes(), NOW).await
    }

    #[tokio::test]
    async fn events_revoke_once_and_say_what_they_did() {
        let index = MemoryIndex::new(IndexSettings::default());
        let alice = SessionRecord {
            session_id: "s1".into(),
            issuer: ISS.into(),
            sub: "alice".into(),
            sid: None,
            auth_time: crate::sys::unix_now() - 60,
            ttl: Duration::from_secs(600),
            customer: None,
        };
        index.register(&alice).await.expect("register");
        let r = receiver(index.clone());
        let body = event("user.deactivate", "e1", json!({"user": {"id": "alice"}}));
        let sig = signature(&body, SECRET, NOW + 60);
        assert_eq!(
            send(&r, &body, &sig).await.ok(),
            Some(Handled::Applied(vec!["s1".into()]))
        );
        assert_eq!(
            index.state(&alice.key()).await.ok(),
            Some(SessionState::Ended)
        );
        assert_eq!(send(&r, &body, &sig).await.ok(), Some(Handled::Duplicate));
        let unlocking = event(
            "user.action",
            "e2",
            json!({"actioneeUserId": "alice", "action": "note", "phase": "start"}),
        );
        let sig = signature(&unlocking, SECRET, NOW + 60);
        assert_eq!(
            send(&r, &unlocking, &sig).await.ok(),
            Some(Handled::Ignored)
        );
    }

    #[tokio::test]
    async fn bad_webhooks_are_refused_and_change_nothing() {
        let r = receiver(MemoryIndex::new(IndexSettings::default()));
        let body = event("user.deactivate", "e1", json!({"user": {"id": "alice"}}));
        for (body, sig, status) in [
            (
                body.clone(),
                signature(&body, "another-secret-of-32-bytes-or-more", NOW + 60),
                401,
            ),
            (body.clone(), signature(&body, SECRET, NOW - 120), 401),
            (
                body.clone(),
                signature("another body", SECRET, NOW + 60),
                401,
            ),
            (body.clone(), "not.a.jwt".to_owned(), 401),
            (
                event("user.create", "e3", json!({})),
                signature(&event("user.create", "e3", json!({})), SECRET, NOW + 60),
                400,
            ),
            (
                body.replace("\"t1\"", "\"t2\""),
                signature(&body.replace("\"t1\"", "\"t2\""), SECRET, NOW + 60),
                400,
            ),
        ] {
            let refusal = send(&r, &body, &sig).await.expect_err("refused");
            assert_eq!(
                refusal.status().as_u16(),
                status,
                "{}",
                refusal.description()
            );
        }
    }
}
