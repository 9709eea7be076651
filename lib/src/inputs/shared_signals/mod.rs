//! Shared Signals push receiver: `POST /shared-signals/events` with a Security Event Token
//! (RFC 8417) delivered by push (RFC 8935), as SSF 1.0 transmitters send them.
//!
//! One request reads top to bottom in [`SsfReceiver::process`]: check the request, parse the
//! SET and pick the transmitter by its `iss`, verify the signature with the transmitter's keys
//! (JWKS from its `/.well-known/ssf-configuration`), check the claims (`typ: secevent+jwt`,
//! `aud`, `iat`, `jti`, no `exp`), then hand the [`Core`] one event, the SET, with the
//! transmitter as sender (scoped to its subject issuer and, when configured, customer) and the
//! `jti` as id: CAEP `session-revoked` ends the sessions its subject names (an OP session, or
//! all of a user's) with their denylist marker, RISC `account-disabled` revokes the user, a
//! verification event asks for nothing. The core applies the SET once (a SET seen before is a
//! 202 again), whole or, after a failure (503), again on the transmitter's retry.
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

use crate::core::{
    Action, Core, DEFAULT_EVENT_MAX_AGE, Event, MAX_EVENT_MAX_AGE, Outcome, Scope, Sender,
};
use crate::index::{RecordStore, SessionIndex};
use crate::jose::{JoseError, Jws, Rules, audience_names_one_of, numeric_date};
use crate::provider::Provider;
use crate::response::{self, Protocol, Refusal};
use crate::sys::unix_now;

#[cfg(feature = "server")]
#[doc(hidden)]
pub mod config;

/// The path the receiver serves.
#[doc(hidden)]
pub const PATH: &str = "/shared-signals/events";
/// The request's content type (RFC 8935 §2).
#[doc(hidden)]
pub const CONTENT_TYPE: &str = "application/secevent+jwt";
/// CAEP: sessions were revoked.
#[doc(hidden)]
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// RISC: the account was disabled.
#[doc(hidden)]
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// SSF: a verification event, sent to check the stream.
#[doc(hidden)]
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The largest SET accepted, in bytes.
#[doc(hidden)]
pub const MAX_SET_BYTES: usize = 16 * 1024;
/// How far in the future `iat` may be, for clock skew.
const LEEWAY: u64 = 60;

/// A refusal with RFC 8935's error code `code` (§2.4): every failure is a 400.
fn refused(code: &'static str, description: impl Into<std::borrow::Cow<'static, str>>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, Some(code), description)
}

fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> Refusal {
    refused("invalid_request", description)
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
    /// Only the users of this customer, when set.
    pub customer: Option<String>,
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
            customer: None,
        }
    }

    /// Act only on the users of `customer` (as the applications' logins recorded it).
    #[must_use]
    pub fn customer(mut self, customer: Option<String>) -> Self {
        self.customer = customer;
        self
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

/// A verified SET.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[doc(hidden)]
pub struct VerifiedSet {
    /// The transmitter (`iss`).
    pub issuer: String,
    /// The SET's id.
    pub jti: String,
    /// What its events ask for, in order.
    pub actions: Vec<Action>,
    /// The events that ask for nothing here (verification, types not acted on).
    pub acknowledged: Vec<String>,
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

/// A refused signature, as RFC 8935 names it.
fn jose_refusal(error: JoseError) -> Refusal {
    match error {
        JoseError::UnsupportedAlgorithm => {
            refused("invalid_key", "the SET algorithm is not supported")
        }
        JoseError::AlgorithmNotAllowed => refused(
            "invalid_key",
            "the SET algorithm is not allowed for this transmitter",
        ),
        JoseError::UnknownKey | JoseError::BadSignature => refused(
            "invalid_key",
            "no key of the transmitter verifies the SET signature",
        ),
        JoseError::WrongType => invalid("the SET header must have typ secevent+jwt"),
        other => invalid(format!("the SET is refused: {other}")),
    }
}

/// Verify a SET against the configured transmitters at `now`, and say what its events ask for.
#[doc(hidden)]
pub async fn verify(
    token: &str,
    transmitters: &HashMap<String, Transmitter>,
    now: u64,
) -> Result<VerifiedSet, Refusal> {
    let set = Jws::parse(token, &RULES).map_err(jose_refusal)?;
    let iss = set
        .unverified_str("iss")
        .ok_or_else(|| invalid("the SET has no iss"))?;
    let transmitter = transmitters.get(iss).ok_or_else(|| {
        refused(
            "invalid_issuer",
            "the SET issuer is not a configured transmitter",
        )
    })?;
    set.require_algorithm(&transmitter.algorithms)
        .map_err(jose_refusal)?;
    transmitter
        .provider
        .verify(&set)
        .await
        .map_err(jose_refusal)?;
    check_claims(&set.into_claims(), transmitter, now)
}

pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    transmitter: &Transmitter,
    now: u64,
) -> Result<VerifiedSet, Refusal> {
    if !audience_names_one_of(claims, &transmitter.audiences) {
        return Err(refused(
            "invalid_audience",
            "the SET audience does not name this receiver",
        ));
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
    let mut acknowledged = Vec::new();
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
                    ) => Action::RevokeUser { issuer, sub },
                    (ACCOUNT_DISABLED, Subject::Session { user: None, .. }) => {
                        return Err(invalid("account-disabled needs a user subject"));
                    }
                    (_, Subject::User { issuer, sub }) => Action::RevokeUser { issuer, sub },
                    (_, Subject::Session { issuer, sid, .. }) => {
                        Action::RevokeOpSession { issuer, sid }
                    }
                }
            }
            other => {
                acknowledged.push(other.to_owned());
                continue;
            }
        };
        actions.push(action);
    }
    Ok(VerifiedSet {
        issuer: transmitter.provider.issuer().to_owned(),
        jti: jti.to_owned(),
        actions,
        acknowledged,
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

fn field<'v>(subject: &'v Value, name: &str, format: &str) -> Result<&'v str, Refusal> {
    subject
        .get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid(format!("a subject of format {format} needs {name}")))
}

