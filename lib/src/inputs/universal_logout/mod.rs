//! Okta Universal Logout (the Global Token Revocation profile,
//! draft-parecki-oauth-global-token-revocation): the endpoint an Okta administrator registers for
//! the application. Okta `POST`s the user to log out everywhere — `{"sub_id": {"format":
//! "iss_sub", "iss": …, "sub": …}}` or `{"format": "email", …}` — with a bearer JWT it signs
//! with the key of the org's ID tokens (`typ: global-token-revocation+jwt`; `iss` the org, `sub`
//! the application's client id, `aud` this endpoint's URL, `exp`, `nbf`, `iat`, `jti`).
//!
//! Each configured [`Sender`] names the org (its keys come from its discovery document), the
//! application's client id and the endpoint's URL as registered, and the configured issuer
//! whose sessions its subjects name (and, when configured, the customer whose users it may
//! reach). The JWT is verified (signature, `typ`, algorithm, every claim) before the body is
//! read; then the core gets the event — the org's application is the sender, the JWT's `jti` a
//! single-use id (spent by its first request, whatever the answer) — and revokes the user:
//! sessions ended, denylist marker written, refresh tokens revoked. Answers, as Okta's guide
//! lists them: `204` (done), `400` (malformed, or a subject format not handled), `401` (no or a
//! bad JWT, or one used before), `403` (a subject of another issuer than the sender's), `503`
//! (the session store is unavailable; nothing was done). Okta reads only the status.
//!
//! An `email` subject names a user only where the OP's `sub` is the e-mail address
//! ([`Sender::with_email_is_sub`]); otherwise it is refused with `400`, and the Okta
//! application's Universal Logout setting should send "Issuer and Subject identifier".

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::post;
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt as _};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::core::{Action, Core, Event, Outcome, Scope};
use crate::index::{RecordStore, SessionIndex};
use crate::jose::{Jws, Rules, audience_names_one_of, numeric_date};
use crate::provider::Provider;
use crate::response::{self, Protocol, Refusal};
use crate::sys::unix_now;

#[cfg(feature = "server")]
#[doc(hidden)]
pub mod config;

/// Where the endpoint is mounted.
#[doc(hidden)]
pub const PATH: &str = "/global-token-revocation";

/// The largest request body read, in bytes.
#[doc(hidden)]
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Clock difference allowed on `exp`, `nbf` and `iat`.
const LEEWAY: u64 = 60;

/// The longest a JWT may be valid (Okta's: five minutes either side of now).
const MAX_LIFETIME: u64 = 15 * 60;

const RULES: Rules = Rules {
    max_bytes: 16 * 1024,
    types: &["global-token-revocation+jwt"],
    untyped: false,
    hmac: false,
};

/// An Okta org (or another sender of the profile) allowed to log users out.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Sender {
    /// The org: the JWT's `iss`, and where its keys are published.
    pub provider: Arc<Provider>,
    /// The application's client id at the org: the JWT's `sub`.
    pub client_id: String,
    /// This endpoint's URL as registered at the org: the JWT's `aud`.
    pub audience: String,
    /// The algorithms its JWTs may use.
    pub algorithms: Vec<Algorithm>,
    /// The configured issuer whose sessions its subjects name.
    pub subject_issuer: String,
    /// Whether an `email` subject is the user's `sub` at that issuer.
    pub email_is_sub: bool,
    /// Only the users of this customer, when set.
    pub customer: Option<String>,
}

impl Sender {
    /// A sender whose subjects are users of its own issuer; RS256.
    pub fn new(
        provider: Arc<Provider>,
        client_id: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        let subject_issuer = provider.issuer().to_owned();
        Self {
            provider,
            client_id: client_id.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::RS256],
            subject_issuer,
            email_is_sub: false,
            customer: None,
        }
    }

    /// Act only on the users of `customer` (as the applications' logins recorded it).
    #[must_use]
    pub fn with_customer(mut self, customer: Option<String>) -> Self {
        self.customer = customer;
        self
    }

    /// The sender the core sees: this org's application, within its issuer and customer.
    fn sender(&self) -> crate::core::Sender {
        crate::core::Sender::new(
            "universal-logout",
            format!("{} {}", self.provider.issuer(), self.client_id),
            Scope::issuer(self.subject_issuer.clone()).with_customer(self.customer.clone()),
        )
    }

    /// Its JWTs may use these algorithms.
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// Its subjects are users of this configured issuer.
    #[must_use]
    pub fn with_subject_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.subject_issuer = issuer.into();
        self
    }

    /// An `email` subject is the user's `sub`.
    #[must_use]
    pub fn with_email_is_sub(mut self, yes: bool) -> Self {
        self.email_is_sub = yes;
        self
    }
}

/// The sender a request's JWT came from, and the JWT's id.
#[derive(Clone)]
struct Authenticated {
    sender: Arc<Sender>,
    jti: String,
}

struct Endpoint<S> {
    core: Core<S>,
    senders: Vec<Arc<Sender>>,
}

