//! The back-channel logout endpoint: `POST /backchannel-logout` (Back-Channel Logout §2.5, §2.8).
//!
//! One logout reads top to bottom in [`Receiver::process`]: parse the token, pick the issuer it
//! claims, find its key (refetching the JWKS once if the `kid` is new), verify, then end the
//! sessions in the index. Responses: 200 with an empty body; 400 with
//! `{"error":"invalid_request","error_description":…}` for anything wrong with the request; 503
//! with `Retry-After` when the index cannot be written, because the sessions are not ended and
//! the OP must not be told they are (a 400 would say the token was bad, which it was not). Every
//! response carries `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::logout_token::{LogoutToken, MAX_TOKEN_BYTES, Policy, Rejection, UnverifiedToken};
use crate::ops;
use crate::provider::Provider;
use crate::store::{LogoutOutcome, SessionIndex, StoreError};

/// The path the receiver serves.
pub const PATH: &str = "/backchannel-logout";

/// The liveness check: 200 while the process answers.
pub const LIVE_PATH: &str = "/healthz";

/// The readiness check: 200 when logouts can be applied, 503 otherwise.
pub const READY_PATH: &str = "/readyz";

/// The largest request body read, in bytes: a maximal token plus room for other parameters.
pub const MAX_BODY_BYTES: usize = MAX_TOKEN_BYTES + 4096;

/// How long access-token denylist markers last unless set per issuer: as long as an access
/// token can live at most OPs (Keycloak 5 min, Okta and Entra about an hour).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Seconds the OP is asked to wait before retrying after a storage failure.
const RETRY_AFTER_SECS: &str = "5";

/// Why a logout was not applied.
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    /// The request or token is invalid: 400.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The index could not be written: 503, the OP should retry.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// A logout that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// How long the denylist markers of its logouts last; `None`: no markers.
    access_token_lifetime: Option<Duration>,
}

/// Work to do after a logout ended sessions, such as revoking their refresh tokens
/// ([`rp::RefreshTokenRevocation`](crate::rp::RefreshTokenRevocation)).
pub trait AfterLogout: Send + Sync + 'static {
    /// Called with the issuer and the ids of the sessions just ended, before the OP gets its
    /// answer: it must not block (spawn the work).
    fn sessions_ended(&self, issuer: &str, session_ids: &[String]);
}

/// The receiver: trusted issuers and the index whose sessions it ends.
pub struct Receiver<S> {
    issuers: HashMap<String, Issuer>,
    index: S,
    after_logout: Option<Arc<dyn AfterLogout>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Receiver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("issuers", &self.issuers)
            .field("index", &self.index)
            .field("after_logout", &self.after_logout.is_some())
            .finish()
    }
}

impl<S: SessionIndex> Receiver<S> {
    /// A receiver that ends sessions in `index` and trusts no issuer yet.
    pub fn new(index: S) -> Self {
        Self {
            issuers: HashMap::new(),
            index,
            after_logout: None,
        }
    }

    /// Run `hook` whenever a logout ended sessions.
    #[must_use]
    pub fn with_after_logout(mut self, hook: Arc<dyn AfterLogout>) -> Self {
        self.after_logout = Some(hook);
        self
    }

    /// Trust an issuer whose keys `provider` holds; its tokens must satisfy `policy`. Its
    /// logouts write access-token denylist markers lasting [`DEFAULT_ACCESS_TOKEN_LIFETIME`].
    #[must_use]
    pub fn with_issuer(mut self, provider: Arc<Provider>, policy: Policy) -> Self {
        let issuer = Issuer {
            provider,
            policy,
            access_token_lifetime: Some(DEFAULT_ACCESS_TOKEN_LIFETIME),
        };
        self.issuers.insert(issuer.policy.issuer.clone(), issuer);
        self
    }

    /// How long access tokens of `issuer` (added before) can live: its logouts' denylist
    /// markers last that long. `None` turns the markers off for it.
    #[must_use]
    pub fn with_access_token_lifetime(mut self, issuer: &str, lifetime: Option<Duration>) -> Self {
        if let Some(entry) = self.issuers.get_mut(issuer) {
            entry.access_token_lifetime = lifetime;
        }
        self
    }

    /// The axum router serving [`PATH`], to serve alone or merge into an application's router.
    pub fn into_router(self) -> Router {
        self.into_routers().0
    }

