//! The back-channel logout endpoint: `POST /backchannel-logout` (Back-Channel Logout §2.5, §2.8).
//!
//! One logout reads top to bottom: `backchannel_logout` checks the request (form, exactly one
//! `logout_token`), [`Receiver::process`] parses the token, picks the issuer it claims, verifies
//! it with that issuer's keys and [`Policy`], and hands it to the [`Core`] as an event of the
//! issuer (the OP is the sender), which ends the sessions in the index and remembers the `jti`
//! in the same step. Responses: 200 with an empty body; 400 with
//! `{"error":"invalid_request","error_description":…}` for anything wrong with the request; 503
//! with `Retry-After` when the index cannot be written, because the sessions are not ended and
//! the OP must not be told they are (a 400 would say the token was bad, which it was not). Every
//! response carries `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::core::{Core, Event, Outcome, Scope, Sender};
use crate::index::{RecordStore, SessionIndex};
use crate::logout_token::{LogoutToken, MAX_TOKEN_BYTES, Policy, Rejection, UnverifiedToken};
use crate::provider::Provider;
use crate::response::{self, Protocol, Refusal};
use crate::sys::unix_now;
use crate::telemetry;

/// The path the receiver serves.
pub const PATH: &str = "/backchannel-logout";

/// The liveness check: 200 while the process answers.
#[doc(hidden)]
pub const LIVE_PATH: &str = "/healthz";

/// The readiness check: 200 when logouts can be applied, 503 otherwise.
#[doc(hidden)]
pub const READY_PATH: &str = "/readyz";

/// The largest request body read, in bytes: a maximal token plus room for other parameters.
#[doc(hidden)]
pub const MAX_BODY_BYTES: usize = MAX_TOKEN_BYTES + 4096;

/// A logout that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// The validated token.
    pub token: LogoutToken,
    /// How many live sessions it ended (0 when none was known: already logged out).
    pub ended: u64,
}

/// A trusted issuer with its keys and what its tokens must satisfy.
#[derive(Debug)]
struct Issuer {
    provider: Arc<Provider>,
    policy: Policy,
}

/// The receiver: the issuers whose logout tokens it verifies, and the core that applies them.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_logout::{Core, Policy, Provider, ProviderSettings, Receiver, RedisIndex, http_client};
///
/// let index = RedisIndex::connect("redis://127.0.0.1/", Default::default()).await?;
/// let issuer = "https://login.example.com/realms/main";
/// let keys = Provider::discover(issuer, http_client()?, ProviderSettings::default()).await?;
/// let core = Core::builder(index).issuer(issuer).build();
/// // POST /backchannel-logout: the URI registered at the OP for the client "web-app".
/// let receiver = Receiver::new(core).with_issuer(keys, Policy::new(issuer, "web-app"));
/// let app: axum::Router = axum::Router::new().merge(receiver.into_router());
/// # Ok(()) }
/// ```
pub struct Receiver<S> {
    issuers: HashMap<String, Issuer>,
    core: Core<S>,
}

impl<S> std::fmt::Debug for Receiver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("issuers", &self.issuers)
            .field("core", &self.core)
            .finish()
    }
}

impl<S: SessionIndex + RecordStore> Receiver<S> {
    /// A receiver that applies logouts through `core` and trusts no issuer yet.
    pub fn new(core: Core<S>) -> Self {
        Self {
            issuers: HashMap::new(),
            core,
        }
    }

    /// Trust an issuer whose keys `provider` holds; its tokens must satisfy `policy`. The core
    /// must know the issuer too (it holds the issuer's denylist settings): tokens of an issuer
    /// it does not know are refused.
    #[must_use]
    pub fn with_issuer(mut self, provider: Arc<Provider>, policy: Policy) -> Self {
        if !self.core.knows(&policy.issuer) {
            tracing::warn!(
                issuer = %policy.issuer,
                "the core does not know this issuer: its logout tokens will be refused"
            );
        }
        let issuer = Issuer { provider, policy };
        self.issuers.insert(issuer.policy.issuer.clone(), issuer);
        self
    }

    /// The axum router serving [`PATH`], to serve alone or merge into an application's router.
    pub fn into_router(self) -> Router {
        self.into_routers().0
    }