/// The router serving [`PATH`] for `senders`, revoking users through `core`.
pub fn router<S: SessionIndex + RecordStore>(core: Core<S>, senders: Vec<Sender>) -> Router {
    let endpoint = Arc::new(Endpoint {
        core,
        senders: senders.into_iter().map(Arc::new).collect(),
    });
    let routes = Router::new()
        .route(PATH, post(revoke::<S>))
        .with_state(Arc::clone(&endpoint))
        // Inside the body limit, outside the handler: no body is read before this passes.
        .route_layer(axum::middleware::from_fn_with_state(
            endpoint,
            authenticate::<S>,
        ));
    response::protect(routes, MAX_BODY_BYTES, Protocol::OAuth)
}

fn unauthorized(description: &'static str) -> Response {
    crate::telemetry::refused_unauthenticated("universal-logout", "invalid_token");
    Refusal::unauthenticated(Some("invalid_token"), description, true).render(Protocol::OAuth)
}

async fn authenticate<S: SessionIndex + RecordStore>(
    State(endpoint): State<Arc<Endpoint<S>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(Authorization(bearer)) = request.headers().typed_get::<Authorization<Bearer>>() else {
        return unauthorized("a bearer JWT is required");
    };
    let authenticated = match verify(&endpoint, bearer.token(), unix_now()).await {
        Ok(authenticated) => authenticated,
        Err(why) => return unauthorized(why),
    };
    request.extensions_mut().insert(authenticated);
    next.run(request).await
}

/// Verify a bearer JWT: its sender, signature and claims. Its `jti` is spent by the core.
async fn verify<S: SessionIndex + RecordStore>(
    endpoint: &Endpoint<S>,
    token: &str,
    now: u64,
) -> Result<Authenticated, &'static str> {
    let jws =
        Jws::parse(token, &RULES).map_err(|_| "the bearer is not a global-token-revocation JWT")?;
    let claimed = jws.unverified_str("iss").unwrap_or_default();
    // Several applications of one org: the same keys, told apart by `sub` and `aud`.
    let candidates: Vec<&Arc<Sender>> = endpoint
        .senders
        .iter()
        .filter(|s| s.provider.issuer() == claimed)
        .collect();
    let first = candidates
        .first()
        .ok_or("the JWT is not from a configured sender")?;
    first
        .provider
        .verify(&jws)
        .await
        .map_err(|_| "the JWT's signature does not verify")?;
    let alg = jws.algorithm();
    let claims = jws.into_claims();
    let mut refusal = "the JWT's algorithm is not allowed for this sender";
    let mut sender = None;
    for candidate in candidates {
        if !candidate.algorithms.contains(&alg) {
            continue;
        }
        match check_claims(candidate, &claims, now) {
            Ok(()) => {
                sender = Some(Arc::clone(candidate));
                break;
            }
            Err(why) => refusal = why,
        }
    }
    let sender = sender.ok_or(refusal)?;
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or("the JWT has no jti")?;
    Ok(Authenticated {
        sender,
        jti: jti.to_owned(),
    })
}

fn check_claims(
    sender: &Sender,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<(), &'static str> {
    if claims.get("sub").and_then(Value::as_str) != Some(sender.client_id.as_str()) {
        return Err("the JWT's sub is not this application's client id");
    }
    if !audience_names_one_of(claims, std::slice::from_ref(&sender.audience)) {
        return Err("the JWT's aud is not this endpoint");
    }
    let exp = match numeric_date(claims, "exp") {
        Ok(Some(exp)) if exp.saturating_add(LEEWAY) > now => exp,
        Ok(Some(_)) => return Err("the JWT has expired"),
        _ => return Err("the JWT has no valid exp"),
    };
    match numeric_date(claims, "nbf") {
        Ok(None) => {}
        Ok(Some(nbf)) if nbf <= now.saturating_add(LEEWAY) => {}
        _ => return Err("the JWT is not valid yet"),
    }
    let iat = match numeric_date(claims, "iat") {
        Ok(Some(iat)) if iat <= now.saturating_add(LEEWAY) => iat,
        Ok(Some(_)) => return Err("the JWT is issued in the future"),
        _ => return Err("the JWT has no valid iat"),
    };
    if exp.saturating_sub(iat) > MAX_LIFETIME {
        return Err("the JWT is valid for longer than accepted");
    }
    Ok(())
}

/// The user a request names (its issuer and `sub`), or why not.
fn subject(sender: &Sender, body: &[u8]) -> Result<(String, String), &'static str> {
    let body: Value = serde_json::from_slice(body).map_err(|_| "the body must be a JSON object")?;
    let object = body.as_object().ok_or("the body must be a JSON object")?;
    // `sub_id` (the draft since -03, Okta's guide); `subject` (earlier drafts, Auth0's docs).
    let id = object
        .get("sub_id")
        .or_else(|| object.get("subject"))
        .and_then(Value::as_object)
        .ok_or("the body must hold sub_id, a subject identifier")?;
    let text = |name: &str| {
        id.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match text("format") {
        Some("iss_sub") => {
            let (Some(iss), Some(sub)) = (text("iss"), text("sub")) else {
                return Err("an iss_sub subject needs iss and sub");
            };
            // As named: the core refuses an issuer outside the sender's.
            Ok((iss.to_owned(), sub.to_owned()))
        }
        Some("email") if sender.email_is_sub => text("email")
            .map(|email| (sender.subject_issuer.clone(), email.to_owned()))
            .ok_or("an email subject needs email"),
        Some("email") => Err(
            "email subjects are not mapped to users here: send Issuer and Subject identifier (iss_sub)",
        ),
        _ => Err(
            "the subject format is not one handled here (iss_sub, or email where it is the sub)",
        ),
    }
}

