//! Shared Signals push receiver: `POST /shared-signals/events` with a Security Event Token
//! (RFC 8417) delivered by push (RFC 8935), as SSF 1.0 transmitters send them.
//!
//! One request reads top to bottom in [`SsfReceiver::process`]: check the request, parse the
//! SET and pick the transmitter by its `iss`, verify the signature with the transmitter's keys
//! (JWKS from its `/.well-known/ssf-configuration`), check the claims (`typ: secevent+jwt`,
//! `aud`, `iat`, `jti`, no `exp`), skip a SET handled before (202 again), then act on each
//! event through the [`Core`]: CAEP `session-revoked` ends the sessions its subject names
//! (an OP session, or all of a user's) with their denylist marker, RISC `account-disabled`
//! revokes the user, a verification event is acknowledged. The SET's `jti` is remembered only
//! after the actions succeeded, so a failure (503) is retried by the transmitter and applied then.
//!
//! Answers: 202 with an empty body on success; 400 with `{"err": …, "description": …}` (RFC 8935
//! §2.4 error codes) for anything wrong, which changes nothing; 503 when Redis is unavailable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::core::{Core, CoreError, DEFAULT_EVENT_MAX_AGE, MAX_EVENT_MAX_AGE, to_completion};
use crate::index::SessionIndex;
use crate::index::StoreError;
use crate::jose::{JoseError, Jws, Rules, audience_names_one_of, numeric_date};
use crate::provider::Provider;
use crate::response::{self, Protocol};
use crate::sys::unix_now;

/// The path the receiver serves.
pub const PATH: &str = "/shared-signals/events";
/// The request's content type (RFC 8935 §2).
pub const CONTENT_TYPE: &str = "application/secevent+jwt";
/// CAEP: sessions were revoked.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// RISC: the account was disabled.
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// SSF: a verification event, sent to check the stream.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The largest SET accepted, in bytes.
pub const MAX_SET_BYTES: usize = 16 * 1024;
/// How far in the future `iat` may be, for clock skew.
const LEEWAY: u64 = 60;

/// Why a SET is refused; each maps to an RFC 8935 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// Malformed request or SET, or an event this receiver cannot act on.
    #[error("{0}")]
    InvalidRequest(String),
    /// No key of the transmitter verifies the signature, or the algorithm is not allowed.
    #[error("{0}")]
    InvalidKey(&'static str),
    /// The `iss` is not a configured transmitter.
    #[error("the SET issuer is not a configured transmitter")]
    InvalidIssuer,
    /// The `aud` does not name this receiver.
    #[error("the SET audience does not name this receiver")]
    InvalidAudience,
    /// The subject belongs to an issuer this transmitter does not speak for.
    #[error("the subject's issuer is not one this transmitter may act on")]
    AccessDenied,
}

impl SetError {
    /// The `err` code of RFC 8935 §2.4.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::AccessDenied => "access_denied",
        }
    }
}

fn invalid(description: impl Into<String>) -> SetError {
    SetError::InvalidRequest(description.into())
}

/// A configured transmitter. Build it with [`Transmitter::new`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Transmitter {
    /// Its keys (and issuer identifier).
    pub provider: Arc<Provider>,
    /// The `aud` values that name this receiver.
    pub audiences: Vec<String>,
    /// Algorithms its SETs may use.
    pub algorithms: Vec<Algorithm>,
    /// The issuer of the sessions that `opaque`, `email` and `session` subjects refer to.
    pub subject_issuer: String,
    /// Whether an `email` subject is the user's `sub` at `subject_issuer` (some OPs use the
    /// email as `sub`); otherwise such subjects are refused, as they cannot be mapped.
    pub email_is_sub: bool,
    /// How old a SET's `iat` may be (at most [`MAX_EVENT_MAX_AGE`]).
    pub max_age: Duration,
}

impl Transmitter {
    /// A transmitter whose keys `provider` holds, sending SETs to one of `audiences`, signed with
    /// RS256, whose subjects name sessions of its own issuer.
    pub fn new(provider: Arc<Provider>, audiences: Vec<String>) -> Self {
        let subject_issuer = provider.issuer().to_owned();
        Self {
            provider,
            audiences,
            algorithms: vec![Algorithm::RS256],
            subject_issuer,
            email_is_sub: false,
            max_age: DEFAULT_EVENT_MAX_AGE,
        }
    }