    /// The router serving [`PATH`], and one serving the health checks [`LIVE_PATH`] (the
    /// process answers) and [`READY_PATH`] (Redis answers and every issuer has keys: 200, or
    /// 503), to merge where the operator wants them; with [`HealthDetail`], `/readyz` names
    /// each check.
    pub fn into_routers(self) -> (Router, Router) {
        let shared = Arc::new(self);
        let logout = Router::new()
            .route(PATH, post(backchannel_logout::<S>))
            .with_state(Arc::clone(&shared));
        let health = Router::new()
            .route(LIVE_PATH, get(|| async { "ok" }))
            .route(READY_PATH, get(ready::<S>))
            .with_state(shared)
            .layer(response::no_store());
        (
            response::protect(logout, MAX_BODY_BYTES, Protocol::OAuth),
            health,
        )
    }

    /// Whether logouts can be applied now: the index answers within a second and every issuer
    /// has keys. The JSON names each check.
    pub async fn readiness(&self) -> (bool, serde_json::Value) {
        let ping = self.core.index().ping();
        let index = match tokio::time::timeout(Duration::from_secs(1), ping).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(error)) => {
                tracing::warn!(%error, "not ready: the session index does not answer");
                "unavailable".to_owned()
            }
            Err(_) => "no answer within 1 s".to_owned(),
        };
        let mut ready = index == "ok";
        let mut issuers = serde_json::Map::new();
        for (name, issuer) in &self.issuers {
            let has_keys = !issuer.provider.keys().is_empty();
            ready &= has_keys;
            let state = if has_keys { "ok" } else { "no keys" };
            issuers.insert(name.clone(), state.into());
        }
        let body = serde_json::json!({
            "status": if ready { "ready" } else { "not ready" },
            "index": index,
            "issuers": issuers,
        });
        (ready, body)
    }

    /// Validate a logout token and end the sessions it names. A refusal is a 400 (the token
    /// or request is wrong, `reason()` says why) or a 503 (the index cannot be written: the OP
    /// should retry).
    pub async fn process(&self, token: &str) -> Result<Applied, Refusal> {
        let token = self.verify(token).await.map_err(refusal)?;
        if !self.core.knows(&token.issuer) {
            return Err(refusal(Rejection::UnknownIssuer));
        }
        // The OP is the sender, scoped to its own issuer.
        let sender = Sender::new(
            "backchannel",
            token.issuer.clone(),
            Scope::issuer(token.issuer.clone()),
        );
        match self
            .core
            .apply(Event::logout(sender, token.clone()))
            .await?
        {
            Outcome::Duplicate => Err(refusal(Rejection::Replayed)),
            outcome => Ok(Applied {
                token,
                ended: outcome.ended() as u64,
            }),
        }
    }

    /// Validate a logout token: every rule but replay, which only the index can tell.
    pub async fn verify(&self, token: &str) -> Result<LogoutToken, Rejection> {
        let unverified = UnverifiedToken::parse(token)?;
        let issuer = self
            .issuers
            .get(unverified.issuer()?)
            .ok_or(Rejection::UnknownIssuer)?;
        let (kid, alg) = (unverified.kid().map(str::to_owned), unverified.algorithm());
        let keys = issuer.provider.keys_for(kid.as_deref(), alg).await;
        unverified.verify(
            keys.matching(kid.as_deref(), alg),
            &issuer.policy,
            unix_now(),
        )
    }
}

/// Put this in the request extensions of the health router (`.layer(Extension(HealthDetail))`)
/// where `/readyz` may say which check failed and name the configured issuers: on a listener
/// the OPs cannot reach. Without it `/readyz` says only `ready` or `not ready`.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct HealthDetail;

async fn ready<S: SessionIndex + RecordStore>(
    State(receiver): State<Arc<Receiver<S>>>,
    detail: Option<axum::Extension<HealthDetail>>,
) -> Response {
    let (ready, body) = receiver.readiness().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = match detail {
        Some(_) => body,
        None => serde_json::json!({ "status": if ready { "ready" } else { "not ready" } }),
    };
    response::json(status, &body)
}