    /// The router serving [`PATH`], and one serving the health checks [`LIVE_PATH`] (the
    /// process answers) and [`READY_PATH`] (Redis answers and every issuer has keys: 200, or
    /// 503 naming what is not ready), to merge where the operator wants them.
    pub fn into_routers(self) -> (Router, Router) {
        let shared = Arc::new(self);
        let logout = Router::new()
            .route(PATH, post(backchannel_logout::<S>))
            .with_state(Arc::clone(&shared))
            .layer(axum::middleware::map_response(no_store));
        let health = Router::new()
            .route(LIVE_PATH, get(|| async { "ok" }))
            .route(READY_PATH, get(ready::<S>))
            .with_state(shared)
            .layer(axum::middleware::map_response(no_store));
        (logout, health)
    }

    /// Whether logouts can be applied now: the index answers within a second and every issuer
    /// has keys. The JSON names each check.
    pub async fn readiness(&self) -> (bool, serde_json::Value) {
        let index = match tokio::time::timeout(Duration::from_secs(1), self.index.ping()).await {
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

    /// Validate a logout token and end the sessions it names.
    pub async fn process(&self, token: &str) -> Result<Applied, LogoutError> {
        let unverified = UnverifiedToken::parse(token)?;
        let issuer = self
            .issuers
            .get(unverified.issuer()?)
            .ok_or(Rejection::UnknownIssuer)?;
        let (kid, alg) = (unverified.kid().map(str::to_owned), unverified.algorithm());
        let keys = issuer.provider.keys_for(kid.as_deref(), alg).await;
        let now = unix_now();
        let token = unverified.verify(keys.matching(kid.as_deref(), alg), &issuer.policy, now)?;
        let mut logout = token.to_logout(now);
        logout.deny_for = issuer.access_token_lifetime;
        match self.index.logout(&logout).await? {
            LogoutOutcome::Replayed => Err(Rejection::Replayed.into()),
            LogoutOutcome::Applied { ended } => {
                tracing::info!(issuer = %token.issuer, ended = ended.len(), "logout applied");
                if let Some(hook) = &self.after_logout
                    && !ended.is_empty()
                {
                    hook.sessions_ended(&token.issuer, &ended);
                }
                Ok(Applied {
                    token,
                    ended: ended.len() as u64,
                })
            }
        }
    }
}

async fn ready<S: SessionIndex>(State(receiver): State<Arc<Receiver<S>>>) -> Response {
    let (ready, body) = receiver.readiness().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn invalid_request(description: &str) -> Response {
    let body = serde_json::json!({ "error": "invalid_request", "error_description": description });
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn unavailable() -> Response {
    let body = serde_json::json!({
        "error": "temporarily_unavailable",
        "error_description": "the session store is unavailable; retry later",
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::RETRY_AFTER, RETRY_AFTER_SECS),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The `logout_token` of a back-channel logout request, from its `Content-Type` and body: the
/// type must be `application/x-www-form-urlencoded` (parameters allowed) and the body must carry
/// exactly one `logout_token`; other parameters are ignored. The error is the description the
/// OP gets with the 400.
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

async fn backchannel_logout<S: SessionIndex>(
    State(receiver): State<Arc<Receiver<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    if !content_type.is_some_and(is_form) {
        return refused(
            "content_type",
            "content type must be application/x-www-form-urlencoded",
        );
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return refused("body", "request body is too large or could not be read");
    };
    let token = match request_token(content_type, &body) {
        Ok(token) => token,
        Err(description) => return refused("form", description),
    };
    match receiver.process(&token).await {
        Ok(applied) => {
            metrics::counter!(ops::LOGOUTS, "outcome" => "applied").increment(1);
            metrics::counter!(ops::SESSIONS_ENDED).increment(applied.ended);
            StatusCode::OK.into_response()
        }
        Err(LogoutError::Rejected(rejection)) => {
            refused(rejection.reason(), &rejection.to_string())
        }
        Err(LogoutError::Unavailable(error)) => {
            tracing::error!(%error, "logout not applied: session store unavailable");
            metrics::counter!(ops::LOGOUTS, "outcome" => "unavailable").increment(1);
            metrics::counter!(ops::REDIS_ERRORS, "operation" => "logout").increment(1);
            unavailable()
        }
    }
}

/// A 400 for a refused logout, logged and counted with its reason.
fn refused(reason: &'static str, description: &str) -> Response {
    tracing::info!(reason, description, "logout refused");
    metrics::counter!(ops::LOGOUTS, "outcome" => "rejected", "reason" => reason).increment(1);
    invalid_request(description)
}