    /// How old a SET's `iat` may be (capped at [`MAX_EVENT_MAX_AGE`]).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.min(MAX_EVENT_MAX_AGE);
        self
    }

    /// The algorithms its SETs may use.
    #[must_use]
    pub fn algorithms(mut self, algorithms: Vec<Algorithm>) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// The configured issuer whose sessions its subjects name (when it is not the transmitter
    /// itself, e.g. a security product reporting on an IdP's users).
    #[must_use]
    pub fn subject_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.subject_issuer = issuer.into();
        self
    }

    /// Treat `email` subjects as the user's `sub` (for OPs that use the email as `sub`).
    #[must_use]
    pub fn email_is_sub(mut self, email_is_sub: bool) -> Self {
        self.email_is_sub = email_is_sub;
        self
    }
}

/// What one event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// End an OP session's application sessions (with its denylist marker).
    OpSession {
        /// The sessions' issuer.
        issuer: String,
        /// The OP session.
        sid: String,
    },
    /// End all of a user's sessions and write the user's denylist marker.
    User {
        /// The user's issuer.
        issuer: String,
        /// The user.
        sub: String,
    },
    /// Nothing to do (verification, or an event type this receiver does not act on).
    Acknowledge {
        /// The event type.
        event: String,
    },
}

/// A verified SET.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedSet {
    /// The transmitter (`iss`).
    pub issuer: String,
    /// The SET's id.
    pub jti: String,
    /// What its events ask for, in order.
    pub actions: Vec<Action>,
}

/// The receiver: transmitters by issuer, and the core that acts.
pub struct SsfReceiver<S> {
    transmitters: HashMap<String, Transmitter>,
    core: Core<S>,
}

impl<S> std::fmt::Debug for SsfReceiver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsfReceiver")
            .field("transmitters", &self.transmitters.keys())
            .finish_non_exhaustive()
    }
}

/// The header rules of a SET: `typ` must say so (RFC 8417 §2.3, SSF 1.0), public-key
/// algorithms only.
const RULES: Rules = Rules {
    max_bytes: MAX_SET_BYTES,
    types: &["secevent+jwt"],
    untyped: false,
    hmac: false,
};

impl From<JoseError> for SetError {
    fn from(error: JoseError) -> Self {
        match error {
            JoseError::UnsupportedAlgorithm => {
                SetError::InvalidKey("the SET algorithm is not supported")
            }
            JoseError::AlgorithmNotAllowed => {
                SetError::InvalidKey("the SET algorithm is not allowed for this transmitter")
            }
            JoseError::UnknownKey | JoseError::BadSignature => {
                SetError::InvalidKey("no key of the transmitter verifies the SET signature")
            }
            JoseError::WrongType => invalid("the SET header must have typ secevent+jwt"),
            other => invalid(format!("the SET is refused: {other}")),
        }
    }
}

/// Verify a SET against the configured transmitters at `now`, and say what its events ask for.
pub async fn verify(
    token: &str,
    transmitters: &HashMap<String, Transmitter>,
    now: u64,
) -> Result<VerifiedSet, SetError> {
    let set = Jws::parse(token, &RULES)?;
    let iss = set
        .unverified_str("iss")
        .ok_or_else(|| invalid("the SET has no iss"))?;
    let transmitter = transmitters.get(iss).ok_or(SetError::InvalidIssuer)?;
    set.require_algorithm(&transmitter.algorithms)?;
    transmitter.provider.verify(&set).await?;
    check_claims(&set.into_claims(), transmitter, now)
}

pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    transmitter: &Transmitter,
    now: u64,
) -> Result<VerifiedSet, SetError> {
    if !audience_names_one_of(claims, &transmitter.audiences) {
        return Err(SetError::InvalidAudience);
    }
    if claims.contains_key("exp") {
        return Err(invalid("a SET must not have exp"));
    }
    match numeric_date(claims, "iat") {
        Ok(Some(iat)) if iat > now.saturating_add(LEEWAY) => {
            return Err(invalid("the SET iat is in the future"));
        }
        Ok(Some(iat)) if now.saturating_sub(iat) > transmitter.max_age.as_secs() => {
            return Err(invalid("the SET is older than this receiver accepts"));
        }
        Ok(Some(_)) => {}
        _ => return Err(invalid("the SET has no numeric iat")),
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("the SET has no jti"))?;
    let Some(Value::Object(events)) = claims.get("events") else {
        return Err(invalid("the SET has no events object"));
    };
    if events.is_empty() {
        return Err(invalid("the SET has no event"));
    }
    let mut actions = Vec::with_capacity(events.len());
    for (event, payload) in events {
        let action = match event.as_str() {
            SESSION_REVOKED | ACCOUNT_DISABLED => {
                // SSF 1.0 puts the subject in `sub_id`; earlier drafts in the event's `subject`.
                let subject = claims
                    .get("sub_id")
                    .or_else(|| payload.get("subject"))
                    .ok_or_else(|| invalid(format!("{event} names no subject (sub_id)")))?;
                match (event.as_str(), subject_of(subject, transmitter)?) {
                    (
                        ACCOUNT_DISABLED,
                        Subject::Session {
                            issuer,
                            user: Some(sub),
                            ..
                        },
                    ) => Action::User { issuer, sub },
                    (ACCOUNT_DISABLED, Subject::Session { user: None, .. }) => {
                        return Err(invalid("account-disabled needs a user subject"));
                    }
                    (_, Subject::User { issuer, sub }) => Action::User { issuer, sub },
                    (_, Subject::Session { issuer, sid, .. }) => Action::OpSession { issuer, sid },
                }
            }
            other => Action::Acknowledge {
                event: other.to_owned(),
            },
        };
        actions.push(action);
    }
    Ok(VerifiedSet {
        issuer: transmitter.provider.issuer().to_owned(),
        jti: jti.to_owned(),
        actions,
    })
}