/// The `logout_token` of a back-channel logout request, from its `Content-Type` and body: the
/// type must be `application/x-www-form-urlencoded` (parameters allowed) and the body must carry
/// exactly one `logout_token`; other parameters are ignored (§2.5). The error is the description
/// the OP gets with the 400.
///
/// Written here rather than with a form extractor because the spec's rules are not a generic
/// form's: a repeated `logout_token` must be refused, not resolved by taking the first or last.
#[doc(hidden)]
pub fn request_token(content_type: Option<&[u8]>, body: &[u8]) -> Result<String, &'static str> {
    if !content_type.is_some_and(is_form) {
        return Err("content type must be application/x-www-form-urlencoded");
    }
    let mut found = None;
    for (name, value) in form_urlencoded::parse(body) {
        if name == "logout_token" {
            if found.is_some() {
                return Err("logout_token is given more than once");
            }
            found = Some(value.into_owned());
        }
    }
    found.ok_or("logout_token is missing")
}

fn is_form(content_type: &[u8]) -> bool {
    std::str::from_utf8(content_type)
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A refused token, as the OP is told: 400 with the rule's description.
fn refusal(rejection: Rejection) -> Refusal {
    Refusal::invalid(rejection.to_string()).because(rejection.reason())
}

/// `POST /backchannel-logout`: the request, then the token, then the index, then the answer.
async fn backchannel_logout<S: SessionIndex + RecordStore>(
    State(receiver): State<Arc<Receiver<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    if !content_type.is_some_and(is_form) {
        return refused(
            &Refusal::invalid("content type must be application/x-www-form-urlencoded")
                .because("content_type"),
        );
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return refused(
            &Refusal::invalid("request body is too large or could not be read").because("body"),
        );
    };
    let token = match request_token(content_type, &body) {
        Ok(token) => token,
        Err(description) => return refused(&Refusal::invalid(description).because("form")),
    };
    match receiver.process(&token).await {
        Ok(applied) if applied.ended == 0 => {
            // Its own outcome: a logout that ended nothing may be a sid logout passing by
            // sessions registered without a sid (the issuer's `sid_logout` setting).
            let named = match (&applied.token.sid, &applied.token.sub) {
                (Some(_), Some(_)) => "sid_sub",
                (Some(_), None) => "sid",
                _ => "sub",
            };
            metrics::counter!(telemetry::LOGOUTS, "named" => named, "outcome" => "no_session")
                .increment(1);
            StatusCode::OK.into_response()
        }
        Ok(applied) => {
            metrics::counter!(telemetry::LOGOUTS, "outcome" => "applied").increment(1);
            metrics::counter!(telemetry::SESSIONS_ENDED).increment(applied.ended);
            StatusCode::OK.into_response()
        }
        Err(refusal) => refused(&refusal),
    }
}

/// A refused logout, logged and counted with its reason: 400, or 503 when it was not applied
/// for want of the index.
fn refused(refusal: &Refusal) -> Response {
    if refusal.is_retryable() {
        metrics::counter!(telemetry::LOGOUTS, "outcome" => "unavailable").increment(1);
        metrics::counter!(telemetry::REDIS_ERRORS, "operation" => "logout").increment(1);
    } else {
        tracing::info!(
            reason = refusal.reason(),
            description = refusal.description(),
            "logout refused"
        );
        metrics::counter!(telemetry::LOGOUTS, "outcome" => "rejected", "reason" => refusal.reason())
            .increment(1);
    }
    refusal.render(Protocol::OAuth)
}

/// The back-channel receiver of the library server: every configured issuer's tokens, with the
/// health checks beside it.
#[cfg(feature = "server")]
pub(crate) fn mount<S, D>(m: &super::Mount<'_, S, D>) -> super::Mounted
where
    S: SessionIndex + RecordStore,
{
    let receiver = m
        .issuers
        .iter()
        .fold(Receiver::new(m.core.clone()), |r, (provider, issuer)| {
            r.with_issuer(Arc::clone(provider), issuer.policy.clone())
        });
    let (logout, health) = receiver.into_routers();
    super::Mounted {
        health: Some(health),
        ..super::Mounted::main(logout)
    }
}