/// A simple subject (RFC 9493) as a user, under the transmitter's mapping.
fn user_of(subject: &Value, transmitter: &Transmitter) -> Result<(String, String), Refusal> {
    let format = subject.get("format").and_then(Value::as_str).unwrap_or("");
    match format {
        // The issuer as named: the core refuses one outside the transmitter's scope.
        "iss_sub" => Ok((
            field(subject, "iss", format)?.to_owned(),
            field(subject, "sub", format)?.to_owned(),
        )),
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

fn subject_of(subject: &Value, transmitter: &Transmitter) -> Result<Subject, Refusal> {
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

impl<S: SessionIndex + RecordStore> SsfReceiver<S> {
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

    /// Verify a SET and apply what it asks for, through the core. `Ok(false)` when it was
    /// applied before. A SET naming sessions outside the transmitter's scope is refused whole
    /// before anything changes (`access_denied`); a failure midway is a 503, and the
    /// transmitter's retry applies it again (each action is safe to repeat).
    pub async fn process(&self, token: &str) -> Result<bool, Refusal> {
        let set = verify(token, &self.transmitters, unix_now()).await?;
        let transmitter = self
            .transmitters
            .get(&set.issuer)
            .ok_or_else(|| invalid("the SET issuer is not a configured transmitter"))?;
        for event in &set.acknowledged {
            tracing::info!(transmitter = %set.issuer, event = ?event, "security event acknowledged");
        }
        let sender = Sender::new(
            "shared-signals",
            set.issuer.clone(),
            Scope::issuer(transmitter.subject_issuer.clone())
                .with_customer(transmitter.customer.clone()),
        );
        let event = Event::new(sender, set.actions).with_id(set.jti);
        match self.core.apply(event).await {
            Ok(Outcome::Duplicate) => Ok(false),
            Ok(_) => Ok(true),
            Err(error) => Err(Refusal::from(error)),
        }
    }
}

fn error(refusal: &Refusal) -> Response {
    if refusal.is_retryable() {
        metrics::counter!(crate::telemetry::SECURITY_EVENTS, "outcome" => "unavailable")
            .increment(1);
    } else {
        metrics::counter!(crate::telemetry::SECURITY_EVENTS, "outcome" => "rejected", "reason" => refusal.code().unwrap_or("invalid_request"))
            .increment(1);
        tracing::info!(
            err = refusal.code(),
            description = refusal.description(),
            "security event refused"
        );
    }
    refusal.render(Protocol::SecurityEvent)
}

async fn receive<S: SessionIndex + RecordStore>(
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
        Err(refusal) => error(&refusal),
    }
}

/// The Shared Signals receiver of the library server: off without transmitters. Each
/// transmitter's keys come from its `/.well-known/ssf-configuration`.
#[cfg(feature = "server")]
pub(crate) async fn mount<S, D>(
    m: &super::Mount<'_, S, D>,
) -> Result<Option<super::Mounted>, super::MountError>
where
    S: SessionIndex + RecordStore,
{
    let configured = &m.settings.inputs.transmitters;
    if configured.is_empty() {
        return Ok(None);
    }
    let mut receiver = SsfReceiver::new(m.core.clone());
    for t in configured {
        let provider = Provider::discover_at(
            &t.issuer,
            "ssf-configuration",
            m.http.clone(),
            t.provider.clone(),
        )
        .await
        .map_err(|source| super::MountError::Transmitter {
            issuer: t.issuer.clone(),
            source,
        })?;
        receiver = receiver.with_transmitter(
            Transmitter::new(provider, t.audiences.clone())
                .algorithms(t.algorithms.clone())
                .subject_issuer(t.subject_issuer.clone())
                .email_is_sub(t.email_is_sub)
                .max_age(t.max_event_age)
                .customer(t.customer.clone()),
        );
    }
    Ok(Some(super::Mounted::main(receiver.into_router())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TX: &str = "https://transmitter.example";
    const OP: &str = "https://op.example";

    fn transmitter() -> Transmitter {
        let provider = Provider::from_jwks(TX, &json!({"keys": []})).expect("provider");
        Transmitter::new(provider, vec!["receiver".into()]).subject_issuer(OP)
    }

    fn set(events: Value, sub_id: Value, now: u64) -> Map<String, Value> {
        json!({"iss": TX, "aud": "receiver", "iat": now, "jti": "j1", "events": events, "sub_id": sub_id})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn events_become_the_cores_actions() {
        let now = 1_800_000_000;
        let user = json!({"format": "iss_sub", "iss": OP, "sub": "alice"});
        let checked = check_claims(
            &set(json!({ACCOUNT_DISABLED: {}, VERIFICATION: {}}), user, now),
            &transmitter(),
            now,
        )
        .expect("valid");
        assert_eq!(
            checked.actions,
            vec![Action::RevokeUser {
                issuer: OP.into(),
                sub: "alice".into()
            }]
        );
        assert_eq!(checked.acknowledged, vec![VERIFICATION.to_owned()]);
        let session = json!({"format": "complex", "session": {"format": "opaque", "id": "s1"}});
        let checked = check_claims(
            &set(json!({SESSION_REVOKED: {}}), session, now),
            &transmitter(),
            now,
        )
        .expect("valid");
        assert_eq!(
            checked.actions,
            vec![Action::RevokeOpSession {
                issuer: OP.into(),
                sid: "s1".into()
            }]
        );
    }

    #[test]
    fn bad_sets_are_refused_with_their_code() {
        let now = 1_800_000_000;
        let user = json!({"format": "iss_sub", "iss": OP, "sub": "alice"});
        let good = set(json!({ACCOUNT_DISABLED: {}}), user, now);
        let mut cases: Vec<(Map<String, Value>, &str)> = Vec::new();
        let mut change = |name: &str, value: Value, code: &'static str| {
            let mut bad = good.clone();
            bad.insert(name.into(), value);
            cases.push((bad, code));
        };
        change("aud", json!("someone-else"), "invalid_audience");
        change("exp", json!(now + 60), "invalid_request");
        change("iat", json!(now + 3600), "invalid_request");
        change("iat", json!(now - 8 * 86_400), "invalid_request");
        change("jti", json!(""), "invalid_request");
        change("events", json!({}), "invalid_request");
        change(
            "sub_id",
            json!({"format": "email", "email": "a@b"}),
            "invalid_request",
        );
        for (bad, code) in cases {
            let refusal = check_claims(&bad, &transmitter(), now).expect_err("refused");
            assert_eq!(refusal.code(), Some(code), "{bad:?}");
        }
    }
}