/// Who a subject names.
enum Subject {
    User {
        issuer: String,
        sub: String,
    },
    Session {
        issuer: String,
        sid: String,
        user: Option<String>,
    },
}

fn field<'v>(subject: &'v Value, name: &str, format: &str) -> Result<&'v str, SetError> {
    subject
        .get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid(format!("a subject of format {format} needs {name}")))
}

/// A simple subject (RFC 9493) as a user, under the transmitter's mapping.
fn user_of(subject: &Value, transmitter: &Transmitter) -> Result<(String, String), SetError> {
    let format = subject.get("format").and_then(Value::as_str).unwrap_or("");
    match format {
        "iss_sub" => {
            // A transmitter acts on the sessions of the issuer it is configured for, whatever
            // issuer its subjects name.
            let iss = field(subject, "iss", format)?;
            if iss != transmitter.subject_issuer {
                return Err(SetError::AccessDenied);
            }
            Ok((iss.to_owned(), field(subject, "sub", format)?.to_owned()))
        }
        "opaque" => Ok((
            transmitter.subject_issuer.clone(),
            field(subject, "id", format)?.to_owned(),
        )),
        "email" if transmitter.email_is_sub => Ok((
            transmitter.subject_issuer.clone(),
            field(subject, "email", format)?.to_owned(),
        )),
        "email" => Err(invalid(
            "email subjects cannot be mapped to sessions here (set email_is_sub for a \
             transmitter whose OP uses the email as sub)",
        )),
        "" => Err(invalid("the subject has no format")),
        other => Err(invalid(format!("subject format {other} is not supported"))),
    }
}

fn subject_of(subject: &Value, transmitter: &Transmitter) -> Result<Subject, SetError> {
    let format = subject.get("format").and_then(Value::as_str);
    let complex = format.is_none_or(|f| f == "complex")
        && (subject.get("user").is_some() || subject.get("session").is_some());
    if !complex {
        let (issuer, sub) = user_of(subject, transmitter)?;
        return Ok(Subject::User { issuer, sub });
    }
    let user = subject
        .get("user")
        .map(|u| user_of(u, transmitter))
        .transpose()?;
    match subject.get("session") {
        None => {
            let (issuer, sub) = user.ok_or_else(|| invalid("the complex subject names no user"))?;
            Ok(Subject::User { issuer, sub })
        }
        Some(session) => {
            let format = session.get("format").and_then(Value::as_str).unwrap_or("");
            if format != "opaque" {
                return Err(invalid(
                    "a session subject must have format opaque (its id is the sid)",
                ));
            }
            let sid = field(session, "id", format)?.to_owned();
            let (issuer, user) = match user {
                Some((issuer, sub)) => (issuer, Some(sub)),
                None => (transmitter.subject_issuer.clone(), None),
            };
            Ok(Subject::Session { issuer, sid, user })
        }
    }
}

impl<S: SessionIndex> SsfReceiver<S> {
    /// A receiver acting through `core`, with no transmitter yet.
    pub fn new(core: Core<S>) -> Self {
        Self {
            transmitters: HashMap::new(),
            core,
        }
    }

    /// Accept SETs from `transmitter`.
    #[must_use]
    pub fn with_transmitter(mut self, transmitter: Transmitter) -> Self {
        self.transmitters
            .insert(transmitter.provider.issuer().to_owned(), transmitter);
        self
    }

    /// The axum router serving [`PATH`].
    pub fn into_router(self) -> Router {
        let routes = Router::new()
            .route(PATH, post(receive::<S>))
            .with_state(Arc::new(self));
        response::protect(routes, MAX_SET_BYTES, Protocol::SecurityEvent)
    }