async fn revoke<S: SessionIndex + RecordStore>(
    State(endpoint): State<Arc<Endpoint<S>>>,
    axum::Extension(Authenticated { sender, jti }): axum::Extension<Authenticated>,
    bytes: Bytes,
) -> Response {
    let (issuer, sub) = match subject(&sender, &bytes) {
        Ok(user) => user,
        Err(why) => return Refusal::invalid(why).render(Protocol::OAuth),
    };
    let event = Event::new(sender.sender(), vec![Action::RevokeUser { issuer, sub }])
        .with_single_use_id(jti);
    match endpoint.core.apply(event).await {
        Ok(Outcome::Duplicate) => unauthorized("the JWT was used before"),
        Ok(_) => {
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(error) => Refusal::from(error).render(Protocol::OAuth),
    }
}

/// Universal Logout in the library server: off without `[[universal_logout]]`. An org's keys
/// are its ID tokens' keys: the issuer's when it is a configured one, else discovered.
#[cfg(feature = "server")]
pub(crate) async fn mount<S, D>(
    m: &super::Mount<'_, S, D>,
) -> Result<Option<super::Mounted>, super::MountError>
where
    S: SessionIndex + RecordStore,
{
    let configured = &m.settings.inputs.universal_logout;
    if configured.is_empty() {
        return Ok(None);
    }
    let mut senders = Vec::with_capacity(configured.len());
    for u in configured {
        let provider = match m.provider(&u.issuer) {
            Some(provider) => Arc::clone(provider),
            None => Provider::discover(&u.issuer, m.http.clone(), u.provider.clone())
                .await
                .map_err(|source| super::MountError::Issuer {
                    setting: "universal_logout.issuer".into(),
                    issuer: u.issuer.clone(),
                    source,
                })?,
        };
        senders.push(
            Sender::new(provider, &u.client_id, &u.audience)
                .with_algorithms(u.algorithms.clone())
                .with_subject_issuer(&u.subject_issuer)
                .with_email_is_sub(u.email_is_sub)
                .with_customer(u.customer.clone()),
        );
    }
    tracing::info!("Universal Logout at {PATH}");
    Ok(Some(super::Mounted::main(router(m.core.clone(), senders))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORG: &str = "https://org.example";
    const AUD: &str = "https://logout.example/global-token-revocation";

    fn sender() -> Sender {
        let provider = Provider::from_jwks(ORG, &json!({"keys": []})).expect("provider");
        Sender::new(provider, "app-1", AUD).with_subject_issuer("https://op.example")
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn every_claim_is_checked() {
        let now = 1_800_000_000;
        let good =
            json!({"sub": "app-1", "aud": AUD, "exp": now + 300, "nbf": now - 300, "iat": now});
        assert_eq!(check_claims(&sender(), &claims(good.clone()), now), Ok(()));
        for (name, value) in [
            ("sub", json!("another-app")),
            ("aud", json!("https://elsewhere.example/")),
            ("exp", json!(now - 120)),
            ("exp", json!("soon")),
            ("nbf", json!(now + 120)),
            ("iat", json!(now + 120)),
            ("exp", json!(now + 3600)),
        ] {
            let mut bad = good.clone();
            bad[name] = value.clone();
            assert!(
                check_claims(&sender(), &claims(bad), now).is_err(),
                "{name} = {value}"
            );
        }
    }

    #[test]
    fn subjects_name_the_issuer_they_say_and_the_core_judges_it() {
        let body = |id: Value| json!({"sub_id": id}).to_string();
        let sender = sender();
        assert_eq!(
            subject(
                &sender,
                body(json!({"format": "iss_sub", "iss": "https://other.example", "sub": "u"}))
                    .as_bytes()
            ),
            Ok(("https://other.example".into(), "u".into())),
            "as named: the core refuses an issuer outside the sender's scope"
        );
        assert!(
            subject(
                &sender,
                body(json!({"format": "email", "email": "a@b"})).as_bytes()
            )
            .is_err()
        );
        assert_eq!(
            subject(
                &sender.clone().with_email_is_sub(true),
                body(json!({"format": "email", "email": "a@b"})).as_bytes()
            ),
            Ok(("https://op.example".into(), "a@b".into()))
        );
        for bad in [
            &b"[]"[..],
            b"{}",
            b"not json",
            br#"{"sub_id": {"format": "iss_sub", "iss": "x"}}"#,
        ] {
            assert!(subject(&sender, bad).is_err());
        }
    }
}