    /// Verify a SET and apply what it asks for. `Ok(false)` when it was handled before.
    ///
    /// The whole SET is checked before anything changes: every event must be one this
    /// receiver can carry out, on an issuer its core knows. If an action then fails (Redis),
    /// the answer is a 503 and the SET is not remembered, so the transmitter's retry applies it
    /// again (each action is safe to repeat).
    pub async fn process(&self, token: &str) -> Result<bool, Refused> {
        let set = verify(token, &self.transmitters, unix_now())
            .await
            .map_err(Refused::Set)?;
        for action in &set.actions {
            let issuer = match action {
                Action::OpSession { issuer, .. } | Action::User { issuer, .. } => issuer,
                Action::Acknowledge { .. } => continue,
            };
            if !self.core.knows(issuer) {
                return Err(Refused::Set(invalid(
                    "the subject's issuer is not configured here",
                )));
            }
        }
        // From here on the SET changes state: finish, whatever happens to the request.
        to_completion(apply(self.core.clone(), set))
            .await
            .unwrap_or_else(|| {
                Err(Refused::Unavailable(StoreError::Unexpected(
                    "applying the SET failed".into(),
                )))
            })
    }
}

/// Apply a verified SET whose issuers the core knows: each action in order, then remember its
/// id. If an action fails the SET is not remembered, so the transmitter's retry applies it
/// again (each action is safe to repeat); the log says how far it got.
async fn apply<S: SessionIndex>(core: Core<S>, set: VerifiedSet) -> Result<bool, Refused> {
    if core
        .event_seen(&set.issuer, &set.jti)
        .await
        .map_err(unavailable)?
    {
        return Ok(false);
    }
    let total = set.actions.len();
    for (done, action) in set.actions.iter().enumerate() {
        let ended = match action {
            Action::OpSession { issuer, sid } => core.revoke_op_session(issuer, sid).await,
            Action::User { issuer, sub } => core.revoke_user(issuer, sub).await,
            Action::Acknowledge { event } => {
                tracing::info!(transmitter = %set.issuer, event = ?event, "security event acknowledged");
                continue;
            }
        };
        match ended {
            Ok(ended) => {
                tracing::info!(transmitter = %set.issuer, ?action, ended = ended.len(), "security event applied");
            }
            Err(error) => {
                if done > 0 {
                    tracing::error!(
                        transmitter = %set.issuer, done, total,
                        "security event partly applied; the transmitter's retry applies the rest"
                    );
                }
                return Err(unavailable(error));
            }
        }
    }
    core.remember_event(&set.issuer, &set.jti)
        .await
        .map_err(unavailable)?;
    Ok(true)
}

fn unavailable(error: CoreError) -> Refused {
    match error {
        CoreError::Unavailable(store) => Refused::Unavailable(store),
        // Checked before any action; an issuer cannot disappear from a built core.
        other => Refused::Set(invalid(other.to_string())),
    }
}

/// Why a SET was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The SET or request is wrong: 400.
    #[error(transparent)]
    Set(SetError),
    /// Redis is unavailable: 503, the transmitter retries.
    #[error(transparent)]
    Unavailable(#[from] crate::index::StoreError),
}

fn error(set: &SetError) -> Response {
    metrics::counter!(crate::telemetry::SECURITY_EVENTS, "outcome" => "rejected", "reason" => set.code())
        .increment(1);
    tracing::info!(err = set.code(), description = %set, "security event refused");
    response::error(
        Protocol::SecurityEvent,
        StatusCode::BAD_REQUEST,
        set.code(),
        &set.to_string(),
    )
}

async fn receive<S: SessionIndex>(
    State(receiver): State<Arc<SsfReceiver<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !content_type.is_some_and(|t| t.eq_ignore_ascii_case(CONTENT_TYPE)) {
        return error(&invalid(format!("content type must be {CONTENT_TYPE}")));
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_SET_BYTES).await else {
        return error(&invalid(
            "the request body is too large or could not be read",
        ));
    };
    let Ok(token) = std::str::from_utf8(&body) else {
        return error(&invalid("the request body is not a SET"));
    };
    match receiver.process(token.trim()).await {
        Ok(fresh) => {
            let outcome = if fresh { "applied" } else { "duplicate" };
            metrics::counter!(crate::telemetry::SECURITY_EVENTS, "outcome" => outcome).increment(1);
            StatusCode::ACCEPTED.into_response()
        }
        Err(Refused::Set(set)) => error(&set),
        Err(Refused::Unavailable(store)) => {
            tracing::error!(error = %store, "security event not applied: session store unavailable");
            metrics::counter!(crate::telemetry::SECURITY_EVENTS, "outcome" => "unavailable")
                .increment(1);
            response::error(
                Protocol::SecurityEvent,
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the session store is unavailable; retry later",
            )
        }
    }
}
